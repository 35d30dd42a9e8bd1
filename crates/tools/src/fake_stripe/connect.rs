//! The fake's Stripe Connect: Express accounts and their onboarding (an
//! account link to a test page where the seller completes their details
//! or leaves them missing, then `account.updated`, signed like Stripe's,
//! POSTed to `--connect-webhook-url`), transfers of a charge's money to an
//! account (idempotent, listed by `transfer_group`), their reversals, and
//! the balances they leave.
//!
//! Money rules, as Stripe's: a transfer with a `source_transaction` takes
//! at most what is left of that charge (its amount − refunded −
//! transferred + reversed); one without takes at most the platform's
//! available balance; its destination must have the `transfers` capability
//! `active`. A reversal takes at most what is left of its transfer.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    Entry, FakeStripe, Ledger, base, error, field, idempotency, invalid, new_id, now_seconds,
    parse_fields, reply,
};

/// How many times an `account.updated` is offered to the Connect webhook
/// before it is given up (Stripe retries for days; the fake's consumers are
/// local).
const WEBHOOK_ATTEMPTS: u32 = 5;

/// Where the fake sends Connect events, and the secret it signs them with.
#[derive(Debug, Clone)]
pub struct ConnectWebhook {
    pub url: String,
    pub secret: common::config::Secret,
}

/// The charge (`ch_...`) of a succeeded PaymentIntent: the fake names it
/// after the intent, so each finds the other without a second table.
pub fn charge_of(intent_id: &str) -> String {
    format!("ch_{}", intent_id.strip_prefix("pi_").unwrap_or(intent_id))
}

/// The PaymentIntent (`pi_...`) whose charge is `charge_id`.
fn intent_of(charge_id: &str) -> Option<String> {
    charge_id.strip_prefix("ch_").map(|rest| format!("pi_{rest}"))
}

fn missing(kind: &str, id: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
    )
}

/// `metadata[<name>]` fields as Stripe's `metadata` object.
fn metadata(form: &[(String, String)]) -> serde_json::Map<String, Value> {
    form.iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((name.to_owned(), json!(v)))
        })
        .collect()
}

fn create_account(ledger: &mut Ledger, form: &[(String, String)]) -> (StatusCode, Value) {
    let kind = field(form, "type").unwrap_or("standard");
    if !["express", "standard", "custom"].contains(&kind) {
        return invalid(&format!(
            "Invalid type: must be one of express, standard or custom ({kind})."
        ));
    }
    let id = format!("acct_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let requested = field(form, "capabilities[transfers][requested]") == Some("true");
    let account = json!({
        "id": id, "object": "account", "type": kind, "email": field(form, "email"),
        "details_submitted": false, "payouts_enabled": false, "charges_enabled": false,
        "capabilities": if requested { json!({"transfers": "inactive"}) } else { json!({}) },
        "metadata": metadata(form), "created": now_seconds(),
    });
    ledger.record(Entry::Account(account.clone()));
    (StatusCode::OK, account)
}

fn create_link(ledger: &mut Ledger, form: &[(String, String)], base: &str) -> (StatusCode, Value) {
    let Some(account) = field(form, "account") else {
        return invalid("Missing required param: account.");
    };
    if ledger.accounts.get(account).is_none() {
        return missing("account", account);
    }
    if field(form, "type") != Some("account_onboarding") {
        return invalid("The fake Stripe makes account links of type account_onboarding only.");
    }
    let Some(return_url) = field(form, "return_url") else {
        return invalid("Missing required param: return_url.");
    };
    let refresh_url = field(form, "refresh_url").unwrap_or(return_url);
    let created = now_seconds();
    let link = json!({
        "object": "account_link", "account": account, "created": created,
        "expires_at": created + 300, "return_url": return_url, "refresh_url": refresh_url,
        "url": format!("{base}/connect/onboarding/{account}"),
    });
    ledger.record(Entry::Link(link.clone()));
    (
        StatusCode::OK,
        json!({"object": "account_link", "created": created,
        "expires_at": link["expires_at"], "url": link["url"]}),
    )
}

/// Integer cents of `value` (0 when absent).
fn cents(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// What is left of the charge of intent `intent`: its amount − refunded −
/// transferred + reversed.
fn left_of_charge(ledger: &Ledger, intent: &Value) -> i64 {
    let id = intent["id"].as_str().unwrap_or_default();
    let charge = charge_of(id);
    let refunded: i64 = ledger
        .refunds
        .iter()
        .filter(|r| r["payment_intent"] == id)
        .map(|r| cents(&r["amount"]))
        .sum();
    let transferred: i64 = ledger
        .transfers
        .all()
        .iter()
        .filter(|t| t["source_transaction"] == charge.as_str())
        .map(|t| cents(&t["amount"]) - cents(&t["amount_reversed"]))
        .sum();
    cents(&intent["amount"]) - refunded - transferred
}

/// The platform's available balance in `currency`: charges − refunds −
/// transfers + reversals.
pub fn platform_balance(ledger: &Ledger, currency: &str) -> i64 {
    let charged: i64 = ledger
        .intents
        .all()
        .iter()
        .filter(|i| i["status"] == "succeeded" && i["currency"] == currency)
        .map(|i| cents(&i["amount"]))
        .sum();
    let refunded: i64 = ledger
        .refunds
        .iter()
        .filter(|r| r["currency"] == currency)
        .map(|r| cents(&r["amount"]))
        .sum();
    let transferred: i64 = ledger
        .transfers
        .all()
        .iter()
        .filter(|t| t["currency"] == currency)
        .map(|t| cents(&t["amount"]) - cents(&t["amount_reversed"]))
        .sum();
    charged - refunded - transferred
}

/// A connected account's balance in `currency`: transfers − reversals.
pub fn account_balance(ledger: &Ledger, account: &str, currency: &str) -> i64 {
    ledger
        .transfers
        .all()
        .iter()
        .filter(|t| t["destination"] == account && t["currency"] == currency)
        .map(|t| cents(&t["amount"]) - cents(&t["amount_reversed"]))
        .sum()
}

fn create_transfer(ledger: &mut Ledger, form: &[(String, String)]) -> (StatusCode, Value) {
    let Some(amount) = field(form, "amount").and_then(|a| a.parse::<i64>().ok()).filter(|a| *a > 0)
    else {
        return invalid("Missing required param: amount.");
    };
    let Some(currency) = field(form, "currency") else {
        return invalid("Missing required param: currency.");
    };
    let Some(destination) = field(form, "destination") else {
        return invalid("Missing required param: destination.");
    };
    let Some(account) = ledger.accounts.get(destination) else {
        return missing("destination", destination);
    };
    if account["capabilities"]["transfers"] != "active" {
        return invalid(
            "Your destination account needs to have at least one of the following capabilities enabled: transfers, crypto_transfers, legacy_payments",
        );
    }
    let source = field(form, "source_transaction");
    let available = match source {
        Some(charge) => {
            let Some(intent) = intent_of(charge).and_then(|id| ledger.intent(&id).cloned()) else {
                return missing("charge", charge);
            };
            if intent["status"] != "succeeded" {
                return missing("charge", charge);
            }
            if intent["currency"] != currency {
                return invalid(
                    "The currency of source_transaction's balance transaction must be the same as the transfer currency.",
                );
            }
            left_of_charge(ledger, &intent)
        }
        None => platform_balance(ledger, currency),
    };
    if amount > available {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("balance_insufficient"),
            &format!(
                "Insufficient funds: the transfer of {amount} exceeds the {available} available{}.",
                source.map(|s| format!(" on source transaction {s}")).unwrap_or_default()
            ),
        );
    }
    let transfer = json!({
        "id": new_id("tr"), "object": "transfer", "amount": amount, "amount_reversed": 0,
        "currency": currency, "destination": destination, "created": now_seconds(),
        "transfer_group": field(form, "transfer_group"), "source_transaction": source,
        "metadata": metadata(form), "reversed": false, "livemode": false,
    });
    ledger.record(Entry::Transfer(transfer.clone()));
    (StatusCode::OK, transfer)
}

fn reverse(ledger: &mut Ledger, id: &str, form: &[(String, String)]) -> (StatusCode, Value) {
    let Some(mut transfer) = ledger.transfers.get(id).cloned() else {
        return missing("transfer", id);
    };
    let left = cents(&transfer["amount"]) - cents(&transfer["amount_reversed"]);
    let amount = match field(form, "amount") {
        None => left,
        Some(text) => match text.parse::<i64>() {
            Ok(amount) if amount > 0 => amount,
            _ => return invalid("Invalid positive integer: amount."),
        },
    };
    if amount > left || left == 0 {
        return invalid(&format!(
            "You have already reversed {} of transfer {id}; {left} is left to reverse.",
            cents(&transfer["amount_reversed"])
        ));
    }
    transfer["amount_reversed"] = json!(cents(&transfer["amount_reversed"]) + amount);
    transfer["reversed"] = json!(amount == left);
    let reversal = json!({
        "id": new_id("trr"), "object": "transfer_reversal", "amount": amount,
        "currency": transfer["currency"], "transfer": id, "created": now_seconds(),
        "metadata": metadata(form),
    });
    ledger.record(Entry::Transfer(transfer));
    ledger.record(Entry::Reversal(reversal.clone()));
    (StatusCode::OK, reversal)
}

/// `POST /v1/accounts`.
pub async fn post_account(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_fields(&body);
    reply(
        fake.change(idempotency(&headers, "/v1/accounts"), |ledger| create_account(ledger, &form)),
    )
}

/// `GET /v1/accounts/{id}`.
pub async fn show_account(
    State(fake): State<FakeStripe>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let found = fake.lock().accounts.get(&id).cloned();
    reply(found.map_or_else(|| missing("account", &id), |account| (StatusCode::OK, account)))
}

/// `POST /v1/account_links`.
pub async fn post_link(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_fields(&body);
    let base = base(&headers);
    let key = idempotency(&headers, "/v1/account_links");
    reply(fake.change(key, |ledger| create_link(ledger, &form, &base)))
}

/// `POST /v1/transfers`, answered after `--delay-ms` like a charge.
pub async fn post_transfer(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_fields(&body);
    let answer = fake
        .change(idempotency(&headers, "/v1/transfers"), |ledger| create_transfer(ledger, &form));
    tokio::time::sleep(fake.delay).await;
    reply(answer)
}

/// `GET /v1/transfers`, newest first, filtered by `transfer_group` and
/// `destination`, at most `limit` (10 by default, 100 at most) after
/// `starting_after`.
pub async fn list_transfers(State(fake): State<FakeStripe>, uri: Uri) -> Response {
    let query = parse_fields(uri.query().unwrap_or("").as_bytes());
    let limit = field(&query, "limit").map_or(Ok(10), str::parse::<usize>);
    let Some(limit) = limit.ok().filter(|l| (1..=100).contains(l)) else {
        return reply(invalid("limit must be between 1 and 100."));
    };
    let mut data: Vec<Value> = fake
        .lock()
        .transfers
        .all()
        .iter()
        .rev()
        .filter(|t| field(&query, "transfer_group").is_none_or(|g| t["transfer_group"] == g))
        .filter(|t| field(&query, "destination").is_none_or(|d| t["destination"] == d))
        .cloned()
        .collect();
    if let Some(after) = field(&query, "starting_after") {
        let Some(at) = data.iter().position(|t| t["id"] == after) else {
            return reply(missing("transfer", after));
        };
        data.drain(..=at);
    }
    let has_more = data.len() > limit;
    data.truncate(limit);
    reply((
        StatusCode::OK,
        json!({"object": "list", "url": "/v1/transfers", "data": data, "has_more": has_more}),
    ))
}

/// `GET /v1/transfers/{id}`.
pub async fn show_transfer(
    State(fake): State<FakeStripe>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let found = fake.lock().transfers.get(&id).cloned();
    reply(found.map_or_else(|| missing("transfer", &id), |transfer| (StatusCode::OK, transfer)))
}

/// `POST /v1/transfers/{id}/reversals`.
pub async fn post_reversal(
    State(fake): State<FakeStripe>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_fields(&body);
    let key = idempotency(&headers, &format!("/v1/transfers/{id}/reversals"));
    reply(fake.change(key, |ledger| reverse(ledger, &id, &form)))
}

/// `GET /v1/balance`: the platform's, or with a `Stripe-Account` header
/// that connected account's, in every currency it has seen.
pub async fn balance(State(fake): State<FakeStripe>, headers: HeaderMap) -> Response {
    let ledger = fake.lock();
    let mut currencies: Vec<&str> = ledger
        .intents
        .all()
        .iter()
        .chain(ledger.transfers.all())
        .filter_map(|o| o["currency"].as_str())
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    let account = headers.get("stripe-account").and_then(|v| v.to_str().ok());
    if let Some(account) = account
        && ledger.accounts.get(account).is_none()
    {
        return reply(missing("account", account));
    }
    let available: Vec<Value> = currencies
        .iter()
        .map(|currency| {
            let amount = match account {
                Some(account) => account_balance(&ledger, account, currency),
                None => platform_balance(&ledger, currency),
            };
            json!({"amount": amount, "currency": currency})
        })
        .collect();
    reply((
        StatusCode::OK,
        json!({"object": "balance", "available": available, "pending": [], "livemode": false}),
    ))
}

/// The test onboarding page an account link leads to: the seller
/// completes their details or leaves them missing.
pub async fn onboarding_page(
    State(fake): State<FakeStripe>,
    UrlPath(account): UrlPath<String>,
) -> Response {
    let ledger = fake.lock();
    let Some(found) = ledger.accounts.get(&account) else {
        return (StatusCode::NOT_FOUND, "No such account").into_response();
    };
    let email = found["email"].as_str().unwrap_or("no email given");
    let account = html_escape(&account);
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Test onboarding</title></head>\
         <body><h1>Stripe test onboarding</h1><p>Account <code>{account}</code> ({email})</p>\
         <form method=\"post\" action=\"/connect/onboarding/{account}/complete\"><button>Complete the details</button></form>\
         <form method=\"post\" action=\"/connect/onboarding/{account}/incomplete\"><button>Leave details missing</button></form>\
         </body></html>",
        email = html_escape(email)
    ))
    .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The onboarding page's buttons: `complete` makes the account ready
/// (details submitted, payouts enabled, `transfers` active), `incomplete`
/// leaves its details missing; then the seller goes back to the link's
/// `return_url` and `account.updated` is sent to the Connect webhook.
pub async fn onboard(
    State(fake): State<FakeStripe>,
    UrlPath((account, outcome)): UrlPath<(String, String)>,
) -> Response {
    let complete = match outcome.as_str() {
        "complete" => true,
        "incomplete" => false,
        _ => return (StatusCode::NOT_FOUND, "No such outcome").into_response(),
    };
    let mut updated = None;
    let mut return_url = None;
    let (status, body) = fake.change(None, |ledger| {
        let Some(mut found) = ledger.accounts.get(&account).cloned() else {
            return missing("account", &account);
        };
        let Some(link) = ledger.links.get(&account) else {
            return invalid("This account has no account link.");
        };
        return_url = link["return_url"].as_str().map(str::to_owned);
        found["details_submitted"] = json!(complete);
        found["payouts_enabled"] = json!(complete);
        found["charges_enabled"] = json!(complete);
        found["capabilities"]["transfers"] = json!(if complete { "active" } else { "inactive" });
        ledger.record(Entry::Account(found.clone()));
        updated = Some(found.clone());
        (StatusCode::OK, found)
    });
    let (Some(account), Some(return_url)) = (updated, return_url) else {
        return reply((status, body));
    };
    if let Some(webhook) = fake.connect_webhook {
        tokio::spawn(send_account_updated(webhook, account));
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, return_url)]).into_response()
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`, Stripe's
/// `Stripe-Signature`.
pub fn signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    #[expect(clippy::expect_used, reason = "HMAC takes a key of any length")]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let hex: String =
        mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// POSTs a signed `account.updated` for `account` to the Connect webhook,
/// retrying a few times while it does not answer 2xx.
async fn send_account_updated(webhook: ConnectWebhook, account: Value) {
    let event = json!({
        "id": new_id("evt"), "object": "event", "type": "account.updated",
        "api_version": "2024-06-20", "created": now_seconds(), "livemode": false,
        "account": account["id"], "data": {"object": account},
    });
    let payload = event.to_string();
    let http = reqwest::Client::new();
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let signed = signature(webhook.secret.expose(), now_seconds(), payload.as_bytes());
        let sent = http
            .post(&webhook.url)
            .header("Stripe-Signature", signed)
            .header(header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(10))
            .body(payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::warn!(
                status = response.status().as_u16(),
                attempt,
                "the Connect webhook refused account.updated"
            ),
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                attempt,
                "the Connect webhook did not answer"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
    tracing::error!(event = %event["id"], "gave up sending account.updated");
}
