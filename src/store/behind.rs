//! Write-behind rollups and latest values for the embedded (SQLite) store.
//!
//! A raw row is the only thing a sample must write at once. Its contribution to the 5-minute, hourly
//! and daily rollups and to the device's latest value is merged into [`Pending`] in memory and
//! written later, many samples to one row write: by the first write after [`FLUSH_EVERY`] has
//! passed or once the pending buckets reach [`MAX_PENDING_BUCKETS`], before any read of those
//! tables (so every reader sees every stored sample), before raw rows are purged and when the store
//! closes. What waits while no samples arrive is safe in the raw rows.
//!
//! Nothing is lost when the process dies in between: `rollup_watermark` holds the highest raw
//! `rowid` whose contribution is in the `rollups` table, advanced in the same transaction that
//! writes the rollups, and opening the store replays every raw row above it. Replaying the latest
//! value is harmless (it only moves forward), so only the rollups need the mark.
//!
//! PostgreSQL, where several instances may write, stays write-through: one instance's memory cannot
//! vouch for another's rows.

use super::samples::{bucket_start, upsert_latest, upsert_rollups, Agg, LatestVals, PERIODS};
use super::{Result, Store};
use crate::domain::{DeviceId, DeviceState};
use chrono_tz::Tz;
use rustc_hash::FxHashMap;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Longest a contribution waits in memory while samples keep arriving.
pub const FLUSH_EVERY: Duration = Duration::from_secs(300);

/// Pending rollup buckets at which a flush is forced (about 120 bytes each).
pub const MAX_PENDING_BUCKETS: usize = 400_000;

/// Raw rows read per query when replaying after a restart.
const REPLAY_PAGE: i64 = 20_000;

/// A rollup bucket: device, period in seconds, bucket start in epoch milliseconds.
pub(super) type BucketKey = (DeviceId, i64, i64);

/// What has been stored as raw rows but not yet merged into `rollups` and `latest`.
#[derive(Debug)]
pub(crate) struct Pending {
    rollups: FxHashMap<BucketKey, Agg>,
    latest: FxHashMap<DeviceId, LatestVals>,
    /// Every raw row up to this rowid is in `rollups`, either in the table or in `self.rollups`.
    covered_rowid: i64,
    /// What `rollup_watermark` holds.
    stored_rowid: i64,
    last_flush: Instant,
}

impl Pending {
    fn new(stored_rowid: i64) -> Self {
        Self {
            rollups: FxHashMap::default(),
            latest: FxHashMap::default(),
            covered_rowid: stored_rowid,
            stored_rowid,
            last_flush: Instant::now(),
        }
    }

    /// Merges one stored batch's contribution.
    pub(super) fn absorb(
        &mut self,
        rollups: impl IntoIterator<Item = (BucketKey, Agg)>,
        latest: impl IntoIterator<Item = (DeviceId, LatestVals)>,
        max_rowid: i64,
    ) {
        for (key, agg) in rollups {
            self.rollups.entry(key).or_default().merge(&agg);
        }
        for (device, vals) in latest {
            match self.latest.entry(device) {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if vals.ts_ms > o.get().ts_ms {
                        o.insert(vals);
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(vals);
                }
            }
        }
        self.covered_rowid = self.covered_rowid.max(max_rowid);
    }

    /// Records that every raw row up to `top` is in the rollups table (nothing may be pending).
    pub(super) fn mark_written(&mut self, top: i64) {
        debug_assert!(self.rollups.is_empty());
        self.covered_rowid = top;
        self.stored_rowid = top;
    }

    pub(super) fn due(&self) -> bool {
        self.rollups.len() >= MAX_PENDING_BUCKETS || self.last_flush.elapsed() >= FLUSH_EVERY
    }

    /// Buckets and devices waiting (for tests and reports).
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.rollups.len(), self.latest.len())
    }
}

/// The shared write-behind state of one SQLite store.
pub(crate) type Behind = Arc<Mutex<Pending>>;

/// Which pending tables a flush writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Rollups,
    Latest,
    All,
}

impl Part {
    fn rollups(self) -> bool {
        matches!(self, Part::Rollups | Part::All)
    }
    fn latest(self) -> bool {
        matches!(self, Part::Latest | Part::All)
    }
}

impl Store {
    /// Writes what is pending of `part` in one transaction; the pending state is cleared only once
    /// the transaction has committed, so a failed flush is simply tried again later.
    pub(super) async fn flush_pending(&self, pending: &mut Pending, part: Part) -> Result<()> {
        let rollups = part.rollups()
            && (!pending.rollups.is_empty() || pending.covered_rowid > pending.stored_rowid);
        let latest = part.latest() && !pending.latest.is_empty();
        if !rollups && !latest {
            return Ok(());
        }
        let mut tx = self.begin_write(self.writer()).await?;
        if rollups {
            // Written in key order: neighbouring buckets share B-tree pages.
            let mut rows: Vec<(&str, i64, i64, &Agg)> = pending
                .rollups
                .iter()
                .map(|((d, p, b), a)| (d.as_str(), *p, *b, a))
                .collect();
            rows.sort_unstable_by(|x, y| (x.0, x.1, x.2).cmp(&(y.0, y.1, y.2)));
            upsert_rollups(&mut tx, self.backend(), &rows).await?;
            sqlx::query("UPDATE rollup_watermark SET raw_rowid = $1 WHERE id = 1")
                .bind(pending.covered_rowid)
                .execute(&mut *tx)
                .await?;
        }
        if latest {
            let mut rows: Vec<(&str, &LatestVals)> = pending
                .latest
                .iter()
                .map(|(d, v)| (d.as_str(), v))
                .collect();
            rows.sort_unstable_by(|x, y| x.0.cmp(y.0));
            upsert_latest(&mut tx, self.backend(), &rows).await?;
        }
        tx.commit().await?;
        if rollups {
            pending.rollups.clear();
            pending.stored_rowid = pending.covered_rowid;
            pending.last_flush = Instant::now();
        }
        if latest {
            pending.latest.clear();
        }
        Ok(())
    }

    /// Writes everything pending, so that the tables hold every stored sample's contribution. Reads
    /// through the store do this themselves; call it before reading the tables by other means.
    pub async fn settle(&self) -> Result<()> {
        self.settle_part(Part::All).await
    }

    pub(super) async fn settle_part(&self, part: Part) -> Result<()> {
        let Some(behind) = self.behind() else {
            return Ok(());
        };
        let mut pending = behind.lock().await;
        self.flush_pending(&mut pending, part).await
    }

    /// Pending rollup buckets and latest values (0, 0 when everything is written or the backend is
    /// write-through).
    pub async fn pending_sizes(&self) -> (usize, usize) {
        match self.behind() {
            Some(b) => b.lock().await.sizes(),
            None => (0, 0),
        }
    }

    /// Builds the write-behind state of a freshly opened SQLite store: replays the raw rows stored
    /// after the watermark (left by a process that stopped before writing its rollups) and writes
    /// their contribution. Day buckets use the station's time zone as the registry last recorded it
    /// (Asia/Shanghai for a device it does not know, as ingest does).
    pub(super) async fn recover_pending(&self) -> Result<Pending> {
        let stored: i64 = sqlx::query("SELECT raw_rowid FROM rollup_watermark WHERE id = 1")
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        let mut pending = Pending::new(stored);
        // A zone that does not parse is an error: its days would be cut at the wrong midnight.
        let mut zones: HashMap<String, Tz> = HashMap::new();
        for r in sqlx::query(
            "SELECT d.id, s.timezone FROM devices d JOIN stations s ON s.id = d.station",
        )
        .fetch_all(self.pool())
        .await?
        {
            let device: String = r.try_get(0)?;
            let tz: String = r.try_get(1)?;
            let zone = tz.parse().map_err(|_| {
                super::Error::Corrupt(format!(
                    "stations.timezone of device {device}'s station is '{tz}', not a time zone"
                ))
            })?;
            zones.insert(device, zone);
        }
        let mut after = stored;
        let mut replayed = 0_u64;
        loop {
            let rows = sqlx::query(
                "SELECT rowid, device_id, ts_ms, ac_power_w, energy_today_wh, energy_lifetime_wh, \
                 state, readings FROM raw_samples WHERE rowid > $1 ORDER BY rowid LIMIT $2",
            )
            .bind(after)
            .bind(REPLAY_PAGE)
            .fetch_all(self.pool())
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get(0)?;
            replayed += rows.len() as u64;
            let mut aggs: Vec<(BucketKey, Agg)> = Vec::with_capacity(rows.len() * PERIODS.len());
            let mut newest: Vec<(DeviceId, LatestVals)> = Vec::with_capacity(rows.len());
            for r in &rows {
                let device: String = r.try_get(1)?;
                let ts_ms: i64 = r.try_get(2)?;
                let power: Option<f64> = r.try_get(3)?;
                let lifetime: Option<f64> = r.try_get(5)?;
                let tz = zones
                    .get(&device)
                    .copied()
                    .unwrap_or(chrono_tz::Asia::Shanghai);
                let at = super::stored_time(ts_ms, "raw_samples.ts_ms")?;
                let device = DeviceId::new(device);
                for period in PERIODS {
                    let mut agg = Agg::default();
                    agg.add(ts_ms, power, lifetime);
                    aggs.push(((device.clone(), period, bucket_start(at, period, tz)), agg));
                }
                newest.push((
                    device,
                    LatestVals {
                        ts_ms,
                        ac_power_w: power,
                        energy_today_wh: r.try_get(4)?,
                        energy_lifetime_wh: lifetime,
                        state: r
                            .try_get::<Option<String>, _>(6)?
                            .map(|s| DeviceState::parse(&s)),
                        readings: r.try_get(7)?,
                    },
                ));
            }
            pending.absorb(aggs, newest, after);
            if pending.rollups.len() >= MAX_PENDING_BUCKETS {
                self.flush_pending(&mut pending, Part::All).await?;
            }
        }
        self.flush_pending(&mut pending, Part::All).await?;
        if replayed > 0 {
            tracing::info!(
                rows = replayed,
                "rollups and latest values rebuilt from raw rows the last run had not merged"
            );
        }
        Ok(pending)
    }
}
