//! Sunshare killed outright (SIGKILL) in the middle of a data logger's MQTT stream (QoS 1, a
//! persistent session) and started again: nothing the broker was told was received is lost,
//! nothing is stored twice, and the rollups equal what the raw rows give. The real binary, a real
//! Mosquitto (service: `SUNSHARE_TEST_MQTT`), the embedded SQLite store on disk.

mod support;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sunshare::domain::DeviceId;
use support::binary::{
    assert_rollups_match_raw, kill, publish_stream, run_name, serve, stop, stored, until,
    ONE_STATION, PATIENCE,
};
use support::free_port;

const MQTT_VAR: &str = "SUNSHARE_TEST_MQTT";
/// Messages in the stream; under the broker's default queue for an offline client (1,000), so
/// what waits for Sunshare while it is down is kept by the broker.
const MESSAGES: u32 = 900;
const LOG: &str = "info,sunshare::collect::mqtt=debug";

fn subscribed(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("subscribed")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_it_loses_nothing_acknowledged_stores_nothing_twice_and_rollups_match_raw(
) {
    let broker = match std::env::var(MQTT_VAR) {
        Ok(b) if !b.is_empty() => b,
        _ => {
            sunshare::store::testing::announce_skip(&format!(
                "SKIPPED (Mosquitto) killed_mid_stream: set {MQTT_VAR}=127.0.0.1:1883 to run it"
            ));
            return;
        }
    };
    let (host, port) = broker.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("broker port");
    let run = run_name("crash");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let db = data.join("sunshare.db");
    let config = dir.path().join("crash.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
data_dir = {data:?}

[http]
listen = "127.0.0.1:{http}"

[mqtt]
broker = "{broker}"
client_id = "sunshare-{run}"
topic_prefix = "{run}"
reconnect_min = "50ms"
reconnect_max = "500ms"
keep_alive = "5s"

[[mqtt.loggers]]
id = "L1"
station = "S1"
template = "json_generic"

{ONE_STATION}
[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = {{ type = "mqtt", logger = "L1", unit = 1 }}
rated_power_w = 50000
"#,
            http = free_port(),
        ),
    )
    .expect("write the deployment file");
    let log = dir.path().join("serve-1.log");
    let mut served = serve(&config, &log, LOG);
    until("the first subscription", &mut served, &log, || async {
        subscribed(&log) >= 1
    })
    .await;

    // The logger: QoS 1 on a session of its own, counting the broker's acknowledgements.
    let mut o = MqttOptions::new(format!("logger-{run}"), host, port);
    o.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(o, 2_000);
    let acked = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&acked);
    let pump = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    let topic = format!("{run}/sunshare/S1/L1/telemetry");
    let base = chrono::Utc::now().timestamp() - i64::from(MESSAGES) - 60;
    // About a thousand readings a second, as a logger uploading its backlog does.
    let publisher = publish_stream(client.clone(), topic.clone(), base, MESSAGES, 10);

    // Killed with no warning once a part of the stream is stored and more is on its way.
    until("a part of the stream stored", &mut served, &log, || async {
        stored(&db).await >= i64::from(MESSAGES / 5)
    })
    .await;
    kill(&mut served);
    let at_kill = stored(&db).await;
    assert!(
        at_kill < i64::from(MESSAGES),
        "the kill came after the whole stream ({at_kill} stored): nothing was proved"
    );
    publisher.await.expect("the logger published everything");
    let deadline = Instant::now() + PATIENCE;
    while acked.load(Ordering::Relaxed) < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "the broker did not take the whole stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Started again on the same data: everything the broker kept, redelivered or not yet
    // delivered, arrives; every reading is stored exactly once.
    let log2 = dir.path().join("serve-2.log");
    let mut served = serve(&config, &log2, LOG);
    until("every reading stored", &mut served, &log2, || async {
        stored(&db).await >= i64::from(MESSAGES)
    })
    .await;
    assert_eq!(
        stored(&db).await,
        i64::from(MESSAGES),
        "each reading once (after {at_kill} stored at the kill)"
    );
    let status = stop(&mut served).await;
    assert!(status.success(), "serve stopped with {status}");
    pump.abort();

    // The rollups (written behind, replayed on open) equal what the raw rows give, bucket by bucket.
    let store = sunshare::store::Store::open_sqlite(&db)
        .await
        .expect("open the store");
    let device = DeviceId::new("S1-INV1");
    let from = chrono::DateTime::from_timestamp(base - 3_600, 0).expect("from");
    let to = chrono::DateTime::from_timestamp(base + i64::from(MESSAGES) + 3_600, 0).expect("to");
    let raw = store
        .raw_samples(&device, from, to)
        .await
        .expect("raw rows");
    assert_eq!(raw.len(), MESSAGES as usize);
    assert_rollups_match_raw(&store, &device, &raw).await;
}
