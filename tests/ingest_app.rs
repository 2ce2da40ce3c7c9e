//! End to end through `app::start`: samples submitted to ingest land in the store (raw, rollups,
//! latest), bad ones in the quarantine API and /metrics, and, when VictoriaMetrics is available,
//! in the line-protocol server through the sink.

use chrono::{Duration as ChronoDuration, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use sunshare::config::Deployment;
use sunshare::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use sunshare::sinks::victoria::{self, Victoria};

fn deployment(influx_url: Option<&str>, spool: &std::path::Path) -> anyhow::Result<Deployment> {
    let mut text = String::from(
        r#"
[[counties]]
id = "c1"
name = "Pingshan"
province = "hebei"

[[townships]]
id = "t1"
name = "Xiakou"
county = "c1"

[[villages]]
code = "v1"
name = "Dongling"
township = "t1"

[[tariffs]]
id = "2017"
price = "0.75"
province = "hebei"

[[stations]]
id = "st1"
name = "Dongling village station"
kind = "village"
county = "c1"
capacity_kwp = 300
latitude = 38.25
longitude = 113.9
commissioned = "2017-06-30"
tariff = "2017"
village = "v1"

[[devices]]
id = "inv1"
station = "st1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "mqtt", logger = "dtu-test" }
rated_power_w = 100000
"#,
    );
    if let Some(url) = influx_url {
        text.push_str(&format!(
            "\n[influx]\nurl = \"{url}\"\norg = \"county\"\nbucket = \"pv\"\ntoken = \"secret\"\n\
             flush_interval = \"50ms\"\nspool_dir = \"{}\"\n",
            spool.display()
        ));
    }
    let models: HashSet<String> = sunshare::app::known_models();
    Deployment::from_str_with_env("test.toml", &text, &[], &models)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn sample(minutes_ago: i64, power: f64, lifetime: f64) -> Sample {
    let mut r = Readings::default();
    r.set(Metric::AcPowerW, power);
    r.set(Metric::EnergyLifetimeWh, lifetime);
    r.set(Metric::FrequencyHz, 50.0);
    r.state = Some(DeviceState::Producing);
    let at = Utc::now() - ChronoDuration::minutes(minutes_ago);
    Sample {
        device: DeviceId::new("inv1"),
        at: chrono::DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at),
        readings: r,
    }
}

#[tokio::test]
async fn samples_flow_to_store_quarantine_metrics_and_the_line_protocol_server(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let vm = match victoria::binary_for_test(
        "samples_flow_to_store_quarantine_metrics_and_the_line_protocol_server (sink part)",
    ) {
        Some(bin) => Some(Victoria::start(&bin, &dir.path().join("vm")).await?),
        None => None,
    };
    let d = deployment(
        vm.as_ref().map(|v| v.url()).as_deref(),
        &dir.path().join("spool"),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = sunshare::app::start(Arc::new(d), &dir.path().join("data"), listener).await?;
    let good: Vec<Sample> = (0..10)
        .map(|i| sample(20 - i, 40_000.0 + i as f64, 1e7 + 500.0 * i as f64))
        .collect();
    let mut bad = sample(5, 40_000.0, 1e7 + 4_500.0);
    bad.readings.set(Metric::FrequencyHz, 0.0);
    running.ingest.submit(good.clone()).await?;
    running.ingest.submit(vec![bad, good[3].clone()]).await?;

    let http = sunshare::http::testing::client_with_token(
        &sunshare::store::testing::admin_token(&running.store).await?,
    );
    let base = format!("http://{}", running.http_addr);
    let mut quarantined = Vec::new();
    for _ in 0..100 {
        quarantined = http
            .get(format!("{base}/api/quarantine?device=inv1"))
            .send()
            .await?
            .json::<Vec<serde_json::Value>>()
            .await?;
        if !quarantined.is_empty() && running.store.raw_count().await? == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0]["code"], "frequency_zero");
    assert_eq!(running.store.raw_count().await?, 10);
    let latest = running.store.latest().await?;
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].energy_lifetime_wh, Some(1e7 + 4_500.0));
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("sunshare_samples_quarantined_total{reason=\"frequency_zero\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sunshare_samples_duplicate_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sunshare_samples_ingested_total 10"),
        "{metrics}"
    );

    let store = running.store.clone();
    running.shutdown().await;
    drop(store);
    if let Some(v) = vm {
        // Shutdown delivered what was buffered within its deadline.
        let series = v
            .export("{__name__=\"pv_device_ac_power_w\",device=\"inv1\"}")
            .await?;
        let mut ts: Vec<i64> = series.iter().flat_map(|s| s.timestamps.clone()).collect();
        ts.sort_unstable();
        let want: Vec<i64> = good.iter().map(|s| s.at.timestamp_millis()).collect();
        assert_eq!(
            ts, want,
            "every stored sample exactly once, quarantined ones never"
        );
        assert_eq!(
            series[0].metric.get("village").map(String::as_str),
            Some("v1")
        );
        assert_eq!(
            series[0].metric.get("county").map(String::as_str),
            Some("c1")
        );
    }
    Ok(())
}

/// Polls `done` until it holds; the caller bounds it with `tokio::time::timeout`.
async fn until(done: impl Fn() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_service_shuts_down_promptly_while_its_store_is_down() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = deployment(None, &dir.path().join("spool"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = sunshare::app::start(Arc::new(d), &dir.path().join("data"), listener).await?;
    // The database goes away under the running service: every write fails from now on.
    running.store.close().await;
    running
        .ingest
        .submit(vec![sample(3, 40_000.0, 1e7)])
        .await?;
    let metrics = Arc::clone(&running.metrics);
    tokio::time::timeout(
        Duration::from_secs(10),
        until(|| metrics.store_write_retries.get() >= 2),
    )
    .await?;
    running
        .ingest
        .submit(vec![sample(2, 40_000.0, 1e7 + 100.0)])
        .await?;
    // What Ctrl-C or SIGTERM does: cancel everything and wait for every task.
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .map_err(|_| anyhow::anyhow!("the service did not stop within 10 s of the cancel"))?;
    assert_eq!(metrics.samples_not_written.get(), 2);
    assert_eq!(metrics.samples_ingested.get(), 0);
    Ok(())
}
