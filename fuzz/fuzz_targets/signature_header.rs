//! The Stripe-Signature header parser and verifier must be total: any header, any body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mascot_server::billing::signature;

fuzz_target!(|data: &[u8]| {
    // First line: the header; the rest: the body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or(&[]);
    let _ = signature::parse_header(&header);
    let secrets = [secrecy::SecretString::from("whsec_fuzz".to_string())];
    let _ = signature::verify(&header, body, &secrets, 1_700_000_000);
});
