//! The do-not-call list: adding numbers (their waiting calls are cancelled by a job, in bounded
//! chunks) and removing them. The dial-time gate itself is in `dialing.rs`, in the same
//! transaction order as these commands, so a number listed before a dial is never dialled.

use super::jobs::LongJob;
use super::{CommandError, WriteError, Writer};
use crate::core::model::{CampaignId, DncEntry, Millis};
use crate::service::store::WriteTables;

/// Whom an entry protects from: every campaign, or one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DncScope {
    Global,
    Campaign(CampaignId),
}

impl DncScope {
    /// The key's scope column: 0 is global (campaign ids start at 1).
    pub fn key(self) -> u64 {
        match self {
            DncScope::Global => 0,
            DncScope::Campaign(id) => id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DncAdded {
    pub added_count: u64,
    pub already_count: u64,
}

impl Writer {
    fn check_scope(&mut self, t: &WriteTables<'_>, scope: DncScope) -> Result<(), WriteError> {
        if let DncScope::Campaign(id) = scope
            && self.campaigns.load(t, id)?.is_none()
        {
            return Err(CommandError::NotFound("Campaign not found".into()).into());
        }
        Ok(())
    }

    pub(super) fn add_dnc(
        &mut self,
        t: &mut WriteTables<'_>,
        scope: DncScope,
        numbers: Vec<String>,
        reason: Option<String>,
        now: Millis,
    ) -> Result<DncAdded, WriteError> {
        self.check_scope(t, scope)?;
        let mut added = DncAdded { added_count: 0, already_count: 0 };
        let mut listed = Vec::new();
        for e164 in numbers {
            if t.add_dnc(scope.key(), &e164, &DncEntry { reason: reason.clone(), added_at: now })? {
                added.added_count += 1;
                listed.push(e164);
            } else {
                added.already_count += 1;
            }
        }
        if !listed.is_empty() {
            tracing::info!(scope = scope.key(), added = listed.len(), "numbers added to the do-not-call list; their waiting calls are being cancelled");
            self.jobs.push_back(LongJob::CancelListed { scope, numbers: listed.into(), after: None });
        }
        Ok(added)
    }

    pub(super) fn remove_dnc(&mut self, t: &mut WriteTables<'_>, scope: DncScope, e164: &str) -> Result<(), WriteError> {
        self.check_scope(t, scope)?;
        if !t.remove_dnc(scope.key(), e164)? {
            return Err(CommandError::NotFound("Number is not on this do-not-call list".into()).into());
        }
        tracing::info!(scope = scope.key(), "number removed from the do-not-call list");
        Ok(())
    }
}
