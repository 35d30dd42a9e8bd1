//! Request extractors that answer in the contract's error format: a JSON body
//! (415 / 413 / 400 `Invalid request body` with the offending field) and an id
//! path segment (404 when it is not a UUID).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// The largest request body any route accepts (64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON request body. Unlike `axum::Json`, every rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(inner)
                if inner.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::PayloadTooLarge
            }
            _ => ApiError::InvalidBody { field: None },
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Decodes a JSON document, naming the field at fault when the JSON is well
/// formed but a value has the wrong type.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of the contract is an object; serde would also accept an
    // array for a struct, field by field.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidBody { field: None });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let names_a_field =
            matches!(error.path().iter().next(), Some(serde_path_to_error::Segment::Map { .. }));
        let field = (error.inner().is_data() && names_a_field).then(|| error.path().to_string());
        ApiError::InvalidBody { field }
    })?;
    deserializer.end().map_err(|_| ApiError::InvalidBody { field: None })?;
    Ok(value)
}

/// Whether the request declares a JSON body (`application/json` or any
/// `...+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > "+json".len()
            && essence.to_ascii_lowercase().starts_with("application/")
            && essence.to_ascii_lowercase().ends_with("+json"))
}

/// The `{id}` path segment of a route, as a UUID. Anything that is not a UUID
/// cannot name a resource, so it is a 404 rather than a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        Uuid::parse_str(&raw).map(Id).map_err(|_| ApiError::NotFound)
    }
}

/// An id submitted in a body field: trimmed and parsed, or `message` when
/// it is missing or not a UUID (for [`crate::validate::Validator::check`]).
pub fn parse_id(raw: Option<&str>, message: &'static str) -> Result<Uuid, &'static str> {
    raw.map(str::trim).and_then(|id| Uuid::parse_str(id).ok()).ok_or(message)
}

/// Every spelling of a UUID that `Uuid::parse_str` reads: hyphenated,
/// 32 digits, braced, or a URN; digits in either case.
macro_rules! uuid_spellings {
    () => {
        concat!(
            "[0-9A-Fa-f]{32}",
            "|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
            r"|\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}",
            "|[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:",
            "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
        )
    };
}

/// The ids [`parse_id`] accepts, as a pattern for the OpenAPI description.
pub const ID_PATTERN: &str = concat!(
    "^[",
    crate::trimmed_space!(),
    "]*(?:",
    uuid_spellings!(),
    ")[",
    crate::trimmed_space!(),
    "]*$"
);

/// A UUID exactly as `Uuid::parse_str` reads it, or nothing (an optional
/// query parameter such as a cursor).
pub const UUID_OR_EMPTY_PATTERN: &str = concat!("^(?:", uuid_spellings!(), ")?$");

/// The schema of a body field that [`parse_id`] reads.
pub fn id_schema() -> utoipa::openapi::Object {
    crate::validate::pattern_schema(
        ID_PATTERN,
        "A UUID (usually hyphenated; also 32 digits, braced or a URN), white space around ignored",
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        email: Option<String>,
        count: Option<u32>,
    }

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).expect("header"));
        headers
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("application/json; charset=utf-8")));
        assert!(is_json(&headers("Application/JSON")));
        assert!(is_json(&headers("application/merge-patch+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&headers("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn a_wrongly_typed_field_is_named() {
        let error = parse_json::<Body>(br#"{"email": 5}"#).expect_err("wrong type");
        assert!(matches!(error, ApiError::InvalidBody { field: Some(f) } if f == "email"));
    }

    #[test]
    fn malformed_json_names_no_field() {
        let error = parse_json::<Body>(br#"{"email": "#).expect_err("malformed");
        assert!(matches!(error, ApiError::InvalidBody { field: None }));
        let error = parse_json::<Body>(br#"[1, 2]"#).expect_err("not an object");
        assert!(matches!(error, ApiError::InvalidBody { field: None }));
        let error = parse_json::<Body>(br#"{} trailing"#).expect_err("trailing garbage");
        assert!(matches!(error, ApiError::InvalidBody { field: None }));
    }

    fn id_pattern() -> regex::Regex {
        regex::Regex::new(ID_PATTERN).expect("ID_PATTERN is a regex")
    }

    /// Strings near the shape of an id: hex digits, hyphens, braces, URN
    /// prefixes, white space.
    const ID_LIKE: &str = "[ \t]?(urn:uuid:|URN:UUID:|\\{)?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-Fg]{11,13}\\}?[ \n]?";

    proptest::proptest! {
        #[test]
        fn any_string_is_an_id_exactly_when_the_pattern_says_so(
            text in proptest::prop_oneof![proptest::string::string_regex(ID_LIKE).expect("strategy"), "(?s).{0,50}"]
        ) {
            let parsed = parse_id(Some(&text), "Id must be provided");
            proptest::prop_assert_eq!(id_pattern().is_match(&text), parsed.is_ok(), "{:?}", text);
            if let Err(message) = parsed {
                proptest::prop_assert_eq!(message, "Id must be provided");
            }
            let bare = regex::Regex::new(UUID_OR_EMPTY_PATTERN).expect("regex");
            proptest::prop_assert_eq!(
                bare.is_match(&text),
                text.is_empty() || Uuid::parse_str(&text).is_ok(),
                "{:?}", text
            );
        }

        #[test]
        fn every_id_round_trips_in_every_spelling(bits in proptest::num::u128::ANY) {
            let id = Uuid::from_u128(bits);
            let spellings = [
                id.hyphenated().to_string(),
                id.simple().to_string(),
                id.braced().to_string(),
                id.urn().to_string().to_uppercase(),
                format!(" {} ", id.hyphenated().to_string().to_uppercase()),
            ];
            for text in spellings {
                proptest::prop_assert!(id_pattern().is_match(&text), "{}", text);
                proptest::prop_assert_eq!(parse_id(Some(&text), "no"), Ok(id));
            }
        }
    }

    #[test]
    fn well_formed_json_is_decoded() {
        let body = parse_json::<Body>(br#"{"email": "a@b.co", "count": 3}"#).expect("valid");
        assert_eq!(body.email.as_deref(), Some("a@b.co"));
        assert_eq!(body.count, Some(3));
    }
}
