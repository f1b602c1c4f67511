//! The dashboard's HTTP side: the poller thread that fetches a [`Snapshot`] every interval
//! through the shared [`ApiClient`], follows the end of the list being watched (a campaign's
//! calls, or the dead letters), and runs the operator's requests (pause, resume, stop, replay).
//! It never touches the terminal; the UI thread only ever receives finished `Update`s from it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use jiff::Timestamp;

use crate::protocol::api;
use crate::tools::client::{ApiClient, CallFilter, ClientError, ClientOptions};

/// Connect timeout of every request: an unreachable service is reported quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-request timeout: a stalled service cannot freeze the poller for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Campaign list pages read per poll (at the service's default page size).
const CAMPAIGN_LIST_PAGES_MAX: usize = 20;
/// Campaigns whose stats are fetched (one request each) and shown per poll.
pub const CAMPAIGN_ROWS_MAX: usize = 50;
/// Rows of a watched list (calls, dead letters) kept and shown: the most recent ones.
pub const LIST_ROWS_MAX: usize = 100;
/// Items asked for per page of a watched list. At least `LIST_ROWS_MAX`, so that the last two
/// pages always hold the rows shown.
const LIST_PAGE_LIMIT: usize = 500;
/// Pages of a watched list read per poll: the walk to the end of a long list (the API lists
/// oldest first) spreads over a few polls instead of one long one.
const LIST_PAGES_PER_POLL_MAX: usize = 10;

/// Everything one poll read.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub metrics: api::Metrics,
    /// The campaigns shown, with stats, in the poller's order (at most `CAMPAIGN_ROWS_MAX`).
    pub campaigns: Vec<api::Campaign>,
    /// How many campaigns the list held (more than shown when it was cut), after the filter.
    pub campaigns_listed: usize,
    /// Whether the list had more pages than one poll reads.
    pub campaigns_truncated: bool,
    /// When the poll finished.
    pub fetched_at: Timestamp,
    /// The watched list, when one is watched.
    pub list: Option<ListSnapshot>,
}

/// The end of a watched list, newest first.
#[derive(Clone, Debug, PartialEq)]
pub enum ListSnapshot {
    Calls { campaign_id: u64, calls: Vec<api::Call>, complete: bool },
    DeadLetters { letters: Vec<api::DeadLetter>, complete: bool },
}

/// What the poller watches besides the metrics and campaigns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    Nothing,
    Calls { campaign_id: u64 },
    DeadLetters,
}

/// What the poller reports to the UI thread.
#[derive(Debug)]
pub enum Update {
    Snapshot(Box<Snapshot>),
    /// A poll failed: the service is unreachable or answered with an error.
    PollFailed(String),
    /// The service refused the token (401, or 403 for a read): retrying cannot help.
    Unauthorized(String),
    /// A request finished: the message to show, and whether it succeeded.
    ActionDone {
        message: String,
        ok: bool,
    },
}

/// What the UI asks the poller to do besides polling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Pause {
        id: u64,
        name: String,
    },
    Resume {
        id: u64,
        name: String,
    },
    Stop {
        id: u64,
        name: String,
    },
    /// Replay one dead letter.
    Replay {
        id: u64,
    },
    /// Replay every dead letter (`POST dlq/replay/`).
    ReplayAll,
    Watch(Watch),
    /// Show only campaigns whose name contains this (any case); `None` shows all.
    Filter(Option<String>),
}

/// The client the dashboard uses: short timeouts, so a stalled service shows as such quickly.
pub fn dashboard_client(url: &str, token: &str) -> ApiClient {
    let options = ClientOptions { connect_timeout: CONNECT_TIMEOUT, request_timeout: REQUEST_TIMEOUT, ..ClientOptions::default() };
    ApiClient::with_options(url, token, &options)
}

/// Does `name` pass the filter (a substring, any case)?
pub fn name_matches(name: &str, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| name.to_lowercase().contains(&f.to_lowercase()))
}

/// The campaigns worth a row: active first, then paused, then stopped; newest first within
/// each, so that a long history of stopped campaigns never hides a running one.
pub fn choose_campaigns(mut listed: Vec<api::Campaign>) -> Vec<api::Campaign> {
    let rank = |status: &str| match status {
        "active" => 0,
        "paused" => 1,
        "stopped" => 2,
        _ => 3,
    };
    listed.sort_by(|a, b| rank(&a.status).cmp(&rank(&b.status)).then(b.id.cmp(&a.id)));
    listed.truncate(CAMPAIGN_ROWS_MAX);
    listed
}

/// Follows the end of a list the API gives oldest first (calls, dead letters), reading a
/// bounded number of pages per refresh, and keeps its last `LIST_ROWS_MAX` items. It remembers
/// where each page it read began, so once the end is reached a refresh reads only the last page
/// or two again (the items there may have changed, and new ones are appended after them).
#[derive(Debug)]
pub struct Tail<T> {
    /// Where each known page starts: `None` for the first.
    page_starts: Vec<Option<String>>,
    /// Items of the last page read, to know whether it alone holds the rows shown.
    last_page_len: usize,
    /// The most recent items, oldest first.
    items: VecDeque<T>,
    /// Whether the last refresh reached the end of the list.
    complete: bool,
}

impl<T: Clone> Default for Tail<T> {
    fn default() -> Self {
        Tail::new()
    }
}

impl<T: Clone> Tail<T> {
    /// Knows only where the list begins.
    pub fn new() -> Tail<T> {
        Tail { page_starts: vec![None], last_page_len: 0, items: VecDeque::new(), complete: false }
    }

    /// Reads forward with `fetch(cursor)` from the last page known (or the last two, when the
    /// last alone holds fewer than the rows shown), at most `pages_max` pages. The API hands out
    /// a next cursor only when more items follow, so the pages before the end are full.
    pub fn refresh<E>(&mut self, pages_max: usize, mut fetch: impl FnMut(Option<&str>) -> Result<api::Page<T>, E>) -> Result<(), E> {
        let known = self.page_starts.len();
        let back = if known >= 2 && self.last_page_len < LIST_ROWS_MAX { 2 } else { 1 };
        let mut index = known - back.min(known);
        let mut items: VecDeque<T> = VecDeque::new();
        self.complete = false;
        for _ in 0..pages_max.max(1) {
            let page = fetch(self.page_starts[index].as_deref())?;
            self.last_page_len = page.results.len();
            items.extend(page.results);
            while items.len() > LIST_ROWS_MAX {
                items.pop_front();
            }
            self.page_starts.truncate(index + 1);
            match page.next_cursor {
                Some(cursor) => {
                    self.page_starts.push(Some(cursor));
                    index += 1;
                }
                None => {
                    self.complete = true;
                    break;
                }
            }
        }
        self.items = items;
        Ok(())
    }

    /// The items kept, newest first.
    pub fn newest_first(&self) -> Vec<T> {
        self.items.iter().rev().cloned().collect()
    }

    pub fn complete(&self) -> bool {
        self.complete
    }
}

/// The poller's state between polls.
struct Poller {
    client: ApiClient,
    filter: Option<String>,
    watch: Watch,
    calls: Tail<api::Call>,
    dead_letters: Tail<api::DeadLetter>,
}

/// A failed poll: fatal (a refused token) or worth retrying.
enum PollError {
    Unauthorized(String),
    Failed(String),
}

impl From<ClientError> for PollError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Unauthorized { .. } => PollError::Unauthorized(error.to_string()),
            other => PollError::Failed(other.to_string()),
        }
    }
}

impl Poller {
    fn snapshot(&mut self) -> Result<Snapshot, PollError> {
        let metrics = self.client.metrics()?;
        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        let mut truncated = false;
        for page_number in 0.. {
            if page_number == CAMPAIGN_LIST_PAGES_MAX {
                truncated = true;
                break;
            }
            let page = self.client.campaigns(cursor.as_deref())?;
            listed.extend(page.results.into_iter().filter(|c| name_matches(&c.name, self.filter.as_deref())));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let campaigns_listed = listed.len();
        let mut campaigns = Vec::new();
        for campaign in choose_campaigns(listed) {
            match self.client.campaign(campaign.id) {
                Ok(detail) => campaigns.push(detail),
                // Deleted between the list and the read: leave it out.
                Err(ClientError::Api { status: 404, .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let list = self.watched_list()?;
        Ok(Snapshot { metrics, campaigns, campaigns_listed, campaigns_truncated: truncated, fetched_at: Timestamp::now(), list })
    }

    fn watched_list(&mut self) -> Result<Option<ListSnapshot>, ClientError> {
        let client = &self.client;
        match self.watch {
            Watch::Nothing => Ok(None),
            Watch::Calls { campaign_id } => {
                self.calls.refresh(LIST_PAGES_PER_POLL_MAX, |cursor| {
                    let filter = CallFilter {
                        campaign_id: Some(campaign_id),
                        limit: Some(LIST_PAGE_LIMIT),
                        cursor: cursor.map(str::to_string),
                        ..CallFilter::default()
                    };
                    client.calls(&filter)
                })?;
                Ok(Some(ListSnapshot::Calls { campaign_id, calls: self.calls.newest_first(), complete: self.calls.complete() }))
            }
            Watch::DeadLetters => {
                self.dead_letters.refresh(LIST_PAGES_PER_POLL_MAX, |cursor| client.dead_letters(cursor, Some(LIST_PAGE_LIMIT)))?;
                Ok(Some(ListSnapshot::DeadLetters { letters: self.dead_letters.newest_first(), complete: self.dead_letters.complete() }))
            }
        }
    }

    /// Runs a request; `None` for the ones that only change what is polled.
    fn perform(&mut self, request: Request) -> Option<Result<String, ClientError>> {
        let c = &self.client;
        let result = match request {
            Request::Pause { id, name } => c.pause(id).map(|_| format!("campaign {id} ({name}) paused")),
            Request::Resume { id, name } => c.resume(id).map(|_| format!("campaign {id} ({name}) resumed")),
            Request::Stop { id, name } => c.stop(id).map(|_| format!("campaign {id} ({name}) stopped: its waiting calls are cancelled")),
            Request::Replay { id } => c.replay(id).map(|call| format!("dead letter {id} replayed: call {} is {} again", call.call_id, call.status)),
            Request::ReplayAll => c.replay_dead_letters(&api::ReplayDeadLetters::default()).map(|r| format!("{} dead letters replayed", r.replayed_count)),
            Request::Watch(watch) => {
                if watch != self.watch {
                    self.calls = Tail::new();
                    self.dead_letters = Tail::new();
                    self.watch = watch;
                }
                return None;
            }
            Request::Filter(filter) => {
                self.filter = filter.filter(|f| !f.is_empty());
                return None;
            }
        };
        Some(result)
    }
}

/// The line shown for a failed request.
fn failure_message(request: &Request, error: &ClientError) -> String {
    let what = match request {
        Request::Pause { id, name } => format!("pause campaign {id} ({name})"),
        Request::Resume { id, name } => format!("resume campaign {id} ({name})"),
        Request::Stop { id, name } => format!("stop campaign {id} ({name})"),
        Request::Replay { id } => format!("replay dead letter {id}"),
        Request::ReplayAll => "replay all dead letters".to_string(),
        Request::Watch(_) | Request::Filter(_) => "the request".to_string(),
    };
    match (request, error.status()) {
        (Request::ReplayAll, Some(404 | 405)) => {
            "this service has no bulk replay (POST /api/v1/dlq/replay/ answered 404: an older build); replay them one at a time with r".to_string()
        }
        _ => format!("{what} failed: {error}"),
    }
}

/// Polls every `interval` and runs requests as they come, until either channel closes (the
/// UI dropped its ends) or the token is refused. After a request it polls at once so the
/// screen shows its effect.
pub fn poll_loop(client: ApiClient, interval: Duration, requests: Receiver<Request>, updates: Sender<Update>) {
    let mut poller = Poller { client, filter: None, watch: Watch::Nothing, calls: Tail::new(), dead_letters: Tail::new() };
    let mut next_poll = Instant::now();
    loop {
        let update = match requests.recv_timeout(next_poll.saturating_duration_since(Instant::now())) {
            Ok(request) => {
                next_poll = Instant::now();
                let shown = request.clone();
                match poller.perform(request) {
                    None => continue,
                    Some(Ok(message)) => Update::ActionDone { message, ok: true },
                    Some(Err(error @ ClientError::Unauthorized { status: 401, .. })) => Update::Unauthorized(error.to_string()),
                    Some(Err(error)) => Update::ActionDone { message: failure_message(&shown, &error), ok: false },
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                next_poll = Instant::now() + interval;
                match poller.snapshot() {
                    Ok(snapshot) => Update::Snapshot(Box::new(snapshot)),
                    Err(PollError::Failed(error)) => Update::PollFailed(error),
                    Err(PollError::Unauthorized(error)) => Update::Unauthorized(error),
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let fatal = matches!(update, Update::Unauthorized(_));
        if updates.send(update).is_err() || fatal {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(id: u64, status: &str) -> api::Campaign {
        super::super::test_support::bare_campaign(id, &format!("c{id}"), status, None)
    }

    #[test]
    fn running_campaigns_come_first_newest_first() {
        let listed = vec![campaign(1, "stopped"), campaign(2, "active"), campaign(3, "paused"), campaign(4, "active"), campaign(5, "stopped")];
        let ids: Vec<u64> = choose_campaigns(listed).iter().map(|c| c.id).collect();
        assert_eq!(ids, [4, 2, 3, 5, 1]);
    }

    #[test]
    fn rows_are_bounded() {
        let listed = (1..=CAMPAIGN_ROWS_MAX as u64 + 10).map(|id| campaign(id, "stopped")).collect();
        assert_eq!(choose_campaigns(listed).len(), CAMPAIGN_ROWS_MAX);
    }

    #[test]
    fn names_filter_without_case() {
        assert!(name_matches("Spring renewals", Some("RENEW")));
        assert!(!name_matches("Spring renewals", Some("winback")));
        assert!(name_matches("anything", None));
    }

    /// A list of `len` numbers served in pages of `page` after a numeric cursor; counts fetches.
    fn serve(len: u64, page: usize, fetches: &mut usize) -> impl FnMut(Option<&str>) -> Result<api::Page<u64>, ()> + '_ {
        move |cursor| {
            *fetches += 1;
            let after: u64 = cursor.map_or(0, |c| c.parse().unwrap());
            let results: Vec<u64> = (after + 1..=len).take(page).collect();
            let next_cursor = (results.last().copied().unwrap_or(after) < len).then(|| results.last().unwrap().to_string());
            Ok(api::Page { results, next_cursor })
        }
    }

    #[test]
    fn a_tail_walks_to_the_end_over_a_few_refreshes_then_rereads_only_the_end() {
        let mut tail: Tail<u64> = Tail::new();
        let mut fetches = 0;
        tail.refresh(10, serve(5_000, 200, &mut fetches)).unwrap();
        assert!(!tail.complete(), "25 pages do not fit in one refresh of 10");
        assert_eq!(fetches, 10);
        for _ in 0..3 {
            tail.refresh(10, serve(5_000, 200, &mut fetches)).unwrap();
        }
        assert!(tail.complete());
        let newest = tail.newest_first();
        assert_eq!(newest.len(), LIST_ROWS_MAX);
        assert_eq!((newest[0], newest[LIST_ROWS_MAX - 1]), (5_000, 4_901), "the most recent items, newest first");

        // At the end: one page again, and new items appended after it show up.
        let mut fetches = 0;
        tail.refresh(10, serve(5_050, 200, &mut fetches)).unwrap();
        assert!(fetches <= 2, "{fetches} pages read again");
        assert_eq!(tail.newest_first()[0], 5_050);
        assert_eq!(tail.newest_first().len(), LIST_ROWS_MAX);
    }

    #[test]
    fn a_short_list_is_read_whole_every_time() {
        let mut tail: Tail<u64> = Tail::new();
        let mut fetches = 0;
        tail.refresh(10, serve(3, 200, &mut fetches)).unwrap();
        assert_eq!((tail.newest_first(), tail.complete(), fetches), (vec![3, 2, 1], true, 1));
        tail.refresh(10, serve(4, 200, &mut fetches)).unwrap();
        assert_eq!(tail.newest_first(), vec![4, 3, 2, 1]);
        let empty: Tail<u64> = Tail::new();
        assert!(empty.newest_first().is_empty());
    }

    #[test]
    fn replay_all_on_an_older_service_says_so() {
        let missing =
            ClientError::Api { status: 404, code: "not_found".into(), message: "No such endpoint".into(), details: serde_json::Value::Null, retry_after: None };
        assert!(failure_message(&Request::ReplayAll, &missing).contains("this service has no bulk replay"));
        let conflict = ClientError::Api {
            status: 409,
            code: "conflict".into(),
            message: "Campaign is stopped".into(),
            details: serde_json::Value::Null,
            retry_after: None,
        };
        assert_eq!(
            failure_message(&Request::Pause { id: 2, name: "W".into() }, &conflict),
            "pause campaign 2 (W) failed: HTTP 409 conflict: Campaign is stopped"
        );
    }
}
