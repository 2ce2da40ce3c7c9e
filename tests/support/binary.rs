//! The real `sunshare` binary as a child process on a deployment file, and its embedded SQLite
//! store read from the file on disk: what the crash tests (SIGKILL, then a start on the same data)
//! share.

use super::Served;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use sunshare::domain::{DeviceId, Metric, Sample};
use sunshare::store::Store;

pub const BIN: &str = env!("CARGO_BIN_EXE_sunshare");
/// How long any one step may take before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One county, township, village, tariff and the village station `S1` (100 kWp, Shanxi): the
/// registry part of a deployment file, for a test to add its transport, devices and storage to.
pub const ONE_STATION: &str = r#"
[[counties]]
id = "C1"
name = "County"
province = "shanxi"
[[townships]]
id = "T1"
name = "Town"
county = "C1"
[[villages]]
code = "V1"
name = "Village"
township = "T1"
[[tariffs]]
id = "TF"
price = "0.85"
province = "shanxi"
[[stations]]
id = "S1"
name = "Station"
kind = "village"
county = "C1"
village = "V1"
capacity_kwp = 100
latitude = 37.8
longitude = 112.5
commissioned = "2018-06-30"
tariff = "TF"
"#;

/// A name no other run shares (topics, client ids).
pub fn run_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// `sunshare serve --config CONFIG`, its log (at `filter`) written to `log`.
pub fn serve(config: &Path, log: &Path, filter: &str) -> Served {
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("SUNSHARE_LOG", filter)
        .env("RUST_LOG", filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start sunshare serve");
    Served(child)
}

/// Waits until `check` holds, failing with `what` after [`PATIENCE`] or when `served` exits.
pub async fn until<F, Fut>(what: &str, served: &mut Served, log: &Path, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        if let Ok(Some(status)) = served.0.try_wait() {
            panic!(
                "serve exited with {status} while waiting for {what}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Killed with no warning (SIGKILL) and reaped.
pub fn kill(served: &mut Served) {
    served.0.kill().expect("SIGKILL");
    served.0.wait().expect("reaped");
}

/// Stopped as an operator stops it (SIGTERM); how it exited, within [`PATIENCE`].
pub async fn stop(served: &mut Served) -> ExitStatus {
    let pid = served.0.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(term.success());
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = served.0.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A read-only connection of its own to the database file, as another process would open it.
pub async fn reader(db: &Path) -> Option<sqlx::SqlitePool> {
    let url = format!("sqlite://{}?mode=ro", db.display());
    sqlx::SqlitePool::connect(&url).await.ok()
}

/// `sql` (one integer) on a reader of its own; 0 while the file or its tables do not exist yet.
pub async fn count(db: &Path, sql: &str) -> i64 {
    let Some(pool) = reader(db).await else {
        return 0;
    };
    let n = sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
    pool.close().await;
    n
}

/// Raw rows stored so far, read from the database file by a reader of its own.
pub async fn stored(db: &Path) -> i64 {
    count(db, "SELECT COUNT(*) FROM raw_samples").await
}

/// The 5-minute rollups `store` holds for `device` equal what its raw rows `raw` give, bucket by
/// bucket: the same buckets, the samples in each, their power and the lifetime counter at the
/// first and the last of them.
pub async fn assert_rollups_match_raw(store: &Store, device: &DeviceId, raw: &[Sample]) {
    let (Some(first), Some(last)) = (raw.first(), raw.last()) else {
        panic!("no raw rows to compare the rollups with");
    };
    let from = first.at - chrono::Duration::hours(1);
    let to = last.at + chrono::Duration::hours(1);
    let rollups = store.rollups(device, 300, from, to).await.expect("rollups");
    #[derive(Default)]
    struct Bucket {
        samples: i64,
        power: f64,
        energy_first: Option<f64>,
        energy_last: Option<f64>,
    }
    let mut expected: BTreeMap<i64, Bucket> = BTreeMap::new();
    for s in raw {
        let bucket = s.at.timestamp() - s.at.timestamp().rem_euclid(300);
        let e = expected.entry(bucket).or_default();
        e.samples += 1;
        e.power += s.readings.get(Metric::AcPowerW).unwrap_or(0.0);
        if let Some(wh) = s.readings.get(Metric::EnergyLifetimeWh) {
            e.energy_first.get_or_insert(wh);
            e.energy_last = Some(wh);
        }
    }
    let got: BTreeMap<i64, _> = rollups.iter().map(|r| (r.bucket.timestamp(), r)).collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same 5-minute buckets"
    );
    for (bucket, want) in &expected {
        let r = got[bucket];
        assert_eq!(r.samples, want.samples, "samples in the bucket at {bucket}");
        let power = r.power_avg_w.unwrap_or(0.0) * r.samples as f64;
        assert!(
            (power - want.power).abs() < 1e-6 * want.power.abs().max(1.0),
            "power in {bucket}: {power} in the rollup, {} from the raw rows",
            want.power
        );
        assert_eq!(
            r.energy_first.map(|e| e.1),
            want.energy_first,
            "the first counter in {bucket}"
        );
        assert_eq!(
            r.energy_last.map(|e| e.1),
            want.energy_last,
            "the last counter in {bucket}"
        );
    }
}

/// `sunshare simulate` as a child process (killed when dropped): `gateways` Modbus TCP gateways
/// of `units` Huawei units each, producing at solar noon whatever the hour; their addresses, read
/// from its banner up to `ready`.
pub async fn simulate(gateways: usize, units: usize) -> (tokio::process::Child, Vec<String>) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "simulate",
            "--gateways",
            &gateways.to_string(),
            "--units",
            &units.to_string(),
            "--noon",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sunshare simulate");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addresses = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("banner") {
            if line == "ready" {
                return;
            }
            if let Some(rest) = line.strip_prefix("gateway ") {
                addresses.push(rest.split(' ').next().expect("address").to_owned());
            }
        }
        panic!("the simulator stopped before it was ready");
    })
    .await
    .expect("the simulator is ready in time");
    assert_eq!(addresses.len(), gateways);
    (child, addresses)
}

/// Runs a CLI command of the binary on `config`, with `stdin`, and returns its first output line.
pub fn cli(config: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for the cli");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An administrator and an API token of theirs in the deployment's store, made with the CLI as an
/// operator does: the token.
pub fn admin_token(config: &Path) -> String {
    cli(
        config,
        &["user", "add", "test-admin", "--role", "admin", "--all"],
        "test-password-17\n",
    );
    cli(
        config,
        &["token", "add", "--user", "test-admin", "--label", "tests"],
        "",
    )
}

/// The `i`-th reading of a data logger's stream (the `json_generic` template, unit 1): one a second
/// from `base`, the lifetime counter 10 Wh up each time.
pub fn logger_record(base: i64, i: u32) -> String {
    let ts = base + i64::from(i);
    let etotal = 5_000.0 + f64::from(i) * 0.01;
    let pac = 20_000.0 + f64::from(i % 7) * 100.0;
    format!(
        r#"{{"ts": {ts}, "addr": 1, "data": {{"pac": {pac}, "etotal": {etotal}, "status": 1}}}}"#
    )
}

/// Publishes readings `0..messages` of [`logger_record`] to `topic` at QoS 1, `per_tick` of them
/// every 10 ms, as a logger uploading its backlog does.
pub fn publish_stream(
    client: rumqttc::AsyncClient,
    topic: String,
    base: i64,
    messages: u32,
    per_tick: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(10));
        for i in 0..messages {
            if i % per_tick == 0 {
                pace.tick().await;
            }
            client
                .publish(
                    &topic,
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    logger_record(base, i),
                )
                .await
                .expect("queue a publish");
        }
    })
}
