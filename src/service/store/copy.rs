//! Whole-store operations for backup, restore and compaction: copying every table of one
//! snapshot into a new redb file, verifying a file before it is put in place, opening a store
//! that no service may hold, and redb's compaction. Knows the schema (`tables`), never the
//! service around it.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle, Value};

use super::tables::*;
use super::{Reader, StoreError, decode};
use crate::core::model::{Call, Campaign, DeadLetter, DncEntry, NumberEntry, Status};

/// Entries copied per transaction into a backup (each commit fsyncs; a bounded transaction
/// keeps the copy's memory flat whatever the store's size).
const COPY_CHUNK_ENTRIES: u64 = 200_000;
/// The page cache of a file being copied into, verified or compacted.
const COPY_CACHE_BYTES: usize = 64 << 20;

/// What a copy holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub calls: u64,
    pub campaigns: u64,
    /// Entries over every table.
    pub entries: u64,
}

/// What `verify` found in a store file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreSummary {
    pub schema_version: u64,
    pub campaigns: u64,
    pub numbers: u64,
    pub calls: u64,
    /// Stored calls per status.
    pub calls_by_status: Vec<(Status, u64)>,
    /// Calls purged by retention over the store's life.
    pub purged_calls: u64,
    pub dead_letters: u64,
    pub dnc_entries: u64,
    /// Entries over every table.
    pub entries: u64,
}

/// Calls every table of the schema by its definition (redb reads only typed tables); `$each`
/// is a macro taking one definition.
macro_rules! for_each_table {
    ($each:ident) => {
        $each!(META);
        $each!(CAMPAIGNS);
        $each!(NUMBERS);
        $each!(CALLS);
        $each!(CALLS_BY_CAMPAIGN);
        $each!(CALLS_BY_PHONE);
        $each!(OPEN_CALLS);
        $each!(READY);
        $each!(HELD);
        $each!(RETRY_DUE);
        $each!(DEADLINES);
        $each!(FINALS);
        $each!(DEAD_LETTERS);
        $each!(DNC);
        $each!(CONTACT_DIALS);
        $each!(DAILY);
        $each!(CALL_COUNTS);
        $each!(NUMBER_COUNTS);
    };
}

/// The names of every table of the schema.
pub fn table_names() -> Vec<&'static str> {
    let mut names = Vec::new();
    macro_rules! name {
        ($t:ident) => {
            names.push($t.name())
        };
    }
    for_each_table!(name);
    names
}

/// Refuses a snapshot holding a table this build does not know (it would not be copied).
fn check_known_tables(txn: &ReadTransaction) -> Result<(), StoreError> {
    let known = table_names();
    for table in txn.list_tables()? {
        if !known.contains(&table.name()) {
            return Err(StoreError::UnknownTable { name: table.name().to_string() });
        }
    }
    Ok(())
}

fn copy_table<K: Key + 'static, V: Value + 'static>(src: &ReadTransaction, dst: &Database, definition: TableDefinition<K, V>) -> Result<u64, StoreError> {
    let table = match src.open_table(definition) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut items = table.iter()?;
    let mut copied = 0u64;
    loop {
        let mut txn = dst.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut done = false;
        {
            let mut out = txn.open_table(definition)?;
            let mut in_chunk = 0;
            while in_chunk < COPY_CHUNK_ENTRIES {
                match items.next() {
                    Some(item) => {
                        let (k, v) = item?;
                        out.insert(k.value(), v.value())?;
                        in_chunk += 1;
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            copied += in_chunk;
        }
        txn.commit()?;
        if done {
            return Ok(copied);
        }
    }
}

impl Reader {
    /// Copies every table of this snapshot into a new redb file at `dest` (which must not
    /// exist), committed and fsynced when this returns.
    pub fn copy_into(&self, dest: &Path) -> Result<CopyReport, StoreError> {
        check_known_tables(&self.txn)?;
        let db = Database::builder().set_cache_size(COPY_CACHE_BYTES).create(dest)?;
        let mut entries = 0;
        macro_rules! copy {
            ($t:ident) => {
                entries += copy_table(&self.txn, &db, $t)?
            };
        }
        for_each_table!(copy);
        drop(db);
        Ok(CopyReport { calls: self.txn.open_table(CALLS)?.len()?, campaigns: self.txn.open_table(CAMPAIGNS)?.len()?, entries })
    }
}

/// Opens a store file that no process may hold (the service must be stopped): redb's file lock
/// refuses while another process has it open. Repairs it if it was not closed cleanly.
pub fn open_exclusive(path: &Path) -> Result<Database, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Missing { path: path.to_path_buf() });
    }
    Database::builder().set_cache_size(COPY_CACHE_BYTES).open(path).map_err(|error| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.to_path_buf() },
        other => other.into(),
    })
}

/// Refuses when another process holds the store file, without changing the file (a read-only
/// open, which redb's lock refuses while a service has the file open for writing).
pub fn refuse_if_in_use(path: &Path) -> Result<(), StoreError> {
    match Database::builder().set_cache_size(COPY_CACHE_BYTES).open_read_only(path) {
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(StoreError::InUse { path: path.to_path_buf() }),
        // Anything else (a file that needs repair after a crash) is for the exclusive open to handle.
        _ => Ok(()),
    }
}

/// A snapshot of a store opened with `open_exclusive`.
pub fn read_exclusive(db: &Database) -> Result<Reader, StoreError> {
    Ok(Reader::new(db.begin_read()?))
}

/// redb's compaction of a stopped store: returns the file's size before and after.
pub fn compact(path: &Path) -> Result<(u64, u64), StoreError> {
    let before = file_size(path);
    let mut db = open_exclusive(path)?;
    // Compaction moves pages towards the front until nothing moves any more.
    while db.compact().map_err(|e| StoreError::Redb(e.into()))? {}
    drop(db);
    Ok((before, file_size(path)))
}

pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Checks a store file without changing it: it opens read-only (a file that needs repair is
/// refused), its schema is not newer than this build's, every record of every table decodes,
/// and every index agrees with the records. Returns what it holds.
pub fn verify(path: &Path) -> Result<StoreSummary, StoreError> {
    let db = Database::builder().set_cache_size(COPY_CACHE_BYTES).open_read_only(path).map_err(|error| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.to_path_buf() },
        other => other.into(),
    })?;
    let reader = Reader::new(db.begin_read()?);
    check_known_tables(&reader.txn)?;
    let txn = &reader.txn;
    let schema_version = match txn.open_table(META) {
        Ok(meta) => meta.get("schema_version")?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    }
    .ok_or_else(|| StoreError::NotAStore { path: path.to_path_buf() })?;
    if schema_version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found: schema_version });
    }
    let mut summary = StoreSummary { schema_version, ..StoreSummary::default() };
    // Every record of every table decodes.
    macro_rules! decode_all {
        ($table:ident, $type:ty, $field:ident) => {{
            for item in txn.open_table($table)?.iter()? {
                let (k, v) = item?;
                let _: $type = decode(v.value(), || format!("{} entry {:?}", $table.name(), k.value()))?;
                summary.$field += 1;
            }
        }};
    }
    decode_all!(CAMPAIGNS, Campaign, campaigns);
    decode_all!(NUMBERS, NumberEntry, numbers);
    decode_all!(CALLS, Call, calls);
    decode_all!(DEAD_LETTERS, DeadLetter, dead_letters);
    decode_all!(DNC, DncEntry, dnc_entries);
    let problems = reader.check_indexes()?;
    if !problems.is_empty() {
        return Err(StoreError::Inconsistent { path: path.to_path_buf(), problems });
    }
    summary.calls_by_status = reader.status_counts(0)?;
    summary.purged_calls = reader.purged_counts(0)?.iter().map(|(_, n)| n).sum();
    macro_rules! count {
        ($t:ident) => {
            summary.entries += match txn.open_table($t) {
                Ok(table) => table.len()?,
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(e.into()),
            }
        };
    }
    for_each_table!(count);
    Ok(summary)
}

/// The path a store's file has in its data directory.
pub fn store_file(data_dir: &Path) -> PathBuf {
    data_dir.join(super::STORE_FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;
    use crate::service::store::Store;

    #[test]
    fn every_table_a_store_has_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig { quick_repair: false, cache_size_bytes: 4 << 20 }).unwrap();
        let reader = store.read().unwrap();
        let mut stored: Vec<String> = reader.txn.list_tables().unwrap().map(|t| t.name().to_string()).collect();
        let mut known: Vec<String> = table_names().into_iter().map(str::to_string).collect();
        stored.sort();
        known.sort();
        assert_eq!(stored, known);
    }
}
