//! The free-space guard of the data disk. Below `limits.disk_free_min_mb` the API refuses new
//! work (new calls, numbers, campaign starts) with a 503 that says why, while dialling and the
//! callbacks of calls already accepted go on; above it again, new work is accepted again. It only
//! reads the file system's free space; the writer's fail-stop on a full disk stays the last line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

pub struct DiskGuard {
    dir: PathBuf,
    /// 0 disables the guard.
    min_free_bytes: u64,
    free_bytes: AtomicU64,
    low: AtomicBool,
}

impl DiskGuard {
    pub fn new(dir: PathBuf, min_free_mb: u64) -> DiskGuard {
        DiskGuard { dir, min_free_bytes: min_free_mb.saturating_mul(MIB), free_bytes: AtomicU64::new(u64::MAX), low: AtomicBool::new(false) }
    }

    /// Reads the free space now and updates the guard; logs when it crosses the limit.
    pub fn check(&self) -> std::io::Result<()> {
        let stat = rustix::fs::statvfs(&self.dir)?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        self.free_bytes.store(free, Ordering::Relaxed);
        let low = self.min_free_bytes > 0 && free < self.min_free_bytes;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::error!(dir = %self.dir.display(), free_mb = free / MIB, min_free_mb = self.min_free_bytes / MIB, "data disk below limits.disk_free_min_mb: new calls are refused until space is freed");
            } else {
                tracing::warn!(dir = %self.dir.display(), free_mb = free / MIB, "data disk has room again: new calls are accepted");
            }
        }
        Ok(())
    }

    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    pub fn free_mb(&self) -> u64 {
        self.free_bytes.load(Ordering::Relaxed) / MIB
    }

    pub fn min_free_mb(&self) -> u64 {
        self.min_free_bytes / MIB
    }

    /// Why new work is refused, while it is.
    pub fn refusal(&self) -> Option<String> {
        self.is_low().then(|| {
            format!(
                "The data disk has {} MB free, below limits.disk_free_min_mb ({} MB): new calls and numbers are refused until space is freed; calls already accepted go on",
                self.free_mb(),
                self.min_free_mb()
            )
        })
    }
}

/// Checks the disk every `period` until the task is dropped.
pub async fn watch(guard: std::sync::Arc<DiskGuard>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        let guard = guard.clone();
        match tokio::task::spawn_blocking(move || guard.check()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot read the data disk's free space"),
            Err(_) => return,
        }
    }
}
