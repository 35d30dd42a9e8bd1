//! The shipped ingress (`infra/nginx.conf`, which docker-compose and the
//! local cluster serve as it is) in front of the all-in-one, through a real
//! nginx: the visitor's address reaches every route, the live stream's
//! included, so the per-address limits count visitors and not the proxy;
//! operators' routes are not served to the public; and two replicas
//! behind it, sharing one Redis, hold a limit together.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Running, free_port, http, temp_dir, ticketing};

/// nginx serving `infra/nginx.conf`'s server block on a free port, every
/// upstream pointing at `backends` (round robin); stopped when dropped. Its
/// access log names the backend that answered each request.
struct Ingress {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Ingress {
    fn start(backends: &[u16]) -> Self {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .expect("nginx is not installed: the ingress tests need it (apt-get install nginx; .ci/run does)");
        let dir = temp_dir();
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, backends)).expect("config written");
        let child = Command::new(nginx)
            .args(["-p", &dir.display().to_string(), "-c", &conf.display().to_string()])
            .args(["-e", &dir.join("error.log").display().to_string(), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Self { child, port, dir }
    }

    /// `<request line> <backend address>` of each request answered so far.
    fn answered(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while http().get(self.url("/healthz")).send().await.map(|r| r.status()).ok()
            != Some(reqwest::StatusCode::OK)
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited with {status}");
            }
            assert!(Instant::now() < deadline, "nginx did not serve within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `infra/nginx.conf` as `infra/local/up.sh` turns it into a runnable file:
/// its server block unchanged but for the address it listens on, with
/// every upstream on `backends` and nginx's own files under `dir`.
fn config(dir: &Path, port: u16, backends: &[u16]) -> String {
    let shipped = include_str!("../../../infra/nginx.conf");
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let mut config = String::new();
    if root {
        config.push_str("user root;\n");
    }
    config.push_str(&format!(
        "worker_processes 1;\npid {}/nginx.pid;\nevents {{}}\nhttp {{\n",
        dir.display()
    ));
    config.push_str("  log_format answered '$request $upstream_addr';\n");
    config.push_str(&format!("  access_log {}/access.log answered;\n", dir.display()));
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        config.push_str(&format!("  {temp}_temp_path {}/{temp};\n", dir.display()));
    }
    for line in shipped.lines().map(str::trim).filter(|l| l.starts_with("upstream ")) {
        let name = line.split_whitespace().nth(1).expect("an upstream's name");
        let servers: String =
            backends.iter().map(|port| format!(" server 127.0.0.1:{port};")).collect();
        config.push_str(&format!("  upstream {name} {{{servers} }}\n"));
    }
    let server = shipped.split_once("\n  server {").expect("a server block").1;
    let server = server.rsplit_once("\n}").expect("the end of http").0;
    config.push_str("  server {");
    config.push_str(&server.replace("listen 80;", &format!("listen 127.0.0.1:{port};")));
    config.push_str("\n}\n");
    config
}

/// The all-in-one with `LIVE_STREAMS_PER_ADDRESS=2`, and the ingress.
async fn deployment() -> (Running, Ingress) {
    let mut app = ticketing();
    app.env("DATA_DIR", temp_dir()).env("LIVE_STREAMS_PER_ADDRESS", "2");
    let mut running = Running::start(app);
    running.wait_until_healthy().await;
    let mut ingress = Ingress::start(&[running.port]);
    ingress.wait_until_serving().await;
    (running, ingress)
}

/// Visitors who forge `X-Forwarded-For` on the live stream are still one
/// address to the per-address cap: the ingress names the visitor itself.
#[tokio::test]
async fn forged_forwarded_addresses_do_not_widen_the_live_stream_cap() {
    let (_app, ingress) = deployment().await;
    let mut open = Vec::new();
    for forged in ["198.51.100.1", "198.51.100.2"] {
        let stream = http()
            .get(ingress.url("/api/tickets/events"))
            .header("x-forwarded-for", forged)
            .send()
            .await
            .expect("sent");
        assert_eq!(stream.status(), 200, "stream from {forged}");
        open.push(stream);
    }
    let third = http()
        .get(ingress.url("/api/tickets/events"))
        .header("x-forwarded-for", "198.51.100.3")
        .send()
        .await
        .expect("sent");
    assert_eq!(third.status(), 429, "a third stream from one visitor, whatever it claims");
    drop(open);
}

/// Metrics and readiness are the operators': the ingress answers the
/// contract's 404; the service's own port still serves them.
#[tokio::test]
async fn operators_routes_are_not_served_through_the_ingress() {
    let (app, ingress) = deployment().await;
    for path in ["/metrics", "/readyz"] {
        let public = http().get(ingress.url(path)).send().await.expect("sent");
        assert_eq!(public.status(), 404, "{path} through the ingress");
        let body: serde_json::Value = public.json().await.expect("the error body");
        assert_eq!(body["errors"][0]["message"], "Not Found", "{path}");
        let own = http().get(app.url(path)).send().await.expect("sent");
        assert_eq!(own.status(), 200, "{path} on the service's port");
    }
    let public = http().get(ingress.url("/api/tickets")).send().await.expect("sent");
    assert_eq!(public.status(), 200, "the API itself is served");
}

/// Two all-in-one replicas behind the ingress, each with its own data but
/// one Redis and one `DATABASE_PREFIX` (the namespace of their shared
/// limits), as the replicas of one deployment: the eleventh failed sign-in
/// for one email is 429 whichever replica nginx hands it to. Per process,
/// each replica would have seen five failures and let it through.
#[tokio::test]
#[ignore = "needs Redis at TEST_REDIS_URL"]
async fn the_eleventh_failed_sign_in_behind_the_ingress_is_refused_by_either_replica() {
    let redis = testkit::server_url("TEST_REDIS_URL");
    let namespace = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut app = ticketing();
        app.env("DATA_DIR", temp_dir())
            .env("REDIS_URL", &redis)
            .env("DATABASE_PREFIX", &namespace)
            .env("SIGNIN_FAILURES_PER_EMAIL", "10");
        let mut running = Running::start(app);
        running.wait_until_healthy().await;
        replicas.push(running);
    }
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let mut ingress = Ingress::start(&ports);
    ingress.wait_until_serving().await;

    let email = format!("guessed-{}@example.com", uuid::Uuid::new_v4().simple());
    let sign_in = |email: String| {
        http()
            .post(ingress.url("/api/users/signin"))
            .json(&serde_json::json!({"email": email, "password": "wrong-password"}))
            .send()
    };
    for guess in 1..=10 {
        let response = sign_in(email.clone()).await.expect("sent");
        assert_eq!(response.status(), 400, "failure {guess} is answered as a failure");
    }
    for attempt in 11..=12 {
        let response = sign_in(email.clone()).await.expect("sent");
        assert_eq!(response.status(), 429, "attempt {attempt}");
        assert!(response.headers().contains_key("retry-after"), "attempt {attempt}");
        let body: serde_json::Value = response.json().await.expect("the error body");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
    }
    let other = format!("someone-else-{}@example.com", uuid::Uuid::new_v4().simple());
    assert_eq!(sign_in(other).await.expect("sent").status(), 400, "another email is apart");

    // nginx writes a request's log line when it finishes the request, which
    // can be just after the client has read the answer: wait for the last.
    let deadline = Instant::now() + Duration::from_secs(5);
    let answered = loop {
        let answered = ingress.answered();
        let count = answered.iter().filter(|l| l.starts_with("POST /api/users/signin")).count();
        if count >= 13 || Instant::now() > deadline {
            break answered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let signins: Vec<&String> =
        answered.iter().filter(|line| line.starts_with("POST /api/users/signin")).collect();
    assert_eq!(signins.len(), 13, "{answered:?}");
    for port in ports {
        let by_it = signins.iter().filter(|line| line.ends_with(&format!(":{port}"))).count();
        assert!(by_it >= 5, "the replica on {port} answered {by_it} of them: {signins:?}");
    }
}
