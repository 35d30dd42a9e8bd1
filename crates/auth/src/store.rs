//! All SQL of the auth service: users, and the `user.created` announcing
//! each in the outbox.

use common::db::{Db, DbError, OnUniqueViolation as _, now_millis, parse_uuid, query};
use messaging::events::{Envelope, UserCreated};
use messaging::outbox::{self, Outbox};
use uuid::Uuid;

use crate::domain::Email;

/// The users database and its outbox.
#[derive(Debug, Clone)]
pub struct Store {
    pub db: Db,
    pub outbox: Outbox,
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
        let outbox = Outbox::new(db.clone());
        Self { db, outbox }
    }

    /// Stores a new user and announces it (`user.created`, under the id
    /// [`UserCreated::event_id`] derives from the user's) in one
    /// transaction. The unique index on `email` decides between concurrent
    /// sign-ups with one address.
    pub async fn insert_user(
        &self,
        email: &Email,
        password_hash: String,
    ) -> Result<User, SignUpError> {
        let id = Uuid::now_v7();
        let mut tx = self.db.begin().await?;
        query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(email.as_str())
            .bind(&password_hash)
            .bind(now_millis())
            .execute(&mut tx)
            .await
            .on_unique_violation(|| SignUpError::EmailInUse)?;
        let created = UserCreated { id, email: email.as_str().to_owned() };
        outbox::add(&mut tx, &Envelope::with_id(UserCreated::event_id(id), created)).await?;
        self.outbox.commit(tx).await?;
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
