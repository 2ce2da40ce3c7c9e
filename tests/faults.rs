//! Faults while running: the embedded SQLite store locked by another process. Writes wait for the
//! lock instead of failing, nothing is lost, and a submitter waiting for its samples hears they are
//! stored only once they are. The lock is held by a separate python3 process (the interpreter of
//! `SUNSHARE_TEST_PYMODBUS`; the test says it skipped without one).

use chrono::{Duration as ChronoDuration, Utc};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sunshare::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use sunshare::ingest::{self, DeviceProfile};
use sunshare::metrics::Metrics;
use tokio_util::sync::CancellationToken;

const PYTHON_VAR: &str = "SUNSHARE_TEST_PYMODBUS";

/// Holds an exclusive write lock on the database until told to let go on its standard input.
const LOCKER: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
print("released", flush=True)
"#;

fn sample(i: i64) -> Sample {
    let mut r = Readings::default();
    r.set(Metric::AcPowerW, 20_000.0);
    r.set(Metric::EnergyLifetimeWh, 1e6 + (i as f64) * 100.0);
    r.set(Metric::FrequencyHz, 50.0);
    r.state = Some(DeviceState::Producing);
    let at = Utc::now() - ChronoDuration::minutes(60 - i);
    Sample {
        device: DeviceId::new("inv1"),
        at: chrono::DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at),
        readings: r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_delays_writes_and_loses_nothing() -> anyhow::Result<()> {
    let python = match std::env::var(PYTHON_VAR) {
        Ok(p) if !p.is_empty() => p,
        _ => {
            sunshare::store::testing::announce_skip(&format!(
                "SKIPPED (python3) a_store_locked_by_another_process: set {PYTHON_VAR}=python3 to run it"
            ));
            return Ok(());
        }
    };
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sunshare.db");
    let store = sunshare::store::Store::open_sqlite(&db).await?;
    let profiles: HashMap<DeviceId, DeviceProfile> = [(
        DeviceId::new("inv1"),
        DeviceProfile {
            rated_power_w: 100_000.0,
            timezone: chrono_tz::Asia::Shanghai,
        },
    )]
    .into();
    let metrics = Arc::new(Metrics::new());
    let (handle, worker) = ingest::channel(16, store.clone(), profiles, Arc::clone(&metrics));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(worker.run_counted(cancel.clone()));
    // The worker is up and has its counters: a first sample is stored before the lock.
    let first = handle.submit_confirmed(vec![sample(0)]).await?;
    assert!(tokio::time::timeout(Duration::from_secs(10), first).await?);

    let mut locker = Command::new(&python)
        .args(["-c", LOCKER])
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut said = BufReader::new(locker.stdout.take().expect("stdout"));
    let mut line = String::new();
    said.read_line(&mut line)?;
    assert_eq!(line.trim(), "locked");

    // Written while another process holds the lock: the write waits for it.
    let mut written = handle
        .submit_confirmed((1..=20).map(sample).collect())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.queued() > 0 {
        assert!(Instant::now() < deadline, "the worker takes the batch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Held back as long as the lock is: without it these 20 samples land in milliseconds.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut written)
            .await
            .is_err(),
        "not stored while the file is locked"
    );
    assert_eq!(store.raw_count().await?, 1, "a reader still reads (WAL)");

    // The other process lets go: the batch lands whole, once.
    writeln!(locker.stdin.as_mut().expect("stdin"))?;
    line.clear();
    said.read_line(&mut line)?;
    assert_eq!(line.trim(), "released");
    assert!(tokio::time::timeout(Duration::from_secs(20), written).await?);
    assert!(locker.wait()?.success());
    assert_eq!(store.raw_count().await?, 21);
    assert_eq!(metrics.samples_not_written.get(), 0);

    cancel.cancel();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), task).await??,
        0
    );
    Ok(())
}
