//! Property: whatever the interleaving, duplication and reordering of one
//! ticket's order events (one live order at a time, as the orders service
//! guarantees), once every event is delivered the ticket is held by the live
//! order, or by none when every order was cancelled.

use std::collections::VecDeque;

use common::money::Cents;
use common::time::Timestamp;
use messaging::events::{
    Envelope, OrderCancelled, OrderCreated, OrderStatus, OrderTicket, TicketRef,
};
use messaging::listener::Handled;
use proptest::prelude::*;
use testkit::{Backend, TestContext};
use tickets::Store;
use tickets::domain::Title;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Event {
    Created(Uuid),
    Cancelled(Uuid),
}

/// How many orders there were, and whether the last is still live; then
/// the delivery schedule (indices into the events, with repeats).
fn histories() -> impl Strategy<Value = (usize, bool, Vec<usize>)> {
    (1usize..5, any::<bool>())
        .prop_flat_map(|(orders, live)| {
            let count = 2 * orders - usize::from(live);
            (Just(orders), Just(live), prop::collection::vec(1usize..=3, count))
        })
        .prop_flat_map(|(orders, live, copies)| {
            let schedule: Vec<usize> =
                copies.iter().enumerate().flat_map(|(i, n)| std::iter::repeat_n(i, *n)).collect();
            (Just(orders), Just(live), Just(schedule).prop_shuffle())
        })
}

async fn deliver(store: &Store, ticket: Uuid, event: &Event) -> Handled {
    let handled = match event {
        Event::Created(order) => {
            let event = OrderCreated {
                id: *order,
                version: 0,
                status: OrderStatus::Created,
                user_id: Uuid::now_v7(),
                expires_at: Timestamp::now(),
                ticket: OrderTicket {
                    id: ticket,
                    price: 100,
                    starts_at: None,
                    seller_id: None,
                    title: None,
                },
            };
            tickets::listeners::order_created(store.clone(), Envelope::new(event)).await
        }
        Event::Cancelled(order) => {
            let event = OrderCancelled {
                id: *order,
                version: 1,
                ticket: TicketRef { id: ticket },
                reason: None,
            };
            tickets::listeners::order_cancelled(store.clone(), Envelope::new(event)).await
        }
    };
    handled.expect("no fault")
}

async fn check(orders: usize, live: bool, schedule: Vec<usize>) -> Result<(), TestCaseError> {
    let context = TestContext::new(&Backend::Sqlite, |_| {});
    let db = context.context.databases.open(tickets::NAME, &tickets::MIGRATIONS).await.expect("db");
    let store = Store::new(db);
    let title = Title::parse(Some("t")).expect("title");
    let details = tickets::details::Details::default();
    let ticket = store
        .create(&title, Cents::new(100), &details, Uuid::now_v7(), &Default::default())
        .await
        .expect("ticket");

    let ids: Vec<Uuid> = (0..orders).map(|_| Uuid::now_v7()).collect();
    let mut events = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        events.push(Event::Created(*id));
        if i + 1 < orders || !live {
            events.push(Event::Cancelled(*id));
        }
    }
    let mut queue: VecDeque<usize> = schedule.into();
    let mut budget = queue.len() * 20;
    while let Some(index) = queue.pop_front() {
        budget -= 1;
        prop_assert!(budget > 0, "deliveries never settle");
        match deliver(&store, ticket.id, &events[index]).await {
            Handled::Ack => {}
            Handled::Retry => queue.push_back(index),
            Handled::Reject(reason) => prop_assert!(false, "rejected: {reason}"),
        }
    }
    let held = store.find(ticket.id).await.expect("read").expect("ticket").order_id;
    let expected = if live { ids.last().copied() } else { None };
    prop_assert_eq!(held, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_ticket_ends_with_the_live_order((orders, live, schedule) in histories()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(check(orders, live, schedule))?;
    }
}
