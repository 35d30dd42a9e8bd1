//! The escrow's keys (issue 24): tickets' barcodes and files are kept
//! encrypted at rest with XChaCha20-Poly1305 under `TICKET_VAULT_KEY`, and
//! barcodes are compared through a keyed hash (HMAC-SHA256), never as text.
//!
//! Two subkeys are derived from the key, one to encrypt and one to hash
//! barcodes (HMAC-SHA256 of the key over a label), so neither use leaks the
//! other's. A sealed value is `1 ‖ key id (4 bytes) ‖ nonce (24 bytes) ‖
//! ciphertext and tag`: the key id says which key opens it, so values sealed
//! under a previous key (`TICKET_VAULT_PREVIOUS_KEYS`) are still read after
//! a rotation (OPERATIONS.md, "Rotating the ticket vault key").

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use common::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The format byte of a sealed value.
const FORMAT: u8 = 1;
/// Bytes of a key id.
const KEY_ID: usize = 4;
/// Bytes of an XChaCha20 nonce.
const NONCE: usize = 24;

/// What a sealed value is, so that one cannot stand for another
/// (authenticated with it: a barcode's ciphertext does not open as a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    Barcode,
    File,
}

impl Sealed {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Barcode => b"ticketing vault: barcode",
            Self::File => b"ticketing vault: file",
        }
    }
}

/// Why a sealed value could not be opened: made under a key this process
/// does not have, or altered.
#[derive(Debug, thiserror::Error)]
#[error("a ticket vault value cannot be opened (unknown key or altered)")]
pub struct Unreadable;

/// One vault key and what is derived from it.
#[derive(Clone)]
struct VaultKey {
    id: [u8; KEY_ID],
    cipher: XChaCha20Poly1305,
    barcode_key: [u8; 32],
}

impl VaultKey {
    fn new(key: &[u8; 32]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let id = derive(b"ticketing vault: key id");
        let encryption = derive(b"ticketing vault: encryption");
        Self {
            id: [id[0], id[1], id[2], id[3]],
            cipher: XChaCha20Poly1305::new(&encryption.into()),
            barcode_key: derive(b"ticketing vault: barcode hash"),
        }
    }

    fn barcode_hash(&self, barcode: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.barcode_key).expect("any key length");
        mac.update(barcode.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The keys of the ticket vault: the current one seals, every one opens.
#[derive(Clone)]
pub struct Vault {
    current: VaultKey,
    previous: Vec<VaultKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("keys", &(1 + self.previous.len())).finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault sealing with `key` and opening with it and `previous`.
    pub fn new(key: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        Self { current: VaultKey::new(key), previous: previous.iter().map(VaultKey::new).collect() }
    }

    /// The vault of the settings' `TICKET_VAULT_KEY` and
    /// `TICKET_VAULT_PREVIOUS_KEYS` (comma-separated).
    pub fn from_settings(key: &Secret, previous: Option<&Secret>) -> anyhow::Result<Self> {
        let key =
            parse_key(key.expose()).map_err(|why| anyhow::anyhow!("TICKET_VAULT_KEY {why}"))?;
        let previous = previous
            .map(|keys| {
                keys.expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| {
                        parse_key(k).map_err(|why| {
                            anyhow::anyhow!("TICKET_VAULT_PREVIOUS_KEYS: a key {why}")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self::new(&key, &previous))
    }

    /// A vault with a new random key, for a process that keeps nothing
    /// across restarts (tests, embedded builds without a key).
    pub fn random() -> anyhow::Result<Self> {
        Ok(Self::new(&random_key()?, &[]))
    }

    /// Encrypts `plain` under the current key.
    pub fn seal(&self, what: Sealed, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
        let sealed = self
            .current
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad: what.label() })
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(1 + KEY_ID + NONCE + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value [`Vault::seal`] made, under whichever known key
    /// made it.
    pub fn open(&self, what: Sealed, sealed: &[u8]) -> Result<Vec<u8>, Unreadable> {
        if sealed.len() < 1 + KEY_ID + NONCE || sealed[0] != FORMAT {
            return Err(Unreadable);
        }
        let id = &sealed[1..=KEY_ID];
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or(Unreadable)?;
        let nonce: [u8; NONCE] =
            sealed[1 + KEY_ID..1 + KEY_ID + NONCE].try_into().map_err(|_| Unreadable)?;
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload { msg: &sealed[1 + KEY_ID + NONCE..], aad: what.label() },
            )
            .map_err(|_| Unreadable)
    }

    /// Whether `sealed` was made under a key other than the current one
    /// (the re-encryption after a rotation rewrites it).
    pub fn is_stale(&self, sealed: &[u8]) -> bool {
        sealed.get(1..=KEY_ID) != Some(&self.current.id[..])
    }

    /// The keyed hash a barcode is compared by, under the current key.
    pub fn barcode_hash(&self, barcode: &str) -> String {
        self.current.barcode_hash(barcode)
    }

    /// The barcode's hash under each previous key: during a rotation, rows
    /// not yet re-encrypted still carry one of these.
    pub fn previous_barcode_hashes(&self, barcode: &str) -> Vec<String> {
        self.previous.iter().map(|key| key.barcode_hash(barcode)).collect()
    }
}

/// 32 random bytes, hex-encoded: a new `TICKET_VAULT_KEY`.
pub fn new_key_text() -> anyhow::Result<String> {
    Ok(random_key()?.iter().map(|b| format!("{b:02x}")).collect())
}

fn random_key() -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(key)
}

/// A key as the setting gives it: 32 bytes as 64 hex digits or base64.
pub fn parse_key(text: &str) -> Result<[u8; 32], &'static str> {
    const WHY: &str = "must be 32 bytes, hex (64 digits) or base64 (e.g. `openssl rand -hex 32`)";
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| WHY)?
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines.iter().find_map(|engine| engine.decode(text).ok()).ok_or(WHY)?
    };
    bytes.try_into().map_err(|_| WHY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const OLD: [u8; 32] = [9; 32];

    #[test]
    fn a_sealed_value_opens_only_as_what_it_is_and_hides_its_text() {
        let vault = Vault::new(&KEY, &[]);
        let sealed = vault.seal(Sealed::Barcode, b"ABC-123-XYZ").expect("sealed");
        assert!(!sealed.windows(11).any(|w| w == b"ABC-123-XYZ"));
        assert_eq!(vault.open(Sealed::Barcode, &sealed).expect("opens"), b"ABC-123-XYZ");
        assert!(vault.open(Sealed::File, &sealed).is_err(), "a barcode is not a file");
        let again = vault.seal(Sealed::Barcode, b"ABC-123-XYZ").expect("sealed");
        assert_ne!(sealed, again, "a new nonce every time");
        let mut altered = sealed;
        *altered.last_mut().expect("bytes") ^= 1;
        assert!(vault.open(Sealed::Barcode, &altered).is_err());
    }

    #[test]
    fn values_sealed_under_a_previous_key_open_after_a_rotation_and_no_other_key_opens_them() {
        let old = Vault::new(&OLD, &[]);
        let sealed = old.seal(Sealed::File, b"%PDF-1.7").expect("sealed");
        let rotated = Vault::new(&KEY, &[OLD]);
        assert_eq!(rotated.open(Sealed::File, &sealed).expect("opens"), b"%PDF-1.7");
        assert!(rotated.is_stale(&sealed));
        assert!(!rotated.is_stale(&rotated.seal(Sealed::File, b"x").expect("sealed")));
        assert!(Vault::new(&KEY, &[]).open(Sealed::File, &sealed).is_err());
        assert_eq!(rotated.previous_barcode_hashes("A1B2"), [old.barcode_hash("A1B2")]);
    }

    #[test]
    fn the_barcode_hash_is_keyed() {
        let hash = Vault::new(&KEY, &[]).barcode_hash("A1B2");
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, Vault::new(&OLD, &[]).barcode_hash("A1B2"));
    }

    #[test]
    fn keys_are_read_as_hex_or_base64_of_32_bytes() {
        let hex = "07".repeat(32);
        assert_eq!(parse_key(&hex), Ok(KEY));
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        assert_eq!(parse_key(&b64), Ok(KEY));
        assert!(parse_key("short").is_err());
        assert!(parse_key(&"07".repeat(31)).is_err());
        let vault = Vault::from_settings(&Secret::new(hex), Some(&Secret::new(b64)));
        assert!(format!("{:?}", vault.expect("parsed")).contains("keys: 2"));
    }
}
