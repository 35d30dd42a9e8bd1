//! `ticketing-tools fake-stripe`: the deployment's shared stand-in for
//! Stripe's API, serving what the payments service's Stripe client calls
//! (`payments::processor::stripe`), with Stripe's shapes: PaymentIntents
//! created and confirmed with a test card, searched by
//! `metadata['attempt']` and listed by `created` range newest first with
//! `limit` and `starting_after` (how reconciliation finds an attempt),
//! retrieved and cancelled;
//! refunds. Every POST honours `Idempotency-Key`: the same key answers
//! what it answered the first time. Requests without a `sk_test_` bearer
//! key get Stripe's 401.
//!
//! Its state (intents, refunds, accounts, links, transfers, reversals,
//! idempotent answers) lives in a journal (`--state`, JSON Lines): each
//! change appends the objects it wrote, one `{"intent": …}`,
//! `{"refund": …}`, `{"account": …}`, `{"link": …}`, `{"transfer": …}`,
//! `{"reversal": …}` or `{"answer": [key, status, body]}` per line (an
//! intent's, account's or transfer's later line replaces its earlier one;
//! an account's later link replaces its earlier one), flushed to
//! disk before the answer; at start the journal is read back (a torn last
//! line, from a crash mid-write, is skipped). A charge made before the fake
//! or a payments process restarted is still there for reconciliation and
//! for the checker, and a change costs the size of what it changed, not of
//! everything known (the whole-file rewrite it replaced cost O(intents)
//! //! per charge, tens of milliseconds an hour into a soak). `--delay-ms`
//! answers the creation of a charge or a transfer only after it was stored
//! and the delay passed, so a test can kill a payments process (or time
//! its client out) between the change and its answer.
//!
//! Test cards: `tok_visa`, `pm_card_visa` (and other `tok_`/`pm_card_`
//! names) succeed; `tok_chargeDeclined` / `pm_card_chargeDeclined` are
//! declined (402 `card_error`, the intent left `requires_payment_method`);
//! `tok_threeDSecure2Required` / `pm_card_threeDSecure2Required` leave the
//! intent `requires_action`, with a redirect to this fake, where
//! `POST /test/3d_secure_2/<id>/complete` (or `/fail`) finishes it;
//! `tok_nope` and other unknown tokens are refused (400). A succeeded
//! intent names its charge, `latest_charge: "ch_..."`.
//!
//! Stripe Connect ([`connect`]): Express accounts (`POST /v1/accounts`,
//! `GET /v1/accounts/{id}`), account links to a test onboarding page
//! (`POST /v1/account_links`, `GET /connect/onboarding/{account}`, whose
//! buttons POST `.../complete` or `.../incomplete` and go back to the
//! link's `return_url`; with `--connect-webhook-url`, a signed
//! `account.updated` follows), transfers (`POST /v1/transfers`, listed by
//! `transfer_group` with `GET /v1/transfers`), reversals
//! (`POST /v1/transfers/{id}/reversals`) and balances (`GET /v1/balance`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub mod connect;

/// `ticketing-tools fake-stripe`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FakeStripeArgs {
    /// The port to listen on (127.0.0.1); 0 picks a free one, printed at
    /// start.
    #[arg(long, env = "FAKE_STRIPE_PORT", default_value_t = 12111)]
    pub port: u16,
    /// The JSON file holding the fake's state, read at start and rewritten
    /// after each change; without it the state lives in memory only.
    #[arg(long, env = "FAKE_STRIPE_STATE")]
    pub state: Option<PathBuf>,
    /// Answer the creation of a PaymentIntent or a transfer this many
    /// milliseconds after it was stored (a slow processor; tests kill a
    /// client meanwhile).
    #[arg(long, env = "FAKE_STRIPE_DELAY_MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Where to POST Connect events (`account.updated` after the test
    /// onboarding page changed an account), e.g. the payments service's
    /// `http://127.0.0.1:3004/api/payments/connect-webhook`; without it
    /// none are sent.
    #[arg(long, env = "FAKE_STRIPE_CONNECT_WEBHOOK_URL", requires = "connect_webhook_secret")]
    pub connect_webhook_url: Option<String>,
    /// The secret Connect events are signed with (`Stripe-Signature`), the
    /// one the receiver verifies with (`STRIPE_CONNECT_WEBHOOK_SECRET`).
    #[arg(
        long,
        env = "FAKE_STRIPE_CONNECT_WEBHOOK_SECRET",
        hide_env_values = true,
        requires = "connect_webhook_url"
    )]
    pub connect_webhook_secret: Option<common::config::Secret>,
}

/// Objects of one kind, oldest first, each found by its `id`.
#[derive(Debug, Default)]
pub struct Objects {
    list: Vec<Value>,
    positions: HashMap<String, usize>,
}

impl Objects {
    /// Adds `object`, or replaces the one with its id.
    fn put(&mut self, object: Value) {
        let id = object["id"].as_str().unwrap_or_default().to_owned();
        match self.positions.get(&id) {
            Some(&at) => self.list[at] = object,
            None => {
                self.positions.insert(id, self.list.len());
                self.list.push(object);
            }
        }
    }

    /// The object `id`.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.positions.get(id).map(|&at| &self.list[at])
    }

    /// All of them, oldest first.
    pub fn all(&self) -> &[Value] {
        &self.list
    }
}

/// What the fake knows.
#[derive(Debug, Default)]
pub struct Ledger {
    /// PaymentIntents.
    pub intents: Objects,
    /// Refunds, oldest first.
    pub refunds: Vec<Value>,
    /// Connected accounts.
    pub accounts: Objects,
    /// The latest account link of each account, by account id.
    pub links: HashMap<String, Value>,
    /// Transfers to connected accounts (`amount_reversed` kept current).
    pub transfers: Objects,
    /// Transfer reversals, oldest first.
    pub reversals: Vec<Value>,
    /// The answer (status, body) given to each `<path> <Idempotency-Key>`.
    pub idempotent: HashMap<String, (u16, Value)>,
    /// What changed since the journal was last written.
    unwritten: Vec<Entry>,
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry {
    /// An intent as it is now (new, or replacing the one with its id).
    Intent(Value),
    /// A new refund.
    Refund(Value),
    /// A connected account as it is now.
    Account(Value),
    /// An account's newest account link.
    Link(Value),
    /// A transfer as it is now.
    Transfer(Value),
    /// A new transfer reversal.
    Reversal(Value),
    /// The answer kept for an idempotency key.
    Answer(String, u16, Value),
}

impl Ledger {
    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Intent(intent) => self.intents.put(intent),
            Entry::Refund(refund) => self.refunds.push(refund),
            Entry::Account(account) => self.accounts.put(account),
            Entry::Link(link) => {
                let account = link["account"].as_str().unwrap_or_default().to_owned();
                self.links.insert(account, link);
            }
            Entry::Transfer(transfer) => self.transfers.put(transfer),
            Entry::Reversal(reversal) => self.reversals.push(reversal),
            Entry::Answer(key, status, body) => {
                self.idempotent.insert(key, (status, body));
            }
        }
    }

    /// Applies `entry` and keeps it for the journal.
    fn record(&mut self, entry: Entry) {
        self.unwritten.push(entry.clone());
        self.apply(entry);
    }

    /// The intent `id`.
    pub fn intent(&self, id: &str) -> Option<&Value> {
        self.intents.get(id)
    }

    /// Reads a journal back; a last line cut short by a crash is cut off
    /// the file, so that the next line starts afresh.
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut ledger = Self::default();
        let lines: Vec<&[u8]> =
            text.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
        let torn = !text.ends_with(b"\n");
        for (n, line) in lines.iter().enumerate() {
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => ledger.apply(entry),
                Err(_) if torn && n + 1 == lines.len() => {
                    tracing::warn!(path = %path.display(), "cutting off the journal's torn last line");
                    let whole = text.len() - line.len();
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|file| file.set_len(whole as u64))
                        .with_context(|| format!("truncating {}", path.display()))?;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "line {} of {} is not a fake-stripe journal entry",
                        n + 1,
                        path.display()
                    )));
                }
            }
        }
        Ok(ledger)
    }
}

/// The running fake's shared state.
#[derive(Debug, Clone)]
pub struct FakeStripe {
    ledger: Arc<Mutex<Ledger>>,
    file: Option<PathBuf>,
    delay: Duration,
    connect_webhook: Option<connect::ConnectWebhook>,
}

/// A form or query: its fields in order.
type Fields = Vec<(String, String)>;

fn parse_fields(text: &[u8]) -> Fields {
    url::form_urlencoded::parse(text).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Stripe's error body.
fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> (StatusCode, Value) {
    let mut body = json!({"type": kind, "message": message});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    (status, json!({ "error": body }))
}

fn invalid(message: &str) -> (StatusCode, Value) {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", None, message)
}

fn no_such_intent(id: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such payment_intent: '{id}'"),
    )
}

fn now_seconds() -> i64 {
    common::time::Timestamp::now().millis() / 1000
}

/// The random part of a new object id.
fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl FakeStripe {
    /// A fake whose state is read from the journal `file` (an absent file
    /// is an empty state) and appended to, answering creations after
    /// `delay`.
    pub fn open(file: Option<PathBuf>, delay: Duration) -> anyhow::Result<Self> {
        let ledger = match &file {
            Some(path) if path.exists() => Ledger::read(path)?,
            _ => Ledger::default(),
        };
        Ok(Self { ledger: Arc::new(Mutex::new(ledger)), file, delay, connect_webhook: None })
    }

    /// The fake sending Connect events to `webhook`.
    #[must_use]
    pub fn with_connect_webhook(mut self, webhook: connect::ConnectWebhook) -> Self {
        self.connect_webhook = Some(webhook);
        self
    }

    /// How many PaymentIntents the fake knows.
    pub fn intents(&self) -> usize {
        self.lock().intents.all().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends what changed to the journal and flushes it to disk.
    fn save(&self, ledger: &mut Ledger) -> anyhow::Result<()> {
        let entries = std::mem::take(&mut ledger.unwritten);
        let Some(path) = &self.file else { return Ok(()) };
        if entries.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for entry in &entries {
            serde_json::to_writer(&mut lines, entry)?;
            lines.push(b'\n');
        }
        append(path, &lines)
    }

    /// Runs `change` on the state under the lock, journals it, and answers
    /// what it returns; with a key, the answer is kept for it and a repeat
    /// gets the same answer without running `change` again.
    fn change(
        &self,
        key: Option<String>,
        change: impl FnOnce(&mut Ledger) -> (StatusCode, Value),
    ) -> (StatusCode, Value) {
        let mut ledger = self.lock();
        if let Some((status, body)) = key.as_ref().and_then(|k| ledger.idempotent.get(k)) {
            return (StatusCode::from_u16(*status).unwrap_or(StatusCode::OK), body.clone());
        }
        let (status, body) = change(&mut ledger);
        if let Some(key) = key
            && !status.is_server_error()
        {
            ledger.record(Entry::Answer(key, status.as_u16(), body.clone()));
        }
        if let Err(error) = self.save(&mut ledger) {
            tracing::error!(error = format!("{error:#}"), "cannot write the fake Stripe's state");
            return error_500();
        }
        (status, body)
    }
}

fn error_500() -> (StatusCode, Value) {
    error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", None, "the fake cannot save its state")
}

fn append(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("appending to {}", path.display()))?;
    file.sync_data().with_context(|| format!("flushing {}", path.display()))
}

/// The key's scope: one key per path, as each endpoint has its own.
fn idempotency(headers: &HeaderMap, path: &str) -> Option<String> {
    headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(|key| format!("{path} {key}"))
}

/// What a test card does.
enum Card {
    Succeeds,
    Declined,
    NeedsAuthentication,
    Unknown(String),
}

fn card(form: &[(String, String)]) -> Card {
    let token = field(form, "payment_method")
        .or_else(|| field(form, "payment_method_data[card][token]"))
        .unwrap_or("");
    match token {
        "tok_chargeDeclined" | "pm_card_chargeDeclined" => Card::Declined,
        "tok_threeDSecure2Required" | "pm_card_threeDSecure2Required" => Card::NeedsAuthentication,
        "tok_nope" | "" => Card::Unknown(token.to_owned()),
        t if t.starts_with("tok_") || t.starts_with("pm_card_") => Card::Succeeds,
        other => Card::Unknown(other.to_owned()),
    }
}

fn create_intent(
    ledger: &mut Ledger,
    form: &[(String, String)],
    base: &str,
) -> (StatusCode, Value) {
    let Some(amount) = field(form, "amount").and_then(|a| a.parse::<i64>().ok()).filter(|a| *a > 0)
    else {
        return invalid("Missing required param: amount.");
    };
    let Some(currency) = field(form, "currency") else {
        return invalid("Missing required param: currency.");
    };
    let card = card(form);
    if let Card::Unknown(token) = &card {
        return invalid(&format!("No such token: '{token}'"));
    }
    let id = new_id("pi");
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((name.to_owned(), json!(v)))
        })
        .collect();
    let mut intent = json!({
        "id": id, "object": "payment_intent", "amount": amount, "currency": currency,
        "status": "succeeded", "client_secret": format!("{id}_secret_fake"),
        "created": now_seconds(), "metadata": metadata, "next_action": null,
        "last_payment_error": null, "livemode": false,
    });
    let answer = match card {
        Card::Succeeds => {
            intent["latest_charge"] = json!(connect::charge_of(&id));
            (StatusCode::OK, intent.clone())
        }
        Card::NeedsAuthentication => {
            intent["status"] = json!("requires_action");
            intent["next_action"] = json!({"type": "redirect_to_url", "redirect_to_url": {
                "url": format!("{base}/test/3d_secure_2/{id}"),
                "return_url": field(form, "return_url")}});
            (StatusCode::OK, intent.clone())
        }
        Card::Declined | Card::Unknown(_) => {
            let declined = json!({"type": "card_error", "code": "card_declined",
                "decline_code": "generic_decline", "message": "Your card was declined."});
            intent["status"] = json!("requires_payment_method");
            intent["last_payment_error"] = declined.clone();
            let mut body = declined;
            body["payment_intent"] = intent.clone();
            (StatusCode::PAYMENT_REQUIRED, json!({ "error": body }))
        }
    };
    ledger.record(Entry::Intent(intent));
    answer
}

fn refund(ledger: &mut Ledger, form: &[(String, String)]) -> (StatusCode, Value) {
    let Some(intent_id) = field(form, "payment_intent") else {
        return invalid("Missing required param: payment_intent.");
    };
    let Some(intent) = ledger.intent(intent_id) else {
        return no_such_intent(intent_id);
    };
    if intent["status"] != "succeeded" {
        return invalid(&format!("PaymentIntent {intent_id} has no successful charge to refund."));
    }
    if ledger.refunds.iter().any(|r| r["payment_intent"] == intent_id) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("charge_already_refunded"),
            &format!("Charge for {intent_id} has already been refunded."),
        );
    }
    let refund = json!({"id": new_id("re"), "object": "refund", "amount": intent["amount"],
        "currency": intent["currency"], "payment_intent": intent_id, "status": "succeeded",
        "created": now_seconds()});
    ledger.record(Entry::Refund(refund.clone()));
    (StatusCode::OK, refund)
}

/// Changes the intent `id` with `change`, answering it as Stripe would.
fn with_intent(
    ledger: &mut Ledger,
    id: &str,
    change: impl FnOnce(&mut Value) -> Result<(), String>,
) -> (StatusCode, Value) {
    let Some(mut intent) = ledger.intent(id).cloned() else {
        return no_such_intent(id);
    };
    match change(&mut intent) {
        Ok(()) => {
            ledger.record(Entry::Intent(intent.clone()));
            (StatusCode::OK, intent)
        }
        Err(message) => invalid(&message),
    }
}

fn reply((status, body): (StatusCode, Value)) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Refuses a request without a test secret key, as Stripe does.
async fn authorize(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let key = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match key {
        Some(key) if key.starts_with("sk_test_") && key.len() > "sk_test_".len() => {
            next.run(request).await
        }
        Some(_) => reply(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided (the fake Stripe takes sk_test_ keys only).",
        )),
        None => reply(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth.",
        )),
    }
}

/// The fake's own address as the client named it, for redirect URLs.
fn base(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn post_intent(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_fields(&body);
    let base = base(&headers);
    let key = idempotency(&headers, "/v1/payment_intents");
    let answer = fake.change(key, |ledger| create_intent(ledger, &form, &base));
    tokio::time::sleep(fake.delay).await;
    reply(answer)
}

async fn list_intents(State(fake): State<FakeStripe>, uri: Uri) -> Response {
    let query = parse_fields(uri.query().unwrap_or("").as_bytes());
    let number = |name: &str| field(&query, name).and_then(|v| v.parse::<i64>().ok());
    let limit = number("limit").unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return reply(invalid("limit must be between 1 and 100."));
    }
    let gte = number("created[gte]").or(number("created[gt]").map(|n| n + 1)).unwrap_or(i64::MIN);
    let lte = number("created[lte]").or(number("created[lt]").map(|n| n - 1)).unwrap_or(i64::MAX);
    let mut newest_first: Vec<Value> = fake
        .lock()
        .intents
        .all()
        .iter()
        .rev()
        .filter(|i| (gte..=lte).contains(&i["created"].as_i64().unwrap_or(0)))
        .cloned()
        .collect();
    if let Some(after) = field(&query, "starting_after") {
        let Some(at) = newest_first.iter().position(|i| i["id"] == after) else {
            return reply(no_such_intent(after));
        };
        newest_first.drain(..=at);
    }
    let limit = usize::try_from(limit).unwrap_or(100);
    let has_more = newest_first.len() > limit;
    newest_first.truncate(limit);
    reply((
        StatusCode::OK,
        json!({"object": "list", "url": "/v1/payment_intents", "data": newest_first, "has_more": has_more}),
    ))
}

/// Stripe's search API, for the one query this system makes:
/// `metadata['attempt']:'<key>'`. Unlike Stripe's, the fake's index is never
/// behind.
async fn search_intents(State(fake): State<FakeStripe>, uri: Uri) -> Response {
    let query = parse_fields(uri.query().unwrap_or("").as_bytes());
    let Some(key) = field(&query, "query").and_then(attempt_searched) else {
        return reply(invalid("The fake Stripe searches by metadata['attempt']:'<key>' only."));
    };
    let data: Vec<Value> = fake
        .lock()
        .intents
        .all()
        .iter()
        .rev()
        .filter(|i| i["metadata"]["attempt"].as_str() == Some(key.as_str()))
        .cloned()
        .collect();
    reply((
        StatusCode::OK,
        json!({"object": "search_result", "url": "/v1/payment_intents/search", "data": data, "has_more": false, "next_page": null}),
    ))
}

/// The key of a `metadata['attempt']:'<key>'` search (`\'` and `\\` are
/// unescaped).
fn attempt_searched(query: &str) -> Option<String> {
    let quoted = query.trim().strip_prefix("metadata['attempt']:'")?.strip_suffix('\'')?;
    let mut key = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => key.push(chars.next()?),
            '\'' => return None,
            c => key.push(c),
        }
    }
    Some(key)
}

async fn show_intent(State(fake): State<FakeStripe>, UrlPath(id): UrlPath<String>) -> Response {
    let found = fake.lock().intent(&id).cloned();
    reply(match found {
        Some(mut intent) => {
            // Intents journalled before charges were named get theirs.
            if intent["status"] == "succeeded" && intent["latest_charge"].is_null() {
                intent["latest_charge"] = json!(connect::charge_of(&id));
            }
            (StatusCode::OK, intent)
        }
        None => no_such_intent(&id),
    })
}

async fn cancel_intent(
    State(fake): State<FakeStripe>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_fields(&body);
    let key = idempotency(&headers, &format!("/v1/payment_intents/{id}/cancel"));
    reply(fake.change(key, |ledger| {
        with_intent(ledger, &id, |intent| {
            if intent["status"] == "succeeded" || intent["status"] == "canceled" {
                let status = intent["status"].as_str().unwrap_or_default().to_owned();
                return Err(format!(
                    "You cannot cancel this PaymentIntent because it has a status of {status}."
                ));
            }
            intent["status"] = json!("canceled");
            intent["next_action"] = Value::Null;
            intent["cancellation_reason"] = json!(field(&form, "cancellation_reason"));
            Ok(())
        })
    }))
}

async fn post_refund(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_fields(&body);
    reply(fake.change(idempotency(&headers, "/v1/refunds"), |ledger| refund(ledger, &form)))
}

async fn list_refunds(State(fake): State<FakeStripe>, uri: Uri) -> Response {
    let query = parse_fields(uri.query().unwrap_or("").as_bytes());
    let refunds: Vec<Value> = fake
        .lock()
        .refunds
        .iter()
        .rev()
        .filter(|r| field(&query, "payment_intent").is_none_or(|pi| r["payment_intent"] == pi))
        .cloned()
        .collect();
    reply((StatusCode::OK, json!({"object": "list", "data": refunds, "has_more": false})))
}

/// Stripe's test authentication page: the buyer completes or fails it.
async fn authenticate(
    State(fake): State<FakeStripe>,
    UrlPath((id, outcome)): UrlPath<(String, String)>,
) -> Response {
    reply(fake.change(None, |ledger| {
        with_intent(ledger, &id, |intent| {
            if intent["status"] != "requires_action" {
                return Err("This PaymentIntent is not waiting for authentication.".to_owned());
            }
            intent["next_action"] = Value::Null;
            if outcome == "complete" {
                intent["status"] = json!("succeeded");
                intent["latest_charge"] = json!(connect::charge_of(id.as_str()));
            } else {
                intent["status"] = json!("requires_payment_method");
                intent["last_payment_error"] = json!({"type": "card_error",
                    "code": "payment_intent_authentication_failure",
                    "message": "We are unable to authenticate your payment method. Please choose a different payment method and try again."});
            }
            Ok(())
        })
    }))
}

/// The fake's routes.
pub fn router(fake: FakeStripe) -> Router {
    let api = Router::new()
        .route("/v1/payment_intents", post(post_intent).get(list_intents))
        .route("/v1/payment_intents/search", get(search_intents))
        .route("/v1/payment_intents/{id}", get(show_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
        .route("/v1/refunds", post(post_refund).get(list_refunds))
        .route("/v1/accounts", post(connect::post_account))
        .route("/v1/accounts/{id}", get(connect::show_account))
        .route("/v1/account_links", post(connect::post_link))
        .route("/v1/transfers", post(connect::post_transfer).get(connect::list_transfers))
        .route("/v1/transfers/{id}", get(connect::show_transfer))
        .route("/v1/transfers/{id}/reversals", post(connect::post_reversal))
        .route("/v1/balance", get(connect::balance))
        .layer(axum::middleware::from_fn(authorize));
    Router::new()
        .merge(api)
        .route("/test/3d_secure_2/{id}/{outcome}", post(authenticate))
        .route("/connect/onboarding/{account}", get(connect::onboarding_page))
        .route("/connect/onboarding/{account}/{outcome}", post(connect::onboard))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(fake)
}

/// Serves the fake until interrupted (SIGINT or SIGTERM).
#[expect(clippy::print_stdout, reason = "its address is the command's output")]
pub async fn run(args: FakeStripeArgs) -> anyhow::Result<()> {
    let mut fake = FakeStripe::open(args.state.clone(), Duration::from_millis(args.delay_ms))?;
    if let (Some(url), Some(secret)) = (args.connect_webhook_url, args.connect_webhook_secret) {
        fake = fake.with_connect_webhook(connect::ConnectWebhook { url, secret });
    }
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    let intents = fake.intents();
    println!("fake Stripe on http://{addr} ({intents} PaymentIntents known)");
    tracing::info!(%addr, state = ?args.state, intents, "fake Stripe listening");
    axum::serve(listener, router(fake)).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
