//! The orders service's contract (API.md "orders") and its listeners
//! (ARCHITECTURE.md "Business rules"), on SQLite + in-process bus and, when
//! configured, PostgreSQL + JetStream.

mod cancel;
mod create;
mod events;
mod helpers;
mod listeners;
mod price;
mod read;
mod restore;
mod wait;
mod withdraw;
