//! How services talk: the event contracts, the bus that carries them
//! (in-process or NATS JetStream, one contract), the transactional outbox
//! that publishes them, the listener runtime that consumes them, and the
//! dead letters it parks (ARCHITECTURE.md, "Delivery rules").
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`events`] | one typed payload per subject, in an [`Envelope`] |
//! | [`bus`] | the [`Bus`] trait, [`bus::memory::InProcessBus`], [`bus::jetstream::JetStreamBus`] |
//! | [`outbox`] | [`outbox::add`] inside a store's transaction, [`Outbox::commit`], the relay |
//! | [`listener`] | [`Listener`], [`Handled`], the retrying [`listener::Runtime`], the version rule |
//! | [`dead_letters`] | the `dead_letters` table: park, list, replay |
//!
//! The messaging migration ([`MIGRATION`]: outbox and dead letters) is
//! version 1 of every event-driven service's database.

pub mod bus;
pub mod dead_letters;
pub mod events;
pub mod listener;
pub mod outbox;

pub use bus::Bus;
pub use events::{Envelope, Event};
pub use listener::{Handled, HandlerResult, Listener, VersionCheck};
pub use outbox::{MIGRATION, Outbox};
