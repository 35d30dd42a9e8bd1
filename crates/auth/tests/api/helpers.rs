//! `TestApp`: the auth service on a free port with its own fresh database,
//! and typed helpers for each route.

use common::config::Config;
use common::session::{Claims, Sessions};
use reqwest::Response;
use serde_json::{Value, json};
use testkit::{Backend, TestContext, TestServer, client};

pub struct TestApp {
    pub server: TestServer,
    pub context: TestContext,
    /// One browser: keeps the session cookie between calls.
    pub browser: reqwest::Client,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_, _| {}).await
    }

    /// The service with `configure` applied to the shared configuration
    /// and to its settings (every test signs its users up from one
    /// address: the per-address limit starts off).
    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut Config, &mut auth::Settings),
    ) -> Self {
        let mut settings = auth::Settings { auth_requests_per_address: 0, ..Default::default() };
        let context = TestContext::new(&backend, |config| configure(config, &mut settings));
        let service =
            auth::build(&context.context, &settings).await.expect("the auth service starts");
        let proxies = context.context.config.trusted_proxies.clone();
        let server = TestServer::start_with(&[service], proxies).await;
        Self { server, context, browser: client() }
    }

    pub fn sessions(&self) -> &Sessions {
        &self.context.context.sessions
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.browser.post(self.server.url(path)).json(body).send().await.expect("request sent")
    }

    /// `POST path` with `body` as it is and these `headers` (what a form or
    /// a broken client sends).
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Response {
        let mut request = self.browser.post(self.server.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("sent")
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.post_json("/api/users/signup", &json!({"email": email, "password": password})).await
    }

    pub async fn signin(&self, email: &str, password: &str) -> Response {
        self.post_json("/api/users/signin", &json!({"email": email, "password": password})).await
    }

    pub async fn signout(&self) -> Response {
        self.browser.post(self.server.url("/api/users/signout")).send().await.expect("sent")
    }

    /// `currentUser` as this browser sees it.
    pub async fn current_user(&self) -> Value {
        let response =
            self.browser.get(self.server.url("/api/users/currentuser")).send().await.expect("sent");
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")["currentUser"].clone()
    }

    /// `currentUser` for a request that carries only `header: value`.
    pub async fn current_user_with(&self, header: &str, value: &str) -> Value {
        let response = client()
            .get(self.server.url("/api/users/currentuser"))
            .header(header, value)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")["currentUser"].clone()
    }

    /// Signs up a fresh user and returns the claims of its session.
    pub async fn signed_up_user(&self, email: &str) -> Claims {
        assert_eq!(self.signup(email, "password123").await.status(), 201);
        serde_json::from_value(self.current_user().await).expect("claims")
    }
}

/// The `Set-Cookie` header of a response.
pub fn set_cookie(response: &Response) -> String {
    response.headers()["set-cookie"].to_str().expect("ascii").to_owned()
}

pub use testkit::{error_of as error, field_error, general_error};
