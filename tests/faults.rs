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
    // One a second, the last a little over an hour and a half ago.
    let at = Utc::now() - ChronoDuration::seconds(6_000 - i);
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

const TMPFS_VAR: &str = "SUNSHARE_TEST_TMPFS";

/// A small tmpfs mounted for one test, unmounted when it ends.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> anyhow::Result<SmallDisk> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "mount -t tmpfs failed ({status}): run as root"
        );
        Ok(SmallDisk(dir.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a test that failed may leave the store's worker holding the file open.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the disk holding `path` with a file of its own, to the last byte.
fn fill(path: &std::path::Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xA5_u8; 16 * 1024];
    let mut written = 0_u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => return Ok(written),
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => return Ok(written), // ENOSPC
            Err(e) => return Err(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_holds_writes_back_corrupts_nothing_and_they_land_when_space_returns(
) -> anyhow::Result<()> {
    if std::env::var(TMPFS_VAR).map_or(true, |v| v.is_empty()) {
        sunshare::store::testing::announce_skip(&format!(
            "SKIPPED (root, tmpfs) a_full_data_disk: set {TMPFS_VAR}=1 as root to run it"
        ));
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let disk = SmallDisk::mount(dir.path(), "8m")?;
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
    let first = handle
        .submit_confirmed((0..5).map(sample).collect())
        .await?;
    assert!(tokio::time::timeout(Duration::from_secs(10), first).await?);

    // The write-ahead log is emptied (as a checkpoint at a quiet moment does), then the disk fills
    // up: another file takes every byte left, so the next write has nowhere to go.
    let side = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&side)
        .await?;
    side.close().await;
    let filler = dir.path().join("filler");
    fill(&filler)?;
    // More than the write-ahead log's free pages can take.
    let mut written = handle
        .submit_confirmed((5..5_000).map(sample).collect())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics.store_write_retries.get() == 0 {
        assert!(Instant::now() < deadline, "the full disk made a write fail");
        assert!(written.try_stored().is_none(), "stored on a full disk");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        written.try_stored(),
        None,
        "held, not dropped, while the disk is full"
    );
    assert_eq!(
        store.raw_count().await?,
        5,
        "what was stored before is all there"
    );

    // Space comes back: the held batch lands whole, and the file is sound.
    std::fs::remove_file(&filler)?;
    assert!(tokio::time::timeout(Duration::from_secs(30), &mut written).await?);
    assert_eq!(store.raw_count().await?, 5_000);
    assert_eq!(metrics.samples_not_written.get(), 0);
    cancel.cancel();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), task).await??,
        0
    );
    store.close().await;
    let check = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display())).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&check)
        .await?;
    assert_eq!(verdict, "ok");
    check.close().await;
    drop(disk);
    Ok(())
}
