//! `sunshare bench store`: the write path (raw rows, three rollups, latest) on SQLite, measured
//! against peers in the same run on the same rows. The batched path is timed until everything it
//! writes behind is in its tables.
//!
//! - the row-at-a-time form of the same write (same work, one statement per row);
//! - optionally Python's `sqlite3.executemany` inserting the same raw rows into the same raw table
//!   (less work: no rollups, no latest), the plainest way to put these rows into SQLite.

use super::samples::encode_readings;
use super::{Error, Result, Store};
use crate::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct StoreBench {
    pub samples: usize,
    pub devices: usize,
    pub batch: usize,
    /// Rows given to the row-at-a-time peer (it is slow; a share of `samples` is enough).
    pub peer_samples: usize,
    /// A python3 interpreter for the `executemany` peer, if wanted.
    pub python: Option<PathBuf>,
    pub dir: PathBuf,
}

/// One measured contender.
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: String,
    pub samples: usize,
    pub elapsed: Duration,
}

impl Measured {
    pub fn per_second(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A full inverter reading: 24 values and a state, like a three-phase string inverter's block.
pub fn full_reading(device: usize, minute: i64) -> Readings {
    let mut r = Readings::default();
    let p = 20_000.0 + (device % 97) as f64 * 100.0 + (minute % 60) as f64;
    r.set(Metric::AcPowerW, p);
    r.set(Metric::ReactivePowerVar, 120.0);
    r.set(Metric::PowerFactor, 0.99);
    r.set(Metric::FrequencyHz, 50.01);
    for ph in 1..=3 {
        r.set(Metric::PhaseVoltageV(ph), 230.0 + f64::from(ph));
        r.set(Metric::PhaseCurrentA(ph), p / 690.0);
    }
    r.set(Metric::DcPowerW, p * 1.02);
    for mppt in 1..=4 {
        r.set(Metric::PvVoltageV(mppt), 610.0 + f64::from(mppt));
        r.set(Metric::PvCurrentA(mppt), 8.5);
    }
    r.set(Metric::TemperatureC, 41.5);
    r.set(Metric::InsulationMohm, 3.2);
    r.set(Metric::EfficiencyPct, 98.1);
    r.set(Metric::EnergyTodayWh, 350.0 * minute as f64);
    r.set(Metric::EnergyLifetimeWh, 9e7 + 350.0 * minute as f64);
    r.state = Some(DeviceState::Producing);
    r
}

/// `n` samples of `devices` devices on a 60 s schedule, in arrival order.
pub fn fleet(n: usize, devices: usize, start: DateTime<Utc>) -> Vec<Sample> {
    let devices = devices.max(1);
    let ids: Vec<DeviceId> = (0..devices)
        .map(|d| DeviceId::new(format!("inv-{d:06}")))
        .collect();
    (0..n)
        .map(|i| {
            let minute = (i / devices) as i64;
            Sample {
                device: ids[i % devices].clone(),
                at: start + chrono::Duration::minutes(minute),
                readings: full_reading(i % devices, minute),
            }
        })
        .collect()
}

fn shanghai(_: &DeviceId) -> chrono_tz::Tz {
    chrono_tz::Asia::Shanghai
}

/// The path of a database file for `name`, with any earlier run's files removed.
fn reset(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

async fn fresh(dir: &Path, name: &str) -> Result<Store> {
    Store::open_sqlite(&reset(dir, name)).await
}

/// Which write path a contender takes.
#[derive(Clone, Copy)]
enum WritePath {
    Batched,
    RowByRow,
}

/// Writes `rows` in batches and times it. The clock stops once anything written behind is in its
/// tables (a no-op for the write-through stores).
async fn timed(
    name: &str,
    store: &Store,
    rows: &[Sample],
    batch: usize,
    path: WritePath,
) -> Result<Measured> {
    let t = Instant::now();
    for chunk in rows.chunks(batch) {
        match path {
            WritePath::Batched => {
                store.write_samples(chunk, &shanghai).await?;
            }
            WritePath::RowByRow => {
                store.write_samples_row_by_row(chunk, &shanghai).await?;
            }
        }
    }
    store.settle().await?;
    Ok(Measured {
        name: name.to_owned(),
        samples: rows.len(),
        elapsed: t.elapsed(),
    })
}

/// Runs the benchmark; results in the order: batched path, batched write-through, row-at-a-time
/// peer, python peer.
pub async fn run(b: &StoreBench) -> Result<Vec<Measured>> {
    let start = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
    let rows = fleet(b.samples, b.devices, start);
    let batch = b.batch.max(1);
    let mut out = Vec::new();

    let store = fresh(&b.dir, "batched").await?;
    out.push(
        timed(
            "sunshare write_samples (batched, raw + rollups + latest written behind)",
            &store,
            &rows,
            batch,
            WritePath::Batched,
        )
        .await?,
    );
    if store.raw_count().await? != i64::try_from(rows.len()).unwrap_or(i64::MAX) {
        return Err(Error::Corrupt("the batched path lost rows".into()));
    }
    store.close().await;

    let store = Store::open_sqlite_write_through(&reset(&b.dir, "write_through")).await?;
    out.push(
        timed(
            "the same, rollups + latest written in each batch's transaction",
            &store,
            &rows,
            batch,
            WritePath::Batched,
        )
        .await?,
    );
    store.close().await;

    let peer_rows = &rows[..b.peer_samples.min(rows.len())];
    let store = fresh(&b.dir, "row_by_row").await?;
    out.push(
        timed(
            "row-at-a-time sqlx (same work, one statement per row)",
            &store,
            peer_rows,
            batch,
            WritePath::RowByRow,
        )
        .await?,
    );
    store.close().await;

    if let Some(python) = &b.python {
        out.push(python_peer(python, &rows, batch, &b.dir)?);
    }
    Ok(out)
}

/// The raw table exactly as migration 0001 creates it, with the same pragmas as the store.
const PYTHON_PEER: &str = r#"
import sqlite3, sys, time, os
rows_path, db_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
with open(rows_path, encoding="utf-8") as f:
    for line in f:
        d, ts, p, today, life, state, readings = line.rstrip("\n").split("\t")
        rows.append((d, int(ts), float(p), float(today), float(life), state, readings))
for suffix in ("", "-wal", "-shm"):
    try:
        os.remove(db_path + suffix)
    except FileNotFoundError:
        pass
con = sqlite3.connect(db_path, isolation_level=None)
con.execute("PRAGMA journal_mode = WAL")
con.execute("PRAGMA synchronous = NORMAL")
con.execute("PRAGMA cache_size = -32768")
con.execute("PRAGMA wal_autocheckpoint = 8192")
con.execute("PRAGMA temp_store = MEMORY")
con.execute("""CREATE TABLE raw_samples (device_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,
    ac_power_w DOUBLE PRECISION, energy_today_wh DOUBLE PRECISION, energy_lifetime_wh DOUBLE PRECISION,
    state TEXT, readings TEXT NOT NULL, PRIMARY KEY (device_id, ts_ms))""")
con.execute("CREATE INDEX raw_samples_ts ON raw_samples (ts_ms)")
t = time.perf_counter()
for i in range(0, len(rows), batch):
    con.execute("BEGIN")
    con.executemany("INSERT INTO raw_samples VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (device_id, ts_ms) DO NOTHING", rows[i:i + batch])
    con.execute("COMMIT")
elapsed = time.perf_counter() - t
n = con.execute("SELECT COUNT(*) FROM raw_samples").fetchone()[0]
print(f"{n} {elapsed}")
"#;

fn python_peer(python: &Path, rows: &[Sample], batch: usize, dir: &Path) -> Result<Measured> {
    use std::fmt::Write as _;
    let io = |e: std::io::Error| Error::Config(format!("python peer: {e}"));
    let mut text = String::with_capacity(rows.len() * 700);
    for s in rows {
        let g = |m| s.readings.get(m).unwrap_or(0.0);
        let readings = encode_readings(s)?;
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.device,
            s.at.timestamp_millis(),
            g(Metric::AcPowerW),
            g(Metric::EnergyTodayWh),
            g(Metric::EnergyLifetimeWh),
            s.readings.state.map_or("", |st| st.as_str()),
            readings
        );
    }
    let rows_path = dir.join("python_rows.tsv");
    let script_path = dir.join("python_peer.py");
    std::fs::write(&rows_path, text).map_err(io)?;
    std::fs::write(&script_path, PYTHON_PEER).map_err(io)?;
    let output = std::process::Command::new(python)
        .arg(&script_path)
        .arg(&rows_path)
        .arg(dir.join("python.db"))
        .arg(batch.to_string())
        .output()
        .map_err(io)?;
    if !output.status.success() {
        return Err(Error::Config(format!(
            "python peer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut parts = stdout.split_whitespace();
    let n: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let secs: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    if n != rows.len() {
        return Err(Error::Config(format!(
            "python peer stored {n} rows of {}",
            rows.len()
        )));
    }
    Ok(Measured {
        name: "python3 sqlite3.executemany (raw rows only, same schema)".into(),
        samples: n,
        elapsed: Duration::from_secs_f64(secs.max(0.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_run_measures_every_contender() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let b = StoreBench {
            samples: 3_000,
            devices: 100,
            batch: 500,
            peer_samples: 1_000,
            python: None,
            dir: dir.path().to_path_buf(),
        };
        let out = run(&b).await?;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].samples, 3_000);
        assert_eq!(out[1].samples, 3_000);
        assert_eq!(out[2].samples, 1_000);
        assert!(out.iter().all(|m| m.per_second() > 0.0));
        Ok(())
    }
}
