//! The e-mails: each rendered from its askama templates (plain text and
//! HTML, `templates/<kind>.txt` and `.html`, every value escaped in the
//! HTML) with absolute links, and built into one `multipart/alternative`
//! message with its Message-ID. A mail of an optional kind is built with
//! its recipient's unsubscribe link (RFC 2369 `List-Unsubscribe`, RFC 8058
//! `List-Unsubscribe-Post`) and a footer linking to it and to the
//! preferences page: added when the message is built, so every optional
//! kind has them whatever its templates say.

use askama::Template;
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::domain::{MailKind, OrderView, OutgoingMail, Rendered, event_date, message_id, money};
use crate::unsubscribe::LinkKey;

/// What every e-mail needs beside its own facts.
#[derive(Debug, Clone)]
pub struct Letterhead {
    /// The sender (`MAIL_FROM`).
    pub from: Mailbox,
    /// `PUBLIC_URL` without its trailing `/`.
    pub public_url: String,
    /// The host Message-IDs end with (PUBLIC_URL's).
    pub host: String,
    /// Prices' currency (`PAYMENT_CURRENCY`).
    pub currency: String,
    /// Signs the unsubscribe links.
    pub links: LinkKey,
}

impl Letterhead {
    pub fn new(from: Mailbox, public_url: &url::Url, currency: &str, links: LinkKey) -> Self {
        Self {
            from,
            public_url: public_url.as_str().trim_end_matches('/').to_owned(),
            host: public_url.host_str().unwrap_or("localhost").to_owned(),
            currency: currency.to_lowercase(),
            links,
        }
    }

    /// The one-click unsubscribe URL of the API (`List-Unsubscribe`) and
    /// the page confirming it (the footer's link), for mail of `kind` to
    /// `user`.
    pub fn unsubscribe_urls(&self, user: uuid::Uuid, kind: MailKind) -> (String, String) {
        let token = self.links.token(user, kind);
        (
            self.link(&format!("/api/notifications/unsubscribe?token={token}")),
            self.link(&format!("/notifications/unsubscribe?token={token}")),
        )
    }

    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }
}

#[derive(Template)]
#[template(path = "receipt.txt")]
struct ReceiptText<'a> {
    title: Option<&'a str>,
    when: Option<String>,
    price: String,
    tickets_url: String,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptHtml<'a> {
    subject: &'a str,
    title: Option<&'a str>,
    when: Option<String>,
    price: String,
    tickets_url: String,
}

#[derive(Template)]
#[template(path = "sold.txt")]
struct SoldText<'a> {
    title: Option<&'a str>,
    when: Option<String>,
    price: String,
    payouts_url: String,
}

#[derive(Template)]
#[template(path = "sold.html")]
struct SoldHtml<'a> {
    subject: &'a str,
    title: Option<&'a str>,
    when: Option<String>,
    price: String,
    payouts_url: String,
}

/// Renders the e-mail of `kind` about the completed `order`.
pub fn render(kind: MailKind, order: &OrderView, head: &Letterhead) -> askama::Result<Rendered> {
    let title = order.title.as_deref();
    let when = order.starts_at.as_deref().map(event_date);
    let price = money(order.price, &head.currency);
    Ok(match kind {
        MailKind::Receipt => {
            let subject = title.map_or("Your ticket".into(), |t| format!("Your ticket for {t}"));
            let tickets_url = head.link("/tickets/held");
            let text = ReceiptText {
                title,
                when: when.clone(),
                price: price.clone(),
                tickets_url: tickets_url.clone(),
            };
            let html = ReceiptHtml { subject: &subject, title, when, price, tickets_url };
            Rendered { text: text.render()?, html: html.render()?, subject }
        }
        MailKind::Sold => {
            let subject =
                title.map_or("Your ticket sold".into(), |t| format!("Your ticket {t} sold"));
            let payouts_url = head.link("/payouts");
            let text = SoldText {
                title,
                when: when.clone(),
                price: price.clone(),
                payouts_url: payouts_url.clone(),
            };
            let html = SoldHtml { subject: &subject, title, when, price, payouts_url };
            Rendered { text: text.render()?, html: html.render()?, subject }
        }
    })
}

/// The message of `mail` to `address`: both parts as quoted-printable
/// UTF-8, under the Message-ID of its key; for an optional kind, with its
/// unsubscribe headers and footer.
pub fn message(mail: &OutgoingMail, address: &str, head: &Letterhead) -> anyhow::Result<Message> {
    let to: Mailbox = address
        .parse()
        .map_err(|error| anyhow::anyhow!("the address {address:?} is not valid: {error}"))?;
    let part = |content_type: ContentType, body: &str| {
        SinglePart::builder()
            .header(content_type)
            .header(ContentTransferEncoding::QuotedPrintable)
            .body(body.to_owned())
    };
    let mut builder = Message::builder()
        .from(head.from.clone())
        .to(to)
        .subject(mail.rendered.subject.clone())
        .message_id(Some(message_id(&mail.key, &head.host)));
    let (mut text, mut html) = (mail.rendered.text.clone(), mail.rendered.html.clone());
    if mail.kind.optional() {
        let (one_click, page) = head.unsubscribe_urls(mail.recipient, mail.kind);
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{one_click}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        let preferences = head.link("/notifications");
        text = format!(
            "{}\n\n-- \nUnsubscribe from these e-mails:\n{page}\n\nManage e-mail preferences:\n{preferences}\n",
            text.trim_end()
        );
        html = with_footer(&html, &page, &preferences);
    }
    let message = builder.multipart(
        MultiPart::alternative()
            .singlepart(part(ContentType::TEXT_PLAIN, &text))
            .singlepart(part(ContentType::TEXT_HTML, &html)),
    )?;
    Ok(message)
}

/// `html` with the unsubscribe footer before its `</body>` (at its end
/// when it has none). Both links are this site's URLs with a base64url
/// token: nothing in them needs escaping.
fn with_footer(html: &str, page: &str, preferences: &str) -> String {
    let footer = format!(
        "<hr>\n<p style=\"font-size:small\"><a href=\"{page}\">Unsubscribe</a> from these e-mails \
         &#183; <a href=\"{preferences}\">Manage e-mail preferences</a></p>\n"
    );
    match html.rfind("</body>") {
        Some(end) => format!("{}{footer}{}", &html[..end], &html[end..]),
        None => format!("{html}{footer}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::money::Cents;
    use uuid::Uuid;

    fn head() -> Letterhead {
        let url = url::Url::parse("https://tickets.example.com/").expect("url");
        let sessions = common::session::Sessions::new(
            &common::config::Secret::new("a-secret-a-secret-a-secret-a-secret"),
            std::time::Duration::from_secs(60),
            false,
        );
        let from = "Ticketing <no-reply@example.com>".parse().expect("from");
        Letterhead::new(from, &url, "usd", LinkKey::new(&sessions))
    }

    fn order(title: Option<&str>) -> OrderView {
        OrderView {
            id: Uuid::now_v7(),
            buyer_id: Uuid::now_v7(),
            ticket_id: Uuid::now_v7(),
            title: title.map(str::to_owned),
            price: Cents::new(4550),
            starts_at: Some("2026-03-14T20:00:00+01:00".into()),
            seller_id: Some(Uuid::now_v7()),
        }
    }

    #[test]
    fn the_receipt_names_the_ticket_its_date_price_and_link() {
        let receipt = render(MailKind::Receipt, &order(Some("Concert")), &head()).expect("renders");
        assert_eq!(receipt.subject, "Your ticket for Concert");
        for part in [&receipt.text, &receipt.html] {
            assert!(part.contains("Saturday 14 March 2026, 20:00 (UTC+01:00)"), "{part}");
            assert!(part.contains("$45.50"), "{part}");
            assert!(part.contains("https://tickets.example.com/tickets/held"), "{part}");
        }
    }

    #[test]
    fn the_html_escapes_what_sellers_wrote() {
        let sold = render(MailKind::Sold, &order(Some("<b>Gig</b> & co")), &head()).expect("ok");
        assert_eq!(sold.subject, "Your ticket <b>Gig</b> & co sold");
        assert!(sold.html.contains("&#60;b&#62;Gig&#60;/b&#62; &#38; co"), "{}", sold.html);
        assert!(sold.text.contains("<b>Gig</b> & co"), "plain text is not escaped");
        assert!(sold.text.contains("https://tickets.example.com/payouts"));
    }

    #[test]
    fn a_listing_without_a_title_still_reads() {
        let receipt = render(MailKind::Receipt, &order(None), &head()).expect("renders");
        assert_eq!(receipt.subject, "Your ticket");
        assert!(
            receipt.text.contains("your order is paid: the ticket is yours."),
            "{}",
            receipt.text
        );
        let sold = render(MailKind::Sold, &order(None), &head()).expect("renders");
        assert_eq!(sold.subject, "Your ticket sold");
        assert!(sold.text.contains("your ticket sold for $45.50."), "{}", sold.text);
    }
}
