//! Sessions: HS256 JWTs carried in the `session` cookie or an
//! `Authorization: Bearer` header, verified by every service itself, and the
//! extractors for the required ([`CurrentUser`]) and optional ([`MaybeUser`])
//! signed-in user.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::Secret;
use crate::error::ApiError;

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

/// Issues and verifies sessions with the shared secret.
#[derive(Clone)]
pub struct Sessions(Arc<Inner>);

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
    secure: bool,
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
        }))
    }

    /// Sessions with the same secret that last `lifetime`, their cookie
    /// `Secure` or not: what the service that signs users in issues (its
    /// settings say how long a session lasts); every service verifies with
    /// either.
    pub fn lasting(&self, lifetime: Duration, secure: bool) -> Self {
        Self(Arc::new(Inner {
            encoding: self.0.encoding.clone(),
            decoding: self.0.decoding.clone(),
            validation: self.0.validation.clone(),
            lifetime,
            secure,
        }))
    }

    /// A signed token for the user, valid from now for the session lifetime.
    pub fn issue(&self, id: Uuid, email: &str) -> Result<(String, Claims), ApiError> {
        let iat = time::OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(self.0.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims { id, email: email.to_owned(), iat, exp: iat.saturating_add(lifetime) };
        Ok((self.sign(&claims)?, claims))
    }

    /// Signs the given claims as they are (tests use it for expired sessions).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.0.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The claims of a token signed with our key and not expired.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .ok()?
            .claims;
        // Issued in the future: forged, or signed with a clock that is off.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        (claims.iat <= now.saturating_add(ISSUED_AT_LEEWAY_SECONDS)).then_some(claims)
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
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Claims> {
        token_from_headers(headers).and_then(|token| self.verify(&token))
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
        Ok(Sessions::from_ref(state).from_headers(&parts.headers).map(Self))
    }
}

impl<S> FromRequestParts<S> for MaybeUser
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Sessions::from_ref(state).from_headers(&parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(lifetime: u64) -> Sessions {
        Sessions::new(&Secret::new("test-secret-test-secret"), Duration::from_secs(lifetime), false)
    }

    fn with_header(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn an_issued_token_verifies_to_its_claims() {
        let s = sessions(60);
        let id = Uuid::now_v7();
        let (token, claims) = s.issue(id, "a@b.co").expect("issue");
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!(s.verify(&token), Some(claims));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let other = Sessions::new(&Secret::new("another-secret"), Duration::from_secs(60), false);
        let (token, _) = other.issue(Uuid::now_v7(), "a@b.co").expect("issue");
        assert_eq!(sessions(60).verify(&token), None);
        assert_eq!(sessions(60).verify("not.a.jwt"), None);
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let s = sessions(60);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let id = Uuid::now_v7();
        let future = Claims { id, email: "a@b.co".into(), iat: now + 3600, exp: now + 7200 };
        assert_eq!(s.verify(&s.sign(&future).expect("sign")), None);
        let skewed = Claims { id, email: "a@b.co".into(), iat: now + 10, exp: now + 60 };
        assert!(s.verify(&s.sign(&skewed).expect("sign")).is_some(), "small clock skew is fine");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let s = sessions(60);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims =
            Claims { id: Uuid::now_v7(), email: "a@b.co".into(), iat: now - 20, exp: now - 1 };
        let token = s.sign(&claims).expect("sign");
        assert_eq!(s.verify(&token), None);
    }

    #[test]
    fn cookie_and_bearer_are_both_read() {
        let s = sessions(60);
        let (token, claims) = s.issue(Uuid::now_v7(), "a@b.co").expect("issue");
        let cookie = with_header(COOKIE, &format!("other=1; session={token}; x=y"));
        assert_eq!(s.from_headers(&cookie), Some(claims.clone()));
        let bearer = with_header(AUTHORIZATION, &format!("Bearer {token}"));
        assert_eq!(s.from_headers(&bearer), Some(claims));
        let basic = with_header(AUTHORIZATION, "Basic dXNlcjpwdw==");
        assert_eq!(s.from_headers(&basic), None);
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
}
