//! A payments process killed between Stripe's charge and its answer: the
//! all-in-one `ticketing` binary (beside `ticketing-tools` in the target
//! directory: `cargo build -p ticketing` first when building alone)
//! charges through `ticketing-tools fake-stripe`, which stores the charge
//! and holds its answer (`--delay-ms`); the process is SIGKILLed while it
//! waits. Started again on the same data, reconciliation finds the charge
//! at the fake by the attempt's key and the order completes, charged once,
//! as the public API shows.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::config::Secret;
use common::session::Sessions;
use serde_json::{Value, json};
use uuid::Uuid;

mod support;

const SECRET_KEY: &str = "sk_test_crash";

/// A child process killed (SIGKILL) on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn ticketing_binary() -> PathBuf {
    let binary = tools::bench::ticketing_binary(None).unwrap_or_else(|_| {
        Path::new(env!("CARGO_BIN_EXE_ticketing-tools")).with_file_name("ticketing")
    });
    assert!(binary.is_file(), "no {} (cargo build -p ticketing)", binary.display());
    binary
}

/// The all-in-one binary on `data`, charging through the fake at `stripe`.
fn start_ticketing(data: &Path, port: u16, key: &Secret, stripe: &str) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("server.log"))
        .expect("log file");
    let mut command = Command::new(ticketing_binary());
    command.env_clear();
    for kept in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(kept) {
            command.env(kept, value);
        }
    }
    let child = command
        .env("DATA_DIR", data)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "info")
        .env("JWT_KEY", key.expose())
        .env("STRIPE_SECRET_KEY", SECRET_KEY)
        .env("STRIPE_API_BASE", stripe)
        .env("STRIPE_TIMEOUT_SECONDS", "120")
        .env("PAYMENT_RECONCILE_SECONDS", "1")
        .env("ORDER_EXPIRATION_SECONDS", "900")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("ticketing starts");
    Process(child)
}

async fn until<T, F: Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(http: &reqwest::Client, api: &str) {
    until("ready", Duration::from_secs(60), || async {
        let answer = http.get(format!("{api}/readyz")).send().await.ok()?;
        (answer.status() == 200).then_some(())
    })
    .await;
}

/// The `data` of a list the fake Stripe answers at `path`.
async fn listed_at_fake(http: &reqwest::Client, stripe: &str, path: &str) -> Vec<Value> {
    let list: Value = http
        .get(format!("{stripe}{path}"))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .expect("listed")
        .json()
        .await
        .expect("json");
    list["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_charge_whose_process_was_killed_before_recording_it_completes_the_order() {
    common::install_crypto();
    let dir =
        std::env::temp_dir().join(format!("ticketing-stripe-crash-{}", Uuid::new_v4().simple()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // The fake answers creations only after a minute.
    let fake = support::start_fake(&dir.join("stripe.jsonl"), &["--delay-ms", "60000"]);
    let stripe = fake.base.clone();
    let key = Secret::new(format!("{:064x}", Uuid::new_v4().as_u128()));
    let sessions = Sessions::new(&key, Duration::from_secs(3600), false);
    let bearer = |name: &str| {
        let (token, _) =
            sessions.issue(Uuid::now_v7(), &format!("{name}@example.com")).expect("a session");
        format!("Bearer {token}")
    };
    let (seller, buyer) = (bearer("seller"), bearer("buyer"));
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut ticketing = start_ticketing(&data, port, &key, &stripe);
    ready(&http, &api).await;
    let ticket: Value = http
        .post(format!("{api}/api/tickets"))
        .header("authorization", &seller)
        .json(&json!({"title": "Crash concert", "price": 25}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("a ticket");
    let order: Value = until("the order", Duration::from_secs(30), || async {
        let answer = http
            .post(format!("{api}/api/orders"))
            .header("authorization", &buyer)
            .json(&json!({"ticketId": ticket["id"]}))
            .send()
            .await
            .ok()?;
        (answer.status() == 201).then_some(())?;
        answer.json().await.ok()
    })
    .await;
    let order_id = order["id"].as_str().expect("an order id").to_owned();

    // The payment request waits for the fake's answer; the charge is made.
    // (Asked again while the payments service does not know the order yet:
    // its replica may lag the order's 201 on a busy machine.)
    let paying = tokio::spawn({
        let (http, api, buyer, order_id) =
            (http.clone(), api.clone(), buyer.clone(), order_id.clone());
        async move {
            loop {
                let answer = http
                    .post(format!("{api}/api/payments"))
                    .header("authorization", &buyer)
                    .json(&json!({"token": "tok_visa", "orderId": order_id}))
                    .send()
                    .await;
                match answer {
                    Ok(answer) if answer.status() == 404 => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return other,
                }
            }
        }
    });
    let charged = until("the charge at the fake", Duration::from_secs(30), || async {
        listed_at_fake(&http, &stripe, "/v1/payment_intents?limit=100").await.into_iter().next()
    })
    .await;
    assert_eq!(charged["metadata"]["order_id"], order_id.as_str());
    assert_eq!(charged["status"], "succeeded");
    assert_eq!(charged["amount"], 2500);

    // SIGKILL before the answer comes back: nothing recorded the charge.
    ticketing.0.kill().expect("killed");
    ticketing.0.wait().expect("reaped");
    assert!(paying.await.expect("joined").is_err(), "the buyer's request got no answer");

    let _restarted = start_ticketing(&data, port, &key, &stripe);
    drop(ticketing);
    ready(&http, &api).await;
    let completed: Value = until("the order completed", Duration::from_secs(60), || async {
        let order: Value = http
            .get(format!("{api}/api/orders/{order_id}"))
            .header("authorization", &buyer)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (order["status"] == "complete").then_some(order)
    })
    .await;
    assert_eq!(completed["ticket"]["price"], 25);
    let intents = listed_at_fake(&http, &stripe, "/v1/payment_intents?limit=100").await;
    assert_eq!(intents.len(), 1, "charged once: {intents:?}");
    let refunds = listed_at_fake(&http, &stripe, "/v1/refunds").await;
    assert!(refunds.is_empty(), "nothing refunded: {refunds:?}");
    let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
    assert!(log.contains("payment attempt reconciled"), "reconciliation settled it:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
