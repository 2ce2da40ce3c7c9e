//! The registry mirror: the deployment file's places, stations and devices, copied into the
//! database at start-up so that SQL reports and other instances see the same fleet. Households and
//! jobs are not mirrored: the file only seeds them (`households.rs`), the registry holds them.

use super::samples::StationNow;
use super::{Result, Store};
use crate::config::Deployment;
use crate::domain::{StationId, Transport};
use chrono::DateTime;
use sqlx::Row;
use std::collections::HashMap;

/// The PostgreSQL advisory lock key the registry sync holds for its transaction ("SUNREG").
const REGISTRY_SYNC_LOCK: i64 = 0x5355_4E52_4547;

impl Store {
    /// Replaces the registry mirror with what `d` declares, in one transaction, and seeds the
    /// household registry with the file's households it does not hold yet.
    pub async fn sync_registry(&self, d: &Deployment) -> Result<()> {
        let mut tx = self.begin_write(self.pool()).await?;
        if self.backend() == crate::config::Backend::Postgres {
            // Instances starting together on one database take turns: without the lock, one's
            // inserts meet the other's rows its delete did not see, and it stops on a duplicate key.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(REGISTRY_SYNC_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        for table in [
            "counties",
            "townships",
            "villages",
            "stations",
            "station_owners",
            "devices",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        for c in &d.counties {
            sqlx::query("INSERT INTO counties (id, name, province) VALUES ($1, $2, $3)")
                .bind(c.id.as_str())
                .bind(&c.name)
                .bind(&c.province)
                .execute(&mut *tx)
                .await?;
        }
        for t in &d.townships {
            sqlx::query("INSERT INTO townships (id, name, county) VALUES ($1, $2, $3)")
                .bind(t.id.as_str())
                .bind(&t.name)
                .bind(t.county.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for v in &d.villages {
            sqlx::query("INSERT INTO villages (code, name, township) VALUES ($1, $2, $3)")
                .bind(v.code.as_str())
                .bind(&v.name)
                .bind(v.township.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for s in &d.stations {
            sqlx::query(
                "INSERT INTO stations (id, name, kind, county, capacity_kwp, latitude, longitude, \
                 timezone, commissioned, tariff, village) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(s.id.as_str())
            .bind(&s.name)
            .bind(s.kind.label())
            .bind(s.county.as_str())
            .bind(s.capacity_kwp)
            .bind(s.latitude)
            .bind(s.longitude)
            .bind(s.timezone.name())
            .bind(s.commissioned.to_string())
            .bind(s.tariff.as_str())
            .bind(s.village.as_ref().map(|v| v.as_str()))
            .execute(&mut *tx)
            .await?;
            for o in &s.owners {
                sqlx::query(
                    "INSERT INTO station_owners (station, village, weight) VALUES ($1, $2, $3)",
                )
                .bind(s.id.as_str())
                .bind(o.village.as_str())
                .bind(i64::try_from(o.weight).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            }
        }
        for dev in &d.devices {
            let transport = match &dev.transport {
                Transport::ModbusTcp { address, unit } => format!("modbus-tcp://{address}/{unit}"),
                Transport::RtuOverTcp { address, unit } => {
                    format!("rtu-over-tcp://{address}/{unit}")
                }
                Transport::Mqtt { logger, unit } => match unit {
                    Some(u) => format!("mqtt://{logger}/{u}"),
                    None => format!("mqtt://{logger}"),
                },
            };
            sqlx::query(
                "INSERT INTO devices (id, station, kind, model, transport, rated_power_w) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(dev.id.as_str())
            .bind(dev.station.as_str())
            .bind(format!("{:?}", dev.kind).to_lowercase())
            .bind(&dev.model)
            .bind(transport)
            .bind(dev.rated_power_w)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.changed();
        let now = chrono::Utc::now().timestamp_millis();
        self.seed_households(&d.households, now).await?;
        self.seed_jobs(&d.jobs, now).await?;
        Ok(())
    }

    /// Registered station ids, as the database holds them.
    pub async fn station_ids(&self) -> Result<Vec<StationId>> {
        let rows = sqlx::query("SELECT id FROM stations ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(StationId::new(r.try_get::<String, _>(0)?)))
            .collect()
    }

    /// Current power and contact per station, from the latest value of each of its devices.
    pub async fn fleet_now(&self) -> Result<HashMap<StationId, StationNow>> {
        self.settle_part(super::behind::Part::Latest).await?;
        let rows = sqlx::query(
            "SELECT d.station, COUNT(*), COUNT(l.device_id), CAST(SUM(COALESCE(l.ac_power_w, 0.0)) AS DOUBLE PRECISION), MAX(l.ts_ms) \
             FROM devices d LEFT JOIN latest l ON l.device_id = d.id GROUP BY d.station",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = HashMap::new();
        for r in &rows {
            let last: Option<i64> = r.try_get(4)?;
            out.insert(
                StationId::new(r.try_get::<String, _>(0)?),
                StationNow {
                    devices: r.try_get(1)?,
                    reporting: r.try_get(2)?,
                    power_w: r.try_get::<Option<f64>, _>(3)?.unwrap_or(0.0),
                    last_contact: last.and_then(DateTime::from_timestamp_millis),
                },
            );
        }
        Ok(out)
    }
}

impl Store {
    /// Energy per station and daily bucket from the lifetime counters seen within each day, for the
    /// days starting at or after `since`. A first estimate for dashboards; `energy` owns the
    /// accountable figures.
    pub async fn station_day_energy_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(StationId, i64, f64)>> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let rows = sqlx::query(
            "SELECT d.station, r.bucket_ms, CAST(SUM(COALESCE(r.energy_last_wh - r.energy_first_wh, 0.0)) AS DOUBLE PRECISION) \
             FROM rollups r JOIN devices d ON d.id = r.device_id \
             WHERE r.period_s = 86400 AND r.bucket_ms >= $1 GROUP BY d.station, r.bucket_ms",
        )
        .bind(since.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(station_day).collect()
    }

    /// [`Store::station_day_energy_since`] for the named stations only (a station page's county
    /// peers): the rollups are read through each device's key, not scanned.
    pub async fn station_day_energy_of(
        &self,
        stations: &[&str],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(StationId, i64, f64)>> {
        self.settle_part(super::behind::Part::Rollups).await?;
        let mut out = Vec::new();
        for chunk in stations.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                // The rollups are reached by device through their primary key: joined the other
                // way round, the planner walks every device's daily rollups since `$1`.
                "SELECT d.station, r.bucket_ms, CAST(SUM(COALESCE(r.energy_last_wh - r.energy_first_wh, 0.0)) AS DOUBLE PRECISION) \
                 FROM rollups r JOIN devices d ON d.id = r.device_id \
                 WHERE r.device_id IN (SELECT id FROM devices WHERE station IN ({})) \
                 AND r.period_s = 86400 AND r.bucket_ms >= $1 \
                 GROUP BY d.station, r.bucket_ms",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(since.timestamp_millis());
            for s in chunk {
                query = query.bind(*s);
            }
            for r in query.fetch_all(self.pool()).await? {
                out.push(station_day(&r)?);
            }
        }
        Ok(out)
    }
}

fn station_day(r: &sqlx::any::AnyRow) -> Result<(StationId, i64, f64)> {
    Ok((
        StationId::new(r.try_get::<String, _>(0)?),
        r.try_get(1)?,
        r.try_get::<Option<f64>, _>(2)?.unwrap_or(0.0),
    ))
}
