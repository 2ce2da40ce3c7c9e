//! Faults while running: the embedded SQLite store locked by another process, its data disk full,
//! and the PostgreSQL server killed and started again mid-stream. Writes wait or are retried
//! instead of failing, nothing is lost or stored twice, and a submitter waiting for its samples
//! hears they are stored only once they are. The lock is held by a separate python3 process (the
//! interpreter of `SUNSHARE_TEST_PYMODBUS`), the disk is a small tmpfs (`SUNSHARE_TEST_TMPFS`, as
//! root) and the PostgreSQL server is a private one started from `SUNSHARE_TEST_PG_BIN`; each test
//! says it skipped without its variable.

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
            polled: false,
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
            polled: false,
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

const PG_BIN_VAR: &str = "SUNSHARE_TEST_PG_BIN";

/// A PostgreSQL server of the test's own (never the machine's shared one): a fresh cluster in a
/// temporary directory, on a free loopback port, its socket in that directory. Run as the
/// `postgres` user when the test runs as root (PostgreSQL refuses root). Killed, with every
/// backend it forked, when the test ends or panics.
struct PrivatePostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// uid and gid to run the server as (when the test runs as root).
    run_as: Option<(u32, u32)>,
    server: Option<std::process::Child>,
}

fn id_of(args: &[&str]) -> anyhow::Result<u32> {
    let out = Command::new("id").args(args).output()?;
    anyhow::ensure!(out.status.success(), "id {args:?} failed");
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

impl PrivatePostgres {
    fn init(bin: &str) -> anyhow::Result<PrivatePostgres> {
        let dir = tempfile::Builder::new()
            .prefix("sunshare-pg-")
            .tempdir_in("/tmp")?;
        let run_as = if id_of(&["-u"])? == 0 {
            let ids = (id_of(&["-u", "postgres"])?, id_of(&["-g", "postgres"])?);
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))?;
            Some(ids)
        } else {
            None
        };
        let pg = PrivatePostgres {
            bin: bin.into(),
            dir,
            port: free_port(),
            run_as,
            server: None,
        };
        let out = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .arg("-D")
            .arg(pg.data())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(pg)
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("server.log")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Starts the server on its port and data directory (again after a kill) and waits until it
    /// takes connections.
    async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        let server = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                <sqlx::AnyConnection as sqlx::Connection>::connect(&self.url()),
            )
            .await;
            if let Ok(Ok(conn)) = attempt {
                sqlx::Connection::close(conn).await?;
                return Ok(());
            }
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|s| s.try_wait().ok())
                .flatten()
            {
                anyhow::bail!(
                    "postgres exited with {status}: {}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "postgres did not take connections within 60 s: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL to the server and all its backends at once: a crash, no shutdown checkpoint and no
    /// backend left to say goodbye. (Each backend is a process group of its own, so they are named
    /// one by one.) Returns once none of them runs any more.
    fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let mut doomed = children_of(server.id());
        doomed.push(server.id());
        // A backend that ended by itself meanwhile makes `kill` complain; the others still get it.
        Command::new("kill")
            .arg("-KILL")
            .args(doomed.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status()?;
        let status = server.wait()?;
        anyhow::ensure!(
            status.code().is_none(),
            "postgres had exited before the kill ({status})"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while doomed.iter().any(|pid| running(*pid)) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "postgres backends outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the name may hold spaces, so read after its last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether `pid` still runs (a zombie waiting for its new parent to reap it does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Sample `i` of a stream one a second, the last (`PG_SAMPLES`) at about `base`.
fn sample_from(base: chrono::DateTime<Utc>, i: i64) -> Sample {
    let mut r = Readings::default();
    r.set(Metric::AcPowerW, 20_000.0 + (i % 7) as f64 * 100.0);
    r.set(Metric::EnergyLifetimeWh, 1e6 + (i as f64) * 5.0);
    r.set(Metric::FrequencyHz, 50.0);
    r.state = Some(DeviceState::Producing);
    Sample {
        device: DeviceId::new("inv1"),
        at: base - ChronoDuration::seconds(PG_SAMPLES - i),
        readings: r,
    }
}

const PG_SAMPLES: i64 = 6_000;
const PG_BATCH: i64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_while_ingesting_loses_nothing_stores_nothing_twice_and_reconnects(
) -> anyhow::Result<()> {
    let bin = match std::env::var(PG_BIN_VAR) {
        Ok(b) if !b.is_empty() => b,
        _ => {
            sunshare::store::testing::announce_skip(&format!(
                "SKIPPED (PostgreSQL binaries) a_postgres_restart_while_ingesting: set {PG_BIN_VAR}=/usr/lib/postgresql/15/bin to run it"
            ));
            return Ok(());
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("sunshare=warn")
        .with_test_writer()
        .try_init();
    sqlx::any::install_default_drivers();
    let mut pg = PrivatePostgres::init(&bin)?;
    pg.start().await?;
    let store = sunshare::store::Store::open_postgres(&pg.url(), 4).await?;
    let profiles: HashMap<DeviceId, DeviceProfile> = [(
        DeviceId::new("inv1"),
        DeviceProfile {
            polled: false,
            rated_power_w: 100_000.0,
            timezone: chrono_tz::Asia::Shanghai,
        },
    )]
    .into();
    let metrics = Arc::new(Metrics::new());
    let (handle, worker) = ingest::channel(16, store.clone(), profiles, Arc::clone(&metrics));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(worker.run_counted(cancel.clone()));

    // A collector submits the stream in batches of 50 and hands each batch's waiter to the test;
    // when the queue is full it waits (as collectors do), so it keeps going through the outage.
    let base = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    let (waiters_tx, mut waiters_rx) = tokio::sync::mpsc::unbounded_channel();
    let feeder = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for b in 0..PG_SAMPLES / PG_BATCH {
                let batch = (b * PG_BATCH..(b + 1) * PG_BATCH)
                    .map(|i| sample_from(base, i))
                    .collect();
                let written = handle.submit_confirmed(batch).await?;
                if waiters_tx.send(written).is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Ok::<_, ingest::Closed>(())
        })
    };
    let mut waiters: Vec<ingest::Written> = Vec::new();
    let mut heard: Vec<bool> = Vec::new();
    // Takes the waiters handed over so far and notes which have heard "stored"; a waiter told
    // "not stored" fails the test.
    let mut look = |waiters: &mut Vec<ingest::Written>, heard: &mut Vec<bool>| -> usize {
        while let Ok(w) = waiters_rx.try_recv() {
            waiters.push(w);
            heard.push(false);
        }
        for (w, h) in waiters.iter_mut().zip(heard.iter_mut()) {
            if !*h {
                match w.try_stored() {
                    Some(true) => *h = true,
                    Some(false) => panic!("a waiter was told its samples were not stored"),
                    None => {}
                }
            }
        }
        heard.iter().filter(|h| **h).count()
    };

    // Mid-stream, a fifth of the batches stored, the server crashes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while look(&mut waiters, &mut heard) < 24 {
        assert!(Instant::now() < deadline, "the first batches are stored");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let retries_before = metrics.store_write_retries.get();
    pg.kill()?;
    let down = Instant::now();

    // A reader meanwhile gets an error, not a hang (bounded by the pool's 30 s acquire timeout).
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (count, ping) = tokio::join!(store.raw_count(), store.ping());
            (count, ping, started.elapsed())
        })
    };
    // The worker's write fails and is retried; the batch stays in memory.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.store_write_retries.get() == retries_before {
        assert!(
            Instant::now() < deadline,
            "a write failed while the server was down"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // From the first failed write on, no waiter may hear "stored" until the server is back.
    let stored_before = look(&mut waiters, &mut heard);
    let (count, ping, read_took) = tokio::time::timeout(Duration::from_secs(70), reader).await??;
    let count_error = count.expect_err("a count while the server is down is an error");
    let ping_error = ping.expect_err("a ping while the server is down is an error");
    assert_eq!(
        look(&mut waiters, &mut heard),
        stored_before,
        "no waiter hears \"stored\" while the server is down"
    );
    assert_eq!(metrics.samples_not_written.get(), 0, "nothing given up");
    assert!(!task.is_finished(), "the worker keeps going");
    let retries_down = metrics.store_write_retries.get() - retries_before;

    // The server comes back on the same port and data: the pool reconnects by itself, the held
    // batch lands and the stream goes on, every waiter hears "stored".
    pg.start().await?;
    let outage = down.elapsed();
    let back = Instant::now();
    feeder.await??;
    let deadline = Instant::now() + Duration::from_secs(90);
    while look(&mut waiters, &mut heard) < waiters.len()
        || waiters.len() < (PG_SAMPLES / PG_BATCH) as usize
    {
        assert!(
            Instant::now() < deadline,
            "every batch is stored after the restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let caught_up = back.elapsed();

    // Every sample stored once: the count, and no duplicate (device, time) in the table.
    assert_eq!(store.raw_count().await?, PG_SAMPLES);
    let mut direct = <sqlx::AnyConnection as sqlx::Connection>::connect(&pg.url()).await?;
    let distinct: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT DISTINCT device_id, ts_ms FROM raw_samples) AS d",
    )
    .fetch_one(&mut direct)
    .await?;
    assert_eq!(distinct, PG_SAMPLES, "no sample stored twice");
    sqlx::Connection::close(direct).await?;
    assert_eq!(metrics.samples_not_written.get(), 0);

    // The rollups (written in each batch's transaction on PostgreSQL) equal what the raw rows give.
    let device = DeviceId::new("inv1");
    let from = base - ChronoDuration::seconds(PG_SAMPLES + 3_600);
    let to = base + ChronoDuration::seconds(3_600);
    let raw = store.raw_samples(&device, from, to).await?;
    assert_eq!(raw.len() as i64, PG_SAMPLES);
    let mut expected: std::collections::BTreeMap<i64, (i64, f64)> = Default::default();
    for s in &raw {
        let bucket = s.at.timestamp() - s.at.timestamp().rem_euclid(300);
        let e = expected.entry(bucket).or_default();
        e.0 += 1;
        e.1 += s.readings.get(Metric::AcPowerW).unwrap_or(0.0);
    }
    let got: std::collections::BTreeMap<i64, (i64, f64)> = store
        .rollups(&device, 300, from, to)
        .await?
        .iter()
        .map(|r| {
            (
                r.bucket.timestamp(),
                (r.samples, r.power_avg_w.unwrap_or(0.0) * r.samples as f64),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same 5-minute buckets"
    );
    for (bucket, (n, sum)) in &expected {
        let (gn, gsum) = got[bucket];
        assert_eq!(gn, *n, "samples in the bucket at {bucket}");
        assert!(
            (gsum - sum).abs() < 1e-6 * sum.abs().max(1.0),
            "power in the bucket at {bucket}"
        );
    }

    // The service works again without a restart of its own: a new sample is stored and read.
    let again = handle
        .submit_confirmed(vec![sample_from(base, PG_SAMPLES)])
        .await?;
    assert!(tokio::time::timeout(Duration::from_secs(10), again).await?);
    assert_eq!(store.raw_count().await?, PG_SAMPLES + 1);
    store.ping().await?;

    eprintln!(
        "postgres restart: {PG_SAMPLES} samples in {} batches, {stored_before} batches stored before \
         the crash, outage {:.1} s, {retries_down} failed writes retried while down ({} in all), reader failed in \
         {:.1} s with \"{count_error}\" (ping: \"{ping_error}\"), {} duplicates recognised, every batch stored {:.1} s after the restart",
        PG_SAMPLES / PG_BATCH,
        outage.as_secs_f64(),
        metrics.store_write_retries.get() - retries_before,
        read_took.as_secs_f64(),
        metrics.samples_duplicate.get(),
        caught_up.as_secs_f64(),
    );
    cancel.cancel();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), task).await??,
        0
    );
    store.close().await;
    drop(pg);
    Ok(())
}
