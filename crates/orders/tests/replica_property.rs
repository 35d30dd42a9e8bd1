//! Property: whatever the interleaving, duplication and reordering of a
//! ticket history, once every event is delivered (a `Retry` answer means the
//! bus delivers it again later), the orders service's replica equals the
//! tickets service's final state.

use std::collections::VecDeque;

use messaging::events::{Envelope, TicketCreated, TicketUpdated};
use messaging::listener::Handled;
use orders::Store;
use proptest::prelude::*;
use testkit::{Backend, TestContext};
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Event {
    Created(TicketCreated),
    Updated(TicketUpdated),
}

/// Per ticket: its edits as (title, price in cents).
type History = Vec<Vec<(u8, i64)>>;

fn events(history: &History) -> (Vec<Event>, Vec<TicketUpdated>) {
    let mut events = Vec::new();
    let mut finals = Vec::new();
    for edits in history {
        let created = TicketCreated {
            id: Uuid::now_v7(),
            version: 0,
            title: "t0".into(),
            price: 100,
            user_id: Uuid::now_v7(),
            details: messaging::events::EventDetails::default(),
        };
        let mut last = TicketUpdated {
            id: created.id,
            version: 0,
            title: created.title.clone(),
            price: created.price,
            user_id: created.user_id,
            order_id: None,
            withdrawn: false,
            ended: false,
            details: messaging::events::EventDetails::default(),
        };
        events.push(Event::Created(created));
        for (version, (title, price)) in (1..).zip(edits) {
            last = TicketUpdated {
                version,
                title: format!("t{title}"),
                price: *price,
                ..last.clone()
            };
            events.push(Event::Updated(last.clone()));
        }
        finals.push(last);
    }
    (events, finals)
}

fn deliveries() -> impl Strategy<Value = (History, Vec<usize>)> {
    prop::collection::vec(prop::collection::vec((0u8..5, 1i64..100_000), 0..6), 1..4)
        .prop_flat_map(|history| {
            let count = history.iter().map(|edits| edits.len() + 1).sum::<usize>();
            // Each event is delivered one to three times, in any order.
            let copies = prop::collection::vec(1usize..=3, count);
            (Just(history), copies)
        })
        .prop_flat_map(|(history, copies)| {
            let schedule: Vec<usize> =
                copies.iter().enumerate().flat_map(|(i, n)| std::iter::repeat_n(i, *n)).collect();
            (Just(history), Just(schedule).prop_shuffle())
        })
}

async fn deliver(store: &Store, event: &Event) -> Handled {
    let handled = match event {
        Event::Created(e) => {
            orders::listeners::ticket_created(store.clone(), Envelope::new(e.clone())).await
        }
        Event::Updated(e) => {
            orders::listeners::ticket_updated(store.clone(), Envelope::new(e.clone())).await
        }
    };
    handled.expect("no fault")
}

async fn check(history: History, schedule: Vec<usize>) -> Result<(), TestCaseError> {
    let context = TestContext::new(&Backend::Sqlite, |_| {});
    let db = context.context.databases.open(orders::NAME, &orders::MIGRATIONS).await.expect("db");
    let store = Store::new(db);
    let (events, finals) = events(&history);
    let mut queue: VecDeque<usize> = schedule.into();
    let mut budget = queue.len() * 20;
    while let Some(index) = queue.pop_front() {
        budget -= 1;
        prop_assert!(budget > 0, "deliveries never settle");
        match deliver(&store, &events[index]).await {
            Handled::Ack => {}
            Handled::Retry => queue.push_back(index),
            Handled::Reject(reason) => prop_assert!(false, "rejected: {reason}"),
        }
    }
    for expected in finals {
        let replica = store.find_ticket(expected.id).await.expect("read").expect("replicated");
        prop_assert_eq!(replica.version, expected.version);
        prop_assert_eq!(&replica.title, &expected.title);
        prop_assert_eq!(replica.price.get(), expected.price);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_replica_converges_to_the_source_of_truth((history, schedule) in deliveries()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(check(history, schedule))?;
    }
}
