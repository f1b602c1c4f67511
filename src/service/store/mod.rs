//! The redb store: opening and schema version, the write-side table set used by the writer
//! thread, read queries for the API, and the recovery scan used at boot.
//!
//! Invariant kept here and nowhere else: every index (ready queue, retry due-time index,
//! callback deadlines, per-campaign and per-number indexes, status counts) is updated from the
//! difference between a call's old and new record in `WriteTables::put_call`, so an index can
//! never disagree with the record it points at.

pub mod tables;

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use crate::config::StorageConfig;
use crate::core::model::{Call, CallId, Campaign, CampaignId, DeadLetter, Millis, NumberEntry, Status, codec};
pub use tables::Counter;
use tables::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure (the store refuses further work until the service restarts): {0}")]
    Redb(#[from] redb::Error),
    #[error("stored record {what} does not decode: {error}")]
    Corrupt { what: String, error: codec::CodecError },
    #[error("{path} was written by a newer callmgr (schema {found}; this build reads up to {SCHEMA_VERSION})")]
    NewerSchema { path: PathBuf, found: u64 },
    #[error("cannot create data directory {path}: {error}")]
    DataDir { path: PathBuf, error: std::io::Error },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::SetDurabilityError);

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|error| StoreError::Corrupt { what: what(), error })
}

/// The UTC day number of an instant (the key of daily counters).
pub fn day_of(ms: Millis) -> u32 {
    ms.div_euclid(86_400_000).clamp(0, u32::MAX as i64) as u32
}

/// Where a call sits in the scheduler's structures, derived from its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// New, or final: in no queue.
    Nowhere,
    /// INITIATED: in the ready queue at this position.
    Queued { seq: u64 },
    /// PROCESSING: holds a slot until the outcome or this deadline.
    InFlight { deadline: Millis },
    /// RETRYING: due at this instant.
    Waiting { at: Millis },
}

pub fn placement(call: &Call) -> Placement {
    match call.status {
        Status::Initiated => Placement::Queued { seq: call.queue_seq.expect("an INITIATED call has a queue position") },
        Status::Processing => Placement::InFlight { deadline: call.callback_deadline.expect("a PROCESSING call has a deadline") },
        Status::Retrying => Placement::Waiting { at: call.next_retry_at.expect("a RETRYING call has next_retry_at") },
        Status::Picked | Status::Failed | Status::Cancelled => Placement::Nowhere,
    }
}

/// What one committed record change means for the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallChange {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub before: Placement,
    pub after: Placement,
}

pub struct Store {
    db: Database,
    path: PathBuf,
    quick_repair: bool,
}

impl Store {
    /// Opens (or creates) `data_dir/callmgr.redb`, repairing it after an unclean exit, and checks the schema.
    pub fn open(data_dir: &Path, storage: &StorageConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| StoreError::DataDir { path: data_dir.to_path_buf(), error })?;
        let path = data_dir.join("callmgr.redb");
        let db = Database::builder()
            .set_cache_size(storage.cache_size_bytes)
            .set_repair_callback(|session| {
                tracing::warn!(progress = format!("{:.0}%", session.progress() * 100.0), "repairing the data file after an unclean exit");
            })
            .create(&path)?;
        let store = Store { db, path, quick_repair: storage.quick_repair };
        store.init_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { path: self.path.clone(), found: v }),
                // Older schemas would be migrated here, table by table, inside this transaction.
                Some(_) => {}
            }
            // Create every table so that readers never meet a missing one.
            drop(meta);
            WriteTables::open(&txn)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A write transaction that commits with an fsync before `commit` returns.
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_quick_repair(self.quick_repair);
        Ok(txn)
    }

    pub fn read(&self) -> Result<Reader, StoreError> {
        Ok(Reader { txn: self.db.begin_read()? })
    }
}

/// Every table, open on one write transaction: the writer's view of the store.
pub struct WriteTables<'t> {
    meta: Table<'t, &'static str, u64>,
    campaigns: Table<'t, u64, &'static [u8]>,
    numbers: Table<'t, (u64, &'static str), &'static [u8]>,
    calls: Table<'t, u128, &'static [u8]>,
    by_campaign: Table<'t, (u64, u128), u8>,
    by_phone: Table<'t, (&'static str, u128), ()>,
    open_calls: Table<'t, (u64, &'static str), u128>,
    ready: Table<'t, u64, (u128, u64)>,
    retry_due: Table<'t, (i64, u128), u64>,
    deadlines: Table<'t, (i64, u128), u64>,
    dead_letters: Table<'t, u64, &'static [u8]>,
    daily: Table<'t, (u32, u8), u64>,
    counts: Table<'t, (u64, u8), u64>,
    number_counts: Table<'t, u64, u64>,
}

impl<'t> WriteTables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<WriteTables<'t>, StoreError> {
        Ok(WriteTables {
            meta: txn.open_table(META)?,
            campaigns: txn.open_table(CAMPAIGNS)?,
            numbers: txn.open_table(NUMBERS)?,
            calls: txn.open_table(CALLS)?,
            by_campaign: txn.open_table(CALLS_BY_CAMPAIGN)?,
            by_phone: txn.open_table(CALLS_BY_PHONE)?,
            open_calls: txn.open_table(OPEN_CALLS)?,
            ready: txn.open_table(READY)?,
            retry_due: txn.open_table(RETRY_DUE)?,
            deadlines: txn.open_table(DEADLINES)?,
            dead_letters: txn.open_table(DEAD_LETTERS)?,
            daily: txn.open_table(DAILY)?,
            counts: txn.open_table(CALL_COUNTS)?,
            number_counts: txn.open_table(NUMBER_COUNTS)?,
        })
    }

    /// Returns the next value of a meta sequence (starting at 1) and advances it.
    pub fn next_id(&mut self, key: &str) -> Result<u64, StoreError> {
        let next = self.meta.get(key)?.map(|v| v.value()).unwrap_or(0) + 1;
        self.meta.insert(key, next)?;
        Ok(next)
    }

    pub fn campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        match self.campaigns.get(id)? {
            None => Ok(None),
            Some(v) => decode(v.value(), || format!("campaign {id}")).map(Some),
        }
    }

    pub fn put_campaign(&mut self, campaign: &Campaign) -> Result<(), StoreError> {
        self.campaigns.insert(campaign.id, codec::encode(campaign).as_slice())?;
        Ok(())
    }

    pub fn number(&self, campaign_id: CampaignId, e164: &str) -> Result<Option<NumberEntry>, StoreError> {
        match self.numbers.get((campaign_id, e164))? {
            None => Ok(None),
            Some(v) => decode(v.value(), || format!("number {campaign_id}/{e164}")).map(Some),
        }
    }

    /// Adds a number to a campaign's list; false if it was already there.
    pub fn add_number(&mut self, campaign_id: CampaignId, e164: &str, entry: &NumberEntry) -> Result<bool, StoreError> {
        if self.numbers.get((campaign_id, e164))?.is_some() {
            return Ok(false);
        }
        self.numbers.insert((campaign_id, e164), codec::encode(entry).as_slice())?;
        let count = self.number_counts.get(campaign_id)?.map(|v| v.value()).unwrap_or(0);
        self.number_counts.insert(campaign_id, count + 1)?;
        Ok(true)
    }

    /// A page of a campaign's numbers after `after` (for `start` and `use_campaign_numbers`).
    pub fn numbers_page(&self, campaign_id: CampaignId, after: Option<&str>, limit: usize) -> Result<Vec<(String, NumberEntry)>, StoreError> {
        let mut out = Vec::new();
        let range = match after {
            Some(a) => self.numbers.range((campaign_id, a)..(campaign_id + 1, ""))?,
            None => self.numbers.range((campaign_id, "")..(campaign_id + 1, ""))?,
        };
        for item in range {
            let (k, v) = item?;
            let (_, e164) = k.value();
            if Some(e164) == after {
                continue;
            }
            out.push((e164.to_string(), decode(v.value(), || format!("number {campaign_id}/{e164}"))?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn call(&self, id: CallId) -> Result<Option<Call>, StoreError> {
        match self.calls.get(id.0)? {
            None => Ok(None),
            Some(v) => decode(v.value(), || format!("call {id}")).map(Some),
        }
    }

    /// The most recent call to a number, in any campaign.
    pub fn last_call_to(&self, e164: &str) -> Result<Option<CallId>, StoreError> {
        let last = self.by_phone.range((e164, 0u128)..=(e164, u128::MAX))?.next_back();
        Ok(match last {
            Some(item) => Some(CallId(item?.0.value().1)),
            None => None,
        })
    }

    /// The number's call in this campaign that is not final yet, if any.
    pub fn open_call(&self, campaign_id: CampaignId, e164: &str) -> Result<Option<CallId>, StoreError> {
        Ok(self.open_calls.get((campaign_id, e164))?.map(|v| CallId(v.value())))
    }

    /// Stores `new` (whose previous record is `old`) and brings every index in line with it.
    /// Assigns the queue position when the call enters INITIATED.
    pub fn put_call(&mut self, old: Option<&Call>, new: &mut Call) -> Result<CallChange, StoreError> {
        let id = new.call_id.0;
        let campaign_id = new.campaign_id;
        let entered_queue = new.status == Status::Initiated && old.is_none_or(|o| o.status != Status::Initiated);
        if entered_queue {
            new.queue_seq = Some(self.next_id("next_queue_seq")?);
        }
        if new.status != Status::Initiated {
            new.queue_seq = None;
        }
        if new.status != Status::Processing {
            new.callback_deadline = None;
        }
        let before = old.map(placement).unwrap_or(Placement::Nowhere);
        let after = placement(new);
        if before != after {
            match before {
                Placement::Nowhere => {}
                Placement::Queued { seq } => {
                    self.ready.remove(seq)?;
                }
                Placement::InFlight { deadline } => {
                    self.deadlines.remove((deadline, id))?;
                }
                Placement::Waiting { at } => {
                    self.retry_due.remove((at, id))?;
                }
            }
            match after {
                Placement::Nowhere => {}
                Placement::Queued { seq } => {
                    self.ready.insert(seq, (id, campaign_id))?;
                }
                Placement::InFlight { deadline } => {
                    self.deadlines.insert((deadline, id), campaign_id)?;
                }
                Placement::Waiting { at } => {
                    self.retry_due.insert((at, id), campaign_id)?;
                }
            }
        }
        let old_status = old.map(|o| o.status);
        if old_status != Some(new.status) {
            if let Some(s) = old_status {
                self.adjust_count(campaign_id, s, -1)?;
            }
            self.adjust_count(campaign_id, new.status, 1)?;
            self.by_campaign.insert((campaign_id, id), new.status.code())?;
        }
        let phone = new.phone_number.as_str();
        if old.is_none() {
            self.by_phone.insert((phone, id), ())?;
        }
        let was_open = old.is_some_and(|o| !o.status.is_final());
        if new.status.is_final() && was_open {
            if self.open_calls.get((campaign_id, phone))?.map(|v| v.value()) == Some(id) {
                self.open_calls.remove((campaign_id, phone))?;
            }
        } else if !new.status.is_final() && !was_open {
            self.open_calls.insert((campaign_id, phone), id)?;
        }
        self.calls.insert(id, codec::encode(new).as_slice())?;
        Ok(CallChange { call_id: new.call_id, campaign_id, before, after })
    }

    fn adjust_count(&mut self, campaign_id: CampaignId, status: Status, delta: i64) -> Result<(), StoreError> {
        for key in [(campaign_id, status.code()), (0, status.code())] {
            let current = self.counts.get(key)?.map(|v| v.value()).unwrap_or(0);
            self.counts.insert(key, current.saturating_add_signed(delta))?;
        }
        Ok(())
    }

    /// Calls in PROCESSING right now, all campaigns.
    pub fn processing_count(&self) -> Result<u64, StoreError> {
        Ok(self.counts.get((0, Status::Processing.code()))?.map(|v| v.value()).unwrap_or(0))
    }

    /// Up to `limit` ids of a campaign's calls in one of `statuses`, after `after`.
    pub fn campaign_calls_in(&self, campaign_id: CampaignId, statuses: &[Status], after: Option<CallId>, limit: usize) -> Result<Vec<CallId>, StoreError> {
        let start = after.map(|a| a.0.saturating_add(1)).unwrap_or(0);
        let mut out = Vec::new();
        for item in self.by_campaign.range((campaign_id, start)..=(campaign_id, u128::MAX))? {
            let (k, v) = item?;
            if statuses.iter().any(|s| s.code() == v.value()) {
                out.push(CallId(k.value().1));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn add_dead_letter(&mut self, letter: &mut DeadLetter) -> Result<(), StoreError> {
        letter.id = self.next_id("next_dead_letter_id")?;
        self.dead_letters.insert(letter.id, codec::encode(letter).as_slice())?;
        Ok(())
    }

    pub fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>, StoreError> {
        match self.dead_letters.get(id)? {
            None => Ok(None),
            Some(v) => decode(v.value(), || format!("dead letter {id}")).map(Some),
        }
    }

    pub fn put_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.dead_letters.insert(letter.id, codec::encode(letter).as_slice())?;
        Ok(())
    }

    pub fn bump(&mut self, day: u32, counter: Counter, delta: u64) -> Result<(), StoreError> {
        let key = (day, counter.code());
        let current = self.daily.get(key)?.map(|v| v.value()).unwrap_or(0);
        self.daily.insert(key, current.saturating_add(delta))?;
        Ok(())
    }

    pub fn raise_to(&mut self, day: u32, counter: Counter, value: u64) -> Result<(), StoreError> {
        let key = (day, counter.code());
        let current = self.daily.get(key)?.map(|v| v.value()).unwrap_or(0);
        if value > current {
            self.daily.insert(key, value)?;
        }
        Ok(())
    }
}

/// Filters of `GET calls/` and the export.
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    pub campaign_id: Option<CampaignId>,
    pub status: Option<Status>,
    pub phone_number: Option<String>,
}

impl CallFilter {
    fn matches(&self, call: &Call) -> bool {
        self.campaign_id.is_none_or(|c| c == call.campaign_id)
            && self.status.is_none_or(|s| s == call.status)
            && self.phone_number.as_ref().is_none_or(|p| *p == call.phone_number)
    }
}

/// One page of a list: the items and the cursor of the next page (`None` at the end).
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// Everything the boot needs to rebuild the scheduler's memory.
#[derive(Default)]
pub struct Recovered {
    pub campaigns: Vec<Campaign>,
    /// (queue seq, call, campaign) in queue order.
    pub ready: Vec<(u64, CallId, CampaignId)>,
    /// (deadline, call, campaign): PROCESSING calls, each holding a slot.
    pub in_flight: Vec<(Millis, CallId, CampaignId)>,
    /// (due, call, campaign): RETRYING calls.
    pub retrying: Vec<(Millis, CallId, CampaignId)>,
}

/// A consistent snapshot for the API's reads.
pub struct Reader {
    txn: ReadTransaction,
}

impl Reader {
    pub fn campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        let table = self.txn.open_table(CAMPAIGNS)?;
        match table.get(id)? {
            None => Ok(None),
            Some(v) => decode(v.value(), || format!("campaign {id}")).map(Some),
        }
    }

    pub fn campaigns(&self, after: Option<CampaignId>, limit: usize) -> Result<Page<Campaign, CampaignId>, StoreError> {
        let table = self.txn.open_table(CAMPAIGNS)?;
        let mut items = Vec::new();
        let mut next = None;
        for item in table.range(after.map(|a| a + 1).unwrap_or(0)..)? {
            let (k, v) = item?;
            if items.len() == limit {
                next = items.last().map(|c: &Campaign| c.id);
                break;
            }
            items.push(decode(v.value(), || format!("campaign {}", k.value()))?);
        }
        Ok(Page { items, next })
    }

    pub fn all_campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        let table = self.txn.open_table(CAMPAIGNS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            out.push(decode(v.value(), || format!("campaign {}", k.value()))?);
        }
        Ok(out)
    }

    /// Calls per status for a campaign (or all campaigns with 0).
    pub fn status_counts(&self, campaign_id: CampaignId) -> Result<Vec<(Status, u64)>, StoreError> {
        let table = self.txn.open_table(CALL_COUNTS)?;
        let mut out = Vec::new();
        for status in Status::ALL {
            out.push((status, table.get((campaign_id, status.code()))?.map(|v| v.value()).unwrap_or(0)));
        }
        Ok(out)
    }

    pub fn number_count(&self, campaign_id: CampaignId) -> Result<u64, StoreError> {
        let table = self.txn.open_table(NUMBER_COUNTS)?;
        Ok(table.get(campaign_id)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn number(&self, campaign_id: CampaignId, e164: &str) -> Result<Option<NumberEntry>, StoreError> {
        let table = self.txn.open_table(NUMBERS)?;
        match table.get((campaign_id, e164))? {
            None => Ok(None),
            Some(v) => decode(v.value(), || format!("number {campaign_id}/{e164}")).map(Some),
        }
    }

    pub fn numbers(&self, campaign_id: CampaignId, after: Option<&str>, limit: usize) -> Result<Page<(String, NumberEntry), String>, StoreError> {
        let table = self.txn.open_table(NUMBERS)?;
        let mut items: Vec<(String, NumberEntry)> = Vec::new();
        let mut next = None;
        for item in table.range((campaign_id, after.unwrap_or(""))..(campaign_id + 1, ""))? {
            let (k, v) = item?;
            let (_, e164) = k.value();
            if Some(e164) == after {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|(n, _)| n.clone());
                break;
            }
            items.push((e164.to_string(), decode(v.value(), || format!("number {campaign_id}/{e164}"))?));
        }
        Ok(Page { items, next })
    }

    pub fn call(&self, id: CallId) -> Result<Option<Call>, StoreError> {
        let table = self.txn.open_table(CALLS)?;
        match table.get(id.0)? {
            None => Ok(None),
            Some(v) => decode(v.value(), || format!("call {id}")).map(Some),
        }
    }

    /// A page of calls matching `filter` in id (creation) order after `after`. At most
    /// `scan_max` rows are examined, so a sparse filter answers a short page with a cursor
    /// instead of scanning the whole store.
    pub fn calls(&self, filter: &CallFilter, after: Option<CallId>, limit: usize, scan_max: usize) -> Result<Page<Call, CallId>, StoreError> {
        let mut items: Vec<Call> = Vec::new();
        let mut next = None;
        self.scan_calls(filter, after, &mut |id, matched, scanned| {
            if let Some(call) = matched {
                if items.len() == limit {
                    next = items.last().map(|c| c.call_id);
                    return false;
                }
                items.push(call);
            } else if scanned >= scan_max {
                // Resume after the last row examined, matching or not.
                next = Some(id);
                return false;
            }
            true
        })?;
        Ok(Page { items, next })
    }

    /// Visits every call id after `after` in id order that the filter's index yields, with the
    /// record when it matches and the number examined so far; `visit` returning false stops.
    pub fn scan_calls(&self, filter: &CallFilter, after: Option<CallId>, visit: &mut dyn FnMut(CallId, Option<Call>, usize) -> bool) -> Result<(), StoreError> {
        let calls = self.txn.open_table(CALLS)?;
        let start = after.map(|a| a.0.saturating_add(1)).unwrap_or(0);
        let load = |id: u128| -> Result<Option<Call>, StoreError> {
            match calls.get(id)? {
                None => Ok(None),
                Some(v) => decode(v.value(), || format!("call {}", CallId(id))).map(Some),
            }
        };
        let mut scanned = 0usize;
        // Pick the narrowest index the filter allows.
        if let Some(phone) = &filter.phone_number {
            let index = self.txn.open_table(CALLS_BY_PHONE)?;
            for item in index.range((phone.as_str(), start)..=(phone.as_str(), u128::MAX))? {
                let id = item?.0.value().1;
                scanned += 1;
                let matched = load(id)?.filter(|call| filter.matches(call));
                if !visit(CallId(id), matched, scanned) {
                    return Ok(());
                }
            }
        } else if let Some(campaign_id) = filter.campaign_id {
            let index = self.txn.open_table(CALLS_BY_CAMPAIGN)?;
            for item in index.range((campaign_id, start)..=(campaign_id, u128::MAX))? {
                let (k, status) = item?;
                let id = k.value().1;
                scanned += 1;
                let matched = if filter.status.is_none_or(|s| s.code() == status.value()) { load(id)?.filter(|call| filter.matches(call)) } else { None };
                if !visit(CallId(id), matched, scanned) {
                    return Ok(());
                }
            }
        } else {
            for item in calls.range(start..)? {
                let (k, v) = item?;
                let id = k.value();
                scanned += 1;
                let call: Call = decode(v.value(), || format!("call {}", CallId(id)))?;
                let matched = Some(call).filter(|call| filter.matches(call));
                if !visit(CallId(id), matched, scanned) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub fn dead_letters(&self, after: Option<u64>, limit: usize) -> Result<Page<DeadLetter, u64>, StoreError> {
        let table = self.txn.open_table(DEAD_LETTERS)?;
        let mut items: Vec<DeadLetter> = Vec::new();
        let mut next = None;
        for item in table.range(after.map(|a| a + 1).unwrap_or(0)..)? {
            let (k, v) = item?;
            if items.len() == limit {
                next = items.last().map(|d| d.id);
                break;
            }
            items.push(decode(v.value(), || format!("dead letter {}", k.value()))?);
        }
        Ok(Page { items, next })
    }

    pub fn dead_letter_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(DEAD_LETTERS)?.len()?)
    }

    /// Daily counters for one UTC day.
    pub fn daily(&self, day: u32) -> Result<Vec<(Counter, u64)>, StoreError> {
        let table = self.txn.open_table(DAILY)?;
        let mut out = Vec::new();
        for counter in Counter::ALL {
            out.push((counter, table.get((day, counter.code()))?.map(|v| v.value()).unwrap_or(0)));
        }
        Ok(out)
    }

    /// The scan behind boot recovery: only index tables are read, never call records.
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        let mut out = Recovered { campaigns: self.all_campaigns()?, ..Recovered::default() };
        for item in self.txn.open_table(READY)?.iter()? {
            let (k, v) = item?;
            let (call, campaign) = v.value();
            out.ready.push((k.value(), CallId(call), campaign));
        }
        for item in self.txn.open_table(DEADLINES)?.iter()? {
            let (k, v) = item?;
            let (deadline, call) = k.value();
            out.in_flight.push((deadline, CallId(call), v.value()));
        }
        let retry_due = self.txn.open_table(RETRY_DUE)?;
        out.retrying.reserve(retry_due.len()? as usize);
        for item in retry_due.iter()? {
            let (k, v) = item?;
            let (at, call) = k.value();
            out.retrying.push((at, CallId(call), v.value()));
        }
        Ok(out)
    }
}
