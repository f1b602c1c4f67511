//! The group-commit writer: the one thread that owns write transactions.
//!
//! Commands arrive on a bounded channel. The thread takes what is waiting (up to
//! `writer_batch_max`), applies each command to one transaction, commits it with an fsync, and
//! only then sends replies and scheduler events. A command that is refused writes nothing (each
//! handler validates before it writes). A storage error is fatal: the process exits and the
//! next boot recovers from the last commit. This module never talks HTTP and never dials.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use jiff::tz::TimeZone;
use tokio::sync::oneshot;

use crate::core::clock::SharedClock;
use crate::core::machine::{self, Input, Refusal, RetryContext, Transition};
use crate::core::model::{AppliedOutcome, Call, CallId, Campaign, CampaignId, CampaignStatus, DeadLetter, Millis, NumberEntry, Outcome, Status};
use crate::core::retry::RetryRules;
use crate::service::events::{CampaignInfo, DialJob, Event};
use crate::service::stats::{Gauges, LiveStats, Rate};
use crate::service::store::{CallChange, Counter, Store, StoreError, WriteTables, day_of};

/// A refused command, in domain terms; the API maps each variant to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Duplicate { call_id: CallId, message: String },
    #[error("{0}")]
    Unavailable(String),
}

pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// The longest the writer waits to fill a batch when the previous one showed concurrent load
/// (a fraction of one fsync, which costs milliseconds here).
const WRITER_LINGER_MAX: Duration = Duration::from_micros(500);

#[derive(Clone, Debug)]
pub struct NewCampaign {
    pub name: String,
    pub description: String,
    pub is_active: bool,
    pub timezone: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_concurrent_calls: Option<u32>,
}

/// Fields to change; `Some(None)` clears an optional field.
#[derive(Clone, Debug, Default)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_active: Option<bool>,
    pub timezone: Option<Option<String>>,
    pub max_attempts: Option<Option<u32>>,
    pub max_concurrent_calls: Option<Option<u32>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignAction {
    Pause,
    Resume,
    Stop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartSummary {
    pub queued: u64,
    pub skipped_duplicates: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedNumbers {
    pub created: Vec<String>,
    pub duplicate_count: u64,
}

/// The numbers of a bulk request: validated by the API (`Err` = refused with its reason), or the campaign's list.
#[derive(Clone, Debug)]
pub enum BulkSource {
    Numbers(Vec<Result<String, (String, String)>>),
    CampaignNumbers,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkSummary {
    pub total_requested: u64,
    pub accepted: Vec<CallId>,
    pub immediate_processed: u64,
    pub failed_numbers: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct CallbackInput {
    pub call_id: CallId,
    pub outcome: Outcome,
    pub attempt: Option<u32>,
    pub external_call_id: Option<String>,
    pub duration_seconds: Option<u64>,
}

/// How the provider answered one dial request.
#[derive(Clone, Debug)]
pub enum ProviderResult {
    Accepted { external_call_id: Option<String> },
    Refused { reason: String },
    TransportFailed { reason: String },
}

pub enum Command {
    CreateCampaign {
        input: NewCampaign,
        reply: Reply<Campaign>,
    },
    UpdateCampaign {
        id: CampaignId,
        patch: CampaignPatch,
        reply: Reply<Campaign>,
    },
    ChangeCampaign {
        id: CampaignId,
        action: CampaignAction,
        reply: Reply<Campaign>,
    },
    StartCampaign {
        id: CampaignId,
        reply: Reply<StartSummary>,
    },
    AddNumbers {
        campaign_id: CampaignId,
        numbers: Vec<(String, Option<String>)>,
        reply: Reply<AddedNumbers>,
    },
    InitiateCall {
        campaign_id: CampaignId,
        phone_number: String,
        reply: Reply<Call>,
    },
    BulkInitiate {
        campaign_id: CampaignId,
        source: BulkSource,
        reply: Reply<BulkSummary>,
    },
    Callback {
        input: CallbackInput,
        reply: Reply<(CallId, AppliedOutcome)>,
    },
    ReplayDeadLetter {
        id: u64,
        reply: Reply<Call>,
    },
    /// From the scheduler: commit these INITIATED calls as PROCESSING (their slots are reserved).
    Dispatch {
        call_ids: Vec<CallId>,
    },
    /// From a worker: the provider's answer to one dial request.
    ProviderAnswered {
        call_id: CallId,
        attempt: u32,
        result: ProviderResult,
    },
    /// From the scheduler: these (call, callback deadline) timers fired.
    CallbackTimeouts {
        due: Vec<(CallId, Millis)>,
    },
    /// From the scheduler: these (call, next_retry_at) timers fired.
    RetriesDue {
        due: Vec<(CallId, Millis)>,
    },
}

/// The senders' side of the writer's inbox.
#[derive(Clone)]
pub struct WriterHandle {
    inbox: Sender<Command>,
}

impl WriterHandle {
    /// Sends a command and waits for its reply; a full inbox is refused at once (503), never queued without bound.
    pub async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        match self.inbox.try_send(make(tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CommandError::Unavailable("The writer is saturated; retry shortly".into())),
            Err(TrySendError::Disconnected(_)) => return Err(CommandError::Unavailable("The service is shutting down".into())),
        }
        rx.await.unwrap_or_else(|_| Err(CommandError::Unavailable("The service is shutting down".into())))
    }

    /// For internal senders (scheduler): refused when full, so the caller never blocks.
    pub fn try_send(&self, command: Command) -> Result<(), Command> {
        self.inbox.try_send(command).map_err(|e| e.into_inner())
    }

    /// For worker threads: waits for room (backpressure); false once the writer is gone.
    pub fn send(&self, command: Command) -> bool {
        self.inbox.send(command).is_ok()
    }

    pub fn queued(&self) -> usize {
        self.inbox.len()
    }
}

/// What the writer needs from the configuration.
#[derive(Clone, Debug)]
pub struct WriterSettings {
    pub duplicate_window: Duration,
    pub callback_timeout: Duration,
    pub callback_url: Arc<str>,
    pub inbox_max: usize,
    pub batch_max: usize,
    /// Numbers per request and per `start` chunk.
    pub items_max: usize,
    pub cancel_chunk_max: usize,
}

/// Work that spans several transactions (so one huge campaign does not stall every other command).
enum LongJob {
    Start { campaign_id: CampaignId, after: Option<String>, summary: StartSummary, reply: Reply<StartSummary> },
    CancelSweep { campaign_id: CampaignId, after: Option<CallId> },
}

/// Everything a batch produces, released only after its commit.
#[derive(Default)]
struct Outbox {
    replies: Vec<Box<dyn FnOnce() + Send>>,
    changes: Vec<CallChange>,
    dial: Vec<DialJob>,
    refused: Vec<(CallId, CampaignId, Option<u64>)>,
    campaigns: Vec<CampaignInfo>,
    slots_changed: bool,
}

impl Outbox {
    fn reply<T: Send + 'static>(&mut self, reply: Reply<T>, result: Result<T, CommandError>) {
        self.replies.push(Box::new(move || {
            let _ = reply.send(result);
        }));
    }
}

pub struct Writer {
    store: Arc<Store>,
    rules: Arc<RetryRules>,
    clock: SharedClock,
    events: Sender<Event>,
    gauges: Arc<Gauges>,
    stats: Arc<LiveStats>,
    settings: WriterSettings,
    uuid_context: uuid::ContextV7,
    /// Campaigns as last committed (this thread is their only writer, so the cache cannot go stale).
    campaigns: HashMap<CampaignId, Campaign>,
    timezones: HashMap<String, TimeZone>,
    jobs: VecDeque<LongJob>,
}

/// Starts the writer thread. It ends when every `WriterHandle` is dropped and its inbox is empty.
pub fn spawn(
    store: Arc<Store>,
    rules: Arc<RetryRules>,
    clock: SharedClock,
    events: Sender<Event>,
    gauges: Arc<Gauges>,
    stats: Arc<LiveStats>,
    settings: WriterSettings,
) -> Result<(WriterHandle, std::thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = crossbeam_channel::bounded(settings.inbox_max);
    let mut writer = Writer {
        store,
        rules,
        clock,
        events,
        gauges,
        stats,
        settings,
        uuid_context: uuid::ContextV7::new(),
        campaigns: HashMap::new(),
        timezones: HashMap::new(),
        jobs: VecDeque::new(),
    };
    writer.resume_interrupted_stops()?;
    let handle = std::thread::Builder::new().name("callmgr-writer".into()).spawn(move || writer.run(rx)).expect("the writer thread starts");
    Ok((WriterHandle { inbox: tx }, handle))
}

impl Writer {
    /// A stop whose cancel sweep was cut short by a crash continues at boot.
    fn resume_interrupted_stops(&mut self) -> Result<(), StoreError> {
        let reader = self.store.read()?;
        for campaign in reader.all_campaigns()? {
            if campaign.status == CampaignStatus::Stopped {
                let counts = reader.status_counts(campaign.id)?;
                let waiting: u64 = counts.iter().filter(|(s, _)| matches!(s, Status::Initiated | Status::Retrying)).map(|(_, n)| n).sum();
                if waiting > 0 {
                    self.jobs.push_back(LongJob::CancelSweep { campaign_id: campaign.id, after: None });
                }
            }
        }
        Ok(())
    }

    fn run(mut self, inbox: Receiver<Command>) {
        let mut last_batch_len = 0usize;
        loop {
            let mut batch = Vec::new();
            if self.jobs.is_empty() {
                match inbox.recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            while batch.len() < self.settings.batch_max {
                match inbox.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            // Group commit: under concurrent load, the first request after a commit would otherwise
            // get an fsync of its own while the rest arrive behind it. When the last batch showed
            // concurrency, wait briefly for about as many commands again; alone, commit at once.
            if last_batch_len > 1 && batch.len() < last_batch_len.min(self.settings.batch_max) {
                let deadline = std::time::Instant::now() + WRITER_LINGER_MAX;
                while batch.len() < last_batch_len.min(self.settings.batch_max) {
                    match inbox.recv_deadline(deadline) {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
            }
            last_batch_len = batch.len();
            if let Err(error) = self.run_batch(batch) {
                // Fail-stop: after an I/O error the file's state is unknown; the next boot recovers
                // from the last commit. Nothing of this batch was acknowledged.
                tracing::error!(%error, "storage failure in the writer; exiting so that the supervisor restarts the service");
                std::process::exit(70);
            }
            self.gauges.writer_heartbeat(self.clock.now_ms());
        }
        tracing::debug!("writer stopped: every sender is gone");
    }

    fn run_batch(&mut self, batch: Vec<Command>) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut out = Outbox::default();
        let txn = self.store.begin_write()?;
        {
            let mut tables = WriteTables::open(&txn)?;
            for command in batch {
                self.apply(&mut tables, command, now, &mut out)?;
            }
            self.run_jobs(&mut tables, now, &mut out)?;
            if out.slots_changed {
                let processing = tables.processing_count()?;
                tables.raise_to(day_of(now), Counter::PeakConcurrent, processing)?;
            }
        }
        txn.commit()?;
        for reply in out.replies {
            reply();
        }
        let send = |event: Event| {
            // The scheduler drains its inbox without ever waiting on us, so this cannot deadlock.
            let _ = self.events.send(event);
        };
        for info in out.campaigns {
            send(Event::Campaign(info));
        }
        if !out.changes.is_empty() {
            send(Event::Calls(out.changes));
        }
        if !out.refused.is_empty() {
            send(Event::DialRefused(out.refused));
        }
        if !out.dial.is_empty() {
            send(Event::Dial(out.dial));
        }
        Ok(())
    }

    fn apply(&mut self, t: &mut WriteTables<'_>, command: Command, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        match command {
            Command::CreateCampaign { input, reply } => {
                let id = t.next_id("next_campaign_id")?;
                let campaign = Campaign {
                    id,
                    name: input.name,
                    description: input.description,
                    status: if input.is_active { CampaignStatus::Active } else { CampaignStatus::Paused },
                    timezone: input.timezone,
                    max_attempts: input.max_attempts,
                    max_concurrent_calls: input.max_concurrent_calls,
                    created_at: now,
                    updated_at: now,
                };
                self.put_campaign(t, &campaign, out)?;
                out.reply(reply, Ok(campaign));
            }
            Command::UpdateCampaign { id, patch, reply } => {
                let result = self.update_campaign(t, id, patch, now, out)?;
                out.reply(reply, result);
            }
            Command::ChangeCampaign { id, action, reply } => {
                let result = self.change_campaign(t, id, action, now, out)?;
                out.reply(reply, result);
            }
            Command::StartCampaign { id, reply } => match self.campaign(t, id)? {
                None => out.reply(reply, Err(CommandError::NotFound("Campaign not found".into()))),
                Some(c) if c.status == CampaignStatus::Stopped => out.reply(reply, Err(CommandError::Conflict("Campaign is stopped".into()))),
                Some(_) => {
                    self.jobs.push_back(LongJob::Start { campaign_id: id, after: None, summary: StartSummary { queued: 0, skipped_duplicates: 0 }, reply })
                }
            },
            Command::AddNumbers { campaign_id, numbers, reply } => {
                if self.campaign(t, campaign_id)?.is_none() {
                    out.reply(reply, Err(CommandError::NotFound("Campaign not found".into())));
                    return Ok(());
                }
                let mut added = AddedNumbers { created: Vec::new(), duplicate_count: 0 };
                for (e164, timezone) in numbers {
                    if t.add_number(campaign_id, &e164, &NumberEntry { timezone, added_at: now })? {
                        added.created.push(e164);
                    } else {
                        added.duplicate_count += 1;
                    }
                }
                out.reply(reply, Ok(added));
            }
            Command::InitiateCall { campaign_id, phone_number, reply } => {
                let result = match self.accepting_campaign(t, campaign_id)? {
                    Err(e) => Err(e),
                    Ok(campaign) => match self.duplicate_of(t, campaign_id, &phone_number, now)? {
                        Some(e) => Err(e),
                        None => Ok(self.create_call(t, &campaign, phone_number, now, out)?),
                    },
                };
                out.reply(reply, result);
            }
            Command::BulkInitiate { campaign_id, source, reply } => {
                let result = self.bulk_initiate(t, campaign_id, source, now, out)?;
                out.reply(reply, result);
            }
            Command::Callback { input, reply } => {
                let result = self.callback(t, input, now, out)?;
                out.reply(reply, result);
            }
            Command::ReplayDeadLetter { id, reply } => {
                let result = self.replay(t, id, now, out)?;
                out.reply(reply, result);
            }
            Command::Dispatch { call_ids } => {
                let deadline = now + self.settings.callback_timeout.as_millis() as i64;
                for call_id in call_ids {
                    let Some(call) = t.call(call_id)? else { continue };
                    let campaign = self.campaign(t, call.campaign_id)?;
                    let dialable = call.status == Status::Initiated && campaign.as_ref().is_some_and(|c| c.status == CampaignStatus::Active);
                    if !dialable {
                        let requeue = (call.status == Status::Initiated).then_some(call.queue_seq).flatten();
                        out.refused.push((call_id, call.campaign_id, requeue));
                        continue;
                    }
                    let campaign = campaign.expect("checked above");
                    let transition = self.step(&call, Input::Dispatch { callback_deadline: deadline }, now).expect("an INITIATED call dispatches");
                    let attempt = transition.call.attempt_count;
                    let phone_number = transition.call.phone_number.clone();
                    self.commit_transition(t, &call, transition, now, out)?;
                    out.dial.push(DialJob {
                        call_id,
                        attempt,
                        phone_number,
                        campaign_id: campaign.id,
                        campaign_name: campaign.name.as_str().into(),
                        callback_url: self.settings.callback_url.clone(),
                    });
                }
            }
            Command::ProviderAnswered { call_id, attempt, result } => {
                let Some(call) = t.call(call_id)? else { return Ok(()) };
                let input = match &result {
                    ProviderResult::Accepted { external_call_id } => Input::ProviderAccepted { attempt, external_call_id: external_call_id.as_deref() },
                    ProviderResult::Refused { reason } => Input::ProviderRefused { attempt, reason },
                    ProviderResult::TransportFailed { reason } => Input::TransportFailed { attempt, reason },
                };
                if let Ok(transition) = self.step(&call, input, now) {
                    self.commit_transition(t, &call, transition, now, out)?;
                }
            }
            Command::CallbackTimeouts { due } => {
                let timeout = crate::config::fmt_duration(self.settings.callback_timeout);
                for (call_id, deadline) in due {
                    let Some(call) = t.call(call_id)? else { continue };
                    // The timer applies only to the attempt it was armed for; comparing instants
                    // rather than clocks keeps a clock step from losing it.
                    if call.status != Status::Processing || call.callback_deadline != Some(deadline) {
                        continue;
                    }
                    let input = Input::CallbackTimeout { attempt: call.attempt_count, timeout: &timeout };
                    if let Ok(transition) = self.step(&call, input, now) {
                        tracing::info!(call_id = %call_id, attempt = call.attempt_count, "no callback within {timeout}: attempt counts as FAILED");
                        self.commit_transition(t, &call, transition, now, out)?;
                    }
                }
            }
            Command::RetriesDue { due } => {
                for (call_id, at) in due {
                    let Some(call) = t.call(call_id)? else { continue };
                    if call.status != Status::Retrying || call.next_retry_at != Some(at) {
                        continue;
                    }
                    if let Ok(transition) = self.step(&call, Input::RetryDue, now) {
                        self.commit_transition(t, &call, transition, now, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, call: &Call, input: Input<'_>, now: Millis) -> Result<Transition, Refusal> {
        // The callee's timezone: the number's own, else the campaign's; unknown names fall back to the file's.
        let zone_name = call.timezone.clone().or_else(|| self.campaigns.get(&call.campaign_id).and_then(|c| c.timezone.clone()));
        let timezone = zone_name.and_then(|name| {
            if !self.timezones.contains_key(&name) {
                let zone = TimeZone::get(&name).ok()?;
                self.timezones.insert(name.clone(), zone);
            }
            self.timezones.get(&name).cloned()
        });
        let context = RetryContext { rules: &self.rules, timezone: timezone.as_ref() };
        machine::step(call, input, now, &context)
    }

    /// Writes a transition's record, counters and dead letter.
    fn commit_transition(&mut self, t: &mut WriteTables<'_>, old: &Call, transition: Transition, now: Millis, out: &mut Outbox) -> Result<Call, StoreError> {
        let mut call = transition.call;
        if !transition.changed {
            return Ok(call);
        }
        if transition.applied.is_some() {
            self.stats.record(now, Rate::Outcomes, 1);
        }
        if call.status.is_final() && !old.status.is_final() {
            self.stats.record(now, Rate::Finals, 1);
        }
        let day = day_of(now);
        for (counter, n) in transition.counters {
            t.bump(day, counter, n)?;
        }
        if let Some(error) = transition.dead_letter {
            let mut letter = DeadLetter {
                id: 0,
                call_id: call.call_id,
                campaign_id: call.campaign_id,
                phone_number: call.phone_number.clone(),
                attempt: old.attempt_count,
                error,
                created_at: now,
                replayed_at: None,
            };
            t.add_dead_letter(&mut letter)?;
            tracing::warn!(call_id = %call.call_id, dead_letter = letter.id, attempt = letter.attempt, error = %letter.error, "dial request never reached the provider: dead letter recorded");
        }
        let change = t.put_call(Some(old), &mut call)?;
        self.note_change(change, out);
        if old.status != call.status {
            tracing::debug!(call_id = %call.call_id, from = %old.status.as_str(), to = %call.status.as_str(), attempt = call.attempt_count, "call changed state");
        }
        Ok(call)
    }

    fn note_change(&self, change: CallChange, out: &mut Outbox) {
        use crate::service::store::Placement::InFlight;
        if matches!(change.before, InFlight { .. }) != matches!(change.after, InFlight { .. }) {
            out.slots_changed = true;
        }
        if change.before != change.after {
            out.changes.push(change);
        }
    }

    fn campaign(&mut self, t: &WriteTables<'_>, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        if let Some(c) = self.campaigns.get(&id) {
            return Ok(Some(c.clone()));
        }
        let found = t.campaign(id)?;
        if let Some(c) = &found {
            self.campaigns.insert(id, c.clone());
        }
        Ok(found)
    }

    fn put_campaign(&mut self, t: &mut WriteTables<'_>, campaign: &Campaign, out: &mut Outbox) -> Result<(), StoreError> {
        t.put_campaign(campaign)?;
        self.campaigns.insert(campaign.id, campaign.clone());
        out.campaigns.push(CampaignInfo { id: campaign.id, status: campaign.status, max_concurrent_calls: campaign.max_concurrent_calls });
        Ok(())
    }

    /// A campaign that accepts new calls: it exists and is not stopped (a paused one accepts and holds them).
    fn accepting_campaign(&mut self, t: &WriteTables<'_>, id: CampaignId) -> Result<Result<Campaign, CommandError>, StoreError> {
        Ok(match self.campaign(t, id)? {
            Some(c) if c.status != CampaignStatus::Stopped => Ok(c),
            _ => Err(CommandError::NotFound("Campaign not found or inactive".into())),
        })
    }

    fn update_campaign(
        &mut self,
        t: &mut WriteTables<'_>,
        id: CampaignId,
        patch: CampaignPatch,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Result<Campaign, CommandError>, StoreError> {
        let Some(mut campaign) = self.campaign(t, id)? else {
            return Ok(Err(CommandError::NotFound("Campaign not found".into())));
        };
        if let Some(active) = patch.is_active {
            match (campaign.status, active) {
                (CampaignStatus::Stopped, true) => return Ok(Err(CommandError::Conflict("Campaign is stopped and cannot be reactivated".into()))),
                (CampaignStatus::Stopped, false) => {}
                (_, true) => campaign.status = CampaignStatus::Active,
                (_, false) => campaign.status = CampaignStatus::Paused,
            }
        }
        if let Some(name) = patch.name {
            campaign.name = name;
        }
        if let Some(description) = patch.description {
            campaign.description = description;
        }
        if let Some(timezone) = patch.timezone {
            campaign.timezone = timezone;
        }
        if let Some(max_attempts) = patch.max_attempts {
            campaign.max_attempts = max_attempts;
        }
        if let Some(max_concurrent_calls) = patch.max_concurrent_calls {
            campaign.max_concurrent_calls = max_concurrent_calls;
        }
        campaign.updated_at = now;
        self.put_campaign(t, &campaign, out)?;
        Ok(Ok(campaign))
    }

    fn change_campaign(
        &mut self,
        t: &mut WriteTables<'_>,
        id: CampaignId,
        action: CampaignAction,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Result<Campaign, CommandError>, StoreError> {
        let Some(mut campaign) = self.campaign(t, id)? else {
            return Ok(Err(CommandError::NotFound("Campaign not found".into())));
        };
        let target = match (action, campaign.status) {
            (_, CampaignStatus::Stopped) if action != CampaignAction::Stop => {
                return Ok(Err(CommandError::Conflict("Campaign is stopped".into())));
            }
            (CampaignAction::Pause, _) => CampaignStatus::Paused,
            (CampaignAction::Resume, _) => CampaignStatus::Active,
            (CampaignAction::Stop, _) => CampaignStatus::Stopped,
        };
        if campaign.status != target {
            campaign.status = target;
            campaign.updated_at = now;
            self.put_campaign(t, &campaign, out)?;
            tracing::info!(campaign_id = id, status = %target.as_str(), "campaign changed");
            if target == CampaignStatus::Stopped {
                self.jobs.push_back(LongJob::CancelSweep { campaign_id: id, after: None });
            }
        }
        Ok(Ok(campaign))
    }

    /// Why a new call to this number must wait, if it must (DESIGN §3, 429).
    fn duplicate_of(&self, t: &WriteTables<'_>, campaign_id: CampaignId, e164: &str, now: Millis) -> Result<Option<CommandError>, StoreError> {
        if let Some(open) = t.open_call(campaign_id, e164)? {
            return Ok(Some(CommandError::Duplicate { call_id: open, message: "An earlier call to this number in this campaign is not final yet".into() }));
        }
        let window_ms = self.settings.duplicate_window.as_millis() as i64;
        if window_ms > 0
            && let Some(last) = t.last_call_to(e164)?
            && let Some(call) = t.call(last)?
            && now - call.created_at < window_ms
        {
            return Ok(Some(CommandError::Duplicate {
                call_id: last,
                message: format!("A call to this number was accepted less than {} ago", crate::config::fmt_duration(self.settings.duplicate_window)),
            }));
        }
        Ok(None)
    }

    fn new_call_id(&mut self, now: Millis) -> CallId {
        let secs = now.div_euclid(1000).max(0) as u64;
        let nanos = (now.rem_euclid(1000) * 1_000_000) as u32;
        let ts = uuid::Timestamp::from_unix(&self.uuid_context, secs, nanos);
        CallId(uuid::Uuid::new_v7(ts).as_u128())
    }

    fn create_call(&mut self, t: &mut WriteTables<'_>, campaign: &Campaign, e164: String, now: Millis, out: &mut Outbox) -> Result<Call, StoreError> {
        let timezone = t.number(campaign.id, &e164)?.and_then(|n| n.timezone);
        let max_attempts = campaign.max_attempts.unwrap_or_else(|| self.rules.default_max_attempts());
        let call_id = self.new_call_id(now);
        let mut call = machine::new_call(call_id, campaign.id, e164, timezone, max_attempts, now);
        let change = t.put_call(None, &mut call)?;
        self.note_change(change, out);
        t.bump(day_of(now), Counter::Initiated, 1)?;
        self.stats.record(now, Rate::Accepted, 1);
        Ok(call)
    }

    fn bulk_initiate(
        &mut self,
        t: &mut WriteTables<'_>,
        campaign_id: CampaignId,
        source: BulkSource,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Result<BulkSummary, CommandError>, StoreError> {
        let campaign = match self.accepting_campaign(t, campaign_id)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let items: Vec<Result<String, (String, String)>> = match source {
            BulkSource::Numbers(items) => items,
            BulkSource::CampaignNumbers => {
                let page = t.numbers_page(campaign_id, None, self.settings.items_max + 1)?;
                if page.len() > self.settings.items_max {
                    return Ok(Err(CommandError::Invalid {
                        field: "use_campaign_numbers".into(),
                        message: format!(
                            "Campaign has more than {} numbers (limits.batch_max); use POST /api/v1/campaigns/{campaign_id}/start/ instead",
                            self.settings.items_max
                        ),
                    }));
                }
                page.into_iter().map(|(e164, _)| Ok(e164)).collect()
            }
        };
        let mut summary = BulkSummary { total_requested: items.len() as u64, accepted: Vec::new(), immediate_processed: 0, failed_numbers: Vec::new() };
        for item in items {
            match item {
                Err(refused) => summary.failed_numbers.push(refused),
                Ok(e164) => match self.duplicate_of(t, campaign_id, &e164, now)? {
                    Some(e) => summary.failed_numbers.push((e164, e.to_string())),
                    None => summary.accepted.push(self.create_call(t, &campaign, e164, now, out)?.call_id),
                },
            }
        }
        if campaign.status == CampaignStatus::Active {
            let free = self.gauges.free_slots(campaign.id, campaign.max_concurrent_calls);
            summary.immediate_processed = (summary.accepted.len() as u64).min(free);
        }
        Ok(Ok(summary))
    }

    fn callback(
        &mut self,
        t: &mut WriteTables<'_>,
        input: CallbackInput,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Result<(CallId, AppliedOutcome), CommandError>, StoreError> {
        let Some(call) = t.call(input.call_id)? else {
            return Ok(Err(CommandError::NotFound("Call not found".into())));
        };
        self.campaign(t, call.campaign_id)?;
        let step = self.step(
            &call,
            Input::Callback {
                outcome: input.outcome,
                attempt: input.attempt,
                external_call_id: input.external_call_id.as_deref(),
                duration_seconds: input.duration_seconds,
            },
            now,
        );
        match step {
            Err(refusal) => Ok(Err(CommandError::Conflict(refusal.to_string()))),
            Ok(transition) => {
                let applied = transition.applied.clone().expect("a callback step says what it applied");
                if transition.changed {
                    tracing::info!(
                        call_id = %call.call_id,
                        attempt = applied.attempt,
                        outcome = %applied.outcome.as_str(),
                        status = %applied.resulting_status.as_str(),
                        "callback applied"
                    );
                }
                self.commit_transition(t, &call, transition, now, out)?;
                Ok(Ok((call.call_id, applied)))
            }
        }
    }

    fn replay(&mut self, t: &mut WriteTables<'_>, id: u64, now: Millis, out: &mut Outbox) -> Result<Result<Call, CommandError>, StoreError> {
        let Some(mut letter) = t.dead_letter(id)? else {
            return Ok(Err(CommandError::NotFound("Dead letter not found".into())));
        };
        if letter.replayed_at.is_some() {
            return Ok(Err(CommandError::Conflict("Dead letter was already replayed".into())));
        }
        let Some(call) = t.call(letter.call_id)? else {
            return Ok(Err(CommandError::NotFound("Call not found".into())));
        };
        if let Err(e) = self.accepting_campaign(t, call.campaign_id)? {
            return Ok(Err(CommandError::Conflict(format!("Cannot replay: {e}"))));
        }
        if let Some(open) = t.open_call(call.campaign_id, &call.phone_number)?
            && open != call.call_id
        {
            return Ok(Err(CommandError::Conflict(format!("Cannot replay: call {open} to this number is not final yet"))));
        }
        let transition = match self.step(&call, Input::Replay, now) {
            Ok(t) => t,
            Err(refusal) => return Ok(Err(CommandError::Conflict(refusal.to_string()))),
        };
        let call = self.commit_transition(t, &call, transition, now, out)?;
        letter.replayed_at = Some(now);
        t.put_dead_letter(&letter)?;
        tracing::info!(dead_letter = id, call_id = %call.call_id, attempt = call.attempt_count, "dead letter replayed");
        Ok(Ok(call))
    }

    /// Advances each long job by one chunk.
    fn run_jobs(&mut self, t: &mut WriteTables<'_>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        for _ in 0..self.jobs.len() {
            let Some(job) = self.jobs.pop_front() else { break };
            match job {
                LongJob::CancelSweep { campaign_id, after } => {
                    let chunk = self.settings.cancel_chunk_max;
                    let ids = t.campaign_calls_in(campaign_id, &[Status::Initiated, Status::Retrying], after, chunk)?;
                    for &call_id in &ids {
                        if let Some(call) = t.call(call_id)?
                            && let Ok(transition) = self.step(&call, Input::Cancel, now)
                        {
                            self.commit_transition(t, &call, transition, now, out)?;
                        }
                    }
                    if ids.len() == chunk {
                        self.jobs.push_back(LongJob::CancelSweep { campaign_id, after: ids.last().copied() });
                    } else {
                        tracing::info!(campaign_id, "campaign stopped: its waiting calls are cancelled");
                    }
                }
                LongJob::Start { campaign_id, after, mut summary, reply } => {
                    let campaign = match self.accepting_campaign(t, campaign_id)? {
                        Ok(c) => c,
                        Err(_) => {
                            out.reply(reply, Err(CommandError::Conflict("Campaign was stopped while starting".into())));
                            continue;
                        }
                    };
                    let chunk = self.settings.items_max;
                    let page = t.numbers_page(campaign_id, after.as_deref(), chunk)?;
                    let last = page.last().map(|(e164, _)| e164.clone());
                    for (e164, _) in page.iter() {
                        if self.duplicate_of(t, campaign_id, e164, now)?.is_some() {
                            summary.skipped_duplicates += 1;
                        } else {
                            self.create_call(t, &campaign, e164.clone(), now, out)?;
                            summary.queued += 1;
                        }
                    }
                    if page.len() == chunk {
                        self.jobs.push_back(LongJob::Start { campaign_id, after: last, summary, reply });
                    } else {
                        tracing::info!(campaign_id, queued = summary.queued, skipped = summary.skipped_duplicates, "campaign started");
                        out.reply(reply, Ok(summary));
                    }
                }
            }
        }
        Ok(())
    }
}
