//! Backup, restore and compaction of the store file.
//!
//! * Online backup (`POST admin/backup/`): every table of ONE read transaction is copied into a
//!   new redb file while the writer keeps committing (redb has no online-backup call); the copy
//!   is written as `….partial`, fsynced, renamed, and its folder fsynced. One at a time, and
//!   only when the file system has room for a file the size of the store.
//! * Offline backup (`callmgr backup --data-dir`): the same copy from a stopped store.
//! * Restore: the file is verified first (opens read-only, schema, every record decodes, every
//!   index agrees), then put in place atomically; the store it replaces is kept.
//! * Compaction of a stopped store.
//!
//! Stopped-store operations open the file exclusively: redb's file lock refuses while a
//! service has it open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::core::model::Millis;
use crate::service::archive::sync_dir;
use crate::service::store::copy::{self, StoreSummary};
use crate::service::store::{Reader, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("a backup is already running; one runs at a time")]
    Busy,
    #[error("not enough free space for the backup in {dir}: it needs about {need_bytes} bytes (the store's size), {free_bytes} are free")]
    NoRoom { dir: PathBuf, need_bytes: u64, free_bytes: u64 },
    #[error("{path} already exists; choose another file")]
    Exists { path: PathBuf },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io { path: path.to_path_buf(), error }
}

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub calls: u64,
    pub campaigns: u64,
    /// Entries over every table.
    pub entries: u64,
    /// When the snapshot was taken: every change acknowledged before is in the file.
    pub snapshot_at: Millis,
    pub duration_ms: u64,
}

/// One online backup at a time.
#[derive(Debug, Default)]
pub struct BackupGate {
    running: AtomicBool,
}

/// Held while a backup runs; lets the next one in when dropped.
pub struct BackupTicket<'g> {
    gate: &'g BackupGate,
}

impl BackupGate {
    pub fn enter(&self) -> Result<BackupTicket<'_>, BackupError> {
        match self.running.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(BackupTicket { gate: self }),
            Err(_) => Err(BackupError::Busy),
        }
    }
}

impl Drop for BackupTicket<'_> {
    fn drop(&mut self) {
        self.gate.running.store(false, Ordering::Release);
    }
}

/// `YYYYMMDDTHHMMSS.mmmZ`, for file names.
pub fn file_stamp(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at).map(|t| t.strftime("%Y%m%dT%H%M%S%.3fZ").to_string()).unwrap_or_else(|_| at.to_string())
}

/// `{data_dir}/backups/callmgr-{stamp}.redb`.
pub fn default_path(data_dir: &Path, at: Millis) -> PathBuf {
    data_dir.join("backups").join(format!("callmgr-{}.redb", file_stamp(at)))
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Copies `snapshot` into `out` (`.partial`, fsync, rename, folder fsync). `source` is the
/// store's file, whose size is the estimate of the room needed.
fn write_backup(snapshot: &Reader, source: &Path, out: &Path, snapshot_at: Millis) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if out.exists() {
        return Err(BackupError::Exists { path: out.to_path_buf() });
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let need_bytes = copy::file_size(source);
    let free = free_bytes(&dir).map_err(io(&dir))?;
    if free < need_bytes {
        return Err(BackupError::NoRoom { dir, need_bytes, free_bytes: free });
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let result = (|| {
        let copied = snapshot.copy_into(&partial)?;
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
        std::fs::rename(&partial, out).map_err(io(out))?;
        sync_dir(&dir).map_err(io(&dir))?;
        Ok(copied)
    })();
    let copied = match result {
        Ok(copied) => copied,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    Ok(BackupReport {
        path: out.to_path_buf(),
        size_bytes: copy::file_size(out),
        calls: copied.calls,
        campaigns: copied.campaigns,
        entries: copied.entries,
        snapshot_at,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// A backup of a running store, from one snapshot taken now; `ticket` proves it is the only one.
pub fn online(store: &Store, _ticket: &BackupTicket<'_>, out: &Path, now: Millis) -> Result<BackupReport, BackupError> {
    let snapshot = store.read()?;
    write_backup(&snapshot, store.path(), out, now)
}

/// A backup of a stopped store (refused while a service holds it).
pub fn offline(data_dir: &Path, out: &Path, now: Millis) -> Result<BackupReport, BackupError> {
    let source = copy::store_file(data_dir);
    let db = copy::open_exclusive(&source)?;
    let snapshot = copy::read_exclusive(&db)?;
    write_backup(&snapshot, &source, out, now)
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub found: StoreSummary,
    pub installed: PathBuf,
    /// Where the store it replaced was kept (none when the folder had no store).
    pub replaced: Option<PathBuf>,
}

/// Verifies `file`, then puts it in place as `data_dir`'s store. Refuses (changing nothing)
/// while a service holds the store, or when the file is not a whole, consistent store.
pub fn restore(file: &Path, data_dir: &Path, now: Millis) -> Result<RestoreReport, BackupError> {
    let current = copy::store_file(data_dir);
    // Refuse at once while a service runs; this look changes nothing in the file.
    if current.exists() {
        copy::refuse_if_in_use(&current)?;
    }
    if !file.is_file() {
        return Err(StoreError::Missing { path: file.to_path_buf() }.into());
    }
    let found = copy::verify(file)?;
    // Holding the current store exclusively until the swap keeps a service from starting on it.
    let held = if current.exists() { Some(copy::open_exclusive(&current)?) } else { None };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let partial = data_dir.join(format!("{}.partial", super::store::STORE_FILE_NAME));
    let result = (|| {
        std::fs::copy(file, &partial).map_err(io(&partial))?;
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
        let replaced = match &held {
            Some(_) => {
                let aside = data_dir.join(format!("{}.replaced-{}", super::store::STORE_FILE_NAME, file_stamp(now)));
                // A second name for the current file, so that the store path is never missing:
                // the rename below swaps the new file in atomically.
                if std::fs::hard_link(&current, &aside).is_err() {
                    std::fs::copy(&current, &aside).map_err(io(&aside))?;
                    std::fs::File::open(&aside).and_then(|f| f.sync_all()).map_err(io(&aside))?;
                }
                Some(aside)
            }
            None => None,
        };
        std::fs::rename(&partial, &current).map_err(io(&current))?;
        sync_dir(data_dir).map_err(io(data_dir))?;
        Ok(replaced)
    })();
    drop(held);
    match result {
        Ok(replaced) => Ok(RestoreReport { found, installed: current, replaced }),
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// redb's compaction of a stopped store: the file's size before and after.
pub fn compact(data_dir: &Path) -> Result<(u64, u64), BackupError> {
    Ok(copy::compact(&copy::store_file(data_dir))?)
}
