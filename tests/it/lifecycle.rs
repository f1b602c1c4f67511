//! Running for years on one box: retention (purge with archive, a SIGKILL in the middle of a
//! large purge), online backup under load and verified restore, compaction, and the export by
//! time and per attempt. Against the real binary; the store is opened with the library only
//! while the service is stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use callmgr::config::StorageConfig;
use callmgr::service::archive;
use callmgr::service::store::{CallFilter, Store};
use serde_json::{Value, json};

use crate::harness::{Options, Server, TOKEN, binary, phone, wait_until};

fn storage() -> StorageConfig {
    StorageConfig { quick_repair: false, cache_size_bytes: 16 << 20 }
}

/// Runs `callmgr ARGS…` to completion.
fn callmgr(args: &[&str]) -> Output {
    Command::new(binary()).args(args).env_remove("CALLMGR_URL").env_remove("X_AUTH_TOKEN").env_remove("RUST_LOG").output().expect("callmgr runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn data_dir(server: &Server) -> PathBuf {
    server.dir.path().join("data")
}

/// Every call id in a stopped store.
fn stored_ids(data_dir: &Path) -> BTreeSet<String> {
    let store = Store::open(data_dir, &storage()).unwrap();
    let reader = store.read().unwrap();
    let mut ids = BTreeSet::new();
    reader
        .scan_calls(&CallFilter::default(), None, &mut |id, _, _| {
            ids.insert(id.to_string());
            true
        })
        .unwrap();
    ids
}

/// Calls purged over a stopped store's life (the cutoff moves on while a service runs, so the
/// exact figure is read once it is stopped).
fn purged_in(data_dir: &Path) -> u64 {
    let store = Store::open(data_dir, &storage()).unwrap();
    store.read().unwrap().purged_counts(0).unwrap().iter().map(|(_, n)| n).sum()
}

fn assert_indexes_agree(data_dir: &Path) {
    let store = Store::open(data_dir, &storage()).unwrap();
    let problems = store.read().unwrap().check_indexes().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every archived call id, with how many times it was archived, over the committed files.
fn archived_ids(dir: &Path) -> (BTreeMap<String, u32>, Vec<u64>) {
    let mut ids = BTreeMap::new();
    let mut seqs = Vec::new();
    for (seq, path) in archive::list(dir).unwrap() {
        seqs.push(seq);
        for call in archive::read_file(&path).unwrap() {
            assert!(["PICKED", "FAILED", "CANCELLED"].contains(&call.status.as_str()), "only final calls are archived: {call:?}");
            assert!(!call.attempts.is_empty(), "the attempt history goes with the call");
            *ids.entry(call.call_id).or_insert(0) += 1;
        }
    }
    (ids, seqs)
}

/// A server configured with `extra`, stopped again, its store seeded with `calls` finished
/// calls spread over the last `days` days (through the real code: `callmgr bench seed`).
fn seeded_server(extra: &str, calls: u64, days: u32) -> Server {
    let mut server = Server::start(Options { extra_yaml: extra.into(), ..Options::default() });
    assert_eq!(server.terminate(), Some(0));
    let data = data_dir(&server);
    let seeded =
        callmgr(&["bench", "seed", "--data-dir", data.to_str().unwrap(), "--calls", &calls.to_string(), "--shape", "finished", "--days", &days.to_string()]);
    assert!(seeded.status.success(), "{}", text(&seeded));
    server
}

fn retention(server: &Server) -> Value {
    server.metrics()["retention"].clone()
}

#[test]
fn retention_purges_old_final_calls_into_the_archive_and_keeps_lifetime_counts() {
    let archive_dir = "archive";
    let extra = format!("retention: {{final_calls: 5d, archive_dir: {archive_dir}, check_interval: 200ms}}\nlimits: {{purge_chunk_max: 100}}\n");
    let mut server = seeded_server(&extra, 2_000, 10);
    let archive_dir = server.dir.path().join(archive_dir);
    let all = stored_ids(&data_dir(&server));
    assert_eq!(all.len(), 2_000);
    server.launch();
    // About half the calls ended more than 5 days ago.
    let purged = wait_until("the purge to finish", Duration::from_secs(120), || {
        let r = retention(&server);
        (r["purged_total"].as_u64()? >= 900 && r["running"] == false && r["last_run_at"].is_string()).then(|| r["purged_total"].as_u64().unwrap())
    });
    let metrics = server.metrics();
    // A call may cross the moving cutoff between two reads: counts only grow.
    assert!(metrics["purged"].as_u64().unwrap() >= purged, "{metrics}");
    let lifetime: u64 = metrics["calls_by_status"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(lifetime, 2_000, "calls_by_status counts purged calls too: {metrics}");
    let campaign = server.get("/api/v1/campaigns/1/");
    assert_eq!(campaign["stats"]["total_calls"], 2_000);
    assert!(campaign["stats"]["purged"].as_u64().unwrap() >= purged, "{campaign}");
    let archive_files = metrics["retention"]["archive_files"].as_u64().unwrap();
    // Prometheus reports it too.
    let (status, prometheus) = server.raw("GET", "/metrics", None, Some(("X-Auth-Token", TOKEN.to_string())));
    assert_eq!(status, 200);
    assert!(prometheus.contains("callmgr_calls_purged_total{status=\"PICKED\"}"), "{prometheus}");
    assert_eq!(server.terminate(), Some(0));
    let purged = purged_in(&data_dir(&server));

    let (archived, seqs) = archived_ids(&archive_dir);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "one file per committed chunk, numbered from 1");
    assert!(seqs.len() as u64 >= purged.div_ceil(100) && seqs.len() as u64 <= purged.div_ceil(100) + 2, "chunks of limits.purge_chunk_max");
    assert!(archive_files <= seqs.len() as u64 && seqs.len() as u64 <= archive_files + 1, "metrics count the archive files");
    assert!(archived.values().all(|n| *n == 1), "nothing archived twice");
    assert_eq!(archived.len() as u64, purged, "every purged call is in the archive");
    let remaining = stored_ids(&data_dir(&server));
    let archived: BTreeSet<String> = archived.into_keys().collect();
    assert!(remaining.is_disjoint(&archived));
    assert_eq!(remaining.union(&archived).cloned().collect::<BTreeSet<_>>(), all, "nothing lost");
    assert_indexes_agree(&data_dir(&server));
}

#[test]
fn sigkill_in_the_middle_of_a_large_purge_loses_nothing_and_archives_nothing_twice() {
    let extra = "retention: {final_calls: 1d, archive_dir: archive, check_interval: 200ms}\nlimits: {purge_chunk_max: 500}\n";
    let mut server = seeded_server(extra, 40_000, 10);
    let archive_dir = server.dir.path().join("archive");
    let all = stored_ids(&data_dir(&server));
    server.launch();
    wait_until("the purge to be under way", Duration::from_secs(120), || {
        let r = retention(&server);
        (r["purged_total"].as_u64()? >= 5_000 && r["running"] == true).then_some(())
    });
    server.kill();
    let killed_at = archived_ids(&archive_dir).0.len();
    assert!(killed_at < 36_000, "the purge was cut short ({killed_at} archived)");
    server.launch();
    wait_until("the purge to finish after the restart", Duration::from_secs(300), || {
        let r = retention(&server);
        (r["purged_total"].as_u64()? >= 35_000 && r["running"] == false && r["last_run_at"].is_string()).then_some(())
    });
    let metrics = server.metrics();
    let lifetime: u64 = metrics["calls_by_status"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(lifetime, 40_000);
    assert_eq!(server.terminate(), Some(0));
    let purged = purged_in(&data_dir(&server));

    let (archived, _) = archived_ids(&archive_dir);
    let twice: Vec<&String> = archived.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    assert!(twice.is_empty(), "archived twice: {twice:?}");
    assert_eq!(archived.len() as u64, purged, "exactly the purged calls are archived");
    let remaining = stored_ids(&data_dir(&server));
    let archived: BTreeSet<String> = archived.into_keys().collect();
    assert!(remaining.is_disjoint(&archived), "a call is both stored and archived");
    assert_eq!(remaining.union(&archived).cloned().collect::<BTreeSet<_>>(), all, "a call was lost");
    assert_indexes_agree(&data_dir(&server));
}

#[test]
fn a_backup_taken_under_load_restores_every_call_acknowledged_before_it_started() {
    let server = Arc::new(Server::start(Options::default()));
    let campaign = server.create_campaign(json!({"name": "load"}));
    let (status, _) = server.post(&format!("/api/v1/campaigns/{campaign}/pause/"), json!({}));
    assert_eq!(status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4u64)
        .map(|worker| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (status, call) = server.post("/api/v1/initiate-call/", json!({"phone_number": phone(worker * 1_000_000 + n), "campaign_id": campaign}));
                    assert_eq!(status, 201, "{call}");
                    acknowledged.push((Instant::now(), call["call_id"].as_str().unwrap().to_string()));
                    n += 1;
                }
                acknowledged
            })
        })
        .collect();
    wait_until("some load", Duration::from_secs(30), || (server.metrics()["calls_by_status"]["INITIATED"].as_u64()? > 200).then_some(()));
    let out = server.dir.path().join("backup.redb");
    let started = Instant::now();
    let backup = callmgr(&["backup", "--out", out.to_str().unwrap(), "--url", &format!("http://{}", server.addr), "--token", TOKEN]);
    assert!(backup.status.success(), "{}", text(&backup));
    assert!(text(&backup).contains("backup written"), "{}", text(&backup));
    // More calls are accepted after the backup, while nothing waits for it.
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<(Instant, String)> = loaders.into_iter().flat_map(|l| l.join().unwrap()).collect();
    let before: Vec<&String> = acknowledged.iter().filter(|(at, _)| *at < started).map(|(_, id)| id).collect();
    assert!(before.len() > 200);

    let restored = tempfile::tempdir().unwrap();
    let restore = callmgr(&["restore", out.to_str().unwrap(), "--data-dir", restored.path().to_str().unwrap()]);
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(text(&restore).contains("every index agrees"), "{}", text(&restore));
    let ids = stored_ids(restored.path());
    let missing: Vec<&&String> = before.iter().filter(|id| !ids.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "{} calls acknowledged before the backup are missing from it", missing.len());
    assert_indexes_agree(restored.path());
}

#[test]
fn restore_and_compact_refuse_a_running_store_and_restore_refuses_bad_files_changing_nothing() {
    let mut server = Server::start(Options::default());
    let campaign = server.create_campaign(json!({"name": "c"}));
    // Paused: nothing is dialled, so the counts below are exact.
    assert_eq!(server.post(&format!("/api/v1/campaigns/{campaign}/pause/"), json!({})).0, 200);
    for n in 0..50 {
        server.initiate(campaign, &phone(n));
    }
    let (status, backup) = server.post("/api/v1/admin/backup/", json!({}));
    assert_eq!(status, 200, "{backup}");
    let file = PathBuf::from(backup["path"].as_str().unwrap());
    assert!(file.starts_with(data_dir(&server).join("backups")), "{backup}");
    assert_eq!(backup["calls"], 50);
    assert!(backup["size_bytes"].as_u64().unwrap() > 0);
    let (status, refused) = server.post("/api/v1/admin/backup/", json!({"out": file.to_str().unwrap()}));
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("conflict")), "an existing file is not overwritten: {refused}");
    let (status, refused) = server.post("/api/v1/admin/backup/", json!({"to": "x"}));
    assert_eq!(status, 400, "{refused}");

    let data = data_dir(&server);
    let data_arg = data.to_str().unwrap();
    let running = callmgr(&["restore", file.to_str().unwrap(), "--data-dir", data_arg]);
    assert_eq!(running.status.code(), Some(1), "{}", text(&running));
    assert!(text(&running).contains("open in another process"), "{}", text(&running));
    let running = callmgr(&["compact", "--data-dir", data_arg]);
    assert_eq!(running.status.code(), Some(1), "{}", text(&running));
    assert!(text(&running).contains("open in another process"), "{}", text(&running));
    let running = callmgr(&["backup", "--data-dir", data_arg, "--out", server.dir.path().join("offline.redb").to_str().unwrap()]);
    assert_eq!(running.status.code(), Some(1), "{}", text(&running));
    server.initiate(campaign, &phone(99));
    assert_eq!(server.terminate(), Some(0));

    let store_file = data.join("callmgr.redb");
    let original = std::fs::read(&store_file).unwrap();
    let garbage = server.dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    let truncated = server.dir.path().join("truncated.redb");
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    for bad in [&garbage, &truncated, &server.dir.path().join("absent.redb")] {
        let refused = callmgr(&["restore", bad.to_str().unwrap(), "--data-dir", data_arg]);
        assert_eq!(refused.status.code(), Some(1), "{}: {}", bad.display(), text(&refused));
        assert!(text(&refused).contains("restore refused, nothing changed"), "{}", text(&refused));
        assert!(std::fs::read(&store_file).unwrap() == original, "the store is untouched");
        let entries: Vec<String> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!entries.iter().any(|e| e.contains("replaced") || e.contains("partial")), "{entries:?}");
    }

    let offline = server.dir.path().join("offline.redb");
    let copied = callmgr(&["backup", "--data-dir", data_arg, "--out", offline.to_str().unwrap()]);
    assert!(copied.status.success(), "{}", text(&copied));
    assert!(text(&copied).contains("51 calls"), "{}", text(&copied));

    let restored = callmgr(&["restore", file.to_str().unwrap(), "--data-dir", data_arg]);
    assert!(restored.status.success(), "{}", text(&restored));
    assert!(text(&restored).contains("50 calls (INITIATED=50)"), "{}", text(&restored));
    let kept: Vec<PathBuf> =
        std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains("callmgr.redb.replaced-")).collect();
    assert_eq!(kept.len(), 1, "the replaced store is kept");
    assert_eq!(stored_ids(&data).len(), 50);
    assert_eq!(stored_ids_of_file(&kept[0]), 51, "the kept store is the one that was replaced");

    let compacted = callmgr(&["compact", "--data-dir", data_arg]);
    assert!(compacted.status.success(), "{}", text(&compacted));
    let report = text(&compacted);
    assert!(report.contains("bytes before") && report.contains("bytes after"), "{report}");
    server.launch();
    assert_eq!(server.metrics()["calls_by_status"]["INITIATED"], 50);
}

/// Calls in a store file outside a data directory.
fn stored_ids_of_file(path: &Path) -> usize {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(path, dir.path().join("callmgr.redb")).unwrap();
    stored_ids(dir.path()).len()
}

fn export(server: &Server, query: &str) -> (u16, String) {
    server.raw("GET", &format!("/api/v1/calls/export/{query}"), None, Some(("X-Auth-Token", TOKEN.to_string())))
}

fn rows(csv: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(csv.as_bytes()).records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect()
}

#[test]
fn export_by_updated_at_range_and_one_row_per_attempt() {
    let server = Server::start(Options { retry_yaml: "defaults: {max_attempts: 3, retry_interval: \"1s\"}\n".into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "c"}));
    let first = server.initiate(campaign, &phone(1));
    let first_id = first["call_id"].as_str().unwrap().to_string();
    server.wait_status(&first_id, "PROCESSING");
    let (status, _) = server.callback(json!({"call_id": first_id, "status": "RNR"}));
    assert_eq!(status, 200);
    server.wait_status(&first_id, "PROCESSING");
    let (status, _) = server.callback(json!({"call_id": first_id, "status": "PICKED", "call_duration": 12}));
    assert_eq!(status, 200);
    server.wait_status(&first_id, "PICKED");
    // The provider's answer to a dial may be recorded after the outcome callback, and it changes
    // the call (and its `updated_at`) too: take the boundary once both attempts have it.
    let first = wait_until("both provider answers to be recorded", Duration::from_secs(10), || {
        let call = server.call(&first_id);
        let attempts = call["attempts"].as_array()?;
        (attempts.len() == 2 && attempts.iter().all(|a| a["provider_answered_at"].is_string())).then_some(call)
    });
    let between: jiff::Timestamp = first["updated_at"].as_str().unwrap().parse().unwrap();
    let between = between + jiff::SignedDuration::from_millis(1);
    wait_until("the clock to pass the boundary", Duration::from_secs(5), || (jiff::Timestamp::now() > between).then_some(()));
    let between = between.to_string();
    let second = server.initiate(campaign, &phone(2));
    let second_id = second["call_id"].as_str().unwrap().to_string();

    let (status, all) = export(&server, "");
    assert_eq!(status, 200);
    assert_eq!(rows(&all).len(), 2);
    let (status, before) = export(&server, &format!("?until={between}"));
    assert_eq!(status, 200, "{before}");
    assert_eq!(rows(&before).iter().map(|r| r[0].clone()).collect::<Vec<_>>(), vec![first_id.clone()]);
    let (_, after) = export(&server, &format!("?since={between}&campaign_id={campaign}"));
    assert_eq!(rows(&after).iter().map(|r| r[0].clone()).collect::<Vec<_>>(), vec![second_id.clone()]);
    let (_, none) = export(&server, "?until=2000-01-01T00:00:00Z");
    assert_eq!(rows(&none).len(), 0);

    let (status, attempts) = export(&server, "?attempts=true");
    assert_eq!(status, 200);
    let header = attempts.lines().next().unwrap();
    assert!(header.ends_with(
        ",attempt,attempt_dialled_at,attempt_provider_answered_at,attempt_external_call_id,attempt_provider_status,attempt_outcome,attempt_call_duration,attempt_ended_at,attempt_error"
    ), "{header}");
    let table = rows(&attempts);
    let first_rows: Vec<&Vec<String>> = table.iter().filter(|r| r[0] == first_id).collect();
    assert_eq!(first_rows.iter().map(|r| (r[14].as_str(), r[19].as_str())).collect::<Vec<_>>(), vec![("1", "RNR"), ("2", "PICKED")]);
    assert_eq!(first_rows[1][20], "12");
    let second_rows: Vec<&Vec<String>> = table.iter().filter(|r| r[0] == second_id).collect();
    assert_eq!(second_rows.len(), 1, "a call dialled once (or never) has one row");

    for (query, field) in [("?since=yesterday", "since"), ("?until=2026-13-01T00:00:00Z", "until"), ("?attempts=yes", "attempts"), ("?campaign=1", "campaign")]
    {
        let (status, body) = export(&server, query);
        assert_eq!(status, 400, "{query}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
}
