//! Unsubscribe links (RFC 8058 one-click, RFC 2369 `List-Unsubscribe`):
//! a token naming a user and an optional kind of e-mail, signed with
//! HMAC-SHA256 under a key derived from the session secret (`JWT_KEY`,
//! which every service already has) with the label [`LABEL`]. It is
//! `base64url(<user id>:<kind>).base64url(MAC)`, without padding; it never
//! expires (DECISIONS.md: it can do nothing but turn one kind of mail off
//! for one user, and the link in a mail must work for as long as the mail
//! is kept).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::session::Sessions;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::domain::{MailKind, kind_info};

/// The label the key is derived under: another label, another key.
pub const LABEL: &str = "notifications: unsubscribe links";

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub user: Uuid,
    /// An optional kind's name (`sold`, `reminder`, ...).
    pub kind: &'static str,
}

/// Signs and verifies unsubscribe tokens.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey([redacted])")
    }
}

impl LinkKey {
    /// The key derived from the sessions' secret.
    pub fn new(sessions: &Sessions) -> Self {
        Self(sessions.derived_key(LABEL))
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// The token that turns mail of `kind` off for `user`.
    pub fn token(&self, user: Uuid, kind: MailKind) -> String {
        let payload = format!("{user}:{}", kind.as_str());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = mac.finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(signature))
    }

    /// What `token` names, if this key signed it (compared in constant
    /// time) and it names an optional kind.
    pub fn verify(&self, token: &str) -> Option<Unsubscribe> {
        let (payload, signature) = token.trim().split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&signature).ok()?;
        let (user, kind) = std::str::from_utf8(&payload).ok()?.split_once(':')?;
        let kind = kind_info(kind).filter(|kind| !kind.essential)?;
        Some(Unsubscribe { user: Uuid::parse_str(user).ok()?, kind: kind.name })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use common::config::Secret;

    use super::*;

    fn key(secret: &str) -> LinkKey {
        LinkKey::new(&Sessions::new(&Secret::new(secret), Duration::from_secs(60), false))
    }

    #[test]
    fn a_token_names_its_user_and_kind_and_only_its_key_verifies_it() {
        let user = Uuid::now_v7();
        let ours = key("a-secret-a-secret-a-secret-a-secret");
        let token = ours.token(user, MailKind::Sold);
        assert!(!token.contains(['=', '+', '/']), "base64url without padding: {token}");
        assert_eq!(ours.verify(&token), Some(Unsubscribe { user, kind: "sold" }));
        assert_eq!(key("another-secret-another-secret-xx").verify(&token), None);
    }

    #[test]
    fn a_tampered_or_garbled_token_is_refused() {
        let ours = key("a-secret-a-secret-a-secret-a-secret");
        let token = ours.token(Uuid::now_v7(), MailKind::Sold);
        let (payload, signature) = token.split_once('.').expect("two parts");
        let other = URL_SAFE_NO_PAD.encode(format!("{}:sold", Uuid::now_v7()));
        for bad in [
            format!("{other}.{signature}"),
            format!("{payload}.{}", &signature[1..]),
            format!("{payload}x.{signature}"),
            payload.to_owned(),
            String::new(),
            "..".into(),
            "%%%.%%%".into(),
        ] {
            assert_eq!(ours.verify(&bad), None, "{bad}");
        }
    }

    #[test]
    fn no_token_turns_an_essential_kind_off() {
        let ours = key("a-secret-a-secret-a-secret-a-secret");
        assert_eq!(ours.verify(&ours.token(Uuid::now_v7(), MailKind::Receipt)), None);
    }
}
