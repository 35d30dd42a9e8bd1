//! Sessions: HS256 JWTs carried in the `session` cookie or an
//! `Authorization: Bearer` header, verified by every service itself, and the
//! extractors for the required ([`CurrentUser`]) and optional ([`MaybeUser`])
//! signed-in user.
//!
//! Each token carries an id (`jti`); signing out records it as revoked until
//! the token would have expired anyway, where every service looks before it
//! believes a token ([`crate::shared`]: Redis when `REDIS_URL` is set, else
//! this process — the all-in-one's services share it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::Secret;
use crate::error::ApiError;
use crate::shared::{self, Redis, Shared, SharedError};

/// How far in the future a session's `iat` may be: the clock skew allowed
/// between the service that signed it and the one reading it.
pub const ISSUED_AT_LEEWAY_SECONDS: i64 = 30;

/// The name of the session cookie.
pub const COOKIE_NAME: &str = "session";

/// The claims of a session token; also the `currentUser` of
/// `GET /api/users/currentuser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Claims {
    /// The user's id.
    pub id: Uuid,
    /// The user's (normalised) email.
    pub email: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
}

/// What a token carries: the claims and the token's own id, by which it is
/// revoked (not part of `currentUser`).
#[derive(Debug, Serialize, Deserialize)]
struct Token {
    #[serde(flatten)]
    claims: Claims,
    jti: Uuid,
}

/// Issues and verifies sessions with the shared secret.
#[derive(Clone)]
pub struct Sessions(Arc<Inner>);

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
    secure: bool,
    revoked: Revoked,
    /// HMAC-SHA256 of the session secret under a fixed label: the root of
    /// [`Sessions::derived_key`] (the secret itself is not kept).
    derivation: [u8; 32],
}

/// Where the ids of signed-out tokens are kept until the tokens expire.
#[derive(Clone)]
enum Revoked {
    /// In this process: token id → its `exp`.
    Process(Arc<Mutex<HashMap<Uuid, i64>>>),
    /// In Redis, one key per token id that expires with the token.
    Redis(Redis),
}

/// Past this many revoked tokens held in a process, the expired ones are dropped.
const PRUNE_AT: usize = 1024;

impl Revoked {
    async fn revoke(&self, jti: Uuid, exp: i64) -> Result<(), SharedError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match self {
            Self::Process(revoked) => {
                let mut revoked = revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if revoked.len() >= PRUNE_AT && revoked.len().is_power_of_two() {
                    revoked.retain(|_, exp| *exp >= now);
                }
                revoked.insert(jti, exp);
                Ok(())
            }
            Self::Redis(redis) => {
                let key = redis.key(format_args!("session:revoked:{jti}"));
                // Kept a little past `exp`, so that no clock skew revives it.
                let seconds = exp.saturating_sub(now).max(0) + ISSUED_AT_LEEWAY_SECONDS;
                redis
                    .run(|mut redis| async move {
                        redis::cmd("SET")
                            .arg(key)
                            .arg(1)
                            .arg("EX")
                            .arg(seconds)
                            .query_async::<()>(&mut redis)
                            .await
                    })
                    .await
            }
        }
    }

    async fn is_revoked(&self, jti: Uuid) -> Result<bool, SharedError> {
        match self {
            Self::Process(revoked) => Ok(revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(&jti)),
            Self::Redis(redis) => {
                let key = redis.key(format_args!("session:revoked:{jti}"));
                redis
                    .run(|mut redis| async move {
                        redis::cmd("EXISTS").arg(key).query_async::<bool>(&mut redis).await
                    })
                    .await
            }
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime", &self.0.lifetime)
            .field("secure", &self.0.secure)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions signed with `key`, valid for `lifetime`; `secure` adds the
    /// `Secure` attribute to the cookie.
    pub fn new(key: &Secret, lifetime: Duration, secure: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat"]);
        Self(Arc::new(Inner {
            encoding: EncodingKey::from_secret(key.expose().as_bytes()),
            decoding: DecodingKey::from_secret(key.expose().as_bytes()),
            validation,
            lifetime,
            secure,
            revoked: Revoked::Process(Arc::default()),
            derivation: hmac_sha256(key.expose().as_bytes(), b"ticketing: derived keys"),
        }))
    }

    /// A key of its own for another purpose, derived from the session
    /// secret (`JWT_KEY`) under `label` (HMAC-SHA256): every service
    /// already shares that secret, so a value signed by one replica (an
    /// unsubscribe link) is verified by all, without a setting of its
    /// own; a key derived under one label tells nothing about the secret
    /// or the keys of other labels.
    pub fn derived_key(&self, label: &str) -> [u8; 32] {
        hmac_sha256(&self.0.derivation, label.as_bytes())
    }

    /// These sessions, their revocations kept in `shared` (every replica
    /// then refuses a token signed out on any of them).
    pub fn revoked_in(&self, shared: &Shared) -> Self {
        let revoked = match shared {
            Shared::Process => return self.clone(),
            Shared::Redis(redis) => Revoked::Redis(redis.clone()),
        };
        Self(Arc::new(Inner { revoked, ..self.copy() }))
    }

    fn copy(&self) -> Inner {
        Inner {
            encoding: self.0.encoding.clone(),
            decoding: self.0.decoding.clone(),
            validation: self.0.validation.clone(),
            lifetime: self.0.lifetime,
            secure: self.0.secure,
            revoked: self.0.revoked.clone(),
            derivation: self.0.derivation,
        }
    }

    /// Sessions with the same secret that last `lifetime`, their cookie
    /// `Secure` or not: what the service that signs users in issues (its
    /// settings say how long a session lasts); every service verifies with
    /// either, and a sign-out through either is seen by both.
    pub fn lasting(&self, lifetime: Duration, secure: bool) -> Self {
        Self(Arc::new(Inner { lifetime, secure, ..self.copy() }))
    }

    /// A signed token for the user, valid from now for the session lifetime.
    pub fn issue(&self, id: Uuid, email: &str) -> Result<(String, Claims), ApiError> {
        let iat = time::OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(self.0.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims { id, email: email.to_owned(), iat, exp: iat.saturating_add(lifetime) };
        Ok((self.sign(&claims)?, claims))
    }

    /// Signs the given claims as they are, with a new token id (tests use
    /// it for expired sessions).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let token = Token { claims: claims.clone(), jti: Uuid::new_v4() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &token, &self.0.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The claims of a token signed with our key, not expired and not
    /// signed out. 503 when where sign-outs are kept does not answer: a
    /// token that may have been signed out is not believed.
    pub async fn verify(&self, token: &str) -> Result<Option<Claims>, ApiError> {
        let Some(token) = self.decode(token) else { return Ok(None) };
        match self.0.revoked.is_revoked(token.jti).await {
            Ok(false) => Ok(Some(token.claims)),
            Ok(true) => Ok(None),
            Err(error) => {
                shared::failed("session", &error, "sessions refused (503)");
                Err(ApiError::Unavailable(error.into()))
            }
        }
    }

    /// A token signed with our key and not expired, signed out or not.
    fn decode(&self, token: &str) -> Option<Token> {
        let token =
            jsonwebtoken::decode::<Token>(token, &self.0.decoding, &self.0.validation).ok()?.claims;
        // Issued in the future: forged, or signed with a clock that is off.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        (token.claims.iat <= now.saturating_add(ISSUED_AT_LEEWAY_SECONDS)).then_some(token)
    }

    /// Ends the request's session, if it has a valid one, for every service:
    /// its token is refused from now until it expires.
    pub async fn revoke(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = token_from_headers(headers).and_then(|t| self.decode(&t)) else {
            return Ok(());
        };
        self.0.revoked.revoke(token.jti, token.claims.exp).await.map_err(|error| {
            shared::failed("session", &error, "sign-out refused (503)");
            ApiError::Unavailable(error.into())
        })
    }

    /// `Set-Cookie` value that starts a session.
    pub fn cookie(&self, token: &str) -> HeaderValue {
        self.cookie_value(token, self.0.lifetime.as_secs())
    }

    /// `Set-Cookie` value that ends the session.
    pub fn expired_cookie(&self) -> HeaderValue {
        self.cookie_value("", 0)
    }

    fn cookie_value(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.0.secure { "; Secure" } else { "" };
        let value = format!(
            "{COOKIE_NAME}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("session="))
    }

    /// The claims of the request's session, if it has a valid one. A bearer
    /// token takes precedence over the cookie.
    pub async fn from_headers(&self, headers: &HeaderMap) -> Result<Option<Claims>, ApiError> {
        match token_from_headers(headers) {
            Some(token) => self.verify(&token).await,
            None => Ok(None),
        }
    }
}

fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = auth.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned());
    }
    cookie_token(headers).map(str::to_owned)
}

/// The value of the request's session cookie, if it has a non-empty one
/// (the web client forwards it to the API as the visitor's session).
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value)
}

/// Lets the session extractors find the [`Sessions`] in a router state that
/// has a `sessions` field: `common::sessions_in_state!(TicketsState);`.
#[macro_export]
macro_rules! sessions_in_state {
    ($state:ty) => {
        impl ::axum::extract::FromRef<$state> for $crate::session::Sessions {
            fn from_ref(state: &$state) -> Self {
                state.sessions.clone()
            }
        }
    };
}

/// The signed-in user; rejects the request with 401 `Not authorized` when
/// there is no valid session.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Claims);

/// The signed-in user, if any.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<Claims>);

impl<S> FromRequestParts<S> for CurrentUser
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Sessions::from_ref(state)
            .from_headers(&parts.headers)
            .await?
            .map(Self)
            .ok_or(ApiError::Unauthorized)
    }
}

impl<S> OptionalFromRequestParts<S> for CurrentUser
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let claims = Sessions::from_ref(state).from_headers(&parts.headers).await;
        Ok(claims.ok().flatten().map(Self))
    }
}

impl<S> FromRequestParts<S> for MaybeUser
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    /// When sign-outs cannot be checked, the visitor is taken as signed out.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Sessions::from_ref(state).from_headers(&parts.headers).await.ok().flatten()))
    }
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(lifetime: u64) -> Sessions {
        Sessions::new(&Secret::new("test-secret-test-secret"), Duration::from_secs(lifetime), false)
    }

    #[test]
    fn derived_keys_differ_by_label_and_secret_and_outlive_copies() {
        let ours = sessions(60);
        let key = ours.derived_key("unsubscribe");
        assert_eq!(key, ours.lasting(Duration::from_secs(5), true).derived_key("unsubscribe"));
        assert_ne!(key, ours.derived_key("another purpose"));
        let other =
            Sessions::new(&Secret::new("another-secret-xx"), Duration::from_secs(60), false);
        assert_ne!(key, other.derived_key("unsubscribe"));
        assert_ne!(&key[..], b"test-secret-test-secret".as_slice());
    }

    fn with_header(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[tokio::test]
    async fn an_issued_token_verifies_to_its_claims() {
        let s = sessions(60);
        let id = Uuid::now_v7();
        let (token, claims) = s.issue(id, "a@b.co").expect("issue");
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!(s.verify(&token).await.expect("checked"), Some(claims));
    }

    #[tokio::test]
    async fn a_token_signed_with_another_key_is_refused() {
        let other = Sessions::new(&Secret::new("another-secret"), Duration::from_secs(60), false);
        let (token, _) = other.issue(Uuid::now_v7(), "a@b.co").expect("issue");
        assert_eq!(sessions(60).verify(&token).await.expect("checked"), None);
        assert_eq!(sessions(60).verify("not.a.jwt").await.expect("checked"), None);
    }

    #[tokio::test]
    async fn a_token_issued_in_the_future_is_refused() {
        let s = sessions(60);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let id = Uuid::now_v7();
        let future = Claims { id, email: "a@b.co".into(), iat: now + 3600, exp: now + 7200 };
        assert_eq!(s.verify(&s.sign(&future).expect("sign")).await.expect("checked"), None);
        let skewed = Claims { id, email: "a@b.co".into(), iat: now + 10, exp: now + 60 };
        let skewed = s.verify(&s.sign(&skewed).expect("sign")).await.expect("checked");
        assert!(skewed.is_some(), "small clock skew is fine");
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let s = sessions(60);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims =
            Claims { id: Uuid::now_v7(), email: "a@b.co".into(), iat: now - 20, exp: now - 1 };
        let token = s.sign(&claims).expect("sign");
        assert_eq!(s.verify(&token).await.expect("checked"), None);
    }

    #[tokio::test]
    async fn cookie_and_bearer_are_both_read() {
        let s = sessions(60);
        let (token, claims) = s.issue(Uuid::now_v7(), "a@b.co").expect("issue");
        let cookie = with_header(COOKIE, &format!("other=1; session={token}; x=y"));
        assert_eq!(s.from_headers(&cookie).await.expect("checked"), Some(claims.clone()));
        let bearer = with_header(AUTHORIZATION, &format!("Bearer {token}"));
        assert_eq!(s.from_headers(&bearer).await.expect("checked"), Some(claims));
        let basic = with_header(AUTHORIZATION, "Basic dXNlcjpwdw==");
        assert_eq!(s.from_headers(&basic).await.expect("checked"), None);
    }

    #[test]
    fn cookies_carry_the_contract_attributes() {
        let s = sessions(86_400);
        assert_eq!(
            s.cookie("abc").to_str().expect("ascii"),
            "session=abc; HttpOnly; SameSite=Lax; Path=/; Max-Age=86400"
        );
        assert_eq!(
            s.expired_cookie().to_str().expect("ascii"),
            "session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"
        );
        let secure = Sessions::new(&Secret::new("k"), Duration::from_secs(5), true);
        assert!(secure.cookie("abc").to_str().expect("ascii").ends_with("; Secure"));
    }

    #[tokio::test]
    async fn a_signed_out_token_is_refused_by_every_service_of_the_process() {
        let verifier = sessions(60);
        let issuer = verifier.lasting(Duration::from_secs(600), true);
        let (token, claims) = issuer.issue(Uuid::now_v7(), "a@b.co").expect("issue");
        let (other, _) = issuer.issue(claims.id, "a@b.co").expect("issue");
        issuer
            .revoke(&with_header(AUTHORIZATION, &format!("Bearer {token}")))
            .await
            .expect("revoked");
        assert_eq!(verifier.verify(&token).await.expect("checked"), None);
        assert_eq!(issuer.verify(&token).await.expect("checked"), None);
        assert!(verifier.verify(&other).await.expect("checked").is_some(), "other sessions go on");
        issuer.revoke(&HeaderMap::new()).await.expect("no session, nothing to revoke");
    }

    #[tokio::test]
    async fn revocations_keep_only_live_tokens() {
        let s = sessions(60);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let Revoked::Process(revoked) = &s.0.revoked else { unreachable!() };
        for _ in 0..PRUNE_AT {
            revoked.lock().expect("lock").insert(Uuid::new_v4(), now - 1);
        }
        s.0.revoked.revoke(Uuid::new_v4(), now + 60).await.expect("revoked");
        assert_eq!(revoked.lock().expect("lock").len(), 1, "the expired ones were dropped");
    }

    #[tokio::test]
    #[ignore = "needs Redis at TEST_REDIS_URL"]
    async fn a_token_signed_out_on_one_replica_is_refused_by_the_others() {
        let (one, two) = crate::limit::tests::two_replicas();
        let auth = sessions(60).revoked_in(&one);
        let orders = sessions(60).revoked_in(&two);
        let (token, claims) = auth.issue(Uuid::now_v7(), "a@b.co").expect("issue");
        assert_eq!(orders.verify(&token).await.expect("checked"), Some(claims.clone()));
        let cookie = with_header(COOKIE, &format!("session={token}"));
        auth.revoke(&cookie).await.expect("revoked");
        assert_eq!(orders.verify(&token).await.expect("checked"), None);
        assert_eq!(auth.verify(&token).await.expect("checked"), None);
        assert_eq!(
            sessions(60).verify(&token).await.expect("checked").map(|c| c.id),
            Some(claims.id),
            "a process that does not share sign-outs does not see it"
        );
    }

    #[tokio::test]
    async fn when_sign_outs_cannot_be_checked_no_token_is_believed() {
        let down = Shared::Redis(Redis::new(Secret::new("redis://127.0.0.1:1"), "x"));
        let s = sessions(60).revoked_in(&down);
        let (token, _) = s.issue(Uuid::now_v7(), "a@b.co").expect("issue");
        let refused = s.verify(&token).await.expect_err("refused");
        assert!(matches!(refused, ApiError::Unavailable(_)), "{refused:?}");
        let bearer = with_header(AUTHORIZATION, &format!("Bearer {token}"));
        assert!(matches!(s.revoke(&bearer).await, Err(ApiError::Unavailable(_))));
        assert_eq!(s.verify("not.a.jwt").await.expect("no token, nothing to check"), None);
    }
}
