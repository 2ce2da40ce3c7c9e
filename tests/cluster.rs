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
capacity_kwp = 480
latitude = 37.87
longitude = 112.55
commissioned = "2018-06-30"
tariff = "TF"
"#,
        lease = LEASE.as_secs(),
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
