//! Limits on what a request may ask of the ledger, shared by the HTTP API and the operator
//! commands so that both refuse the same things with the same words.

/// Most credits one spend, hold or grant may move: far above any real use, small enough that sums
/// can never overflow.
pub const MAX_AMOUNT: i64 = 1_000_000;
/// Longest reason (shown in the user's history), in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// A whole number of credits from 1 to [`MAX_AMOUNT`]; `Err` is the message for the caller.
pub fn credits(amount: i64) -> Result<i64, String> {
    if (1..=MAX_AMOUNT).contains(&amount) {
        Ok(amount)
    } else {
        Err(format!("amount must be a whole number of credits from 1 to {MAX_AMOUNT}."))
    }
}

/// A reason, trimmed: 1 to [`MAX_REASON_CHARS`] characters, none of them a control character
/// (PostgreSQL text cannot hold NUL, and history lines are one line).
pub fn reason(raw: &str) -> Result<&str, String> {
    let reason = raw.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!("reason must be 1 to {MAX_REASON_CHARS} characters."));
    }
    if reason.chars().any(char::is_control) {
        return Err("reason must not contain control characters.".to_string());
    }
    Ok(reason)
}

/// Longest feature label.
pub const MAX_FEATURE_CHARS: usize = 64;

/// An optional feature label (`generate`): 1 to [`MAX_FEATURE_CHARS`] of `a-z 0-9 _ . -`.
pub fn feature(raw: Option<&str>) -> Result<Option<String>, String> {
    let Some(f) = raw else { return Ok(None) };
    let ok = !f.is_empty()
        && f.len() <= MAX_FEATURE_CHARS
        && f.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(Some(f.to_string()))
    } else {
        Err(format!("feature must be 1 to {MAX_FEATURE_CHARS} of a-z, 0-9, _, . and - (e.g. generate)."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_reasons() {
        assert_eq!(credits(1), Ok(1));
        assert_eq!(credits(MAX_AMOUNT), Ok(MAX_AMOUNT));
        assert!(credits(0).is_err() && credits(-5).is_err() && credits(MAX_AMOUNT + 1).is_err());
        assert_eq!(reason("  Render 8 mascots "), Ok("Render 8 mascots"));
        assert!(reason("   ").is_err());
        assert!(reason(&"é".repeat(201)).is_err());
        assert_eq!(reason(&"é".repeat(200)).map(|r| r.chars().count()), Ok(200), "characters, not bytes");
        assert!(reason("a\u{0}b").is_err());
        assert!(reason("two\nlines").is_err());
        assert_eq!(feature(None), Ok(None));
        assert_eq!(feature(Some("generate.v2-hd_4")), Ok(Some("generate.v2-hd_4".into())));
        assert!(feature(Some("")).is_err() && feature(Some("Generate")).is_err() && feature(Some("a b")).is_err());
        assert!(feature(Some(&"a".repeat(65))).is_err() && feature(Some(&"a".repeat(64))).is_ok());
    }
}
