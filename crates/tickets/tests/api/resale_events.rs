//! The ticket in escrow meets its event (issue 24, items 1–4 with 5–8): a
//! listing sent as a form carries its event under the same rules as JSON;
//! "Sell again" carries the event over under the cap of the original face
//! value and stops when the event starts; My tickets lists upcoming events
//! first; a listing that ends unsold lets go of its pass like a withdrawal.

use std::time::Duration;

use reqwest::multipart::Form;
use serde_json::{Value, json};
use testkit::{Stack, TestUser, error_of as error, field_error, general_error};
use uuid::Uuid;

use crate::helpers::{TicketsApp, id, starts};

const HOUR: Duration = Duration::from_secs(3600);

fn barcode() -> String {
    format!("EV-{}", Uuid::now_v7().simple())
}

/// A seller's form: title, price, a fresh barcode and `fields`.
fn form(fields: &[(&'static str, String)]) -> Form {
    let mut form = Form::new().text("title", "Concert").text("barcode", barcode());
    if !fields.iter().any(|(name, _)| *name == "price") {
        form = form.text("price", "25");
    }
    for (name, value) in fields {
        form = form.text(*name, value.clone());
    }
    form
}

async fn listed(app: &TicketsApp, seller: &TestUser, form: Form) -> Value {
    let response = app.sell_form(Some(seller), form).await;
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

/// A JSON listing with a barcode and `details`.
async fn listed_json(app: &TicketsApp, seller: &TestUser, details: Value) -> Value {
    let mut body = json!({"title": "Concert", "price": 20, "barcode": barcode()});
    if let (Some(body), Some(details)) = (body.as_object_mut(), details.as_object()) {
        body.extend(details.clone());
    }
    let response = app.create(Some(seller), &body).await;
    assert_eq!(response.status(), 201, "{body}");
    response.json().await.expect("json")
}

/// Moves the test's clock by `by` and waits until the end of sale has
/// ended `ticket`.
async fn start_event_of(app: &TicketsApp, ticket: &Value, by: Duration) {
    app.system.context.clock.advance(by);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let shown = app.shown(id(ticket)).await;
        if shown["status"] == "ended" {
            app.system.drain().await;
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not ended: {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_listing_sent_as_a_form_takes_its_event_under_the_json_rules(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let start = starts(&app, 24 * HOUR, 60);
    let ticket = listed(
        &app,
        &seller,
        form(&[
            ("venue", " Vicar Street ".into()),
            ("startsAt", start.clone()),
            ("section", "Balcony".into()),
            ("row", "C".into()),
            ("seat", "12".into()),
            ("faceValue", "30".into()),
            ("price", "30".into()),
        ]),
    )
    .await;
    assert_eq!(
        (ticket["venue"].clone(), ticket["startsAt"].clone(), ticket["faceValue"].clone()),
        (json!("Vicar Street"), json!(start), json!(30))
    );
    assert_eq!((ticket["row"].clone(), ticket["seat"].clone()), (json!("C"), json!("12")));
    let empty = listed(&app, &seller, form(&[("venue", String::new())])).await;
    assert!(empty.get("venue").is_none(), "an empty part is no venue: {empty}");

    let past = starts(&app, Duration::ZERO, 0);
    let bad = form(&[("startsAt", past), ("barcode", "x".into())]);
    let (status, errors) = error(app.sell_form(Some(&seller), bad).await).await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = errors["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&"startsAt") && fields.contains(&"barcode"), "{errors}");
    let over = form(&[("faceValue", "20".into()), ("price", "20.01".into())]);
    assert_eq!(
        error(app.sell_form(Some(&seller), over).await).await,
        (400, field_error("price", "Price must be at most 20.00 (face value 20.00 plus 0%)"))
    );
    assert_eq!(app.mine_listed(&seller).await.len(), 2, "a refused form stores nothing");
}

async fn a_resale_carries_the_event_over_under_the_cap_of_its_face_value(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, buyer) = (app.user("seller"), app.user("buyer"));
    let start = starts(&app, 3 * HOUR, -300);
    let details = json!({
        "venue": "Olympia", "startsAt": start, "section": "Stalls", "row": "F", "seat": "7",
        "faceValue": 50,
    });
    let first = listed_json(&app, &seller, details).await;
    app.sold_to(&first, &buyer).await;

    assert_eq!(
        error(app.resell(Some(&buyer), id(&first), json!("50.01")).await).await,
        (400, field_error("price", "Price must be at most 50.00 (face value 50.00 plus 0%)")),
        "the cap of the original face value"
    );
    let response = app.resell(Some(&buyer), id(&first), json!(50)).await;
    assert_eq!(response.status(), 201);
    let again: Value = response.json().await.expect("json");
    for field in ["venue", "startsAt", "section", "row", "seat", "faceValue"] {
        assert_eq!(again[field], first[field], "{field} carried over");
    }
    assert_eq!(again["startsAt"], json!(start), "with the seller's offset");
    assert_eq!(app.shown(id(&again)).await, again);
    let held = app.held(&buyer).await;
    assert_eq!(held[0]["venue"], "Olympia", "My tickets shows the event: {}", held[0]);
    assert_eq!(held[0]["startsAt"], json!(start));

    assert_eq!(app.withdraw(Some(&buyer), id(&again)).await.status(), 204);
    app.system.context.clock.advance(4 * HOUR);
    assert_eq!(
        error(app.resell(Some(&buyer), id(&first), json!(40)).await).await,
        (400, general_error("Cannot sell again a ticket whose event has started"))
    );
    assert_eq!(app.held(&buyer).await[0]["passState"], "held", "still the buyer's");
}

async fn the_markup_setting_raises_the_cap_of_a_resale(stack: Stack) {
    let app = TicketsApp::spawn_with(stack, |s| s.resale_max_markup_percent = 10).await;
    let (seller, buyer) = (app.user("seller"), app.user("buyer"));
    let first = listed_json(&app, &seller, json!({"price": 9, "faceValue": "9.99"})).await;
    app.sold_to(&first, &buyer).await;
    assert_eq!(
        error(app.resell(Some(&buyer), id(&first), json!("10.99")).await).await,
        (400, field_error("price", "Price must be at most 10.98 (face value 9.99 plus 10%)"))
    );
    assert_eq!(app.resell(Some(&buyer), id(&first), json!("10.98")).await.status(), 201);
}

async fn my_tickets_list_upcoming_events_first_then_past_then_undated(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, buyer) = (app.user("seller"), app.user("buyer"));
    let dated = |hours: u32| json!({"startsAt": starts(&app, hours * HOUR, 0)});
    let undated = listed_json(&app, &seller, json!({})).await;
    let far = listed_json(&app, &seller, dated(48)).await;
    let past_early = listed_json(&app, &seller, dated(1)).await;
    let near = listed_json(&app, &seller, dated(24)).await;
    let past_late = listed_json(&app, &seller, dated(2)).await;
    for ticket in [&undated, &far, &past_early, &near, &past_late] {
        app.sold_to(ticket, &buyer).await;
    }
    app.system.context.clock.advance(3 * HOUR);
    let held: Vec<String> =
        app.held(&buyer).await.iter().map(|t| id(t).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        held,
        [id(&near), id(&far), id(&past_late), id(&past_early), id(&undated)],
        "upcoming (soonest first), past (latest first), undated"
    );
}

async fn a_listing_that_ends_unsold_lets_go_of_its_pass(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, buyer) = (app.user("seller"), app.user("buyer"));
    let start = starts(&app, HOUR, 0);
    let code = barcode();
    let body = json!({"title": "Concert", "price": 20, "barcode": code, "startsAt": start});
    let response = app.create(Some(&seller), &body).await;
    assert_eq!(response.status(), 201);
    let unsold: Value = response.json().await.expect("json");
    let sold = listed_json(&app, &seller, json!({"startsAt": starts(&app, 2 * HOUR, 0)})).await;
    app.sold_to(&sold, &buyer).await;
    let again: Value =
        app.resell(Some(&buyer), id(&sold), json!(20)).await.json().await.expect("json");
    assert_eq!(app.held(&buyer).await[0]["passState"], "relisted");

    start_event_of(&app, &unsold, 3 * HOUR).await;
    start_event_of(&app, &again, Duration::ZERO).await;
    assert_eq!(app.pass(Some(&seller), id(&unsold)).await.status(), 404, "nobody's now");
    let later = json!({"title": "Concert", "price": 20, "barcode": code});
    assert_eq!(
        app.create(Some(&seller), &later).await.status(),
        201,
        "its barcode is no longer on a live listing"
    );
    let held = app.held(&buyer).await;
    assert_eq!(
        (held[0]["passState"].clone(), held[0].get("resaleId")),
        (json!("held"), None),
        "the resale ended unsold: the ticket is its holder's again"
    );
    assert_eq!(app.pass(Some(&buyer), id(&again)).await.status(), 404);
    assert_eq!(app.pass(Some(&buyer), id(&sold)).await.status(), 200);
}

testkit::stack_tests!(
    a_listing_sent_as_a_form_takes_its_event_under_the_json_rules,
    a_resale_carries_the_event_over_under_the_cap_of_its_face_value,
    the_markup_setting_raises_the_cap_of_a_resale,
    my_tickets_list_upcoming_events_first_then_past_then_undated,
    a_listing_that_ends_unsold_lets_go_of_its_pass,
);
