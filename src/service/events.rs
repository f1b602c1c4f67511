//! What the writer tells the scheduler after a commit. Events describe committed facts only:
//! nothing here is sent before its transaction is durable.

use std::sync::Arc;

use crate::core::machine::LookupReason;
use crate::core::model::{CallChange, CallId, CampaignId, CampaignStatus};

/// One dial request to send: built by the writer after the call was committed PROCESSING.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialJob {
    pub call_id: CallId,
    pub attempt: u32,
    pub phone_number: String,
    pub campaign_id: CampaignId,
    pub campaign_name: Arc<str>,
    pub callback_url: Arc<str>,
    /// The campaign's caller id, when it has one (else the provider's default `from`).
    pub caller_id: Option<Arc<str>>,
}

/// Ask the provider what became of one attempt (Twilio's call resource), built by the writer
/// after a commit that needs the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupJob {
    pub call_id: CallId,
    pub attempt: u32,
    pub external_call_id: String,
    pub reason: LookupReason,
}

/// What the scheduler needs to know of a campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignInfo {
    pub id: CampaignId,
    pub status: CampaignStatus,
    pub max_concurrent_calls: Option<u32>,
}

#[derive(Debug)]
pub enum Event {
    /// Committed changes of calls' placement (queue, slot, retry timer), in commit order.
    Calls(Vec<CallChange>),
    /// Calls committed PROCESSING on the scheduler's request: send these.
    Dial(Vec<DialJob>),
    /// Attempts to look up at the provider.
    Lookups(Vec<LookupJob>),
    /// From a worker: the provider throttled a dial request (429, 503); lower the dial pace, and
    /// start no dial for `retry_after_ms` when the provider said how long to wait.
    ProviderThrottled { retry_after_ms: Option<u64> },
    /// Calls the scheduler asked to dial that were not dialled (held, cancelled, campaign paused):
    /// release their reserved slots and pacing tokens; `requeue_seq` puts a call that is still
    /// queued and dialable (its campaign is paused) back in the queue.
    DialRefused(Vec<(CallId, CampaignId, Option<u64>)>),
    /// A campaign was created or changed.
    Campaign(CampaignInfo),
    /// Look at the clock again (tests move a manual clock, then wake the scheduler).
    Wake,
}
