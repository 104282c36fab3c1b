//! The Mascot API client for the plugin UI.
//!
//! The client is native Rust (`client`, `json`, `error`): paths, headers, bodies, reading the
//! answers (one JSON reader, the one that ships), the checkout long-poll with its back-off and
//! time-out, and the typed errors all run in `cargo test`. The `wasm` feature adds a thin
//! wasm-bindgen layer (`wasm`): `MascotClient`, whose methods call the native client over the
//! browser's fetch and only convert at the boundary (JSON text to JS values, errors to
//! `MascotError` objects).

mod client;
mod error;
pub mod json;
#[cfg(feature = "wasm")]
mod wasm;

pub use client::{
    backoff_ms, checkout_status, encode_component, Abort, CapChange, Client, Method, Reply, Request, TeamArgs,
    Transport, DEFAULT_HANDOFF_WAIT_MS, DEFAULT_WAIT_MS, LONG_POLL_SECONDS,
};
pub use error::{ErrorKind, MascotError};
