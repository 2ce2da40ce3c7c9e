//! One month of money: station revenue, costs and deficits, splits to villages, centralized pools,
//! and each village's payouts under its annual plan.

use super::input::AllocationInput;
use super::model::{
    Adjustment, Advance, Attendance, CostItem, PlanLine, PlanState, PoolMembership, ShareBase,
    StatusChange, SubsidyReceipt, Tariff, VillagePlan,
};
use super::money::{add, instalment, prorate, revenue_line, split_largest_remainder, sub, sum};
use super::{Error, Rule};
use crate::domain::{
    EnergyBasis, Fen, Household, HouseholdId, JobPost, LabourCapacity, MonthEnergy, Price,
    StationId, StationKind, VillageId, WattHours, YearMonth,
};
use chrono::NaiveDate;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// What one month leaves to the next: station deficits and village balances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    /// Negative net carried by a station (never allocated; offset against later income).
    pub station_deficit: BTreeMap<StationId, Fen>,
    pub villages: BTreeMap<VillageId, VillageCarry>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VillageCarry {
    /// Money in the village PV account.
    pub balance: Fen,
    /// County advances not yet settled from subsidy receipts.
    pub advance_outstanding: Fen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostLine {
    pub label: &'static str,
    pub amount: Fen,
    pub how: String,
}

/// A station's month: energy, prices, accrued and received revenue, costs, and the village shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StationRevenue {
    pub station: StationId,
    pub kind: StationKind,
    pub energy: WattHours,
    pub basis: EnergyBasis,
    pub tariff: Price,
    pub coal_price: Price,
    pub adder_price: Price,
    pub in_subsidy_catalogue: bool,
    pub base: Fen,
    pub subsidy_accrued: Fen,
    pub adder: Fen,
    pub gross_accrued: Fen,
    pub subsidy_received: Fen,
    /// base + adder + subsidy received: the cash that reached the county this month.
    pub received: Fen,
    pub costs: Vec<CostLine>,
    pub costs_total: Fen,
    /// received − costs (may be negative).
    pub net: Fen,
    pub deficit_in: Fen,
    /// What is split to villages (never negative).
    pub distributable: Fen,
    pub deficit_out: Fen,
    /// (village, weight, amount)
    pub shares: Vec<(VillageId, u64, Fen)>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncomeLine {
    pub station: StationId,
    pub basis: EnergyBasis,
    pub weight: u64,
    pub total_weight: u64,
    /// The station's received money and costs this month (whole station, before the split).
    pub station_received: Fen,
    pub station_costs: Fen,
    pub amount: Fen,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Payee {
    Household(HouseholdId),
    /// A contractor or the village committee (small projects).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payout {
    pub line: PlanLine,
    pub payee: Payee,
    /// Job id and title, work done, project, approval reference or corrected month (shared text: a
    /// job's reference is the same every month).
    pub reference: Arc<str>,
    pub amount: Fen,
    /// Why this amount: the rule or plan entry that decided it.
    pub basis: Cow<'static, str>,
}

/// A village's month, as the statement and the public notice show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VillageStatement {
    pub village: VillageId,
    pub month: YearMonth,
    /// Some income rests on metered (not settled) energy.
    pub provisional: bool,
    pub plan_state: Option<PlanState>,
    pub opening_balance: Fen,
    pub income: Vec<IncomeLine>,
    pub income_total: Fen,
    pub advance: Fen,
    pub advance_repaid: Fen,
    pub advance_outstanding: Fen,
    /// opening + income + advance − repayment: what may be paid out.
    pub cash: Fen,
    pub payouts: Vec<Payout>,
    pub payouts_total: Fen,
    /// This month's RESERVE instalment set aside.
    pub reserve: Fen,
    /// Unplanned money left in the account.
    pub carry_over: Fen,
    /// reserve + carry-over.
    pub closing_balance: Fen,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolLine {
    pub household: HouseholdId,
    pub village: Option<VillageId>,
    pub amount: Fen,
}

/// A centralized station's fixed payments into the county pool for a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatement {
    pub station: StationId,
    pub county: String,
    pub per_beneficiary_annual: Fen,
    pub lines: Vec<PoolLine>,
    pub total: Fen,
    pub notes: Vec<String>,
}

/// Everything one month produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthRun {
    pub month: YearMonth,
    pub stations: Vec<StationRevenue>,
    pub villages: Vec<VillageStatement>,
    pub pools: Vec<PoolStatement>,
    pub carry: Carry,
}

impl MonthRun {
    pub fn village(&self, code: &str) -> Option<&VillageStatement> {
        self.villages.iter().find(|v| v.village.as_str() == code)
    }
}

/// An allocation input indexed and checked once: households, shares, plans.
#[derive(Debug)]
pub struct Book<'a> {
    input: AllocationInput<'a>,
    households: FxHashMap<&'a str, &'a Household>,
    village_households: FxHashMap<&'a str, usize>,
    tariffs: FxHashMap<&'a str, &'a Tariff>,
    costs: FxHashMap<(&'a str, i32), Vec<&'a CostItem>>,
    plans: FxHashMap<(&'a str, i32), &'a VillagePlan>,
    jobs: FxHashMap<&'a str, Vec<JobRef<'a>>>,
    attendance: FxHashMap<(&'a str, YearMonth), &'a Attendance>,
    receipts: FxHashMap<(&'a str, YearMonth), Vec<&'a SubsidyReceipt>>,
    advances: FxHashMap<(&'a str, YearMonth), Vec<&'a Advance>>,
    adjustments: FxHashMap<(&'a str, YearMonth), Vec<&'a Adjustment>>,
    membership: FxHashMap<(&'a str, &'a str), &'a PoolMembership>,
    provinces: FxHashMap<&'a str, &'a str>,
    /// Threads that large inputs (plans, stations, villages) are spread over, and the fewest items
    /// worth spreading.
    threads: usize,
    min_parallel: usize,
}

/// A job with its holder resolved once, so a month does not look households up again.
#[derive(Debug)]
struct JobRef<'a> {
    job: &'a JobPost,
    holder: Option<&'a Household>,
    /// The holder is registered in the job's village (checked once, not every month).
    holder_in_village: bool,
    reference: Arc<str>,
}

/// Below this many plans, stations or villages the work stays on one thread: spawning is not worth it.
const PARALLEL_MIN_ITEMS: usize = 2_000;

/// A station's month: a centralized station's pool or another station's revenue.
enum StationPart {
    Pool(PoolStatement),
    Revenue(StationRevenue),
}

/// What one village's month starts from.
struct VillageInput<'v> {
    code: &'v VillageId,
    lines: Vec<IncomeLine>,
    receipt_share: Fen,
    prev: VillageCarry,
}

/// "plan 2026 of village X", written only when an error needs it.
struct PlanScope<'p>(&'p VillagePlan);

impl fmt::Display for PlanScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plan {} of village {}", self.0.year, self.0.village)
    }
}

/// "village X, 2026-05", written only when an error needs it.
struct VillageMonth<'v>(&'v VillageId, YearMonth);

impl fmt::Display for VillageMonth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "village {}, {}", self.0, self.1)
    }
}

/// The first and last day of a month, computed once for all the jobs checked against it.
#[derive(Clone, Copy)]
struct Days {
    first: NaiveDate,
    last: NaiveDate,
}

impl Days {
    fn of(month: YearMonth) -> Days {
        Days {
            first: month.first_day(),
            last: month.next().first_day() - chrono::Duration::days(1),
        }
    }
}

fn job_active(job: &JobPost, days: Days) -> bool {
    job.from <= days.last && job.until.is_none_or(|u| u >= days.first)
}

/// Whether `job` is paid for `month`: any day of its term falls in the month.
pub fn job_paid_in(job: &JobPost, month: YearMonth) -> bool {
    job_active(job, Days::of(month))
}

/// The first month in which both jobs are paid, if there is one. A job is paid for every month that
/// any day of its `from..=until` falls in (`job_active`), so under ONE_JOB_PER_HOUSEHOLD two jobs of
/// one household collide exactly when such a month exists: a job ending in June and one starting in
/// July never do, a handover in the middle of June does.
pub fn first_month_paid_together(a: &JobPost, b: &JobPost) -> Option<YearMonth> {
    let first = YearMonth::of(a.from.max(b.from));
    let last = match (a.until, b.until) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    };
    last.is_none_or(|l| first <= YearMonth::of(l))
        .then_some(first)
}

fn in_window(month: YearMonth, from: Option<YearMonth>, until: Option<YearMonth>) -> bool {
    from.is_none_or(|f| f <= month) && until.is_none_or(|u| month <= u)
}

fn year_month(year: i32, month: u32) -> Result<YearMonth, Error> {
    YearMonth::new(year, month).ok_or_else(|| Error::Input(format!("year {year} is out of range")))
}

impl<'a> Book<'a> {
    /// Indexes the input and checks what does not depend on the month: one household one village,
    /// ownership shares, attendance records and every annual plan.
    pub fn new(d: &AllocationInput<'a>) -> Result<Book<'a>, Error> {
        let mut households: FxHashMap<&str, &Household> =
            FxHashMap::with_capacity_and_hasher(d.households.len(), Default::default());
        let mut village_households: FxHashMap<&str, usize> = FxHashMap::default();
        for h in d.households {
            if let Some(first) = households.insert(h.id.as_str(), h) {
                if first.village != h.village {
                    return Err(Error::rule(
                        Rule::OneHouseholdOneVillage,
                        format!("household {}", h.id),
                        format!(
                            "registered in village {} and again in village {}",
                            first.village, h.village
                        ),
                    ));
                }
                return Err(Error::Input(format!(
                    "household {} is declared twice",
                    h.id
                )));
            }
            *village_households.entry(h.village.as_str()).or_default() += 1;
        }
        let tariffs = d.tariffs.iter().map(|t| (t.id.as_str(), t)).collect();
        for s in d.stations {
            if s.kind == StationKind::JointVillage {
                let total: u64 = s.owners.iter().map(|o| o.weight).sum();
                let declared = s.total_weight.unwrap_or(total);
                if s.owners.is_empty() || total == 0 || total != declared {
                    return Err(Error::rule(
                        Rule::SharesSum,
                        format!("station {}", s.id),
                        format!(
                            "{} owner weights sum to {total}, but the station total is {declared}",
                            s.owners.len()
                        ),
                    ));
                }
            }
        }
        let mut costs: FxHashMap<(&str, i32), Vec<&CostItem>> = FxHashMap::default();
        for c in d.costs {
            if c.amount.is_negative() {
                return Err(Error::Input(format!(
                    "cost {:?} of station {} for {} is negative ({})",
                    c.kind, c.station, c.year, c.amount
                )));
            }
            if c.billed_in.is_some_and(|m| !(1..=12).contains(&m)) {
                return Err(Error::Input(format!(
                    "cost of station {} billed in month {:?}, not 1..=12",
                    c.station, c.billed_in
                )));
            }
            costs
                .entry((c.station.as_str(), c.year))
                .or_default()
                .push(c);
        }
        let mut jobs: FxHashMap<&str, Vec<JobRef<'_>>> = FxHashMap::default();
        for j in d.jobs {
            let holder = households.get(j.holder.as_str()).copied();
            jobs.entry(j.village.as_str()).or_default().push(JobRef {
                job: j,
                holder,
                holder_in_village: holder.is_some_and(|h| h.village == j.village),
                reference: Arc::from(format!("{} {}", j.id, j.title)),
            });
        }
        for list in jobs.values_mut() {
            list.sort_by(|a, b| a.job.id.cmp(&b.job.id));
        }
        let mut attendance = FxHashMap::default();
        for a in d.attendance {
            if a.required == 0 || a.worked > a.required {
                return Err(Error::Input(format!(
                    "attendance of job {} in {}: {} of {} is not a valid record",
                    a.job, a.month, a.worked, a.required
                )));
            }
            if attendance.insert((a.job.as_str(), a.month), a).is_some() {
                return Err(Error::Input(format!(
                    "attendance of job {} in {} is recorded twice",
                    a.job, a.month
                )));
            }
        }
        let mut receipts: FxHashMap<(&str, YearMonth), Vec<&SubsidyReceipt>> = FxHashMap::default();
        for r in d.subsidy_receipts {
            if r.amount.is_negative() {
                return Err(Error::Input(format!(
                    "subsidy receipt of station {} in {} is negative",
                    r.station, r.month
                )));
            }
            receipts
                .entry((r.station.as_str(), r.month))
                .or_default()
                .push(r);
        }
        let mut advances: FxHashMap<(&str, YearMonth), Vec<&Advance>> = FxHashMap::default();
        for a in d.advances {
            if a.amount.is_negative() {
                return Err(Error::Input(format!(
                    "county advance {} to village {} is negative",
                    a.reference, a.village
                )));
            }
            advances
                .entry((a.village.as_str(), a.month))
                .or_default()
                .push(a);
        }
        let mut adjustments: FxHashMap<(&str, YearMonth), Vec<&Adjustment>> = FxHashMap::default();
        for a in d.adjustments {
            adjustments
                .entry((a.village.as_str(), a.month))
                .or_default()
                .push(a);
        }
        let mut membership = FxHashMap::default();
        for m in d.pool_membership {
            membership.insert((m.station.as_str(), m.household.as_str()), m);
        }
        let provinces = d
            .villages
            .iter()
            .filter_map(|v| Some((v.code.as_str(), v.province?)))
            .collect();
        let mut book = Book {
            input: d.clone(),
            households,
            village_households,
            tariffs,
            costs,
            plans: FxHashMap::default(),
            jobs,
            attendance,
            receipts,
            advances,
            adjustments,
            membership,
            provinces,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            min_parallel: PARALLEL_MIN_ITEMS,
        };
        // Plans are checked independently (spread over the cores when many), then indexed in order.
        let checked = book.spread(d.plans.iter().collect(), |p| book.check_plan(p));
        for (p, check) in d.plans.iter().zip(checked) {
            check?;
            if book.plans.insert((p.village.as_str(), p.year), p).is_some() {
                return Err(Error::Input(format!(
                    "village {} has two plans for {}",
                    p.village, p.year
                )));
            }
        }
        Ok(book)
    }

    /// Spreads work over `threads` threads from `min_items` items on (tests use it to run the
    /// parallel path on small deployments).
    #[cfg(test)]
    pub(crate) fn spread_over(mut self, threads: usize, min_items: usize) -> Self {
        self.threads = threads;
        self.min_parallel = min_items;
        self
    }

    pub fn plan(&self, village: &str, year: i32) -> Option<&'a VillagePlan> {
        self.plans.get(&(village, year)).copied()
    }

    /// The plan rules that do not depend on a month (61号, 3号).
    fn check_plan(&self, p: &VillagePlan) -> Result<(), Error> {
        let scope = &PlanScope(p);
        let l = &p.lines;
        let lines = sum([
            l.job_wages,
            l.temp_labour,
            l.small_project,
            l.reward_subsidy,
            l.reserve,
        ])?;
        if [
            l.job_wages,
            l.temp_labour,
            l.small_project,
            l.reward_subsidy,
            l.reserve,
        ]
        .iter()
        .any(|f| f.is_negative())
        {
            return Err(Error::Input(format!("{scope}: a plan line is negative")));
        }
        let breach = |line: Option<PlanLine>, planned: Fen, limit: Fen| super::PlanBreach {
            village: p.village.clone(),
            year: p.year,
            line,
            planned,
            limit,
        };
        if lines > p.expected_net {
            return Err(Error::plan_breach(
                Rule::PlanWithinIncome,
                scope,
                format!(
                    "plan lines sum to {lines}, more than the expected net income {} (over by {})",
                    p.expected_net,
                    sub(lines, p.expected_net)?
                ),
                breach(None, lines, p.expected_net),
            ));
        }
        let province = self.provinces.get(p.village.as_str()).copied();
        let labour = add(l.job_wages, l.temp_labour)?;
        for r in &self.input.policy.labour_share {
            if r.year != p.year || r.province.as_deref().is_some_and(|pr| Some(pr) != province) {
                continue;
            }
            let base = match r.base {
                ShareBase::Net => p.expected_net,
                ShareBase::Gross => p.expected_gross.ok_or_else(|| {
                    Error::Input(format!(
                        "{scope}: the LABOUR_SHARE rule for {} uses the gross base; set expected_gross",
                        r.year
                    ))
                })?,
            };
            let need = i128::from(base.0) * i128::from(r.min_percent);
            if i128::from(labour.0) * 100 < need {
                let required = super::money::div_half_up(need, 100);
                let required = Fen(i64::try_from(required).unwrap_or(i64::MAX));
                return Err(Error::plan_breach(
                    Rule::LabourShare,
                    scope,
                    format!(
                        "JOB_WAGES {} + TEMP_LABOUR {} = {labour} is less than {}% of the {} income {base} ({} required)",
                        l.job_wages,
                        l.temp_labour,
                        r.min_percent,
                        if r.base == ShareBase::Net { "net" } else { "gross" },
                        required
                    ),
                    breach(None, labour, required),
                ));
            }
        }
        let mut wages = Fen::ZERO;
        let year: Vec<Days> = (1..=12)
            .map(|m| year_month(p.year, m).map(Days::of))
            .collect::<Result<_, _>>()?;
        for j in self.jobs.get(p.village.as_str()).into_iter().flatten() {
            for days in &year {
                if job_active(j.job, *days) {
                    wages = add(wages, j.job.monthly_wage)?;
                }
            }
        }
        let budget = |line: PlanLine, planned: Fen, budget: Fen| -> Result<(), Error> {
            if planned > budget {
                return Err(Error::plan_breach(
                    Rule::PlanLineBudget,
                    format!("plan {} of village {}", p.year, p.village),
                    format!("{line} entries total {planned}, more than the line's budget {budget}"),
                    breach(Some(line), planned, budget),
                ));
            }
            Ok(())
        };
        budget(PlanLine::JobWages, wages, l.job_wages)?;
        let in_year = |m: YearMonth, what: &str| -> Result<(), Error> {
            if m.year() != p.year {
                return Err(Error::Input(format!(
                    "{scope}: {what} in {m} is outside the plan year"
                )));
            }
            Ok(())
        };
        let mut temp = Fen::ZERO;
        for t in &p.temp_labour {
            in_year(t.month, "temporary labour")?;
            if t.work.trim().is_empty() || t.amount <= Fen::ZERO {
                return Err(Error::rule(
                    Rule::NoCashHandouts,
                    scope,
                    format!(
                        "TEMP_LABOUR of {} for household {} in {} names no work done (no 先发钱后劳动)",
                        t.amount, t.household, t.month
                    ),
                ));
            }
            self.member_of(&t.household, &p.village, scope)?;
            temp = add(temp, t.amount)?;
        }
        budget(PlanLine::TempLabour, temp, l.temp_labour)?;
        let mut projects = Fen::ZERO;
        for s in &p.projects {
            in_year(s.month, "a small project")?;
            if s.amount <= Fen::ZERO {
                return Err(Error::Input(format!(
                    "{scope}: project '{}' has no positive amount",
                    s.project
                )));
            }
            projects = add(projects, s.amount)?;
        }
        budget(PlanLine::SmallProject, projects, l.small_project)?;
        let mut rewards = Fen::ZERO;
        for r in &p.rewards {
            in_year(r.month, "a reward payment")?;
            if r.approval.trim().is_empty() || r.amount <= Fen::ZERO {
                return Err(Error::rule(
                    Rule::RewardApproval,
                    scope,
                    format!(
                        "REWARD_SUBSIDY of {} for household {} in {} has no individual approval reference",
                        r.amount, r.household, r.month
                    ),
                ));
            }
            self.member_of(&r.household, &p.village, scope)?;
            rewards = add(rewards, r.amount)?;
        }
        budget(PlanLine::RewardSubsidy, rewards, l.reward_subsidy)?;
        Ok(())
    }

    fn member_of(
        &self,
        h: &HouseholdId,
        village: &VillageId,
        scope: &dyn fmt::Display,
    ) -> Result<&'a Household, Error> {
        let Some(hh) = self.households.get(h.as_str()).copied() else {
            return Err(Error::rule(
                Rule::BeneficiaryEligible,
                scope,
                format!("household {h} is not a registered poor household"),
            ));
        };
        if &hh.village != village {
            return Err(Error::rule(
                Rule::OneHouseholdOneVillage,
                scope,
                format!(
                    "household {h} belongs to village {}, not to village {village}",
                    hh.village
                ),
            ));
        }
        Ok(hh)
    }

    /// BENEFICIARY_ELIGIBLE (61号): registered in the village with an eligible status on the day the
    /// plan (or the policy) says status is read.
    fn eligible(
        &self,
        h: &HouseholdId,
        plan: &VillagePlan,
        month: YearMonth,
        scope: &dyn fmt::Display,
    ) -> Result<&'a Household, Error> {
        let hh = self.member_of(h, &plan.village, scope)?;
        self.status_allows(hh, plan, month, scope)
    }

    fn status_allows(
        &self,
        hh: &'a Household,
        plan: &VillagePlan,
        month: YearMonth,
        scope: &dyn fmt::Display,
    ) -> Result<&'a Household, Error> {
        let h = &hh.id;
        let policy = &self.input.policy;
        let day = if plan.status_change_immediate || policy.status_change == StatusChange::Immediate
        {
            month.first_day()
        } else {
            NaiveDate::from_ymd_opt(plan.year, 1, 1).unwrap_or(month.first_day())
        };
        match hh.status_on(day) {
            Some(s) if policy.eligible_statuses.contains(&s) => Ok(hh),
            status => Err(Error::rule(
                Rule::BeneficiaryEligible,
                scope,
                format!(
                    "household {h} has status {} on {day}; eligible statuses are {:?}",
                    status.map_or("none (not registered yet)".to_owned(), |s| format!("{s:?}")),
                    policy.eligible_statuses
                ),
            )),
        }
    }

    /// Computes one month. `carry` is what the previous month left; `plan_states` the workflow state
    /// of each (village, year) plan. Deterministic: the same inputs give the same run, field by field.
    pub fn month(
        &self,
        month: YearMonth,
        energy: &HashMap<StationId, MonthEnergy>,
        carry: &Carry,
        plan_states: &HashMap<(VillageId, i32), PlanState>,
    ) -> Result<MonthRun, Error> {
        let mut stations: Vec<&crate::domain::Station> = self.input.stations.iter().collect();
        stations.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out_stations = Vec::new();
        let mut pools = Vec::new();
        let mut next = Carry::default();
        // village -> (income lines, subsidy receipts share)
        let mut income: FxHashMap<VillageId, (Vec<IncomeLine>, Fen)> = FxHashMap::default();
        let mut pool_members: FxHashSet<&str> = FxHashSet::default();
        // Stations are independent: computed (spread over the cores when many), then merged in order,
        // so the first failing station in order is the error reported.
        let computed = self.spread(stations, |s| -> Result<StationPart, Error> {
            if s.kind == StationKind::Centralized {
                return self.pool(s, month).map(StationPart::Pool);
            }
            let e = energy.get(&s.id).ok_or_else(|| {
                Error::Input(format!("no energy figure for station {} in {month}", s.id))
            })?;
            self.station(s, e, month, carry).map(StationPart::Revenue)
        });
        for part in computed {
            let rev = match part? {
                StationPart::Pool(pool) => {
                    for l in &pool.lines {
                        if let Some(h) = self.households.get(l.household.as_str()) {
                            pool_members.insert(h.id.as_str());
                        }
                    }
                    pools.push(pool);
                    continue;
                }
                StationPart::Revenue(rev) => rev,
            };
            if rev.deficit_out.is_negative() {
                next.station_deficit
                    .insert(rev.station.clone(), rev.deficit_out);
            }
            let weights: Vec<(VillageId, u64)> =
                rev.shares.iter().map(|(v, w, _)| (v.clone(), *w)).collect();
            let total_weight: u64 = weights.iter().map(|(_, w)| *w).sum();
            let receipt_split = if rev.subsidy_received > Fen::ZERO {
                split_largest_remainder(rev.subsidy_received, &weights)?
            } else {
                Vec::new()
            };
            for (i, (v, w, amount)) in rev.shares.iter().enumerate() {
                let entry = income.entry(v.clone()).or_default();
                entry.0.push(IncomeLine {
                    station: rev.station.clone(),
                    basis: rev.basis,
                    weight: *w,
                    total_weight,
                    station_received: rev.received,
                    station_costs: rev.costs_total,
                    amount: *amount,
                });
                if let Some((_, r)) = receipt_split.get(i) {
                    entry.1 = add(entry.1, *r)?;
                }
            }
            out_stations.push(rev);
        }

        let mut villages: Vec<&VillageId> = self.input.villages.iter().map(|v| v.code).collect();
        villages.sort();
        let inputs: Vec<VillageInput<'_>> = villages
            .into_iter()
            .map(|code| {
                let (lines, receipt_share) = income.remove(code).unwrap_or_default();
                VillageInput {
                    code,
                    lines,
                    receipt_share,
                    prev: carry.villages.get(code).copied().unwrap_or_default(),
                }
            })
            .collect();
        let statements = self.villages(inputs, month, plan_states, &pool_members)?;
        for st in &statements {
            next.villages.insert(
                st.village.clone(),
                VillageCarry {
                    balance: st.closing_balance,
                    advance_outstanding: st.advance_outstanding,
                },
            );
        }
        Ok(MonthRun {
            month,
            stations: out_stations,
            villages: statements,
            pools,
            carry: next,
        })
    }

    /// Every village's statement, in the order given. Villages are independent once their income is
    /// known, so large runs are spread over the machine's cores; the result, and the error reported
    /// (the first village in order that fails), are the same as one pass would give.
    fn villages(
        &self,
        inputs: Vec<VillageInput<'_>>,
        month: YearMonth,
        plan_states: &HashMap<(VillageId, i32), PlanState>,
        pool_members: &FxHashSet<&str>,
    ) -> Result<Vec<VillageStatement>, Error> {
        let one = |v: VillageInput<'_>| {
            self.village(
                v.code,
                month,
                v.lines,
                v.receipt_share,
                v.prev,
                plan_states,
                pool_members,
            )
        };
        self.spread(inputs, one).into_iter().collect()
    }

    /// Maps `items` in order. From `min_parallel` items on, they are spread over the book's threads
    /// in contiguous chunks and joined back in order, so the output is the same as one pass gives.
    fn spread<T: Send, R: Send>(&self, items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
        if self.threads < 2 || items.len() < self.min_parallel {
            return items.into_iter().map(f).collect();
        }
        let total = items.len();
        let per = total.div_ceil(self.threads);
        let mut chunks: Vec<Vec<T>> = Vec::with_capacity(self.threads);
        let mut rest = items.into_iter();
        loop {
            let chunk: Vec<T> = rest.by_ref().take(per).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let f = &f;
        std::thread::scope(|scope| {
            let workers: Vec<_> = chunks
                .into_iter()
                .map(|chunk| scope.spawn(move || chunk.into_iter().map(f).collect::<Vec<R>>()))
                .collect();
            let mut out = Vec::with_capacity(total);
            for w in workers {
                match w.join() {
                    Ok(part) => out.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            out
        })
    }

    fn station(
        &self,
        s: &crate::domain::Station,
        e: &MonthEnergy,
        month: YearMonth,
        carry: &Carry,
    ) -> Result<StationRevenue, Error> {
        let d = &self.input;
        let tariff = self.tariffs.get(s.tariff.as_str()).ok_or_else(|| {
            Error::Input(format!(
                "station {} names unknown tariff {}",
                s.id, s.tariff
            ))
        })?;
        let day = month.first_day();
        let coal = d.coal_price(&tariff.province, day).ok_or_else(|| {
            Error::Input(format!(
                "no coal benchmark price for province {} in force on {day} (station {})",
                tariff.province, s.id
            ))
        })?;
        let mut notes = Vec::new();
        notes.push(match e.basis {
            EnergyBasis::Settled => {
                format!("energy {} Wh from the grid settlement (结算单)", e.energy.0)
            }
            EnergyBasis::Metered => format!(
                "energy {} Wh metered by Sunshare: PROVISIONAL until the settlement is imported",
                e.energy.0
            ),
        });
        let subsidy_price = if tariff.in_subsidy_catalogue {
            if tariff.price < coal {
                notes.push(format!(
                    "coal price {coal} exceeds tariff {}: no subsidy",
                    tariff.price
                ));
                Price(0)
            } else {
                Price(tariff.price.0 - coal.0)
            }
        } else {
            notes.push("not in the subsidy catalogue: no subsidy accrues".into());
            Price(0)
        };
        let mut adder_price = Price(0);
        for a in d.adders {
            if a.province == tariff.province
                && a.from <= day
                && day <= a.until
                && (a.stations.is_empty() || a.stations.contains(&s.id))
            {
                adder_price = Price(adder_price.0.saturating_add(a.price.0));
                notes.push(format!(
                    "provincial adder {} yuan/kWh ({} to {}) {}",
                    a.price, a.from, a.until, a.note
                ));
            }
        }
        let base = revenue_line(e.energy, coal)?;
        let subsidy_accrued = revenue_line(e.energy, subsidy_price)?;
        let adder = revenue_line(e.energy, adder_price)?;
        let gross_accrued = sum([base, subsidy_accrued, adder])?;
        notes.push(format!(
            "base = R(E × C {coal}) = {base}; subsidy accrued = R(E × (P {} − C)) = {subsidy_accrued}; adder = R(E × A {adder_price}) = {adder}",
            tariff.price
        ));
        let mut subsidy_received = Fen::ZERO;
        for r in self
            .receipts
            .get(&(s.id.as_str(), month))
            .into_iter()
            .flatten()
        {
            subsidy_received = add(subsidy_received, r.amount)?;
            notes.push(format!("subsidy received {} ({})", r.amount, r.covers));
        }
        let received = sum([base, adder, subsidy_received])?;
        let mut costs = Vec::new();
        for c in self
            .costs
            .get(&(s.id.as_str(), month.year()))
            .into_iter()
            .flatten()
        {
            let (amount, how) = match c.billed_in {
                Some(m) if m == month.month() => {
                    (c.amount, format!("billed at once: {}", c.amount))
                }
                Some(_) => continue,
                None => (
                    instalment(c.amount, month.month(), d.policy.instalment)?,
                    format!(
                        "annual {} in 12 instalments ({:?})",
                        c.amount, d.policy.instalment
                    ),
                ),
            };
            if amount != Fen::ZERO {
                costs.push(CostLine {
                    label: c.kind.label(),
                    amount,
                    how,
                });
            }
        }
        let costs_total = sum(costs.iter().map(|c| c.amount))?;
        let net = sub(received, costs_total)?;
        let deficit_in = carry
            .station_deficit
            .get(&s.id)
            .copied()
            .unwrap_or(Fen::ZERO);
        let available = add(net, deficit_in)?;
        let (distributable, deficit_out) = if available.is_negative() {
            // A note's words are part of a recorded month's fingerprint, so they stay as months
            // were recorded with ("POLICY.md" in notes is docs/policy.md).
            notes.push(format!(
                "negative month: {available} carried to next month, nothing allocated (POLICY.md 3)"
            ));
            (Fen::ZERO, available)
        } else {
            if deficit_in.is_negative() {
                notes.push(format!("earlier deficit {deficit_in} offset first"));
            }
            (available, Fen::ZERO)
        };
        let weights: Vec<(VillageId, u64)> = match s.kind {
            StationKind::Village => {
                let v = s.village.clone().ok_or_else(|| {
                    Error::Input(format!("village station {} has no village", s.id))
                })?;
                vec![(v, 1)]
            }
            _ => s
                .owners
                .iter()
                .map(|o| (o.village.clone(), o.weight))
                .collect(),
        };
        let split = split_largest_remainder(distributable, &weights)?;
        if s.kind == StationKind::JointVillage {
            notes.push(format!(
                "split {distributable} by ownership weights, largest remainder, ties by village code"
            ));
        }
        let shares = split
            .into_iter()
            .zip(weights.iter())
            .map(|((v, amount), (_, w))| (v, *w, amount))
            .collect();
        Ok(StationRevenue {
            station: s.id.clone(),
            kind: s.kind,
            energy: e.energy,
            basis: e.basis,
            tariff: tariff.price,
            coal_price: coal,
            adder_price,
            in_subsidy_catalogue: tariff.in_subsidy_catalogue,
            base,
            subsidy_accrued,
            adder,
            gross_accrued,
            subsidy_received,
            received,
            costs,
            costs_total,
            net,
            deficit_in,
            distributable,
            deficit_out,
            shares,
            notes,
        })
    }

    fn pool(&self, s: &crate::domain::Station, month: YearMonth) -> Result<PoolStatement, Error> {
        let per = s.payment_per_beneficiary.ok_or_else(|| {
            Error::Input(format!(
                "centralized station {} has no payment per beneficiary",
                s.id
            ))
        })?;
        let part = instalment(per, month.month(), self.input.policy.instalment)?;
        let mut lines = Vec::new();
        let mut notes = vec![format!(
            "{per} per beneficiary household a year, {part} this month"
        )];
        let mut members: Vec<&HouseholdId> = s.beneficiaries.iter().collect();
        members.sort();
        for h in members {
            if let Some(m) = self.membership.get(&(s.id.as_str(), h.as_str())) {
                if !in_window(month, m.from, m.until) {
                    notes.push(format!(
                        "household {h} is a beneficiary only {} to {}: not paid in {month}",
                        m.from.map_or("start".to_owned(), |f| f.to_string()),
                        m.until.map_or("end".to_owned(), |u| u.to_string())
                    ));
                    continue;
                }
            }
            lines.push(PoolLine {
                household: h.clone(),
                village: self.households.get(h.as_str()).map(|x| x.village.clone()),
                amount: part,
            });
        }
        let total = sum(lines.iter().map(|l| l.amount))?;
        Ok(PoolStatement {
            station: s.id.clone(),
            county: s.county.to_string(),
            per_beneficiary_annual: per,
            lines,
            total,
            notes,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn village(
        &self,
        code: &VillageId,
        month: YearMonth,
        income: Vec<IncomeLine>,
        receipt_share: Fen,
        prev: VillageCarry,
        plan_states: &HashMap<(VillageId, i32), PlanState>,
        pool_members: &FxHashSet<&str>,
    ) -> Result<VillageStatement, Error> {
        let scope = &VillageMonth(code, month);
        let policy = &self.input.policy;
        let income_total = sum(income.iter().map(|l| l.amount))?;
        let provisional = income.iter().any(|l| l.basis.is_provisional());
        let advance = sum(self
            .advances
            .get(&(code.as_str(), month))
            .into_iter()
            .flatten()
            .map(|a| a.amount))?;
        let mut notes = Vec::new();
        for a in self
            .advances
            .get(&(code.as_str(), month))
            .into_iter()
            .flatten()
        {
            notes.push(format!("county advance {} ({})", a.amount, a.reference));
        }
        let outstanding = add(prev.advance_outstanding, advance)?;
        let advance_repaid = outstanding
            .min(receipt_share)
            .min(income_total)
            .max(Fen::ZERO);
        if advance_repaid > Fen::ZERO {
            notes.push(format!(
                "{advance_repaid} of county advances settled from subsidy received"
            ));
        }
        let advance_outstanding = sub(outstanding, advance_repaid)?;
        let cash = sub(sum([prev.balance, income_total, advance])?, advance_repaid)?;
        let plan = self.plan(code.as_str(), month.year());
        let plan_state = plan_states.get(&(code.clone(), month.year())).copied();
        let mut payouts = Vec::new();
        let mut reserve_part = Fen::ZERO;
        let adjustments = self.adjustments.get(&(code.as_str(), month));
        match (plan, plan_state) {
            (Some(plan), Some(PlanState::Active)) => {
                self.payouts(plan, month, scope, &mut payouts)?;
                reserve_part = instalment(plan.lines.reserve, month.month(), policy.instalment)?;
            }
            (Some(_), state) => notes.push(format!(
                "plan {} is {}: no payouts (payouts only in ACTIVE, POLICY.md 6)",
                month.year(),
                state.map_or("not yet in the workflow (DRAFT)".to_owned(), |s| s
                    .to_string())
            )),
            (None, _) => notes.push(format!(
                "no annual plan for {}: no payouts; income stays in the village account",
                month.year()
            )),
        }
        for a in adjustments.into_iter().flatten() {
            if plan_state != Some(PlanState::Active) {
                return Err(Error::Input(format!(
                    "{scope}: adjustment for household {} cannot be paid while the plan is not ACTIVE; post it in an ACTIVE month",
                    a.household
                )));
            }
            if a.amount <= Fen::ZERO {
                return Err(Error::rule(
                    Rule::NoClawback,
                    scope,
                    format!(
                        "adjustment of {} for household {} (correcting {}) is not a positive top-up",
                        a.amount, a.household, a.corrects
                    ),
                ));
            }
            if a.corrects >= month {
                return Err(Error::Input(format!(
                    "{scope}: an adjustment must correct an earlier month, not {}",
                    a.corrects
                )));
            }
            self.member_of(&a.household, code, scope)?;
            payouts.push(Payout {
                line: PlanLine::Adjustment,
                payee: Payee::Household(a.household.clone()),
                reference: Arc::from(format!("corrects {}", a.corrects)),
                amount: a.amount,
                basis: Cow::Owned(a.reason.clone()),
            });
        }
        if policy.no_double_benefit {
            for p in &payouts {
                if let Payee::Household(h) = &p.payee {
                    if pool_members.contains(h.as_str()) {
                        return Err(Error::rule(
                            Rule::NoDoubleBenefit,
                            scope,
                            format!(
                                "household {h} is paid {} from a centralized-station pool this month and would also get {} {} from the village",
                                "its share", p.line, p.amount
                            ),
                        ));
                    }
                }
            }
        }
        let payouts_total = sum(payouts.iter().map(|p| p.amount))?;
        if payouts_total > cash {
            let short = sub(payouts_total, cash)?;
            if policy.cash_on_hand {
                return Err(Error::rule(
                    Rule::CashOnHand,
                    scope,
                    format!(
                        "payouts {payouts_total} exceed cash on hand {cash} (opening {} + income {income_total} + advance {advance} − advance settled {advance_repaid}); short by {short}: record a county advance of at least {short} or defer payments",
                        prev.balance
                    ),
                ));
            }
            notes.push(format!("overdrawn by {short} (CASH_ON_HAND disabled)"));
        }
        let remaining = sub(cash, payouts_total)?;
        let reserve = reserve_part.min(remaining.max(Fen::ZERO));
        let carry_over = sub(remaining, reserve)?;
        Ok(VillageStatement {
            village: code.clone(),
            month,
            provisional,
            plan_state,
            opening_balance: prev.balance,
            income,
            income_total,
            advance,
            advance_repaid,
            advance_outstanding,
            cash,
            payouts,
            payouts_total,
            reserve,
            carry_over,
            closing_balance: remaining,
            notes,
        })
    }

    fn payouts(
        &self,
        plan: &VillagePlan,
        month: YearMonth,
        scope: &dyn fmt::Display,
        out: &mut Vec<Payout>,
    ) -> Result<(), Error> {
        let policy = &self.input.policy;
        let code = plan.village.as_str();
        let jobs = self.jobs.get(code).map_or(&[][..], Vec::as_slice);
        let days = Days::of(month);
        // (holder, job) of the jobs paid so far: a village has tens of jobs, so a scan beats hashing.
        let mut holders: Vec<(&str, &str)> = Vec::with_capacity(jobs.len());
        for jr in jobs.iter().filter(|j| job_active(j.job, days)) {
            let j = jr.job;
            if policy.one_job_per_household {
                let held = holders.iter().find(|(h, _)| *h == j.holder.as_str());
                if let Some((_, other)) = held {
                    return Err(Error::rule(
                        Rule::OneJobPerHousehold,
                        scope,
                        format!(
                            "household {} holds job {other} and job {} in {month}",
                            j.holder, j.id
                        ),
                    ));
                }
                holders.push((j.holder.as_str(), j.id.as_str()));
            }
            let hh = match jr.holder {
                Some(hh) if jr.holder_in_village => self.status_allows(hh, plan, month, scope)?,
                _ => self.eligible(&j.holder, plan, month, scope)?,
            };
            if hh.labour == LabourCapacity::None {
                return Err(Error::rule(
                    Rule::JobHolderCapacity,
                    scope,
                    format!(
                        "job {} is held by household {}, which has no labour capacity",
                        j.id, j.holder
                    ),
                ));
            }
            if let Some(born) = hh.birth_year {
                let age = month.year() - born;
                if age < policy.job_min_age || age > policy.job_max_age {
                    return Err(Error::rule(
                        Rule::JobHolderCapacity,
                        scope,
                        format!(
                            "job {} holder {} is {age} in {}; working age is {}-{}",
                            j.id,
                            j.holder,
                            month.year(),
                            policy.job_min_age,
                            policy.job_max_age
                        ),
                    ));
                }
            }
            let (amount, basis) = match self.attendance.get(&(j.id.as_str(), month)) {
                Some(a) if a.worked == a.required => (
                    j.monthly_wage,
                    Cow::Borrowed("monthly wage, full attendance"),
                ),
                Some(a) => (
                    prorate(j.monthly_wage, a.worked, a.required)?,
                    Cow::Owned(format!(
                        "monthly wage {} × attendance {}/{} (half-up)",
                        j.monthly_wage, a.worked, a.required
                    )),
                ),
                None if policy.require_attendance => (
                    Fen::ZERO,
                    Cow::Borrowed("no attendance record: nothing paid (policy.require_attendance)"),
                ),
                None => (
                    j.monthly_wage,
                    Cow::Borrowed("monthly wage (no attendance record: full)"),
                ),
            };
            if amount > Fen::ZERO {
                out.push(Payout {
                    line: PlanLine::JobWages,
                    payee: Payee::Household(j.holder.clone()),
                    reference: jr.reference.clone(),
                    amount,
                    basis,
                });
            }
        }
        let mut temp: Vec<(&HouseholdId, Fen)> = Vec::new();
        for t in plan.temp_labour.iter().filter(|t| t.month == month) {
            self.eligible(&t.household, plan, month, scope)?;
            temp.push((&t.household, t.amount));
            out.push(Payout {
                line: PlanLine::TempLabour,
                payee: Payee::Household(t.household.clone()),
                reference: Arc::from(t.work.as_str()),
                amount: t.amount,
                basis: Cow::Borrowed("plan TEMP_LABOUR entry"),
            });
        }
        if policy.no_cash_handouts && temp.len() >= 2 {
            let registered = self.village_households.get(code).copied().unwrap_or(0);
            let paid: HashSet<&str> = temp.iter().map(|(h, _)| h.as_str()).collect();
            let equal = temp.iter().all(|(_, a)| *a == temp[0].1);
            if equal && paid.len() >= registered {
                return Err(Error::rule(
                    Rule::NoCashHandouts,
                    scope,
                    format!(
                        "TEMP_LABOUR pays the same {} to all {registered} households of the village: an equal handout needs individually approved REWARD_SUBSIDY payments",
                        temp[0].1
                    ),
                ));
            }
        }
        for p in plan.projects.iter().filter(|p| p.month == month) {
            out.push(Payout {
                line: PlanLine::SmallProject,
                payee: Payee::Other(p.payee.clone()),
                reference: Arc::from(p.project.as_str()),
                amount: p.amount,
                basis: Cow::Borrowed("plan SMALL_PROJECT entry"),
            });
        }
        for r in plan.rewards.iter().filter(|r| r.month == month) {
            self.eligible(&r.household, plan, month, scope)?;
            out.push(Payout {
                line: PlanLine::RewardSubsidy,
                payee: Payee::Household(r.household.clone()),
                reference: Arc::from(r.approval.as_str()),
                amount: r.amount,
                basis: Cow::Owned(if r.reason.is_empty() {
                    "individually approved REWARD_SUBSIDY".to_owned()
                } else {
                    format!("individually approved REWARD_SUBSIDY: {}", r.reason)
                }),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod job_month_tests {
    use super::*;
    use crate::domain::{HouseholdId, JobId, VillageId};

    fn job(from: NaiveDate, until: Option<NaiveDate>) -> JobPost {
        JobPost {
            id: JobId::new("J"),
            village: VillageId::new("V"),
            title: "保洁员".into(),
            holder: HouseholdId::new("H"),
            monthly_wage: Fen(60_000),
            from,
            until,
        }
    }

    /// The shared month the validator reports is the first month the allocator pays both jobs in.
    #[test]
    fn first_month_paid_together_agrees_with_the_months_jobs_are_paid() {
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let days: Vec<NaiveDate> = (0..6)
            .map(|k| start + chrono::Duration::days(k * 23))
            .collect();
        let mut ends: Vec<Option<NaiveDate>> = days.iter().copied().map(Some).collect();
        ends.push(None);
        let months: Vec<YearMonth> =
            std::iter::successors(Some(YearMonth::of(start)), |m| Some(m.next()))
                .take(8)
                .collect();
        let mut collisions = 0;
        for &af in &days {
            for &au in &ends {
                for &bf in &days {
                    for &bu in &ends {
                        let (a, b) = (job(af, au), job(bf, bu));
                        let expected = months
                            .iter()
                            .copied()
                            .find(|m| job_active(&a, Days::of(*m)) && job_active(&b, Days::of(*m)));
                        let got = first_month_paid_together(&a, &b);
                        assert_eq!(got, expected, "{af} {au:?} / {bf} {bu:?}");
                        assert_eq!(got, first_month_paid_together(&b, &a));
                        collisions += usize::from(got.is_some());
                    }
                }
            }
        }
        assert!(collisions > 0 && collisions < 6 * 7 * 6 * 7, "{collisions}");
    }
}
