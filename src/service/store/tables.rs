//! redb table definitions: the on-disk schema. Changing a key or value type here is a format
//! change: bump `SCHEMA_VERSION` and add a migration in `store::migrate`.

use redb::TableDefinition;

use crate::core::model::Status;

/// The schema this build writes; stored under `meta["schema_version"]`.
///
/// * 1 — the first release.
/// * 2 — adds `held_calls`, `do_not_call`, `contact_dials` and `final_calls`, and the
///   pseudo-status counts of `call_counts` (holds, do-not-call cancellations).
pub const SCHEMA_VERSION: u64 = 2;

/// Counters and the schema version: `schema_version`, `next_campaign_id`, `next_queue_seq`,
/// `next_dead_letter_id`, `next_archive_seq` (the retention archive file the next purged chunk
/// goes to; absent = 1).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// campaign id → `Campaign` record.
pub const CAMPAIGNS: TableDefinition<u64, &[u8]> = TableDefinition::new("campaigns");
/// (campaign id, E.164) → `NumberEntry` record: a campaign's number list.
pub const NUMBERS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("campaign_numbers");
/// call id → `Call` record.
pub const CALLS: TableDefinition<u128, &[u8]> = TableDefinition::new("calls");
/// (campaign id, call id) → status code: listing and sweeping a campaign's calls.
pub const CALLS_BY_CAMPAIGN: TableDefinition<(u64, u128), u8> = TableDefinition::new("calls_by_campaign");
/// (E.164, call id) → (): a number's calls, newest last (the duplicate window looks at the last).
pub const CALLS_BY_PHONE: TableDefinition<(&str, u128), ()> = TableDefinition::new("calls_by_phone");
/// (campaign id, E.164) → call id of the number's call that is not final yet.
pub const OPEN_CALLS: TableDefinition<(u64, &str), u128> = TableDefinition::new("open_calls");
/// queue seq → (call id, campaign id): queued, dialable calls in acceptance order.
pub const READY: TableDefinition<u64, (u128, u64)> = TableDefinition::new("ready_queue");
/// (campaign id, held until ms, call id) → queue seq: queued calls held by a dialling gate.
pub const HELD: TableDefinition<(u64, i64, u128), u64> = TableDefinition::new("held_calls");
/// (next_retry_at ms, call id) → campaign id: RETRYING calls by due time.
pub const RETRY_DUE: TableDefinition<(i64, u128), u64> = TableDefinition::new("retry_due");
/// (callback deadline ms, call id) → campaign id: PROCESSING calls, each holding a slot.
pub const DEADLINES: TableDefinition<(i64, u128), u64> = TableDefinition::new("callback_deadlines");
/// (updated_at ms, call id) → campaign id: final calls by the time they last changed (retention).
pub const FINALS: TableDefinition<(i64, u128), u64> = TableDefinition::new("final_calls");
/// dead letter id → `DeadLetter` record.
pub const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
/// (scope: 0 = global, else a campaign id; E.164) → `DncEntry` record: the do-not-call list.
pub const DNC: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("do_not_call");
/// (E.164, dialled at ms, call id) → (): dials of a number within the contact-limit window.
pub const CONTACT_DIALS: TableDefinition<(&str, i64, u128), ()> = TableDefinition::new("contact_dials");
/// (UTC day number since the epoch, counter code) → value: `recent_metrics`.
pub const DAILY: TableDefinition<(u32, u8), u64> = TableDefinition::new("daily_counters");
/// (campaign id, or 0 for all; status code or `CountKey` code) → number of calls.
pub const CALL_COUNTS: TableDefinition<(u64, u8), u64> = TableDefinition::new("call_counts");
/// campaign id → numbers in its list.
pub const NUMBER_COUNTS: TableDefinition<u64, u64> = TableDefinition::new("number_counts");

/// The meta key of the next retention archive sequence number.
pub const NEXT_ARCHIVE_SEQ: &str = "next_archive_seq";

/// Counts kept in `call_counts` besides the statuses (codes 1–6). Stored: never renumber.
///
/// Codes from 101 follow from the records (`check_indexes` recomputes them). Purged calls are
/// history that no record holds any more: `PurgedCancelledDoNotCall` (104) and the purged
/// counts per status (`purged_code`, 200 + status code) only ever grow, so that lifetime totals
/// stay right after retention deleted the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountKey {
    HeldOutsideCallingHours = 101,
    HeldContactCap = 102,
    CancelledDoNotCall = 103,
    PurgedCancelledDoNotCall = 104,
}

impl CountKey {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Where purged calls of a status are counted: 200 + the status code.
pub const PURGED_STATUS_BASE: u8 = 200;

pub fn purged_code(status: Status) -> u8 {
    PURGED_STATUS_BASE + status.code()
}

/// Is this `call_counts` code history (purged calls) rather than a count of stored records?
pub fn is_history_code(code: u8) -> bool {
    code >= PURGED_STATUS_BASE || code == CountKey::PurgedCancelledDoNotCall.code()
}
