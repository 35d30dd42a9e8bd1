//! All SQL of the auth service.

use common::ApiError;
use common::db::{Db, is_unique_violation, now_millis};
use sqlx::Row as _;
use uuid::Uuid;

use crate::domain::Email;

/// The message for an email that another user already has.
pub const EMAIL_IN_USE: &str = "Email in use";

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
}

/// Stores a new user. The unique index on `email` decides between concurrent
/// sign-ups with one address: the loser gets 400 `Email in use`.
pub async fn insert_user(db: &Db, email: &Email, password_hash: String) -> Result<User, ApiError> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id.to_string())
        .bind(email.as_str())
        .bind(&password_hash)
        .bind(now_millis())
        .execute(db.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) { ApiError::bad_request(EMAIL_IN_USE) } else { e.into() }
        })?;
    Ok(User { id, email: email.as_str().to_owned(), password_hash })
}

/// The user with this (normalised) email, if any.
pub async fn find_by_email(db: &Db, email: &Email) -> Result<Option<User>, ApiError> {
    let row = sqlx::query("SELECT id, email, password_hash FROM users WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(db.pool())
        .await?;
    row.map(|row| {
        let id: String = row.try_get("id")?;
        Ok(User {
            id: Uuid::parse_str(&id).map_err(ApiError::fault)?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
        })
    })
    .transpose()
}
