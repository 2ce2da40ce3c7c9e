//! Two `sunshare serve` processes on one PostgreSQL database share the Modbus gateways of a
//! separate simulator (`sunshare simulate`) by leases: one alone holds them all, a second one
//! takes half at the next renewal, no device is polled by both (no two readings of a device
//! closer than its interval), and when one is killed outright (SIGKILL) the other polls its
//! gateways within the lease and a third of it. One instance at a time holds the singleton jobs'
//! lease (alert evaluation and notification, retention, energy recomputation), and the survivor
//! takes it within the same bound. Stopped politely, an instance gives its leases back at once. Service: PostgreSQL (`SUNSHARE_TEST_PG_URL`; the test says it skipped without it).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::binary::{simulate, stop, BIN, PATIENCE};
use support::{free_port, Served};

const GATEWAYS: usize = 4;
const UNITS: usize = 2;
const LEASE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_secs(1);

fn deployment(url: &str, gateways: &[String]) -> String {
    let mut text = format!(
        r#"
[storage]
backend = "postgres"
url = "{url}"

[cluster]
lease = "{lease}s"

[collect]
poll_interval = "{poll}s"
modbus_connect_delay = "0s"
modbus_request_gap = "0s"

{station}"#,
        lease = LEASE.as_secs(),
        station = support::binary::ONE_STATION,
        poll = POLL.as_secs(),
    );
    for (g, address) in gateways.iter().enumerate() {
        for u in 1..=UNITS {
            text.push_str(&format!(
                r#"
[[devices]]
id = "G{g}-U{u}"
station = "S1"
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

fn serve(config: &Path, instance: &str, log: &Path) -> Served {
    Served(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("SUNSHARE_CLUSTER__INSTANCE", instance)
            .env(
                "SUNSHARE_HTTP__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("SUNSHARE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start sunshare serve"),
    )
}

/// Who holds the singleton jobs' lease now.
async fn leader(store: &sunshare::store::Store) -> Vec<String> {
    store
        .lease_holders(sunshare::store::JOBS_LEASE)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(_, holder, _)| holder)
        .collect()
}

/// Gateways held by each instance now.
async fn holders(store: &sunshare::store::Store) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, holder, _) in store.lease_holders("modbus:").await.unwrap_or_default() {
        *out.entry(holder).or_default() += 1;
    }
    out
}

async fn until<F, Fut>(what: &str, logs: &[&Path], mut check: F) -> Instant
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check().await {
            return Instant::now();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .collect();
            panic!("gave up waiting for {what}:\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each device's readings stored since `from_ms`, in order.
async fn readings_since(url: &str, from_ms: i64) -> BTreeMap<String, Vec<i64>> {
    let pool = sqlx::PgPool::connect(url).await.expect("pool");
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT device_id, ts_ms FROM raw_samples WHERE ts_ms >= $1 ORDER BY device_id, ts_ms",
    )
    .bind(from_ms)
    .fetch_all(&pool)
    .await
    .expect("raw rows");
    pool.close().await;
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (device, ts) in rows {
        out.entry(device).or_default().push(ts);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_gateways_poll_each_once_and_take_over_a_killed_ones() {
    let Some(url) = sunshare::store::testing::postgres_database("two_instances_share_the_gateways")
        .await
        .expect("database")
    else {
        return;
    };
    let (_simulator, gateways) = simulate(GATEWAYS, UNITS).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, deployment(&url, &gateways)).expect("write the deployment file");
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let logs = [log_a.as_path(), log_b.as_path()];

    let mut a = serve(&config, "a", &log_a);
    let store = {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Opened once `a` made the schema.
            if let Ok(s) = sunshare::store::Store::open_postgres(&url, 2).await {
                break s;
            }
            assert!(Instant::now() < deadline, "the database never opened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    until("a holding every gateway", &logs, || async {
        holders(&store).await.get("a") == Some(&GATEWAYS)
    })
    .await;

    // A second instance: each holds its share, and no device is polled by both.
    let mut b = serve(&config, "b", &log_b);
    let split = until("the gateways shared two and two", &logs, || async {
        let h = holders(&store).await;
        h.get("a") == Some(&(GATEWAYS / 2)) && h.get("b") == Some(&(GATEWAYS / 2))
    })
    .await;
    let split_ms = chrono::Utc::now().timestamp_millis();
    // One of the two runs the singleton jobs (alerts, retention, energy): the first one.
    assert_eq!(leader(&store).await, ["a"]);
    let window = split + POLL * 6;
    tokio::time::sleep_until(window.into()).await;
    let seen = readings_since(&url, split_ms).await;
    assert_eq!(
        seen.len(),
        GATEWAYS * UNITS,
        "every device polled: {seen:?}"
    );
    for (device, times) in &seen {
        let closest = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .min()
            .unwrap_or(i64::MAX);
        assert!(
            closest >= 700,
            "{device} polled twice within {closest} ms (by both instances?): {times:?}"
        );
    }

    // `a` killed outright: `b` takes its gateways within the lease and a renewal.
    a.0.kill().expect("SIGKILL");
    a.0.wait().expect("reaped");
    let killed = Instant::now();
    let killed_ms = chrono::Utc::now().timestamp_millis();
    let taken = until("b holding every gateway", &logs, || async {
        holders(&store).await.get("b") == Some(&GATEWAYS)
    })
    .await;
    let takeover = taken - killed;
    let led = until("b leading the jobs", &logs, || async {
        leader(&store).await == ["b"]
    })
    .await;
    let bound = LEASE + LEASE / 3 + Duration::from_secs(1);
    assert!(
        takeover <= bound,
        "b took a's gateways {takeover:?} after the kill; the bound is {bound:?}"
    );
    assert!(
        led - killed <= bound,
        "b took the jobs {:?} after the kill; the bound is {bound:?}",
        led - killed
    );
    let resumed = until(
        "every device polled again after the kill",
        &logs,
        || async { readings_since(&url, killed_ms).await.len() == GATEWAYS * UNITS },
    )
    .await;
    println!(
        "two instances: shared {} and {} after the second started; a killed: b held its \
         gateways after {:.1} s and the jobs after {:.1} s, every device polled again after \
         {:.1} s (lease {} s)",
        GATEWAYS / 2,
        GATEWAYS / 2,
        takeover.as_secs_f64(),
        (led - killed).as_secs_f64(),
        (resumed - killed).as_secs_f64(),
        LEASE.as_secs()
    );
    // Stopped politely, `b` gives its leases back at once: nobody holds a gateway or the jobs.
    let status = stop(&mut b).await;
    assert!(status.success(), "b stopped with {status}");
    assert!(
        holders(&store).await.is_empty(),
        "leases left after a polite stop: {:?}",
        holders(&store).await
    );
    assert!(leader(&store).await.is_empty());
    store.close().await;
}

/// Messages an instance's MQTT collector accepted, from its `/metrics`.
async fn accepted(http: u16, token: &str) -> f64 {
    let Ok(r) = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{http}/metrics"))
        .bearer_auth(token)
        .send()
        .await
    else {
        return 0.0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("sunshare_mqtt_messages_total{outcome=\"accepted\",reason=\"ok\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Two instances subscribed to a logger's topics as one shared group (`mqtt.shared_group`) split
/// its QoS 1 stream between them; one killed outright mid-stream and started again on its session
/// gets what the broker kept for it, and every reading is stored exactly once. Services:
/// PostgreSQL and Mosquitto (`SUNSHARE_TEST_MQTT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_a_loggers_stream_and_a_killed_one_loses_nothing() {
    use rumqttc::{AsyncClient, MqttOptions};
    let Ok(broker) = std::env::var("SUNSHARE_TEST_MQTT") else {
        sunshare::store::testing::announce_skip(
            "SKIPPED (Mosquitto) two_instances_split_a_loggers_stream: set SUNSHARE_TEST_MQTT=127.0.0.1:1883 to run it",
        );
        return;
    };
    let Some(url) =
        sunshare::store::testing::postgres_database("two_instances_split_a_loggers_stream")
            .await
            .expect("database")
    else {
        return;
    };
    const MESSAGES: u32 = 600;
    let run = support::binary::run_name("shared");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("shared.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
backend = "postgres"
url = "{url}"

[mqtt]
broker = "{broker}"
client_id = "unused"
topic_prefix = "{run}"
shared_group = "{run}"
reconnect_min = "50ms"
reconnect_max = "500ms"
keep_alive = "5s"

[[mqtt.loggers]]
id = "L1"
station = "S1"
template = "json_generic"
{}
[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = {{ type = "mqtt", logger = "L1", unit = 1 }}
rated_power_w = 50000
"#,
            support::binary::ONE_STATION
        ),
    )
    .expect("write the deployment file");
    // The schema first (the CLI opens the store), then an administrator's token for /metrics.
    let token = support::binary::admin_token(&config);
    let ports = (free_port(), free_port());
    let start = |name: &str, http: u16, log: &Path| {
        Served(
            Command::new(BIN)
                .args(["serve", "--config"])
                .arg(&config)
                .env("SUNSHARE_MQTT__CLIENT_ID", format!("{run}-{name}"))
                .env("SUNSHARE_CLUSTER__INSTANCE", name)
                .env("SUNSHARE_HTTP__LISTEN", format!("127.0.0.1:{http}"))
                .env("SUNSHARE_LOG", "info,sunshare::collect::mqtt=debug")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).expect("log file"))
                .spawn()
                .expect("start sunshare serve"),
        )
    };
    let subscribed = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("subscribed")
            .count()
    };
    let (log_a, log_b, log_a2) = (
        dir.path().join("a.log"),
        dir.path().join("b.log"),
        dir.path().join("a2.log"),
    );
    let logs = [log_a.as_path(), log_b.as_path(), log_a2.as_path()];
    let mut a = start("a", ports.0, &log_a);
    let mut b = start("b", ports.1, &log_b);
    until("both subscribed", &logs, || async {
        subscribed(&log_a) >= 1 && subscribed(&log_b) >= 1
    })
    .await;

    let (host, port) = broker.rsplit_once(':').expect("host:port");
    let mut o = MqttOptions::new(format!("{run}-logger"), host, port.parse().expect("port"));
    o.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(o, 2_000);
    let pump = tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let topic = format!("{run}/sunshare/S1/L1/telemetry");
    let base = chrono::Utc::now().timestamp() - i64::from(MESSAGES) - 60;
    let store = sunshare::store::Store::open_postgres(&url, 2)
        .await
        .expect("open the store");
    let stored = || async {
        let pool = sqlx::PgPool::connect(&url).await.expect("pool");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM raw_samples")
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    };
    let publisher =
        support::binary::publish_stream(client.clone(), topic.clone(), base, MESSAGES, 5);

    // Both take a part; then `a` is killed with no warning while the stream goes on.
    until("both instances taking messages", &logs, || async {
        accepted(ports.0, &token).await >= 20.0 && accepted(ports.1, &token).await >= 20.0
    })
    .await;
    let (a_before, b_before) = (
        accepted(ports.0, &token).await,
        accepted(ports.1, &token).await,
    );
    a.0.kill().expect("SIGKILL");
    a.0.wait().expect("reaped");
    publisher.await.expect("the logger published everything");

    // `a` again, on its session: what the broker kept for it arrives; every reading once.
    let _a2 = start("a", ports.0, &log_a2);
    until("every reading stored", &logs, || async {
        stored().await >= i64::from(MESSAGES)
    })
    .await;
    assert_eq!(stored().await, i64::from(MESSAGES), "each reading once");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT device_id, ts_ms FROM raw_samples GROUP BY device_id, ts_ms HAVING COUNT(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .expect("duplicates");
    assert_eq!(duplicates, 0);
    pool.close().await;
    let b_after = accepted(ports.1, &token).await;
    println!(
        "shared group: a took {a_before} and b {b_before} messages before a was killed; b took {} \
         more; all {MESSAGES} stored once",
        b_after - b_before
    );
    assert!(a_before > 0.0 && b_before > 0.0, "the stream was split");
    pump.abort();
    let _ = stop(&mut b).await;
    store.close().await;
}
