//! Retention archive files: each purged chunk is written, before its calls are deleted, as
//! `calls-{seq:010}.jsonl.gz` in `retention.archive_dir`: gzip-compressed JSON lines, one call
//! per line in the API's call shape (`protocol::api::Call`, with its `attempts`). A file appears
//! under its name only complete and on disk: it is written as `….partial`, fsynced, renamed,
//! and the folder fsynced. Knows nothing of the store or the writer.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::protocol::api;

const PREFIX: &str = "calls-";
const SUFFIX: &str = ".jsonl.gz";
const PARTIAL: &str = ".partial";

/// The name of archive file `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq:010}{SUFFIX}")
}

/// The sequence number of an archive file's name, and whether it is an unfinished `.partial`.
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (digits, partial) = match rest.strip_suffix(PARTIAL) {
        Some(head) => (head.strip_suffix(SUFFIX)?, true),
        None => (rest.strip_suffix(SUFFIX)?, false),
    };
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, partial))
}

/// Writes archive file `seq` (replacing an uncommitted one of the same number) and returns its
/// path once it and its folder entry are on disk.
pub fn write_chunk(dir: &Path, seq: u64, calls: &[api::Call]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file_name(seq));
    let partial = dir.join(format!("{}{PARTIAL}", file_name(seq)));
    let file = File::create(&partial)?;
    // Level 1: the retention thread shares the box with the service; JSON still shrinks well.
    let mut out = GzEncoder::new(BufWriter::new(file), Compression::fast());
    for call in calls {
        serde_json::to_writer(&mut out, call)?;
        out.write_all(b"\n")?;
    }
    let file = out.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Makes a folder's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads every call of an archive file.
pub fn read_file(path: &Path) -> std::io::Result<Vec<api::Call>> {
    let reader = BufReader::new(MultiGzDecoder::new(BufReader::new(File::open(path)?)));
    let mut calls = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        let call = serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: line {}: {e}", path.display(), n + 1)))?;
        calls.push(call);
    }
    Ok(calls)
}

/// The committed archive files in `dir` (sequence number and path), in sequence order.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if let Some((seq, false)) = entry.file_name().to_str().and_then(parse_name) {
                    out.push((seq, entry.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// Clears what a crash or a restored older store left in the archive folder: `.partial` files
/// are removed, and files numbered `next_seq` or above (written, but their chunk never
/// committed, or committed in a store that was since replaced by an older backup: their calls
/// are in the store) are renamed `….uncommitted-{stamp}` so that they are not taken for
/// archives and are not overwritten. Returns the files set aside.
pub fn tidy(dir: &Path, next_seq: u64, stamp: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut set_aside = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(set_aside),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        match entry.file_name().to_str().and_then(parse_name) {
            Some((_, true)) => std::fs::remove_file(entry.path())?,
            Some((seq, false)) if seq >= next_seq => {
                let aside = dir.join(format!("{}.uncommitted-{stamp}", file_name(seq)));
                std::fs::rename(entry.path(), &aside)?;
                set_aside.push(aside);
            }
            _ => {}
        }
    }
    sync_dir(dir)?;
    Ok(set_aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_other_files_are_not_archives() {
        assert_eq!(file_name(7), "calls-0000000007.jsonl.gz");
        assert_eq!(parse_name("calls-0000000007.jsonl.gz"), Some((7, false)));
        assert_eq!(parse_name("calls-0000000007.jsonl.gz.partial"), Some((7, true)));
        for other in ["calls-7.jsonl.gz", "calls-0000000007.jsonl", "calls-000000000x.jsonl.gz", "calls-0000000007.jsonl.gz.uncommitted-1"] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_chunk_reads_back_and_tidy_sets_aside_uncommitted_files() {
        let dir = tempfile::tempdir().unwrap();
        let call: api::Call = serde_json::from_value(serde_json::json!({
            "call_id": "01a2006d-aac0-703e-8dbc-d40ce02a7c21", "campaign_id": 1, "phone_number": "+14155550101",
            "status": "PICKED", "last_outcome": "PICKED", "attempt_count": 1, "max_attempts": 3,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:01:00Z", "last_attempt_at": null,
            "next_retry_at": null, "total_call_time": 30, "external_call_id": null, "error_message": null,
            "held_reason": null, "next_dial_at": null
        }))
        .unwrap();
        for seq in 1..=3 {
            write_chunk(dir.path(), seq, &[call.clone(), call.clone()]).unwrap();
        }
        assert_eq!(read_file(&dir.path().join(file_name(2))).unwrap(), vec![call.clone(), call.clone()]);
        std::fs::write(dir.path().join("calls-0000000004.jsonl.gz.partial"), b"half").unwrap();
        let aside = tidy(dir.path(), 3, "x").unwrap();
        assert_eq!(aside, vec![dir.path().join("calls-0000000003.jsonl.gz.uncommitted-x")]);
        assert_eq!(list(dir.path()).unwrap().iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!dir.path().join("calls-0000000004.jsonl.gz.partial").exists());
    }
}
