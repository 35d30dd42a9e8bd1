//! The foundation every Ticketing crate stands on: what a service needs to
//! answer HTTP and to keep its own data, and nothing about events or about
//! how services are composed (those are `messaging` and `platform`).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`error`] | [`ApiError`], the contract's error body, the one place statuses are chosen |
//! | [`extract`] | the JSON body and path-id extractors that answer in the contract's format |
//! | [`session`] | HS256 sessions (cookie or bearer) and the signed-in-user extractors |
//! | [`client`] | the client's address, through trusted proxies |
//! | [`limit`] | per-key rate limits (429 with `Retry-After`), per process or shared in Redis |
//! | [`shared`] | where state every replica agrees on lives: Redis when `REDIS_URL` is set, else this process |
//! | [`origin`] | whether a request comes from this very site (forgery checks) |
//! | [`search`] | the listing's search words and filters, shared by the listing and saved alerts |
//! | [`validate`] | per-field validation that reports every invalid field at once |
//! | [`db`] | per-service databases, migrations, [`db::DbError`] and the shared SQL helpers |
//! | [`money`], [`time`] | integer cents; millisecond timestamps and the clock tests move |
//! | [`status`] | the order statuses of the contract, shared by the API, the events and the web client |
//! | [`config`] | every variable of the deployment, typed, secrets redacted |
//! | [`telemetry`] | logs, request spans, request ids, Prometheus metrics |

pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod limit;
pub mod money;
pub mod origin;
pub mod search;
pub mod session;
pub mod shared;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod validate;

use std::future::Future;
use std::pin::Pin;

pub use db::{Db, DbError};
pub use error::{ApiError, ApiResult};

/// A boxed, sendable future, for async methods of traits used as objects
/// (the bus, the clock, the timer store, the payment processor).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Installs the process's TLS crypto provider (ring) once; every HTTPS
/// client (Stripe, NATS over TLS, tests) needs it, and no C crypto library
/// is built for it. Later calls do nothing.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
