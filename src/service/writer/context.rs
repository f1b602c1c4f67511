//! Resolving what the state machine decides on, before a call is stepped: the call's campaign
//! as committed, the callee's timezones, and (at dial time) what the store knows about the
//! number. The campaign cache only makes loading cheaper: a campaign is read through the current
//! transaction on first use, and the machine takes a `&Campaign`, so a campaign that was not
//! loaded cannot be used by mistake.

use std::collections::HashMap;

use jiff::tz::TimeZone;

use super::{Outbox, Writer};
use crate::core::callee_zone;
use crate::core::machine::{self, Context, Event, Refusal, Transition};
use crate::core::model::{Call, Campaign, CampaignId};
use crate::service::events::CampaignInfo;
use crate::service::store::{StoreError, WriteTables};

/// Campaigns as last committed. This thread is the only writer of campaigns, so an entry cannot
/// go stale; entries are dropped if a commit fails.
#[derive(Default)]
pub struct Campaigns {
    by_id: HashMap<CampaignId, Campaign>,
}

impl Campaigns {
    /// The campaign, read through `t` unless it is cached.
    pub fn load(&mut self, t: &WriteTables<'_>, id: CampaignId) -> Result<Option<&Campaign>, StoreError> {
        match self.by_id.entry(id) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(Some(entry.into_mut())),
            std::collections::hash_map::Entry::Vacant(entry) => match t.campaign(id)? {
                Some(campaign) => Ok(Some(entry.insert(campaign))),
                None => Ok(None),
            },
        }
    }

    fn remember(&mut self, campaign: &Campaign) {
        self.by_id.insert(campaign.id, campaign.clone());
    }

    pub fn forget(&mut self) {
        self.by_id.clear();
    }
}

impl Writer {
    /// Stores a campaign and tells the scheduler after the commit.
    pub(super) fn put_campaign(&mut self, t: &mut WriteTables<'_>, campaign: &Campaign, out: &mut Outbox) -> Result<(), StoreError> {
        t.put_campaign(campaign)?;
        self.campaigns.remember(campaign);
        out.campaigns.push(CampaignInfo { id: campaign.id, status: campaign.status, max_concurrent_calls: campaign.max_concurrent_calls });
        Ok(())
    }

    /// The callee's timezones: the number's own, else inferred from the number, else the
    /// campaign's, else the rules file's.
    fn callee_zones(&self, call: &Call, campaign: &Campaign) -> Vec<TimeZone> {
        callee_zone::resolve(
            call.timezone.as_deref(),
            &call.phone_number,
            campaign.timezone.as_deref(),
            self.rules.default_timezone(),
            self.settings.timezone_max_candidates,
        )
        .zones
    }

    /// Steps `call` with `event` in its resolved context. The campaign of a stored call always
    /// exists; one that does not is a corrupt store.
    pub(super) fn step(&mut self, t: &WriteTables<'_>, call: &Call, event: Event<'_>, now: i64) -> Result<Result<Transition, Refusal>, StoreError> {
        let Some(campaign) = self.campaigns.load(t, call.campaign_id)?.cloned() else {
            return Err(StoreError::Corrupt {
                what: format!("call {}", call.call_id),
                error: crate::core::codec::CodecError::Inconsistent("its campaign does not exist"),
            });
        };
        let zones = self.callee_zones(call, &campaign);
        let context =
            Context { campaign: &campaign, zones: &zones, rules: &self.rules, callback_timeout_ms: self.settings.callback_timeout.as_millis() as i64 };
        Ok(machine::step(call, event, now, &context))
    }
}
