//! The tickets service's contract (API.md "tickets") and its listeners
//! (ARCHITECTURE.md "Business rules"), on SQLite + in-process bus and, when
//! configured, PostgreSQL + JetStream.

mod create;
mod edit;
mod escrow;
mod events;
mod helpers;
mod listeners;
mod live;
mod mine;
mod price;
mod read;
mod resale_events;
mod search;
mod withdraw;
