//! Test helpers of the dashboard's render tests: models built from the recorded API answers in
//! `tests/fixtures/tui` (see its README), the screen drawn into ratatui's `TestBackend` as
//! text, and the comparison with a committed snapshot.

use std::time::Duration;

use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use super::model::Model;
use super::poller::{ListSnapshot, Snapshot, Tail, Update, choose_campaigns};
use super::view::render;
use crate::protocol::api;

pub const METRICS: &str = include_str!("../../../tests/fixtures/tui/metrics.json");
pub const METRICS_PROVIDER_DOWN: &str = include_str!("../../../tests/fixtures/tui/metrics_provider_down.json");
pub const METRICS_STOPPED: &str = include_str!("../../../tests/fixtures/tui/metrics_stopped.json");
pub const CAMPAIGN_LIST: &str = include_str!("../../../tests/fixtures/tui/campaigns.json");
pub const CAMPAIGNS: [&str; 4] = [
    include_str!("../../../tests/fixtures/tui/campaign_1.json"),
    include_str!("../../../tests/fixtures/tui/campaign_2.json"),
    include_str!("../../../tests/fixtures/tui/campaign_3.json"),
    include_str!("../../../tests/fixtures/tui/campaign_4.json"),
];
pub const CAMPAIGN_STOPPED: &str = include_str!("../../../tests/fixtures/tui/campaign_stopped.json");
pub const CAMPAIGN_HELD: &str = include_str!("../../../tests/fixtures/tui/campaign_held.json");
pub const CALLS: &str = include_str!("../../../tests/fixtures/tui/calls.json");
pub const DEAD_LETTERS: &str = include_str!("../../../tests/fixtures/tui/dlq.json");
const RECORDED_AT: &str = include_str!("../../../tests/fixtures/tui/recorded_at.json");

/// When each set of answers was recorded: `main`, `stopped` or `down`.
pub fn recorded_at(set: &str) -> Timestamp {
    let times: serde_json::Value = serde_json::from_str(RECORDED_AT).expect("recorded_at.json parses");
    times[set].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("recorded_at.json has `{set}`"))
}

pub fn campaign(json: &str) -> api::Campaign {
    serde_json::from_str(json).expect("campaign fixture parses")
}

/// A campaign with only what the dashboard's logic looks at: id, name, status and stats.
pub fn bare_campaign(id: u64, name: &str, status: &str, stats: Option<api::CampaignStats>) -> api::Campaign {
    api::Campaign {
        id,
        name: name.into(),
        description: String::new(),
        is_active: status == "active",
        status: status.into(),
        timezone: None,
        max_attempts: None,
        max_concurrent_calls: None,
        default_region: None,
        caller_id: None,
        created_at: String::new(),
        updated_at: String::new(),
        stats,
    }
}

/// A snapshot assembled the way the poller does, from the recorded answers of the main set.
pub fn recorded_snapshot(metrics: &str) -> Snapshot {
    let list: api::Page<api::Campaign> = serde_json::from_str(CAMPAIGN_LIST).expect("list fixture parses");
    let details: Vec<api::Campaign> = CAMPAIGNS.iter().map(|c| campaign(c)).collect();
    let listed = list.results.len();
    let campaigns = choose_campaigns(list.results).iter().map(|c| details.iter().find(|d| d.id == c.id).expect("a detail per campaign").clone()).collect();
    Snapshot {
        metrics: serde_json::from_str(metrics).expect("metrics fixture parses"),
        campaigns,
        campaigns_listed: listed,
        campaigns_truncated: false,
        fetched_at: recorded_at("main"),
        list: None,
    }
}

pub fn model_with(snapshot: Snapshot) -> Model {
    let mut model = Model::new("http://127.0.0.1:8000", Duration::from_secs(1));
    model.apply(Update::Snapshot(Box::new(snapshot)));
    model
}

pub fn connected_model(metrics: &str) -> Model {
    model_with(recorded_snapshot(metrics))
}

/// The end of a recorded one-page list, as the poller's `Tail` keeps it.
fn tail_of<T: Clone + serde::de::DeserializeOwned>(json: &str) -> Vec<T> {
    let page: api::Page<T> = serde_json::from_str(json).expect("list fixture parses");
    let mut tail = Tail::new();
    tail.refresh(1, |_| Ok::<_, ()>(page.clone())).expect("one page");
    tail.newest_first()
}

/// The main set with the recorded calls of campaign 1 as the watched list.
pub fn with_calls(mut snapshot: Snapshot) -> Snapshot {
    let calls: Vec<api::Call> = tail_of(CALLS);
    snapshot.list = Some(ListSnapshot::Calls { campaign_id: calls[0].campaign_id, calls, complete: true });
    snapshot
}

pub fn with_dead_letters(mut snapshot: Snapshot) -> Snapshot {
    snapshot.list = Some(ListSnapshot::DeadLetters { letters: tail_of(DEAD_LETTERS), complete: true });
    snapshot.metrics = serde_json::from_str(METRICS_PROVIDER_DOWN).expect("metrics fixture parses");
    snapshot.fetched_at = recorded_at("down");
    snapshot
}

/// The screen's buffer.
pub fn draw_buffer(model: &Model, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| render(frame, model)).expect("draws");
    terminal.backend().buffer().clone()
}

/// The screen as text, one string per row.
pub fn draw(model: &Model, width: u16, height: u16) -> Vec<String> {
    let buffer = draw_buffer(model, width, height);
    (0..height).map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect()).collect()
}

/// Row and column (in characters) of the first occurrence of `needle`.
pub fn find(screen: &[String], needle: &str) -> Option<(usize, usize)> {
    screen.iter().enumerate().find_map(|(row, line)| line.find(needle).map(|byte| (row, line[..byte].chars().count())))
}

pub fn expect_at(screen: &[String], needle: &str) -> (usize, usize) {
    find(screen, needle).unwrap_or_else(|| panic!("`{needle}` not on screen:\n{}", screen.join("\n")))
}

/// The screen against the committed `tests/fixtures/tui/NAME.txt`. After an intended change of
/// the layout, regenerate with `CALLMGR_UPDATE_SNAPSHOTS=1 cargo test --lib tui` and review
/// the diff.
pub fn check_snapshot(name: &str, screen: &[String]) {
    let path = format!("{}/tests/fixtures/tui/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = screen.iter().map(|l| l.trim_end().to_string()).collect::<Vec<_>>().join("\n") + "\n";
    if std::env::var_os("CALLMGR_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).expect("snapshot written");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path} exists (CALLMGR_UPDATE_SNAPSHOTS=1 creates it)"));
    if text != expected {
        let first = text.lines().zip(expected.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!("screen differs from {path} from row {first}:\n--- got\n{text}\n--- expected\n{expected}");
    }
}
