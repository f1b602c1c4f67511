//! `callmgr tui`: a live dashboard of a running service, as a client of its HTTP API. This file
//! owns the terminal (setup, and restore on every way out: quit, error, panic, SIGTERM, SIGHUP)
//! and the run loop. It never blocks on the network: a poller thread does the HTTP and reports
//! `Update`s.
//!
//! Threads: the UI thread (this loop) waits on three bounded channels, fed by the input thread
//! (terminal events), the poller (snapshots, failures, action results) and the signal thread.
//! The UI sends `Request`s back to the poller. Quitting drops the UI's channel ends; the poller
//! notices at its next send or wait and ends.

pub mod keys;
pub mod lists;
pub mod model;
pub mod poller;
#[cfg(test)]
mod test_support;
pub mod view;

use std::io::IsTerminal;
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded, select};
use ratatui::crossterm::event::{self, Event};
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use keys::Intent;
use model::Model;
use poller::Request;

/// Terminal events waiting for the UI; the reader blocks when the UI falls behind.
const INPUT_QUEUE_MAX: usize = 64;
/// Poller updates waiting for the UI.
const UPDATE_QUEUE_MAX: usize = 16;
/// Requests waiting for the poller; more key presses than this are refused.
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

/// Why the dashboard ended other than by `q`. [`TuiError::exit_code`] maps each to the CLI's code.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// No terminal, or a bad argument.
    #[error("{0}")]
    Usage(String),
    /// The service refused the token: retrying cannot help.
    #[error("{0}")]
    Unauthorized(String),
    /// A signal asked the dashboard to end; the terminal was restored first.
    #[error("ended by signal {0}")]
    Signal(i32),
    #[error("{0}")]
    Failed(String),
}

impl TuiError {
    /// 2 for usage errors and a refused token, 128 + N after signal N (as a shell reports a
    /// process ended by it), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            TuiError::Usage(_) | TuiError::Unauthorized(_) => 2,
            TuiError::Signal(signal) => 128u8.saturating_add(*signal as u8),
            TuiError::Failed(_) => 1,
        }
    }
}

/// `--interval`: a duration with a unit (`500ms`, `2s`), at least `INTERVAL_MIN`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < INTERVAL_MIN {
        return Err(format!("must be at least {}", humantime::format_duration(INTERVAL_MIN)));
    }
    Ok(interval)
}

/// `NO_COLOR` set to anything but the empty string turns colours off (no-color.org).
pub fn colors_wanted(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|value| value.is_empty())
}

/// Runs the dashboard until the user quits. The terminal is restored on every way out.
pub fn run(args: TuiArgs) -> Result<(), TuiError> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(TuiError::Usage("callmgr tui needs an interactive terminal (stdin and stdout must be a tty)".into()));
    }
    // The CLI checks this already; a library caller gets the same answer.
    if args.interval < INTERVAL_MIN {
        return Err(TuiError::Usage(format!("--interval must be at least {}", humantime::format_duration(INTERVAL_MIN))));
    }
    fn failed(what: &'static str) -> impl Fn(std::io::Error) -> TuiError {
        move |e| TuiError::Failed(format!("{what}: {e}"))
    }
    let mut model = Model::new(&args.url, args.interval);
    model.colors = colors_wanted(std::env::var_os("NO_COLOR").as_deref());
    model.zone = jiff::tz::TimeZone::system();

    // Signals first, so that one arriving during setup already finds the handler. Once these are
    // registered a SIGTERM no longer kills the process at once: it reaches the loop below, which
    // returns, and the guard restores the terminal.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT, SIGQUIT]).map_err(failed("installing signal handlers"))?;
    let signal_handle = signals.handle();
    let (signal_tx, signal_rx) = bounded::<i32>(1);
    std::thread::Builder::new()
        .name("tui-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal_tx.send(signal).is_err() {
                    return;
                }
            }
        })
        .map_err(failed("starting the signal thread"))?;
    let _close_signals = CloseOnDrop(signal_handle);

    let (request_tx, request_rx) = bounded::<Request>(REQUEST_QUEUE_MAX);
    let (update_tx, update_rx) = bounded(UPDATE_QUEUE_MAX);
    let client = poller::dashboard_client(&args.url, &args.token);
    let interval = args.interval;
    std::thread::Builder::new()
        .name("tui-poller".into())
        .spawn(move || poller::poll_loop(client, interval, request_rx, update_tx))
        .map_err(failed("starting the poller thread"))?;

    // `try_init` enables raw mode and the alternate screen, and installs a panic hook that
    // restores the terminal before the panic message prints. The guard covers every other exit.
    let mut terminal = ratatui::try_init().inspect_err(|_| ratatui::restore()).map_err(failed("setting up the terminal"))?;
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
        .map_err(failed("starting the input thread"))?;

    loop {
        terminal.draw(|frame| view::render(frame, &model)).map_err(failed("drawing"))?;
        match next_event(&input_rx, &update_rx, &signal_rx)? {
            Wake::Input(Event::Key(key)) => match keys::on_key(&mut model, key) {
                Some(Intent::Quit) => return Ok(()),
                Some(Intent::Send(request)) => send(&request_tx, request, &mut model),
                None => {}
            },
            // A resize needs only the redraw at the top of the loop; `draw` resizes first.
            Wake::Input(_) => {}
            Wake::Update(poller::Update::Unauthorized(message)) => return Err(TuiError::Unauthorized(message)),
            Wake::Update(update) => model.apply(update),
            Wake::Signal(signal) => return Err(TuiError::Signal(signal)),
        }
    }
}

/// Hands `request` to the poller, or says on the status line that it is still busy.
fn send(requests: &crossbeam_channel::Sender<Request>, request: Request, model: &mut Model) {
    if requests.try_send(request).is_err() {
        model.status = Some(model::StatusLine { text: "still busy with earlier requests; try again".into(), kind: model::StatusKind::Failed });
    }
}

enum Wake {
    Input(Event),
    Update(poller::Update),
    Signal(i32),
}

fn next_event(input: &Receiver<Event>, updates: &Receiver<poller::Update>, signals: &Receiver<i32>) -> Result<Wake, TuiError> {
    select! {
        recv(signals) -> signal => signal.map(Wake::Signal).map_err(|_| TuiError::Failed("the signal thread ended".into())),
        recv(input) -> event => event.map(Wake::Input).map_err(|_| TuiError::Failed("the terminal input closed".into())),
        recv(updates) -> update => update.map(Wake::Update).map_err(|_| TuiError::Failed("the poller thread ended".into())),
    }
}

/// Leaves raw mode and the alternate screen when the run loop ends, however it ends.
struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Ends the signal thread's wait.
struct CloseOnDrop(signal_hook::iterator::Handle);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_need_a_unit_and_a_floor() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("10ms").unwrap_err().contains("at least 100ms"));
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn no_color_set_and_non_empty_turns_colours_off() {
        assert!(colors_wanted(None));
        assert!(colors_wanted(Some(std::ffi::OsStr::new(""))));
        assert!(!colors_wanted(Some(std::ffi::OsStr::new("1"))));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(TuiError::Unauthorized("x".into()).exit_code(), 2);
        assert_eq!(TuiError::Signal(15).exit_code(), 143);
        assert_eq!(TuiError::Failed("x".into()).exit_code(), 1);
    }
}
