//! Stored figures of stations' past local days (`station_days`), kept for the station page: read
//! whole, written by `energy::daily`, and marked stale by the rollup writes (`mark_days_stale`)
//! whenever a sample lands within a day's reach. This module stores and marks; it never computes
//! a figure.

use super::{Result, Store};
use crate::config::Backend;
use crate::domain::StationId;
use sqlx::Row;

/// One station-day as stored. Notes, per-device shares and resets are plain text: codes separated
/// by commas; `device<TAB>wh<TAB>notes` lines; `device<TAB>ms` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFiguresRow {
    pub station: StationId,
    pub day_ms: i64,
    pub to_ms: i64,
    pub energy_wh: i64,
    pub notes: String,
    pub expected: i64,
    pub received: i64,
    pub observed_hours: i64,
    pub producing_hours: i64,
    pub clipped_hours: i64,
    pub derated_readings: i64,
    pub devices: String,
    pub resets: String,
    /// The nearest readings outside the day (`i64::MIN` / `i64::MAX` when there is none).
    pub reach_from_ms: i64,
    pub reach_to_ms: i64,
}

/// A stored day and how many marks it has collected since it was last computed (0: current).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDay {
    pub row: DayFiguresRow,
    pub stale: i64,
    /// How many times the day was stored computed (a month composed of it keeps the sum).
    pub version: i64,
}

/// A closed month composed from its days, with what it was composed from: the number of days and
/// the sum of their versions. `row.day_ms` is the month's start; the reach fields are unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMonth {
    pub row: DayFiguresRow,
    pub days: i64,
    pub days_version: i64,
}

/// What a span of a station's stored days is now: how many, the sum of their versions, and
/// whether any is marked stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DaysSignature {
    pub days: i64,
    pub versions: i64,
    pub stale: bool,
}

const COLUMNS: &str = "station_id, day_ms, to_ms, energy_wh, notes, expected, received, \
     observed_hours, producing_hours, clipped_hours, derated_readings, devices, resets, \
     reach_from_ms, reach_to_ms, stale, version";

const MONTH_COLUMNS: &str = "station_id, month_ms, to_ms, energy_wh, notes, expected, received, \
     observed_hours, producing_hours, clipped_hours, derated_readings, devices, resets, days, \
     days_version";

/// A day's or a month's figures: the first 13 columns of [`COLUMNS`] and [`MONTH_COLUMNS`], with
/// the reach given.
fn figures(r: &sqlx::any::AnyRow, reach_from_ms: i64, reach_to_ms: i64) -> Result<DayFiguresRow> {
    Ok(DayFiguresRow {
        station: StationId::new(r.try_get::<String, _>(0)?),
        day_ms: r.try_get(1)?,
        to_ms: r.try_get(2)?,
        energy_wh: r.try_get(3)?,
        notes: r.try_get(4)?,
        expected: r.try_get(5)?,
        received: r.try_get(6)?,
        observed_hours: r.try_get(7)?,
        producing_hours: r.try_get(8)?,
        clipped_hours: r.try_get(9)?,
        derated_readings: r.try_get(10)?,
        devices: r.try_get(11)?,
        resets: r.try_get(12)?,
        reach_from_ms,
        reach_to_ms,
    })
}

/// Stores a recomputed day if its marks are still those its computation started from.
const UPDATE_DAY: &str = "UPDATE station_days SET to_ms = $3, energy_wh = $4, notes = $5, \
     expected = $6, received = $7, observed_hours = $8, producing_hours = $9, clipped_hours = $10, \
     derated_readings = $11, devices = $12, resets = $13, reach_from_ms = $14, reach_to_ms = $15, \
     stale = 0, version = version + 1 \
     WHERE station_id = $1 AND day_ms = $2 AND stale = $16 RETURNING version";

/// Binds a day's or a month's figures as `$1..$13`, in the order [`figures`] reads them.
fn bind_figures<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    r: &'q DayFiguresRow,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(r.station.as_str())
        .bind(r.day_ms)
        .bind(r.to_ms)
        .bind(r.energy_wh)
        .bind(r.notes.as_str())
        .bind(r.expected)
        .bind(r.received)
        .bind(r.observed_hours)
        .bind(r.producing_hours)
        .bind(r.clipped_hours)
        .bind(r.derated_readings)
        .bind(r.devices.as_str())
        .bind(r.resets.as_str())
}

fn stored(r: &sqlx::any::AnyRow) -> Result<StoredDay> {
    Ok(StoredDay {
        row: figures(r, r.try_get(13)?, r.try_get(14)?)?,
        stale: r.try_get(15)?,
        version: r.try_get(16)?,
    })
}

fn stored_month(r: &sqlx::any::AnyRow) -> Result<StoredMonth> {
    Ok(StoredMonth {
        row: figures(r, i64::MIN, i64::MAX)?,
        days: r.try_get(13)?,
        days_version: r.try_get(14)?,
    })
}

impl Store {
    /// A station's stored days starting in `[from_ms, to_ms)`, oldest first. Pending rollups are
    /// written first, so every stored sample's mark is in.
    pub async fn station_days(
        &self,
        station: &StationId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredDay>> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM station_days WHERE station_id = $1 AND day_ms >= $2 \
             AND day_ms < $3 ORDER BY day_ms"
        ))
        .bind(station.as_str())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Stale days of any station (at most `limit`), by station and day.
    pub async fn stale_station_days(&self, limit: i64) -> Result<Vec<StoredDay>> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM station_days WHERE stale > 0 ORDER BY station_id, day_ms LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Per station: its first and last stored day and how many days are stored.
    pub async fn station_days_extent(&self) -> Result<Vec<(StationId, i64, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT station_id, MIN(day_ms), MAX(day_ms), COUNT(*) FROM station_days GROUP BY station_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    StationId::new(r.try_get::<String, _>(0)?),
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                ))
            })
            .collect()
    }

    /// Per station: the start of its first daily rollup bucket (its first day with data).
    pub async fn station_first_days(&self) -> Result<Vec<(StationId, i64)>> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let rows = sqlx::query(
            "SELECT d.station, MIN(r.bucket_ms) FROM devices d JOIN rollups r ON r.device_id = d.id \
             WHERE r.period_s = 86400 GROUP BY d.station",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((StationId::new(r.try_get::<String, _>(0)?), r.try_get(1)?)))
            .collect()
    }

    /// Adds a stale placeholder for each of these days (start, end) not stored yet, reaching
    /// everywhere: a sample stored from now on marks it, so its first computation cannot miss one.
    pub async fn add_station_days(&self, station: &StationId, days: &[(i64, i64)]) -> Result<()> {
        if days.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(self.writer()).await?;
        for chunk in days.chunks(super::samples::rows_per_statement(4)) {
            let mut sql = String::from(
                "INSERT INTO station_days (station_id, day_ms, to_ms, reach_from_ms, energy_wh, notes, \
                 expected, received, observed_hours, producing_hours, clipped_hours, derated_readings, \
                 devices, resets, reach_to_ms, stale) VALUES ",
            );
            let mut n = 1;
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                match self.backend() {
                    Backend::Sqlite => sql.push_str("(?, ?, ?, ?"),
                    Backend::Postgres => {
                        sql.push_str(&format!("(${}, ${}, ${}, ${}", n, n + 1, n + 2, n + 3));
                    }
                }
                n += 4;
                sql.push_str(&format!(
                    ", 0, '', 0, 0, 0, 0, 0, 0, '', '', {}, 1)",
                    i64::MAX
                ));
            }
            sql.push_str(" ON CONFLICT (station_id, day_ms) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for (from, to) in chunk {
                q = q
                    .bind(station.as_str())
                    .bind(*from)
                    .bind(*to)
                    .bind(i64::MIN);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores recomputed days, each with the marks its computation started from (`seen`). A day
    /// marked again meanwhile (or stored by a computation that saw the same marks) is left as it
    /// is: a sample stored while the figures were computed keeps the day stale. Returns, per
    /// row, the version it was stored as (`None`: left as it was).
    pub async fn put_station_days(
        &self,
        rows: &[(DayFiguresRow, i64)],
    ) -> Result<Vec<Option<i64>>> {
        let mut out = Vec::with_capacity(rows.len());
        if rows.is_empty() {
            return Ok(out);
        }
        let mut tx = self.begin_write(self.writer()).await?;
        for (r, seen) in rows {
            let applied = bind_figures(sqlx::query(UPDATE_DAY), r)
                .bind(r.reach_from_ms)
                .bind(r.reach_to_ms)
                .bind(*seen)
                .fetch_optional(&mut *tx)
                .await?;
            out.push(match applied {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A station's stored closed months starting in `[from_ms, to_ms)`, oldest first.
    pub async fn station_months(
        &self,
        station: &StationId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredMonth>> {
        let rows = sqlx::query(&format!(
            "SELECT {MONTH_COLUMNS} FROM station_months WHERE station_id = $1 AND month_ms >= $2 \
             AND month_ms < $3 ORDER BY month_ms"
        ))
        .bind(station.as_str())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(stored_month).collect()
    }

    /// A station's stored closed months starting in `[from_ms, to_ms)`, oldest first, with what
    /// the stored days of that span are now: one round trip for the station page.
    pub async fn station_months_checked(
        &self,
        station: &StationId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(Vec<StoredMonth>, DaysSignature)> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let rows = sqlx::query(&format!(
            "SELECT {MONTH_COLUMNS}, s.n, s.v, s.st FROM station_months, \
             (SELECT COUNT(*) AS n, CAST(COALESCE(SUM(version), 0) AS BIGINT) AS v, \
              CAST(COALESCE(MAX(stale), 0) AS BIGINT) AS st FROM station_days \
              WHERE station_id = $1 AND day_ms >= $2 AND day_ms < $3) s \
             WHERE station_id = $1 AND month_ms >= $2 AND month_ms < $3 ORDER BY month_ms"
        ))
        .bind(station.as_str())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        let mut signature = DaysSignature::default();
        let mut months = Vec::with_capacity(rows.len());
        for r in &rows {
            months.push(stored_month(r)?);
            signature = DaysSignature {
                days: r.try_get(15)?,
                versions: r.try_get(16)?,
                stale: r.try_get::<i64, _>(17)? > 0,
            };
        }
        Ok((months, signature))
    }

    /// Stores composed months (replacing what was stored for them).
    pub async fn put_station_months(&self, months: &[StoredMonth]) -> Result<()> {
        if months.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(self.writer()).await?;
        for m in months {
            let r = &m.row;
            let sql = format!(
                "INSERT INTO station_months ({MONTH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (station_id, month_ms) DO UPDATE \
                 SET to_ms = excluded.to_ms, energy_wh = excluded.energy_wh, notes = excluded.notes, \
                 expected = excluded.expected, received = excluded.received, \
                 observed_hours = excluded.observed_hours, producing_hours = excluded.producing_hours, \
                 clipped_hours = excluded.clipped_hours, derated_readings = excluded.derated_readings, \
                 devices = excluded.devices, resets = excluded.resets, days = excluded.days, \
                 days_version = excluded.days_version"
            );
            bind_figures(sqlx::query(&sql), r)
                .bind(m.days)
                .bind(m.days_version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Marks stale every stored day that a sample of `device` in `[from_ms, to_ms)` may change: the
/// days of the device's station whose reach overlaps that span. Runs in the transaction that
/// merges the samples into the rollups, so the marks are as durable as the rollups.
pub(super) async fn mark_days_stale(
    conn: &mut sqlx::AnyConnection,
    spans: &[(&str, i64, i64)],
) -> Result<()> {
    for (device, from, to) in spans {
        sqlx::query(
            "UPDATE station_days SET stale = stale + 1 WHERE station_id IN \
             (SELECT station FROM devices WHERE id = $1) AND reach_to_ms > $2 AND reach_from_ms < $3",
        )
        .bind(*device)
        .bind(*from)
        .bind(*to)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
