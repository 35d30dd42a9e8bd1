//! A purchase's e-mails (issue 26): one receipt to the buyer and one
//! "sold" to the seller at a real SMTP server, with the right headers,
//! both parts and absolute links; exactly once under redelivery; mail to
//! an address not known yet waits for it; the files transport.

use messaging::Handled;
use messaging::events::UserCreated;
use notifications::domain::{MailKind, MailState, mail_key, message_id};
use notifications::listeners;
use testkit::Stack;

use crate::helpers::{MailApp, Outlet, PUBLIC_URL, Parsed, Sale};

fn key(sale: &Sale, kind: MailKind) -> String {
    let recipient = match kind {
        MailKind::Receipt => sale.buyer.0,
        _ => sale.seller.0,
    };
    mail_key(sale.completed.id, kind, recipient)
}

async fn a_purchase_mails_the_buyer_a_receipt_and_the_seller_a_sold_notice(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    assert_eq!(app.deliver().await, 2);

    let mut received = app.sink.received();
    assert_eq!(received.len(), 2, "{received:?}");
    received.sort_by_key(|message| message.to[0] != sale.buyer.1);
    let (receipt, sold) = (&received[0], &received[1]);
    assert_eq!(receipt.from, "no-reply@localhost");
    assert_eq!(
        (receipt.to.as_slice(), sold.to.as_slice()),
        (&[sale.buyer.1.clone()][..], &[sale.seller.1.clone()][..])
    );

    let receipt = Parsed::new(&receipt.data);
    assert_eq!(receipt.header("From"), "Ticketing <no-reply@localhost>");
    assert_eq!(receipt.header("To"), sale.buyer.1);
    assert_eq!(receipt.header("Subject"), "Your ticket for Concert");
    let host = "tickets.example.com";
    assert_eq!(receipt.header("Message-ID"), message_id(&key(&sale, MailKind::Receipt), host));
    assert!(receipt.header("Content-Type").starts_with("multipart/alternative"));
    let text = receipt.part("text/plain");
    let html = receipt.part("text/html");
    for body in [text, html] {
        assert!(body.contains("Saturday 14 March 2026, 20:00 (UTC+01:00)"), "{body}");
        assert!(body.contains("$45.50"), "{body}");
    }
    assert!(text.contains(&format!("\n{PUBLIC_URL}/tickets/held\n")), "{text}");
    assert!(html.contains(&format!("href=\"{PUBLIC_URL}/tickets/held\"")), "{html}");

    let sold = Parsed::new(&sold.data);
    assert_eq!(sold.header("To"), sale.seller.1);
    assert_eq!(sold.header("Subject"), "Your ticket Concert sold");
    assert_eq!(sold.header("Message-ID"), message_id(&key(&sale, MailKind::Sold), host));
    assert!(sold.part("text/plain").contains(&format!("{PUBLIC_URL}/payouts")));
    assert!(sold.part("text/html").contains(&format!("href=\"{PUBLIC_URL}/payouts\"")));
    assert_eq!(app.count(MailState::Sent).await, 2);
}

async fn events_handled_again_send_nothing_more(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    app.deliver().await;
    assert_eq!(app.sink.received().len(), 2);

    // Delivered again by the bus (JetStream drops the copy in its window),
    // and handled again by the listener itself, as after a lost ack.
    app.publish(&sale.completed).await;
    app.publish(&sale.created).await;
    for _ in 0..2 {
        let handled = listeners::order_completed(app.room.clone(), sale.completed.clone()).await;
        assert_eq!(handled.expect("handled"), Handled::Ack);
    }
    assert_eq!(app.deliver().await, 0, "nothing new to deliver");
    assert_eq!(app.sink.received().len(), 2);
    assert_eq!(app.count(MailState::Sent).await, 2);
}

async fn mail_to_an_address_not_known_yet_waits_for_it(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let seller = app.user("seller").await;
    let buyer_id = uuid::Uuid::now_v7();
    let buyer = (buyer_id, format!("late-{}@example.com", buyer_id.simple()));
    let sale = app.sale_between(buyer.clone(), seller).await;
    app.complete(&sale).await;
    app.deliver().await;
    assert_eq!(app.sink.received().len(), 1, "the seller's only");
    assert_eq!(app.count(MailState::WaitingAddress).await, 1);

    let announced = messaging::Envelope::with_id(
        UserCreated::event_id(buyer.0),
        UserCreated { id: buyer.0, email: buyer.1.clone() },
    );
    app.publish(&announced).await;
    app.deliver().await;
    let received = app.sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].to, [buyer.1]);
    assert_eq!(Parsed::new(&received[1].data).header("Subject"), "Your ticket for Concert");
    assert_eq!(app.count(MailState::WaitingAddress).await, 0);
}

/// A decision that read "no address" while the recipient's `user.created`
/// was being applied beside it (PostgreSQL runs both at once) is not
/// stranded: the sender gives it the address it finds.
async fn mail_that_raced_its_recipients_address_is_released_by_the_sender(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let seller = app.user("seller").await;
    let buyer_id = uuid::Uuid::now_v7();
    let buyer = (buyer_id, format!("racing-{}@example.com", buyer_id.simple()));
    let sale = app.sale_between(buyer.clone(), seller).await;
    app.complete(&sale).await;
    assert_eq!(app.count(MailState::WaitingAddress).await, 1);
    // The user as the racing listener stored it, after the decision read.
    common::db::query("INSERT INTO users (id, email) VALUES ($1, $2)")
        .bind(buyer.0.to_string())
        .bind(buyer.1.as_str())
        .execute(app.store.db.writer())
        .await
        .expect("the user");
    app.deliver().await;
    let to: Vec<Vec<String>> = app.sink.received().into_iter().map(|m| m.to).collect();
    assert!(to.contains(&vec![buyer.1]), "{to:?}");
    assert_eq!(app.count(MailState::WaitingAddress).await, 0);
}

async fn a_sale_older_than_a_day_is_not_announced(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    let mut late = sale.completed.clone();
    let day_and_minute = (listeners::STALE_AFTER.as_millis() + 60_000) as i64;
    late.occurred_at =
        common::time::Timestamp::from_millis(late.occurred_at.millis() - day_and_minute);
    app.publish(&late).await;
    assert_eq!(app.deliver().await, 0);
    assert_eq!(app.count(MailState::Pending).await + app.count(MailState::Sent).await, 0);
    let recent = messaging::Envelope::new(sale.completed.data.clone());
    app.publish(&recent).await;
    assert_eq!(app.deliver().await, 2, "a day is the limit, not a sale's age");
}

async fn a_completion_before_its_order_waits_for_the_order(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let (buyer, seller) = (app.user("buyer").await, app.user("seller").await);
    let sale = app.sale_between(buyer, seller).await;
    let handled = listeners::order_completed(app.room.clone(), {
        let mut early = sale.completed.clone();
        early.data.id = uuid::Uuid::now_v7();
        early
    })
    .await;
    assert_eq!(handled.expect("handled"), Handled::Retry, "its order.created is on its way");
}

async fn the_files_transport_writes_one_eml_file_per_message(stack: Stack) {
    let app = MailApp::spawn_into(stack, Outlet::Files).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    assert_eq!(app.deliver().await, 2);
    let mut names: Vec<String> = std::fs::read_dir(&app.mail_dir)
        .expect("the mail directory")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = [MailKind::Receipt, MailKind::Sold]
        .iter()
        .map(|kind| format!("{}.eml", key(&sale, *kind).replace(':', "_")))
        .collect();
    expected.sort();
    assert_eq!(names, expected, "one file per message, no temporary file left");
    let receipt = std::fs::read_to_string(app.mail_dir.join(&expected[0])).expect("a message");
    let parsed = Parsed::new(&receipt);
    assert!(parsed.header("Subject").starts_with("Your ticket"), "{receipt}");
    assert!(parsed.part("text/html").contains(PUBLIC_URL));
    assert!(app.sink.received().is_empty(), "nothing sent");
}

async fn the_service_delivers_on_its_own(stack: Stack) {
    let app = MailApp::spawn_with(stack, Outlet::Sink, true).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sink.received().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not delivered within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.sink.received().len(), 2);
}

testkit::stack_tests!(
    a_purchase_mails_the_buyer_a_receipt_and_the_seller_a_sold_notice,
    events_handled_again_send_nothing_more,
    mail_to_an_address_not_known_yet_waits_for_it,
    mail_that_raced_its_recipients_address_is_released_by_the_sender,
    a_completion_before_its_order_waits_for_the_order,
    a_sale_older_than_a_day_is_not_announced,
    the_files_transport_writes_one_eml_file_per_message,
    the_service_delivers_on_its_own,
);
