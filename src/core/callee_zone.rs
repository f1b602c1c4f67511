//! The callee's timezone: the number's own, else the campaign's, else the rules file's.
//! (Inference from the number's prefix replaces this minimal version.)

use jiff::tz::TimeZone;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimezoneSource {
    Given,
    Inferred,
    Ambiguous,
    Campaign,
    Default,
}

impl TimezoneSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TimezoneSource::Given => "given",
            TimezoneSource::Inferred => "inferred",
            TimezoneSource::Ambiguous => "ambiguous",
            TimezoneSource::Campaign => "campaign",
            TimezoneSource::Default => "default",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CalleeZone {
    pub zones: Vec<TimeZone>,
    pub names: Vec<String>,
    pub source: TimezoneSource,
}

impl CalleeZone {
    pub fn name(&self) -> String {
        self.names.join("|")
    }
}

pub fn resolve(given: Option<&str>, _e164: &str, campaign: Option<&str>, default: &TimeZone, _max_candidates: usize) -> CalleeZone {
    for (name, source) in [(given, TimezoneSource::Given), (campaign, TimezoneSource::Campaign)] {
        if let Some(name) = name
            && let Ok(zone) = TimeZone::get(name)
        {
            return CalleeZone { zones: vec![zone], names: vec![name.to_string()], source };
        }
    }
    CalleeZone { zones: vec![default.clone()], names: vec![default.iana_name().unwrap_or("UTC").to_string()], source: TimezoneSource::Default }
}
