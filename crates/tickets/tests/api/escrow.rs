//! The ticket itself, held in escrow (issue 24, API.md "The ticket
//! itself"): listed with a barcode and/or a file, read only by its holder,
//! handed to the buyer, never live twice, sold again.

use messaging::events::{TicketCreated, TicketUpdated};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use testkit::{Stack, TestUser};
use uuid::Uuid;

use crate::helpers::{TicketsApp, id};

/// A small PDF.
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

/// A fresh barcode (unique per test run: the scaled stack's database may be
/// shared by several runs).
fn barcode() -> String {
    format!("BC-{}", Uuid::now_v7().simple())
}

/// The form a seller sends: title, price, barcode, and a file when given.
fn form(barcode: &str, file: Option<(&'static str, Vec<u8>)>) -> Form {
    let form = Form::new()
        .text("title", "Concert")
        .text("price", "25")
        .text("barcode", barcode.to_owned());
    match file {
        Some((name, bytes)) => form.part("file", Part::bytes(bytes).file_name(name)),
        None => form,
    }
}

async fn listed(app: &TicketsApp, seller: &TestUser, form: Form) -> Value {
    let response = app.sell_form(Some(seller), form).await;
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

async fn errors(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.expect("json");
    body["errors"].clone()
}

async fn a_ticket_with_a_barcode_and_a_file_is_handed_to_its_buyer_alone(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, buyer, other) = (app.user("seller"), app.user("buyer"), app.user("other"));
    let code = barcode();
    let ticket =
        listed(&app, &seller, form(&format!("  {code} "), Some(("my ticket.pdf", PDF.to_vec()))))
            .await;
    assert_eq!(ticket["title"], "Concert");

    let seen: Value = app.pass(Some(&seller), id(&ticket)).await.json().await.expect("json");
    assert_eq!(seen["barcode"], json!(code), "the seller reads an unsold listing's pass, trimmed");
    assert_eq!(
        seen["file"],
        json!({"type": "application/pdf", "size": PDF.len(), "name": "my ticket.pdf"})
    );
    assert_eq!(app.pass(Some(&buyer), id(&ticket)).await.status(), 404);
    assert_eq!(app.pass(None, id(&ticket)).await.status(), 401);
    assert_eq!(app.pass_file(Some(&other), id(&ticket)).await.status(), 404);

    let order = app.sold_to(&ticket, &buyer).await;
    let pass: Value = app.pass(Some(&buyer), id(&ticket)).await.json().await.expect("json");
    assert_eq!(pass, json!({"ticketId": id(&ticket), "barcode": code, "file": seen["file"]}));
    let file = app.pass_file(Some(&buyer), id(&ticket)).await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(file.headers()["content-disposition"], "attachment; filename=\"my ticket.pdf\"");
    assert_eq!(file.headers()["cache-control"], "private, no-store");
    assert_eq!(file.bytes().await.expect("bytes").as_ref(), PDF);

    for someone in [&seller, &other] {
        assert_eq!(
            app.pass(Some(someone), id(&ticket)).await.status(),
            404,
            "sold: the buyer's alone"
        );
        assert_eq!(app.pass_file(Some(someone), id(&ticket)).await.status(), 404);
    }
    let held = app.held(&buyer).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["id"], ticket["id"]);
    assert_eq!(held[0]["orderId"], json!(order));
    assert_eq!(held[0]["passState"], "held");
    assert_eq!(held[0]["pass"], json!({"barcode": true, "file": seen["file"]}));
    assert!(app.held(&seller).await.is_empty());
    assert!(held[0].get("barcode").is_none());
}

async fn a_json_client_lists_with_the_barcode_alone(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let code = barcode();
    let response =
        app.create(Some(&seller), &json!({"title": "t", "price": 10, "barcode": code})).await;
    assert_eq!(response.status(), 201);
    let ticket: Value = response.json().await.expect("json");
    let pass: Value = app.pass(Some(&seller), id(&ticket)).await.json().await.expect("json");
    assert_eq!((pass["barcode"].clone(), pass["file"].clone()), (json!(code), Value::Null));
    assert_eq!(app.pass_file(Some(&seller), id(&ticket)).await.status(), 404, "no file");
    let plain = app.ticket(&seller, "no pass", json!(5)).await;
    assert_eq!(app.pass(Some(&seller), id(&plain)).await.status(), 404, "no pass at all");
}

async fn the_barcode_and_file_never_leave_the_escrow(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let created = app.record::<TicketCreated>().await;
    let updated = app.record::<TicketUpdated>().await;
    let seller = app.user("seller");
    let code = barcode();
    let secret_pdf = [PDF, code.as_bytes()].concat();
    let ticket = listed(&app, &seller, form(&code, Some(("t.pdf", secret_pdf)))).await;
    app.sold_to(&ticket, &app.user("buyer")).await;
    app.system.drain().await;

    let mut seen = serde_json::to_string(&created.all()).expect("json")
        + &serde_json::to_string(&updated.all()).expect("json");
    assert!(seen.contains(id(&ticket)), "the events were recorded");
    for path in ["/api/tickets".to_owned(), format!("/api/tickets/{}", id(&ticket))] {
        seen += &app
            .system
            .send(reqwest::Method::GET, &path, None, None)
            .await
            .text()
            .await
            .expect("text");
    }
    seen += &serde_json::to_string(&app.mine_listed(&seller).await).expect("json");
    assert!(!seen.contains(&code), "the barcode is in an event or a listing: {seen}");

    type Sealed = (Option<Vec<u8>>, Option<Vec<u8>>);
    let stored: Vec<Sealed> = common::db::query("SELECT barcode, file FROM passes")
        .fetch_all(app.db().await.reader())
        .await
        .expect("rows")
        .iter()
        .map(|row| (row.try_get("barcode").expect("barcode"), row.try_get("file").expect("file")))
        .collect();
    for (barcode, file) in stored.into_iter().filter(|(b, _)| b.is_some()) {
        for sealed in [barcode.expect("barcode"), file.expect("file")] {
            assert!(!sealed.windows(code.len()).any(|w| w == code.as_bytes()), "stored in clear");
            assert!(!sealed.starts_with(b"%PDF"));
        }
    }
}

async fn bad_uploads_are_refused_and_leave_nothing_behind(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let code = barcode();
    let too_big = [PDF.to_vec(), vec![b' '; 2 * 1024 * 1024]].concat();
    let response = app.sell_form(Some(&seller), form(&code, Some(("big.pdf", too_big)))).await;
    assert_eq!(response.status(), 413);
    assert_eq!(errors(response).await[0]["field"], "file");

    let html = b"<html>%PDF-</html>".to_vec();
    let response = app.sell_form(Some(&seller), form(&code, Some(("fake.pdf", html)))).await;
    assert_eq!(response.status(), 415, "the type comes from the bytes, not the name");
    assert_eq!(
        errors(response).await,
        json!([{"message": "File must be a PDF, PNG or JPEG", "field": "file"}])
    );

    for short_or_long in ["abc".to_owned(), "x".repeat(513)] {
        let response = app.sell_form(Some(&seller), form(&short_or_long, None)).await;
        assert_eq!(response.status(), 400);
        assert_eq!(
            errors(response).await,
            json!([{"message": "Barcode must be between 4 and 512 characters", "field": "barcode"}])
        );
        let json = json!({"title": "t", "price": 1, "barcode": short_or_long});
        assert_eq!(app.create(Some(&seller), &json).await.status(), 400);
    }
    let text = app.system.request(reqwest::Method::POST, "/api/tickets", Some(&seller)).body("x");
    assert_eq!(text.header("content-type", "text/plain").send().await.expect("sent").status(), 415);
    let response = app.sell_form(None, form(&code, Some(("t.pdf", PDF.to_vec())))).await;
    assert_eq!(response.status(), 401);

    assert!(app.mine_listed(&seller).await.is_empty(), "no ticket was stored");
    let db = app.db().await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move { common::db::query_scalar::<i64>(sql).fetch_one(db.reader()).await.expect("count") }
    };
    let mine = seller.id.to_string();
    let passes: i64 = common::db::query_scalar("SELECT COUNT(*) FROM passes WHERE holder_id = $1")
        .bind(mine)
        .fetch_one(db.reader())
        .await
        .expect("count");
    assert_eq!(passes, 0, "no pass was stored");
    let orphans = count(
        "SELECT COUNT(*) FROM title_prefixes WHERE ticket_id NOT IN (SELECT id FROM tickets)",
    )
    .await;
    assert_eq!(orphans, 0, "no search rows were stored");
    // The same barcode, refused before, lists now.
    listed(&app, &seller, form(&code, Some(("t.png", b"\x89PNG\r\n\x1a\nrest".to_vec())))).await;
}

async fn a_barcode_on_a_live_listing_or_holding_cannot_be_listed_again(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, other, buyer) = (app.user("seller"), app.user("other"), app.user("buyer"));
    let code = barcode();
    let ticket = listed(&app, &seller, form(&code, None)).await;
    for (who, sent) in [(&other, format!("\t{code}  ")), (&seller, code.clone())] {
        let response = app.sell_form(Some(who), form(&sent, None)).await;
        assert_eq!(response.status(), 409);
        let message = "This ticket is already listed or held by someone";
        assert_eq!(errors(response).await, json!([{"message": message, "field": "barcode"}]));
    }
    let json = json!({"title": "t", "price": 1, "barcode": code});
    assert_eq!(app.create(Some(&other), &json).await.status(), 409);
    assert!(app.mine_listed(&other).await.is_empty(), "the refused listing left nothing");

    app.sold_to(&ticket, &buyer).await;
    let response = app.sell_form(Some(&seller), form(&code, None)).await;
    assert_eq!(response.status(), 409, "held by its buyer: nobody lists it");

    let withdrawn = listed(&app, &seller, form(&barcode(), None)).await;
    assert_eq!(app.withdraw(Some(&seller), id(&withdrawn)).await.status(), 204);
    assert_eq!(app.pass(Some(&seller), id(&withdrawn)).await.status(), 404, "withdrawn: gone");
}

/// Two sellers list the same barcode at once, again and again: exactly one
/// of each pair is listed (the unique index decides, also on PostgreSQL
/// where the two transactions run side by side).
async fn two_concurrent_listings_of_one_barcode_cannot_both_pass(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let sellers: Vec<TestUser> = (0..4).map(|i| app.user(&format!("s{i}"))).collect();
    for _ in 0..10 {
        let code = barcode();
        let statuses = futures_util::future::join_all(
            sellers.iter().map(|s| app.sell_form(Some(s), form(&code, None))),
        )
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect::<Vec<_>>();
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [201, 409, 409, 409], "{statuses:?}");
    }
}

async fn a_bought_ticket_is_sold_again_and_its_previous_buyer_loses_it(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, second, third) = (app.user("seller"), app.user("second"), app.user("third"));
    let code = barcode();
    let first = listed(&app, &seller, form(&code, Some(("t.pdf", PDF.to_vec())))).await;
    app.sold_to(&first, &second).await;

    assert_eq!(
        app.resell(Some(&seller), id(&first), json!(30)).await.status(),
        404,
        "not the seller's"
    );
    assert_eq!(app.resell(Some(&third), id(&first), json!(30)).await.status(), 404);
    assert_eq!(app.resell(None, id(&first), json!(30)).await.status(), 401);
    assert_eq!(app.resell(Some(&second), id(&first), json!(-1)).await.status(), 400);
    let response = app.resell(Some(&second), id(&first), json!(30)).await;
    assert_eq!(response.status(), 201);
    let again: Value = response.json().await.expect("json");
    assert_eq!((again["title"].clone(), again["price"].clone()), (json!("Concert"), json!(30)));
    assert_eq!(
        (again["userId"].clone(), again["status"].clone()),
        (json!(second.id), json!("available"))
    );
    let twice = app.resell(Some(&second), id(&first), json!(30)).await;
    assert_eq!(twice.status(), 400, "already on sale again");

    let held = app.held(&second).await;
    assert_eq!(
        (held[0]["passState"].clone(), held[0]["resaleId"].clone()),
        (json!("relisted"), again["id"].clone())
    );
    let kept: Value = app.pass(Some(&second), id(&first)).await.json().await.expect("json");
    assert_eq!(kept["barcode"], json!(code), "kept until the new listing sells");
    let offered: Value = app.pass(Some(&second), id(&again)).await.json().await.expect("json");
    assert_eq!(offered["barcode"], json!(code));

    app.sold_to(&again, &third).await;
    let bought: Value = app.pass(Some(&third), id(&again)).await.json().await.expect("json");
    assert_eq!(bought["barcode"], json!(code), "the same ticket, carried over");
    let file = app.pass_file(Some(&third), id(&again)).await;
    assert_eq!(file.bytes().await.expect("bytes").as_ref(), PDF);
    for listing in [&first, &again] {
        assert_eq!(
            app.pass(Some(&second), id(listing)).await.status(),
            404,
            "the previous buyer lost it"
        );
    }
    assert!(app.held(&second).await.is_empty());
    assert_eq!(app.held(&third).await.len(), 1);
    assert_eq!(app.sell_form(Some(&second), form(&code, None)).await.status(), 409);
}

async fn a_resale_withdrawn_unsold_gives_the_ticket_back_to_its_holder(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, buyer) = (app.user("seller"), app.user("buyer"));
    let code = barcode();
    let first = listed(&app, &seller, form(&code, None)).await;
    app.sold_to(&first, &buyer).await;
    let again: Value =
        app.resell(Some(&buyer), id(&first), json!(20)).await.json().await.expect("json");
    assert_eq!(app.withdraw(Some(&buyer), id(&again)).await.status(), 204);
    let held = app.held(&buyer).await;
    assert_eq!((held[0]["passState"].clone(), held[0].get("resaleId")), (json!("held"), None));
    assert_eq!(
        app.pass(Some(&buyer), id(&again)).await.status(),
        404,
        "the withdrawn listing's pass is gone"
    );
    assert_eq!(
        app.resell(Some(&buyer), id(&first), json!(20)).await.status(),
        201,
        "and sells again"
    );
}

/// A key rotation: a replica with the new key (the old one as previous)
/// reads what the old key sealed and still refuses its barcodes; after
/// `reseal`, the new key alone reads everything.
async fn a_rotated_vault_key_reads_the_old_tickets_and_reseals_them(stack: Stack) {
    let (old, new) = ("11".repeat(32), "22".repeat(32));
    let mut app = TicketsApp::spawn_with(stack, |s| {
        s.ticket_vault_key = Some(common::config::Secret::new(old.clone()));
    })
    .await;
    let seller = app.user("seller");
    let code = barcode();
    let ticket = listed(&app, &seller, form(&code, Some(("t.pdf", PDF.to_vec())))).await;

    app.settings.ticket_vault_key = Some(common::config::Secret::new(new.clone()));
    app.settings.ticket_vault_previous_keys = Some(common::config::Secret::new(old.clone()));
    let rotated = app.replica().await;
    let pass = testkit::client()
        .get(rotated.url(&format!("/api/tickets/{}/pass", id(&ticket))))
        .bearer_auth(&seller.token)
        .send()
        .await
        .expect("sent");
    let pass: Value = pass.json().await.expect("json");
    assert_eq!(pass["barcode"], json!(code), "the previous key still opens it");
    let again = testkit::client()
        .post(rotated.url("/api/tickets"))
        .bearer_auth(&app.user("other").token)
        .multipart(form(&code, None))
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 409, "its barcode hashed under the old key is still live");

    let vault = tickets::vault::Vault::from_settings(
        &common::config::Secret::new(new.clone()),
        Some(&common::config::Secret::new(old)),
    )
    .expect("vault");
    let db = app.db().await;
    let (mut after, mut rewritten) = (None, 0);
    loop {
        let batch = tickets::passes::reseal(&db, &vault, after, 1).await.expect("resealed");
        rewritten += batch.rewritten;
        let Some(last) = batch.last else { break };
        after = Some(last);
    }
    assert_eq!(rewritten, 1);
    let only_new = tickets::vault::Vault::from_settings(&common::config::Secret::new(new), None)
        .expect("vault");
    let ticket_id = crate::helpers::id_of(&ticket);
    let stored = tickets::passes::readable(db.reader(), ticket_id, seller.id)
        .await
        .expect("read")
        .expect("a pass");
    assert_eq!(stored.barcode(&only_new).expect("opens").as_deref(), Some(code.as_str()));
    assert_eq!(stored.file(&only_new).expect("opens").expect("a file").1, PDF);
    assert_eq!(stored.barcode_hash, Some(only_new.barcode_hash(&code)));
}

/// A paid order stands even when the seller's withdrawal reached the
/// tickets service first: its buyer gets the ticket, and a resale
/// withdrawn and then sold anyway takes the ticket from its reseller.
async fn a_sale_that_overtook_a_withdrawal_still_hands_the_ticket_over(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let (seller, buyer, third) = (app.user("seller"), app.user("buyer"), app.user("third"));
    let code = barcode();
    let first = listed(&app, &seller, form(&code, Some(("t.pdf", PDF.to_vec())))).await;
    assert_eq!(app.withdraw(Some(&seller), id(&first)).await.status(), 204);
    app.sold_to(&first, &buyer).await;
    let pass: Value = app.pass(Some(&buyer), id(&first)).await.json().await.expect("json");
    assert_eq!(pass["barcode"], json!(code));

    let again: Value =
        app.resell(Some(&buyer), id(&first), json!(20)).await.json().await.expect("json");
    assert_eq!(app.withdraw(Some(&buyer), id(&again)).await.status(), 204);
    assert_eq!(app.held(&buyer).await[0]["passState"], "held", "back with its holder");
    app.sold_to(&again, &third).await;
    let pass: Value = app.pass(Some(&third), id(&again)).await.json().await.expect("json");
    assert_eq!(pass["barcode"], json!(code));
    assert_eq!(app.pass(Some(&buyer), id(&first)).await.status(), 404);
    assert!(app.held(&buyer).await.is_empty());
}

testkit::stack_tests!(
    a_sale_that_overtook_a_withdrawal_still_hands_the_ticket_over,
    a_rotated_vault_key_reads_the_old_tickets_and_reseals_them,
    a_ticket_with_a_barcode_and_a_file_is_handed_to_its_buyer_alone,
    a_json_client_lists_with_the_barcode_alone,
    the_barcode_and_file_never_leave_the_escrow,
    bad_uploads_are_refused_and_leave_nothing_behind,
    a_barcode_on_a_live_listing_or_holding_cannot_be_listed_again,
    two_concurrent_listings_of_one_barcode_cannot_both_pass,
    a_bought_ticket_is_sold_again_and_its_previous_buyer_loses_it,
    a_resale_withdrawn_unsold_gives_the_ticket_back_to_its_holder,
);
