//! Stripe simulator (work in progress).
