//! The security suite: each finding of the security review (issue 12),
//! replayed against the running `ticketing` binary over HTTP and TCP. Every
//! finding is fixed; a test here fails if one comes back.
//!
//! Bodies sent too slowly (408 after 30 s) are tested with short
//! limits in `platform`'s `http_shell` tests: against the binary's defaults
//! that would take half a minute.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{Running, http, order, sell, signup, temp_dir, ticketing, token_of};

/// The session secret of the tests that sign their own tokens.
const JWT_KEY: &str = "security-suite-jwt-key-0123456789abcdef";

/// A `ticketing` process with a directory of its own (`DATA_DIR` is `data`
/// in it, created by the process), healthy; stopped with SIGTERM and its
/// directory removed when dropped.
struct Site {
    running: Option<Running>,
    dir: PathBuf,
}

impl Site {
    /// The all-in-one on SQLite, with `configure` applied to its command.
    async fn start(configure: impl FnOnce(&mut Command)) -> Self {
        let dir = temp_dir();
        let mut command = ticketing();
        command.env("DATA_DIR", dir.join("data"));
        configure(&mut command);
        let mut running = Running::start(command);
        running.wait_until_healthy().await;
        Self { running: Some(running), dir }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    fn url(&self, path: &str) -> String {
        self.running().url(path)
    }

    /// What a browser on this site sends as `Origin`.
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.running().port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn is_running(&mut self) -> bool {
        self.running.as_mut().expect("running").is_running()
    }

    /// Signs up a new user through the API; returns the email and the
    /// session token.
    async fn user(&self, name: &str) -> (String, String) {
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
        let token = token_of(signup(&http(), self.running(), &email).await).await;
        (email, token)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // SIGTERM: a replica on shared servers settles the events it holds
        // before it goes. (Killed when dropped if it has not stopped by then.)
        if let Some(mut running) = self.running.take() {
            let pid = running.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while running.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The status and JSON body of a response.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads one HTTP response (headers and a `Content-Length` body) from `stream`.
fn read_response(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).expect("read");
        assert!(read > 0, "closed before the response ended");
        bytes.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Asserts that the server closes `stream` (or answers it 408) before
/// `deadline`.
fn assert_closed_before(mut stream: &TcpStream, deadline: Instant, what: &str) {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).expect("timeout");
    let mut buffer = [0u8; 512];
    match stream.read(&mut buffer) {
        Ok(0) => {}
        Ok(read) => {
            let text = String::from_utf8_lossy(&buffer[..read]);
            assert!(text.starts_with("HTTP/1.1 408"), "{what}: {text}");
        }
        Err(error) => assert!(
            !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "{what}: still open at the deadline"
        ),
    }
}

/// Finding 1 (slow clients): connections that send headers a little at a
/// time, send nothing, or stay idle after a request held the server's
/// connections forever, so a few hundred of them shut everyone else out.
/// Now each is closed once its headers are 10 s late (the binary's
/// default), and everyone else is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_everyone_else_is_served() {
    let site = Site::start(|_| {}).await;
    let address = ("127.0.0.1", site.running().port);
    let opened = Instant::now();
    let mut partial = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream.write_all(b"GET /api/tickets HTTP/1.1\r\nHost: x\r\nX-Slow: ").expect("write");
        partial.push(stream);
    }
    let silent = TcpStream::connect(address).expect("connect");
    let mut idle = TcpStream::connect(address).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let first = read_response(&mut idle);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    let started = Instant::now();
    let response = http().get(site.url("/api/tickets")).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "answered in {took:?} while 300 clients dawdle");

    let deadline = opened + Duration::from_secs(15);
    for stream in &partial {
        assert_closed_before(stream, deadline, "partial headers");
    }
    assert_closed_before(&silent, deadline, "a connection that sends nothing");
    assert_closed_before(&idle, deadline, "an idle keep-alive connection");
}

/// Finding 3 (holding limits): one account could reserve every ticket on
/// sale and keep them from everyone else, and could order its own tickets.
#[tokio::test]
async fn one_buyer_holds_at_most_five_unpaid_orders_and_never_their_own_ticket() {
    let site = Site::start(|_| {}).await;
    let (_, seller) = site.user("seller").await;
    let (_, buyer) = site.user("buyer").await;
    let mut tickets = Vec::new();
    for seat in 0..6 {
        let ticket = sell(site.running(), &seller, &format!("Seat {seat}")).await;
        tickets.push(ticket["id"].as_str().expect("id").to_owned());
    }
    for ticket in &tickets[..5] {
        assert_eq!(order(site.running(), &buyer, ticket).await.status(), 201);
    }
    let (status, body) = answer(order(site.running(), &buyer, &tickets[5]).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": [{"message": "You can hold at most 5 unpaid orders at a time"}]})
    );
    let (status, body) = answer(order(site.running(), &seller, &tickets[5]).await).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"errors": [{"message": "You cannot order your own ticket"}]}));
}

/// The value of the sign-in form's hidden `next` field on `page`.
/// Finding 2 (no rate limit): 300 wrong passwords in 19 s were all answered
/// 400 and the right one still worked. With the defaults, the eleventh
/// failure of one email is answered 429 and so is the right password.
#[tokio::test]
async fn guessing_a_password_is_stopped_after_ten_failures() {
    let site = Site::start(|command| {
        command.env_remove("SIGNIN_FAILURES_PER_EMAIL");
    })
    .await;
    let (email, _) = site.user("guessed").await;
    let sign_in = |password: &'static str| {
        http()
            .post(site.url("/api/users/signin"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    for guess in 0..10 {
        let (status, _) = answer(sign_in("wrong-password").await.expect("sent")).await;
        assert_eq!(status, 400, "guess {guess}");
    }
    for password in ["wrong-password", "password123"] {
        let response = sign_in(password).await.expect("sent");
        assert!(response.headers().contains_key("retry-after"), "{password}");
        assert_eq!(answer(response).await.0, 429, "{password}");
    }
}

/// Finding 2, through the web client: sign-ins from the sign-in form are
/// counted per visitor (the web client forwards the visitor's address), not
/// as one client for everybody.
#[tokio::test]
async fn sign_ins_through_the_web_client_are_limited_per_visitor() {
    let site = Site::start(|command| {
        command.env("AUTH_REQUESTS_PER_ADDRESS", "2");
    })
    .await;
    // This test reaches the site over loopback, a trusted proxy by default,
    // so each forwarded address stands for a visitor behind a proxy.
    let sign_in = |visitor: &'static str| {
        http()
            .post(site.url("/auth/signin"))
            .header("origin", site.origin())
            .header("x-forwarded-for", visitor)
            .form(&[("email", "nobody@example.com"), ("password", "password123"), ("next", "/")])
            .send()
    };
    for attempt in 0..2 {
        let response = sign_in("203.0.113.5").await.expect("sent");
        assert_eq!(response.status(), 400, "attempt {attempt}: the form shows the wrong password");
    }
    let refused = sign_in("203.0.113.5").await.expect("sent");
    assert_eq!(refused.status(), 429);
    let page = refused.text().await.expect("html");
    assert!(page.contains("Too many requests; try again in"), "{page}");
    let other = sign_in("198.51.100.7").await.expect("sent");
    assert_eq!(other.status(), 400, "another visitor is not limited");
}

fn hidden_next(page: &str) -> &str {
    let (_, rest) = page.split_once(r#"name="next" value=""#).expect("the form carries next");
    rest.split('"').next().expect("value")
}

/// Finding 4 (open redirect): `/auth/signin?next=/%09/evil.example` sent
/// the visitor to another site after signing in (browsers drop tabs and
/// newlines and read `\` as `/`).
#[tokio::test]
async fn signing_in_never_redirects_to_another_site() {
    let site = Site::start(|_| {}).await;
    let (email, _) = site.user("redirect").await;
    let sign_in = |next: &str| {
        http()
            .post(site.url("/auth/signin"))
            .header("origin", site.origin())
            .form(&[("email", email.as_str()), ("password", "password123"), ("next", next)])
            .send()
    };
    let response = sign_in("/orders").await.expect("sent");
    assert_eq!(response.status(), 303, "a page of this site is where the visitor goes");
    assert_eq!(response.headers()["location"], "/orders");

    for (query, next) in [
        ("/%09/evil.example", "/\t/evil.example"),
        ("/%0A/evil.example", "/\n/evil.example"),
        ("/%0D%0A/evil.example", "/\r\n/evil.example"),
        ("%09//evil.example", "\t//evil.example"),
        ("//evil.example", "//evil.example"),
        ("%2F%2Fevil.example", "//evil.example"),
        ("/%5Cevil.example", "/\\evil.example"),
        ("%5C%5Cevil.example", "\\\\evil.example"),
        ("https://evil.example", "https://evil.example"),
        ("https:evil.example", "https:evil.example"),
        ("/%20/evil.example", "/ /evil.example"),
    ] {
        let page =
            http().get(site.url(&format!("/auth/signin?next={query}"))).send().await.expect("sent");
        assert_eq!(page.status(), 200);
        let page = page.text().await.expect("html");
        assert_eq!(hidden_next(&page), "/", "the form for next={query}");

        let response = sign_in(next).await.expect("sent");
        assert_eq!(response.status(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], "/", "after next={next:?}");
    }
}

/// The series of `/metrics` (each line's name and labels, without its value).
async fn metric_series(site: &Site) -> (std::collections::BTreeSet<String>, usize) {
    let text =
        http().get(site.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    let series = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.rsplit_once(' ').map_or(line, |(series, _)| series).to_owned())
        .collect();
    (series, text.len())
}

/// Finding 5 (`/metrics`): each made-up method added a series of its own,
/// so anyone could grow `/metrics` (and the server's memory) without bound.
#[tokio::test]
async fn made_up_methods_add_no_metric_series() {
    let site = Site::start(|_| {}).await;
    let client = http();
    let paths = ["/api/tickets", "/api/nothing-here", "/", "/healthz"];
    let send = |method: &[u8], path: &str| {
        let method = reqwest::Method::from_bytes(method).expect("a method token");
        client.request(method, site.url(path)).send()
    };
    // One made-up method per path first: its series (`other`) may be new.
    for path in paths {
        let _ = send(b"WARMUP", path).await;
    }
    let _ = metric_series(&site).await;
    let (before, size_before) = metric_series(&site).await;

    let mut methods: Vec<Vec<u8>> = (0..100)
        .map(|_| format!("M{}", uuid::Uuid::new_v4().simple()).to_uppercase().into_bytes())
        .collect();
    methods.push(vec![b'X'; 64 * 1024]);
    for method in &methods {
        for path in paths {
            if let Ok(response) = send(method, path).await {
                assert!(!response.status().is_server_error(), "{}", response.status());
            }
        }
    }
    let (after, size_after) = metric_series(&site).await;
    let added: Vec<_> = after.difference(&before).filter(|s| s.contains("method=")).collect();
    assert!(added.is_empty(), "new series: {added:?}");
    let known = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"];
    for series in &after {
        if let Some((_, rest)) = series.split_once("method=\"") {
            let method = rest.split('"').next().expect("label");
            assert!(known.contains(&method) || method == "other", "{series}");
        }
    }
    assert!(size_after < size_before + 4096, "/metrics grew from {size_before} to {size_after}");
}

/// How many requests `/metrics` itself has answered, by its own count.
async fn metrics_requests(site: &Site) -> u64 {
    let text =
        http().get(site.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    text.lines()
        .filter(|line| {
            line.starts_with("http_requests_total{") && line.contains("route=\"/metrics\"")
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|count| count as u64)
        .sum()
}

/// Finding 6 (web client path ids): an id taken from the page's path went
/// into the API path as it was, so `/orders/..%2F..%2Fmetrics%3Fx=` made
/// the web call `/metrics`, and `/orders/..%2Ftickets%2F<id>/cancel` another
/// route, with the visitor's session.
#[tokio::test]
async fn page_ids_cannot_reach_other_api_paths() {
    let site = Site::start(|_| {}).await;
    let (_, seller) = site.user("path-ids").await;
    let ticket = sell(site.running(), &seller, "Kept").await;
    let id = ticket["id"].as_str().expect("id");
    let cookie = format!("session={seller}");
    let served_before = metrics_requests(&site).await;

    for path in ["/orders/..%2F..%2Fmetrics%3Fx=", "/tickets/..%2F..%2Fmetrics%3Fx="] {
        let response =
            http().get(site.url(path)).header("cookie", &cookie).send().await.expect("sent");
        assert_eq!(response.status(), 404, "{path}");
        let page = response.text().await.expect("html");
        assert!(!page.contains("http_requests_total"), "{path} showed the metrics");
    }
    for action in ["cancel", "pay"] {
        let path = format!("/orders/..%2Ftickets%2F{id}/{action}");
        let response = http()
            .post(site.url(&path))
            .header("cookie", &cookie)
            .header("origin", site.origin())
            .form(&[("token", "tok_visa")])
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404, "{path}");
    }

    assert_eq!(
        metrics_requests(&site).await,
        served_before + 1,
        "only this test's own reads reached /metrics"
    );
    let (status, after) =
        answer(http().get(site.url(&format!("/api/tickets/{id}"))).send().await.expect("sent"))
            .await;
    assert_eq!(status, 200, "the ticket is still there");
    assert_eq!(after, ticket, "and unchanged");
}

/// Finding 7 (forgery): a form on another site could post to
/// `/api/users/signout` (and the web's forms) with the visitor's cookie.
#[tokio::test]
async fn cross_site_forms_are_refused_and_change_nothing() {
    let site = Site::start(|_| {}).await;
    let (email, token) = site.user("forgery").await;
    let cookie = format!("session={token}");

    for (header, source) in
        [("origin", "http://evil.example"), ("referer", "http://evil.example/a-page")]
    {
        let response = http()
            .post(site.url("/api/users/signout"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(header, source)
            .body("")
            .send()
            .await
            .expect("sent");
        assert!(response.headers().get("set-cookie").is_none(), "the cookie is kept");
        let (status, body) = answer(response).await;
        assert_eq!(status, 403, "{header}: {source}");
        assert_eq!(body, json!({"errors": [{"message": "Forbidden"}]}));
    }
    let (_, current) = answer(
        http()
            .get(site.url("/api/users/currentuser"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(current["currentUser"]["email"], email.as_str(), "the session still works");

    let https_here = format!("https://127.0.0.1:{}", site.running().port);
    let title = format!("Forged {}", uuid::Uuid::new_v4().simple());
    let sources: [Option<(&str, &str)>; 4] = [
        Some(("origin", &https_here)),
        Some(("origin", "http://evil.example")),
        Some(("referer", "http://evil.example/tickets/new")),
        None,
    ];
    let post_form = |path: &str, source: Option<(&str, &str)>| {
        let mut request = http()
            .post(site.url(path))
            .header("cookie", &cookie)
            .form(&[("title", title.as_str()), ("price", "10")]);
        if let Some((header, value)) = source {
            request = request.header(header, value);
        }
        request.send()
    };
    for source in sources {
        let response = post_form("/tickets/new", source).await.expect("sent");
        assert_eq!(response.status(), 403, "a ticket form from {source:?}");
        let response = post_form("/auth/signout", source).await.expect("sent");
        assert_eq!(response.status(), 403, "a sign-out form from {source:?}");
        assert!(response.headers().get("set-cookie").is_none(), "the cookie is kept");
    }
    let listing: Value = http()
        .get(site.url("/api/tickets?limit=1000"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(!listing.to_string().contains(&title), "no refused form created a ticket: {listing}");
    let here = site.origin();
    let response = post_form("/tickets/new", Some(("origin", &here))).await.expect("sent");
    assert_eq!(response.status(), 303, "the same form from this site is taken");
}

/// Titles a browser would show reordered or cut short, and NUL, which
/// PostgreSQL cannot store (it answered 500).
const CONTROL_TITLES: [&str; 5] =
    ["Con\u{0}cert", "Concert \u{202E}EVIL", "\u{2066}Concert", "Con\ncert", "Con\u{1b}[31mcert"];

/// Finding 8 (titles): a title with NUL answered 500 on PostgreSQL, and one
/// with a right-to-left override showed another title. Both are refused on
/// create and on edit, and the ticket stays as it was.
async fn titles_with_control_characters_are_refused(site: &Site, token: &str) {
    let refused = json!({"errors": [{
        "message": "Title must not contain control characters", "field": "title"
    }]});
    for title in CONTROL_TITLES {
        let response = http()
            .post(site.url("/api/tickets"))
            .bearer_auth(token)
            .json(&json!({"title": title, "price": "10"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(answer(response).await, (400, refused.clone()), "create {title:?}");
    }
    let ticket = sell(site.running(), token, "Concert").await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().expect("id"));
    for title in CONTROL_TITLES {
        let response = http()
            .put(site.url(&path))
            .bearer_auth(token)
            .json(&json!({"title": title, "price": "10"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(answer(response).await, (400, refused.clone()), "edit {title:?}");
    }
    let (status, after) = answer(http().get(site.url(&path)).send().await.expect("sent")).await;
    assert_eq!((status, after), (200, ticket), "the ticket is as it was");
}

mod sqlite {
    /// Finding 8 on SQLite.
    #[tokio::test]
    async fn titles_with_control_characters_are_refused() {
        let site = super::Site::start(|_| {}).await;
        let (_, token) = site.user("titles").await;
        super::titles_with_control_characters_are_refused(&site, &token).await;
    }
}

mod postgres {
    /// Finding 8 on PostgreSQL, where NUL answered 500: the tickets service
    /// alone, on JetStream, in a deployment of the test's own.
    #[tokio::test]
    #[ignore = "needs PostgreSQL and NATS JetStream at TEST_DATABASE_URL and TEST_NATS_URL"]
    async fn titles_with_control_characters_are_refused() {
        let [database, nats] = ["TEST_DATABASE_URL", "TEST_NATS_URL"].map(testkit::server_url);
        let deployment = super::support::OwnDeployment::new();
        let site = super::Site::start(|command| {
            deployment
                .apply(command)
                .args(["serve", "tickets"])
                .env("DATABASE_URL", database)
                .env("NATS_URL", nats)
                .env("TICKET_VAULT_KEY", "cd".repeat(32))
                .env("JWT_KEY", super::JWT_KEY);
        })
        .await;
        let token = super::token_issued_at(0);
        super::titles_with_control_characters_are_refused(&site, &token).await;
    }
}

/// A session for a new user signed with [`JWT_KEY`], issued `offset`
/// seconds from now and valid for an hour.
fn token_issued_at(offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let claims = common::session::Claims {
        id: uuid::Uuid::now_v7(),
        email: "signed-here@example.com".to_owned(),
        iat: now + offset,
        exp: now + offset + 3600,
    };
    common::session::Sessions::new(
        &common::config::Secret::new(JWT_KEY),
        Duration::from_secs(3600),
        false,
    )
    .sign(&claims)
    .expect("signed")
}

/// Runs `command` for at most `limit`; returns whether it exited
/// successfully (`None`: still running, then killed) and what it printed.
fn run_for(mut command: Command, limit: Duration) -> (Option<bool>, String) {
    let mut child =
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ticketing runs");
    let deadline = Instant::now() + limit;
    let exited = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status.success());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("output");
    let printed = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    (exited, printed.into_owned())
}

/// Finding 9 (secrets): `--help` printed the values of the secret
/// variables set in the environment, a NATS URL with a password was logged
/// as it was when the connection failed, and `serve` took any JWT_KEY.
#[test]
fn secrets_never_appear_in_help_or_startup_errors() {
    let secrets = [
        ("DATABASE_URL", "postgres://app:db-s3cret@127.0.0.1:1/app"),
        ("NATS_URL", "nats://app:nats-s3cret@127.0.0.1:1"),
        ("REDIS_URL", "redis://:redis-s3cret@127.0.0.1:1"),
        ("JWT_KEY", "jwt-s3cret-0123456789abcdef0123456789"),
        ("STRIPE_SECRET_KEY", "sk_test_stripe-s3cret"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_webhook-s3cret"),
    ];
    for arguments in [&["--help"][..], &["serve", "--help"], &["serve", "auth", "--help"]] {
        let mut command = ticketing();
        command.args(arguments).envs(secrets);
        let (exited, printed) = run_for(command, Duration::from_secs(10));
        assert_eq!(exited, Some(true), "{arguments:?}");
        assert!(!printed.contains("s3cret"), "{arguments:?} printed a secret: {printed}");
    }

    let dir = temp_dir();
    let mut command = ticketing();
    command
        .env("DATA_DIR", &dir)
        .env("PORT", support::free_port().to_string())
        .env("NATS_URL", "nats://user:s3cret@127.0.0.1:1");
    let (exited, printed) = run_for(command, Duration::from_secs(15));
    assert_eq!(exited, Some(false), "no NATS, no start: {printed}");
    assert!(printed.contains("NATS"), "the failure is explained: {printed}");
    assert!(!printed.contains("s3cret"), "the password was printed: {printed}");

    let mut command = ticketing();
    command
        .args(["serve", "auth"])
        .env("DATA_DIR", &dir)
        .env("PORT", support::free_port().to_string())
        .env("JWT_KEY", "s3cret-of-31-bytes-one-too-few");
    let (exited, printed) = run_for(command, Duration::from_secs(15));
    assert_eq!(exited, Some(false), "a short JWT_KEY is refused: {printed}");
    assert!(printed.contains("JWT_KEY") && !printed.contains("s3cret"), "{printed}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

/// Finding 9 (secrets): the SQLite files (password hashes) and the dev
/// session key were readable by every local user.
#[tokio::test]
async fn the_data_dir_and_its_files_are_private() {
    let site = Site::start(|_| {}).await;
    site.user("private").await;
    let data = site.data_dir();
    assert_eq!(mode(&data), 0o700, "DATA_DIR");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&data).expect("listed") {
        let path = entry.expect("entry").path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files.push(path.file_name().expect("name").to_string_lossy().into_owned());
    }
    for expected in ["auth.db", "tickets.db", "orders.db", "jwt.key"] {
        assert!(files.iter().any(|f| f == expected), "{expected} in {files:?}");
    }
}

/// Finding 9 (secrets): a token signed with the right key but issued in the
/// future (a stolen key's tokens made to outlive its rotation, or a clock
/// that is off) was accepted.
#[tokio::test]
async fn a_session_issued_in_the_future_is_refused() {
    let site = Site::start(|command| {
        command.env("JWT_KEY", JWT_KEY);
    })
    .await;
    let orders = |token: String| http().get(site.url("/api/orders")).bearer_auth(token).send();
    assert_eq!(orders(token_issued_at(0)).await.expect("sent").status(), 200);
    let (status, body) = answer(orders(token_issued_at(120)).await.expect("sent")).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"errors": [{"message": "Not authorized"}]}));
    let response = http()
        .get(site.url("/api/orders"))
        .header("cookie", format!("session={}", token_issued_at(3600)))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
}

/// Finding 9 (secrets): any `X-Request-Id` was echoed back and logged, so
/// a client could write what it liked into the logs and the response.
#[tokio::test]
async fn unusable_request_ids_are_replaced_not_echoed() {
    let site = Site::start(|_| {}).await;
    let id_of = |value: Vec<u8>| {
        let value = reqwest::header::HeaderValue::from_bytes(&value).expect("a header value");
        let request = http().get(site.url("/healthz")).header("x-request-id", value).send();
        async move {
            let response = request.await.expect("sent");
            response.headers()["x-request-id"].as_bytes().to_vec()
        }
    };
    assert_eq!(id_of(b"caller-1.2:3_x".to_vec()).await, b"caller-1.2:3_x", "a usable id is kept");
    for unusable in [
        vec![b'a'; 10_000],
        vec![b'a'; 65],
        b"with space".to_vec(),
        b"with\ttab".to_vec(),
        "zero\u{200B}width".as_bytes().to_vec(),
        "right\u{202E}left".as_bytes().to_vec(),
        "caf\u{e9}".as_bytes().to_vec(),
    ] {
        let echoed = id_of(unusable.clone()).await;
        assert_ne!(echoed, unusable);
        let fresh = std::str::from_utf8(&echoed).expect("ascii");
        assert!(uuid::Uuid::parse_str(fresh).is_ok(), "a fresh id instead: {fresh}");
    }
}

/// Finding 10 (arithmetic): exponents and digit strings at the edges of the
/// integer types overflowed while a price was turned into cents (a panic,
/// 500, or a wrong amount).
#[tokio::test]
async fn prices_at_the_edges_of_arithmetic_are_refused() {
    let mut site = Site::start(|_| {}).await;
    let (_, token) = site.user("prices").await;
    let create = |price: Value| {
        http()
            .post(site.url("/api/tickets"))
            .bearer_auth(&token)
            .json(&json!({"title": "Edge", "price": price}))
            .send()
    };
    let refused =
        json!({"errors": [{"message": "Price must be greater than 0", "field": "price"}]});
    let long_digits = "9".repeat(5_000);
    let tiny = format!("0.{}1", "0".repeat(5_000));
    let long_exponent = format!("1e{}", "9".repeat(100));
    for price in [
        "1e-2147483648",
        "1e2147483647",
        "1e-2147483649",
        "1e2147483648",
        "-1e2147483647",
        "9223372036854775807",
        "92233720368547758.08",
        "-9223372036854775808",
        &long_digits,
        &tiny,
        &long_exponent,
        "NaN",
        "Infinity",
        "-0",
        "0e5",
        "",
    ] {
        let response = create(json!(price)).await.expect("sent");
        assert_eq!(answer(response).await, (400, refused.clone()), "price {price:?}");
    }
    for raw in ["1e400", "-1e400", "1e-400", "18446744073709551616"] {
        let response = http()
            .post(site.url("/api/tickets"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(format!(r#"{{"title":"Edge","price":{raw}}}"#))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "price {raw}");
    }
    assert_eq!(create(json!("19.99")).await.expect("sent").status(), 201);
    assert!(site.is_running(), "the process is still up, never restarted");
}

// Issue 22: tickets and HTTP hardening, replayed against the binary.

/// The search rows the all-in-one stored for the ticket `id`: how many,
/// and the bytes of their text.
async fn search_rows(site: &Site, id: &str) -> (usize, usize) {
    let file = site.data_dir().join("tickets.db");
    let db =
        rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("tickets.db");
    db.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
    let prefixes: Vec<String> = db
        .prepare("SELECT prefix FROM title_prefixes WHERE ticket_id = ?1")
        .expect("statement")
        .query_map([id], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    drop(db);
    (prefixes.len(), prefixes.iter().map(String::len).sum())
}

/// Issue 22, finding 1 (search index amplification): one 200-letter word
/// of 4-byte letters (an 824-byte request) stored 200 search rows and 80 KB
/// of text, withdrawn tickets kept theirs, and nothing limited how often a
/// seller wrote. Now 20 rows (840 bytes), none once withdrawn, and the
/// 31st creation or edit within a minute is answered 429 (the default).
#[tokio::test]
async fn a_title_cannot_amplify_the_search_index() {
    let site = Site::start(|command| {
        command.env("TICKET_WRITES_PER_USER_PER_MINUTE", "30");
    })
    .await;
    let (_, token) = site.user("amplifier").await;
    let body = json!({"title": "\u{10348}".repeat(200), "price": 100});
    assert_eq!(serde_json::to_vec(&body).expect("json").len(), 824, "the reported request");
    let create = || http().post(site.url("/api/tickets")).bearer_auth(&token).json(&body).send();
    let (status, ticket) = answer(create().await.expect("sent")).await;
    assert_eq!(status, 201);
    let id = ticket["id"].as_str().expect("id");
    assert_eq!(search_rows(&site, id).await, (20, 840));
    let q: String = "\u{10348}".repeat(100).bytes().map(|b| format!("%{b:02X}")).collect();
    let found = http().get(site.url(&format!("/api/tickets?q={q}"))).send();
    let (_, found) = answer(found.await.expect("sent")).await;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "a search of 100 letters finds it");
    let withdrawn = http().delete(site.url(&format!("/api/tickets/{id}"))).bearer_auth(&token);
    assert_eq!(withdrawn.send().await.expect("sent").status(), 204);
    assert_eq!(search_rows(&site, id).await, (0, 0), "a withdrawn ticket is never searched");
    // 30 at once, then one more every 2 s (the test takes a few).
    let mut created = 1;
    let refused = loop {
        let response = create().await.expect("sent");
        if response.status() != 201 {
            break response;
        }
        created += 1;
        assert!(created <= 33, "never limited");
    };
    assert_eq!(refused.status(), 429);
    assert!(created >= 30, "{created}");
    assert!(refused.headers().contains_key("retry-after"));
}

/// The first event of the live stream opened with `last` as its
/// `Last-Event-ID` (none when `None`): its name and id.
async fn first_event(site: &Site, last: Option<reqwest::header::HeaderValue>) -> (String, String) {
    let mut request = http().get(site.url("/api/tickets/events"));
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let mut response = request.send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event")
            .expect("reads")
            .expect("not ended");
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or_default()
            .to_owned()
    };
    (field("event"), field("id"))
}

/// Issue 22, finding 2 (live stream positions): `Last-Event-ID:
/// <origin>-18446744073709551615` was accepted and the stream then dropped
/// every change; a `Last-Event-ID` that is not UTF-8 started afresh. Both
/// are positions the stream cannot resume from: `reload`.
#[tokio::test]
async fn a_live_stream_position_beyond_the_bus_is_answered_reload() {
    let site = Site::start(|_| {}).await;
    let (event, position) = first_event(&site, None).await;
    assert_eq!(event, "ready");
    let (origin, _) = position.split_once('-').expect("origin-sequence");
    let beyond = format!("{origin}-18446744073709551615").parse().expect("header");
    assert_eq!(first_event(&site, Some(beyond)).await.0, "reload");
    let mut bytes = position.clone().into_bytes();
    bytes.push(0xC3);
    let unreadable = reqwest::header::HeaderValue::from_bytes(&bytes).expect("header");
    assert_eq!(first_event(&site, Some(unreadable)).await.0, "reload");
    let own = position.parse().expect("header");
    assert_eq!(first_event(&site, Some(own)).await, ("ready".to_owned(), position));
}

/// Issue 22, finding 4 (headers): `GET /api/users/currentuser` and the
/// pages of a session (My listings, orders) could be kept by a cache, and
/// JSON answers did not say `nosniff`.
#[tokio::test]
async fn personal_answers_are_never_stored_and_json_is_never_sniffed() {
    let site = Site::start(|_| {}).await;
    let (_, token) = site.user("private").await;
    let cookie = format!("session={token}");
    for path in ["/api/users/currentuser", "/api/tickets/mine", "/api/orders", "/api/nothing"] {
        let response =
            http().get(site.url(path)).header("cookie", &cookie).send().await.expect("sent");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    let signed_out = http().get(site.url("/api/users/currentuser")).send().await.expect("sent");
    assert_eq!(signed_out.headers()["cache-control"], "no-store", "also for nobody");
    for path in ["/tickets/mine", "/orders", "/"] {
        let response =
            http().get(site.url(path)).header("cookie", &cookie).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
}

/// Polls `check` until it gives a value (at most 20 s).
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A price in a response (currency units) as integer cents.
fn cents(price: &Value) -> i64 {
    (price.as_f64().expect("a price") * 100.0).round() as i64
}

/// Issue 22: an order and its seller's edit of the price (10.00 to 500.00)
/// sent together both succeeded (28 of 30 rounds); the order's 201 and the
/// charge said 10.00, but the order, its page ("Pay $500.00") and the
/// ticket sold said 500.00, and so did the seller's total earned. Now the
/// order keeps the price it was made at, its page asks for that, and the
/// ticket is sold at it.
#[tokio::test]
async fn an_order_racing_a_price_edit_keeps_its_price_to_the_sale() {
    let site = Site::start(|_| {}).await;
    let (_, seller) = site.user("seller").await;
    let (_, buyer) = site.user("buyer").await;
    let mut paid = 0;
    for round in 0..10 {
        let title = format!("Repriced {round}");
        let listed = http()
            .post(site.url("/api/tickets"))
            .bearer_auth(&seller)
            .json(&json!({"title": title, "price": "10.00"}))
            .send()
            .await
            .expect("sent");
        let ticket_id = answer(listed).await.1["id"].as_str().expect("id").to_owned();
        let ticket_url = site.url(&format!("/api/tickets/{ticket_id}"));
        let edit = http()
            .put(&ticket_url)
            .bearer_auth(&seller)
            .json(&json!({"title": title, "price": "500.00"}))
            .send();
        let (placed, edit) = tokio::join!(order(site.running(), &buyer, &ticket_id), edit);
        let (status, placed) = answer(placed).await;
        assert_eq!(status, 201, "{placed}");
        assert!([200, 400].contains(&edit.expect("sent").status().as_u16()));
        let price = cents(&placed["ticket"]["price"]);
        let order_id = placed["id"].as_str().expect("id").to_owned();
        let order_id = order_id.as_str();
        eventually("the reservation", || async {
            let shown = support::ticket(site.running(), &ticket_id).await;
            (shown["orderId"] == order_id).then_some(())
        })
        .await;
        let shown = http()
            .get(site.url(&format!("/api/orders/{order_id}")))
            .bearer_auth(&buyer)
            .send()
            .await
            .expect("sent");
        assert_eq!(cents(&answer(shown).await.1["ticket"]["price"]), price, "round {round}");
        let page = http()
            .get(site.url(&format!("/orders/{order_id}")))
            .header("cookie", format!("session={buyer}"))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("page");
        let asked = format!("Pay ${}.{:02}", price / 100, price % 100);
        assert!(page.contains(&asked), "round {round}: the page asks {asked}");
        let payment = eventually("the payment", || async {
            let response = http()
                .post(site.url("/api/payments"))
                .bearer_auth(&buyer)
                .json(&json!({"token": "tok_visa", "orderId": order_id}))
                .send()
                .await
                .expect("sent");
            (response.status() != 404).then_some(response.status())
        })
        .await;
        assert_eq!(payment, 201);
        paid += price;
        let sold = eventually("the sale", || async {
            let shown = support::ticket(site.running(), &ticket_id).await;
            (shown["status"] == "sold").then_some(shown)
        })
        .await;
        assert_eq!(cents(&sold["price"]), price, "round {round}: sold at the order's price");
    }
    let mine =
        http().get(site.url("/api/tickets/mine")).bearer_auth(&seller).send().await.expect("sent");
    let earned: i64 =
        answer(mine).await.1.as_array().expect("array").iter().map(|t| cents(&t["price"])).sum();
    assert_eq!(earned, paid, "the seller earned what the buyers paid");
}

// Payments hardening (issue 22): the findings of the payments review,
// replayed against the all-in-one with the fake processor and a webhook
// secret the tests sign with (as Stripe would).

/// The webhook signing secret of the payments replays.
const WEBHOOK_SECRET: &str = "whsec_security_suite";

/// The all-in-one with the fake processor, hearing webhooks signed with
/// [`WEBHOOK_SECRET`].
async fn payments_site(configure: impl FnOnce(&mut Command)) -> Site {
    Site::start(|command| {
        command.env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET);
        configure(command);
    })
    .await
}

/// A ticket of a new seller ordered by a new buyer; returns the buyer's
/// token and the order's id.
async fn ordered(site: &Site, name: &str) -> (String, String) {
    let (_, seller) = site.user(&format!("{name}-seller")).await;
    let ticket = sell(site.running(), &seller, name).await;
    let (_, buyer) = site.user(&format!("{name}-buyer")).await;
    let ticket_id = ticket["id"].as_str().expect("a ticket id");
    let placed: Value = order(site.running(), &buyer, ticket_id).await.json().await.expect("json");
    (buyer, placed["id"].as_str().expect("an order id").to_owned())
}

/// Pays `order_id` as the buyer with `token`, retrying while the payments
/// replica does not know the order yet (404); returns the first other
/// answer.
async fn pay(site: &Site, token: &str, order_id: &str, card: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"token": card, "orderId": order_id});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http()
            .post(site.url("/api/payments"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        if response.status() != 404 {
            return answer(response).await;
        }
        assert!(Instant::now() < deadline, "the payments replica never got the order");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `payload` to the webhook with `signature` as `Stripe-Signature`.
async fn post_webhook(site: &Site, payload: Vec<u8>, signature: &str) -> (u16, Value) {
    let response = http()
        .post(site.url("/api/payments/webhook"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(payload)
        .send()
        .await
        .expect("sent");
    answer(response).await
}

fn unix_now() -> i64 {
    common::time::Timestamp::now().millis() / 1000
}

/// Posts `event`, signed with the webhook secret now.
async fn signed_event(site: &Site, event: &Value) -> (u16, Value) {
    let payload = serde_json::to_vec(event).expect("json");
    let t = unix_now();
    let signature = payments::webhook::sign(WEBHOOK_SECRET, t, &payload);
    post_webhook(site, payload, &format!("t={t},v1={signature}")).await
}

/// A `payment_intent.succeeded` saying what its sender likes.
fn succeeded(id: &str, intent: &str, order_id: &str, amount: i64, currency: &str) -> Value {
    let key = payments::domain::idempotency_key(order_id.parse().expect("a uuid"), 1);
    json!({
        "id": id, "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount,
                            "currency": currency, "metadata": {"attempt": key}}},
    })
}

/// How many refunds the payments service has made, by its own count.
async fn refunds_made(site: &Site) -> f64 {
    let text =
        http().get(site.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    text.lines()
        .filter(|line| line.starts_with("payments_refunds_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Issue 22, finding 1 (webhook CPU): a `Stripe-Signature` of ~66,000
/// `v1` with a 63 KB body cost seconds of CPU per unauthenticated call (an
/// HMAC of the body per entry). More than eight `v1`, or a header over
/// 1024 bytes, is refused unread; a body over the limit is answered in the
/// contract's format. (The CPU before and after is measured by hand: see
/// DECISIONS.md, "Payments hardening".)
#[tokio::test]
async fn an_amplified_webhook_signature_is_refused_unread() {
    let site = payments_site(|_| {}).await;
    let invalid = (400, json!({"errors": [{"message": "Invalid signature"}]}));
    let event = json!({"id": "evt_pad", "type": "customer.created",
                       "data": {"object": {"pad": "x".repeat(63_000)}}});
    let payload = serde_json::to_vec(&event).expect("json");
    let t = unix_now();
    let good = payments::webhook::sign(WEBHOOK_SECRET, t, &payload);
    let amplified = format!("t={t}{},v1={good}", ",v1=".repeat(66_000));
    assert_eq!(post_webhook(&site, payload.clone(), &amplified).await, invalid);
    let wrong = format!(",v1={}", "0".repeat(64));
    let nine = format!("t={t}{},v1={good}", wrong.repeat(8));
    assert_eq!(post_webhook(&site, payload.clone(), &nine).await, invalid, "a ninth v1");
    let eight = format!("t={t}{},v1={good}", wrong.repeat(7));
    assert_eq!(post_webhook(&site, payload, &eight).await.0, 200, "eight are read");
    let too_large = vec![b' '; 64 * 1024 + 1];
    let signed = payments::webhook::sign(WEBHOOK_SECRET, t, &too_large);
    assert_eq!(
        post_webhook(&site, too_large, &format!("t={t},v1={signed}")).await,
        (413, json!({"errors": [{"message": "Request body too large"}]}))
    );
}

/// Issue 22, finding 2 (webhooks trusted): a signed event with a made-up
/// intent of 1 EUR completed an order whose attempt had failed, and one
/// naming another buyer's real charge under one's own paid attempt
/// refunded the victim. An event now only names an attempt; the processor
/// says what became of it.
#[tokio::test]
async fn a_signed_webhook_event_is_only_a_hint() {
    let site = payments_site(|_| {}).await;
    let (buyer, order_id) = ordered(&site, "Declined").await;
    assert_eq!(pay(&site, &buyer, &order_id, "tok_chargeDeclined", json!({})).await.0, 402);
    let forged = succeeded("evt_forged", "pi_made_up", &order_id, 1, "eur");
    assert_eq!(signed_event(&site, &forged).await.0, 200);
    let (status, body) = pay(&site, &buyer, &order_id, "tok_visa", json!({})).await;
    assert_eq!(status, 201, "the order was not paid by the event: {body}");

    let (victim, victims_order) = ordered(&site, "Victim").await;
    let (status, paid) = pay(&site, &victim, &victims_order, "tok_visa", json!({})).await;
    assert_eq!(status, 201);
    let victims_charge = paid["stripeId"].as_str().expect("a charge");
    let (attacker, attackers_order) = ordered(&site, "Attacker").await;
    assert_eq!(pay(&site, &attacker, &attackers_order, "tok_visa", json!({})).await.0, 201);
    let stolen = succeeded("evt_stolen", victims_charge, &attackers_order, 1250, "usd");
    assert_eq!(signed_event(&site, &stolen).await.0, 200);
    assert_eq!(refunds_made(&site).await, 0.0, "nobody's money was given back");
}

/// Issue 22, findings 3 and 4 (3-D Secure page, return URL): any signed-in
/// user could complete someone else's test authentication given its
/// intent, and a return URL could carry a user name and password.
#[tokio::test]
async fn only_the_buyer_completes_their_3d_secure_page() {
    let site = payments_site(|_| {}).await;
    let (buyer, order_id) = ordered(&site, "Authenticated").await;
    let with_userinfo = json!({"returnUrl": "https://user:pass@shop.example/back"});
    assert_eq!(
        pay(&site, &buyer, &order_id, "tok_threeDSecure2Required", with_userinfo).await,
        (
            400,
            json!({"errors": [{"message": "ReturnUrl must be an http or https URL",
                               "field": "returnUrl"}]})
        )
    );
    let back = json!({"returnUrl": site.url("/orders/back")});
    let (status, waiting) = pay(&site, &buyer, &order_id, "tok_threeDSecure2Required", back).await;
    assert_eq!(status, 202, "{waiting}");
    let page = site.url(waiting["redirectUrl"].as_str().expect("the test page"));
    let (_, stranger) = site.user("stranger").await;
    let complete = |token: &str| {
        http()
            .post(&page)
            .bearer_auth(token)
            .header("origin", site.origin())
            .form(&[("outcome", "complete")])
            .send()
    };
    let theirs = complete(&stranger).await.expect("sent");
    assert_eq!(answer(theirs).await, (404, json!({"errors": [{"message": "Not Found"}]})));
    let shown = http().get(&page).bearer_auth(&stranger).send().await.expect("sent");
    assert_eq!(shown.status(), 404);
    let settle = http()
        .post(site.url("/api/payments/settle"))
        .bearer_auth(&buyer)
        .json(&json!({"orderId": order_id}))
        .send()
        .await
        .expect("sent");
    assert_eq!(settle.status(), 202, "still waiting for its buyer");
    assert_eq!(complete(&buyer).await.expect("sent").status(), 303);
}

/// Issue 22, finding 5: paying an order that expired (and that the orders
/// service then cancelled for it) said `Cannot pay for a cancelled order`.
#[tokio::test]
async fn paying_an_expired_order_says_it_expired() {
    let site = payments_site(|command| {
        command.env("ORDER_EXPIRATION_SECONDS", "1");
    })
    .await;
    let (buyer, order_id) = ordered(&site, "Expiring").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = http()
            .get(site.url(&format!("/api/orders/{order_id}")))
            .bearer_auth(&buyer)
            .send()
            .await
            .expect("sent");
        let (_, order) = answer(response).await;
        if order["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "the order never expired: {order}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pay(&site, &buyer, &order_id, "tok_visa", json!({})).await,
        (400, json!({"errors": [{"message": "Cannot pay for an expired order"}]}))
    );
}

// Sessions and shared limits (issue 22): signing out ended nothing (the
// token worked until it expired), and every limit counted per process, so
// N replicas allowed N times a limit.

/// Signs out with `token` through `signout_at`, then checks that the token
/// is no session at `currentuser_at` nor at `tickets_at` (another service).
async fn signing_out_ends_the_session(
    token: &str,
    signout_at: &str,
    currentuser_at: &str,
    tickets_at: &str,
) {
    let current_user = || http().get(currentuser_at).bearer_auth(token).send();
    let (status, before) = answer(current_user().await.expect("sent")).await;
    assert_eq!(status, 200);
    assert!(before["currentUser"]["id"].is_string(), "{before}");
    let signed_out = http().post(signout_at).bearer_auth(token).send().await.expect("sent");
    let cookie = signed_out.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(cookie.starts_with("session=;"), "{cookie}");
    assert_eq!(answer(signed_out).await, (200, json!({})));
    let after = answer(current_user().await.expect("sent")).await;
    assert_eq!(after, (200, json!({"currentUser": null})), "the token is no session any more");
    let sell = http()
        .post(tickets_at)
        .header("cookie", format!("session={token}"))
        .json(&json!({"title": "After sign-out", "price": 10}))
        .send()
        .await
        .expect("sent");
    assert_eq!(answer(sell).await, (401, json!({"errors": [{"message": "Not authorized"}]})));
}

/// The all-in-one without Redis: its services share the sign-outs in the
/// process.
#[tokio::test]
async fn a_signed_out_token_is_refused_by_every_service_of_the_all_in_one() {
    let site = Site::start(|_| {}).await;
    let (_, token) = site.user("leaving").await;
    let (_, other) = site.user("staying").await;
    signing_out_ends_the_session(
        &token,
        &site.url("/api/users/signout"),
        &site.url("/api/users/currentuser"),
        &site.url("/api/tickets"),
    )
    .await;
    let response = http().get(site.url("/api/orders")).bearer_auth(&other).send().await;
    assert_eq!(response.expect("sent").status(), 200, "other sessions go on");
    let ticket = sell(site.running(), &other, "Still signed in").await;
    assert!(ticket["id"].is_string(), "{ticket}");
}

/// Signing out with the web client's form ends the session at the API
/// too: the token the browser held is refused afterwards, not only its
/// cookie cleared.
#[tokio::test]
async fn signing_out_with_the_web_form_revokes_the_token() {
    let site = Site::start(|_| {}).await;
    let (_, token) = site.user("web-leaver").await;
    let form = http()
        .post(site.url("/auth/signout"))
        .header("cookie", format!("session={token}"))
        .header("origin", site.url(""))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("sent");
    assert_eq!(form.status(), 303, "back to the home page");
    let current = http().get(site.url("/api/users/currentuser")).bearer_auth(&token).send();
    let after = answer(current.await.expect("sent")).await;
    assert_eq!(after, (200, json!({"currentUser": null})), "the token is no session any more");
}

/// Replicas of auth and tickets on one Redis (`TEST_REDIS_URL`), in this
/// process: each its own databases and bus, one `DATABASE_PREFIX` (the
/// namespace of their Redis keys), as the replicas of one deployment behind
/// a load balancer.
mod replicas {
    use common::config::Secret;
    use testkit::{Stack, TestSystem};

    pub struct Replica(pub TestSystem);

    impl Replica {
        pub fn url(&self, path: &str) -> String {
            self.0.url(path)
        }
    }

    /// `count` replicas sharing a Redis namespace of their own, with the
    /// default limits.
    pub async fn start(count: usize) -> Vec<Replica> {
        let redis = testkit::server_url("TEST_REDIS_URL");
        let namespace = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut replicas = Vec::new();
        for _ in 0..count {
            let (context, bus) = TestSystem::prepare(Stack::Embedded, |config| {
                config.redis_url = Some(Secret::new(&redis));
                config.database_prefix = namespace.clone();
            })
            .await;
            let services = vec![
                auth::build(&context.context, &auth::Settings::default()).await.expect("auth"),
                tickets::build(&context.context, &tickets::Settings::default())
                    .await
                    .expect("tickets"),
            ];
            replicas.push(Replica(TestSystem::start(context, bus, services).await));
        }
        replicas
    }
}

/// Signed out on one replica, the token is refused by the others (by auth
/// and by tickets).
#[tokio::test]
#[ignore = "needs Redis at TEST_REDIS_URL"]
async fn a_token_signed_out_on_one_replica_is_refused_by_every_other() {
    let replicas = replicas::start(2).await;
    let [one, two] = [&replicas[0], &replicas[1]];
    let email = format!("leaving-{}@example.com", uuid::Uuid::new_v4().simple());
    let signed_up = http()
        .post(one.url("/api/users/signup"))
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .expect("sent");
    let token = token_of(signed_up).await;
    let seen = http().get(two.url("/api/users/currentuser")).bearer_auth(&token).send().await;
    let (_, seen) = answer(seen.expect("sent")).await;
    assert_eq!(seen["currentUser"]["email"], json!(email), "the other replica believes it");
    signing_out_ends_the_session(
        &token,
        &one.url("/api/users/signout"),
        &two.url("/api/users/currentuser"),
        &two.url("/api/tickets"),
    )
    .await;
    let on_one = http().post(one.url("/api/tickets")).bearer_auth(&token).json(&json!({}));
    assert_eq!(on_one.send().await.expect("sent").status(), 401);
}

/// SIGNIN_FAILURES_PER_EMAIL across replicas: the eleventh failure for one
/// email is 429 whichever replica answers, however the failures were spread.
#[tokio::test]
#[ignore = "needs Redis at TEST_REDIS_URL"]
async fn the_eleventh_failed_sign_in_is_refused_whichever_replica_answers() {
    let replicas = replicas::start(2).await;
    let email = format!("guessed-{}@example.com", uuid::Uuid::new_v4().simple());
    let sign_in = |replica: &replicas::Replica, password: &str| {
        http()
            .post(replica.url("/api/users/signin"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    for guess in 0..10 {
        let response = sign_in(&replicas[guess % 2], "wrong-password").await.expect("sent");
        assert_eq!(response.status(), 400, "guess {guess}");
    }
    for replica in &replicas {
        let response = sign_in(replica, "wrong-password").await.expect("sent");
        assert!(response.headers().contains_key("retry-after"));
        let (status, body) = answer(response).await;
        assert_eq!(status, 429, "{body}");
    }
    let other = format!("someone-else-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = http()
        .post(replicas[1].url("/api/users/signin"))
        .json(&json!({"email": other, "password": "wrong-password"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400, "another email is counted apart");
}
