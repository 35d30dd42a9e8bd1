//! Password hashing with Argon2id (the crate's defaults: 19 MiB, 2 passes,
//! 1 lane, as OWASP recommends), off the async threads, on a few hashing
//! threads of its own (one per core): a burst of sign-ins queues for them
//! instead of taking 19 MiB and a blocking thread each, and the memory a
//! hash used is reused by the next one on the same thread.

use std::sync::{Mutex, OnceLock, mpsc};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Why a password could not be hashed or checked: a fault of the process,
/// never of the password (sign-up takes only passwords Argon2 accepts).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Argon2 failed, for example to get randomness for the salt.
    #[error("cannot hash the password")]
    Hash(#[source] argon2::password_hash::Error),
    /// No hashing thread runs (none could be started).
    #[error("the password hashing threads are gone")]
    NoThreads,
    /// The hashing thread running the job died before answering.
    #[error("a password hashing thread failed")]
    ThreadFailed,
}

/// Runs `work` on a hashing thread and waits for its result.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PasswordError> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        for n in 0..threads {
            let receiver = receiver.clone();
            let spawned =
                std::thread::Builder::new().name(format!("argon2-{n}")).spawn(move || {
                    loop {
                        let job = receiver
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        Mutex::new(sender)
    });
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(job)
        .map_err(|_| PasswordError::NoThreads)?;
    result.await.map_err(|_| PasswordError::ThreadFailed)
}

/// The PHC string of a new hash of `password`.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    hashing(move || hash_now(&password)).await?
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(PasswordError::Hash)
}

/// Whether `password` matches `stored`. With no stored hash (unknown email),
/// a dummy hash is checked instead, so both failures take the same time.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, PasswordError> {
    hashing(move || {
        let (hash, known) = hash_to_check(stored);
        let matches = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        known && matches
    })
    .await
}

/// The hash a sign-in verifies against, and whether it is the user's own:
/// the stored one, or for an unknown email the dummy hash.
fn hash_to_check(stored: Option<String>) -> (String, bool) {
    match stored {
        Some(hash) => (hash, true),
        None => (DUMMY_HASH.to_owned(), false),
    }
}

/// The hash checked for an unknown email: an Argon2id hash, with the
/// parameters of every new hash, of a random password nobody kept (it was
/// made with this module, and `an_unknown_email_costs_one_full_verification_like_a_known_one`
/// fails when its parameters drift from the ones new hashes get). A
/// constant rather than a hash computed at start-up: computing it cost
/// 20 ms of CPU and 19 MiB of memory held until its thread ended
/// (DECISIONS.md, "Idle memory").
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$SvzxwQcfmHta2Z7IQ8FijA$9sJOo0Qns3JcksT7ws5dJWNMA8kuGSX5VHUizFed8+c";

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

    /// `$argon2id$v=19$m=...,t=...,p=...`: the algorithm and its cost.
    fn cost(phc: &str) -> String {
        phc.split('$').take(4).collect::<Vec<_>>().join("$")
    }

    #[tokio::test]
    async fn an_unknown_email_costs_one_full_verification_like_a_known_one() {
        let real = hash("correct horse".into()).await.expect("hash");
        let (checked, known) = hash_to_check(None);
        assert!(!known, "an unknown email never signs in");
        assert_ne!(checked, real);
        assert_eq!(cost(&checked), cost(&real), "the dummy hash costs what a real one does");
        assert!(cost(&real).starts_with("$argon2id$v=19$m="), "{real}");
        // The dummy is a real hash that Argon2 verifies in full and then
        // finds different (a hash it could reject early, e.g. malformed,
        // would make unknown emails fast).
        let verified = Argon2::default().verify_password(b"any password", checked.as_str());
        assert!(
            matches!(verified, Err(argon2::password_hash::Error::PasswordInvalid)),
            "the dummy hash is well-formed and fully checked: {verified:?}"
        );
        assert_eq!(hash_to_check(Some(real.clone())), (real, true));
    }
}
