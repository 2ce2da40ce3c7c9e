//! The system clock that stamps Modbus readings stepped back an hour while Sunshare polls, then
//! forward again: Sunshare says so, the readings stamped behind the stored ones are held in
//! quarantine as `clock_behind` (not lost, not stored, no raw row out of order), polling goes on,
//! readings are stored again once the clock is past the stored ones, nothing is stored twice and
//! the energy over the whole run is the counter's rise, counted once.
//!
//! The real binary runs under libfaketime (`SUNSHARE_TEST_FAKETIME`, the path of
//! `libfaketime.so.1`; the test says it skipped without it), which moves its wall clock only: the
//! monotonic clock that paces the polls is left alone, as a real clock step leaves it. The
//! simulated gateway runs in the test process, on the true clock.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use sunshare::collect::modbus::Framing;
use sunshare::config::Deployment;
use sunshare::domain::{Metric, StationId};
use support::binary::{count, stop, until, BIN};
use support::{catalog, free_port, gateway, unit, Served};
use tokio_util::sync::CancellationToken;

const FAKETIME_VAR: &str = "SUNSHARE_TEST_FAKETIME";
const STEP_S: i64 = 3600;

fn deployment(data: &Path, gateway: std::net::SocketAddr) -> String {
    format!(
        r#"
[storage]
data_dir = {data:?}

[http]
listen = "127.0.0.1:{http}"

[collect]
poll_interval = "1s"
modbus_connect_delay = "0s"
modbus_request_gap = "0s"

{station}[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
rated_power_w = 60000.0
transport = {{ type = "modbus_tcp", address = "{gateway}", unit = 1 }}
"#,
        http = free_port(),
        station = support::binary::ONE_STATION,
    )
}

/// Sets the wall clock of the faked process `offset_s` seconds from the true one.
fn set_clock(file: &Path, offset_s: i64) {
    std::fs::write(file, format!("{offset_s:+}\n")).expect("write the clock file");
}

fn serve(config: &Path, log: &Path, faketime: &str, clock: &Path) -> Served {
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("SUNSHARE_LOG", "info")
        .env("LD_PRELOAD", faketime)
        .env("FAKETIME_TIMESTAMP_FILE", clock)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start sunshare serve");
    Served(child)
}

/// What the database file holds now: (raw rows, newest raw time in ms, `clock_behind` rows).
async fn counts(db: &Path) -> (i64, i64, i64) {
    (
        count(db, "SELECT COUNT(*) FROM raw_samples").await,
        count(db, "SELECT COALESCE(MAX(ts_ms), 0) FROM raw_samples").await,
        count(
            db,
            "SELECT COUNT(*) FROM quarantine WHERE code = 'clock_behind'",
        )
        .await,
    )
}

fn said(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepped_back_an_hour_holds_readings_loses_none_and_counts_energy_once() {
    let faketime = match std::env::var(FAKETIME_VAR) {
        Ok(f) if !f.is_empty() => f,
        _ => {
            sunshare::store::testing::announce_skip(&format!(
                "SKIPPED (libfaketime) clock step: set {FAKETIME_VAR}=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 to run it"
            ));
            return;
        }
    };
    let cancel = CancellationToken::new();
    let gw = gateway(vec![unit(1, "huawei_sun2000")], Framing::Tcp, &cancel).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let db = data.join("sunshare.db");
    let config = dir.path().join("clock.toml");
    let text = deployment(&data, gw.local_addr());
    std::fs::write(&config, &text).expect("write the deployment file");
    let clock = dir.path().join("clock");
    set_clock(&clock, 0);
    let log = dir.path().join("serve.log");
    let mut served = serve(&config, &log, &faketime, &clock);

    // Polling on the true clock.
    until("readings stored", &mut served, &log, || async {
        counts(&db).await.0 >= 5
    })
    .await;

    // Stepped back an hour: what is polled now is stamped before what is stored.
    set_clock(&clock, -STEP_S);
    let stepped = chrono::Utc::now();
    let (raw_before, newest_before, _) = counts(&db).await;
    until(
        "readings held as clock_behind and the step said",
        &mut served,
        &log,
        || async { counts(&db).await.2 >= 5 && said(&log, &format!("stepped back by {STEP_S} s")) },
    )
    .await;
    let (raw_during, newest_during, held) = counts(&db).await;
    // At most the readings in flight at the step were stored after it, stamped on the true clock.
    assert!(
        raw_during <= raw_before + 2,
        "no reading stamped behind the stored ones went into the raw rows ({raw_before} then {raw_during})"
    );
    assert!(newest_during <= stepped.timestamp_millis() + 1_000);
    assert!(newest_during >= newest_before);

    // The clock put right again (or the hour gone by): readings are stored again.
    set_clock(&clock, 0);
    until(
        "readings stored after the step and the step said",
        &mut served,
        &log,
        || async {
            let (raw, newest, _) = counts(&db).await;
            // The watch compares the clocks every 5 s: the step forward is said within that.
            raw >= raw_during + 5
                && newest > newest_during
                && said(&log, &format!("stepped forward by {STEP_S} s"))
        },
    )
    .await;

    let status = stop(&mut served).await;
    assert!(status.success(), "serve stopped with {status}");
    cancel.cancel();

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .expect("open the database");
    let duplicates = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM (SELECT device_id, ts_ms FROM raw_samples \
         GROUP BY device_id, ts_ms HAVING COUNT(*) > 1)",
    )
    .fetch_one(&pool)
    .await
    .expect("duplicates");
    assert_eq!(duplicates, 0, "nothing stored twice");
    // Every held reading is kept with its stamp behind the newest stored one, and its counter.
    let held_rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT ts_ms, reason FROM quarantine WHERE code = 'clock_behind' ORDER BY ts_ms",
    )
    .fetch_all(&pool)
    .await
    .expect("held rows");
    assert_eq!(held_rows.len() as i64, counts(&db).await.2);
    assert!(held >= 5);
    for (ts, reason) in &held_rows {
        assert!(*ts < newest_during, "held at {ts}, behind {newest_during}");
        assert!(
            reason.contains("the clock that stamped it is behind"),
            "{reason}"
        );
    }
    pool.close().await;

    // The energy over the whole run is the lifetime counter's rise from the first stored reading
    // to the last: the held hour is bridged by the readings after it, and nothing counts twice.
    let store = sunshare::store::Store::open_sqlite(&db)
        .await
        .expect("open the store");
    let device = sunshare::domain::DeviceId::new("S1-INV1");
    let from = chrono::Utc::now() - chrono::Duration::hours(3);
    let to = chrono::Utc::now() + chrono::Duration::hours(1);
    let raw = store
        .raw_samples(&device, from, to)
        .await
        .expect("raw rows");
    let (first, last) = (raw.first().expect("first"), raw.last().expect("last"));
    let back: Vec<String> = raw
        .windows(2)
        .filter(|w| {
            w[1].readings.get(Metric::EnergyLifetimeWh)
                < w[0].readings.get(Metric::EnergyLifetimeWh)
        })
        .map(|w| {
            format!(
                "{} {:?} then {} {:?}",
                w[0].at,
                w[0].readings.get(Metric::EnergyLifetimeWh),
                w[1].at,
                w[1].readings.get(Metric::EnergyLifetimeWh)
            )
        })
        .collect();
    assert!(back.is_empty(), "the stored counter went back: {back:?}");
    let rise = last
        .readings
        .get(Metric::EnergyLifetimeWh)
        .expect("counter")
        - first
            .readings
            .get(Metric::EnergyLifetimeWh)
            .expect("counter");
    assert!(rise > 0.0, "the counter rose over the run");
    let deployment = Deployment::from_str_with_env("clock.toml", &text, &[], &catalog().names())
        .expect("deployment");
    let station = deployment
        .stations
        .iter()
        .find(|s| s.id == StationId::new("S1"))
        .expect("station");
    let figures = sunshare::energy::metered::station_periods(
        &store,
        &deployment,
        station,
        &[first.at, last.at],
        chrono::Utc::now(),
    )
    .await
    .expect("energy");
    let energy = figures[0].energy.0 as f64;
    assert!(
        (energy - rise).abs() <= 1.0,
        "energy {energy} Wh against a counter rise of {rise} Wh"
    );
    store.close().await;
}
