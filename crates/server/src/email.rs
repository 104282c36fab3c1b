//! The stored form of an email address: shared by accounts and by the migration step that
//! brought older rows to it (so `db` needs nothing from `auth`).

/// Characters that change how text looks without being seen: bidi controls, zero-width
/// characters, invisible operators. In an email they only serve look-alike accounts.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// The stored form of an email: Unicode NFC, lower-cased (not fully case-folded: folding turns
/// "straße" into "strasse", another mailbox).
pub fn canonical_email(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    raw.trim().nfc().collect::<String>().to_lowercase()
}
