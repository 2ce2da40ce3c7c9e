//! The service end to end over real HTTP: start on port 0, feed samples through the ingest door,
//! read them back from the JSON API, the fleet page and /metrics.

use chrono::{Duration, Utc};
use std::sync::Arc;
use sunshare::app;
use sunshare::config::Deployment;
use sunshare::domain::{DeviceState, Metric, Readings, Sample};
use tokio::net::TcpListener;

async fn start() -> (app::Running, tempfile::TempDir, Arc<Deployment>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = include_str!("../sunshare.example.toml");
    let deployment =
        Deployment::from_str_with_env("example", text, &[], &app::known_models()).expect("valid");
    let deployment = Arc::new(deployment);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = app::start(Arc::clone(&deployment), dir.path(), listener)
        .await
        .expect("start");
    (running, dir, deployment)
}

#[tokio::test]
async fn healthz_metrics_and_fleet_reflect_ingested_samples() {
    let (running, _dir, deployment) = start().await;
    let base = format!("http://{}", running.http_addr);
    let token = sunshare::store::testing::admin_token(&running.store)
        .await
        .expect("token");
    let client = sunshare::http::testing::client_with_token(&token);

    let health = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok\n");

    let device = &deployment.devices[0];
    let mut readings = Readings::default();
    readings.set(Metric::AcPowerW, 42_000.0);
    readings.set(Metric::EnergyLifetimeWh, 1_000_000.0);
    readings.state = Some(DeviceState::Producing);
    let now = Utc::now();
    running
        .ingest
        .submit(vec![
            Sample {
                device: device.id.clone(),
                at: now - Duration::seconds(60),
                readings: readings.clone(),
            },
            Sample {
                device: device.id.clone(),
                at: now,
                readings,
            },
        ])
        .await
        .expect("submit");

    // The worker writes asynchronously: poll the API until the samples are visible (bounded).
    let mut station = serde_json::Value::Null;
    for _ in 0..200 {
        let rows: serde_json::Value = client
            .get(format!("{base}/api/stations"))
            .send()
            .await
            .expect("stations")
            .json()
            .await
            .expect("json");
        station = rows
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|r| r["id"] == device.station.as_str())
                    .cloned()
            })
            .expect("station listed");
        if station["devices_reporting"] == 1 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(station["devices_reporting"], 1, "{station}");
    assert_eq!(station["power_kw"], 42.0, "{station}");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("sunshare_samples_ingested_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sunshare_store_write_seconds"),
        "{metrics}"
    );

    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    for s in &deployment.stations {
        assert!(page.contains(&s.name), "fleet page lists {}", s.name);
    }
    assert!(page.contains("42.0"), "current power shown");

    running.shutdown().await;
}

#[tokio::test]
async fn bad_samples_are_quarantined_and_counted_not_stored() {
    let (running, _dir, deployment) = start().await;
    let device = &deployment.devices[0];
    let mut readings = Readings::default();
    readings.set(Metric::AcPowerW, device.rated_power_w * 3.0);
    running
        .ingest
        .submit(vec![Sample {
            device: device.id.clone(),
            at: Utc::now(),
            readings,
        }])
        .await
        .expect("submit");
    let metrics = Arc::clone(&running.metrics);
    running.shutdown().await;
    // Shutdown drains the queue, so the verdict is final now.
    let text = metrics.render();
    assert!(
        text.contains("sunshare_samples_quarantined_total{reason=\"power_above_rated\"} 1"),
        "{text}"
    );
    assert!(text.contains("sunshare_samples_ingested_total 0"), "{text}");
}
