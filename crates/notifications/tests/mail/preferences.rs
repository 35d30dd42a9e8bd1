//! Which e-mails a user gets: the preferences (`GET`/`PUT
//! /api/notifications/preferences`), mail of a kind turned off suppressed
//! when due, the unsubscribe headers and footer of optional mail, and the
//! one-click unsubscribe of the link a received message carries.

use notifications::domain::MailState;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{Stack, TestUser, error_of, field_error, general_error};

use crate::helpers::{MailApp, PUBLIC_URL, Parsed};
use crate::sink::{Answer, Received};

const INVALID_LINK: &str = "This unsubscribe link is not valid";

impl MailApp {
    async fn preferences(&self, user: &TestUser) -> Value {
        let path = "/api/notifications/preferences";
        let response = self.system.send(Method::GET, path, Some(user), None).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    async fn set_preferences(&self, user: &TestUser, body: &Value) -> reqwest::Response {
        let path = "/api/notifications/preferences";
        self.system.send(Method::PUT, path, Some(user), Some(body)).await
    }

    /// A one-click unsubscribe as a mail client posts it (RFC 8058).
    async fn one_click(&self, url: &str) -> reqwest::Response {
        let path = url.strip_prefix(PUBLIC_URL).expect("a link to this site");
        self.system
            .request(Method::POST, path, None)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .expect("sent")
    }

    /// The message the sink took for `address`.
    fn message_to(&self, address: &str) -> Parsed {
        let received: Vec<Received> = self.sink.received();
        let message = received.iter().rev().find(|m| m.to == [address]).expect("a message");
        Parsed::new(&message.data)
    }
}

/// Whether the preferences say `kind` is on.
fn enabled(preferences: &Value, kind: &str) -> bool {
    let kinds = preferences["kinds"].as_array().expect("kinds");
    let found = kinds.iter().find(|k| k["kind"] == kind).expect("the kind is listed");
    found["enabled"].as_bool().expect("a boolean")
}

/// The URL between `<` and `>` of a `List-Unsubscribe` field.
fn link_in(field: &str) -> String {
    field.trim().trim_start_matches('<').trim_end_matches('>').to_owned()
}

async fn every_kind_is_on_until_turned_off_and_the_address_is_shown(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let user = app.signed_in("jane").await;
    let preferences = app.preferences(&user).await;
    assert_eq!(preferences["email"], user.email);
    assert_eq!(preferences["refused"], Value::Null);
    let kinds: Vec<(String, bool, bool)> = preferences["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| {
            assert!(k["description"].as_str().is_some_and(|d| !d.is_empty()), "{k}");
            let flag = |name: &str| k[name].as_bool().expect("a boolean");
            (k["kind"].as_str().expect("a name").to_owned(), flag("essential"), flag("enabled"))
        })
        .collect();
    let expected: Vec<(String, bool, bool)> = [
        ("receipt", true),
        ("refund", true),
        ("payout_frozen", true),
        ("sold", false),
        ("payout_paid", false),
        ("order_expired", false),
        ("listing_ended", false),
        ("reminder", false),
        ("alert", false),
    ]
    .into_iter()
    .map(|(kind, essential)| (kind.to_owned(), essential, true))
    .collect();
    assert_eq!(kinds, expected);

    let stranger = app.system.user("stranger");
    let unknown = app.preferences(&stranger).await;
    assert_eq!(unknown["email"], Value::Null, "no user.created seen for them");
    let path = "/api/notifications/preferences";
    let anonymous = app.system.send(Method::GET, path, None, None).await;
    assert_eq!(error_of(anonymous).await.0, 401);
}

async fn preferences_are_saved_in_part_and_each_refused_field_is_named(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let user = app.signed_in("jane").await;
    let saved = app.set_preferences(&user, &json!({"sold": false, "reminder": false})).await;
    assert_eq!(saved.status(), 200);
    let saved: Value = saved.json().await.expect("JSON");
    assert!(!enabled(&saved, "sold") && !enabled(&saved, "reminder"));
    let again = app.set_preferences(&user, &json!({"reminder": true, "receipt": true})).await;
    assert_eq!(again.status(), 200, "an essential kind may be left on");
    let now = app.preferences(&user).await;
    assert!(!enabled(&now, "sold"), "kinds not named are left as they are");
    assert!(enabled(&now, "reminder") && enabled(&now, "receipt") && enabled(&now, "alert"));

    for (body, field, message) in [
        (json!({"receipt": false}), "receipt", "This e-mail is essential and cannot be turned off"),
        (json!({"newsletter": false}), "newsletter", "There is no such kind of e-mail"),
        (json!({"sold": "off"}), "sold", "Must be true or false"),
        (json!({"alert": null}), "alert", "Must be true or false"),
    ] {
        let refused = app.set_preferences(&user, &body).await;
        assert_eq!(error_of(refused).await, (400, field_error(field, message)), "{body}");
    }
    let two = app.set_preferences(&user, &json!({"refund": false, "sold": 1})).await;
    let (status, errors) = error_of(two).await;
    assert_eq!((status, errors["errors"].as_array().map(Vec::len)), (400, Some(2)));
    let list = app.set_preferences(&user, &json!(["sold"])).await;
    assert_eq!(error_of(list).await, (400, general_error("Invalid request body")));
    let anonymous = app.system.send(Method::PUT, "/api/notifications/preferences", None, None);
    assert_eq!(error_of(anonymous.await).await.0, 401);
    assert!(!enabled(&app.preferences(&user).await, "sold"), "nothing refused was saved");
}

async fn a_kind_turned_off_is_suppressed_while_an_essential_one_still_arrives(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let buyer = app.signed_in("buyer").await;
    let seller = app.signed_in("seller").await;
    let sale =
        app.sale_between((buyer.id, buyer.email.clone()), (seller.id, seller.email.clone())).await;
    app.complete(&sale).await;
    // Turned off after the mail was decided, before it was due: the
    // choice made last counts.
    let off = app.set_preferences(&seller, &json!({"sold": false})).await;
    assert_eq!(off.status(), 200);
    // And a buyer who turns everything optional off still gets receipts.
    let all_off = json!({"sold": false, "payout_paid": false, "reminder": false, "alert": false});
    assert_eq!(app.set_preferences(&buyer, &all_off).await.status(), 200);
    app.deliver().await;
    let to: Vec<Vec<String>> = app.sink.received().into_iter().map(|m| m.to).collect();
    assert_eq!(to, [vec![buyer.email.clone()]], "the receipt alone");
    assert_eq!(app.count(MailState::Suppressed).await, 1);
    assert_eq!(app.count(MailState::Sent).await, 1);
    assert_eq!(app.deliver().await, 0, "a suppressed mail is done with");
}

async fn optional_mail_carries_list_unsubscribe_and_receipts_do_not(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    app.deliver().await;
    let sold = app.message_to(&sale.seller.1);
    let url = link_in(&sold.header("List-Unsubscribe"));
    let prefix = format!("{PUBLIC_URL}/api/notifications/unsubscribe?token=");
    assert!(url.starts_with(&prefix), "{url}");
    let token = &url[prefix.len()..];
    assert!(
        !token.is_empty()
            && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    );
    assert_eq!(sold.header("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    let page = format!("{PUBLIC_URL}/notifications/unsubscribe?token={token}");
    let preferences = format!("{PUBLIC_URL}/notifications");
    let text = sold.part("text/plain");
    assert!(text.contains(&format!("Unsubscribe from these e-mails:\n{page}\n")), "{text}");
    assert!(text.contains(&format!("Manage e-mail preferences:\n{preferences}")), "{text}");
    let html = sold.part("text/html");
    assert!(html.contains(&format!("<a href=\"{page}\">Unsubscribe</a>")), "{html}");
    assert!(html.contains(&format!("<a href=\"{preferences}\">Manage e-mail preferences</a>")));
    assert!(html.find("Unsubscribe") < html.find("</body>"), "inside the body: {html}");

    let receipt = app.message_to(&sale.buyer.1);
    assert!(!receipt.has("List-Unsubscribe") && !receipt.has("List-Unsubscribe-Post"));
    assert!(!receipt.part("text/plain").contains("Unsubscribe"));
    assert!(!receipt.part("text/html").contains("Unsubscribe"));
}

async fn the_one_click_link_of_a_received_message_turns_its_kind_off(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let buyer = app.signed_in("buyer").await;
    let seller = app.signed_in("seller").await;
    let between = || ((buyer.id, buyer.email.clone()), (seller.id, seller.email.clone()));
    let first = app.sale_between(between().0, between().1).await;
    app.complete(&first).await;
    app.deliver().await;
    let url = link_in(&app.message_to(&seller.email).header("List-Unsubscribe"));

    let answer = app.one_click(&url).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!((&body["kind"], &body["enabled"]), (&json!("sold"), &json!(false)));
    assert!(!enabled(&app.preferences(&seller).await, "sold"));
    assert!(enabled(&app.preferences(&buyer).await, "sold"), "the seller's alone");
    // Again, with an empty body: still off, still 200.
    let path = url.strip_prefix(PUBLIC_URL).expect("this site");
    let empty = app.system.request(Method::POST, path, None).send().await.expect("sent");
    assert_eq!(empty.status(), 200);

    let second = app.sale_between(between().0, between().1).await;
    app.complete(&second).await;
    app.deliver().await;
    let to: Vec<Vec<String>> = app.sink.received().into_iter().map(|m| m.to).collect();
    assert_eq!(to.iter().filter(|to| **to == [seller.email.clone()]).count(), 1, "{to:?}");
    assert_eq!(app.count(MailState::Suppressed).await, 1);
}

async fn a_tampered_or_missing_token_is_refused(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    app.deliver().await;
    let url = link_in(&app.message_to(&sale.seller.1).header("List-Unsubscribe"));
    let (payload, signature) = url.rsplit_once('.').expect("a signed token");
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{payload}.{flipped}{}", &signature[1..]);
    let truncated = url[..url.len() - 3].to_owned();
    let garbled = format!("{PUBLIC_URL}/api/notifications/unsubscribe?token=%FF%00not-a-token");
    let missing = format!("{PUBLIC_URL}/api/notifications/unsubscribe");
    for bad in [tampered, truncated, garbled, missing] {
        let answer = app.one_click(&bad).await;
        assert_eq!(error_of(answer).await, (400, field_error("token", INVALID_LINK)), "{bad}");
    }
    let seller = app.session_for(sale.seller.0, &sale.seller.1);
    assert!(enabled(&app.preferences(&seller).await, "sold"), "nothing turned off");
}

async fn a_refused_address_shows_in_the_preferences(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let buyer = app.signed_in("buyer").await;
    let unknown_seller = (uuid::Uuid::now_v7(), "unknown@example.com".to_owned());
    let sale = app.sale_between((buyer.id, buyer.email.clone()), unknown_seller).await;
    app.complete(&sale).await;
    app.sink.answer([Answer::Reply("550 5.1.1 No such user here")]);
    assert_eq!(app.deliver().await, 1, "the receipt alone");
    let refused = app.preferences(&buyer).await["refused"].clone();
    assert!(
        refused["reason"].as_str().is_some_and(|r| r.contains("No such user here")),
        "{refused}"
    );
    let at = refused["refusedAt"].as_str().expect("a time");
    assert!(common::time::Timestamp::parse(at).is_some(), "RFC 3339: {at}");
}

testkit::stack_tests!(
    every_kind_is_on_until_turned_off_and_the_address_is_shown,
    preferences_are_saved_in_part_and_each_refused_field_is_named,
    a_kind_turned_off_is_suppressed_while_an_essential_one_still_arrives,
    optional_mail_carries_list_unsubscribe_and_receipts_do_not,
    the_one_click_link_of_a_received_message_turns_its_kind_off,
    a_tampered_or_missing_token_is_refused,
    a_refused_address_shows_in_the_preferences,
);
