//! `callmgr import`: streams a CSV file of phone numbers into a campaign through
//! `POST /api/v1/phone-numbers/`, in batches, with a progress display and a rejects report.
//! It is a client of the HTTP API only: it never opens the store, and it holds at most a bounded
//! window of batches in memory, whatever the size of the file.
//!
//! Data flow: a reader thread parses the file into encoded batches (rows that cannot be numbers
//! are rejected here already) → a sender thread posts them in order → the calling thread
//! takes the answers back in file order, maps each per-item error to its CSV line, writes the
//! rejects file, and draws the progress.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::core::phone;

/// Rows per request unless `--batch` says otherwise.
pub const BATCH_DEFAULT: usize = 1000;
/// The largest `--batch`: the service's default `limits.batch_max`. A service configured lower
/// answers 413, reported as a usage error that names the limit.
pub const BATCH_MAX: usize = 10_000;
/// Batches being sent at once. One, so that batches reach the service in file order and the first
/// row of a repeated number is the one kept (with its timezone). Reading and encoding the next
/// batch overlap with sending this one. Measured on 1M rows (benches/import.sh, 2 cores): about
/// 5 s with one in flight; four in flight saved about 1 s, not worth giving that order up for.
const BATCHES_IN_FLIGHT_MAX: usize = 1;
/// Batches read and encoded ahead of the one being sent.
const BATCHES_READ_AHEAD_MAX: usize = 2;
/// Sends of one batch before giving up while the service answers 502/503/504 (busy: it says so,
/// with `Retry-After`, and recovers), about two minutes of waiting at most.
const SEND_ATTEMPTS_BUSY_MAX: u32 = 10;
/// Sends of one batch before giving up while the service cannot be reached: about 4 s of
/// waiting, enough for a restart's blip, short enough to tell an operator soon.
const SEND_ATTEMPTS_UNREACHABLE_MAX: u32 = 5;
/// The longest wait between two sends of a batch, whatever `Retry-After` says.
const RETRY_WAIT_MAX: Duration = Duration::from_secs(30);
/// The first wait after a transport failure or a 503 without `Retry-After`; doubled each time.
const RETRY_WAIT_FIRST: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request, generous: a big batch on a loaded service can take a while to commit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read: an answer to 10,000 numbers lists the created ones, about 200 KB.
const ANSWER_BODY_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// How often plain progress lines are printed when stderr is not a terminal.
const PLAIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Rejected rows also printed on stderr; the rest are only in the rejects file.
const REJECTS_SHOWN_MAX: usize = 10;
/// Header names that mark the phone column (compared without case).
const PHONE_HEADERS: [&str; 3] = ["phone", "phone_number", "number"];
/// Header name that marks the timezone column unless `--timezone-column` names another.
const TIMEZONE_HEADER: &str = "timezone";
/// Reason given for a row whose phone cell is empty or missing.
const MISSING_PHONE: &str = "Missing phone number";

/// What to import, where to, and how; validated by [`run`].
#[derive(Clone, Debug)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// The campaign that receives the numbers.
    pub campaign: u64,
    /// Header of the phone column, instead of looking for `phone`, `phone_number` or `number`.
    pub column: Option<String>,
    /// Header of the timezone column, instead of `timezone`.
    pub timezone_column: Option<String>,
    /// Rows per request, 1 to [`BATCH_MAX`].
    pub batch: usize,
    /// Base URL of the service, like `http://127.0.0.1:8000`.
    pub url: String,
    /// API token.
    pub token: String,
}

/// The outcome of an import that read the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSummary {
    /// Data rows read (the header row not counted).
    pub rows: u64,
    /// Numbers the campaign did not have before.
    pub added: u64,
    /// Numbers the campaign already had, including repeats within the file.
    pub already_present: u64,
    /// Rows rejected, each one written to `rejects_path`.
    pub invalid: u64,
    /// Where the rejected rows are; `None` when there were none.
    pub rejects_path: Option<PathBuf>,
    pub elapsed: Duration,
}

impl std::fmt::Display for ImportSummary {
    /// The summary line, for example
    /// `added 99890, already present 10, invalid 100 (100000 rows in 2.9 s, 34482 rows/s)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        write!(
            f,
            "added {}, already present {}, invalid {} ({} rows in {:.1} s, {:.0} rows/s)",
            self.added,
            self.already_present,
            self.invalid,
            self.rows,
            seconds,
            self.rows as f64 / seconds.max(0.001)
        )
    }
}

/// Why an import did not load every row. [`ImportError::exit_code`] maps each to the CLI's code.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    /// The arguments or the file's shape are wrong (no phone column, bad `--batch`, …).
    #[error("{0}")]
    Usage(String),
    #[error("campaign {0} not found")]
    CampaignNotFound(u64),
    #[error("the service at {url} refused the token (401 unauthorized); pass --token or set X_AUTH_TOKEN")]
    Unauthorized { url: String },
    #[error("the service at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// An answer that no retry can fix (a 500, or a 400 for a body this client built).
    #[error("the service answered {status}: {message}")]
    Service { status: u16, message: String },
    /// The rejects file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Rejects { path: PathBuf, source: io::Error },
    /// The whole file was read and every valid row loaded, but some rows were rejected.
    #[error("{} of {} rows rejected; each is listed with its line and reason in {}", .0.invalid, .0.rows, .0.rejects_path.as_deref().unwrap_or(Path::new("?")).display())]
    Rejected(ImportSummary),
    /// A failure after some batches were loaded; the file can be imported again as it is, since
    /// rows already loaded come back as already present.
    #[error("{cause}; stopped after {rows_done} row(s), through line {line_done}, were handled; importing the same file again is safe")]
    Stopped { rows_done: u64, line_done: u64, cause: Box<ImportError> },
}

impl ImportError {
    /// 1 when rows were rejected or the service failed, 2 for usage errors: a missing file, a
    /// file without a phone column, an unknown campaign, an unreachable service or a bad token.
    pub fn exit_code(&self) -> u8 {
        match self {
            ImportError::File { .. }
            | ImportError::Usage(_)
            | ImportError::CampaignNotFound(_)
            | ImportError::Unauthorized { .. }
            | ImportError::Unreachable { .. } => 2,
            ImportError::Service { .. } | ImportError::Rejects { .. } | ImportError::Rejected(_) => 1,
            ImportError::Stopped { cause, .. } => cause.exit_code(),
        }
    }
}

/// Where the rejected rows of `file` go: `numbers.csv` → `numbers.rejects.csv`.
pub fn rejects_path(file: &Path) -> PathBuf {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = match name.len().checked_sub(4) {
        Some(cut) if name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".csv") => &name[..cut],
        _ => name.as_str(),
    };
    file.with_file_name(format!("{stem}.rejects.csv"))
}

/// Imports `args.file` into the campaign; prints progress on stderr and the summary line on stdout.
pub fn run(args: ImportArgs) -> Result<ImportSummary, ImportError> {
    if !(1..=BATCH_MAX).contains(&args.batch) {
        return Err(ImportError::Usage(format!("--batch must be between 1 and {BATCH_MAX}")));
    }
    let started = Instant::now();
    let file = File::open(&args.file).map_err(|source| ImportError::File { path: args.file.clone(), source })?;
    let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(io::BufReader::with_capacity(1 << 16, file));
    let mut first = csv::ByteRecord::new();
    let has_rows = reader.read_byte_record(&mut first).map_err(|e| csv_error(&args.file, e))?;
    if !has_rows {
        return Err(ImportError::Usage(format!("{} has no rows", args.file.display())));
    }
    let layout = Layout::detect(&first, args.column.as_deref(), args.timezone_column.as_deref())?;

    let api = Api::new(&args.url, &args.token, args.campaign);
    api.check_campaign()?;
    let rejects_path = rejects_path(&args.file);
    // A rejects file left by an earlier run would describe rows this run may have loaded.
    match std::fs::remove_file(&rejects_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(ImportError::Rejects { path: rejects_path, source: e }),
        _ => {}
    }

    let first_row = if layout.header { None } else { Some(first) };
    let mut progress = Progress::new(file_bytes);
    let mut report = RejectsReport::new(rejects_path);
    let mut totals = Totals::default();
    let result = pipeline(&args.file, &api, reader, layout, first_row, args.batch, |done| {
        totals.rows += done.rows;
        totals.added += done.added;
        totals.already_present += done.already_present;
        totals.line_done = done.last_line.max(totals.line_done);
        for reject in &done.rejects {
            report.add(reject, &progress)?;
        }
        progress.update(totals.rows, done.end_byte);
        Ok(())
    });
    progress.finish();
    let rejects = report.finish()?;
    if let Err(cause) = result {
        return Err(if totals.rows == 0 {
            cause
        } else {
            ImportError::Stopped { rows_done: totals.rows, line_done: totals.line_done, cause: Box::new(cause) }
        });
    }
    let summary = ImportSummary {
        rows: totals.rows,
        added: totals.added,
        already_present: totals.already_present,
        invalid: rejects.as_ref().map_or(0, |(_, n)| *n),
        rejects_path: rejects.map(|(path, _)| path),
        elapsed: started.elapsed(),
    };
    println!("{summary}");
    match &summary.rejects_path {
        Some(path) => {
            println!("rejected rows (line, phone, reason): {}", path.display());
            Err(ImportError::Rejected(summary))
        }
        None => Ok(summary),
    }
}

fn csv_error(path: &Path, error: csv::Error) -> ImportError {
    let line = error.position().map(|p| format!(" at line {}", p.line())).unwrap_or_default();
    match error.into_kind() {
        csv::ErrorKind::Io(source) => ImportError::File { path: path.to_path_buf(), source },
        other => ImportError::Usage(format!("{}{line}: {other:?}", path.display())),
    }
}

// ---------------------------------------------------------------------------------------------
// The file's shape.

/// Which columns hold the phone number and the timezone, and whether the first row is a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    header: bool,
    phone: usize,
    timezone: Option<usize>,
}

/// A cell as text for display and matching: invalid UTF-8 is replaced, a byte-order mark dropped.
fn cell_text(cell: &[u8]) -> String {
    let text = String::from_utf8_lossy(cell);
    text.trim_start_matches('\u{feff}').trim().to_string()
}

/// A header row holds names; a data row starts with something number-like (digits in any script
/// and separators, so that a headerless file whose first number is malformed is still data).
fn looks_like_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('+').unwrap_or(cell);
    let mut any = false;
    for c in digits.chars() {
        match c {
            ' ' | '-' | '.' | '(' | ')' => {}
            c if c.is_numeric() => any = true,
            _ => return false,
        }
    }
    any
}

impl Layout {
    fn detect(first: &csv::ByteRecord, column: Option<&str>, timezone_column: Option<&str>) -> Result<Layout, ImportError> {
        let cells: Vec<String> = first.iter().map(cell_text).collect();
        let find = |name: &str| cells.iter().position(|c| c.eq_ignore_ascii_case(name.trim()));
        let headerless = cells.first().is_some_and(|c| looks_like_number(c));
        let phone = match column {
            Some(name) => find(name).ok_or_else(|| {
                ImportError::Usage(if headerless {
                    format!("--column {name}: the file has no header row (its first row is a number)")
                } else {
                    format!("--column {name}: no such column; the header row is: {}", cells.join(", "))
                })
            })?,
            None => match PHONE_HEADERS.iter().find_map(|name| find(name)) {
                Some(index) => index,
                None if headerless => {
                    if let Some(name) = timezone_column {
                        return Err(ImportError::Usage(format!("--timezone-column {name}: the file has no header row (its first row is a number)")));
                    }
                    return Ok(Layout { header: false, phone: 0, timezone: None });
                }
                None => {
                    return Err(ImportError::Usage(format!(
                        "cannot find the phone column: the header row is: {}; name the column phone, phone_number or number, or pass --column NAME",
                        cells.join(", ")
                    )));
                }
            },
        };
        let timezone = match timezone_column {
            Some(name) => Some(
                find(name).ok_or_else(|| ImportError::Usage(format!("--timezone-column {name}: no such column; the header row is: {}", cells.join(", "))))?,
            ),
            None => find(TIMEZONE_HEADER),
        };
        Ok(Layout { header: true, phone, timezone })
    }
}

// ---------------------------------------------------------------------------------------------
// Batches, from the reader through the senders back to the calling thread.

/// A row that is sent: where it came from and what is sent for it.
struct Row {
    line: u64,
    raw: String,
    e164: String,
    timezone: Option<String>,
}

/// A rejected row, as written to the rejects file.
#[derive(Clone, Debug)]
struct Reject {
    line: u64,
    phone: String,
    reason: String,
}

/// Consecutive rows of the file: those to send, and those already rejected while reading.
struct Batch {
    seq: u64,
    rows: Vec<Row>,
    /// The request body for `rows`; empty when there are none.
    body: String,
    rejects: Vec<Reject>,
    /// Data rows read into this batch (sent plus rejected).
    row_count: u64,
    last_line: u64,
    /// Where in the file this batch ends, for the progress bar.
    end_byte: u64,
}

/// One batch, answered.
struct BatchDone {
    rows: u64,
    added: u64,
    already_present: u64,
    /// In line order.
    rejects: Vec<Reject>,
    last_line: u64,
    end_byte: u64,
}

#[derive(Default)]
struct Totals {
    rows: u64,
    added: u64,
    already_present: u64,
    line_done: u64,
}

/// Runs the reader and the senders, and hands each answered batch to `on_done` in file order.
/// Stops at the first error (from reading, sending or `on_done`), after the threads have ended.
fn pipeline<R: io::Read + Send>(
    path: &Path,
    api: &Api,
    reader: csv::Reader<R>,
    layout: Layout,
    first_row: Option<csv::ByteRecord>,
    batch_rows: usize,
    mut on_done: impl FnMut(BatchDone) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let stop = AtomicBool::new(false);
    let (batch_tx, batch_rx) = crossbeam_channel::bounded::<Batch>(BATCHES_READ_AHEAD_MAX);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<(u64, Result<BatchDone, ImportError>)>(BATCHES_IN_FLIGHT_MAX * 2);
    std::thread::scope(|scope| {
        let stop = &stop;
        let done_for_reader = done_tx.clone();
        std::thread::Builder::new()
            .name("import-reader".into())
            .spawn_scoped(scope, move || read_batches(path, api.campaign, reader, layout, first_row, batch_rows, stop, batch_tx, done_for_reader))
            .expect("the reader thread starts");
        for n in 0..BATCHES_IN_FLIGHT_MAX {
            let (batch_rx, done_tx) = (batch_rx.clone(), done_tx.clone());
            std::thread::Builder::new()
                .name(format!("import-send-{n}"))
                .spawn_scoped(scope, move || {
                    for batch in batch_rx {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let seq = batch.seq;
                        let outcome = api.send(batch, stop);
                        // After a failure nothing more is sent: the import stops at that batch.
                        let failed = outcome.is_err();
                        if failed {
                            stop.store(true, Ordering::Relaxed);
                        }
                        if done_tx.send((seq, outcome)).is_err() || failed {
                            break;
                        }
                    }
                })
                .expect("a sender thread starts");
        }
        // Only the threads hold senders now: the loop below ends when all of them are done.
        drop((done_tx, batch_rx));
        let result = deliver_in_order(&done_rx, &mut on_done);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        // Dropping the receiver unblocks any thread still sending; the scope then joins them.
        drop(done_rx);
        result
    })
}

/// Reorders answers by batch number (at most the in-flight window is held) and delivers them.
fn deliver_in_order(
    done_rx: &Receiver<(u64, Result<BatchDone, ImportError>)>,
    on_done: &mut impl FnMut(BatchDone) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut waiting: BTreeMap<u64, Result<BatchDone, ImportError>> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, outcome) in done_rx {
        waiting.insert(seq, outcome);
        while let Some(outcome) = waiting.remove(&next) {
            on_done(outcome?)?;
            next += 1;
        }
    }
    if waiting.is_empty() {
        return Ok(());
    }
    // A sender that saw another one's failure stops without sending its batch, which leaves a gap
    // before that failure: report the failure. Any other gap is a bug.
    let left = waiting.len();
    Err(waiting.into_values().find_map(Result::err).unwrap_or_else(|| panic!("batch {next} was never answered ({left} after it were)")))
}

/// The reader thread: turns records into batches. A read error is delivered as the outcome of the
/// batch it would have been part of, so that everything before it is still reported.
#[allow(clippy::too_many_arguments)]
fn read_batches<R: io::Read>(
    path: &Path,
    campaign: u64,
    mut reader: csv::Reader<R>,
    layout: Layout,
    first_row: Option<csv::ByteRecord>,
    batch_rows: usize,
    stop: &AtomicBool,
    batch_tx: Sender<Batch>,
    done_tx: Sender<(u64, Result<BatchDone, ImportError>)>,
) {
    let new_batch =
        |seq| Batch { seq, rows: Vec::with_capacity(batch_rows), body: String::new(), rejects: Vec::new(), row_count: 0, last_line: 0, end_byte: 0 };
    let mut batch = new_batch(0);
    let mut pending = first_row.is_some();
    let mut record = first_row.unwrap_or_default();
    loop {
        if !pending {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let _ = done_tx.send((batch.seq, Err(csv_error(path, e))));
                    return;
                }
            }
        }
        pending = false;
        let line = record.position().map_or(1, |p| p.line());
        batch.row_count += 1;
        batch.last_line = line;
        batch.end_byte = reader.position().byte();
        match parse_row(&record, layout) {
            Ok((raw, e164, timezone)) => batch.rows.push(Row { line, raw, e164, timezone }),
            Err((phone, reason)) => batch.rejects.push(Reject { line, phone, reason: reason.to_string() }),
        }
        if batch.rows.len() == batch_rows {
            let seq = batch.seq;
            batch.body = encode(campaign, &batch.rows);
            if stop.load(Ordering::Relaxed) || batch_tx.send(std::mem::replace(&mut batch, new_batch(seq + 1))).is_err() {
                return;
            }
        }
    }
    if batch.row_count > 0 {
        batch.body = if batch.rows.is_empty() { String::new() } else { encode(campaign, &batch.rows) };
        let _ = batch_tx.send(batch);
    }
}

/// The phone cell (as written, normalised) and the timezone cell of a data row, or why the row
/// is rejected before sending. The service validates again; this only saves sending bad rows.
fn parse_row(record: &csv::ByteRecord, layout: Layout) -> Result<(String, String, Option<String>), (String, &'static str)> {
    let raw = match record.get(layout.phone) {
        Some(cell) if !cell.is_empty() => match std::str::from_utf8(cell) {
            Ok(text) => text.to_string(),
            Err(_) => return Err((String::from_utf8_lossy(cell).into_owned(), "Not valid UTF-8")),
        },
        _ => return Err((String::new(), MISSING_PHONE)),
    };
    let e164 = match phone::normalize(&raw) {
        Ok(e164) => e164,
        Err(reason) => return Err((raw, reason)),
    };
    let timezone = layout.timezone.and_then(|i| record.get(i)).filter(|cell| !cell.is_empty()).map(|cell| String::from_utf8_lossy(cell).into_owned());
    Ok((raw, e164, timezone))
}

// ---------------------------------------------------------------------------------------------
// The HTTP side.

#[derive(Serialize)]
struct NumbersBody<'a> {
    campaign_id: u64,
    phone_numbers: Vec<NumberItem<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum NumberItem<'a> {
    Plain(&'a str),
    WithTimezone { phone_number: &'a str, timezone: &'a str },
}

/// The `phone-numbers/` request body for `rows`: normalised numbers, with their timezone if any.
fn encode(campaign: u64, rows: &[Row]) -> String {
    let body = NumbersBody {
        campaign_id: campaign,
        phone_numbers: rows
            .iter()
            .map(|r| match &r.timezone {
                Some(timezone) => NumberItem::WithTimezone { phone_number: &r.e164, timezone },
                None => NumberItem::Plain(&r.e164),
            })
            .collect(),
    };
    serde_json::to_string(&body).expect("a list of strings serialises")
}

#[derive(Deserialize)]
struct NumbersAnswer {
    created_count: u64,
    duplicate_count: u64,
    #[serde(default)]
    errors: Vec<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    index: usize,
    reason: String,
}

/// The service's answer to one request: status, `Retry-After` in seconds, body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
    campaign: u64,
}

impl Api {
    fn new(url: &str, token: &str, campaign: u64) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_idle_connections_per_host(BATCHES_IN_FLIGHT_MAX * 2)
            .build()
            .into();
        Api { agent, base: url.trim_end_matches('/').to_string(), token: token.to_string(), campaign }
    }

    fn unreachable(&self, error: impl std::fmt::Display) -> ImportError {
        ImportError::Unreachable { url: self.base.clone(), reason: error.to_string() }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> Result<Answer, ureq::Error> {
        let url = format!("{}{path}", self.base);
        let builder = ureq::http::Request::builder().method(method).uri(url).header("X-Auth-Token", &self.token).header("Content-Type", "application/json");
        let request = builder.body(body)?;
        let mut response = self.agent.run(request)?;
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
        let body = response.body_mut().with_config().limit(ANSWER_BODY_MAX_BYTES).read_to_string()?;
        Ok(Answer { status: response.status().as_u16(), retry_after, body })
    }

    /// The error for an answer that is neither success nor retryable.
    fn failure(&self, answer: &Answer) -> ImportError {
        match answer.status {
            401 => ImportError::Unauthorized { url: self.base.clone() },
            404 => ImportError::CampaignNotFound(self.campaign),
            413 => ImportError::Usage(format!("the service refused the batch as too large ({}); pass a smaller --batch", error_message(&answer.body))),
            status => ImportError::Service { status, message: error_message(&answer.body) },
        }
    }

    /// Fails early, before reading the file, if the campaign, the token or the service is wrong.
    fn check_campaign(&self) -> Result<(), ImportError> {
        let answer = self.request("GET", &format!("/api/v1/campaigns/{}/", self.campaign), "").map_err(|e| self.unreachable(e))?;
        if answer.status == 200 { Ok(()) } else { Err(self.failure(&answer)) }
    }

    /// Sends one batch (retrying 502/503/504 and transport failures a bounded number of times) and
    /// maps the per-item errors back to CSV lines. A resend after a lost answer is harmless: the
    /// numbers the lost attempt added come back as already present.
    fn send(&self, batch: Batch, stop: &AtomicBool) -> Result<BatchDone, ImportError> {
        let Batch { rows, body, mut rejects, row_count, last_line, end_byte, .. } = batch;
        let mut done = BatchDone { rows: row_count, added: 0, already_present: 0, rejects: Vec::new(), last_line, end_byte };
        if !rows.is_empty() {
            let answer = self.send_with_retries(&body, stop)?;
            let parsed: NumbersAnswer = serde_json::from_str(&answer.body)
                .map_err(|e| ImportError::Service { status: answer.status, message: format!("unexpected answer to phone-numbers/ ({e})") })?;
            done.added = parsed.created_count;
            done.already_present = parsed.duplicate_count;
            for error in parsed.errors {
                let row = rows.get(error.index).ok_or_else(|| ImportError::Service {
                    status: answer.status,
                    message: format!("an error for item {} of a batch of {}", error.index, rows.len()),
                })?;
                rejects.push(Reject { line: row.line, phone: row.raw.clone(), reason: error.reason });
            }
        }
        rejects.sort_by_key(|r| r.line);
        done.rejects = rejects;
        Ok(done)
    }

    fn send_with_retries(&self, body: &str, stop: &AtomicBool) -> Result<Answer, ImportError> {
        let mut wait = RETRY_WAIT_FIRST;
        let mut attempt = 1;
        loop {
            let (error, attempts_max) = match self.request("POST", "/api/v1/phone-numbers/", body) {
                Ok(answer) if answer.status == 201 => return Ok(answer),
                Ok(answer) if matches!(answer.status, 502..=504) => {
                    let wanted = answer.retry_after.map(Duration::from_secs).unwrap_or(wait);
                    wait = wanted.max(wait);
                    (self.failure(&answer), SEND_ATTEMPTS_BUSY_MAX)
                }
                Ok(answer) => return Err(self.failure(&answer)),
                Err(e) => (self.unreachable(e), SEND_ATTEMPTS_UNREACHABLE_MAX),
            };
            if attempt >= attempts_max || stop.load(Ordering::Relaxed) {
                return Err(error);
            }
            std::thread::sleep(wait.min(RETRY_WAIT_MAX));
            wait = (wait * 2).min(RETRY_WAIT_MAX);
            attempt += 1;
        }
    }
}

/// The `message` of the service's error shape, or the start of the body.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    match parsed.as_ref().and_then(|v| v["error"]["message"].as_str()) {
        Some(message) => message.to_string(),
        None => body.chars().take(200).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Output: the rejects file and the progress display.

/// Writes rejected rows to the rejects file, created on the first one.
struct RejectsReport {
    path: PathBuf,
    writer: Option<csv::Writer<io::BufWriter<File>>>,
    count: u64,
}

impl RejectsReport {
    fn new(path: PathBuf) -> RejectsReport {
        RejectsReport { path, writer: None, count: 0 }
    }

    fn add(&mut self, reject: &Reject, progress: &Progress) -> Result<(), ImportError> {
        let failed = |source| ImportError::Rejects { path: self.path.clone(), source };
        if self.writer.is_none() {
            let file = File::create(&self.path).map_err(failed)?;
            let mut writer = csv::Writer::from_writer(io::BufWriter::new(file));
            writer.write_record(["line", "phone", "reason"]).map_err(|e| failed(e.into()))?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("opened above");
        writer.write_record([reject.line.to_string().as_str(), &reject.phone, &reject.reason]).map_err(|e| failed(e.into()))?;
        self.count += 1;
        if self.count as usize <= REJECTS_SHOWN_MAX {
            progress.println(&format!("line {}: {:?}: {}", reject.line, reject.phone, reject.reason));
        } else if self.count as usize == REJECTS_SHOWN_MAX + 1 {
            progress.println(&format!("… more rejected rows are only in {}", self.path.display()));
        }
        Ok(())
    }

    /// The file and how many rows it lists, if any row was rejected.
    fn finish(self) -> Result<Option<(PathBuf, u64)>, ImportError> {
        let Some(mut writer) = self.writer else { return Ok(None) };
        writer.flush().map_err(|source| ImportError::Rejects { path: self.path.clone(), source })?;
        Ok(Some((self.path, self.count)))
    }
}

/// A progress bar on a terminal; plain lines every few seconds otherwise (logs, CI, pipes).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line_at: Instant,
    file_bytes: u64,
    rows: u64,
    byte: u64,
}

impl Progress {
    fn new(file_bytes: u64) -> Progress {
        let bar = io::stderr().is_terminal().then(|| {
            let style = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% {msg} ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> ");
            let bar = indicatif::ProgressBar::with_draw_target(Some(file_bytes), indicatif::ProgressDrawTarget::stderr()).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress { bar, started: now, last_line_at: now, file_bytes, rows: 0, byte: 0 }
    }

    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    fn update(&mut self, rows: u64, byte: u64) {
        self.rows = rows;
        self.byte = byte;
        match &self.bar {
            Some(bar) => {
                bar.set_position(byte);
                bar.set_message(format!("{rows} rows, {:.0} rows/s", self.rows_per_second()));
            }
            None if self.last_line_at.elapsed() >= PLAIN_PROGRESS_INTERVAL => {
                self.last_line_at = Instant::now();
                self.plain_line();
            }
            None => {}
        }
    }

    fn plain_line(&self) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let fraction = if self.file_bytes == 0 { 1.0 } else { self.byte as f64 / self.file_bytes as f64 };
        let eta = if fraction > 0.0 { elapsed * (1.0 - fraction) / fraction } else { 0.0 };
        eprintln!("import: {} rows ({:.0}%), {:.0} rows/s, ETA {:.0} s", self.rows, fraction * 100.0, self.rows_per_second(), eta);
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let _ = io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cells: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(cells.to_vec())
    }

    fn check_layout(cells: &[&str], column: Option<&str>, timezone: Option<&str>, expected: Result<(bool, usize, Option<usize>), &str>) {
        let got = Layout::detect(&record(cells), column, timezone).map(|l| (l.header, l.phone, l.timezone)).map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{cells:?}"),
            (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{cells:?}: {got}"),
            (got, expected) => panic!("{cells:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn layouts() {
        check_layout(&["name", "Phone", "TimeZone"], None, None, Ok((true, 1, Some(2))));
        check_layout(&["\u{feff}phone_number"], None, None, Ok((true, 0, None)));
        check_layout(&["id", "NUMBER"], None, None, Ok((true, 1, None)));
        check_layout(&["mobile", "tz"], Some("Mobile"), Some("tz"), Ok((true, 0, Some(1))));
        check_layout(&["+1 (415) 555-0101", "x"], None, None, Ok((false, 0, None)));
        check_layout(&["+١٤١٥٥٥٥٠١٠١"], None, None, Ok((false, 0, None)));
        check_layout(&["name", "mobile"], None, None, Err("cannot find the phone column: the header row is: name, mobile"));
        check_layout(&["phone"], Some("mobile"), None, Err("--column mobile: no such column"));
        check_layout(&["+14155550101"], Some("mobile"), None, Err("no header row"));
        check_layout(&["+14155550101"], None, Some("tz"), Err("no header row"));
        check_layout(&["phone"], None, Some("tz"), Err("--timezone-column tz: no such column"));
    }

    #[test]
    fn rejects_file_names() {
        assert_eq!(rejects_path(Path::new("/tmp/numbers.csv")), Path::new("/tmp/numbers.rejects.csv"));
        assert_eq!(rejects_path(Path::new("numbers.CSV")), Path::new("numbers.rejects.csv"));
        assert_eq!(rejects_path(Path::new("numbers.txt")), Path::new("numbers.txt.rejects.csv"));
    }

    #[test]
    fn rows_are_checked_before_sending() {
        let layout = Layout { header: true, phone: 1, timezone: Some(2) };
        let ok = parse_row(&record(&["a", "+1 415 555 0101", "America/New_York"]), layout).unwrap();
        assert_eq!(ok, ("+1 415 555 0101".to_string(), "+14155550101".to_string(), Some("America/New_York".to_string())));
        assert_eq!(parse_row(&record(&["a", "+14155550101", ""]), layout).unwrap().2, None);
        assert_eq!(parse_row(&record(&["a"]), layout).unwrap_err().1, MISSING_PHONE);
        assert_eq!(parse_row(&record(&["a", ""]), layout).unwrap_err().1, MISSING_PHONE);
        assert_eq!(parse_row(&record(&["a", "+1415abc0101"]), layout).unwrap_err(), ("+1415abc0101".to_string(), phone::INVALID_PHONE));
        let bad_utf8 = csv::ByteRecord::from(vec![&b"a"[..], &b"+1415\xff"[..]]);
        assert_eq!(parse_row(&bad_utf8, layout).unwrap_err().1, "Not valid UTF-8");
    }

    #[test]
    fn summary_line() {
        let summary = ImportSummary { rows: 100, added: 90, already_present: 5, invalid: 5, rejects_path: None, elapsed: Duration::from_secs(2) };
        assert_eq!(summary.to_string(), "added 90, already present 5, invalid 5 (100 rows in 2.0 s, 50 rows/s)");
    }
}
