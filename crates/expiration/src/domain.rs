//! The expiration service's types: a timer, and the event it fires.

use std::time::Duration;

use common::time::Timestamp;
use messaging::events::{Envelope, ExpirationComplete};
use uuid::Uuid;

/// An order's timer: `expiration.complete` is due at `due`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub order_id: Uuid,
    pub due: Timestamp,
}

/// `by` after `now` (a duration past the clock's range saturates far in the
/// future rather than wrapping).
pub fn later(now: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_millis(now.millis() + i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4))
}

/// The same id for every expiration of one order, so a re-publish after a
/// crash is a duplicate the bus drops.
pub fn expiration_event_id(order_id: Uuid) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6578_7069_7261_7469_6f6e_2e63_6f6d_706c);
    Uuid::new_v5(&NAMESPACE, order_id.as_bytes())
}

/// The event a timer fires.
pub fn expiration(order_id: Uuid) -> Envelope<ExpirationComplete> {
    Envelope::with_id(expiration_event_id(order_id), ExpirationComplete { order_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_always_gets_the_same_expiration_event_id() {
        let order = Uuid::now_v7();
        assert_eq!(expiration_event_id(order), expiration_event_id(order));
        assert_ne!(expiration_event_id(order), expiration_event_id(Uuid::now_v7()));
    }
}
