//! The callee's timezone: the number's own zone, else the zone(s) inferred from its leading
//! digits with libphonenumber's prefix map, else the campaign's, else the default. Pure: the map
//! is embedded in the binary and parsed once; nothing here reads files, the clock or the store.
//! It must not decide calling hours: it only says which zone(s) a number is in and why.
//!
//! # The prefix map
//!
//! `data/phone-prefix-timezones.txt` is libphonenumber's `timezones/map_data.txt` (Apache-2.0,
//! The Libphonenumber Authors), lines `PREFIX|ZONE[&ZONE…]` where PREFIX is the leading E.164
//! digits (country calling code first). The longest matching prefix wins. Parsed lazily into one
//! sorted `u32` key table per prefix length (1 to 9 digits) and a table of deduplicated zone
//! lists, so a lookup is at most nine binary searches over integers and allocates nothing.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use jiff::tz::TimeZone;

/// libphonenumber's timezone map, with its licence header.
const PREFIX_MAP_TEXT: &str = include_str!("data/phone-prefix-timezones.txt");

/// Longest prefix in the map (9 digits fits a `u32` key).
const PREFIX_DIGITS_MAX: usize = 9;

/// Where a callee's timezone came from; reported with every call and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimezoneSource {
    /// The number's own `timezone`, given at import or in the request.
    Given,
    /// Exactly one zone inferred from the number's leading digits.
    Inferred,
    /// Several zones (at most `max_candidates`) inferred from the number: a time counts as
    /// inside a window only when it is inside in every one of them.
    Ambiguous,
    /// The campaign's `timezone`.
    Campaign,
    /// The retry rules file's `timezone`.
    Default,
}

impl TimezoneSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TimezoneSource::Given => "given",
            TimezoneSource::Inferred => "inferred",
            TimezoneSource::Ambiguous => "ambiguous",
            TimezoneSource::Campaign => "campaign",
            TimezoneSource::Default => "default",
        }
    }
}

/// The zone(s) a callee is in and why. `zones` and `names` are parallel and never empty.
#[derive(Clone, Debug)]
pub struct CalleeZone {
    pub zones: Vec<TimeZone>,
    pub names: Vec<String>,
    pub source: TimezoneSource,
}

impl CalleeZone {
    /// `Europe/London`, or the candidates joined with `|` (`America/Boise|America/Los_Angeles`).
    pub fn name(&self) -> String {
        self.names.join("|")
    }

    fn single(zone: TimeZone, name: &str, source: TimezoneSource) -> CalleeZone {
        let name = zone.iana_name().map_or_else(|| name.to_owned(), str::to_owned);
        CalleeZone { zones: vec![zone], names: vec![name], source }
    }
}

/// The parsed prefix map.
struct PrefixMap {
    /// `keys[L - 1]`: the prefixes of `L` digits as integers, sorted; `lists[L - 1][i]` is the
    /// zone list (index into `zone_lists`) of `keys[L - 1][i]`.
    keys: [Vec<u32>; PREFIX_DIGITS_MAX],
    lists: [Vec<u16>; PREFIX_DIGITS_MAX],
    /// Distinct zone lists in file order (about 300 for 3,300 prefixes).
    zone_lists: Vec<Box<[&'static str]>>,
    /// Each zone list's zones, looked up in the time zone database on first use (names it does
    /// not know left out). Saves a database lookup per zone per number.
    zones: Vec<OnceLock<KnownZones>>,
}

/// A zone list's zones that the time zone database knows, each with its name.
type KnownZones = Box<[(TimeZone, &'static str)]>;

static PREFIX_MAP: LazyLock<PrefixMap> = LazyLock::new(|| PrefixMap::parse(PREFIX_MAP_TEXT));

impl PrefixMap {
    /// Parses the embedded map. The text ships inside the binary and a unit test parses it, so a
    /// malformed line is a programmer error and panics with the line.
    fn parse(text: &'static str) -> PrefixMap {
        let mut entries: [Vec<(u32, u16)>; PREFIX_DIGITS_MAX] = Default::default();
        let mut zone_lists: Vec<Box<[&'static str]>> = Vec::new();
        let mut list_ids: HashMap<&'static str, u16> = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (prefix, zones) = line.split_once('|').unwrap_or_else(|| panic!("prefix map line without `|`: {line:?}"));
            assert!(
                (1..=PREFIX_DIGITS_MAX).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_digit()),
                "prefix map line with a bad prefix: {line:?}"
            );
            let key: u32 = prefix.parse().expect("at most 9 ASCII digits fit a u32");
            let next_id = u16::try_from(zone_lists.len()).expect("fewer than 65,536 distinct zone lists");
            let id = *list_ids.entry(zones).or_insert_with(|| {
                zone_lists.push(zones.split('&').collect());
                next_id
            });
            entries[prefix.len() - 1].push((key, id));
        }
        let mut keys: [Vec<u32>; PREFIX_DIGITS_MAX] = Default::default();
        let mut lists: [Vec<u16>; PREFIX_DIGITS_MAX] = Default::default();
        for (length_index, mut of_length) in entries.into_iter().enumerate() {
            of_length.sort_unstable();
            assert!(of_length.windows(2).all(|w| w[0].0 != w[1].0), "prefix map has a prefix twice");
            keys[length_index] = of_length.iter().map(|&(key, _)| key).collect();
            lists[length_index] = of_length.iter().map(|&(_, id)| id).collect();
        }
        let zones = zone_lists.iter().map(|_| OnceLock::new()).collect();
        PrefixMap { keys, lists, zone_lists, zones }
    }

    /// The known zones of zone list `list_id`, with their names.
    fn zones(&self, list_id: u16) -> &[(TimeZone, &'static str)] {
        let list_index = usize::from(list_id);
        self.zones[list_index].get_or_init(|| self.zone_lists[list_index].iter().filter_map(|&name| Some((TimeZone::get(name).ok()?, name))).collect())
    }

    /// The zone list id of the longest prefix of `digits` present in the map.
    fn longest_match(&self, digits: &[u8]) -> Option<u16> {
        // prefix_values[L - 1] = the first L digits as an integer.
        let mut prefix_values = [0u32; PREFIX_DIGITS_MAX];
        let mut value = 0u32;
        let usable = digits.len().min(PREFIX_DIGITS_MAX);
        for (slot, &digit) in prefix_values.iter_mut().zip(&digits[..usable]) {
            value = value * 10 + u32::from(digit - b'0');
            *slot = value;
        }
        (1..=usable).rev().find_map(|length| {
            let index = self.keys[length - 1].binary_search(&prefix_values[length - 1]).ok()?;
            Some(self.lists[length - 1][index])
        })
    }
}

/// The zone list id of `e164`'s longest matching prefix; `None` unless `e164` is ASCII digits
/// after an optional `+`.
fn infer_list_id(e164: &str) -> Option<u16> {
    let digits = e164.strip_prefix('+').unwrap_or(e164).as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    PREFIX_MAP.longest_match(digits)
}

/// Parses the embedded prefix map now rather than on the first lookup (about a millisecond).
pub fn warm_up() {
    LazyLock::force(&PREFIX_MAP);
}

/// The zone names of the longest prefix of `e164`'s digits present in the map, or `None` when
/// no prefix matches or `e164` is not `+` followed by ASCII digits.
pub fn infer(e164: &str) -> Option<&'static [&'static str]> {
    infer_list_id(e164).map(|list_id| &*PREFIX_MAP.zone_lists[usize::from(list_id)])
}

/// The callee's zone, from the first source that yields one: the number's own `given` zone, the
/// zone(s) inferred from `e164` (one: `Inferred`; two to `max_candidates`: `Ambiguous` with all
/// of them; more: no inference), the `campaign`'s zone, else `default`. A name that the time
/// zone database does not know (in `given`, `campaign` or the map) is skipped; callers validate
/// names on input, so that only happens with a database older than the data.
pub fn resolve(given: Option<&str>, e164: &str, campaign: Option<&str>, default: &TimeZone, max_candidates: usize) -> CalleeZone {
    if let Some(found) = given.and_then(|name| named(name, TimezoneSource::Given)) {
        return found;
    }
    if let Some(found) = inferred(e164, max_candidates) {
        return found;
    }
    if let Some(found) = campaign.and_then(|name| named(name, TimezoneSource::Campaign)) {
        return found;
    }
    CalleeZone::single(default.clone(), &format!("{default:?}"), TimezoneSource::Default)
}

fn named(name: &str, source: TimezoneSource) -> Option<CalleeZone> {
    let zone = TimeZone::get(name).ok()?;
    Some(CalleeZone::single(zone, name, source))
}

fn inferred(e164: &str, max_candidates: usize) -> Option<CalleeZone> {
    let candidates = PREFIX_MAP.zones(infer_list_id(e164)?);
    if candidates.len() > max_candidates {
        return None;
    }
    let (zones, names): (Vec<TimeZone>, Vec<String>) = candidates.iter().map(|(zone, name)| (zone.clone(), (*name).to_owned())).unzip();
    let source = match zones.len() {
        0 => return None,
        1 => TimezoneSource::Inferred,
        _ => TimezoneSource::Ambiguous,
    };
    Some(CalleeZone { zones, names, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn check_infer(e164: &str, expected: Option<&[&str]>) {
        assert_eq!(infer(e164), expected, "e164 {e164:?}");
    }

    #[test]
    fn the_longest_prefix_wins() {
        check_infer("+12082011234", Some(&["America/Denver"])); // 1208201
        check_infer("+12082991234", Some(&["America/Boise", "America/Los_Angeles"])); // 12082
        check_infer("+12125550101", Some(&["America/New_York"])); // 1212
        check_infer("+442079460958", Some(&["Europe/London"])); // 442
        check_infer("+441481123456", Some(&["Europe/Guernsey"])); // 441481
        check_infer("+4420", Some(&["Europe/London"])); // shorter than the number, still a prefix
        check_infer("12125550101", Some(&["America/New_York"])); // the `+` is optional
    }

    #[test]
    fn no_inference_without_a_match_or_with_a_malformed_number() {
        check_infer("", None);
        check_infer("+", None);
        check_infer("+0123456789", None); // no country calling code starts with 0
        check_infer("+1212 555", None);
        check_infer("+1２12", None);
        check_infer("+99912345678", None);
    }

    #[test]
    fn the_embedded_map_parses_and_every_zone_is_known() {
        let map = &*PREFIX_MAP;
        let prefixes: usize = map.keys.iter().map(Vec::len).sum();
        assert!(prefixes > 3000, "{prefixes} prefixes");
        let unknown: Vec<&str> = map.zone_lists.iter().flat_map(|list| list.iter().copied()).filter(|name| TimeZone::get(name).is_err()).collect();
        assert_eq!(unknown, Vec::<&str>::new(), "zones the time zone database does not know");
    }

    fn check_resolve(given: Option<&str>, e164: &str, campaign: Option<&str>, max_candidates: usize, expected: (&str, TimezoneSource)) {
        let found = resolve(given, e164, campaign, &utc(), max_candidates);
        assert_eq!((found.name().as_str(), found.source), expected, "given {given:?} e164 {e164:?} campaign {campaign:?}");
        assert_eq!(found.zones.len(), found.names.len());
        for (zone, name) in found.zones.iter().zip(&found.names) {
            assert_eq!(zone.iana_name(), Some(name.as_str()));
        }
    }

    #[test]
    fn resolve_takes_the_first_source_that_yields_a_zone() {
        use TimezoneSource::*;
        check_resolve(Some("Asia/Tokyo"), "+12125550101", Some("Europe/Paris"), 3, ("Asia/Tokyo", Given));
        check_resolve(None, "+12125550101", Some("Europe/Paris"), 3, ("America/New_York", Inferred));
        check_resolve(None, "+12082991234", Some("Europe/Paris"), 3, ("America/Boise|America/Los_Angeles", Ambiguous));
        // Two candidates but only one allowed: no inference, the campaign's zone.
        check_resolve(None, "+12082991234", Some("Europe/Paris"), 1, ("Europe/Paris", Campaign));
        // The bare `+1` entry lists over 40 zones: no inference.
        check_resolve(None, "+19995550101", Some("Europe/Paris"), 3, ("Europe/Paris", Campaign));
        check_resolve(None, "+19995550101", None, 3, ("UTC", Default));
        // `+44` alone lists four zones (`+446…` has no longer prefix); `+442` is London.
        check_resolve(None, "+446123", None, 3, ("UTC", Default));
        check_resolve(None, "+449123", None, 3, ("Europe/Guernsey|Europe/Isle_of_Man|Europe/London", Ambiguous));
        check_resolve(None, "+442079460958", None, 3, ("Europe/London", Inferred));
        // An unknown name falls through to the next source.
        check_resolve(Some("Mars/Olympus_Mons"), "+12125550101", None, 3, ("America/New_York", Inferred));
        check_resolve(None, "+99912345678", Some("Not/A_Zone"), 3, ("UTC", Default));
        // The database's spelling is reported.
        check_resolve(Some("europe/london"), "+12125550101", None, 3, ("Europe/London", Given));
    }

    #[test]
    fn as_str_names_each_source() {
        let all = [TimezoneSource::Given, TimezoneSource::Inferred, TimezoneSource::Ambiguous, TimezoneSource::Campaign, TimezoneSource::Default];
        let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["given", "inferred", "ambiguous", "campaign", "default"]);
    }

    /// The reference: scan every line and keep the longest prefix of `digits`.
    fn naive_infer(digits: &str) -> Option<Vec<&'static str>> {
        PREFIX_MAP_TEXT
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| line.split_once('|'))
            .filter(|(prefix, _)| digits.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, zones)| zones.split('&').collect())
    }

    /// Digit strings that often share a prefix with the map: a prefix taken from it, then digits.
    fn numbers_near_the_map() -> impl Strategy<Value = String> {
        let prefixes: Vec<&'static str> =
            PREFIX_MAP_TEXT.lines().filter(|line| !line.starts_with('#')).filter_map(|line| line.split_once('|')).map(|(p, _)| p).collect();
        (proptest::sample::select(prefixes), 0usize..3, "[0-9]{0,12}").prop_map(|(prefix, cut, tail)| {
            let kept = &prefix[..prefix.len().saturating_sub(cut).max(1)];
            format!("{kept}{tail}")
        })
    }

    proptest! {
        #[test]
        fn infer_agrees_with_a_naive_scan(digits in prop_oneof![numbers_near_the_map(), "[0-9]{1,15}"]) {
            let expected = naive_infer(&digits);
            prop_assert_eq!(infer(&format!("+{digits}")).map(<[&str]>::to_vec), expected);
        }

        #[test]
        fn resolve_never_answers_an_empty_zone_list(given in proptest::option::of("[A-Za-z/_]{0,20}"), digits in "[0-9]{0,15}", max_candidates in 0usize..5) {
            let found = resolve(given.as_deref(), &format!("+{digits}"), None, &utc(), max_candidates);
            prop_assert!(!found.zones.is_empty());
            prop_assert_eq!(found.zones.len(), found.names.len());
        }
    }
}
