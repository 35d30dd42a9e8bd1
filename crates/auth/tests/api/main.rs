//! The auth service's HTTP contract (API.md, "auth" and "Sessions"), on
//! SQLite and, when `TEST_DATABASE_URL` is set, on PostgreSQL.

mod events;
mod helpers;
mod limits;
mod sessions;
mod signin;
mod signup;
