//! Phone numbers: parsing to E.164 with libphonenumber's metadata (the `phonenumber` crate),
//! the lenient form used to look stored numbers up, and masking for logs. Pure: no I/O, no
//! clock. It decides whether a number is acceptable and how it is written; it must not know
//! where a number is stored or which timezone it is in.
//!
//! # What `parse` accepts
//!
//! * At most [`RAW_LENGTH_MAX_CHARS`] characters; longer input is refused before any other
//!   work, so hostile input costs little.
//! * ASCII digits, one leading `+`, and the separators space, tab, no-break space (U+00A0,
//!   which spreadsheets and French-style formatting put between groups), `-`, `.`, `(` and `)`.
//!   Everything else is refused: letters (vanity numbers, `ext 12`, `tel:` URIs), other Unicode
//!   spaces and dashes, and non-ASCII digits (Arabic-Indic, full-width, …). libphonenumber
//!   would convert the last ones; we refuse them rather than silently rewrite what a client
//!   sent, as the reference system did.
//! * A `(0)` group right after the calling code (`+44 (0)20 7946 0958`) is the trunk prefix
//!   and goes where the calling code's trunk prefix is 0. Where 0 belongs to the number (Italy:
//!   `+39 (0)6 …` is `+39 06 …`) it stays. `Possible` and `Valid` get this from the metadata's
//!   trunk-prefix rules; `Shape` asks the metadata only for the calling code's trunk prefix.
//! * `Shape` is the reference system's rule: `+` and 8 to 15 digits, the first not 0. Every
//!   refusal has its legacy text [`INVALID_PHONE`]. The default region is not used.
//! * `Possible` (the default): the country calling code exists and the national number's
//!   length is possible for it. A national format (no `+`) is read in the default region;
//!   without one it is refused. libphonenumber also strips a trunk prefix written without
//!   parentheses (`+44 020 …`) and reads an international dialling prefix in national input
//!   (`00 44 …` in GB). A length that is possible only for local dialling (a US number without
//!   its area code) is refused as too short, since it cannot be dialled from elsewhere, unless
//!   the number is valid as it is (Canada's 7-digit 310 numbers).
//!   `+1234567890` is refused (9 national digits where the `+1` plan has 10).
//! * `Valid`: `Possible`, and libphonenumber's full check (the number matches an assigned
//!   range of its region, e.g. a real area code).

mod numbering_plan;

use std::fmt;

use numbering_plan::{Length, RegionKey, Split, SplitError};

/// The reference system's text for a refused number; every `Shape` refusal says this.
pub const INVALID_PHONE: &str = "Invalid phone number format. Must start with + and contain 8-15 digits.";

/// Longest input looked at. A formatted international number with an extension-free national
/// part fits in well under this (`+44 (0) 20 7946 0958` is 20 characters).
pub const RAW_LENGTH_MAX_CHARS: usize = 64;

/// Most digits in an E.164 number (country calling code included).
const E164_DIGITS_MAX: usize = 15;

/// How strictly numbers are checked (`phone_validation` in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PhoneValidation {
    /// `+` and 8 to 15 digits, the first not 0: the reference system's rule.
    Shape,
    /// The country calling code exists and the length is possible for it.
    #[default]
    Possible,
    /// libphonenumber's full validity check.
    Valid,
}

impl PhoneValidation {
    /// `shape`, `possible` or `valid`.
    pub fn parse(text: &str) -> Result<PhoneValidation, String> {
        match text {
            "shape" => Ok(PhoneValidation::Shape),
            "possible" => Ok(PhoneValidation::Possible),
            "valid" => Ok(PhoneValidation::Valid),
            other => Err(format!("unknown phone validation {other:?} (expected shape, possible or valid)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PhoneValidation::Shape => "shape",
            PhoneValidation::Possible => "possible",
            PhoneValidation::Valid => "valid",
        }
    }
}

/// An ISO 3166-1 alpha-2 region that the phone number metadata knows (`US`, `GB`): the region
/// in which a number written in national format is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region(RegionKey);

impl Region {
    /// Case-insensitive: `gb` and `GB` are the same region.
    pub fn parse(text: &str) -> Result<Region, String> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        let letters = upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase());
        match numbering_plan::region_by_id(&upper) {
            Some(key) if letters => Ok(Region(key)),
            _ => Err(format!("{trimmed:?} is not a region the phone number metadata knows (expected an ISO 3166-1 alpha-2 code such as US or GB)")),
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(numbering_plan::region_id(self.0))
    }
}

/// Why a number was refused. `Display` is the client-facing reason and names the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneError {
    refusal: Refusal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Refusal {
    /// Any refusal under `PhoneValidation::Shape`.
    Shape,
    InputTooLong,
    Characters,
    NoDigits,
    NeedsRegion,
    /// `written`: the leading digits (at most three) that name no country calling code.
    CountryCode {
        written: String,
    },
    TooShort {
        code: u16,
    },
    TooLong {
        code: u16,
    },
    LengthNotPossible {
        code: u16,
        length: usize,
    },
    NotValid {
        code: u16,
    },
}

impl PhoneError {
    fn new(refusal: Refusal) -> PhoneError {
        PhoneError { refusal }
    }

    /// A stable name of the rule that failed, for logs and metrics: `shape`, `input_length`,
    /// `characters`, `no_digits`, `needs_region`, `country_code`, `too_short`, `too_long`,
    /// `length`, `not_valid`.
    pub fn rule(&self) -> &'static str {
        match self.refusal {
            Refusal::Shape => "shape",
            Refusal::InputTooLong => "input_length",
            Refusal::Characters => "characters",
            Refusal::NoDigits => "no_digits",
            Refusal::NeedsRegion => "needs_region",
            Refusal::CountryCode { .. } => "country_code",
            Refusal::TooShort { .. } => "too_short",
            Refusal::TooLong { .. } => "too_long",
            Refusal::LengthNotPossible { .. } => "length",
            Refusal::NotValid { .. } => "not_valid",
        }
    }
}

/// `+44 (GB)`, or `+800` for a code without a region.
struct CallingCode(u16);

impl fmt::Display for CallingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match numbering_plan::main_region_id(self.0) {
            Some(region) => write!(f, "+{} ({region})", self.0),
            None => write!(f, "+{}", self.0),
        }
    }
}

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEAD: &str = "Invalid phone number:";
        match &self.refusal {
            Refusal::Shape => f.write_str(INVALID_PHONE),
            Refusal::InputTooLong => write!(f, "{HEAD} longer than {RAW_LENGTH_MAX_CHARS} characters"),
            Refusal::Characters => {
                write!(f, "{HEAD} only the digits 0-9, a leading +, spaces and the separators - . ( ) are allowed")
            }
            Refusal::NoDigits => write!(f, "{HEAD} no digits"),
            Refusal::NeedsRegion => {
                write!(f, "{HEAD} national format needs a default region (set default_region or campaign default_region, or write +<country code>)")
            }
            Refusal::CountryCode { written } => write!(f, "{HEAD} country calling code +{written} does not exist"),
            Refusal::TooShort { code } => write!(f, "{HEAD} the number is too short for {}", CallingCode(*code)),
            Refusal::TooLong { code } => write!(f, "{HEAD} the number is too long for {}", CallingCode(*code)),
            Refusal::LengthNotPossible { code, length } => {
                write!(f, "{HEAD} no number of {} has a national number of {length} digits", CallingCode(*code))
            }
            Refusal::NotValid { code } => {
                write!(f, "{HEAD} the number is not a valid number for its region (calling code +{code})")
            }
        }
    }
}

impl std::error::Error for PhoneError {}

/// Separators that people and spreadsheets put in numbers; removed before anything else.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{00A0}' | '-' | '.' | '(' | ')')
}

/// The input reduced to an optional leading `+` and ASCII digits. Refuses overlong input and
/// characters outside the allowed set.
struct Compact {
    plus: bool,
    digits: String,
    /// Index in `digits` of the 0 of the first `(0)` group of a `+` number.
    paren_zero_at: Option<usize>,
}

fn compact(raw: &str) -> Result<Compact, Refusal> {
    // A cheap bound on bytes first (a char is at most 4 bytes), then the exact one on chars.
    if raw.len() > 4 * RAW_LENGTH_MAX_CHARS + 64 {
        return Err(Refusal::InputTooLong);
    }
    let trimmed = raw.trim();
    if trimmed.chars().nth(RAW_LENGTH_MAX_CHARS).is_some() {
        return Err(Refusal::InputTooLong);
    }
    let (plus, body) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let mut digits = String::with_capacity(body.len());
    let mut paren_zero_at = None;
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if plus && paren_zero_at.is_none() && rest.starts_with("(0)") {
            paren_zero_at = Some(digits.len());
        }
        if c.is_ascii_digit() {
            digits.push(c);
        } else if !is_separator(c) {
            return Err(Refusal::Characters);
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(Compact { plus, digits, paren_zero_at })
}

/// Parses `raw` and answers it in E.164 (`+442079460958`), checked as `validation` says. A number
/// without `+` is read in `default_region`; see the module header for the rules.
pub fn parse(raw: &str, default_region: Option<&Region>, validation: PhoneValidation) -> Result<String, PhoneError> {
    match validation {
        PhoneValidation::Shape => shape(raw).ok_or(PhoneError::new(Refusal::Shape)),
        PhoneValidation::Possible | PhoneValidation::Valid => with_metadata(raw, default_region, validation == PhoneValidation::Valid).map_err(PhoneError::new),
    }
}

/// The reference system's rule: `+` and 8 to 15 digits, the first not 0; a `(0)` trunk group
/// right after a calling code whose trunk prefix is 0 is removed first.
fn shape(raw: &str) -> Option<String> {
    let Compact { plus, mut digits, paren_zero_at } = compact(raw).ok()?;
    if let Some(at) = paren_zero_at
        && numbering_plan::calling_code_length(&digits) == Some(at)
        && digits.get(..at).and_then(|code| code.parse().ok()).and_then(numbering_plan::trunk_prefix) == Some("0")
    {
        digits.remove(at);
    }
    let shaped = plus && (8..=E164_DIGITS_MAX).contains(&digits.len()) && !digits.starts_with('0');
    shaped.then(|| format!("+{digits}"))
}

fn with_metadata(raw: &str, default_region: Option<&Region>, full_check: bool) -> Result<String, Refusal> {
    // A `(0)` needs nothing special here: the metadata's trunk-prefix rules strip the 0 where
    // it is a trunk prefix and keep it where it is part of the number.
    let Compact { plus, digits, paren_zero_at: _ } = compact(raw)?;
    if digits.is_empty() {
        return Err(Refusal::NoDigits);
    }
    let split = if plus {
        numbering_plan::split_international(&digits)
    } else {
        let region = default_region.ok_or(Refusal::NeedsRegion)?;
        numbering_plan::split_national(&digits, region.0)
    };
    let split = split.map_err(|error| match error {
        SplitError::UnknownCallingCode { written } => Refusal::CountryCode { written },
        SplitError::TooShort { code } => Refusal::TooShort { code },
        SplitError::TooLong { code } => Refusal::TooLong { code },
    })?;
    let Split { code, national } = &split;
    let code = *code;
    match numbering_plan::test_length(&split) {
        Length::Possible => {}
        // A length possible only for local dialling (a US number without its area code) is
        // missing digits, unless the number is valid as it is (Canada's 7-digit 310 numbers).
        Length::LocalOnly if numbering_plan::is_valid(&split) => {}
        Length::TooShort | Length::LocalOnly => return Err(Refusal::TooShort { code }),
        Length::TooLong => return Err(Refusal::TooLong { code }),
        Length::Invalid => return Err(Refusal::LengthNotPossible { code, length: national.len() }),
    }
    if full_check && !numbering_plan::is_valid(&split) {
        return Err(Refusal::NotValid { code });
    }
    let e164 = format!("+{code}{national}");
    if e164.len() - 1 > E164_DIGITS_MAX {
        return Err(Refusal::TooLong { code });
    }
    Ok(e164)
}

/// For looking up and filtering numbers already stored: separators and a `(0)` trunk group
/// removed, then the `Shape` rule; failing that, `Possible` without a region (which also takes
/// the few short numbers, e.g. 4-digit Niue numbers, that are shorter than the shape rule
/// allows). It never refuses an E.164 number that `parse` answered, in any mode.
pub fn normalize_lenient(raw: &str) -> Option<String> {
    shape(raw).or_else(|| with_metadata(raw, None, false).ok())
}

/// Decodes the numbering-plan metadata now rather than on the first number that needs it (a
/// few hundred milliseconds, once per process): call it at startup, before answering requests.
pub fn warm_up() {
    numbering_plan::warm_up();
}

/// The reference system's normalisation, kept for call sites not yet switched to [`parse`]:
/// `parse(raw, None, PhoneValidation::Shape)` with the legacy error text.
pub fn normalize(raw: &str) -> Result<String, &'static str> {
    parse(raw, None, PhoneValidation::Shape).map_err(|_| INVALID_PHONE)
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
    use PhoneValidation::{Possible, Shape, Valid};
    use proptest::prelude::*;

    fn region(code: &str) -> Region {
        Region::parse(code).unwrap()
    }

    /// `expected`: `Ok(e164)` or `Err(reason)` (the full client-facing text).
    fn check(input: &str, default_region: Option<&str>, validation: PhoneValidation, expected: Result<&str, &str>) {
        let default_region = default_region.map(region);
        let got = parse(input, default_region.as_ref(), validation);
        let got = got.as_ref().map(String::as_str).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "input {input:?} region {default_region:?} {validation:?}");
    }

    const NEEDS_REGION: &str =
        "Invalid phone number: national format needs a default region (set default_region or campaign default_region, or write +<country code>)";
    const CHARACTERS: &str = "Invalid phone number: only the digits 0-9, a leading +, spaces and the separators - . ( ) are allowed";

    #[test]
    fn international_numbers() {
        for validation in [Shape, Possible, Valid] {
            check("+14155550101", None, validation, Ok("+14155550101"));
            check(" +1 (415) 555-0101 ", None, validation, Ok("+14155550101"));
            check("+44.20.7946.0958", None, validation, Ok("+442079460958"));
            check("+44 (0)20 7946 0958", None, validation, Ok("+442079460958"));
            check("+49 (0)30 901820", None, validation, Ok("+4930901820"));
            check("+39 (0)6 6982 0000", None, validation, Ok("+390669820000")); // Italy has no trunk prefix
            check("+44(0)2079460958", Some("US"), validation, Ok("+442079460958"));
            check("+1-4-1-5-5-5-5-0-1-0-1", None, validation, Ok("+14155550101"));
            check("+33\u{00A0}1\u{00A0}42\u{00A0}68\u{00A0}53\u{00A0}00", None, validation, Ok("+33142685300"));
            check("+39 06 6982 0000", None, validation, Ok("+390669820000")); // the Italian leading 0 stays
            check("+41 44 668 18 00", Some("GB"), validation, Ok("+41446681800")); // `+` wins over the region
        }
    }

    #[test]
    fn a_trunk_prefix_that_belongs_to_the_number_stays() {
        // Russian numbers start with 8 in national format and may also start with 8 after it
        // (the `phonenumber` crate's parser answers +7005553535 for these).
        for validation in [Possible, Valid] {
            check("+7 800 555 35 35", None, validation, Ok("+78005553535"));
            check("8 800 555 35 35", Some("RU"), validation, Ok("+78005553535"));
            check("800 555 35 35", Some("RU"), validation, Ok("+78005553535"));
        }
    }

    #[test]
    fn national_prefix_transform_rules() {
        // Argentina: a mobile written nationally as 011 15 2345 6789 is +54 9 11 2345 6789.
        check("011 15 2345 6789", Some("AR"), Valid, Ok("+5491123456789"));
        check("+54 9 11 2345 6789", None, Valid, Ok("+5491123456789"));
    }

    #[test]
    fn trunk_prefix_without_parentheses() {
        // libphonenumber strips a national prefix written after the country code; the shape
        // rule cannot know it is one.
        check("+44 020 7946 0958", None, Possible, Ok("+442079460958"));
        check("+44 020 7946 0958", None, Shape, Ok("+4402079460958"));
    }

    #[test]
    fn national_formats_need_a_region() {
        check("020 7946 0958", Some("GB"), Possible, Ok("+442079460958"));
        check("020 7946 0958", Some("gb"), Valid, Ok("+442079460958"));
        check("(415) 555-0101", Some("US"), Possible, Ok("+14155550101"));
        check("(415) 555-0101", Some("US"), Valid, Ok("+14155550101"));
        check("1 415 555 0101", Some("US"), Possible, Ok("+14155550101"));
        check("00 44 20 7946 0958", Some("GB"), Possible, Ok("+442079460958")); // IDD prefix of GB
        check("020 7946 0958", None, Possible, Err(NEEDS_REGION));
        check("(415) 555-0101", None, Valid, Err(NEEDS_REGION));
        check("(415) 555-0101", Some("US"), Shape, Err(INVALID_PHONE)); // the shape rule needs `+`
        check("555-0101", Some("US"), Possible, Err("Invalid phone number: the number is too short for +1 (US)"));
    }

    #[test]
    fn country_calling_codes() {
        check("+999 12345678", None, Possible, Err("Invalid phone number: country calling code +999 does not exist"));
        check("+999 12345678", None, Valid, Err("Invalid phone number: country calling code +999 does not exist"));
        check("+999 12345678", None, Shape, Ok("+99912345678")); // the shape rule knows no codes
        check("+0 44 20 7946 0958", None, Possible, Err("Invalid phone number: country calling code +044 does not exist"));
        check("+80 1234", None, Possible, Err("Invalid phone number: country calling code +801 does not exist"));
        check("+800 1234 5678", None, Possible, Ok("+80012345678")); // non-geographic: freephone
        check("+28", None, Possible, Err("Invalid phone number: country calling code +28 does not exist"));
    }

    #[test]
    fn lengths() {
        check("+44 20 7946", None, Possible, Err("Invalid phone number: the number is too short for +44 (GB)"));
        check("+44 20 7946 0958 1234", None, Possible, Err("Invalid phone number: the number is too long for +44 (GB)"));
        check("+1 415 555 01011", None, Possible, Err("Invalid phone number: the number is too long for +1 (US)"));
        check("+1 555 0101", None, Possible, Err("Invalid phone number: the number is too short for +1 (US)")); // local-only length
        check("+1", None, Possible, Err("Invalid phone number: the number is too short for +1 (US)"));
        check("+49 30 1234", None, Possible, Ok("+49301234")); // German numbers are 5 to 15 digits
        check("+683 4002", None, Possible, Ok("+6834002")); // Niue: 4-digit numbers, 7 digits in all
        check("+683 4002", None, Shape, Err(INVALID_PHONE));
        check("+1 310 1234", None, Possible, Ok("+13101234")); // valid in Canada as it is
        check("+1 310 1234", None, Valid, Ok("+13101234"));
        check("+1234567890123456", None, Possible, Err("Invalid phone number: the number is too long for +1 (US)"));
    }

    #[test]
    fn the_reference_systems_test_number() {
        // `+1234567890`: fine for the shape rule, but 9 national digits where +1 has 10.
        check("+1234567890", None, Shape, Ok("+1234567890"));
        check("+1234567890", None, Possible, Err("Invalid phone number: the number is too short for +1 (US)"));
        check("+1234567890", None, Valid, Err("Invalid phone number: the number is too short for +1 (US)"));
    }

    #[test]
    fn validity() {
        // Possible length, but no +1 area code starts with 0 or 1, and 555-01xx is fictional.
        check("+1 123 555 0101", None, Possible, Ok("+11235550101"));
        check("+1 123 555 0101", None, Valid, Err("Invalid phone number: the number is not a valid number for its region (calling code +1)"));
        check("+44 20 7946 0958", None, Valid, Ok("+442079460958"));
        check("+44 10 7946 0958", None, Valid, Err("Invalid phone number: the number is not a valid number for its region (calling code +44)"));
    }

    #[test]
    fn characters_and_input_length() {
        for validation in [Possible, Valid] {
            check("", None, validation, Err("Invalid phone number: no digits"));
            check("+", None, validation, Err("Invalid phone number: no digits"));
            check(" - ", Some("US"), validation, Err("Invalid phone number: no digits"));
            check("+1415555010a", None, validation, Err(CHARACTERS));
            check("++14155550101", None, validation, Err(CHARACTERS));
            check("+1 415 555 0101 ext 2", None, validation, Err(CHARACTERS));
            check("tel:+1-415-555-0101", None, validation, Err(CHARACTERS));
            check("+1-800-FLOWERS", None, validation, Err(CHARACTERS));
            check("+١٤١٥٥٥٥٠١٠١", None, validation, Err(CHARACTERS)); // Arabic-Indic digits
            check("+１４１５５５５０１０１", None, validation, Err(CHARACTERS)); // full-width digits
            check("＋14155550101", None, validation, Err(CHARACTERS)); // full-width plus
            check("+1415\u{2013}5550101", None, validation, Err(CHARACTERS)); // en dash
            check(&format!("+1{}4", " ".repeat(70)), None, validation, Err("Invalid phone number: longer than 64 characters"));
            check(&"9".repeat(1 << 20), Some("US"), validation, Err("Invalid phone number: longer than 64 characters"));
        }
    }

    #[test]
    fn the_shape_rule_keeps_its_legacy_text_and_limits() {
        check("+12345678", None, Shape, Ok("+12345678")); // 8 digits: shortest allowed
        check("+123456789012345", None, Shape, Ok("+123456789012345")); // 15 digits: longest allowed
        check("+1234567", None, Shape, Err(INVALID_PHONE));
        check("+1234567890123456", None, Shape, Err(INVALID_PHONE));
        check("14155550101", None, Shape, Err(INVALID_PHONE));
        check("+04155550101", None, Shape, Err(INVALID_PHONE));
        check("+1415555010a", None, Shape, Err(INVALID_PHONE));
        check("", None, Shape, Err(INVALID_PHONE));
        check("+1415\u{00A0}5550101", None, Shape, Ok("+14155550101")); // no-break space is a separator
        assert_eq!(normalize("+1 415 555 0101"), Ok("+14155550101".to_owned()));
        assert_eq!(normalize("+1234567890"), Ok("+1234567890".to_owned()));
        assert_eq!(normalize("+1415abc0101"), Err(INVALID_PHONE));
    }

    #[test]
    fn errors_name_their_rule() {
        let rule = |raw: &str, r: Option<&str>, v| parse(raw, r.map(region).as_ref(), v).unwrap_err().rule();
        assert_eq!(rule("+1", None, Shape), "shape");
        assert_eq!(rule("+999 12345678", None, Possible), "country_code");
        assert_eq!(rule("020 7946 0958", None, Possible), "needs_region");
        assert_eq!(rule("+44 20 7946", None, Possible), "too_short");
        assert_eq!(rule("+1 415 555 01011", None, Possible), "too_long");
        assert_eq!(rule("+1 123 555 0101", None, Valid), "not_valid");
        assert_eq!(rule("+1 415 x", None, Valid), "characters");
    }

    #[test]
    fn regions() {
        assert_eq!(region("gb").to_string(), "GB");
        assert_eq!(region(" US ").to_string(), "US");
        for bad in ["", "G", "GBR", "ZZ", "001", "U1", "éé"] {
            let error = Region::parse(bad).unwrap_err();
            assert!(error.contains("is not a region the phone number metadata knows"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn validation_names() {
        for validation in [Shape, Possible, Valid] {
            assert_eq!(PhoneValidation::parse(validation.as_str()), Ok(validation));
        }
        assert_eq!(PhoneValidation::default(), Possible);
        assert!(PhoneValidation::parse("strict").unwrap_err().contains("expected shape, possible or valid"));
    }

    #[test]
    fn lenient_normalisation() {
        let check_lenient = |raw: &str, expected: Option<&str>| assert_eq!(normalize_lenient(raw).as_deref(), expected, "{raw:?}");
        check_lenient("+1 (415) 555-0101", Some("+14155550101"));
        check_lenient("+44 (0)20 7946 0958", Some("+442079460958"));
        check_lenient("+1234567890", Some("+1234567890"));
        check_lenient("+6834002", Some("+6834002"));
        check_lenient("4155550101", None);
        check_lenient("+1 415 x", None);
    }

    #[test]
    fn masks_the_middle() {
        assert_eq!(mask("+14155550101"), "+1415*****01");
        assert_eq!(mask("+12345678"), "+1234**78");
    }

    #[test]
    fn masks_numbers_inside_text() {
        let check_masked = |text: &str, expected: &str| assert_eq!(mask_numbers_in(text), expected, "{text:?}");
        check_masked("number +14155550101 is unreachable", "number +1415*****01 is unreachable");
        check_masked("to +1 (415) 555-0101.", "to +1415*****01.");
        check_masked("{\"to\":\"+442079460958\",\"code\":21211}", "{\"to\":\"+4420******58\",\"code\":21211}");
        check_masked("call 4155550101, then +14155550102", "call 4155****01, then +1415*****02");
        check_masked("error 404 after 3 tries", "error 404 after 3 tries");
        check_masked("+1 2 3", "+1 2 3");
        check_masked("", "");
        check_masked("ünïcödé +33 1 42 68 53 00 ✓", "ünïcödé +3314*****00 ✓");
    }

    /// `+digits` with separators written before some digits.
    fn formatted(digits: &str, separators: &[(usize, &'static str)]) -> String {
        let mut raw = String::from("+");
        for (index, digit) in digits.chars().enumerate() {
            for (at, separator) in separators {
                if at % digits.len() == index {
                    raw.push_str(separator);
                }
            }
            raw.push(digit);
        }
        raw
    }

    /// Separators other than parentheses: placed at random, `(` and `)` around a 0 would make
    /// a `(0)` trunk group, which is not a separator.
    fn separator() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(" "), Just("-"), Just("."), Just("\u{00A0}"), Just("\t")]
    }

    fn validation() -> impl Strategy<Value = PhoneValidation> {
        prop_oneof![Just(Shape), Just(Possible), Just(Valid)]
    }

    fn maybe_region() -> impl Strategy<Value = Option<Region>> {
        proptest::option::of(proptest::sample::select(vec!["US", "GB", "DE", "FR", "IT", "IN", "BR", "AR", "MX", "JP", "AU", "NU"]).prop_map(region))
    }

    /// Inputs close to real numbers: digits with separators, sometimes a `+`, sometimes a
    /// `(0)`, sometimes a stray character.
    fn phone_like() -> impl Strategy<Value = String> {
        let chars = prop_oneof![
            8 => "[0-9]",
            2 => prop_oneof![separator(), Just("("), Just(")")].prop_map(str::to_owned),
            1 => Just("(0)".to_owned()),
            1 => "\\PC",
        ];
        (proptest::bool::ANY, proptest::collection::vec(chars, 0..24)).prop_map(|(plus, parts)| {
            let body: String = parts.concat();
            if plus { format!("+{body}") } else { body }
        })
    }

    /// (region id, calling code, example national number) for every example in the metadata.
    fn examples() -> Vec<(&'static str, u16, &'static str)> {
        let database = &*phonenumber::metadata::DATABASE;
        let mut all = Vec::new();
        for code in 1..1000u16 {
            for metadata in database.by_code(&code).unwrap_or_default() {
                let d = metadata.descriptors();
                let typed = [d.fixed_line(), d.mobile(), d.toll_free(), d.premium_rate(), d.shared_cost(), d.voip(), d.uan()];
                all.extend(typed.into_iter().flatten().filter_map(|desc| desc.example()).map(|e| (metadata.id(), code, e)));
            }
        }
        all
    }

    /// Real example numbers, sometimes with a digit changed, dropped or added, written in
    /// international format or in national format (with a trunk 0) with their region.
    fn near_real_numbers() -> impl Strategy<Value = (String, Option<Region>)> {
        let edit = prop_oneof![Just(None), (0usize..20, 0u8..10, 0u8..3).prop_map(Some)];
        (proptest::sample::select(examples()), edit, 0u8..3).prop_map(|((id, code, example), edit, form)| {
            let mut national = example.to_owned();
            if let Some((at, digit, kind)) = edit {
                let at = at % (national.len() + 1);
                let digit = char::from(b'0' + digit);
                match kind {
                    0 if at < national.len() => national.replace_range(at..=at, &digit.to_string()),
                    1 if at < national.len() => {
                        national.remove(at);
                    }
                    _ => national.insert(at, digit),
                }
            }
            let region = Region::parse(id).ok();
            match form {
                0 => (format!("+{code} {national}"), None),
                1 => (national, region),
                _ => (format!("0{national}"), region),
            }
        })
    }

    proptest! {
        #[test]
        fn real_numbers_read_back_as_themselves((raw, region) in near_real_numbers(), validation in validation()) {
            if let Ok(e164) = parse(&raw, region.as_ref(), validation) {
                prop_assert_eq!(parse(&e164, None, validation), Ok(e164.clone()));
                prop_assert_eq!(normalize_lenient(&e164), Some(e164.clone()));
            }
            if let Ok(valid) = parse(&raw, region.as_ref(), Valid) {
                prop_assert_eq!(parse(&raw, region.as_ref(), Possible), Ok(valid));
            }
        }

        #[test]
        fn never_panics_and_accepts_only_e164(raw in prop_oneof![phone_like(), "\\PC{0,80}"], region in maybe_region(), validation in validation()) {
            if let Ok(e164) = parse(&raw, region.as_ref(), validation) {
                prop_assert!(e164.starts_with('+'));
                prop_assert!((2..=16).contains(&e164.len()), "{}", e164);
                prop_assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(!e164[1..].starts_with('0'));
            }
        }

        #[test]
        fn accepted_numbers_are_fixed_points(raw in phone_like(), region in maybe_region(), validation in validation()) {
            if let Ok(e164) = parse(&raw, region.as_ref(), validation) {
                prop_assert_eq!(parse(&e164, None, validation), Ok(e164.clone()));
                prop_assert_eq!(parse(&e164, region.as_ref(), validation), Ok(e164.clone()));
                prop_assert_eq!(normalize_lenient(&e164), Some(e164.clone()));
            }
        }

        #[test]
        fn possible_accepts_every_valid_number(raw in phone_like(), region in maybe_region()) {
            if let Ok(e164) = parse(&raw, region.as_ref(), Valid) {
                prop_assert_eq!(parse(&raw, region.as_ref(), Possible), Ok(e164));
            }
        }

        #[test]
        fn separators_do_not_change_a_number(digits in "[1-9][0-9]{7,14}", separators in proptest::collection::vec((0usize..16, separator()), 0..6), validation in validation()) {
            let plain = parse(&format!("+{digits}"), None, validation);
            prop_assert_eq!(parse(&formatted(&digits, &separators), None, validation), plain);
        }

        #[test]
        fn the_shape_rule_is_the_legacy_rule(digits in "[1-9][0-9]{7,14}") {
            prop_assert_eq!(parse(&format!("+{digits}"), None, Shape), Ok(format!("+{digits}")));
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
