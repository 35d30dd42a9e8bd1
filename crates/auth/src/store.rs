//! All SQL of the auth service.

use common::db::{Db, DbError, OnUniqueViolation as _, now_millis, parse_uuid, query};
use uuid::Uuid;

use crate::domain::Email;

/// The users database.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
}

common::store_error! {
    /// Why a user could not be stored.
    pub enum SignUpError {
        #[error("another user has this email")]
        EmailInUse,
    }
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Stores a new user. The unique index on `email` decides between
    /// concurrent sign-ups with one address.
    pub async fn insert_user(
        &self,
        email: &Email,
        password_hash: String,
    ) -> Result<User, SignUpError> {
        let id = Uuid::now_v7();
        query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(email.as_str())
            .bind(&password_hash)
            .bind(now_millis())
            .execute(self.db.writer())
            .await
            .on_unique_violation(|| SignUpError::EmailInUse)?;
        Ok(User { id, email: email.as_str().to_owned(), password_hash })
    }

    /// The user with this (normalised) email, if any.
    pub async fn find_by_email(&self, email: &Email) -> Result<Option<User>, DbError> {
        let row = query("SELECT id, email, password_hash FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(self.db.reader())
            .await?;
        let user = row.map(|row| {
            Ok::<_, DbError>(User {
                id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                email: row.try_get("email")?,
                password_hash: row.try_get("password_hash")?,
            })
        });
        user.transpose()
    }
}
