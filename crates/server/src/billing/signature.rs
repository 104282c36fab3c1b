//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, where each `v1` is
//! HMAC-SHA256(key = the whole `whsec_…` secret, message = "<t>.<raw body>").
//!
//! Checked over the raw bytes before any parsing. Any `v1` may match any configured secret (Stripe
//! signs with both during a secret roll); `v0` and unknown schemes are ignored; the comparison is
//! constant-time; the timestamp must be within the tolerance either way (replays and clock games).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoV1,
    #[error("the signature timestamp is outside the {TOLERANCE_SECS} s tolerance")]
    StaleTimestamp,
    #[error("no signature matches any configured webhook secret")]
    NoMatch,
}

/// The parts of a `Stripe-Signature` header we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHeader {
    pub timestamp: i64,
    /// Decoded `v1` signatures (entries that are not valid hex are dropped).
    pub v1: Vec<Vec<u8>>,
}

/// Parses the header; total on any input (it is fuzzed).
pub fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else { continue };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
            }
            "v1" => {
                if let Ok(sig) = hex::decode(value) {
                    if sig.len() == 32 {
                        v1.push(sig);
                    }
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1);
    }
    Ok(ParsedHeader { timestamp, v1 })
}

/// Verifies `payload` against `header` with any of `secrets`, at time `now` (unix seconds).
pub fn verify(header: &str, payload: &[u8], secrets: &[SecretString], now: i64) -> Result<(), SignatureError> {
    let parsed = parse_header(header)?;
    if (now - parsed.timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::StaleTimestamp);
    }
    let mut matched = false;
    for secret in secrets {
        let mut mac = mac_for(secret.expose_secret(), parsed.timestamp, payload);
        for sig in &parsed.v1 {
            // verify_slice is constant-time; keep looping so timing does not depend on the position.
            let m = mac.clone();
            matched |= m.verify_slice(sig).is_ok();
        }
        mac.reset();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

fn mac_for(secret: &str, timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// A valid header for `payload`, as Stripe would send it (tests, benchmarks, the simulator).
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac_for(secret, timestamp, payload).finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_064_800;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter().map(|s| SecretString::from(s.to_string())).collect()
    }

    fn v1(secret: &str, t: i64, body: &[u8]) -> String {
        sign(secret, t, body).split_once(",v1=").unwrap().1.to_string()
    }

    #[test]
    fn accepts_a_valid_signature() {
        let header = sign("whsec_a", NOW, BODY);
        assert_eq!(verify(&header, BODY, &secrets(&["whsec_a"]), NOW), Ok(()));
        assert_eq!(verify(&header, BODY, &secrets(&["whsec_a"]), NOW + 299), Ok(()));
    }

    /// The bad-signature matrix: each row must be refused.
    #[test]
    fn refuses_every_bad_signature() {
        let good = v1("whsec_a", NOW, BODY);
        let s = secrets(&["whsec_a"]);
        let cases: Vec<(&str, String, &[u8], SignatureError)> = vec![
            ("empty header", String::new(), BODY, SignatureError::Malformed),
            ("garbled header", "garbage!!".into(), BODY, SignatureError::Malformed),
            ("no timestamp", format!("v1={good}"), BODY, SignatureError::Malformed),
            ("non-numeric timestamp", format!("t=abc,v1={good}"), BODY, SignatureError::Malformed),
            ("two timestamps", format!("t={NOW},t={NOW},v1={good}"), BODY, SignatureError::Malformed),
            ("only v0", format!("t={NOW},v0={good}"), BODY, SignatureError::NoV1),
            ("v1 not hex", format!("t={NOW},v1=zz{}", &good[2..]), BODY, SignatureError::NoV1),
            ("wrong secret", sign("whsec_other", NOW, BODY), BODY, SignatureError::NoMatch),
            (
                "tampered body",
                format!("t={NOW},v1={good}"),
                br#"{"id":"evt_1","type":"checkout.session.completed "}"#,
                SignatureError::NoMatch,
            ),
            ("stale timestamp", sign("whsec_a", NOW - 301, BODY), BODY, SignatureError::StaleTimestamp),
            ("future timestamp", sign("whsec_a", NOW + 301, BODY), BODY, SignatureError::StaleTimestamp),
            ("timestamp swapped", format!("t={},v1={good}", NOW - 1), BODY, SignatureError::NoMatch),
            ("truncated signature", format!("t={NOW},v1={}", &good[..62]), BODY, SignatureError::NoV1),
        ];
        for (name, header, body, expected) in cases {
            assert_eq!(verify(&header, body, &s, NOW), Err(expected), "{name}");
        }
    }

    #[test]
    fn any_v1_may_match_and_need_not_be_last() {
        let good = v1("whsec_a", NOW, BODY);
        let bad = v1("whsec_b", NOW, BODY);
        let header = format!("t={NOW},v1={good},v1={bad},v0={bad}");
        assert_eq!(verify(&header, BODY, &secrets(&["whsec_a"]), NOW), Ok(()));
    }

    #[test]
    fn second_rotation_secret_is_accepted() {
        let header = sign("whsec_new", NOW, BODY);
        assert_eq!(verify(&header, BODY, &secrets(&["whsec_old", "whsec_new"]), NOW), Ok(()));
        assert_eq!(verify(&header, BODY, &secrets(&["whsec_old"]), NOW), Err(SignatureError::NoMatch));
    }

    #[test]
    fn matches_stripes_reference_computation() {
        // HMAC-SHA256 computed independently (Python: hmac.new(b"whsec_test", b"1700000000.{}", sha256)).
        let header = sign("whsec_test", 1_700_000_000, b"{}");
        assert_eq!(header, "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91");
    }
}
