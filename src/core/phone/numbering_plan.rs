//! libphonenumber's numbering-plan rules applied to digits: which calling code a number has,
//! the trunk prefix to strip, whether its length is possible and whether it is valid. The data
//! is the `phonenumber` crate's copy of libphonenumber's metadata; the algorithm follows
//! libphonenumber's own (`PhoneNumberUtil.parseHelper`, `testNumberLength`,
//! `getNumberTypeHelper`). Pure: it sees only ASCII digits, never raw client text.
//!
//! Why not the crate's own `parse` and `is_valid`: as of 0.3.10 it strips a trunk prefix that is
//! part of the number (`+7 800 555 35 35` becomes `+7 005 553 535`; reported upstream), its general
//! descriptors carry no possible lengths (libphonenumber computes them as the union of the
//! number types' lengths; the crate leaves them empty, so length tests never say "too short"),
//! its pattern match anchors only the start (`find` at 0, not a full match), and every regex use
//! takes one global mutex around an LRU of 100 compiled patterns (about 60 µs a US number on our
//! box). Here each region's patterns are compiled once, anchored, on first use of the region.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Captures, Regex, RegexBuilder};

/// libphonenumber's bounds on a national (significant) number.
const NATIONAL_DIGITS_MIN: usize = 2;
const NATIONAL_DIGITS_MAX: usize = 17;
/// Calling codes are 1 to 3 digits.
pub(super) const CALLING_CODE_DIGITS_MAX: usize = 3;
/// Rounds of re-reading a result until it is stable (a trunk prefix written twice).
const STABILISE_ROUNDS_MAX: usize = 4;

/// A number split into its calling code and national significant number (digits only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Split {
    pub code: u16,
    pub national: String,
}

/// Why digits could not be read as a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SplitError {
    /// The leading digits (at most three) name no calling code.
    UnknownCallingCode {
        written: String,
    },
    TooShort {
        code: u16,
    },
    TooLong {
        code: u16,
    },
}

/// libphonenumber's `ValidationResult` for a national number's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Length {
    Possible,
    /// Possible only when dialled locally (a US number without its area code).
    LocalOnly,
    TooShort,
    TooLong,
    /// Between the shortest and longest lengths but not one of them.
    Invalid,
}

/// A region the metadata knows: its calling code and its place among that code's regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct RegionKey {
    pub code: u16,
    index: u16,
}

/// Every region sharing one calling code, the main region first (as the metadata orders them).
struct CodeRegions {
    regions: Vec<(&'static Metadata, OnceLock<RegionRules>)>,
}

static CALLING_CODES: LazyLock<HashMap<u16, CodeRegions>> = LazyLock::new(|| {
    // By code, not by region id: the non-geographic entities (+800, +882, …) all have the id
    // `001`, and the metadata's id index keeps only one of them.
    let database = &*DATABASE;
    (1..1000u16)
        .filter_map(|code| {
            let regions = database.by_code(&code).filter(|regions| !regions.is_empty())?;
            Some((code, CodeRegions { regions: regions.into_iter().map(|m| (m, OnceLock::new())).collect() }))
        })
        .collect()
});

/// One region's patterns, compiled and anchored, and its lengths.
struct RegionRules {
    /// The general pattern, matched in full; `None` if it did not compile (then nothing matches).
    general: Option<Regex>,
    /// Union of the number types' possible lengths, sorted (libphonenumber's general lengths).
    lengths: Vec<u16>,
    /// Lengths possible only for local dialling, minus those in `lengths`.
    local_lengths: Vec<u16>,
    /// Each number type's full-match pattern and its possible lengths (empty: any).
    types: Vec<(Regex, Vec<u16>)>,
    /// Matched at the start: picks this region among those sharing a calling code.
    leading_digits: Option<Regex>,
    /// Matched at the start: the trunk prefix (and carrier code) to strip.
    national_prefix_for_parsing: Option<Regex>,
    /// Replacement for the matched trunk prefix, in `regex` syntax (`${1}`).
    national_prefix_transform: Option<String>,
    /// Matched at the start: the international dialling prefix of national input (`00`, `011`).
    international_prefix: Option<Regex>,
}

fn compile(pattern: &str, full: bool) -> Option<Regex> {
    // The metadata's patterns are written across lines; libphonenumber ignores the whitespace.
    let anchored = if full { format!("^(?:{pattern})$") } else { format!("^(?:{pattern})") };
    RegexBuilder::new(&anchored).ignore_whitespace(true).build().ok()
}

/// libphonenumber's transform rules say `$1`; `regex` wants `${1}` so that a digit after the
/// group number is not read as part of it.
fn transform_rule(rule: &str) -> String {
    let mut out = String::with_capacity(rule.len() + 4);
    let mut chars = rule.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('$', Some(&digit)) if digit.is_ascii_digit() => {
                chars.next();
                out.push_str("${");
                out.push(digit);
                out.push('}');
            }
            _ => out.push(c),
        }
    }
    out
}

impl RegionRules {
    fn build(metadata: &Metadata) -> RegionRules {
        let descriptors = metadata.descriptors();
        let typed: Vec<&Descriptor> = [
            descriptors.fixed_line(),
            descriptors.mobile(),
            descriptors.toll_free(),
            descriptors.premium_rate(),
            descriptors.shared_cost(),
            descriptors.personal_number(),
            descriptors.voip(),
            descriptors.pager(),
            descriptors.uan(),
            descriptors.voicemail(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut lengths: Vec<u16> = typed.iter().flat_map(|d| d.possible_length().iter().copied()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut local_lengths: Vec<u16> = typed.iter().flat_map(|d| d.possible_local_length().iter().copied()).filter(|l| !lengths.contains(l)).collect();
        local_lengths.sort_unstable();
        local_lengths.dedup();
        let types = typed.iter().filter_map(|d| Some((compile(d.national_number().as_str(), true)?, d.possible_length().to_vec()))).collect();
        // libphonenumber reads the national prefix itself when no parsing pattern is given.
        let national_prefix_for_parsing =
            metadata.national_prefix_for_parsing().map(|re| re.as_str().to_owned()).or_else(|| metadata.national_prefix().map(regex::escape));
        RegionRules {
            general: compile(descriptors.general().national_number().as_str(), true),
            lengths,
            local_lengths,
            types,
            leading_digits: metadata.leading_digits().and_then(|re| compile(re.as_str(), false)),
            national_prefix_for_parsing: national_prefix_for_parsing.and_then(|p| compile(&p, false)),
            national_prefix_transform: metadata.national_prefix_transform_rule().map(transform_rule),
            international_prefix: metadata.international_prefix().and_then(|re| compile(re.as_str(), false)),
        }
    }

    fn general_match(&self, national: &str) -> bool {
        self.general.as_ref().is_some_and(|re| re.is_match(national))
    }

    /// libphonenumber's `testNumberLength` for an unknown number type.
    fn test_length(&self, length: usize) -> Length {
        let (Some(&shortest), Some(&longest)) = (self.lengths.first(), self.lengths.last()) else {
            return Length::Invalid;
        };
        let length = u16::try_from(length).unwrap_or(u16::MAX);
        if self.local_lengths.contains(&length) {
            Length::LocalOnly
        } else if length < shortest {
            Length::TooShort
        } else if length > longest {
            Length::TooLong
        } else if self.lengths.contains(&length) {
            Length::Possible
        } else {
            Length::Invalid
        }
    }

    /// libphonenumber's `maybeStripNationalPrefixAndCarrierCode`: the number with its trunk
    /// prefix stripped (or transformed), unless that would turn a number that matched the
    /// general pattern into one that does not.
    fn strip_national_prefix(&self, national: &str) -> Option<String> {
        let captures: Captures<'_> = self.national_prefix_for_parsing.as_ref()?.captures(national)?;
        let whole = captures.get(0)?;
        let viable_before = self.general_match(national);
        let last_group = captures.get(captures.len() - 1);
        let stripped = match (&self.national_prefix_transform, last_group) {
            (Some(rule), Some(_)) if !rule.is_empty() => {
                let mut transformed = String::new();
                captures.expand(rule, &mut transformed);
                transformed.push_str(&national[whole.end()..]);
                transformed
            }
            _ => national[whole.end()..].to_owned(),
        };
        if viable_before && !self.general_match(&stripped) {
            return None;
        }
        Some(stripped)
    }

    /// libphonenumber's `getNumberTypeHelper(...) != UNKNOWN`.
    fn has_known_type(&self, national: &str) -> bool {
        let length = u16::try_from(national.len()).unwrap_or(u16::MAX);
        let fits = |lengths: &[u16]| lengths.is_empty() || lengths.contains(&length);
        fits(&self.lengths) && self.general_match(national) && self.types.iter().any(|(pattern, lengths)| fits(lengths) && pattern.is_match(national))
    }
}

/// Decodes the metadata and compiles the rules of the busiest calling code's main region.
pub(super) fn warm_up() {
    let _ = main_region(1).and_then(rules);
}

fn regions_of(code: u16) -> Option<&'static CodeRegions> {
    CALLING_CODES.get(&code)
}

fn rules(key: RegionKey) -> Option<(&'static Metadata, &'static RegionRules)> {
    let (metadata, rules) = regions_of(key.code)?.regions.get(usize::from(key.index))?;
    Some((metadata, rules.get_or_init(|| RegionRules::build(metadata))))
}

fn main_region(code: u16) -> Option<RegionKey> {
    regions_of(code).filter(|regions| !regions.regions.is_empty()).map(|_| RegionKey { code, index: 0 })
}

/// The region with this ISO 3166-1 alpha-2 id (upper case), if the metadata knows it.
pub(super) fn region_by_id(id: &str) -> Option<RegionKey> {
    let metadata = DATABASE.by_id(id)?;
    let code = metadata.country_code();
    let index = regions_of(code)?.regions.iter().position(|(m, _)| m.id() == id)?;
    Some(RegionKey { code, index: u16::try_from(index).ok()? })
}

/// The region's id (`GB`), or `001` for a non-geographic entity.
pub(super) fn region_id(key: RegionKey) -> &'static str {
    regions_of(key.code).and_then(|regions| regions.regions.get(usize::from(key.index))).map_or("", |(m, _)| m.id())
}

/// The main region's id of a calling code, `None` for non-geographic codes (+800).
pub(super) fn main_region_id(code: u16) -> Option<&'static str> {
    main_region(code).map(region_id).filter(|id| *id != "001")
}

/// Reads the digits written after a `+`.
pub(super) fn split_international(digits: &str) -> Result<Split, SplitError> {
    let split = split_calling_code(digits)?;
    let main = main_region(split.code).ok_or(SplitError::UnknownCallingCode { written: split.code.to_string() })?;
    finish(split, main)
}

/// Reads digits written without `+` in `region`: an international dialling prefix then a calling
/// code (`00 44 …` in GB), the region's own calling code written without `+`, or a national
/// number (with its trunk prefix).
pub(super) fn split_national(digits: &str, region: RegionKey) -> Result<Split, SplitError> {
    let code = region.code;
    let Some((metadata, rules)) = rules(region) else {
        return Err(SplitError::UnknownCallingCode { written: code.to_string() });
    };
    if let Some(found) = rules.international_prefix.as_ref().and_then(|re| re.find(digits)) {
        let after = &digits[found.end()..];
        // A calling code never starts with 0, so a 0 here means the prefix was not one.
        if !after.starts_with('0') {
            if after.len() <= NATIONAL_DIGITS_MIN {
                return Err(SplitError::TooShort { code });
            }
            return split_international(after);
        }
    }
    let own_code = metadata.country_code().to_string();
    if let Some(without_code) = digits.strip_prefix(own_code.as_str()) {
        let potential = rules.strip_national_prefix(without_code).unwrap_or_else(|| without_code.to_owned());
        let better = !rules.general_match(digits) && rules.general_match(&potential);
        if better || rules.test_length(digits.len()) == Length::TooLong {
            return finish(Split { code, national: potential }, main_region(code).unwrap_or(region));
        }
    }
    finish(Split { code, national: digits.to_owned() }, region)
}

/// How many of the leading digits are a calling code, if any are.
pub(super) fn calling_code_length(digits: &str) -> Option<usize> {
    let split = split_calling_code(digits).ok()?;
    Some(digits.len() - split.national.len())
}

/// The trunk prefix of a calling code's main region (`0` for +44, `1` for +1, none for +39).
pub(super) fn trunk_prefix(code: u16) -> Option<&'static str> {
    regions_of(code)?.regions.first()?.0.national_prefix()
}

/// The calling code at the start of `digits` (the shortest prefix that is one).
fn split_calling_code(digits: &str) -> Result<Split, SplitError> {
    // Callers pass ASCII digits; `get` keeps anything else from panicking on a char boundary.
    let written = digits.get(..digits.len().min(CALLING_CODE_DIGITS_MAX)).unwrap_or_default();
    if !written.starts_with('0') {
        for length in 1..=written.len() {
            let Some(code) = written.get(..length).and_then(|code| code.parse::<u16>().ok()) else { continue };
            if regions_of(code).is_some() {
                return Ok(Split { code, national: digits[length..].to_owned() });
            }
        }
    }
    Err(SplitError::UnknownCallingCode { written: written.to_owned() })
}

/// Strips the trunk prefix with `region`'s rules when what remains has a possible length, checks
/// the bounds, then re-reads the result as an international number until it is stable, so that
/// every answer reads back as itself.
fn finish(split: Split, region: RegionKey) -> Result<Split, SplitError> {
    let mut current = strip_and_bound(split, region)?;
    for _ in 0..STABILISE_ROUNDS_MAX {
        let main = main_region(current.code).unwrap_or(region);
        let again = strip_and_bound(current.clone(), main)?;
        if again == current {
            return Ok(current);
        }
        current = again;
    }
    Err(SplitError::TooShort { code: current.code })
}

fn strip_and_bound(split: Split, region: RegionKey) -> Result<Split, SplitError> {
    let Split { code, mut national } = split;
    if let Some((_, rules)) = rules(region)
        && let Some(stripped) = rules.strip_national_prefix(&national)
        && !matches!(rules.test_length(stripped.len()), Length::TooShort | Length::LocalOnly | Length::Invalid)
    {
        national = stripped;
    }
    if national.len() < NATIONAL_DIGITS_MIN {
        return Err(SplitError::TooShort { code });
    }
    if national.len() > NATIONAL_DIGITS_MAX {
        return Err(SplitError::TooLong { code });
    }
    Ok(Split { code, national })
}

/// libphonenumber's possible-length test, with the main region's lengths (every region of a
/// calling code shares them).
pub(super) fn test_length(split: &Split) -> Length {
    match main_region(split.code).and_then(rules) {
        Some((_, rules)) => rules.test_length(split.national.len()),
        None => Length::Invalid,
    }
}

/// libphonenumber's `isValidNumber`: the region the number belongs to (by leading digits, or the
/// first region whose patterns it matches) has a number type whose pattern it matches in full.
pub(super) fn is_valid(split: &Split) -> bool {
    let Some(regions) = regions_of(split.code) else { return false };
    let national = split.national.as_str();
    let count = u16::try_from(regions.regions.len()).unwrap_or(u16::MAX);
    let keys = (0..count).map(|index| RegionKey { code: split.code, index });
    if count == 1 {
        return keys.filter_map(rules).any(|(_, rules)| rules.has_known_type(national));
    }
    for (_, rules) in keys.filter_map(rules) {
        match &rules.leading_digits {
            Some(leading) if leading.is_match(national) => return rules.has_known_type(national),
            Some(_) => {}
            None if rules.has_known_type(national) => return true,
            None => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_regions_patterns_compile() {
        let mut broken = Vec::new();
        for (code, regions) in CALLING_CODES.iter() {
            for (index, (metadata, _)) in regions.regions.iter().enumerate() {
                let key = RegionKey { code: *code, index: u16::try_from(index).unwrap() };
                let (_, rules) = rules(key).unwrap();
                let typed = metadata.descriptors();
                let expected_types = [
                    typed.fixed_line(),
                    typed.mobile(),
                    typed.toll_free(),
                    typed.premium_rate(),
                    typed.shared_cost(),
                    typed.personal_number(),
                    typed.voip(),
                    typed.pager(),
                    typed.uan(),
                    typed.voicemail(),
                ]
                .into_iter()
                .flatten()
                .count();
                if rules.general.is_none() || rules.types.len() != expected_types || rules.lengths.is_empty() {
                    broken.push(format!("+{code} {}", metadata.id()));
                }
                if metadata.leading_digits().is_some() && rules.leading_digits.is_none()
                    || metadata.international_prefix().is_some() && rules.international_prefix.is_none()
                {
                    broken.push(format!("+{code} {} prefixes", metadata.id()));
                }
            }
        }
        assert_eq!(broken, Vec::<String>::new());
    }

    /// libphonenumber's own conformance test: every example number in the metadata reads back as
    /// itself, has a possible length and is valid.
    #[test]
    fn every_example_number_is_valid() {
        let mut failures = Vec::new();
        let mut checked = 0;
        for (code, regions) in CALLING_CODES.iter() {
            for (metadata, _) in &regions.regions {
                let d = metadata.descriptors();
                let typed = [
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.personal_number(),
                    d.voip(),
                    d.pager(),
                    d.uan(),
                    d.voicemail(),
                ];
                for example in typed.into_iter().flatten().filter_map(Descriptor::example) {
                    checked += 1;
                    let expected = Split { code: *code, national: example.to_owned() };
                    let split = split_international(&format!("{code}{example}"));
                    let possible = split.as_ref().map(test_length);
                    let valid = split.as_ref().map(is_valid);
                    // A Canadian 310-xxxx number is valid in 7 digits, a local-only length of +1.
                    let possible_enough = matches!(possible, Ok(Length::Possible | Length::LocalOnly));
                    if split.as_ref() != Ok(&expected) || !possible_enough || valid != Ok(true) {
                        failures.push(format!("{} +{code} {example}: {split:?} {possible:?} valid {valid:?}", metadata.id()));
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked} examples");
        assert_eq!(failures, Vec::<String>::new());
    }

    #[test]
    fn general_lengths_are_the_union_of_the_types() {
        let (_, us) = rules(region_by_id("US").unwrap()).unwrap();
        assert_eq!((us.lengths.as_slice(), us.local_lengths.as_slice()), (&[10u16][..], &[7u16][..]));
        let (_, gb) = rules(region_by_id("GB").unwrap()).unwrap();
        assert_eq!(gb.lengths, [7, 9, 10]);
    }

    #[test]
    fn transform_rules_use_braced_groups() {
        assert_eq!(transform_rule("9$1"), "9${1}");
        assert_eq!(transform_rule("$1$2"), "${1}${2}");
        assert_eq!(transform_rule("1481$1"), "1481${1}");
        assert_eq!(transform_rule("$"), "$");
    }

    #[test]
    fn a_trunk_prefix_that_is_part_of_the_number_stays() {
        // The `phonenumber` crate's own parser answers +7005553535 here.
        assert_eq!(split_international("78005553535"), Ok(Split { code: 7, national: "8005553535".into() }));
        let ru = region_by_id("RU").unwrap();
        assert_eq!(split_national("88005553535", ru), Ok(Split { code: 7, national: "8005553535".into() }));
        assert_eq!(split_national("8005553535", ru), Ok(Split { code: 7, national: "8005553535".into() }));
    }
}
