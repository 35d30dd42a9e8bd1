//! Every page rendered from a fake API: what visitors see signed in and
//! out, forms and their errors, redirects, the order page's states, "Get
//! paid", Earnings and "Report a problem", the 404 page, and the refusal
//! of cross-site form posts. Fast: no database, no
//! bus, no browser.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use common::BoxFuture;
use common::money::Cents;
use common::session::COOKIE_NAME;
use common::time::Timestamp;
use reqwest::StatusCode;
use web::api::{
    AccountStatus, Alert, Api, ApiResult, Authentication, Download, Earnings, EarningsTotals,
    EventDetails, Failure, HeldTicket, Listing, MailKindChoice, MailPreferences, MailRefusal,
    Order, OrderStatus, OrderTicket, Pass, PassFile, PassSummary, Payment, Payout, PayoutState,
    Problem, ReportedProblem, Ticket, TicketInput, TicketPage, TicketStatus, Unsubscribed, User,
};
use web::pages::WebState;

const SESSION: &str = "buyer-session";
const SELLER: &str = "seller-session";

#[derive(Debug)]
struct Fake {
    tickets: Vec<Ticket>,
    next_cursor: Option<String>,
    orders: HashMap<String, Order>,
    /// What `authenticate`, `create_ticket` and `pay` answer when set.
    refuse: Option<Failure>,
    paid: Vec<(String, String)>,
    /// What the listing answers when set (a refused search).
    refuse_search: Option<Failure>,
    /// The searches asked for.
    searches: Vec<Listing>,
    /// The return URLs payments were sent with.
    return_urls: Vec<Option<String>>,
    /// What settling a payment answers.
    settled: Option<ApiResult<Payment>>,
    /// The sessions sign-outs were asked for.
    signed_out: Vec<Option<String>>,
    /// The tickets put up for sale, as the sell form sent them.
    sold: Vec<TicketInput>,
    /// The buyer's tickets (My tickets) and their barcodes.
    held: Vec<(HeldTicket, Option<String>)>,
    /// The "Sell again"s asked for: ticket and price.
    resales: Vec<(String, String)>,
    /// The bodies of ticket creations and edits, as sent to the API.
    submitted: Vec<serde_json::Value>,
    /// The visitor's payout account (`None`: not connected); `Err`: the
    /// payouts API does not answer.
    account: Result<Option<AccountStatus>, Failure>,
    /// What the processor says of the account when it is read again.
    refreshed: Option<AccountStatus>,
    /// The onboarding page the API sends sellers to.
    onboarding_url: String,
    /// What starting onboarding answers when set.
    refuse_onboarding: Option<Failure>,
    /// The return URLs onboarding was started with.
    onboarding_returns: Vec<String>,
    /// The seller's sales (Earnings).
    payouts: Vec<Payout>,
    /// The problems reported: order and reason.
    reported: Vec<(String, String)>,
    /// What reporting a problem answers when set.
    refuse_problem: Option<Failure>,
    /// The kinds of e-mail the visitor turned off.
    mail_off: Vec<String>,
    /// The mail server's refusal of the visitor's address.
    mail_refused: Option<String>,
    /// What saving e-mail preferences answers when set.
    refuse_preferences: Option<Failure>,
    /// The preferences saved, as sent.
    mail_saved: Vec<Vec<(String, bool)>>,
    /// The tokens one-click unsubscribes were asked for.
    unsubscribed: Vec<String>,
    /// The visitor's alerts.
    alerts: Vec<Alert>,
    /// The alert bodies sent to the API.
    alert_bodies: Vec<serde_json::Value>,
    /// What saving an alert answers when set.
    refuse_alert: Option<Failure>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            tickets: Vec::new(),
            next_cursor: None,
            orders: HashMap::new(),
            refuse: None,
            paid: Vec::new(),
            refuse_search: None,
            searches: Vec::new(),
            return_urls: Vec::new(),
            settled: None,
            signed_out: Vec::new(),
            sold: Vec::new(),
            held: Vec::new(),
            resales: Vec::new(),
            submitted: Vec::new(),
            account: Ok(None),
            refreshed: None,
            onboarding_url: "/api/payments/fake-onboarding/acct_fake_1".into(),
            refuse_onboarding: None,
            onboarding_returns: Vec::new(),
            payouts: Vec::new(),
            reported: Vec::new(),
            refuse_problem: None,
            mail_off: Vec::new(),
            mail_refused: None,
            refuse_preferences: None,
            mail_saved: Vec::new(),
            unsubscribed: Vec::new(),
            alerts: Vec::new(),
            alert_bodies: Vec::new(),
            refuse_alert: None,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct FakeApi(Arc<Mutex<Fake>>);

fn user(session: &str) -> Option<User> {
    match session {
        SESSION => Some(User { id: "buyer".into(), email: "buyer@example.com".into() }),
        SELLER => Some(User { id: "seller".into(), email: "seller@example.com".into() }),
        _ => None,
    }
}

fn failure(status: u16, problems: &[(&str, Option<&str>)]) -> Failure {
    Failure {
        status,
        problems: problems
            .iter()
            .map(|(message, field)| Problem {
                message: (*message).into(),
                field: field.map(str::to_owned),
            })
            .collect(),
    }
}

impl FakeApi {
    fn with(configure: impl FnOnce(&mut Fake)) -> Self {
        let api = Self::default();
        configure(&mut api.0.lock().expect("lock"));
        api
    }

    fn fake(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.0.lock().expect("lock")
    }

    fn refusal(&self) -> Option<Failure> {
        self.fake().refuse.clone()
    }
}

fn unauthorized() -> Failure {
    failure(401, &[("Not authorized", None)])
}

impl Api for FakeApi {
    fn current_user<'a>(&'a self, session: Option<&'a str>) -> BoxFuture<'a, Option<User>> {
        Box::pin(async move { session.and_then(user) })
    }

    fn authenticate<'a>(
        &'a self,
        _: std::net::IpAddr,
        _: bool,
        email: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, ApiResult<(User, HeaderValue)>> {
        Box::pin(async move {
            if let Some(refusal) = self.refusal() {
                return Err(refusal);
            }
            let cookie =
                format!("{COOKIE_NAME}=new-session; HttpOnly; SameSite=Lax; Path=/; Max-Age=86400");
            let cookie = HeaderValue::from_str(&cookie).expect("cookie");
            Ok((User { id: "new".into(), email: email.into() }, cookie))
        })
    }

    fn sign_out<'a>(&'a self, session: Option<&'a str>) -> BoxFuture<'a, ApiResult<HeaderValue>> {
        Box::pin(async move {
            self.fake().signed_out.push(session.map(str::to_owned));
            let cookie = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
            Ok(HeaderValue::from_str(&cookie).expect("cookie"))
        })
    }

    /// Like `GET /api/tickets`: only the tickets on sale.
    fn tickets<'a>(&'a self, listing: &'a Listing) -> BoxFuture<'a, ApiResult<TicketPage>> {
        Box::pin(async move {
            let mut fake = self.fake();
            fake.searches.push(listing.clone());
            if let Some(refusal) = fake.refuse_search.clone() {
                return Err(refusal);
            }
            let tickets = fake
                .tickets
                .iter()
                .filter(|t| t.status == TicketStatus::Available)
                .cloned()
                .collect();
            Ok(TicketPage { tickets, next_cursor: fake.next_cursor.clone() })
        })
    }

    /// Like `GET /api/tickets/mine`: the seller's tickets, one page.
    fn my_tickets<'a>(
        &'a self,
        session: &'a str,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, ApiResult<TicketPage>> {
        Box::pin(async move {
            let owner = user(session).ok_or_else(unauthorized)?;
            let tickets =
                self.fake().tickets.iter().filter(|t| t.user_id == owner.id).cloned().collect();
            Ok(TicketPage { tickets, next_cursor: None })
        })
    }

    /// Like `DELETE /api/tickets/:id`.
    fn withdraw_ticket<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let owner = user(session).ok_or_else(unauthorized)?;
            let mut fake = self.fake();
            let ticket = fake.tickets.iter_mut().find(|t| t.id == id);
            let ticket = ticket.ok_or_else(|| failure(404, &[("Not Found", None)]))?;
            if ticket.user_id != owner.id {
                return Err(failure(403, &[("Forbidden", None)]));
            }
            if ticket.status == TicketStatus::Reserved {
                return Err(failure(400, &[("Cannot withdraw a reserved ticket", None)]));
            }
            ticket.status = TicketStatus::Withdrawn;
            Ok(())
        })
    }

    fn ticket<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ApiResult<Ticket>> {
        Box::pin(async move {
            self.fake()
                .tickets
                .iter()
                .find(|t| t.id == id)
                .cloned()
                .ok_or_else(|| failure(404, &[("Not Found", None)]))
        })
    }

    fn held_tickets<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<HeldTicket>>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            Ok(self.fake().held.iter().map(|(held, _)| held.clone()).collect())
        })
    }

    fn pass<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<Pass>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            let fake = self.fake();
            let (held, barcode) = fake
                .held
                .iter()
                .find(|(held, _)| held.ticket.id == id)
                .ok_or_else(|| failure(404, &[("Not Found", None)]))?;
            Ok(Pass { barcode: barcode.clone(), file: held.pass.file.clone() })
        })
    }

    fn pass_file<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Download>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            let known = self.fake().held.iter().any(|(held, _)| held.ticket.id == id);
            if !known {
                return Err(failure(404, &[("Not Found", None)]));
            }
            Ok(Download {
                content_type: "application/pdf".into(),
                disposition: "attachment; filename=\"t.pdf\"".into(),
                bytes: b"%PDF-1.4 fake".to_vec(),
            })
        })
    }

    fn resell<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        price: &'a str,
    ) -> BoxFuture<'a, ApiResult<Ticket>> {
        Box::pin(async move {
            let owner = user(session).ok_or_else(unauthorized)?;
            if let Some(refusal) = self.refusal() {
                return Err(refusal);
            }
            self.fake().resales.push((id.into(), price.into()));
            Ok(ticket("resale", "Again", 1000, &owner.id, None))
        })
    }

    fn create_ticket<'a>(
        &'a self,
        session: &'a str,
        input: &'a TicketInput,
    ) -> BoxFuture<'a, ApiResult<Ticket>> {
        Box::pin(async move {
            let owner = user(session).ok_or_else(unauthorized)?;
            self.fake().submitted.push(input.body(false));
            if let Some(refusal) = self.refusal() {
                return Err(refusal);
            }
            self.fake().sold.push(input.clone());
            let ticket = Ticket {
                id: "new-ticket".into(),
                title: input.title.clone(),
                price: Cents::new(1000),
                user_id: owner.id,
                version: 0,
                order_id: None,
                status: TicketStatus::Available,
                reserved_until: None,
                event: EventDetails::default(),
            };
            self.fake().tickets.push(ticket.clone());
            Ok(ticket)
        })
    }

    fn update_ticket<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        input: &'a TicketInput,
    ) -> BoxFuture<'a, ApiResult<Ticket>> {
        match user(session) {
            Some(_) => {
                self.fake().submitted.push(input.body(true));
                self.ticket(id)
            }
            None => Box::pin(async { Err(unauthorized()) }),
        }
    }

    fn create_order<'a>(
        &'a self,
        session: &'a str,
        ticket_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Order>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            let ticket = self.fake().tickets.iter().find(|t| t.id == ticket_id).cloned();
            let ticket = ticket.ok_or_else(|| failure(404, &[("Not Found", None)]))?;
            let order = Order {
                id: "new-order".into(),
                status: OrderStatus::Created,
                expires_at: Timestamp::now().plus(std::time::Duration::from_secs(900)).to_string(),
                ticket: OrderTicket {
                    id: ticket.id,
                    title: ticket.title,
                    price: ticket.price,
                    event: ticket.event,
                },
            };
            self.fake().orders.insert(order.id.clone(), order.clone());
            Ok(order)
        })
    }

    fn order<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<Order>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            self.fake().orders.get(id).cloned().ok_or_else(|| failure(404, &[("Not Found", None)]))
        })
    }

    fn orders<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<Order>>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            let mut orders: Vec<Order> = self.fake().orders.values().cloned().collect();
            orders.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(orders)
        })
    }

    fn cancel_order<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            if let Some(order) = self.fake().orders.get_mut(id) {
                order.status = OrderStatus::Cancelled;
            }
            Ok(())
        })
    }

    fn pay<'a>(
        &'a self,
        _: &'a str,
        order_id: &'a str,
        token: &'a str,
        return_url: Option<&'a str>,
    ) -> BoxFuture<'a, ApiResult<Payment>> {
        Box::pin(async move {
            let mut fake = self.fake();
            fake.return_urls.push(return_url.map(str::to_owned));
            if token == "tok_chargeDeclined" {
                return Err(failure(402, &[("Your card was declined.", None)]));
            }
            if token == "tok_threeDSecure2Required" {
                if let Some(order) = fake.orders.get_mut(order_id) {
                    order.status = OrderStatus::AwaitingPayment;
                }
                return Ok(Payment::RequiresAction(Authentication {
                    client_secret: "pi_1_secret_x".into(),
                    redirect_url: Some(fake_page()),
                }));
            }
            fake.paid.push((order_id.into(), token.into()));
            if let Some(order) = fake.orders.get_mut(order_id) {
                order.status = OrderStatus::Complete;
            }
            Ok(Payment::Paid)
        })
    }

    fn settle_payment<'a>(
        &'a self,
        _: &'a str,
        order_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<Payment>> {
        Box::pin(async move {
            let mut fake = self.fake();
            let answer =
                fake.settled.clone().unwrap_or_else(|| Err(failure(404, &[("Not Found", None)])));
            let status = match &answer {
                Ok(Payment::Paid) => OrderStatus::Complete,
                Ok(Payment::RequiresAction(_)) => OrderStatus::AwaitingPayment,
                Err(_) => OrderStatus::Created,
            };
            if let Some(order) = fake.orders.get_mut(order_id) {
                order.status = status;
            }
            answer
        })
    }

    fn payout_account<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<AccountStatus>> {
        Box::pin(async move { self.account_status(session) })
    }

    fn connect_payout_account<'a>(
        &'a self,
        session: &'a str,
        return_url: &'a str,
    ) -> BoxFuture<'a, ApiResult<String>> {
        Box::pin(async move {
            self.account_status(session)?;
            let mut fake = self.fake();
            if let Some(refusal) = fake.refuse_onboarding.clone() {
                return Err(refusal);
            }
            fake.onboarding_returns.push(return_url.to_owned());
            if fake.account == Ok(None) {
                fake.account = Ok(Some(AccountStatus::DetailsNeeded));
            }
            Ok(fake.onboarding_url.clone())
        })
    }

    fn refresh_payout_account<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, ApiResult<AccountStatus>> {
        Box::pin(async move {
            self.account_status(session)?;
            let mut fake = self.fake();
            if let (Ok(Some(_)), Some(now)) = (&fake.account, fake.refreshed) {
                fake.account = Ok(Some(now));
            }
            Ok(fake.account.clone()?.unwrap_or(AccountStatus::NotConnected))
        })
    }

    fn earnings<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Earnings>> {
        Box::pin(async move {
            let account = self.account_status(session)?;
            let payouts = self.fake().payouts.clone();
            let totals = EarningsTotals {
                sold: sum(&payouts, |p| Some(p.price)),
                fees: sum(&payouts, |p| (p.state != PayoutState::Refunded).then_some(p.fee)),
                paid: sum(&payouts, |p| (p.state == PayoutState::Paid).then_some(p.amount)),
                pending: sum(&payouts, |p| {
                    matches!(p.state, PayoutState::Held | PayoutState::Due | PayoutState::Disputed)
                        .then_some(p.amount)
                }),
                refunded: sum(&payouts, |p| (p.state == PayoutState::Refunded).then_some(p.price)),
            };
            Ok(Earnings::new(account, payouts, totals))
        })
    }

    fn report_problem<'a>(
        &'a self,
        session: &'a str,
        order_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            let mut fake = self.fake();
            if let Some(refusal) = fake.refuse_problem.clone() {
                return Err(refusal);
            }
            fake.reported.push((order_id.to_owned(), reason.to_owned()));
            Ok(())
        })
    }

    fn mail_preferences<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, ApiResult<MailPreferences>> {
        Box::pin(async move { self.preferences(session) })
    }

    fn set_mail_preferences<'a>(
        &'a self,
        session: &'a str,
        choices: &'a [(String, bool)],
    ) -> BoxFuture<'a, ApiResult<MailPreferences>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            {
                let mut fake = self.fake();
                if let Some(refusal) = fake.refuse_preferences.clone() {
                    return Err(refusal);
                }
                fake.mail_saved.push(choices.to_vec());
                for (kind, on) in choices {
                    fake.mail_off.retain(|off| off != kind);
                    if !on {
                        fake.mail_off.push(kind.clone());
                    }
                }
            }
            self.preferences(session)
        })
    }

    fn unsubscribe<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ApiResult<Unsubscribed>> {
        Box::pin(async move {
            self.fake().unsubscribed.push(token.to_owned());
            if token != UNSUBSCRIBE_SOLD {
                let invalid = "This unsubscribe link is not valid";
                return Err(failure(400, &[(invalid, Some("token"))]));
            }
            self.fake().mail_off.push("sold".into());
            Ok(Unsubscribed { kind: "sold".into(), description: "One of your tickets sold".into() })
        })
    }

    fn alerts<'a>(&'a self, session: &'a str) -> BoxFuture<'a, ApiResult<Vec<Alert>>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            Ok(self.fake().alerts.clone())
        })
    }

    fn create_alert<'a>(
        &'a self,
        session: &'a str,
        search: &'a Listing,
    ) -> BoxFuture<'a, ApiResult<Alert>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            let mut fake = self.fake();
            if let Some(refusal) = fake.refuse_alert.clone() {
                return Err(refusal);
            }
            fake.alert_bodies.push(search.alert_body());
            let alert = Alert {
                id: format!("a{}", fake.alerts.len() + 1),
                q: search.q.clone(),
                min_price: None,
                max_price: None,
                from: None,
                to: None,
            };
            fake.alerts.push(alert.clone());
            Ok(alert)
        })
    }

    fn delete_alert<'a>(&'a self, session: &'a str, id: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            user(session).ok_or_else(unauthorized)?;
            let mut fake = self.fake();
            let before = fake.alerts.len();
            fake.alerts.retain(|alert| alert.id != id);
            if fake.alerts.len() == before {
                return Err(failure(404, &[("Not Found", None)]));
            }
            Ok(())
        })
    }
}

/// The token the fake API takes: it turns "sold" e-mails off.
const UNSUBSCRIBE_SOLD: &str = "c29sZA.c2lnbmVk";

/// Like the notifications API: a receipt (essential), "sold" and alerts.
impl FakeApi {
    fn preferences(&self, session: &str) -> ApiResult<MailPreferences> {
        let user = user(session).ok_or_else(unauthorized)?;
        let fake = self.fake();
        let kind = |kind: &str, description: &str, essential: bool| MailKindChoice {
            kind: kind.into(),
            description: description.into(),
            essential,
            enabled: essential || !fake.mail_off.iter().any(|off| off == kind),
        };
        Ok(MailPreferences {
            email: Some(user.email),
            kinds: vec![
                kind("receipt", "Receipts for the tickets you buy", true),
                kind("sold", "One of your tickets sold", false),
                kind("alert", "New tickets matching your alerts", false),
            ],
            refused: fake.mail_refused.clone().map(|reason| MailRefusal {
                reason,
                refused_at: "2026-12-06T10:00:00.000Z".into(),
            }),
        })
    }
}

/// Like the payouts API, over the fake's payout account and sales.
impl FakeApi {
    fn account_status(&self, session: &str) -> ApiResult<AccountStatus> {
        user(session).ok_or_else(unauthorized)?;
        let account = self.fake().account.clone()?;
        Ok(account.unwrap_or(AccountStatus::NotConnected))
    }
}

fn sum(payouts: &[Payout], pick: impl Fn(&Payout) -> Option<Cents>) -> Cents {
    Cents::new(payouts.iter().filter_map(pick).map(Cents::get).sum())
}

fn fake_page() -> String {
    "/api/payments/fake-authentication/pi_1".to_owned()
}

fn ticket(id: &str, title: &str, cents: i64, owner: &str, order: Option<&str>) -> Ticket {
    Ticket {
        id: id.into(),
        title: title.into(),
        price: Cents::new(cents),
        user_id: owner.into(),
        version: 0,
        order_id: order.map(str::to_owned),
        status: if order.is_some() { TicketStatus::Reserved } else { TicketStatus::Available },
        reserved_until: None,
        event: EventDetails::default(),
    }
}

/// A ticket of `owner` in `status`.
fn ticket_in(id: &str, title: &str, cents: i64, owner: &str, status: TicketStatus) -> Ticket {
    Ticket { status, ..ticket(id, title, cents, owner, None) }
}

fn order(id: &str, status: OrderStatus, expires_in_seconds: i64) -> Order {
    Order {
        id: id.into(),
        status,
        expires_at: Timestamp::from_millis(Timestamp::now().millis() + expires_in_seconds * 1000)
            .to_string(),
        ticket: OrderTicket {
            id: "t1".into(),
            title: "Opera night".into(),
            price: Cents::new(1999),
            event: EventDetails::default(),
        },
    }
}

struct Site {
    base: String,
    api: FakeApi,
}

impl Site {
    async fn start(api: FakeApi, stripe_key: Option<&str>) -> Self {
        let state = WebState {
            api: Arc::new(api.clone()),
            stripe_key: stripe_key.map(str::to_owned),
            currency: "usd".into(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, web::router(state)).await });
        Self { base, api }
    }

    async fn get(
        &self,
        path: &str,
        session: Option<&str>,
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let mut request = testkit::client().get(format!("{}{path}", self.base));
        if let Some(session) = session {
            request = request.header("cookie", format!("{COOKIE_NAME}={session}"));
        }
        let response = request.send().await.expect("sent");
        let (status, headers) = (response.status(), response.headers().clone());
        (status, response.text().await.expect("text"), headers)
    }

    async fn post(
        &self,
        path: &str,
        session: Option<&str>,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let body: String = form
            .iter()
            .map(|(k, v)| {
                format!("{k}={}", v.replace('+', "%2B").replace('@', "%40").replace(' ', "+"))
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut request = testkit::client()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", self.base.clone())
            .body(body);
        if let Some(session) = session {
            request = request.header("cookie", format!("{COOKIE_NAME}={session}"));
        }
        let response = request.send().await.expect("sent");
        let (status, headers) = (response.status(), response.headers().clone());
        (status, response.text().await.expect("text"), headers)
    }

    /// A form post as another site's page sends it: with the visitor's
    /// cookie and that site's `Origin`.
    async fn post_from_another_site(&self, path: &str, session: &str) -> StatusCode {
        testkit::client()
            .post(format!("{}{path}", self.base))
            .header("origin", "https://evil.example")
            .header("cookie", format!("{COOKIE_NAME}={session}"))
            .send()
            .await
            .expect("sent")
            .status()
    }
}

fn location(headers: &reqwest::header::HeaderMap) -> &str {
    headers["location"].to_str().expect("ascii")
}

/// The listing card of a ticket: its title linking to its page, its price.
fn card(id: &str, title: &str, price: &str) -> String {
    format!(
        r#"<h2 class="ticket-title"><a href="/tickets/{id}">{title}</a></h2>
    <p class="price">{price}</p>
    <a class="button secondary" href="/tickets/{id}" aria-label="View {title}">View</a>"#
    )
}

#[tokio::test]
async fn the_home_page_lists_tickets_for_sale_with_prices_and_links() {
    // What the API serves: the tickets for sale (it leaves out reserved ones).
    let api = FakeApi::with(|f| {
        f.tickets = vec![
            ticket("t1", "Opera night", 1999, "seller", None),
            ticket("t2", "Jazz", 2000, "seller", None),
            ticket("t3", "Poetry slam", 50, "seller", None),
        ];
        f.next_cursor = Some("t3".into());
    });
    let site = Site::start(api, None).await;
    let (status, html, headers) = site.get("/", None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let cards = [
        card("t1", "Opera night", "$19.99"),
        card("t2", "Jazz", "$20.00"),
        card("t3", "Poetry slam", "$0.50"),
    ];
    let at: Vec<usize> = cards
        .iter()
        .map(|card| html.find(card.as_str()).unwrap_or_else(|| panic!("{card}\nin\n{html}")))
        .collect();
    assert!(at.is_sorted(), "in the order the API serves them");
    assert_eq!(html.matches(r#"class="card ticket-card""#).count(), cards.len(), "nothing else");
    assert!(html.contains(r#"href="/?cursor=t3""#), "a next page link");
    assert!(html.contains(r#"<form method="get" action="/" class="search""#), "a search form");
    assert!(html.contains("Sign in") && html.contains("Sign up"));
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "nothing is loaded from another origin"
    );
    let policy = headers["content-security-policy"].to_str().expect("ascii");
    assert!(policy.contains("default-src 'self'") && !policy.contains("stripe"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn the_home_page_has_an_empty_state_and_shows_who_is_signed_in() {
    let site = Site::start(FakeApi::default(), None).await;
    let (_, html, _) = site.get("/", Some(SESSION)).await;
    assert!(html.contains("No tickets for sale right now"));
    assert!(html.contains("buyer@example.com"));
    assert!(
        html.contains("Sign out") && html.contains("My orders") && html.contains("Sell a ticket")
    );
    assert!(html.contains(r#"<a href="/tickets/mine">My listings</a>"#));
    assert!(!html.contains(">Sign in<"));
}

/// Issue 22: what a visitor with a session sees (their listings, their
/// orders, any page naming them) and an answer setting a session are
/// stored by no cache; what everyone sees may be.
#[tokio::test]
async fn pages_for_a_session_are_never_stored() {
    let site = Site::start(FakeApi::default(), None).await;
    for path in ["/", "/tickets/mine", "/orders", "/tickets/new"] {
        let (status, _, headers) = site.get(path, Some(SESSION)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
    }
    let (_, _, headers) = site.get("/", None).await;
    assert!(headers.get("cache-control").is_none(), "the public home page");
    let (_, _, headers) = site.get("/static/app.js", Some(SESSION)).await;
    assert_eq!(headers["cache-control"], "public, max-age=300", "assets are the same for all");
    let form = [("email", "new@example.com"), ("password", "password1"), ("next", "/")];
    let (status, _, headers) = site.post("/auth/signin", None, &form).await;
    assert_eq!(status, 303);
    assert_eq!(headers["cache-control"], "no-store", "an answer setting a session");
}

#[tokio::test]
async fn signing_up_passes_the_session_cookie_on_and_goes_where_asked() {
    let site = Site::start(FakeApi::default(), None).await;
    let (status, html, _) = site.get("/auth/signup", None).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<label for="email">Email</label>"#)
            && html.contains(r#"<label for="password">Password</label>"#)
    );
    let (status, _, headers) = site
        .post(
            "/auth/signup",
            None,
            &[("email", "new@example.com"), ("password", "password1"), ("next", "/tickets/t1")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/tickets/t1");
    assert!(
        headers["set-cookie"]
            .to_str()
            .expect("ascii")
            .starts_with(&format!("{COOKIE_NAME}=new-session"))
    );
    let (_, _, headers) = site
        .post(
            "/auth/signin",
            None,
            &[("email", "new@example.com"), ("password", "password1"), ("next", "//evil.example")],
        )
        .await;
    assert_eq!(location(&headers), "/", "never redirected off the site");
}

#[tokio::test]
async fn sign_up_errors_appear_next_to_their_fields() {
    let api = FakeApi::with(|f| {
        f.refuse = Some(failure(
            400,
            &[
                ("Email must be valid", Some("email")),
                ("Password must be between 8 and 128 characters", Some("password")),
            ],
        ));
    });
    let site = Site::start(api, None).await;
    let (status, html, _) =
        site.post("/auth/signup", None, &[("email", "bad"), ("password", "x")]).await;
    assert_eq!(status, 400);
    assert!(
        html.contains(r#"<p class="field-error" id="email-error">Email must be valid</p>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"id="password-error">Password must be between 8 and 128 characters</p>"#)
    );
    assert!(
        html.contains(r#"aria-describedby="password-hint password-error""#),
        "a screen reader reads the rule and the error with the field: {html}"
    );
    assert!(html.contains(r#"value="bad""#), "the email is kept");
    let api = FakeApi::with(|f| f.refuse = Some(failure(400, &[("Invalid credentials", None)])));
    let site = Site::start(api, None).await;
    let (_, html, _) =
        site.post("/auth/signin", None, &[("email", "a@b.co"), ("password", "wrong")]).await;
    assert!(html.contains(r#"role="alert">Invalid credentials</p>"#));
}

#[tokio::test]
async fn selling_requires_signing_in_and_shows_errors() {
    let api = FakeApi::with(|f| {
        f.refuse = Some(failure(400, &[("Price must be greater than 0", Some("price"))]))
    });
    let site = Site::start(api, None).await;
    let (status, _, headers) = site.get("/tickets/new", None).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/auth/signin?next=/tickets/new");
    let (status, html, _) = site.get("/tickets/new", Some(SELLER)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<label for="title">Title</label>"#)
            && html.contains(r#"<label for="price">Price</label>"#)
    );
    let (status, html, _) =
        site.post("/tickets/new", Some(SELLER), &[("title", "Gig"), ("price", "0")]).await;
    assert_eq!(status, 400);
    assert!(html.contains(r#"id="price-error">Price must be greater than 0</p>"#));
    assert!(html.contains(r#"value="Gig""#));
}

#[tokio::test]
async fn the_sell_form_sends_the_barcode_and_file_and_shows_their_errors() {
    let api = FakeApi::default();
    let site = Site::start(api.clone(), None).await;
    let (_, html, _) = site.get("/tickets/new", Some(SELLER)).await;
    assert!(html.contains(r#"enctype="multipart/form-data""#), "{html}");
    assert!(html.contains(r#"<label for="barcode">"#) && html.contains(r#"type="file""#));
    let form = reqwest::multipart::Form::new()
        .text("title", "Gig")
        .text("price", "12")
        .text("barcode", "ABCD-1234")
        .part("file", reqwest::multipart::Part::bytes(b"%PDF-1.4".to_vec()).file_name("t.pdf"));
    let response = testkit::client()
        .post(format!("{}/tickets/new", site.base))
        .header("origin", site.base.clone())
        .header("cookie", format!("{COOKIE_NAME}={SELLER}"))
        .multipart(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 303);
    let sold = api.fake().sold.clone();
    assert_eq!((sold[0].title.as_str(), sold[0].barcode.as_str()), ("Gig", "ABCD-1234"));
    let file = sold[0].file.clone().expect("the file");
    assert_eq!((file.name.as_str(), file.bytes.as_slice()), ("t.pdf", &b"%PDF-1.4"[..]));

    let api = FakeApi::with(|f| {
        f.refuse = Some(failure(
            409,
            &[("This ticket is already listed or held by someone", Some("barcode"))],
        ))
    });
    let site = Site::start(api, None).await;
    let sent = [("title", "Gig"), ("price", "1"), ("barcode", "ABCD-1234")];
    let (status, html, _) = site.post("/tickets/new", Some(SELLER), &sent).await;
    assert_eq!(status, 400);
    assert!(
        html.contains(r#"id="barcode-error">This ticket is already listed or held by someone</p>"#),
        "{html}"
    );
    assert!(html.contains(r#"value="ABCD-1234""#));
}

fn held(id: &str, barcode: bool, file: bool, resale: Option<&str>) -> HeldTicket {
    HeldTicket {
        ticket: ticket(id, "Opera night", 1999, "seller", Some("o1")),
        pass: PassSummary {
            barcode,
            file: file.then(|| PassFile {
                kind: "application/pdf".into(),
                size: 2048,
                name: "t.pdf".into(),
            }),
        },
        pass_state: if resale.is_some() { "relisted" } else { "held" }.into(),
        resale_id: resale.map(str::to_owned),
    }
}

#[tokio::test]
async fn my_tickets_show_the_qr_code_the_file_and_sell_again() {
    let api = FakeApi::with(|f| {
        f.held = vec![
            (held("t1", true, true, None), Some("ABCD-1234<&>".into())),
            (held("t2", false, true, Some("t9")), None),
        ];
    });
    let site = Site::start(api.clone(), None).await;
    let (status, _, headers) = site.get("/tickets/held", None).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/auth/signin?next=/tickets/held"));
    let (status, html, _) = site.get("/tickets/held", Some(SESSION)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"<a href="/tickets/held">My tickets</a>"#), "in the nav");
    assert!(
        html.contains(
            r#"<svg role="img" aria-label="QR code of barcode ABCD-1234&lt;&amp;&gt;" class="qr""#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<figcaption class="barcode">ABCD-1234&#60;&#38;&#62;</figcaption>"#),
        "{html}"
    );
    assert!(html.contains(r#"href="/tickets/t1/pass/file" download>Download t.pdf (2 KiB)"#));
    assert!(html.contains(r#"action="/tickets/t1/resale""#));
    assert!(!html.contains(r#"action="/tickets/t2/resale""#), "on sale again already");
    assert!(html.contains(r#"On sale again: <a href="/tickets/t9">"#));

    let response = testkit::client()
        .get(format!("{}/tickets/t1/pass/file", site.base))
        .header("cookie", format!("{COOKIE_NAME}={SESSION}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), b"%PDF-1.4 fake");

    let (status, _, headers) =
        site.post("/tickets/t1/resale", Some(SESSION), &[("price", "25")]).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/tickets/resale"));
    assert_eq!(api.fake().resales, [("t1".to_owned(), "25".to_owned())]);

    let (_, empty, _) =
        Site::start(FakeApi::default(), None).await.get("/tickets/held", Some(SESSION)).await;
    assert!(empty.contains("No tickets yet"));
}

#[tokio::test]
async fn a_created_ticket_leads_to_its_page() {
    let site = Site::start(FakeApi::default(), None).await;
    let (status, _, headers) =
        site.post("/tickets/new", Some(SELLER), &[("title", "Gig"), ("price", "12.50")]).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/tickets/new-ticket");
}

/// A ticket for an event at Vicar Street on Saturday 14 March 2026 at
/// 20:00 in its seller's zone (UTC+1), with a seat and a face value.
fn ticket_with_event(id: &str, status: TicketStatus) -> Ticket {
    Ticket {
        event: EventDetails {
            venue: Some("Vicar Street".into()),
            starts_at: Some("2026-03-14T20:00:00+01:00".into()),
            section: Some("Balcony".into()),
            row: Some("C".into()),
            seat: Some("12".into()),
            face_value: Some(Cents::new(5000)),
        },
        ..ticket_in(id, "Concert", 4500, "seller", status)
    }
}

#[tokio::test]
async fn the_sell_form_sends_the_event_and_shows_its_errors() {
    let api = FakeApi::with(|f| {
        f.refuse = Some(failure(400, &[("StartsAt must be in the future", Some("startsAt"))]))
    });
    let site = Site::start(api, None).await;
    let (_, html, _) = site.get("/tickets/new", Some(SELLER)).await;
    for label in ["Venue", "Date and time", "UTC offset", "Section", "Row", "Seat", "Face value"] {
        assert!(html.contains(&format!(">{label}</label>")), "{label}");
    }
    assert!(html.contains("e.g. 2027-03-14 20:00"));
    let form = [
        ("title", "Gig"),
        ("price", "45"),
        ("venue", "Vicar Street"),
        ("starts_on", "2026-03-14 20:00"),
        ("offset", "+01:00"),
        ("section", ""),
        ("row", "C"),
        ("seat", "12"),
        ("face_value", "50"),
    ];
    let (status, html, _) = site.post("/tickets/new", Some(SELLER), &form).await;
    assert_eq!(status, 400);
    assert!(html.contains(r#"id="starts_on-error">StartsAt must be in the future</p>"#), "{html}");
    assert!(html.contains(r#"value="Vicar Street""#), "what was typed stays");
    assert_eq!(
        site.api.fake().submitted,
        [serde_json::json!({
            "title": "Gig", "price": "45", "venue": "Vicar Street",
            "startsAt": "2026-03-14T20:00:00+01:00", "row": "C", "seat": "12", "faceValue": "50",
        })],
        "empty event fields are left out of a new ticket"
    );
}

#[tokio::test]
async fn every_page_with_a_ticket_shows_its_event_in_the_sellers_time() {
    let api = FakeApi::with(|f| f.tickets = vec![ticket_with_event("t1", TicketStatus::Available)]);
    let site = Site::start(api, None).await;
    let when = "Sat 14 Mar 2026, 20:00 +01:00";
    let (_, listing, _) = site.get("/", None).await;
    assert!(listing.contains(when) && listing.contains("Vicar Street"), "{listing}");
    assert!(listing.contains("$45.00 <span class=\"face-value\">(face value $50.00)</span>"));
    let (_, page, _) = site.get("/tickets/t1", None).await;
    assert!(page.contains(when) && page.contains("Section Balcony · Row C · Seat 12"));
    assert!(page.contains("Face value $50.00"), "{page}");
    let (_, mine, _) = site.get("/tickets/mine", Some(SELLER)).await;
    assert!(mine.contains(when));
    let (_, owner, _) = site.get("/tickets/t1", Some(SELLER)).await;
    assert!(owner.contains(r#"value="2026-03-14 20:00""#) && owner.contains(r#"value="+01:00""#));
    site.post("/tickets/t1", Some(SELLER), &[("title", "Concert"), ("price", "45"), ("seat", "")])
        .await;
    let edited = site.api.fake().submitted[0].clone();
    assert_eq!(edited["seat"], "", "an emptied field is removed from an edited ticket");
    let (status, html, _) = site.post("/tickets/t1/purchase", Some(SESSION), &[]).await;
    assert_eq!(status, 303, "{html}");
    let (_, order, _) = site.get("/orders/new-order", Some(SESSION)).await;
    assert!(order.contains(when) && order.contains("Vicar Street"), "{order}");
    let (_, orders, _) = site.get("/orders", Some(SESSION)).await;
    assert!(orders.contains(when));
}

#[tokio::test]
async fn a_ticket_whose_event_started_is_off_sale() {
    let api = FakeApi::with(|f| f.tickets = vec![ticket_with_event("t1", TicketStatus::Ended)]);
    let site = Site::start(api, None).await;
    let (_, page, _) = site.get("/tickets/t1", Some(SESSION)).await;
    assert!(page.contains("The event has started") && !page.contains(">Purchase</button>"));
    let (_, owner, _) = site.get("/tickets/t1", Some(SELLER)).await;
    assert!(owner.contains("The event has started") && !owner.contains("Edit your ticket"));
    let (_, mine, _) = site.get("/tickets/mine", Some(SELLER)).await;
    assert!(mine.contains("Event started"));
}

#[tokio::test]
async fn the_search_form_filters_by_date_and_sorts_by_the_soonest() {
    let site = Site::start(FakeApi::default(), None).await;
    let (_, html, _) = site.get("/?sort=soonest&from=2026-03-01&to=2026-03-31", None).await;
    assert!(html.contains(r#"<option value="soonest" selected>"#), "{html}");
    assert!(html.contains(r#"name="from" value="2026-03-01""#));
    let asked = site.api.fake().searches.last().cloned().expect("a search");
    assert_eq!(asked.params(), [("sort", "soonest"), ("from", "2026-03-01"), ("to", "2026-03-31")]);
}

#[tokio::test]
async fn the_ticket_page_offers_what_each_visitor_may_do() {
    let api = FakeApi::with(|f| {
        f.tickets = vec![
            ticket("t1", "Opera night", 1999, "seller", None),
            ticket("t2", "Held", 500, "seller", Some("o9")),
        ];
    });
    let site = Site::start(api, None).await;
    let (_, anonymous, _) = site.get("/tickets/t1", None).await;
    assert!(anonymous.contains(r#"href="/auth/signin?next=/tickets/t1">Sign in to purchase"#));
    let (_, buyer, _) = site.get("/tickets/t1", Some(SESSION)).await;
    assert!(
        buyer.contains(r#"action="/tickets/t1/purchase""#) && buyer.contains(">Purchase</button>")
    );
    let (_, owner, _) = site.get("/tickets/t1", Some(SELLER)).await;
    assert!(owner.contains("Edit your ticket") && !owner.contains(">Purchase</button>"));
    assert!(owner.contains(r#"value="19.99""#));
    let (_, held, _) = site.get("/tickets/t2", Some(SESSION)).await;
    assert!(held.contains("Reserved") && !held.contains(">Purchase</button>"));
    let (status, _, _) = site.get("/tickets/unknown", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn purchasing_opens_the_order_with_a_countdown_and_test_cards() {
    let api =
        FakeApi::with(|f| f.tickets = vec![ticket("t1", "Opera night", 1999, "seller", None)]);
    let site = Site::start(api, None).await;
    let (status, _, headers) = site.post("/tickets/t1/purchase", Some(SESSION), &[]).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/orders/new-order");
    let (status, html, _) = site.get("/orders/new-order", Some(SESSION)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Time left to pay: 14:5") || html.contains("Time left to pay: 15:00"),
        "{html}"
    );
    assert!(
        html.contains(r#"value="tok_visa" checked"#)
            && html.contains(r#"value="tok_chargeDeclined""#)
    );
    assert!(html.contains("Pay $19.99"));
    assert!(html.contains(r#"role="timer""#), "the countdown is not read out every second");
    assert!(!html.contains("js.stripe.com"), "no Stripe script without a publishable key");
}

#[tokio::test]
async fn paying_shows_the_paid_order_and_a_decline_shows_its_message() {
    let api = FakeApi::with(|f| {
        f.orders.insert("o1".into(), order("o1", OrderStatus::Created, 600));
    });
    let site = Site::start(api, None).await;
    let (status, html, _) =
        site.post("/orders/o1/pay", Some(SESSION), &[("token", "tok_chargeDeclined")]).await;
    assert_eq!(status, 402);
    assert!(html.contains(r#"id="payment-error">Your card was declined.</p>"#), "{html}");
    assert!(html.contains("Time left to pay"), "the buyer can try another card");

    let (status, _, headers) =
        site.post("/orders/o1/pay", Some(SESSION), &[("token", "tok_visa")]).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/orders/o1?paid=1");
    assert_eq!(site.api.fake().paid, [("o1".to_owned(), "tok_visa".to_owned())]);
    let (_, html, _) = site.get("/orders/o1?paid=1", Some(SESSION)).await;
    assert!(html.contains(r#"id="order-status">Paid</span>"#), "{html}");
    assert!(!html.contains("Time left to pay"));
}

#[tokio::test]
async fn a_card_needing_authentication_goes_to_the_bank_and_back() {
    let api = FakeApi::with(|f| {
        f.orders.insert("o1".into(), order("o1", OrderStatus::Created, 600));
    });
    let site = Site::start(api, None).await;
    let (_, html, _) = site.get("/orders/o1", Some(SESSION)).await;
    assert!(html.contains(r#"value="tok_threeDSecure2Required""#), "offered among the test cards");
    let (status, _, headers) =
        site.post("/orders/o1/pay", Some(SESSION), &[("token", "tok_threeDSecure2Required")]).await;
    assert_eq!(status, 303, "without Stripe.js: a redirect to the test page");
    assert_eq!(location(&headers), fake_page());
    let host = site.base.trim_start_matches("http://");
    let back = format!("http://{host}/orders/o1/authenticated");
    assert_eq!(site.api.fake().return_urls, [Some(back)]);

    // Back from the bank, authenticated.
    site.api.fake().settled = Some(Ok(Payment::Paid));
    let (status, _, headers) = site.get("/orders/o1/authenticated", Some(SESSION)).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/orders/o1?paid=1");

    // Back from the bank, not authenticated: the message and the pay form.
    let refused = "We are unable to authenticate your payment method.";
    site.api.fake().settled = Some(Err(failure(402, &[(refused, None)])));
    let (status, html, _) = site.get("/orders/o1/authenticated", Some(SESSION)).await;
    assert_eq!(status, 402);
    assert!(html.contains(&format!(r#"id="payment-error">{refused}</p>"#)), "{html}");
    assert!(html.contains("pay-form"), "the buyer can try another card");

    // Back too early: the bank's page is offered again.
    site.api.fake().settled = Some(Ok(Payment::RequiresAction(Authentication {
        client_secret: "pi_1_secret_x".into(),
        redirect_url: Some("javascript:alert(1)".into()),
    })));
    let (status, html, _) = site.get("/orders/o1/authenticated", Some(SESSION)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"id="authentication""#), "{html}");
    assert!(!html.contains("javascript:"), "only this site's or https pages are linked");
    assert!(!html.contains("pay-form"));

    // Nothing to settle: the order page.
    site.api.fake().settled = None;
    let (status, _, headers) = site.get("/orders/o1/authenticated", Some(SESSION)).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/orders/o1");
    let (status, _, headers) = site.get("/orders/o1/authenticated", None).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/auth/signin?next=/orders/o1");
}

#[tokio::test]
async fn with_a_publishable_key_stripe_js_finishes_authentication() {
    let api = FakeApi::with(|f| {
        f.orders.insert("o1".into(), order("o1", OrderStatus::Created, 600));
    });
    let site = Site::start(api, Some("pk_test_123")).await;
    let (status, html, _) =
        site.post("/orders/o1/pay", Some(SESSION), &[("token", "tok_threeDSecure2Required")]).await;
    assert_eq!(status, 200, "the page itself runs Stripe.js");
    assert!(html.contains(r#"<script src="https://js.stripe.com/v3/"></script>"#));
    assert!(html.contains(r#"data-client-secret="pi_1_secret_x""#), "{html}");
    assert!(html.contains(r#"data-return-path="/orders/o1/authenticated""#));
    assert!(html.contains(r#"data-stripe-key="pk_test_123""#));
    assert!(
        html.contains(&format!(r#"id="authenticate-link" href="{}""#, fake_page())),
        "and a link without JavaScript"
    );
}

#[tokio::test]
async fn an_expired_order_says_so_and_cannot_be_paid() {
    let api = FakeApi::with(|f| {
        f.orders.insert("o1".into(), order("o1", OrderStatus::Cancelled, -60));
        f.orders.insert("o2".into(), order("o2", OrderStatus::Created, -1));
    });
    let site = Site::start(api, None).await;
    for id in ["o1", "o2"] {
        let (_, html, _) = site.get(&format!("/orders/{id}"), Some(SESSION)).await;
        assert!(html.contains("Order expired"), "{html}");
        assert!(!html.contains("pay-form"));
    }
}

#[tokio::test]
async fn with_a_publishable_key_the_order_page_loads_stripes_card_form() {
    let api = FakeApi::with(|f| {
        f.orders.insert("o1".into(), order("o1", OrderStatus::Created, 600));
    });
    let site = Site::start(api, Some("pk_test_123")).await;
    let (_, html, headers) = site.get("/orders/o1", Some(SESSION)).await;
    assert!(html.contains(r#"<script src="https://js.stripe.com/v3/"></script>"#));
    let policy = headers["content-security-policy"].to_str().expect("ascii");
    assert!(policy.contains("script-src 'self' https://js.stripe.com"), "{policy}");
    assert!(html.contains(r#"data-stripe-key="pk_test_123""#));
    assert!(!html.contains("tok_visa"));
}

/// Every page for signed-in visitors sends a visitor without a session to
/// sign in and back to the page, never to a form's action.
#[tokio::test]
async fn signed_in_pages_send_visitors_to_sign_in_and_back() {
    let site = Site::start(FakeApi::default(), None).await;
    let pages = [
        ("GET", "/tickets/new", "/tickets/new"),
        ("POST", "/tickets/new", "/tickets/new"),
        ("GET", "/tickets/mine", "/tickets/mine"),
        ("POST", "/tickets/t1", "/tickets/t1"),
        ("POST", "/tickets/t1/purchase", "/tickets/t1"),
        ("GET", "/orders", "/orders"),
        ("GET", "/orders/o1", "/orders/o1"),
        ("POST", "/orders/o1/pay", "/orders/o1"),
        ("GET", "/orders/o1/authenticated", "/orders/o1"),
        ("POST", "/orders/o1/cancel", "/orders/o1"),
    ];
    for (method, path, page) in pages {
        let (status, _, headers) = match method {
            "GET" => site.get(path, None).await,
            _ => site.post(path, None, &[]).await,
        };
        assert_eq!(status, 303, "{method} {path}");
        assert_eq!(location(&headers), format!("/auth/signin?next={page}"), "{method} {path}");
    }
}

#[tokio::test]
async fn my_orders_lists_statuses_and_requires_signing_in() {
    let api = FakeApi::with(|f| {
        f.orders.insert("o1".into(), order("o1", OrderStatus::Complete, 600));
        f.orders.insert("o2".into(), order("o2", OrderStatus::Created, 600));
    });
    let site = Site::start(api, None).await;
    let (status, _, headers) = site.get("/orders", None).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/auth/signin?next=/orders");
    let (_, html, _) = site.get("/orders", Some(SESSION)).await;
    assert!(html.contains(r#"href="/orders/o1""#) && html.contains(">Paid</span>"));
    assert!(html.contains(">Awaiting payment</span>"));
}

#[tokio::test]
async fn unknown_pages_are_a_404_page_and_unknown_api_paths_stay_json() {
    let site = Site::start(FakeApi::default(), None).await;
    let (status, html, _) = site.get("/no/such/page", None).await;
    assert_eq!(status, 404);
    assert!(html.contains("Page not found"));
    let (status, body, headers) = site.get("/api/nothing", None).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body, r#"{"errors":[{"message":"Not Found"}]}"#);
}

#[tokio::test]
async fn the_home_page_searches_and_sorts_with_a_get_form() {
    let api = FakeApi::with(|f| {
        f.tickets = vec![ticket("t1", "Rock night", 1999, "seller", None)];
        f.next_cursor = Some("1999.t1".into());
    });
    let site = Site::start(api, None).await;
    let (status, html, _) =
        site.get("/?q=rock+n%C3%BCght&sort=price_desc&minPrice=5&maxPrice=", None).await;
    assert_eq!(status, 200);
    let asked = site.api.fake().searches.last().cloned().expect("a search");
    assert_eq!(
        (asked.q.as_str(), asked.sort.as_str(), asked.min_price.as_str(), asked.max_price.as_str()),
        ("rock nüght", "price_desc", "5", "")
    );
    assert!(html.contains(r#"name="q" type="search" value="rock nüght""#), "{html}");
    assert!(html.contains(r#"<option value="price_desc" selected>"#));
    assert!(html.contains(r#"name="minPrice" value="5""#));
    assert!(
        html.contains(
            r#"href="/?q=rock+n%C3%BCght&#38;sort=price_desc&#38;minPrice=5&#38;cursor=1999.t1""#
        ),
        "the next page keeps the search: {html}"
    );
    let (_, plain, _) = site.get("/", None).await;
    assert!(plain.contains(r#"<option value="oldest" selected>"#), "oldest first by default");
}

#[tokio::test]
async fn a_refused_search_says_why_and_an_empty_one_says_nothing_matches() {
    let api = FakeApi::with(|f| {
        f.refuse_search =
            Some(failure(400, &[("MinPrice must be a valid price", Some("minPrice"))]));
    });
    let site = Site::start(api.clone(), None).await;
    let (status, html, _) = site.get("/?minPrice=abc", None).await;
    assert_eq!(status, 400);
    assert!(html.contains("MinPrice must be a valid price"));
    assert!(html.contains(r#"name="minPrice" value="abc""#), "the form keeps what was typed");
    api.fake().refuse_search = None;
    let (status, html, _) = site.get("/?q=nothing", None).await;
    assert_eq!(status, 200);
    assert!(html.contains("No tickets match"));
}

#[tokio::test]
async fn my_listings_show_each_state_and_the_total_earned() {
    let api = FakeApi::with(|f| {
        let mut reserved = ticket("t2", "Held", 700, "seller", Some("o1"));
        reserved.reserved_until = Some("2030-01-01T10:15:00.000Z".into());
        f.tickets = vec![
            ticket_in("t1", "Opera", 1999, "seller", TicketStatus::Sold),
            reserved,
            ticket_in("t3", "Jazz", 501, "seller", TicketStatus::Sold),
            ticket_in("t4", "Gone", 1000, "seller", TicketStatus::Withdrawn),
            ticket("t5", "For sale", 300, "seller", None),
            ticket_in("t6", "Not mine", 9900, "someone", TicketStatus::Sold),
        ];
    });
    let site = Site::start(api, None).await;
    let (status, _, headers) = site.get("/tickets/mine", None).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/auth/signin?next=/tickets/mine");
    let (status, html, _) = site.get("/tickets/mine", Some(SELLER)).await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>My listings</h1>"));
    assert!(html.contains(r#"Total earned: <strong class="earned">$25.00</strong>"#), "{html}");
    for expected in [
        r#"<a href="/tickets/t1">Opera</a>"#,
        r#"class="status status-sold">Sold</span>"#,
        r#"class="status status-reserved">Reserved until 10:15 UTC</span>"#,
        r#"class="status status-withdrawn">Withdrawn</span>"#,
        r#"class="status status-available">For sale</span>"#,
    ] {
        assert!(html.contains(expected), "{expected}");
    }
    assert!(!html.contains("Not mine"));
    let (_, empty, _) = site.get("/tickets/mine", Some(SESSION)).await;
    assert!(empty.contains("Nothing listed yet") && !empty.contains("Total earned"), "{empty}");
}

#[tokio::test]
async fn the_owner_withdraws_a_ticket_with_a_form() {
    let api = FakeApi::with(|f| {
        f.tickets = vec![
            ticket("t1", "Opera night", 1999, "seller", None),
            ticket("t2", "Held", 500, "seller", Some("o9")),
        ];
    });
    let site = Site::start(api, None).await;
    let form = r#"<form method="post" action="/tickets/t1/withdraw""#;
    let (_, owner, _) = site.get("/tickets/t1", Some(SELLER)).await;
    assert!(owner.contains(form) && owner.contains("Withdraw from sale"));
    let (_, buyer, _) = site.get("/tickets/t1", Some(SESSION)).await;
    assert!(!buyer.contains(form));
    let (_, held, _) = site.get("/tickets/t2", Some(SELLER)).await;
    assert!(!held.contains("/tickets/t2/withdraw"), "a reserved ticket offers no withdrawal");

    let (status, _, headers) = site.post("/tickets/t1/withdraw", None, &[]).await;
    assert_eq!(
        (status, location(&headers)),
        (StatusCode::SEE_OTHER, "/auth/signin?next=/tickets/t1")
    );
    let (status, html, _) = site.post("/tickets/t2/withdraw", Some(SELLER), &[]).await;
    assert_eq!(status, 400);
    assert!(html.contains("Cannot withdraw a reserved ticket"));
    let (status, _, headers) = site.post("/tickets/t1/withdraw", Some(SELLER), &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/tickets/mine"));
    let (_, after, _) = site.get("/tickets/t1", Some(SELLER)).await;
    assert!(after.contains("You withdrew this ticket") && !after.contains("Edit your ticket"));
    let (_, visitor, _) = site.get("/tickets/t1", Some(SESSION)).await;
    assert!(visitor.contains("The seller has withdrawn this ticket"));
    assert!(!visitor.contains(">Purchase</button>"));
}

/// A session the API no longer accepts (expired, signed out) sends the
/// visitor to sign in from every form, editing and cancelling included.
#[tokio::test]
async fn a_form_sent_with_a_session_the_api_refuses_asks_to_sign_in() {
    let api = FakeApi::with(|f| {
        f.tickets = vec![ticket("t1", "Opera night", 1999, "seller", None)];
    });
    let site = Site::start(api, None).await;
    let stale = Some("expired-session");
    let edit = [("title", "Opera"), ("price", "20")];
    for (path, form) in [("/tickets/t1", &edit[..]), ("/orders/o1/cancel", &[][..])] {
        let (status, _, headers) = site.post(path, stale, form).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert!(location(&headers).starts_with("/auth/signin?next="), "{path}");
    }
}

/// Signing out through the web client signs the session out at the API
/// (which revokes it for every service), not only the browser's cookie.
#[tokio::test]
async fn signing_out_ends_the_session_at_the_api_too() {
    let site = Site::start(FakeApi::default(), None).await;
    let (status, _, headers) = site.post("/auth/signout", Some(SESSION), &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/"));
    assert!(headers["set-cookie"].to_str().expect("ascii").contains("Max-Age=0"));
    assert_eq!(site.api.fake().signed_out, [Some(SESSION.to_owned())]);
}

#[tokio::test]
async fn a_withdrawal_posted_from_another_site_is_refused() {
    let api =
        FakeApi::with(|f| f.tickets = vec![ticket("t1", "Opera night", 1999, "seller", None)]);
    let site = Site::start(api, None).await;
    assert_eq!(site.post_from_another_site("/tickets/t1/withdraw", SELLER).await, 403);
    assert_eq!(site.api.fake().tickets[0].status, TicketStatus::Available, "nothing withdrawn");
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused() {
    let api =
        FakeApi::with(|f| f.tickets = vec![ticket("t1", "Opera night", 1999, "seller", None)]);
    let site = Site::start(api, None).await;
    assert_eq!(site.post_from_another_site("/tickets/t1/purchase", SESSION).await, 403);
    assert!(site.api.fake().orders.is_empty(), "no order was made");
}

#[tokio::test]
async fn the_stylesheet_and_script_are_served_by_the_binary() {
    let site = Site::start(FakeApi::default(), None).await;
    let (status, css, headers) = site.get("/static/app.css", None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().expect("ascii").starts_with("text/css"));
    assert!(css.contains(":focus-visible"), "focus stays visible");
    let (status, js, _) = site.get("/static/app.js", None).await;
    assert_eq!(status, 200);
    assert!(js.contains("Time left to pay"));
}

/// Live availability: every card names its ticket for the script; tickets
/// put on sale are added live only to the unfiltered last page, where the
/// oldest-first order puts them (DECISIONS.md, "Live availability").
#[tokio::test]
async fn the_home_page_marks_where_live_changes_may_appear() {
    let with_tickets = |more: bool| {
        FakeApi::with(move |f| {
            f.tickets = vec![ticket("t1", "Opera night", 1999, "seller", None)];
            f.next_cursor = more.then(|| "t1".into());
        })
    };
    let site = Site::start(with_tickets(false), None).await;
    let (_, html, _) = site.get("/", None).await;
    assert!(html.contains(r#"data-ticket-id="t1""#), "{html}");
    assert!(html.contains("data-live-list") && html.contains("data-live-new"), "{html}");
    let (_, html, _) = site.get("/?q=opera", None).await;
    assert!(html.contains("data-live-list") && !html.contains("data-live-new"), "a search: {html}");
    let site = Site::start(with_tickets(true), None).await;
    let (_, html, _) = site.get("/", None).await;
    assert!(!html.contains("data-live-new"), "not the last page: {html}");
    let site = Site::start(FakeApi::default(), None).await;
    let (_, html, _) = site.get("/", None).await;
    assert!(html.contains("data-live-empty"), "the empty state: {html}");
}

#[tokio::test]
async fn the_sell_form_sent_with_a_file_carries_the_event_too() {
    let api = FakeApi::default();
    let site = Site::start(api.clone(), None).await;
    let form = reqwest::multipart::Form::new()
        .text("title", "Gig")
        .text("price", "45")
        .text("venue", "Vicar Street")
        .text("starts_on", "2026-03-14 20:00")
        .text("offset", "+01:00")
        .text("seat", "12")
        .text("face_value", "50")
        .text("barcode", "ABCD-1234")
        .part("file", reqwest::multipart::Part::bytes(b"%PDF-1.4".to_vec()).file_name("t.pdf"));
    let response = testkit::client()
        .post(format!("{}/tickets/new", site.base))
        .header("origin", site.base.clone())
        .header("cookie", format!("{COOKIE_NAME}={SELLER}"))
        .multipart(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 303);
    let sold = api.fake().sold.clone();
    assert_eq!(
        (sold[0].venue.as_str(), sold[0].starts_at.as_str(), sold[0].seat.as_str()),
        ("Vicar Street", "2026-03-14T20:00:00+01:00", "12")
    );
    assert_eq!((sold[0].face_value.as_str(), sold[0].barcode.as_str()), ("50", "ABCD-1234"));
    assert!(sold[0].file.is_some());
    let (_, html, _) = site.get("/tickets/new", Some(SELLER)).await;
    assert!(
        html.contains(r#"<label for="venue">Venue</label>"#) && html.contains(r#"id="barcode""#)
    );
}

#[tokio::test]
async fn my_tickets_show_each_event_and_the_past_ones_below() {
    let upcoming = HeldTicket {
        ticket: Ticket {
            event: EventDetails {
                starts_at: Some("2099-03-14T20:00:00+01:00".into()),
                ..ticket_with_event("t1", TicketStatus::Sold).event
            },
            ..ticket_with_event("t1", TicketStatus::Sold)
        },
        ..held("t1", true, false, None)
    };
    let past = HeldTicket {
        ticket: Ticket { title: "Old gig".into(), ..ticket_with_event("t2", TicketStatus::Sold) },
        ..held("t2", true, false, None)
    };
    let api = FakeApi::with(|f| {
        f.held = vec![(upcoming, Some("CODE-1".into())), (past, Some("CODE-2".into()))];
    });
    let site = Site::start(api, None).await;
    let (status, html, _) = site.get("/tickets/held", Some(SESSION)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Sat 14 Mar 2099, 20:00 +01:00"), "{html}");
    assert!(html.contains("Vicar Street") && html.contains("Section Balcony · Row C · Seat 12"));
    let heading = html.find("<h2>Past events</h2>").expect("a past events heading");
    assert!(html.find("Sat 14 Mar 2099").expect("upcoming") < heading);
    assert!(html.find("Sat 14 Mar 2026, 20:00 +01:00").expect("past") > heading);
    assert!(html.contains(r#"action="/tickets/t1/resale""#));
    assert!(!html.contains(r#"action="/tickets/t2/resale""#), "no sale after the start");
}

#[tokio::test]
async fn get_paid_shows_the_account_and_sends_the_seller_to_onboarding() {
    let api = FakeApi::default();
    let site = Site::start(api.clone(), None).await;
    let (status, _, headers) = site.get("/payouts/connect", None).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/auth/signin?next=/payouts/connect"));
    let (status, html, _) = site.get("/payouts/connect", Some(SELLER)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-status="not-connected">Not connected</span>"#), "{html}");
    assert!(html.contains(r#"<form method="post" action="/payouts/connect""#));
    assert!(html.contains("Connect a payout account</button>"));

    // The fake processor's onboarding page is on this site: a redirect.
    let (status, _, headers) = site.post("/payouts/connect", Some(SELLER), &[]).await;
    assert_eq!(
        (status.as_u16(), location(&headers)),
        (303, "/api/payments/fake-onboarding/acct_fake_1")
    );
    let back = format!("{}/payouts/connect/return", site.base);
    assert_eq!(api.fake().onboarding_returns, [back], "back to this site");
    let (_, html, _) = site.get("/payouts/connect", Some(SELLER)).await;
    assert!(html.contains(">Details needed</span>") && html.contains("Add the missing details"));

    // Stripe's page is another site: a link (form-action 'self' forbids a
    // form's redirect there).
    let stripe = "https://connect.stripe.com/setup/e/acct_1/abc";
    api.fake().onboarding_url = stripe.into();
    let (status, html, _) = site.post("/payouts/connect", Some(SELLER), &[]).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!(
            r#"<a class="button" id="connect-link" href="{stripe}">Continue to Stripe</a>"#
        )),
        "{html}"
    );
    assert_eq!(
        site.post_from_another_site("/payouts/connect", SELLER).await,
        403,
        "a cross-site post starts nothing"
    );
    assert_eq!(api.fake().onboarding_returns.len(), 2);
}

#[tokio::test]
async fn a_refused_or_unavailable_onboarding_says_why() {
    let api = FakeApi::with(|f| {
        f.refuse_onboarding = Some(failure(400, &[("returnUrl must be an absolute URL", None)]));
    });
    let site = Site::start(api.clone(), None).await;
    let (status, html, _) = site.post("/payouts/connect", Some(SELLER), &[]).await;
    assert_eq!(status, 400);
    assert!(
        html.contains(
            r#"<p class="alert error" role="alert">returnUrl must be an absolute URL</p>"#
        )
    );
    api.fake().refuse_onboarding = Some(failure(503, &[("Payments are unavailable", None)]));
    let (status, html, _) = site.post("/payouts/connect", Some(SELLER), &[]).await;
    assert_eq!(status, 503);
    assert!(html.contains("unavailable right now"));
}

#[tokio::test]
async fn coming_back_from_onboarding_reads_the_sellers_own_account_again() {
    let api = FakeApi::with(|f| {
        f.account = Ok(Some(AccountStatus::DetailsNeeded));
        f.refreshed = Some(AccountStatus::Ready);
    });
    let site = Site::start(api.clone(), None).await;
    let (status, html, _) =
        site.get("/payouts/connect/return?account=acct_someone_else", Some(SELLER)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-status="ready">Ready</span>"#), "{html}");
    assert!(html.contains("Your payout account is ready."));
    assert!(!html.contains(r#"action="/payouts/connect""#), "nothing left to connect");
    assert!(html.contains(r#"href="/payouts">earnings</a>"#));

    api.fake().account = Ok(Some(AccountStatus::DetailsNeeded));
    api.fake().refreshed = Some(AccountStatus::DetailsNeeded);
    let (_, html, _) = site.get("/payouts/connect/return", Some(SELLER)).await;
    assert!(html.contains("some details are still missing"));
    assert!(html.contains("Add the missing details</button>"));
    let (status, _, headers) = site.get("/payouts/connect/return", None).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/auth/signin?next=/payouts/connect"));
}

fn payout(order: &str, state: PayoutState) -> Payout {
    Payout {
        order_id: order.into(),
        ticket_id: Some(format!("t-{order}")),
        title: Some(format!("Show {order}")),
        price: Cents::new(1999),
        fee: Cents::new(200),
        amount: Cents::new(1799),
        currency: "usd".into(),
        state,
        sold_at: "2027-03-01T10:00:00.000Z".into(),
        hold_until: "2027-03-16T20:00:00.000Z".into(),
        paid_at: (state == PayoutState::Paid).then(|| "2027-03-17T08:05:00.000Z".into()),
        problem: (state == PayoutState::Disputed).then(|| ReportedProblem {
            reason: "The barcode <was> refused".into(),
            reported_at: "2027-03-15T21:00:00.000Z".into(),
        }),
    }
}

#[tokio::test]
async fn earnings_list_every_sale_its_fee_its_payout_and_the_totals() {
    let api = FakeApi::with(|f| {
        f.payouts = vec![
            payout("o1", PayoutState::Held),
            payout("o2", PayoutState::Due),
            payout("o3", PayoutState::Paid),
            payout("o4", PayoutState::Disputed),
            payout("o5", PayoutState::Refunded),
        ];
    });
    let site = Site::start(api.clone(), None).await;
    let (status, _, headers) = site.get("/payouts", None).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/auth/signin?next=/payouts"));
    let (status, html, _) = site.get("/payouts", Some(SELLER)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"<li><a href="/payouts">Earnings</a></li>"#), "in the nav");
    for (order, label) in [
        ("o1", "Held until Tue 16 Mar 2027, 20:00 UTC"),
        ("o2", "Due"),
        ("o3", "Paid on Wed 17 Mar 2027, 08:05 UTC"),
        ("o4", "Disputed"),
        ("o5", "Refunded"),
    ] {
        let row = html.find(&format!(r#"<tr id="payout-{order}">"#)).expect(order);
        let row = &html[row..];
        let row = &row[..row.find("</tr>").expect("a row's end")];
        assert!(
            row.contains(&format!(r#"<a href="/tickets/t-{order}">Show {order}</a>"#)),
            "{row}"
        );
        assert!(
            row.contains(r#"<td data-label="Price">$19.99</td>"#)
                && row.contains(r#"<td data-label="Fee">$2.00</td>"#),
            "{row}"
        );
        assert!(row.contains(r#"<td data-label="You get">$17.99</td>"#), "{row}");
        assert!(row.contains(&format!(">{label}</span>")), "{row}");
    }
    assert!(html.contains("The buyer reported: The barcode &#60;was&#62; refused"), "{html}");
    for (id, total) in [
        ("total-sold", "$99.95"),
        ("total-fees", "$8.00"),
        ("total-paid", "$17.99"),
        ("total-pending", "$53.97"),
        ("total-refunded", "$19.99"),
    ] {
        assert!(html.contains(&format!(r#"<dd id="{id}">{total}</dd>"#)), "{id}: {html}");
    }
    assert!(
        html.contains(r#"<a href="/payouts/connect">Connect a payout account to get paid</a>"#)
    );

    api.fake().account = Ok(Some(AccountStatus::Ready));
    let (_, html, _) = site.get("/payouts", Some(SELLER)).await;
    assert!(!html.contains("Connect a payout account to get paid"), "ready");
    let (_, empty, _) =
        Site::start(FakeApi::default(), None).await.get("/payouts", Some(SELLER)).await;
    assert!(empty.contains("No sales yet"));
}

#[tokio::test]
async fn seller_pages_say_to_connect_a_payout_account_until_it_is_ready() {
    let api = FakeApi::default();
    let site = Site::start(api.clone(), None).await;
    let hint = r#"<a href="/payouts/connect">Connect a payout account to get paid</a>"#;
    for page in ["/tickets/mine", "/tickets/new"] {
        let (status, html, _) = site.get(page, Some(SELLER)).await;
        assert_eq!(status, 200, "{page}");
        assert!(html.contains(hint), "{page}: {html}");
    }
    api.fake().account = Ok(Some(AccountStatus::Ready));
    for page in ["/tickets/mine", "/tickets/new"] {
        assert!(!site.get(page, Some(SELLER)).await.1.contains(hint), "{page} ready");
    }
    api.fake().account = Err(failure(503, &[("Payments are unavailable", None)]));
    for page in ["/tickets/mine", "/tickets/new"] {
        let (status, html, _) = site.get(page, Some(SELLER)).await;
        assert_eq!(status, 200, "{page}: selling works without payments");
        assert!(!html.contains(hint), "{page}: no hint without an answer");
    }
}

#[tokio::test]
async fn a_buyer_reports_a_problem_from_my_tickets() {
    let api = FakeApi::with(|f| f.held = vec![(held("t1", false, false, None), None)]);
    let site = Site::start(api.clone(), None).await;
    let (_, html, _) = site.get("/tickets/held", Some(SESSION)).await;
    assert!(html.contains(r#"<details class="report" id="order-o1">"#), "{html}");
    assert!(html.contains(r#"<form method="post" action="/orders/o1/problem""#));
    assert!(html.contains("<summary>Report a problem</summary>"));

    let reason = "The barcode was refused at the door";
    let (status, _, headers) =
        site.post("/orders/o1/problem", Some(SESSION), &[("reason", reason)]).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/tickets/held?reported=o1#order-o1"));
    assert_eq!(api.fake().reported, [("o1".to_owned(), reason.to_owned())]);
    let (_, html, _) = site.get("/tickets/held?reported=o1", Some(SESSION)).await;
    assert!(html.contains("Problem reported."), "{html}");
    assert!(!html.contains(r#"action="/orders/o1/problem""#), "reported once");
    let (status, _, headers) = site.post("/orders/o1/problem", None, &[("reason", "x")]).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/auth/signin?next=/orders/o1"));
    assert_eq!(site.post_from_another_site("/orders/o1/problem", SESSION).await, 403);
    assert_eq!(api.fake().reported.len(), 1);
}

#[tokio::test]
async fn a_refused_problem_report_says_why_on_its_ticket() {
    let api = FakeApi::with(|f| {
        f.held = vec![(held("t1", false, false, None), None)];
        f.refuse_problem = Some(failure(
            400,
            &[("The time to report a problem with this ticket ended on 2027-03-16", None)],
        ));
    });
    let site = Site::start(api.clone(), None).await;
    let (status, html, _) =
        site.post("/orders/o1/problem", Some(SESSION), &[("reason", "Too late <really>")]).await;
    assert_eq!(status, 400);
    assert!(html.contains(r#"<details class="report" id="order-o1" open>"#), "{html}");
    assert!(html.contains(
        r#"<p class="field-error" id="reason-error-o1">The time to report a problem with this ticket ended on 2027-03-16</p>"#
    ));
    assert!(html.contains(">Too late &#60;really&#62;</textarea>"), "what was typed stays");

    api.fake().refuse_problem = Some(failure(409, &[("A problem was already reported", None)]));
    let (status, html, _) =
        site.post("/orders/o1/problem", Some(SESSION), &[("reason", "Again")]).await;
    assert_eq!(status, 409);
    assert!(html.contains(r#"id="reason-error-o1">A problem was already reported</p>"#));

    api.fake().refuse_problem =
        Some(failure(400, &[("Reason must be between 1 and 1000 characters", Some("reason"))]));
    let (status, html, _) = site.post("/orders/o1/problem", Some(SESSION), &[("reason", "")]).await;
    assert_eq!(status, 400);
    assert!(html.contains("Reason must be between 1 and 1000 characters</p>"));

    api.fake().refuse_problem = Some(failure(403, &[("Forbidden", None)]));
    let (status, html, _) =
        site.post("/orders/o1/problem", Some(SESSION), &[("reason", "Mine?")]).await;
    assert_eq!(status, 403);
    assert!(html.contains("This belongs to someone else."));
    assert!(api.fake().reported.is_empty());
}

#[tokio::test]
async fn the_email_page_lists_each_kind_and_saves_the_choices() {
    let api = FakeApi::with(|f| f.mail_off = vec!["alert".into()]);
    let site = Site::start(api.clone(), None).await;
    let (_, home, _) = site.get("/", Some(SESSION)).await;
    assert!(home.contains(r#"<a href="/notifications">E-mail</a>"#), "in the navigation");
    let (status, html, _) = site.get("/notifications", Some(SESSION)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"<strong id="mail-address">buyer@example.com</strong>"#), "{html}");
    assert!(html.contains(
        r#"<input type="checkbox" id="kind-receipt" checked disabled aria-describedby="kind-receipt-why">"#
    ));
    assert!(html.contains(r#"id="kind-receipt-why">Always sent"#));
    assert!(
        html.contains(r#"<input type="checkbox" id="kind-sold" name="on" value="sold" checked>"#)
    );
    assert!(html.contains(r#"<input type="checkbox" id="kind-alert" name="on" value="alert">"#));
    assert!(html.contains(r#"<label for="kind-alert">New tickets matching your alerts</label>"#));
    assert!(!html.contains(r#"name="kind" value="receipt""#), "an essential kind is not sent");
    assert!(!html.contains("mail-refused"));

    let form = [("kind", "sold"), ("kind", "alert"), ("on", "alert")];
    let (status, _, headers) = site.post("/notifications", Some(SESSION), &form).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/notifications?saved=1"));
    let sent = vec![("sold".to_owned(), false), ("alert".to_owned(), true)];
    assert_eq!(api.fake().mail_saved, [sent]);
    let (_, html, _) = site.get("/notifications?saved=1", Some(SESSION)).await;
    assert!(html.contains("Your e-mail preferences are saved."));
    assert!(html.contains(r#"<input type="checkbox" id="kind-sold" name="on" value="sold">"#));

    let (status, _, headers) = site.get("/notifications", None).await;
    assert_eq!((status.as_u16(), location(&headers)), (303, "/auth/signin?next=/notifications"));
    assert_eq!(site.post_from_another_site("/notifications", SESSION).await, 403);
    assert_eq!(api.fake().mail_saved.len(), 1);
}

#[tokio::test]
async fn the_email_page_warns_of_a_refused_address_and_shows_refusals() {
    let api = FakeApi::with(|f| {
        f.mail_refused = Some("550 5.1.1 No such user <here>".into());
        f.refuse_preferences = Some(failure(
            400,
            &[("This e-mail is essential and cannot be turned off", Some("receipt"))],
        ));
    });
    let site = Site::start(api.clone(), None).await;
    let (_, html, _) = site.get("/notifications", Some(SESSION)).await;
    assert!(html.contains(
        "Our mail server could not deliver to buyer@example.com: 550 5.1.1 No such user &#60;here&#62;"
    ), "{html}");
    let (status, html, _) =
        site.post("/notifications", Some(SESSION), &[("kind", "receipt")]).await;
    assert_eq!(status, 400);
    assert!(html.contains(
        r#"<p class="alert error" role="alert">This e-mail is essential and cannot be turned off</p>"#
    ));
}

#[tokio::test]
async fn an_unsubscribe_link_asks_first_and_its_button_unsubscribes() {
    let api = FakeApi::default();
    let site = Site::start(api.clone(), None).await;
    let path = format!("/notifications/unsubscribe?token={UNSUBSCRIBE_SOLD}");
    let (status, html, _) = site.get(&path, None).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"<form method="post" action="/notifications/unsubscribe""#), "{html}");
    assert!(
        html.contains(&format!(r#"<input type="hidden" name="token" value="{UNSUBSCRIBE_SOLD}">"#))
    );
    assert!(api.fake().unsubscribed.is_empty(), "opening the link changes nothing");

    let (status, html, _) =
        site.post("/notifications/unsubscribe", None, &[("token", UNSUBSCRIBE_SOLD)]).await;
    assert_eq!(status, 200);
    assert!(html.contains("You will no longer get “One of your tickets sold” e-mails."), "{html}");
    assert!(html.contains(r#"<a href="/notifications">e-mail preferences</a>"#));
    assert_eq!(api.fake().unsubscribed, [UNSUBSCRIBE_SOLD]);
    assert_eq!(api.fake().mail_off, ["sold"]);
}

#[tokio::test]
async fn a_tampered_unsubscribe_link_is_not_valid() {
    let api = FakeApi::default();
    let site = Site::start(api.clone(), None).await;
    let (status, html, _) =
        site.post("/notifications/unsubscribe", None, &[("token", "c29sZA.forged")]).await;
    assert_eq!(status, 400);
    assert!(html.contains("<h1>This unsubscribe link is not valid</h1>"), "{html}");
    for path in ["/notifications/unsubscribe", "/notifications/unsubscribe?token="] {
        let (status, html, _) = site.get(path, None).await;
        assert_eq!(status, 400, "{path}");
        assert!(html.contains("This unsubscribe link is not valid"));
    }
    assert!(api.fake().mail_off.is_empty());
}

#[tokio::test]
async fn a_signed_in_search_without_results_offers_alert_me() {
    let site = Site::start(FakeApi::default(), None).await;
    let (status, html, _) = site.get("/?q=rock+fest&maxPrice=50&sort=newest", Some(SESSION)).await;
    assert_eq!(status, 200);
    assert!(html.contains("No tickets match"));
    assert!(html.contains(r#"<form method="post" action="/alerts" class="inline alert-me-form">"#));
    assert!(html.contains(r#"<input type="hidden" name="q" value="rock fest">"#), "{html}");
    assert!(html.contains(r#"<input type="hidden" name="maxPrice" value="50">"#));
    assert!(html.contains(r#"<button type="submit" class="button">Alert me</button>"#));
    assert!(html.contains(r#"<a href="/alerts">Alerts</a>"#), "in the nav");

    // Not offered signed out, nor for a search without words.
    let (_, html, _) = site.get("/?q=rock", None).await;
    assert!(!html.contains("Alert me"));
    let (_, html, _) = site.get("/?q=+--+&maxPrice=50", Some(SESSION)).await;
    assert!(!html.contains("Alert me"));
}

#[tokio::test]
async fn alert_me_beside_many_results_is_a_quieter_button() {
    let api = FakeApi::with(|f| {
        f.tickets =
            (1..=6).map(|n| ticket(&format!("t{n}"), "Rock", 1000, "seller", None)).collect();
    });
    let site = Site::start(api, None).await;
    let (_, html, _) = site.get("/?q=rock", Some(SESSION)).await;
    assert!(html.contains(r#"<button type="submit" class="button secondary">Alert me</button>"#));
}

#[tokio::test]
async fn alert_me_saves_the_search_and_the_alerts_page_lists_and_deletes_it() {
    let site = Site::start(FakeApi::default(), None).await;
    let form = [("q", "rock fest"), ("minPrice", ""), ("maxPrice", "50"), ("from", ""), ("to", "")];
    let (status, _, headers) = site.post("/alerts", Some(SESSION), &form).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/alerts?saved=1"));
    assert_eq!(
        site.api.fake().alert_bodies,
        [serde_json::json!({"q": "rock fest", "maxPrice": "50"})],
        "empty filters are left out"
    );
    let (status, html, _) = site.get("/alerts?saved=1", Some(SESSION)).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"role="status">Alert saved."#), "{html}");
    assert!(html.contains(r#"<a href="/?q=rock+fest">rock fest</a>"#), "{html}");
    assert!(html.contains(r#"<form method="post" action="/alerts/a1/delete" class="inline">"#));
    assert!(html.contains(r#"aria-label="Delete the alert rock fest">Delete</button>"#));

    let (status, _, headers) = site.post("/alerts/a1/delete", Some(SESSION), &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/alerts?deleted=1"));
    let (_, html, _) = site.get("/alerts?deleted=1", Some(SESSION)).await;
    assert!(html.contains("Alert deleted.") && html.contains("No alerts yet"));
    let (status, _, _) = site.post("/alerts/a1/delete", Some(SESSION), &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_refused_alert_shows_why_and_the_alerts_page_needs_a_session() {
    let api = FakeApi::with(|f| {
        f.refuse_alert = Some(failure(400, &[("You can keep at most 20 alerts", None)]));
    });
    let site = Site::start(api, None).await;
    let (status, html, _) = site.post("/alerts", Some(SESSION), &[("q", "jazz")]).await;
    assert_eq!(status, 400);
    assert!(html.contains(r#"<div class="alert error" role="alert">"#), "{html}");
    assert!(html.contains("Your search “jazz” could not be saved"));
    assert!(html.contains("<li>You can keep at most 20 alerts</li>"));

    let (status, _, headers) = site.get("/alerts", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location(&headers).starts_with("/auth/signin"), "{}", location(&headers));
    assert_eq!(site.post_from_another_site("/alerts", SESSION).await, StatusCode::FORBIDDEN);
}
