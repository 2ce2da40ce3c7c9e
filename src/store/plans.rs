//! Annual plans drafted in the browser: a plan's income and line budgets (`annual_plans`) and its
//! planned payments (`plan_entries`).
//!
//! A plan is written only while it is a draft: each write claims the plan's row in `ledger_plans`
//! as DRAFT in its own transaction, so a workflow step taken at the same time either comes after
//! the edit or makes it fail; an entry's month must not be paid. The rules a plan keeps are the
//! ledger's; this file only reads and writes, with one audit line per change.

use super::ledger::{audit_in, from_ms, ms};
use super::{Result, Store};
use crate::allocate::PlanLine;
use crate::domain::{Fen, PlanState, YearMonth};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

/// A plan's figures as saved in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub village: String,
    pub year: i32,
    pub expected_net: Fen,
    pub expected_gross: Option<Fen>,
    pub job_wages: Fen,
    pub temp_labour: Fen,
    pub small_project: Fen,
    pub reward_subsidy: Fen,
    pub reserve: Fen,
    pub status_change_immediate: bool,
    pub at: DateTime<Utc>,
    pub by: String,
}

/// One planned payment of a plan line, in a month of the plan's year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntryRow {
    pub id: i64,
    pub village: String,
    pub year: i32,
    /// TEMP_LABOUR, SMALL_PROJECT or REWARD_SUBSIDY.
    pub line: PlanLine,
    pub month: YearMonth,
    /// The household paid (temporary labour, rewards).
    pub household: Option<String>,
    /// Who is paid for a small project (a contractor, the village committee).
    pub payee: Option<String>,
    pub amount: Fen,
    /// The work done, the project, or the reason for a reward.
    pub description: String,
    /// The county's approval reference of a reward.
    pub approval: Option<String>,
    pub at: DateTime<Utc>,
    pub by: String,
}

/// A plan and its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub plan: PlanRow,
    pub entries: Vec<PlanEntryRow>,
}

/// Why a plan write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanWrite {
    Done,
    /// The plan has left DRAFT (it is in this state).
    NotDraft(PlanState),
    /// The entry's month is paid and locked.
    MonthPaid,
    /// No such entry in this plan.
    NoEntry,
}

const PLAN_COLUMNS: &str = "village, year, expected_net_fen, expected_gross_fen, job_wages_fen, \
     temp_labour_fen, small_project_fen, reward_subsidy_fen, reserve_fen, status_change_immediate, \
     updated_ms, updated_by";

const ENTRY_COLUMNS: &str = "id, village, year, line, month, household, payee, amount_fen, \
     description, approval, recorded_ms, recorded_by";

fn year_of(r: &AnyRow, i: usize, table: &str) -> Result<i32> {
    let y: i64 = r.try_get(i)?;
    i32::try_from(y).map_err(|_| super::Error::Corrupt(format!("{table}.year {y} out of range")))
}

fn plan_row(r: &AnyRow) -> Result<PlanRow> {
    Ok(PlanRow {
        village: r.try_get(0)?,
        year: year_of(r, 1, "annual_plans")?,
        expected_net: Fen(r.try_get(2)?),
        expected_gross: r.try_get::<Option<i64>, _>(3)?.map(Fen),
        job_wages: Fen(r.try_get(4)?),
        temp_labour: Fen(r.try_get(5)?),
        small_project: Fen(r.try_get(6)?),
        reward_subsidy: Fen(r.try_get(7)?),
        reserve: Fen(r.try_get(8)?),
        status_change_immediate: r.try_get::<i64, _>(9)? != 0,
        at: from_ms(r.try_get(10)?, "annual_plans.updated_ms")?,
        by: r.try_get(11)?,
    })
}

fn entry_row(r: &AnyRow) -> Result<PlanEntryRow> {
    let line: String = r.try_get(3)?;
    let month: String = r.try_get(4)?;
    Ok(PlanEntryRow {
        id: r.try_get(0)?,
        village: r.try_get(1)?,
        year: year_of(r, 2, "plan_entries")?,
        line: PlanLine::parse(&line).ok_or_else(|| {
            super::Error::Corrupt(format!("plan_entries.line '{line}' is not a plan line"))
        })?,
        month: month
            .parse()
            .map_err(|e| super::Error::Corrupt(format!("plan_entries.month '{month}': {e}")))?,
        household: r.try_get(5)?,
        payee: r.try_get(6)?,
        amount: Fen(r.try_get(7)?),
        description: r.try_get(8)?,
        approval: r.try_get(9)?,
        at: from_ms(r.try_get(10)?, "plan_entries.recorded_ms")?,
        by: r.try_get(11)?,
    })
}

/// Groups entries (ordered by village, year) under their plans (ordered the same way).
fn assemble(plans: Vec<PlanRow>, entries: Vec<PlanEntryRow>) -> Vec<StoredPlan> {
    let mut out: Vec<StoredPlan> = plans
        .into_iter()
        .map(|plan| StoredPlan {
            plan,
            entries: Vec::new(),
        })
        .collect();
    for e in entries {
        if let Some(p) = out
            .iter_mut()
            .find(|p| p.plan.village == e.village && p.plan.year == e.year)
        {
            p.entries.push(e);
        }
    }
    out
}

impl Store {
    /// Every plan saved in the browser with its entries, by village and year.
    pub async fn stored_plans(&self) -> Result<Vec<StoredPlan>> {
        let plans = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM annual_plans ORDER BY village, year"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(plan_row)
        .collect::<Result<Vec<_>>>()?;
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let entries = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM plan_entries ORDER BY village, year, month, id"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(entry_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(assemble(plans, entries))
    }

    /// One village's plan of `year` saved in the browser, with its entries.
    pub async fn stored_plan(&self, village: &str, year: i32) -> Result<Option<StoredPlan>> {
        let Some(plan) = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM annual_plans WHERE village = $1 AND year = $2"
        ))
        .bind(village)
        .bind(i64::from(year))
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let entries = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM plan_entries WHERE village = $1 AND year = $2 \
             ORDER BY month, id"
        ))
        .bind(village)
        .bind(i64::from(year))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(entry_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(StoredPlan {
            plan: plan_row(&plan)?,
            entries,
        }))
    }

    /// The years of `village` with a plan saved in the browser.
    pub async fn stored_plan_years(&self, village: &str) -> Result<Vec<i32>> {
        sqlx::query("SELECT year FROM annual_plans WHERE village = $1 ORDER BY year")
            .bind(village)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| year_of(r, 0, "annual_plans"))
            .collect()
    }

    /// Saves a plan's figures while it is a draft. The first save of a plan brings `seed`, the
    /// entries it already had (the deployment file's), in the same transaction.
    pub async fn save_plan(&self, plan: &PlanRow, seed: &[PlanEntryRow]) -> Result<PlanWrite> {
        let mut tx = self.begin_write(self.pool()).await?;
        if let Some(state) = claim_draft(&mut tx, &plan.village, plan.year, plan.at).await? {
            tx.rollback().await?;
            return Ok(PlanWrite::NotDraft(state));
        }
        let existed = sqlx::query("SELECT 1 FROM annual_plans WHERE village = $1 AND year = $2")
            .bind(&plan.village)
            .bind(i64::from(plan.year))
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(&format!(
            "INSERT INTO annual_plans ({PLAN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12) ON CONFLICT (village, year) DO UPDATE SET \
             expected_net_fen = excluded.expected_net_fen, \
             expected_gross_fen = excluded.expected_gross_fen, \
             job_wages_fen = excluded.job_wages_fen, temp_labour_fen = excluded.temp_labour_fen, \
             small_project_fen = excluded.small_project_fen, \
             reward_subsidy_fen = excluded.reward_subsidy_fen, reserve_fen = excluded.reserve_fen, \
             status_change_immediate = excluded.status_change_immediate, \
             updated_ms = excluded.updated_ms, updated_by = excluded.updated_by"
        ))
        .bind(&plan.village)
        .bind(i64::from(plan.year))
        .bind(plan.expected_net.0)
        .bind(plan.expected_gross.map(|f| f.0))
        .bind(plan.job_wages.0)
        .bind(plan.temp_labour.0)
        .bind(plan.small_project.0)
        .bind(plan.reward_subsidy.0)
        .bind(plan.reserve.0)
        .bind(i64::from(plan.status_change_immediate))
        .bind(ms(plan.at))
        .bind(&plan.by)
        .execute(&mut *tx)
        .await?;
        if !existed {
            for e in seed {
                insert_entry(&mut tx, e).await?;
            }
        }
        let detail = format!(
            "plan {}: expected net {}{}; JOB_WAGES {}, TEMP_LABOUR {}, SMALL_PROJECT {}, \
             REWARD_SUBSIDY {}, RESERVE {}{}{}",
            plan.year,
            plan.expected_net,
            plan.expected_gross
                .map(|g| format!(", gross {g}"))
                .unwrap_or_default(),
            plan.job_wages,
            plan.temp_labour,
            plan.small_project,
            plan.reward_subsidy,
            plan.reserve,
            if plan.status_change_immediate {
                "; status changes apply at once"
            } else {
                ""
            },
            if existed || seed.is_empty() {
                String::new()
            } else {
                format!("; {} entries taken from the deployment file", seed.len())
            },
        );
        audit_in(
            &mut tx,
            plan.at,
            &plan.by,
            if existed {
                "plan_edited"
            } else {
                "plan_drafted"
            },
            Some(&plan.village),
            None,
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(PlanWrite::Done)
    }

    /// Adds a planned payment to a plan saved in the browser, while the plan is a draft and the
    /// entry's month is not paid.
    pub async fn add_plan_entry(&self, e: &PlanEntryRow) -> Result<PlanWrite> {
        let mut tx = self.begin_write(self.pool()).await?;
        if let Some(write) = refuse_entry_write(&mut tx, &e.village, e.year, e.month, e.at).await? {
            tx.rollback().await?;
            return Ok(write);
        }
        insert_entry(&mut tx, e).await?;
        audit_in(
            &mut tx,
            e.at,
            &e.by,
            "plan_entry_added",
            Some(&e.village),
            Some(&e.month.to_string()),
            &format!("plan {}: {}", e.year, entry_text(e)),
        )
        .await?;
        tx.commit().await?;
        Ok(PlanWrite::Done)
    }

    /// Removes a planned payment, on the same conditions as adding one.
    pub async fn remove_plan_entry(
        &self,
        village: &str,
        year: i32,
        id: i64,
        who: &str,
        at: DateTime<Utc>,
    ) -> Result<PlanWrite> {
        let mut tx = self.begin_write(self.pool()).await?;
        let Some(row) = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM plan_entries WHERE id = $1 AND village = $2 AND year = $3"
        ))
        .bind(id)
        .bind(village)
        .bind(i64::from(year))
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Ok(PlanWrite::NoEntry);
        };
        let e = entry_row(&row)?;
        if let Some(write) = refuse_entry_write(&mut tx, village, year, e.month, at).await? {
            tx.rollback().await?;
            return Ok(write);
        }
        sqlx::query("DELETE FROM plan_entries WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit_in(
            &mut tx,
            at,
            who,
            "plan_entry_removed",
            Some(village),
            Some(&e.month.to_string()),
            &format!("plan {year}: {}", entry_text(&e)),
        )
        .await?;
        tx.commit().await?;
        Ok(PlanWrite::Done)
    }
}

/// An entry as the audit trail names it.
fn entry_text(e: &PlanEntryRow) -> String {
    let party = e
        .household
        .as_deref()
        .or(e.payee.as_deref())
        .unwrap_or_default();
    let approval = e
        .approval
        .as_deref()
        .map(|a| format!(", approval {a}"))
        .unwrap_or_default();
    format!(
        "{} {} {} to {party} ({}{approval})",
        e.line, e.month, e.amount, e.description
    )
}

/// Claims the plan's workflow row as DRAFT (creating it when the plan never left DRAFT): `None`
/// when it is a draft, else the state it is in. The claim holds the row until the transaction
/// ends, so a step cannot move the plan on between this check and the write.
async fn claim_draft(
    tx: &mut sqlx::Transaction<'static, Any>,
    village: &str,
    year: i32,
    at: DateTime<Utc>,
) -> Result<Option<PlanState>> {
    let claimed = sqlx::query(
        "INSERT INTO ledger_plans (village, year, state, updated_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (village, year) DO UPDATE SET updated_ms = excluded.updated_ms \
         WHERE ledger_plans.state = $3",
    )
    .bind(village)
    .bind(i64::from(year))
    .bind(PlanState::Draft.code())
    .bind(ms(at))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT state FROM ledger_plans WHERE village = $1 AND year = $2")
        .bind(village)
        .bind(i64::from(year))
        .fetch_one(&mut **tx)
        .await?;
    let state: String = row.try_get(0)?;
    PlanState::parse(&state).map(Some).ok_or_else(|| {
        super::Error::Corrupt(format!("unknown plan state '{state}' in ledger_plans"))
    })
}

/// Why an entry of `month` may not be written now, if it may not: the plan is no draft, or the
/// month is paid.
async fn refuse_entry_write(
    tx: &mut sqlx::Transaction<'static, Any>,
    village: &str,
    year: i32,
    month: YearMonth,
    at: DateTime<Utc>,
) -> Result<Option<PlanWrite>> {
    if let Some(state) = claim_draft(tx, village, year, at).await? {
        return Ok(Some(PlanWrite::NotDraft(state)));
    }
    let paid = sqlx::query("SELECT 1 FROM ledger_months WHERE month = $1 AND status = $2")
        .bind(month.to_string())
        .bind(super::MONTH_PAID)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(paid.is_some().then_some(PlanWrite::MonthPaid))
}

async fn insert_entry(tx: &mut sqlx::Transaction<'static, Any>, e: &PlanEntryRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO plan_entries (village, year, line, month, household, payee, amount_fen, \
         description, approval, recorded_ms, recorded_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&e.village)
    .bind(i64::from(e.year))
    .bind(e.line.code())
    .bind(e.month.to_string())
    .bind(e.household.clone())
    .bind(e.payee.clone())
    .bind(e.amount.0)
    .bind(&e.description)
    .bind(e.approval.clone())
    .bind(ms(e.at))
    .bind(&e.by)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
