//! What keeps the service from starting, each said in one line that names the file or address
//! and the likely fix. `main` exits with `EXIT_STARTUP` on these, a code the systemd unit does not
//! restart on: retrying every two seconds cannot free a port or fix a permission.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::service::store::StoreError;

/// The exit code of a startup failure (see the table in README.md).
pub const EXIT_STARTUP: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{path} is in use by another process{}: is another callmgr running on this data directory? Stop it first, or give this one its own data_dir", holder(*.pid))]
    StoreHeld { path: PathBuf, pid: Option<u32> },
    #[error(
        "cannot write {path}: {reason}. The service runs as uid {uid}; give it the directory (e.g. `chown -R callmgr: {dir}`) or set data_dir to a directory it can write"
    )]
    NotWritable { path: PathBuf, dir: PathBuf, reason: String, uid: u32 },
    #[error("cannot listen on {address}: the address is in use (another callmgr, or another program: `ss -ltnp 'sport = :{}'` shows which); stop it or change `listen`", address.port())]
    AddressInUse { address: SocketAddr },
    #[error("cannot listen on {address}: {reason}; check `listen`")]
    CannotListen { address: SocketAddr, reason: String },
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

/// The process holding a whole-file lock on `path`, from `/proc/locks` (Linux).
fn lock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let pid: u32 = pid.parse().ok()?;
        (*kind == "FLOCK" && file.rsplit(':').next()? == inode.to_string()).then_some(pid)
    })
}

/// Turns a failure to open the store into the startup error it is, if it is one.
pub fn explain_store_error(data_dir: &Path, error: StoreError) -> anyhow::Error {
    let path = data_dir.join("callmgr.redb");
    let uid = rustix::process::getuid().as_raw();
    match &error {
        StoreError::Redb(redb::Error::DatabaseAlreadyOpen) => StartupError::StoreHeld { pid: lock_holder(&path), path }.into(),
        StoreError::DataDir { path, error } if is_permission(error) => {
            StartupError::NotWritable { path: path.clone(), dir: path.clone(), reason: error.to_string(), uid }.into()
        }
        StoreError::Redb(redb::Error::Io(io)) if is_permission(io) => {
            StartupError::NotWritable { dir: data_dir.to_path_buf(), path, reason: io.to_string(), uid }.into()
        }
        _ => anyhow::Error::new(error).context(format!("opening the store {}", path.display())),
    }
}

fn is_permission(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
}

/// Turns a failure to bind the listener into the startup error it is.
pub fn explain_bind_error(address: SocketAddr, error: std::io::Error) -> StartupError {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => StartupError::AddressInUse { address },
        _ => StartupError::CannotListen { address, reason: error.to_string() },
    }
}
