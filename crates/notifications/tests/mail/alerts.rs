//! Alerts (issue 26): the API's contract (each refusal, the limit of 20,
//! another's alert), and the e-mails a listing going on sale decides — to
//! each alert it matches once, never to its seller, at most once an hour
//! per alert, also when it comes back on sale — and the seller's "did not
//! sell" when its event started unsold.

use std::time::Duration;

use common::time::Timestamp;
use reqwest::Method;
use serde_json::json;
use testkit::{Stack, error_of, field_error, general_error};

use crate::helpers::{Listed, MailApp, PUBLIC_URL};

/// A date `days` from now, `YYYY-MM-DD`.
fn day(days: i64) -> String {
    let at = Timestamp::from_millis(Timestamp::now().millis() + days * 24 * 3600 * 1000);
    at.to_string()[..10].to_owned()
}

async fn alerts_are_saved_listed_and_deleted_by_their_owner(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let (ann, bob) = (app.member("ann").await, app.member("bob").await);
    let response = app
        .create_alert(
            &ann,
            json!({"q": " Rock  fest ", "minPrice": "10", "maxPrice": "60.50", "from": day(1), "to": day(40)}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let alert: serde_json::Value = response.json().await.expect("an alert");
    assert_eq!(alert["q"], "Rock  fest");
    assert_eq!((alert["minPrice"].clone(), alert["maxPrice"].clone()), (json!(10), json!(60.5)));
    assert!(alert["to"].as_str().expect("to").ends_with("T23:59:59.999Z"), "{alert}");
    assert_eq!(app.alerts(&ann).await, vec![alert.clone()]);
    assert!(app.alerts(&bob).await.is_empty());

    let path = format!("/api/alerts/{}", alert["id"].as_str().expect("id"));
    let delete = |user| app.system.send(Method::DELETE, &path, Some(user), None);
    let (status, body) = error_of(delete(&bob).await).await;
    assert_eq!((status, body), (404, general_error("Not Found")));
    assert_eq!(delete(&ann).await.status(), 204);
    assert!(app.alerts(&ann).await.is_empty());
    assert_eq!(delete(&ann).await.status(), 404);
    let odd = app.system.send(Method::DELETE, "/api/alerts/nope", Some(&ann), None).await;
    assert_eq!(odd.status(), 404);
    let anonymous = app.system.send(Method::GET, "/api/alerts", None, None).await;
    assert_eq!(anonymous.status(), 401);
    let routes = [("/api/alerts", "post"), ("/api/alerts", "get"), ("/api/alerts/{id}", "delete")];
    app.system.server.assert_documented(&routes).await;
}

async fn each_invalid_filter_is_refused_with_the_listings_message(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let ann = app.member("ann").await;
    let cases = [
        (json!({}), field_error("q", "Search must contain a word")),
        (json!({"q": " -- !! "}), field_error("q", "Search must contain a word")),
        (json!({"q": "x".repeat(101)}), field_error("q", "Search must be at most 100 characters")),
        (
            json!({"q": "rock", "minPrice": "abc"}),
            field_error("minPrice", "MinPrice must be a valid price"),
        ),
        (
            json!({"q": "rock", "maxPrice": "1e3"}),
            field_error("maxPrice", "MaxPrice must be a valid price"),
        ),
        (
            json!({"q": "rock", "minPrice": "20", "maxPrice": "10"}),
            field_error("minPrice", "MinPrice must not be greater than MaxPrice"),
        ),
        (
            json!({"q": "rock", "from": "14/03/2027"}),
            field_error("from", "From must be a date (YYYY-MM-DD) or an RFC 3339 date and time"),
        ),
        (
            json!({"q": "rock", "to": "soon"}),
            field_error("to", "To must be a date (YYYY-MM-DD) or an RFC 3339 date and time"),
        ),
        (
            json!({"q": "rock", "from": day(10), "to": day(5)}),
            field_error("from", "From must not be later than To"),
        ),
        (json!({"q": "rock", "to": day(-1)}), field_error("to", "To must be in the future")),
    ];
    for (body, expected) in cases {
        let (status, error) = error_of(app.create_alert(&ann, body.clone()).await).await;
        assert_eq!((status, error), (400, expected), "{body}");
    }
    let (status, error) =
        error_of(app.create_alert(&ann, json!({"q": "", "minPrice": "x"})).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["errors"].as_array().map(Vec::len), Some(1), "the price is named: {error}");
    assert!(app.alerts(&ann).await.is_empty(), "nothing saved");
    let body = json!({"q": "rock"});
    let anonymous = app.system.send(Method::POST, "/api/alerts", None, Some(&body)).await;
    assert_eq!(anonymous.status(), 401);
}

async fn a_user_keeps_at_most_20_alerts_that_have_not_ended(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let ann = app.member("ann").await;
    app.alert(&ann, json!({"q": "soon", "to": day(2)})).await;
    for n in 1..20 {
        app.alert(&ann, json!({"q": format!("band {n}")})).await;
    }
    let (status, error) = error_of(app.create_alert(&ann, json!({"q": "one more"})).await).await;
    assert_eq!((status, error), (400, general_error("You can keep at most 20 alerts")));

    // An alert ends at its `to`: it is no longer listed nor counted.
    app.advance(Duration::from_secs(4 * 24 * 3600));
    let alerts = app.alerts(&ann).await;
    assert_eq!(alerts.len(), 19);
    assert!(alerts.iter().all(|alert| alert["q"] != "soon"));
    app.alert(&ann, json!({"q": "one more"})).await;
}

async fn a_matching_listing_mails_the_alert_owner_once(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let (ann, seller) = (app.member("ann").await, app.member("seller").await);
    app.alert(&ann, json!({"q": "roc FEST", "maxPrice": "50"})).await;
    let listing = Listed::new(seller.id, "Rock Festival", 4550);
    let created = listing.created();
    app.publish(&created).await;
    // Delivered and handled again: nothing more.
    app.publish(&created).await;
    let handled = notifications::listeners::ticket_created(app.room.clone(), created.clone()).await;
    assert_eq!(handled.expect("handled"), messaging::Handled::Ack);

    let mail = app.mail_to(&ann.email).await;
    assert_eq!(mail.len(), 1, "one e-mail");
    assert_eq!(mail[0].header("Subject"), "A ticket you want is on sale: Rock Festival");
    let link = format!("{PUBLIC_URL}/tickets/{}", listing.id);
    assert!(mail[0].part("text/plain").contains(&link), "{}", mail[0].part("text/plain"));
    assert!(mail[0].part("text/html").contains(&format!("href=\"{link}\"")));
    assert!(mail[0].part("text/plain").contains("$45.50"));
    assert!(app.mail_to(&seller.email).await.is_empty(), "the seller has no alert");
}

async fn a_listing_the_alert_does_not_describe_mails_nobody(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let (ann, seller) = (app.member("ann").await, app.member("seller").await);
    app.alert(&ann, json!({"q": "rock fest", "maxPrice": "50", "to": day(60)})).await;
    let mut undated = Listed::new(seller.id, "Rock Festival", 1000);
    undated.starts_at = None;
    let mut later = Listed::new(seller.id, "Rock Festival", 1000);
    later.starts_at = Some(format!("{}T20:00:00Z", day(90)));
    for listing in [
        Listed::new(seller.id, "Bedrock Festival", 1000),
        Listed::new(seller.id, "Rock Night", 1000),
        Listed::new(seller.id, "Rock Festival", 5001),
        undated,
        later,
    ] {
        app.publish(&listing.created()).await;
    }
    assert!(app.mail_to(&ann.email).await.is_empty());

    // The venue counts as the listing's search does.
    let mut at_venue = Listed::new(seller.id, "Rock night", 1000);
    at_venue.venue = Some("Festival Hall".into());
    app.publish(&at_venue.created()).await;
    assert_eq!(app.mail_to(&ann.email).await.len(), 1);
}

async fn the_sellers_own_listing_is_not_announced_to_them(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let ann = app.member("ann").await;
    app.alert(&ann, json!({"q": "rock"})).await;
    app.publish(&Listed::new(ann.id, "Rock Festival", 1000).created()).await;
    assert!(app.mail_to(&ann.email).await.is_empty());
}

async fn an_alert_is_mailed_at_most_once_an_hour(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let (ann, bob, seller) =
        (app.member("ann").await, app.member("bob").await, app.member("seller").await);
    app.alert(&ann, json!({"q": "rock"})).await;
    app.publish(&Listed::new(seller.id, "Rock One", 1000).created()).await;
    app.alert(&bob, json!({"q": "rock"})).await;
    app.publish(&Listed::new(seller.id, "Rock Two", 1000).created()).await;
    let subjects = |mail: Vec<crate::helpers::Parsed>| {
        mail.iter().map(|m| m.header("Subject")).collect::<Vec<_>>()
    };
    assert_eq!(subjects(app.mail_to(&ann.email).await), ["A ticket you want is on sale: Rock One"]);
    assert_eq!(subjects(app.mail_to(&bob.email).await), ["A ticket you want is on sale: Rock Two"]);

    app.advance(Duration::from_secs(3600));
    app.publish(&Listed::new(seller.id, "Rock Three", 1000).created()).await;
    assert_eq!(app.mail_to(&ann.email).await.len(), 2, "an hour later, again");
    assert_eq!(app.mail_to(&bob.email).await.len(), 2);
}

async fn a_ticket_back_on_sale_is_announced(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let (ann, seller) = (app.member("ann").await, app.member("seller").await);
    let listing = Listed::new(seller.id, "Jazz Night", 2000);
    app.publish(&listing.created()).await;
    app.alert(&ann, json!({"q": "jazz"})).await;
    let order = uuid::Uuid::now_v7();
    app.publish(&listing.updated(1, Some(order), false)).await;
    assert!(app.mail_to(&ann.email).await.is_empty(), "reserved: not on sale");

    // The reservation is released (the order expired): on sale again.
    app.publish(&listing.updated(2, None, false)).await;
    assert_eq!(app.mail_to(&ann.email).await.len(), 1);

    // A late, stale copy of the reservation changes nothing, and an edit
    // of a listing already on sale announces nothing.
    app.advance(Duration::from_secs(2 * 3600));
    app.publish(&listing.updated(1, Some(order), false)).await;
    app.publish(&listing.updated(3, None, false)).await;
    assert_eq!(app.mail_to(&ann.email).await.len(), 1);
}

async fn a_listing_that_ended_unsold_tells_its_seller(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let seller = app.member("seller").await;
    let listing = Listed::new(seller.id, "Opera Gala", 9000);
    app.publish(&listing.created()).await;
    let ended = listing.updated(1, None, true);
    app.publish(&ended).await;
    app.publish(&ended).await;
    let mail = app.mail_to(&seller.email).await;
    assert_eq!(mail.len(), 1, "once");
    assert_eq!(mail[0].header("Subject"), "Your ticket Opera Gala did not sell");
    assert!(mail[0].part("text/plain").contains(&format!("{PUBLIC_URL}/tickets/mine")));
    assert!(mail[0].part("text/html").contains(&format!("href=\"{PUBLIC_URL}/tickets/mine\"")));
}

testkit::stack_tests!(
    alerts_are_saved_listed_and_deleted_by_their_owner,
    each_invalid_filter_is_refused_with_the_listings_message,
    a_user_keeps_at_most_20_alerts_that_have_not_ended,
    a_matching_listing_mails_the_alert_owner_once,
    a_listing_the_alert_does_not_describe_mails_nobody,
    the_sellers_own_listing_is_not_announced_to_them,
    an_alert_is_mailed_at_most_once_an_hour,
    a_ticket_back_on_sale_is_announced,
    a_listing_that_ended_unsold_tells_its_seller,
);
