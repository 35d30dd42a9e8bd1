//! How the pages show the API's data: money with its currency, order
//! statuses in words, the time left to pay, payouts and payout accounts in
//! words.

use common::money::Cents;
use common::time::{LocalTime, Timestamp};

use crate::api::{
    AccountStatus, EventDetails, Order, OrderStatus, Payout, PayoutState, Ticket, TicketStatus,
};

/// An amount in currency units with two decimals, always (`19.99`, `20.00`),
/// where [`Cents`]' own `Display` drops them from whole amounts (`20`).
pub fn units(amount: Cents) -> String {
    let cents = amount.get();
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// An amount as people read it (`$19.99`).
pub fn money(amount: Cents, currency: &str) -> String {
    let value = units(amount);
    let symbol = match currency {
        "usd" => "$",
        "eur" => "€",
        "gbp" => "£",
        _ => "",
    };
    if symbol.is_empty() {
        format!("{value} {}", currency.to_uppercase())
    } else {
        format!("{symbol}{value}")
    }
}

/// Seconds as `M:SS`.
pub fn clock(seconds: i64) -> String {
    let seconds = seconds.max(0);
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

/// Seconds from now until `expires_at` (negative once past).
pub fn seconds_left(expires_at: &str, now: Timestamp) -> i64 {
    Timestamp::parse(expires_at).map_or(0, |t| (t.millis() - now.millis()).div_euclid(1000))
}

/// A ticket's event as people read it; each part empty when the listing
/// gives none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventView {
    pub venue: String,
    /// `Sat 14 Mar 2026, 20:00 +01:00`: the seller's time and offset.
    pub when: String,
    /// The start as the API gives it, for `<time datetime>`.
    pub starts_at: String,
    /// `Section Balcony · Row C · Seat 12`.
    pub seat: String,
    /// The face value as money.
    pub face_value: String,
}

impl EventView {
    pub fn new(event: &EventDetails, currency: &str) -> Self {
        let starts_at = event.starts_at.clone().unwrap_or_default();
        let when = LocalTime::parse(&starts_at).map_or_else(|| starts_at.clone(), LocalTime::human);
        let seat = [("Section", &event.section), ("Row", &event.row), ("Seat", &event.seat)]
            .into_iter()
            .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name} {value}")))
            .collect::<Vec<_>>()
            .join(" · ");
        Self {
            venue: event.venue.clone().unwrap_or_default(),
            when,
            starts_at,
            seat,
            face_value: event.face_value.map(|f| money(f, currency)).unwrap_or_default(),
        }
    }

    /// Whether there is anything to show.
    pub fn is_empty(&self) -> bool {
        self.venue.is_empty() && self.when.is_empty() && self.seat.is_empty()
    }
}

/// A ticket on the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCard {
    pub id: String,
    pub title: String,
    pub price: String,
    pub event: EventView,
}

impl TicketCard {
    pub fn new(ticket: &Ticket, currency: &str) -> Self {
        Self {
            id: ticket.id.clone(),
            title: ticket.title.clone(),
            price: money(ticket.price, currency),
            event: EventView::new(&ticket.event, currency),
        }
    }
}

/// A ticket's status as a class (for styles and tests) and in words; a
/// reservation with its end (`Reserved until 10:15 UTC`).
pub fn status_words(ticket: &Ticket) -> (&'static str, String) {
    match ticket.status {
        TicketStatus::Available => ("available", "For sale".to_owned()),
        TicketStatus::Reserved => {
            let until = ticket.reserved_until.as_deref().and_then(|t| t.get(11..16));
            ("reserved", until.map_or("Reserved".to_owned(), |t| format!("Reserved until {t} UTC")))
        }
        TicketStatus::Sold => ("sold", "Sold".to_owned()),
        TicketStatus::Withdrawn => ("withdrawn", "Withdrawn".to_owned()),
        TicketStatus::Ended => ("ended", "Event started".to_owned()),
    }
}

/// One of the seller's tickets on "My listings".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingView {
    pub id: String,
    pub title: String,
    pub price: String,
    pub status_class: &'static str,
    pub status_label: String,
    pub event: EventView,
}

impl ListingView {
    pub fn new(ticket: &Ticket, currency: &str) -> Self {
        let (status_class, status_label) = status_words(ticket);
        Self {
            id: ticket.id.clone(),
            title: ticket.title.clone(),
            price: money(ticket.price, currency),
            status_class,
            status_label,
            event: EventView::new(&ticket.event, currency),
        }
    }
}

/// An order as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub id: String,
    pub ticket_title: String,
    pub price: String,
    pub expires_at: String,
    /// `created`, `processing`, `complete`, `cancelled` or `expired` (for
    /// styles and tests).
    pub status_class: &'static str,
    pub status_label: &'static str,
    pub seconds_left: i64,
    pub event: EventView,
}

impl OrderView {
    pub fn new(order: &Order, currency: &str, now: Timestamp) -> Self {
        let seconds_left = seconds_left(&order.expires_at, now);
        let (status_class, status_label) = match order.status {
            OrderStatus::Complete => ("complete", "Paid"),
            // A payment that started in time completes the order even
            // after `expiresAt`.
            OrderStatus::AwaitingPayment => ("processing", "Payment in progress"),
            _ if seconds_left <= 0 => ("expired", "Expired"),
            OrderStatus::Cancelled => ("cancelled", "Cancelled"),
            OrderStatus::Created => ("created", "Awaiting payment"),
        };
        Self {
            id: order.id.clone(),
            ticket_title: order.ticket.title.clone(),
            price: money(order.ticket.price, currency),
            expires_at: order.expires_at.clone(),
            status_class,
            status_label,
            seconds_left,
            event: EventView::new(&order.ticket.event, currency),
        }
    }

    /// Whether the buyer can still pay.
    pub fn payable(&self) -> bool {
        self.status_class == "created"
    }
}

/// An API time (UTC) as people read it: `Sat 14 Mar 2026, 20:00 UTC`;
/// the text itself if it is no time.
pub fn utc_human(text: &str) -> String {
    LocalTime::parse(text).map(LocalTime::human).map_or_else(
        || text.to_owned(),
        |human| match human.strip_suffix(" +00:00") {
            Some(utc) => format!("{utc} UTC"),
            None => human,
        },
    )
}

/// A payout account's state as a class (for styles and tests) and in
/// words.
pub fn account_words(status: AccountStatus) -> (&'static str, &'static str) {
    match status {
        AccountStatus::NotConnected => ("not-connected", "Not connected"),
        AccountStatus::DetailsNeeded => ("details-needed", "Details needed"),
        AccountStatus::Ready => ("ready", "Ready"),
    }
}

/// One sale on the Earnings page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutView {
    pub order_id: String,
    pub ticket_id: Option<String>,
    pub title: String,
    pub sold_on: String,
    pub price: String,
    pub fee: String,
    /// The seller's share.
    pub amount: String,
    /// `held`, `due`, `paid`, `disputed` or `refunded`.
    pub state_class: &'static str,
    /// `Held until Sat 14 Mar 2026, 20:00 UTC`, `Due`, `Paid on …`,
    /// `Disputed`, `Refunded`.
    pub state_label: String,
    /// What the buyer reported, while disputed.
    pub problem: Option<String>,
}

impl PayoutView {
    pub fn new(payout: &Payout, currency: &str) -> Self {
        let (state_class, state_label) = match payout.state {
            PayoutState::Held => ("held", format!("Held until {}", utc_human(&payout.hold_until))),
            PayoutState::Due => ("due", "Due".to_owned()),
            PayoutState::Paid => (
                "paid",
                payout
                    .paid_at
                    .as_deref()
                    .map_or("Paid".to_owned(), |at| format!("Paid on {}", utc_human(at))),
            ),
            PayoutState::Disputed => ("disputed", "Disputed".to_owned()),
            PayoutState::Refunded => ("refunded", "Refunded".to_owned()),
        };
        let currency = if payout.currency.is_empty() {
            currency.to_owned()
        } else {
            payout.currency.to_lowercase()
        };
        Self {
            order_id: payout.order_id.clone(),
            ticket_id: payout.ticket_id.clone(),
            title: payout.title.clone().unwrap_or_else(|| "A ticket".to_owned()),
            sold_on: utc_human(&payout.sold_at),
            price: money(payout.price, &currency),
            fee: money(payout.fee, &currency),
            amount: money(payout.amount, &currency),
            state_class,
            state_label,
            problem: (payout.state == PayoutState::Disputed)
                .then(|| payout.problem.as_ref().map(|p| p.reason.clone()))
                .flatten(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderTicket;

    #[test]
    fn money_reads_like_money() {
        assert_eq!(money(Cents::new(1999), "usd"), "$19.99");
        assert_eq!(money(Cents::new(2000), "usd"), "$20.00");
        assert_eq!(money(Cents::new(50), "eur"), "€0.50");
        assert_eq!(money(Cents::new(5), "gbp"), "£0.05");
        assert_eq!(money(Cents::new(300), "chf"), "3.00 CHF");
        assert_eq!(units(Cents::new(100_000_000)), "1000000.00");
    }

    #[test]
    fn an_event_reads_in_the_sellers_time_zone() {
        let event = EventDetails {
            venue: Some("Vicar Street".into()),
            starts_at: Some("2026-03-14T20:00:00+01:00".into()),
            section: Some("Balcony".into()),
            row: None,
            seat: Some("12".into()),
            face_value: Some(Cents::new(5000)),
        };
        let view = EventView::new(&event, "eur");
        assert_eq!(view.when, "Sat 14 Mar 2026, 20:00 +01:00");
        assert_eq!(view.seat, "Section Balcony · Seat 12");
        assert_eq!(view.face_value, "€50.00");
        assert!(EventView::new(&EventDetails::default(), "eur").is_empty());
    }

    #[test]
    fn payouts_read_as_words_with_their_dates() {
        let payout = |state: PayoutState, paid_at: Option<&str>| Payout {
            order_id: "o".into(),
            ticket_id: Some("t".into()),
            title: None,
            price: Cents::new(1999),
            fee: Cents::new(200),
            amount: Cents::new(1799),
            currency: "usd".into(),
            state,
            sold_at: "2027-03-01T10:00:00.000Z".into(),
            hold_until: "2027-03-16T20:00:00.000Z".into(),
            paid_at: paid_at.map(str::to_owned),
            problem: None,
        };
        for (state, paid_at, label) in [
            (PayoutState::Held, None, "Held until Tue 16 Mar 2027, 20:00 UTC"),
            (PayoutState::Due, None, "Due"),
            (
                PayoutState::Paid,
                Some("2027-03-17T08:05:00.000Z"),
                "Paid on Wed 17 Mar 2027, 08:05 UTC",
            ),
            (PayoutState::Disputed, None, "Disputed"),
            (PayoutState::Refunded, None, "Refunded"),
        ] {
            let view = PayoutView::new(&payout(state, paid_at), "eur");
            assert_eq!(view.state_label, label);
            assert_eq!(
                (view.price.as_str(), view.fee.as_str(), view.amount.as_str()),
                ("$19.99", "$2.00", "$17.99")
            );
            assert_eq!(view.title, "A ticket");
        }
        assert_eq!(utc_human("soon"), "soon");
    }

    #[test]
    fn the_time_left_is_minutes_and_seconds() {
        assert_eq!(clock(272), "4:32");
        assert_eq!(clock(59), "0:59");
        assert_eq!(clock(-3), "0:00");
        let now = Timestamp::parse("2026-11-21T10:00:00.000Z").expect("time");
        assert_eq!(seconds_left("2026-11-21T10:04:32.000Z", now), 272);
        assert!(seconds_left("2026-11-21T09:59:59.000Z", now) < 0);
    }

    #[test]
    fn order_statuses_read_as_words() {
        let now = Timestamp::parse("2026-11-21T10:00:00.000Z").expect("time");
        let order = |status: OrderStatus, expires: &str| Order {
            id: "o".into(),
            status,
            expires_at: expires.into(),
            ticket: OrderTicket {
                id: "t".into(),
                title: "T".into(),
                price: Cents::new(150),
                event: EventDetails::default(),
            },
        };
        let later = "2026-11-21T10:15:00.000Z";
        let earlier = "2026-11-21T09:45:00.000Z";
        for (status, expires, label, payable) in [
            (OrderStatus::Created, later, "Awaiting payment", true),
            (OrderStatus::AwaitingPayment, later, "Payment in progress", false),
            (OrderStatus::Created, earlier, "Expired", false),
            (OrderStatus::AwaitingPayment, earlier, "Payment in progress", false),
            (OrderStatus::Cancelled, earlier, "Expired", false),
            (OrderStatus::Cancelled, later, "Cancelled", false),
            (OrderStatus::Complete, earlier, "Paid", false),
            (OrderStatus::Complete, later, "Paid", false),
        ] {
            let view = OrderView::new(&order(status, expires), "usd", now);
            assert_eq!(view.status_label, label, "{status:?} {expires}");
            assert_eq!(view.payable(), payable, "{status:?} {expires}");
            assert_eq!(view.price, "$1.50");
        }
    }
}
