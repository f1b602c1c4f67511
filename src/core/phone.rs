//! Phone number normalisation to E.164. Pure; used by the API and the importer.

/// Why a number was refused; the text is what clients see.
pub const INVALID_PHONE: &str = "Invalid phone number format. Must start with + and contain 8-15 digits.";

/// Separators that people and spreadsheets put in numbers; removed before validation.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')')
}

/// Normalises `raw` to E.164: separators removed, then `+` and 8 to 15 ASCII digits, the first not 0.
/// Non-ASCII digits (Arabic-Indic, full-width, …) are refused rather than silently converted.
pub fn normalize(raw: &str) -> Result<String, &'static str> {
    let trimmed = raw.trim();
    let mut out = String::with_capacity(16);
    for c in trimmed.chars().filter(|&c| !is_separator(c)) {
        out.push(c);
        if out.len() > 16 {
            return Err(INVALID_PHONE);
        }
    }
    let digits = out.strip_prefix('+').ok_or(INVALID_PHONE)?;
    let valid = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if valid { Ok(out) } else { Err(INVALID_PHONE) }
}

/// The number with its middle digits hidden, for logs at info level: `+1415*****01`.
pub fn mask(e164: &str) -> String {
    let chars: Vec<char> = e164.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let keep_head = 5.min(chars.len() - 2);
    let mut out: String = chars[..keep_head].iter().collect();
    out.push_str(&"*".repeat(chars.len() - keep_head - 2));
    out.extend(&chars[chars.len() - 2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(normalize(input).ok().as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn table() {
        check("+14155550101", Some("+14155550101"));
        check(" +1 (415) 555-0101 ", Some("+14155550101"));
        check("+44.20.7946.0958", Some("+442079460958"));
        check("+12345678", Some("+12345678")); // 8 digits: shortest allowed
        check("+123456789012345", Some("+123456789012345")); // 15 digits: longest allowed
        check("+1234567", None); // 7 digits
        check("+1234567890123456", None); // 16 digits
        check("14155550101", None); // no plus
        check("+04155550101", None); // leading zero
        check("+1415555010a", None);
        check("++14155550101", None);
        check("+1 415 555 0101 ext 2", None);
        check("", None);
        check("+", None);
        check("+١٤١٥٥٥٥٠١٠١", None); // Arabic-Indic digits
        check("+１４１５５５５０１０１", None); // full-width digits
        check("+1415\u{00A0}5550101", None); // no-break space is not a separator
        check("+1-4-1-5-5-5-5-0-1-0-1", Some("+14155550101"));
    }

    #[test]
    fn masks_the_middle() {
        assert_eq!(mask("+14155550101"), "+1415*****01");
        assert_eq!(mask("+12345678"), "+1234**78");
    }

    proptest! {
        #[test]
        fn normalised_numbers_are_fixed_points(digits in "[1-9][0-9]{7,14}", seps in proptest::collection::vec(prop_oneof![Just(" "), Just("-"), Just("."), Just("("), Just(")")], 0..6)) {
            let mut raw = format!("+{digits}");
            for (i, sep) in seps.iter().enumerate() {
                let at = 1 + (i * 3) % digits.len();
                raw.insert_str(at, sep);
            }
            let normalised = normalize(&raw).unwrap();
            prop_assert_eq!(&normalised, &format!("+{digits}"));
            prop_assert_eq!(normalize(&normalised).unwrap(), normalised);
        }

        #[test]
        fn never_panics_and_accepts_only_e164(raw in "\\PC{0,24}") {
            if let Ok(n) = normalize(&raw) {
                prop_assert!(n.starts_with('+'));
                prop_assert!((9..=16).contains(&n.len()));
                prop_assert!(n[1..].bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
