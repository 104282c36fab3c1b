//! The event parser must never panic, whatever a (signed) body contains.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mascot_server::billing::events;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = events::parse_event(data) {
        let _ = events::decode_object(&event);
    }
});
