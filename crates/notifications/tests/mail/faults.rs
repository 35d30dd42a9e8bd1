//! An SMTP server that refuses: a 4xx is tried again after the backoff and
//! the message arrives once; a 5xx fails the mail at once and records the
//! address; a lost answer re-sends the same Message-ID; a server that
//! never takes it is given up after the last try, with its reason.

use std::time::Duration;

use notifications::domain::MailState;
use notifications::sender::{MAX_TRIES, retry_after};
use testkit::Stack;

use crate::helpers::{MailApp, Parsed};
use crate::sink::Answer;

/// A sale whose completion decides the buyer's receipt only (the seller's
/// address is unknown, so the "sold" mail waits): one message in play.
async fn one_mail(app: &MailApp) -> String {
    let buyer = app.user("buyer").await;
    let seller = (uuid::Uuid::now_v7(), "unknown@example.com".to_owned());
    let sale = app.sale_between(buyer.clone(), seller).await;
    app.complete(&sale).await;
    buyer.1
}

async fn a_server_answering_4xx_gets_the_message_once_after_a_retry(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    app.sink.answer([Answer::Reply("451 4.3.0 Try again later")]);
    one_mail(&app).await;
    assert_eq!(app.deliver().await, 1);
    assert!(app.sink.received().is_empty());
    assert_eq!(app.count(MailState::Pending).await, 1, "to be tried again");

    app.advance(retry_after(1) - Duration::from_secs(1));
    assert_eq!(app.deliver().await, 0, "not before its backoff");
    app.advance(Duration::from_secs(1));
    assert_eq!(app.deliver().await, 1);
    assert_eq!(app.sink.received().len(), 1);
    app.advance(Duration::from_secs(3600));
    assert_eq!(app.deliver().await, 0);
    assert_eq!(app.sink.received().len(), 1, "once");
    assert_eq!(app.count(MailState::Sent).await, 1);
}

async fn a_5xx_fails_the_mail_at_once_and_records_the_address(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    app.sink.answer([Answer::Reply("550 5.1.1 No such user here")]);
    let address = one_mail(&app).await;
    assert_eq!(app.deliver().await, 1);
    assert_eq!(app.count(MailState::Failed).await, 1);
    let refusal = app.store.refusal(&address).await.expect("read").expect("recorded");
    assert!(refusal.contains("No such user here"), "{refusal}");
    app.advance(Duration::from_secs(24 * 3600));
    assert_eq!(app.deliver().await, 0, "never tried again");
    assert!(app.sink.received().is_empty());
}

async fn a_lost_answer_resends_the_same_message_id(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    app.sink.answer([Answer::HangUp]);
    one_mail(&app).await;
    app.deliver().await;
    assert_eq!(app.sink.received().len(), 1, "the server has it, the sender does not know");
    app.advance(retry_after(1));
    app.deliver().await;
    let received = app.sink.received();
    assert_eq!(received.len(), 2, "at least once");
    let ids: Vec<String> =
        received.iter().map(|message| Parsed::new(&message.data).header("Message-ID")).collect();
    assert_eq!(ids[0], ids[1], "recognisably the same message");
    assert_eq!(app.count(MailState::Sent).await, 1);
}

async fn a_mail_never_taken_is_given_up_after_the_last_try(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let tries = usize::try_from(MAX_TRIES).expect("a count");
    app.sink.answer(vec![Answer::Reply("421 4.7.0 Busy, come back later"); tries]);
    one_mail(&app).await;
    for tried in 1..=MAX_TRIES {
        assert_eq!(app.deliver().await, 1, "try {tried}");
        app.advance(retry_after(tried));
    }
    assert_eq!(app.deliver().await, 0);
    assert_eq!(app.count(MailState::Failed).await, 1);
    assert!(app.sink.received().is_empty());
    let error: String =
        common::db::query_scalar("SELECT last_error FROM outgoing_mail WHERE state = 'failed'")
            .fetch_one(app.store.db.reader())
            .await
            .expect("the reason");
    assert!(error.contains("Busy, come back later"), "{error}");
}

async fn a_server_that_is_down_gets_the_message_once_it_is_back(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    app.sink.set_down(true);
    one_mail(&app).await;
    assert_eq!(app.deliver().await, 1);
    assert_eq!(app.count(MailState::Pending).await, 1, "kept, to be tried again");
    let error: String =
        common::db::query_scalar("SELECT last_error FROM outgoing_mail WHERE state = 'pending'")
            .fetch_one(app.store.db.reader())
            .await
            .expect("the reason");
    assert!(!error.is_empty());
    app.sink.set_down(false);
    app.advance(retry_after(1));
    assert_eq!(app.deliver().await, 1);
    assert_eq!(app.sink.received().len(), 1);
    assert_eq!(app.count(MailState::Sent).await, 1);
}

async fn two_senders_at_once_deliver_each_mail_once(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    let sale = app.sale().await;
    app.complete(&sale).await;
    let other = app.sender.clone();
    let (first, second) = tokio::join!(app.sender.step(), other.step());
    assert_eq!(first.expect("steps") + second.expect("steps"), 2, "each mail claimed once");
    assert_eq!(app.deliver().await, 0);
    assert_eq!(app.sink.received().len(), 2);
}

/// A sender that died between claiming a mail and recording its outcome
/// (a crash, a SIGKILL) holds it no longer than the claim: then another
/// sends it again, under the same Message-ID.
async fn a_claimed_mail_is_left_alone_until_its_claim_runs_out(stack: Stack) {
    let app = MailApp::spawn(stack).await;
    one_mail(&app).await;
    let now = common::time::Clock::now(app.system.context.clock.as_ref());
    let due = app.store.due(now, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    let until = common::time::Timestamp::from_millis(now.millis() + 60_000);
    assert!(app.store.claim(&due[0], now, until).await.expect("claims").is_some());
    assert!(app.store.claim(&due[0], now, until).await.expect("claims").is_none(), "taken");
    assert_eq!(app.deliver().await, 0, "the claim keeps other senders away");
    app.advance(Duration::from_secs(60));
    assert_eq!(app.deliver().await, 1, "taken over once the claim ran out");
    assert_eq!(app.sink.received().len(), 1);
}

testkit::stack_tests!(
    a_claimed_mail_is_left_alone_until_its_claim_runs_out,
    a_server_that_is_down_gets_the_message_once_it_is_back,
    two_senders_at_once_deliver_each_mail_once,
    a_server_answering_4xx_gets_the_message_once_after_a_retry,
    a_5xx_fails_the_mail_at_once_and_records_the_address,
    a_lost_answer_resends_the_same_message_id,
    a_mail_never_taken_is_given_up_after_the_last_try,
);
