//! The web client's view of the marketplace: the public HTTP API behind a
//! trait, so pages render the same from the real API ([`HttpApi`]) and from
//! a fake in their tests. Sessions travel as the value of the visitor's
//! session cookie ([`COOKIE_NAME`]); a sign-in's `Set-Cookie` comes back to
//! be passed to the browser.

use std::fmt::Debug;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use common::BoxFuture;
use common::client::FORWARDED_FOR;
use common::money::Cents;
use common::session::COOKIE_NAME;
pub use common::status::OrderStatus;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// Where a payment stands after `POST /api/payments` or
/// `POST /api/payments/settle` answered with success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// Charged: the order completes.
    Paid,
    /// The buyer must first authenticate with their bank (3-D Secure, 202).
    RequiresAction(Authentication),
}

/// What the page needs to send the buyer through authentication.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// For Stripe.js `handleNextAction`.
    pub client_secret: String,
    /// The authentication page (Stripe's, or the fake processor's on this
    /// site), when there is one.
    #[serde(default)]
    pub redirect_url: Option<String>,
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
}

/// A ticket, as the API renders it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: String,
    pub title: String,
    #[serde(deserialize_with = "price")]
    pub price: Cents,
    pub user_id: String,
    pub version: i64,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub status: TicketStatus,
    /// When the holding order's reservation ends, while reserved.
    #[serde(default)]
    pub reserved_until: Option<String>,
    /// Its event and seat (issue 24).
    #[serde(flatten)]
    pub event: EventDetails,
}

/// What a listing says about its event, as the API renders it (each
/// absent when the seller gave none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetails {
    #[serde(default)]
    pub venue: Option<String>,
    /// RFC 3339 with the seller's offset.
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub section: Option<String>,
    #[serde(default)]
    pub row: Option<String>,
    #[serde(default)]
    pub seat: Option<String>,
    #[serde(default, deserialize_with = "optional_price")]
    pub face_value: Option<Cents>,
}

/// A ticket as a seller submits it: every field as typed (the API checks
/// them). Empty event fields are left out of a new ticket and removed from
/// an edited one. The barcode and file go with a new ticket only (sent as
/// `multipart/form-data`); an edit (JSON) leaves them out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketInput {
    pub title: String,
    pub price: String,
    pub venue: String,
    /// RFC 3339, or as typed.
    pub starts_at: String,
    pub section: String,
    pub row: String,
    pub seat: String,
    pub face_value: String,
    /// The barcode's content (empty: none).
    pub barcode: String,
    pub file: Option<Upload>,
}

impl TicketInput {
    /// The JSON body of `POST` (`editing`: `PUT`) `/api/tickets`.
    pub fn body(&self, editing: bool) -> Value {
        let mut body = json!({"title": self.title, "price": price_value(&self.price)});
        let fields = [
            ("venue", Value::String(self.venue.trim().to_owned())),
            ("startsAt", Value::String(self.starts_at.trim().to_owned())),
            ("section", Value::String(self.section.trim().to_owned())),
            ("row", Value::String(self.row.trim().to_owned())),
            ("seat", Value::String(self.seat.trim().to_owned())),
            ("faceValue", price_value(&self.face_value)),
        ];
        for (name, value) in fields {
            if editing || value != Value::String(String::new()) {
                body[name] = value;
            }
        }
        body
    }
}

/// A file the visitor attached. Its `Debug` shows its size alone.
#[derive(Clone, PartialEq, Eq)]
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("size", &self.bytes.len()).finish_non_exhaustive()
    }
}

/// The file a ticket's pass carries, described (`{type, size, name}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PassFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub size: i64,
    pub name: String,
}

/// What a held ticket's pass carries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct PassSummary {
    pub barcode: bool,
    #[serde(default)]
    pub file: Option<PassFile>,
}

/// A ticket the visitor bought and holds (`GET /api/tickets/held`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldTicket {
    #[serde(flatten)]
    pub ticket: Ticket,
    pub pass: PassSummary,
    /// `held`, or `relisted` while the visitor sells it again.
    pub pass_state: String,
    /// The listing selling it again, while relisted.
    #[serde(default)]
    pub resale_id: Option<String>,
}

/// The ticket itself, for its holder (`GET /api/tickets/:id/pass`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pass {
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default)]
    pub file: Option<PassFile>,
}

impl Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass").field("file", &self.file).finish_non_exhaustive()
    }
}

/// A pass's file as the API sent it, to hand on to the browser.
#[derive(Clone, PartialEq, Eq)]
pub struct Download {
    pub content_type: String,
    pub disposition: String,
    pub bytes: Vec<u8>,
}

impl Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("content_type", &self.content_type).finish_non_exhaustive()
    }
}

/// Where a ticket stands (API.md "tickets").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    #[default]
    Available,
    Reserved,
    Sold,
    Withdrawn,
    /// Its event started before it sold.
    Ended,
}

/// What the listing asks for: the visitor's search words, order and price
/// bounds as typed (the API checks them), and where the page starts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub min_price: String,
    #[serde(default)]
    pub max_price: String,
    /// Events from this date (`YYYY-MM-DD`).
    #[serde(default)]
    pub from: String,
    /// Events up to this date, inclusive.
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub cursor: String,
}

impl Listing {
    /// The non-empty parameters, named as the API (and the home page's
    /// form) names them.
    pub fn params(&self) -> Vec<(&'static str, &str)> {
        [
            ("q", self.q.as_str()),
            ("sort", self.sort.as_str()),
            ("minPrice", self.min_price.as_str()),
            ("maxPrice", self.max_price.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("cursor", self.cursor.as_str()),
        ]
        .into_iter()
        .map(|(name, value)| (name, value.trim()))
        .filter(|(_, value)| !value.is_empty())
        .collect()
    }
}

/// A saved search (`/api/alerts`): e-mailed about when a matching ticket
/// goes on sale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: String,
    pub q: String,
    #[serde(default, deserialize_with = "optional_price")]
    pub min_price: Option<Cents>,
    #[serde(default, deserialize_with = "optional_price")]
    pub max_price: Option<Cents>,
    /// RFC 3339 bounds of the event's start.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

impl Listing {
    /// The body of `POST /api/alerts` for this search: its filters (the
    /// order and page do not matter to an alert).
    pub fn alert_body(&self) -> Value {
        let filters = self
            .params()
            .into_iter()
            .filter(|(name, _)| !matches!(*name, "sort" | "cursor"))
            .map(|(name, value)| (name.to_owned(), Value::String(value.to_owned())));
        Value::Object(filters.collect())
    }

    /// Whether the search has a word (an alert needs one).
    pub fn has_words(&self) -> bool {
        self.q.chars().any(char::is_alphanumeric)
    }
}

/// `params` as an encoded query string (`q=rock+night&sort=newest`),
/// empty when there are none.
pub fn query_string(params: &[(&str, &str)]) -> String {
    match reqwest::Url::parse_with_params("http://site/", params) {
        Ok(url) => url.query().unwrap_or_default().to_owned(),
        Err(_) => String::new(),
    }
}

/// The ticket inside an order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderTicket {
    pub id: String,
    pub title: String,
    #[serde(deserialize_with = "price")]
    pub price: Cents,
    /// Its event and seat (issue 24).
    #[serde(flatten)]
    pub event: EventDetails,
}

/// An order, as the API renders it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    pub status: OrderStatus,
    pub expires_at: String,
    pub ticket: OrderTicket,
}

/// Where the seller's payout account stands (`GET /api/payouts/account`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// No payout account yet.
    NotConnected,
    /// Connected, but Stripe needs more details before it pays out.
    DetailsNeeded,
    /// Payouts enabled and transfers active: the seller gets paid.
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
struct AccountBody {
    status: AccountStatus,
}

#[derive(Deserialize)]
struct OnboardingBody {
    url: String,
}

/// Where a sale's payout stands, as the seller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayoutState {
    /// Held until `holdUntil` (the buyer may still report a problem).
    Held,
    /// The hold ended: it is on its way (or waits for a ready account).
    Due,
    /// Transferred on `paidAt`.
    Paid,
    /// The buyer reported a problem; frozen until an operator decides.
    Disputed,
    /// The buyer got their money back; the seller gets nothing.
    Refunded,
}

/// A problem the buyer reported with a sale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedProblem {
    pub reason: String,
    pub reported_at: String,
}

/// One sale on the Earnings page (`GET /api/payouts`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    pub order_id: String,
    /// Absent for sales made before tickets were kept with payouts.
    #[serde(default)]
    pub ticket_id: Option<String>,
    /// Absent for sales made before titles were kept.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(deserialize_with = "amount")]
    pub price: Cents,
    #[serde(deserialize_with = "amount")]
    pub fee: Cents,
    /// The seller's share: price − fee.
    #[serde(deserialize_with = "amount")]
    pub amount: Cents,
    pub currency: String,
    pub state: PayoutState,
    pub sold_at: String,
    pub hold_until: String,
    #[serde(default)]
    pub paid_at: Option<String>,
    #[serde(default)]
    pub problem: Option<ReportedProblem>,
}

/// The seller's totals over their sales.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EarningsTotals {
    /// The prices of every sale.
    #[serde(deserialize_with = "amount")]
    pub sold: Cents,
    /// The platform's fees on them.
    #[serde(deserialize_with = "amount")]
    pub fees: Cents,
    /// Shares transferred to the seller.
    #[serde(deserialize_with = "amount")]
    pub paid: Cents,
    /// Shares held, due or disputed.
    #[serde(deserialize_with = "amount")]
    pub pending: Cents,
    /// Prices given back to buyers.
    #[serde(deserialize_with = "amount")]
    pub refunded: Cents,
}

/// The seller's sales and what they were paid (`GET /api/payouts`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Earnings {
    account: AccountBody,
    /// The latest sales (at most [`Earnings::LIMIT`]), newest first.
    pub payouts: Vec<Payout>,
    pub totals: EarningsTotals,
}

impl Earnings {
    /// How many sales the API lists at most.
    pub const LIMIT: usize = 200;

    /// Earnings as the API would send them.
    pub fn new(account: AccountStatus, payouts: Vec<Payout>, totals: EarningsTotals) -> Self {
        Self { account: AccountBody { status: account }, payouts, totals }
    }

    /// Where the seller's payout account stands.
    pub fn account(&self) -> AccountStatus {
        self.account.status
    }
}

/// A price as the API renders it (a JSON number in currency units, at most
/// two decimals) read straight into cents, never through a float.
fn price<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Cents, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Cents::parse_price(Some(&value)).map_err(serde::de::Error::custom)
}

/// An amount of money as the API renders it (a JSON number in currency
/// units, at most two decimals), read straight into cents: unlike a
/// price, it may be 0 (a fee of 0 %, nothing refunded) or above a price's
/// cap (totals).
fn amount<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Cents, D::Error> {
    let invalid = || serde::de::Error::custom("an amount of money with at most two decimals");
    let Value::Number(number) = Value::deserialize(deserializer)? else { return Err(invalid()) };
    let text = number.to_string();
    let (sign, digits) = text.strip_prefix('-').map_or((1, text.as_str()), |rest| (-1, rest));
    let (units, decimals) = digits.split_once('.').unwrap_or((digits, ""));
    let decimals = decimals.trim_end_matches('0');
    if units.is_empty()
        || decimals.len() > 2
        || !units.bytes().chain(decimals.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let cents = format!("{decimals:0<2}").parse::<i64>().map_err(|_| invalid())?;
    let units = units.parse::<i64>().map_err(|_| invalid())?;
    let total = units.checked_mul(100).and_then(|u| u.checked_add(cents)).ok_or_else(invalid)?;
    Ok(Cents::new(sign * total))
}

/// An optional price, as [`price`] reads one.
fn optional_price<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cents>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => Cents::parse_price(Some(&value)).map(Some).map_err(serde::de::Error::custom),
    }
}

/// The visitor's e-mail preferences (`GET /api/notifications/preferences`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailPreferences {
    /// Where their mail goes, once the notifications service knows it.
    #[serde(default)]
    pub email: Option<String>,
    pub kinds: Vec<MailKindChoice>,
    /// The mail server's last permanent refusal of the address.
    #[serde(default)]
    pub refused: Option<MailRefusal>,
}

/// One kind of e-mail and whether the visitor gets it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailKindChoice {
    pub kind: String,
    pub description: String,
    /// Always sent; cannot be turned off.
    pub essential: bool,
    pub enabled: bool,
}

/// A permanent refusal of the visitor's address by the mail server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailRefusal {
    pub reason: String,
    /// RFC 3339.
    pub refused_at: String,
}

/// The kind of e-mail an unsubscribe link turned off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Unsubscribed {
    pub kind: String,
    pub description: String,
}

/// One message of an API error, possibly about a field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    pub message: String,
    #[serde(default)]
    pub field: Option<String>,
}

/// The API path of one resource. Ids come from the visitor's URL: only a
/// UUID goes into the path (`..%2F..%2Fmetrics` decoded would walk out of
/// `/api/orders/` with the visitor's session); anything else is a 404
/// without asking the API.
fn resource(collection: &str, id: &str) -> ApiResult<String> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| Failure::not_found())?;
    Ok(format!("{collection}/{id}"))
}

/// An API call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status (0: the API could not be reached).
    pub status: u16,
    pub problems: Vec<Problem>,
}

impl Failure {
    /// The message about `field`, if any.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.problems.iter().find(|p| p.field.as_deref() == Some(field)).map(|p| p.message.as_str())
    }

    /// The messages about no field in particular.
    pub fn general(&self) -> Vec<String> {
        self.problems.iter().filter(|p| p.field.is_none()).map(|p| p.message.clone()).collect()
    }

    /// All the messages, for a page that shows them together.
    pub fn messages(&self) -> Vec<String> {
        self.problems.iter().map(|p| p.message.clone()).collect()
    }

    /// What the API answers for an unknown id, without asking it.
    fn not_found() -> Self {
        Self { status: 404, problems: vec![Problem { message: "Not Found".into(), field: None }] }
    }

    fn unreachable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "the web client cannot reach the API");
        Self {
            status: 0,
            problems: vec![Problem {
                message: "The marketplace is unavailable right now. Please try again.".into(),
                field: None,
            }],
        }
    }
}

pub type ApiResult<T> = Result<T, Failure>;

/// A page of tickets and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TicketPage {
    pub tickets: Vec<Ticket>,
    pub next_cursor: Option<String>,
}

/// The HTTP API as the pages use it. `session` is the value of the visitor's
/// session cookie.
pub trait Api: Send + Sync + Debug + 'static {
    fn current_user<'a>(&'a self, session: Option<&'a str>) -> BoxFuture<'a, Option<User>>;
    /// Signs up or in (`signup` says which) on behalf of the visitor at
    /// `client` (forwarded, so that the API's per-address limits count
    /// visitors, not this web client); returns the user and the
    /// `Set-Cookie` to pass to the browser.
    fn authenticate<'a>(
        &'a self,
        client: IpAddr,
        signup: bool,
        email: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, ApiResult<(User, HeaderValue)>>;
    /// Signs `session` out (the API revokes it for every service); the
    /// cookie that clears it in the browser.
    fn sign_out<'a>(&'a self, session: Option<&'a str>) -> BoxFuture<'a, ApiResult<HeaderValue>>;
    /// A page of the tickets on sale, searched and sorted as `listing` asks.
    fn tickets<'a>(&'a self, listing: &'a Listing) -> BoxFuture<'a, ApiResult<TicketPage>>;
    /// A page of the signed-in seller's tickets, newest first.
    fn my_tickets<'a>(
        &'a self,
        session: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ApiResult<TicketPage>>;
    fn ticket<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ApiResult<Ticket>>;
    /// Takes one of the seller's tickets off sale.
    fn withdraw_ticket<'a>(&'a self, session: &'a str, id: &'a str)
    -> BoxFuture<'a, ApiResult<()>>;
    /// Puts a ticket up for sale with its barcode and file (multipart).
    fn create_ticket<'a>(
        &'a self,
        session: &'a str,
        ticket: &'a TicketInput,
    ) -> BoxFuture<'a, ApiResult<Ticket>>;
    /// The tickets the visitor bought and holds (My tickets).
    fn held_tickets<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<HeldTicket>>>;
    /// The ticket itself, for its holder.
    fn pass<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<Pass>>;
    /// The ticket's file, for its holder.
    fn pass_file<'a>(&'a self, session: &'a str, id: &'a str)
    -> BoxFuture<'a, ApiResult<Download>>;
    /// Sells again a ticket the visitor bought, at `price`.
    fn resell<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        price: &'a str,
    ) -> BoxFuture<'a, ApiResult<Ticket>>;
    fn update_ticket<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        ticket: &'a TicketInput,
    ) -> BoxFuture<'a, ApiResult<Ticket>>;
    fn create_order<'a>(
        &'a self,
        session: &'a str,
        ticket_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Order>>;
    fn order<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<Order>>;
    fn orders<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<Order>>>;
    fn cancel_order<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<()>>;
    /// Pays for an order; `return_url` is where the buyer comes back to
    /// after authenticating with their bank.
    fn pay<'a>(
        &'a self,
        session: &'a str,
        order_id: &'a str,
        token: &'a str,
        return_url: Option<&'a str>,
    ) -> BoxFuture<'a, ApiResult<Payment>>;
    /// Settles the order's payment now (the buyer is back from
    /// authentication).
    fn settle_payment<'a>(
        &'a self,
        session: &'a str,
        order_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Payment>>;
    /// Where the visitor's payout account stands
    /// (`GET /api/payouts/account`).
    fn payout_account<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<AccountStatus>>;
    /// Starts (or resumes) connecting the visitor's payout account: the
    /// processor's onboarding page to send them to, which sends them back
    /// to `return_url` (`POST /api/payouts/account/onboarding`).
    fn connect_payout_account<'a>(
        &'a self,
        session: &'a str,
        return_url: &'a str,
    ) -> BoxFuture<'a, ApiResult<String>>;
    /// Reads the visitor's own payout account again from the processor
    /// (`POST /api/payouts/account/refresh`).
    fn refresh_payout_account<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, ApiResult<AccountStatus>>;
    /// The visitor's sales as a seller and their payouts
    /// (`GET /api/payouts`).
    fn earnings<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Earnings>>;
    /// Reports a problem with the ticket the visitor bought in `order_id`,
    /// which freezes the seller's payout
    /// (`POST /api/orders/:id/problem`).
    fn report_problem<'a>(
        &'a self,
        session: &'a str,
        order_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>>;
    /// The visitor's e-mail preferences
    /// (`GET /api/notifications/preferences`).
    fn mail_preferences<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, ApiResult<MailPreferences>>;
    /// Turns each named kind of e-mail on or off
    /// (`PUT /api/notifications/preferences`).
    fn set_mail_preferences<'a>(
        &'a self,
        session: &'a str,
        choices: &'a [(String, bool)],
    ) -> BoxFuture<'a, ApiResult<MailPreferences>>;
    /// Turns off the kind of e-mail an unsubscribe link's `token` names
    /// (`POST /api/notifications/unsubscribe`, no session).
    fn unsubscribe<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ApiResult<Unsubscribed>>;
    /// The visitor's alerts (`GET /api/alerts`).
    fn alerts<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<Alert>>>;
    /// Saves `search` as an alert (`POST /api/alerts`).
    fn create_alert<'a>(
        &'a self,
        session: &'a str,
        search: &'a Listing,
    ) -> BoxFuture<'a, ApiResult<Alert>>;
    /// Deletes one of the visitor's alerts (`DELETE /api/alerts/:id`).
    fn delete_alert<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<()>>;
}

/// The real API over HTTP.
#[derive(Debug, Clone)]
pub struct HttpApi {
    http: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<Problem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CurrentUser {
    current_user: Option<User>,
}

impl HttpApi {
    /// A client of the API at `base` that waits up to `timeout` for an
    /// answer (longer than the payments service waits for Stripe).
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        common::install_crypto();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned() })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        session: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match session {
            Some(session) => request.header("cookie", format!("{COOKIE_NAME}={session}")),
            None => request,
        }
    }

    /// A `POST` of `body` as JSON, as the visitor with `session`.
    fn post(&self, path: &str, session: &str, body: &Value) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path, Some(session)).json(body)
    }

    /// A request about one resource of `collection`, or the 404 of an id
    /// that is no UUID ([`resource`]).
    fn request_for(
        &self,
        method: reqwest::Method,
        collection: &str,
        id: &str,
        session: Option<&str>,
    ) -> ApiResult<reqwest::RequestBuilder> {
        Ok(self.request(method, &resource(collection, id)?, session))
    }
}

/// Every call of [`HttpApi`]: sends `request` (or answers its failure to be
/// built) and reads a successful answer with `read`. The [`Api`] trait
/// returns boxed futures so that the pages hold it as `dyn Api`.
fn call<'a, T, R>(
    request: ApiResult<reqwest::RequestBuilder>,
    read: impl FnOnce(reqwest::Response) -> R + Send + 'a,
) -> BoxFuture<'a, ApiResult<T>>
where
    R: Future<Output = ApiResult<T>> + Send + 'a,
{
    Box::pin(async move { read(send(request?).await?).await })
}

/// The response to `request`, or the failure it answered with.
async fn send(request: reqwest::RequestBuilder) -> ApiResult<reqwest::Response> {
    let response = request.send().await.map_err(Failure::unreachable)?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let problems =
        response.json::<ErrorBody>().await.map(|b| b.errors).unwrap_or_else(|_| {
            vec![Problem { message: "Something went wrong".into(), field: None }]
        });
    Err(Failure { status, problems })
}

/// An answer's JSON body.
async fn json<T: DeserializeOwned>(response: reqwest::Response) -> ApiResult<T> {
    response.json().await.map_err(Failure::unreachable)
}

/// An answer that carries nothing more than its success.
async fn done(_: reqwest::Response) -> ApiResult<()> {
    Ok(())
}

/// A payment's answer: 202 waits for authentication, any other success is
/// paid.
async fn payment(response: reqwest::Response) -> ApiResult<Payment> {
    if response.status() == reqwest::StatusCode::ACCEPTED {
        return Ok(Payment::RequiresAction(json(response).await?));
    }
    Ok(Payment::Paid)
}

/// A page of tickets and its `X-Next-Cursor`.
async fn page(response: reqwest::Response) -> ApiResult<TicketPage> {
    let next_cursor =
        response.headers().get("x-next-cursor").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok(TicketPage { tickets: json(response).await?, next_cursor })
}

/// The session cookie the API set, to pass on to the browser.
fn set_cookie(response: &reqwest::Response) -> ApiResult<HeaderValue> {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .ok_or_else(|| Failure::unreachable("the API set no session cookie"))
}

/// A price as the API takes it: the visitor's text, as a JSON string.
fn price_value(price: &str) -> Value {
    Value::String(price.trim().trim_start_matches('$').to_owned())
}

impl Api for HttpApi {
    /// The one call whose failures all mean the same: no user.
    fn current_user<'a>(&'a self, session: Option<&'a str>) -> BoxFuture<'a, Option<User>> {
        Box::pin(async move {
            let path = "/api/users/currentuser";
            let response = send(self.request(reqwest::Method::GET, path, Some(session?))).await;
            json::<CurrentUser>(response.ok()?).await.ok()?.current_user
        })
    }

    fn authenticate<'a>(
        &'a self,
        client: IpAddr,
        signup: bool,
        email: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, ApiResult<(User, HeaderValue)>> {
        let path = if signup { "/api/users/signup" } else { "/api/users/signin" };
        let request = self
            .request(reqwest::Method::POST, path, None)
            .header(FORWARDED_FOR, client.to_string())
            .json(&json!({"email": email, "password": password}));
        call(Ok(request), |response| async move {
            let cookie = set_cookie(&response)?;
            Ok((json(response).await?, cookie))
        })
    }

    fn sign_out<'a>(&'a self, session: Option<&'a str>) -> BoxFuture<'a, ApiResult<HeaderValue>> {
        let request = self.request(reqwest::Method::POST, "/api/users/signout", session);
        call(Ok(request), |response| async move { set_cookie(&response) })
    }

    fn tickets<'a>(&'a self, listing: &'a Listing) -> BoxFuture<'a, ApiResult<TicketPage>> {
        // The visitor's text goes into the query string encoded.
        let mut params = listing.params();
        params.push(("limit", "24"));
        let path = format!("/api/tickets?{}", query_string(&params));
        call(Ok(self.request(reqwest::Method::GET, &path, None)), page)
    }

    fn my_tickets<'a>(
        &'a self,
        session: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, ApiResult<TicketPage>> {
        let mut params = vec![("limit", "1000")];
        params.extend(cursor.map(|cursor| ("cursor", cursor)));
        let path = format!("/api/tickets/mine?{}", query_string(&params));
        call(Ok(self.request(reqwest::Method::GET, &path, Some(session))), page)
    }

    fn withdraw_ticket<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        call(self.request_for(reqwest::Method::DELETE, "/api/tickets", id, Some(session)), done)
    }

    fn ticket<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ApiResult<Ticket>> {
        call(self.request_for(reqwest::Method::GET, "/api/tickets", id, None), json)
    }

    fn create_ticket<'a>(
        &'a self,
        session: &'a str,
        ticket: &'a TicketInput,
    ) -> BoxFuture<'a, ApiResult<Ticket>> {
        let mut form = reqwest::multipart::Form::new();
        if let Value::Object(fields) = ticket.body(false) {
            for (name, value) in fields {
                form = form.text(name, value.as_str().unwrap_or_default().to_owned());
            }
        }
        if !ticket.barcode.trim().is_empty() {
            form = form.text("barcode", ticket.barcode.clone());
        }
        if let Some(file) = &ticket.file {
            let part =
                reqwest::multipart::Part::bytes(file.bytes.clone()).file_name(file.name.clone());
            form = form.part("file", part);
        }
        let request = self.request(reqwest::Method::POST, "/api/tickets", Some(session));
        call(Ok(request.multipart(form)), json)
    }

    fn held_tickets<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<HeldTicket>>> {
        call(Ok(self.request(reqwest::Method::GET, "/api/tickets/held", Some(session))), json)
    }

    fn pass<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<Pass>> {
        let request = resource("/api/tickets", id)
            .map(|path| self.request(reqwest::Method::GET, &format!("{path}/pass"), Some(session)));
        call(request, json)
    }

    fn pass_file<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Download>> {
        let request = resource("/api/tickets", id).map(|path| {
            self.request(reqwest::Method::GET, &format!("{path}/pass/file"), Some(session))
        });
        call(request, |response| async move {
            let header = |name: &str| {
                response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
            };
            let content_type = header("content-type").unwrap_or_default();
            let disposition = header("content-disposition").unwrap_or_else(|| "attachment".into());
            let bytes = response.bytes().await.map_err(Failure::unreachable)?.to_vec();
            Ok(Download { content_type, disposition, bytes })
        })
    }

    fn resell<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        price: &'a str,
    ) -> BoxFuture<'a, ApiResult<Ticket>> {
        let request = resource("/api/tickets", id).map(|path| {
            self.post(&format!("{path}/resale"), session, &json!({"price": price_value(price)}))
        });
        call(request, json)
    }

    fn update_ticket<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        ticket: &'a TicketInput,
    ) -> BoxFuture<'a, ApiResult<Ticket>> {
        let request = self
            .request_for(reqwest::Method::PUT, "/api/tickets", id, Some(session))
            .map(|r| r.json(&ticket.body(true)));
        call(request, json)
    }

    fn create_order<'a>(
        &'a self,
        session: &'a str,
        ticket_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Order>> {
        call(Ok(self.post("/api/orders", session, &json!({"ticketId": ticket_id}))), json)
    }

    fn order<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<Order>> {
        call(self.request_for(reqwest::Method::GET, "/api/orders", id, Some(session)), json)
    }

    fn orders<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<Order>>> {
        call(Ok(self.request(reqwest::Method::GET, "/api/orders", Some(session))), json)
    }

    fn cancel_order<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        call(self.request_for(reqwest::Method::DELETE, "/api/orders", id, Some(session)), done)
    }

    fn pay<'a>(
        &'a self,
        session: &'a str,
        order_id: &'a str,
        token: &'a str,
        return_url: Option<&'a str>,
    ) -> BoxFuture<'a, ApiResult<Payment>> {
        let mut body = json!({"token": token, "orderId": order_id});
        if let Some(url) = return_url {
            body["returnUrl"] = json!(url);
        }
        call(Ok(self.post("/api/payments", session, &body)), payment)
    }

    fn settle_payment<'a>(
        &'a self,
        session: &'a str,
        order_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Payment>> {
        let body = json!({"orderId": order_id});
        call(Ok(self.post("/api/payments/settle", session, &body)), payment)
    }

    fn payout_account<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<AccountStatus>> {
        let request = self.request(reqwest::Method::GET, "/api/payouts/account", Some(session));
        call(Ok(request), |response| async move { Ok(json::<AccountBody>(response).await?.status) })
    }

    fn connect_payout_account<'a>(
        &'a self,
        session: &'a str,
        return_url: &'a str,
    ) -> BoxFuture<'a, ApiResult<String>> {
        // An expired link sends the seller to `refreshUrl`, which defaults
        // to the return page: it offers a fresh link.
        let body = json!({"returnUrl": return_url});
        let request = self.post("/api/payouts/account/onboarding", session, &body);
        call(Ok(request), |response| async move { Ok(json::<OnboardingBody>(response).await?.url) })
    }

    fn refresh_payout_account<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, ApiResult<AccountStatus>> {
        let request = self.post("/api/payouts/account/refresh", session, &json!({}));
        call(Ok(request), |response| async move { Ok(json::<AccountBody>(response).await?.status) })
    }

    fn earnings<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Earnings>> {
        call(Ok(self.request(reqwest::Method::GET, "/api/payouts", Some(session))), json)
    }

    fn report_problem<'a>(
        &'a self,
        session: &'a str,
        order_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        let request = resource("/api/orders", order_id)
            .map(|path| self.post(&format!("{path}/problem"), session, &json!({"reason": reason})));
        call(request, done)
    }

    fn mail_preferences<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, ApiResult<MailPreferences>> {
        let path = "/api/notifications/preferences";
        call(Ok(self.request(reqwest::Method::GET, path, Some(session))), json)
    }

    fn set_mail_preferences<'a>(
        &'a self,
        session: &'a str,
        choices: &'a [(String, bool)],
    ) -> BoxFuture<'a, ApiResult<MailPreferences>> {
        let body: serde_json::Map<String, Value> =
            choices.iter().map(|(kind, on)| (kind.clone(), Value::Bool(*on))).collect();
        let path = "/api/notifications/preferences";
        let request = self.request(reqwest::Method::PUT, path, Some(session)).json(&body);
        call(Ok(request), json)
    }

    fn unsubscribe<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ApiResult<Unsubscribed>> {
        // The token goes into the query string encoded, whatever the
        // visitor's URL held.
        let path = format!("/api/notifications/unsubscribe?{}", query_string(&[("token", token)]));
        let request = self
            .request(reqwest::Method::POST, &path, None)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click");
        call(Ok(request), json)
    }

    fn alerts<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<Alert>>> {
        call(Ok(self.request(reqwest::Method::GET, "/api/alerts", Some(session))), json)
    }

    fn create_alert<'a>(
        &'a self,
        session: &'a str,
        search: &'a Listing,
    ) -> BoxFuture<'a, ApiResult<Alert>> {
        call(Ok(self.post("/api/alerts", session, &search.alert_body())), json)
    }

    fn delete_alert<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        call(self.request_for(reqwest::Method::DELETE, "/api/alerts", id, Some(session)), done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids that are not UUIDs never reach the API: against an API nobody
    /// serves, they answer 404 at once, where a call would fail to connect.
    #[tokio::test]
    async fn only_uuids_go_into_api_paths() {
        let api = HttpApi::new("http://127.0.0.1:9", Duration::from_secs(1)).expect("client");
        for id in ["../../metrics?x=", "../tickets/x", "t1", "%2e%2e", ""] {
            assert_eq!(api.ticket(id).await.expect_err("refused").status, 404, "{id}");
            assert_eq!(api.order("s", id).await.expect_err("refused").status, 404, "{id}");
            assert_eq!(api.cancel_order("s", id).await.expect_err("refused").status, 404, "{id}");
            assert_eq!(
                api.withdraw_ticket("s", id).await.expect_err("refused").status,
                404,
                "{id}"
            );
            let input =
                TicketInput { title: "t".into(), price: "1".into(), ..TicketInput::default() };
            let edit = api.update_ticket("s", id, &input).await;
            assert_eq!(edit.expect_err("refused").status, 404, "{id}");
        }
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(api.ticket(&id).await.expect_err("no API").status, 0, "a UUID is sent");
    }

    fn order(status: &str, price: Value) -> serde_json::Result<Order> {
        serde_json::from_value(json!({
            "id": "o1",
            "status": status,
            "expiresAt": "2026-11-21T10:15:00.000Z",
            "ticket": {"id": "t1", "title": "Opera night", "price": price},
        }))
    }

    #[test]
    fn order_statuses_are_read_from_the_api_names() {
        for (name, status) in [
            ("created", OrderStatus::Created),
            ("awaiting:payment", OrderStatus::AwaitingPayment),
            ("complete", OrderStatus::Complete),
            ("cancelled", OrderStatus::Cancelled),
        ] {
            assert_eq!(order(name, json!(20)).expect("order").status, status, "{name}");
        }
        assert!(order("lost", json!(20)).is_err());
    }

    #[test]
    fn amounts_are_read_as_cents_zero_and_large_included() {
        #[derive(Deserialize)]
        struct Amount(#[serde(deserialize_with = "amount")] Cents);
        let read = |value: Value| serde_json::from_value::<Amount>(value).map(|a| a.0.get());
        for (value, cents) in [
            (json!(17.99), 1799),
            (json!(0), 0),
            (json!(0.5), 50),
            (json!(2.10), 210),
            (json!(12_345_678.9), 1_234_567_890),
            (json!(-1.25), -125),
        ] {
            assert_eq!(read(value.clone()).expect("an amount"), cents, "{value}");
        }
        for value in [json!(0.001), json!("1.00"), json!(null), json!(1e300)] {
            assert!(read(value.clone()).is_err(), "{value}");
        }
    }

    #[test]
    fn prices_are_read_as_cents() {
        for (price, cents) in [(json!(19.99), 1999), (json!(10), 1000), (json!(0.5), 50)] {
            assert_eq!(order("created", price).expect("order").ticket.price.get(), cents);
        }
        let ticket: Ticket = serde_json::from_value(json!({
            "id": "t1", "title": "Opera night", "price": 19.99, "userId": "u1", "version": 0,
        }))
        .expect("ticket");
        assert_eq!(ticket.price, Cents::new(1999));
        assert_eq!(ticket.status, TicketStatus::Available, "an API without statuses");
        assert!(order("created", json!(19.999)).is_err(), "never rounded");
    }
}
