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
    /// The import (`settlement_imports.id`) it came from; `None` for rows stored before imports
    /// were recorded. [`Store::insert_settlements`] sets it, whatever the row carries.
    pub import_id: Option<i64>,
    /// The amount Sunshare computes for `energy` at the station's tariff, when it was computed.
    pub computed: Option<Fen>,
}

/// One imported settlement file, told apart from others of the same name by its bytes' SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementImportRow {
    /// Assigned by the store; ignored on insert.
    pub id: i64,
    /// The file name (or upload label).
    pub source: String,
    /// SHA-256 of the file's bytes, 64 lowercase hex digits.
    pub sha256: String,
    pub size_bytes: i64,
    /// How the bytes were read: `xlsx`, `utf-8`, `gbk`, ...
    pub encoding: String,
    /// Statement lines stored from it.
    pub lines: i64,
    pub uploaded: DateTime<Utc>,
}

/// How an all-or-nothing settlement insert went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementInsert {
    /// The import was recorded with this id and its rows stored.
    Inserted { import_id: i64, rows: usize },
    /// Nothing was written: these rows (indexes into the batch) already have a settlement.
    AlreadyImported(Vec<usize>),
    /// Nothing was written: a file with the same bytes was imported before, as this.
    Duplicate(SettlementImportRow),
}

/// The columns read back as times, named in the error when one is not a time.
const RAW_TS: &str = "raw_samples.ts_ms";
const ROLLUP_ENERGY_TS: &str = "rollups.energy_ms";

fn ms_to_utc(ms: i64, column: &str) -> Result<DateTime<Utc>> {
    super::stored_time(ms, column)
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
        imported: ms_to_utc(r.try_get(6)?, "settlements.imported_ms")?,
        import_id: r.try_get(7)?,
        computed: r.try_get::<Option<i64>, _>(8)?.map(Fen),
    })
}

const SETTLEMENT_COLUMNS: &str =
    "station, month, energy_wh, amount_fen, source, source_line, imported_ms, import_id, computed_fen";

fn import_from(r: &sqlx::any::AnyRow) -> Result<SettlementImportRow> {
    Ok(SettlementImportRow {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        sha256: r.try_get(2)?,
        size_bytes: r.try_get(3)?,
        encoding: r.try_get(4)?,
        lines: r.try_get(5)?,
        uploaded: ms_to_utc(r.try_get(6)?, "settlement_imports.uploaded_ms")?,
    })
}

/// The four counter readings around `[$2, $3)` of device `$1` (`$4` = `$3` less an hour), each
/// tagged with its place (0: raw before, 1: raw after, 2: hourly rollup before, 3: after). A
/// bucket's readings lie within its hour and buckets do not overlap, so the order of the buckets
/// is the order of their first and last readings: walking the primary key from the bound finds a
/// rollup neighbour in a row or two instead of sorting a year of hours.
/// The place of a reading inside the span in [`Store::energy_readings_around`]'s rows.
const READING: i64 = 4;

const NEIGHBOURS: &str =
    "SELECT CAST(0 AS BIGINT), ts_ms, energy_lifetime_wh, energy_today_wh, state FROM \
       (SELECT ts_ms, energy_lifetime_wh, energy_today_wh, state FROM raw_samples \
        WHERE device_id = $1 AND ts_ms < $2 ORDER BY ts_ms DESC LIMIT 1) b \
     UNION ALL SELECT CAST(1 AS BIGINT), ts_ms, energy_lifetime_wh, energy_today_wh, state FROM \
       (SELECT ts_ms, energy_lifetime_wh, energy_today_wh, state FROM raw_samples \
        WHERE device_id = $1 AND ts_ms >= $3 ORDER BY ts_ms LIMIT 1) a \
     UNION ALL SELECT CAST(2 AS BIGINT), energy_last_ms, energy_last_wh, NULL, NULL FROM \
       (SELECT energy_last_ms, energy_last_wh FROM rollups \
        WHERE device_id = $1 AND period_s = 3600 AND bucket_ms < $2 \
        AND energy_last_ms IS NOT NULL AND energy_last_ms < $2 \
        ORDER BY bucket_ms DESC LIMIT 1) rb \
     UNION ALL SELECT CAST(3 AS BIGINT), energy_first_ms, energy_first_wh, NULL, NULL FROM \
       (SELECT energy_first_ms, energy_first_wh FROM rollups \
        WHERE device_id = $1 AND period_s = 3600 AND bucket_ms > $4 \
        AND energy_first_ms IS NOT NULL AND energy_first_ms >= $3 \
        ORDER BY bucket_ms LIMIT 1) ra";

const IMPORT_COLUMNS: &str = "id, source, sha256, size_bytes, encoding, lines, uploaded_ms";

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
                    at: ms_to_utc(r.try_get(0)?, RAW_TS)?,
                    lifetime_wh: r.try_get(1)?,
                    today_wh: r.try_get(2)?,
                    state: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// [`Store::energy_readings`] of `[from, to)` and [`Store::energy_neighbours`] of the span in
    /// one round trip: (the readings, oldest first; the neighbours, in their order).
    pub async fn energy_readings_around(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<EnergyReading>, Vec<EnergyReading>)> {
        let sql = format!(
            "{NEIGHBOURS} UNION ALL SELECT CAST(4 AS BIGINT), ts_ms, energy_lifetime_wh, energy_today_wh, \
             state FROM raw_samples WHERE device_id = $1 AND ts_ms >= $2 AND ts_ms < $3 ORDER BY 1, 2"
        );
        let (mut readings, mut neighbours) = (Vec::new(), Vec::new());
        for (slot, reading) in self.tagged_readings(&sql, device, from, to).await? {
            if slot == READING {
                readings.push(reading);
            } else {
                neighbours.push(reading);
            }
        }
        Ok((readings, neighbours))
    }

    /// The rows of `sql` (with [`NEIGHBOURS`]' parameters and columns), each with its place.
    async fn tagged_readings(
        &self,
        sql: &str,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, EnergyReading)>> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let rows = sqlx::query(sql)
            .bind(device.as_str())
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .bind(to.timestamp_millis() - 3_600_000)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let slot: i64 = r.try_get(0)?;
                let column = if slot == 2 || slot == 3 {
                    ROLLUP_ENERGY_TS
                } else {
                    RAW_TS
                };
                Ok((
                    slot,
                    EnergyReading {
                        at: ms_to_utc(r.try_get(1)?, column)?,
                        lifetime_wh: r.try_get(2)?,
                        today_wh: r.try_get::<Option<f64>, _>(3)?,
                        // A neighbour bridges a gap in the counter; its state is not read.
                        state: if slot == READING { r.try_get(4)? } else { None },
                    },
                ))
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
        Ok(self
            .energy_neighbours_each(device, from, to)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// [`Store::energy_neighbours`] each on its own: the last raw reading before `from`, the first
    /// at or after `to`, and the same two from the hourly rollups.
    pub async fn energy_neighbours_each(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<[Option<EnergyReading>; 4]> {
        let mut out: [Option<EnergyReading>; 4] = Default::default();
        // One round trip for the four.
        for (slot, reading) in self.tagged_readings(NEIGHBOURS, device, from, to).await? {
            if let Some(place) = usize::try_from(slot).ok().and_then(|i| out.get_mut(i)) {
                *place = Some(reading);
            }
        }
        Ok(out)
    }

    /// Records an import and stores its whole settlement file in one transaction, or nothing when
    /// the same bytes (`import.sha256`) were imported before or any station-month is already settled
    /// (a correction is a new statement from the grid company, never an edit).
    pub async fn insert_settlements(
        &self,
        import: &SettlementImportRow,
        rows: &[SettlementRow],
    ) -> Result<SettlementInsert> {
        if let Some(earlier) = self.settlement_import_by_digest(&import.sha256).await? {
            return Ok(SettlementInsert::Duplicate(earlier));
        }
        let mut tx = self.begin_write(self.pool()).await?;
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
        let recorded = sqlx::query(
            "INSERT INTO settlement_imports (source, sha256, size_bytes, encoding, lines, uploaded_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&import.source)
        .bind(&import.sha256)
        .bind(import.size_bytes)
        .bind(&import.encoding)
        .bind(i64::try_from(rows.len()).unwrap_or(i64::MAX))
        .bind(import.uploaded.timestamp_millis())
        .fetch_one(&mut *tx)
        .await;
        let import_id: i64 = match recorded {
            Ok(row) => row.try_get(0)?,
            Err(e) => {
                // The same bytes imported by someone else since the check above: the unique digest.
                tx.rollback().await?;
                return match self.settlement_import_by_digest(&import.sha256).await? {
                    Some(earlier) => Ok(SettlementInsert::Duplicate(earlier)),
                    None => Err(e.into()),
                };
            }
        };
        for s in rows {
            sqlx::query(&format!(
                "INSERT INTO settlements ({SETTLEMENT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(s.station.as_str())
            .bind(s.month.to_string())
            .bind(s.energy.0)
            .bind(s.amount.map(|a| a.0))
            .bind(&s.source)
            .bind(s.source_line)
            .bind(s.imported.timestamp_millis())
            .bind(import_id)
            .bind(s.computed.map(|a| a.0))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(SettlementInsert::Inserted {
            import_id,
            rows: rows.len(),
        })
    }

    /// The import of the file whose bytes have this SHA-256, if it was imported.
    pub async fn settlement_import_by_digest(
        &self,
        sha256: &str,
    ) -> Result<Option<SettlementImportRow>> {
        let row = sqlx::query(&format!(
            "SELECT {IMPORT_COLUMNS} FROM settlement_imports WHERE sha256 = $1"
        ))
        .bind(sha256)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(import_from).transpose()
    }

    /// Every settlement import, the latest upload first.
    pub async fn settlement_imports(&self) -> Result<Vec<SettlementImportRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {IMPORT_COLUMNS} FROM settlement_imports ORDER BY uploaded_ms DESC, id DESC"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(import_from).collect()
    }

    /// The settlements one import stored, in the order of its lines.
    pub async fn settlements_of_import(&self, import_id: i64) -> Result<Vec<SettlementRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE import_id = $1 ORDER BY source_line"
        ))
        .bind(import_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(settlement_from).collect()
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
