//! The e-mails: each rendered from its askama templates (plain text and
//! HTML, `templates/<kind>.txt` and `.html`, every value escaped in the
//! HTML) with absolute links, and built into one `multipart/alternative`
//! message with its Message-ID.

use askama::Template;
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::domain::{MailKind, OrderView, Rendered, TicketView, event_date, message_id, money};

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
}

impl Letterhead {
    pub fn new(from: Mailbox, public_url: &url::Url, currency: &str) -> Self {
        Self {
            from,
            public_url: public_url.as_str().trim_end_matches('/').to_owned(),
            host: public_url.host_str().unwrap_or("localhost").to_owned(),
            currency: currency.to_lowercase(),
        }
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

/// Renders the e-mail of `kind` about the completed `order` (a receipt or
/// "sold").
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
        MailKind::ListingEnded | MailKind::Alert => {
            return Err(askama::Error::custom(format!(
                "a {} e-mail is about a listing, not an order",
                kind.as_str()
            )));
        }
    })
}

#[derive(Template)]
#[template(path = "alert.txt")]
struct AlertText<'a> {
    title: &'a str,
    venue: Option<&'a str>,
    when: Option<String>,
    price: String,
    q: &'a str,
    ticket_url: String,
    alerts_url: String,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertHtml<'a> {
    subject: &'a str,
    title: &'a str,
    venue: Option<&'a str>,
    when: Option<String>,
    price: String,
    q: &'a str,
    ticket_url: String,
    alerts_url: String,
}

/// Renders the alert e-mail: `ticket` went on sale and matched the alert
/// whose search is `q`.
pub fn render_alert(ticket: &TicketView, q: &str, head: &Letterhead) -> askama::Result<Rendered> {
    let subject = format!("A ticket you want is on sale: {}", ticket.title);
    let text = AlertText {
        title: &ticket.title,
        venue: ticket.venue.as_deref(),
        when: ticket.starts_at.as_deref().map(event_date),
        price: money(ticket.price, &head.currency),
        q,
        ticket_url: head.link(&format!("/tickets/{}", ticket.id)),
        alerts_url: head.link("/alerts"),
    };
    let html = AlertHtml {
        subject: &subject,
        title: text.title,
        venue: text.venue,
        when: text.when.clone(),
        price: text.price.clone(),
        q,
        ticket_url: text.ticket_url.clone(),
        alerts_url: text.alerts_url.clone(),
    };
    Ok(Rendered { text: text.render()?, html: html.render()?, subject })
}

#[derive(Template)]
#[template(path = "listing_ended.txt")]
struct EndedText<'a> {
    title: &'a str,
    when: Option<String>,
    mine_url: String,
}

#[derive(Template)]
#[template(path = "listing_ended.html")]
struct EndedHtml<'a> {
    subject: &'a str,
    title: &'a str,
    when: Option<String>,
    mine_url: String,
}

/// Renders "your ticket did not sell" for the seller of `ticket`.
pub fn render_ended(ticket: &TicketView, head: &Letterhead) -> askama::Result<Rendered> {
    let subject = format!("Your ticket {} did not sell", ticket.title);
    let text = EndedText {
        title: &ticket.title,
        when: ticket.starts_at.as_deref().map(event_date),
        mine_url: head.link("/tickets/mine"),
    };
    let html = EndedHtml {
        subject: &subject,
        title: text.title,
        when: text.when.clone(),
        mine_url: text.mine_url.clone(),
    };
    Ok(Rendered { text: text.render()?, html: html.render()?, subject })
}

/// The message of the mail `key` to `address`: both parts as
/// quoted-printable UTF-8, under the Message-ID of its key.
pub fn message(
    key: &str,
    address: &str,
    rendered: &Rendered,
    head: &Letterhead,
) -> anyhow::Result<Message> {
    let to: Mailbox = address
        .parse()
        .map_err(|error| anyhow::anyhow!("the address {address:?} is not valid: {error}"))?;
    let part = |content_type: ContentType, body: &str| {
        SinglePart::builder()
            .header(content_type)
            .header(ContentTransferEncoding::QuotedPrintable)
            .body(body.to_owned())
    };
    let message = Message::builder()
        .from(head.from.clone())
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(message_id(key, &head.host)))
        .multipart(
            MultiPart::alternative()
                .singlepart(part(ContentType::TEXT_PLAIN, &rendered.text))
                .singlepart(part(ContentType::TEXT_HTML, &rendered.html)),
        )?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::money::Cents;
    use uuid::Uuid;

    fn head() -> Letterhead {
        let url = url::Url::parse("https://tickets.example.com/").expect("url");
        Letterhead::new("Ticketing <no-reply@example.com>".parse().expect("from"), &url, "usd")
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
