//! The payments service's contract (API.md "payments") and its rules
//! (ARCHITECTURE.md "Business rules": charge once, refund what must not be
//! kept), on SQLite + in-process bus and PostgreSQL + JetStream; and the
//! refunder against a processor that refuses refunds, on both databases.

mod connect;
mod disputes;
mod events;
mod expiry;
mod helpers;
mod pay;
mod payouts;
mod races;
mod reconcile;
mod refunds;
mod threeds;
mod webhook;
