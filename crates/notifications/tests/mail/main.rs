//! The notifications service's e-mails and alerts against a real SMTP server started
//! by the tests (an in-process sink), on SQLite + in-process bus and
//! PostgreSQL + JetStream.

mod alerts;
mod faults;
mod helpers;
mod more;
mod preferences;
mod purchase;
mod sink;
