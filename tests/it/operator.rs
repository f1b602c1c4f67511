//! Operator tools against the real binary: `callmgr import` (a generated 100,000-row file with
//! bad rows, exit codes, rejects file, idempotent re-run, headerless and named columns, other
//! delimiters, standard input, a fixed rejects file imported again, the do-not-call list, the
//! campaign's default region), the
//! metrics after a scripted set of calls (JSON, and Prometheus text checked by `promtool`), and
//! the CSV export with its filters.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::{Value, json};

const INVALID_PHONE: &str = "Invalid phone number format. Must start with + and contain 8-15 digits.";

/// A server that checks numbers with the reference system's rule (`phone_validation: shape`),
/// whose reason text these import tests expect.
fn import_server() -> Server {
    Server::start(Options { extra_yaml: "phone_validation: shape\n".into(), ..Options::default() })
}

/// What one run of `callmgr import` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// `(added, already present, invalid, rows)` from the summary line.
    fn summary(&self) -> (u64, u64, u64, u64) {
        let line = self.stdout.lines().find(|l| l.starts_with("added ")).unwrap_or_else(|| panic!("no summary line in {self:#?}"));
        let number = |after: &str| -> u64 {
            let rest = &line[line.find(after).unwrap_or_else(|| panic!("`{after}` in {line}")) + after.len()..];
            rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
        };
        (number("added "), number("already present "), number("invalid "), number("("))
    }
}

/// Runs `callmgr import ARGS…` with a deadline, and nothing from the environment.
fn import(args: &[&str]) -> Run {
    import_with_stdin(args, None)
}

/// Runs `callmgr import ARGS…` with `stdin` (if any) as its standard input.
fn import_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(binary())
        .arg("import")
        .args(args)
        .env_remove("CALLMGR_URL")
        .env_remove("X_AUTH_TOKEN")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("callmgr import starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        // Written from a thread so a full pipe cannot block the test; closing it ends the input.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("callmgr import {args:?} did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run { code: status.code().expect("exited, not killed"), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// `import FILE --campaign ID` against `server`, plus `extra` flags.
fn import_into(server: &Server, file: &Path, campaign: u64, extra: &[&str]) -> Run {
    let (file, campaign, url) = (file.to_str().unwrap().to_string(), campaign.to_string(), server.url(""));
    let mut args = vec![file.as_str(), "--campaign", campaign.as_str(), "--url", url.as_str(), "--token", TOKEN];
    args.extend_from_slice(extra);
    import(&args)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn phone_count(server: &Server, campaign: u64) -> u64 {
    server.get(&format!("/api/v1/campaigns/{campaign}/"))["stats"]["phone_count"].as_u64().unwrap()
}

/// `+15550001234` written as `+1 (555) 000-1234`.
fn spaced(e164: &str) -> String {
    format!("+1 ({}) {}-{}", &e164[2..5], &e164[5..8], &e164[8..])
}

/// The 100,000-row file: header `name,phone,timezone`, row `i` on line `i + 2`. Every 1000th row
/// repeats the previous row's number in another spelling; five rows are bad, one of them only
/// by its timezone (so the service, not the client, rejects it).
fn big_file_row(i: u64) -> String {
    let timezone = match i {
        54_321 => "Mars/Olympus",
        _ if i.is_multiple_of(2) => "Europe/Berlin",
        _ => "",
    };
    let phone_cell = match i {
        10 => "+1415abc0101".to_string(),
        500 => "+12345".to_string(),
        77_777 => "+١٤١٥٥٥٥٠١٠١".to_string(),
        88_888 => return format!("name{i}"), // a short row: no phone cell at all
        33 => return format!("name{i},{},,an extra cell", phone(i)),
        _ if i % 1000 == 999 => spaced(&phone(i - 1)),
        _ if i.is_multiple_of(7) => spaced(&phone(i)),
        _ => phone(i),
    };
    format!("name{i},\"{phone_cell}\",{timezone}")
}

const BIG_ROWS: u64 = 100_000;
const BIG_DUPLICATES: u64 = BIG_ROWS / 1000;
const BIG_INVALID: u64 = 5;

#[test]
fn import_of_100000_rows_reports_each_bad_row_by_line_and_a_rerun_adds_nothing() {
    let server = import_server();
    let campaign = server.create_campaign(json!({"name": "import"}));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("numbers.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(out, "name,phone,timezone").unwrap();
    for i in 0..BIG_ROWS {
        writeln!(out, "{}", big_file_row(i)).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();

    let first = import_into(&server, &path, campaign, &[]);
    assert_eq!(first.code, 1, "some rows are rejected: {first:#?}");
    let added = BIG_ROWS - BIG_INVALID - BIG_DUPLICATES;
    assert_eq!(first.summary(), (added, BIG_DUPLICATES, BIG_INVALID, BIG_ROWS), "{first:#?}");
    let rejects_path = dir.path().join("numbers.rejects.csv");
    // Each rejected row as it was, after its line and reason, under the file's header.
    let expected_rejects = format!(
        "line,reason,name,phone,timezone\n\
         12,{INVALID_PHONE},name10,+1415abc0101,Europe/Berlin\n\
         502,{INVALID_PHONE},name500,+12345,Europe/Berlin\n\
         54323,Unknown timezone `Mars/Olympus`,name54321,+15550054321,Mars/Olympus\n\
         77779,{INVALID_PHONE},name77777,+١٤١٥٥٥٥٠١٠١,\n\
         88890,Missing phone number,name88888\n"
    );
    assert_eq!(read_file(&rejects_path), expected_rejects);
    assert!(first.stdout.contains(&format!("to fix and import again as they are: {}", rejects_path.display())), "{first:#?}");
    assert!(first.stderr.contains("line 12: \"+1415abc0101\": Invalid phone number format"), "the first rejects are shown: {first:#?}");
    assert!(first.stderr.contains("callmgr: 5 of 100000 rows rejected"), "{first:#?}");
    assert_eq!(phone_count(&server, campaign), added);

    // Numbers come back normalised, with the timezone from their row (or the one that applies).
    let page = server.get(&format!("/api/v1/campaigns/{campaign}/phone-numbers/?limit=2"));
    assert_eq!(page["results"][0]["phone_number"], phone(0));
    assert_eq!(page["results"][0]["timezone"], "Europe/Berlin");
    assert_eq!(page["results"][1]["phone_number"], phone(1));
    assert_eq!(page["results"][0]["timezone_source"], "given");
    assert_ne!(page["results"][1]["timezone_source"], "given", "{page}");

    // The same file again: nothing is added twice, the bad rows are still bad.
    let again = import_into(&server, &path, campaign, &[]);
    assert_eq!(again.code, 1, "{again:#?}");
    assert_eq!(again.summary(), (0, BIG_ROWS - BIG_INVALID, BIG_INVALID, BIG_ROWS), "{again:#?}");
    assert_eq!(read_file(&rejects_path), expected_rejects);
    assert_eq!(phone_count(&server, campaign), added);
}

#[test]
fn import_usage_errors_exit_2() {
    let server = import_server();
    let campaign = server.create_campaign(json!({"name": "usage"}));
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.csv", "phone\n+14155550101\n");

    let missing = import_into(&server, &dir.path().join("absent.csv"), campaign, &[]);
    assert_eq!(missing.code, 2, "{missing:#?}");
    assert!(missing.stderr.contains("cannot read") && missing.stderr.contains("absent.csv"), "{missing:#?}");

    let unknown = import_into(&server, &good, 999, &[]);
    assert_eq!(unknown.code, 2, "{unknown:#?}");
    assert!(unknown.stderr.contains("campaign 999 not found"), "{unknown:#?}");

    let url = server.url("");
    let bad_token = import(&[good.to_str().unwrap(), "--campaign", &campaign.to_string(), "--url", &url, "--token", "wrong-token"]);
    assert_eq!(bad_token.code, 2, "{bad_token:#?}");
    assert!(bad_token.stderr.contains("refused the token"), "{bad_token:#?}");

    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = import(&[good.to_str().unwrap(), "--campaign", &campaign.to_string(), "--url", &format!("http://{closed}"), "--token", TOKEN]);
    assert_eq!(unreachable.code, 2, "{unreachable:#?}");
    assert!(unreachable.stderr.contains("unreachable"), "{unreachable:#?}");

    let no_phone_column = write(dir.path(), "columns.csv", "name,mobile\nann,+14155550101\n");
    let run = import_into(&server, &no_phone_column, campaign, &[]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("cannot find the phone column: the header row is: name, mobile"), "{run:#?}");

    let run = import_into(&server, &good, campaign, &["--batch", "0"]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(phone_count(&server, campaign), 0, "no usage error loads anything");
}

#[test]
fn import_of_clean_headerless_and_named_column_files_exits_0() {
    let server = import_server();
    let campaign = server.create_campaign(json!({"name": "clean"}));
    let dir = tempfile::tempdir().unwrap();

    // A stale rejects file from an earlier run is removed by a run without rejects.
    let clean = write(dir.path(), "clean.csv", "Phone_Number,TimeZone\n+14155550101,America/New_York\n\"+1 415 555 0102\",\n+14155550101,\n");
    let stale = write(dir.path(), "clean.rejects.csv", "line,phone,reason\n");
    let run = import_into(&server, &clean, campaign, &["--batch", "2"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.summary(), (2, 1, 0, 3));
    assert!(!stale.exists(), "the stale rejects file is gone");
    let run = import_into(&server, &clean, campaign, &[]);
    assert_eq!((run.code, run.summary()), (0, (0, 3, 0, 3)), "{run:#?}");

    // No header: the numbers are in the first column, the first row included.
    let headerless = write(dir.path(), "headerless.csv", "+1 (415) 555-0103,x\n+14155550104\n");
    let run = import_into(&server, &headerless, campaign, &[]);
    assert_eq!((run.code, run.summary()), (0, (2, 0, 0, 2)), "{run:#?}");

    // Columns named on the command line.
    let named = write(dir.path(), "named.csv", "who,mobile,zone\nann,+14155550105,Asia/Tokyo\n");
    let run = import_into(&server, &named, campaign, &["--column", "Mobile", "--timezone-column", "zone"]);
    assert_eq!((run.code, run.summary()), (0, (1, 0, 0, 1)), "{run:#?}");

    assert_eq!(phone_count(&server, campaign), 5);
    let numbers = server.get(&format!("/api/v1/campaigns/{campaign}/phone-numbers/"))["results"].as_array().unwrap().clone();
    let number = |n: &str| numbers.iter().find(|v| v["phone_number"] == n).cloned().unwrap_or_else(|| panic!("{n} listed"));
    assert_eq!(number("+14155550101")["timezone"], "America/New_York");
    assert_eq!(number("+14155550105")["timezone"], "Asia/Tokyo");
    assert_ne!(number("+14155550103")["timezone_source"], "given");
}

#[test]
fn import_reads_semicolon_tab_and_pipe_files_and_standard_input() {
    let server = import_server();
    let campaign = server.create_campaign(json!({"name": "delimiters"}));
    let dir = tempfile::tempdir().unwrap();

    // `;` is guessed from the header line (a spreadsheet export in many locales).
    let semicolons = write(dir.path(), "semicolons.csv", "\u{feff}Name;Phone;Timezone\r\n\"Smith, Ann\";+14155550201;Asia/Tokyo\r\nBob;+14155550202;\r\n");
    let run = import_into(&server, &semicolons, campaign, &[]);
    assert_eq!((run.code, run.summary()), (0, (2, 0, 0, 2)), "{run:#?}");

    // A tab is guessed too.
    let tabs = write(dir.path(), "tabs.tsv", "phone\tnote\n+14155550203\ta, b\n");
    let run = import_into(&server, &tabs, campaign, &[]);
    assert_eq!((run.code, run.summary()), (0, (1, 0, 0, 1)), "{run:#?}");

    // `|` only when asked for; without it the header is one column named `phone|who`.
    let pipes = write(dir.path(), "pipes.csv", "phone|who\n+14155550204|ann\n");
    let run = import_into(&server, &pipes, campaign, &[]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("--delimiter"), "the error points at the flag: {run:#?}");
    let run = import_into(&server, &pipes, campaign, &["--delimiter", "|"]);
    assert_eq!((run.code, run.summary()), (0, (1, 0, 0, 1)), "{run:#?}");

    // `-` reads standard input; its rejects go where --rejects says.
    let rejects = dir.path().join("piped.rejects.csv");
    let (url, id) = (server.url(""), campaign.to_string());
    let args = ["-", "--campaign", &id, "--url", &url, "--token", TOKEN, "--delimiter", "\\t", "--rejects", rejects.to_str().unwrap()];
    let run = import_with_stdin(&args, Some(b"phone\twho\n+14155550205\tann\nnot a number\tbob\n"));
    assert_eq!((run.code, run.summary()), (1, (1, 0, 1, 2)), "{run:#?}");
    assert_eq!(read_file(&rejects), format!("line\treason\tphone\twho\n3\t{INVALID_PHONE}\tnot a number\tbob\n"));

    assert_eq!(phone_count(&server, campaign), 5);
    let numbers = server.get(&format!("/api/v1/campaigns/{campaign}/phone-numbers/"))["results"].as_array().unwrap().clone();
    assert!(numbers.iter().any(|n| n["phone_number"] == "+14155550201" && n["timezone"] == "Asia/Tokyo"), "{numbers:?}");
}

#[test]
fn a_rejects_file_fixed_in_place_imports_again_as_it_is() {
    let server = import_server();
    let campaign = server.create_campaign(json!({"name": "fix and retry"}));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "customers.csv",
        "id;name;phone;timezone;notes\n\
         1;Ann;+14155550301;Europe/Paris;vip\n\
         2;Bob;+1415555O302;;typed an O\n\
         3;Cy;+14155550303;Mars/Base;\n\
         4;Di\n\
         5;Ed;\"+1 415 555 0305\";;\"a; b\"\n",
    );
    let run = import_into(&server, &file, campaign, &[]);
    assert_eq!((run.code, run.summary()), (1, (2, 0, 3, 5)), "{run:#?}");
    let rejects = dir.path().join("customers.rejects.csv");
    let expected = format!(
        "line;reason;id;name;phone;timezone;notes\n\
         3;{INVALID_PHONE};2;Bob;+1415555O302;;typed an O\n\
         4;Unknown timezone `Mars/Base`;3;Cy;+14155550303;Mars/Base;\n\
         5;Missing phone number;4;Di\n"
    );
    assert_eq!(read_file(&rejects), expected, "every column of each row, in the file's delimiter, after line and reason");

    // Fixed in place (the line and reason columns left as they are) and imported as it is.
    let fixed = read_file(&rejects).replace("+1415555O302", "+14155550302").replace("Mars/Base", "America/Denver").replace("4;Di", "4;Di;+14155550304");
    let fixed_path = write(dir.path(), "customers.rejects.csv", &fixed);
    let run = import_into(&server, &fixed_path, campaign, &[]);
    assert_eq!((run.code, run.summary()), (0, (3, 0, 0, 3)), "{run:#?}");
    assert!(!dir.path().join("customers.rejects.rejects.csv").exists());
    assert_eq!(phone_count(&server, campaign), 5);
    let page = server.get(&format!("/api/v1/campaigns/{campaign}/phone-numbers/?phone_number=%2B14155550303"));
    assert_eq!(page["results"][0]["timezone"], "America/Denver", "{page}");

    // A headerless file's rejects get a header naming the phone column, so they import too.
    let headerless = write(dir.path(), "bare.csv", "+14155550306,x\nnope,y\n");
    let run = import_into(&server, &headerless, campaign, &[]);
    assert_eq!((run.code, run.summary()), (1, (1, 0, 1, 2)), "{run:#?}");
    let bare_rejects = dir.path().join("bare.rejects.csv");
    assert_eq!(read_file(&bare_rejects), format!("line,reason,phone,column2\n2,{INVALID_PHONE},nope,y\n"));
    write(dir.path(), "bare.rejects.csv", &read_file(&bare_rejects).replace("nope", "+14155550307"));
    let run = import_into(&server, &bare_rejects, campaign, &[]);
    assert_eq!((run.code, run.summary()), (0, (1, 0, 0, 1)), "{run:#?}");
}

#[test]
fn import_dnc_lists_numbers_globally_or_for_a_campaign() {
    let server = import_server();
    let campaign = server.create_campaign(json!({"name": "dnc"}));
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("");
    // With --batch 2 the second batch holds only bad numbers: the service refuses it whole and
    // the importer learns each one's reason.
    let file = write(dir.path(), "optout.csv", "phone\n+14155550401\n+14155550402\nbad one\nbad two\n+14155550401\n");
    let run = import(&[file.to_str().unwrap(), "--dnc", "--reason", "asked by phone", "--batch", "2", "--url", &url, "--token", TOKEN]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("listed 2, already listed 1, invalid 2 (5 rows"), "{run:#?}");
    assert_eq!(read_file(&dir.path().join("optout.rejects.csv")), format!("line,reason,phone\n4,{INVALID_PHONE},bad one\n5,{INVALID_PHONE},bad two\n"));
    let listed = server.get("/api/v1/dnc/");
    let entries = listed["results"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{listed}");
    assert!(entries.iter().all(|e| e["campaign_id"].is_null() && e["reason"] == "asked by phone"), "{listed}");

    // For one campaign: only that campaign's list.
    let clean = write(dir.path(), "one.csv", "phone\n+14155550403\n");
    let run = import(&[clean.to_str().unwrap(), "--dnc", "--campaign", &campaign.to_string(), "--url", &url, "--token", TOKEN]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("listed 1, already listed 0, invalid 0"), "{run:#?}");
    let scoped = server.get(&format!("/api/v1/dnc/?campaign_id={campaign}"));
    assert_eq!(scoped["results"][0]["phone_number"], "+14155550403", "{scoped}");
    assert_eq!(scoped["results"][0]["campaign_id"], campaign, "{scoped}");

    // The same usage errors as a campaign import.
    let run = import(&[clean.to_str().unwrap(), "--dnc", "--campaign", "999", "--url", &url, "--token", TOKEN]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("campaign 999 not found"), "{run:#?}");
    let run = import(&[clean.to_str().unwrap(), "--dnc", "--url", &url, "--token", "wrong"]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("refused the token"), "{run:#?}");
}

#[test]
fn import_region_sets_the_campaigns_default_region_only_when_it_has_none() {
    let server = import_server();
    let campaign = server.create_campaign(json!({"name": "national numbers"}));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "gb.csv", "phone\n+442079460958\n");
    let run = import_into(&server, &file, campaign, &["--region", "gb"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains(&format!("campaign {campaign} had no default region: set it to GB")), "{run:#?}");
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign}/"))["default_region"], "GB");

    let run = import_into(&server, &file, campaign, &["--region", "US"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains(&format!("campaign {campaign}'s default region stays GB")), "{run:#?}");
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign}/"))["default_region"], "GB", "an existing region is kept");

    let run = import_into(&server, &file, campaign, &["--region", "Britain"]);
    assert_eq!(run.code, 2, "{run:#?}");
}

/// Campaign 1 as the stand-in below shows it.
fn scripted_campaign() -> Value {
    json!({"id": 1, "name": "scripted", "description": "", "is_active": true, "status": "active", "timezone": null,
           "max_attempts": null, "max_concurrent_calls": null, "created_at": "2026-11-21T00:00:00Z", "updated_at": "2026-11-21T00:00:00Z"})
}

/// A stand-in for the service: the campaign exists, and `phone-numbers/` answers from a script
/// (status, `Retry-After`), each 201 counting every item as created. Records when posts came.
struct ScriptedService {
    addr: std::net::SocketAddr,
    posts: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ScriptedService {
    fn start(script: Vec<(u16, Option<u64>)>) -> ScriptedService {
        use axum::routing::{get, post};
        let posts: std::sync::Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
        let script = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(script)));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = posts.clone();
        let numbers = move |body: axum::body::Bytes| {
            let (recorded, script) = (recorded.clone(), script.clone());
            async move {
                recorded.lock().unwrap().push(Instant::now());
                let (status, retry_after) = script.lock().unwrap().pop_front().expect("a scripted answer for every post");
                let items = serde_json::from_slice::<Value>(&body).unwrap()["phone_numbers"].as_array().unwrap().len();
                let body = match status {
                    201 => json!({"campaign_id": 1, "created_count": items, "duplicate_count": 0, "created_numbers": [], "errors": []}),
                    _ => json!({"error": {"code": "scripted", "message": format!("scripted {status}"), "details": {}}}),
                };
                let mut response = axum::response::IntoResponse::into_response((axum::http::StatusCode::from_u16(status).unwrap(), body.to_string()));
                if let Some(seconds) = retry_after {
                    response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
                }
                response
            }
        };
        let app = axum::Router::new()
            .route("/api/v1/campaigns/{id}/", get(|| async { scripted_campaign().to_string() }))
            .route("/api/v1/phone-numbers/", post(numbers));
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        ScriptedService { addr, posts, runtime: Some(runtime) }
    }
}

impl Drop for ScriptedService {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[test]
fn import_waits_out_a_busy_service_and_says_where_a_failure_stopped_it() {
    // Batch 1: 503 with Retry-After: 1, then accepted. Batch 2: a 500, which is not retried.
    let service = ScriptedService::start(vec![(503, Some(1)), (201, None), (500, None)]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "three.csv", "phone\n+14155550101\n+14155550102\n+14155550103\n");
    let run = import(&[file.to_str().unwrap(), "--campaign", "1", "--batch", "1", "--url", &format!("http://{}", service.addr), "--token", TOKEN]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .contains("the service answered 500: scripted 500; stopped after 1 row(s), through line 2, were handled; importing the same file again is safe"),
        "{run:#?}"
    );
    let posts = service.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 3, "the 503 was retried, the 500 was not, the third batch never sent");
    assert!(posts[1] - posts[0] >= Duration::from_secs(1), "Retry-After is honoured: {:?}", posts[1] - posts[0]);
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// `promtool check metrics` on `text`; fails clearly when promtool is not installed.
fn promtool_check(text: &str) {
    let child = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not installed; it checks the Prometheus text: `apt-get install -y --no-install-recommends prometheus`")
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.trim().is_empty(), "promtool check metrics: {:?}\n{report}\n--- text ---\n{text}", output.status);
}

/// The value of the sample `name_and_labels` (exactly as written) in exposition `text`.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(name, _)| *name == name_and_labels).map(|(_, v)| v.parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in\n{text}"))
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

#[test]
fn metrics_after_a_scripted_set_of_calls_count_each_outcome_once() {
    let provider = FakeProvider::start();
    let tokens = format!("[{TOKEN}, {{token: viewer-token-1, role: viewer}}]");
    let started = unix_seconds();
    let server = Server::start(Options { provider_url: provider.url(), max_concurrent_calls: 6, tokens, ..Options::default() });
    // A stopped campaign gets no per-campaign series; a paused one does, its name escaped.
    let stopped = server.create_campaign(json!({"name": "stopped"}));
    assert_eq!(server.post(&format!("/api/v1/campaigns/{stopped}/stop/"), json!({})).0, 200);
    let paused = server.create_campaign(json!({"name": "say \"paused\""}));
    assert_eq!(server.post(&format!("/api/v1/campaigns/{paused}/pause/"), json!({})).0, 200);
    let campaign = server.create_campaign(json!({"name": "metrics"}));
    let ids: Vec<String> = (0..6).map(|n| server.initiate(campaign, &phone(n))["call_id"].as_str().unwrap().to_string()).collect();
    provider.wait_count(6);
    for id in &ids {
        server.wait_status(id, "PROCESSING");
    }
    let full = wait_until("six calls in flight", Duration::from_secs(10), || {
        let m = server.metrics();
        (m["current_concurrent_calls"] == 6).then_some(m)
    });
    assert_eq!((full["max_concurrent_calls"].as_u64(), full["system_status"].as_str()), (Some(6), Some("at_capacity")), "{full}");

    // Two picked (30 s and 50 s), one of each retryable outcome, one still ringing; then a
    // repeat of the first callback, which must not count again.
    let outcomes = [
        json!({"status": "PICKED", "call_duration": 30}),
        json!({"status": "PICKED", "call_duration": 50}),
        json!({"status": "RNR"}),
        json!({"status": "DISCONNECTED"}),
        json!({"status": "FAILED"}),
    ];
    let mut first_answer = Value::Null;
    for (id, outcome) in ids.iter().zip(&outcomes) {
        let mut body = outcome.clone();
        body["call_id"] = json!(id);
        let (code, answer) = server.callback(body);
        assert_eq!(code, 200, "{answer}");
        if first_answer.is_null() {
            first_answer = answer;
        }
    }
    let (code, repeat) = server.callback(json!({"call_id": ids[0], "status": "PICKED", "call_duration": 30}));
    assert_eq!((code, &repeat), (200, &first_answer));

    let m = wait_until("one call in flight", Duration::from_secs(10), || {
        let m = server.metrics();
        (m["current_concurrent_calls"] == 1 && m["retrying"] == 3).then_some(m)
    });
    assert_eq!(m["system_status"], "healthy", "{m}");
    assert_eq!(m["queue_depth"], 0);
    let by_status = &m["calls_by_status"];
    assert_eq!((count(&by_status["PICKED"]), count(&by_status["RETRYING"]), count(&by_status["PROCESSING"])), (2, 3, 1), "{by_status}");
    for status in ["INITIATED", "FAILED", "CANCELLED"] {
        assert_eq!(count(&by_status[status]), 0, "{status}: {by_status}");
    }
    let days = m["recent_metrics"].as_array().unwrap();
    assert_eq!(days.len(), 7, "the last seven days: {m}");
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert!(dates.windows(2).all(|w| w[0] > w[1]), "newest first: {dates:?}");
    let today = &days[0];
    let counters = [
        ("total_calls_initiated", 6),
        ("total_calls_picked", 2),
        ("total_calls_disconnected", 1),
        ("total_calls_rnr", 1),
        ("total_calls_failed", 1),
        ("total_retries", 0),
        ("peak_concurrent_calls", 6),
        ("total_call_duration", 80),
        ("dlq_entries_created", 0),
    ];
    for (name, expected) in counters {
        assert_eq!(today[name].as_u64(), Some(expected), "{name}: {today}");
    }
    assert_eq!(today["avg_call_duration"].as_f64(), Some(40.0), "{today}");
    for day in &days[1..] {
        assert_eq!(day["total_calls_initiated"], 0, "{day}");
    }

    // A viewer token may scrape both forms.
    assert_eq!(server.request_with("GET", "/api/v1/metrics/", None, Some("viewer-token-1")).0, 200);
    let (code, text) = server.raw("GET", "/metrics", None, Some(("X-Auth-Token", "viewer-token-1".to_string())));
    assert_eq!(code, 200, "{text}");
    promtool_check(&text);
    assert_eq!(sample(&text, "callmgr_calls_in_flight"), 1.0);
    assert_eq!(sample(&text, "callmgr_max_concurrent_calls"), 6.0);
    assert_eq!(sample(&text, "callmgr_calls{status=\"PICKED\"}"), 2.0);
    assert_eq!(sample(&text, "callmgr_calls{status=\"RETRYING\"}"), 3.0);
    assert_eq!(sample(&text, "callmgr_dials_total"), 6.0);
    assert_eq!(sample(&text, "callmgr_calls_held{reason=\"paused\"}"), 0.0);
    assert_eq!(sample(&text, "callmgr_provider_throttled"), 0.0);
    assert_eq!(sample(&text, "callmgr_provider_breaker{state=\"closed\"}"), 1.0);

    // Outcomes by outcome, the repeated callback not counted; the same per campaign.
    let expected_outcomes = [("PICKED", 2.0), ("DISCONNECTED", 1.0), ("RNR", 1.0), ("FAILED", 1.0)];
    for (outcome, n) in expected_outcomes {
        assert_eq!(sample(&text, &format!("callmgr_outcomes_total{{outcome=\"{outcome}\"}}")), n, "{outcome}");
        let per_campaign = format!("callmgr_campaign_outcomes_total{{campaign_id=\"{campaign}\",outcome=\"{outcome}\"}}");
        assert_eq!(sample(&text, &per_campaign), n, "{outcome}");
        assert_eq!(sample(&text, &format!("callmgr_campaign_outcomes_total{{campaign_id=\"{paused}\",outcome=\"{outcome}\"}}")), 0.0);
    }
    assert!(!text.lines().any(|l| l.starts_with("callmgr_outcomes_total ")), "no unlabelled series beside the labelled ones");
    assert_eq!(sample(&text, &format!("callmgr_campaign_dials_total{{campaign_id=\"{campaign}\"}}")), 6.0);
    assert_eq!(sample(&text, &format!("callmgr_campaign_dials_total{{campaign_id=\"{paused}\"}}")), 0.0);
    assert_eq!(sample(&text, &format!("callmgr_campaign_calls{{campaign_id=\"{campaign}\",status=\"RETRYING\"}}")), 3.0);
    assert_eq!(sample(&text, &format!("callmgr_campaign_calls{{campaign_id=\"{campaign}\",status=\"PICKED\"}}")), 2.0);
    assert_eq!(sample(&text, &format!("callmgr_campaign_info{{campaign_id=\"{campaign}\",name=\"metrics\",status=\"active\"}}")), 1.0);
    assert_eq!(sample(&text, &format!("callmgr_campaign_info{{campaign_id=\"{paused}\",name=\"say \\\"paused\\\"\",status=\"paused\"}}")), 1.0);
    let stopped_label = format!("campaign_id=\"{stopped}\"");
    assert!(!text.contains(&stopped_label), "a stopped campaign has no series:\n{text}");

    // The build and the process.
    let build = format!("callmgr_build_info{{version=\"{}\",store_schema=\"2\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&text, &build), 1.0);
    assert!(sample(&text, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(sample(&text, "process_virtual_memory_bytes") >= sample(&text, "process_resident_memory_bytes"));
    assert!(sample(&text, "process_cpu_seconds_total") > 0.0);
    let open_fds = sample(&text, "process_open_fds");
    assert!(open_fds >= 3.0 && sample(&text, "process_max_fds") >= open_fds, "{text}");
    // btime is whole seconds: the start time may read up to a second early.
    let start = sample(&text, "process_start_time_seconds");
    assert!(start >= started - 2.0 && start <= unix_seconds() + 1.0, "started {started}, process_start_time_seconds {start}");
    assert_eq!(sample(&text, "callmgr_provider_request_duration_seconds_count"), 6.0, "one latency sample per dial request");
    // Buckets are cumulative and end with +Inf, which equals the count.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("callmgr_provider_request_duration_seconds_bucket{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(buckets.len() >= 2 && buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(sample(&text, "callmgr_provider_request_duration_seconds_bucket{le=\"+Inf\"}"), 6.0);
}

// ---------------------------------------------------------------------------------------------
// Export

const EXPORT_HEADER: &str = "call_id,campaign_id,phone_number,status,last_outcome,attempt_count,max_attempts,created_at,updated_at,last_attempt_at,next_retry_at,total_call_time,external_call_id,error_message";

/// `GET calls/export/?QUERY`: the header and the rows, parsed.
fn export(server: &Server, query: &str) -> (String, Vec<csv::StringRecord>) {
    let (code, text) = server.raw("GET", &format!("/api/v1/calls/export/?{query}"), None, Some(("X-Auth-Token", TOKEN.to_string())));
    assert_eq!(code, 200, "{text}");
    let header = text.lines().next().unwrap_or_default().to_string();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows = reader.records().collect::<Result<Vec<_>, _>>().expect("the export is valid CSV");
    (header, rows)
}

#[test]
fn export_streams_every_matching_call_with_the_documented_columns() {
    // 100 slots, a mock provider that never calls back: 100 calls stay PROCESSING, the rest wait.
    let server = import_server();
    let small = server.create_campaign(json!({"name": "small"}));
    let big = server.create_campaign(json!({"name": "big"}));
    let small_ids: Vec<String> = (0..3).map(|n| server.initiate(small, &phone(n))["call_id"].as_str().unwrap().to_string()).collect();
    for id in &small_ids {
        server.wait_status(id, "PROCESSING");
    }
    let numbers: Vec<String> = (1000..3500).map(phone).collect();
    let (code, bulk) = server.post("/api/v1/bulk-initiate-calls/", json!({"campaign_id": big, "phone_numbers": numbers}));
    assert_eq!((code, bulk["failed"].as_u64()), (201, Some(0)), "{bulk}");
    wait_until("every slot taken", Duration::from_secs(20), || {
        let m = server.metrics();
        (m["current_concurrent_calls"] == 100 && m["queue_depth"] == 2403).then_some(())
    });

    let (header, rows) = export(&server, &format!("campaign_id={big}"));
    assert_eq!(header, EXPORT_HEADER);
    assert_eq!(rows.len(), 2500, "more rows than one streamed chunk");
    assert!(rows.iter().all(|r| r[1] == big.to_string()));
    let mut exported: Vec<&str> = rows.iter().map(|r| &r[2]).collect();
    exported.sort_unstable();
    assert_eq!(exported, numbers.iter().map(String::as_str).collect::<Vec<_>>(), "each number once");

    let (_, processing) = export(&server, &format!("campaign_id={big}&status=PROCESSING"));
    assert_eq!(processing.len(), 97);
    assert!(processing.iter().all(|r| &r[3] == "PROCESSING" && &r[5] == "1" && !r[9].is_empty()), "last_attempt_at is set when dialled");
    let (_, waiting) = export(&server, "status=initiated");
    assert_eq!(waiting.len(), 2403, "status alone, any case, across campaigns");

    let (_, rows) = export(&server, &format!("campaign_id={small}"));
    let mut ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    ids.sort_unstable();
    let mut expected: Vec<&str> = small_ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let call = server.call(&small_ids[0]);
    let row = rows.iter().find(|r| r[0] == small_ids[0]).unwrap();
    assert_eq!((&row[2], &row[3], &row[7]), (call["phone_number"].as_str().unwrap(), "PROCESSING", call["created_at"].as_str().unwrap()));

    let (_, all) = export(&server, "");
    assert_eq!(all.len(), 2503);
    let (code, body) = server.request("GET", "/api/v1/calls/export/?status=ANSWERED", None);
    assert_eq!((code, body["error"]["details"]["field"].as_str()), (400, Some("status")), "{body}");
}
