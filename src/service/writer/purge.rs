//! Retention's purge, the writer's side: deletes one chunk of final calls that the retention
//! thread read (and, with an archive, wrote to archive file `seq`) from a snapshot, all of them
//! or none. Never decides which calls are old enough: the retention thread does.

use super::{CommandError, WriteError, Writer};
use crate::core::model::Call;
use crate::service::store::WriteTables;

/// A chunk to purge, as the retention thread read it.
#[derive(Debug)]
pub struct PurgeChunk {
    /// The archive file that holds exactly these calls; `None` without an archive.
    pub archive_seq: Option<u64>,
    /// The calls as they were in the snapshot the chunk (and its archive file) came from.
    pub calls: Vec<Call>,
}

impl Writer {
    /// Deletes every call of the chunk if each one is still stored exactly as read (a dead-letter
    /// replay may have brought one back to life) and `archive_seq` is still the next archive
    /// file; otherwise refuses the whole chunk and writes nothing, so that each committed archive
    /// sequence number has exactly one file holding exactly the calls it deleted.
    pub(super) fn purge(&mut self, t: &mut WriteTables<'_>, chunk: PurgeChunk) -> Result<u64, WriteError> {
        if let Some(seq) = chunk.archive_seq {
            let next = t.archive_seq()?;
            if next != seq {
                return Err(CommandError::Conflict(format!("archive file {seq} is not the next one ({next} is)")).into());
            }
        }
        for call in &chunk.calls {
            if !call.status().is_final() || t.call(call.call_id)?.as_ref() != Some(call) {
                return Err(CommandError::Conflict(format!("call {} changed since the chunk was read", call.call_id)).into());
            }
        }
        for call in &chunk.calls {
            t.purge_call(call)?;
        }
        if let Some(seq) = chunk.archive_seq {
            t.advance_archive_seq(seq)?;
        }
        Ok(chunk.calls.len() as u64)
    }
}
