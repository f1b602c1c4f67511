//! redb table definitions: the on-disk schema. Changing a key or value type here is a format
//! change: bump `SCHEMA_VERSION` and add a migration in `store::open`.

use redb::TableDefinition;

/// The schema this build writes; stored under `meta["schema_version"]`.
pub const SCHEMA_VERSION: u64 = 1;

/// Counters and the schema version: `schema_version`, `next_campaign_id`, `next_queue_seq`, `next_dead_letter_id`.
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
/// queue seq → (call id, campaign id): INITIATED calls in acceptance order.
pub const READY: TableDefinition<u64, (u128, u64)> = TableDefinition::new("ready_queue");
/// (next_retry_at ms, call id) → campaign id: RETRYING calls by due time.
pub const RETRY_DUE: TableDefinition<(i64, u128), u64> = TableDefinition::new("retry_due");
/// (callback deadline ms, call id) → campaign id: PROCESSING calls, each holding a slot.
pub const DEADLINES: TableDefinition<(i64, u128), u64> = TableDefinition::new("callback_deadlines");
/// dead letter id → `DeadLetter` record.
pub const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
/// (UTC day number since the epoch, counter code) → value: `recent_metrics`.
pub const DAILY: TableDefinition<(u32, u8), u64> = TableDefinition::new("daily_counters");
/// (campaign id, or 0 for all, status code) → number of calls in that status.
pub const CALL_COUNTS: TableDefinition<(u64, u8), u64> = TableDefinition::new("call_counts");
/// campaign id → numbers in its list.
pub const NUMBER_COUNTS: TableDefinition<u64, u64> = TableDefinition::new("number_counts");

/// Daily counters; the codes are stored: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Initiated = 1,
    Picked = 2,
    Disconnected = 3,
    Rnr = 4,
    Failed = 5,
    Retries = 6,
    PeakConcurrent = 7,
    CallDurationSeconds = 8,
    DeadLetters = 9,
    Dialled = 10,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::Initiated,
        Counter::Picked,
        Counter::Disconnected,
        Counter::Rnr,
        Counter::Failed,
        Counter::Retries,
        Counter::PeakConcurrent,
        Counter::CallDurationSeconds,
        Counter::DeadLetters,
        Counter::Dialled,
    ];
    pub fn code(self) -> u8 {
        self as u8
    }
}
