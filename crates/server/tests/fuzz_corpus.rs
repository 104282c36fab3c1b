//! Replays the cargo-fuzz corpora (fuzz/corpus/*) through the fuzzed functions on stable Rust:
//! every input a fuzzer ever kept must still be handled without a panic.

use std::{fs, path::PathBuf};

use mascot_server::billing::{events, signature};
use secrecy::SecretString;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus for {target}");
    files
}

#[test]
fn signature_header_corpus_never_panics() {
    let secrets = [SecretString::from("whsec_fuzz".to_string())];
    for (name, data) in corpus("signature_header") {
        let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
        let header = String::from_utf8_lossy(&data[..split]);
        let body = data.get(split + 1..).unwrap_or(&[]);
        let result = std::panic::catch_unwind(|| {
            let _ = signature::parse_header(&header);
            signature::verify(&header, body, &secrets, 1_700_000_000)
        });
        assert!(result.is_ok(), "{name} panicked");
    }
}

#[test]
fn event_parser_corpus_never_panics() {
    let mut decoded = 0;
    for (name, data) in corpus("event_parser") {
        let result =
            std::panic::catch_unwind(|| events::parse_event(&data).ok().map(|e| events::decode_object(&e).is_ok()));
        assert!(result.is_ok(), "{name} panicked");
        if result.unwrap() == Some(true) {
            decoded += 1;
        }
    }
    assert!(decoded >= 3, "the well-formed seeds decode");
}
