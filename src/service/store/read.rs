//! `Reader`: a consistent snapshot (one read transaction) for the API, the exports and the boot
//! recovery scan. Never writes.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::tables::*;
use super::{StoreError, decode};
use crate::core::counters::Counter;
use crate::core::model::{Call, CallId, Campaign, CampaignId, CampaignStatus, DeadLetter, DncEntry, Millis, NumberEntry, Status};

/// Filters of `GET calls/` and the export.
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    pub campaign_id: Option<CampaignId>,
    pub status: Option<Status>,
    pub phone_number: Option<String>,
    /// `updated_at` at or after this instant.
    pub updated_since: Option<Millis>,
    /// `updated_at` before this instant.
    pub updated_until: Option<Millis>,
}

/// How far past `updated_until` a call id's timestamp may lie and still be examined. A call id
/// (UUIDv7) carries the millisecond its call was created, and `updated_at ≥ created_at`, so ids
/// stamped after `until` cannot match; but the id generator never goes backwards, so after the
/// wall clock steps back an id can carry a later stamp than its call's `created_at`, by as much
/// as the step. A minute covers the steps NTP makes.
const ID_CLOCK_STEP_MARGIN_MS: Millis = 60_000;

/// The largest call id whose creation stamp is at or before `at` (ms since the epoch).
fn last_id_stamped_at(at: Millis) -> u128 {
    let ms = at.clamp(0, (1i64 << 48) - 1) as u128;
    (ms << 80) | ((1u128 << 80) - 1)
}

impl CallFilter {
    fn matches(&self, call: &Call) -> bool {
        self.campaign_id.is_none_or(|c| c == call.campaign_id)
            && self.status.is_none_or(|s| s == call.status())
            && self.phone_number.as_ref().is_none_or(|p| *p == call.phone_number)
            && self.updated_since.is_none_or(|since| call.updated_at >= since)
            && self.updated_until.is_none_or(|until| call.updated_at < until)
    }

    /// The last call id that can match: ids created after `updated_until` cannot.
    fn last_id(&self) -> u128 {
        match self.updated_until {
            Some(until) => last_id_stamped_at(until.saturating_add(ID_CLOCK_STEP_MARGIN_MS)),
            None => u128::MAX,
        }
    }
}

/// One page of a list: the items and the cursor of the next page (`None` at the end).
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// A do-not-call entry as listed: (scope, E.164, entry); scope 0 is global.
pub type DncRow = (u64, String, DncEntry);

/// Everything the boot needs to rebuild the scheduler's memory.
#[derive(Default)]
pub struct Recovered {
    pub campaigns: Vec<Campaign>,
    /// (queue seq, call, campaign) in queue order.
    pub ready: Vec<(u64, CallId, CampaignId)>,
    /// (held until, queue seq, call, campaign): queued calls held by a dialling gate.
    pub held: Vec<(Millis, u64, CallId, CampaignId)>,
    /// (deadline, call, campaign): PROCESSING calls, each holding a slot.
    pub in_flight: Vec<(Millis, CallId, CampaignId)>,
    /// (due, call, campaign): RETRYING calls.
    pub retrying: Vec<(Millis, CallId, CampaignId)>,
}

pub struct Reader {
    pub(super) txn: ReadTransaction,
}

impl Reader {
    pub(super) fn new(txn: ReadTransaction) -> Reader {
        Reader { txn }
    }

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

    /// The newest `limit` campaigns (highest id first) that are not stopped.
    pub fn newest_open_campaigns(&self, limit: usize) -> Result<Vec<Campaign>, StoreError> {
        let table = self.txn.open_table(CAMPAIGNS)?;
        let mut out = Vec::new();
        for item in table.iter()?.rev() {
            if out.len() == limit {
                break;
            }
            let (k, v) = item?;
            let campaign: Campaign = decode(v.value(), || format!("campaign {}", k.value()))?;
            if campaign.status != CampaignStatus::Stopped {
                out.push(campaign);
            }
        }
        Ok(out)
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

    fn count(&self, campaign_id: CampaignId, code: u8) -> Result<u64, StoreError> {
        let table = self.txn.open_table(CALL_COUNTS)?;
        Ok(table.get((campaign_id, code))?.map(|v| v.value()).unwrap_or(0))
    }

    /// Calls per status for a campaign (or all campaigns with 0).
    pub fn status_counts(&self, campaign_id: CampaignId) -> Result<Vec<(Status, u64)>, StoreError> {
        Status::ALL.into_iter().map(|status| Ok((status, self.count(campaign_id, status.code())?))).collect()
    }

    /// Calls counted under one of the non-status keys, for a campaign (or all with 0).
    pub fn counted(&self, campaign_id: CampaignId, key: CountKey) -> Result<u64, StoreError> {
        self.count(campaign_id, key.code())
    }

    /// Calls purged by retention, per final status, for a campaign (or all campaigns with 0).
    pub fn purged_counts(&self, campaign_id: CampaignId) -> Result<Vec<(Status, u64)>, StoreError> {
        Status::ALL.into_iter().filter(|s| s.is_final()).map(|status| Ok((status, self.count(campaign_id, purged_code(status))?))).collect()
    }

    /// Calls per status over the store's lifetime: stored plus purged.
    pub fn lifetime_status_counts(&self, campaign_id: CampaignId) -> Result<Vec<(Status, u64)>, StoreError> {
        let purged = self.purged_counts(campaign_id)?;
        let mut counts = self.status_counts(campaign_id)?;
        for (status, n) in counts.iter_mut() {
            *n += purged.iter().find(|(s, _)| s == status).map(|(_, p)| *p).unwrap_or(0);
        }
        Ok(counts)
    }

    /// A meta counter (`tables::META`), if it was ever set.
    pub fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.txn.open_table(META)?.get(key)?.map(|v| v.value()))
    }

    /// The sequence number the next retention archive file takes (1 for the first).
    pub fn archive_seq(&self) -> Result<u64, StoreError> {
        Ok(self.meta(NEXT_ARCHIVE_SEQ)?.unwrap_or(1))
    }

    /// Up to `limit` final calls whose last change is at or before `cutoff`, oldest change first.
    pub fn final_calls_up_to(&self, cutoff: Millis, limit: usize) -> Result<Vec<Call>, StoreError> {
        let finals = self.txn.open_table(FINALS)?;
        let calls = self.txn.open_table(CALLS)?;
        let mut out = Vec::new();
        for item in finals.range((i64::MIN, 0u128)..=(cutoff, u128::MAX))? {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            let id = k.value().1;
            // The index and the records are one snapshot: the record is there (check_indexes).
            if let Some(v) = calls.get(id)? {
                out.push(decode(v.value(), || format!("call {}", CallId(id)))?);
            }
        }
        Ok(out)
    }

    /// The earliest instant a held call of the campaign becomes dialable again.
    pub fn next_hold_end(&self, campaign_id: CampaignId) -> Result<Option<Millis>, StoreError> {
        let table = self.txn.open_table(HELD)?;
        let first = table.range((campaign_id, i64::MIN, 0u128)..=(campaign_id, i64::MAX, u128::MAX))?.next();
        Ok(match first {
            Some(item) => Some(item?.0.value().1),
            None => None,
        })
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
        let last = filter.last_id();
        if start > last {
            return Ok(());
        }
        // Pick the narrowest index the filter allows.
        if let Some(phone) = &filter.phone_number {
            let index = self.txn.open_table(CALLS_BY_PHONE)?;
            for item in index.range((phone.as_str(), start)..=(phone.as_str(), last))? {
                let id = item?.0.value().1;
                scanned += 1;
                let matched = load(id)?.filter(|call| filter.matches(call));
                if !visit(CallId(id), matched, scanned) {
                    return Ok(());
                }
            }
        } else if let Some(campaign_id) = filter.campaign_id {
            let index = self.txn.open_table(CALLS_BY_CAMPAIGN)?;
            for item in index.range((campaign_id, start)..=(campaign_id, last))? {
                let (k, status) = item?;
                let id = k.value().1;
                scanned += 1;
                let matched = if filter.status.is_none_or(|s| s.code() == status.value()) { load(id)?.filter(|call| filter.matches(call)) } else { None };
                if !visit(CallId(id), matched, scanned) {
                    return Ok(());
                }
            }
        } else {
            for item in calls.range(start..=last)? {
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

    /// A page of do-not-call entries `(scope, e164, entry)` in (scope, number) order after `after`,
    /// optionally only one scope (0 = global) or one number.
    pub fn dnc_entries(
        &self,
        scope: Option<u64>,
        phone_number: Option<&str>,
        after: Option<(u64, String)>,
        limit: usize,
    ) -> Result<Page<DncRow, (u64, String)>, StoreError> {
        let table = self.txn.open_table(DNC)?;
        let mut items: Vec<DncRow> = Vec::new();
        let mut next = None;
        let start = after.clone().unwrap_or((scope.unwrap_or(0), String::new()));
        for item in table.range((start.0, start.1.as_str())..)? {
            let (k, v) = item?;
            let (entry_scope, e164) = k.value();
            if after.as_ref().is_some_and(|(s, n)| *s == entry_scope && n == e164) {
                continue;
            }
            if scope.is_some_and(|s| s != entry_scope) {
                break;
            }
            if phone_number.is_some_and(|p| p != e164) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|(s, n, _)| (*s, n.clone()));
                break;
            }
            items.push((entry_scope, e164.to_string(), decode(v.value(), || format!("do-not-call entry {entry_scope}/{e164}"))?));
        }
        Ok(Page { items, next })
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
        for item in self.txn.open_table(HELD)?.iter()? {
            let (k, v) = item?;
            let (campaign, until, call) = k.value();
            out.held.push((until, v.value(), CallId(call), campaign));
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

/// What an index check found wrong, one line per problem (empty: every index agrees with the
/// records). Used by tests, the simulation and `callmgr restore`'s verification.
pub type IndexProblems = Vec<String>;

/// Problems reported at most, so a badly broken store does not produce gigabytes of text.
const INDEX_PROBLEMS_MAX: usize = 100;

/// The index entries one call record puts in each index table.
struct Entries {
    ready: Option<(u64, (u128, u64))>,
    held: Option<((u64, i64, u128), u64)>,
    deadline: Option<((i64, u128), u64)>,
    retry_due: Option<((i64, u128), u64)>,
    finals: Option<((i64, u128), u64)>,
    by_campaign: ((u64, u128), u8),
    /// (campaign, E.164) → id when the call is not final.
    open: Option<(u64, u128)>,
    count_codes: [Option<u8>; 2],
}

fn entries_of(call: &Call) -> Entries {
    use crate::core::model::{CallState, CancelReason, HoldReason, Placement};
    let id = call.call_id.0;
    let c = call.campaign_id;
    let mut e = Entries {
        ready: None,
        held: None,
        deadline: None,
        retry_due: None,
        finals: call.status().is_final().then_some(((call.updated_at, id), c)),
        by_campaign: ((c, id), call.status().code()),
        open: (!call.status().is_final()).then_some((c, id)),
        count_codes: [Some(call.status().code()), None],
    };
    match call.placement() {
        Placement::Nowhere => {}
        Placement::Queued { seq } => e.ready = Some((seq, (id, c))),
        Placement::Held { seq, until } => e.held = Some(((c, until, id), seq)),
        Placement::InFlight { deadline } => e.deadline = Some(((deadline, id), c)),
        Placement::Waiting { at } => e.retry_due = Some(((at, id), c)),
    }
    e.count_codes[1] = match call.state {
        CallState::Initiated { hold: Some(hold), .. } => Some(match hold.reason {
            HoldReason::OutsideCallingHours => CountKey::HeldOutsideCallingHours.code(),
            HoldReason::ContactCap => CountKey::HeldContactCap.code(),
        }),
        CallState::Cancelled { reason: CancelReason::DoNotCall } => Some(CountKey::CancelledDoNotCall.code()),
        _ => None,
    };
    e
}

impl Reader {
    /// Decodes every call and checks that every index entry and count follows from the records,
    /// and that every index entry points at a record that puts it there. O(calls × indexes)
    /// point lookups in constant memory (a few counters per campaign), so it also runs on a
    /// store of tens of millions of calls (`callmgr restore` verifies a backup with it).
    pub fn check_indexes(&self) -> Result<IndexProblems, StoreError> {
        use std::collections::BTreeMap;
        use std::fmt::Debug;

        let mut problems = Vec::new();
        let mut report = |problem: String| {
            if problems.len() < INDEX_PROBLEMS_MAX {
                problems.push(problem);
            }
        };
        fn missing<K: Debug, V: Debug>(name: &str, key: K, value: V) -> String {
            format!("{name}: missing {:?}", (key, value))
        }
        let calls = self.txn.open_table(CALLS)?;
        let ready = self.txn.open_table(READY)?;
        let held = self.txn.open_table(HELD)?;
        let deadlines = self.txn.open_table(DEADLINES)?;
        let retry_due = self.txn.open_table(RETRY_DUE)?;
        let finals = self.txn.open_table(FINALS)?;
        let by_campaign = self.txn.open_table(CALLS_BY_CAMPAIGN)?;
        let by_phone = self.txn.open_table(CALLS_BY_PHONE)?;
        let open_calls = self.txn.open_table(OPEN_CALLS)?;
        let load = |id: u128| -> Result<Option<Call>, StoreError> {
            match calls.get(id)? {
                None => Ok(None),
                Some(v) => decode(v.value(), || format!("call {}", CallId(id))).map(Some),
            }
        };
        let mut counts: BTreeMap<(u64, u8), u64> = BTreeMap::new();

        // Every record's entries are in their indexes.
        for item in calls.iter()? {
            let (k, v) = item?;
            let id = k.value();
            let call: Call = decode(v.value(), || format!("call {}", CallId(id)))?;
            if call.call_id.0 != id {
                report(format!("call {} is stored under {}", call.call_id, CallId(id)));
            }
            let e = entries_of(&call);
            if let Some((seq, value)) = e.ready
                && ready.get(seq)?.map(|v| v.value()) != Some(value)
            {
                report(missing("ready_queue", seq, value));
            }
            if let Some((key, seq)) = e.held
                && held.get(key)?.map(|v| v.value()) != Some(seq)
            {
                report(missing("held_calls", key, seq));
            }
            for (name, table, entry) in
                [("callback_deadlines", &deadlines, e.deadline), ("retry_due", &retry_due, e.retry_due), ("final_calls", &finals, e.finals)]
            {
                if let Some((key, campaign)) = entry
                    && table.get(key)?.map(|v| v.value()) != Some(campaign)
                {
                    report(missing(name, key, campaign));
                }
            }
            let (key, code) = e.by_campaign;
            if by_campaign.get(key)?.map(|v| v.value()) != Some(code) {
                report(missing("calls_by_campaign", key, code));
            }
            if by_phone.get((call.phone_number.as_str(), id))?.is_none() {
                report(missing("calls_by_phone", (&call.phone_number, id), ()));
            }
            if let Some((campaign, id)) = e.open {
                match open_calls.get((campaign, call.phone_number.as_str()))?.map(|v| v.value()) {
                    Some(found) if found == id => {}
                    Some(other) if load(other)?.is_some_and(|o| !o.status().is_final() && o.campaign_id == campaign && o.phone_number == call.phone_number) => {
                        report(format!("two open calls to {} in campaign {campaign}", call.phone_number));
                    }
                    _ => report(missing("open_calls", (campaign, &call.phone_number), id)),
                }
            }
            for code in e.count_codes.into_iter().flatten() {
                *counts.entry((call.campaign_id, code)).or_default() += 1;
                *counts.entry((0, code)).or_default() += 1;
            }
        }

        // Every index entry is one that its record puts there.
        let mut unexpected = |name: &str, entry: String| report(format!("{name}: unexpected {entry}"));
        for item in ready.iter()? {
            let (k, v) = item?;
            let (seq, value) = (k.value(), v.value());
            if load(value.0)?.and_then(|c| entries_of(&c).ready) != Some((seq, value)) {
                unexpected("ready_queue", format!("{:?}", (seq, value.0, value.1)));
            }
        }
        for item in held.iter()? {
            let (k, v) = item?;
            let (key, seq) = (k.value(), v.value());
            if load(key.2)?.and_then(|c| entries_of(&c).held) != Some((key, seq)) {
                unexpected("held_calls", format!("{:?}", (key.0, key.1, key.2, seq)));
            }
        }
        type Pick = fn(&Entries) -> Option<((i64, u128), u64)>;
        type TimedIndex = redb::ReadOnlyTable<(i64, u128), u64>;
        let timed: [(&str, &TimedIndex, Pick); 3] =
            [("callback_deadlines", &deadlines, |e| e.deadline), ("retry_due", &retry_due, |e| e.retry_due), ("final_calls", &finals, |e| e.finals)];
        for (name, table, pick) in timed {
            for item in table.iter()? {
                let (k, v) = item?;
                let (key, campaign) = (k.value(), v.value());
                if load(key.1)?.and_then(|c| pick(&entries_of(&c))) != Some((key, campaign)) {
                    unexpected(name, format!("{:?}", (key.0, key.1, campaign)));
                }
            }
        }
        for item in by_campaign.iter()? {
            let (k, v) = item?;
            let (key, code) = (k.value(), v.value());
            if load(key.1)?.map(|c| entries_of(&c).by_campaign) != Some((key, code)) {
                unexpected("calls_by_campaign", format!("{:?}", (key.0, key.1, code)));
            }
        }
        for item in by_phone.iter()? {
            let (k, _) = item?;
            let (phone, id) = k.value();
            if load(id)?.is_none_or(|c| c.phone_number != phone) {
                unexpected("calls_by_phone", format!("{:?}", (phone, id)));
            }
        }
        for item in open_calls.iter()? {
            let (k, v) = item?;
            let ((campaign, phone), id) = (k.value(), v.value());
            let expected = load(id)?.is_some_and(|c| c.phone_number == phone && entries_of(&c).open == Some((campaign, id)));
            if !expected {
                unexpected("open_calls", format!("{:?}", ((campaign, phone), id)));
            }
        }

        // Counts: the stored records' counts are recomputed; purged calls are history no record
        // holds, but the all-campaigns count must be the sum of the campaigns' counts.
        let mut history: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
        for item in self.txn.open_table(CALL_COUNTS)?.iter()? {
            let (k, v) = item?;
            let ((campaign, code), value) = (k.value(), v.value());
            if is_history_code(code) {
                let (all, sum) = history.entry(code).or_default();
                if campaign == 0 {
                    *all += value
                } else {
                    *sum += value
                }
                continue;
            }
            let expected = counts.remove(&(campaign, code)).unwrap_or(0);
            if value != expected {
                report(format!("call_counts: {:?} is {value}, the records say {expected}", (campaign, code)));
            }
        }
        for ((campaign, code), expected) in counts {
            report(format!("call_counts: missing {:?}", ((campaign, code), expected)));
        }
        for (code, (all, sum)) in history {
            if all != sum {
                report(format!("call_counts: purged code {code} totals {all} for all campaigns but {sum} summed over campaigns"));
            }
        }
        Ok(problems)
    }
}
