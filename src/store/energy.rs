//! Energy reads (counter readings around a period) and the settlements table.

use super::{Result, Store};
use crate::domain::{DeviceId, Fen, StationId, WattHours, YearMonth};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// The energy columns of one raw reading.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyReading {
    pub at: DateTime<Utc>,
    pub lifetime_wh: Option<f64>,
    pub today_wh: Option<f64>,
    pub state: Option<String>,
}

/// A settlement as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    pub station: StationId,
    pub month: YearMonth,
    pub energy: WattHours,
    pub amount: Option<Fen>,
    /// The file it came from and its line there.
    pub source: String,
    pub source_line: i64,
    pub imported: DateTime<Utc>,
}

/// How an all-or-nothing settlement insert went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementInsert {
    Inserted(usize),
    /// Nothing was written: these rows (indexes into the batch) already have a settlement.
    AlreadyImported(Vec<usize>),
}

fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn settlement_from(r: &sqlx::any::AnyRow) -> Result<SettlementRow> {
    let month: String = r.try_get(1)?;
    let month = month
        .parse()
        .map_err(|e| super::Error::Corrupt(format!("settlements.month: {e}")))?;
    Ok(SettlementRow {
        station: StationId::new(r.try_get::<String, _>(0)?),
        month,
        energy: WattHours(r.try_get(2)?),
        amount: r.try_get::<Option<i64>, _>(3)?.map(Fen),
        source: r.try_get(4)?,
        source_line: r.try_get(5)?,
        imported: ms_to_utc(r.try_get(6)?),
    })
}

const SETTLEMENT_COLUMNS: &str =
    "station, month, energy_wh, amount_fen, source, source_line, imported_ms";

impl Store {
    /// Raw readings of a device in `[from, to)` (energy columns only), oldest first.
    pub async fn energy_readings(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EnergyReading>> {
        let rows = sqlx::query(
            "SELECT ts_ms, energy_lifetime_wh, energy_today_wh, state FROM raw_samples \
             WHERE device_id = $1 AND ts_ms >= $2 AND ts_ms < $3 ORDER BY ts_ms",
        )
        .bind(device.as_str())
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EnergyReading {
                    at: ms_to_utc(r.try_get(0)?),
                    lifetime_wh: r.try_get(1)?,
                    today_wh: r.try_get(2)?,
                    state: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The counter readings just outside `[from, to)`: the last before `from` and the first at or
    /// after `to`, from raw samples and hourly rollups (which outlive raw retention), so that a gap
    /// across a period boundary is bridged rather than cut.
    pub async fn energy_neighbours(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EnergyReading>> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let mut out = Vec::new();
        let queries = [
            "SELECT ts_ms, energy_lifetime_wh, energy_today_wh FROM raw_samples \
             WHERE device_id = $1 AND ts_ms < $2 ORDER BY ts_ms DESC LIMIT 1",
            "SELECT ts_ms, energy_lifetime_wh, energy_today_wh FROM raw_samples \
             WHERE device_id = $1 AND ts_ms >= $2 ORDER BY ts_ms LIMIT 1",
            "SELECT energy_last_ms, energy_last_wh, NULL FROM rollups \
             WHERE device_id = $1 AND period_s = 3600 AND energy_last_ms IS NOT NULL \
             AND energy_last_ms < $2 ORDER BY energy_last_ms DESC LIMIT 1",
            "SELECT energy_first_ms, energy_first_wh, NULL FROM rollups \
             WHERE device_id = $1 AND period_s = 3600 AND energy_first_ms IS NOT NULL \
             AND energy_first_ms >= $2 ORDER BY energy_first_ms LIMIT 1",
        ];
        for (i, q) in queries.iter().enumerate() {
            let at = if i % 2 == 0 { from } else { to };
            let row = sqlx::query(q)
                .bind(device.as_str())
                .bind(at.timestamp_millis())
                .fetch_optional(self.pool())
                .await?;
            if let Some(r) = row {
                out.push(EnergyReading {
                    at: ms_to_utc(r.try_get(0)?),
                    lifetime_wh: r.try_get(1)?,
                    today_wh: r.try_get::<Option<f64>, _>(2).unwrap_or(None),
                    state: None,
                });
            }
        }
        Ok(out)
    }

    /// Inserts a whole settlement file in one transaction, or nothing when any station-month is
    /// already settled (a correction is a new statement from the grid company, never an edit).
    pub async fn insert_settlements(&self, rows: &[SettlementRow]) -> Result<SettlementInsert> {
        let mut tx = self.pool().begin().await?;
        let mut taken = Vec::new();
        for (i, s) in rows.iter().enumerate() {
            let exists = sqlx::query("SELECT 1 FROM settlements WHERE station = $1 AND month = $2")
                .bind(s.station.as_str())
                .bind(s.month.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                taken.push(i);
            }
        }
        if !taken.is_empty() {
            tx.rollback().await?;
            return Ok(SettlementInsert::AlreadyImported(taken));
        }
        for s in rows {
            sqlx::query(&format!(
                "INSERT INTO settlements ({SETTLEMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(s.station.as_str())
            .bind(s.month.to_string())
            .bind(s.energy.0)
            .bind(s.amount.map(|a| a.0))
            .bind(&s.source)
            .bind(s.source_line)
            .bind(s.imported.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(SettlementInsert::Inserted(rows.len()))
    }

    pub async fn settlement(
        &self,
        station: &StationId,
        month: YearMonth,
    ) -> Result<Option<SettlementRow>> {
        let row = sqlx::query(&format!(
            "SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE station = $1 AND month = $2"
        ))
        .bind(station.as_str())
        .bind(month.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(settlement_from).transpose()
    }

    /// Every settlement of a station, oldest month first.
    pub async fn settlements_of(&self, station: &StationId) -> Result<Vec<SettlementRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE station = $1 ORDER BY month"
        ))
        .bind(station.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(settlement_from).collect()
    }
}
