//! Password hashing with Argon2id (the crate's defaults: 19 MiB, 2 passes,
//! 1 lane, as OWASP recommends), run off the async threads.

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use common::ApiError;

/// The PHC string of a new hash of `password`.
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(ApiError::fault)?
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(ApiError::fault)
}

/// Whether `password` matches `stored`. With no stored hash (unknown email),
/// a dummy hash is checked instead, so both failures take the same time.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let (hash, known) = match stored {
            Some(hash) => (hash, true),
            None => (dummy_hash()?.to_owned(), false),
        };
        let matches = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(ApiError::fault)?
}

fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_now("a password nobody has")?;
    Ok(DUMMY.get_or_init(|| hash))
}

/// Computes the dummy hash ahead of the first sign-in (called at start-up).
pub fn warm_up() {
    tokio::task::spawn_blocking(|| {
        let _ = dummy_hash();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let hash = hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(hash.clone())).await.expect("verify"));
        assert!(!verify("wrong horse".into(), Some(hash)).await.expect("verify"));
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!verify("a password nobody has".into(), None).await.expect("verify"));
    }
}
