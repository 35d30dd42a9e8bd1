//! The one shape every service has, and how services become an HTTP
//! application: a service is built from a [`Context`] into a [`Service`]
//! (router, OpenAPI description, readiness probes, listeners, outbox,
//! background work); [`app::app`] serves any set of them with the
//! operational routes, and [`service::start_background`] starts their
//! messaging. The binary and the tests compose services with exactly this.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`service`] | [`Context`], [`Service`], [`Messaging`], [`Probe`], [`service::start_background`] |
//! | [`app`] | `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`, fallbacks, layers, serving |

pub mod app;
pub mod service;

pub use service::{BackgroundTask, Context, Messaging, Probe, Service};
