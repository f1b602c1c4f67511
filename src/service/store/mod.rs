//! The redb store: opening (over a file, or any redb `StorageBackend` for fault-injection
//! tests), the schema version and its migrations, and the two views of the data: `WriteTables`
//! (the writer thread's, in `write.rs`) and `Reader` (consistent snapshots for everyone else,
//! in `read.rs`).
//!
//! Invariant kept here and nowhere else: every index is updated from the difference between a
//! call's old and new record in `WriteTables::put_call`, so an index can never disagree with
//! the record it points at.

pub mod copy;
mod read;
pub mod tables;
mod write;

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, StorageBackend, WriteTransaction};

use crate::config::StorageConfig;
use crate::core::codec;
use crate::core::model::{Call, Status};
pub use read::{CallFilter, IndexProblems, Page, Reader, Recovered};
use tables::*;
pub use write::WriteTables;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Redb(#[from] redb::Error),
    #[error("stored record {what} does not decode: {error}")]
    Corrupt { what: String, error: codec::CodecError },
    #[error("{path} was written by a newer callmgr (schema {found}; this build reads up to {SCHEMA_VERSION})")]
    NewerSchema { path: PathBuf, found: u64 },
    #[error("cannot create data directory {path}: {error}")]
    DataDir { path: PathBuf, error: std::io::Error },
    #[error("{path} is open in another process (a running callmgr service?): stop it first")]
    InUse { path: PathBuf },
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is a redb file but not a callmgr store (it has no schema version)")]
    NotAStore { path: PathBuf },
    #[error("the store holds a table `{name}` that this build does not know (written by a newer callmgr?)")]
    UnknownTable { name: String },
    #[error("{path}: indexes disagree with the records: {}", problems.join("; "))]
    Inconsistent { path: PathBuf, problems: Vec<String> },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::SetDurabilityError);

fn decode<T: codec::Record>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|error| StoreError::Corrupt { what: what(), error })
}

/// The store's file in its data directory.
pub const STORE_FILE_NAME: &str = "callmgr.redb";

/// Final calls whose retention index entry a schema-1 store lacks are indexed this many per
/// transaction when the store is first opened by this build.
const MIGRATION_CHUNK_MAX: usize = 10_000;

pub struct Store {
    db: Database,
    path: PathBuf,
    quick_repair: bool,
}

impl Store {
    /// Opens (or creates) `data_dir/callmgr.redb`, repairing it after an unclean exit, and checks the schema.
    pub fn open(data_dir: &Path, storage: &StorageConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| StoreError::DataDir { path: data_dir.to_path_buf(), error })?;
        let path = data_dir.join(STORE_FILE_NAME);
        let db = Self::builder(storage).create(&path)?;
        Self::init(db, path, storage)
    }

    /// Opens a store over any storage backend (tests inject faults this way); `name` is what
    /// messages call it.
    pub fn open_with_backend(backend: impl StorageBackend, name: &str, storage: &StorageConfig) -> Result<Store, StoreError> {
        let db = Self::builder(storage).create_with_backend(backend)?;
        Self::init(db, PathBuf::from(name), storage)
    }

    fn builder(storage: &StorageConfig) -> redb::Builder {
        let mut builder = Database::builder();
        builder.set_cache_size(storage.cache_size_bytes).set_repair_callback(|session| {
            tracing::warn!(progress = format!("{:.0}%", session.progress() * 100.0), "repairing the data file after an unclean exit");
        });
        builder
    }

    fn init(db: Database, path: PathBuf, storage: &StorageConfig) -> Result<Store, StoreError> {
        let store = Store { db, path, quick_repair: storage.quick_repair };
        let found = store.init_schema()?;
        if found < 2 {
            store.index_final_calls()?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records this build's schema version (creating every table) and returns the version the
    /// store had before (`SCHEMA_VERSION` for a new store).
    fn init_schema(&self) -> Result<u64, StoreError> {
        let txn = self.begin_write()?;
        let found = {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            if let Some(v) = found
                && v > SCHEMA_VERSION
            {
                return Err(StoreError::NewerSchema { path: self.path.clone(), found: v });
            }
            meta.insert("schema_version", SCHEMA_VERSION)?;
            // Create every table so that readers never meet a missing one.
            drop(meta);
            WriteTables::open(&txn)?;
            found.unwrap_or(SCHEMA_VERSION)
        };
        txn.commit()?;
        Ok(found)
    }

    /// Schema 1 → 2: final calls enter the retention index, in bounded transactions.
    fn index_final_calls(&self) -> Result<(), StoreError> {
        let mut after: Option<(u64, u128)> = None;
        loop {
            let txn = self.begin_write()?;
            let (done, last) = {
                let by_campaign = txn.open_table(CALLS_BY_CAMPAIGN)?;
                let calls = txn.open_table(CALLS)?;
                let mut finals = txn.open_table(FINALS)?;
                let range = match after {
                    Some((c, id)) => by_campaign.range((c, id)..)?,
                    None => by_campaign.range((0, 0)..)?,
                };
                let mut seen = 0usize;
                let mut last = after;
                for item in range {
                    let (key, status) = item?;
                    let (campaign_id, id) = key.value();
                    if Some((campaign_id, id)) == after {
                        continue;
                    }
                    last = Some((campaign_id, id));
                    seen += 1;
                    if Status::from_code(status.value()).is_some_and(Status::is_final)
                        && let Some(bytes) = calls.get(id)?
                    {
                        let call: Call = decode(bytes.value(), || format!("call {id}"))?;
                        finals.insert((call.updated_at, id), campaign_id)?;
                    }
                    if seen >= MIGRATION_CHUNK_MAX {
                        break;
                    }
                }
                (seen < MIGRATION_CHUNK_MAX, last)
            };
            txn.commit()?;
            after = last;
            if done {
                return Ok(());
            }
        }
    }

    /// A write transaction that commits with an fsync before `commit` returns.
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_quick_repair(self.quick_repair);
        Ok(txn)
    }

    pub fn read(&self) -> Result<Reader, StoreError> {
        Ok(Reader::new(self.db.begin_read()?))
    }
}
