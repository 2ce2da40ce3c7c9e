//! A village's annual plan drafted in the browser: its income and line budgets, and the planned
//! payments of its lines (temporary labour, small projects, approved rewards).
//!
//! The plan in force for a village and year is the one saved in the browser, else the deployment
//! file's. A plan is changed only while it is a draft (docs/policy.md section 6: a plan further on
//! is returned to DRAFT and deliberated again). Every change is checked by the money core as a
//! month's run would check it, so a plan the allocator would refuse is never saved, and each
//! problem is keyed by the form field it concerns.

use super::households::{self, Problem};
use super::Error;
use crate::allocate::{
    Book, PlanBreach, PlanBudget, PlanLine, RewardPayment, Rule, SmallProject, TempLabour,
    VillagePlan,
};
use crate::config::Deployment;
use crate::domain::{Fen, HouseholdId, PlanState, VillageId, YearMonth};
use crate::store::{PlanEntryRow, PlanRow, PlanWrite, Store, StoredPlan};
use chrono::Utc;
use std::borrow::Cow;
use tracing::info;

/// Every problem key the plan forms may give (each has its texts in both languages).
pub const PROBLEM_KEYS: [&str; 16] = [
    "plan_edit.err.amount_bad",
    "plan_edit.err.net_empty",
    "plan_edit.err.within_income",
    "plan_edit.err.labour_share",
    "plan_edit.err.line_budget",
    "plan_edit.err.rule",
    "plan_edit.err.not_draft",
    "plan_edit.err.year_bad",
    "plan_edit.err.line_bad",
    "plan_edit.err.month_bad",
    "plan_edit.err.month_outside",
    "plan_edit.err.household_unknown",
    "plan_edit.err.payee_empty",
    "plan_edit.err.description_empty",
    "plan_edit.err.approval_empty",
    "plan_edit.err.month_paid",
];

/// The lines an entry may belong to (job wages come from the jobs, the reserve is not spent).
pub const ENTRY_LINES: [PlanLine; 3] = [
    PlanLine::TempLabour,
    PlanLine::SmallProject,
    PlanLine::RewardSubsidy,
];

fn problem(field: &str, key: &str, args: &[(&str, &str)]) -> Problem {
    Problem {
        field: field.to_owned(),
        key: format!("plan_edit.err.{key}"),
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.trim().to_owned()))
            .collect(),
    }
}

/// What the plan's form holds, as typed (amounts in yuan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanInput {
    pub expected_net: String,
    pub expected_gross: String,
    pub job_wages: String,
    pub temp_labour: String,
    pub small_project: String,
    pub reward_subsidy: String,
    pub reserve: String,
    pub status_change_immediate: bool,
}

impl PlanInput {
    /// The form filled with a plan's figures.
    pub fn of(p: &VillagePlan) -> PlanInput {
        let yuan = |f: Fen| f.to_string();
        PlanInput {
            expected_net: yuan(p.expected_net),
            expected_gross: p.expected_gross.map(yuan).unwrap_or_default(),
            job_wages: yuan(p.lines.job_wages),
            temp_labour: yuan(p.lines.temp_labour),
            small_project: yuan(p.lines.small_project),
            reward_subsidy: yuan(p.lines.reward_subsidy),
            reserve: yuan(p.lines.reserve),
            status_change_immediate: p.status_change_immediate,
        }
    }
}

/// What the form of a planned payment holds, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryInput {
    /// TEMP_LABOUR, SMALL_PROJECT or REWARD_SUBSIDY.
    pub line: String,
    pub month: String,
    /// The household paid (temporary labour, a reward).
    pub household: String,
    /// Who is paid for a small project.
    pub payee: String,
    pub amount: String,
    /// The work done, the project, or the reason of a reward.
    pub description: String,
    /// The county's approval reference of a reward.
    pub approval: String,
}

/// The form field a plan line's budget is typed in.
pub fn line_field(line: PlanLine) -> &'static str {
    match line {
        PlanLine::JobWages => "job_wages",
        PlanLine::TempLabour => "temp_labour",
        PlanLine::SmallProject => "small_project",
        PlanLine::RewardSubsidy => "reward_subsidy",
        PlanLine::Reserve | PlanLine::Adjustment => "reserve",
    }
}

/// The plan of `village` for `year` in force, and whether it was saved in the browser (with its
/// entries' ids) or comes from the deployment file.
pub async fn plan_of(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    year: i32,
) -> Result<Option<(VillagePlan, Option<StoredPlan>)>, Error> {
    if let Some(stored) = store.stored_plan(village.as_str(), year).await? {
        return Ok(Some((village_plan(&stored), Some(stored))));
    }
    Ok(deployment
        .plans
        .iter()
        .find(|p| &p.village == village && p.year == year)
        .map(|p| (p.clone(), None)))
}

/// The years `village` has a plan for, in the browser or in the file.
pub async fn plan_years(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
) -> Result<Vec<i32>, Error> {
    let mut years = store.stored_plan_years(village.as_str()).await?;
    years.extend(
        deployment
            .plans
            .iter()
            .filter(|p| &p.village == village)
            .map(|p| p.year),
    );
    years.sort_unstable();
    years.dedup();
    Ok(years)
}

/// A plan saved in the browser as the money core reads it.
pub fn village_plan(s: &StoredPlan) -> VillagePlan {
    let p = &s.plan;
    let mut plan = VillagePlan {
        village: VillageId::new(&p.village),
        year: p.year,
        expected_net: p.expected_net,
        expected_gross: p.expected_gross,
        lines: PlanBudget {
            job_wages: p.job_wages,
            temp_labour: p.temp_labour,
            small_project: p.small_project,
            reward_subsidy: p.reward_subsidy,
            reserve: p.reserve,
        },
        temp_labour: Vec::new(),
        projects: Vec::new(),
        rewards: Vec::new(),
        status_change_immediate: p.status_change_immediate,
    };
    for e in &s.entries {
        push_entry(&mut plan, e);
    }
    plan
}

fn push_entry(plan: &mut VillagePlan, e: &PlanEntryRow) {
    let household = || HouseholdId::new(e.household.as_deref().unwrap_or_default());
    match e.line {
        PlanLine::SmallProject => plan.projects.push(SmallProject {
            month: e.month,
            amount: e.amount,
            project: e.description.clone(),
            payee: e.payee.clone().unwrap_or_default(),
        }),
        PlanLine::RewardSubsidy => plan.rewards.push(RewardPayment {
            household: household(),
            month: e.month,
            amount: e.amount,
            approval: e.approval.clone().unwrap_or_default(),
            reason: e.description.clone(),
        }),
        _ => plan.temp_labour.push(TempLabour {
            household: household(),
            month: e.month,
            amount: e.amount,
            work: e.description.clone(),
        }),
    }
}

/// A file plan's entries, to be copied into the registry when the plan is first saved there.
fn seed_entries(p: &VillagePlan, who: &str) -> Vec<PlanEntryRow> {
    let at = Utc::now();
    let row = |line,
               month,
               household: Option<&HouseholdId>,
               payee: Option<&str>,
               amount,
               text: &str,
               approval: Option<&str>| PlanEntryRow {
        id: 0,
        village: p.village.to_string(),
        year: p.year,
        line,
        month,
        household: household.map(ToString::to_string),
        payee: payee.map(str::to_owned),
        amount,
        description: text.to_owned(),
        approval: approval.map(str::to_owned),
        at,
        by: who.to_owned(),
    };
    let mut out: Vec<PlanEntryRow> = p
        .temp_labour
        .iter()
        .map(|t| {
            row(
                PlanLine::TempLabour,
                t.month,
                Some(&t.household),
                None,
                t.amount,
                &t.work,
                None,
            )
        })
        .collect();
    out.extend(p.projects.iter().map(|s| {
        row(
            PlanLine::SmallProject,
            s.month,
            None,
            Some(&s.payee),
            s.amount,
            &s.project,
            None,
        )
    }));
    out.extend(p.rewards.iter().map(|r| {
        row(
            PlanLine::RewardSubsidy,
            r.month,
            Some(&r.household),
            None,
            r.amount,
            &r.reason,
            Some(&r.approval),
        )
    }));
    out
}

/// The registry's plans laid over the file's: a plan saved in the browser replaces the file's
/// plan of the same village and year.
pub fn overlay(d: &mut Deployment, stored: &[StoredPlan]) {
    if stored.is_empty() {
        return;
    }
    let saved: std::collections::HashSet<(&str, i32)> = stored
        .iter()
        .map(|s| (s.plan.village.as_str(), s.plan.year))
        .collect();
    d.plans
        .retain(|p| !saved.contains(&(p.village.as_str(), p.year)));
    d.plans.extend(stored.iter().map(village_plan));
}

/// Checks `candidate` as a month's run would (the whole book, with the candidate in place of the
/// village's plan of its year): the problems, each on its field, or none.
async fn check(
    store: &Store,
    deployment: &Deployment,
    candidate: VillagePlan,
    entry_form: bool,
) -> Result<Vec<Problem>, Error> {
    let mut d = households::effective(store, deployment).await?.into_owned();
    d.plans
        .retain(|p| !(p.village == candidate.village && p.year == candidate.year));
    let (village, year) = (candidate.village.clone(), candidate.year);
    d.plans.push(candidate);
    let Err(e) = Book::new(&d.allocation_input()) else {
        return Ok(Vec::new());
    };
    let figures = |b: &PlanBreach| {
        [
            ("planned".to_owned(), b.planned.to_string()),
            ("limit".to_owned(), b.limit.to_string()),
        ]
    };
    let ours = e
        .plan_breached()
        .filter(|b| b.village == village && b.year == year);
    Ok(vec![match (e.violated(), ours) {
        (Some(Rule::PlanWithinIncome), Some(b)) => Problem {
            field: "expected_net".into(),
            key: "plan_edit.err.within_income".into(),
            args: figures(b).into(),
        },
        (Some(Rule::LabourShare), Some(b)) => Problem {
            field: "job_wages".into(),
            key: "plan_edit.err.labour_share".into(),
            args: figures(b).into(),
        },
        (Some(Rule::PlanLineBudget), Some(b)) => {
            let line = b.line.unwrap_or(PlanLine::Reserve);
            let mut args = figures(b).to_vec();
            args.push(("line".to_owned(), line.code().to_owned()));
            Problem {
                field: if entry_form {
                    "amount"
                } else {
                    line_field(line)
                }
                .into(),
                key: "plan_edit.err.line_budget".into(),
                args,
            }
        }
        _ => problem("plan", "rule", &[("value", &e.to_string())]),
    }])
}

fn not_draft(field: &str, state: PlanState) -> Vec<Problem> {
    vec![problem(field, "not_draft", &[("value", state.code())])]
}

fn village_declared(deployment: &Deployment, village: &VillageId) -> Result<(), Error> {
    if deployment.villages.iter().any(|v| &v.code == village) {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "village {village} is not declared"
        )))
    }
}

/// A plan year the forms accept.
pub fn year_ok(year: i32) -> bool {
    (2014..=2100).contains(&year)
}

/// Saves the income and line budgets of `village`'s plan of `year` (created on first save; a file
/// plan is copied in with its entries), while the plan is a draft. Anything the allocator would
/// refuse is refused, next to its field; nothing is stored then.
pub async fn save_plan(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    year: i32,
    input: &PlanInput,
    who: &str,
) -> Result<Result<(), Vec<Problem>>, Error> {
    village_declared(deployment, village)?;
    if !year_ok(year) {
        return Ok(Err(vec![problem(
            "plan",
            "year_bad",
            &[("value", &year.to_string())],
        )]));
    }
    let mut problems = Vec::new();
    let mut amount = |field: &str, text: &str, optional: bool| -> Option<Option<Fen>> {
        match text.trim() {
            "" if optional => Some(None),
            "" if field == "expected_net" => {
                problems.push(problem(field, "net_empty", &[]));
                None
            }
            "" => Some(Some(Fen::ZERO)),
            t => match Fen::parse_yuan(t) {
                Ok(f) if !f.is_negative() => Some(Some(f)),
                _ => {
                    problems.push(problem(field, "amount_bad", &[("value", t)]));
                    None
                }
            },
        }
    };
    let net = amount("expected_net", &input.expected_net, false);
    let gross = amount("expected_gross", &input.expected_gross, true);
    let job_wages = amount("job_wages", &input.job_wages, false);
    let temp_labour = amount("temp_labour", &input.temp_labour, false);
    let small_project = amount("small_project", &input.small_project, false);
    let reward_subsidy = amount("reward_subsidy", &input.reward_subsidy, false);
    let reserve = amount("reserve", &input.reserve, false);
    let (
        Some(Some(expected_net)),
        Some(expected_gross),
        Some(Some(job_wages)),
        Some(Some(temp_labour)),
        Some(Some(small_project)),
        Some(Some(reward_subsidy)),
        Some(Some(reserve)),
    ) = (
        net,
        gross,
        job_wages,
        temp_labour,
        small_project,
        reward_subsidy,
        reserve,
    )
    else {
        return Ok(Err(problems));
    };
    let current = plan_of(store, deployment, village, year).await?;
    let state = store.plan_state(village.as_str(), year).await?;
    if state != PlanState::Draft {
        return Ok(Err(not_draft("plan", state)));
    }
    let mut candidate = match &current {
        Some((p, _)) => p.clone(),
        None => VillagePlan {
            village: village.clone(),
            year,
            expected_net,
            expected_gross: None,
            lines: PlanBudget::default(),
            temp_labour: Vec::new(),
            projects: Vec::new(),
            rewards: Vec::new(),
            status_change_immediate: false,
        },
    };
    candidate.expected_net = expected_net;
    candidate.expected_gross = expected_gross;
    candidate.lines = PlanBudget {
        job_wages,
        temp_labour,
        small_project,
        reward_subsidy,
        reserve,
    };
    candidate.status_change_immediate = input.status_change_immediate;
    let seed = match &current {
        Some((file_plan, None)) => seed_entries(file_plan, who),
        _ => Vec::new(),
    };
    let problems = check(store, deployment, candidate, false).await?;
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let row = PlanRow {
        village: village.to_string(),
        year,
        expected_net,
        expected_gross,
        job_wages,
        temp_labour,
        small_project,
        reward_subsidy,
        reserve,
        status_change_immediate: input.status_change_immediate,
        at: Utc::now(),
        by: who.to_owned(),
    };
    match store.save_plan(&row, &seed).await? {
        PlanWrite::NotDraft(state) => return Ok(Err(not_draft("plan", state))),
        PlanWrite::Done | PlanWrite::MonthPaid | PlanWrite::NoEntry => {}
    }
    info!(%village, year, %expected_net, who, "plan saved");
    Ok(Ok(()))
}

/// Adds a planned payment to `village`'s plan of `year` while it is a draft, in a month of the
/// plan's year not yet paid: temporary labour for a household of the village with the work done,
/// a small project with its payee, or a reward with the county's approval reference. A line's
/// entries stay within its budget.
pub async fn add_entry(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    year: i32,
    input: &EntryInput,
    who: &str,
) -> Result<Result<(), Vec<Problem>>, Error> {
    village_declared(deployment, village)?;
    let mut problems = Vec::new();
    let line = PlanLine::parse(input.line.trim()).filter(|l| ENTRY_LINES.contains(l));
    let Some(line) = line else {
        return Ok(Err(vec![problem(
            "line",
            "line_bad",
            &[("value", &input.line)],
        )]));
    };
    let month = match input.month.trim().parse::<YearMonth>() {
        Ok(m) if m.year() == year => Some(m),
        Ok(_) => {
            problems.push(problem(
                "month",
                "month_outside",
                &[("value", &input.month), ("year", &year.to_string())],
            ));
            None
        }
        Err(_) => {
            problems.push(problem("month", "month_bad", &[("value", &input.month)]));
            None
        }
    };
    let amount = match Fen::parse_yuan(input.amount.trim()) {
        Ok(a) if a > Fen::ZERO => Some(a),
        _ => {
            problems.push(problem("amount", "amount_bad", &[("value", &input.amount)]));
            None
        }
    };
    if input.description.trim().is_empty() {
        problems.push(problem("description", "description_empty", &[]));
    }
    let household = match line {
        PlanLine::SmallProject => {
            if input.payee.trim().is_empty() {
                problems.push(problem("payee", "payee_empty", &[]));
            }
            None
        }
        _ => {
            let id = HouseholdId::new(input.household.trim());
            if households::live_household(store, deployment, village, &id)
                .await?
                .is_none()
            {
                problems.push(problem(
                    "household",
                    "household_unknown",
                    &[("value", &input.household)],
                ));
            }
            Some(id)
        }
    };
    if line == PlanLine::RewardSubsidy && input.approval.trim().is_empty() {
        problems.push(problem("approval", "approval_empty", &[]));
    }
    let (Some(month), Some(amount), true) = (month, amount, problems.is_empty()) else {
        return Ok(Err(problems));
    };
    let state = store.plan_state(village.as_str(), year).await?;
    if state != PlanState::Draft {
        return Ok(Err(not_draft("entry", state)));
    }
    let Some((mut candidate, stored)) = plan_of(store, deployment, village, year).await? else {
        return Ok(Err(vec![problem("entry", "net_empty", &[])]));
    };
    let entry = PlanEntryRow {
        id: 0,
        village: village.to_string(),
        year,
        line,
        month,
        household: household.map(|h| h.to_string()),
        payee: (line == PlanLine::SmallProject).then(|| input.payee.trim().to_owned()),
        amount,
        description: input.description.trim().to_owned(),
        approval: (line == PlanLine::RewardSubsidy).then(|| input.approval.trim().to_owned()),
        at: Utc::now(),
        by: who.to_owned(),
    };
    let file_plan = stored.is_none().then(|| candidate.clone());
    push_entry(&mut candidate, &entry);
    let problems = check(store, deployment, candidate, true).await?;
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    if let Some(file_plan) = file_plan {
        // The file's plan comes into the registry first, entries and all.
        if let Err(problems) = save_plan(
            store,
            deployment,
            village,
            year,
            &PlanInput::of(&file_plan),
            who,
        )
        .await?
        {
            return Ok(Err(problems));
        }
    }
    match store.add_plan_entry(&entry).await? {
        PlanWrite::Done | PlanWrite::NoEntry => {}
        PlanWrite::NotDraft(state) => return Ok(Err(not_draft("entry", state))),
        PlanWrite::MonthPaid => {
            return Ok(Err(vec![problem(
                "month",
                "month_paid",
                &[("value", &month.to_string())],
            )]))
        }
    }
    info!(%village, year, %line, %month, %amount, who, "plan entry added");
    Ok(Ok(()))
}

/// Removes a planned payment saved in the browser, while the plan is a draft and its month is not
/// paid (removing a payment never breaks a rule: budgets and shares are minimums or maximums of
/// the plan's own figures).
pub async fn remove_entry(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    year: i32,
    id: i64,
    who: &str,
) -> Result<Result<(), Vec<Problem>>, Error> {
    village_declared(deployment, village)?;
    let month = store
        .stored_plan(village.as_str(), year)
        .await?
        .and_then(|p| p.entries.into_iter().find(|e| e.id == id))
        .map(|e| e.month.to_string())
        .unwrap_or_default();
    match store
        .remove_plan_entry(village.as_str(), year, id, who, Utc::now())
        .await?
    {
        PlanWrite::Done => {
            info!(%village, year, id, who, "plan entry removed");
            Ok(Ok(()))
        }
        PlanWrite::NotDraft(state) => Ok(Err(not_draft("entry", state))),
        PlanWrite::MonthPaid => Ok(Err(vec![problem(
            "entry",
            "month_paid",
            &[("value", &month)],
        )])),
        PlanWrite::NoEntry => Err(Error::NotFound(format!(
            "plan {year} of village {village} has no entry {id}"
        ))),
    }
}

/// The plans in force as the money core reads them: the file's with the registry's laid over.
pub async fn with_stored<'a>(
    store: &Store,
    deployment: Cow<'a, Deployment>,
) -> Result<Cow<'a, Deployment>, Error> {
    let stored = store.stored_plans().await?;
    if stored.is_empty() {
        return Ok(deployment);
    }
    let mut d = deployment.into_owned();
    overlay(&mut d, &stored);
    Ok(Cow::Owned(d))
}
