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

/// `text` (a provider's error body, a transport error) with everything that looks like a phone
/// number masked like [`mask`]: a run of 7 to 15 digits, optionally after `+`, with single
/// spaces, dashes or parentheses between groups (and dots after a `+`), that is not part of a
/// word (so ids such as `CA5088b159…` and UUIDs stay readable). Longer runs (UUIDs, timestamps in
/// milliseconds) are left alone.
pub fn mask_numbers_in(text: &str) -> String {
    const DIGITS_MIN: usize = 7;
    const DIGITS_MAX: usize = 15;
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let word_before = i > 0 && chars[i - 1].is_alphanumeric();
        let plus = chars[i] == '+' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit() || *c == '(');
        let starts = !word_before && (plus || chars[i].is_ascii_digit() || (chars[i] == '(' && chars.get(i + 1).is_some_and(char::is_ascii_digit)));
        if !starts {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // Extend over digits and separators (at most two separators in a row, each followed by more).
        let mut end = i + usize::from(plus);
        let mut digits = 0usize;
        let mut last_digit_end = end;
        let mut separators = 0;
        while end < chars.len() {
            let c = chars[end];
            if c.is_ascii_digit() {
                digits += 1;
                separators = 0;
                end += 1;
                last_digit_end = end;
            } else if (matches!(c, ' ' | '-' | '(' | ')') || (plus && c == '.')) && separators < 2 {
                separators += 1;
                end += 1;
            } else {
                break;
            }
        }
        let word_after = chars.get(last_digit_end).is_some_and(|c| c.is_alphanumeric());
        if (DIGITS_MIN..=DIGITS_MAX).contains(&digits) && !word_after {
            let run: String = chars[i..last_digit_end].iter().filter(|c| c.is_ascii_digit()).collect();
            // Masked as if written with `+`, so that at most four digits show in front either way.
            let masked = mask(&format!("+{run}"));
            out.push_str(if plus { &masked } else { &masked[1..] });
            i = last_digit_end;
        } else {
            // Not a number: copy the run's first character and look again from the next one, so
            // that a long digit run is skipped whole rather than masked in part.
            let skip_to = if digits > DIGITS_MAX || word_after { last_digit_end.max(i + 1) } else { i + 1 };
            out.extend(&chars[i..skip_to]);
            i = skip_to;
        }
    }
    out
}

#[cfg(test)]
mod mask_numbers_in_tests {
    use super::mask_numbers_in;

    #[test]
    fn masks_numbers_in_provider_text_and_leaves_ids_alone() {
        let cases = [
            ("The 'To' number 5551234567 is not a valid phone number.", "The 'To' number 5551****67 is not a valid phone number."),
            (r#"{"to": "+14155550101", "error": "barred"}"#, r#"{"to": "+1415*****01", "error": "barred"}"#),
            ("call +1 (415) 555-0101 refused", "call +1415*****01 refused"),
            ("+44.20.7946.0958 failed", "+4420******58 failed"),
            ("Twilio error 21211: bad", "Twilio error 21211: bad"),
            ("HTTP 503: maintenance", "HTTP 503: maintenance"),
            ("call 0190a5c4-0000-7000-8000-000000000001 attempt 2", "call 0190a5c4-0000-7000-8000-000000000001 attempt 2"),
            ("sid CAe1644a7eed5088b159577c5802d8be38", "sid CAe1644a7eed5088b159577c5802d8be38"),
            ("id 17800000000000000 is long", "id 17800000000000000 is long"),
            ("io: Connection refused (os error 111)", "io: Connection refused (os error 111)"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(mask_numbers_in(input), expected, "{input}");
        }
    }

    #[test]
    fn no_unmasked_number_survives() {
        let text = "numbers: 14155550101, +442079460958 and (415) 555 0101; more 5551234567x";
        let masked = mask_numbers_in(text);
        for number in ["14155550101", "442079460958", "5550101"] {
            assert!(!masked.contains(number), "{number} in {masked}");
        }
    }
}
