//! The beneficiary households of centralized stations kept in the browser (migration 0024): a row
//! replaces the deployment file's entry for the same station and household. Callers check the
//! household and the months; here each write is refused when it would touch a paid month.

use super::ledger::{audit_in, from_ms, ms};
use super::{Result, Store};
use crate::domain::YearMonth;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One beneficiary of a centralized station: paid the station's instalment in every month from
/// `from` to `until` (None: no end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMemberRow {
    pub station: String,
    pub household: String,
    pub from: YearMonth,
    pub until: Option<YearMonth>,
    pub at: DateTime<Utc>,
    pub by: String,
}

/// How a write of the pool registry went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolWrite {
    Done,
    /// The month it would change first is paid: nothing was written.
    Paid(YearMonth),
    /// The station's household is registered already (adding), or its membership has an end
    /// already (ending): nothing was written.
    Exists,
}

fn month(r: &AnyRow, i: usize) -> Result<Option<YearMonth>> {
    let text: Option<String> = r.try_get(i)?;
    text.map(|t| {
        t.parse()
            .map_err(|e| super::Error::Corrupt(format!("pool_members month '{t}': {e}")))
    })
    .transpose()
}

fn row(r: &AnyRow) -> Result<PoolMemberRow> {
    Ok(PoolMemberRow {
        station: r.try_get(0)?,
        household: r.try_get(1)?,
        from: month(r, 2)?
            .ok_or_else(|| super::Error::Corrupt("pool_members.from_month is empty".to_owned()))?,
        until: month(r, 3)?,
        at: from_ms(r.try_get(4)?, "pool_members.recorded_ms")?,
        by: r.try_get(5)?,
    })
}

fn window(m: &PoolMemberRow) -> String {
    format!(
        "station {} household {}: {} to {}",
        m.station,
        m.household,
        m.from,
        m.until
            .map_or_else(|| "no end".to_owned(), |u| u.to_string())
    )
}

async fn insert(tx: &mut sqlx::Transaction<'static, sqlx::Any>, m: &PoolMemberRow) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO pool_members (station, household, from_month, until_month, recorded_ms, recorded_by) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&m.station)
    .bind(&m.household)
    .bind(m.from.to_string())
    .bind(m.until.map(|u| u.to_string()))
    .bind(ms(m.at))
    .bind(&m.by)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

impl Store {
    /// Every beneficiary kept in the browser, by station and household.
    pub async fn pool_members(&self) -> Result<Vec<PoolMemberRow>> {
        let rows = sqlx::query(
            "SELECT station, household, from_month, until_month, recorded_ms, recorded_by \
             FROM pool_members ORDER BY station, household",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row).collect()
    }

    /// Adds a beneficiary, unless the station's household is registered already or its first
    /// month is paid. Audited in the same transaction.
    pub async fn add_pool_member(&self, m: &PoolMemberRow) -> Result<PoolWrite> {
        let Some(mut tx) = self.begin_unpaid(m.from).await? else {
            return Ok(PoolWrite::Paid(m.from));
        };
        let there = sqlx::query("SELECT 1 FROM pool_members WHERE station = $1 AND household = $2")
            .bind(&m.station)
            .bind(&m.household)
            .fetch_optional(&mut *tx)
            .await?;
        if there.is_some() {
            tx.rollback().await?;
            return Ok(PoolWrite::Exists);
        }
        insert(&mut tx, m).await?;
        audit_in(
            &mut tx,
            m.at,
            &m.by,
            "pool_member_add",
            None,
            Some(&m.from.to_string()),
            &window(m),
        )
        .await?;
        tx.commit().await?;
        Ok(PoolWrite::Done)
    }

    /// Ends a membership after `m.until` (its last month paid), as long as it had no end when it
    /// was read and the month after is not paid. A membership the file held is written here with
    /// its window (`m.from`), so the registry keeps it from now on. Audited.
    pub async fn end_pool_member(&self, m: &PoolMemberRow) -> Result<PoolWrite> {
        let Some(until) = m.until else {
            return Ok(PoolWrite::Exists);
        };
        let Some(mut tx) = self.begin_unpaid(until.next()).await? else {
            return Ok(PoolWrite::Paid(until.next()));
        };
        let there = sqlx::query(
            "SELECT until_month FROM pool_members WHERE station = $1 AND household = $2",
        )
        .bind(&m.station)
        .bind(&m.household)
        .fetch_optional(&mut *tx)
        .await?;
        let written = match there {
            Some(r) if r.try_get::<Option<String>, _>(0)?.is_some() => None,
            Some(_) => Some(
                sqlx::query(
                    "UPDATE pool_members SET until_month = $1, recorded_ms = $2, recorded_by = $3 \
                     WHERE station = $4 AND household = $5 AND until_month IS NULL",
                )
                .bind(until.to_string())
                .bind(ms(m.at))
                .bind(&m.by)
                .bind(&m.station)
                .bind(&m.household)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            ),
            None => Some(insert(&mut tx, m).await?),
        };
        if written != Some(1) {
            tx.rollback().await?;
            return Ok(PoolWrite::Exists);
        }
        audit_in(
            &mut tx,
            m.at,
            &m.by,
            "pool_member_end",
            None,
            Some(&until.to_string()),
            &window(m),
        )
        .await?;
        tx.commit().await?;
        Ok(PoolWrite::Done)
    }
}
