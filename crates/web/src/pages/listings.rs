//! The listings: the home page's tickets on sale (searched, sorted, a page
//! at a time) and the seller's own tickets with what they earned.

use askama::Template;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use common::money::Cents;

use super::payouts::needs_payout_account;
use super::{Session, WebState, failed, failure_page, render};
use crate::api::{Listing, TicketStatus, User, query_string};
use crate::views::{ListingView, TicketCard, money};

pub(super) fn router() -> Router<WebState> {
    Router::new().route("/", get(index)).route("/tickets/mine", get(my_listings))
}

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
    /// "Alert me" is offered: a signed-in visitor searched for words.
    can_alert: bool,
}

/// The sort options of the home page.
const SORTS: [(&str, &str); 5] = [
    ("oldest", "Oldest first"),
    ("newest", "Newest first"),
    ("price_asc", "Price: low to high"),
    ("price_desc", "Price: high to low"),
    ("soonest", "Date: soonest first"),
];

/// `/?<listing's parameters>`, encoded.
fn listing_link(listing: &Listing) -> String {
    let params = listing.params();
    if params.is_empty() { "/".to_owned() } else { format!("/?{}", query_string(&params)) }
}

async fn index(
    State(state): State<WebState>,
    session: Option<Session>,
    listing: Result<Query<Listing>, QueryRejection>,
) -> Response {
    let session = session.as_ref().map(Session::token);
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
            (StatusCode::BAD_REQUEST, Vec::new(), None, failure.messages())
        }
        Err(failure) => return failure_page(&state, session, &failure).await,
    };
    let currency = state.currency.clone();
    let can_alert = user.is_some() && listing.has_words() && problems.is_empty();
    let page =
        IndexPage { user, tickets, next_page, listing, sorts, problems, currency, can_alert };
    render(status, &page)
}

#[derive(Template)]
#[template(path = "mine.html")]
struct MinePage {
    user: Option<User>,
    tickets: Vec<ListingView>,
    /// The sum of the sold tickets' prices.
    earned: String,
    /// "Connect a payout account to get paid", while it is not ready.
    payout_hint: bool,
}

/// How many pages of 1,000 tickets "My listings" reads at most.
const MAX_LISTING_PAGES: usize = 20;

/// The seller's tickets, whatever their state, and what the sold ones
/// earned.
async fn my_listings(State(state): State<WebState>, session: Session) -> Response {
    let mut tickets = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_LISTING_PAGES {
        match state.api.my_tickets(session.token(), cursor.as_deref()).await {
            Ok(page) => {
                tickets.extend(page.tickets);
                cursor = page.next_cursor;
            }
            Err(failure) => return failed(&state, &session, &failure).await,
        }
        if cursor.is_none() {
            break;
        }
    }
    let earned = tickets
        .iter()
        .filter(|t| t.status == TicketStatus::Sold)
        .fold(0i64, |sum, t| sum.saturating_add(t.price.get()));
    let user = state.api.current_user(Some(session.token())).await;
    let page = MinePage {
        user,
        tickets: tickets.iter().map(|t| ListingView::new(t, &state.currency)).collect(),
        earned: money(Cents::new(earned), &state.currency),
        payout_hint: needs_payout_account(&state, &session).await,
    };
    render(StatusCode::OK, &page)
}
