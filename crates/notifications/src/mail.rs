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

use crate::domain::{
    MailKind, OrderView, OutgoingMail, Rendered, TicketView, event_date, message_id, money,
};
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
    order_url: String,
    tickets_url: String,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptHtml<'a> {
    subject: &'a str,
    title: Option<&'a str>,
    when: Option<String>,
    price: String,
    order_url: String,
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

/// The facts of one e-mail, read by both its templates (`m.` there).
macro_rules! templates {
    ($facts:ident, $text:ident = $text_path:literal, $html:ident = $html_path:literal) => {
        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a> {
            m: &'a $facts,
        }

        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a> {
            m: &'a $facts,
        }

        impl $facts {
            fn rendered(&self) -> askama::Result<Rendered> {
                Ok(Rendered {
                    subject: self.subject.clone(),
                    text: $text { m: self }.render()?,
                    html: $html { m: self }.render()?,
                })
            }
        }
    };
}

struct RefundFacts {
    subject: String,
    title: Option<String>,
    amount: String,
    reason: &'static str,
    order_url: String,
}
templates!(RefundFacts, RefundText = "refund.txt", RefundHtml = "refund.html");

struct PayoutPaidFacts {
    subject: String,
    title: Option<String>,
    amount: String,
    fee: String,
    price: String,
    payouts_url: String,
}
templates!(
    PayoutPaidFacts,
    PayoutPaidText = "payout_paid.txt",
    PayoutPaidHtml = "payout_paid.html"
);

struct PayoutFrozenFacts {
    subject: String,
    title: Option<String>,
    payouts_url: String,
}
templates!(
    PayoutFrozenFacts,
    PayoutFrozenText = "payout_frozen.txt",
    PayoutFrozenHtml = "payout_frozen.html"
);

struct OrderExpiredFacts {
    subject: String,
    title: Option<String>,
    price: String,
    ticket_url: String,
}
templates!(
    OrderExpiredFacts,
    OrderExpiredText = "order_expired.txt",
    OrderExpiredHtml = "order_expired.html"
);

struct ReminderFacts {
    subject: String,
    title: Option<String>,
    when: Option<String>,
    tickets_url: String,
}
templates!(ReminderFacts, ReminderText = "reminder.txt", ReminderHtml = "reminder.html");

/// `subject` naming the listing's title when the replica knows it.
fn subject(title: Option<&str>, named: impl Fn(&str) -> String, unnamed: &str) -> String {
    title.map_or_else(|| unnamed.to_owned(), named)
}

/// A refund's reason as the buyer reads it (`payment.refunded`'s `reason`).
pub fn refund_reason(reason: &str) -> &'static str {
    match reason {
        "dispute" => "you reported a problem with your ticket, and it was upheld",
        "operator" => "our support team refunded your order",
        "cancelled" => "your order was cancelled before its payment could be kept",
        "duplicate" => "your order was charged more than once; this gives back the extra charge",
        _ => "your payment was given back",
    }
}

/// The buyer's e-mail about a refund of `amount` (cents, in `currency`)
/// of an order (`order`, when the replica knows it).
pub fn render_refund(
    order_id: uuid::Uuid,
    order: Option<&OrderView>,
    amount: common::money::Cents,
    currency: &str,
    reason: &str,
    head: &Letterhead,
) -> askama::Result<Rendered> {
    let title = order.and_then(|order| order.title.clone());
    RefundFacts {
        subject: subject(title.as_deref(), |t| format!("Refund issued for {t}"), "Refund issued"),
        title,
        amount: money(amount, currency),
        reason: refund_reason(reason),
        order_url: head.link(&format!("/orders/{order_id}")),
    }
    .rendered()
}

/// The seller's e-mail about a payout of `amount` after the platform's
/// `fee` (cents, in `currency`).
pub fn render_payout_paid(
    order: Option<&OrderView>,
    amount: common::money::Cents,
    fee: common::money::Cents,
    currency: &str,
    head: &Letterhead,
) -> askama::Result<Rendered> {
    let title = order.and_then(|order| order.title.clone());
    let price = common::money::Cents::new(amount.get().saturating_add(fee.get()));
    PayoutPaidFacts {
        subject: subject(
            title.as_deref(),
            |t| format!("Your payout for {t} was sent"),
            "Your payout was sent",
        ),
        title,
        amount: money(amount, currency),
        fee: money(fee, currency),
        price: money(price, currency),
        payouts_url: head.link("/payouts"),
    }
    .rendered()
}

/// The seller's e-mail about a payout held while the buyer's problem
/// report is open.
pub fn render_payout_frozen(
    order: Option<&OrderView>,
    head: &Letterhead,
) -> askama::Result<Rendered> {
    let title = order.and_then(|order| order.title.clone());
    PayoutFrozenFacts {
        subject: subject(
            title.as_deref(),
            |t| format!("Your payout for {t} is on hold"),
            "Your payout is on hold",
        ),
        title,
        payouts_url: head.link("/payouts"),
    }
    .rendered()
}

/// Renders the e-mail of `kind` about `order`: completed (receipt, sold,
/// reminder) or expired. The kinds about refunds and payouts have their
/// own functions ([`render_refund`], [`render_payout_paid`],
/// [`render_payout_frozen`]).
pub fn render(kind: MailKind, order: &OrderView, head: &Letterhead) -> askama::Result<Rendered> {
    let title = order.title.as_deref();
    let when = order.starts_at.as_deref().map(event_date);
    let price = money(order.price, &head.currency);
    Ok(match kind {
        MailKind::Receipt => {
            let subject = title.map_or("Your ticket".into(), |t| format!("Your ticket for {t}"));
            let tickets_url = head.link("/tickets/held");
            let order_url = head.link(&format!("/orders/{}", order.id));
            let text = ReceiptText {
                title,
                when: when.clone(),
                price: price.clone(),
                order_url: order_url.clone(),
                tickets_url: tickets_url.clone(),
            };
            let html =
                ReceiptHtml { subject: &subject, title, when, price, order_url, tickets_url };
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
        MailKind::OrderExpired => OrderExpiredFacts {
            subject: subject(
                title,
                |t| format!("Your reservation for {t} expired"),
                "Your reservation expired",
            ),
            title: title.map(str::to_owned),
            price,
            ticket_url: head.link(&format!("/tickets/{}", order.ticket_id)),
        }
        .rendered()?,
        MailKind::Reminder => ReminderFacts {
            subject: subject(
                title,
                |t| format!("Reminder: {t} is tomorrow"),
                "Reminder: your event is tomorrow",
            ),
            title: title.map(str::to_owned),
            when,
            tickets_url: head.link("/tickets/held"),
        }
        .rendered()?,
        MailKind::Refund
        | MailKind::PayoutPaid
        | MailKind::PayoutFrozen
        | MailKind::ListingEnded
        | MailKind::Alert => {
            return Err(askama::Error::custom(format!(
                "the {} e-mail is not about an order alone",
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
        let order = order(Some("Concert"));
        let receipt = render(MailKind::Receipt, &order, &head()).expect("renders");
        assert_eq!(receipt.subject, "Your ticket for Concert");
        for part in [&receipt.text, &receipt.html] {
            let order_url = format!("https://tickets.example.com/orders/{}", order.id);
            assert!(part.contains(&order_url), "{part}");
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

    #[test]
    fn an_expiry_links_back_to_the_ticket() {
        let order = order(Some("Concert"));
        let expired = render(MailKind::OrderExpired, &order, &head()).expect("renders");
        assert_eq!(expired.subject, "Your reservation for Concert expired");
        let link = format!("https://tickets.example.com/tickets/{}", order.ticket_id);
        assert!(expired.text.contains(&link), "{}", expired.text);
        assert!(expired.html.contains(&format!("href=\"{link}\"")), "{}", expired.html);
        assert!(expired.text.contains("$45.50"));
    }

    #[test]
    fn the_reminder_names_the_event_its_date_and_my_tickets() {
        let reminder = render(MailKind::Reminder, &order(Some("Concert")), &head()).expect("ok");
        assert_eq!(reminder.subject, "Reminder: Concert is tomorrow");
        for part in [&reminder.text, &reminder.html] {
            assert!(part.contains("Saturday 14 March 2026, 20:00 (UTC+01:00)"), "{part}");
            assert!(part.contains("https://tickets.example.com/tickets/held"), "{part}");
        }
        let untitled = render(MailKind::Reminder, &order(None), &head()).expect("renders");
        assert_eq!(untitled.subject, "Reminder: your event is tomorrow");
    }

    #[test]
    fn a_refund_says_how_much_and_why_in_plain_words() {
        let order = order(Some("<i>Gig</i>"));
        let refund =
            render_refund(order.id, Some(&order), Cents::new(4550), "eur", "dispute", &head())
                .expect("renders");
        assert_eq!(refund.subject, "Refund issued for <i>Gig</i>");
        assert!(refund.html.contains("&#60;i&#62;Gig&#60;/i&#62;"), "{}", refund.html);
        for part in [&refund.text, &refund.html] {
            assert!(part.contains("€45.50"), "{part}");
            assert!(part.contains("you reported a problem with your ticket"), "{part}");
            assert!(part.contains(&format!("https://tickets.example.com/orders/{}", order.id)));
        }
        let unknown = render_refund(order.id, None, Cents::new(100), "usd", "whatever", &head())
            .expect("renders");
        assert_eq!(unknown.subject, "Refund issued");
        assert!(unknown.text.contains("your payment was given back"), "{}", unknown.text);
    }

    #[test]
    fn a_payout_shows_the_price_the_fee_and_the_share() {
        let order = order(Some("Concert"));
        let paid =
            render_payout_paid(Some(&order), Cents::new(4095), Cents::new(455), "usd", &head())
                .expect("renders");
        assert_eq!(paid.subject, "Your payout for Concert was sent");
        for line in ["Sale price: $45.50", "Platform fee: $4.55", "Your payout: $40.95"] {
            assert!(paid.text.contains(line), "{}", paid.text);
        }
        assert!(paid.html.contains("<strong>$40.95</strong>"), "{}", paid.html);
        assert!(paid.html.contains("href=\"https://tickets.example.com/payouts\""));
        let frozen = render_payout_frozen(None, &head()).expect("renders");
        assert_eq!(frozen.subject, "Your payout is on hold");
        assert!(frozen.text.contains("reported a problem"), "{}", frozen.text);
        assert!(frozen.text.contains("https://tickets.example.com/payouts"));
    }

    #[test]
    fn refunds_and_payouts_are_not_rendered_from_an_order_alone() {
        for kind in [MailKind::Refund, MailKind::PayoutPaid, MailKind::PayoutFrozen] {
            assert!(render(kind, &order(None), &head()).is_err(), "{kind:?}");
        }
    }
}
