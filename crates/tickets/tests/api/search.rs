//! `GET /api/tickets?q=&sort=&minPrice=&maxPrice=`: search by word
//! prefixes, price bounds, and paging in every order.

use serde_json::{Value, json};
use testkit::Stack;
use uuid::Uuid;

use crate::helpers::{TicketsApp, error, field_error};

/// The titles of the listing at `query` (first page).
async fn titles(app: &TicketsApp, query: &str) -> Vec<String> {
    let response = app.list(query).await;
    assert_eq!(response.status(), 200, "{query}");
    let page: Vec<Value> = response.json().await.expect("json");
    page.iter().map(|t| t["title"].as_str().expect("title").to_owned()).collect()
}

/// Every page of the listing at `query` with `limit=2`, following the
/// cursors: the titles in order.
async fn all_pages(app: &TicketsApp, query: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("?limit=2&{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let response = app.list(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        cursor =
            response.headers().get("x-next-cursor").map(|v| v.to_str().expect("ascii").to_owned());
        let page: Vec<Value> = response.json().await.expect("json");
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|t| t["title"].as_str().expect("title").to_owned()));
        if cursor.is_none() {
            return seen;
        }
    }
}

async fn search_matches_word_prefixes_whatever_the_case(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    for title in ["Rock Festival", "rock-a-billy night", "Bedrock", "Jazz Evening", "Zürich Öper"]
    {
        app.ticket(&seller, title, json!(10)).await;
    }
    assert_eq!(titles(&app, "?q=ROC").await, ["Rock Festival", "rock-a-billy night"]);
    assert_eq!(titles(&app, "?q=roc%20FEST").await, ["Rock Festival"], "every word must match");
    assert_eq!(titles(&app, "?q=night%20billy").await, ["rock-a-billy night"]);
    assert_eq!(titles(&app, "?q=z%C3%BCRICH").await, ["Zürich Öper"]);
    assert_eq!(titles(&app, "?q=%C3%B6p").await, ["Zürich Öper"], "non-ASCII letters fold too");
    assert!(titles(&app, "?q=ock").await.is_empty(), "only the beginnings of words");
    assert_eq!(titles(&app, "?q=%20%21%21").await.len(), 5, "no words: no filter");
}

async fn an_edited_title_is_searched_by_its_new_words(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let ticket = app.ticket(&seller, "Opera", json!(10)).await;
    let id = ticket["id"].as_str().expect("id");
    let edited = app.edit(Some(&seller), id, &json!({"title": "Ballet", "price": 10})).await;
    assert_eq!(edited.status(), 200);
    assert!(titles(&app, "?q=opera").await.is_empty());
    assert_eq!(titles(&app, "?q=bal").await, ["Ballet"]);
}

async fn search_shows_only_tickets_on_sale(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let held = app.ticket(&seller, "Show held", json!(10)).await;
    let gone = app.ticket(&seller, "Show gone", json!(10)).await;
    app.ticket(&seller, "Show free", json!(10)).await;
    app.order_created(&held, Uuid::now_v7()).await;
    app.withdraw(Some(&seller), gone["id"].as_str().expect("id")).await;
    assert_eq!(titles(&app, "?q=show").await, ["Show free"]);
}

async fn every_order_pages_through_every_match_once(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    // Equal prices, so the id decides between them.
    for (title, price) in
        [("a", "30"), ("b", "10"), ("c", "20"), ("d", "10"), ("e", "30"), ("f", "19.99")]
    {
        app.ticket(&seller, title, json!(price)).await;
    }
    assert_eq!(all_pages(&app, "").await, ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(all_pages(&app, "sort=oldest").await, ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(all_pages(&app, "sort=newest").await, ["f", "e", "d", "c", "b", "a"]);
    assert_eq!(all_pages(&app, "sort=price_asc").await, ["b", "d", "f", "c", "a", "e"]);
    assert_eq!(all_pages(&app, "sort=price_desc").await, ["e", "a", "c", "f", "d", "b"]);
    assert_eq!(all_pages(&app, "sort=price_asc&minPrice=19.99&maxPrice=20").await, ["f", "c"]);
    assert_eq!(all_pages(&app, "sort=newest&maxPrice=10").await, ["d", "b"]);
    assert_eq!(all_pages(&app, "sort=price_desc&minPrice=30").await, ["e", "a"]);
}

async fn invalid_search_parameters_are_refused_naming_the_field(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let long = "a".repeat(101);
    let cases = [
        (format!("?q={long}"), "q", "Search must be at most 100 characters"),
        (
            "?sort=cheap".to_owned(),
            "sort",
            "Sort must be one of oldest, newest, price_asc, price_desc, soonest",
        ),
        ("?minPrice=abc".to_owned(), "minPrice", "MinPrice must be a valid price"),
        ("?minPrice=-1".to_owned(), "minPrice", "MinPrice must be a valid price"),
        ("?maxPrice=1.234".to_owned(), "maxPrice", "MaxPrice must be a valid price"),
        (
            "?minPrice=20&maxPrice=10".to_owned(),
            "minPrice",
            "MinPrice must not be greater than MaxPrice",
        ),
        (
            format!("?sort=price_asc&cursor={}", Uuid::now_v7()),
            "cursor",
            "Cursor must be the X-Next-Cursor of a page in this order",
        ),
        ("?sort=newest&cursor=10.x".to_owned(), "cursor", "Cursor must be a ticket id"),
    ];
    for (query, field, message) in cases {
        let (status, body) = error(app.list(&query).await).await;
        assert_eq!((status, body), (400, field_error(field, message)), "{query}");
    }
    let (status, body) = error(app.list("?sort=cheap&limit=0&maxPrice=x").await).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().expect("errors").len(), 3, "every bad field at once");
    assert_eq!(app.list(&format!("?q={}", "a".repeat(100))).await.status(), 200);
}

/// Issue 22: one 200-letter word of 4-byte letters (an 824-byte request)
/// stored 200 rows and 80 KB of text; only prefixes a search can use are
/// kept now, and a longer search word still finds the title.
async fn a_title_stores_only_the_prefixes_a_search_can_ask_for(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let letter = "\u{10348}";
    let ticket = app.ticket(&seller, &letter.repeat(200), json!(10)).await;
    assert_eq!(app.search_rows(&ticket).await, (20, 4 * (1..=20).sum::<usize>()));
    let searched = letter.repeat(100);
    assert_eq!(titles(&app, &format!("?q={}", urlencode(&searched))).await.len(), 1);
    let words = app.ticket(&seller, "Rock Festival 2026", json!(10)).await;
    assert_eq!(app.search_rows(&words).await.0, 4 + 8 + 4, "short words keep every prefix");
}

/// Withdrawn and sold tickets never show in a search: their rows go.
async fn tickets_off_sale_for_good_keep_no_search_rows(stack: Stack) {
    let app = TicketsApp::spawn(stack).await;
    let seller = app.user("seller");
    let withdrawn = app.ticket(&seller, "Opera gala", json!(10)).await;
    let sold = app.ticket(&seller, "Opera night", json!(10)).await;
    let held = app.ticket(&seller, "Opera matinee", json!(10)).await;
    app.withdraw(Some(&seller), withdrawn["id"].as_str().expect("id")).await;
    let order = Uuid::now_v7();
    app.order_created(&sold, order).await;
    app.order_completed(&sold, order).await;
    app.order_created(&held, Uuid::now_v7()).await;
    assert_eq!(app.search_rows(&withdrawn).await, (0, 0));
    assert_eq!(app.search_rows(&sold).await, (0, 0));
    assert_eq!(app.search_rows(&held).await.0, 5 + 7, "a reservation may end: kept");
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

testkit::stack_tests!(
    a_title_stores_only_the_prefixes_a_search_can_ask_for,
    tickets_off_sale_for_good_keep_no_search_rows,
    search_matches_word_prefixes_whatever_the_case,
    an_edited_title_is_searched_by_its_new_words,
    search_shows_only_tickets_on_sale,
    every_order_pages_through_every_match_once,
    invalid_search_parameters_are_refused_naming_the_field,
);
