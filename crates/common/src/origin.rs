//! Where a request comes from, for cross-site request forgery checks: the
//! origin its `Origin` header (or, without one, its `Referer`) names,
//! compared in full (scheme, host and port) with the site the request was
//! sent to.

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN, REFERER};

/// The header a TLS-terminating proxy sets to the scheme the browser used.
const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Whether the request's `Origin` (or `Referer`) names this site: the
/// request's own scheme (`X-Forwarded-Proto` when a proxy set it, `http`
/// otherwise), host and port. `None` when it names no source at all (no
/// `Origin`, no `Referer`: a client that is not a browser, or a browser
/// told to send neither).
pub fn same_origin(headers: &HeaderMap) -> Option<bool> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let source = text(ORIGIN).or_else(|| text(REFERER))?;
    let Some(host) = text(HOST) else { return Some(false) };
    let scheme = headers
        .get(FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map_or("http", str::trim);
    let Some((source_scheme, rest)) = source.split_once("://") else { return Some(false) };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Some(source_scheme.eq_ignore_ascii_case(scheme) && authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    #[test]
    fn the_source_must_be_this_very_site() {
        let host = ("host", "localhost:3000");
        assert_eq!(same_origin(&headers(&[host, ("origin", "http://localhost:3000")])), Some(true));
        assert_eq!(
            same_origin(&headers(&[
                ("host", "shop.example"),
                ("x-forwarded-proto", "https"),
                ("referer", "https://shop.example/tickets/new"),
            ])),
            Some(true)
        );
        for foreign in [
            "https://evil.example",
            "http://localhost:3001",
            "https://localhost:3000",
            "http://localhost:3000.evil.example",
            "null",
            "localhost:3000",
        ] {
            assert_eq!(
                same_origin(&headers(&[host, ("origin", foreign)])),
                Some(false),
                "{foreign}"
            );
        }
        assert_eq!(
            same_origin(&headers(&[("origin", "http://shop.example")])),
            Some(false),
            "no Host: nothing to compare with"
        );
        assert_eq!(same_origin(&headers(&[host])), None);
    }
}
