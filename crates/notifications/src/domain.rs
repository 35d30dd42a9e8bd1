//! The service's types: its replicas of orders and tickets, alerts (saved
//! searches), the kinds of e-mail, an
//! outgoing mail (the decision to send, keyed by event and recipient), and
//! how amounts, dates and Message-IDs are written.

use std::collections::BTreeSet;
use std::time::Duration;

use common::money::Cents;
use common::search::{Filters, title_prefixes};
use common::time::Timestamp;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// An order as the replica keeps it (from `order.created`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub id: Uuid,
    pub buyer_id: Uuid,
    pub ticket_id: Uuid,
    /// The listing's title; absent from senders that predate it.
    pub title: Option<String>,
    pub price: Cents,
    /// When the ticket's event starts (RFC 3339), when the listing says.
    pub starts_at: Option<String>,
    /// Absent for tickets the orders replica learnt before it kept sellers.
    pub seller_id: Option<Uuid>,
}

/// The kinds of e-mail: each is sent at most once per event and recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// To the buyer on `order.completed`.
    Receipt,
    /// To the seller on `order.completed`.
    Sold,
    /// To the buyer on `payment.refunded`.
    Refund,
    /// To the seller on `payout.paid`.
    PayoutPaid,
    /// To the seller on `payout.frozen`.
    PayoutFrozen,
    /// To the buyer on `order.cancelled` with reason `expired`.
    OrderExpired,
    /// To the buyer of a completed order, a day before the event starts
    /// (decided on `order.completed`, due then).
    Reminder,
    /// To the seller when their listing's event started unsold.
    ListingEnded,
    /// To the owner of an alert a listing matched.
    Alert,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Sold => "sold",
            Self::Refund => "refund",
            Self::PayoutPaid => "payout_paid",
            Self::PayoutFrozen => "payout_frozen",
            Self::OrderExpired => "order_expired",
            Self::Reminder => "reminder",
            Self::ListingEnded => "listing_ended",
            Self::Alert => "alert",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "receipt" => Self::Receipt,
            "sold" => Self::Sold,
            "refund" => Self::Refund,
            "payout_paid" => Self::PayoutPaid,
            "payout_frozen" => Self::PayoutFrozen,
            "order_expired" => Self::OrderExpired,
            "reminder" => Self::Reminder,
            "listing_ended" => Self::ListingEnded,
            "alert" => Self::Alert,
            _ => return None,
        })
    }
    /// Whether mail of this kind is always sent: it records money or a
    /// ticket changing hands, so nobody can turn it off.
    pub fn essential(self) -> bool {
        is_essential(self.as_str())
    }

    /// Whether its recipient can turn mail of this kind off (then it
    /// carries List-Unsubscribe and a footer to do so).
    pub fn optional(self) -> bool {
        !self.essential()
    }
}

/// A kind of e-mail as the preferences show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// Its name (`MailKind::as_str`, `outgoing_mail.kind`).
    pub name: &'static str,
    /// Always sent (see [`MailKind::essential`]).
    pub essential: bool,
    /// What the mail is about, as the preferences page says it.
    pub description: &'static str,
}

/// Every kind of e-mail, in the order the preferences list them
/// (essential first). Named by string: the preferences of a kind are kept
/// by its name, and a name here never changes.
pub const KINDS: &[KindInfo] = &[
    KindInfo { name: "receipt", essential: true, description: "Receipts for the tickets you buy" },
    KindInfo { name: "refund", essential: true, description: "Refunds of your orders" },
    KindInfo {
        name: "payout_frozen",
        essential: true,
        description: "A payout of yours held back after a problem report",
    },
    KindInfo { name: "sold", essential: false, description: "One of your tickets sold" },
    KindInfo { name: "payout_paid", essential: false, description: "A payout of yours was paid" },
    KindInfo {
        name: "order_expired",
        essential: false,
        description: "An order of yours expired before it was paid",
    },
    KindInfo {
        name: "listing_ended",
        essential: false,
        description: "A listing of yours ended unsold",
    },
    KindInfo { name: "reminder", essential: false, description: "Reminders before your events" },
    KindInfo { name: "alert", essential: false, description: "New tickets matching your alerts" },
];

/// The kind named `name`, as the preferences know it.
pub fn kind_info(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|kind| kind.name == name)
}

/// Whether the kind named `name` is essential (an unknown name is not).
pub fn is_essential(name: &str) -> bool {
    kind_info(name).is_some_and(|kind| kind.essential)
}

/// Where a listing is, as the tickets replica keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Anyone may order it.
    OnSale,
    /// Reserved by an order, or sold.
    Held,
    /// Its seller took it off sale.
    Withdrawn,
    /// Its event started while it was not sold.
    Ended,
}

impl Listing {
    pub fn as_sql(self) -> &'static str {
        match self {
            Self::OnSale => "on_sale",
            Self::Held => "held",
            Self::Withdrawn => "withdrawn",
            Self::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "on_sale" => Self::OnSale,
            "held" => Self::Held,
            "withdrawn" => Self::Withdrawn,
            "ended" => Self::Ended,
            _ => return None,
        })
    }
}

/// A listing as the tickets replica keeps it (from `ticket.created` and
/// `ticket.updated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketView {
    pub id: Uuid,
    pub seller_id: Uuid,
    pub title: String,
    pub venue: Option<String>,
    pub price: Cents,
    /// When its event starts, as the seller wrote it (RFC 3339).
    pub starts_at: Option<String>,
    pub status: Listing,
    pub version: i64,
}

impl TicketView {
    /// When its event starts, as an instant.
    pub fn starts(&self) -> Option<Timestamp> {
        self.starts_at.as_deref().and_then(Timestamp::parse)
    }

    /// Every prefix of the words of its title and venue (what an alert's
    /// words are compared with, as the listing's search does).
    pub fn prefixes(&self) -> BTreeSet<String> {
        let mut prefixes = title_prefixes(&self.title);
        prefixes.extend(title_prefixes(self.venue.as_deref().unwrap_or_default()));
        prefixes
    }
}

/// The most alerts one user may keep.
pub const MAX_ALERTS: i64 = 20;
/// An alert is e-mailed at most once in this long.
pub const ALERT_EVERY: Duration = Duration::from_secs(3600);

/// A saved search: the listing's filters, e-mailed about when a listing
/// that passes them goes on sale, until its `to` date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The search as the user typed it.
    pub q: String,
    pub filters: Filters,
    pub created_at: Timestamp,
}

impl Alert {
    /// When it stops being matched: the end of its `to` bound, if any.
    pub fn ends_at(&self) -> Option<Timestamp> {
        self.filters.to
    }
}

/// Where an outgoing mail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    /// Decided, but the recipient's address is not known yet (their
    /// `user.created` has not arrived): it waits for it.
    WaitingAddress,
    /// To be delivered (again) at its `next_attempt_at`.
    Pending,
    /// The SMTP server (or the files transport) took it.
    Sent,
    /// Refused for good (a 5xx), or still refused after the last try.
    Failed,
    /// Called off before it was due: a reminder whose order was refunded
    /// or whose ticket changed hands.
    Cancelled,
    /// Not sent: when it was due, its recipient had turned its kind off.
    Suppressed,
}

impl MailState {
    pub fn as_sql(self) -> &'static str {
        match self {
            Self::WaitingAddress => "waiting_address",
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Suppressed => "suppressed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "waiting_address" => Self::WaitingAddress,
            "pending" => Self::Pending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "suppressed" => Self::Suppressed,
            _ => return None,
        })
    }
}

/// A rendered e-mail, before it has an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One e-mail the service decided to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// `<event id>:<kind>:<recipient user id>`: unique, so an event handled
    /// twice decides nothing more.
    pub key: String,
    pub kind: MailKind,
    pub recipient: Uuid,
    /// Unknown while the mail waits for the recipient's address.
    pub address: Option<String>,
    pub rendered: Rendered,
    /// Deliveries tried so far.
    pub attempts: i64,
}

/// The key of the mail of `kind` to `recipient` decided on event `event`.
pub fn mail_key(event: Uuid, kind: MailKind, recipient: Uuid) -> String {
    format!("{event}:{}:{recipient}", kind.as_str())
}

/// The Message-ID of the mail with `key`: the same for every delivery of
/// it, so a message re-sent after a lost answer is recognisable as the
/// same (`<32 hex digits of SHA-256(key)@host>`).
pub fn message_id(key: &str, host: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    format!("<{hex}@{host}>")
}

/// An amount as people read it (`$19.99`, `19.99 CHF`).
pub fn money(amount: Cents, currency: &str) -> String {
    let cents = amount.get();
    let sign = if cents < 0 { "-" } else { "" };
    let value = format!("{sign}{}.{:02}", cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
    match currency.to_lowercase().as_str() {
        "usd" => format!("${value}"),
        "eur" => format!("€{value}"),
        "gbp" => format!("£{value}"),
        other => format!("{value} {}", other.to_uppercase()),
    }
}

/// When the reminder of an event starting at `starts_at` (RFC 3339) is
/// due: a day before it, if that is after `completed_at` (the order's
/// completion); none otherwise, nor for a start that is not RFC 3339.
pub fn reminder_due(starts_at: &str, completed_at: Timestamp) -> Option<Timestamp> {
    let starts =
        time::OffsetDateTime::parse(starts_at, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let due = starts - time::Duration::days(1);
    let millis = i64::try_from(due.unix_timestamp_nanos() / 1_000_000).ok()?;
    (millis > completed_at.millis()).then(|| Timestamp::from_millis(millis))
}

/// An event's start as people read it, in the time zone the seller gave
/// (`Saturday 14 March 2026, 20:00 (UTC+01:00)`); the text as it is when
/// it is not RFC 3339.
pub fn event_date(starts_at: &str) -> String {
    let format = time::macros::format_description!(
        "[weekday] [day padding:none] [month repr:long] [year], [hour]:[minute] \
         (UTC[offset_hour sign:mandatory]:[offset_minute])"
    );
    time::OffsetDateTime::parse(starts_at, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|date| date.format(format).ok())
        .unwrap_or_else(|| starts_at.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_is_the_same_for_every_delivery_of_one_mail() {
        let event = Uuid::parse_str("019aa5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f").expect("uuid");
        let user = Uuid::parse_str("019aa5c2-0000-7000-8000-000000000002").expect("uuid");
        let key = mail_key(event, MailKind::Receipt, user);
        assert_eq!(key, format!("{event}:receipt:{user}"));
        let id = message_id(&key, "tickets.example.com");
        assert_eq!(id, message_id(&key, "tickets.example.com"));
        assert!(id.starts_with('<') && id.ends_with("@tickets.example.com>"), "{id}");
        assert_eq!(id.len(), 1 + 32 + 1 + "tickets.example.com".len() + 1);
        assert_ne!(id, message_id(&mail_key(event, MailKind::Sold, user), "tickets.example.com"));
    }

    #[test]
    fn amounts_and_dates_read_like_people_write_them() {
        assert_eq!(money(Cents::new(1999), "usd"), "$19.99");
        assert_eq!(money(Cents::new(2000), "EUR"), "€20.00");
        assert_eq!(money(Cents::new(5), "chf"), "0.05 CHF");
        assert_eq!(
            event_date("2026-03-14T20:00:00+01:00"),
            "Saturday 14 March 2026, 20:00 (UTC+01:00)"
        );
        assert_eq!(event_date("soon"), "soon");
    }

    #[test]
    fn a_reminder_is_due_a_day_before_a_start_more_than_a_day_away() {
        let start = "2026-03-14T20:00:00+01:00";
        let due = Timestamp::parse("2026-03-13T19:00:00.000Z").expect("time");
        let week_before = Timestamp::parse("2026-03-07T12:00:00.000Z").expect("time");
        assert_eq!(reminder_due(start, week_before), Some(due));
        let hours_before = Timestamp::parse("2026-03-14T10:00:00.000Z").expect("time");
        assert_eq!(reminder_due(start, hours_before), None, "less than a day away");
        assert_eq!(reminder_due("soon", week_before), None);
    }

    #[test]
    fn every_kind_and_state_reads_back_from_its_spelling() {
        for kind in [
            MailKind::Receipt,
            MailKind::Sold,
            MailKind::Refund,
            MailKind::PayoutPaid,
            MailKind::PayoutFrozen,
            MailKind::OrderExpired,
            MailKind::Reminder,
            MailKind::ListingEnded,
            MailKind::Alert,
        ] {
            assert_eq!(MailKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MailState::parse("cancelled"), Some(MailState::Cancelled));
        assert_eq!(MailState::parse("suppressed"), Some(MailState::Suppressed));
    }

    #[test]
    fn receipts_refunds_and_frozen_payouts_are_essential_the_rest_optional() {
        let essential: Vec<&str> =
            KINDS.iter().filter(|kind| kind.essential).map(|kind| kind.name).collect();
        assert_eq!(essential, ["receipt", "refund", "payout_frozen"]);
        assert!(MailKind::Receipt.essential() && !MailKind::Receipt.optional());
        assert!(MailKind::Sold.optional());
        assert!(!is_essential("unknown"));
        assert_eq!(KINDS.len(), 9);
    }
}
