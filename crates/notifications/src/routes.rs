//! The notifications service's routes (API.md, "notifications").

pub mod alerts;
pub mod preferences;
