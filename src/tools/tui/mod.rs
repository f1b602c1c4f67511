//! `callmgr tui`: a live dashboard of a running service, as a client of its HTTP API. This file
//! owns the terminal (setup, and restore on exit, error or panic), the run loop and the keys.
//! It never blocks on the network: a poller thread does the HTTP and reports `Update`s.
//!
//! Threads: the UI thread (this loop) waits on two bounded channels, one fed by the input
//! thread (terminal events) and one by the poller (snapshots, failures, action results). The
//! UI sends pause/resume `Request`s back to the poller. Quitting drops the UI's channel ends;
//! the poller notices at its next send or wait and ends.

pub mod client;
pub mod model;
pub mod view;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, bounded, select};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use client::{ApiClient, Request};
use model::Model;

/// Terminal events waiting for the UI; the reader blocks when the UI falls behind.
const INPUT_QUEUE_MAX: usize = 64;
/// Poller updates waiting for the UI.
const UPDATE_QUEUE_MAX: usize = 16;
/// Pause/resume requests waiting for the poller; more key presses than this are refused.
const REQUEST_QUEUE_MAX: usize = 4;
/// The shortest poll interval accepted, so a typo cannot hammer the service.
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);

pub struct TuiArgs {
    /// Base URL of the service, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// API token sent as `X-Auth-Token`.
    pub token: String,
    /// Time between polls.
    pub interval: Duration,
}

/// `--interval`: a duration with a unit (`500ms`, `2s`), at least `INTERVAL_MIN`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < INTERVAL_MIN {
        return Err(format!("must be at least {}", humantime::format_duration(INTERVAL_MIN)));
    }
    Ok(interval)
}

/// What a key asks the run loop to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Intent {
    Quit,
    Send(Request),
}

/// Applies a key to the model; returns what the loop must do beyond redrawing.
pub fn on_key(model: &mut Model, key: KeyEvent) -> Option<Intent> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Some(Intent::Quit),
        KeyCode::Char('q') => Some(Intent::Quit),
        KeyCode::Esc if model.show_help => {
            model.show_help = false;
            None
        }
        KeyCode::Esc => Some(Intent::Quit),
        KeyCode::Char('?') | KeyCode::Char('h') => {
            model.show_help = !model.show_help;
            None
        }
        KeyCode::Up | KeyCode::Char('k') => {
            model.move_selection(-1);
            None
        }
        KeyCode::Down | KeyCode::Char('j') => {
            model.move_selection(1);
            None
        }
        KeyCode::PageUp => {
            model.move_selection(-10);
            None
        }
        KeyCode::PageDown => {
            model.move_selection(10);
            None
        }
        KeyCode::Char('p') => model.campaign_request(true).map(Intent::Send),
        KeyCode::Char('r') => model.campaign_request(false).map(Intent::Send),
        _ => None,
    }
}

/// Runs the dashboard until the user quits. The terminal is restored on every way out.
pub fn run(args: TuiArgs) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("callmgr tui needs an interactive terminal (stdin and stdout must be a tty)");
    }
    // The CLI checks this already; a library caller gets the same answer.
    if args.interval < INTERVAL_MIN {
        anyhow::bail!("--interval must be at least {}", humantime::format_duration(INTERVAL_MIN));
    }
    let mut model = Model::new(&args.url, args.interval);
    let (request_tx, request_rx) = bounded::<Request>(REQUEST_QUEUE_MAX);
    let (update_tx, update_rx) = bounded(UPDATE_QUEUE_MAX);
    let client = ApiClient::new(&args.url, &args.token);
    let interval = args.interval;
    std::thread::Builder::new()
        .name("tui-poller".into())
        .spawn(move || client::poll_loop(client, interval, request_rx, update_tx))
        .context("starting the poller thread")?;

    // `try_init` enables raw mode and the alternate screen, and installs a panic hook that
    // restores the terminal before the panic message prints. The guard covers every other exit.
    let mut terminal = ratatui::try_init().inspect_err(|_| ratatui::restore()).context("setting up the terminal")?;
    let _restore = RestoreOnDrop;

    let (input_tx, input_rx) = bounded(INPUT_QUEUE_MAX);
    // The reader blocks in `event::read`, which cannot be interrupted; it is left to end with
    // the process (it holds no state worth flushing).
    std::thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            while let Ok(event) = event::read() {
                if input_tx.send(event).is_err() {
                    return;
                }
            }
        })
        .context("starting the input thread")?;

    loop {
        terminal.draw(|frame| view::render(frame, &model)).context("drawing")?;
        match next_event(&input_rx, &update_rx)? {
            Wake::Input(Event::Key(key)) => match on_key(&mut model, key) {
                Some(Intent::Quit) => return Ok(()),
                Some(Intent::Send(request)) => {
                    let queued = request_tx.try_send(request).is_ok();
                    if !queued {
                        model.status = Some(model::StatusLine { text: "still busy with earlier requests; try again".into(), kind: model::StatusKind::Failed });
                    }
                }
                None => {}
            },
            // A resize needs only the redraw at the top of the loop; `draw` resizes first.
            Wake::Input(_) => {}
            Wake::Update(update) => model.apply(update),
        }
    }
}

enum Wake {
    Input(Event),
    Update(client::Update),
}

fn next_event(input: &Receiver<Event>, updates: &Receiver<client::Update>) -> anyhow::Result<Wake> {
    select! {
        recv(input) -> event => event.map(Wake::Input).context("the terminal input closed"),
        recv(updates) -> update => update.map(Wake::Update).context("the poller thread ended"),
    }
}

/// Leaves raw mode and the alternate screen when the run loop ends, however it ends.
struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::{Campaign, Snapshot, Update};

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn model_with_campaigns(ids: &[u64]) -> Model {
        let mut model = Model::new("http://127.0.0.1:8000", Duration::from_secs(1));
        let metrics = serde_json::from_str(include_str!("../../../tests/fixtures/tui/metrics.json")).expect("fixture parses");
        let campaigns = ids.iter().map(|&id| Campaign { id, name: format!("c{id}"), status: "active".into(), stats: None }).collect();
        model.apply(Update::Snapshot(Box::new(Snapshot {
            metrics,
            campaigns,
            campaigns_listed: ids.len(),
            campaigns_truncated: false,
            fetched_at: "12:00:00Z".into(),
        })));
        model
    }

    #[test]
    fn intervals_need_a_unit_and_a_floor() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("10ms").unwrap_err().contains("at least 100ms"));
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn quit_keys() {
        let mut model = model_with_campaigns(&[1]);
        assert_eq!(on_key(&mut model, press(KeyCode::Char('q'))), Some(Intent::Quit));
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), Some(Intent::Quit));
        assert_eq!(on_key(&mut model, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Intent::Quit));
    }

    #[test]
    fn esc_closes_help_before_quitting() {
        let mut model = model_with_campaigns(&[1]);
        assert_eq!(on_key(&mut model, press(KeyCode::Char('?'))), None);
        assert!(model.show_help);
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), None);
        assert!(!model.show_help);
        assert_eq!(on_key(&mut model, press(KeyCode::Esc)), Some(Intent::Quit));
    }

    #[test]
    fn arrows_and_vi_keys_select_and_p_r_act_on_the_selection() {
        let mut model = model_with_campaigns(&[3, 2, 1]);
        on_key(&mut model, press(KeyCode::Down));
        on_key(&mut model, press(KeyCode::Char('j')));
        assert_eq!(model.selected_id, Some(1));
        on_key(&mut model, press(KeyCode::Char('k')));
        assert_eq!(model.selected_id, Some(2));
        assert_eq!(on_key(&mut model, press(KeyCode::Char('p'))), Some(Intent::Send(Request::Pause { id: 2, name: "c2".into() })));
        on_key(&mut model, press(KeyCode::Up));
        assert_eq!(on_key(&mut model, press(KeyCode::Char('r'))), Some(Intent::Send(Request::Resume { id: 3, name: "c3".into() })));
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut model = model_with_campaigns(&[1]);
        let mut release = press(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(on_key(&mut model, release), None);
    }
}
