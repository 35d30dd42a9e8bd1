//! The event contracts: one typed payload per subject (ARCHITECTURE.md,
//! "Events"), carried in an [`Envelope`] with a unique event id (UUID v7,
//! also the JetStream `Nats-Msg-Id`) and the time it happened.
//!
//! The JSON is camelCase. Prices in events are **integer cents** (the HTTP
//! API renders currency units; events never carry floating-point money).
//! Renaming a field breaks the round-trip tests below on purpose: event
//! payloads are a contract between services that deploy separately.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use common::status::OrderStatus;
use common::time::Timestamp;

/// A payload with its subject.
pub trait Event: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// The subject it is published on.
    const SUBJECT: &'static str;
}

/// Every subject of the system.
pub const SUBJECTS: [&str; 14] = [
    TicketCreated::SUBJECT,
    TicketUpdated::SUBJECT,
    OrderCreated::SUBJECT,
    OrderCancelled::SUBJECT,
    OrderCompleted::SUBJECT,
    ExpirationComplete::SUBJECT,
    PaymentCreated::SUBJECT,
    PaymentStarted::SUBJECT,
    PaymentFailed::SUBJECT,
    PaymentExpired::SUBJECT,
    PaymentRefunded::SUBJECT,
    PayoutFrozen::SUBJECT,
    PayoutPaid::SUBJECT,
    UserCreated::SUBJECT,
];

/// An event as it travels: id, subject, time, payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<E> {
    /// Unique per event; a re-published event keeps its id.
    pub id: Uuid,
    pub subject: String,
    pub occurred_at: Timestamp,
    pub data: E,
}

impl<E: Event> Envelope<E> {
    /// A new event happening now, with a fresh id.
    pub fn new(data: E) -> Self {
        Self::with_id(Uuid::now_v7(), data)
    }

    /// An event with a chosen id (a deterministic id makes a re-publish a
    /// duplicate that the bus removes).
    pub fn with_id(id: Uuid, data: E) -> Self {
        Self { id, subject: E::SUBJECT.to_owned(), occurred_at: Timestamp::now(), data }
    }
}

/// `ticket.created`: a ticket was put up for sale (version 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketCreated {
    pub id: Uuid,
    pub version: i64,
    pub title: String,
    /// Integer cents.
    pub price: i64,
    pub user_id: Uuid,
    /// The event the ticket is for (absent in events of senders that
    /// predate event details, and for listings without them).
    #[serde(flatten)]
    pub details: EventDetails,
}

/// What a listing says about its event and seat (issue 24); every field
/// optional and omitted when unset, so payloads without them still parse
/// and old samples round-trip.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    /// RFC 3339 with the offset the seller gave, as the API shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
    /// Integer cents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_value: Option<i64>,
}

impl Event for TicketCreated {
    const SUBJECT: &'static str = "ticket.created";
}

/// `ticket.updated`: a ticket changed (edit, reserve, release, sale,
/// withdrawal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketUpdated {
    pub id: Uuid,
    pub version: i64,
    pub title: String,
    /// Integer cents.
    pub price: i64,
    pub user_id: Uuid,
    /// The order holding the ticket, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    /// Its seller took it off sale: no order may take it any more. Absent
    /// (false) in events of senders that predate withdrawals.
    #[serde(default, skip_serializing_if = "is_false")]
    pub withdrawn: bool,
    /// Its event started while it was not sold: no order may take it any
    /// more. Absent (false) in events of senders that predate it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ended: bool,
    #[serde(flatten)]
    pub details: EventDetails,
}

/// Whether a flag is unset (omitted from the JSON).
fn is_false(flag: &bool) -> bool {
    !*flag
}

impl Event for TicketUpdated {
    const SUBJECT: &'static str = "ticket.updated";
}

/// The ticket of an `order.created` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderTicket {
    pub id: Uuid,
    /// Integer cents.
    pub price: i64,
    /// When the ticket's event starts (RFC 3339), when the listing says:
    /// payments charges no order after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// The seller (the listing's `userId`), whom payments pays the sale's
    /// share (issue 25); absent from senders that predate it, and for
    /// tickets the orders replica learnt before it kept sellers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<Uuid>,
    /// The listing's title, for the seller's earnings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A reference to a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketRef {
    pub id: Uuid,
}

/// `order.created`: a buyer reserved a ticket until `expiresAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub id: Uuid,
    pub version: i64,
    pub status: OrderStatus,
    pub user_id: Uuid,
    pub expires_at: Timestamp,
    pub ticket: OrderTicket,
}

impl Event for OrderCreated {
    const SUBJECT: &'static str = "order.created";
}

/// `order.cancelled`: an order was cancelled (by its buyer, by expiry, or
/// because its ticket was withdrawn).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub id: Uuid,
    pub version: i64,
    pub ticket: TicketRef,
    /// Why; absent from senders that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelReason {
    /// Its time ran out unpaid (`payment.expired`).
    Expired,
    /// Its buyer cancelled it.
    Cancelled,
    /// Its ticket was withdrawn from sale.
    Withdrawn,
}

impl Event for OrderCancelled {
    const SUBJECT: &'static str = "order.cancelled";
}

/// `order.completed`: an order was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    pub id: Uuid,
    pub version: i64,
    pub ticket: TicketRef,
}

impl Event for OrderCompleted {
    const SUBJECT: &'static str = "order.completed";
}

/// `expiration.complete`: an order's reservation window has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationComplete {
    pub order_id: Uuid,
}

impl Event for ExpirationComplete {
    const SUBJECT: &'static str = "expiration.complete";
}

/// `payment.created`: an order was charged successfully.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    pub id: Uuid,
    pub order_id: Uuid,
    pub stripe_id: String,
}

impl Event for PaymentCreated {
    const SUBJECT: &'static str = "payment.created";
}

/// `payment.started`: payments recorded attempt number `attempt` to pay
/// the order and is about to charge it; the order reads
/// `awaiting:payment` until that attempt ends. Attempt numbers grow by one
/// per order: a later attempt supersedes an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentStarted {
    pub order_id: Uuid,
    pub attempt: i64,
}

impl Event for PaymentStarted {
    const SUBJECT: &'static str = "payment.started";
}

/// `payment.failed`: attempt number `attempt` ended without a payment
/// (declined, or released by reconciliation); the order can be paid again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    pub order_id: Uuid,
    pub attempt: i64,
}

impl Event for PaymentFailed {
    const SUBJECT: &'static str = "payment.failed";
}

/// `payment.expired`: the order's time ran out unpaid, and payments will
/// never charge it. The one decision between "paid" and "expired" is
/// taken in the payments database (DECISIONS.md, "Money"): this event and
/// `payment.created` are never both published for one order. Orders
/// cancels the order on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentExpired {
    pub order_id: Uuid,
}

impl Event for PaymentExpired {
    const SUBJECT: &'static str = "payment.expired";
}

/// `payment.refunded`: a charge of the order was given back to its buyer
/// (`reason`: `dispute` when an operator upheld the buyer's problem
/// report, `operator` for an operator's refund of a paid order,
/// `cancelled` or `duplicate` for a charge the order could not keep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    pub buyer_id: Uuid,
    /// Integer cents.
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    /// The processor's refund id.
    pub refund_id: String,
}

impl Event for PaymentRefunded {
    const SUBJECT: &'static str = "payment.refunded";
}

/// `payout.frozen`: the buyer of the order reported a problem with their
/// ticket; the seller's payout waits until an operator resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutFrozen {
    pub order_id: Uuid,
    pub seller_id: Uuid,
    pub buyer_id: Uuid,
    pub reason: String,
}

impl Event for PayoutFrozen {
    const SUBJECT: &'static str = "payout.frozen";
}

/// `payout.paid`: the seller's share of the order (its price less the
/// platform's `fee`) was transferred to their payout account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutPaid {
    pub order_id: Uuid,
    pub seller_id: Uuid,
    /// What the seller got, integer cents.
    pub amount: i64,
    /// What the platform kept, integer cents.
    pub fee: i64,
    pub currency: String,
    /// The processor's transfer id.
    pub transfer_id: String,
}

impl Event for PayoutPaid {
    const SUBJECT: &'static str = "payout.paid";
}

/// `user.created`: someone signed up (published by auth; the
/// notifications service keeps their address from it). Users who signed up
/// before auth published events were announced once by a migration, under
/// the same event id ([`UserCreated::event_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCreated {
    pub id: Uuid,
    /// Normalised (trimmed, lower case), as auth stores it.
    pub email: String,
}

impl Event for UserCreated {
    const SUBJECT: &'static str = "user.created";
}

impl UserCreated {
    /// The event id announcing user `id`: the user id with its version
    /// nibble set to 8 (a UUID v8 of it). Sign-up and the backfill of
    /// earlier users use it, so announcing a user twice is a duplicate the
    /// bus drops; auth's backfill migration computes the same in SQL.
    pub fn event_id(user: Uuid) -> Uuid {
        uuid::Builder::from_custom_bytes(user.into_bytes()).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const EVENT_ID: &str = "019aa5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f";
    const TICKET: &str = "019aa5c2-0000-7000-8000-000000000001";
    const USER: &str = "019aa5c2-0000-7000-8000-000000000002";
    const ORDER: &str = "019aa5c2-0000-7000-8000-000000000003";
    const PAYMENT: &str = "019aa5c2-0000-7000-8000-000000000004";
    const SELLER: &str = "019aa5c2-0000-7000-8000-000000000005";

    fn id(text: &str) -> Uuid {
        Uuid::parse_str(text).expect("a UUID")
    }

    /// The envelope round-trips through exactly `sample`.
    fn assert_round_trip<E: Event + PartialEq>(data: E, sample: Value) {
        let envelope = Envelope {
            id: id(EVENT_ID),
            subject: E::SUBJECT.to_owned(),
            occurred_at: Timestamp::parse("2026-11-21T10:00:00.000Z").expect("time"),
            data,
        };
        let expected = json!({
            "id": EVENT_ID,
            "subject": E::SUBJECT,
            "occurredAt": "2026-11-21T10:00:00.000Z",
            "data": sample,
        });
        assert_eq!(serde_json::to_value(&envelope).expect("serialises"), expected);
        let parsed: Envelope<E> = serde_json::from_value(expected).expect("parses");
        assert_eq!(parsed, envelope);
    }

    #[test]
    fn ticket_created_matches_its_sample() {
        assert_round_trip(
            TicketCreated {
                id: id(TICKET),
                version: 0,
                title: "Concert".into(),
                price: 1999,
                user_id: id(USER),
                details: EventDetails::default(),
            },
            json!({"id": TICKET, "version": 0, "title": "Concert", "price": 1999, "userId": USER}),
        );
        assert_round_trip(
            TicketCreated {
                id: id(TICKET),
                version: 0,
                title: "Concert".into(),
                price: 5000,
                user_id: id(USER),
                details: details(),
            },
            json!({
                "id": TICKET, "version": 0, "title": "Concert", "price": 5000, "userId": USER,
                "venue": "Vicar Street", "startsAt": "2026-03-14T20:00:00+01:00",
                "section": "Balcony", "row": "C", "seat": "12", "faceValue": 5000,
            }),
        );
    }

    fn details() -> EventDetails {
        EventDetails {
            venue: Some("Vicar Street".into()),
            starts_at: Some("2026-03-14T20:00:00+01:00".into()),
            section: Some("Balcony".into()),
            row: Some("C".into()),
            seat: Some("12".into()),
            face_value: Some(5000),
        }
    }

    #[test]
    fn ticket_updated_matches_its_sample_with_and_without_an_order() {
        assert_round_trip(
            TicketUpdated {
                id: id(TICKET),
                version: 1,
                title: "Concert".into(),
                price: 2000,
                user_id: id(USER),
                order_id: Some(id(ORDER)),
                withdrawn: false,
                ended: false,
                details: EventDetails::default(),
            },
            json!({"id": TICKET, "version": 1, "title": "Concert", "price": 2000, "userId": USER, "orderId": ORDER}),
        );
        assert_round_trip(
            TicketUpdated {
                id: id(TICKET),
                version: 2,
                title: "Concert".into(),
                price: 2000,
                user_id: id(USER),
                order_id: None,
                withdrawn: false,
                ended: false,
                details: EventDetails::default(),
            },
            json!({"id": TICKET, "version": 2, "title": "Concert", "price": 2000, "userId": USER}),
        );
        assert_round_trip(
            TicketUpdated {
                id: id(TICKET),
                version: 3,
                title: "Concert".into(),
                price: 2000,
                user_id: id(USER),
                order_id: None,
                withdrawn: true,
                ended: false,
                details: EventDetails::default(),
            },
            json!({"id": TICKET, "version": 3, "title": "Concert", "price": 2000, "userId": USER, "withdrawn": true}),
        );
        assert_round_trip(
            TicketUpdated {
                id: id(TICKET),
                version: 4,
                title: "Concert".into(),
                price: 2000,
                user_id: id(USER),
                order_id: None,
                withdrawn: false,
                ended: true,
                details: EventDetails { section: None, row: None, seat: None, ..details() },
            },
            json!({
                "id": TICKET, "version": 4, "title": "Concert", "price": 2000, "userId": USER,
                "ended": true, "venue": "Vicar Street", "startsAt": "2026-03-14T20:00:00+01:00",
                "faceValue": 5000,
            }),
        );
    }

    #[test]
    fn order_created_matches_its_sample() {
        assert_round_trip(
            OrderCreated {
                id: id(ORDER),
                version: 0,
                status: OrderStatus::Created,
                user_id: id(USER),
                expires_at: Timestamp::parse("2026-11-21T10:15:00.000Z").expect("time"),
                ticket: OrderTicket {
                    id: id(TICKET),
                    price: 1999,
                    starts_at: None,
                    seller_id: None,
                    title: None,
                },
            },
            json!({
                "id": ORDER, "version": 0, "status": "created", "userId": USER,
                "expiresAt": "2026-11-21T10:15:00.000Z",
                "ticket": {"id": TICKET, "price": 1999},
            }),
        );
        assert_round_trip(
            OrderCreated {
                id: id(ORDER),
                version: 0,
                status: OrderStatus::Created,
                user_id: id(USER),
                expires_at: Timestamp::parse("2026-11-21T10:15:00.000Z").expect("time"),
                ticket: OrderTicket {
                    id: id(TICKET),
                    price: 1999,
                    starts_at: Some("2026-12-01T19:30:00-05:00".into()),
                    seller_id: Some(id(SELLER)),
                    title: Some("Concert".into()),
                },
            },
            json!({
                "id": ORDER, "version": 0, "status": "created", "userId": USER,
                "expiresAt": "2026-11-21T10:15:00.000Z",
                "ticket": {"id": TICKET, "price": 1999, "startsAt": "2026-12-01T19:30:00-05:00",
                    "sellerId": SELLER, "title": "Concert"},
            }),
        );
    }

    #[test]
    fn refunds_and_payouts_match_their_samples() {
        assert_round_trip(
            PaymentRefunded {
                order_id: id(ORDER),
                buyer_id: id(USER),
                amount: 1999,
                currency: "usd".into(),
                reason: "dispute".into(),
                refund_id: "re_1".into(),
            },
            json!({"orderId": ORDER, "buyerId": USER, "amount": 1999, "currency": "usd",
                "reason": "dispute", "refundId": "re_1"}),
        );
        assert_round_trip(
            PayoutFrozen {
                order_id: id(ORDER),
                seller_id: id(SELLER),
                buyer_id: id(USER),
                reason: "The barcode was refused at the door".into(),
            },
            json!({"orderId": ORDER, "sellerId": SELLER, "buyerId": USER,
                "reason": "The barcode was refused at the door"}),
        );
        assert_round_trip(
            PayoutPaid {
                order_id: id(ORDER),
                seller_id: id(SELLER),
                amount: 1799,
                fee: 200,
                currency: "usd".into(),
                transfer_id: "tr_1".into(),
            },
            json!({"orderId": ORDER, "sellerId": SELLER, "amount": 1799, "fee": 200,
                "currency": "usd", "transferId": "tr_1"}),
        );
    }

    #[test]
    fn order_cancelled_and_completed_match_their_samples() {
        assert_round_trip(
            OrderCancelled {
                id: id(ORDER),
                version: 1,
                ticket: TicketRef { id: id(TICKET) },
                reason: None,
            },
            json!({"id": ORDER, "version": 1, "ticket": {"id": TICKET}}),
        );
        for (reason, spelling) in [
            (CancelReason::Expired, "expired"),
            (CancelReason::Cancelled, "cancelled"),
            (CancelReason::Withdrawn, "withdrawn"),
        ] {
            assert_round_trip(
                OrderCancelled {
                    id: id(ORDER),
                    version: 2,
                    ticket: TicketRef { id: id(TICKET) },
                    reason: Some(reason),
                },
                json!({"id": ORDER, "version": 2, "ticket": {"id": TICKET}, "reason": spelling}),
            );
        }
        assert_round_trip(
            OrderCompleted { id: id(ORDER), version: 1, ticket: TicketRef { id: id(TICKET) } },
            json!({"id": ORDER, "version": 1, "ticket": {"id": TICKET}}),
        );
    }

    #[test]
    fn expiration_complete_and_payment_created_match_their_samples() {
        assert_round_trip(ExpirationComplete { order_id: id(ORDER) }, json!({"orderId": ORDER}));
        assert_round_trip(
            PaymentCreated { id: id(PAYMENT), order_id: id(ORDER), stripe_id: "pi_123".into() },
            json!({"id": PAYMENT, "orderId": ORDER, "stripeId": "pi_123"}),
        );
    }

    #[test]
    fn payment_started_failed_and_expired_match_their_samples() {
        assert_round_trip(
            PaymentStarted { order_id: id(ORDER), attempt: 1 },
            json!({"orderId": ORDER, "attempt": 1}),
        );
        assert_round_trip(
            PaymentFailed { order_id: id(ORDER), attempt: 2 },
            json!({"orderId": ORDER, "attempt": 2}),
        );
        assert_round_trip(PaymentExpired { order_id: id(ORDER) }, json!({"orderId": ORDER}));
    }

    #[test]
    fn user_created_matches_its_sample() {
        assert_round_trip(
            UserCreated { id: id(USER), email: "alice@example.com".into() },
            json!({"id": USER, "email": "alice@example.com"}),
        );
    }

    #[test]
    fn a_user_is_announced_under_an_id_derived_from_theirs() {
        let event = UserCreated::event_id(id(USER));
        assert_eq!(event.to_string(), "019aa5c2-0000-8000-8000-000000000002");
        assert_eq!(event.get_version_num(), 8);
        assert_eq!(UserCreated::event_id(id(USER)), event, "the same every time");
        assert_ne!(UserCreated::event_id(id(SELLER)), event);
    }

    #[test]
    fn order_statuses_have_the_contract_spelling() {
        for (status, text) in [
            (OrderStatus::Created, "created"),
            (OrderStatus::AwaitingPayment, "awaiting:payment"),
            (OrderStatus::Complete, "complete"),
            (OrderStatus::Cancelled, "cancelled"),
        ] {
            assert_eq!(serde_json::to_value(status).expect("serialises"), json!(text));
            assert_eq!(OrderStatus::parse(text), Some(status));
            assert_eq!(status.as_str(), text);
        }
    }

    #[test]
    fn subjects_are_unique() {
        let mut subjects = SUBJECTS.to_vec();
        subjects.sort_unstable();
        subjects.dedup();
        assert_eq!(subjects.len(), SUBJECTS.len());
    }
}
