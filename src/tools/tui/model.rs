//! Dashboard state: the last snapshot, the connection state, the screen shown (campaigns, a
//! campaign's calls, dead letters), the selection, sort and name filter, a pending
//! confirmation, the status line and the slot-usage history, with the transitions the poller's
//! updates and the keys cause. Pure data: no terminal, no network, no clock (times shown are
//! measured against the snapshot's own `fetched_at`).

use std::collections::VecDeque;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::poller::{ListSnapshot, Request, Snapshot, Update, Watch, name_matches};
use crate::protocol::api;

/// Polls of slot usage kept for its sparkline (10 minutes at the default 1 s interval).
pub const SLOT_HISTORY_MAX: usize = 600;
/// The longest name filter typed.
pub const FILTER_MAX_CHARS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// No poll has finished yet.
    Connecting,
    Connected,
    /// The last `failed_polls` polls failed; the poller keeps trying every interval.
    Disconnected {
        error: String,
        failed_polls: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Pending,
    Done,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    pub text: String,
    pub kind: StatusKind,
}

/// What fills the screen under the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    /// The panels and the campaign table.
    Main,
    /// One campaign's most recent calls.
    Calls { campaign_id: u64, name: String },
    /// The most recent dead letters.
    DeadLetters,
}

impl Screen {
    /// What the poller must watch for this screen.
    pub fn watch(&self) -> Watch {
        match self {
            Screen::Main => Watch::Nothing,
            Screen::Calls { campaign_id, .. } => Watch::Calls { campaign_id: *campaign_id },
            Screen::DeadLetters => Watch::DeadLetters,
        }
    }
}

/// The campaign table's order; `o` cycles through them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Active, then paused, then stopped; newest first within each.
    #[default]
    Running,
    /// Newest (highest id) first.
    Id,
    Name,
    /// Most calls in flight first.
    InFlight,
    /// Most calls queued first.
    Queued,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Running => Sort::Id,
            Sort::Id => Sort::Name,
            Sort::Name => Sort::InFlight,
            Sort::InFlight => Sort::Queued,
            Sort::Queued => Sort::Running,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Running => "running first",
            Sort::Id => "newest first",
            Sort::Name => "by name",
            Sort::InFlight => "most in flight first",
            Sort::Queued => "most queued first",
        }
    }
}

/// An action waiting for `y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confirm {
    Stop { id: u64, name: String },
    ReplayAll,
}

impl Confirm {
    pub fn question(&self) -> String {
        match self {
            Confirm::Stop { id, name } => format!("Stop campaign {id} ({name})? Its waiting calls are cancelled; this cannot be undone."),
            Confirm::ReplayAll => "Replay every dead letter? Each one's call is queued and dialled again.".to_string(),
        }
    }

    pub fn request(&self) -> Request {
        match self {
            Confirm::Stop { id, name } => Request::Stop { id: *id, name: name.clone() },
            Confirm::ReplayAll => Request::ReplayAll,
        }
    }
}

/// One row of the campaign table, derived from a campaign and its stats.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignRow {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub numbers: u64,
    pub calls: u64,
    pub in_flight: u64,
    /// Waiting only for a slot or the dial pace.
    pub queued: u64,
    pub held: api::Held,
    pub retrying: u64,
    pub picked: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Calls that ended by completing (PICKED or FAILED) over all calls; cancelled calls are
    /// not completions. `None` without calls.
    pub completed_percent: Option<f64>,
    /// When the earliest held call becomes dialable.
    pub next_dial_at: Option<Timestamp>,
}

impl CampaignRow {
    pub fn from_campaign(campaign: &api::Campaign) -> CampaignRow {
        let stats = campaign.stats.as_ref();
        let count = |status: &str| stats.and_then(|s| s.calls_by_status.get(status).copied()).unwrap_or(0);
        let total = stats.map_or(0, |s| s.total_calls);
        let completed = count("PICKED") + count("FAILED");
        CampaignRow {
            id: campaign.id,
            name: campaign.name.clone(),
            status: campaign.status.clone(),
            numbers: stats.map_or(0, |s| s.phone_count),
            calls: total,
            in_flight: stats.map_or(0, |s| s.in_flight as u64),
            queued: stats.map_or(0, |s| s.queued),
            held: stats.map(|s| s.held.clone()).unwrap_or_default(),
            retrying: count("RETRYING"),
            picked: count("PICKED"),
            failed: count("FAILED"),
            cancelled: count("CANCELLED"),
            completed_percent: (total > 0).then(|| completed as f64 * 100.0 / total as f64),
            next_dial_at: stats.and_then(|s| s.next_dial_at.as_deref()).and_then(|t| t.parse().ok()),
        }
    }

    /// Why the campaign's waiting calls are not dialled, in a few words: "held 1,204 until 08:00
    /// local (calling hours) · 39 waiting for a slot". Times are in `zone`, dated relative to `now`.
    pub fn waiting_note(&self, now: Timestamp, zone: &TimeZone) -> String {
        match self.status.as_str() {
            "stopped" => return "stopped".to_string(),
            "paused" if self.held.paused > 0 => return format!("paused: {} held until resumed", thousands(self.held.paused)),
            "paused" => return "paused".to_string(),
            _ => {}
        }
        let mut parts = Vec::new();
        let held = self.held.outside_calling_hours + self.held.contact_cap;
        if held > 0 {
            let why = match (self.held.outside_calling_hours, self.held.contact_cap) {
                (_, 0) => "calling hours".to_string(),
                (0, _) => "contact cap".to_string(),
                (hours, cap) => format!("calling hours {}, contact cap {}", thousands(hours), thousands(cap)),
            };
            let until = self.next_dial_at.map(|at| format!(" until {} local", when(at, now, zone))).unwrap_or_default();
            parts.push(format!("held {}{until} ({why})", thousands(held)));
        }
        if self.queued > 0 {
            parts.push(format!("{} waiting for a slot", thousands(self.queued)));
        }
        if self.retrying > 0 && parts.is_empty() && self.in_flight == 0 {
            parts.push(format!("{} waiting for a retry", thousands(self.retrying)));
        }
        if parts.is_empty() {
            let finished = self.calls > 0 && self.in_flight == 0 && self.retrying == 0;
            return match (self.calls, finished) {
                (0, _) => "no calls yet".to_string(),
                (_, true) => "finished".to_string(),
                _ => String::new(),
            };
        }
        parts.join(" · ")
    }
}

/// `08:00` on `now`'s day, `Sat 08:00` within the week, else `2026-11-28 08:00` (all in `zone`).
pub fn when(at: Timestamp, now: Timestamp, zone: &TimeZone) -> String {
    dated(at, now, zone, "%H:%M")
}

/// Like [`when`], with seconds: `08:00:05`, `Sat 08:00:05`, `2026-11-28 08:00:05`.
pub fn when_to_the_second(at: Timestamp, now: Timestamp, zone: &TimeZone) -> String {
    dated(at, now, zone, "%H:%M:%S")
}

fn dated(at: Timestamp, now: Timestamp, zone: &TimeZone, time: &str) -> String {
    let at = at.to_zoned(zone.clone());
    let now = now.to_zoned(zone.clone());
    let days = (at.date() - now.date()).get_days();
    let format = if days == 0 {
        time.to_string()
    } else if (1..7).contains(&days) {
        format!("%a {time}")
    } else {
        format!("%Y-%m-%d {time}")
    };
    at.strftime(&format).to_string()
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Everything the screen shows. `view::render` reads it; nothing else draws.
#[derive(Debug)]
pub struct Model {
    /// The service's base URL, shown in the header.
    pub url: String,
    /// The poll interval, shown in the disconnected banner and the help.
    pub interval: Duration,
    /// Whether to draw in colour (`NO_COLOR` unset or empty).
    pub colors: bool,
    /// The timezone times are shown in ("until 08:00 local").
    pub zone: TimeZone,
    pub connection: Connection,
    /// The last successful poll; kept (and marked stale) while disconnected.
    pub snapshot: Option<Snapshot>,
    /// Campaign rows of `snapshot` that pass the filter, in `sort` order.
    pub rows: Vec<CampaignRow>,
    /// The selected campaign by id, so the selection follows it when rows move.
    pub selected_id: Option<u64>,
    pub sort: Sort,
    /// Campaigns shown are those whose name contains this (any case); empty shows all.
    pub filter: String,
    /// Keys go to the filter while it is being typed (after `/`).
    pub editing_filter: bool,
    pub screen: Screen,
    /// The selected row of the calls or dead-letters list.
    pub list_selected: usize,
    /// An action waiting for its `y`/`n`.
    pub confirm: Option<Confirm>,
    /// The result of the last action, or that one is under way.
    pub status: Option<StatusLine>,
    pub show_help: bool,
    /// Calls holding a slot at each successful poll, oldest first, at most `SLOT_HISTORY_MAX`.
    pub slot_history: VecDeque<u64>,
}

impl Model {
    pub fn new(url: &str, interval: Duration) -> Model {
        Model {
            url: url.trim_end_matches('/').to_string(),
            interval,
            colors: true,
            zone: TimeZone::UTC,
            connection: Connection::Connecting,
            snapshot: None,
            rows: Vec::new(),
            selected_id: None,
            sort: Sort::default(),
            filter: String::new(),
            editing_filter: false,
            screen: Screen::Main,
            list_selected: 0,
            confirm: None,
            status: None,
            show_help: false,
            slot_history: VecDeque::with_capacity(SLOT_HISTORY_MAX),
        }
    }

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Snapshot(snapshot) => {
                self.connection = Connection::Connected;
                if self.slot_history.len() == SLOT_HISTORY_MAX {
                    self.slot_history.pop_front();
                }
                self.slot_history.push_back(snapshot.metrics.current_concurrent_calls);
                self.snapshot = Some(*snapshot);
                self.refresh_rows();
                self.list_selected = self.list_selected.min(self.list_len().saturating_sub(1));
            }
            Update::PollFailed(error) => {
                let failed_polls = match &self.connection {
                    Connection::Disconnected { failed_polls, .. } => failed_polls + 1,
                    _ => 1,
                };
                self.connection = Connection::Disconnected { error, failed_polls };
            }
            // The run loop ends on this one; the model only shows it meanwhile.
            Update::Unauthorized(error) => self.status = Some(StatusLine { text: error, kind: StatusKind::Failed }),
            Update::ActionDone { message, ok } => {
                self.status = Some(StatusLine { text: message, kind: if ok { StatusKind::Done } else { StatusKind::Failed } });
            }
        }
    }

    /// Rebuilds the rows from the snapshot, the filter and the sort.
    pub fn refresh_rows(&mut self) {
        let Some(snapshot) = &self.snapshot else { return };
        let filter = (!self.filter.is_empty()).then_some(self.filter.as_str());
        let mut rows: Vec<CampaignRow> = snapshot.campaigns.iter().filter(|c| name_matches(&c.name, filter)).map(CampaignRow::from_campaign).collect();
        match self.sort {
            // The poller's order is already running first, newest first.
            Sort::Running => {}
            Sort::Id => rows.sort_by_key(|row| std::cmp::Reverse(row.id)),
            Sort::Name => rows.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.id.cmp(&b.id))),
            Sort::InFlight => rows.sort_by(|a, b| b.in_flight.cmp(&a.in_flight).then(b.id.cmp(&a.id))),
            Sort::Queued => rows.sort_by(|a, b| b.queued.cmp(&a.queued).then(b.id.cmp(&a.id))),
        }
        self.rows = rows;
        let still_there = self.selected_id.is_some_and(|id| self.rows.iter().any(|r| r.id == id));
        if !still_there {
            self.selected_id = self.rows.first().map(|r| r.id);
        }
    }

    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected_id?;
        self.rows.iter().position(|r| r.id == id)
    }

    pub fn selected_row(&self) -> Option<&CampaignRow> {
        self.selected_index().map(|i| &self.rows[i])
    }

    /// Moves the selection by `step` rows (of the campaigns, or of the list shown), stopping
    /// at the first and last row.
    pub fn move_selection(&mut self, step: isize) {
        if self.screen != Screen::Main {
            let last = self.list_len().saturating_sub(1);
            self.list_selected = self.list_selected.saturating_add_signed(step).min(last);
            return;
        }
        if self.rows.is_empty() {
            return;
        }
        let current = self.selected_index().unwrap_or(0);
        let last = self.rows.len() - 1;
        let next = current.saturating_add_signed(step).min(last);
        self.selected_id = Some(self.rows[next].id);
    }

    /// The request that pauses (or resumes) the selected campaign, noting it in the status line;
    /// `None` (with a note) when nothing is selected.
    pub fn campaign_request(&mut self, pause: bool) -> Option<Request> {
        let (id, name) = self.selected_or_note()?;
        let verb = if pause { "pausing" } else { "resuming" };
        self.status = Some(StatusLine { text: format!("{verb} campaign {id} ({name})…"), kind: StatusKind::Pending });
        Some(if pause { Request::Pause { id, name } } else { Request::Resume { id, name } })
    }

    /// Asks for confirmation before stopping the selected campaign.
    pub fn ask_stop(&mut self) {
        if let Some((id, name)) = self.selected_or_note() {
            self.confirm = Some(Confirm::Stop { id, name });
        }
    }

    fn selected_or_note(&mut self) -> Option<(u64, String)> {
        match self.selected_row() {
            Some(row) => Some((row.id, row.name.clone())),
            None => {
                self.status = Some(StatusLine { text: "no campaign selected".into(), kind: StatusKind::Failed });
                None
            }
        }
    }

    /// The answer to the pending confirmation: the request on yes.
    pub fn answer_confirm(&mut self, yes: bool) -> Option<Request> {
        let confirm = self.confirm.take()?;
        if yes {
            let request = confirm.request();
            let text = match &confirm {
                Confirm::Stop { id, name } => format!("stopping campaign {id} ({name})…"),
                Confirm::ReplayAll => "replaying every dead letter…".to_string(),
            };
            self.status = Some(StatusLine { text, kind: StatusKind::Pending });
            Some(request)
        } else {
            self.status = Some(StatusLine { text: "cancelled: nothing was changed".into(), kind: StatusKind::Done });
            None
        }
    }

    /// Opens `screen`; returns what the poller must watch now.
    pub fn open(&mut self, screen: Screen) -> Request {
        self.screen = screen;
        self.list_selected = 0;
        Request::Watch(self.screen.watch())
    }

    /// The calls screen of the selected campaign.
    pub fn open_calls(&mut self) -> Option<Request> {
        let (campaign_id, name) = self.selected_or_note()?;
        Some(self.open(Screen::Calls { campaign_id, name }))
    }

    /// The watched list, if the snapshot holds the one for the screen shown.
    pub fn list(&self) -> Option<&ListSnapshot> {
        let list = self.snapshot.as_ref()?.list.as_ref()?;
        let matches = match (&self.screen, list) {
            (Screen::Calls { campaign_id, .. }, ListSnapshot::Calls { campaign_id: listed, .. }) => campaign_id == listed,
            (Screen::DeadLetters, ListSnapshot::DeadLetters { .. }) => true,
            _ => false,
        };
        matches.then_some(list)
    }

    fn list_len(&self) -> usize {
        match self.list() {
            Some(ListSnapshot::Calls { calls, .. }) => calls.len(),
            Some(ListSnapshot::DeadLetters { letters, .. }) => letters.len(),
            None => 0,
        }
    }

    /// The request that replays the selected dead letter.
    pub fn replay_selected(&mut self) -> Option<Request> {
        let Some(ListSnapshot::DeadLetters { letters, .. }) = self.list() else { return None };
        let Some(letter) = letters.get(self.list_selected) else {
            self.status = Some(StatusLine { text: "no dead letter selected".into(), kind: StatusKind::Failed });
            return None;
        };
        let id = letter.id;
        self.status = Some(StatusLine { text: format!("replaying dead letter {id}…"), kind: StatusKind::Pending });
        Some(Request::Replay { id })
    }

    pub fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
        self.refresh_rows();
        self.status = Some(StatusLine { text: format!("campaigns sorted {}", self.sort.label()), kind: StatusKind::Done });
    }

    /// The filter as the poller should apply it.
    pub fn filter_request(&self) -> Request {
        Request::Filter((!self.filter.is_empty()).then(|| self.filter.clone()))
    }

    /// Today's counters (the service's day), when known.
    pub fn today(&self) -> Option<&api::DayMetrics> {
        self.snapshot.as_ref()?.metrics.recent_metrics.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(in_flight: u64) -> api::Metrics {
        serde_json::from_value(serde_json::json!({
            "current_concurrent_calls": in_flight, "max_concurrent_calls": 10, "system_status": "healthy"
        }))
        .expect("minimal metrics parse")
    }

    fn campaign(id: u64, name: &str, status: &str, stats: Option<api::CampaignStats>) -> api::Campaign {
        super::super::test_support::bare_campaign(id, name, status, stats)
    }

    fn stats(by_status: &[(&str, u64)], in_flight: u32, queued: u64, held: api::Held, next_dial_at: Option<&str>) -> api::CampaignStats {
        api::CampaignStats {
            calls_by_status: by_status.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            total_calls: by_status.iter().map(|(_, n)| n).sum(),
            phone_count: 0,
            in_flight,
            held,
            queued,
            retrying: 0,
            next_dial_at: next_dial_at.map(str::to_string),
            cancelled_dnc: 0,
            purged: 0,
        }
    }

    fn snapshot_of(campaigns: Vec<api::Campaign>) -> Update {
        Update::Snapshot(Box::new(Snapshot {
            metrics: metrics(3),
            campaigns_listed: campaigns.len(),
            campaigns,
            campaigns_truncated: false,
            fetched_at: "2026-11-21T05:00:00Z".parse().unwrap(),
            list: None,
        }))
    }

    fn snapshot(ids: &[u64]) -> Update {
        snapshot_of(ids.iter().map(|&id| campaign(id, &format!("c{id}"), "active", None)).collect())
    }

    #[test]
    fn selection_follows_the_campaign_and_stops_at_the_ends() {
        let mut model = Model::new("http://x/", Duration::from_secs(1));
        model.apply(snapshot(&[5, 4, 3]));
        assert_eq!(model.selected_id, Some(5));
        model.move_selection(-1);
        assert_eq!(model.selected_id, Some(5));
        model.move_selection(1);
        model.move_selection(1);
        model.move_selection(1);
        assert_eq!(model.selected_id, Some(3));
        // A new campaign arrives at the top: the selection stays on campaign 3.
        model.apply(snapshot(&[6, 5, 4, 3]));
        assert_eq!(model.selected_index(), Some(3));
        // Campaign 3 disappears: the first row is selected.
        model.apply(snapshot(&[6, 5]));
        assert_eq!(model.selected_id, Some(6));
    }

    #[test]
    fn failures_count_up_and_a_success_reconnects() {
        let mut model = Model::new("http://x", Duration::from_secs(1));
        model.apply(Update::PollFailed("refused".into()));
        model.apply(Update::PollFailed("refused".into()));
        assert_eq!(model.connection, Connection::Disconnected { error: "refused".into(), failed_polls: 2 });
        model.apply(snapshot(&[1]));
        assert_eq!(model.connection, Connection::Connected);
        assert_eq!(model.slot_history, [3]);
    }

    #[test]
    fn slot_history_is_bounded() {
        let mut model = Model::new("http://x", Duration::from_secs(1));
        for _ in 0..SLOT_HISTORY_MAX + 5 {
            model.apply(snapshot(&[]));
        }
        assert_eq!(model.slot_history.len(), SLOT_HISTORY_MAX);
    }

    #[test]
    fn cancelled_calls_are_not_completions() {
        // A stopped campaign of 50,000 calls: 1,000 ended, the rest were cancelled.
        let stopped = stats(&[("PICKED", 700), ("FAILED", 300), ("CANCELLED", 49_000)], 0, 0, api::Held::default(), None);
        let row = CampaignRow::from_campaign(&campaign(1, "n", "stopped", Some(stopped)));
        assert_eq!(row.completed_percent, Some(2.0));
        assert_eq!((row.picked, row.failed, row.cancelled, row.calls), (700, 300, 49_000, 50_000));
        let empty = CampaignRow::from_campaign(&campaign(2, "n", "active", None));
        assert_eq!(empty.completed_percent, None);
    }

    #[test]
    fn the_waiting_note_says_why_nothing_dials() {
        let now: Timestamp = "2026-11-21T05:00:00Z".parse().unwrap();
        let utc = TimeZone::UTC;
        let note = |status: &str, s: api::CampaignStats| CampaignRow::from_campaign(&campaign(1, "n", status, Some(s))).waiting_note(now, &utc);
        let hours = api::Held { outside_calling_hours: 1_204, ..Default::default() };
        assert_eq!(
            note("active", stats(&[("INITIATED", 1_204)], 0, 0, hours.clone(), Some("2026-11-21T08:00:00Z"))),
            "held 1,204 until 08:00 local (calling hours)"
        );
        assert_eq!(
            note("active", stats(&[("INITIATED", 1_243)], 0, 39, hours.clone(), Some("2026-11-22T08:00:00Z"))),
            "held 1,204 until Sun 08:00 local (calling hours) · 39 waiting for a slot"
        );
        let both = api::Held { outside_calling_hours: 10, contact_cap: 2, ..Default::default() };
        assert_eq!(note("active", stats(&[("INITIATED", 12)], 0, 0, both, None)), "held 12 (calling hours 10, contact cap 2)");
        let cap = api::Held { contact_cap: 3, ..Default::default() };
        assert_eq!(note("active", stats(&[("INITIATED", 3)], 0, 0, cap, Some("2026-12-24T09:10:00Z"))), "held 3 until 2026-12-24 09:10 local (contact cap)");
        let paused = api::Held { paused: 30, ..Default::default() };
        assert_eq!(note("paused", stats(&[("INITIATED", 30)], 0, 0, paused, None)), "paused: 30 held until resumed");
        assert_eq!(note("stopped", stats(&[("CANCELLED", 5)], 0, 0, api::Held::default(), None)), "stopped");
        assert_eq!(note("active", stats(&[("PICKED", 5)], 0, 0, api::Held::default(), None)), "finished");
        assert_eq!(note("active", stats(&[], 0, 0, api::Held::default(), None)), "no calls yet");
        let new_york = TimeZone::get("America/New_York").unwrap();
        let row = CampaignRow::from_campaign(&campaign(1, "n", "active", Some(stats(&[("INITIATED", 1)], 0, 0, hours, Some("2026-11-21T13:00:00Z")))));
        assert_eq!(row.waiting_note("2026-11-21T12:00:00Z".parse().unwrap(), &new_york), "held 1,204 until 08:00 local (calling hours)");
    }

    #[test]
    fn sort_cycles_and_filter_hides_rows() {
        let mut model = Model::new("http://x", Duration::from_secs(1));
        let queued = |q| Some(stats(&[("INITIATED", q)], 0, q, api::Held::default(), None));
        model.apply(snapshot_of(vec![
            campaign(3, "beta", "active", queued(1)),
            campaign(2, "Alpha", "active", queued(9)),
            campaign(1, "gamma", "paused", queued(5)),
        ]));
        let order = |m: &Model| m.rows.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(order(&model), [3, 2, 1]);
        let mut seen = Vec::new();
        for _ in 0..5 {
            model.cycle_sort();
            seen.push((model.sort, order(&model)));
        }
        assert_eq!(
            seen,
            [
                (Sort::Id, vec![3, 2, 1]),
                (Sort::Name, vec![2, 3, 1]),
                (Sort::InFlight, vec![3, 2, 1]),
                (Sort::Queued, vec![2, 1, 3]),
                (Sort::Running, vec![3, 2, 1])
            ]
        );
        model.filter = "AL".into();
        model.refresh_rows();
        assert_eq!(order(&model), [2]);
        assert_eq!(model.selected_id, Some(2));
        assert_eq!(model.filter_request(), Request::Filter(Some("AL".into())));
    }

    #[test]
    fn stop_waits_for_yes() {
        let mut model = Model::new("http://x", Duration::from_secs(1));
        model.ask_stop();
        assert_eq!(model.confirm, None, "nothing selected");
        model.apply(snapshot(&[7]));
        model.ask_stop();
        assert_eq!(model.confirm, Some(Confirm::Stop { id: 7, name: "c7".into() }));
        assert_eq!(model.answer_confirm(false), None);
        assert_eq!(model.confirm, None);
        model.ask_stop();
        assert_eq!(model.answer_confirm(true), Some(Request::Stop { id: 7, name: "c7".into() }));
    }

    #[test]
    fn requests_need_a_selection() {
        let mut model = Model::new("http://x", Duration::from_secs(1));
        assert_eq!(model.campaign_request(true), None);
        assert_eq!(model.status.as_ref().map(|s| s.kind), Some(StatusKind::Failed));
        model.apply(snapshot(&[7]));
        assert_eq!(model.campaign_request(false), Some(Request::Resume { id: 7, name: "c7".into() }));
        assert_eq!(model.status.as_ref().map(|s| s.kind), Some(StatusKind::Pending));
        assert_eq!(model.open_calls(), Some(Request::Watch(Watch::Calls { campaign_id: 7 })));
        assert_eq!(model.open(Screen::Main), Request::Watch(Watch::Nothing));
    }

    #[test]
    fn times_are_dated_relative_to_now() {
        let now: Timestamp = "2026-11-21T05:00:00Z".parse().unwrap();
        let at = |t: &str| when(t.parse().unwrap(), now, &TimeZone::UTC);
        assert_eq!(at("2026-11-21T23:59:00Z"), "23:59");
        assert_eq!(at("2026-11-27T08:00:00Z"), "Fri 08:00");
        assert_eq!(at("2026-11-28T08:00:00Z"), "2026-11-28 08:00");
        assert_eq!(at("2026-11-20T08:00:00Z"), "2026-11-20 08:00");
        assert_eq!(when_to_the_second("2026-11-22T08:00:05Z".parse().unwrap(), now, &TimeZone::UTC), "Sun 08:00:05");
    }

    #[test]
    fn numbers_read_easily() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
