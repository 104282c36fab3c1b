//! Random secrets, from one place: every token, key, session id and link this server hands out
//! is 256 bits from the OS's generator, URL-safe base64 after a prefix that names its kind (so a
//! leaked one is recognisable, and `scripts/scan-logs` finds it). Only its SHA-256 is stored.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `prefix` followed by 43 URL-safe base64 characters (32 random bytes).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// 32 random bytes as URL-safe base64, without a prefix (CSRF tokens).
pub fn random_token() -> String {
    new_secret("")
}

/// A password an operator reads out or pastes: 20 letters and digits (about 119 bits).
pub fn readable_password() -> String {
    use rand::{distributions::Alphanumeric, Rng};
    rand::rngs::OsRng.sample_iter(&Alphanumeric).take(20).map(char::from).collect()
}

/// The stored form of a secret: its SHA-256, hex.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `text` has the shape of a secret of ours with this prefix (a cheap refusal before any
/// database lookup).
pub fn looks_like(text: &str, prefix: &str) -> bool {
    text.len() == prefix.len() + 43
        && text.starts_with(prefix)
        && text[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_their_prefix_and_256_bits() {
        let a = new_secret("mck_");
        assert!(looks_like(&a, "mck_"), "{a}");
        assert_ne!(a, new_secret("mck_"));
        assert!(!looks_like(&a, "mct_"));
        assert!(!looks_like("mck_short", "mck_"));
        assert_eq!(hash("x").len(), 64);
    }
}
