//! Raw samples, latest values and rollups.

use super::behind::Part;
use super::{Result, Store};
use crate::config::Backend;
use crate::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use rustc_hash::FxHashMap;
use sqlx::Row;
use std::collections::BTreeMap;

/// The rollup periods kept, in seconds. The daily bucket starts at the station's local midnight.
pub const PERIODS: [i64; 3] = [300, 3600, 86_400];

/// The newest reading of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestRow {
    pub device: DeviceId,
    pub at: DateTime<Utc>,
    pub ac_power_w: Option<f64>,
    pub energy_today_wh: Option<f64>,
    pub energy_lifetime_wh: Option<f64>,
    pub state: Option<String>,
    pub readings: Readings,
}

/// One rollup bucket of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub device: DeviceId,
    pub period_s: i64,
    pub bucket: DateTime<Utc>,
    pub samples: i64,
    pub power_avg_w: Option<f64>,
    pub power_min_w: Option<f64>,
    pub power_max_w: Option<f64>,
    pub energy_first: Option<(DateTime<Utc>, f64)>,
    pub energy_last: Option<(DateTime<Utc>, f64)>,
}

/// A station's current picture for the fleet page.
#[derive(Debug, Clone, PartialEq)]
pub struct StationNow {
    pub devices: i64,
    pub reporting: i64,
    pub power_w: f64,
    pub last_contact: Option<DateTime<Utc>>,
}

/// How a batch went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub inserted: usize,
    /// Already stored (same device and timestamp): recognised, not stored twice.
    pub duplicates: usize,
}

/// A rollup bucket's contribution: what `ROLLUP_MERGE` adds to the stored row.
#[derive(Debug, Default, Clone)]
pub(super) struct Agg {
    samples: i64,
    power_sum: f64,
    power_min: Option<f64>,
    power_max: Option<f64>,
    first: Option<(i64, f64)>,
    last: Option<(i64, f64)>,
}

/// A device's newest reading, as `latest` stores it.
#[derive(Debug, Clone)]
pub(super) struct LatestVals {
    pub ts_ms: i64,
    pub ac_power_w: Option<f64>,
    pub energy_today_wh: Option<f64>,
    pub energy_lifetime_wh: Option<f64>,
    pub state: Option<DeviceState>,
    /// The readings encoded as JSON.
    pub readings: String,
}

impl LatestVals {
    fn of(s: &Sample, readings: String) -> Self {
        Self {
            ts_ms: s.at.timestamp_millis(),
            ac_power_w: s.readings.get(Metric::AcPowerW),
            energy_today_wh: s.readings.get(Metric::EnergyTodayWh),
            energy_lifetime_wh: s.readings.get(Metric::EnergyLifetimeWh),
            state: s.readings.state,
            readings,
        }
    }
}

impl Agg {
    /// Merges another contribution, exactly as `ROLLUP_MERGE` merges into a stored row.
    pub(super) fn merge(&mut self, o: &Agg) {
        self.samples += o.samples;
        self.power_sum += o.power_sum;
        if let Some(m) = o.power_min {
            self.power_min = Some(self.power_min.map_or(m, |x| x.min(m)));
        }
        if let Some(m) = o.power_max {
            self.power_max = Some(self.power_max.map_or(m, |x| x.max(m)));
        }
        if let Some((t, v)) = o.first {
            if self.first.is_none_or(|(x, _)| t < x) {
                self.first = Some((t, v));
            }
        }
        if let Some((t, v)) = o.last {
            if self.last.is_none_or(|(x, _)| t > x) {
                self.last = Some((t, v));
            }
        }
    }

    pub(super) fn add(&mut self, ts_ms: i64, power: Option<f64>, energy: Option<f64>) {
        self.samples += 1;
        if let Some(p) = power {
            self.power_sum += p;
            self.power_min = Some(self.power_min.map_or(p, |m| m.min(p)));
            self.power_max = Some(self.power_max.map_or(p, |m| m.max(p)));
        }
        if let Some(e) = energy {
            if self.first.is_none_or(|(t, _)| ts_ms < t) {
                self.first = Some((ts_ms, e));
            }
            if self.last.is_none_or(|(t, _)| ts_ms > t) {
                self.last = Some((ts_ms, e));
            }
        }
    }
}

/// Merges a pre-aggregated bucket into a stored one: counts and sums add, min/max widen, and the
/// first/last counters are chosen by timestamp, so late data lands where it belongs.
const ROLLUP_MERGE: &str = " ON CONFLICT (device_id, period_s, bucket_ms) DO UPDATE SET \
     samples = rollups.samples + excluded.samples, \
     power_sum = rollups.power_sum + excluded.power_sum, \
     power_min = CASE WHEN rollups.power_min IS NULL OR excluded.power_min < rollups.power_min \
         THEN excluded.power_min ELSE rollups.power_min END, \
     power_max = CASE WHEN rollups.power_max IS NULL OR excluded.power_max > rollups.power_max \
         THEN excluded.power_max ELSE rollups.power_max END, \
     energy_first_wh = CASE WHEN rollups.energy_first_ms IS NULL OR excluded.energy_first_ms < rollups.energy_first_ms \
         THEN excluded.energy_first_wh ELSE rollups.energy_first_wh END, \
     energy_first_ms = CASE WHEN rollups.energy_first_ms IS NULL OR excluded.energy_first_ms < rollups.energy_first_ms \
         THEN excluded.energy_first_ms ELSE rollups.energy_first_ms END, \
     energy_last_wh = CASE WHEN rollups.energy_last_ms IS NULL OR excluded.energy_last_ms > rollups.energy_last_ms \
         THEN excluded.energy_last_wh ELSE rollups.energy_last_wh END, \
     energy_last_ms = CASE WHEN rollups.energy_last_ms IS NULL OR excluded.energy_last_ms > rollups.energy_last_ms \
         THEN excluded.energy_last_ms ELSE rollups.energy_last_ms END";

/// Moves `latest` forward only.
const LATEST_MERGE: &str = " ON CONFLICT (device_id) DO UPDATE SET ts_ms = excluded.ts_ms, \
     ac_power_w = excluded.ac_power_w, energy_today_wh = excluded.energy_today_wh, \
     energy_lifetime_wh = excluded.energy_lifetime_wh, state = excluded.state, \
     readings = excluded.readings WHERE excluded.ts_ms > latest.ts_ms";

/// The start of the bucket of `period_s` holding `at`; days start at local midnight in `tz`.
pub fn bucket_start(at: DateTime<Utc>, period_s: i64, tz: Tz) -> i64 {
    if period_s == 86_400 {
        let local_day = at.with_timezone(&tz).date_naive();
        let midnight = local_day.and_hms_opt(0, 0, 0).unwrap_or_default();
        return tz
            .from_local_datetime(&midnight)
            .earliest()
            .map_or_else(|| at.timestamp_millis(), |d| d.timestamp_millis());
    }
    let ms = at.timestamp_millis();
    ms - ms.rem_euclid(period_s * 1000)
}

/// The readings column's JSON. A failure is an error naming the sample, never an empty `{}`
/// stored in its place.
pub(crate) fn encode_readings(s: &Sample) -> Result<String> {
    let fail = |e: &dyn std::fmt::Display| {
        super::Error::Encode(format!(
            "the readings of device {} at {}: {e}",
            s.device,
            s.at.format("%Y-%m-%dT%H:%M:%S%.3fZ")
        ))
    };
    // Sized for a full inverter read at once (about 20 bytes a value), not grown piecewise.
    let mut buf = Vec::with_capacity(64 + 24 * s.readings.values.len());
    serde_json::to_writer(&mut buf, &s.readings).map_err(|e| fail(&e))?;
    String::from_utf8(buf).map_err(|e| fail(&e))
}

/// A stored readings column; unreadable JSON is corrupt data naming its row, never empty readings.
pub(crate) fn decode_readings(
    text: &str,
    table: &str,
    device: &str,
    ts_ms: i64,
) -> Result<Readings> {
    serde_json::from_str(text).map_err(|e| {
        super::Error::Corrupt(format!(
            "{table}.readings of device {device} at {ts_ms} ms is not readings JSON: {e}"
        ))
    })
}

fn latest_row(r: &sqlx::any::AnyRow) -> Result<LatestRow> {
    let device: String = r.try_get(0)?;
    let ts_ms: i64 = r.try_get(1)?;
    Ok(LatestRow {
        readings: decode_readings(&r.try_get::<String, _>(6)?, "latest", &device, ts_ms)?,
        device: DeviceId::new(device),
        at: ms_to_utc(ts_ms, "latest.ts_ms")?,
        ac_power_w: r.try_get(2)?,
        energy_today_wh: r.try_get(3)?,
        energy_lifetime_wh: r.try_get(4)?,
        state: r.try_get(5)?,
    })
}

fn ms_to_utc(ms: i64, column: &str) -> Result<DateTime<Utc>> {
    super::stored_time(ms, column)
}

impl Store {
    /// Writes a batch in one transaction: raw rows (a duplicate device+timestamp is skipped), rollups
    /// updated from the rows actually inserted, and the latest value moved forward only.
    ///
    /// Fast path: raw rows go in multi-row inserts that skip an existing device+timestamp (`INSERT OR
    /// IGNORE` on SQLite, `ON CONFLICT DO NOTHING RETURNING` on PostgreSQL), so only the rows really
    /// inserted reach the rollups; rollups are aggregated in memory first and upserted once per
    /// bucket; every statement stays below SQLite's bound-parameter limit.
    pub async fn write_samples(
        &self,
        batch: &[Sample],
        tz_of: &(dyn Fn(&DeviceId) -> Tz + Sync),
    ) -> Result<WriteOutcome> {
        self.write_samples_marked(batch, tz_of)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Store::write_samples`], also saying for each sample of `batch` whether it was newly stored
    /// (`false`: a duplicate), so only new rows are forwarded to the sinks.
    pub async fn write_samples_marked(
        &self,
        batch: &[Sample],
        tz_of: &(dyn Fn(&DeviceId) -> Tz + Sync),
    ) -> Result<(WriteOutcome, Vec<bool>)> {
        let mut outcome = WriteOutcome::default();
        // Rows go in in key order: consecutive inserts then land on the same or the next leaf of
        // the (device, timestamp) index, which the database finds without a fresh descent.
        // Repeats inside one batch are duplicates too; the sort is stable, so the first occurrence
        // wins, as in the table.
        let key = |i: usize| (batch[i].device.as_str(), batch[i].at.timestamp_millis());
        let mut origin: Vec<usize> = (0..batch.len()).collect();
        origin.sort_by_key(|&i| key(i));
        origin.dedup_by_key(|i| key(*i));
        outcome.duplicates += batch.len() - origin.len();
        let marks = vec![false; batch.len()];
        if origin.is_empty() {
            return Ok((outcome, marks));
        }
        let unique: Vec<&Sample> = origin.iter().map(|&i| &batch[i]).collect();
        let index: FxHashMap<(&str, i64), usize> = unique
            .iter()
            .enumerate()
            .map(|(n, s)| ((s.device.as_str(), s.at.timestamp_millis()), n))
            .collect();
        // On SQLite the write-behind state is held for the whole write, so the rows this batch
        // inserts and their contribution reach `Pending` together (see `behind`).
        let mut behind = match self.behind() {
            Some(b) => Some(b.lock().await),
            None => None,
        };
        // The newest sample of each device in the batch: its encoded readings also go to `latest`.
        let mut newest_at: FxHashMap<&DeviceId, usize> = FxHashMap::default();
        for (n, s) in unique.iter().enumerate() {
            let e = newest_at.entry(&s.device).or_insert(n);
            if s.at > unique[*e].at {
                *e = n;
            }
        }
        let mut latest_text: Vec<Option<String>> = vec![None; unique.len()];
        let mut is_newest = vec![false; unique.len()];
        for n in newest_at.values() {
            is_newest[*n] = true;
        }
        // Raw rows go in several statements, pipelined: while the database runs one, this thread
        // encodes and binds the next.
        // SQLite says how many rows a statement inserted, and the rows of one statement get
        // consecutive rowids ending at `last_insert_rowid()`, so when some were duplicates the
        // inserted ones are read back by rowid. PostgreSQL names the inserted rows with RETURNING.
        let sqlite = self.backend() == Backend::Sqlite;
        // On SQLite, OR IGNORE rather than ON CONFLICT DO NOTHING: no conflict can abort the
        // statement half-way, so SQLite keeps no statement journal for these multi-row inserts.
        // The columns bound are never NULL, so only the key conflict is ever ignored.
        let (insert, returning) = if sqlite {
            ("INSERT OR IGNORE INTO", "")
        } else {
            (
                "INSERT INTO",
                " ON CONFLICT (device_id, ts_ms) DO NOTHING RETURNING device_id, ts_ms",
            )
        };
        let raw_sql = |rows: usize| {
            let mut sql = String::with_capacity(160 + rows * 40);
            sql.push_str(insert);
            sql.push_str(
                " raw_samples (device_id, ts_ms, ac_power_w, energy_today_wh, \
                 energy_lifetime_wh, state, readings) VALUES ",
            );
            push_placeholders(&mut sql, self.backend(), rows, 7);
            sql.push_str(returning);
            sql
        };
        let per = RAW_ROWS_PER_STATEMENT;
        let full_sql = raw_sql(per.min(unique.len()));
        let tail_sql = match unique.len() % per {
            0 => String::new(),
            rows => raw_sql(rows),
        };
        let build = |k: usize, latest_text: &mut [Option<String>]| {
            let from = k * per;
            let chunk = &unique[from..unique.len().min(from + per)];
            let sql = if chunk.len() == per.min(unique.len()) {
                full_sql.as_str()
            } else {
                tail_sql.as_str()
            };
            let mut q = sqlx::query(sql);
            for (n, s) in chunk.iter().enumerate() {
                let text = encode_readings(s)?;
                if is_newest[from + n] {
                    latest_text[from + n] = Some(text.clone());
                }
                q = q
                    .bind(s.device.as_str())
                    .bind(s.at.timestamp_millis())
                    .bind(s.readings.get(Metric::AcPowerW))
                    .bind(s.readings.get(Metric::EnergyTodayWh))
                    .bind(s.readings.get(Metric::EnergyLifetimeWh))
                    .bind(s.readings.state.map(DeviceState::as_str))
                    .bind(text);
            }
            Ok::<_, super::Error>(q)
        };
        let statements = unique.len().div_ceil(per);
        let mut tx = self.begin_write(self.writer()).await?;
        let mut inserted = vec![false; unique.len()];
        let mut any_stored = false;
        let mut next = Some(build(0, &mut latest_text)?);
        for k in 0..statements {
            let Some(q) = next.take() else { break };
            let from = k * per;
            let to = unique.len().min(from + per);
            if !sqlite {
                let (rows, built) = futures::join!(q.fetch_all(&mut *tx), async {
                    (k + 1 < statements).then(|| build(k + 1, &mut latest_text))
                });
                next = built.transpose()?;
                for row in rows? {
                    let device: &str = row.try_get(0)?;
                    let ts: i64 = row.try_get(1)?;
                    if let Some(i) = index.get(&(device, ts)) {
                        inserted[*i] = true;
                    }
                }
                continue;
            }
            let (done, built) = futures::join!(q.execute(&mut *tx), async {
                (k + 1 < statements).then(|| build(k + 1, &mut latest_text))
            });
            next = built.transpose()?;
            let stored = usize::try_from(done?.rows_affected()).unwrap_or(usize::MAX);
            if stored == 0 {
                continue;
            }
            any_stored = true;
            if stored == to - from {
                inserted[from..to].fill(true);
                continue;
            }
            // (sqlx's Any driver does not pass SQLite's last rowid on, so it is asked for.)
            let last = last_insert_rowid(&mut tx).await?;
            let rows = sqlx::query(
                "SELECT device_id, ts_ms FROM raw_samples WHERE rowid > $1 AND rowid <= $2",
            )
            .bind(last - i64::try_from(stored).unwrap_or(i64::MAX))
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            if rows.len() != stored {
                return Err(super::Error::Corrupt(format!(
                    "raw insert reported {stored} new rows up to rowid {last}, found {}",
                    rows.len()
                )));
            }
            for row in rows {
                let device: &str = row.try_get(0)?;
                let ts: i64 = row.try_get(1)?;
                if let Some(i) = index.get(&(device, ts)) {
                    inserted[*i] = true;
                }
            }
        }
        // The highest rowid this batch stored (rowids only grow while the write lock is held).
        let max_rowid = if sqlite && any_stored {
            last_insert_rowid(&mut tx).await?
        } else {
            0
        };
        let aggregate = || {
            let mut outcome = outcome;
            let mut marks = marks;
            let mut aggs: FxHashMap<(&DeviceId, i64, i64), Agg> = FxHashMap::default();
            let mut newest: FxHashMap<&DeviceId, usize> = FxHashMap::default();
            let mut tz_cache: FxHashMap<&DeviceId, Tz> = FxHashMap::default();
            for (n, ((s, stored), at)) in unique.iter().zip(&inserted).zip(&origin).enumerate() {
                let ts = s.at.timestamp_millis();
                if !stored {
                    outcome.duplicates += 1;
                    continue;
                }
                marks[*at] = true;
                outcome.inserted += 1;
                let tz = *tz_cache
                    .entry(&s.device)
                    .or_insert_with(|| tz_of(&s.device));
                let power = s.readings.get(Metric::AcPowerW);
                let energy = s.readings.get(Metric::EnergyLifetimeWh);
                for period in PERIODS {
                    aggs.entry((&s.device, period, bucket_start(s.at, period, tz)))
                        .or_default()
                        .add(ts, power, energy);
                }
                let e = newest.entry(&s.device).or_insert(n);
                if s.at > unique[*e].at {
                    *e = n;
                }
            }
            (outcome, marks, aggs, newest)
        };
        if let Some(pending) = behind.as_mut() {
            // The commit runs while this thread aggregates; the contribution joins `Pending` only
            // once the rows are committed.
            let (committed, (outcome, marks, aggs, newest)) =
                futures::join!(tx.commit(), async { aggregate() });
            committed?;
            let newest: Vec<(DeviceId, LatestVals)> = newest
                .into_iter()
                .map(|(d, n)| {
                    let text = match latest_text[n].take() {
                        Some(text) => text,
                        None => encode_readings(unique[n])?,
                    };
                    Ok((d.clone(), LatestVals::of(unique[n], text)))
                })
                .collect::<Result<_>>()?;
            pending.absorb(
                aggs.into_iter()
                    .map(|((d, p, b), a)| ((d.clone(), p, b), a)),
                newest,
                max_rowid,
            );
            if pending.due() {
                // The raw rows are committed and their contribution is kept in memory (and can be
                // rebuilt from them), so a failed flush is only retried later, not reported as a
                // failed write that would make the caller send the batch again.
                if let Err(error) = self.flush_pending(pending, Part::All).await {
                    tracing::warn!(%error, "writing pending rollups failed; will retry");
                }
            }
            if outcome.inserted > 0 {
                self.changed();
            }
            return Ok((outcome, marks));
        }
        let (outcome, marks, aggs, newest) = aggregate();
        let mut aggs: Vec<(&str, i64, i64, &Agg)> = aggs
            .iter()
            .map(|((d, p, b), a)| (d.as_str(), *p, *b, a))
            .collect();
        aggs.sort_unstable_by(|x, y| (x.0, x.1, x.2).cmp(&(y.0, y.1, y.2)));
        upsert_rollups(&mut tx, self.backend(), &aggs).await?;
        let newest: Vec<(&str, LatestVals)> = newest
            .into_iter()
            .map(|(d, n)| {
                let text = match latest_text[n].take() {
                    Some(text) => text,
                    None => encode_readings(unique[n])?,
                };
                Ok((d.as_str(), LatestVals::of(unique[n], text)))
            })
            .collect::<Result<_>>()?;
        let mut newest: Vec<(&str, &LatestVals)> = newest.iter().map(|(d, v)| (*d, v)).collect();
        newest.sort_unstable_by(|x, y| x.0.cmp(y.0));
        upsert_latest(&mut tx, self.backend(), &newest).await?;
        if self.backend() == Backend::Sqlite {
            mark_all_rows_covered(&mut tx).await?;
        }
        tx.commit().await?;
        if outcome.inserted > 0 {
            self.changed();
        }
        Ok((outcome, marks))
    }

    /// The row-at-a-time form of [`Store::write_samples`]: same result, one statement per row. Kept
    /// as the benchmark's peer and as the oracle the batched path is tested against.
    #[doc(hidden)]
    pub async fn write_samples_row_by_row(
        &self,
        batch: &[Sample],
        tz_of: &(dyn Fn(&DeviceId) -> Tz + Sync),
    ) -> Result<WriteOutcome> {
        // Write-through: whatever is pending goes first, and the watermark then covers every row.
        let mut behind = match self.behind() {
            Some(b) => Some(b.lock().await),
            None => None,
        };
        if let Some(pending) = behind.as_mut() {
            self.flush_pending(pending, Part::All).await?;
        }
        let mut tx = self.begin_write(self.writer()).await?;
        let mut outcome = WriteOutcome::default();
        let mut aggs: BTreeMap<(&str, i64, i64), Agg> = BTreeMap::new();
        let mut newest: BTreeMap<&str, &Sample> = BTreeMap::new();
        for s in batch {
            let ts = s.at.timestamp_millis();
            let power = s.readings.get(Metric::AcPowerW);
            let energy = s.readings.get(Metric::EnergyLifetimeWh);
            let done = sqlx::query(
                "INSERT INTO raw_samples (device_id, ts_ms, ac_power_w, energy_today_wh, \
                 energy_lifetime_wh, state, readings) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (device_id, ts_ms) DO NOTHING",
            )
            .bind(s.device.as_str())
            .bind(ts)
            .bind(power)
            .bind(s.readings.get(Metric::EnergyTodayWh))
            .bind(energy)
            .bind(s.readings.state.map(|st| st.as_str()))
            .bind(encode_readings(s)?)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                outcome.duplicates += 1;
                continue;
            }
            outcome.inserted += 1;
            let tz = tz_of(&s.device);
            for period in PERIODS {
                aggs.entry((s.device.as_str(), period, bucket_start(s.at, period, tz)))
                    .or_default()
                    .add(ts, power, energy);
            }
            let entry = newest.entry(s.device.as_str()).or_insert(s);
            if s.at > entry.at {
                *entry = s;
            }
        }
        // One statement per row, through the same merges as the batched path.
        let backend = self.backend();
        for ((device, period, bucket), a) in &aggs {
            upsert_rollups(&mut tx, backend, &[(*device, *period, *bucket, a)]).await?;
        }
        for (device, s) in newest {
            let vals = LatestVals::of(s, encode_readings(s)?);
            upsert_latest(&mut tx, backend, &[(device, &vals)]).await?;
        }
        if let Some(pending) = behind.as_mut() {
            let top = mark_all_rows_covered(&mut tx).await?;
            tx.commit().await?;
            pending.mark_written(top);
        } else {
            tx.commit().await?;
        }
        self.changed();
        Ok(outcome)
    }

    /// The newest reading of every device that has reported.
    pub async fn latest(&self) -> Result<Vec<LatestRow>> {
        self.settle_part(Part::Latest).await?;
        let rows = sqlx::query(
            "SELECT device_id, ts_ms, ac_power_w, energy_today_wh, energy_lifetime_wh, state, readings \
             FROM latest ORDER BY device_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(latest_row).collect()
    }

    /// The newest reading of each of these devices that has reported (a station page's own).
    pub async fn latest_of(&self, devices: &[&DeviceId]) -> Result<Vec<LatestRow>> {
        self.settle_part(Part::Latest).await?;
        let mut out = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT device_id, ts_ms, ac_power_w, energy_today_wh, energy_lifetime_wh, state, readings \
                 FROM latest WHERE device_id IN ({}) ORDER BY device_id",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(d.as_str());
            }
            for r in q.fetch_all(self.pool()).await? {
                out.push(latest_row(&r)?);
            }
        }
        out.sort_by(|a, b| a.device.cmp(&b.device));
        Ok(out)
    }

    /// Raw samples of a device in `[from, to)`, oldest first.
    pub async fn raw_samples(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT ts_ms, readings FROM raw_samples WHERE device_id = $1 AND ts_ms >= $2 AND ts_ms < $3 \
             ORDER BY ts_ms",
        )
        .bind(device.as_str())
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let ts_ms: i64 = r.try_get(0)?;
                Ok(Sample {
                    device: device.clone(),
                    at: ms_to_utc(ts_ms, "raw_samples.ts_ms")?,
                    readings: decode_readings(
                        &r.try_get::<String, _>(1)?,
                        "raw_samples",
                        device.as_str(),
                        ts_ms,
                    )?,
                })
            })
            .collect()
    }

    /// Rollup buckets of `period_s` for a device whose bucket starts in `[from, to)`, oldest first.
    pub async fn rollups(
        &self,
        device: &DeviceId,
        period_s: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RollupRow>> {
        self.rollups_of(device, &[period_s], from, to).await
    }

    /// [`Store::rollups`] of several periods in one round trip: by period (shortest first), then
    /// oldest first.
    pub async fn rollups_of(
        &self,
        device: &DeviceId,
        periods: &[i64],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RollupRow>> {
        if periods.is_empty() {
            return Ok(Vec::new());
        }
        self.settle_part(Part::Rollups).await?;
        let marks: Vec<String> = (0..periods.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT bucket_ms, samples, power_sum, power_min, power_max, energy_first_ms, energy_first_wh, \
             energy_last_ms, energy_last_wh, period_s FROM rollups WHERE device_id = $1 \
             AND bucket_ms >= $2 AND bucket_ms < $3 AND period_s IN ({}) ORDER BY period_s, bucket_ms",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(device.as_str())
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis());
        for p in periods {
            q = q.bind(*p);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let period_s: i64 = r.try_get(9)?;
                let samples: i64 = r.try_get(1)?;
                let power_sum: f64 = r.try_get(2)?;
                let power_min: Option<f64> = r.try_get(3)?;
                let pair = |t: Option<i64>, v: Option<f64>| {
                    t.zip(v)
                        .map(|(t, v)| {
                            Ok::<_, super::Error>((ms_to_utc(t, "rollups.energy_ms")?, v))
                        })
                        .transpose()
                };
                Ok(RollupRow {
                    device: device.clone(),
                    period_s,
                    bucket: ms_to_utc(r.try_get(0)?, "rollups.bucket_ms")?,
                    samples,
                    power_avg_w: power_min.map(|_| power_sum / samples.max(1) as f64),
                    power_min_w: power_min,
                    power_max_w: r.try_get(4)?,
                    energy_first: pair(r.try_get(5)?, r.try_get(6)?)?,
                    energy_last: pair(r.try_get(7)?, r.try_get(8)?)?,
                })
            })
            .collect()
    }

    /// Deletes raw samples older than `cutoff` (rollups stay). Returns how many were removed.
    pub async fn purge_raw_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let Some(behind) = self.behind() else {
            let done = sqlx::query("DELETE FROM raw_samples WHERE ts_ms < $1")
                .bind(cutoff.timestamp_millis())
                .execute(self.pool())
                .await?;
            self.changed();
            return Ok(done.rows_affected());
        };
        // The rows' contribution is written before they go. SQLite may hand a deleted highest
        // rowid out again, so the watermark is reset to what remains.
        let mut pending = behind.lock().await;
        self.flush_pending(&mut pending, Part::Rollups).await?;
        let mut tx = self.begin_write(self.writer()).await?;
        let done = sqlx::query("DELETE FROM raw_samples WHERE ts_ms < $1")
            .bind(cutoff.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        let top = mark_all_rows_covered(&mut tx).await?;
        tx.commit().await?;
        pending.mark_written(top);
        self.changed();
        Ok(done.rows_affected())
    }

    /// Counts raw samples (for tests and `/metrics`).
    pub async fn raw_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM raw_samples")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet_batch(devices: usize, minutes: i64, start: DateTime<Utc>) -> Vec<Sample> {
        let mut out = Vec::new();
        for m in 0..minutes {
            for d in 0..devices {
                let mut r = Readings::default();
                r.set(Metric::AcPowerW, 1_000.0 * d as f64 + m as f64);
                r.set(Metric::EnergyLifetimeWh, 1e6 + 17.0 * m as f64);
                r.set(Metric::EnergyTodayWh, 17.0 * m as f64);
                r.state = Some(crate::domain::DeviceState::Producing);
                out.push(Sample {
                    device: DeviceId::new(format!("dev-{d}")),
                    at: start + chrono::Duration::minutes(m),
                    readings: r,
                });
            }
        }
        out
    }

    async fn dump(store: &Store, devices: usize, from: DateTime<Utc>) -> Vec<RollupRow> {
        let mut out = Vec::new();
        for d in 0..devices {
            for p in PERIODS {
                let dev = DeviceId::new(format!("dev-{d}"));
                let to = from + chrono::Duration::days(3);
                let rows = store
                    .rollups(&dev, p, from - chrono::Duration::days(1), to)
                    .await
                    .expect("rollups");
                out.extend(rows);
            }
        }
        out
    }

    #[tokio::test]
    async fn batched_writes_match_row_by_row_writes() -> anyhow::Result<()> {
        let start = Utc
            .with_ymd_and_hms(2026, 6, 1, 15, 30, 0)
            .single()
            .expect("valid");
        let all = fleet_batch(7, 300, start);
        let tz = |_: &DeviceId| chrono_tz::Asia::Shanghai;
        for ts in crate::store::testing::all("batched_writes_match_row_by_row_writes").await? {
            let reference = crate::store::testing::sqlite().await?;
            // Live data in batches, then a late backlog and a redelivery with in-batch repeats.
            let (live, late) = all.split_at(all.len() / 2);
            let mut replay: Vec<Sample> = live[100..400].to_vec();
            replay.extend_from_slice(&live[100..110]);
            let mut batches: Vec<Vec<Sample>> = late.chunks(333).map(<[Sample]>::to_vec).collect();
            batches.push(live.to_vec());
            batches.push(replay);
            let mut fast = WriteOutcome::default();
            let mut slow = WriteOutcome::default();
            for b in &batches {
                let f = ts.store.write_samples(b, &tz).await?;
                let r = reference.store.write_samples_row_by_row(b, &tz).await?;
                fast.inserted += f.inserted;
                fast.duplicates += f.duplicates;
                slow.inserted += r.inserted;
                slow.duplicates += r.duplicates;
            }
            assert_eq!(fast, slow, "{}", ts.name);
            assert_eq!(fast.inserted, all.len());
            assert_eq!(fast.duplicates, 310);
            let a = dump(&ts.store, 7, start).await;
            let b = dump(&reference.store, 7, start).await;
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(
                    (
                        x.bucket,
                        x.samples,
                        x.power_min_w,
                        x.power_max_w,
                        x.energy_first,
                        x.energy_last
                    ),
                    (
                        y.bucket,
                        y.samples,
                        y.power_min_w,
                        y.power_max_w,
                        y.energy_first,
                        y.energy_last
                    ),
                    "{}",
                    ts.name
                );
                let (pa, pb) = (x.power_avg_w.unwrap_or(0.0), y.power_avg_w.unwrap_or(0.0));
                assert!((pa - pb).abs() < 1e-6);
            }
            assert_eq!(ts.store.latest().await?, reference.store.latest().await?);
        }
        Ok(())
    }

    async fn same_rollups(a: &Store, b: &Store, devices: usize, start: DateTime<Utc>) {
        let (x, y) = (dump(a, devices, start).await, dump(b, devices, start).await);
        assert_eq!(x.len(), y.len());
        for (x, y) in x.iter().zip(&y) {
            assert_eq!(
                (x.bucket, x.samples, x.power_min_w, x.power_max_w),
                (y.bucket, y.samples, y.power_min_w, y.power_max_w)
            );
            assert_eq!(
                (x.energy_first, x.energy_last),
                (y.energy_first, y.energy_last)
            );
            let (pa, pb) = (x.power_avg_w.unwrap_or(0.0), y.power_avg_w.unwrap_or(0.0));
            assert!((pa - pb).abs() < 1e-6, "{pa} != {pb}");
        }
    }

    #[tokio::test]
    async fn rollups_left_pending_by_a_crash_are_rebuilt_at_start_up() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sunshare.db");
        let start = Utc
            .with_ymd_and_hms(2026, 6, 1, 15, 30, 0)
            .single()
            .expect("valid");
        let all = fleet_batch(5, 240, start);
        let tz = |_: &DeviceId| chrono_tz::Asia::Shanghai;
        let reference = crate::store::testing::sqlite().await?;
        reference.store.write_samples_row_by_row(&all, &tz).await?;
        {
            let store = Store::open_sqlite(&path).await?;
            // A first part is written and read (which writes the pending rollups), the rest only
            // written; then the process "dies": the store is dropped without closing.
            let first = &all[..400];
            store.write_samples(first, &tz).await?;
            let dev0 = DeviceId::new("dev-0");
            let day = start + chrono::Duration::days(1);
            // 80 minutes of samples: sixteen 5-minute buckets.
            assert_eq!(store.rollups(&dev0, 300, start, day).await?.len(), 16);
            assert_eq!(store.pending_sizes().await, (0, 5));
            assert_eq!(store.latest().await?.len(), 5);
            assert_eq!(store.pending_sizes().await, (0, 0));
            // The first of these batches repeats 50 stored samples: only its new rows count.
            for b in all[350..].chunks(150) {
                store.write_samples(b, &tz).await?;
            }
            let (buckets, devices) = store.pending_sizes().await;
            assert!(
                buckets > 0 && devices == 5,
                "{buckets} buckets, {devices} devices pending"
            );
        }
        let store = Store::open_sqlite(&path).await?;
        assert_eq!(store.pending_sizes().await, (0, 0));
        same_rollups(&store, &reference.store, 5, start).await;
        assert_eq!(store.latest().await?, reference.store.latest().await?);
        // A second start has nothing to replay and changes nothing.
        store.close().await;
        let store = Store::open_sqlite(&path).await?;
        same_rollups(&store, &reference.store, 5, start).await;
        Ok(())
    }

    #[tokio::test]
    async fn rows_written_after_a_purge_are_replayed_after_a_crash() -> anyhow::Result<()> {
        // Purging the newest raw rows lets SQLite hand their rowids out again; rows stored after
        // the purge must still count once, not be mistaken for rows the rollups already hold.
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sunshare.db");
        let start = Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let tz = |_: &DeviceId| chrono_tz::Asia::Shanghai;
        let old = fleet_batch(3, 60, start);
        let new = fleet_batch(3, 60, start + chrono::Duration::hours(5));
        let reference = crate::store::testing::sqlite().await?;
        reference.store.write_samples_row_by_row(&old, &tz).await?;
        reference.store.write_samples_row_by_row(&new, &tz).await?;
        {
            let store = Store::open_sqlite(&path).await?;
            store.write_samples(&old, &tz).await?;
            let removed = store
                .purge_raw_before(start + chrono::Duration::hours(4))
                .await?;
            assert_eq!(removed, old.len() as u64);
            assert_eq!(store.raw_count().await?, 0);
            store.write_samples(&new, &tz).await?;
        }
        let store = Store::open_sqlite(&path).await?;
        same_rollups(&store, &reference.store, 3, start).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_parameter_limit_is_written() -> anyhow::Result<()> {
        let ts = crate::store::testing::sqlite().await?;
        let start = Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let batch = fleet_batch(50, 200, start);
        let out = ts
            .store
            .write_samples(&batch, &|_: &DeviceId| chrono_tz::Asia::Shanghai)
            .await?;
        assert_eq!(out.inserted, 10_000);
        assert_eq!(ts.store.raw_count().await?, 10_000);
        Ok(())
    }

    #[test]
    fn day_buckets_start_at_local_midnight() {
        let tz = chrono_tz::Asia::Shanghai;
        // 2026-06-01 02:00 UTC is 10:00 in Shanghai; the local day starts 2026-05-31 16:00 UTC.
        let at = Utc
            .with_ymd_and_hms(2026, 6, 1, 2, 0, 0)
            .single()
            .expect("valid");
        let start = Utc
            .with_ymd_and_hms(2026, 5, 31, 16, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(bucket_start(at, 86_400, tz), start.timestamp_millis());
        let five = Utc
            .with_ymd_and_hms(2026, 6, 1, 2, 0, 0)
            .single()
            .expect("valid");
        let later = five + chrono::Duration::seconds(299);
        assert_eq!(bucket_start(later, 300, tz), five.timestamp_millis());
    }
}

/// A refused sample and why, as ingest hands it over.
#[derive(Debug, Clone)]
pub struct QuarantineEntry<'a> {
    pub sample: &'a Sample,
    /// Stable reason code, e.g. `counter_backwards`.
    pub code: &'static str,
    /// The human explanation with the values involved.
    pub reason: String,
}

/// A quarantined sample as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRow {
    pub id: i64,
    pub device: DeviceId,
    pub at: DateTime<Utc>,
    pub received: DateTime<Utc>,
    pub code: String,
    pub reason: String,
    pub readings: Readings,
}

impl Store {
    /// Keeps a refused sample with the reason it was refused.
    pub async fn quarantine(
        &self,
        sample: &Sample,
        reason: &str,
        received: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO quarantine (device_id, ts_ms, received_ms, reason, readings) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sample.device.as_str())
        .bind(sample.at.timestamp_millis())
        .bind(received.timestamp_millis())
        .bind(reason)
        .bind(encode_readings(sample)?)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Keeps refused samples with their reason codes, in one transaction.
    pub async fn quarantine_many(
        &self,
        entries: &[QuarantineEntry<'_>],
        received: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin_write(self.writer()).await?;
        for chunk in entries.chunks(rows_per_statement(6)) {
            let mut sql = String::from(
                "INSERT INTO quarantine (device_id, ts_ms, received_ms, code, reason, readings) VALUES ",
            );
            push_placeholders(&mut sql, self.backend(), chunk.len(), 6);
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.sample.device.as_str())
                    .bind(e.sample.at.timestamp_millis())
                    .bind(received.timestamp_millis())
                    .bind(e.code)
                    .bind(e.reason.as_str())
                    .bind(encode_readings(e.sample)?);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Quarantined samples, newest first, optionally of one device.
    pub async fn quarantined(
        &self,
        device: Option<&DeviceId>,
        limit: i64,
    ) -> Result<Vec<QuarantineRow>> {
        let cols =
            "SELECT id, device_id, ts_ms, received_ms, code, reason, readings FROM quarantine";
        let rows = match device {
            Some(d) => {
                sqlx::query(&format!(
                    "{cols} WHERE device_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(d.as_str())
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!("{cols} ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                let device: String = r.try_get(1)?;
                let ts_ms: i64 = r.try_get(2)?;
                Ok(QuarantineRow {
                    id: r.try_get(0)?,
                    readings: decode_readings(
                        &r.try_get::<String, _>(6)?,
                        "quarantine",
                        &device,
                        ts_ms,
                    )?,
                    device: DeviceId::new(device),
                    at: ms_to_utc(ts_ms, "quarantine.ts_ms")?,
                    received: ms_to_utc(r.try_get(3)?, "quarantine.received_ms")?,
                    code: r.try_get(4)?,
                    reason: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Quarantined samples per reason code (for pages and checks).
    pub async fn quarantine_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT code, COUNT(*) FROM quarantine GROUP BY code ORDER BY code")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

/// The rowid of the last row the connection's latest successful insert stored (SQLite only).
async fn last_insert_rowid(conn: &mut sqlx::AnyConnection) -> Result<i64> {
    Ok(sqlx::query("SELECT last_insert_rowid()")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?)
}

/// Sets the watermark to the highest raw rowid (SQLite only): for when every raw row's contribution
/// is in the rollups table.
async fn mark_all_rows_covered(conn: &mut sqlx::AnyConnection) -> Result<i64> {
    let top: i64 = sqlx::query("SELECT COALESCE(MAX(rowid), 0) FROM raw_samples")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    sqlx::query("UPDATE rollup_watermark SET raw_rowid = $1 WHERE id = 1")
        .bind(top)
        .execute(&mut *conn)
        .await?;
    Ok(top)
}

/// Merges rollup contributions into the `rollups` table, many rows per statement.
pub(super) async fn upsert_rollups(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[(&str, i64, i64, &Agg)],
) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(11)) {
        let mut sql = String::with_capacity(1_200 + chunk.len() * 60);
        sql.push_str(
            "INSERT INTO rollups (device_id, period_s, bucket_ms, samples, power_sum, power_min, \
             power_max, energy_first_ms, energy_first_wh, energy_last_ms, energy_last_wh) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 11);
        sql.push_str(ROLLUP_MERGE);
        let mut q = sqlx::query(&sql);
        for (device, period, bucket, a) in chunk {
            q = q
                .bind(*device)
                .bind(*period)
                .bind(*bucket)
                .bind(a.samples)
                .bind(a.power_sum)
                .bind(a.power_min)
                .bind(a.power_max)
                .bind(a.first.map(|f| f.0))
                .bind(a.first.map(|f| f.1))
                .bind(a.last.map(|l| l.0))
                .bind(a.last.map(|l| l.1));
        }
        q.execute(&mut *conn).await?;
    }
    // The stored station days these samples may change are marked in the same transaction. The
    // 5-minute buckets bound every sample's time.
    let mut spans: FxHashMap<&str, (i64, i64)> = FxHashMap::default();
    for (device, period, bucket, _) in rows.iter().filter(|r| r.1 == PERIODS[0]) {
        let end = bucket + period * 1000;
        let e = spans.entry(device).or_insert((*bucket, end));
        e.0 = e.0.min(*bucket);
        e.1 = e.1.max(end);
    }
    let mut spans: Vec<(&str, i64, i64)> = spans.into_iter().map(|(d, (f, t))| (d, f, t)).collect();
    spans.sort_unstable();
    super::days::mark_days_stale(conn, &spans).await?;
    Ok(())
}

/// Moves `latest` forward to these readings, many devices per statement.
pub(super) async fn upsert_latest(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[(&str, &LatestVals)],
) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(7)) {
        let mut sql = String::with_capacity(600 + chunk.len() * 40);
        sql.push_str(
            "INSERT INTO latest (device_id, ts_ms, ac_power_w, energy_today_wh, energy_lifetime_wh, \
             state, readings) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 7);
        sql.push_str(LATEST_MERGE);
        let mut q = sqlx::query(&sql);
        for (device, v) in chunk {
            q = q
                .bind(*device)
                .bind(v.ts_ms)
                .bind(v.ac_power_w)
                .bind(v.energy_today_wh)
                .bind(v.energy_lifetime_wh)
                .bind(v.state.map(DeviceState::as_str))
                .bind(v.readings.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Raw rows per insert statement: small enough that binding the next statement overlaps with
/// running this one, large enough that per-statement costs stay small.
const RAW_ROWS_PER_STATEMENT: usize = 400;

/// SQLite accepts at most 32,766 bound parameters per statement (PostgreSQL 65,535); stay well below.
const MAX_PARAMS: usize = 30_000;

pub(crate) fn rows_per_statement(columns: usize) -> usize {
    (MAX_PARAMS / columns).clamp(1, 1_000)
}

/// Appends `($1, $2, ...), (...)` for `rows` rows of `columns` parameters. SQLite gets anonymous
/// `?` instead: it resolves each named `$N` with a linear search, which makes a statement with
/// thousands of parameters quadratic to prepare and bind.
pub(crate) fn push_placeholders(sql: &mut String, backend: Backend, rows: usize, columns: usize) {
    use std::fmt::Write as _;
    let mut n = 1;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${n}");
                }
            }
            n += 1;
        }
        sql.push(')');
    }
}
