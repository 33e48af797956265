//! Object names as people type them and as Rampart compares them.
//!
//! Tenants, users, groups, policies, devices and tags are named by people and
//! shown to people, so two names that look the same must be the same name:
//! a name is normalized to Unicode NFC and trimmed, characters that render as
//! nothing or reorder text (zero-width, bidi controls, soft hyphen, byte-order
//! mark) and control characters are refused, and uniqueness is decided on
//! [`name_key`], which ignores case.

use unicode_normalization::UnicodeNormalization;

/// Longest object name, in characters, unless a caller asks for less.
pub const MAX_OBJECT_NAME_CHARS: usize = 128;

/// Characters that change how text renders without showing themselves:
/// format characters (Unicode category Cf) that spoofing relies on.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' // soft hyphen
        | '\u{034F}' // combining grapheme joiner
        | '\u{061C}' // Arabic letter mark
        | '\u{115F}' | '\u{1160}' // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' // Mongolian variation selectors and vowel separator
        | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
        | '\u{3164}' // Hangul filler
        | '\u{FE00}'..='\u{FE0F}' // variation selectors
        | '\u{FEFF}' // byte-order mark / zero-width no-break space
        | '\u{FFA0}' // halfwidth Hangul filler
        | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        | '\u{1D173}'..='\u{1D17A}' // musical formatting
        | '\u{E0000}'..='\u{E007F}' // tags
    )
}

/// The canonical form of a name typed by a person: NFC, trimmed, with no
/// control or invisible characters, 1 to `max_chars` characters. The error
/// says what is wrong in words a field error can carry.
pub fn normalize_name(raw: &str, max_chars: usize) -> Result<String, String> {
    let name: String = raw.nfc().collect::<String>().trim().to_string();
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
        return Err(format!(
            "must not contain invisible or text-direction characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    let count = name.chars().count();
    if count > max_chars {
        return Err(format!(
            "is {count} characters long; at most {max_chars} are allowed"
        ));
    }
    Ok(name)
}

/// What two names are compared by: names whose keys are equal are the same
/// name (`Web-01` and `web-01`), so only one of them can exist in a tenant.
pub fn name_key(name: &str) -> String {
    name.nfc().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_composes() {
        // "é" as e + combining acute becomes the single code point.
        assert_eq!(
            normalize_name("  cafe\u{0301} ", 64).as_deref(),
            Ok("caf\u{00E9}")
        );
    }

    #[test]
    fn refuses_what_cannot_be_seen() {
        for bad in [
            "web\u{200B}01",
            "\u{202E}10-bew",
            "web\u{FEFF}",
            "a\u{2066}b",
            "soft\u{00AD}hyphen",
        ] {
            let e = normalize_name(bad, 64).expect_err(bad);
            assert!(e.contains("invisible"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn refuses_control_empty_and_long() {
        assert!(normalize_name("a\tb", 64).is_err());
        assert!(normalize_name("   ", 64).is_err());
        assert!(normalize_name("", 64).is_err());
        assert!(normalize_name(&"x".repeat(65), 64).is_err());
        assert!(normalize_name(&"x".repeat(64), 64).is_ok());
    }

    #[test]
    fn keys_ignore_case_and_composition() {
        assert_eq!(name_key("DUP1"), name_key("dup1"));
        assert_eq!(name_key("Cafe\u{0301}"), name_key("caf\u{00C9}"));
        assert_ne!(name_key("web-01"), name_key("web-02"));
    }
}
