//! Soak: a simulated fleet polled at its full rate by the real binary while HTTP clients load the
//! pages and the API, for `SUNSHARE_TEST_SOAK` (a duration such as `90s`; CI sets it, the test
//! says it skipped without it; RELIABILITY.md gives a longer run). The service is sampled every
//! 2 s from outside: its resident memory (`/proc`), its tasks alive and its ingest queue
//! (`/metrics`). After the first half (start-up, caches filling) memory and tasks stay flat, the
//! queue never fills, every device is polled at its rate and no request fails.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::binary::{admin_token, simulate, BIN};
use support::{free_port, Served};

const SOAK_VAR: &str = "SUNSHARE_TEST_SOAK";
const GATEWAYS: usize = 10;
const UNITS: usize = 20;
const POLL_S: u64 = 1;
const CLIENTS: usize = 8;
const EVERY: Duration = Duration::from_secs(2);
const INGEST_QUEUE: i64 = 1024;

fn deployment(data: &Path, http: u16, gateways: &[String]) -> String {
    let mut text = format!(
        r#"
[storage]
data_dir = {data:?}

[http]
listen = "127.0.0.1:{http}"

[collect]
poll_interval = "{POLL_S}s"
modbus_connect_delay = "0s"
modbus_request_gap = "0s"

[[counties]]
id = "C1"
name = "County"
province = "shanxi"
[[townships]]
id = "T1"
name = "Town"
county = "C1"
[[tariffs]]
id = "TF"
price = "0.85"
province = "shanxi"
"#
    );
    for (g, address) in gateways.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[villages]]
code = "V{g:02}"
name = "Village {g}"
township = "T1"
[[stations]]
id = "S{g:02}"
name = "Station {g}"
kind = "village"
county = "C1"
village = "V{g:02}"
capacity_kwp = {capacity}
latitude = 37.87
longitude = 112.55
commissioned = "2018-06-30"
tariff = "TF"
"#,
            capacity = UNITS * 60,
        ));
        for u in 1..=UNITS {
            text.push_str(&format!(
                r#"
[[devices]]
id = "S{g:02}-INV{u:02}"
station = "S{g:02}"
kind = "inverter"
model = "huawei_sun2000"
rated_power_w = 60000.0
transport = {{ type = "modbus_tcp", address = "{address}", unit = {u} }}
"#
            ));
        }
    }
    text
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A metric's value in the Prometheus text, by its full name with labels.
fn metric_of(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
}

fn metric(text: &str, name: &str) -> f64 {
    metric_of(text, name).unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Duration,
    rss_kib: u64,
    tasks: f64,
    queue: f64,
    ingested: f64,
}

fn max_of(r: &[Reading], f: impl Fn(&Reading) -> f64) -> f64 {
    r.iter().map(f).fold(f64::MIN, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_full_polling_and_page_load_memory_tasks_and_queues_stay_flat() {
    let length = match std::env::var(SOAK_VAR) {
        Ok(v) if !v.is_empty() => humantime::parse_duration(&v).expect("SUNSHARE_TEST_SOAK"),
        _ => {
            sunshare::store::testing::announce_skip(&format!(
                "SKIPPED soak: set {SOAK_VAR}=120s (a duration) to run it"
            ));
            return;
        }
    };
    let (_simulator, gateways) = simulate(GATEWAYS, UNITS).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        deployment(&dir.path().join("data"), http, &gateways),
    )
    .expect("write the deployment file");
    let token = admin_token(&config);
    let log = dir.path().join("serve.log");
    let served = Served(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("SUNSHARE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start sunshare serve"),
    );
    let pid = served.0.id();
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let get = |path: String| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(get("/healthz".into()).await, Ok(r) if r.status().is_success()) {
        assert!(
            Instant::now() < deadline,
            "serve did not answer within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The clients: each goes round the pages and the API as fast as it is answered.
    let stop = tokio_util::sync::CancellationToken::new();
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (get_client, base, token) = (client.clone(), base.clone(), token.clone());
        let (stop, answered, failed) = (stop.clone(), Arc::clone(&answered), Arc::clone(&failed));
        clients.push(tokio::spawn(async move {
            let mut n = c;
            while !stop.is_cancelled() {
                let path = match n % 4 {
                    0 => "/".to_owned(),
                    1 => format!("/stations/S{:02}", n % GATEWAYS),
                    2 => "/api/stations".to_owned(),
                    _ => "/api/quarantine?limit=20".to_owned(),
                };
                n += 1;
                match get_client
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed
                        .lock()
                        .expect("failures")
                        .push(format!("{path}: {}", r.status())),
                    Err(e) => failed
                        .lock()
                        .expect("failures")
                        .push(format!("{path}: {e}")),
                }
            }
        }));
    }

    let started = Instant::now();
    let mut readings = Vec::new();
    let mut tick = tokio::time::interval(EVERY);
    while started.elapsed() < length {
        tick.tick().await;
        let text = get("/metrics".into())
            .await
            .expect("/metrics")
            .text()
            .await
            .expect("metrics text");
        readings.push(Reading {
            at: started.elapsed(),
            rss_kib: rss_kib(pid),
            tasks: metric(&text, "sunshare_tasks_alive"),
            // Set from the first batch the worker takes.
            queue: metric_of(&text, "sunshare_queue_depth{queue=\"ingest\"}").unwrap_or(0.0),
            ingested: metric(&text, "sunshare_samples_ingested_total"),
        });
    }
    stop.cancel();
    for c in clients {
        c.await.expect("client");
    }
    drop(served);

    // The first half is start-up: connections open and SQLite's page caches (32 MiB per
    // connection) fill as the store grows. The third quarter is then compared with the fourth.
    let quarter = readings.len() / 4;
    assert!(
        quarter >= 2,
        "the soak is too short to judge ({} readings)",
        readings.len()
    );
    let (middle, last) = (
        &readings[2 * quarter..3 * quarter],
        &readings[3 * quarter..],
    );
    let rss_mid = max_of(middle, |r| r.rss_kib as f64) / 1024.0;
    let rss_last = max_of(last, |r| r.rss_kib as f64) / 1024.0;
    let tasks_mid = max_of(middle, |r| r.tasks);
    let tasks_last = max_of(last, |r| r.tasks);
    let queue_max = max_of(&readings, |r| r.queue);
    let (from, to) = (&readings[quarter], &readings[readings.len() - 1]);
    let rate = (to.ingested - from.ingested) / (to.at - from.at).as_secs_f64();
    let expected = (GATEWAYS * UNITS) as f64 / POLL_S as f64;
    let failures = failed.lock().expect("failures").clone();
    println!(
        "soak {:.0} s: {} devices every {POLL_S} s, {CLIENTS} clients; {} requests answered \
         ({:.0}/s), {} failed; ingest {rate:.0} samples/s (fleet rate {expected:.0}); memory \
         max {rss_mid:.1} MiB in the third quarter, {rss_last:.1} MiB in the fourth; tasks max \
         {tasks_mid} then {tasks_last}; ingest queue max {queue_max} of {INGEST_QUEUE}",
        length.as_secs_f64(),
        GATEWAYS * UNITS,
        answered.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed) as f64 / length.as_secs_f64(),
        failures.len(),
    );
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    assert!(answered.load(Ordering::Relaxed) > 0);
    assert!(
        rss_last <= rss_mid * 1.10 + 8.0,
        "memory grew: {rss_mid:.1} MiB then {rss_last:.1} MiB"
    );
    assert!(
        tasks_last <= tasks_mid + 4.0,
        "tasks grew: {tasks_mid} then {tasks_last}"
    );
    assert!(
        queue_max < INGEST_QUEUE as f64,
        "the ingest queue filled ({queue_max})"
    );
    assert!(
        rate >= 0.9 * expected,
        "the fleet was polled below its rate: {rate:.0} samples/s of {expected:.0}"
    );
}
