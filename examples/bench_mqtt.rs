//! MQTT benchmark: Mosquitto -> decode -> ingest -> SQLite, against a bare rumqttc QoS 1 loop
//! (the ceiling) and a Python paho subscriber (the peer), all fed by the same publisher process.
//!
//! ```text
//! pip install paho-mqtt
//! CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example bench_mqtt -- 127.0.0.1:1883 60
//! ```
//! Figures go to docs/bench-mqtt.md. Not a test: nothing here asserts.

use anyhow::{bail, Context as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sunshare::collect::mqtt::{MqttCollector, Wiring};
use sunshare::config::Deployment;
use sunshare::metrics::Metrics;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const LOGGERS: usize = 100;
const UNITS: usize = 10;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks of 1/100 s (Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn split(addr: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = addr.rsplit_once(':').context("host:port")?;
    Ok((h.to_owned(), p.parse()?))
}

/// Child mode: publish telemetry flat out on `conns` connections for `seconds`.
async fn publish(broker: &str, prefix: &str, seconds: u64, conns: usize) -> anyhow::Result<()> {
    let (host, port) = split(broker)?;
    let stop = Instant::now() + Duration::from_secs(seconds);
    // A logger backlog starting 20 days ago, one minute of data per round of all devices: a 60 s
    // run at 50,000 messages/s is 3,000 rounds, about two days, so every message is a valid new
    // sample well inside ingest's clock limits (at most 30 days back, never in the future).
    let base = chrono::Utc::now().timestamp() - 20 * 86_400;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut o = MqttOptions::new(format!("{prefix}-pub{c}"), host.clone(), port);
        o.set_keep_alive(Duration::from_secs(30)).set_inflight(500);
        let (client, mut el) = AsyncClient::new(o, 1000);
        tasks.push(tokio::spawn(
            async move { while el.poll().await.is_ok() {} },
        ));
        let prefix = prefix.to_owned();
        let sent = Arc::clone(&sent);
        tasks.push(tokio::spawn(async move {
            let mut seq: u64 = 0;
            while Instant::now() < stop {
                let device = (seq as usize * conns + c) % (LOGGERS * UNITS);
                let (logger, unit) = (device / UNITS, device % UNITS + 1);
                // Each connection serves every conns-th device; a round of them is one minute of a
                // 60 s schedule, producing a steady 30 kW: plausible values that pass ingest's
                // counter checks (a counter may not grow faster than the device's rating allows).
                let round = seq * conns as u64 / (LOGGERS * UNITS) as u64;
                let ts = base + round as i64 * 60;
                let payload = format!(
                    r#"{{"ts": {ts}, "addr": {unit}, "data": {{"pac": {}, "etotal": {}, "etoday": 12.5, "temp": 41.5, "status": 1}}}}"#,
                    29_500 + seq % 1000,
                    100_000.0 + round as f64 * 0.5
                );
                let topic = format!("{prefix}/sunshare/S1/L{logger}/telemetry");
                if client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
        }));
    }
    tokio::time::sleep_until(stop.into()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("published {}", sent.load(Ordering::Relaxed));
    for t in tasks {
        t.abort();
    }
    Ok(())
}

fn spawn_publisher(
    broker: &str,
    prefix: &str,
    seconds: u64,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    Ok(tokio::process::Command::new(exe)
        .args(["publish", broker, prefix, &(seconds + 5).to_string(), "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

#[derive(Debug)]
struct Figure {
    rate: f64,
    cpu_us: f64,
    extra: String,
}

/// The ceiling: a bare rumqttc QoS 1 subscriber (auto-ack), nothing else.
async fn ceiling(broker: &str, seconds: u64) -> anyhow::Result<Figure> {
    let prefix = format!("bench-ceil-{}", std::process::id());
    let (host, port) = split(broker)?;
    let mut o = MqttOptions::new(format!("{prefix}-sub"), host, port);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(o, 100);
    client
        .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
        .await?;
    let count = Arc::new(AtomicU64::new(0));
    let c2 = Arc::clone(&count);
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    c2.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut child = spawn_publisher(broker, &prefix, seconds)?;
    while count.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (n0, c0, t0) = (count.load(Ordering::Relaxed), cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (n1, c1, t1) = (count.load(Ordering::Relaxed), cpu_seconds(), Instant::now());
    let _ = child.wait().await;
    task.abort();
    let n = (n1 - n0) as f64;
    Ok(Figure {
        rate: n / (t1 - t0).as_secs_f64(),
        cpu_us: (c1 - c0) / n * 1e6,
        extra: String::new(),
    })
}

fn deployment(prefix: &str) -> anyhow::Result<Deployment> {
    let mut text = format!(
        r#"
[mqtt]
client_id = "{prefix}-sunshare"
topic_prefix = "{prefix}"
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
capacity_kwp = 100000
latitude = 37.8
longitude = 112.5
commissioned = "2018-06-30"
tariff = "TF"
"#
    );
    for l in 0..LOGGERS {
        text.push_str(&format!(
            "[[mqtt.loggers]]\nid = \"L{l}\"\nstation = \"S1\"\ntemplate = \"json_generic\"\n"
        ));
        for u in 1..=UNITS {
            text.push_str(&format!(
                "[[devices]]\nid = \"L{l}-{u}\"\nstation = \"S1\"\nkind = \"inverter\"\nmodel = \"huawei_sun2000\"\ntransport = {{ type = \"mqtt\", logger = \"L{l}\", unit = {u} }}\nrated_power_w = 50000\n"
            ));
        }
    }
    let models: HashSet<String> = ["huawei_sun2000".to_owned()].into();
    Deployment::from_str_with_env("bench.toml", &text, &[], &models)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Sunshare: collector -> decode -> ingest -> SQLite.
async fn end_to_end(broker: &str, seconds: u64) -> anyhow::Result<Figure> {
    let prefix = format!("bench-e2e-{}", std::process::id());
    let d = deployment(&prefix)?;
    let dir = std::env::temp_dir().join(format!("sunshare-bench-{prefix}"));
    let store = sunshare::store::Store::open_sqlite(&dir.join("sunshare.db")).await?;
    store.sync_registry(&d).await?;
    let metrics = Arc::new(Metrics::new());
    let (ingest, worker) = sunshare::ingest::channel(
        1024,
        store.clone(),
        sunshare::app::device_profiles(&d),
        Arc::clone(&metrics),
    );
    let cancel = CancellationToken::new();
    let w = tokio::spawn(worker.run(cancel.child_token()));
    let collector = MqttCollector::new(
        &d,
        Some(broker),
        Wiring {
            ingest,
            metrics: Arc::clone(&metrics),
            store: store.clone(),
            decoder: None,
        },
    )?;
    let status = collector.status();
    let c = tokio::spawn(collector.run(cancel.child_token()));
    for _ in 0..200 {
        if status.lock().map(|s| s.subscribed).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ingested = || -> u64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("sunshare_samples_ingested_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // The quarantine counters, one line per reason.
    let quarantined = || -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("sunshare_samples_quarantined_total"))
            .map(str::to_owned)
            .collect()
    };
    let mut child = spawn_publisher(broker, &prefix, seconds)?;
    let first = Instant::now();
    while ingested() == 0 {
        if first.elapsed() > Duration::from_secs(30) {
            bail!(
                "nothing was stored in 30 s; quarantined: {:?}",
                quarantined()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The window starts and ends with everything written behind in its tables, so the rollup
    // writes the window caused are billed to it.
    store.settle().await?;
    let (n0, c0, t0) = (ingested(), cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    store.settle().await?;
    let (n1, c1, t1) = (ingested(), cpu_seconds(), Instant::now());
    let _ = child.wait().await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), c).await;
    let _ = tokio::time::timeout(Duration::from_secs(60), w).await;
    let rows = store.raw_count().await?;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let n = (n1 - n0) as f64;
    let refused: u64 = quarantined()
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    Ok(Figure {
        rate: n / (t1 - t0).as_secs_f64(),
        cpu_us: (c1 - c0) / n * 1e6,
        extra: format!(
            "rows stored {rows}, quarantined {refused}, peak RSS {} KiB",
            peak_rss_kib()
        ),
    })
}

/// The Python peer (benches/peers/mqtt_sqlite.py), fed by the same publisher.
async fn peer(broker: &str, seconds: u64) -> anyhow::Result<Figure> {
    let prefix = format!("bench-peer-{}", std::process::id());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/mqtt_sqlite.py");
    let mut py = tokio::process::Command::new("python3")
        .args([script, broker, &format!("{prefix}/#"), &seconds.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = py.stdout.take().context("peer stdout")?;
    let mut lines = tokio::io::BufReader::new(out).lines();
    match lines.next_line().await? {
        Some(l) if l == "ready" => {}
        other => bail!("peer did not start: {other:?}"),
    }
    let mut child = spawn_publisher(broker, &prefix, seconds)?;
    let result = lines.next_line().await?.context("peer result")?;
    let _ = child.wait().await;
    let v: serde_json::Value = serde_json::from_str(&result)?;
    Ok(Figure {
        rate: v["rate"].as_f64().unwrap_or(0.0),
        cpu_us: v["cpu_us_per_msg"].as_f64().unwrap_or(0.0),
        extra: format!("peak RSS {} KiB", v["max_rss_kib"]),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("publish") {
        let seconds = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
        let conns = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(2);
        return publish(&args[2], &args[3], seconds, conns).await;
    }
    let broker = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let which = args.get(3).cloned().unwrap_or_else(|| "all".into());
    if which == "all" || which == "decode" {
        // The MQTT side alone: topic resolution, JSON parse, field mapping, per message.
        let prefix = "bench-decode";
        let d = deployment(prefix)?;
        let templates = sunshare::collect::mqtt::template::load_templates(None)?;
        let dir = sunshare::collect::mqtt::Directory::build(&d, &templates)?;
        let topic = format!("{prefix}/sunshare/S1/L7/telemetry");
        let payload = br#"{"ts": 1763884800, "addr": 3, "data": {"pac": 48210, "etotal": 184233.7, "etoday": 12.5, "temp": 41.5, "status": 1}}"#;
        let n = 200_000;
        let (c0, t0) = (cpu_seconds(), Instant::now());
        let mut samples = 0;
        for _ in 0..n {
            samples += sunshare::collect::mqtt::payload::decode_message(
                &dir,
                None,
                &topic,
                payload,
                1 << 20,
            )
            .samples
            .len();
        }
        let (c1, t1) = (cpu_seconds(), Instant::now());
        println!(
            "decode only: {:.0} msg/s on one core, {:.2} us CPU/msg ({samples} samples)",
            n as f64 / (t1 - t0).as_secs_f64(),
            (c1 - c0) / n as f64 * 1e6
        );
    }
    let (mut bare, mut ours, mut python) = (None, None, None);
    if which == "all" || which == "ceiling" {
        let f = ceiling(&broker, seconds).await?;
        println!(
            "ceiling (bare rumqttc QoS 1 sub): {:.0} msg/s, {:.2} us CPU/msg",
            f.rate, f.cpu_us
        );
        bare = Some(f);
    }
    if which == "all" || which == "sunshare" {
        let f = end_to_end(&broker, seconds).await?;
        println!(
            "sunshare (decode+ingest+SQLite): {:.0} msg/s, {:.2} us CPU/msg, {}",
            f.rate, f.cpu_us, f.extra
        );
        ours = Some(f);
    }
    if which == "all" || which == "peer" {
        let f = peer(&broker, seconds).await?;
        println!(
            "peer (python paho + sqlite): {:.0} msg/s, {:.2} us CPU/msg, {}",
            f.rate, f.cpu_us, f.extra
        );
        python = Some(f);
    }
    if let (Some(b), Some(o), Some(p)) = (bare, ours, python) {
        println!(
            "ratios: throughput {:.2} of the ceiling; CPU per message {:.3} of the peer's; \
             the bare subscriber alone {:.3} of the peer's",
            o.rate / b.rate,
            o.cpu_us / p.cpu_us,
            b.cpu_us / p.cpu_us
        );
    }
    Ok(())
}
