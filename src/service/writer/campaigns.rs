//! Campaign commands: create, patch, pause/resume/stop (one transition table for both), the
//! checks before `start`, and adding numbers to a campaign's list.

use super::jobs::LongJob;
use super::{CommandError, Outbox, WriteError, Writer};
use crate::core::model::{Campaign, CampaignAction, CampaignId, CampaignStatus, Millis, NumberEntry};
use crate::service::store::WriteTables;

#[derive(Clone, Debug)]
pub struct NewCampaign {
    pub name: String,
    pub description: String,
    pub is_active: bool,
    pub timezone: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_concurrent_calls: Option<u32>,
    pub default_region: Option<String>,
    pub caller_id: Option<String>,
}

/// Fields to change; `Some(None)` clears an optional field.
#[derive(Clone, Debug, Default)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_active: Option<bool>,
    pub timezone: Option<Option<String>>,
    pub max_attempts: Option<Option<u32>>,
    pub max_concurrent_calls: Option<Option<u32>>,
    pub default_region: Option<Option<String>>,
    pub caller_id: Option<Option<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartSummary {
    pub queued: u64,
    pub skipped_duplicates: u64,
    pub skipped_dnc: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedNumbers {
    pub created: Vec<String>,
    pub duplicate_count: u64,
}

fn not_found() -> WriteError {
    CommandError::NotFound("Campaign not found".into()).into()
}

impl Writer {
    pub(super) fn create_campaign(&mut self, t: &mut WriteTables<'_>, input: NewCampaign, now: Millis, out: &mut Outbox) -> Result<Campaign, WriteError> {
        let id = t.next_id("next_campaign_id")?;
        let campaign = Campaign {
            id,
            name: input.name,
            description: input.description,
            status: if input.is_active { CampaignStatus::Active } else { CampaignStatus::Paused },
            timezone: input.timezone,
            max_attempts: input.max_attempts,
            max_concurrent_calls: input.max_concurrent_calls,
            default_region: input.default_region,
            caller_id: input.caller_id,
            created_at: now,
            updated_at: now,
        };
        self.put_campaign(t, &campaign, out)?;
        Ok(campaign)
    }

    pub(super) fn update_campaign(
        &mut self,
        t: &mut WriteTables<'_>,
        id: CampaignId,
        patch: CampaignPatch,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Campaign, WriteError> {
        let mut campaign = self.campaigns.load(t, id)?.cloned().ok_or_else(not_found)?;
        let before = campaign.status;
        if let Some(active) = patch.is_active {
            campaign.status = before.apply(CampaignAction::from_is_active(active)).map_err(|m| CommandError::Conflict(m.into()))?;
        }
        if let Some(name) = patch.name {
            campaign.name = name;
        }
        if let Some(description) = patch.description {
            campaign.description = description;
        }
        if let Some(timezone) = patch.timezone {
            campaign.timezone = timezone;
        }
        if let Some(max_attempts) = patch.max_attempts {
            campaign.max_attempts = max_attempts;
        }
        if let Some(max_concurrent_calls) = patch.max_concurrent_calls {
            campaign.max_concurrent_calls = max_concurrent_calls;
        }
        if let Some(default_region) = patch.default_region {
            campaign.default_region = default_region;
        }
        if let Some(caller_id) = patch.caller_id {
            campaign.caller_id = caller_id;
        }
        campaign.updated_at = now;
        self.put_campaign(t, &campaign, out)?;
        if campaign.status != before {
            tracing::info!(campaign_id = id, status = %campaign.status.as_str(), "campaign changed");
        }
        Ok(campaign)
    }

    pub(super) fn change_campaign(
        &mut self,
        t: &mut WriteTables<'_>,
        id: CampaignId,
        action: CampaignAction,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Campaign, WriteError> {
        let mut campaign = self.campaigns.load(t, id)?.cloned().ok_or_else(not_found)?;
        let target = campaign.status.apply(action).map_err(|m| CommandError::Conflict(m.into()))?;
        if campaign.status != target {
            campaign.status = target;
            campaign.updated_at = now;
            self.put_campaign(t, &campaign, out)?;
            tracing::info!(campaign_id = id, status = %target.as_str(), "campaign changed");
            if target == CampaignStatus::Stopped {
                self.jobs.push_back(LongJob::CancelCampaign { campaign_id: id, after: None });
            }
        }
        Ok(campaign)
    }

    /// Checks that `start` may begin; the job itself runs in chunks (`jobs.rs`).
    pub(super) fn start_campaign(&mut self, t: &WriteTables<'_>, id: CampaignId) -> Result<(), WriteError> {
        match self.campaigns.load(t, id)? {
            None => Err(not_found()),
            Some(c) if c.status == CampaignStatus::Stopped => Err(CommandError::Conflict("Campaign is stopped".into()).into()),
            Some(_) => Ok(()),
        }
    }

    pub(super) fn add_numbers(
        &mut self,
        t: &mut WriteTables<'_>,
        campaign_id: CampaignId,
        numbers: Vec<(String, Option<String>)>,
        now: Millis,
    ) -> Result<AddedNumbers, WriteError> {
        if self.campaigns.load(t, campaign_id)?.is_none() {
            return Err(not_found());
        }
        let mut added = AddedNumbers { created: Vec::new(), duplicate_count: 0 };
        for (e164, timezone) in numbers {
            if t.add_number(campaign_id, &e164, &NumberEntry { timezone, added_at: now })? {
                added.created.push(e164);
            } else {
                added.duplicate_count += 1;
            }
        }
        Ok(added)
    }
}
