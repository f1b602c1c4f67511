//! Retention: a background thread that purges final calls whose last change is older than
//! `retention.final_calls`, in chunks of `limits.purge_chunk_max`, each one (with an archive
//! folder) first written to its archive file and only then deleted by the writer, which refuses
//! the chunk if anything changed since it was read (`writer::PurgeChunk`). It wakes every
//! `retention.check_interval`, purges while there is work, and paces itself so that normal
//! commits keep their latency. It reads snapshots and sends commands; it never writes the store.
//!
//! Why nothing is lost or archived twice, whatever instant a crash hits: a chunk is read from
//! one snapshot together with `next_archive_seq` = n; file n is complete on disk (fsync, rename,
//! folder fsync) before the writer is asked to delete; the writer deletes the chunk only if n is
//! still the next sequence number and every call is stored exactly as read, and advances the
//! sequence in the same transaction. A crash before that commit leaves the calls stored and
//! file n uncommitted: the next attempt rewrites file n (and boot sets aside any file ≥ n). A
//! crash after it leaves file n as the one record of exactly the calls it deleted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::core::callee_zone;
use crate::core::clock::SharedClock;
use crate::core::model::{Call, Campaign, CampaignId, Millis, rfc3339};
use crate::protocol::api;
use crate::service::api::views::call_view;
use crate::service::archive;
use crate::service::reload::Live;
use crate::service::store::{Store, StoreError};
use crate::service::writer::{Command, CommandError, PurgeChunk, WriterHandle};

/// After each chunk the thread rests this many times as long as the writer took to commit it,
/// so purging takes at most about a fifth of the writer's time however large the backlog.
const PACE_FACTOR: u32 = 4;
/// The shortest rest between chunks.
const PACE_MIN: Duration = Duration::from_millis(10);
/// Refused chunks (calls changed under it) retried in a row before the run gives up until the
/// next wake.
const REFUSALS_MAX: u32 = 10;

#[derive(Clone, Debug)]
pub struct RetentionSettings {
    pub final_calls: Duration,
    pub archive_dir: Option<PathBuf>,
    pub check_interval: Duration,
    pub chunk_max: usize,
    /// `timezone_inference.max_candidates`, for each archived call's zone (as the API shows it).
    pub timezone_max_candidates: usize,
}

/// What the thread reports, for `metrics/` and `/metrics`.
#[derive(Debug, Default)]
pub struct RetentionStatus {
    /// Retention is configured (the thread runs).
    pub enabled: AtomicBool,
    /// A run is purging right now.
    pub running: AtomicBool,
    runs: Mutex<Runs>,
}

#[derive(Clone, Debug, Default)]
pub struct Runs {
    /// When the thread last looked for work.
    pub last_check_at: Option<Millis>,
    /// The last run that purged something: when it ended and how many calls it purged.
    pub last_run_at: Option<Millis>,
    pub last_run_purged: u64,
    /// Calls purged since this process started.
    pub purged_since_start: u64,
    /// The last failure (archive folder not writable, …), cleared by a run that succeeds.
    pub last_error: Option<String>,
}

impl RetentionStatus {
    pub fn runs(&self) -> Runs {
        self.runs.lock().expect("retention status lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut Runs)) {
        f(&mut self.runs.lock().expect("retention status lock"))
    }
}

/// Why a run stopped early.
enum Stop {
    Shutdown,
    Failed(String),
}

struct Retention {
    store: Arc<Store>,
    writer: WriterHandle,
    /// The rules as they are now (a SIGHUP may replace them): the archive shows each call's zone.
    live: Arc<Live>,
    clock: SharedClock,
    settings: RetentionSettings,
    status: Arc<RetentionStatus>,
    /// Disconnected (its sender dropped) when the service stops.
    stop: Receiver<()>,
}

/// Starts the retention thread; it ends when `stop`'s sender is dropped.
pub fn spawn(
    store: Arc<Store>,
    writer: WriterHandle,
    live: Arc<Live>,
    clock: SharedClock,
    settings: RetentionSettings,
    status: Arc<RetentionStatus>,
    stop: Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    status.enabled.store(true, Ordering::Relaxed);
    let retention = Retention { store, writer, live, clock, settings, status, stop };
    std::thread::Builder::new().name("callmgr-retention".into()).spawn(move || retention.run())
}

impl Retention {
    fn run(self) {
        if let Some(dir) = &self.settings.archive_dir
            && let Err(error) = self.tidy_archive(dir)
        {
            tracing::error!(dir = %dir.display(), %error, "retention: cannot tidy the archive folder; purging waits until it is writable");
        }
        loop {
            self.run_once();
            match self.stop.recv_timeout(self.settings.check_interval) {
                Err(RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        }
        tracing::debug!("retention stopped");
    }

    fn tidy_archive(&self, dir: &std::path::Path) -> Result<(), String> {
        let next = self.store.read().and_then(|r| r.archive_seq()).map_err(|e| e.to_string())?;
        let stamp = jiff::Timestamp::from_millisecond(self.clock.now_ms()).map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string()).unwrap_or_default();
        for aside in archive::tidy(dir, next, &stamp).map_err(|e| e.to_string())? {
            tracing::warn!(file = %aside.display(), "retention: an archive file numbered past the store's last committed chunk was set aside (its calls are in the store)");
        }
        Ok(())
    }

    /// One run: purge chunks while there are calls older than the cutoff.
    fn run_once(&self) {
        let mut purged = 0u64;
        let mut refusals = 0u32;
        let outcome = loop {
            if matches!(self.stop.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected)) {
                break Err(Stop::Shutdown);
            }
            match self.purge_chunk() {
                Ok(None) => break Ok(()),
                Ok(Some((n, took))) => {
                    if purged == 0 {
                        self.status.running.store(true, Ordering::Relaxed);
                        tracing::info!(older_than = %crate::config::fmt_duration(self.settings.final_calls), "retention: purging final calls");
                    }
                    purged += n;
                    refusals = 0;
                    self.status.update(|r| r.purged_since_start += n);
                    let rest = (took * PACE_FACTOR).max(PACE_MIN);
                    if !matches!(self.stop.recv_timeout(rest), Err(RecvTimeoutError::Timeout)) {
                        break Err(Stop::Shutdown);
                    }
                }
                Err(ChunkError::Refused(reason)) => {
                    refusals += 1;
                    tracing::debug!(%reason, "retention: chunk refused; reading a fresh one");
                    if refusals >= REFUSALS_MAX {
                        break Err(Stop::Failed(format!("{REFUSALS_MAX} chunks in a row were refused (last: {reason})")));
                    }
                }
                Err(ChunkError::Stop(stop)) => break Err(stop),
            }
        };
        self.status.running.store(false, Ordering::Relaxed);
        let now = self.clock.now_ms();
        self.status.update(|r| {
            r.last_check_at = Some(now);
            if purged > 0 {
                r.last_run_at = Some(now);
                r.last_run_purged = purged;
            }
            match &outcome {
                Err(Stop::Failed(error)) => r.last_error = Some(error.clone()),
                Ok(()) => r.last_error = None,
                Err(Stop::Shutdown) => {}
            }
        });
        match outcome {
            Err(Stop::Failed(error)) => tracing::error!(purged, %error, "retention: run stopped; it is tried again at the next wake"),
            _ if purged > 0 => tracing::info!(purged, "retention: run finished"),
            _ => {}
        }
    }

    /// Reads, archives and purges one chunk; `None` when nothing is old enough. Returns how many
    /// calls were purged and how long the writer took.
    fn purge_chunk(&self) -> Result<Option<(u64, Duration)>, ChunkError> {
        let cutoff = self.clock.now_ms().saturating_sub(self.settings.final_calls.as_millis() as i64);
        let (seq, calls, campaigns) = {
            let reader = self.store.read().map_err(ChunkError::store)?;
            let seq = reader.archive_seq().map_err(ChunkError::store)?;
            let calls = reader.final_calls_up_to(cutoff, self.settings.chunk_max).map_err(ChunkError::store)?;
            let mut campaigns: HashMap<CampaignId, Option<Campaign>> = HashMap::new();
            if self.settings.archive_dir.is_some() {
                for call in &calls {
                    if let std::collections::hash_map::Entry::Vacant(entry) = campaigns.entry(call.campaign_id) {
                        entry.insert(reader.campaign(call.campaign_id).map_err(ChunkError::store)?);
                    }
                }
            }
            (seq, calls, campaigns)
        };
        if calls.is_empty() {
            return Ok(None);
        }
        let archive_seq = match &self.settings.archive_dir {
            Some(dir) => {
                let views: Vec<api::Call> = calls.iter().map(|call| self.view(call, campaigns.get(&call.campaign_id).and_then(Option::as_ref))).collect();
                archive::write_chunk(dir, seq, &views)
                    .map_err(|e| ChunkError::Stop(Stop::Failed(format!("cannot write archive file {}: {e}", dir.join(archive::file_name(seq)).display()))))?;
                Some(seq)
            }
            None => None,
        };
        let first = calls.first().map(|c| c.updated_at).unwrap_or_default();
        let started = Instant::now();
        match self.writer.request_blocking(|reply| Command::Purge { chunk: PurgeChunk { archive_seq, calls }, reply }) {
            Ok(n) => {
                tracing::debug!(purged = n, archive_seq, oldest = %rfc3339(first), "retention: chunk purged");
                Ok(Some((n, started.elapsed())))
            }
            Err(CommandError::Unavailable(_)) => Err(ChunkError::Stop(Stop::Shutdown)),
            Err(other) => Err(ChunkError::Refused(other.to_string())),
        }
    }

    fn view(&self, call: &Call, campaign: Option<&Campaign>) -> api::Call {
        let zone = callee_zone::resolve(
            call.timezone.as_deref(),
            &call.phone_number,
            campaign.and_then(|c| c.timezone.as_deref()),
            self.live.rules().default_timezone(),
            self.settings.timezone_max_candidates,
        );
        call_view(call, campaign, &zone)
    }
}

enum ChunkError {
    Refused(String),
    Stop(Stop),
}

impl ChunkError {
    fn store(error: StoreError) -> ChunkError {
        ChunkError::Stop(Stop::Failed(format!("reading the store: {error}")))
    }
}
