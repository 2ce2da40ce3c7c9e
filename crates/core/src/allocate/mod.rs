//! The money core: station revenue, costs, joint-village splits, centralized pools, village plans and
//! each household's payout, exactly to the fen (docs/policy.md).
//!
//! Pure and deterministic: no I/O, no async, no floating point. Inputs are an [`AllocationInput`]
//! (the registry in force, tariffs, policies, plans: what the ledger maps from the deployment and
//! the registry) plus each station's `MonthEnergy` and the carry-over of the previous month; the
//! output is a `MonthRun` whose every figure carries its explanation. A violated rule is an
//! [`Error::Rule`] naming the rule, its source and the numbers; nothing partial is returned.

mod compute;
mod input;
mod model;
pub mod money;

pub use compute::{
    first_month_paid_together, job_paid_in, Book, Carry, CostLine, IncomeLine, MonthRun, Payee,
    Payout, PoolLine, PoolStatement, StationRevenue, VillageCarry, VillageStatement,
};
pub use input::{AllocationInput, AllocationVillage};
pub use model::{
    coal_price_on, Adder, Adjustment, Advance, Attendance, CoalPrice, CostItem, CostKind,
    LabourShareRule, PlanBudget, PlanLine, PlanState, PolicyConfig, PoolMembership, RewardPayment,
    ShareBase, SmallProject, StatusChange, SubsidyReceipt, Tariff, TempLabour, VillagePlan,
};
pub use money::Instalment;

use crate::domain::{Fen, VillageId};
use std::fmt;

/// The rules the allocator enforces, each with its source (docs/policy.md section 5 and 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rule {
    LabourShare,
    NoCashHandouts,
    OneJobPerHousehold,
    BeneficiaryEligible,
    JobHolderCapacity,
    OneHouseholdOneVillage,
    NoDoubleBenefit,
    CashOnHand,
    PlanWithinIncome,
    PlanLineBudget,
    RewardApproval,
    SharesSum,
    NoClawback,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::LabourShare => "LABOUR_SHARE",
            Rule::NoCashHandouts => "NO_CASH_HANDOUTS",
            Rule::OneJobPerHousehold => "ONE_JOB_PER_HOUSEHOLD",
            Rule::BeneficiaryEligible => "BENEFICIARY_ELIGIBLE",
            Rule::JobHolderCapacity => "JOB_HOLDER_CAPACITY",
            Rule::OneHouseholdOneVillage => "ONE_HOUSEHOLD_ONE_VILLAGE",
            Rule::NoDoubleBenefit => "NO_DOUBLE_BENEFIT",
            Rule::CashOnHand => "CASH_ON_HAND",
            Rule::PlanWithinIncome => "PLAN_WITHIN_INCOME",
            Rule::PlanLineBudget => "PLAN_LINE_BUDGET",
            Rule::RewardApproval => "REWARD_APPROVAL",
            Rule::SharesSum => "SHARES_SUM",
            Rule::NoClawback => "NO_CLAWBACK",
        }
    }

    /// The document the rule comes from, by the short names of docs/policy.md.
    pub fn source(self) -> &'static str {
        match self {
            Rule::LabourShare => "3号",
            Rule::NoCashHandouts => "province (Hebei 实施办法: 不得简单发钱)",
            Rule::OneJobPerHousehold | Rule::JobHolderCapacity => "province [practice]",
            Rule::BeneficiaryEligible => "61号",
            Rule::OneHouseholdOneVillage => "61号/29号",
            Rule::NoDoubleBenefit => "29号",
            Rule::CashOnHand => "province [practice]",
            Rule::PlanWithinIncome | Rule::PlanLineBudget => "61号",
            Rule::RewardApproval => "61号 (奖励补助 individual approval)",
            Rule::SharesSum => "61号 Art. 3",
            Rule::NoClawback => "61号 [practice]: paid money is never clawed back",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.source())
    }
}

/// The figures of a plan that breaks PLAN_WITHIN_INCOME (the lines against the expected net
/// income), LABOUR_SHARE (the labour lines against the share required) or PLAN_LINE_BUDGET (a
/// line's entries against its budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanBreach {
    pub village: VillageId,
    pub year: i32,
    /// The line over its budget (PLAN_LINE_BUDGET); None for the plan as a whole.
    pub line: Option<PlanLine>,
    /// What the plan has: the lines' sum, the labour lines, the line's entries.
    pub planned: Fen,
    /// What the rule allows or requires: the expected net income, the labour share, the budget.
    pub limit: Fen,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A rule of docs/policy.md is violated; `detail` gives the numbers.
    #[error("rule {rule} violated{}: {detail}", scope.as_deref().map(|s| format!(" for {s}")).unwrap_or_default())]
    Rule {
        rule: Rule,
        scope: Option<String>,
        detail: String,
        /// For a plan rule, the figures that broke it (forms show them next to the field).
        breach: Option<Box<PlanBreach>>,
    },
    /// Something the computation needs is missing or inconsistent.
    #[error("bad allocation input: {0}")]
    Input(String),
    #[error("amount out of range in {0}")]
    Overflow(String),
}

impl Error {
    pub(crate) fn rule(
        rule: Rule,
        scope: impl std::fmt::Display,
        detail: impl Into<String>,
    ) -> Error {
        Error::Rule {
            rule,
            scope: Some(scope.to_string()),
            detail: detail.into(),
            breach: None,
        }
    }

    /// A plan rule broken, with its figures.
    pub(crate) fn plan_breach(
        rule: Rule,
        scope: impl std::fmt::Display,
        detail: impl Into<String>,
        breach: PlanBreach,
    ) -> Error {
        Error::Rule {
            rule,
            scope: Some(scope.to_string()),
            detail: detail.into(),
            breach: Some(Box::new(breach)),
        }
    }

    /// The figures of a broken plan rule, if this is one.
    pub fn plan_breached(&self) -> Option<&PlanBreach> {
        match self {
            Error::Rule {
                breach: Some(b), ..
            } => Some(b),
            _ => None,
        }
    }

    /// The rule that was violated, if this is a rule error.
    pub fn violated(&self) -> Option<Rule> {
        match self {
            Error::Rule { rule, .. } => Some(*rule),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
