//! `Reader`: a consistent snapshot (one read transaction) for the API, the exports and the boot
//! recovery scan. Never writes.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::tables::*;
use super::{StoreError, decode};
use crate::core::counters::Counter;
use crate::core::model::{Call, CallId, Campaign, CampaignId, DeadLetter, DncEntry, Millis, NumberEntry, Status};

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
            && self.status.is_none_or(|s| s == call.status())
            && self.phone_number.as_ref().is_none_or(|p| *p == call.phone_number)
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
    txn: ReadTransaction,
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

fn text<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> std::collections::BTreeSet<String> {
    items.into_iter().map(|e| format!("{e:?}")).collect()
}

/// Problems reported at most, so a badly broken store does not produce gigabytes of text.
const INDEX_PROBLEMS_MAX: usize = 100;

impl Reader {
    /// Decodes every call and checks that every index entry and count follows from the records,
    /// and that every index entry points at a record that puts it there. O(calls).
    pub fn check_indexes(&self) -> Result<IndexProblems, StoreError> {
        use std::collections::{BTreeMap, BTreeSet};

        use crate::core::model::Placement;

        let mut problems = Vec::new();
        let mut report = |problem: String| {
            if problems.len() < INDEX_PROBLEMS_MAX {
                problems.push(problem);
            }
        };
        let mut ready = BTreeSet::new();
        let mut held = BTreeSet::new();
        let mut deadlines = BTreeSet::new();
        let mut retry_due = BTreeSet::new();
        let mut finals = BTreeSet::new();
        let mut by_campaign = BTreeSet::new();
        let mut by_phone = BTreeSet::new();
        let mut open = BTreeMap::new();
        let mut counts: BTreeMap<(u64, u8), u64> = BTreeMap::new();
        for item in self.txn.open_table(CALLS)?.iter()? {
            let (k, v) = item?;
            let id = k.value();
            let call: Call = decode(v.value(), || format!("call {}", CallId(id)))?;
            if call.call_id.0 != id {
                report(format!("call {} is stored under {}", call.call_id, CallId(id)));
            }
            let c = call.campaign_id;
            match call.placement() {
                Placement::Nowhere => {}
                Placement::Queued { seq } => {
                    ready.insert((seq, id, c));
                }
                Placement::Held { seq, until } => {
                    held.insert((c, until, id, seq));
                }
                Placement::InFlight { deadline } => {
                    deadlines.insert((deadline, id, c));
                }
                Placement::Waiting { at } => {
                    retry_due.insert((at, id, c));
                }
            }
            if call.status().is_final() {
                finals.insert((call.updated_at, id, c));
            } else if open.insert((c, call.phone_number.clone()), id).is_some() {
                report(format!("two open calls to {} in campaign {c}", call.phone_number));
            }
            by_campaign.insert((c, id, call.status().code()));
            by_phone.insert((call.phone_number.clone(), id));
            let extra = match call.state {
                crate::core::model::CallState::Initiated { hold: Some(hold), .. } => Some(match hold.reason {
                    crate::core::model::HoldReason::OutsideCallingHours => CountKey::HeldOutsideCallingHours,
                    crate::core::model::HoldReason::ContactCap => CountKey::HeldContactCap,
                }),
                crate::core::model::CallState::Cancelled { reason: crate::core::model::CancelReason::DoNotCall } => Some(CountKey::CancelledDoNotCall),
                _ => None,
            };
            for code in std::iter::once(call.status().code()).chain(extra.map(CountKey::code)) {
                *counts.entry((c, code)).or_default() += 1;
                *counts.entry((0, code)).or_default() += 1;
            }
        }
        let mut compare = |name: &str, expected: BTreeSet<String>, found: BTreeSet<String>| {
            for missing in expected.difference(&found) {
                report(format!("{name}: missing {missing}"));
            }
            for extra in found.difference(&expected) {
                report(format!("{name}: unexpected {extra}"));
            }
        };
        let mut found = BTreeSet::new();
        for item in self.txn.open_table(READY)?.iter()? {
            let (k, v) = item?;
            let (call, campaign) = v.value();
            found.insert((k.value(), call, campaign));
        }
        compare("ready_queue", text(&ready), text(&found));
        let mut found = BTreeSet::new();
        for item in self.txn.open_table(HELD)?.iter()? {
            let (k, v) = item?;
            let (campaign, until, call) = k.value();
            found.insert((campaign, until, call, v.value()));
        }
        compare("held_calls", text(&held), text(&found));
        for (name, table, expected) in [("callback_deadlines", DEADLINES, &deadlines), ("retry_due", RETRY_DUE, &retry_due), ("final_calls", FINALS, &finals)] {
            let mut found = BTreeSet::new();
            for item in self.txn.open_table(table)?.iter()? {
                let (k, v) = item?;
                let (at, call) = k.value();
                found.insert((at, call, v.value()));
            }
            compare(name, text(expected), text(&found));
        }
        let mut found = BTreeSet::new();
        for item in self.txn.open_table(CALLS_BY_CAMPAIGN)?.iter()? {
            let (k, v) = item?;
            let (campaign, call) = k.value();
            found.insert((campaign, call, v.value()));
        }
        compare("calls_by_campaign", text(&by_campaign), text(&found));
        let mut found = BTreeSet::new();
        for item in self.txn.open_table(CALLS_BY_PHONE)?.iter()? {
            let (k, _) = item?;
            let (phone, call) = k.value();
            found.insert((phone.to_string(), call));
        }
        compare("calls_by_phone", text(&by_phone), text(&found));
        let mut found = BTreeMap::new();
        for item in self.txn.open_table(OPEN_CALLS)?.iter()? {
            let (k, v) = item?;
            let (campaign, phone) = k.value();
            found.insert((campaign, phone.to_string()), v.value());
        }
        compare("open_calls", text(&open), text(&found));
        let mut found = BTreeSet::new();
        for item in self.txn.open_table(CALL_COUNTS)?.iter()? {
            let (k, v) = item?;
            if v.value() != 0 {
                found.insert((k.value(), v.value()));
            }
        }
        let expected: BTreeSet<((u64, u8), u64)> = counts.into_iter().collect();
        compare("call_counts", text(&expected), text(&found));
        Ok(problems)
    }
}
