//! The village ledger service: loads a month's inputs (energy, carry-over, plan states), runs the money
//! core and records the result; moves annual plans through their workflow; locks paid months.
//!
//! All rules live in `allocate` (money) and [`PlanState::can_go_to`] (workflow); all SQL in `store`.
//! A run that breaks a rule records nothing; a paid month is never rewritten.

pub mod demo;
pub mod export;
pub mod households;
pub mod jobs;
pub mod plans;
pub mod pools;
pub mod roster;
pub mod steps;
#[doc(hidden)]
pub mod testing;

use crate::allocate::{self, Book, Carry, MonthRun, Payee, PlanState};
use crate::config::Deployment;
use crate::domain::{MonthEnergy, StationId, StationKind, VillageId, YearMonth};
use crate::store::{self, Store, MONTH_PAID};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Allocate(#[from] allocate::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0} is paid and locked: corrections go into a later month as adjustments")]
    Locked(YearMonth),
    #[error("{month} cannot run before {missing}: the ledger has {last} but not {missing} (run the months in order)")]
    Gap {
        month: YearMonth,
        missing: YearMonth,
        last: String,
    },
    #[error("{0}")]
    Workflow(String),
    #[error("energy for station {station} in {month}: {detail}")]
    Energy {
        station: StationId,
        month: YearMonth,
        detail: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("stored ledger data is unreadable: {0}")]
    Corrupt(String),
    #[error("cannot encode the run of {month} for its fingerprint: {detail}")]
    Fingerprint { month: YearMonth, detail: String },
    #[error("{0}")]
    Export(String),
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// A stable name of the kind of refusal, for machine-readable output.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Allocate(_) => "rule_violation",
            Error::Store(_) => "store",
            Error::Locked(_) => "locked",
            Error::Gap { .. } => "gap",
            Error::Workflow(_) => "workflow",
            Error::Energy { .. } => "energy",
            Error::NotFound(_) => "not_found",
            Error::Corrupt(_) => "corrupt",
            Error::Fingerprint { .. } => "fingerprint",
            Error::Export(_) => "export",
            Error::Config(_) => "config",
        }
    }
}

/// Where a station's month of energy comes from. Kept to this one seam so that the accountable
/// figure (settlement when imported, metered otherwise) can be swapped in without touching the ledger.
#[async_trait::async_trait]
pub trait EnergySource: Send + Sync + std::fmt::Debug {
    async fn month_energy(
        &self,
        station: &StationId,
        month: YearMonth,
    ) -> Result<MonthEnergy, Error>;
}

/// The accountable figure from energy accounting: the grid settlement when imported, else the
/// metered figure from lifetime counters (provisional).
#[derive(Debug, Clone)]
pub struct AccountedEnergy {
    pub store: Store,
    pub deployment: Arc<Deployment>,
}

#[async_trait::async_trait]
impl EnergySource for AccountedEnergy {
    async fn month_energy(
        &self,
        station: &StationId,
        month: YearMonth,
    ) -> Result<MonthEnergy, Error> {
        crate::energy::month_energy(&self.store, &self.deployment, station, month)
            .await
            .map_err(|e| Error::Energy {
                station: station.clone(),
                month,
                detail: e.to_string(),
            })
    }
}

/// The energy source the ledger uses.
pub fn energy_source(store: Store, deployment: Arc<Deployment>) -> Arc<dyn EnergySource> {
    Arc::new(AccountedEnergy { store, deployment })
}

/// The fingerprints of one run: what the month records and reviews are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The SHA-256 of the run's JSON, in hex (64 characters).
    pub sha256: String,
    /// The CRC32 of the same JSON (8 hex characters), as months recorded before SHA-256 carry:
    /// only to recognise an unchanged re-run of such a month, never stored for a new run.
    pub legacy_crc32: String,
}

/// A fingerprint of a run, to tell an unchanged re-run from a changed one in the audit trail and
/// to bind a village's review to the run it saw. A run that cannot be encoded is an error, never
/// the fingerprint of an empty text.
pub fn fingerprint(run: &MonthRun) -> Result<Fingerprint, Error> {
    use sha2::Digest as _;
    let text = serde_json::to_string(run).map_err(|e| Error::Fingerprint {
        month: run.month,
        detail: e.to_string(),
    })?;
    Ok(Fingerprint {
        sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())),
        legacy_crc32: format!("{:08x}", crc32fast::hash(text.as_bytes())),
    })
}

/// The carry-over a month starts from: the previous month's, or for the ledger's first month the
/// villages' opening balances (nothing where none was set).
pub async fn opening_carry(store: &Store, month: YearMonth) -> Result<Carry, Error> {
    match store.ledger_month(month.prev()).await? {
        Some(row) => serde_json::from_str(&row.carry)
            .map_err(|e| Error::Corrupt(format!("carry-over of {}: {e}", month.prev()))),
        None => match store.ledger_months_before(month).await?.first() {
            Some(last) => Err(Error::Gap {
                month,
                missing: month.prev(),
                last: last.clone(),
            }),
            None => {
                let mut carry = Carry::default();
                for o in store.opening_balances().await? {
                    carry.villages.insert(
                        VillageId::new(&o.village),
                        allocate::VillageCarry {
                            balance: o.balance,
                            advance_outstanding: o.advance_outstanding,
                        },
                    );
                }
                Ok(carry)
            }
        },
    }
}

/// A problem of a county form, its key under `{form}.err.`, with the value that was wrong.
fn form_problem(form: &str, field: &str, key: &str, value: &str) -> households::Problem {
    households::Problem {
        field: field.to_owned(),
        key: format!("{form}.err.{key}"),
        args: vec![("value".to_owned(), value.trim().to_owned())],
    }
}

/// The fields every posting of money into a month has, each as (form field, typed text): the
/// month it is posted in, an amount above zero, and a text naming it (what it pays for, the
/// county's reference) with the key of its problem when empty. Problems are keyed under
/// `{form}.err.`.
struct PostingFields<'a> {
    form: &'a str,
    month: (&'a str, &'a str),
    amount: (&'a str, &'a str),
    text: (&'a str, &'a str, &'a str),
}

impl PostingFields<'_> {
    fn check(
        &self,
        problems: &mut Vec<households::Problem>,
    ) -> Option<(YearMonth, crate::domain::Fen)> {
        let (month_field, month) = self.month;
        let (amount_field, amount) = self.amount;
        let (text_field, text, text_key) = self.text;
        let month_parsed = month.trim().parse::<YearMonth>().ok();
        if month_parsed.is_none() {
            problems.push(form_problem(self.form, month_field, "month_bad", month));
        }
        let amount_parsed = match crate::domain::Fen::parse_yuan(amount.trim()) {
            Ok(a) if a > crate::domain::Fen::ZERO => Some(a),
            _ => {
                problems.push(form_problem(self.form, amount_field, "amount_bad", amount));
                None
            }
        };
        if text.trim().is_empty() {
            problems.push(form_problem(self.form, text_field, text_key, ""));
        }
        match (month_parsed, amount_parsed) {
            (Some(m), Some(a)) if problems.is_empty() => Some((m, a)),
            _ => None,
        }
    }
}

/// Records national subsidy received for `station`, posted in `month` (which must not be paid:
/// a receipt in a paid month would never be counted), with what it pays for.
#[allow(clippy::too_many_arguments)]
pub async fn record_receipt(
    store: &Store,
    deployment: &Deployment,
    station: &str,
    month: &str,
    amount: &str,
    covers: &str,
    who: &str,
) -> Result<Result<(), Vec<households::Problem>>, Error> {
    let mut problems = Vec::new();
    if !deployment
        .stations
        .iter()
        .any(|s| s.id.as_str() == station.trim())
    {
        problems.push(form_problem(
            "receipt",
            "station",
            "station_unknown",
            station,
        ));
    }
    let fields = PostingFields {
        form: "receipt",
        month: ("receipt_month", month),
        amount: ("amount", amount),
        text: ("covers", covers, "covers_empty"),
    };
    let Some((month, amount)) = fields.check(&mut problems) else {
        return Ok(Err(problems));
    };
    let row = store::ReceiptRow {
        id: 0,
        station: station.trim().to_owned(),
        month,
        amount,
        covers: covers.trim().to_owned(),
        at: Utc::now(),
        by: who.to_owned(),
    };
    if !store.record_receipt(&row).await? {
        let month = month.to_string();
        return Ok(Err(vec![form_problem(
            "receipt",
            "receipt_month",
            "month_paid",
            &month,
        )]));
    }
    info!(station = %row.station, %month, %amount, who, "subsidy receipt recorded");
    Ok(Ok(()))
}

/// Records a county advance (垫付) to `village`, posted in `month` (not a paid one), with its
/// reference (the county's document).
#[allow(clippy::too_many_arguments)]
pub async fn record_advance(
    store: &Store,
    deployment: &Deployment,
    village: &str,
    month: &str,
    amount: &str,
    reference: &str,
    who: &str,
) -> Result<Result<(), Vec<households::Problem>>, Error> {
    let mut problems = Vec::new();
    if !deployment
        .villages
        .iter()
        .any(|v| v.code.as_str() == village.trim())
    {
        problems.push(form_problem(
            "advance",
            "village",
            "village_unknown",
            village,
        ));
    }
    let fields = PostingFields {
        form: "advance",
        month: ("advance_month", month),
        amount: ("advance_amount", amount),
        text: ("reference", reference, "reference_empty"),
    };
    let Some((month, amount)) = fields.check(&mut problems) else {
        return Ok(Err(problems));
    };
    let row = store::AdvanceRow {
        id: 0,
        village: village.trim().to_owned(),
        month,
        amount,
        reference: reference.trim().to_owned(),
        at: Utc::now(),
        by: who.to_owned(),
    };
    if !store.record_advance(&row).await? {
        let month = month.to_string();
        return Ok(Err(vec![form_problem(
            "advance",
            "advance_month",
            "month_paid",
            &month,
        )]));
    }
    info!(village = %row.village, %month, %amount, who, "county advance recorded");
    Ok(Ok(()))
}

/// Every problem key [`record_adjustment`] may give (each has its texts in both languages).
pub const ADJUST_PROBLEM_KEYS: [&str; 7] = [
    "adjust.err.household_unknown",
    "adjust.err.month_bad",
    "adjust.err.amount_bad",
    "adjust.err.reason_empty",
    "adjust.err.corrects_not_earlier",
    "adjust.err.plan_not_active",
    "adjust.err.month_paid",
];

/// Every problem key [`record_attendance`] may give.
pub const ATTENDANCE_PROBLEM_KEYS: [&str; 5] = [
    "attendance.err.month_bad",
    "attendance.err.count_bad",
    "attendance.err.more_than_required",
    "attendance.err.half_given",
    "attendance.err.month_paid",
];

/// One job's line of the attendance form, as typed: the job, days (or points) worked and
/// required. Both empty: no record for that job.
#[derive(Debug, Clone, Default)]
pub struct AttendanceInput {
    pub job: String,
    pub worked: String,
    pub required: String,
}

/// Records the attendance of `village`'s jobs in `month` (not a paid one): each line's days
/// worked of days required (or a score out of 100), all lines or none. Problems are keyed by the
/// line's field, `worked.{job}` or `required.{job}`; a job not held that month is not a line.
pub async fn record_attendance(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    month: &str,
    lines: &[AttendanceInput],
    who: &str,
) -> Result<Result<usize, Vec<households::Problem>>, Error> {
    if !deployment.villages.iter().any(|v| &v.code == village) {
        return Err(Error::NotFound(format!(
            "village {village} is not declared"
        )));
    }
    let problem =
        |field: &str, key: &str, value: &str| form_problem("attendance", field, key, value);
    let Ok(month_parsed) = month.trim().parse::<YearMonth>() else {
        return Ok(Err(vec![problem("attendance_month", "month_bad", month)]));
    };
    let jobs = households::village_jobs(store, deployment, village).await?;
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let at = Utc::now();
    for line in lines {
        let Some(job) = jobs.iter().find(|j| {
            j.id.as_str() == line.job.trim() && crate::allocate::job_paid_in(j, month_parsed)
        }) else {
            continue;
        };
        let (worked, required) = (line.worked.trim(), line.required.trim());
        if worked.is_empty() && required.is_empty() {
            continue;
        }
        let worked_field = format!("worked.{}", job.id);
        let required_field = format!("required.{}", job.id);
        if worked.is_empty() || required.is_empty() {
            let field = if worked.is_empty() {
                &worked_field
            } else {
                &required_field
            };
            problems.push(problem(field, "half_given", ""));
            continue;
        }
        let count = |text: &str| text.parse::<u32>().ok().filter(|n| *n <= 100);
        let (w, r) = (count(worked), count(required).filter(|n| *n > 0));
        if w.is_none() {
            problems.push(problem(&worked_field, "count_bad", worked));
        }
        if r.is_none() {
            problems.push(problem(&required_field, "count_bad", required));
        }
        let (Some(w), Some(r)) = (w, r) else {
            continue;
        };
        if w > r {
            problems.push(problem(&worked_field, "more_than_required", worked));
            continue;
        }
        rows.push(store::AttendanceRow {
            job: job.id.to_string(),
            month: month_parsed,
            village: village.to_string(),
            worked: w,
            required: r,
            at,
            by: who.to_owned(),
        });
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    if !store.record_attendance(&rows).await? {
        return Ok(Err(vec![problem(
            "attendance_month",
            "month_paid",
            &month_parsed.to_string(),
        )]));
    }
    info!(%village, month = %month_parsed, jobs = rows.len(), who, "attendance recorded");
    Ok(Ok(rows.len()))
}

/// What an adjustment form holds, as typed.
#[derive(Debug, Clone, Default)]
pub struct AdjustmentInput {
    pub household: String,
    pub month: String,
    pub corrects: String,
    pub amount: String,
    pub reason: String,
}

/// Records a top-up for a household of `village`, posted in `month` (not a paid one, and one
/// whose year's plan is active: payouts are made only then) for the earlier month it corrects,
/// with the reason. Anything the month's allocation would refuse is refused here, next to its
/// field, so one bad correction cannot stop the county's month.
pub async fn record_adjustment(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    input: &AdjustmentInput,
    who: &str,
) -> Result<Result<(), Vec<households::Problem>>, Error> {
    if !deployment.villages.iter().any(|v| &v.code == village) {
        return Err(Error::NotFound(format!(
            "village {village} is not declared"
        )));
    }
    let problem = |field: &str, key: &str, value: &str| form_problem("adjust", field, key, value);
    let mut problems = Vec::new();
    let household = crate::domain::HouseholdId::new(input.household.trim());
    if households::live_household(store, deployment, village, &household)
        .await?
        .is_none()
    {
        problems.push(problem("household", "household_unknown", &input.household));
    }
    let corrects = input.corrects.trim().parse::<YearMonth>().ok();
    if corrects.is_none() {
        problems.push(problem("corrects", "month_bad", &input.corrects));
    }
    let fields = PostingFields {
        form: "adjust",
        month: ("adjust_month", &input.month),
        amount: ("adjust_amount", &input.amount),
        text: ("reason", &input.reason, "reason_empty"),
    };
    let checked = fields.check(&mut problems);
    let (Some((month, amount)), Some(corrects)) = (checked, corrects) else {
        return Ok(Err(problems));
    };
    if corrects >= month {
        return Ok(Err(vec![problem(
            "corrects",
            "corrects_not_earlier",
            &input.corrects,
        )]));
    }
    if store.plan_state(village.as_str(), month.year()).await? != PlanState::Active {
        return Ok(Err(vec![problem(
            "adjust_month",
            "plan_not_active",
            &month.to_string(),
        )]));
    }
    let row = store::AdjustmentRow {
        id: 0,
        village: village.to_string(),
        month,
        household: household.to_string(),
        corrects,
        amount,
        reason: input.reason.trim().to_owned(),
        at: Utc::now(),
        by: who.to_owned(),
    };
    if !store.record_adjustment(&row).await? {
        return Ok(Err(vec![problem(
            "adjust_month",
            "month_paid",
            &month.to_string(),
        )]));
    }
    info!(%village, household = %row.household, %month, %amount, who, "payout adjustment recorded");
    Ok(Ok(()))
}

/// Sets what a village's PV account held when the ledger began (and the county advances still
/// owed then), from the bank statement named in `note`: refused once the first month is recorded.
pub async fn set_opening_balance(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    balance: &str,
    advance_outstanding: &str,
    note: &str,
    who: &str,
) -> Result<Result<(), Vec<households::Problem>>, Error> {
    let problem = |field: &str, key: &str, value: &str| form_problem("opening", field, key, value);
    if !deployment.villages.iter().any(|v| &v.code == village) {
        return Err(Error::NotFound(format!(
            "village {village} is not declared"
        )));
    }
    let mut problems = Vec::new();
    let mut amount = |field: &str, text: &str| match text.trim() {
        "" => Some(crate::domain::Fen::ZERO),
        t => match crate::domain::Fen::parse_yuan(t) {
            Ok(f) if !f.is_negative() => Some(f),
            _ => {
                problems.push(problem(field, "amount_bad", t));
                None
            }
        },
    };
    let balance = amount("balance", balance);
    let advance = amount("advance_outstanding", advance_outstanding);
    if note.trim().is_empty() {
        problems.push(problem("note", "note_empty", ""));
    }
    let (Some(balance), Some(advance), true) = (balance, advance, problems.is_empty()) else {
        return Ok(Err(problems));
    };
    let row = store::OpeningRow {
        village: village.as_str().to_owned(),
        balance,
        advance_outstanding: advance,
        note: note.trim().to_owned(),
        at: Utc::now(),
        by: who.to_owned(),
    };
    if !store.set_opening_balance(&row).await? {
        return Ok(Err(vec![problem("balance", "started", "")]));
    }
    info!(%village, %balance, who, "opening balance set");
    Ok(Ok(()))
}

/// Runs one month for every village and records it (unless `record` is false). Refused for a paid
/// month; a rule violation records nothing.
pub async fn run_month(
    store: &Store,
    deployment: &Deployment,
    energy: &dyn EnergySource,
    month: YearMonth,
    who: &str,
    record: bool,
) -> Result<MonthRun, Error> {
    if let Some(row) = store.ledger_month(month).await? {
        if row.status == MONTH_PAID {
            return Err(Error::Locked(month));
        }
    }
    let carry = opening_carry(store, month).await?;
    // The registry's households, not the file's seed.
    let registry = households::effective(store, deployment).await?;
    let deployment = &*registry;
    let book = Book::new(&deployment.allocation_input())?;
    let mut energies = HashMap::new();
    for s in &deployment.stations {
        if s.kind != StationKind::Centralized {
            energies.insert(s.id.clone(), energy.month_energy(&s.id, month).await?);
        }
    }
    let states = store.plan_states().await?;
    let run = book.month(month, &energies, &carry, &states)?;
    if record {
        let carry_json = serde_json::to_string(&run.carry)
            .map_err(|e| Error::Corrupt(format!("carry-over: {e}")))?;
        let fp = fingerprint(&run)?;
        if !store
            .record_month(
                &month_record(&run),
                &fp.sha256,
                &fp.legacy_crc32,
                &carry_json,
                who,
                Utc::now(),
            )
            .await?
        {
            return Err(Error::Locked(month));
        }
        info!(%month, fingerprint = %fp.sha256, villages = run.villages.len(), "month recorded");
    }
    Ok(run)
}

/// Locks a recorded month as paid.
pub async fn pay_month(
    store: &Store,
    month: YearMonth,
    who: &str,
    note: &str,
) -> Result<(), Error> {
    if who.trim().is_empty() {
        return Err(Error::Workflow("say who marks the month paid".into()));
    }
    match store.ledger_month(month).await? {
        None => Err(Error::NotFound(format!("{month} has not been run"))),
        Some(r) if r.status == MONTH_PAID => Err(Error::Locked(month)),
        Some(_) => {
            // Months are paid in order: an unpaid earlier month could still change this one's opening.
            if let Some(prev) = store.ledger_month(month.prev()).await? {
                if prev.status != MONTH_PAID {
                    return Err(Error::Workflow(format!(
                        "{} is not paid yet: pay the months in order",
                        month.prev()
                    )));
                }
            }
            if store.mark_month_paid(month, who, note, Utc::now()).await? {
                Ok(())
            } else {
                Err(Error::Locked(month))
            }
        }
    }
}

/// Moves a village's annual plan one step through the workflow of docs/policy.md section 6.
pub async fn transition(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    year: i32,
    to: PlanState,
    who: &str,
    note: &str,
) -> Result<PlanState, Error> {
    let record = steps::StepRecord::default();
    transition_recorded(store, deployment, village, year, to, who, note, &record).await
}

/// As [`transition`], keeping what the step records besides its note (meeting and publication
/// dates, documents: see [`steps`]).
#[allow(clippy::too_many_arguments)]
pub async fn transition_recorded(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    year: i32,
    to: PlanState,
    who: &str,
    note: &str,
    record: &steps::StepRecord,
) -> Result<PlanState, Error> {
    if who.trim().is_empty() || note.trim().is_empty() {
        return Err(Error::Workflow(
            "every transition records who and a note (docs/policy.md 6)".into(),
        ));
    }
    if !deployment.villages.iter().any(|v| &v.code == village) {
        return Err(Error::NotFound(format!(
            "village {village} is not declared"
        )));
    }
    if plans::plan_of(store, deployment, village, year)
        .await?
        .is_none()
    {
        return Err(Error::NotFound(format!(
            "village {village} has no plan for {year}: draft it on the village's plan page or in the deployment file"
        )));
    }
    let from = store.plan_state(village.as_str(), year).await?;
    if !from.can_go_to(to) {
        let next: Vec<&str> = from.next_states().iter().map(|s| s.code()).collect();
        return Err(Error::Workflow(format!(
            "plan {year} of village {village} is {from} and cannot go to {to}; allowed: {}",
            next.join(", ")
        )));
    }
    let record_json = if record.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(record)
                .map_err(|e| Error::Corrupt(format!("step record: {e}")))?,
        )
    };
    if to != PlanState::Draft {
        // A plan that breaks a rule does not move forward (the whole book is checked, as a run would).
        Book::new(
            &households::effective(store, deployment)
                .await?
                .allocation_input(),
        )?;
    }
    if !store
        .set_plan_state(
            village.as_str(),
            year,
            from,
            to,
            who,
            note,
            record_json.as_deref(),
            Utc::now(),
        )
        .await?
    {
        return Err(Error::Workflow(format!(
            "plan {year} of village {village} changed while this transition was made; try again"
        )));
    }
    info!(%village, year, %from, %to, who, "plan transition");
    Ok(from)
}

/// Records the village's review (复核) of its statement of `month`, for the run now recorded:
/// refused for a month not recorded or already paid, or a village without a statement that month.
pub async fn review_month(
    store: &Store,
    village: &VillageId,
    month: YearMonth,
    who: &str,
    note: &str,
) -> Result<store::ReviewRow, Error> {
    let Some(run) = store.ledger_month(month).await? else {
        return Err(Error::NotFound(format!("{month} is not allocated yet")));
    };
    if run.status == MONTH_PAID {
        return Err(Error::Locked(month));
    }
    let key = month.to_string();
    if store.village_month(village.as_str(), &key).await?.is_none() {
        return Err(Error::NotFound(format!(
            "village {village} has no statement for {month}"
        )));
    }
    let review = store::ReviewRow {
        month: key,
        village: village.as_str().to_owned(),
        fingerprint: run.fingerprint,
        at: Utc::now(),
        by: who.to_owned(),
        note: note.trim().to_owned(),
    };
    store.review_village_month(&review).await?;
    info!(%village, %month, who, "statement reviewed");
    Ok(review)
}

/// Masks a name for a public notice: 张三 → 张*, 张小三 → 张*三, 欧阳小明 → 欧**明.
pub fn mask_name(name: &str) -> String {
    let chars: Vec<char> = name.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => "*".into(),
        2 => format!("{}*", chars[0]),
        n => {
            let mut s = String::new();
            s.push(chars[0]);
            s.extend(std::iter::repeat_n('*', n - 2));
            s.push(chars[n - 1]);
            s
        }
    }
}

/// The allocator's month as the ledger tables hold it: amounts in fen, texts the statements show.
fn month_record(run: &MonthRun) -> store::MonthRecord {
    let stations = run
        .stations
        .iter()
        .map(|s| store::StationMonthRecord {
            station: s.station.to_string(),
            basis: if s.basis.is_provisional() {
                "metered"
            } else {
                "settled"
            }
            .to_owned(),
            energy_wh: s.energy.0,
            tariff: s.tariff.0,
            coal_price: s.coal_price.0,
            adder_price: s.adder_price.0,
            base_fen: s.base.0,
            subsidy_accrued_fen: s.subsidy_accrued.0,
            adder_fen: s.adder.0,
            subsidy_received_fen: s.subsidy_received.0,
            received_fen: s.received.0,
            costs_fen: s.costs_total.0,
            net_fen: s.net.0,
            deficit_in_fen: s.deficit_in.0,
            distributable_fen: s.distributable.0,
            deficit_out_fen: s.deficit_out.0,
            explanation: s
                .notes
                .iter()
                .cloned()
                .chain(
                    s.costs
                        .iter()
                        .map(|c| format!("{}: {} ({})", c.label, c.amount, c.how)),
                )
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect();
    let villages = run
        .villages
        .iter()
        .map(|v| {
            let income = v.income.iter().map(|i| store::EntryRow {
                kind: "INCOME".into(),
                line: "INCOME".into(),
                station: Some(i.station.to_string()),
                household: None,
                payee: i.station.to_string(),
                reference: format!(
                    "share {}/{} of received {} − costs {}",
                    i.weight, i.total_weight, i.station_received, i.station_costs
                ),
                amount_fen: i.amount.0,
                basis: if i.basis.is_provisional() {
                    "metered (provisional)"
                } else {
                    "settled"
                }
                .into(),
            });
            let payouts = v.payouts.iter().map(|p| {
                let (household, payee) = match &p.payee {
                    Payee::Household(h) => (Some(h.to_string()), h.to_string()),
                    Payee::Other(o) => (None, o.clone()),
                };
                store::EntryRow {
                    kind: "PAYOUT".into(),
                    line: p.line.code().into(),
                    station: None,
                    household,
                    payee,
                    reference: p.reference.to_string(),
                    amount_fen: p.amount.0,
                    basis: p.basis.to_string(),
                }
            });
            store::VillageMonthRecord {
                village: v.village.to_string(),
                provisional: v.provisional,
                plan_state: v.plan_state.map(|p| p.code().to_owned()),
                opening_fen: v.opening_balance.0,
                income_fen: v.income_total.0,
                advance_fen: v.advance.0,
                advance_repaid_fen: v.advance_repaid.0,
                advance_outstanding_fen: v.advance_outstanding.0,
                cash_fen: v.cash.0,
                payouts_fen: v.payouts_total.0,
                reserve_fen: v.reserve.0,
                carry_over_fen: v.carry_over.0,
                closing_fen: v.closing_balance.0,
                explanation: v.notes.join("\n"),
                entries: income.chain(payouts).collect(),
            }
        })
        .collect();
    let pools = run
        .pools
        .iter()
        .flat_map(|p| {
            p.lines.iter().map(move |l| store::PoolLineRecord {
                station: p.station.to_string(),
                household: l.household.to_string(),
                village: l.village.as_ref().map(|v| v.to_string()),
                amount_fen: l.amount.0,
            })
        })
        .collect();
    store::MonthRecord {
        month: run.month,
        stations,
        villages,
        pools,
    }
}

#[cfg(test)]
mod tests;
