//! Foundations shared by every Ticketing service. A service crate depends on
//! this crate and on no other crate of the workspace.

pub mod app;
pub mod bus;
pub mod config;
pub mod db;
pub mod dead_letters;
pub mod error;
pub mod events;
pub mod extract;
pub mod listener;
pub mod money;
pub mod outbox;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use bus::BoxFuture;
pub use error::{ApiError, ApiResult};

/// Installs the process's TLS crypto provider (ring) once; every HTTPS
/// client (Stripe, NATS over TLS, tests) needs it, and no C crypto library
/// is built for it. Later calls do nothing.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
