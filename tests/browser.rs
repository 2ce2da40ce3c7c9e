//! The fleet page in a real browser: headless Chromium loads it from the service on port 0, runs its
//! script (which polls the JSON API and updates the cells in place) and hands back the live DOM.
//!
//! Runs when `SUNSHARE_TEST_CHROMIUM` names a Chromium binary (CI sets it); otherwise says it skipped.

use chrono::Utc;
use std::process::Command;
use std::sync::Arc;
use sunshare::app;
use sunshare::config::Deployment;
use sunshare::domain::{DeviceState, Metric, Readings, Sample};
use tokio::net::TcpListener;

fn chromium() -> Option<String> {
    match std::env::var("SUNSHARE_TEST_CHROMIUM") {
        Ok(path) => Some(path),
        Err(_) => {
            sunshare::store::testing::announce_skip("SKIPPED (Chromium) fleet page browser test: set SUNSHARE_TEST_CHROMIUM=/usr/bin/chromium to run it");
            None
        }
    }
}

/// Loads `url` headless with enough virtual time for the page's 15 s refresh to fire once.
fn dump_dom(chromium: &str, url: &str, profile: &std::path::Path) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_page_renders_and_refreshes_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let deployment = Arc::new(
        Deployment::from_str_with_env(
            "example",
            include_str!("../sunshare.example.toml"),
            &[],
            &app::known_models(),
        )
        .expect("valid"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = app::start(Arc::clone(&deployment), dir.path(), listener)
        .await
        .expect("start");
    let device = &deployment.devices[0];
    let mut readings = Readings::default();
    readings.set(Metric::AcPowerW, 87_500.0);
    readings.state = Some(DeviceState::Producing);
    running
        .ingest
        .submit(vec![Sample {
            device: device.id.clone(),
            at: Utc::now(),
            readings,
        }])
        .await
        .expect("submit");

    let url = format!("http://{}/", running.http_addr);
    let profile = dir.path().join("chromium-profile");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&chromium, &url, &profile))
        .await
        .expect("join");

    for s in &deployment.stations {
        assert!(dom.contains(&s.name), "station {} in the DOM", s.name);
    }
    assert!(
        dom.contains("data-refreshed=\""),
        "the page's live refresh ran against /api/stations"
    );
    assert!(
        dom.contains("87.5 kW"),
        "fleet total power updated by the script: {dom}"
    );
    running.shutdown().await;
}
