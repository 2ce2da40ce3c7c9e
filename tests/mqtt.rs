//! MQTT collection end to end: loggers publish to a broker (the embedded one always; the real
//! Mosquitto when SUNSHARE_TEST_MQTT is set), Sunshare subscribes, decodes, ingests and stores.

use anyhow::{bail, Context as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sunshare::collect::broker::EmbeddedBroker;
use sunshare::collect::mqtt::{MqttCollector, StatusHandle, Wiring};
use sunshare::config::Deployment;
use sunshare::ingest;
use sunshare::metrics::Metrics;
use sunshare::store::testing::{self, TestStore};
use tokio_util::sync::CancellationToken;

const MQTT_VAR: &str = "SUNSHARE_TEST_MQTT";

static RUN: AtomicU32 = AtomicU32::new(0);

/// A prefix no other run or test shares, for topics and client ids.
fn unique(test: &str) -> String {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{test}-{}-{n}-{nanos}", std::process::id())
}

fn mosquitto(test: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(MQTT_VAR) {
        Ok(addr) if !addr.is_empty() => Ok(Some(addr)),
        _ => {
            sunshare::store::testing::announce_skip(&format!(
                "SKIPPED (Mosquitto) {test}: set {MQTT_VAR}=127.0.0.1:1883 to run it"
            ));
            Ok(None)
        }
    }
}

/// A deployment with one station, a JSON logger L1 (units 1 and 2) and the given broker settings.
fn deployment(prefix: &str, client_id: &str, extra_mqtt: &str) -> anyhow::Result<Deployment> {
    deployment_with(prefix, client_id, extra_mqtt, "")
}

fn deployment_with(
    prefix: &str,
    client_id: &str,
    extra_mqtt: &str,
    tail: &str,
) -> anyhow::Result<Deployment> {
    let text = format!(
        r#"
[mqtt]
client_id = "{client_id}"
topic_prefix = "{prefix}"
max_message_bytes = 4096
reconnect_min = "50ms"
reconnect_max = "1s"
keep_alive = "5s"
{extra_mqtt}
[[mqtt.loggers]]
id = "L1"
station = "S1"
template = "json_generic"

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
[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = {{ type = "mqtt", logger = "L1", unit = 1 }}
rated_power_w = 50000
[[devices]]
id = "S1-INV2"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = {{ type = "mqtt", logger = "L1", unit = 2 }}
rated_power_w = 50000
{tail}
"#
    );
    let models: HashSet<String> = ["huawei_sun2000".to_owned()].into();
    Deployment::from_str_with_env("test.toml", &text, &[], &models)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Store, ingest worker and metrics for one test.
struct Pipeline {
    store: TestStore,
    metrics: Arc<Metrics>,
    ingest: ingest::IngestHandle,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pipeline {
    async fn new(d: &Deployment) -> anyhow::Result<Pipeline> {
        let store = testing::sqlite().await?;
        store.store.sync_registry(d).await?;
        let metrics = Arc::new(Metrics::new());
        let (ingest, worker) = ingest::channel(
            256,
            store.store.clone(),
            sunshare::app::device_profiles(d),
            Arc::clone(&metrics),
        );
        let cancel = CancellationToken::new();
        let tasks = vec![tokio::spawn(worker.run(cancel.child_token()))];
        Ok(Pipeline {
            store,
            metrics,
            ingest,
            cancel,
            tasks,
        })
    }

    /// Starts a collector; returns its status and a token that stops just it.
    fn collector(
        &mut self,
        d: &Deployment,
        broker: &str,
    ) -> anyhow::Result<(StatusHandle, CancellationToken, tokio::task::JoinHandle<()>)> {
        let c = MqttCollector::new(
            d,
            Some(broker),
            Wiring {
                ingest: self.ingest.clone(),
                metrics: Arc::clone(&self.metrics),
                store: self.store.store.clone(),
                decoder: None,
            },
        )?;
        let status = c.status();
        let stop = self.cancel.child_token();
        Ok((status, stop.clone(), tokio::spawn(c.run(stop))))
    }

    fn count(&self, outcome: &str, reason: &str) -> u64 {
        let text = self.metrics.render();
        let needle =
            format!("sunshare_mqtt_messages_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_subscribed(status: &StatusHandle) -> anyhow::Result<()> {
    wait_for("the subscription", Duration::from_secs(20), || async {
        Ok(status.lock().map(|s| s.subscribed).unwrap_or(false))
    })
    .await
}

/// A logger-side publisher: QoS 1, persistent session, its event loop polled in the background.
struct Publisher {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    acked: Arc<AtomicU32>,
}

impl Publisher {
    fn new(host: &str, port: u16, id: &str) -> Publisher {
        let mut o = MqttOptions::new(id, host, port);
        o.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(o, 10_000);
        let acked = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&acked);
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Publisher {
            client,
            task,
            acked,
        }
    }

    async fn send(&self, topic: &str, payload: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .context("queueing a publish")
    }

    async fn wait_acked(&self, n: u32) -> anyhow::Result<()> {
        let acked = Arc::clone(&self.acked);
        wait_for("the broker's acks", Duration::from_secs(30), move || {
            let acked = Arc::clone(&acked);
            async move { Ok(acked.load(Ordering::Relaxed) >= n) }
        })
        .await
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// A good record for unit `unit` read `minutes_ago` minutes before a fixed instant of this test
/// process, so that the same arguments always give the same read time (a repeat collides).
fn record(unit: u8, minutes_ago: i64, power: f64) -> String {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = chrono::Utc::now().timestamp();
        now - now.rem_euclid(60)
    });
    let ts = base - minutes_ago * 60;
    format!(
        r#"{{"ts": {ts}, "addr": {unit}, "data": {{"pac": {power}, "etotal": {e}, "status": 1}}}}"#,
        e = 1000.0 + (10_000 - minutes_ago) as f64
    )
}

fn split(addr: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = addr.rsplit_once(':').context("host:port")?;
    Ok((h.to_owned(), p.parse()?))
}

/// Bad inputs of every kind and a flood of unknown devices, between good messages: each bad one is
/// counted with its reason, the unknown devices are listed, and every good one is stored.
async fn bad_inputs_and_floods(broker: &str, prefix: &str, client_id: &str) -> anyhow::Result<()> {
    let d = deployment(prefix, client_id, "")?;
    let mut p = Pipeline::new(&d).await?;
    let (status, _, _) = p.collector(&d, broker)?;
    wait_subscribed(&status).await?;
    let (host, port) = split(broker)?;
    let publisher = Publisher::new(&host, port, &format!("{client_id}-pub"));
    let topic = format!("{prefix}/sunshare/S1/L1/telemetry");

    let bad: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{\"ts\": 1, \"addr\": 1, \"data\": {".to_vec(),
            "malformed_json",
        ),
        (vec![0xff, 0x00, 0x13, 0x37, 0xfe, 0x80], "binary_garbage"),
        (
            record(1, 100, 1.0)
                .replace("\"pac\": 1", "\"pac\": \"lots\"")
                .into_bytes(),
            "wrong_type",
        ),
        (
            b"{\"addr\": 1, \"data\": {\"pac\": 5}}".to_vec(),
            "missing_field",
        ),
        (vec![b' '; 5000], "oversized"),
    ];
    let mut sent = 0;
    for (i, (payload, _)) in bad.iter().enumerate() {
        publisher
            .send(&topic, record(1, 200 + i as i64, 100.0))
            .await?;
        publisher.send(&topic, payload.clone()).await?;
        sent += 2;
    }
    // A new logger in the field, and unknown units behind a known logger: a flood.
    for i in 0..300 {
        let unknown_logger = format!("{prefix}/sunshare/S1/NEW{}/telemetry", i % 3);
        publisher.send(&unknown_logger, record(1, 1, 5.0)).await?;
        publisher
            .send(&topic, record(10 + (i % 50) as u8, 1, 5.0))
            .await?;
        sent += 2;
    }
    for i in 0..20 {
        publisher.send(&topic, record(2, 300 + i, 200.0)).await?;
        sent += 1;
    }
    publisher.wait_acked(sent).await?;

    let store = p.store.store.clone();
    wait_for("25 good samples stored", Duration::from_secs(30), || {
        let store = store.clone();
        async move { Ok(store.raw_count().await? >= 25) }
    })
    .await?;
    wait_for("every message counted", Duration::from_secs(30), || async {
        let total: u64 = [
            "malformed_json",
            "binary_garbage",
            "wrong_type",
            "missing_field",
            "oversized",
        ]
        .iter()
        .map(|r| p.count("rejected", r))
        .sum();
        Ok(total == 5 && p.count("unknown_device", "unknown_device") == 600)
    })
    .await?;
    for (_, reason) in &bad {
        assert_eq!(p.count("rejected", reason), 1, "{reason}");
    }
    assert_eq!(p.count("accepted", "ok"), 25);
    assert_eq!(p.store.store.raw_count().await?, 25);

    // Problems reach the operators' lists (flushed every 2 s: unknown devices, then refusals).
    wait_for(
        "the unknown-device and refusal lists",
        Duration::from_secs(20),
        || {
            let store = store.clone();
            async move {
                let rows = store.mqtt_unknown(500).await?;
                let refused = store.mqtt_rejected(100).await?;
                let reasons: HashSet<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
                Ok(rows.iter().map(|r| r.messages).sum::<i64>() == 600 && reasons.len() == 5)
            }
        },
    )
    .await?;
    let unknown = p.store.store.mqtt_unknown(500).await?;
    assert_eq!(
        unknown.len(),
        3 + 50,
        "3 unknown loggers and 50 unknown units"
    );
    assert!(unknown
        .iter()
        .any(|r| r.logger == "NEW2" && r.device_key.is_empty()));
    assert!(unknown
        .iter()
        .any(|r| r.logger == "L1" && r.device_key == "unit 59"));
    let rejected = p.store.store.mqtt_rejected(100).await?;
    let reasons: HashSet<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(rejected
        .iter()
        .any(|r| r.reason == "wrong_type" && r.last_detail.contains("'pac'")));
    publisher.stop();
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_counts_bad_inputs_and_unknown_floods() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse()?, 1 << 20).await?;
    let id = unique("bad");
    bad_inputs_and_floods(&broker.addr().to_string(), &id, &id).await?;
    broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_counts_bad_inputs_and_unknown_floods() -> anyhow::Result<()> {
    let Some(addr) = mosquitto("mosquitto_counts_bad_inputs_and_unknown_floods")? else {
        return Ok(());
    };
    let id = unique("bad");
    bad_inputs_and_floods(&addr, &id, &id).await
}

/// Sunshare stops; loggers keep publishing; Sunshare comes back with the same client id and gets
/// everything published meanwhile (persistent session, QoS 1).
async fn restart_of_sunshare_loses_nothing(
    broker: &str,
    prefix: &str,
    client_id: &str,
) -> anyhow::Result<()> {
    let d = deployment(prefix, client_id, "")?;
    let mut p = Pipeline::new(&d).await?;
    let (status, stop, task) = p.collector(&d, broker)?;
    wait_subscribed(&status).await?;
    let (host, port) = split(broker)?;
    let publisher = Publisher::new(&host, port, &format!("{client_id}-pub"));
    let topic = format!("{prefix}/sunshare/S1/L1/telemetry");
    for i in 0..50 {
        publisher.send(&topic, record(1, 1000 + i, 10.0)).await?;
    }
    publisher.wait_acked(50).await?;
    let store = p.store.store.clone();
    wait_for("the first 50 samples", Duration::from_secs(20), || {
        let store = store.clone();
        async move { Ok(store.raw_count().await? == 50) }
    })
    .await?;
    // Sunshare stops (its collector disconnects cleanly; the session stays on the broker).
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    for i in 0..50 {
        publisher.send(&topic, record(1, 2000 + i, 10.0)).await?;
    }
    publisher.wait_acked(100).await?;
    let (status, _, _) = p.collector(&d, broker)?;
    wait_subscribed(&status).await?;
    wait_for("all 100 samples", Duration::from_secs(30), || {
        let store = store.clone();
        async move { Ok(store.raw_count().await? == 100) }
    })
    .await?;
    // The first 50 were acknowledged before the stop (their acks leave in batches), so the broker
    // delivers only the 50 it kept: a lost ack would come back here as a duplicate.
    let duplicates = p
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("sunshare_samples_duplicate_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(duplicates, 0, "acknowledged messages were delivered again");
    publisher.stop();
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_keeps_messages_while_sunshare_restarts() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse()?, 1 << 20).await?;
    let id = unique("restart");
    restart_of_sunshare_loses_nothing(&broker.addr().to_string(), &id, &id).await?;
    broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_keeps_messages_while_sunshare_restarts() -> anyhow::Result<()> {
    let Some(addr) = mosquitto("mosquitto_keeps_messages_while_sunshare_restarts")? else {
        return Ok(());
    };
    let id = unique("restart");
    restart_of_sunshare_loses_nothing(&addr, &id, &id).await
}

/// The broker goes away in the middle of a stream (every connection dropped, new ones refused) and
/// comes back: every QoS 1 message is stored exactly once, and a logger re-uploading a backlog it
/// was not sure about is recognised as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice() -> anyhow::Result<()> {
    let mut broker = EmbeddedBroker::start("127.0.0.1:0".parse()?, 1 << 20).await?;
    let addr: SocketAddr = broker.addr();
    let id = unique("midstream");
    let d = deployment(&id, &id, "")?;
    let mut p = Pipeline::new(&d).await?;
    let (status, _, _) = p.collector(&d, &addr.to_string())?;
    wait_subscribed(&status).await?;
    let publisher = Publisher::new(&addr.ip().to_string(), addr.port(), &format!("{id}-pub"));
    let topic = format!("{id}/sunshare/S1/L1/telemetry");
    const N: i64 = 400;
    for i in 0..N / 2 {
        publisher
            .send(&topic, record(1 + (i % 2) as u8, 5000 + i, 10.0))
            .await?;
    }
    // Mid-stream: the broker drops everyone while messages are in flight.
    broker.pause().await;
    for i in N / 2..N {
        publisher
            .send(&topic, record(1 + (i % 2) as u8, 5000 + i, 10.0))
            .await?;
    }
    wait_for(
        "the collector to notice",
        Duration::from_secs(20),
        || async { Ok(!status.lock().map(|s| s.connected).unwrap_or(true)) },
    )
    .await?;
    broker.resume()?;
    publisher.wait_acked(N as u32).await?;
    let lost: u64 = ["io", "timeout", "refused", "tls", "protocol", "other"]
        .iter()
        .map(|r| p.count("connection_error", r))
        .sum();
    assert!(lost > 0, "the collector lost its connection");
    let store = p.store.store.clone();
    wait_for("every message stored", Duration::from_secs(60), || {
        let store = store.clone();
        async move { Ok(store.raw_count().await? >= N) }
    })
    .await?;
    // The logger uploads the last 50 again (it never saw those acks): recognised, not stored twice.
    for i in N - 50..N {
        publisher
            .send(&topic, record(1 + (i % 2) as u8, 5000 + i, 10.0))
            .await?;
    }
    publisher.wait_acked(N as u32 + 50).await?;
    let metrics = Arc::clone(&p.metrics);
    wait_for("the re-upload to be seen", Duration::from_secs(30), || {
        let m = Arc::clone(&metrics);
        async move {
            let text = m.render();
            let dup = text
                .lines()
                .find_map(|l| l.strip_prefix("sunshare_samples_duplicate_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            Ok(dup >= 50)
        }
    })
    .await?;
    assert_eq!(
        p.store.store.raw_count().await?,
        N,
        "each sample stored exactly once"
    );
    publisher.stop();
    p.stop().await;
    broker.shutdown().await;
    Ok(())
}

/// The whole service with `mqtt.embedded = true`: the simulated loggers publish to the embedded
/// broker (with a backlog first), the fleet gets samples, and `/api/mqtt/unknown` lists a stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_with_embedded_broker_and_simulated_loggers() -> anyhow::Result<()> {
    let id = unique("app");
    let d = deployment_with(
        &id,
        &id,
        "embedded = true\nlisten = \"127.0.0.1:0\"",
        r#"
[[mqtt.loggers]]
id = "L2"
station = "S1"
template = "modbus_forward"
[[devices]]
id = "S1-INV3"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "mqtt", logger = "L2", unit = 1 }
rated_power_w = 50000
"#,
    )?;
    let dir = std::env::temp_dir().join(format!("sunshare-{id}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = sunshare::app::start(Arc::new(d.clone()), &dir, listener).await?;
    let broker = running.mqtt_broker.context("embedded broker address")?;
    let cancel = CancellationToken::new();
    let mut loggers = sunshare::sim::logger::for_deployment(
        &d,
        Some(Arc::new(sunshare::sim::logger::MapSource::builtin()?)),
        Duration::from_secs(1),
        Duration::from_secs(600),
    );
    assert_eq!(
        loggers.len(),
        2,
        "a JSON logger and a register-forwarding logger"
    );
    // Backlog messages must stay under this deployment's 4 KiB message limit.
    loggers.iter_mut().for_each(|l| l.backlog_chunk = 1);
    let sims = sunshare::sim::logger::run_loggers(broker, loggers, &cancel);
    let store = running.store.clone();
    // Ten minutes of backlog, a record a second for each of two devices.
    let waited = wait_for(
        "the backlog and live samples",
        Duration::from_secs(60),
        || {
            let store = store.clone();
            async move { Ok(store.raw_count().await? >= 1200) }
        },
    )
    .await;
    if let Err(e) = waited {
        let mqtt: Vec<String> = running
            .metrics
            .render()
            .lines()
            .filter(|l| l.contains("mqtt") || l.contains("samples"))
            .map(str::to_owned)
            .collect();
        bail!("{e}; stored {}; {mqtt:#?}", store.raw_count().await?);
    }
    // The register-forwarding logger's blocks were decoded with the Huawei map.
    let latest = store.latest().await?;
    let inv3 = latest
        .iter()
        .find(|r| r.device.as_str() == "S1-INV3")
        .context("S1-INV3 has a latest value")?;
    assert!(
        inv3.energy_lifetime_wh.is_some_and(|e| e > 1_000_000.0),
        "{inv3:?}"
    );
    assert!(inv3.state.is_some(), "{inv3:?}");
    // Samples flow, so the collector is subscribed: a logger nobody registered shows up.
    let stranger = Publisher::new(&broker.ip().to_string(), broker.port(), &format!("{id}-x"));
    stranger
        .send(
            &format!("{id}/sunshare/S1/L404/telemetry"),
            record(1, 1, 1.0),
        )
        .await?;
    let url = format!("http://{}/api/mqtt/unknown", running.http_addr);
    let operator = sunshare::http::testing::client_with_token(
        &sunshare::store::testing::api_token(
            &running.store,
            sunshare::domain::Role::Operator,
            vec![sunshare::domain::ScopeEntry::All],
        )
        .await?,
    );
    let mut listed = false;
    for _ in 0..100 {
        let body = operator.get(&url).send().await?.text().await?;
        if body.contains("L404") {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed, "the unknown logger is listed for operators");
    let page = operator
        .get(format!("http://{}/mqtt", running.http_addr))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("L404"));
    cancel.cancel();
    sims.wait().await;
    stranger.stop();
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What a broker answers to a CONNECT from `id`: its CONNACK, or the error that ended the attempt.
async fn first_answer(
    addr: SocketAddr,
    id: &str,
    clean: bool,
) -> anyhow::Result<Result<rumqttc::ConnAck, rumqttc::ConnectionError>> {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_clean_session(clean)
        .set_keep_alive(Duration::from_secs(30));
    let (_client, mut el) = AsyncClient::new(o, 10);
    let polled = tokio::time::timeout(Duration::from_secs(20), el.poll())
        .await
        .context("no answer to CONNECT within 20 s")?;
    Ok(match polled {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => Ok(ack),
        Ok(other) => bail!("expected a CONNACK first, got {other:?}"),
        Err(e) => Err(e),
    })
}

/// Options of a client with a persistent session (clean session off) at `addr`.
fn persistent(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_clean_session(false);
    o
}

/// A QoS 1 round trip through `addr`: a persistent subscriber, then a publisher.
async fn round_trip(addr: SocketAddr, id: &str) -> anyhow::Result<()> {
    let topic = format!("{id}/t");
    let (sub, mut sub_el) = AsyncClient::new(persistent(addr, &format!("{id}-sub")), 10);
    sub.subscribe(&topic, QoS::AtLeastOnce).await?;
    let received = tokio::spawn(async move {
        loop {
            match sub_el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let pub_ = Publisher::new(
                        &addr.ip().to_string(),
                        addr.port(),
                        &format!("{topic}-pub").replace('/', "-"),
                    );
                    pub_.send(&topic, b"hello".to_vec()).await?;
                    // Keep the publisher's loop alive until the message arrives.
                    loop {
                        if let Event::Incoming(Packet::Publish(p)) = sub_el.poll().await? {
                            pub_.stop();
                            return anyhow::Ok(p.payload.to_vec());
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
    });
    let payload = tokio::time::timeout(Duration::from_secs(20), received)
        .await
        .context("no message within 20 s")???;
    assert_eq!(payload, b"hello");
    Ok(())
}

/// rumqttd's router drops a client id with `/` in it without a word; the embedded broker says so
/// with a CONNACK refusal, and repeated tries never disturb other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_refuses_client_ids_it_cannot_serve() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse()?, 1 << 20).await?;
    let id = unique("badid");
    for _ in 0..3 {
        let answer = first_answer(broker.addr(), &format!("{id}/logger"), false).await?;
        match answer {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, rumqttc::ConnectReturnCode::BadClientId)
            }
            other => bail!("expected a refusal of the client id, got {other:?}"),
        }
    }
    round_trip(broker.addr(), &id).await?;
    assert_eq!(broker.listener_replacements(), 0);
    broker.shutdown().await;
    Ok(())
}

/// rumqttd's client listener can wedge (its will-handler table poisoned: every new connection dies
/// before its CONNACK). Wedge it on purpose, straight on its private port, and check that clients of
/// the embedded broker still connect, and that a persistent session and its queued message
/// survive the replacement of the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_replaces_a_wedged_listener_and_keeps_sessions() -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse()?, 1 << 20).await?;
    let id = unique("wedge");
    let topic = format!("{id}/queued");
    // A persistent subscriber that goes away before the message is published.
    let keeper = format!("{id}-keeper");
    {
        let (c, mut el) = AsyncClient::new(persistent(broker.addr(), &keeper), 10);
        c.subscribe(&topic, QoS::AtLeastOnce).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(20), el.poll()).await?? {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        c.disconnect().await?;
        while tokio::time::timeout(Duration::from_secs(20), el.poll())
            .await?
            .is_ok()
        {}
    }

    // Wedge rumqttd: a client id its router refuses leaves a stale will handler; a later connect
    // with that id panics while holding the table's lock. (rumqttd closes the refused connection
    // a moment before it drops the handler's receiver, so a quick retry may not panic yet.)
    let private = broker.private_addr();
    let bad = format!("{id}/x");
    let mut wedged = None;
    for k in 0..20 {
        let answer = first_answer(private, &bad, false).await?;
        assert!(answer.is_err(), "rumqttd answered {bad}: {answer:?}");
        let probe = first_answer(private, &format!("{id}-direct{k}"), true).await?;
        if probe.is_err() {
            wedged = Some(k);
            break;
        }
    }
    assert!(
        wedged.is_some_and(|k| k > 0),
        "rumqttd's listener should be wedged after a repeated refused id, and only then: {wedged:?}"
    );

    // Through the embedded broker, clients still connect.
    let publisher = Publisher::new(
        &broker.addr().ip().to_string(),
        broker.addr().port(),
        &format!("{id}-pub"),
    );
    publisher.send(&topic, b"kept".to_vec()).await?;
    publisher.wait_acked(1).await?;
    assert_eq!(broker.listener_replacements(), 1);
    assert_ne!(broker.private_addr(), private);

    // The subscriber's session, with the message queued for it, is still there.
    let (_c, mut el) = AsyncClient::new(persistent(broker.addr(), &keeper), 10);
    let payload = loop {
        match tokio::time::timeout(Duration::from_secs(20), el.poll()).await?? {
            Event::Incoming(Packet::ConnAck(ack)) => {
                assert!(ack.session_present, "the session was lost")
            }
            Event::Incoming(Packet::Publish(p)) => break p.payload.to_vec(),
            _ => continue,
        }
    };
    assert_eq!(payload, b"kept");
    publisher.stop();
    round_trip(broker.addr(), &id).await?;
    broker.shutdown().await;
    Ok(())
}
