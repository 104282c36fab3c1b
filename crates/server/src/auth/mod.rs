//! Accounts: passwords, bearer tokens and the login throttle.

pub mod accounts;
pub mod devices;
pub mod handoff;
pub mod password;
pub mod reset;
pub mod secret;
pub mod service_keys;
pub mod shared_throttle;
pub mod sign_in_codes;
pub mod throttle;
pub mod tokens;
pub mod verify;

pub use accounts::{normalise_email, validate_password, Account};
pub use throttle::Throttle;
