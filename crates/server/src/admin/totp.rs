//! TOTP, RFC 6238 with the parameters every authenticator app reads from an `otpauth://` URI:
//! HMAC-SHA-1, 6 digits, 30-second steps. A code is accepted for the current step and one step
//! either side (clock drift); the caller refuses a step it already accepted (RFC 6238 §5.2).

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub const DRIFT_STEPS: i64 = 1;
const ISSUER: &str = "Mascot";

/// A new 160-bit secret (RFC 4226 §4 recommends 160 bits), base32 as authenticator apps take it.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base32_encode(&bytes)
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=' && *c != b' ') {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The code of time step `step` (RFC 4226 HOTP with the step as counter), as a number.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = (u32::from(digest[offset] & 0x7f) << 24)
        | (u32::from(digest[offset + 1]) << 16)
        | (u32::from(digest[offset + 2]) << 8)
        | u32::from(digest[offset + 3]);
    binary % 10u32.pow(DIGITS)
}

/// The time step of unix second `secs`.
pub fn step_of(secs: i64) -> i64 {
    secs.div_euclid(STEP_SECS)
}

/// The step within the drift window whose code is `code`, if any; `code` must be 6 digits
/// (spaces allowed, as apps show "123 456").
pub fn matching_step(secret_b32: &str, code: &str, now_secs: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let secret = base32_decode(secret_b32)?;
    let now = step_of(now_secs);
    // Newest first: when two steps match (cannot happen in practice), the later one is recorded.
    (now - DRIFT_STEPS..=now + DRIFT_STEPS).rev().filter(|s| *s >= 0).find(|s| {
        let expected = code_at(&secret, *s as u64);
        subtle::ConstantTimeEq::ct_eq(&expected.to_be_bytes()[..], &wanted.to_be_bytes()[..]).into()
    })
}

/// The code an authenticator shows now (tests and the e2e drive sign-in with it).
pub fn current_code(secret_b32: &str, now_secs: i64) -> String {
    let secret = base32_decode(secret_b32).unwrap_or_default();
    format!("{:06}", code_at(&secret, step_of(now_secs) as u64))
}

/// Percent-encodes a URI component (RFC 3986 unreserved characters pass).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key URI authenticator apps scan (Google Authenticator's "Key Uri Format"). It contains
/// the secret: print it to the operator's terminal only, never to a log.
pub fn otpauth_uri(secret_b32: &str, email: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        encode(ISSUER),
        encode(email),
        encode(ISSUER)
    )
}

/// The URI as a QR code drawn with Unicode half blocks, for a terminal.
pub fn qr_for_terminal(uri: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    // Light modules drawn dark and the other way round reads on dark terminals; a quiet zone around.
    Some(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_test_vectors() {
        // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", 8-digit codes mod 10^6.
        let secret = base32_encode(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for (t, code) in
            [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(current_code(&secret, t), code, "t = {t}");
            assert_eq!(matching_step(&secret, code, t), Some(step_of(t)));
        }
    }

    #[test]
    fn drift_window_and_malformed_codes() {
        let secret = new_secret();
        let now = 1_800_000_015;
        let before = current_code(&secret, now - 30);
        assert_eq!(matching_step(&secret, &before, now), Some(step_of(now) - 1));
        let too_old = current_code(&secret, now - 90);
        assert_ne!(matching_step(&secret, &too_old, now), Some(step_of(now) - 3));
        let c = current_code(&secret, now);
        assert_eq!(matching_step(&secret, &format!("{} {}", &c[..3], &c[3..]), now), Some(step_of(now)));
        for bad in ["", "12345", "1234567", "12345a", "１２３４５６"] {
            assert_eq!(matching_step(&secret, bad, now), None, "{bad:?}");
        }
        assert_eq!(base32_decode(&secret).unwrap().len(), 20);
    }

    #[test]
    fn key_uri_and_qr() {
        let uri = otpauth_uri("ABC", "ops+1@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Mascot:ops%2B1%40example.com?secret=ABC&issuer=Mascot&algorithm=SHA1&digits=6&period=30"
        );
        let qr = qr_for_terminal(&uri).unwrap();
        assert!(qr.lines().count() > 15 && qr.contains('▀'), "{qr}");
    }
}
