//! Dashboard state: the last snapshot, the connection state, the selected campaign, the status
//! line and the slot-usage history, with the transitions the poller's updates and the keys
//! cause. Pure data: no terminal, no network, no clock.

use std::collections::VecDeque;
use std::time::Duration;

use super::client::{Campaign, DayMetrics, Request, Snapshot, Update};

/// Polls of slot usage kept for its sparkline (10 minutes at the default 1 s interval).
pub const SLOT_HISTORY_MAX: usize = 600;

/// Statuses after which a call never changes again.
const FINAL_STATUSES: [&str; 3] = ["PICKED", "FAILED", "CANCELLED"];

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

/// One row of the campaign table, derived from a campaign and its stats.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignRow {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub numbers: u64,
    pub calls: u64,
    pub in_flight: u64,
    pub queued: u64,
    pub picked: u64,
    pub retrying: u64,
    pub failed: u64,
    /// Final calls (picked, failed, cancelled) over all calls; `None` without calls.
    pub done_percent: Option<f64>,
}

impl CampaignRow {
    pub fn from_campaign(campaign: &Campaign) -> CampaignRow {
        let stats = campaign.stats.clone().unwrap_or_default();
        let count = |status: &str| stats.calls_by_status.get(status).copied().unwrap_or(0);
        let finals: u64 = FINAL_STATUSES.iter().map(|s| count(s)).sum();
        CampaignRow {
            id: campaign.id,
            name: campaign.name.clone(),
            status: campaign.status.clone(),
            numbers: stats.phone_count,
            calls: stats.total_calls,
            in_flight: stats.in_flight,
            queued: count("INITIATED"),
            picked: count("PICKED"),
            retrying: count("RETRYING"),
            failed: count("FAILED"),
            done_percent: (stats.total_calls > 0).then(|| finals as f64 * 100.0 / stats.total_calls as f64),
        }
    }
}

/// Everything the screen shows. `view::render` reads it; nothing else draws.
#[derive(Debug)]
pub struct Model {
    /// The service's base URL, shown in the header.
    pub url: String,
    /// The poll interval, shown in the disconnected banner and the help.
    pub interval: Duration,
    pub connection: Connection,
    /// The last successful poll; kept (and marked stale) while disconnected.
    pub snapshot: Option<Snapshot>,
    /// Campaign rows of `snapshot`, in display order.
    pub rows: Vec<CampaignRow>,
    /// The selected campaign by id, so the selection follows it when rows move.
    pub selected_id: Option<u64>,
    /// The result of the last pause/resume, or that one is under way.
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
            connection: Connection::Connecting,
            snapshot: None,
            rows: Vec::new(),
            selected_id: None,
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
                self.rows = snapshot.campaigns.iter().map(CampaignRow::from_campaign).collect();
                self.snapshot = Some(*snapshot);
                self.keep_selection_valid();
            }
            Update::PollFailed(error) => {
                let failed_polls = match &self.connection {
                    Connection::Disconnected { failed_polls, .. } => failed_polls + 1,
                    _ => 1,
                };
                self.connection = Connection::Disconnected { error, failed_polls };
            }
            Update::ActionDone { message, ok } => {
                self.status = Some(StatusLine { text: message, kind: if ok { StatusKind::Done } else { StatusKind::Failed } });
            }
        }
    }

    fn keep_selection_valid(&mut self) {
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

    /// Moves the selection by `step` rows, stopping at the first and last row.
    pub fn move_selection(&mut self, step: isize) {
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
        let Some(row) = self.selected_row() else {
            self.status = Some(StatusLine { text: "no campaign selected".into(), kind: StatusKind::Failed });
            return None;
        };
        let (id, name) = (row.id, row.name.clone());
        let verb = if pause { "pausing" } else { "resuming" };
        self.status = Some(StatusLine { text: format!("{verb} campaign {id} ({name})…"), kind: StatusKind::Pending });
        Some(if pause { Request::Pause { id, name } } else { Request::Resume { id, name } })
    }

    /// Today's counters (the service's day), when known.
    pub fn today(&self) -> Option<&DayMetrics> {
        self.snapshot.as_ref()?.metrics.recent_metrics.first()
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::{CampaignStats, Metrics};
    use super::*;

    fn metrics(in_flight: u64) -> Metrics {
        serde_json::from_value(serde_json::json!({
            "current_concurrent_calls": in_flight, "max_concurrent_calls": 10, "system_status": "healthy"
        }))
        .expect("minimal metrics parse")
    }

    fn snapshot(ids: &[u64]) -> Update {
        let campaigns = ids.iter().map(|&id| Campaign { id, name: format!("c{id}"), status: "active".into(), stats: None }).collect();
        Update::Snapshot(Box::new(Snapshot {
            metrics: metrics(3),
            campaigns,
            campaigns_listed: ids.len(),
            campaigns_truncated: false,
            fetched_at: "00:00:00Z".into(),
        }))
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
    fn done_counts_final_calls_only() {
        let stats = CampaignStats {
            calls_by_status: [("PICKED", 5), ("FAILED", 1), ("CANCELLED", 2), ("RETRYING", 2)].into_iter().map(|(s, n)| (s.to_string(), n)).collect(),
            total_calls: 10,
            phone_count: 12,
            in_flight: 0,
        };
        let row = CampaignRow::from_campaign(&Campaign { id: 1, name: "n".into(), status: "active".into(), stats: Some(stats) });
        assert_eq!(row.done_percent, Some(80.0));
        assert_eq!((row.picked, row.retrying, row.failed, row.numbers), (5, 2, 1, 12));
        let empty = CampaignRow::from_campaign(&Campaign { id: 2, name: "n".into(), status: "active".into(), stats: None });
        assert_eq!(empty.done_percent, None);
    }

    #[test]
    fn requests_need_a_selection() {
        let mut model = Model::new("http://x", Duration::from_secs(1));
        assert_eq!(model.campaign_request(true), None);
        assert_eq!(model.status.as_ref().map(|s| s.kind), Some(StatusKind::Failed));
        model.apply(snapshot(&[7]));
        assert_eq!(model.campaign_request(false), Some(Request::Resume { id: 7, name: "c7".into() }));
        assert_eq!(model.status.as_ref().map(|s| s.kind), Some(StatusKind::Pending));
    }
}
