//! The annual plan workflow of docs/policy.md section 6: its states and which step may follow which.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The annual plan workflow of docs/policy.md section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlanState {
    Draft,
    Deliberated,
    PlanPublished,
    TownshipReviewed,
    CountyFiled,
    Active,
    ResultPublished,
    Closed,
}

impl PlanState {
    pub const ALL: [PlanState; 8] = [
        PlanState::Draft,
        PlanState::Deliberated,
        PlanState::PlanPublished,
        PlanState::TownshipReviewed,
        PlanState::CountyFiled,
        PlanState::Active,
        PlanState::ResultPublished,
        PlanState::Closed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            PlanState::Draft => "DRAFT",
            PlanState::Deliberated => "DELIBERATED",
            PlanState::PlanPublished => "PLAN_PUBLISHED",
            PlanState::TownshipReviewed => "TOWNSHIP_REVIEWED",
            PlanState::CountyFiled => "COUNTY_FILED",
            PlanState::Active => "ACTIVE",
            PlanState::ResultPublished => "RESULT_PUBLISHED",
            PlanState::Closed => "CLOSED",
        }
    }

    pub fn parse(s: &str) -> Option<PlanState> {
        let up = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::ALL.into_iter().find(|p| p.code() == up)
    }

    /// Forward one step; an amendment from ACTIVE or RESULT_PUBLISHED goes back to DELIBERATED; a
    /// rejection at a review step goes back to DRAFT.
    pub fn can_go_to(self, to: PlanState) -> bool {
        use PlanState::*;
        matches!(
            (self, to),
            (Draft, Deliberated)
                | (Deliberated, PlanPublished)
                | (PlanPublished, TownshipReviewed)
                | (TownshipReviewed, CountyFiled)
                | (CountyFiled, Active)
                | (Active, ResultPublished)
                | (ResultPublished, Closed)
                | (Active | ResultPublished, Deliberated)
                | (
                    Deliberated | PlanPublished | TownshipReviewed | CountyFiled,
                    Draft
                )
        )
    }

    /// The states reachable in one step, for messages.
    pub fn next_states(self) -> Vec<PlanState> {
        Self::ALL
            .into_iter()
            .filter(|s| self.can_go_to(*s))
            .collect()
    }
}

impl fmt::Display for PlanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
