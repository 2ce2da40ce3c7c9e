//! What the deployment file says about money: tariffs, coal benchmark prices, policies, adders,
//! costs, annual plans, attendance, receipts, advances, adjustments and centralized-pool membership.
//! Pure data, read by serde.

use super::money::Instalment;
use crate::domain::{
    Fen, HouseholdId, JobId, PovertyStatus, Price, StationId, TariffId, VillageId, YearMonth,
};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The rules of docs/policy.md section 5, each named and configurable. Defaults follow the national rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// LABOUR_SHARE (3号): minimum share of income for job wages plus public-works labour.
    pub labour_share: Vec<LabourShareRule>,
    /// NO_CASH_HANDOUTS (Hebei 实施办法): refuse an equal TEMP_LABOUR payment to every household.
    pub no_cash_handouts: bool,
    /// ONE_JOB_PER_HOUSEHOLD [practice].
    pub one_job_per_household: bool,
    /// BENEFICIARY_ELIGIBLE (61号): statuses that may receive payouts.
    pub eligible_statuses: Vec<PovertyStatus>,
    /// When a status change takes effect: at the next annual plan (default) or at once.
    pub status_change: StatusChange,
    /// JOB_HOLDER_CAPACITY [practice]: working age of a job holder (some counties 70).
    pub job_min_age: i32,
    pub job_max_age: i32,
    /// NO_DOUBLE_BENEFIT (29号): a centralized-pool beneficiary may not also be paid by a village.
    pub no_double_benefit: bool,
    /// CASH_ON_HAND [practice]: payouts within cash on hand unless the county records an advance.
    pub cash_on_hand: bool,
    /// Without an attendance record a job pays nothing (true) or its full wage (false).
    pub require_attendance: bool,
    /// How annual costs, reserves and pool payments are cut into months.
    pub instalment: Instalment,
}

fn default_labour_share() -> Vec<LabourShareRule> {
    vec![LabourShareRule {
        year: 2020,
        province: None,
        min_percent: 80,
        base: ShareBase::Net,
    }]
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            labour_share: default_labour_share(),
            no_cash_handouts: true,
            one_job_per_household: true,
            eligible_statuses: vec![
                PovertyStatus::NotExited,
                PovertyStatus::Monitored,
                PovertyStatus::Edge,
            ],
            status_change: StatusChange::NextPlan,
            job_min_age: 16,
            job_max_age: 65,
            no_double_benefit: true,
            cash_on_hand: true,
            require_attendance: false,
            instalment: Instalment::HalfUp,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    /// Status on 1 January of the plan year decides the whole year (docs/policy.md 5).
    #[default]
    NextPlan,
    /// Status on the first day of each month decides that month.
    Immediate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabourShareRule {
    pub year: i32,
    /// Only for stations' villages in this province (`None`: everywhere).
    #[serde(default)]
    pub province: Option<String>,
    /// Whole percent, e.g. 80.
    pub min_percent: u32,
    #[serde(default)]
    pub base: ShareBase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareBase {
    #[default]
    Net,
    Gross,
}

/// A station's total tariff, fixed for 20 years by its catalogue year (docs/policy.md section 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    pub id: TariffId,
    /// Total tariff in yuan/kWh, VAT included.
    pub price: Price,
    pub province: String,
    /// A station outside the subsidy catalogue accrues no subsidy.
    #[serde(default = "yes")]
    pub in_subsidy_catalogue: bool,
}

fn yes() -> bool {
    true
}

/// The provincial desulfurized-coal benchmark price from a date on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoalPrice {
    pub province: String,
    #[serde(with = "crate::domain::date")]
    pub from: NaiveDate,
    pub price: Price,
}

/// The coal benchmark price in force for `province` on `day`: the latest entry from that day or before.
pub fn coal_price_on(prices: &[CoalPrice], province: &str, day: NaiveDate) -> Option<Price> {
    prices
        .iter()
        .filter(|c| c.province == province && c.from <= day)
        .max_by_key(|c| c.from)
        .map(|c| c.price)
}

/// A provincial adder `A` (e.g. Hebei 0.20 yuan/kWh for 3 years), applied to whole months whose
/// first day lies in `[from, until]`. Paid with the base price.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adder {
    pub province: String,
    pub price: Price,
    #[serde(with = "crate::domain::date")]
    pub from: NaiveDate,
    #[serde(with = "crate::domain::date")]
    pub until: NaiveDate,
    /// Only these stations (empty: every station whose tariff is in the province).
    #[serde(default)]
    pub stations: Vec<StationId>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostKind {
    /// 运维
    OAndM,
    /// 土地/屋顶租金
    Rent,
    Insurance,
    /// Taxes and fees.
    Fees,
}

impl CostKind {
    pub fn label(self) -> &'static str {
        match self {
            CostKind::OAndM => "O&M 运维",
            CostKind::Rent => "rent 租金",
            CostKind::Insurance => "insurance 保险",
            CostKind::Fees => "taxes and fees 税费",
        }
    }
}

/// A station's annual cost for a year, spread over the months, or billed at once in one month.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostItem {
    pub station: StationId,
    pub kind: CostKind,
    pub year: i32,
    pub amount: Fen,
    /// Month (1..=12) in which the whole amount is billed, instead of twelve instalments.
    #[serde(default)]
    pub billed_in: Option<u32>,
}

/// The five plan lines of docs/policy.md section 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlanLine {
    JobWages,
    TempLabour,
    SmallProject,
    RewardSubsidy,
    Reserve,
    /// A correction of an earlier, paid month (never a plan line of its own).
    Adjustment,
}

impl PlanLine {
    pub fn code(self) -> &'static str {
        match self {
            PlanLine::JobWages => "JOB_WAGES",
            PlanLine::TempLabour => "TEMP_LABOUR",
            PlanLine::SmallProject => "SMALL_PROJECT",
            PlanLine::RewardSubsidy => "REWARD_SUBSIDY",
            PlanLine::Reserve => "RESERVE",
            PlanLine::Adjustment => "ADJUSTMENT",
        }
    }

    pub fn parse(s: &str) -> Option<PlanLine> {
        [
            PlanLine::JobWages,
            PlanLine::TempLabour,
            PlanLine::SmallProject,
            PlanLine::RewardSubsidy,
            PlanLine::Reserve,
            PlanLine::Adjustment,
        ]
        .into_iter()
        .find(|l| l.code() == s)
    }
}

impl fmt::Display for PlanLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The annual budget of each line.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanBudget {
    pub job_wages: Fen,
    pub temp_labour: Fen,
    pub small_project: Fen,
    pub reward_subsidy: Fen,
    pub reserve: Fen,
}

/// A village's annual plan (decided by 四议; its workflow state lives in the ledger).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VillagePlan {
    pub village: VillageId,
    pub year: i32,
    /// The net income the plan is made against (PLAN_WITHIN_INCOME, LABOUR_SHARE on net).
    pub expected_net: Fen,
    /// Needed only when a LABOUR_SHARE rule uses the gross base.
    #[serde(default)]
    pub expected_gross: Option<Fen>,
    pub lines: PlanBudget,
    #[serde(default)]
    pub temp_labour: Vec<TempLabour>,
    #[serde(default)]
    pub projects: Vec<SmallProject>,
    #[serde(default)]
    pub rewards: Vec<RewardPayment>,
    /// The plan says a status change applies at once (overrides `policy.status_change`).
    #[serde(default)]
    pub status_change_immediate: bool,
}

/// Paid public-works labour of one household in one month (以工代赈 style).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TempLabour {
    pub household: HouseholdId,
    pub month: YearMonth,
    pub amount: Fen,
    /// The work done, e.g. "road repair, 12 days".
    pub work: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmallProject {
    pub month: YearMonth,
    pub amount: Fen,
    pub project: String,
    /// Who is paid (a contractor, the village committee), never a household.
    pub payee: String,
}

/// An individually approved reward/subsidy payment (奖励补助): applied, reviewed, checked, approved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardPayment {
    pub household: HouseholdId,
    pub month: YearMonth,
    pub amount: Fen,
    /// The county approval reference; REWARD_APPROVAL refuses an empty one.
    pub approval: String,
    #[serde(default)]
    pub reason: String,
}

/// Attendance of a job holder in a month (days worked of days required, or a score out of 100).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attendance {
    pub job: JobId,
    pub month: YearMonth,
    pub worked: u32,
    pub required: u32,
}

/// National subsidy actually received for a station, posted in the month it arrived.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsidyReceipt {
    pub station: StationId,
    pub month: YearMonth,
    pub amount: Fen,
    /// The period it pays for, e.g. "2025 subsidy arrears".
    #[serde(default)]
    pub covers: String,
}

/// A county advance to a village, settled from the village's share of later subsidy receipts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    pub village: VillageId,
    pub month: YearMonth,
    pub amount: Fen,
    pub reference: String,
}

/// A correction of a paid month, posted in a later month; the paid month is never touched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    pub village: VillageId,
    /// The month it is posted and paid in.
    pub month: YearMonth,
    pub household: HouseholdId,
    /// The month being corrected.
    pub corrects: YearMonth,
    pub amount: Fen,
    pub reason: String,
}

/// The months a household is a beneficiary of a centralized station (default: always).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolMembership {
    pub station: StationId,
    pub household: HouseholdId,
    #[serde(default)]
    pub from: Option<YearMonth>,
    #[serde(default)]
    pub until: Option<YearMonth>,
}

/// The plan workflow is shared vocabulary (auth and the store need it too).
pub use crate::domain::PlanState;
