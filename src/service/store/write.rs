//! `WriteTables`: every table open on one write transaction, the writer thread's view of the
//! store. `put_call` is the one place where a call's indexes change.

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::*;
use super::{StoreError, decode};
use crate::core::codec;
use crate::core::counters::Counter;
use crate::core::model::{
    Call, CallChange, CallId, CallState, Campaign, CampaignId, CancelReason, DeadLetter, DncEntry, HoldReason, Millis, NumberEntry, Placement, Status,
};

pub struct WriteTables<'t> {
    meta: Table<'t, &'static str, u64>,
    campaigns: Table<'t, u64, &'static [u8]>,
    numbers: Table<'t, (u64, &'static str), &'static [u8]>,
    calls: Table<'t, u128, &'static [u8]>,
    by_campaign: Table<'t, (u64, u128), u8>,
    by_phone: Table<'t, (&'static str, u128), ()>,
    open_calls: Table<'t, (u64, &'static str), u128>,
    ready: Table<'t, u64, (u128, u64)>,
    held: Table<'t, (u64, i64, u128), u64>,
    retry_due: Table<'t, (i64, u128), u64>,
    deadlines: Table<'t, (i64, u128), u64>,
    finals: Table<'t, (i64, u128), u64>,
    dead_letters: Table<'t, u64, &'static [u8]>,
    dnc: Table<'t, (u64, &'static str), &'static [u8]>,
    contact_dials: Table<'t, (&'static str, i64, u128), ()>,
    daily: Table<'t, (u32, u8), u64>,
    counts: Table<'t, (u64, u8), u64>,
    number_counts: Table<'t, u64, u64>,
}

/// The `call_counts` codes a call contributes to: its status, and what it is held or cancelled for.
fn count_codes(call: &Call) -> [Option<u8>; 2] {
    let extra = match call.state {
        CallState::Initiated { hold: Some(hold), .. } => Some(match hold.reason {
            HoldReason::OutsideCallingHours => CountKey::HeldOutsideCallingHours,
            HoldReason::ContactCap => CountKey::HeldContactCap,
        }),
        CallState::Cancelled { reason: CancelReason::DoNotCall } => Some(CountKey::CancelledDoNotCall),
        _ => None,
    };
    [Some(call.status().code()), extra.map(CountKey::code)]
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
            held: txn.open_table(HELD)?,
            retry_due: txn.open_table(RETRY_DUE)?,
            deadlines: txn.open_table(DEADLINES)?,
            finals: txn.open_table(FINALS)?,
            dead_letters: txn.open_table(DEAD_LETTERS)?,
            dnc: txn.open_table(DNC)?,
            contact_dials: txn.open_table(CONTACT_DIALS)?,
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

    /// The next position at the back of the ready queue.
    pub fn next_queue_seq(&mut self) -> Result<u64, StoreError> {
        self.next_id("next_queue_seq")
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
        for item in self.numbers.range((campaign_id, after.unwrap_or(""))..(campaign_id + 1, ""))? {
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

    /// Up to `limit` ids of a number's calls (any campaign) after `after`, oldest first.
    pub fn calls_to(&self, e164: &str, after: Option<CallId>, limit: usize) -> Result<Vec<CallId>, StoreError> {
        let start = after.map(|a| a.0.saturating_add(1)).unwrap_or(0);
        let mut out = Vec::new();
        for item in self.by_phone.range((e164, start)..=(e164, u128::MAX))? {
            out.push(CallId(item?.0.value().1));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The number's call in this campaign that is not final yet, if any.
    pub fn open_call(&self, campaign_id: CampaignId, e164: &str) -> Result<Option<CallId>, StoreError> {
        Ok(self.open_calls.get((campaign_id, e164))?.map(|v| CallId(v.value())))
    }

    /// Stores `new` (whose previous record is `old`) and brings every index in line with it.
    pub fn put_call(&mut self, old: Option<&Call>, new: &Call) -> Result<CallChange, StoreError> {
        let id = new.call_id.0;
        let campaign_id = new.campaign_id;
        let before = old.map(Call::placement).unwrap_or(Placement::Nowhere);
        let after = new.placement();
        if before != after {
            match before {
                Placement::Nowhere => {}
                Placement::Queued { seq } => {
                    self.ready.remove(seq)?;
                }
                Placement::Held { until, .. } => {
                    self.held.remove((campaign_id, until, id))?;
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
                Placement::Held { seq, until } => {
                    self.held.insert((campaign_id, until, id), seq)?;
                }
                Placement::InFlight { deadline } => {
                    self.deadlines.insert((deadline, id), campaign_id)?;
                }
                Placement::Waiting { at } => {
                    self.retry_due.insert((at, id), campaign_id)?;
                }
            }
        }
        let old_codes = old.map(count_codes).unwrap_or([None, None]);
        let new_codes = count_codes(new);
        if old_codes != new_codes {
            for code in old_codes.into_iter().flatten() {
                self.adjust_count(campaign_id, code, -1)?;
            }
            for code in new_codes.into_iter().flatten() {
                self.adjust_count(campaign_id, code, 1)?;
            }
        }
        let old_status = old.map(Call::status);
        if old_status != Some(new.status()) {
            self.by_campaign.insert((campaign_id, id), new.status().code())?;
        }
        let phone = new.phone_number.as_str();
        if old.is_none() {
            self.by_phone.insert((phone, id), ())?;
        }
        let was_open = old.is_some_and(|o| !o.status().is_final());
        if new.status().is_final() && was_open {
            if self.open_calls.get((campaign_id, phone))?.map(|v| v.value()) == Some(id) {
                self.open_calls.remove((campaign_id, phone))?;
            }
        } else if !new.status().is_final() && !was_open {
            self.open_calls.insert((campaign_id, phone), id)?;
        }
        let old_final = old.filter(|o| o.status().is_final()).map(|o| o.updated_at);
        let new_final = new.status().is_final().then_some(new.updated_at);
        if old_final != new_final {
            if let Some(at) = old_final {
                self.finals.remove((at, id))?;
            }
            if let Some(at) = new_final {
                self.finals.insert((at, id), campaign_id)?;
            }
        }
        self.calls.insert(id, codec::encode(new).as_slice())?;
        Ok(CallChange { call_id: new.call_id, campaign_id, before, after })
    }

    /// Deletes a final call (`stored`, exactly as it is stored) with its attempt history and
    /// every index entry it has, and counts it as purged so that lifetime totals stay right.
    /// Daily counters are not touched. The caller checked that `stored` is what the store holds.
    pub fn purge_call(&mut self, stored: &Call) -> Result<(), StoreError> {
        debug_assert!(stored.status().is_final(), "only final calls are purged");
        let id = stored.call_id.0;
        let campaign_id = stored.campaign_id;
        self.calls.remove(id)?;
        self.by_campaign.remove((campaign_id, id))?;
        self.by_phone.remove((stored.phone_number.as_str(), id))?;
        self.finals.remove((stored.updated_at, id))?;
        // Dials still inside a contact-limit window are kept by `record_dial`'s own pruning;
        // those of a purged call are long past any window, and go with it.
        for attempt in &stored.attempts {
            self.contact_dials.remove((stored.phone_number.as_str(), attempt.dialled_at, id))?;
        }
        for code in count_codes(stored).into_iter().flatten() {
            self.adjust_count(campaign_id, code, -1)?;
        }
        self.adjust_count(campaign_id, purged_code(stored.status()), 1)?;
        if matches!(stored.state, CallState::Cancelled { reason: CancelReason::DoNotCall }) {
            self.adjust_count(campaign_id, CountKey::PurgedCancelledDoNotCall.code(), 1)?;
        }
        Ok(())
    }

    /// The sequence number the next retention archive file takes (1 for the first).
    pub fn archive_seq(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get(NEXT_ARCHIVE_SEQ)?.map(|v| v.value()).unwrap_or(1))
    }

    /// Records that archive file `seq` holds a committed chunk: the next one is `seq + 1`.
    pub fn advance_archive_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        self.meta.insert(NEXT_ARCHIVE_SEQ, seq + 1)?;
        Ok(())
    }

    fn adjust_count(&mut self, campaign_id: CampaignId, code: u8, delta: i64) -> Result<(), StoreError> {
        for key in [(campaign_id, code), (0, code)] {
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

    /// Is the number on the do-not-call list, globally or for this campaign?
    pub fn do_not_call(&self, campaign_id: CampaignId, e164: &str) -> Result<bool, StoreError> {
        Ok(self.dnc.get((0, e164))?.is_some() || self.dnc.get((campaign_id, e164))?.is_some())
    }

    /// Adds a do-not-call entry (`scope` 0 = global); false if it was already there.
    pub fn add_dnc(&mut self, scope: u64, e164: &str, entry: &DncEntry) -> Result<bool, StoreError> {
        if self.dnc.get((scope, e164))?.is_some() {
            return Ok(false);
        }
        self.dnc.insert((scope, e164), codec::encode(entry).as_slice())?;
        Ok(true)
    }

    /// Removes a do-not-call entry; false if there was none.
    pub fn remove_dnc(&mut self, scope: u64, e164: &str) -> Result<bool, StoreError> {
        Ok(self.dnc.remove((scope, e164))?.is_some())
    }

    /// When the number was dialled since `since` (exclusive), oldest first.
    pub fn recent_dials(&self, e164: &str, since: Millis) -> Result<Vec<Millis>, StoreError> {
        let mut out = Vec::new();
        for item in self.contact_dials.range((e164, since.saturating_add(1), 0u128)..=(e164, i64::MAX, u128::MAX))? {
            out.push(item?.0.value().1);
        }
        Ok(out)
    }

    /// Records a dial of the number and forgets its dials at or before `forget_before`.
    pub fn record_dial(&mut self, e164: &str, at: Millis, call_id: CallId, forget_before: Millis) -> Result<(), StoreError> {
        self.contact_dials.retain_in((e164, i64::MIN, 0u128)..=(e164, forget_before, u128::MAX), |_, _| false)?;
        self.contact_dials.insert((e164, at, call_id.0), ())?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::StorageConfig;
    use crate::core::model::{CallState, Hold};
    use crate::service::store::Store;

    fn memory_store() -> Store {
        Store::open_with_backend(redb::backends::InMemoryBackend::new(), "memory", &StorageConfig { quick_repair: false, cache_size_bytes: 4 << 20 }).unwrap()
    }

    /// A state for call `k`; queue positions are made unique by the caller.
    fn state() -> impl Strategy<Value = CallState> {
        let hold = prop_oneof![
            Just(None),
            (0i64..50, prop_oneof![Just(HoldReason::OutsideCallingHours), Just(HoldReason::ContactCap)])
                .prop_map(|(until, reason)| Some(Hold { reason, until })),
        ];
        prop_oneof![
            hold.prop_map(|hold| CallState::Initiated { queue_seq: 0, hold }),
            (0i64..50).prop_map(|deadline| CallState::Processing { deadline }),
            (0i64..50).prop_map(|next_retry_at| CallState::Retrying { next_retry_at }),
            Just(CallState::Picked),
            Just(CallState::Failed),
            prop_oneof![Just(CancelReason::CampaignStopped), Just(CancelReason::DoNotCall)].prop_map(|reason| CallState::Cancelled { reason }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever sequence of record changes the writer makes, every index agrees with the
        /// records after each commit (the model is the records themselves: `check_indexes`
        /// derives every index from them and compares).
        #[test]
        fn every_index_agrees_with_its_records_after_any_sequence_of_changes(
            steps in proptest::collection::vec((0usize..6, state(), 0i64..100), 1..60),
            per_commit in 1usize..5,
        ) {
            let store = memory_store();
            let mut calls: Vec<Option<Call>> = vec![None; 6];
            let mut seq = 0u64;
            for chunk in steps.chunks(per_commit) {
                let txn = store.begin_write().unwrap();
                {
                    let mut t = WriteTables::open(&txn).unwrap();
                    for (k, new_state, updated_at) in chunk {
                        // Calls 2j and 2j+1 share a number, in different campaigns.
                        let mut call = calls[*k].clone().unwrap_or_else(|| Call {
                            call_id: CallId(1000 + *k as u128),
                            campaign_id: 1 + (*k % 2) as u64,
                            phone_number: format!("+1555000000{}", k / 2),
                            timezone: None,
                            state: CallState::Failed,
                            attempt_count: 1,
                            max_attempts: 3,
                            created_at: 0,
                            updated_at: 0,
                            total_call_time: 0,
                            error_message: None,
                            attempts: vec![],
                        });
                        call.state = match new_state {
                            CallState::Initiated { hold, .. } => {
                                // Keep the old position while queued (as holds do), else take a new one.
                                let queue_seq = match calls[*k].as_ref().map(|c| &c.state) {
                                    Some(CallState::Initiated { queue_seq, .. }) => *queue_seq,
                                    _ => { seq += 1; seq }
                                };
                                CallState::Initiated { queue_seq, hold: *hold }
                            }
                            other => other.clone(),
                        };
                        call.updated_at = *updated_at;
                        t.put_call(calls[*k].as_ref(), &call).unwrap();
                        calls[*k] = Some(call);
                    }
                }
                txn.commit().unwrap();
                let problems = store.read().unwrap().check_indexes().unwrap();
                prop_assert!(problems.is_empty(), "{problems:#?}");
            }
        }
    }

    #[test]
    fn check_indexes_finds_an_index_entry_without_its_record() {
        let store = memory_store();
        let txn = store.begin_write().unwrap();
        {
            let mut t = WriteTables::open(&txn).unwrap();
            t.ready.insert(7, (99u128, 1u64)).unwrap();
        }
        txn.commit().unwrap();
        let problems = store.read().unwrap().check_indexes().unwrap();
        assert_eq!(problems, vec!["ready_queue: unexpected (7, 99, 1)".to_string()]);
    }

    #[test]
    fn check_indexes_finds_a_record_whose_index_entry_is_missing_and_a_wrong_count() {
        let store = memory_store();
        let call = Call {
            call_id: CallId(42),
            campaign_id: 1,
            phone_number: "+15550000001".into(),
            timezone: None,
            state: CallState::Picked,
            attempt_count: 1,
            max_attempts: 3,
            created_at: 0,
            updated_at: 5,
            total_call_time: 0,
            error_message: None,
            attempts: vec![],
        };
        let txn = store.begin_write().unwrap();
        {
            let mut t = WriteTables::open(&txn).unwrap();
            t.put_call(None, &call).unwrap();
            t.by_phone.remove(("+15550000001", 42u128)).unwrap();
            t.counts.insert((1, Status::Picked.code()), 2).unwrap();
        }
        txn.commit().unwrap();
        let problems = store.read().unwrap().check_indexes().unwrap();
        assert_eq!(
            problems,
            vec!["calls_by_phone: missing ((\"+15550000001\", 42), ())".to_string(), "call_counts: (1, 4) is 2, the records say 1".to_string(),]
        );
    }
}
