//! The pages. Each handler reads the visitor's session cookie, calls the API
//! as that visitor, and renders a template; forms post back here and
//! redirect (303) on success, or re-render with the API's messages next to
//! the fields they concern.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use common::client::ClientAddr;
use common::session::cookie_token;
use common::time::Timestamp;
use serde::Deserialize;

use crate::api::{
    Api, Authentication, Failure, Listing, OrderStatus, Payment, TicketStatus, User, query_string,
};
use crate::views::{ListingView, OrderView, TicketCard, clock, money, status_words, units};

/// What the pages share.
#[derive(Debug, Clone)]
pub struct WebState {
    pub api: Arc<dyn Api>,
    /// Set: the order page loads Stripe's card form.
    pub stripe_key: Option<String>,
    pub currency: String,
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response()
        }
    }
}

fn redirect(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

fn sign_in_first(next: &str) -> Response {
    redirect(&format!("/auth/signin?next={next}"))
}

/// `next` only ever names a page of this site.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if is_local(path) => path.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Whether every browser resolves `path` to a page of this site: one
/// leading `/` not followed by another `/`, and nothing a browser strips or
/// reads differently (it drops tabs and newlines anywhere, so `/\t/host`
/// becomes `//host`, another site; it reads `\` as `/`).
fn is_local(path: &str) -> bool {
    path.starts_with('/')
        && !path[1..].starts_with('/')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    user: Option<User>,
    heading: String,
    text: String,
}

/// A page saying what went wrong, with the right status.
pub async fn message(
    api: &dyn Api,
    session: Option<&str>,
    status: StatusCode,
    heading: &str,
    text: &str,
) -> Response {
    let user = api.current_user(session).await;
    render(status, &MessagePage { user, heading: heading.to_owned(), text: text.to_owned() })
}

/// The page for an API failure that no form shows.
async fn failure_page(state: &WebState, session: Option<&str>, failure: &Failure) -> Response {
    let (status, heading, text) = match failure.status {
        404 => {
            (StatusCode::NOT_FOUND, "Not found", "There is nothing here. It may have been removed.")
        }
        403 => (StatusCode::FORBIDDEN, "Not yours", "This belongs to someone else."),
        0 | 503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The marketplace is unavailable right now. Please try again.",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "Something went wrong",
            "Something went wrong. Please try again.",
        ),
    };
    message(state.api.as_ref(), session, status, heading, text).await
}

/// The 404 page.
pub async fn not_found(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let session = cookie_token(&headers);
    message(
        state.api.as_ref(),
        session,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
    .await
}

// ----- the listing -------------------------------------------------------

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    user: Option<User>,
    tickets: Vec<TicketCard>,
    /// The link to the next page: the same search, from the API's cursor.
    next_page: Option<String>,
    /// The search as the visitor typed it, to fill the form again.
    listing: Listing,
    /// The sort options: value, label, whether chosen.
    sorts: Vec<(&'static str, &'static str, bool)>,
    /// Why the API refused the search.
    problems: Vec<String>,
    /// The currency code, for tickets the page adds live.
    currency: String,
}

/// The sort options of the home page.
const SORTS: [(&str, &str); 4] = [
    ("oldest", "Oldest first"),
    ("newest", "Newest first"),
    ("price_asc", "Price: low to high"),
    ("price_desc", "Price: high to low"),
];

/// `/?<listing's parameters>`, encoded.
fn listing_link(listing: &Listing) -> String {
    let params = listing.params();
    if params.is_empty() { "/".to_owned() } else { format!("/?{}", query_string(&params)) }
}

pub async fn index(
    State(state): State<WebState>,
    headers: HeaderMap,
    listing: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let session = cookie_token(&headers);
    let user = state.api.current_user(session).await;
    let listing = listing.map(|Query(listing)| listing).unwrap_or_default();
    let chosen = if listing.sort.is_empty() { "oldest" } else { listing.sort.as_str() };
    let sorts = SORTS.iter().map(|(value, label)| (*value, *label, *value == chosen)).collect();
    let (status, tickets, next_page, problems) = match state.api.tickets(&listing).await {
        Ok(page) => {
            let next_page =
                page.next_cursor.map(|cursor| listing_link(&Listing { cursor, ..listing.clone() }));
            let tickets =
                page.tickets.iter().map(|t| TicketCard::new(t, &state.currency)).collect();
            (StatusCode::OK, tickets, next_page, Vec::new())
        }
        Err(failure) if failure.status == 400 => {
            let problems = failure.problems.iter().map(|p| p.message.clone()).collect();
            (StatusCode::BAD_REQUEST, Vec::new(), None, problems)
        }
        Err(failure) => return failure_page(&state, session, &failure).await,
    };
    let currency = state.currency.clone();
    let page = IndexPage { user, tickets, next_page, listing, sorts, problems, currency };
    render(status, &page)
}

// ----- my listings ---------------------------------------------------------

#[derive(Template)]
#[template(path = "mine.html")]
struct MinePage {
    user: Option<User>,
    tickets: Vec<ListingView>,
    /// The sum of the sold tickets' prices.
    earned: String,
}

/// How many pages of 1,000 tickets "My listings" reads at most.
const MAX_LISTING_PAGES: usize = 20;

/// The seller's tickets, whatever their state, and what the sold ones
/// earned.
pub async fn my_listings(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let Some(session) = cookie_token(&headers) else { return sign_in_first("/tickets/mine") };
    let mut tickets = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_LISTING_PAGES {
        match state.api.my_tickets(session, cursor.as_deref()).await {
            Ok(page) => {
                tickets.extend(page.tickets);
                cursor = page.next_cursor;
            }
            Err(failure) if failure.status == 401 => return sign_in_first("/tickets/mine"),
            Err(failure) => return failure_page(&state, Some(session), &failure).await,
        }
        if cursor.is_none() {
            break;
        }
    }
    let earned = tickets
        .iter()
        .filter(|t| t.status == TicketStatus::Sold)
        .fold(0i64, |sum, t| sum.saturating_add(t.price.get()));
    let user = state.api.current_user(Some(session)).await;
    let page = MinePage {
        user,
        tickets: tickets.iter().map(|t| ListingView::new(t, &state.currency)).collect(),
        earned: money(common::money::Cents::new(earned), &state.currency),
    };
    render(StatusCode::OK, &page)
}

// ----- sign up, sign in, sign out ------------------------------------------

#[derive(Template)]
#[template(path = "auth.html")]
struct AuthPage {
    user: Option<User>,
    signup: bool,
    heading: &'static str,
    action: &'static str,
    next: String,
    email: String,
    email_error: Option<String>,
    password_error: Option<String>,
    general: Vec<String>,
}

impl AuthPage {
    fn new(signup: bool, next: String) -> Self {
        Self {
            user: None,
            signup,
            heading: if signup { "Sign up" } else { "Sign in" },
            action: if signup { "/auth/signup" } else { "/auth/signin" },
            next,
            email: String::new(),
            email_error: None,
            password_error: None,
            general: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn signup_page(Query(next): Query<Next>) -> Response {
    render(StatusCode::OK, &AuthPage::new(true, local_path(next.next.as_deref())))
}

pub async fn signin_page(Query(next): Query<Next>) -> Response {
    render(StatusCode::OK, &AuthPage::new(false, local_path(next.next.as_deref())))
}

pub async fn signup(
    State(state): State<WebState>,
    client: ClientAddr,
    form: Result<Form<Credentials>, FormRejection>,
) -> Response {
    authenticate(state, client, true, form).await
}

pub async fn signin(
    State(state): State<WebState>,
    client: ClientAddr,
    form: Result<Form<Credentials>, FormRejection>,
) -> Response {
    authenticate(state, client, false, form).await
}

async fn authenticate(
    state: WebState,
    ClientAddr(client): ClientAddr,
    signup: bool,
    form: Result<Form<Credentials>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return render(StatusCode::BAD_REQUEST, &AuthPage::new(signup, "/".into()));
    };
    let next = local_path(form.next.as_deref());
    match state.api.authenticate(client, signup, &form.email, &form.password).await {
        Ok((_, cookie)) => {
            (StatusCode::SEE_OTHER, [(SET_COOKIE, cookie), (LOCATION, location(&next))])
                .into_response()
        }
        Err(failure) => {
            let mut page = AuthPage::new(signup, next);
            page.email = form.email;
            page.email_error = failure.field("email").map(str::to_owned);
            page.password_error = failure.field("password").map(str::to_owned);
            page.general = failure.general();
            // A rate limit keeps its status (429), anything else is the
            // form's fault (400).
            let status = match failure.status {
                429 => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            render(status, &page)
        }
    }
}

fn location(path: &str) -> HeaderValue {
    HeaderValue::from_str(path).unwrap_or(HeaderValue::from_static("/"))
}

#[derive(Template)]
#[template(path = "signout.html")]
struct SignOutPage {
    user: Option<User>,
}

pub async fn signout_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let user = state.api.current_user(cookie_token(&headers)).await;
    render(StatusCode::OK, &SignOutPage { user })
}

pub async fn signout(State(state): State<WebState>) -> Response {
    match state.api.sign_out().await {
        Ok(cookie) => (
            StatusCode::SEE_OTHER,
            [(SET_COOKIE, cookie), (LOCATION, HeaderValue::from_static("/"))],
        )
            .into_response(),
        Err(failure) => failure_page(&state, None, &failure).await,
    }
}

// ----- tickets ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "ticket_form.html")]
struct NewTicketPage {
    user: Option<User>,
    title: String,
    price: String,
    title_error: Option<String>,
    price_error: Option<String>,
    general: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct TicketForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    price: String,
}

pub async fn new_ticket_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let session = cookie_token(&headers);
    let Some(user) = state.api.current_user(session).await else {
        return sign_in_first("/tickets/new");
    };
    let page = NewTicketPage {
        user: Some(user),
        title: String::new(),
        price: String::new(),
        title_error: None,
        price_error: None,
        general: Vec::new(),
    };
    render(StatusCode::OK, &page)
}

pub async fn create_ticket(
    State(state): State<WebState>,
    headers: HeaderMap,
    form: Result<Form<TicketForm>, FormRejection>,
) -> Response {
    let Some(session) = cookie_token(&headers) else { return sign_in_first("/tickets/new") };
    let Ok(Form(form)) = form else { return redirect("/tickets/new") };
    match state.api.create_ticket(session, &form.title, &form.price).await {
        Ok(ticket) => redirect(&format!("/tickets/{}", ticket.id)),
        Err(failure) if failure.status == 401 => sign_in_first("/tickets/new"),
        Err(failure) => {
            let user = state.api.current_user(Some(session)).await;
            let page = NewTicketPage {
                user,
                title: form.title,
                price: form.price,
                title_error: failure.field("title").map(str::to_owned),
                price_error: failure.field("price").map(str::to_owned),
                general: failure.general(),
            };
            render(StatusCode::BAD_REQUEST, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    user: Option<User>,
    ticket: TicketCard,
    signed_in: bool,
    owner: bool,
    /// `available`, `reserved`, `sold` or `withdrawn`.
    status: &'static str,
    /// The status in words, for the badge.
    status_label: String,
    title: String,
    price: String,
    title_error: Option<String>,
    price_error: Option<String>,
    general: Vec<String>,
}

async fn ticket_page(
    state: &WebState,
    session: Option<&str>,
    id: &str,
    edit: Option<(TicketForm, Failure)>,
) -> Response {
    let ticket = match state.api.ticket(id).await {
        Ok(ticket) => ticket,
        Err(failure) => return failure_page(state, session, &failure).await,
    };
    let user = state.api.current_user(session).await;
    let owner = user.as_ref().is_some_and(|u| u.id == ticket.user_id);
    let (status, title, price, failure) = match edit {
        Some((form, failure)) => (StatusCode::BAD_REQUEST, form.title, form.price, Some(failure)),
        None => (StatusCode::OK, ticket.title.clone(), units(ticket.price), None),
    };
    let page = TicketPage {
        signed_in: user.is_some(),
        user,
        ticket: TicketCard::new(&ticket, &state.currency),
        owner,
        status: status_words(&ticket).0,
        status_label: status_words(&ticket).1,
        title,
        price,
        title_error: failure.as_ref().and_then(|f| f.field("title").map(str::to_owned)),
        price_error: failure.as_ref().and_then(|f| f.field("price").map(str::to_owned)),
        general: failure.map(|f| f.general()).unwrap_or_default(),
    };
    render(status, &page)
}

pub async fn show_ticket(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    ticket_page(&state, cookie_token(&headers), &id, None).await
}

pub async fn edit_ticket(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<TicketForm>, FormRejection>,
) -> Response {
    let Some(session) = cookie_token(&headers) else {
        return sign_in_first(&format!("/tickets/{id}"));
    };
    let Ok(Form(form)) = form else { return redirect(&format!("/tickets/{id}")) };
    match state.api.update_ticket(session, &id, &form.title, &form.price).await {
        Ok(_) => redirect(&format!("/tickets/{id}")),
        Err(failure) if failure.status == 400 => {
            ticket_page(&state, Some(session), &id, Some((form, failure))).await
        }
        Err(failure) => failure_page(&state, Some(session), &failure).await,
    }
}

pub async fn purchase(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = cookie_token(&headers) else {
        return sign_in_first(&format!("/tickets/{id}"));
    };
    match state.api.create_order(session, &id).await {
        Ok(order) => redirect(&format!("/orders/{}", order.id)),
        Err(failure) if failure.status == 401 => sign_in_first(&format!("/tickets/{id}")),
        Err(failure) if failure.status == 400 => {
            let form = TicketForm { title: String::new(), price: String::new() };
            ticket_page(&state, Some(session), &id, Some((form, failure))).await
        }
        Err(failure) => failure_page(&state, Some(session), &failure).await,
    }
}

/// The owner takes the ticket off sale, then sees "My listings".
pub async fn withdraw_ticket(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = cookie_token(&headers) else {
        return sign_in_first(&format!("/tickets/{id}"));
    };
    match state.api.withdraw_ticket(session, &id).await {
        Ok(()) => redirect("/tickets/mine"),
        Err(failure) if failure.status == 401 => sign_in_first(&format!("/tickets/{id}")),
        Err(failure) if failure.status == 400 => {
            let form = TicketForm { title: String::new(), price: String::new() };
            ticket_page(&state, Some(session), &id, Some((form, failure))).await
        }
        Err(failure) => failure_page(&state, Some(session), &failure).await,
    }
}

// ----- orders ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    user: Option<User>,
    order: OrderView,
    payable: bool,
    time_left: String,
    stripe_key: Option<String>,
    general: Vec<String>,
    just_paid: bool,
    /// Set while the buyer must authenticate with their bank.
    authentication: Option<AuthenticationView>,
}

/// The order page's "confirm with your bank" panel (3-D Secure).
struct AuthenticationView {
    /// For Stripe.js `handleNextAction`, when a publishable key is set.
    client_secret: String,
    /// The bank's page (a link: works without JavaScript), when known.
    link: Option<String>,
    /// Where the buyer comes back to: settles the payment.
    return_path: String,
}

#[derive(Debug, Deserialize)]
pub struct OrderQuery {
    paid: Option<String>,
}

async fn order_page(
    state: &WebState,
    session: &str,
    id: &str,
    problems: Vec<String>,
    just_paid: bool,
    status: StatusCode,
) -> Response {
    order_page_with(state, session, id, problems, just_paid, None, status).await
}

async fn order_page_with(
    state: &WebState,
    session: &str,
    id: &str,
    problems: Vec<String>,
    just_paid: bool,
    authentication: Option<Authentication>,
    status: StatusCode,
) -> Response {
    let order = match state.api.order(session, id).await {
        Ok(order) => order,
        Err(failure) if failure.status == 401 => return sign_in_first(&format!("/orders/{id}")),
        Err(failure) => return failure_page(state, Some(session), &failure).await,
    };
    let user = state.api.current_user(Some(session)).await;
    let order = OrderView::new(&order, &state.currency, Timestamp::now());
    let page = OrderPage {
        user,
        payable: order.payable(),
        time_left: clock(order.seconds_left),
        order,
        stripe_key: state.stripe_key.clone(),
        general: problems,
        just_paid,
        authentication: authentication.map(|a| AuthenticationView {
            client_secret: a.client_secret,
            // Only this site's pages and https pages are linked to.
            link: a.redirect_url.filter(|url| is_local(url) || url.starts_with("https://")),
            return_path: format!("/orders/{id}/authenticated"),
        }),
    };
    render(status, &page)
}

pub async fn show_order(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<OrderQuery>,
) -> Response {
    let Some(session) = cookie_token(&headers) else {
        return sign_in_first(&format!("/orders/{id}"));
    };
    order_page(&state, session, &id, Vec::new(), query.paid.is_some(), StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct PayForm {
    #[serde(default)]
    token: String,
}

pub async fn pay(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<PayForm>, FormRejection>,
) -> Response {
    let Some(session) = cookie_token(&headers) else {
        return sign_in_first(&format!("/orders/{id}"));
    };
    let token = form.map(|Form(f)| f.token).unwrap_or_default();
    let back = return_url(&headers, &id);
    let answer = state.api.pay(session, &id, &token, back.as_deref()).await;
    payment_page(&state, session, &id, answer).await
}

/// Where the bank sends the buyer back to after 3-D Secure: this site's
/// `/orders/<id>/authenticated`, as the browser reached it.
fn return_url(headers: &HeaderMap, id: &str) -> Option<String> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map_or("http", str::trim);
    Some(format!("{scheme}://{host}/orders/{id}/authenticated"))
}

/// The buyer is back from authenticating with their bank: the payment is
/// settled now, and the page shows where it stands.
pub async fn authenticated(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = cookie_token(&headers) else {
        return sign_in_first(&format!("/orders/{id}"));
    };
    match state.api.settle_payment(session, &id).await {
        // Nothing to settle: the order page says where it stands.
        Err(failure) if failure.status == 404 => redirect(&format!("/orders/{id}")),
        answer => payment_page(&state, session, &id, answer).await,
    }
}

/// Waits up to 3 s for the order to leave `awaiting:payment` (`complete`:
/// to become complete): the orders service hears of the payment's outcome
/// shortly after it is decided.
async fn wait_for_order(state: &WebState, session: &str, id: &str, complete: bool) {
    for _ in 0..30 {
        let status = state.api.order(session, id).await.map(|o| o.status);
        let done = match status {
            Ok(status) if complete => status == OrderStatus::Complete,
            Ok(status) => status != OrderStatus::AwaitingPayment,
            Err(_) => true,
        };
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page after paying or coming back from authentication.
async fn payment_page(
    state: &WebState,
    session: &str,
    id: &str,
    answer: Result<Payment, Failure>,
) -> Response {
    match answer {
        Ok(Payment::Paid) => {
            wait_for_order(state, session, id, true).await;
            redirect(&format!("/orders/{id}?paid=1"))
        }
        Ok(Payment::RequiresAction(authentication)) => {
            // Without Stripe.js, the buyer goes to this site's test page by
            // redirect; another site's page is a link (a form's redirect to
            // another site is not allowed by `form-action 'self'`).
            match &authentication.redirect_url {
                Some(url) if state.stripe_key.is_none() && is_local(url) => redirect(url),
                _ => {
                    order_page_with(
                        state,
                        session,
                        id,
                        Vec::new(),
                        false,
                        Some(authentication),
                        StatusCode::OK,
                    )
                    .await
                }
            }
        }
        Err(failure) if failure.status == 401 => sign_in_first(&format!("/orders/{id}")),
        Err(failure) if matches!(failure.status, 400 | 402 | 409) => {
            if failure.status == 402 {
                // The attempt ended; the order reads `awaiting:payment` until
                // the orders service hears so: wait briefly, so the page
                // offers another card.
                wait_for_order(state, session, id, false).await;
            }
            let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
            let problems = failure.problems.iter().map(|p| p.message.clone()).collect();
            order_page(state, session, id, problems, false, status).await
        }
        Err(failure) => failure_page(state, Some(session), &failure).await,
    }
}

pub async fn cancel_order(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = cookie_token(&headers) else {
        return sign_in_first(&format!("/orders/{id}"));
    };
    match state.api.cancel_order(session, &id).await {
        Ok(()) => redirect(&format!("/orders/{id}")),
        Err(failure) if failure.status == 400 => {
            let problems = failure.problems.iter().map(|p| p.message.clone()).collect();
            order_page(&state, session, &id, problems, false, StatusCode::BAD_REQUEST).await
        }
        Err(failure) => failure_page(&state, Some(session), &failure).await,
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    user: Option<User>,
    orders: Vec<OrderView>,
}

pub async fn orders(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let Some(session) = cookie_token(&headers) else { return sign_in_first("/orders") };
    match state.api.orders(session).await {
        Ok(orders) => {
            let user = state.api.current_user(Some(session)).await;
            let now = Timestamp::now();
            let orders = orders.iter().map(|o| OrderView::new(o, &state.currency, now)).collect();
            render(StatusCode::OK, &OrdersPage { user, orders })
        }
        Err(failure) if failure.status == 401 => sign_in_first("/orders"),
        Err(failure) => failure_page(&state, Some(session), &failure).await,
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn next_only_ever_names_a_page_of_this_site() {
        for local in ["/", "/tickets/t1", "/orders?x=1", "/a%2F%2Fb"] {
            assert_eq!(local_path(Some(local)), local);
        }
        for foreign in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "\t//evil.example",
            "/ /evil.example",
            "https://evil.example",
            "evil.example",
            "",
        ] {
            assert_eq!(local_path(Some(foreign)), "/", "{foreign:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
