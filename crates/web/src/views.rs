//! How the pages show the API's data: money with its currency, order
//! statuses in words, the time left to pay.

use common::time::Timestamp;

use crate::api::{Order, Ticket};

/// An amount in currency units (`19.99`) as people read it (`$19.99`).
pub fn money(amount: &serde_json::Number, currency: &str) -> String {
    let value = amount.as_f64().unwrap_or(0.0);
    let symbol = match currency {
        "usd" => "$",
        "eur" => "€",
        "gbp" => "£",
        _ => "",
    };
    if symbol.is_empty() {
        format!("{value:.2} {}", currency.to_uppercase())
    } else {
        format!("{symbol}{value:.2}")
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

/// A ticket on the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCard {
    pub id: String,
    pub title: String,
    pub price: String,
}

impl TicketCard {
    pub fn new(ticket: &Ticket, currency: &str) -> Self {
        Self {
            id: ticket.id.clone(),
            title: ticket.title.clone(),
            price: money(&ticket.price, currency),
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
    /// `created`, `complete`, `cancelled` or `expired` (for styles and tests).
    pub status_class: &'static str,
    pub status_label: &'static str,
    pub seconds_left: i64,
}

impl OrderView {
    pub fn new(order: &Order, currency: &str, now: Timestamp) -> Self {
        let seconds_left = seconds_left(&order.expires_at, now);
        let (status_class, status_label) = match order.status.as_str() {
            "complete" => ("complete", "Paid"),
            "cancelled" if seconds_left <= 0 => ("expired", "Expired"),
            "cancelled" => ("cancelled", "Cancelled"),
            _ if seconds_left <= 0 => ("expired", "Expired"),
            _ => ("created", "Awaiting payment"),
        };
        Self {
            id: order.id.clone(),
            ticket_title: order.ticket.title.clone(),
            price: money(&order.ticket.price, currency),
            expires_at: order.expires_at.clone(),
            status_class,
            status_label,
            seconds_left,
        }
    }

    /// Whether the buyer can still pay.
    pub fn payable(&self) -> bool {
        self.status_class == "created"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderTicket;

    fn number(value: f64) -> serde_json::Number {
        serde_json::Number::from_f64(value).expect("finite")
    }

    #[test]
    fn money_reads_like_money() {
        assert_eq!(money(&number(19.99), "usd"), "$19.99");
        assert_eq!(money(&serde_json::Number::from(20), "usd"), "$20.00");
        assert_eq!(money(&number(0.5), "eur"), "€0.50");
        assert_eq!(money(&number(3.0), "chf"), "3.00 CHF");
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
        let order = |status: &str, expires: &str| Order {
            id: "o".into(),
            status: status.into(),
            expires_at: expires.into(),
            ticket: OrderTicket { id: "t".into(), title: "T".into(), price: number(1.5) },
        };
        let later = "2026-11-21T10:15:00.000Z";
        let earlier = "2026-11-21T09:45:00.000Z";
        assert_eq!(
            OrderView::new(&order("created", later), "usd", now).status_label,
            "Awaiting payment"
        );
        assert!(OrderView::new(&order("created", later), "usd", now).payable());
        assert_eq!(OrderView::new(&order("created", earlier), "usd", now).status_label, "Expired");
        assert_eq!(
            OrderView::new(&order("cancelled", earlier), "usd", now).status_label,
            "Expired"
        );
        assert_eq!(
            OrderView::new(&order("cancelled", later), "usd", now).status_label,
            "Cancelled"
        );
        assert_eq!(OrderView::new(&order("complete", earlier), "usd", now).status_label, "Paid");
    }
}
