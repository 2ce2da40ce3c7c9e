//! The village ledger's tables: plan workflow states and transitions, month runs (stations, villages,
//! entries, pools), the paid-month lock and the audit trail.
//!
//! Rules (which transition is allowed, what a month pays) are decided by `ledger`; this file only
//! reads and writes, atomically: a month is replaced in one transaction, and a paid month never is.

use super::{Result, Store};
use crate::config::Backend;
use crate::domain::{Fen, PlanState, VillageId, YearMonth};
use chrono::{DateTime, Utc};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};
use std::collections::HashMap;

/// Month status in `ledger_months`.
pub const MONTH_COMPUTED: &str = "COMPUTED";
pub const MONTH_PAID: &str = "PAID";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    pub from: String,
    pub to: String,
    pub who: String,
    pub at: DateTime<Utc>,
    pub note: String,
    /// What the step recorded besides its note (the ledger's JSON), if anything.
    pub record: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRow {
    pub month: String,
    pub status: String,
    pub fingerprint: String,
    pub carry: String,
    pub computed_at: DateTime<Utc>,
    pub computed_by: String,
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_by: Option<String>,
}

fn month_row(r: &AnyRow) -> Result<MonthRow> {
    Ok(MonthRow {
        month: r.try_get(0)?,
        status: r.try_get(1)?,
        fingerprint: r.try_get(2)?,
        carry: r.try_get(3)?,
        computed_at: from_ms(r.try_get(4)?, "ledger_months.computed_ms")?,
        computed_by: r.try_get(5)?,
        paid_at: r
            .try_get::<Option<i64>, _>(6)?
            .map(|v| from_ms(v, "ledger_months.paid_ms"))
            .transpose()?,
        paid_by: r.try_get(7)?,
    })
}

/// One recorded line of a village-month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    /// `INCOME` or `PAYOUT`.
    pub kind: String,
    pub line: String,
    pub station: Option<String>,
    pub household: Option<String>,
    pub payee: String,
    pub reference: String,
    pub amount_fen: i64,
    pub basis: String,
}

/// A recorded village-month as the statement, exports and notice show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VillageMonthRow {
    pub month: String,
    pub village: String,
    pub provisional: bool,
    pub plan_state: Option<String>,
    pub opening_fen: i64,
    pub income_fen: i64,
    pub advance_fen: i64,
    pub advance_repaid_fen: i64,
    pub advance_outstanding_fen: i64,
    pub cash_fen: i64,
    pub payouts_fen: i64,
    pub reserve_fen: i64,
    pub carry_over_fen: i64,
    pub closing_fen: i64,
    pub notes: Vec<String>,
    pub entries: Vec<EntryRow>,
    pub month_status: String,
}

/// One month run as the ledger tables hold it. The ledger builds it from the allocator's result;
/// the store only writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRecord {
    pub month: YearMonth,
    pub stations: Vec<StationMonthRecord>,
    pub villages: Vec<VillageMonthRecord>,
    pub pools: Vec<PoolLineRecord>,
}

/// A station's revenue for the month (`basis` is `metered` or `settled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationMonthRecord {
    pub station: String,
    pub basis: String,
    pub energy_wh: i64,
    pub tariff: i64,
    pub coal_price: i64,
    pub adder_price: i64,
    pub base_fen: i64,
    pub subsidy_accrued_fen: i64,
    pub adder_fen: i64,
    pub subsidy_received_fen: i64,
    pub received_fen: i64,
    pub costs_fen: i64,
    pub net_fen: i64,
    pub deficit_in_fen: i64,
    pub distributable_fen: i64,
    pub deficit_out_fen: i64,
    pub explanation: String,
}

/// A village's statement for the month, with its entries in statement order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VillageMonthRecord {
    pub village: String,
    pub provisional: bool,
    pub plan_state: Option<String>,
    pub opening_fen: i64,
    pub income_fen: i64,
    pub advance_fen: i64,
    pub advance_repaid_fen: i64,
    pub advance_outstanding_fen: i64,
    pub cash_fen: i64,
    pub payouts_fen: i64,
    pub reserve_fen: i64,
    pub carry_over_fen: i64,
    pub closing_fen: i64,
    pub explanation: String,
    pub entries: Vec<EntryRow>,
}

/// One household's share of a centralized pool station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLineRecord {
    pub station: String,
    pub household: String,
    pub village: Option<String>,
    pub amount_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub who: String,
    pub action: String,
    pub village: Option<String>,
    pub month: Option<String>,
    pub detail: String,
}

/// A value for a batched insert.
enum Val {
    I(i64),
    T(String),
    OT(Option<String>),
}

/// Rows per INSERT: well under SQLite's and PostgreSQL's bound-parameter limits.
const BATCH_PARAMS: usize = 8_000;

async fn insert_batch(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    table: &str,
    cols: &[&str],
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    let per = (BATCH_PARAMS / cols.len()).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(per).collect();
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
        let mut n = 0;
        for (i, _) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..cols.len() {
                if c > 0 {
                    sql.push_str(", ");
                }
                // SQLite resolves `$N` names linearly per parameter (quadratic in a large batch);
                // anonymous `?` binds in order.
                n += 1;
                if backend == Backend::Sqlite {
                    sql.push('?');
                } else {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
            sql.push(')');
        }
        let mut q: Query<'_, Any, AnyArguments<'_>> = sqlx::query(&sql);
        for row in chunk {
            for v in row {
                q = match v {
                    Val::I(i) => q.bind(i),
                    Val::T(t) => q.bind(t),
                    Val::OT(t) => q.bind(t),
                };
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

pub(super) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(super) fn from_ms(v: i64, column: &str) -> Result<DateTime<Utc>> {
    super::stored_time(v, column)
}

impl Store {
    /// The workflow state of every plan that has left DRAFT at least once.
    pub async fn plan_states(&self) -> Result<HashMap<(VillageId, i32), PlanState>> {
        let rows = sqlx::query("SELECT village, year, state FROM ledger_plans")
            .fetch_all(self.pool())
            .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let state: String = r.try_get(2)?;
            let state = PlanState::parse(&state).ok_or_else(|| {
                super::Error::Corrupt(format!("unknown plan state '{state}' in ledger_plans"))
            })?;
            let year: i64 = r.try_get(1)?;
            out.insert(
                (VillageId::new(r.try_get::<String, _>(0)?), year as i32),
                state,
            );
        }
        Ok(out)
    }

    pub async fn plan_state(&self, village: &str, year: i32) -> Result<PlanState> {
        let row = sqlx::query("SELECT state FROM ledger_plans WHERE village = $1 AND year = $2")
            .bind(village)
            .bind(i64::from(year))
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(PlanState::Draft),
            Some(r) => {
                let s: String = r.try_get(0)?;
                PlanState::parse(&s).ok_or_else(|| {
                    super::Error::Corrupt(format!("unknown plan state '{s}' in ledger_plans"))
                })
            }
        }
    }

    /// Moves a plan from `from` to `to` if it is still in `from` (compare and set, with the
    /// transition and an audit line in the same transaction). Returns false if the state moved on.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_plan_state(
        &self,
        village: &str,
        year: i32,
        from: PlanState,
        to: PlanState,
        who: &str,
        note: &str,
        record: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin_write(self.pool()).await?;
        let current =
            sqlx::query("SELECT state FROM ledger_plans WHERE village = $1 AND year = $2")
                .bind(village)
                .bind(i64::from(year))
                .fetch_optional(&mut *tx)
                .await?;
        let current = match current {
            None => PlanState::Draft.code().to_owned(),
            Some(r) => r.try_get::<String, _>(0)?,
        };
        if current != from.code() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM ledger_plans WHERE village = $1 AND year = $2")
            .bind(village)
            .bind(i64::from(year))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ledger_plans (village, year, state, updated_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(village)
        .bind(i64::from(year))
        .bind(to.code())
        .bind(ms(at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ledger_plan_transitions (village, year, from_state, to_state, who, at_ms, note, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(village)
        .bind(i64::from(year))
        .bind(from.code())
        .bind(to.code())
        .bind(who)
        .bind(ms(at))
        .bind(note)
        .bind(record)
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            at,
            who,
            "plan_transition",
            Some(village),
            None,
            &format!("plan {year}: {from} -> {to}: {note}"),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn plan_history(&self, village: &str, year: i32) -> Result<Vec<TransitionRow>> {
        let rows = sqlx::query(
            "SELECT from_state, to_state, who, at_ms, note, record FROM ledger_plan_transitions \
             WHERE village = $1 AND year = $2 ORDER BY id",
        )
        .bind(village)
        .bind(i64::from(year))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TransitionRow {
                    from: r.try_get(0)?,
                    to: r.try_get(1)?,
                    who: r.try_get(2)?,
                    at: from_ms(r.try_get(3)?, "ledger_plan_transitions.at_ms")?,
                    note: r.try_get(4)?,
                    record: r.try_get(5)?,
                })
            })
            .collect()
    }

    pub async fn ledger_month(&self, month: YearMonth) -> Result<Option<MonthRow>> {
        let row = sqlx::query(
            "SELECT month, status, fingerprint, carry, computed_ms, computed_by, paid_ms, paid_by \
             FROM ledger_months WHERE month = $1",
        )
        .bind(month.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(month_row).transpose()
    }

    /// The newest `limit` recorded months, newest first.
    pub async fn ledger_month_list(&self, limit: i64) -> Result<Vec<MonthRow>> {
        let rows = sqlx::query(
            "SELECT month, status, fingerprint, carry, computed_ms, computed_by, paid_ms, paid_by \
             FROM ledger_months ORDER BY month DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(month_row).collect()
    }

    /// Months recorded before `month`, newest first.
    pub async fn ledger_months_before(&self, month: YearMonth) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT month FROM ledger_months WHERE month < $1 ORDER BY month DESC")
                .bind(month.to_string())
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Replaces an unpaid month with `run` in one transaction. Returns false (and writes nothing) if
    /// the month is paid.
    ///
    /// `fingerprint` is the run's SHA-256; `legacy_fingerprint` the CRC32 months recorded before
    /// SHA-256 carry. When the month on record has that CRC32, the re-run is unchanged: the audit
    /// line says the fingerprint's algorithm changed, not the figures, and the villages' reviews
    /// of that run move to the new fingerprint with it.
    pub async fn record_month(
        &self,
        run: &MonthRecord,
        fingerprint: &str,
        legacy_fingerprint: &str,
        carry: &str,
        who: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let month = run.month.to_string();
        let mut tx = self.begin_write(self.pool()).await?;
        let status = sqlx::query("SELECT status, fingerprint FROM ledger_months WHERE month = $1")
            .bind(&month)
            .fetch_optional(&mut *tx)
            .await?;
        let previous = match status {
            Some(r) => {
                let s: String = r.try_get(0)?;
                if s == MONTH_PAID {
                    return Ok(false);
                }
                Some(r.try_get::<String, _>(1)?)
            }
            None => None,
        };
        for table in [
            "ledger_months",
            "ledger_station_months",
            "ledger_village_months",
            "ledger_entries",
            "ledger_pool_months",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE month = $1"))
                .bind(&month)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO ledger_months (month, status, fingerprint, carry, computed_ms, computed_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&month)
        .bind(MONTH_COMPUTED)
        .bind(fingerprint)
        .bind(carry)
        .bind(ms(at))
        .bind(who)
        .execute(&mut *tx)
        .await?;
        let stations = run
            .stations
            .iter()
            .map(|s| {
                vec![
                    Val::T(month.clone()),
                    Val::T(s.station.clone()),
                    Val::T(s.basis.clone()),
                    Val::I(s.energy_wh),
                    Val::I(s.tariff),
                    Val::I(s.coal_price),
                    Val::I(s.adder_price),
                    Val::I(s.base_fen),
                    Val::I(s.subsidy_accrued_fen),
                    Val::I(s.adder_fen),
                    Val::I(s.subsidy_received_fen),
                    Val::I(s.received_fen),
                    Val::I(s.costs_fen),
                    Val::I(s.net_fen),
                    Val::I(s.deficit_in_fen),
                    Val::I(s.distributable_fen),
                    Val::I(s.deficit_out_fen),
                    Val::T(s.explanation.clone()),
                ]
            })
            .collect();
        insert_batch(
            &mut tx,
            self.backend(),
            "ledger_station_months",
            &[
                "month",
                "station",
                "basis",
                "energy_wh",
                "tariff",
                "coal_price",
                "adder_price",
                "base_fen",
                "subsidy_accrued_fen",
                "adder_fen",
                "subsidy_received_fen",
                "received_fen",
                "costs_fen",
                "net_fen",
                "deficit_in_fen",
                "distributable_fen",
                "deficit_out_fen",
                "explanation",
            ],
            stations,
        )
        .await?;
        let mut villages = Vec::with_capacity(run.villages.len());
        let mut entries = Vec::new();
        for v in &run.villages {
            villages.push(vec![
                Val::T(month.clone()),
                Val::T(v.village.clone()),
                Val::I(i64::from(v.provisional)),
                Val::OT(v.plan_state.clone()),
                Val::I(v.opening_fen),
                Val::I(v.income_fen),
                Val::I(v.advance_fen),
                Val::I(v.advance_repaid_fen),
                Val::I(v.advance_outstanding_fen),
                Val::I(v.cash_fen),
                Val::I(v.payouts_fen),
                Val::I(v.reserve_fen),
                Val::I(v.carry_over_fen),
                Val::I(v.closing_fen),
                Val::T(v.explanation.clone()),
            ]);
            for (seq, e) in (1_i64..).zip(&v.entries) {
                entries.push(vec![
                    Val::T(month.clone()),
                    Val::T(v.village.clone()),
                    Val::I(seq),
                    Val::T(e.kind.clone()),
                    Val::T(e.line.clone()),
                    Val::OT(e.station.clone()),
                    Val::OT(e.household.clone()),
                    Val::T(e.payee.clone()),
                    Val::T(e.reference.clone()),
                    Val::I(e.amount_fen),
                    Val::T(e.basis.clone()),
                ]);
            }
        }
        insert_batch(
            &mut tx,
            self.backend(),
            "ledger_village_months",
            &[
                "month",
                "village",
                "provisional",
                "plan_state",
                "opening_fen",
                "income_fen",
                "advance_fen",
                "advance_repaid_fen",
                "advance_outstanding_fen",
                "cash_fen",
                "payouts_fen",
                "reserve_fen",
                "carry_over_fen",
                "closing_fen",
                "explanation",
            ],
            villages,
        )
        .await?;
        insert_batch(
            &mut tx,
            self.backend(),
            "ledger_entries",
            &[
                "month",
                "village",
                "seq",
                "kind",
                "line",
                "station",
                "household",
                "payee",
                "reference",
                "amount_fen",
                "basis",
            ],
            entries,
        )
        .await?;
        let pools = run
            .pools
            .iter()
            .map(|l| {
                vec![
                    Val::T(month.clone()),
                    Val::T(l.station.clone()),
                    Val::T(l.household.clone()),
                    Val::OT(l.village.clone()),
                    Val::I(l.amount_fen),
                ]
            })
            .collect();
        insert_batch(
            &mut tx,
            self.backend(),
            "ledger_pool_months",
            &["month", "station", "household", "village", "amount_fen"],
            pools,
        )
        .await?;
        let detail = match previous {
            None => format!("computed, fingerprint {fingerprint}"),
            Some(p) if p == fingerprint => format!("re-run, unchanged (fingerprint {fingerprint})"),
            Some(p) if p == legacy_fingerprint => {
                sqlx::query(
                    "UPDATE ledger_village_reviews SET fingerprint = $1 \
                     WHERE month = $2 AND fingerprint = $3",
                )
                .bind(fingerprint)
                .bind(&month)
                .bind(&p)
                .execute(&mut *tx)
                .await?;
                format!(
                    "re-run, unchanged; fingerprint algorithm changed from CRC32 to SHA-256 \
                     (crc32 {p} -> sha256 {fingerprint})"
                )
            }
            Some(p) => format!("re-run, changed: fingerprint {p} -> {fingerprint}"),
        };
        audit_in(&mut tx, at, who, "month_run", None, Some(&month), &detail).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Locks a computed month as paid. Returns false if it is not recorded or already paid.
    pub async fn mark_month_paid(
        &self,
        month: YearMonth,
        who: &str,
        note: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin_write(self.pool()).await?;
        let done = sqlx::query(
            "UPDATE ledger_months SET status = $1, paid_ms = $2, paid_by = $3 WHERE month = $4 AND status = $5",
        )
        .bind(MONTH_PAID)
        .bind(ms(at))
        .bind(who)
        .bind(month.to_string())
        .bind(MONTH_COMPUTED)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            audit_in(
                &mut tx,
                at,
                who,
                "month_paid",
                None,
                Some(&month.to_string()),
                note,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// A recorded village-month with its entries in statement order.
    pub async fn village_month(
        &self,
        village: &str,
        month: &str,
    ) -> Result<Option<VillageMonthRow>> {
        let row = sqlx::query(
            "SELECT v.provisional, v.plan_state, v.opening_fen, v.income_fen, v.advance_fen, \
             v.advance_repaid_fen, v.advance_outstanding_fen, v.cash_fen, v.payouts_fen, v.reserve_fen, \
             v.carry_over_fen, v.closing_fen, v.explanation, m.status \
             FROM ledger_village_months v JOIN ledger_months m ON m.month = v.month \
             WHERE v.village = $1 AND v.month = $2",
        )
        .bind(village)
        .bind(month)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let entries = sqlx::query(
            "SELECT kind, line, station, household, payee, reference, amount_fen, basis \
             FROM ledger_entries WHERE village = $1 AND month = $2 ORDER BY seq",
        )
        .bind(village)
        .bind(month)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|e| {
            Ok(EntryRow {
                kind: e.try_get(0)?,
                line: e.try_get(1)?,
                station: e.try_get(2)?,
                household: e.try_get(3)?,
                payee: e.try_get(4)?,
                reference: e.try_get(5)?,
                amount_fen: e.try_get(6)?,
                basis: e.try_get(7)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let notes: String = r.try_get(12)?;
        Ok(Some(VillageMonthRow {
            month: month.to_owned(),
            village: village.to_owned(),
            provisional: r.try_get::<i64, _>(0)? != 0,
            plan_state: r.try_get(1)?,
            opening_fen: r.try_get(2)?,
            income_fen: r.try_get(3)?,
            advance_fen: r.try_get(4)?,
            advance_repaid_fen: r.try_get(5)?,
            advance_outstanding_fen: r.try_get(6)?,
            cash_fen: r.try_get(7)?,
            payouts_fen: r.try_get(8)?,
            reserve_fen: r.try_get(9)?,
            carry_over_fen: r.try_get(10)?,
            closing_fen: r.try_get(11)?,
            notes: notes
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            entries,
            month_status: r.try_get(13)?,
        }))
    }

    /// Each village's newest recorded month: (village, month, closing balance, provisional, status).
    pub async fn villages_latest(&self) -> Result<Vec<(String, String, i64, bool, String)>> {
        let rows = sqlx::query(
            "SELECT v.village, v.month, v.closing_fen, v.provisional, m.status \
             FROM ledger_village_months v JOIN ledger_months m ON m.month = v.month \
             WHERE v.month = (SELECT MAX(month) FROM ledger_village_months w WHERE w.village = v.village) \
             ORDER BY v.village",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get::<i64, _>(3)? != 0,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }

    /// Months recorded for a village, newest first.
    pub async fn village_month_list(&self, village: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT month FROM ledger_village_months WHERE village = $1 ORDER BY month DESC",
        )
        .bind(village)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn audit(
        &self,
        at: DateTime<Utc>,
        who: &str,
        action: &str,
        village: Option<&str>,
        month: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write(self.pool()).await?;
        audit_in(&mut tx, at, who, action, village, month, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` audit lines.
    pub async fn audit_trail(&self, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT at_ms, who, action, village, month, detail FROM ledger_audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    at: from_ms(r.try_get(0)?, "ledger_audit.at_ms")?,
                    who: r.try_get(1)?,
                    action: r.try_get(2)?,
                    village: r.try_get(3)?,
                    month: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
    }
}

/// Whether `month` is paid and locked, read inside the transaction that is about to post to it.
impl Store {
    /// A transaction for posting into `month`, or `None` when the month is paid (checked inside
    /// it, so a posting can never land in a locked month).
    pub(super) async fn begin_unpaid(
        &self,
        month: YearMonth,
    ) -> Result<Option<sqlx::Transaction<'static, Any>>> {
        let mut tx = self.begin_write(self.pool()).await?;
        let paid = sqlx::query("SELECT 1 FROM ledger_months WHERE month = $1 AND status = $2")
            .bind(month.to_string())
            .bind(super::MONTH_PAID)
            .fetch_optional(&mut *tx)
            .await?;
        if paid.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(tx))
    }
}

pub(super) async fn audit_in(
    tx: &mut sqlx::Transaction<'_, Any>,
    at: DateTime<Utc>,
    who: &str,
    action: &str,
    village: Option<&str>,
    month: Option<&str>,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO ledger_audit (at_ms, who, action, village, month, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ms(at))
    .bind(who)
    .bind(action)
    .bind(village.map(str::to_owned))
    .bind(month.map(str::to_owned))
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A subsidy receipt recorded in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    pub id: i64,
    pub station: String,
    pub month: YearMonth,
    pub amount: Fen,
    pub covers: String,
    pub at: DateTime<Utc>,
    pub by: String,
}

impl Store {
    /// Records a subsidy receipt posted in `month`, only while that month is not paid (checked in
    /// the same transaction). Returns false for a paid month.
    pub async fn record_receipt(&self, r: &ReceiptRow) -> Result<bool> {
        let Some(mut tx) = self.begin_unpaid(r.month).await? else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO subsidy_receipts (station, month, amount_fen, covers, recorded_ms, recorded_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.station)
        .bind(r.month.to_string())
        .bind(r.amount.0)
        .bind(&r.covers)
        .bind(ms(r.at))
        .bind(&r.by)
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            r.at,
            &r.by,
            "subsidy_receipt",
            None,
            Some(&r.month.to_string()),
            &format!("station {}: {} ({})", r.station, r.amount, r.covers),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every receipt recorded in the browser, the latest month first.
    pub async fn receipts(&self) -> Result<Vec<ReceiptRow>> {
        let rows = sqlx::query(
            "SELECT id, station, month, amount_fen, covers, recorded_ms, recorded_by \
             FROM subsidy_receipts ORDER BY month DESC, id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let month: String = r.try_get(2)?;
                Ok(ReceiptRow {
                    id: r.try_get(0)?,
                    station: r.try_get(1)?,
                    month: month.parse().map_err(|e| {
                        super::Error::Corrupt(format!("subsidy receipt month '{month}': {e}"))
                    })?,
                    amount: Fen(r.try_get(3)?),
                    covers: r.try_get(4)?,
                    at: from_ms(r.try_get(5)?, "subsidy_receipts.recorded_ms")?,
                    by: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// A payout adjustment recorded in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRow {
    pub id: i64,
    pub village: String,
    /// The month it is posted and paid in.
    pub month: YearMonth,
    pub household: String,
    /// The month it corrects.
    pub corrects: YearMonth,
    pub amount: Fen,
    pub reason: String,
    pub at: DateTime<Utc>,
    pub by: String,
}

impl Store {
    /// Records a payout adjustment posted in `month`, only while that month is not paid
    /// (checked in the same transaction). Returns false for a paid month.
    pub async fn record_adjustment(&self, a: &AdjustmentRow) -> Result<bool> {
        let Some(mut tx) = self.begin_unpaid(a.month).await? else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO payout_adjustments (village, month, household, corrects, amount_fen, reason, \
             recorded_ms, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.village)
        .bind(a.month.to_string())
        .bind(&a.household)
        .bind(a.corrects.to_string())
        .bind(a.amount.0)
        .bind(&a.reason)
        .bind(ms(a.at))
        .bind(&a.by)
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            a.at,
            &a.by,
            "payout_adjustment",
            Some(&a.village),
            Some(&a.month.to_string()),
            &format!(
                "household {}: {} correcting {} ({})",
                a.household, a.amount, a.corrects, a.reason
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every adjustment recorded in the browser, the latest month first.
    pub async fn adjustments(&self) -> Result<Vec<AdjustmentRow>> {
        let rows = sqlx::query(
            "SELECT id, village, month, household, corrects, amount_fen, reason, recorded_ms, \
             recorded_by FROM payout_adjustments ORDER BY month DESC, id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        let month = |text: String, what: &str| {
            text.parse::<YearMonth>().map_err(|e| {
                super::Error::Corrupt(format!("payout adjustment {what} '{text}': {e}"))
            })
        };
        rows.iter()
            .map(|r| {
                Ok(AdjustmentRow {
                    id: r.try_get(0)?,
                    village: r.try_get(1)?,
                    month: month(r.try_get(2)?, "month")?,
                    household: r.try_get(3)?,
                    corrects: month(r.try_get(4)?, "corrects")?,
                    amount: Fen(r.try_get(5)?),
                    reason: r.try_get(6)?,
                    at: from_ms(r.try_get(7)?, "payout_adjustments.recorded_ms")?,
                    by: r.try_get(8)?,
                })
            })
            .collect()
    }
}

/// A job holder's attendance in a month, recorded in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceRow {
    pub job: String,
    pub month: YearMonth,
    pub village: String,
    pub worked: u32,
    pub required: u32,
    pub at: DateTime<Utc>,
    pub by: String,
}

impl Store {
    /// Records (or replaces) the attendance of several jobs of one village in one month, all or
    /// none, only while that month is not paid (checked in the same transaction), with one audit
    /// line. Returns false for a paid month.
    pub async fn record_attendance(&self, rows: &[AttendanceRow]) -> Result<bool> {
        let Some(first) = rows.first() else {
            return Ok(true);
        };
        let Some(mut tx) = self.begin_unpaid(first.month).await? else {
            return Ok(false);
        };
        for a in rows {
            sqlx::query(
                "INSERT INTO job_attendance (job, month, village, worked, required, recorded_ms, \
                 recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job, month) DO UPDATE \
                 SET village = excluded.village, worked = excluded.worked, required = excluded.required, \
                 recorded_ms = excluded.recorded_ms, recorded_by = excluded.recorded_by",
            )
            .bind(&a.job)
            .bind(a.month.to_string())
            .bind(&a.village)
            .bind(i64::from(a.worked))
            .bind(i64::from(a.required))
            .bind(ms(a.at))
            .bind(&a.by)
            .execute(&mut *tx)
            .await?;
        }
        let detail = rows
            .iter()
            .map(|a| format!("{} {}/{}", a.job, a.worked, a.required))
            .collect::<Vec<_>>()
            .join(", ");
        audit_in(
            &mut tx,
            first.at,
            &first.by,
            "attendance",
            Some(&first.village),
            Some(&first.month.to_string()),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every attendance record made in the browser, by month and job.
    pub async fn attendance(&self) -> Result<Vec<AttendanceRow>> {
        let rows = sqlx::query(
            "SELECT job, month, village, worked, required, recorded_ms, recorded_by \
             FROM job_attendance ORDER BY month, job",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let month: String = r.try_get(1)?;
                let count = |i: usize, what: &str| -> Result<u32> {
                    let v: i64 = r.try_get(i)?;
                    u32::try_from(v).map_err(|_| {
                        super::Error::Corrupt(format!("job_attendance.{what} {v} is out of range"))
                    })
                };
                Ok(AttendanceRow {
                    job: r.try_get(0)?,
                    month: month.parse().map_err(|e| {
                        super::Error::Corrupt(format!("job_attendance.month '{month}': {e}"))
                    })?,
                    village: r.try_get(2)?,
                    worked: count(3, "worked")?,
                    required: count(4, "required")?,
                    at: from_ms(r.try_get(5)?, "job_attendance.recorded_ms")?,
                    by: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// A county advance recorded in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvanceRow {
    pub id: i64,
    pub village: String,
    pub month: YearMonth,
    pub amount: Fen,
    pub reference: String,
    pub at: DateTime<Utc>,
    pub by: String,
}

impl Store {
    /// Records a county advance posted in `month`, only while that month is not paid (checked in
    /// the same transaction). Returns false for a paid month.
    pub async fn record_advance(&self, a: &AdvanceRow) -> Result<bool> {
        let Some(mut tx) = self.begin_unpaid(a.month).await? else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO county_advances (village, month, amount_fen, reference, recorded_ms, recorded_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&a.village)
        .bind(a.month.to_string())
        .bind(a.amount.0)
        .bind(&a.reference)
        .bind(ms(a.at))
        .bind(&a.by)
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            a.at,
            &a.by,
            "county_advance",
            Some(&a.village),
            Some(&a.month.to_string()),
            &format!("{} ({})", a.amount, a.reference),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every advance recorded in the browser, the latest month first.
    pub async fn advances(&self) -> Result<Vec<AdvanceRow>> {
        let rows = sqlx::query(
            "SELECT id, village, month, amount_fen, reference, recorded_ms, recorded_by \
             FROM county_advances ORDER BY month DESC, id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let month: String = r.try_get(2)?;
                Ok(AdvanceRow {
                    id: r.try_get(0)?,
                    village: r.try_get(1)?,
                    month: month.parse().map_err(|e| {
                        super::Error::Corrupt(format!("county advance month '{month}': {e}"))
                    })?,
                    amount: Fen(r.try_get(3)?),
                    reference: r.try_get(4)?,
                    at: from_ms(r.try_get(5)?, "county_advances.recorded_ms")?,
                    by: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// What a village's account held when the ledger began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningRow {
    pub village: String,
    pub balance: Fen,
    pub advance_outstanding: Fen,
    pub note: String,
    pub at: DateTime<Utc>,
    pub by: String,
}

impl Store {
    /// Sets a village's opening balance, only while the ledger has no month recorded (checked in
    /// the same transaction). Returns false when a month is recorded already.
    pub async fn set_opening_balance(&self, o: &OpeningRow) -> Result<bool> {
        let mut tx = self.begin_write(self.pool()).await?;
        let started = sqlx::query("SELECT 1 FROM ledger_months LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        if started.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO opening_balances (village, balance_fen, advance_outstanding_fen, note, set_ms, set_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (village) DO UPDATE SET \
             balance_fen = excluded.balance_fen, advance_outstanding_fen = excluded.advance_outstanding_fen, \
             note = excluded.note, set_ms = excluded.set_ms, set_by = excluded.set_by",
        )
        .bind(&o.village)
        .bind(o.balance.0)
        .bind(o.advance_outstanding.0)
        .bind(&o.note)
        .bind(ms(o.at))
        .bind(&o.by)
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            o.at,
            &o.by,
            "opening_balance",
            Some(&o.village),
            None,
            &format!(
                "opening balance {} (advances outstanding {}): {}",
                o.balance, o.advance_outstanding, o.note
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every village's opening balance, by village.
    pub async fn opening_balances(&self) -> Result<Vec<OpeningRow>> {
        let rows = sqlx::query(
            "SELECT village, balance_fen, advance_outstanding_fen, note, set_ms, set_by \
             FROM opening_balances ORDER BY village",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpeningRow {
                    village: r.try_get(0)?,
                    balance: Fen(r.try_get(1)?),
                    advance_outstanding: Fen(r.try_get(2)?),
                    note: r.try_get(3)?,
                    at: from_ms(r.try_get(4)?, "opening_balances.set_ms")?,
                    by: r.try_get(5)?,
                })
            })
            .collect()
    }
}

/// A village's review (复核) of its statement for a month run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    pub month: String,
    pub village: String,
    /// The fingerprint of the month run that was reviewed.
    pub fingerprint: String,
    pub at: DateTime<Utc>,
    pub by: String,
    pub note: String,
}

impl Store {
    /// Records that `village`'s statement of `month` was reviewed, for the run with `fingerprint`
    /// (a later review replaces an earlier one).
    pub async fn review_village_month(&self, r: &ReviewRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO ledger_village_reviews (month, village, fingerprint, reviewed_ms, reviewed_by, note) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (month, village) DO UPDATE SET \
             fingerprint = excluded.fingerprint, reviewed_ms = excluded.reviewed_ms, \
             reviewed_by = excluded.reviewed_by, note = excluded.note",
        )
        .bind(&r.month)
        .bind(&r.village)
        .bind(&r.fingerprint)
        .bind(ms(r.at))
        .bind(&r.by)
        .bind(&r.note)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The reviews of a month's villages, by village.
    pub async fn month_reviews(&self, month: &str) -> Result<Vec<ReviewRow>> {
        let rows = sqlx::query(
            "SELECT month, village, fingerprint, reviewed_ms, reviewed_by, note \
             FROM ledger_village_reviews WHERE month = $1 ORDER BY village",
        )
        .bind(month)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReviewRow {
                    month: r.try_get(0)?,
                    village: r.try_get(1)?,
                    fingerprint: r.try_get(2)?,
                    at: from_ms(r.try_get(3)?, "ledger_village_reviews.reviewed_ms")?,
                    by: r.try_get(4)?,
                    note: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The villages that have a statement for `month`.
    pub async fn month_villages(&self, month: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT village FROM ledger_village_months WHERE month = $1 ORDER BY village",
        )
        .bind(month)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
