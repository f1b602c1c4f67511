//! `callmgr import`: streams a CSV file (or standard input) of phone numbers into a campaign
//! through `POST /api/v1/phone-numbers/`, or onto the do-not-call list through `POST
//! /api/v1/dnc/`, in batches, with a progress display and a rejects file. It is a client of the
//! HTTP API only (through [`ApiClient`]): it never opens the store, never parses numbers itself
//! (the service does, with its default region and strictness), and it holds at most a bounded
//! window of batches in memory, whatever the size of the input.
//!
//! Data flow: a reader thread parses the input into batches (rows without a phone cell are
//! rejected here already) → a sender thread posts them in order → the calling thread takes the
//! answers back in input order, maps each per-item error to its CSV line, writes the rejects
//! file, and draws the progress.
//!
//! The rejects file holds each rejected row as it was (every column, the same delimiter), after
//! two added columns `line` and `reason`, under the input's header row (or, for a headerless
//! input, a header naming the phone column `phone`). Fixed in place, it is imported again as it
//! is: the importer finds the phone column by its header and ignores the other columns.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::protocol::api;
use crate::tools::client::{ApiClient, ClientError, ClientOptions, RetryPolicy};

/// Rows per request unless `--batch` says otherwise.
pub const BATCH_DEFAULT: usize = 1000;
/// The largest `--batch`: the service's default `limits.batch_max`. A service configured lower
/// answers 413, reported as a usage error that names the limit.
pub const BATCH_MAX: usize = 10_000;
/// Batches being sent at once. One, so that batches reach the service in file order and the first
/// row of a repeated number is the one kept (with its timezone). Reading the next batch overlaps
/// with sending this one. Measured on 1M rows (benches/import.sh, 2 cores): about 5 s with one in
/// flight; four in flight saved about 1 s, not worth giving that order up for.
const BATCHES_IN_FLIGHT_MAX: usize = 1;
/// Batches read ahead of the one being sent.
const BATCHES_READ_AHEAD_MAX: usize = 2;
/// How a batch is sent again: up to 10 sends (about two minutes of waiting) while the service
/// answers 502/503/504 (busy: it says so, with `Retry-After`, and recovers); up to 5 sends (about
/// 4 s of waiting, enough for a restart's blip) while it cannot be reached.
const SEND_RETRIES: RetryPolicy =
    RetryPolicy { busy_attempts_max: 10, unreachable_attempts_max: 5, wait_first: Duration::from_millis(250), wait_max: Duration::from_secs(30) };
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request, generous: a big batch on a loaded service can take a while to commit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
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
/// The most of the input read to guess the delimiter from its first line.
const SNIFF_BYTES_MAX: u64 = 64 * 1024;
/// The columns the rejects file adds in front of each row.
const REJECTS_COLUMNS: [&str; 2] = ["line", "reason"];
/// Where the rejects of standard input go unless `--rejects` says otherwise.
const STDIN_REJECTS: &str = "stdin.rejects.csv";

/// Where the numbers go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A campaign's number list (`phone-numbers/`).
    Campaign(u64),
    /// The do-not-call list (`dnc/`): one campaign's, or the global one.
    DoNotCall { campaign: Option<u64>, reason: Option<String> },
}

impl Destination {
    fn campaign(&self) -> Option<u64> {
        match self {
            Destination::Campaign(id) => Some(*id),
            Destination::DoNotCall { campaign, .. } => *campaign,
        }
    }
}

/// What to import, where to, and how; validated by [`run`].
#[derive(Clone, Debug)]
pub struct ImportArgs {
    /// The CSV file; `-` reads standard input.
    pub file: PathBuf,
    pub destination: Destination,
    /// Header of the phone column, instead of looking for `phone`, `phone_number` or `number`.
    pub column: Option<String>,
    /// Header of the timezone column, instead of `timezone` (campaign imports only).
    pub timezone_column: Option<String>,
    /// The field delimiter; `None` guesses `;` or tab from the first line, else `,`.
    pub delimiter: Option<u8>,
    /// A two-letter region for numbers written without `+country code`: set as the campaign's
    /// `default_region` when the campaign has none (the service parses the numbers).
    pub region: Option<String>,
    /// Where the rejected rows go, instead of `FILE.rejects.csv` (`stdin.rejects.csv` for `-`).
    pub rejects: Option<PathBuf>,
    /// Rows per request, 1 to [`BATCH_MAX`].
    pub batch: usize,
    /// Base URL of the service, like `http://127.0.0.1:8000`.
    pub url: String,
    /// API token.
    pub token: String,
}

/// `--delimiter`: `,` `;` `|` or a tab (written as a tab, `\t` or `tab`).
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "|" | "pipe" => Ok(b'|'),
        "\t" | "\\t" | "tab" => Ok(b'\t'),
        other => Err(format!("`{other}` is not one of , ; | or \\t (tab)")),
    }
}

/// The delimiter of a file whose first line is `line`: `;` or tab when the line has more of it
/// (outside double quotes) than commas, else `,`.
fn sniff_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let candidates = [b',', b';', b'\t'];
    let mut quoted = false;
    for &byte in line {
        if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = candidates.iter().position(|&c| c == byte) {
            counts[i] += 1;
        }
    }
    let best = (1..3).filter(|&i| counts[i] > counts[0]).max_by_key(|&i| counts[i]);
    best.map_or(b',', |i| candidates[i])
}

/// The outcome of an import that read the whole input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSummary {
    /// Whether the numbers went to the do-not-call list (the summary's words differ).
    pub do_not_call: bool,
    /// Data rows read (the header row not counted).
    pub rows: u64,
    /// Numbers the campaign (or the list) did not have before.
    pub added: u64,
    /// Numbers it already had, including repeats within the input.
    pub already_present: u64,
    /// Rows rejected, each one written to `rejects_path`.
    pub invalid: u64,
    /// Where the rejected rows are; `None` when there were none.
    pub rejects_path: Option<PathBuf>,
    pub elapsed: Duration,
}

impl std::fmt::Display for ImportSummary {
    /// The summary line, for example
    /// `added 99890, already present 10, invalid 100 (100000 rows in 2.9 s, 34482 rows/s)`, or for
    /// the do-not-call list `listed 99890, already listed 10, invalid 100 (…)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let (added, already) = if self.do_not_call { ("listed", "already listed") } else { ("added", "already present") };
        write!(
            f,
            "{added} {}, {already} {}, invalid {} ({} rows in {:.1} s, {:.0} rows/s)",
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
    /// The input cannot be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    /// The arguments or the input's shape are wrong (no phone column, bad `--batch`, …).
    #[error("{0}")]
    Usage(String),
    #[error("campaign {0} not found")]
    CampaignNotFound(u64),
    /// 401 or 403: the message says which and what to do.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Unreachable(String),
    /// An answer that no retry can fix (a 500, or a 400 for a body this client built).
    #[error("the service answered {status}: {message}")]
    Service { status: u16, message: String },
    /// The rejects file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Rejects { path: PathBuf, source: io::Error },
    /// The whole input was read and every valid row loaded, but some rows were rejected.
    #[error("{} of {} rows rejected; each is listed with its line and reason in {}", .0.invalid, .0.rows, .0.rejects_path.as_deref().unwrap_or(Path::new("?")).display())]
    Rejected(ImportSummary),
    /// A failure after some batches were loaded; the input can be imported again as it is, since
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
            | ImportError::Unauthorized(_)
            | ImportError::Unreachable(_) => 2,
            ImportError::Service { .. } | ImportError::Rejects { .. } | ImportError::Rejected(_) => 1,
            ImportError::Stopped { cause, .. } => cause.exit_code(),
        }
    }

    /// The importer's reading of a failed request; `campaign` names a 404.
    fn from_client(error: ClientError, campaign: Option<u64>) -> ImportError {
        match error {
            ClientError::Unauthorized { .. } => ImportError::Unauthorized(error.to_string()),
            ClientError::Unreachable { .. } => ImportError::Unreachable(error.to_string()),
            ClientError::Api { status: 404, .. } if campaign.is_some() => ImportError::CampaignNotFound(campaign.unwrap_or_default()),
            ClientError::Api { status: 413, message, .. } => {
                ImportError::Usage(format!("the service refused the batch as too large ({message}); pass a smaller --batch"))
            }
            ClientError::Api { status, message, .. } => ImportError::Service { status, message },
            ClientError::Unexpected { status, path, reason } => ImportError::Service { status, message: format!("unexpected answer to {path} ({reason})") },
        }
    }
}

/// Where the rejected rows of `file` go: `numbers.csv` → `numbers.rejects.csv`.
pub fn rejects_path(file: &Path) -> PathBuf {
    if file == Path::new("-") {
        return PathBuf::from(STDIN_REJECTS);
    }
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = match name.len().checked_sub(4) {
        Some(cut) if name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".csv") => &name[..cut],
        _ => name.as_str(),
    };
    file.with_file_name(format!("{stem}.rejects.csv"))
}

/// The input as a byte stream, and its size when it is a file.
type Input = Box<dyn Read + Send>;

fn open_input(path: &Path) -> Result<(Input, Option<u64>), ImportError> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin()), None));
    }
    let file = File::open(path).map_err(|source| ImportError::File { path: path.to_path_buf(), source })?;
    let bytes = file.metadata().map(|m| m.len()).ok();
    Ok((Box::new(file), bytes))
}

/// Checks the arguments that need no input and no service.
fn validate(args: &ImportArgs) -> Result<Option<String>, ImportError> {
    if !(1..=BATCH_MAX).contains(&args.batch) {
        return Err(ImportError::Usage(format!("--batch must be between 1 and {BATCH_MAX}")));
    }
    if args.timezone_column.is_some() && matches!(args.destination, Destination::DoNotCall { .. }) {
        return Err(ImportError::Usage("--timezone-column does not apply to --dnc".into()));
    }
    let Some(region) = &args.region else { return Ok(None) };
    let region = region.trim().to_ascii_uppercase();
    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ImportError::Usage(format!("--region `{region}` must be a two-letter region code such as US or GB")));
    }
    if args.destination.campaign().is_none() {
        return Err(ImportError::Usage(
            "--region needs --campaign: it sets the campaign's default region (a global do-not-call list uses the service's default_region)".into(),
        ));
    }
    Ok(Some(region))
}

/// Imports `args.file`; prints progress on stderr and the summary line on stdout.
pub fn run(args: ImportArgs) -> Result<ImportSummary, ImportError> {
    let region = validate(&args)?;
    let started = Instant::now();
    let (input, input_bytes) = open_input(&args.file)?;
    let read_error = |source| ImportError::File { path: args.file.clone(), source };
    let mut buffered = io::BufReader::with_capacity(1 << 16, input);
    // The first line is read apart to guess the delimiter, then read again by the CSV reader.
    let mut first_line = Vec::new();
    (&mut buffered).take(SNIFF_BYTES_MAX).read_until(b'\n', &mut first_line).map_err(read_error)?;
    let delimiter = args.delimiter.unwrap_or_else(|| sniff_delimiter(&first_line));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(Box::new(io::Cursor::new(first_line).chain(buffered)) as Input);
    let mut first = csv::ByteRecord::new();
    let has_rows = reader.read_byte_record(&mut first).map_err(|e| csv_error(&args.file, e))?;
    if !has_rows {
        return Err(ImportError::Usage(format!("{} has no rows", args.file.display())));
    }
    let layout = Layout::detect(&first, args.column.as_deref(), args.timezone_column.as_deref())?;

    let options = ClientOptions {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        idle_connections_per_host: BATCHES_IN_FLIGHT_MAX * 2,
        ..Default::default()
    };
    let client = ApiClient::with_options(&args.url, &args.token, &options);
    let sender = BatchSender { client, destination: args.destination.clone() };
    sender.check(region.as_deref())?;
    let rejects_path = args.rejects.clone().unwrap_or_else(|| rejects_path(&args.file));
    // A rejects file left by an earlier run would describe rows this run may have loaded.
    match std::fs::remove_file(&rejects_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(ImportError::Rejects { path: rejects_path, source: e }),
        _ => {}
    }

    let header = rejects_header(&first, layout);
    let first_row = if layout.header { None } else { Some(first) };
    let mut progress = Progress::new(input_bytes);
    let mut report = RejectsReport::new(rejects_path, delimiter, header);
    let mut totals = Totals::default();
    let result = pipeline(&args.file, &sender, reader, layout, first_row, args.batch, |done| {
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
        do_not_call: matches!(args.destination, Destination::DoNotCall { .. }),
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
            println!("rejected rows, each with its line and reason, to fix and import again as they are: {}", path.display());
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
// The input's shape.

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
                        "cannot find the phone column: the header row is: {}; name the column phone, phone_number or number, or pass --column NAME (and --delimiter if the columns are not separated by commas)",
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

/// The rejects file's header: `line`, `reason`, then the input's header row (without a
/// byte-order mark), or for a headerless input `phone` over the phone column and `columnN` over
/// the others, so that the file can be imported again as it is.
fn rejects_header(first: &csv::ByteRecord, layout: Layout) -> Vec<Vec<u8>> {
    let mut header: Vec<Vec<u8>> = REJECTS_COLUMNS.iter().map(|c| c.as_bytes().to_vec()).collect();
    for (i, cell) in first.iter().enumerate() {
        header.push(match layout.header {
            true if i == 0 => cell.strip_prefix("\u{feff}".as_bytes()).unwrap_or(cell).to_vec(),
            true => cell.to_vec(),
            false if i == layout.phone => b"phone".to_vec(),
            false => format!("column{}", i + 1).into_bytes(),
        });
    }
    header
}

// ---------------------------------------------------------------------------------------------
// Batches, from the reader through the senders back to the calling thread.

/// A data row to send: its line, its phone cell as written (trimmed), its timezone cell, and
/// the whole record for the rejects file.
struct Row {
    line: u64,
    raw: String,
    timezone: Option<String>,
    record: csv::ByteRecord,
}

/// A rejected row, as written to the rejects file.
#[derive(Clone, Debug)]
struct Reject {
    line: u64,
    /// The phone cell, for the lines shown on stderr.
    phone: String,
    reason: String,
    record: csv::ByteRecord,
}

/// Consecutive rows of the input: those to send, and those already rejected while reading.
struct Batch {
    seq: u64,
    rows: Vec<Row>,
    rejects: Vec<Reject>,
    /// Data rows read into this batch (sent plus rejected).
    row_count: u64,
    last_line: u64,
    /// Where in the input this batch ends, for the progress display.
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

/// Runs the reader and the senders, and hands each answered batch to `on_done` in input order.
/// Stops at the first error (from reading, sending or `on_done`), after the threads have ended.
fn pipeline<R: io::Read + Send>(
    path: &Path,
    sender: &BatchSender,
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
            .spawn_scoped(scope, move || read_batches(path, reader, layout, first_row, batch_rows, stop, batch_tx, done_for_reader))
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
                        let outcome = sender.send(batch, stop);
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
    mut reader: csv::Reader<R>,
    layout: Layout,
    first_row: Option<csv::ByteRecord>,
    batch_rows: usize,
    stop: &AtomicBool,
    batch_tx: Sender<Batch>,
    done_tx: Sender<(u64, Result<BatchDone, ImportError>)>,
) {
    let new_batch = |seq| Batch { seq, rows: Vec::with_capacity(batch_rows), rejects: Vec::new(), row_count: 0, last_line: 0, end_byte: 0 };
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
            Ok((raw, timezone)) => batch.rows.push(Row { line, raw, timezone, record: record.clone() }),
            Err((phone, reason)) => batch.rejects.push(Reject { line, phone, reason: reason.to_string(), record: record.clone() }),
        }
        if batch.rows.len() == batch_rows {
            let seq = batch.seq;
            if stop.load(Ordering::Relaxed) || batch_tx.send(std::mem::replace(&mut batch, new_batch(seq + 1))).is_err() {
                return;
            }
        }
    }
    if batch.row_count > 0 {
        let _ = batch_tx.send(batch);
    }
}

/// The phone cell (trimmed, as written: the service parses it) and the timezone cell of a data
/// row, or why the row is rejected before sending.
fn parse_row(record: &csv::ByteRecord, layout: Layout) -> Result<(String, Option<String>), (String, &'static str)> {
    let cell = record.get(layout.phone).map(<[u8]>::trim_ascii).unwrap_or_default();
    let raw = match std::str::from_utf8(cell) {
        Ok("") => return Err((String::new(), MISSING_PHONE)),
        Ok(text) => text.trim().to_string(),
        Err(_) => return Err((String::from_utf8_lossy(cell).into_owned(), "Not valid UTF-8")),
    };
    let timezone = layout.timezone.and_then(|i| record.get(i)).map(<[u8]>::trim_ascii).filter(|cell| !cell.is_empty());
    Ok((raw, timezone.map(|cell| String::from_utf8_lossy(cell).into_owned())))
}

// ---------------------------------------------------------------------------------------------
// The HTTP side.

/// What one request did: numbers added, numbers already there, and the refused items by index.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    added: u64,
    already: u64,
    refused: Vec<(usize, String)>,
}

/// Is this the do-not-call endpoint refusing a whole batch because none of its numbers is
/// valid (a 400 naming `phone_numbers[i]`)?
fn whole_batch_refused(error: &ClientError) -> bool {
    error.status() == Some(400) && error.field().is_some_and(|f| f.starts_with("phone_numbers["))
}

/// The reason in a whole-batch refusal of one number: its message without the "`raw`: " prefix.
fn single_refusal_reason(error: &ClientError, raw: &str) -> String {
    let message = match error {
        ClientError::Api { message, .. } => message.as_str(),
        _ => "",
    };
    message.strip_prefix(&format!("`{raw}`: ")).unwrap_or(message).to_string()
}

/// Sends batches to one destination.
struct BatchSender {
    client: ApiClient,
    destination: Destination,
}

impl BatchSender {
    fn failure(&self, error: ClientError) -> ImportError {
        ImportError::from_client(error, self.destination.campaign())
    }

    /// Fails early, before reading the input, if the campaign, the token or the service is
    /// wrong; sets the campaign's default region to `region` when it has none.
    fn check(&self, region: Option<&str>) -> Result<(), ImportError> {
        let Some(id) = self.destination.campaign() else {
            // The global do-not-call list: reading one entry checks the service and the token.
            return self.client.dnc_entries(None, Some(1)).map(drop).map_err(|e| self.failure(e));
        };
        let campaign = self.client.campaign(id).map_err(|e| self.failure(e))?;
        let Some(region) = region else { return Ok(()) };
        match campaign.default_region.as_deref() {
            None => {
                self.client.patch_campaign(id, &api::CampaignPatch { default_region: Some(region.to_string()) }).map_err(|e| self.failure(e))?;
                println!("campaign {id} had no default region: set it to {region}, for numbers written without +country code");
            }
            Some(existing) if existing == region => println!("campaign {id}'s default region is {region} already"),
            Some(existing) => println!(
                "campaign {id}'s default region stays {existing} (--region {region} only sets one on a campaign without): numbers written without +country code are read as {existing}"
            ),
        }
        Ok(())
    }

    /// Sends one batch (retrying while the service is busy or away, a bounded number of times)
    /// and maps the per-item errors back to input lines. A resend after a lost answer is
    /// harmless: the numbers the lost attempt added come back as already present.
    fn send(&self, batch: Batch, stop: &AtomicBool) -> Result<BatchDone, ImportError> {
        let Batch { rows, mut rejects, row_count, last_line, end_byte, .. } = batch;
        let mut done = BatchDone { rows: row_count, added: 0, already_present: 0, rejects: Vec::new(), last_line, end_byte };
        if !rows.is_empty() {
            let counts = self.deliver(&rows, stop)?;
            done.added = counts.added;
            done.already_present = counts.already;
            for (index, reason) in counts.refused {
                let row = rows
                    .get(index)
                    .ok_or_else(|| ImportError::Service { status: 201, message: format!("an error for item {index} of a batch of {}", rows.len()) })?;
                rejects.push(Reject { line: row.line, phone: row.raw.clone(), reason, record: row.record.clone() });
            }
        }
        rejects.sort_by_key(|r| r.line);
        done.rejects = rejects;
        Ok(done)
    }

    fn deliver(&self, rows: &[Row], stop: &AtomicBool) -> Result<Counts, ImportError> {
        match &self.destination {
            Destination::Campaign(campaign_id) => {
                let phone_numbers = rows
                    .iter()
                    .map(|r| match &r.timezone {
                        Some(timezone) => api::NumberItem::WithTimezone { phone_number: r.raw.clone(), timezone: timezone.clone() },
                        None => api::NumberItem::Plain(r.raw.clone()),
                    })
                    .collect();
                let request = api::AddNumbers { campaign_id: *campaign_id, phone_numbers };
                let answer = SEND_RETRIES.run(stop, || self.client.add_numbers(&request)).map_err(|e| self.failure(e))?;
                Ok(Counts {
                    added: answer.created_count,
                    already: answer.duplicate_count,
                    refused: answer.errors.into_iter().map(|e| (e.index, e.reason)).collect(),
                })
            }
            Destination::DoNotCall { campaign, reason } => {
                let request = |numbers: Vec<String>| api::AddDnc { phone_numbers: numbers, campaign_id: *campaign, reason: reason.clone() };
                let all = request(rows.iter().map(|r| r.raw.clone()).collect());
                match SEND_RETRIES.run(stop, || self.client.add_dnc(&all)) {
                    Ok(answer) => Ok(Counts {
                        added: answer.added_count,
                        already: answer.already_count,
                        refused: answer.errors.into_iter().map(|e| (e.index, e.reason)).collect(),
                    }),
                    // No number of the batch was valid and the service names only the first:
                    // each is sent alone to learn its own reason (every one of them would refuse a
                    // smaller batch too, so halving would only cost more requests).
                    Err(error) if whole_batch_refused(&error) => {
                        let mut counts = Counts::default();
                        for (index, row) in rows.iter().enumerate() {
                            let one = request(vec![row.raw.clone()]);
                            match SEND_RETRIES.run(stop, || self.client.add_dnc(&one)) {
                                Ok(answer) => {
                                    counts.added += answer.added_count;
                                    counts.already += answer.already_count;
                                    counts.refused.extend(answer.errors.into_iter().map(|e| (index, e.reason)));
                                }
                                Err(error) if whole_batch_refused(&error) => counts.refused.push((index, single_refusal_reason(&error, &row.raw))),
                                Err(error) => return Err(self.failure(error)),
                            }
                        }
                        Ok(counts)
                    }
                    Err(error) => Err(self.failure(error)),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output: the rejects file and the progress display.

/// Writes rejected rows to the rejects file, created on the first one.
struct RejectsReport {
    path: PathBuf,
    delimiter: u8,
    header: Vec<Vec<u8>>,
    writer: Option<csv::Writer<io::BufWriter<File>>>,
    count: u64,
}

impl RejectsReport {
    fn new(path: PathBuf, delimiter: u8, header: Vec<Vec<u8>>) -> RejectsReport {
        RejectsReport { path, delimiter, header, writer: None, count: 0 }
    }

    fn add(&mut self, reject: &Reject, progress: &Progress) -> Result<(), ImportError> {
        let failed = |source| ImportError::Rejects { path: self.path.clone(), source };
        if self.writer.is_none() {
            let file = File::create(&self.path).map_err(failed)?;
            let mut writer = csv::WriterBuilder::new().delimiter(self.delimiter).flexible(true).from_writer(io::BufWriter::new(file));
            writer.write_record(&self.header).map_err(|e| failed(e.into()))?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("opened above");
        let line = reject.line.to_string();
        let cells = [line.as_bytes(), reject.reason.as_bytes()].into_iter().chain(reject.record.iter());
        writer.write_record(cells).map_err(|e| failed(e.into()))?;
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

/// A progress bar on a terminal (a spinner with counts when the input's size is unknown); plain
/// lines every few seconds otherwise (logs, CI, pipes).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line_at: Instant,
    input_bytes: Option<u64>,
    rows: u64,
    byte: u64,
}

impl Progress {
    fn new(input_bytes: Option<u64>) -> Progress {
        let bar = io::stderr().is_terminal().then(|| {
            let (template, length) = match input_bytes {
                Some(bytes) => ("{elapsed_precise} [{bar:40}] {percent:>3}% {msg} ETA {eta}", Some(bytes)),
                None => ("{elapsed_precise} {spinner} {msg}", None),
            };
            let style = indicatif::ProgressStyle::with_template(template).expect("the template is valid").progress_chars("=> ");
            let bar = indicatif::ProgressBar::with_draw_target(length, indicatif::ProgressDrawTarget::stderr()).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress { bar, started: now, last_line_at: now, input_bytes, rows: 0, byte: 0 }
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
        match self.input_bytes {
            Some(bytes) => {
                let elapsed = self.started.elapsed().as_secs_f64();
                let fraction = if bytes == 0 { 1.0 } else { self.byte as f64 / bytes as f64 };
                let eta = if fraction > 0.0 { elapsed * (1.0 - fraction) / fraction } else { 0.0 };
                eprintln!("import: {} rows ({:.0}%), {:.0} rows/s, ETA {:.0} s", self.rows, fraction * 100.0, self.rows_per_second(), eta);
            }
            None => eprintln!("import: {} rows, {:.0} rows/s", self.rows, self.rows_per_second()),
        }
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
        // A rejects file: the added columns come first and are ignored.
        check_layout(&["line", "reason", "name", "phone", "timezone"], None, None, Ok((true, 3, Some(4))));
    }

    #[test]
    fn rejects_file_names() {
        assert_eq!(rejects_path(Path::new("/tmp/numbers.csv")), Path::new("/tmp/numbers.rejects.csv"));
        assert_eq!(rejects_path(Path::new("numbers.CSV")), Path::new("numbers.rejects.csv"));
        assert_eq!(rejects_path(Path::new("numbers.txt")), Path::new("numbers.txt.rejects.csv"));
        assert_eq!(rejects_path(Path::new("-")), Path::new("stdin.rejects.csv"));
    }

    #[test]
    fn rows_are_sent_as_written() {
        let layout = Layout { header: true, phone: 1, timezone: Some(2) };
        let ok = parse_row(&record(&["a", " +1 415 555 0101 ", " America/New_York"]), layout).unwrap();
        assert_eq!(ok, ("+1 415 555 0101".to_string(), Some("America/New_York".to_string())));
        assert_eq!(parse_row(&record(&["a", "020 7946 0958", ""]), layout).unwrap(), ("020 7946 0958".to_string(), None), "national numbers go to the service");
        assert_eq!(parse_row(&record(&["a"]), layout).unwrap_err().1, MISSING_PHONE);
        assert_eq!(parse_row(&record(&["a", "  "]), layout).unwrap_err().1, MISSING_PHONE);
        let bad_utf8 = csv::ByteRecord::from(vec![&b"a"[..], &b"+1415\xff"[..]]);
        assert_eq!(parse_row(&bad_utf8, layout).unwrap_err().1, "Not valid UTF-8");
    }

    #[test]
    fn delimiters_are_named_or_guessed_from_the_first_line() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter("|"), Ok(b'|'));
        assert!(parse_delimiter(":").unwrap_err().contains("not one of"));
        assert_eq!(sniff_delimiter(b"name,phone,timezone\n"), b',');
        assert_eq!(sniff_delimiter(b"name;phone;timezone\r\n"), b';');
        assert_eq!(sniff_delimiter(b"name\tphone\n"), b'\t');
        assert_eq!(sniff_delimiter(b"\"Smith, Ann\";phone\n"), b';', "a comma inside quotes does not count");
        assert_eq!(sniff_delimiter(b"phone\n"), b',', "one column: the default");
        assert_eq!(sniff_delimiter(b"a,b;c\n"), b',', "a tie keeps the comma");
        assert_eq!(sniff_delimiter(b""), b',');
    }

    #[test]
    fn the_rejects_header_keeps_the_input_header_or_names_the_phone_column() {
        let text = |h: Vec<Vec<u8>>| h.into_iter().map(|c| String::from_utf8(c).unwrap()).collect::<Vec<_>>();
        let with_header = Layout { header: true, phone: 1, timezone: None };
        assert_eq!(text(rejects_header(&record(&["\u{feff}name", "Mobile"]), with_header)), ["line", "reason", "name", "Mobile"]);
        let headerless = Layout { header: false, phone: 0, timezone: None };
        assert_eq!(text(rejects_header(&record(&["+14155550101", "x", "y"]), headerless)), ["line", "reason", "phone", "column2", "column3"]);
    }

    #[test]
    fn a_do_not_call_batch_refused_whole_is_recognised_and_its_reason_kept() {
        let refused = ClientError::Api {
            status: 400,
            code: "bad_request".into(),
            message: "`nope`: Invalid phone number format.".into(),
            details: serde_json::json!({"field": "phone_numbers[0]"}),
            retry_after: None,
        };
        assert!(whole_batch_refused(&refused));
        assert_eq!(single_refusal_reason(&refused, "nope"), "Invalid phone number format.");
        let other = ClientError::Api {
            status: 400,
            code: "bad_request".into(),
            message: "x".into(),
            details: serde_json::json!({"field": "reason"}),
            retry_after: None,
        };
        assert!(!whole_batch_refused(&other));
    }

    #[test]
    fn arguments_are_checked_before_anything_is_read() {
        let args = |destination, region: Option<&str>, timezone_column: Option<&str>| ImportArgs {
            file: PathBuf::from("x.csv"),
            destination,
            column: None,
            timezone_column: timezone_column.map(str::to_string),
            delimiter: None,
            region: region.map(str::to_string),
            rejects: None,
            batch: BATCH_DEFAULT,
            url: String::new(),
            token: String::new(),
        };
        assert_eq!(validate(&args(Destination::Campaign(1), Some("gb"), None)).unwrap(), Some("GB".to_string()));
        assert!(validate(&args(Destination::Campaign(1), Some("GBR"), None)).unwrap_err().to_string().contains("two-letter"));
        let global = Destination::DoNotCall { campaign: None, reason: None };
        assert!(validate(&args(global.clone(), Some("GB"), None)).unwrap_err().to_string().contains("--region needs --campaign"));
        assert!(validate(&args(global, None, Some("tz"))).unwrap_err().to_string().contains("does not apply to --dnc"));
    }

    #[test]
    fn summary_lines() {
        let mut summary =
            ImportSummary { do_not_call: false, rows: 100, added: 90, already_present: 5, invalid: 5, rejects_path: None, elapsed: Duration::from_secs(2) };
        assert_eq!(summary.to_string(), "added 90, already present 5, invalid 5 (100 rows in 2.0 s, 50 rows/s)");
        summary.do_not_call = true;
        assert_eq!(summary.to_string(), "listed 90, already listed 5, invalid 5 (100 rows in 2.0 s, 50 rows/s)");
    }
}
