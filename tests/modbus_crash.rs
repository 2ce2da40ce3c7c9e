//! Sunshare killed outright (SIGKILL) in the middle of Modbus polling and started again on the
//! same configuration and data: nothing is stored twice, the file is sound, what was stored before
//! the kill is still there, the rollups equal what the raw rows give, the lifetime counter bridges
//! the gap (the energy over the run is the last counter minus the first) and polling resumes at
//! the configured interval. The real binary, an independent Modbus server (pymodbus, service:
//! `SUNSHARE_TEST_PYMODBUS`) whose counter and power move while the test runs, the embedded
//! SQLite store on disk.

mod support;

use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use sunshare::config::Deployment;
use sunshare::domain::{DeviceId, Metric, WattHours};
use sunshare::energy::counters::Note;
use support::binary::{
    assert_rollups_match_raw, count, kill, reader, serve, stop, stored, until, ONE_STATION,
};
use support::free_port;
use support::pymodbus::{python, start};

/// The configured poll interval.
const INTERVAL: Duration = Duration::from_millis(200);
/// Samples stored before the kill, and stored again after the restart before the test stops it.
const BEFORE: i64 = 15;
const AFTER: i64 = 15;
/// How long Sunshare stays down: the outage, not a wait for anything.
const DOWN: Duration = Duration::from_secs(1);
/// The lifetime counter steps by one count (0.01 kWh) this often: 90 kW, as the power says.
const COUNTER_EVERY_MS: u64 = 400;
const LOG: &str = "info,sunshare::collect::modbus=debug";

/// Huawei SUN2000 registers: 90 kW on-grid, the lifetime counter at 1,775.76 kWh. Every
/// [`COUNTER_EVERY_MS`] the counter grows by 10 Wh and the power by 1 W.
fn registers() -> serde_json::Value {
    serde_json::json!({
        "units": {"1": {"holding": {
            "30015": [0x4853, 0x3130, 0x3233, 0x3435, 0x3637],
            "32080": [1, 24_464, 0xFFFF, 0xFE0C, 998, 5001, 9812, 452, 2500, 0x0200],
            "32106": [0x0002, 0xB5A8],
        }}},
        "advance": {"every_ms": COUNTER_EVERY_MS, "registers": [
            {"unit": 1, "table": "holding", "address": 32106, "words": 2, "step": 1},
            {"unit": 1, "table": "holding", "address": 32080, "words": 2, "step": 1},
        ]},
    })
}

fn gaps_ms(times: &[DateTime<Utc>]) -> Vec<i64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect()
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_polling_it_stores_nothing_twice_keeps_what_it_stored_and_the_counter_bridges_the_gap(
) {
    let Some(python) = python("killed_mid_polling") else {
        return;
    };
    let server = start(&python, registers()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let db = data.join("sunshare.db");
    let config = dir.path().join("modbus-crash.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
data_dir = {data:?}

[http]
listen = "127.0.0.1:{http}"

[collect]
poll_interval = "{interval}ms"
modbus_connect_delay = "0s"
modbus_request_gap = "0s"
modbus_timeout = "2s"
{ONE_STATION}
[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = {{ type = "modbus_tcp", address = "{address}", unit = 1 }}
rated_power_w = 100000
"#,
            http = free_port(),
            interval = INTERVAL.as_millis(),
            address = server.address(),
        ),
    )
    .expect("write the deployment file");

    let log = dir.path().join("serve-1.log");
    let mut served = serve(&config, &log, LOG);
    until("samples polled and stored", &mut served, &log, || async {
        stored(&db).await >= BEFORE
    })
    .await;
    // Killed with no warning while it polls, five times a second.
    kill(&mut served);
    let killed_at = Utc::now();
    let at_kill = stored(&db).await;
    tokio::time::sleep(DOWN).await;

    // Started again on the same deployment and data, left to poll a while longer.
    let log2 = dir.path().join("serve-2.log");
    let restarted_at = Utc::now();
    let restarted = Instant::now();
    let mut served = serve(&config, &log2, LOG);
    until(
        "the first sample after the restart",
        &mut served,
        &log2,
        || async { stored(&db).await > at_kill },
    )
    .await;
    let first_seen = restarted.elapsed();
    until(
        "more samples after the restart",
        &mut served,
        &log2,
        || async { stored(&db).await >= at_kill + AFTER },
    )
    .await;
    let status = stop(&mut served).await;
    assert!(status.success(), "serve stopped with {status}");

    // The file is sound, holds no (device, time) twice, and kept everything the kill left.
    let pool = reader(&db).await.expect("open the database file");
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&pool)
        .await
        .expect("integrity_check");
    assert_eq!(integrity, ["ok"], "PRAGMA integrity_check");
    pool.close().await;
    let twice = count(
        &db,
        "SELECT COUNT(*) FROM (SELECT device_id, ts_ms FROM raw_samples \
         GROUP BY device_id, ts_ms HAVING COUNT(*) > 1)",
    )
    .await;
    assert_eq!(twice, 0, "(device, at) stored twice");
    let kept = count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM raw_samples WHERE ts_ms <= {}",
            killed_at.timestamp_millis()
        ),
    )
    .await;
    assert!(
        at_kill <= kept,
        "{at_kill} rows stored at the kill, {kept} of them (up to the kill) after the restart"
    );
    let quarantined = count(&db, "SELECT COUNT(*) FROM quarantine").await;
    assert_eq!(quarantined, 0, "no reading refused");

    // The rollups (written behind, replayed from the watermark at the restart and on this open)
    // equal what the raw rows give, bucket by bucket.
    let store = sunshare::store::Store::open_sqlite(&db)
        .await
        .expect("open the store");
    let device = DeviceId::new("S1-INV1");
    let raw = store
        .raw_samples(
            &device,
            killed_at - chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .expect("raw rows");
    let total = i64::try_from(raw.len()).expect("rows");
    assert_eq!(total, stored(&db).await, "every raw row is the device's");
    assert_rollups_match_raw(&store, &device, &raw).await;

    // The gap: the last poll before the kill, the first after the restart, and the schedule since.
    let (before, after): (Vec<_>, Vec<_>) = raw.iter().partition(|s| s.at <= killed_at);
    assert_eq!(before.len() as i64, kept);
    assert!(
        after.len() as i64 >= AFTER,
        "polled again after the restart"
    );
    let (last_before, first_after) = (before[before.len() - 1], after[0]);
    let gap = first_after.at - last_before.at;
    let interval_ms = i64::try_from(INTERVAL.as_millis()).expect("interval");
    let missed = (gap.num_milliseconds() as f64 / interval_ms as f64).round() as i64 - 1;
    assert!(missed >= 1, "the outage cost poll slots ({gap})");
    let resumed_after = first_after.at - restarted_at;
    let times_after: Vec<_> = after.iter().map(|s| s.at).collect();
    let steps = gaps_ms(&times_after);
    let typical = median(steps.clone());
    assert!(
        (interval_ms * 4 / 5..=interval_ms * 6 / 5).contains(&typical),
        "after the restart polls come every {interval_ms} ms, not every {typical} ms: {steps:?}"
    );
    let times_before: Vec<_> = before.iter().map(|s| s.at).collect();
    let typical_before = median(gaps_ms(&times_before));

    // The counter only rises; the energy over the whole run, as Sunshare's metered figures give
    // it, is the last counter minus the first: the gap is bridged, nothing is counted twice.
    let counters: Vec<f64> = raw
        .iter()
        .map(|s| {
            s.readings
                .get(Metric::EnergyLifetimeWh)
                .expect("every poll read the counter")
        })
        .collect();
    assert!(
        counters.windows(2).all(|w| w[0] <= w[1]),
        "the lifetime counter never steps back"
    );
    let (first, last) = (counters[0], counters[counters.len() - 1]);
    let across_gap = counters[before.len()] - counters[before.len() - 1];
    assert!(last > first, "the counter rose during the run");
    assert!(across_gap > 0.0, "the counter rose while Sunshare was down");
    let deployment = Deployment::load(&config)
        .expect("load the deployment")
        .deployment;
    let station = deployment.station("S1").expect("station S1");
    let figures = sunshare::energy::metered::station_periods(
        &store,
        &deployment,
        station,
        &[
            raw[0].at,
            raw[raw.len() - 1].at + chrono::Duration::milliseconds(1),
        ],
        Utc::now(),
    )
    .await
    .expect("metered energy");
    assert_eq!(figures.len(), 1);
    assert_eq!(
        figures[0].energy,
        WattHours((last - first).round() as i64),
        "energy over the run: {:?}",
        figures[0].notes
    );
    for note in [Note::CounterReset, Note::SpikeExcluded, Note::StepBack] {
        assert!(
            !figures[0].notes.contains(&note),
            "{note:?} in {:?}",
            figures[0].notes
        );
    }
    store.close().await;

    eprintln!(
        "modbus crash: {total} samples ({} before the kill, {at_kill} stored at it, {} after the \
         restart); down {:.2} s from the last poll to the next, {missed} slots of {interval_ms} ms \
         missed; the first poll stored {:.2} s after the restart was started (seen after {:.2} s), \
         then every {typical} ms (before the kill every {typical_before} ms); counter {first:.0} -> \
         {last:.0} Wh, {across_gap:.0} Wh across the gap, energy {} Wh",
        before.len(),
        after.len(),
        gap.num_milliseconds() as f64 / 1000.0,
        resumed_after.num_milliseconds() as f64 / 1000.0,
        first_seen.as_secs_f64(),
        figures[0].energy.0,
    );
}
