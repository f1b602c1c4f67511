//! Retry windows and calling hours: parses `retry_config.yaml` into validated
//! [`RetryRules`] and decides when, if ever, a failed attempt is tried again
//! ([`RetryRules::next_retry`]), when a due attempt may be dialled ([`RetryRules::window_open_at`],
//! [`RetryRules::calling_hours_open_at`]), and what the per-number contact limits are.
//!
//! This module is pure: it never reads the clock, and it does no I/O except [`RetryRules::load`]
//! (and the time zone database lookup of the file's `timezone`). It knows nothing of calls,
//! storage, the scheduler or HTTP; the state machine asks it questions and records the answers.
//! It does not count attempts for the contact limits: it only reads them from the file.
//!
//! # The retry computation
//!
//! For an outcome at instant `t` of attempt `n`, in the callee's zones:
//! 1. The outcome must be retryable (`status_retry_rules`) and `n` below both the call's
//!    `max_attempts` and the status's cap; otherwise the call gives up.
//! 2. A slot is eligible if its `max_attempts` (when given) is at least `n + 1`.
//! 3. The interval is that of the first eligible slot containing `t`, else `defaults`.
//! 4. The candidate is `t + interval`; the retry is the first instant at or after it that lies in
//!    an eligible slot and inside calling hours (see the search below).
//! 5. None within the horizon: `No retry window available`.
//!
//! With no slots configured at all, every time is eligible as far as slots go.
//!
//! # File semantics, where the contract leaves room
//!
//! * The *flat form* (a top-level list of `{day_of_week, start_time, end_time, ...}` items) is one
//!   rule: every item is a slot of that rule on its single day, so two items on the same day must
//!   not overlap. Errors name the item as `[i]`. The flat form has no calling hours and no contact
//!   limits.
//! * Slots of one rule must not overlap on a shared day. Slots of *different* rules may overlap;
//!   at an instant inside several eligible slots, the first of them in file order supplies the
//!   interval (step 3).
//! * `status_retry_rules`, when present, must list `DISCONNECTED`, `RNR` and `FAILED` (so that a
//!   forgotten status is an error rather than a silent change of policy); `PICKED` may be listed
//!   only as `{should_retry: false}`.
//! * A `campaign_rules` entry with `rules: []` gives that campaign no slots at all, so (as for a
//!   file with no slots) every time is eligible for it. An entry without `rules` leaves the global
//!   rules in force (it exists to set the campaign's calling hours); an entry with neither `rules`
//!   nor `calling_hours` is an error.
//! * A slot that lies entirely inside a spring-forward gap does not exist on that day.
//! * Empty `days` or `time_slots`, a day listed twice, and `max_attempts` on a status that does
//!   not retry are errors: they can only be mistakes.
//!
//! # Calling hours
//!
//! * `calling_hours` (top level, absent = no restriction) is one mapping `{days, start_time,
//!   end_time}` or a list of them, so that days may differ (weekdays 08:00-21:00, Saturday
//!   09:00-17:00). A day no entry lists has no calling hours. Entries are validated like slots
//!   (times, days) and must not overlap on a shared day; adjacent entries (Friday 20:00-24:00,
//!   Saturday 00:00-02:00) join. An empty list is an error: leave the key out instead. Errors
//!   name the entry as `calling_hours` or `calling_hours[i]`.
//! * A `campaign_rules` entry's `calling_hours` *replaces* the global calling hours for that
//!   campaign. A campaign cannot drop calling hours altogether; `00:00`-`24:00` on every day
//!   allows any time.
//! * Calling hours hold for every attempt, the first one included; they do not depend on the
//!   attempt number.
//!
//! # Instants, zones and the search
//!
//! * An instant is inside a slot (or inside calling hours) in a zone when its wall-clock time in
//!   that zone is. So a slot start in a spring-forward gap opens at the end of the gap, and a slot
//!   start repeated by a fall-back opens at the earlier of its two instants.
//! * A callee may have several candidate zones (a number whose prefix spans zones). Every instant
//!   this module returns lies inside an eligible slot *and* inside calling hours in *every* zone
//!   of the list. The interval of step 3 comes from the slot containing the outcome in the *first*
//!   zone of the list. An empty list means the file's `timezone`.
//! * Each constraint (the retry windows in one zone, the calling hours in one zone) answers "the
//!   first instant at or after `t` inside me". The search moves `t` to a constraint's answer until
//!   every constraint contains `t`; as no answer can pass the least instant common to all, that is
//!   the answer. Every constraint searches only up to the horizon: 14 days after the candidate of
//!   step 4 (after `at` for [`RetryRules::window_open_at`] and
//!   [`RetryRules::calling_hours_open_at`]). Nothing common within it means `No retry window
//!   available`.
//!
//! # Contact limits
//!
//! * `contact_limits: {max_attempts, window}` (top level, absent = none): at most `max_attempts`
//!   (1 to 100) dials of one number in any rolling `window`, across campaigns. `window` is a
//!   duration with a unit (`90m`, `24h`, `7d`; a day is 24 hours), positive and at most 30 days.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::Deserialize;

use crate::core::model::Outcome;

/// How far the search for an instant inside the windows and calling hours goes: past the
/// candidate `at + interval` for a retry (step 5), past `at` for the "open at" questions.
pub const WINDOW_SEARCH_HORIZON_DAYS: i64 = 14;
/// The largest `max_attempts` accepted anywhere in the file and by
/// [`RetryRules::with_default_max_attempts`].
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// The longest retry interval accepted (30 days).
pub const RETRY_INTERVAL_MAX: SignedDuration = SignedDuration::from_hours(24 * 30);
/// The longest contact-limit window accepted (30 days).
pub const CONTACT_WINDOW_MAX: SignedDuration = SignedDuration::from_hours(24 * 30);

const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_RETRY_INTERVAL: SignedDuration = SignedDuration::from_mins(60);
const WINDOW_SEARCH_HORIZON: SignedDuration = SignedDuration::from_hours(24 * WINDOW_SEARCH_HORIZON_DAYS);
const SECONDS_PER_DAY: u32 = 24 * 60 * 60;

// ---------------------------------------------------------------------------------------------
// Raw file shapes: serde only checks structure and key names; `Builder` validates meaning.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNestedFile {
    timezone: Option<String>,
    defaults: Option<RawDefaults>,
    status_retry_rules: Option<RawStatusRules>,
    calling_hours: Option<RawCallingHours>,
    contact_limits: Option<RawContactLimits>,
    global_rules: Option<Vec<RawRule>>,
    campaign_rules: Option<Vec<RawCampaignRules>>,
    /// The old system's scheduler settings: accepted and ignored.
    #[serde(default, deserialize_with = "key_is_present")]
    scheduler: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    max_attempts: Option<i64>,
    retry_interval_minutes: Option<i64>,
    retry_interval: Option<String>,
    /// The old system's concurrency limit (now `max_concurrent_calls` in callmgr.yaml): ignored.
    #[serde(default, deserialize_with = "key_is_present")]
    concurrent_call_limit: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatusRules {
    #[serde(rename = "DISCONNECTED")]
    disconnected: Option<RawStatusRule>,
    #[serde(rename = "RNR")]
    rnr: Option<RawStatusRule>,
    #[serde(rename = "FAILED")]
    failed: Option<RawStatusRule>,
    #[serde(rename = "PICKED")]
    picked: Option<RawStatusRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatusRule {
    should_retry: bool,
    max_attempts: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    days: Vec<String>,
    time_slots: Vec<RawSlot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    start_time: String,
    end_time: String,
    max_attempts: Option<i64>,
    retry_interval_minutes: Option<i64>,
    retry_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaignRules {
    campaign_id: u64,
    name: Option<String>,
    calling_hours: Option<RawCallingHours>,
    /// Absent = the global rules apply; `[]` = no slots.
    rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallingHoursEntry {
    days: Vec<String>,
    start_time: String,
    end_time: String,
}

/// `calling_hours` is one mapping or a list of them.
enum RawCallingHours {
    One(RawCallingHoursEntry),
    List(Vec<RawCallingHoursEntry>),
}

impl<'de> Deserialize<'de> for RawCallingHours {
    /// A hand-written visitor rather than `#[serde(untagged)]`, which would replace the inner
    /// error (an unknown key, its line) with "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawCallingHours;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping {days, start_time, end_time} or a list of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawCallingHours, A::Error> {
                RawCallingHoursEntry::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(RawCallingHours::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<RawCallingHours, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(RawCallingHours::List)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContactLimits {
    max_attempts: i64,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlatSlot {
    day_of_week: String,
    start_time: String,
    end_time: String,
    max_attempts: Option<i64>,
    retry_interval_minutes: Option<i64>,
    retry_interval: Option<String>,
}

/// Deserializes any value and records only that the key was there.
fn key_is_present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// Why a retry configuration was refused. The message names the file, the rule and slot (or
/// key), and the problem.
#[derive(Debug, thiserror::Error)]
pub enum RetryConfigError {
    #[error("{source_name}: cannot read the retry configuration: {source}")]
    Read { source_name: String, source: std::io::Error },
    /// YAML syntax, a wrong type, or an unknown key; the message carries the key path and the
    /// line and column.
    #[error("{source_name}: {}", yaml_message(source))]
    Yaml { source_name: String, source: serde_norway::Error },
    #[error("{source_name}: {location}: {problem}")]
    Invalid {
        source_name: String,
        /// Where in the file: `global_rules[0] "Weekday hours" time_slots[1]`, `defaults`, ...
        location: String,
        problem: ConfigProblem,
    },
}

impl RetryConfigError {
    /// The 1-based line of a YAML error, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            RetryConfigError::Yaml { source, .. } => source.location().map(|l| l.line()),
            _ => None,
        }
    }
}

/// What is wrong with one place of a retry configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("the file is empty (write `{{}}` for the built-in defaults)")]
    EmptyFile,
    #[error("expected a mapping (timezone, defaults, global_rules, ...) or a list of slots")]
    NotMappingOrList,
    #[error("unknown timezone {name:?}: {reason}")]
    UnknownTimezone { name: String, reason: String },
    #[error("unknown day {value:?} (expected monday ... sunday or mon ... sun)")]
    UnknownDay { value: String },
    #[error("{day} is listed twice")]
    DuplicateDay { day: String },
    #[error("days is empty")]
    NoDays,
    #[error("time_slots is empty")]
    NoSlots,
    #[error("{field} {value:?} is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)")]
    BadTime { field: &'static str, value: String },
    #[error("start_time 24:00 is the end of the day; a slot cannot start there")]
    StartAtEndOfDay,
    #[error("end_time {end} is before start_time {start}")]
    EndBeforeStart { start: String, end: String },
    #[error("end_time {end} equals start_time {start}: the slot is empty")]
    EmptySlot { start: String, end: String },
    /// `other` names the earlier slot, its range and the shared day.
    #[error("{range} overlaps {other}")]
    OverlappingSlots { range: String, other: String },
    #[error("give either retry_interval_minutes or retry_interval, not both")]
    BothIntervals,
    #[error("retry_interval {value:?} is not a duration (write it with a unit: 500ms, 90s, 5m, 2h)")]
    BadDuration { value: String },
    #[error("the retry interval must be positive, got {value}")]
    IntervalNotPositive { value: String },
    #[error("the retry interval {value} is longer than the limit of 30 days")]
    IntervalTooLong { value: String },
    #[error("max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {value}")]
    MaxAttemptsOutOfRange { value: i64 },
    #[error("campaign_id {campaign_id} already has rules at {first}")]
    DuplicateCampaign { campaign_id: u64, first: String },
    #[error("PICKED is final and cannot be retried (should_retry must be false)")]
    PickedRetry,
    #[error("max_attempts has no effect on a status that is not retried")]
    CapWithoutRetry,
    #[error("{status} is missing: when status_retry_rules is given it must list DISCONNECTED, RNR and FAILED")]
    StatusMissing { status: &'static str },
    #[error("the list is empty (leave the key out for no restriction)")]
    NoCallingHours,
    #[error("the entry sets neither rules nor calling_hours")]
    EmptyCampaignEntry,
    #[error("window {value:?} is not a duration (write it with a unit: 90m, 24h, 7d)")]
    BadWindow { value: String },
    #[error("the window must be positive, got {value}")]
    WindowNotPositive { value: String },
    #[error("the window {value} is longer than the limit of 30 days")]
    WindowTooLong { value: String },
}

/// serde_norway's message, which leaves out the position when it is the very start of the file.
fn yaml_message(error: &serde_norway::Error) -> String {
    let message = error.to_string();
    match error.location() {
        Some(location) if !message.contains(" at line ") => {
            format!("{message} at line {} column {}", location.line(), location.column())
        }
        _ => message,
    }
}

// ---------------------------------------------------------------------------------------------
// Validated rules.

/// A time of day with second resolution, from `00:00` to `24:00` (the end of the day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    seconds: u32,
}

impl TimeOfDay {
    /// Seconds since local midnight, `0..=86400`.
    pub fn seconds_since_midnight(self) -> u32 {
        self.seconds
    }

    /// `HH:MM` or `HH:MM:SS` (the hour may have one digit); `24:00[:00]` is the end of the day.
    fn parse(text: &str) -> Option<TimeOfDay> {
        let number = |part: &str, lengths: std::ops::RangeInclusive<usize>| -> Option<u32> {
            let digits = lengths.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
            if digits { part.parse().ok() } else { None }
        };
        let mut parts = text.split(':');
        let hour = number(parts.next()?, 1..=2)?;
        let minute = number(parts.next()?, 2..=2)?;
        let second = match parts.next() {
            Some(part) => number(part, 2..=2)?,
            None => 0,
        };
        let valid = parts.next().is_none() && minute <= 59 && second <= 59 && (hour < 24 || (hour, minute, second) == (24, 0, 0));
        valid.then_some(TimeOfDay { seconds: hour * 3600 + minute * 60 + second })
    }

    /// The civil time; `24:00` has none (callers only ask for slot starts, which are earlier).
    fn to_civil(self) -> Time {
        let hour = (self.seconds / 3600) as i8;
        let minute = (self.seconds / 60 % 60) as i8;
        let second = (self.seconds % 60) as i8;
        Time::new(hour, minute, second, 0).expect("a slot start is before 24:00")
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hour, minute, second) = (self.seconds / 3600, self.seconds / 60 % 60, self.seconds % 60);
        if second == 0 { write!(f, "{hour:02}:{minute:02}") } else { write!(f, "{hour:02}:{minute:02}:{second:02}") }
    }
}

/// One configured time slot, as written in the file (after validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// Where it is written: `global_rules[0] "Weekday hours" time_slots[1]`, or `[3]` in the
    /// flat form.
    pub location: String,
    /// The days the slot applies to, Monday first.
    pub days: Vec<Weekday>,
    /// Local start, inclusive.
    pub start: TimeOfDay,
    /// Local end, exclusive (`24:00` is the end of the day).
    pub end: TimeOfDay,
    /// The slot serves attempt `k` only if `k <= max_attempts`.
    pub max_attempts: Option<u32>,
    /// The interval used for outcomes that happen inside this slot.
    pub retry_interval: Option<SignedDuration>,
}

impl SlotInfo {
    fn describe_line(&self) -> String {
        let mut line = format!("{}: {} {}-{}", self.location, day_list(&self.days), self.start, self.end);
        if let Some(interval) = self.retry_interval {
            line.push_str(&format!(", every {interval:#}"));
        }
        if let Some(cap) = self.max_attempts {
            line.push_str(&format!(", up to attempt {cap}"));
        }
        line
    }
}

/// A slot as the search sees it on one weekday.
#[derive(Clone, Debug)]
struct DaySlot {
    start_seconds: u32,
    end_seconds: u32,
    start_time: Time,
    /// `u32::MAX` when the slot has no cap.
    max_attempts: u32,
    retry_interval: Option<SignedDuration>,
    /// Index into `RuleSet::slots`, which is file order.
    file_order: usize,
}

impl DaySlot {
    fn serves(&self, attempt: u32) -> bool {
        self.max_attempts >= attempt
    }
}

/// The slots that apply to one campaign (the global rules, or one `campaign_rules` entry).
#[derive(Clone, Debug, Default)]
struct RuleSet {
    /// Every slot in file order.
    slots: Vec<Arc<SlotInfo>>,
    /// For each weekday (Monday = 0), its slots sorted by start time, then file order.
    by_weekday: [Vec<DaySlot>; 7],
}

impl RuleSet {
    fn new(slots: Vec<SlotInfo>) -> RuleSet {
        let mut rule_set = RuleSet::default();
        for (file_order, slot) in slots.into_iter().enumerate() {
            for day in &slot.days {
                rule_set.by_weekday[weekday_index(*day)].push(DaySlot {
                    start_seconds: slot.start.seconds,
                    end_seconds: slot.end.seconds,
                    start_time: slot.start.to_civil(),
                    max_attempts: slot.max_attempts.unwrap_or(u32::MAX),
                    retry_interval: slot.retry_interval,
                    file_order,
                });
            }
            rule_set.slots.push(Arc::new(slot));
        }
        for day in &mut rule_set.by_weekday {
            day.sort_by_key(|s| (s.start_seconds, s.file_order));
        }
        rule_set
    }

    /// The first slot in file order that contains this local time and serves `attempt`.
    fn eligible_slot_containing(&self, local: DateTime, attempt: u32) -> Option<&DaySlot> {
        let time = local.time();
        let seconds = time.hour() as u32 * 3600 + time.minute() as u32 * 60 + time.second() as u32;
        self.by_weekday[weekday_index(local.weekday())]
            .iter()
            .take_while(|s| s.start_seconds <= seconds)
            .filter(|s| seconds < s.end_seconds && s.serves(attempt))
            .min_by_key(|s| s.file_order)
    }

    /// The earliest instant in `[from, until]` whose local wall-clock time in `timezone` lies in a
    /// slot serving `attempt`.
    ///
    /// The eligible instants form half-open intervals, so the answer is `from` itself or the start
    /// of one of those intervals. An interval starts either where the wall clock reads a slot's
    /// start time (one instant, or two when the clock is set back across it), or at a time zone
    /// transition whose new wall-clock time lies inside a slot (how a slot start that falls into a
    /// spring-forward gap is moved to the end of the gap).
    fn first_eligible_at_or_after(&self, timezone: &TimeZone, from: Timestamp, until: Timestamp, attempt: u32) -> Option<Timestamp> {
        if from > until {
            return None;
        }
        let from_local = timezone.to_datetime(from);
        if self.eligible_slot_containing(from_local, attempt).is_some() {
            return Some(from);
        }
        let mut best: Option<Timestamp> = None;
        let mut consider = |at: Timestamp| {
            let earlier_than_best = best.is_none_or(|b| at < b);
            if at > from && at <= until && earlier_than_best {
                best = Some(at);
                true
            } else {
                false
            }
        };

        // Slot starts, day by day. The day before `from`'s is searched too, for a clock set back
        // across midnight, and a day past `until`'s local date for the same reason (counted
        // from the length of the range, which is cheaper than converting `until`). Offsets
        // change by far less than a day, so nothing found two days after a hit can beat it.
        let day_count = until.duration_since(from).as_secs() / i64::from(SECONDS_PER_DAY) + 4;
        let mut date: Date = from_local.date().yesterday().unwrap_or(from_local.date());
        let mut day_of_best: Option<i64> = None;
        for day in 0..day_count {
            if day_of_best.is_some_and(|d| day > d + 1) {
                break;
            }
            for slot in &self.by_weekday[weekday_index(date.weekday())] {
                if !slot.serves(attempt) {
                    continue;
                }
                let local = date.to_datetime(slot.start_time);
                let mut found = false;
                match timezone.to_ambiguous_timestamp(local).offset() {
                    AmbiguousOffset::Unambiguous { offset } => {
                        if let Ok(at) = offset.to_timestamp(local) {
                            found |= consider(at);
                        }
                    }
                    AmbiguousOffset::Fold { before, after } => {
                        for offset in [before, after] {
                            if let Ok(at) = offset.to_timestamp(local) {
                                found |= consider(at);
                            }
                        }
                    }
                    // The slot start does not exist today; the transition search below finds
                    // the end of the gap if it lies inside the slot.
                    AmbiguousOffset::Gap { .. } => {}
                }
                if found && day_of_best.is_none() {
                    day_of_best = Some(day);
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }

        // Transitions: the first one (they come in order) whose new wall-clock time lies in an
        // eligible slot, if it beats what was found above.
        for transition in timezone.following(from) {
            let at = transition.timestamp();
            if at > until || best.is_some_and(|b| at >= b) {
                break;
            }
            if self.eligible_slot_containing(transition.offset().to_datetime(at), attempt).is_some() {
                best = Some(at);
                break;
            }
        }
        best
    }
}

/// One entry of `calling_hours`, as written in the file (after validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallingHoursEntry {
    /// Where it is written: `calling_hours`, `calling_hours[1]`, or
    /// `campaign_rules[0] (campaign_id 2) calling_hours`.
    pub location: String,
    /// The days the entry applies to, Monday first.
    pub days: Vec<Weekday>,
    /// Local start, inclusive.
    pub start: TimeOfDay,
    /// Local end, exclusive (`24:00` is the end of the day).
    pub end: TimeOfDay,
}

/// Whose calling hours are in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallingHoursScope {
    /// The file's top-level `calling_hours`.
    Global,
    /// A `campaign_rules` entry's, which replace the global calling hours for that campaign.
    Campaign(u64),
}

/// Calling hours: when any attempt, the first one included, may be dialled, in the callee's
/// local time.
#[derive(Clone, Debug)]
pub struct CallingHours {
    /// Where the key is written: `calling_hours` or `campaign_rules[0] (campaign_id 2) calling_hours`.
    pub location: String,
    pub scope: CallingHoursScope,
    /// The entries in file order.
    pub entries: Vec<CallingHoursEntry>,
    /// The same entries as slots that serve every attempt, for the search.
    windows: RuleSet,
}

impl CallingHours {
    fn new(location: String, scope: CallingHoursScope, entries: Vec<CallingHoursEntry>) -> CallingHours {
        let slots = entries
            .iter()
            .map(|entry| SlotInfo {
                location: entry.location.clone(),
                days: entry.days.clone(),
                start: entry.start,
                end: entry.end,
                max_attempts: None,
                retry_interval: None,
            })
            .collect();
        CallingHours { location, scope, entries, windows: RuleSet::new(slots) }
    }

    /// Whether `at` lies inside these hours in `timezone`.
    pub fn contains(&self, timezone: &TimeZone, at: Timestamp) -> bool {
        self.windows.eligible_slot_containing(timezone.to_datetime(at), 1).is_some()
    }

    /// The entries on one line: `mon tue wed thu fri 08:00-21:00; sat 09:00-17:00`.
    pub fn summary(&self) -> String {
        let entries: Vec<String> = self.entries.iter().map(|e| format!("{} {}-{}", day_list(&e.days), e.start, e.end)).collect();
        entries.join("; ")
    }
}

impl fmt::Display for CallingHours {
    /// `mon tue wed thu fri 08:00-21:00 (calling_hours)`, and for a campaign's own hours
    /// `... (campaign_rules[0] (campaign_id 2) calling_hours, replacing the global calling hours)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            CallingHoursScope::Global => write!(f, "{} ({})", self.summary(), self.location),
            CallingHoursScope::Campaign(_) => write!(f, "{} ({}, replacing the global calling hours)", self.summary(), self.location),
        }
    }
}

/// How often one number may be dialled, across campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContactLimits {
    /// Dials of one number allowed in any rolling `window`.
    pub max_attempts: u32,
    pub window: SignedDuration,
}

/// A condition every answer must meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// Inside a retry window (a slot serving the attempt) of the campaign's or the global rules.
    RetryWindows,
    /// Inside the calling hours in force for the campaign.
    CallingHours,
}

impl Constraint {
    fn describe(self) -> &'static str {
        match self {
            Constraint::RetryWindows => "the retry windows",
            Constraint::CallingHours => "calling hours",
        }
    }
}

/// One step of the search: `from` was outside `constraint` in `zone`, which next opens at `to`.
#[derive(Clone, Debug)]
pub struct Postponement {
    pub from: Timestamp,
    pub to: Timestamp,
    pub constraint: Constraint,
    pub zone: TimeZone,
}

/// The conditions an answer must meet, each in every zone of the callee.
struct Search<'a> {
    /// Never empty: the callee's candidate zones, or the file's.
    zones: &'a [TimeZone],
    /// The rules and the attempt to serve; `None` (or a rule set without slots) = any time.
    retry_windows: Option<(&'a RuleSet, u32)>,
    calling_hours: Option<&'a CallingHours>,
}

impl Search<'_> {
    /// The least instant in `[from, until]` inside every constraint in every zone, and when asked,
    /// the steps that led there.
    ///
    /// Each constraint answers "the first instant at or after `t` inside me"; `t` moves to each
    /// later answer, round robin, until every constraint in a row has answered `t` itself. No
    /// answer can pass the least common instant (it is inside every constraint and not before
    /// `t`), and every move lands on the start of one of finitely many intervals before `until`,
    /// so this ends, on the least common instant.
    fn first_common(&self, from: Timestamp, until: Timestamp, mut steps: Option<&mut Vec<Postponement>>) -> Option<Timestamp> {
        debug_assert!(!self.zones.is_empty());
        let constraint_count = self.zones.len() * 2;
        let mut at = from;
        let mut settled = 0;
        let mut index = 0;
        while settled < constraint_count {
            let zone = &self.zones[index / 2];
            let (constraint, found) = if index % 2 == 0 {
                let found = match self.retry_windows {
                    Some((rules, attempt)) if !rules.slots.is_empty() => rules.first_eligible_at_or_after(zone, at, until, attempt)?,
                    _ => at,
                };
                (Constraint::RetryWindows, found)
            } else {
                let found = match self.calling_hours {
                    Some(hours) => hours.windows.first_eligible_at_or_after(zone, at, until, 1)?,
                    None => at,
                };
                (Constraint::CallingHours, found)
            };
            if found > at {
                if let Some(steps) = steps.as_deref_mut() {
                    steps.push(Postponement { from: at, to: found, constraint, zone: zone.clone() });
                }
                at = found;
                settled = 1;
            } else {
                settled += 1;
            }
            index = (index + 1) % constraint_count;
        }
        Some(at)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatusPolicy {
    should_retry: bool,
    /// The status's own cap on attempts, on top of the call's.
    max_attempts: Option<u32>,
}

const RETRY_UNCAPPED: StatusPolicy = StatusPolicy { should_retry: true, max_attempts: None };

/// Validated retry rules: a value that exists is valid.
#[derive(Clone, Debug)]
pub struct RetryRules {
    /// The file the rules came from, for messages.
    source_name: String,
    /// The file's timezone, used when the query carries none.
    timezone: TimeZone,
    /// Budget for new calls whose campaign sets none.
    default_max_attempts: u32,
    /// Interval for outcomes outside every eligible slot (or in one without its own).
    default_retry_interval: SignedDuration,
    disconnected: StatusPolicy,
    rnr: StatusPolicy,
    failed: StatusPolicy,
    global: RuleSet,
    /// The top-level calling hours; `None` = no restriction.
    calling_hours: Option<Arc<CallingHours>>,
    contact_limits: Option<ContactLimits>,
    /// Sorted by campaign id, one entry per id.
    campaigns: Vec<CampaignRules>,
    /// Legacy keys that were accepted and ignored, for a startup warning.
    ignored_keys: Vec<String>,
}

/// One `campaign_rules` entry.
#[derive(Clone, Debug)]
struct CampaignRules {
    campaign_id: u64,
    /// Replaces `RetryRules::global` for the campaign; `None` = the global rules apply.
    rules: Option<RuleSet>,
    /// Replaces `RetryRules::calling_hours` for the campaign; `None` = the global ones apply.
    calling_hours: Option<Arc<CallingHours>>,
}

/// What [`RetryRules::next_retry`] is asked.
#[derive(Clone, Debug)]
pub struct RetryQuery<'a> {
    pub outcome: Outcome,
    /// The instant of the outcome.
    pub at: Timestamp,
    /// The attempt that just ended, 1-based.
    pub attempt: u32,
    /// The call's own budget of attempts, fixed at its creation.
    pub max_attempts: u32,
    /// Selects the campaign's rules and calling hours, if the file has any for it.
    pub campaign_id: u64,
    /// The callee's candidate timezones (several for an ambiguous number): the retry lies inside
    /// the windows and calling hours in every one; the first supplies the interval. Empty = the
    /// file's timezone.
    pub zones: &'a [TimeZone],
}

/// The answer of [`RetryRules::next_retry`].
#[derive(Clone, Debug)]
pub enum RetryDecision {
    /// Dial again at `at`.
    Retry { at: Timestamp, reason: RetryReason },
    /// The call is final; `reason` is its `error_message`: `Max retry attempts reached (N)`,
    /// `Outcome PICKED is final`, `Outcome X is not retryable` or `No retry window available`.
    GiveUp { reason: String },
}

/// How a retry instant was chosen.
#[derive(Clone, Debug)]
pub struct RetryReason {
    /// The retry instant in the first of the callee's zones (the one that chose the interval).
    pub local: Zoned,
    /// The retry instant in the callee's other candidate zones, in the order given.
    pub local_in_other_zones: Vec<Zoned>,
    /// The interval that was added to the outcome's instant.
    pub interval: SignedDuration,
    /// The slot that supplied `interval`; `None` = `defaults`.
    pub interval_slot: Option<Arc<SlotInfo>>,
    /// The outcome's instant plus `interval`.
    pub candidate: Timestamp,
    /// The first slot in file order that holds the retry in the first zone, and on which local
    /// weekday; `None` when the campaign's rules have no slots (every time is eligible).
    pub window: Option<(Arc<SlotInfo>, Weekday)>,
    /// The calling hours the retry respects; `None` when none are configured.
    pub calling_hours: Option<Arc<CallingHours>>,
    /// How the search moved from `candidate` to the retry, in order; empty when `candidate`
    /// itself was inside every constraint in every zone.
    pub postponements: Vec<Postponement>,
}

impl RetryReason {
    /// Whether the retry is later than `candidate`.
    pub fn was_moved(&self) -> bool {
        !self.postponements.is_empty()
    }
}

impl RetryRules {
    /// Parses and validates either form of the file; `source_name` names it in errors.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<RetryRules, RetryConfigError> {
        let builder = Builder { source_name };
        let yaml_error = |source| RetryConfigError::Yaml { source_name: source_name.to_owned(), source };
        // Parse once untyped to tell the two forms apart (and report syntax errors), then again
        // into the form's shape so that type errors keep their line numbers.
        let shape: serde_norway::Value = serde_norway::from_str(text).map_err(yaml_error)?;
        match shape {
            serde_norway::Value::Null => Err(builder.invalid("file", ConfigProblem::EmptyFile)),
            serde_norway::Value::Sequence(_) => builder.build_flat(serde_norway::from_str(text).map_err(yaml_error)?),
            serde_norway::Value::Mapping(_) => builder.build_nested(serde_norway::from_str(text).map_err(yaml_error)?),
            _ => Err(builder.invalid("file", ConfigProblem::NotMappingOrList)),
        }
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<RetryRules, RetryConfigError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RetryConfigError::Read { source_name: source_name.clone(), source })?;
        RetryRules::from_yaml_str(&text, &source_name)
    }

    /// No slots at all (every time is eligible), no calling hours, no contact limits,
    /// max_attempts 3, interval 60 minutes, UTC, and DISCONNECTED, RNR and FAILED retryable.
    pub fn permissive() -> RetryRules {
        RetryRules {
            source_name: "built-in permissive retry rules".to_owned(),
            timezone: TimeZone::UTC,
            default_max_attempts: DEFAULT_MAX_ATTEMPTS,
            default_retry_interval: DEFAULT_RETRY_INTERVAL,
            disconnected: RETRY_UNCAPPED,
            rnr: RETRY_UNCAPPED,
            failed: RETRY_UNCAPPED,
            global: RuleSet::default(),
            calling_hours: None,
            contact_limits: None,
            campaigns: Vec::new(),
            ignored_keys: Vec::new(),
        }
    }

    /// Replaces `defaults.max_attempts` (the `MAX_RETRY_ATTEMPTS` environment override).
    ///
    /// # Panics
    /// If `max_attempts` is 0: the caller validates the environment first and reports 0 as a
    /// configuration error. (Unlike the file, no upper limit is imposed here.)
    pub fn with_default_max_attempts(mut self, max_attempts: u32) -> RetryRules {
        assert!(max_attempts >= 1, "max_attempts must be at least 1");
        self.default_max_attempts = max_attempts;
        self
    }

    /// The budget of attempts for a call whose campaign sets none.
    pub fn default_max_attempts(&self) -> u32 {
        self.default_max_attempts
    }

    /// The file's timezone, used when a query carries none.
    pub fn default_timezone(&self) -> &TimeZone {
        &self.timezone
    }

    /// Keys of the old system's file that were accepted but have no effect
    /// (`scheduler`, `defaults.concurrent_call_limit`).
    pub fn ignored_keys(&self) -> &[String] {
        &self.ignored_keys
    }

    /// The name of the file the rules came from.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The per-number limit on dials across campaigns; `None` = no limit.
    pub fn contact_limits(&self) -> Option<ContactLimits> {
        self.contact_limits
    }

    /// The calling hours in force for the campaign: its own (scope `Campaign`), else the global
    /// ones (scope `Global`); `None` = no restriction.
    pub fn calling_hours_for(&self, campaign_id: u64) -> Option<&CallingHours> {
        self.calling_hours_arc(campaign_id).map(|hours| &**hours)
    }

    /// Decides whether and when the call is dialled again (steps 1-5).
    pub fn next_retry(&self, query: &RetryQuery<'_>) -> RetryDecision {
        // Step 1: the outcome must retry and attempts must remain.
        let policy = match query.outcome {
            Outcome::Picked => return give_up("Outcome PICKED is final".to_owned()),
            Outcome::Disconnected => self.disconnected,
            Outcome::Rnr => self.rnr,
            Outcome::Failed => self.failed,
        };
        if !policy.should_retry {
            return give_up(format!("Outcome {} is not retryable", query.outcome.as_str()));
        }
        let cap = policy.max_attempts.map_or(query.max_attempts, |c| c.min(query.max_attempts));
        if query.attempt >= cap {
            return give_up(format!("Max retry attempts reached ({cap})"));
        }
        let next_attempt = query.attempt + 1;
        let zones = self.zones_or_default(query.zones);
        let first_zone = &zones[0];
        let rules = self.rule_set_for(query.campaign_id);
        let calling_hours = self.calling_hours_arc(query.campaign_id);

        // Steps 2 and 3: the interval of the eligible slot containing the outcome in the first
        // zone, else defaults.
        let slot_at_outcome = rules.eligible_slot_containing(first_zone.to_datetime(query.at), next_attempt);
        let (interval, interval_slot) = match slot_at_outcome {
            Some(DaySlot { retry_interval: Some(interval), file_order, .. }) => (*interval, Some(&rules.slots[*file_order])),
            _ => (self.default_retry_interval, None),
        };

        // Steps 4 and 5: the candidate, or the first instant after it inside everything.
        let Ok(candidate) = query.at.checked_add(interval) else {
            return give_up(NO_WINDOW.to_owned());
        };
        let until = candidate.checked_add(WINDOW_SEARCH_HORIZON).unwrap_or(Timestamp::MAX);
        let search = Search { zones, retry_windows: Some((rules, next_attempt)), calling_hours: calling_hours.map(|h| &**h) };
        let mut postponements = Vec::new();
        let Some(at) = search.first_common(candidate, until, Some(&mut postponements)) else {
            return give_up(NO_WINDOW.to_owned());
        };
        let local = at.to_zoned(first_zone.clone());
        let window = rules.eligible_slot_containing(local.datetime(), next_attempt).map(|slot| (rules.slots[slot.file_order].clone(), local.weekday()));
        RetryDecision::Retry {
            at,
            reason: RetryReason {
                local,
                local_in_other_zones: zones[1..].iter().map(|zone| at.to_zoned(zone.clone())).collect(),
                interval,
                interval_slot: interval_slot.cloned(),
                candidate,
                window,
                calling_hours: calling_hours.cloned(),
                postponements,
            },
        }
    }

    /// The first instant at or after `at` when attempt `attempt` may be dialled: inside a slot
    /// serving it (or any time when the campaign's rules have no slots) and inside calling hours,
    /// in every zone of `zones` (empty = the file's timezone). `at` itself when it qualifies, else
    /// the first instant that does within the search horizon, else `None`. Used for retries that
    /// fell due while the service was down.
    pub fn window_open_at(&self, campaign_id: u64, attempt: u32, at: Timestamp, zones: &[TimeZone]) -> Option<Timestamp> {
        let search = Search {
            zones: self.zones_or_default(zones),
            retry_windows: Some((self.rule_set_for(campaign_id), attempt)),
            calling_hours: self.calling_hours_for(campaign_id),
        };
        search.first_common(at, at.checked_add(WINDOW_SEARCH_HORIZON).unwrap_or(Timestamp::MAX), None)
    }

    /// The first instant at or after `at` inside the campaign's calling hours in every zone of
    /// `zones` (empty = the file's timezone): `at` itself when they are open (or there are none),
    /// else their next opening within the search horizon, else `None`. Retry windows play no
    /// part: this is the check made when any attempt, the first included, is about to be dialled.
    pub fn calling_hours_open_at(&self, campaign_id: u64, zones: &[TimeZone], at: Timestamp) -> Option<Timestamp> {
        let search = Search { zones: self.zones_or_default(zones), retry_windows: None, calling_hours: self.calling_hours_for(campaign_id) };
        search.first_common(at, at.checked_add(WINDOW_SEARCH_HORIZON).unwrap_or(Timestamp::MAX), None)
    }

    /// A short summary for `callmgr check-config`: one line per setting and slot, indented by two
    /// spaces, without a heading (the caller names the file).
    pub fn describe(&self) -> String {
        let mut lines = vec![
            format!("  timezone: {} (a number's or campaign's own timezone takes precedence)", timezone_name(&self.timezone)),
            format!("  defaults: max_attempts {}, retry interval {:#}", self.default_max_attempts, self.default_retry_interval),
        ];
        let statuses: Vec<String> = [("DISCONNECTED", self.disconnected), ("RNR", self.rnr), ("FAILED", self.failed)]
            .into_iter()
            .map(|(name, policy)| match policy {
                StatusPolicy { should_retry: false, .. } => format!("{name} final"),
                StatusPolicy { max_attempts: None, .. } => format!("{name} retried"),
                StatusPolicy { max_attempts: Some(cap), .. } => {
                    format!("{name} retried up to attempt {cap}")
                }
            })
            .collect();
        lines.push(format!("  outcomes: {}, PICKED final", statuses.join(", ")));
        match &self.calling_hours {
            None => lines.push("  calling hours: none, any time".to_owned()),
            Some(hours) => lines.push(format!("  calling hours: {hours}, in the callee's local time (in every candidate zone)")),
        }
        match self.contact_limits {
            None => lines.push("  contact limits: none".to_owned()),
            Some(limits) => {
                lines.push(format!("  contact limits: at most {} dial(s) of a number in any {:#}, across campaigns", limits.max_attempts, limits.window))
            }
        }
        let describe_set = |lines: &mut Vec<String>, title: String, rules: &RuleSet| {
            if rules.slots.is_empty() {
                lines.push(format!("  {title}: no slots, any time is eligible"));
            } else {
                lines.push(format!("  {title}: {} slot(s)", rules.slots.len()));
                lines.extend(rules.slots.iter().map(|s| format!("    {}", s.describe_line())));
            }
        };
        describe_set(&mut lines, "global rules".to_owned(), &self.global);
        for campaign in &self.campaigns {
            let campaign_id = campaign.campaign_id;
            match &campaign.rules {
                Some(rules) => describe_set(&mut lines, format!("campaign {campaign_id} (replaces the global rules)"), rules),
                None => lines.push(format!("  campaign {campaign_id}: the global rules apply")),
            }
            if let Some(hours) = &campaign.calling_hours {
                lines.push(format!("  campaign {campaign_id} calling hours: {hours}"));
            }
        }
        if !self.ignored_keys.is_empty() {
            lines.push(format!("  ignored legacy keys: {}", self.ignored_keys.join(", ")));
        }
        lines.join("\n")
    }

    fn campaign(&self, campaign_id: u64) -> Option<&CampaignRules> {
        let index = self.campaigns.binary_search_by_key(&campaign_id, |c| c.campaign_id).ok()?;
        Some(&self.campaigns[index])
    }

    fn rule_set_for(&self, campaign_id: u64) -> &RuleSet {
        self.campaign(campaign_id).and_then(|c| c.rules.as_ref()).unwrap_or(&self.global)
    }

    fn calling_hours_arc(&self, campaign_id: u64) -> Option<&Arc<CallingHours>> {
        match self.campaign(campaign_id) {
            Some(CampaignRules { calling_hours: Some(hours), .. }) => Some(hours),
            _ => self.calling_hours.as_ref(),
        }
    }

    /// The callee's zones, or the file's when the caller has none.
    fn zones_or_default<'a>(&'a self, zones: &'a [TimeZone]) -> &'a [TimeZone] {
        if zones.is_empty() { std::slice::from_ref(&self.timezone) } else { zones }
    }
}

const NO_WINDOW: &str = "No retry window available";

fn give_up(reason: String) -> RetryDecision {
    RetryDecision::GiveUp { reason }
}

impl fmt::Display for RetryDecision {
    /// For `callmgr retry-plan`: the instant in UTC and local time and how it was chosen, or why
    /// there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryDecision::Retry { at, reason } => {
                let weekday = full_day_name(reason.local.weekday());
                write!(f, "retry at {at} ({}, {weekday})\n{reason}", reason.local)
            }
            RetryDecision::GiveUp { reason } => write!(f, "no retry: {reason}"),
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for local in &self.local_in_other_zones {
            writeln!(f, "also {local} ({}) in another candidate zone of the callee", full_day_name(local.weekday()))?;
        }
        match &self.interval_slot {
            Some(slot) => writeln!(f, "interval: {:#} (from {})", self.interval, slot.location)?,
            None => writeln!(f, "interval: {:#} (from defaults)", self.interval)?,
        }
        match &self.window {
            None => writeln!(f, "window: none configured, any time is eligible")?,
            Some((slot, weekday)) => writeln!(f, "window: {} {}-{} on {}", slot.location, slot.start, slot.end, full_day_name(*weekday))?,
        }
        match &self.calling_hours {
            None => write!(f, "calling hours: none configured")?,
            Some(hours) => write!(f, "calling hours: {hours}")?,
        }
        for (index, step) in self.postponements.iter().enumerate() {
            let from = if index == 0 { format!("outcome + interval = {}", step.from) } else { step.from.to_string() };
            write!(f, "\nmoved: {from} is outside {} in {}; they next open at {}", step.constraint.describe(), timezone_name(&step.zone), step.to)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: raw shapes → RetryRules.

struct Builder<'a> {
    source_name: &'a str,
}

/// A slot after field validation, before the overlap check.
struct SlotDraft {
    info: SlotInfo,
    /// `time_slots[1]` or `[3]`: how another slot of the same rule refers to it.
    short_name: String,
    start_text: String,
    end_text: String,
}

impl Builder<'_> {
    fn invalid(&self, location: impl Into<String>, problem: ConfigProblem) -> RetryConfigError {
        RetryConfigError::Invalid { source_name: self.source_name.to_owned(), location: location.into(), problem }
    }

    fn build_nested(&self, raw: RawNestedFile) -> Result<RetryRules, RetryConfigError> {
        let mut rules = RetryRules::permissive();
        rules.source_name = self.source_name.to_owned();
        if let Some(name) = raw.timezone {
            rules.timezone =
                TimeZone::get(&name).map_err(|e| self.invalid("timezone", ConfigProblem::UnknownTimezone { name: name.clone(), reason: e.to_string() }))?;
        }
        if raw.scheduler {
            rules.ignored_keys.push("scheduler".to_owned());
        }
        if let Some(defaults) = raw.defaults {
            if let Some(value) = defaults.max_attempts {
                rules.default_max_attempts = parse_max_attempts(value).map_err(|p| self.invalid("defaults", p))?;
            }
            let interval = parse_interval(defaults.retry_interval_minutes, defaults.retry_interval).map_err(|p| self.invalid("defaults", p))?;
            if let Some(interval) = interval {
                rules.default_retry_interval = interval;
            }
            if defaults.concurrent_call_limit {
                rules.ignored_keys.push("defaults.concurrent_call_limit".to_owned());
            }
        }
        if let Some(statuses) = raw.status_retry_rules {
            self.build_statuses(statuses, &mut rules)?;
        }
        if let Some(raw_hours) = raw.calling_hours {
            rules.calling_hours = Some(Arc::new(self.build_calling_hours(raw_hours, "calling_hours", CallingHoursScope::Global)?));
        }
        if let Some(limits) = raw.contact_limits {
            rules.contact_limits = Some(self.build_contact_limits(limits)?);
        }
        let global = self.build_rules(raw.global_rules.unwrap_or_default(), "global_rules")?;
        rules.global = RuleSet::new(global);
        let mut first_location_by_campaign: Vec<(u64, String)> = Vec::new();
        for (index, campaign) in raw.campaign_rules.unwrap_or_default().into_iter().enumerate() {
            let id = campaign.campaign_id;
            let location = match &campaign.name {
                Some(name) => format!("campaign_rules[{index}] {name:?} (campaign_id {id})"),
                None => format!("campaign_rules[{index}] (campaign_id {id})"),
            };
            if let Some((_, first)) = first_location_by_campaign.iter().find(|(c, _)| *c == id) {
                let problem = ConfigProblem::DuplicateCampaign { campaign_id: id, first: first.clone() };
                return Err(self.invalid(location, problem));
            }
            if campaign.rules.is_none() && campaign.calling_hours.is_none() {
                return Err(self.invalid(location, ConfigProblem::EmptyCampaignEntry));
            }
            let calling_hours = match campaign.calling_hours {
                Some(raw_hours) => {
                    Some(Arc::new(self.build_calling_hours(raw_hours, &format!("{location} calling_hours"), CallingHoursScope::Campaign(id))?))
                }
                None => None,
            };
            let campaign_rules = match campaign.rules {
                Some(raw_rules) => Some(RuleSet::new(self.build_rules(raw_rules, &format!("{location} rules"))?)),
                None => None,
            };
            rules.campaigns.push(CampaignRules { campaign_id: id, rules: campaign_rules, calling_hours });
            first_location_by_campaign.push((id, format!("campaign_rules[{index}]")));
        }
        rules.campaigns.sort_by_key(|c| c.campaign_id);
        Ok(rules)
    }

    /// `calling_hours` (one mapping or a list of them); `prefix` is the key's location.
    fn build_calling_hours(&self, raw: RawCallingHours, prefix: &str, scope: CallingHoursScope) -> Result<CallingHours, RetryConfigError> {
        let raw_entries: Vec<(String, RawCallingHoursEntry)> = match raw {
            RawCallingHours::One(entry) => vec![(prefix.to_owned(), entry)],
            RawCallingHours::List(entries) if entries.is_empty() => return Err(self.invalid(prefix, ConfigProblem::NoCallingHours)),
            RawCallingHours::List(entries) => entries.into_iter().enumerate().map(|(index, entry)| (format!("{prefix}[{index}]"), entry)).collect(),
        };
        let mut drafts = Vec::with_capacity(raw_entries.len());
        for (location, entry) in raw_entries {
            let days = self.build_days(&entry.days, &location)?;
            let fields =
                SlotFields { start_time: entry.start_time, end_time: entry.end_time, max_attempts: None, retry_interval_minutes: None, retry_interval: None };
            // Overlap messages name the other entry by its full location.
            drafts.push(self.build_slot(location.clone(), location, days, fields)?);
        }
        self.check_overlaps(&drafts)?;
        let entries =
            drafts.into_iter().map(|d| CallingHoursEntry { location: d.info.location, days: d.info.days, start: d.info.start, end: d.info.end }).collect();
        Ok(CallingHours::new(prefix.to_owned(), scope, entries))
    }

    fn build_contact_limits(&self, raw: RawContactLimits) -> Result<ContactLimits, RetryConfigError> {
        let location = "contact_limits";
        let max_attempts = parse_max_attempts(raw.max_attempts).map_err(|p| self.invalid(location, p))?;
        let window = parse_window(&raw.window).map_err(|p| self.invalid(location, p))?;
        Ok(ContactLimits { max_attempts, window })
    }

    /// Non-empty, known, each day once; sorted Monday first.
    fn build_days(&self, texts: &[String], location: &str) -> Result<Vec<Weekday>, RetryConfigError> {
        if texts.is_empty() {
            return Err(self.invalid(location, ConfigProblem::NoDays));
        }
        let mut days = Vec::with_capacity(texts.len());
        for text in texts {
            let day = parse_day(text).map_err(|p| self.invalid(location, p))?;
            if days.contains(&day) {
                let problem = ConfigProblem::DuplicateDay { day: full_day_name(day).to_owned() };
                return Err(self.invalid(location, problem));
            }
            days.push(day);
        }
        days.sort_by_key(|d| weekday_index(*d));
        Ok(days)
    }

    fn build_statuses(&self, raw: RawStatusRules, rules: &mut RetryRules) -> Result<(), RetryConfigError> {
        let retryable =
            [("DISCONNECTED", raw.disconnected, &mut rules.disconnected), ("RNR", raw.rnr, &mut rules.rnr), ("FAILED", raw.failed, &mut rules.failed)];
        for (status, raw_rule, policy) in retryable {
            let location = format!("status_retry_rules.{status}");
            let Some(raw_rule) = raw_rule else {
                return Err(self.invalid(location, ConfigProblem::StatusMissing { status }));
            };
            let max_attempts = raw_rule.max_attempts.map(parse_max_attempts).transpose().map_err(|p| self.invalid(&location, p))?;
            if !raw_rule.should_retry && max_attempts.is_some() {
                return Err(self.invalid(location, ConfigProblem::CapWithoutRetry));
            }
            *policy = StatusPolicy { should_retry: raw_rule.should_retry, max_attempts };
        }
        if let Some(picked) = raw.picked {
            if picked.should_retry {
                return Err(self.invalid("status_retry_rules.PICKED", ConfigProblem::PickedRetry));
            }
            if picked.max_attempts.is_some() {
                let problem = ConfigProblem::CapWithoutRetry;
                return Err(self.invalid("status_retry_rules.PICKED", problem));
            }
        }
        Ok(())
    }

    /// The slots of a list of nested-form rules; `prefix` is the list's location.
    fn build_rules(&self, raw_rules: Vec<RawRule>, prefix: &str) -> Result<Vec<SlotInfo>, RetryConfigError> {
        let mut slots = Vec::new();
        for (rule_index, rule) in raw_rules.into_iter().enumerate() {
            let rule_location = match &rule.name {
                Some(name) => format!("{prefix}[{rule_index}] {name:?}"),
                None => format!("{prefix}[{rule_index}]"),
            };
            let days = self.build_days(&rule.days, &rule_location)?;
            if rule.time_slots.is_empty() {
                return Err(self.invalid(rule_location, ConfigProblem::NoSlots));
            }
            let mut drafts = Vec::with_capacity(rule.time_slots.len());
            for (slot_index, raw) in rule.time_slots.into_iter().enumerate() {
                let short_name = format!("time_slots[{slot_index}]");
                let location = format!("{rule_location} {short_name}");
                let fields = SlotFields {
                    start_time: raw.start_time,
                    end_time: raw.end_time,
                    max_attempts: raw.max_attempts,
                    retry_interval_minutes: raw.retry_interval_minutes,
                    retry_interval: raw.retry_interval,
                };
                drafts.push(self.build_slot(location, short_name, days.clone(), fields)?);
            }
            self.check_overlaps(&drafts)?;
            slots.extend(drafts.into_iter().map(|d| d.info));
        }
        Ok(slots)
    }

    /// The flat form: one rule whose slots are the list items.
    fn build_flat(&self, raw: Vec<RawFlatSlot>) -> Result<RetryRules, RetryConfigError> {
        let mut drafts = Vec::with_capacity(raw.len());
        for (index, item) in raw.into_iter().enumerate() {
            let location = format!("[{index}]");
            let day = parse_day(&item.day_of_week).map_err(|p| self.invalid(&location, p))?;
            let fields = SlotFields {
                start_time: item.start_time,
                end_time: item.end_time,
                max_attempts: item.max_attempts,
                retry_interval_minutes: item.retry_interval_minutes,
                retry_interval: item.retry_interval,
            };
            drafts.push(self.build_slot(location.clone(), location, vec![day], fields)?);
        }
        self.check_overlaps(&drafts)?;
        let mut rules = RetryRules::permissive();
        rules.source_name = self.source_name.to_owned();
        rules.global = RuleSet::new(drafts.into_iter().map(|d| d.info).collect());
        Ok(rules)
    }

    fn build_slot(&self, location: String, short_name: String, days: Vec<Weekday>, fields: SlotFields) -> Result<SlotDraft, RetryConfigError> {
        let time = |field: &'static str, text: &str| {
            TimeOfDay::parse(text).ok_or_else(|| {
                let problem = ConfigProblem::BadTime { field, value: text.to_owned() };
                self.invalid(&location, problem)
            })
        };
        let start = time("start_time", &fields.start_time)?;
        let end = time("end_time", &fields.end_time)?;
        let (start_text, end_text) = (fields.start_time, fields.end_time);
        if start.seconds == SECONDS_PER_DAY {
            return Err(self.invalid(location, ConfigProblem::StartAtEndOfDay));
        }
        if end < start {
            let problem = ConfigProblem::EndBeforeStart { start: start_text, end: end_text };
            return Err(self.invalid(location, problem));
        }
        if end == start {
            let problem = ConfigProblem::EmptySlot { start: start_text, end: end_text };
            return Err(self.invalid(location, problem));
        }
        let max_attempts = fields.max_attempts.map(parse_max_attempts).transpose().map_err(|p| self.invalid(&location, p))?;
        let retry_interval = parse_interval(fields.retry_interval_minutes, fields.retry_interval).map_err(|p| self.invalid(&location, p))?;
        Ok(SlotDraft { info: SlotInfo { location, days, start, end, max_attempts, retry_interval }, short_name, start_text, end_text })
    }

    /// Slots of one rule must not overlap on a day they share; the later one is reported.
    fn check_overlaps(&self, drafts: &[SlotDraft]) -> Result<(), RetryConfigError> {
        for (later_index, later) in drafts.iter().enumerate() {
            for earlier in &drafts[..later_index] {
                let (a, b) = (&earlier.info, &later.info);
                let overlaps = a.start < b.end && b.start < a.end;
                let shared_day = a.days.iter().find(|d| b.days.contains(d));
                if let (true, Some(day)) = (overlaps, shared_day) {
                    let problem = ConfigProblem::OverlappingSlots {
                        range: format!("{}-{}", later.start_text, later.end_text),
                        other: format!("{} {}-{} on {}", earlier.short_name, earlier.start_text, earlier.end_text, full_day_name(*day)),
                    };
                    return Err(self.invalid(&b.location, problem));
                }
            }
        }
        Ok(())
    }
}

/// The fields shared by nested-form slots and flat-form items.
struct SlotFields {
    start_time: String,
    end_time: String,
    max_attempts: Option<i64>,
    retry_interval_minutes: Option<i64>,
    retry_interval: Option<String>,
}

fn parse_max_attempts(value: i64) -> Result<u32, ConfigProblem> {
    match u32::try_from(value) {
        Ok(n) if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) => Ok(n),
        _ => Err(ConfigProblem::MaxAttemptsOutOfRange { value }),
    }
}

/// `retry_interval_minutes: 60` or `retry_interval: "90s"` (at most one of them).
fn parse_interval(minutes: Option<i64>, text: Option<String>) -> Result<Option<SignedDuration>, ConfigProblem> {
    let (interval, written) = match (minutes, text) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(ConfigProblem::BothIntervals),
        (Some(minutes), None) => {
            let written = format!("{minutes} minutes");
            if minutes > RETRY_INTERVAL_MAX.as_mins() {
                return Err(ConfigProblem::IntervalTooLong { value: written });
            }
            (SignedDuration::from_mins(minutes), written)
        }
        (None, Some(text)) => {
            let interval = text.trim().parse::<SignedDuration>().map_err(|_| ConfigProblem::BadDuration { value: text.clone() })?;
            (interval, text)
        }
    };
    if interval <= SignedDuration::ZERO {
        return Err(ConfigProblem::IntervalNotPositive { value: written });
    }
    if interval > RETRY_INTERVAL_MAX {
        return Err(ConfigProblem::IntervalTooLong { value: written });
    }
    Ok(Some(interval))
}

/// A duration with a unit, days counting 24 hours: `90m`, `24h`, `7d`.
fn parse_window(text: &str) -> Result<SignedDuration, ConfigProblem> {
    let bad = || ConfigProblem::BadWindow { value: text.to_owned() };
    let span = text.trim().parse::<jiff::Span>().map_err(|_| bad())?;
    let window = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|_| bad())?;
    if window <= SignedDuration::ZERO {
        return Err(ConfigProblem::WindowNotPositive { value: text.to_owned() });
    }
    if window > CONTACT_WINDOW_MAX {
        return Err(ConfigProblem::WindowTooLong { value: text.to_owned() });
    }
    Ok(window)
}

/// Full English day names or their three-letter abbreviations, any case.
fn parse_day(text: &str) -> Result<Weekday, ConfigProblem> {
    let day = match text.trim().to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => {
            return Err(ConfigProblem::UnknownDay { value: text.to_owned() });
        }
    };
    Ok(day)
}

fn weekday_index(day: Weekday) -> usize {
    day.to_monday_zero_offset() as usize
}

fn full_day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

fn short_day_name(day: Weekday) -> &'static str {
    &full_day_name(day)[..3]
}

/// `mon tue wed`.
fn day_list(days: &[Weekday]) -> String {
    let names: Vec<&str> = days.iter().map(|d| short_day_name(*d)).collect();
    names.join(" ")
}

fn timezone_name(timezone: &TimeZone) -> String {
    match timezone.iana_name() {
        Some(name) => name.to_owned(),
        None => format!("{timezone:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "config/retry_config.yaml";

    /// A query with the usual defaults: RNR, attempt 1 of 3, campaign 1, the file's timezone.
    #[derive(Clone, Copy)]
    struct Q {
        outcome: Outcome,
        at: &'static str,
        attempt: u32,
        max_attempts: u32,
        campaign_id: u64,
        /// The callee's zones; empty = the file's.
        zones: &'static [&'static str],
    }

    fn q(at: &'static str) -> Q {
        Q { outcome: Outcome::Rnr, at, attempt: 1, max_attempts: 3, campaign_id: 1, zones: &[] }
    }

    impl Q {
        fn outcome(self, outcome: Outcome) -> Q {
            Q { outcome, ..self }
        }
        fn attempt(self, attempt: u32, max_attempts: u32) -> Q {
            Q { attempt, max_attempts, ..self }
        }
        fn campaign(self, campaign_id: u64) -> Q {
            Q { campaign_id, ..self }
        }
        fn zones(self, zones: &'static [&'static str]) -> Q {
            Q { zones, ..self }
        }
    }

    fn rules(yaml: &str) -> RetryRules {
        RetryRules::from_yaml_str(yaml, FILE).unwrap_or_else(|e| panic!("{e}"))
    }

    fn zones(names: &[&str]) -> Vec<TimeZone> {
        names.iter().map(|name| TimeZone::get(name).unwrap()).collect()
    }

    fn ask(rules: &RetryRules, query: Q) -> RetryDecision {
        let zones = zones(query.zones);
        rules.next_retry(&RetryQuery {
            outcome: query.outcome,
            at: query.at.parse().unwrap(),
            attempt: query.attempt,
            max_attempts: query.max_attempts,
            campaign_id: query.campaign_id,
            zones: &zones,
        })
    }

    /// One line per decision: `<instant> <window slot> <local weekday> +<interval>[ moved]`,
    /// `<instant> anytime +<interval>`, or `give up: <reason>`.
    fn summary(decision: &RetryDecision) -> String {
        match decision {
            RetryDecision::Retry { at, reason } => {
                let window = match &reason.window {
                    Some((slot, weekday)) => {
                        format!("{} {}", slot.location, full_day_name(*weekday))
                    }
                    None => "anytime".to_owned(),
                };
                let moved = if reason.was_moved() { " moved" } else { "" };
                format!("{at} {window} +{:#}{moved}", reason.interval)
            }
            RetryDecision::GiveUp { reason } => format!("give up: {reason}"),
        }
    }

    #[track_caller]
    fn check(yaml: &str, query: Q, expected: &str) {
        assert_eq!(summary(&ask(&rules(yaml), query)), expected, "query at {}", query.at);
    }

    /// Every validation error names the file, the place and the problem: compared whole.
    #[track_caller]
    fn check_error(yaml: &str, expected: &str) {
        match RetryRules::from_yaml_str(yaml, FILE) {
            Ok(_) => panic!("accepted, expected: {expected}"),
            Err(error) => assert_eq!(error.to_string(), expected),
        }
    }

    /// YAML-level errors carry serde's wording, so only the parts we rely on are compared.
    #[track_caller]
    fn check_yaml_error(yaml: &str, fragments: &[&str]) {
        let error = match RetryRules::from_yaml_str(yaml, FILE) {
            Ok(_) => panic!("accepted, expected an error with {fragments:?}"),
            Err(error) => error,
        };
        let message = error.to_string();
        assert!(matches!(error, RetryConfigError::Yaml { .. }), "{message}");
        assert!(message.starts_with("config/retry_config.yaml: "), "{message}");
        assert!(error.line().is_some(), "{message}");
        for fragment in fragments {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
    }

    /// The reference system's shape: weekdays 09-17 hourly, weekends 10-12 hourly and 19-20
    /// every 30 minutes, in New York. In January 2026 New York is at -05:00; 2026-01-05 is a
    /// Monday.
    const REFERENCE: &str = r#"
timezone: "America/New_York"
defaults: {max_attempts: 3, retry_interval_minutes: 60}
global_rules:
  - name: "Weekday hours"
    days: [monday, tuesday, wednesday, thursday, friday]
    time_slots:
      - {start_time: "09:00", end_time: "17:00", retry_interval_minutes: 60}
  - name: "Weekend"
    days: [saturday, sunday]
    time_slots:
      - {start_time: "10:00", end_time: "12:00", retry_interval_minutes: 60}
      - {start_time: "19:00", end_time: "20:00", retry_interval_minutes: 30}
"#;

    #[test]
    fn nested_form_windows() {
        let weekday = r#"global_rules[0] "Weekday hours" time_slots[0]"#;
        let cases = [
            // Inside a window: plus the slot's interval.
            (q("2026-01-05T15:00:00Z"), format!("2026-01-05T16:00:00Z {weekday} monday +1h")),
            // Monday 16:30 + 1h is after hours: Tuesday 09:00.
            (q("2026-01-05T21:30:00Z"), format!("2026-01-06T14:00:00Z {weekday} tuesday +1h moved")),
            // Monday 03:00 is outside every slot: defaults (1h), then the 09:00 opening.
            (q("2026-01-05T08:00:00Z"), format!("2026-01-05T14:00:00Z {weekday} monday +1h moved")),
            // Friday 16:30: Saturday 10:00.
            (q("2026-01-09T21:30:00Z"), r#"2026-01-10T15:00:00Z global_rules[1] "Weekend" time_slots[0] saturday +1h moved"#.to_owned()),
            // Saturday 11:30 + 1h = 12:30: the 19:00 slot.
            (q("2026-01-10T16:30:00Z"), r#"2026-01-11T00:00:00Z global_rules[1] "Weekend" time_slots[1] saturday +1h moved"#.to_owned()),
            // Saturday 19:10 uses that slot's 30 minutes.
            (q("2026-01-11T00:10:00Z"), r#"2026-01-11T00:40:00Z global_rules[1] "Weekend" time_slots[1] saturday +30m"#.to_owned()),
            // Saturday 19:45 + 30m = 20:15: Sunday 10:00.
            (q("2026-01-11T00:45:00Z"), r#"2026-01-11T15:00:00Z global_rules[1] "Weekend" time_slots[0] sunday +30m moved"#.to_owned()),
            // The callee's timezone wins over the file's: Monday 09:30 in Kolkata (+05:30).
            (q("2026-01-05T04:00:00Z").zones(&["Asia/Kolkata"]), format!("2026-01-05T05:00:00Z {weekday} monday +1h")),
            // Kolkata Monday 16:30 + 1h: Tuesday 09:00 Kolkata.
            (q("2026-01-05T11:00:00Z").zones(&["Asia/Kolkata"]), format!("2026-01-06T03:30:00Z {weekday} tuesday +1h moved")),
        ];
        for (query, expected) in cases {
            check(REFERENCE, query, &expected);
        }
    }

    #[test]
    fn caps_and_final_outcomes() {
        let at = "2026-01-05T15:00:00Z";
        check(REFERENCE, q(at).attempt(2, 3), &format!("2026-01-05T16:00:00Z {} monday +1h", r#"global_rules[0] "Weekday hours" time_slots[0]"#));
        check(REFERENCE, q(at).attempt(3, 3), "give up: Max retry attempts reached (3)");
        check(REFERENCE, q(at).attempt(4, 3), "give up: Max retry attempts reached (3)");
        check(REFERENCE, q(at).attempt(1, 1), "give up: Max retry attempts reached (1)");
        check(REFERENCE, q(at).attempt(5, 0), "give up: Max retry attempts reached (0)");
        check(REFERENCE, q(at).outcome(Outcome::Picked), "give up: Outcome PICKED is final");
        for outcome in [Outcome::Disconnected, Outcome::Failed] {
            check(
                REFERENCE,
                q(at).outcome(outcome).attempt(2, 3),
                &format!("2026-01-05T16:00:00Z {} monday +1h", r#"global_rules[0] "Weekday hours" time_slots[0]"#),
            );
        }
    }

    #[test]
    fn status_rules() {
        let yaml = r#"
defaults: {retry_interval: "10m"}
status_retry_rules:
  DISCONNECTED: {should_retry: true}
  RNR: {should_retry: false}
  FAILED: {should_retry: true, max_attempts: 2}
  PICKED: {should_retry: false}
"#;
        let at = "2026-01-05T10:00:00Z";
        let failed = q(at).outcome(Outcome::Failed);
        check(yaml, q(at), "give up: Outcome RNR is not retryable");
        check(yaml, q(at).outcome(Outcome::Picked), "give up: Outcome PICKED is final");
        check(yaml, q(at).outcome(Outcome::Disconnected).attempt(2, 3), "2026-01-05T10:10:00Z anytime +10m");
        check(yaml, failed.attempt(1, 5), "2026-01-05T10:10:00Z anytime +10m");
        // The status's cap and the call's: whichever is hit is reported.
        check(yaml, failed.attempt(2, 5), "give up: Max retry attempts reached (2)");
        check(yaml, failed.attempt(1, 1), "give up: Max retry attempts reached (1)");
        let roomy = yaml.replace("max_attempts: 2", "max_attempts: 4");
        check(&roomy, failed.attempt(3, 3), "give up: Max retry attempts reached (3)");
        check(&roomy, failed.attempt(3, 9), "2026-01-05T10:10:00Z anytime +10m");
        check(&roomy, failed.attempt(4, 9), "give up: Max retry attempts reached (4)");
    }

    #[test]
    fn campaign_rules_replace_global_rules() {
        let yaml = r#"
global_rules:
  - days: [monday, tuesday, wednesday, thursday, friday]
    time_slots: [{start_time: "09:00", end_time: "17:00"}]
campaign_rules:
  - campaign_id: 7
    name: "Round the clock"
    rules:
      - days: [mon, TUE, Wednesday, thu, Fri, sat, SUNDAY]
        time_slots: [{start_time: "00:00", end_time: "24:00", retry_interval: "30m"}]
  - campaign_id: 8
    rules: []
"#;
        let saturday_noon = q("2026-01-10T12:00:00Z");
        let campaign_7 = r#"campaign_rules[0] "Round the clock" (campaign_id 7) rules[0] time_slots[0]"#;
        check(yaml, saturday_noon.campaign(7), &format!("2026-01-10T12:30:00Z {campaign_7} saturday +30m"));
        check(yaml, saturday_noon.campaign(1), "2026-01-12T09:00:00Z global_rules[0] time_slots[0] monday +1h moved");
        // No slots for campaign 8: any time.
        check(yaml, saturday_noon.campaign(8), "2026-01-10T13:00:00Z anytime +1h");
    }

    #[test]
    fn flat_form_from_the_reference_system() {
        let yaml = r#"
# Saturday/Sunday: 10AM-12PM, 7PM-8PM
- day_of_week: "saturday"
  start_time: "10:00:00"
  end_time: "12:00:00"
  retry_interval_minutes: 60

- day_of_week: "saturday"
  start_time: "19:00:00"
  end_time: "20:00:00"
  retry_interval_minutes: 30
- {day_of_week: Sun, start_time: "10:00", end_time: "12:00", max_attempts: 2}
"#;
        check(yaml, q("2026-01-10T10:30:00Z"), "2026-01-10T11:30:00Z [0] saturday +1h");
        check(yaml, q("2026-01-10T11:30:00Z"), "2026-01-10T19:00:00Z [1] saturday +1h moved");
        check(yaml, q("2026-01-10T19:10:00Z"), "2026-01-10T19:40:00Z [1] saturday +30m");
        check(yaml, q("2026-01-10T19:45:00Z"), "2026-01-11T10:00:00Z [2] sunday +30m moved");
        // Attempt 3 is beyond the Sunday slot's cap: the next Saturday.
        check(yaml, q("2026-01-10T19:45:00Z").attempt(2, 3), "2026-01-17T10:00:00Z [0] saturday +30m moved");
        check(yaml, q("2026-01-06T10:00:00Z"), "2026-01-10T10:00:00Z [0] saturday +1h moved");
    }

    #[test]
    fn end_of_day_and_seconds() {
        let late = r#"
global_rules:
  - days: [mon, tue, wed, thu, fri, sat, sun]
    time_slots: [{start_time: "22:00", end_time: "24:00", retry_interval: "1h"}]
"#;
        let slot = "global_rules[0] time_slots[0]";
        check(late, q("2026-01-05T22:15:00Z"), &format!("2026-01-05T23:15:00Z {slot} monday +1h"));
        check(late, q("2026-01-05T23:30:00Z"), &format!("2026-01-06T22:00:00Z {slot} tuesday +1h moved"));
        // 23:59:59 is inside [22:00, 24:00); 00:59:59 is not.
        check(late, q("2026-01-05T22:59:59Z"), &format!("2026-01-05T23:59:59Z {slot} monday +1h"));
        check(late, q("2026-01-05T23:00:00Z"), &format!("2026-01-06T22:00:00Z {slot} tuesday +1h moved"));
        check(&late.replace("\"24:00\"", "\"24:00:00\""), q("2026-01-05T22:15:00Z"), &format!("2026-01-05T23:15:00Z {slot} monday +1h"));

        let seconds = r#"
defaults: {retry_interval: "90s"}
global_rules:
  - days: [monday]
    time_slots: [{start_time: "10:00:30", end_time: "10:30:00"}]
"#;
        check(seconds, q("2026-01-05T09:58:00Z"), &format!("2026-01-05T10:00:30Z {slot} monday +1m 30s moved"));
        check(seconds, q("2026-01-05T09:59:00Z"), &format!("2026-01-05T10:00:30Z {slot} monday +1m 30s"));
        check(seconds, q("2026-01-05T10:28:30Z"), &format!("2026-01-12T10:00:30Z {slot} monday +1m 30s moved"));
        check(seconds, q("2026-01-05T10:28:29Z"), &format!("2026-01-05T10:29:59Z {slot} monday +1m 30s"));
    }

    #[test]
    fn durations_and_defaults() {
        let at = q("2026-01-05T10:00:00Z");
        check("{}", at, "2026-01-05T11:00:00Z anytime +1h");
        check("defaults: {retry_interval: 500ms}", at, "2026-01-05T10:00:00.5Z anytime +500ms");
        check("defaults: {retry_interval: 1m30s}", at, "2026-01-05T10:01:30Z anytime +1m 30s");
        check("defaults: {retry_interval: 2h}", at, "2026-01-05T12:00:00Z anytime +2h");
        check("defaults: {retry_interval: \"5m\"}", at, "2026-01-05T10:05:00Z anytime +5m");
        check("defaults: {retry_interval_minutes: 15}", at, "2026-01-05T10:15:00Z anytime +15m");
        // Unquoted times are strings in YAML 1.2.
        check(
            "global_rules: [{days: [mon], time_slots: [{start_time: 09:00, end_time: 10:00:00}]}]",
            q("2026-01-05T08:00:00Z"),
            "2026-01-05T09:00:00Z global_rules[0] time_slots[0] monday +1h",
        );
        assert_eq!(rules("{}").default_max_attempts(), 3);
        assert_eq!(rules("defaults: {max_attempts: 5}").default_max_attempts(), 5);
        assert_eq!(rules("defaults: {max_attempts: 5}").with_default_max_attempts(7).default_max_attempts(), 7);
        assert_eq!(rules("timezone: Europe/London").default_timezone().iana_name(), Some("Europe/London"));
        assert_eq!(RetryRules::permissive().default_timezone().iana_name(), Some("UTC"));
        check_permissive(at);
    }

    fn check_permissive(at: Q) {
        let permissive = RetryRules::permissive();
        assert_eq!(permissive.default_max_attempts(), 3);
        assert!(permissive.ignored_keys().is_empty());
        assert_eq!(summary(&ask(&permissive, at)), "2026-01-05T11:00:00Z anytime +1h");
        assert_eq!(summary(&ask(&permissive, at.outcome(Outcome::Failed))), "2026-01-05T11:00:00Z anytime +1h");
        assert_eq!(summary(&ask(&permissive, at.attempt(3, 3))), "give up: Max retry attempts reached (3)");
    }

    #[test]
    fn per_slot_caps() {
        let yaml = r#"
global_rules:
  - name: "Mornings for early attempts"
    days: [monday, tuesday, wednesday, thursday, friday]
    time_slots:
      - {start_time: "09:00", end_time: "12:00", max_attempts: 2, retry_interval_minutes: 30}
      - {start_time: "14:00", end_time: "17:00"}
"#;
        let morning = r#"global_rules[0] "Mornings for early attempts" time_slots[0]"#;
        let afternoon = r#"global_rules[0] "Mornings for early attempts" time_slots[1]"#;
        // Attempt 2 may use the morning slot and its interval...
        check(yaml, q("2026-01-05T10:00:00Z").attempt(1, 5), &format!("2026-01-05T10:30:00Z {morning} monday +30m"));
        // ...attempt 3 may not: defaults, and the afternoon.
        check(yaml, q("2026-01-05T10:00:00Z").attempt(2, 5), &format!("2026-01-05T14:00:00Z {afternoon} monday +1h moved"));
        check(yaml, q("2026-01-05T16:30:00Z").attempt(2, 5), &format!("2026-01-06T14:00:00Z {afternoon} tuesday +1h moved"));
        let only_capped = r#"global_rules: [{days: [mon], time_slots: [{start_time: "09:00", end_time: "12:00", max_attempts: 2}]}]"#;
        check(only_capped, q("2026-01-05T10:00:00Z").attempt(2, 5), "give up: No retry window available");
        check(only_capped, q("2026-01-05T10:00:00Z").attempt(1, 5), "2026-01-05T11:00:00Z global_rules[0] time_slots[0] monday +1h");
    }

    /// The old system's file, as printed in its setup guide.
    const LEGACY: &str = r#"
# Global retry rules (apply to all campaigns)
global_rules:
  - name: "Weekday Business Hours"
    days: ["monday", "tuesday", "wednesday", "thursday", "friday"]
    time_slots:
      - start_time: "09:00"
        end_time: "17:00"
        max_attempts: 3
        retry_interval_minutes: 60

# Campaign-specific rules (override global)
campaign_rules:
  - campaign_id: 1
    name: "High Priority Campaign"
    rules:
      - name: "Aggressive Retry"
        days: ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        time_slots:
          - start_time: "00:00"
            end_time: "23:59"
            max_attempts: 5
            retry_interval_minutes: 30

# Default settings
defaults:
  max_attempts: 3
  retry_interval_minutes: 60
  concurrent_call_limit: 100

# Scheduler settings
scheduler:
  check_interval_minutes: 1
  batch_size: 100
  max_concurrent_retries: 50
"#;

    #[test]
    fn legacy_keys_are_ignored_and_listed() {
        let legacy = rules(LEGACY);
        assert_eq!(legacy.ignored_keys(), ["scheduler", "defaults.concurrent_call_limit"]);
        let aggressive = r#"campaign_rules[0] "High Priority Campaign" (campaign_id 1) rules[0] "Aggressive Retry" time_slots[0]"#;
        let saturday = q("2026-01-10T12:00:00Z");
        check(LEGACY, saturday.attempt(4, 5), &format!("2026-01-10T12:30:00Z {aggressive} saturday +30m"));
        // 23:59 is the end of that slot: a minute each night is outside it.
        check(LEGACY, q("2026-01-10T23:29:00Z"), &format!("2026-01-11T00:00:00Z {aggressive} sunday +30m moved"));
        // Global slots serve attempts up to 3 only.
        check(LEGACY, saturday.campaign(2).attempt(3, 5), "give up: No retry window available");
        check(LEGACY, saturday.campaign(2).attempt(2, 5), r#"2026-01-12T09:00:00Z global_rules[0] "Weekday Business Hours" time_slots[0] monday +1h moved"#);
        assert_eq!(rules("scheduler:\ndefaults: {concurrent_call_limit: null}").ignored_keys(), ["scheduler", "defaults.concurrent_call_limit"]);
        assert!(rules(REFERENCE).ignored_keys().is_empty());
    }

    #[test]
    fn validation_errors_name_file_rule_slot_and_problem() {
        let slot = |start: &str, end: &str| format!("{{start_time: \"{start}\", end_time: \"{end}\"}}");
        let weekday = |slots: &str| format!("global_rules:\n  - name: \"Weekday hours\"\n    days: [monday, friday]\n    time_slots: [{slots}]\n");
        let rule = r#"config/retry_config.yaml: global_rules[0] "Weekday hours""#;
        let cases: Vec<(String, String)> = vec![
            (weekday(&format!("{}, {}", slot("09:00", "12:00"), slot("09:00", "08:00"))), format!("{rule} time_slots[1]: end_time 08:00 is before start_time 09:00")),
            (weekday(&slot("09:00", "09:00:00")), format!("{rule} time_slots[0]: end_time 09:00:00 equals start_time 09:00: the slot is empty")),
            (weekday(&slot("9h", "10:00")), format!("{rule} time_slots[0]: start_time \"9h\" is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)")),
            (weekday(&slot("09:00", "25:00")), format!("{rule} time_slots[0]: end_time \"25:00\" is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)")),
            (weekday(&slot("09:00", "24:00:01")), format!("{rule} time_slots[0]: end_time \"24:00:01\" is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)")),
            (weekday(&slot("09:60", "10:00")), format!("{rule} time_slots[0]: start_time \"09:60\" is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)")),
            (weekday(&slot("09:00:5", "10:00")), format!("{rule} time_slots[0]: start_time \"09:00:5\" is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)")),
            (weekday(&slot("09:00:00:00", "10:00")), format!("{rule} time_slots[0]: start_time \"09:00:00:00\" is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)")),
            (weekday(&slot("24:00", "24:00")), format!("{rule} time_slots[0]: start_time 24:00 is the end of the day; a slot cannot start there")),
            (weekday(&format!("{}, {}", slot("09:00", "17:00"), slot("16:00", "18:00"))), format!("{rule} time_slots[1]: 16:00-18:00 overlaps time_slots[0] 09:00-17:00 on monday")),
            (weekday(&format!("{}, {}, {}", slot("09:00", "10:00"), slot("12:00", "13:00"), slot("08:00", "24:00"))), format!("{rule} time_slots[2]: 08:00-24:00 overlaps time_slots[0] 09:00-10:00 on monday")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval_minutes: 0}"), format!("{rule} time_slots[0]: the retry interval must be positive, got 0 minutes")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval_minutes: -5}"), format!("{rule} time_slots[0]: the retry interval must be positive, got -5 minutes")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval: 0s}"), format!("{rule} time_slots[0]: the retry interval must be positive, got 0s")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval: \"-5m\"}"), format!("{rule} time_slots[0]: the retry interval must be positive, got -5m")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval: 60}"), format!("{rule} time_slots[0]: retry_interval \"60\" is not a duration (write it with a unit: 500ms, 90s, 5m, 2h)")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval: 31d}"), format!("{rule} time_slots[0]: retry_interval \"31d\" is not a duration (write it with a unit: 500ms, 90s, 5m, 2h)")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval: 721h}"), format!("{rule} time_slots[0]: the retry interval 721h is longer than the limit of 30 days")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval_minutes: 999999999999}"), format!("{rule} time_slots[0]: the retry interval 999999999999 minutes is longer than the limit of 30 days")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", retry_interval: 5m, retry_interval_minutes: 5}"), format!("{rule} time_slots[0]: give either retry_interval_minutes or retry_interval, not both")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", max_attempts: 0}"), format!("{rule} time_slots[0]: max_attempts must be between 1 and 100, got 0")),
            (weekday("{start_time: \"09:00\", end_time: \"10:00\", max_attempts: 101}"), format!("{rule} time_slots[0]: max_attempts must be between 1 and 100, got 101")),
            (weekday(""), format!("{rule}: time_slots is empty")),
            (weekday(&slot("09:00", "10:00")).replace("[monday, friday]", "[monday, funday]"), format!("{rule}: unknown day \"funday\" (expected monday ... sunday or mon ... sun)")),
            (weekday(&slot("09:00", "10:00")).replace("[monday, friday]", "[monday, Mon]"), format!("{rule}: monday is listed twice")),
            (weekday(&slot("09:00", "10:00")).replace("[monday, friday]", "[]"), format!("{rule}: days is empty")),
            ("timezone: \"Mars/Olympus\"".to_owned(), "config/retry_config.yaml: timezone: unknown timezone \"Mars/Olympus\"".to_owned()),
            ("defaults: {max_attempts: 0}".to_owned(), "config/retry_config.yaml: defaults: max_attempts must be between 1 and 100, got 0".to_owned()),
            ("defaults: {retry_interval_minutes: 0}".to_owned(), "config/retry_config.yaml: defaults: the retry interval must be positive, got 0 minutes".to_owned()),
            ("defaults: {retry_interval: soon}".to_owned(), "config/retry_config.yaml: defaults: retry_interval \"soon\" is not a duration (write it with a unit: 500ms, 90s, 5m, 2h)".to_owned()),
            (
                "campaign_rules:\n  - {campaign_id: 7, rules: []}\n  - {campaign_id: 8, rules: []}\n  - {campaign_id: 7, name: again, rules: []}\n".to_owned(),
                "config/retry_config.yaml: campaign_rules[2] \"again\" (campaign_id 7): campaign_id 7 already has rules at campaign_rules[0]".to_owned(),
            ),
            (
                "campaign_rules:\n  - campaign_id: 7\n    rules:\n      - {name: x, days: [sun], time_slots: [{start_time: \"10:00\", end_time: \"09:00\"}]}\n".to_owned(),
                "config/retry_config.yaml: campaign_rules[0] (campaign_id 7) rules[0] \"x\" time_slots[0]: end_time 09:00 is before start_time 10:00".to_owned(),
            ),
            (
                "status_retry_rules:\n  DISCONNECTED: {should_retry: true}\n  RNR: {should_retry: true}\n  FAILED: {should_retry: true}\n  PICKED: {should_retry: true}\n".to_owned(),
                "config/retry_config.yaml: status_retry_rules.PICKED: PICKED is final and cannot be retried (should_retry must be false)".to_owned(),
            ),
            (
                "status_retry_rules:\n  DISCONNECTED: {should_retry: true}\n  FAILED: {should_retry: true}\n".to_owned(),
                "config/retry_config.yaml: status_retry_rules.RNR: RNR is missing: when status_retry_rules is given it must list DISCONNECTED, RNR and FAILED".to_owned(),
            ),
            (
                "status_retry_rules:\n  DISCONNECTED: {should_retry: true}\n  RNR: {should_retry: false, max_attempts: 2}\n  FAILED: {should_retry: true}\n".to_owned(),
                "config/retry_config.yaml: status_retry_rules.RNR: max_attempts has no effect on a status that is not retried".to_owned(),
            ),
            (
                "status_retry_rules:\n  DISCONNECTED: {should_retry: true, max_attempts: 0}\n  RNR: {should_retry: true}\n  FAILED: {should_retry: true}\n".to_owned(),
                "config/retry_config.yaml: status_retry_rules.DISCONNECTED: max_attempts must be between 1 and 100, got 0".to_owned(),
            ),
            (
                "- {day_of_week: saturday, start_time: \"10:00:00\", end_time: \"12:00:00\"}\n- {day_of_week: sunday, start_time: \"10:30:00\", end_time: \"11:00:00\"}\n- {day_of_week: saturday, start_time: \"10:30:00\", end_time: \"11:00:00\"}\n".to_owned(),
                "config/retry_config.yaml: [2]: 10:30:00-11:00:00 overlaps [0] 10:00:00-12:00:00 on saturday".to_owned(),
            ),
            ("- {day_of_week: someday, start_time: \"10:00\", end_time: \"12:00\"}".to_owned(), "config/retry_config.yaml: [0]: unknown day \"someday\" (expected monday ... sunday or mon ... sun)".to_owned()),
            ("- {day_of_week: sat, start_time: \"12:00\", end_time: \"10:00\"}".to_owned(), "config/retry_config.yaml: [0]: end_time 10:00 is before start_time 12:00".to_owned()),
            ("# nothing but a comment\n".to_owned(), "config/retry_config.yaml: file: the file is empty (write `{}` for the built-in defaults)".to_owned()),
            ("just words".to_owned(), "config/retry_config.yaml: file: expected a mapping (timezone, defaults, global_rules, ...) or a list of slots".to_owned()),
        ];
        for (yaml, expected) in cases {
            if expected.contains("unknown timezone") {
                let message = RetryRules::from_yaml_str(&yaml, FILE).unwrap_err().to_string();
                assert!(message.starts_with(&expected), "{message}");
            } else {
                check_error(&yaml, &expected);
            }
        }
        // Adjacent slots, and overlapping slots of different rules or on different days, are fine.
        rules(&weekday(&format!("{}, {}", slot("09:00", "12:00"), slot("12:00", "24:00"))));
        rules("- {day_of_week: sat, start_time: \"10:00\", end_time: \"12:00\"}\n- {day_of_week: sun, start_time: \"10:00\", end_time: \"12:00\"}\n");
        rules(&format!("{}  - {{days: [monday], time_slots: [{}]}}\n", weekday(&slot("09:00", "17:00")), slot("10:00", "11:00")));
    }

    #[test]
    fn yaml_errors_name_the_key_path_and_line() {
        check_yaml_error(
            "global_rules:\n  - days: [monday]\n    time_slots:\n      - {start_time: \"09:00\", end_time: \"10:00\", retry_every: 5}\n",
            &["global_rules[0].time_slots[0]", "unknown field `retry_every`", "line 4"],
        );
        check_yaml_error("retry_rules: []\n", &["unknown field `retry_rules`", "line 1"]);
        check_yaml_error("defaults: {max_attempt: 3}\n", &["defaults", "unknown field `max_attempt`"]);
        check_yaml_error("status_retry_rules: {BUSY: {should_retry: true}}\n", &["status_retry_rules", "unknown field `BUSY`"]);
        check_yaml_error("status_retry_rules: {RNR: {}}\n", &["status_retry_rules.RNR", "missing field `should_retry`"]);
        check_yaml_error("campaign_rules: [{campaign_id: 1, rules: [], extra: 1}]\n", &["campaign_rules[0]", "unknown field `extra`"]);
        check_yaml_error("- {day_of_week: sat, start_time: \"10:00\", end_time: \"12:00\", days: [sun]}\n", &["[0]", "unknown field `days`"]);
        check_yaml_error("global_rules:\n  - days: [monday\n    time_slots: []\n", &["line 3"]);
        check_yaml_error("defaults: {max_attempts: three}\n", &["defaults.max_attempts", "invalid type"]);
        check_yaml_error(
            "global_rules:\n  - days: [mon]\n    time_slots:\n      - {start_time: \"09:00\", start_time: \"10:00\", end_time: \"11:00\"}\n",
            &["duplicate entry with key \"start_time\"", "line 4"],
        );
        let error = RetryRules::from_yaml_str("a: [\n\n\n", FILE).unwrap_err();
        assert_eq!(error.line(), Some(4), "{error}");
    }

    #[test]
    fn load_names_the_path() {
        let path = std::env::temp_dir().join(format!("callmgr-retry-test-{}.yaml", std::process::id()));
        std::fs::write(&path, "defaults: {max_attempts: 0}\n").unwrap();
        let message = RetryRules::load(&path).unwrap_err().to_string();
        assert_eq!(message, format!("{}: defaults: max_attempts must be between 1 and 100, got 0", path.display()));
        std::fs::write(&path, REFERENCE).unwrap();
        assert_eq!(RetryRules::load(&path).unwrap().source_name(), path.display().to_string());
        std::fs::remove_file(&path).unwrap();
        let message = RetryRules::load(&path).unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}: cannot read the retry configuration: ", path.display())), "{message}");
    }

    #[test]
    fn shipped_config_is_valid_and_as_documented() {
        let shipped = RetryRules::from_yaml_str(include_str!("../../config/retry_config.yaml"), "config/retry_config.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shipped.default_timezone().iana_name(), Some("UTC"));
        assert_eq!(shipped.default_max_attempts(), 3);
        assert!(shipped.ignored_keys().is_empty());
        let cases = [
            (q("2026-01-05T10:00:00Z"), "2026-01-05T11:00:00Z"),
            (q("2026-01-05T16:30:00Z"), "2026-01-06T09:00:00Z"),
            (q("2026-01-09T16:30:00Z"), "2026-01-10T10:00:00Z"),
            (q("2026-01-10T11:30:00Z"), "2026-01-10T19:00:00Z"),
            (q("2026-01-10T19:10:00Z"), "2026-01-10T19:40:00Z"),
            (q("2026-01-11T19:45:00Z"), "2026-01-12T09:00:00Z"),
        ];
        for (query, expected) in cases {
            match ask(&shipped, query) {
                RetryDecision::Retry { at, .. } => {
                    assert_eq!(at.to_string(), expected, "{}", query.at)
                }
                other => panic!("{other}"),
            }
            assert_eq!(summary(&ask(&shipped, query.outcome(Outcome::Failed).attempt(3, 3))), "give up: Max retry attempts reached (3)");
        }
    }

    #[test]
    fn display_for_retry_plan_and_describe_for_check_config() {
        let reference = rules(REFERENCE);
        let decision = ask(&reference, q("2026-01-09T21:30:00Z"));
        assert_eq!(
            decision.to_string(),
            "retry at 2026-01-10T15:00:00Z (2026-01-10T10:00:00-05:00[America/New_York], saturday)\n\
             interval: 1h (from global_rules[0] \"Weekday hours\" time_slots[0])\n\
             window: global_rules[1] \"Weekend\" time_slots[0] 10:00-12:00 on saturday\n\
             calling hours: none configured\n\
             moved: outcome + interval = 2026-01-09T22:30:00Z is outside the retry windows in America/New_York; they next open at 2026-01-10T15:00:00Z"
        );
        let decision = ask(&RetryRules::permissive(), q("2026-01-09T21:30:00Z"));
        assert_eq!(
            decision.to_string(),
            "retry at 2026-01-09T22:30:00Z (2026-01-09T22:30:00+00:00[UTC], friday)\n\
             interval: 1h (from defaults)\n\
             window: none configured, any time is eligible\n\
             calling hours: none configured"
        );
        let decision = ask(&reference, q("2026-01-09T21:30:00Z").attempt(3, 3));
        assert_eq!(decision.to_string(), "no retry: Max retry attempts reached (3)");

        let legacy = rules(LEGACY).with_default_max_attempts(4);
        assert_eq!(
            legacy.describe(),
            "  timezone: UTC (a number's or campaign's own timezone takes precedence)\n  \
             defaults: max_attempts 4, retry interval 1h\n  \
             outcomes: DISCONNECTED retried, RNR retried, FAILED retried, PICKED final\n  \
             calling hours: none, any time\n  \
             contact limits: none\n  \
             global rules: 1 slot(s)\n    \
             global_rules[0] \"Weekday Business Hours\" time_slots[0]: mon tue wed thu fri 09:00-17:00, every 1h, up to attempt 3\n  \
             campaign 1 (replaces the global rules): 1 slot(s)\n    \
             campaign_rules[0] \"High Priority Campaign\" (campaign_id 1) rules[0] \"Aggressive Retry\" time_slots[0]: mon tue wed thu fri sat sun 00:00-23:59, every 30m, up to attempt 5\n  \
             ignored legacy keys: scheduler, defaults.concurrent_call_limit"
        );
        let described =
            rules("status_retry_rules: {DISCONNECTED: {should_retry: true}, RNR: {should_retry: false}, FAILED: {should_retry: true, max_attempts: 2}}")
                .describe();
        assert!(described.contains("outcomes: DISCONNECTED retried, RNR final, FAILED retried up to attempt 2, PICKED final"), "{described}");
        assert!(described.contains("global rules: no slots, any time is eligible"), "{described}");
    }

    // -----------------------------------------------------------------------------------------
    // Calling hours and contact limits. 2026-01-05 is a Monday; in January Boise is at -07:00
    // and Los Angeles at -08:00, so 08:00-21:00 in both is 16:00Z-04:00Z.

    /// Weekdays 08:00-21:00, Saturday 09:00-17:00, Sunday closed; no slots.
    const HOURS: &str = r#"
calling_hours:
  - {days: [monday, tuesday, wednesday, thursday, friday], start_time: "08:00", end_time: "21:00"}
  - {days: [saturday], start_time: "09:00", end_time: "17:00"}
"#;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn calling_hours_hold_every_retry() {
        let moved = "anytime +1h moved";
        // Inside: unchanged.
        check(HOURS, q("2026-01-05T10:00:00Z"), "2026-01-05T11:00:00Z anytime +1h");
        // Monday 20:30 + 1h is after hours: Tuesday 08:00.
        check(HOURS, q("2026-01-05T20:30:00Z"), &format!("2026-01-06T08:00:00Z {moved}"));
        // Saturday 16:30 + 1h: Sunday is closed, so Monday 08:00.
        check(HOURS, q("2026-01-10T16:30:00Z"), &format!("2026-01-12T08:00:00Z {moved}"));
        // The callee's zone: 20:30 in Kolkata is 15:00Z.
        check(HOURS, q("2026-01-05T15:00:00Z").zones(&["Asia/Kolkata"]), "2026-01-06T02:30:00Z anytime +1h moved");
        // A retry window and calling hours together: the window opens at 07:00, calling hours at
        // 08:00; the window closes at 09:00 on Saturday, before calling hours open.
        let both = format!("{HOURS}global_rules: [{{days: [mon, tue, wed, thu, fri, sat], time_slots: [{{start_time: \"07:00\", end_time: \"09:00\"}}]}}]\n");
        check(&both, q("2026-01-05T05:00:00Z"), "2026-01-05T08:00:00Z global_rules[0] time_slots[0] monday +1h moved");
        check(&both, q("2026-01-09T08:30:00Z"), "2026-01-12T08:00:00Z global_rules[0] time_slots[0] monday +1h moved");
    }

    #[test]
    fn an_ambiguous_callee_is_inside_calling_hours_in_every_zone() {
        let rules = rules(HOURS);
        let boise_first: &[&str] = &["America/Boise", "America/Los_Angeles"];
        // 15:30Z is 08:30 in Boise but 07:30 in Los Angeles.
        check(HOURS, q("2026-01-05T14:30:00Z").zones(boise_first), "2026-01-05T16:00:00Z anytime +1h moved");
        // 04:30Z is 21:30 in Boise: Boise reopens at 15:00Z, Los Angeles at 16:00Z.
        let decision = ask(&rules, q("2026-01-06T03:30:00Z").zones(boise_first));
        assert_eq!(
            decision.to_string(),
            "retry at 2026-01-06T16:00:00Z (2026-01-06T09:00:00-07:00[America/Boise], tuesday)\n\
             also 2026-01-06T08:00:00-08:00[America/Los_Angeles] (tuesday) in another candidate zone of the callee\n\
             interval: 1h (from defaults)\n\
             window: none configured, any time is eligible\n\
             calling hours: mon tue wed thu fri 08:00-21:00; sat 09:00-17:00 (calling_hours)\n\
             moved: outcome + interval = 2026-01-06T04:30:00Z is outside calling hours in America/Boise; they next open at 2026-01-06T15:00:00Z\n\
             moved: 2026-01-06T15:00:00Z is outside calling hours in America/Los_Angeles; they next open at 2026-01-06T16:00:00Z"
        );
        let boise_and_la = zones(boise_first);
        assert_eq!(rules.calling_hours_open_at(1, &boise_and_la, at("2026-01-05T15:00:00Z")), Some(at("2026-01-05T16:00:00Z")));
        assert_eq!(rules.calling_hours_open_at(1, &boise_and_la, at("2026-01-05T20:00:00Z")), Some(at("2026-01-05T20:00:00Z")));
        // Saturday: 09:00-17:00 in both is 17:00Z-00:00Z.
        assert_eq!(rules.calling_hours_open_at(1, &boise_and_la, at("2026-01-10T23:59:59Z")), Some(at("2026-01-10T23:59:59Z")));
        assert_eq!(rules.calling_hours_open_at(1, &boise_and_la, at("2026-01-11T00:00:00Z")), Some(at("2026-01-12T16:00:00Z")));
        assert_eq!(rules.window_open_at(1, 2, at("2026-01-11T00:00:00Z"), &boise_and_la), Some(at("2026-01-12T16:00:00Z")));
        // No zones: the file's (UTC).
        assert_eq!(rules.calling_hours_open_at(1, &[], at("2026-01-05T07:00:00Z")), Some(at("2026-01-05T08:00:00Z")));
    }

    #[test]
    fn calling_hours_that_never_meet_give_up() {
        let yaml = r#"calling_hours: {days: [mon, tue, wed, thu, fri, sat, sun], start_time: "09:00", end_time: "17:00"}"#;
        let rules = rules(yaml);
        // 09:00-17:00 in Kolkata is 03:30Z-11:30Z; in New York (January) 14:00Z-22:00Z.
        let apart: &[&str] = &["Asia/Kolkata", "America/New_York"];
        check(yaml, q("2026-01-05T10:00:00Z").zones(apart), "give up: No retry window available");
        assert_eq!(rules.calling_hours_open_at(1, &zones(apart), at("2026-01-05T10:00:00Z")), None);
        assert_eq!(rules.window_open_at(1, 2, at("2026-01-05T10:00:00Z"), &zones(apart)), None);
        // Each alone is fine.
        check(yaml, q("2026-01-05T10:00:00Z").zones(&["Asia/Kolkata"]), "2026-01-05T11:00:00Z anytime +1h");
        check(yaml, q("2026-01-05T10:00:00Z").zones(&["America/New_York"]), "2026-01-05T14:00:00Z anytime +1h moved");
    }

    #[test]
    fn campaign_calling_hours_replace_the_global_ones() {
        let yaml = format!(
            "{HOURS}global_rules: [{{days: [mon, tue, wed, thu, fri], time_slots: [{{start_time: \"09:00\", end_time: \"17:00\"}}]}}]\n\
             campaign_rules:\n  \
               - {{campaign_id: 2, name: \"Around the clock\", calling_hours: {{days: [mon, tue, wed, thu, fri, sat, sun], start_time: \"00:00\", end_time: \"24:00\"}}}}\n  \
               - {{campaign_id: 3, rules: [], calling_hours: {{days: [sun], start_time: \"10:00\", end_time: \"12:00\"}}}}\n"
        );
        let rules = rules(&yaml);
        let global = rules.calling_hours_for(1).unwrap();
        assert_eq!((global.scope, global.location.as_str()), (CallingHoursScope::Global, "calling_hours"));
        let around_the_clock = rules.calling_hours_for(2).unwrap();
        assert_eq!(around_the_clock.scope, CallingHoursScope::Campaign(2));
        assert_eq!(
            around_the_clock.to_string(),
            "mon tue wed thu fri sat sun 00:00-24:00 (campaign_rules[0] \"Around the clock\" (campaign_id 2) calling_hours, replacing the global calling hours)"
        );
        // Campaign 2 keeps the global retry rules: Saturday waits for Monday 09:00.
        check(&yaml, q("2026-01-10T03:00:00Z").campaign(2), "2026-01-12T09:00:00Z global_rules[0] time_slots[0] monday +1h moved");
        assert_eq!(rules.calling_hours_open_at(2, &[], at("2026-01-11T03:00:00Z")), Some(at("2026-01-11T03:00:00Z")));
        assert_eq!(rules.calling_hours_open_at(1, &[], at("2026-01-11T03:00:00Z")), Some(at("2026-01-12T08:00:00Z")));
        // Campaign 3: no slots, its own hours only.
        check(&yaml, q("2026-01-05T10:00:00Z").campaign(3), "2026-01-11T10:00:00Z anytime +1h moved");
        assert_eq!(rules.calling_hours_for(3).unwrap().scope, CallingHoursScope::Campaign(3));
        assert!(RetryRules::permissive().calling_hours_for(1).is_none());
        assert_eq!(RetryRules::permissive().calling_hours_open_at(1, &[], at("2026-01-11T03:00:00Z")), Some(at("2026-01-11T03:00:00Z")));
        assert_eq!(
            rules.describe(),
            "  timezone: UTC (a number's or campaign's own timezone takes precedence)\n  \
             defaults: max_attempts 3, retry interval 1h\n  \
             outcomes: DISCONNECTED retried, RNR retried, FAILED retried, PICKED final\n  \
             calling hours: mon tue wed thu fri 08:00-21:00; sat 09:00-17:00 (calling_hours), in the callee's local time (in every candidate zone)\n  \
             contact limits: none\n  \
             global rules: 1 slot(s)\n    \
             global_rules[0] time_slots[0]: mon tue wed thu fri 09:00-17:00\n  \
             campaign 2: the global rules apply\n  \
             campaign 2 calling hours: mon tue wed thu fri sat sun 00:00-24:00 (campaign_rules[0] \"Around the clock\" (campaign_id 2) calling_hours, replacing the global calling hours)\n  \
             campaign 3 (replaces the global rules): no slots, any time is eligible\n  \
             campaign 3 calling hours: sun 10:00-12:00 (campaign_rules[1] (campaign_id 3) calling_hours, replacing the global calling hours)"
        );
    }

    #[test]
    fn calling_hours_across_dst() {
        // New York springs forward at 02:00 on 2026-03-08: hours from 02:30 open at 03:00 EDT.
        let spring = rules(r#"{timezone: America/New_York, calling_hours: {days: [sun], start_time: "02:30", end_time: "05:00"}}"#);
        assert_eq!(spring.calling_hours_open_at(1, &[], at("2026-03-08T05:00:00Z")), Some(at("2026-03-08T07:00:00Z")));
        // It falls back at 02:00 on 2026-11-01: 01:30 comes twice, the earlier (EDT) counts.
        let fall = rules(r#"{timezone: America/New_York, calling_hours: {days: [sun], start_time: "01:30", end_time: "03:00"}}"#);
        assert_eq!(fall.calling_hours_open_at(1, &[], at("2026-11-01T04:00:00Z")), Some(at("2026-11-01T05:30:00Z")));
        // Santiago springs forward at midnight on 2026-09-06: Sunday starts at 01:00 (-03:00).
        let santiago = rules(r#"{timezone: America/Santiago, calling_hours: {days: [sun], start_time: "00:00", end_time: "02:00"}}"#);
        assert_eq!(santiago.calling_hours_open_at(1, &[], at("2026-09-05T12:00:00Z")), Some(at("2026-09-06T04:00:00Z")));
    }

    #[test]
    fn contact_limits_are_read() {
        assert_eq!(rules("{}").contact_limits(), None);
        let day = rules(r#"contact_limits: {max_attempts: 3, window: "24h"}"#);
        assert_eq!(day.contact_limits(), Some(ContactLimits { max_attempts: 3, window: SignedDuration::from_hours(24) }));
        assert!(day.describe().contains("\n  contact limits: at most 3 dial(s) of a number in any 24h, across campaigns\n"), "{}", day.describe());
        let week = rules("contact_limits: {max_attempts: 7, window: 7d}");
        assert_eq!(week.contact_limits(), Some(ContactLimits { max_attempts: 7, window: SignedDuration::from_hours(7 * 24) }));
        let short = rules("contact_limits: {max_attempts: 1, window: 90s}");
        assert_eq!(short.contact_limits().unwrap().window, SignedDuration::from_secs(90));
    }

    #[test]
    fn calling_hours_and_contact_limit_errors_name_the_place() {
        let entry = |days: &str, start: &str, end: &str| format!("{{days: [{days}], start_time: \"{start}\", end_time: \"{end}\"}}");
        let every_day = "mon, tue, wed, thu, fri, sat, sun";
        let cases: Vec<(String, &str)> = vec![
            (format!("calling_hours: {}", entry("mon", "21:00", "08:00")), "calling_hours: end_time 08:00 is before start_time 21:00"),
            (format!("calling_hours: {}", entry("", "08:00", "21:00")), "calling_hours: days is empty"),
            (
                format!("calling_hours: [{}, {}]", entry("mon", "08:00", "21:00"), entry("funday", "08:00", "21:00")),
                "calling_hours[1]: unknown day \"funday\" (expected monday ... sunday or mon ... sun)",
            ),
            (format!("calling_hours: {}", entry("mon, tue, Monday", "08:00", "21:00")), "calling_hours: monday is listed twice"),
            (
                format!("calling_hours: {}", entry("mon", "8am", "21:00")),
                "calling_hours: start_time \"8am\" is not a time of day (expected HH:MM or HH:MM:SS, 00:00 to 24:00)",
            ),
            (format!("calling_hours: {}", entry("mon", "08:00", "08:00")), "calling_hours: end_time 08:00 equals start_time 08:00: the slot is empty"),
            (
                format!("calling_hours: [{}, {}]", entry(every_day, "08:00", "21:00"), entry("sat", "20:00", "22:00")),
                "calling_hours[1]: 20:00-22:00 overlaps calling_hours[0] 08:00-21:00 on saturday",
            ),
            ("calling_hours: []".to_owned(), "calling_hours: the list is empty (leave the key out for no restriction)"),
            (
                format!("campaign_rules: [{{campaign_id: 2, calling_hours: {}}}]", entry("mon", "10:00", "09:00")),
                "campaign_rules[0] (campaign_id 2) calling_hours: end_time 09:00 is before start_time 10:00",
            ),
            (
                format!(
                    "campaign_rules: [{{campaign_id: 2, name: x, calling_hours: [{}, {}]}}]",
                    entry("mon", "08:00", "12:00"),
                    entry("mon, tue", "11:00", "13:00")
                ),
                "campaign_rules[0] \"x\" (campaign_id 2) calling_hours[1]: 11:00-13:00 overlaps campaign_rules[0] \"x\" (campaign_id 2) calling_hours[0] 08:00-12:00 on monday",
            ),
            ("campaign_rules: [{campaign_id: 2}]".to_owned(), "campaign_rules[0] (campaign_id 2): the entry sets neither rules nor calling_hours"),
            (
                "contact_limits: {max_attempts: 3, window: 24}".to_owned(),
                "contact_limits: window \"24\" is not a duration (write it with a unit: 90m, 24h, 7d)",
            ),
            (
                "contact_limits: {max_attempts: 3, window: 1mo}".to_owned(),
                "contact_limits: window \"1mo\" is not a duration (write it with a unit: 90m, 24h, 7d)",
            ),
            ("contact_limits: {max_attempts: 3, window: 0s}".to_owned(), "contact_limits: the window must be positive, got 0s"),
            ("contact_limits: {max_attempts: 3, window: 31d}".to_owned(), "contact_limits: the window 31d is longer than the limit of 30 days"),
            ("contact_limits: {max_attempts: 0, window: 24h}".to_owned(), "contact_limits: max_attempts must be between 1 and 100, got 0"),
            ("contact_limits: {max_attempts: 101, window: 24h}".to_owned(), "contact_limits: max_attempts must be between 1 and 100, got 101"),
        ];
        for (yaml, expected) in cases {
            check_error(&yaml, &format!("{FILE}: {expected}"));
        }
        // Adjacent entries join; the same hours on different days do not overlap.
        rules(&format!("calling_hours: [{}, {}, {}]", entry("fri", "08:00", "24:00"), entry("sat", "00:00", "02:00"), entry("sat", "09:00", "17:00")));
        check_yaml_error(
            "calling_hours:\n  days: [mon]\n  start_time: \"08:00\"\n  end_time: \"21:00\"\n  timezone: UTC\n",
            &["calling_hours", "unknown field `timezone`", "line 5"],
        );
        check_yaml_error("calling_hours: \"08:00-21:00\"\n", &["calling_hours", "expected a mapping {days, start_time, end_time} or a list of them"]);
        check_yaml_error("calling_hours: [{days: [mon], start_time: \"08:00\"}]\n", &["calling_hours[0]", "missing field `end_time`"]);
        check_yaml_error("contact_limits: {max_attempts: 3}\n", &["contact_limits", "missing field `window`"]);
        check_yaml_error("- {day_of_week: sat, start_time: \"10:00\", end_time: \"12:00\", calling_hours: []}\n", &["unknown field `calling_hours`"]);
    }

    /// The dev config (the first-run tour) and the packaged one both allow 08:00-21:00 every day;
    /// only the dev config has campaign 2 around the clock, under the global retry rules.
    #[test]
    fn shipped_configs_set_calling_hours_every_day() {
        let every_day_8_to_21 = "mon tue wed thu fri sat sun 08:00-21:00";
        let files = [
            ("config/retry_config.yaml", include_str!("../../config/retry_config.yaml")),
            ("packaging/retry_config.yaml", include_str!("../../packaging/retry_config.yaml")),
        ];
        for (name, text) in files {
            let shipped = RetryRules::from_yaml_str(text, name).unwrap_or_else(|e| panic!("{e}"));
            let hours = shipped.calling_hours_for(1).unwrap_or_else(|| panic!("{name}: no calling hours"));
            assert_eq!((hours.scope, hours.summary().as_str()), (CallingHoursScope::Global, every_day_8_to_21), "{name}");
            assert_eq!(shipped.default_max_attempts(), 3, "{name}");
            assert!(shipped.ignored_keys().is_empty(), "{name}");
            // 21:30 UTC: held until 08:00.
            assert_eq!(shipped.calling_hours_open_at(1, &[], at("2026-01-05T21:30:00Z")), Some(at("2026-01-06T08:00:00Z")), "{name}");
        }
        let dev = rules(files[0].1);
        let demo = dev.calling_hours_for(2).unwrap();
        assert_eq!((demo.scope, demo.summary().as_str()), (CallingHoursScope::Campaign(2), "mon tue wed thu fri sat sun 00:00-24:00"));
        assert_eq!(dev.calling_hours_open_at(2, &[], at("2026-01-05T21:30:00Z")), Some(at("2026-01-05T21:30:00Z")));
        // Campaign 2 keeps the global retry windows: Monday 16:30 waits for Tuesday 09:00.
        let decision = ask(&dev, q("2026-01-05T16:30:00Z").campaign(2));
        assert_eq!(summary(&decision), "2026-01-06T09:00:00Z global_rules[0] \"Weekday business hours\" time_slots[0] tuesday +1h moved");
        let packaged = rules(files[1].1);
        assert_eq!(packaged.calling_hours_for(2).unwrap().scope, CallingHoursScope::Global);
    }

    // -----------------------------------------------------------------------------------------
    // Daylight saving time. The 2026 transitions (checked against jiff below): New York springs
    // forward on 2026-03-08 at 07:00Z (02:00 EST → 03:00 EDT) and falls back on 2026-11-01 at
    // 06:00Z (02:00 EDT → 01:00 EST); London on 2026-03-29 at 01:00Z (01:00 GMT → 02:00 BST) and
    // 2026-10-25 at 01:00Z (02:00 BST → 01:00 GMT).

    #[test]
    fn dst_transition_dates_2026() {
        let transitions = |name: &str| -> Vec<String> {
            let timezone = TimeZone::get(name).unwrap();
            let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
            timezone.following(start).take(2).map(|t| t.timestamp().to_string()).collect()
        };
        assert_eq!(transitions("America/New_York"), ["2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"]);
        assert_eq!(transitions("Europe/London"), ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"]);
        assert!(transitions("Asia/Kolkata").is_empty());
    }

    fn sunday_slot(timezone: &str, start: &str, end: &str) -> String {
        format!("timezone: {timezone}\nglobal_rules: [{{days: [sunday], time_slots: [{{start_time: \"{start}\", end_time: \"{end}\"}}]}}]\n")
    }

    #[test]
    fn dst_new_york() {
        let slot = "global_rules[0] time_slots[0] sunday +1h moved";
        // Spring forward: 02:30 does not exist; the slot opens when the gap ends, 03:00 EDT.
        let spring = sunday_slot("America/New_York", "02:30", "04:00");
        check(&spring, q("2026-03-08T05:00:00Z"), &format!("2026-03-08T07:00:00Z {slot}"));
        // A slot entirely inside the gap does not exist that day: the next Sunday, 02:00 EDT.
        let lost = sunday_slot("America/New_York", "02:00", "03:00");
        check(&lost, q("2026-03-08T05:00:00Z"), &format!("2026-03-15T06:00:00Z {slot}"));
        // Near the end of the 14-day search: from Sunday 2026-03-01 04:00 EST, the slot's next
        // existence is 13 days 22 hours later.
        check(&lost, q("2026-03-01T08:00:00Z"), &format!("2026-03-15T06:00:00Z {slot}"));
        // Fall back: 01:30 happens twice; the earlier (EDT) instant.
        let fall = sunday_slot("America/New_York", "01:30", "03:00");
        check(&fall, q("2026-11-01T04:00:00Z"), &format!("2026-11-01T05:30:00Z {slot}"));
        // From 01:10 EST (the second pass, outside the slot) the clock next reads 01:30 at 06:30Z.
        check(&fall, q("2026-11-01T05:10:00Z"), &format!("2026-11-01T06:30:00Z {slot}"));
        // A slot re-entered when the clock is set back: 01:25 EDT + ... → 01:00 EST at 06:00Z.
        let repeated = sunday_slot("America/New_York", "01:00", "01:20");
        check(&repeated, q("2026-11-01T04:25:00Z"), &format!("2026-11-01T06:00:00Z {slot}"));
    }

    #[test]
    fn dst_london() {
        let slot = "global_rules[0] time_slots[0] sunday +1h";
        let spring = sunday_slot("Europe/London", "01:30", "03:00");
        // 00:00 GMT + 1h = 01:00 GMT, outside; 01:30 does not exist; 02:00 BST = 01:00Z.
        check(&spring, q("2026-03-28T23:00:00Z"), &format!("2026-03-29T01:00:00Z {slot} moved"));
        // 00:00 GMT + 1h lands at 02:00 BST, inside the slot.
        check(&spring, q("2026-03-29T00:00:00Z"), &format!("2026-03-29T01:00:00Z {slot}"));
        let fall = sunday_slot("Europe/London", "01:30", "03:00");
        // 00:00 BST + 1h = 01:00 BST; 01:30 happens twice: the earlier, 01:30 BST = 00:30Z.
        check(&fall, q("2026-10-24T23:00:00Z"), &format!("2026-10-25T00:30:00Z {slot} moved"));
        // 01:10 GMT (second pass) → 01:30 GMT = 01:30Z.
        check(&fall, q("2026-10-25T00:10:00Z"), &format!("2026-10-25T01:30:00Z {slot} moved"));
    }

    // -----------------------------------------------------------------------------------------
    // Properties against a naive model of the same rules.

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;
        use std::collections::BTreeSet;

        /// Zones with and without DST, on both hemispheres, with a 45-minute offset (Chatham),
        /// transitions at local midnight (Santiago), and the Boise and Los Angeles pair of an
        /// ambiguous `+1208` number. Every offset is a whole number of minutes.
        const ZONES: [&str; 9] = [
            "UTC",
            "America/New_York",
            "Europe/London",
            "Australia/Sydney",
            "America/Boise",
            "America/Los_Angeles",
            "Asia/Kolkata",
            "Pacific/Chatham",
            "America/Santiago",
        ];
        const BOISE: usize = 4;
        const LOS_ANGELES: usize = 5;
        const MINUTE: SignedDuration = SignedDuration::from_mins(1);

        #[derive(Clone, Debug)]
        struct ModelSlot {
            start_minute: u32,
            end_minute: u32,
            max_attempts: Option<u32>,
            interval_minutes: Option<u32>,
        }

        #[derive(Clone, Debug)]
        struct ModelRule {
            /// Monday = 0.
            days: Vec<usize>,
            slots: Vec<ModelSlot>,
        }

        /// One calling-hours entry.
        #[derive(Clone, Debug)]
        struct ModelHours {
            /// Monday = 0.
            days: Vec<usize>,
            start_minute: u32,
            end_minute: u32,
        }

        /// Campaign 7's own entry; never both `None`.
        #[derive(Clone, Debug)]
        struct ModelCampaign {
            rules: Option<Vec<ModelRule>>,
            calling_hours: Option<Vec<ModelHours>>,
        }

        #[derive(Clone, Debug)]
        struct Model {
            file_timezone: usize,
            default_interval_minutes: u32,
            global: Vec<ModelRule>,
            calling_hours: Option<Vec<ModelHours>>,
            campaign_7: Option<ModelCampaign>,
        }

        fn minute_text(minute: u32) -> String {
            format!("{:02}:{:02}", minute / 60, minute % 60)
        }

        fn days_yaml(days: &[usize]) -> String {
            let names: Vec<&str> = days.iter().map(|d| full_day_name(Weekday::from_monday_zero_offset(*d as i8).unwrap())).collect();
            format!("[{}]", names.join(", "))
        }

        fn rules_yaml(rules: &[ModelRule]) -> String {
            let rules: Vec<String> = rules
                .iter()
                .map(|rule| {
                    let slots: Vec<String> = rule
                        .slots
                        .iter()
                        .map(|s| {
                            let mut text = format!("{{start_time: \"{}\", end_time: \"{}\"", minute_text(s.start_minute), minute_text(s.end_minute));
                            if let Some(cap) = s.max_attempts {
                                text.push_str(&format!(", max_attempts: {cap}"));
                            }
                            if let Some(minutes) = s.interval_minutes {
                                text.push_str(&format!(", retry_interval: {minutes}m"));
                            }
                            text + "}"
                        })
                        .collect();
                    format!("{{days: {}, time_slots: [{}]}}", days_yaml(&rule.days), slots.join(", "))
                })
                .collect();
            format!("[{}]", rules.join(", "))
        }

        /// One entry as a mapping, several as a list.
        fn hours_yaml(hours: &[ModelHours]) -> String {
            let entries: Vec<String> = hours
                .iter()
                .map(|h| {
                    format!("{{days: {}, start_time: \"{}\", end_time: \"{}\"}}", days_yaml(&h.days), minute_text(h.start_minute), minute_text(h.end_minute))
                })
                .collect();
            if entries.len() == 1 { entries[0].clone() } else { format!("[{}]", entries.join(", ")) }
        }

        impl Model {
            fn yaml(&self) -> String {
                let mut yaml = format!(
                    "timezone: {}\ndefaults: {{retry_interval_minutes: {}}}\nglobal_rules: {}\n",
                    ZONES[self.file_timezone],
                    self.default_interval_minutes,
                    rules_yaml(&self.global)
                );
                if let Some(hours) = &self.calling_hours {
                    yaml.push_str(&format!("calling_hours: {}\n", hours_yaml(hours)));
                }
                if let Some(campaign) = &self.campaign_7 {
                    let mut entry = "campaign_id: 7".to_owned();
                    if let Some(rules) = &campaign.rules {
                        entry.push_str(&format!(", rules: {}", rules_yaml(rules)));
                    }
                    if let Some(hours) = &campaign.calling_hours {
                        entry.push_str(&format!(", calling_hours: {}", hours_yaml(hours)));
                    }
                    yaml.push_str(&format!("campaign_rules: [{{{entry}}}]\n"));
                }
                yaml
            }

            fn rules_for(&self, campaign_id: u64) -> &[ModelRule] {
                match (&self.campaign_7, campaign_id) {
                    (Some(ModelCampaign { rules: Some(rules), .. }), 7) => rules,
                    _ => &self.global,
                }
            }

            fn hours_for(&self, campaign_id: u64) -> Option<&[ModelHours]> {
                match (&self.campaign_7, campaign_id) {
                    (Some(ModelCampaign { calling_hours: Some(hours), .. }), 7) => Some(hours),
                    _ => self.calling_hours.as_deref(),
                }
            }
        }

        /// A wall-clock reading computed from the UTC offset alone: weekday (Monday = 0) and
        /// seconds since local midnight.
        #[derive(Clone, Copy, Debug)]
        struct Local {
            day: usize,
            seconds: u32,
        }

        /// A zone's wall clock for a forward scan: asks the zone for its offset again only when an
        /// instant falls outside the span where the last offset holds.
        struct ZoneClock {
            zone: TimeZone,
            offset_seconds: i64,
            valid_from: Timestamp,
            valid_until: Option<Timestamp>,
        }

        impl ZoneClock {
            fn new(zone: &TimeZone) -> ZoneClock {
                ZoneClock { zone: zone.clone(), offset_seconds: 0, valid_from: Timestamp::MAX, valid_until: None }
            }

            fn local(&mut self, at: Timestamp) -> Local {
                if at < self.valid_from || self.valid_until.is_some_and(|until| at >= until) {
                    self.offset_seconds = self.zone.to_offset(at).seconds().into();
                    self.valid_from = at;
                    self.valid_until = self.zone.following(at).next().map(|t| t.timestamp());
                }
                let local_seconds = at.as_second() + self.offset_seconds;
                // 1970-01-01 was a Thursday (Monday = 0).
                let day = (local_seconds.div_euclid(86_400) + 3).rem_euclid(7) as usize;
                Local { day, seconds: local_seconds.rem_euclid(86_400) as u32 }
            }
        }

        /// The first slot in file order containing this wall-clock time and serving `attempt`.
        fn model_slot(rules: &[ModelRule], local: Local, attempt: u32) -> Option<&ModelSlot> {
            rules
                .iter()
                .filter(|r| r.days.contains(&local.day))
                .flat_map(|r| &r.slots)
                .find(|s| s.start_minute * 60 <= local.seconds && local.seconds < s.end_minute * 60 && s.max_attempts.is_none_or(|cap| cap >= attempt))
        }

        fn model_in_windows(rules: &[ModelRule], local: Local, attempt: u32) -> bool {
            rules.iter().all(|r| r.slots.is_empty()) || model_slot(rules, local, attempt).is_some()
        }

        fn model_in_hours(hours: Option<&[ModelHours]>, local: Local) -> bool {
            hours.is_none_or(|hours| {
                hours.iter().any(|h| h.days.contains(&local.day) && h.start_minute * 60 <= local.seconds && local.seconds < h.end_minute * 60)
            })
        }

        /// What an answer must satisfy, in every zone.
        struct Question<'a> {
            /// The rules and the attempt; `None` = retry windows play no part.
            windows: Option<(&'a [ModelRule], u32)>,
            hours: Option<&'a [ModelHours]>,
            clocks: Vec<ZoneClock>,
        }

        impl Question<'_> {
            fn holds(&mut self, at: Timestamp) -> bool {
                let (windows, hours) = (self.windows, self.hours);
                self.clocks.iter_mut().all(|clock| {
                    let local = clock.local(at);
                    windows.is_none_or(|(rules, attempt)| model_in_windows(rules, local, attempt)) && model_in_hours(hours, local)
                })
            }

            /// The least instant in `[from, until]` that holds, minute by minute: slots, calling
            /// hours and UTC offsets are whole minutes, so whether an instant holds is the same
            /// all through its UTC minute.
            fn first(&mut self, from: Timestamp, until: Timestamp) -> Option<Timestamp> {
                if self.holds(from) {
                    return Some(from);
                }
                let mut minute = floor_to_minute(from) + MINUTE;
                while minute <= until {
                    if self.holds(minute) {
                        return Some(minute);
                    }
                    minute += MINUTE;
                }
                None
            }
        }

        fn floor_to_minute(at: Timestamp) -> Timestamp {
            Timestamp::from_second(at.as_second().div_euclid(60) * 60).unwrap()
        }

        // Strategies.

        /// Rules with 1-3 non-overlapping slots whose boundaries come from `boundary`.
        fn rule_strategy(days: BoxedStrategy<BTreeSet<usize>>, boundary: BoxedStrategy<u32>) -> impl Strategy<Value = ModelRule> {
            (
                days,
                proptest::collection::btree_set(boundary, 2..=6),
                proptest::collection::vec((proptest::option::of(1u32..=5), proptest::option::of(1u32..=300)), 3),
            )
                .prop_map(|(days, points, extras)| {
                    let points: Vec<u32> = points.into_iter().collect();
                    let slots = points
                        .chunks_exact(2)
                        .zip(extras)
                        .map(|(pair, (max_attempts, interval_minutes))| ModelSlot {
                            start_minute: pair[0],
                            end_minute: pair[1],
                            max_attempts,
                            interval_minutes,
                        })
                        .collect();
                    ModelRule { days: days.into_iter().collect(), slots }
                })
        }

        fn any_days() -> BoxedStrategy<BTreeSet<usize>> {
            proptest::collection::btree_set(0usize..7, 1..=7).boxed()
        }

        /// Mostly whole quarter hours between 23:00 and 05:00, where the transitions are, else
        /// any minute.
        fn boundary_near_transitions() -> BoxedStrategy<u32> {
            prop_oneof![2 => (0u32..=20).prop_map(|q| q * 15), 1 => (92u32..=96).prop_map(|q| q * 15), 1 => 0u32..=1440].boxed()
        }

        /// Entries that overlap an earlier one on a shared day are dropped (the file refuses
        /// them); the first always stays.
        fn without_overlaps(entries: Vec<ModelHours>) -> Vec<ModelHours> {
            let mut kept: Vec<ModelHours> = Vec::new();
            for entry in entries {
                let clashes = kept
                    .iter()
                    .any(|k| k.days.iter().any(|d| entry.days.contains(d)) && k.start_minute < entry.end_minute && entry.start_minute < k.end_minute);
                if !clashes {
                    kept.push(entry);
                }
            }
            kept
        }

        /// 1-3 entries: all day every day, office-like hours, or any range from `boundary`.
        fn hours_strategy(days: BoxedStrategy<BTreeSet<usize>>, boundary: BoxedStrategy<u32>) -> BoxedStrategy<Vec<ModelHours>> {
            let range = prop_oneof![
                1 => Just((0u32, 1440u32)),
                3 => (300u32..=660, 1020u32..=1440),
                3 => (boundary.clone(), boundary).prop_filter_map("an empty range", |(a, b)| (a != b).then(|| (a.min(b), a.max(b)))),
            ];
            proptest::collection::vec((days, range), 1..=3)
                .prop_map(|entries| {
                    without_overlaps(
                        entries
                            .into_iter()
                            .map(|(days, (start_minute, end_minute))| ModelHours { days: days.into_iter().collect(), start_minute, end_minute })
                            .collect(),
                    )
                })
                .boxed()
        }

        fn model_strategy(slot_days: BoxedStrategy<BTreeSet<usize>>, boundary: BoxedStrategy<u32>) -> impl Strategy<Value = Model> {
            let rules = proptest::collection::vec(rule_strategy(slot_days.clone(), boundary.clone()), 0..=2);
            let hours = proptest::option::weighted(0.8, hours_strategy(slot_days.clone(), boundary.clone()));
            let campaign_hours = proptest::option::weighted(0.5, hours_strategy(slot_days.clone(), boundary.clone()));
            let campaign_rules = proptest::option::of(proptest::collection::vec(rule_strategy(slot_days, boundary), 0..=2));
            (0..ZONES.len(), 1u32..=600, rules, hours, proptest::option::of((campaign_rules, campaign_hours))).prop_map(
                |(file_timezone, default_interval_minutes, global, calling_hours, campaign)| {
                    let campaign_7 = campaign
                        .and_then(|(rules, calling_hours)| (rules.is_some() || calling_hours.is_some()).then_some(ModelCampaign { rules, calling_hours }));
                    Model { file_timezone, default_interval_minutes, global, calling_hours, campaign_7 }
                },
            )
        }

        fn any_model() -> impl Strategy<Value = Model> {
            model_strategy(any_days(), (0u32..=1440).boxed())
        }

        /// Slots and calling hours that include the weekend (most transitions fall on a Sunday
        /// or at the midnight before one), bounded around the transitions.
        fn model_near_transitions() -> impl Strategy<Value = Model> {
            let days = proptest::collection::btree_set(0usize..5, 0..=5)
                .prop_map(|mut days| {
                    days.extend([5, 6]);
                    days
                })
                .boxed();
            model_strategy(days, boundary_near_transitions())
        }

        /// The callee's zones: none (the file's), one, the Boise and Los Angeles pair, or two or
        /// three of any.
        fn zones_strategy() -> impl Strategy<Value = Vec<usize>> {
            prop_oneof![
                1 => Just(Vec::new()),
                3 => (0..ZONES.len()).prop_map(|zone| vec![zone]),
                2 => any::<bool>().prop_map(|boise_first| if boise_first { vec![BOISE, LOS_ANGELES] } else { vec![LOS_ANGELES, BOISE] }),
                2 => proptest::sample::subsequence((0..ZONES.len()).collect::<Vec<_>>(), 2..=3).prop_shuffle(),
            ]
        }

        /// Any second of 2026, or within a day of one of the 2026 transitions of one of the
        /// callee's zones (resolved by `instant`).
        #[derive(Clone, Copy, Debug)]
        enum When {
            SecondOf2026(i64),
            NearTransition { zone_pick: usize, second_transition: bool, offset_seconds: i64 },
        }

        fn when_strategy(offset_seconds: std::ops::Range<i64>) -> impl Strategy<Value = When> {
            prop_oneof![
                1 => (0i64..365 * 86_400).prop_map(When::SecondOf2026),
                2 => (0usize..3, any::<bool>(), offset_seconds).prop_map(|(zone_pick, second_transition, offset_seconds)| When::NearTransition {
                    zone_pick,
                    second_transition,
                    offset_seconds
                }),
            ]
        }

        fn instant(when: When, zones: &[TimeZone]) -> Timestamp {
            let new_year: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
            match when {
                When::SecondOf2026(offset) => new_year + SignedDuration::from_secs(offset),
                When::NearTransition { zone_pick, second_transition, offset_seconds } => {
                    let transitions: Vec<Timestamp> = zones[zone_pick % zones.len()].following(new_year).take(2).map(|t| t.timestamp()).collect();
                    // A zone without DST: the middle of the year.
                    let base = transitions
                        .get(usize::from(second_transition))
                        .or(transitions.first())
                        .copied()
                        .unwrap_or(new_year + SignedDuration::from_hours(24 * 180));
                    base + SignedDuration::from_secs(offset_seconds)
                }
            }
        }

        fn zone_list(model: &Model, zones: &[usize]) -> (Vec<TimeZone>, Vec<TimeZone>) {
            let query: Vec<TimeZone> = zones.iter().map(|z| TimeZone::get(ZONES[*z]).unwrap()).collect();
            let effective = if query.is_empty() { vec![TimeZone::get(ZONES[model.file_timezone]).unwrap()] } else { query.clone() };
            (query, effective)
        }

        fn parse(model: &Model) -> RetryRules {
            let yaml = model.yaml();
            RetryRules::from_yaml_str(&yaml, "generated.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        }

        /// A query, as generated.
        #[derive(Clone, Debug)]
        struct Ask {
            when: When,
            attempt: u32,
            max_attempts: u32,
            outcome: Outcome,
            campaign_id: u64,
            /// Indexes into `ZONES`; empty = the file's.
            zones: Vec<usize>,
        }

        fn ask_strategy(offset_seconds: std::ops::Range<i64>) -> impl Strategy<Value = Ask> {
            (
                when_strategy(offset_seconds),
                1u32..=4,
                // Mostly attempts to spare; one in eight has none left.
                prop_oneof![1 => Just(0u32), 7 => 1u32..=3],
                prop_oneof![Just(Outcome::Disconnected), Just(Outcome::Rnr), Just(Outcome::Failed)],
                prop_oneof![Just(1u64), Just(7u64)],
                zones_strategy(),
            )
                .prop_map(|(when, attempt, spare_attempts, outcome, campaign_id, zones)| Ask {
                    when,
                    attempt,
                    max_attempts: attempt + spare_attempts,
                    outcome,
                    campaign_id,
                    zones,
                })
        }

        /// `next_retry` against the model: the retry is the model's first minute (or the
        /// candidate itself) inside an eligible slot and calling hours in every zone, and the
        /// reason tells how it got there.
        fn check_next_retry(model: &Model, ask: &Ask) -> Result<(), TestCaseError> {
            let rules = parse(model);
            let (query_zones, zones) = zone_list(model, &ask.zones);
            let at = instant(ask.when, &zones);
            let decision = rules.next_retry(&RetryQuery {
                outcome: ask.outcome,
                at,
                attempt: ask.attempt,
                max_attempts: ask.max_attempts,
                campaign_id: ask.campaign_id,
                zones: &query_zones,
            });

            if ask.attempt >= ask.max_attempts {
                let expected = format!("give up: Max retry attempts reached ({})", ask.max_attempts);
                prop_assert_eq!(summary(&decision), expected);
                return Ok(());
            }
            let next_attempt = ask.attempt + 1;
            let model_rules = model.rules_for(ask.campaign_id);
            let model_hours = model.hours_for(ask.campaign_id);
            let outcome_local = ZoneClock::new(&zones[0]).local(at);
            let interval_minutes =
                model_slot(model_rules, outcome_local, next_attempt).and_then(|s| s.interval_minutes).unwrap_or(model.default_interval_minutes);
            let interval = SignedDuration::from_mins(interval_minutes.into());
            let candidate = at + interval;
            let horizon_end = candidate + WINDOW_SEARCH_HORIZON;
            let mut question = Question { windows: Some((model_rules, next_attempt)), hours: model_hours, clocks: zones.iter().map(ZoneClock::new).collect() };
            let expected = question.first(candidate, horizon_end);

            match decision {
                RetryDecision::Retry { at: retry_at, reason } => {
                    prop_assert_eq!(Some(retry_at), expected, "the model's first instant");
                    prop_assert!(question.holds(retry_at), "{} is outside a window or calling hours in some zone", retry_at);
                    prop_assert_eq!(reason.interval, interval);
                    prop_assert_eq!(reason.candidate, candidate);
                    prop_assert_eq!(reason.local.timestamp(), retry_at);
                    prop_assert_eq!(reason.local.time_zone(), &zones[0]);
                    let others: Vec<&TimeZone> = reason.local_in_other_zones.iter().map(|z| z.time_zone()).collect();
                    prop_assert_eq!(others, zones[1..].iter().collect::<Vec<_>>());
                    prop_assert_eq!(reason.calling_hours.is_some(), model_hours.is_some());
                    // The reported slot holds the retry in the first zone and serves the attempt.
                    if let Some((slot, weekday)) = &reason.window {
                        let local = zones[0].to_datetime(retry_at);
                        let seconds = local.hour() as u32 * 3600 + local.minute() as u32 * 60 + local.second() as u32;
                        prop_assert_eq!(*weekday, local.weekday());
                        prop_assert!(slot.days.contains(weekday));
                        prop_assert!(slot.start.seconds_since_midnight() <= seconds);
                        prop_assert!(seconds < slot.end.seconds_since_midnight());
                        prop_assert!(slot.max_attempts.is_none_or(|cap| cap >= next_attempt));
                    } else {
                        prop_assert!(model_rules.iter().all(|r| r.slots.is_empty()));
                    }
                    check_postponements(&reason.postponements, candidate, retry_at, model_rules, next_attempt, model_hours)?;
                }
                RetryDecision::GiveUp { reason } => {
                    prop_assert_eq!(reason, NO_WINDOW);
                    prop_assert_eq!(expected, None, "the model finds an instant");
                }
            }
            Ok(())
        }

        /// The steps run from the candidate to the retry without a gap; each starts outside its
        /// constraint in its zone and ends inside it.
        fn check_postponements(
            steps: &[Postponement],
            candidate: Timestamp,
            retry_at: Timestamp,
            rules: &[ModelRule],
            attempt: u32,
            hours: Option<&[ModelHours]>,
        ) -> Result<(), TestCaseError> {
            let mut at = candidate;
            for step in steps {
                prop_assert_eq!(step.from, at);
                prop_assert!(step.to > step.from);
                let inside = |when: Timestamp| {
                    let local = ZoneClock::new(&step.zone).local(when);
                    match step.constraint {
                        Constraint::RetryWindows => model_in_windows(rules, local, attempt),
                        Constraint::CallingHours => model_in_hours(hours, local),
                    }
                };
                prop_assert!(!inside(step.from), "{:?}", step);
                prop_assert!(inside(step.to), "{:?}", step);
                at = step.to;
            }
            prop_assert_eq!(at, retry_at);
            Ok(())
        }

        /// `window_open_at` and `calling_hours_open_at` against the model.
        fn check_open_at(model: &Model, when: When, attempt: u32, campaign_id: u64, zone_indexes: &[usize]) -> Result<(), TestCaseError> {
            let rules = parse(model);
            let (query_zones, zones) = zone_list(model, zone_indexes);
            let at = instant(when, &zones);
            let horizon_end = at + WINDOW_SEARCH_HORIZON;
            let clocks = || zones.iter().map(ZoneClock::new).collect();
            let model_hours = model.hours_for(campaign_id);

            let mut hours_only = Question { windows: None, hours: model_hours, clocks: clocks() };
            let opens = rules.calling_hours_open_at(campaign_id, &query_zones, at);
            prop_assert_eq!(opens, hours_only.first(at, horizon_end), "calling_hours_open_at");
            if let Some(opens) = opens {
                prop_assert!(hours_only.holds(opens), "{} is outside calling hours in some zone", opens);
            }

            let mut both = Question { windows: Some((model.rules_for(campaign_id), attempt)), hours: model_hours, clocks: clocks() };
            let window_opens = rules.window_open_at(campaign_id, attempt, at, &query_zones);
            prop_assert_eq!(window_opens, both.first(at, horizon_end), "window_open_at");
            if let Some(window_opens) = window_opens {
                prop_assert!(both.holds(window_opens), "{} is outside a window or calling hours in some zone", window_opens);
                prop_assert!(opens.is_some_and(|o| o <= window_opens));
            }

            let answer = rules.calling_hours_for(campaign_id);
            prop_assert_eq!(answer.map(|h| h.entries.len()), model_hours.map(<[ModelHours]>::len));
            Ok(())
        }

        proptest! {
            // Kept small: the suite runs unoptimised on two shared cores, and a case whose
            // answer is "none" makes the model scan 14 days minute by minute in every zone.
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn next_retry_matches_the_model(model in any_model(), ask in ask_strategy(-86_400..86_400)) {
                check_next_retry(&model, &ask)?;
            }

            /// Outcomes within hours of a transition, with slots and calling hours around it.
            #[test]
            fn next_retry_matches_the_model_across_dst(model in model_near_transitions(), ask in ask_strategy(-6 * 3600..3 * 3600)) {
                check_next_retry(&model, &ask)?;
            }

            #[test]
            fn open_at_matches_the_model(
                model in any_model(),
                when in when_strategy(-86_400..86_400),
                attempt in 1u32..=5,
                campaign_id in prop_oneof![Just(1u64), Just(7u64)],
                zones in zones_strategy(),
            ) {
                check_open_at(&model, when, attempt, campaign_id, &zones)?;
            }

            #[test]
            fn open_at_matches_the_model_across_dst(
                model in model_near_transitions(),
                when in when_strategy(-6 * 3600..3 * 3600),
                attempt in 1u32..=5,
                campaign_id in prop_oneof![Just(1u64), Just(7u64)],
                zones in zones_strategy(),
            ) {
                check_open_at(&model, when, attempt, campaign_id, &zones)?;
            }
        }
    }
}
