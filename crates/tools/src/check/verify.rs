//! The invariants, checked on the final state and the history (Jepsen's
//! bank checker: money is neither made nor lost; its queue checker: what
//! was acknowledged arrived). Each violation names the ids involved.

use std::collections::{BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::history::{Kind, Op, Outcome};
use super::state::State;

/// What the acknowledged operations should have left, and what is there.
#[derive(Debug, Default)]
pub struct Arrived {
    /// (what, acknowledged, present)
    pub rows: Vec<(&'static str, usize, usize)>,
}

/// Checks every invariant; the violations, each with its ids.
pub fn check(state: &State, ops: &[Op], arrived: &mut Arrived) -> Vec<String> {
    let mut violations = Vec::new();
    one_live_order_per_ticket(state, &mut violations);
    money(state, &mut violations);
    reservations(state, &mut violations);
    replicas(state, &mut violations);
    escrow(state, &mut violations);
    super::payouts::check(&state.money, &mut violations);
    no_sale_after_the_start(state, &mut violations);
    mail(state, &mut violations);
    acknowledged(state, ops, arrived, &mut violations);
    for (service, count) in &state.dead_letters {
        if *count > 0 {
            violations.push(format!("{count} dead letters in {service}'s database"));
        }
    }
    for op in ops.iter().filter(|op| op.status == Some(500)) {
        violations.push(format!(
            "500 (a fault) answered to {} (ticket {:?}, order {:?}) at +{:.1} s",
            op.kind.name(),
            op.ticket,
            op.order,
            op.at.as_secs_f64()
        ));
    }
    violations
}

/// The e-mails of sales (issue 26): every complete order decided exactly
/// one receipt to its buyer and one "sold" to its seller (counted per
/// person: the decision is keyed by the event, not the order), and every
/// e-mail decided was sent (none failed, none to a user auth knows still
/// waiting for the address their `user.created` brings).
fn mail(state: &State, violations: &mut Vec<String>) {
    let mut expected: HashMap<(&str, Uuid), usize> = HashMap::new();
    for order in state.orders.values().filter(|order| order.status == "complete") {
        *expected.entry(("receipt", order.user)).or_default() += 1;
        if let Some(ticket) = state.tickets.get(&order.ticket) {
            *expected.entry(("sold", ticket.seller)).or_default() += 1;
        }
    }
    let mut decided: HashMap<(&str, Uuid), usize> = HashMap::new();
    for mail in &state.mail {
        if mail.kind == "receipt" || mail.kind == "sold" {
            *decided.entry((mail.kind.as_str(), mail.recipient)).or_default() += 1;
        }
        // Users the checker minted never signed up: theirs wait.
        let lost_address = mail.state == "waiting_address" && state.users.contains(&mail.recipient);
        if mail.state == "failed" || lost_address {
            violations.push(format!(
                "a {} e-mail to user {} is {}",
                mail.kind, mail.recipient, mail.state
            ));
        }
    }
    let people: BTreeSet<(&str, Uuid)> = expected.keys().chain(decided.keys()).copied().collect();
    for key @ (kind, person) in people {
        let (wanted, got) = (expected.get(&key).copied(), decided.get(&key).copied());
        if wanted != got {
            violations.push(format!(
                "user {person} has {} complete orders calling for a {kind} e-mail and {} decided",
                wanted.unwrap_or(0),
                got.unwrap_or(0)
            ));
        }
    }
}

/// No sale after its event started (issue 24): a complete order was made
/// before its ticket's event started, and the attempt of every charge it
/// keeps began before then (an attempt under way at the start may finish
/// after it: the sale stands).
fn no_sale_after_the_start(state: &State, violations: &mut Vec<String>) {
    for (id, order) in &state.orders {
        let Some(starts) = order.event_starts.filter(|_| order.status == "complete") else {
            continue;
        };
        if order.created_at >= starts {
            violations.push(format!(
                "complete order {id} was made {} ms after its event started",
                order.created_at - starts
            ));
        }
        for (_, charge) in state.charges.iter().filter(|(order, _)| order == id) {
            let refunded = state.refunds.get(charge).is_some_and(|r| r.done);
            match state.charge_started.get(charge) {
                Some(&started) if started >= starts && !refunded => violations.push(format!(
                    "complete order {id}: charge {charge} began {} ms after its event started",
                    started - starts
                )),
                _ => {}
            }
        }
    }
}

fn one_live_order_per_ticket(state: &State, violations: &mut Vec<String>) {
    let mut live: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (id, order) in &state.orders {
        if order.status != "cancelled" {
            live.entry(order.ticket).or_default().push(*id);
        }
    }
    for (ticket, orders) in live.into_iter().filter(|(_, o)| o.len() > 1) {
        violations.push(format!("ticket {ticket} has {} live orders: {orders:?}", orders.len()));
    }
}

/// Every complete order has exactly one charge kept and its ticket sold;
/// every charge of an order that is not complete is refunded.
fn money(state: &State, violations: &mut Vec<String>) {
    let mut kept: HashMap<Uuid, Vec<&str>> = HashMap::new();
    for (order, charge) in &state.charges {
        let refunded = state.refunds.get(charge).is_some_and(|r| r.done);
        if !refunded {
            kept.entry(*order).or_default().push(charge);
        }
    }
    for (id, order) in &state.orders {
        let charges = kept.remove(id).unwrap_or_default();
        if order.status == "complete" {
            // A paid order stays complete when an operator refunds it (a
            // dispute upheld, issue 25): then it keeps no charge.
            let refunded_sale = state.money.payouts.get(id).is_some_and(|p| p.state == "refunded");
            if charges.len() != usize::from(!refunded_sale) {
                violations.push(format!(
                    "complete order {id} keeps {} charges (not refunded){}: {charges:?}",
                    charges.len(),
                    if refunded_sale { " though its sale was refunded" } else { "" }
                ));
            }
            let given_back = |charge: &str| state.refunds.get(charge).is_some_and(|r| r.done);
            match state.payments.get(id) {
                Some((_, charge)) if refunded_sale && given_back(charge) => {}
                Some((_, charge)) if !refunded_sale && charges.contains(&charge.as_str()) => {}
                Some((payment, charge)) => violations.push(format!(
                    "complete order {id}: its payment {payment} names charge {charge}, which is not a charge it keeps"
                )),
                None => violations.push(format!("complete order {id} has no payment recorded")),
            }
            match state.tickets.get(&order.ticket) {
                Some(ticket) if ticket.sold && ticket.order == Some(*id) => {}
                ticket => violations.push(format!(
                    "complete order {id}: its ticket {} is not sold to it: {ticket:?}",
                    order.ticket
                )),
            }
        } else if !charges.is_empty() {
            violations.push(format!(
                "{} order {id} was charged and not refunded: {charges:?}",
                order.status
            ));
        }
    }
    for (order, charges) in kept {
        violations
            .push(format!("charges {charges:?} of order {order}, unknown to the orders service"));
    }
}

/// The tickets held in escrow (issue 24): every complete order's buyer can
/// fetch exactly one ticket, its own (the pass of the ticket it bought is
/// theirs, unless they sold it on and that sale went through), no pass is
/// held by the buyer of an order that is not complete, and no barcode is on
/// two live listings or holdings at once. Listings without a pass (sold
/// before issue 24, or without a barcode or file) are not checked.
fn escrow(state: &State, violations: &mut Vec<String>) {
    let mut live: HashMap<&str, Vec<Uuid>> = HashMap::new();
    for (ticket, pass) in &state.passes {
        if let (Some(hash), "listed" | "held") = (&pass.barcode_hash, pass.state.as_str()) {
            live.entry(hash).or_default().push(*ticket);
        }
    }
    for (_, tickets) in live.into_iter().filter(|(_, t)| t.len() > 1) {
        violations.push(format!("one barcode is on {} live listings: {tickets:?}", tickets.len()));
    }
    let resold = |ticket: &Uuid| {
        state.passes.iter().any(|(next, pass)| {
            pass.resale_of == Some(*ticket) && state.tickets.get(next).is_some_and(|t| t.sold)
        })
    };
    for (id, order) in &state.orders {
        let Some(pass) = state.passes.get(&order.ticket) else { continue };
        let fetchable =
            pass.holder == order.user && matches!(pass.state.as_str(), "held" | "relisted");
        if order.status == "complete"
            && !fetchable
            && !(pass.state == "gone" && resold(&order.ticket))
        {
            violations.push(format!(
                "complete order {id}: its buyer {} cannot fetch ticket {} (pass {} of {})",
                order.user, order.ticket, pass.state, pass.holder
            ));
        }
        if order.status != "complete" && fetchable {
            let sold_to_it = state.tickets.get(&order.ticket).is_some_and(|t| t.order == Some(*id));
            if sold_to_it {
                violations.push(format!(
                    "{} order {id}: its buyer holds ticket {}",
                    order.status, order.ticket
                ));
            }
        }
    }
    for (ticket, pass) in &state.passes {
        let sold = state.tickets.get(ticket).is_some_and(|t| t.sold);
        if pass.state == "listed" && sold {
            violations.push(format!("ticket {ticket} is sold and its pass still its seller's"));
        }
        if pass.state == "held" && !sold {
            violations.push(format!("ticket {ticket} is not sold and its pass is held by a buyer"));
        }
    }
}

/// The tickets service's reservations and sales are the orders service's
/// live orders.
fn reservations(state: &State, violations: &mut Vec<String>) {
    let mut held_by_tickets = BTreeSet::new();
    let mut sold_by_tickets = BTreeSet::new();
    for (id, ticket) in &state.tickets {
        match (ticket.order, ticket.sold) {
            (Some(order), false) => held_by_tickets.insert((*id, order)),
            (Some(order), true) => sold_by_tickets.insert((*id, order)),
            (None, true) => {
                violations.push(format!("ticket {id} is sold to no order"));
                false
            }
            (None, false) => false,
        };
    }
    let mut unpaid = BTreeSet::new();
    let mut complete = BTreeSet::new();
    for (id, order) in &state.orders {
        if order.is_unpaid() {
            unpaid.insert((order.ticket, *id));
        } else if order.status == "complete" {
            complete.insert((order.ticket, *id));
        }
    }
    for (ticket, order) in held_by_tickets.difference(&unpaid) {
        violations.push(format!(
            "ticket {ticket} is reserved for order {order}, which is {}",
            state.orders.get(order).map_or("unknown to the orders service", |o| o.status.as_str())
        ));
    }
    for (ticket, order) in unpaid.difference(&held_by_tickets) {
        violations.push(format!(
            "unpaid order {order} holds ticket {ticket}, which the tickets service has as {:?}",
            state.tickets.get(ticket)
        ));
    }
    for (ticket, order) in sold_by_tickets.symmetric_difference(&complete) {
        violations.push(format!(
            "ticket {ticket} / order {order}: sold in the tickets service ({}) but order {} ",
            sold_by_tickets.contains(&(*ticket, *order)),
            state.orders.get(order).map_or("unknown", |o| o.status.as_str())
        ));
    }
}

/// The replicas applied every change once: same versions as the source.
fn replicas(state: &State, violations: &mut Vec<String>) {
    for (id, ticket) in &state.tickets {
        match state.orders_tickets.get(id) {
            Some(&(version, price)) if version == ticket.version && price == ticket.price => {}
            replica => violations.push(format!(
                "ticket {id}: version {} price {} in tickets, {replica:?} in the orders service's replica",
                ticket.version, ticket.price
            )),
        }
    }
    for (id, order) in &state.orders {
        let terminal = order.status == "complete" || order.status == "cancelled";
        match state.payments_orders.get(id) {
            Some((status, version))
                if *version == order.version && (!terminal || *status == order.status) => {}
            replica => violations.push(format!(
                "order {id}: {} version {} in orders, {replica:?} in the payments service's replica",
                order.status, order.version
            )),
        }
    }
}

/// Every acknowledged request's effect is present.
fn acknowledged(state: &State, ops: &[Op], arrived: &mut Arrived, violations: &mut Vec<String>) {
    let ok = |kind: Kind| ops.iter().filter(move |op| op.kind == kind && op.outcome == Outcome::Ok);

    let sold: Vec<Uuid> = ok(Kind::Sell).filter_map(|op| op.ticket).collect();
    let present = sold.iter().filter(|t| state.tickets.contains_key(t)).count();
    let orderable = sold.iter().filter(|t| state.orders_tickets.contains_key(t)).count();
    arrived.rows.push(("tickets sold → in tickets", sold.len(), present));
    arrived.rows.push(("tickets sold → orderable", sold.len(), orderable));
    for ticket in sold.iter().filter(|t| !state.tickets.contains_key(t)) {
        violations.push(format!("ticket {ticket} was acknowledged (201) and does not exist"));
    }

    // An acknowledged problem report froze its payout (issue 25).
    let reported: Vec<Uuid> = ok(Kind::Problem).filter_map(|op| op.order).collect();
    let recorded = |order: &Uuid| {
        state.money.payouts.get(order).is_some_and(|payout| payout.problem_at.is_some())
    };
    let frozen = reported.iter().filter(|order| recorded(order)).count();
    arrived.rows.push(("problems reported → recorded", reported.len(), frozen));
    for order in reported.iter().filter(|order| !recorded(order)) {
        violations.push(format!(
            "order {order}: a problem report was acknowledged (201) and is not recorded"
        ));
    }

    // The last acknowledged price of each ticket stands, unless an edit
    // with an unknown outcome may have come after it; a sold ticket was
    // sold at its order's price, which an edit racing that order does not
    // change (ARCHITECTURE.md, "Business rules").
    let mut prices: HashMap<Uuid, (Option<i64>, HashSet<i64>)> = HashMap::new();
    for op in ops.iter().filter(|op| op.kind == Kind::Edit) {
        let (Some(ticket), Some(price)) = (op.ticket, op.price) else { continue };
        let entry = prices.entry(ticket).or_default();
        match op.outcome {
            Outcome::Ok => entry.0 = Some(price),
            Outcome::Unknown => {
                entry.1.insert(price);
            }
            Outcome::Failed => {}
        }
    }
    let sold_at_order_price = |ticket: &Uuid| {
        state.tickets.get(ticket).filter(|t| t.sold).and_then(|t| {
            let order = t.order.and_then(|o| state.orders.get(&o))?;
            Some(order.price.is_none_or(|price| price == t.price))
        })
    };
    for (ticket, row) in state.tickets.iter().filter(|(_, t)| t.sold) {
        if sold_at_order_price(ticket) == Some(false) {
            let order = row.order.and_then(|o| state.orders.get(&o)).and_then(|o| o.price);
            violations.push(format!(
                "ticket {ticket}: sold at {}, its order was made at {order:?}",
                row.price
            ));
        }
    }
    let edits: Vec<_> = prices
        .iter()
        .filter(|(t, _)| sold_at_order_price(t).is_none())
        .filter_map(|(t, (last, _))| last.map(|p| (t, p)))
        .collect();
    let kept = edits
        .iter()
        .filter(|(t, p)| {
            state.tickets.get(t).is_some_and(|ticket| {
                ticket.price == *p
                    || prices.get(t).is_some_and(|(_, maybe)| maybe.contains(&ticket.price))
            })
        })
        .count();
    arrived.rows.push(("prices changed → in tickets", edits.len(), kept));
    for (ticket, price) in &edits {
        let now = state.tickets.get(ticket).map(|t| t.price);
        let maybe =
            prices.get(ticket).map(|(_, m)| m.contains(&now.unwrap_or(-1))).unwrap_or(false);
        if now != Some(*price) && !maybe {
            violations
                .push(format!("ticket {ticket}: price {price} acknowledged last, {now:?} stored"));
        }
    }

    let placed: Vec<(Uuid, Uuid)> =
        ok(Kind::Order).filter_map(|op| Some((op.order?, op.ticket?))).collect();
    let present = placed
        .iter()
        .filter(|(o, t)| state.orders.get(o).is_some_and(|order| order.ticket == *t))
        .count();
    arrived.rows.push(("orders placed → in orders", placed.len(), present));
    for (order, ticket) in &placed {
        if state.orders.get(order).is_none_or(|o| o.ticket != *ticket) {
            violations.push(format!(
                "order {order} of ticket {ticket} was acknowledged (201) and is missing"
            ));
        }
    }

    // A cancellation the buyer asked for (acknowledged or maybe) may
    // overtake a payment (DECISIONS.md, "Money"): then the charge is
    // refunded, which `money` checks.
    let maybe_cancelled: HashSet<Uuid> = ops
        .iter()
        .filter(|op| op.kind == Kind::Cancel && op.outcome != Outcome::Failed)
        .filter_map(|op| op.order)
        .collect();
    let paid: Vec<(Uuid, Option<Uuid>)> =
        ok(Kind::Pay).filter_map(|op| Some((op.order?, op.payment))).collect();
    let mut present = 0;
    for (order, payment) in &paid {
        let recorded = state.payments.get(order).map(|(id, _)| *id);
        let status = state.orders.get(order).map(|o| o.status.as_str());
        let charged = recorded.is_some() && recorded == *payment;
        let kept = status == Some("complete")
            || (status == Some("cancelled") && maybe_cancelled.contains(order));
        if charged && kept {
            present += 1;
        } else {
            violations.push(format!(
                "payment {payment:?} of order {order} was acknowledged (201): recorded payment {recorded:?}, order {status:?}"
            ));
        }
    }
    arrived.rows.push(("payments → order paid", paid.len(), present));

    let cancelled: Vec<Uuid> = ok(Kind::Cancel).filter_map(|op| op.order).collect();
    let present = cancelled
        .iter()
        .filter(|o| state.orders.get(o).is_some_and(|order| order.status == "cancelled"))
        .count();
    arrived.rows.push(("cancellations → order cancelled", cancelled.len(), present));
    for order in &cancelled {
        let status = state.orders.get(order).map(|o| o.status.as_str());
        if status != Some("cancelled") {
            violations.push(format!(
                "cancellation of order {order} was acknowledged (204): order {status:?}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::state::{Mail, Order, Pass, Refund, Ticket};

    /// The seller of every ticket of [`consistent`] (its buyers are nil).
    const SELLER: Uuid = Uuid::from_u128(7);

    /// A ticket sold to a paid order, one on sale, one held by an unpaid
    /// order, and a cancelled order whose charge was refunded.
    fn consistent() -> (State, Vec<Op>) {
        let [sold, on_sale, held] = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let [paid, unpaid, cancelled] = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let payment = Uuid::now_v7();
        let mut state = State::default();
        let ticket = |order, sold| Ticket {
            seller: SELLER,
            version: 2,
            price: 1000,
            order,
            sold,
            withdrawn: false,
        };
        state.tickets.insert(sold, ticket(Some(paid), true));
        state.tickets.insert(on_sale, ticket(None, false));
        state.tickets.insert(held, ticket(Some(unpaid), false));
        let order = |ticket, status: &str| Order {
            ticket,
            user: Uuid::nil(),
            status: status.into(),
            version: 1,
            expires_at: 0,
            price: Some(1000),
            created_at: 1_000,
            event_starts: Some(5_000),
        };
        state.orders.insert(paid, order(sold, "complete"));
        state.orders.insert(unpaid, order(held, "created"));
        state.orders.insert(cancelled, order(on_sale, "cancelled"));
        for (id, ticket) in &state.tickets {
            state.orders_tickets.insert(*id, (ticket.version, ticket.price));
        }
        for (id, order) in &state.orders {
            state.payments_orders.insert(*id, (order.status.clone(), order.version));
        }
        state.charges = vec![(paid, "pi_1".into()), (cancelled, "pi_2".into())];
        state.charge_started = HashMap::from([("pi_1".into(), 2_000), ("pi_2".into(), 2_000)]);
        state.payments.insert(paid, (payment, "pi_1".into()));
        state.refunds.insert("pi_2".into(), Refund { order: cancelled, done: true });
        let pass = |state: &str, barcode: &str| Pass {
            holder: Uuid::nil(),
            state: state.into(),
            barcode_hash: Some(barcode.into()),
            resale_of: None,
        };
        state.passes.insert(sold, pass("held", "b1"));
        state.passes.insert(on_sale, pass("listed", "b2"));
        state.passes.insert(held, pass("listed", "b3"));
        let mail = |kind: &str, recipient| Mail {
            kind: kind.into(),
            recipient,
            state: "sent".into(),
            due_at: 2_000,
        };
        state.mail = vec![mail("receipt", Uuid::nil()), mail("sold", SELLER)];
        let op = |kind, ticket, order, payment| Op {
            kind,
            outcome: Outcome::Ok,
            status: Some(201),
            ticket: Some(ticket),
            order: Some(order),
            price: Some(1000),
            payment,
            at: Duration::ZERO,
        };
        let ops = vec![
            op(Kind::Sell, sold, paid, None),
            op(Kind::Order, sold, paid, None),
            op(Kind::Pay, sold, paid, Some(payment)),
            op(Kind::Cancel, on_sale, cancelled, None),
        ];
        (state, ops)
    }

    fn violations(state: &State, ops: &[Op]) -> Vec<String> {
        check(state, ops, &mut Arrived::default())
    }

    fn order_with(state: &State, status: &str) -> Uuid {
        *state.orders.iter().find(|(_, o)| o.status == status).map(|(id, _)| id).expect("an order")
    }

    #[test]
    fn a_sale_calls_for_one_receipt_and_one_sold_e_mail_each_sent() {
        let (state, ops) = consistent();
        assert_eq!(violations(&state, &ops), Vec::<String>::new());
        let (mut state, ops) = consistent();
        state.mail.retain(|mail| mail.kind != "receipt");
        assert_eq!(
            violations(&state, &ops),
            [format!(
                "user {} has 1 complete orders calling for a receipt e-mail and 0 decided",
                Uuid::nil()
            )]
        );
        let (mut state, ops) = consistent();
        let twice = state.mail[1].clone();
        state.mail.push(twice);
        assert_eq!(
            violations(&state, &ops),
            [format!(
                "user {SELLER} has 1 complete orders calling for a sold e-mail and 2 decided"
            )]
        );
        let (mut state, ops) = consistent();
        state.mail[0].state = "waiting_address".into();
        assert_eq!(violations(&state, &ops), Vec::<String>::new(), "a user auth never knew");
        state.users.insert(Uuid::nil());
        assert_eq!(
            violations(&state, &ops),
            [format!("a receipt e-mail to user {} is waiting_address", Uuid::nil())]
        );
    }

    #[test]
    fn a_sale_after_its_event_started_is_a_violation() {
        let (mut state, ops) = consistent();
        state.charge_started.insert("pi_1".into(), 5_000);
        let found = violations(&state, &ops);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("began 0 ms after its event started"), "{found:?}");
        let (mut state, ops) = consistent();
        state.orders.get_mut(&order_with(&state, "complete")).expect("order").created_at = 6_000;
        let found = violations(&state, &ops);
        assert!(
            found.iter().any(|v| v.contains("was made 1000 ms after its event started")),
            "{found:?}"
        );
    }

    #[test]
    fn a_complete_order_refunded_by_an_operator_keeps_no_charge() {
        let (mut state, ops) = consistent();
        let paid = order_with(&state, "complete");
        let payout = crate::check::payouts::Payout {
            state: "refunded".into(),
            seller: None,
            price: 1000,
            fee: 100,
            amount: 900,
            hold_until: 0,
            transfer: None,
            transferred_at: None,
            reversal: None,
            problem_at: Some(1),
            resolved_at: Some(2),
        };
        state.money.payouts.insert(paid, payout);
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("though its sale was refunded")), "{found:?}");
        assert!(found.iter().any(|v| v.contains("which is not a charge it keeps")), "{found:?}");
        state.refunds.insert("pi_1".into(), Refund { order: paid, done: true });
        assert_eq!(violations(&state, &ops), Vec::<String>::new());
    }

    #[test]
    fn a_consistent_state_has_no_violation() {
        let (state, ops) = consistent();
        assert_eq!(violations(&state, &ops), Vec::<String>::new());
    }

    #[test]
    fn a_complete_order_whose_buyer_cannot_fetch_the_ticket_is_a_violation() {
        let (mut state, ops) = consistent();
        let paid = order_with(&state, "complete");
        let ticket = state.orders[&paid].ticket;
        state.passes.get_mut(&ticket).expect("a pass").holder = Uuid::now_v7();
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("cannot fetch ticket")), "{found:?}");
        state.passes.get_mut(&ticket).expect("a pass").state = "listed".into();
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("is sold and its pass still its seller's")));
    }

    #[test]
    fn one_barcode_on_two_live_listings_is_a_violation() {
        let (mut state, ops) = consistent();
        for pass in state.passes.values_mut() {
            pass.barcode_hash = Some("same".into());
        }
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("one barcode is on 3 live listings")), "{found:?}");
    }

    #[test]
    fn a_second_charge_kept_for_a_paid_order_is_a_violation() {
        let (mut state, ops) = consistent();
        let paid = order_with(&state, "complete");
        state.charges.push((paid, "pi_3".into()));
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("keeps 2 charges")), "{found:?}");
    }

    #[test]
    fn a_cancelled_order_charged_and_not_refunded_is_a_violation() {
        let (mut state, ops) = consistent();
        state.refunds.values_mut().for_each(|refund| refund.done = false);
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("charged and not refunded")), "{found:?}");
    }

    #[test]
    fn a_reservation_without_its_order_is_a_violation() {
        let (mut state, ops) = consistent();
        let unpaid = order_with(&state, "created");
        state.orders.get_mut(&unpaid).expect("the order").status = "cancelled".into();
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("is reserved for order")), "{found:?}");
    }

    #[test]
    fn a_replica_behind_its_source_is_a_violation() {
        let (mut state, ops) = consistent();
        state.orders_tickets.values_mut().for_each(|(version, _)| *version -= 1);
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("replica")), "{found:?}");
    }

    #[test]
    fn an_acknowledged_payment_whose_order_is_not_paid_is_a_violation() {
        let (mut state, ops) = consistent();
        state.payments.clear();
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("was acknowledged (201)")), "{found:?}");
    }

    /// An edit that raced the order does not change what a ticket sold
    /// for: its order's price stands, and anything else is a violation.
    #[test]
    fn a_sold_ticket_is_sold_at_its_orders_price() {
        let (mut state, mut ops) = consistent();
        let (sold, _) = state.tickets.iter().find(|(_, t)| t.sold).expect("a sold ticket");
        let sold = *sold;
        let mut edit = ops[0].clone();
        (edit.kind, edit.ticket, edit.price, edit.order) =
            (Kind::Edit, Some(sold), Some(50_000), None);
        ops.push(edit);
        assert_eq!(
            violations(&state, &ops),
            Vec::<String>::new(),
            "the raced edit is not a violation"
        );
        state.tickets.get_mut(&sold).expect("sold").price = 50_000;
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("its order was made at Some(1000)")), "{found:?}");
    }

    #[test]
    fn dead_letters_and_server_faults_are_violations() {
        let (mut state, mut ops) = consistent();
        state.dead_letters.insert("orders", 1);
        ops[0].status = Some(500);
        let found = violations(&state, &ops);
        assert!(found.iter().any(|v| v.contains("dead letters in orders")), "{found:?}");
        assert!(found.iter().any(|v| v.starts_with("500")), "{found:?}");
    }
}
