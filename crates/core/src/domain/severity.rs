//! How urgent an alert is.

use serde::{Deserialize, Serialize};

/// How urgent; ordered so `>=` compares urgency.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Minor, Severity::Major, Severity::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}
