//! `sunshare demo` end to end, as a new user meets it: simulated gateways on loopback, live polling,
//! history written through ingest, the grid settlement imported and reconciled, pages served.

use std::sync::atomic::Ordering;
use std::time::Duration;
use sunshare::app::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_collects_backfills_settles_and_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = app::start_demo(DemoOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: Some(dir.path().to_path_buf()),
        history_days: 75,
        token_file: Some(dir.path().join("admin.token")),
    })
    .await
    .expect("demo starts");
    assert_eq!(demo.stations, 5);
    assert!(demo.devices >= 20);
    assert!(demo.gateways.len() >= 5);
    let base = format!("http://{}", demo.running.http_addr);
    // Every demo role can sign in; the administrator's API token reads every page.
    assert!(demo.accounts.iter().any(|a| a.username == "admin"));
    assert!(demo
        .accounts
        .iter()
        .any(|a| a.role == sunshare::domain::Role::Accountant));
    let token = std::fs::read_to_string(dir.path().join("admin.token")).expect("token file");
    let anonymous = reqwest::Client::new();
    let refused = anonymous
        .get(format!("{base}/api/stations"))
        .send()
        .await
        .expect("anonymous request");
    assert_eq!(refused.status(), 401, "the API needs a credential");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .expect("client");

    // The page answers at once, while history is still being written.
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("fleet page");
    assert_eq!(page.status(), 200);

    // Wait (bounded) for the history and the settlement.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !demo.backfill.settled.load(Ordering::Relaxed) {
        assert!(
            std::time::Instant::now() < deadline,
            "history not written within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(demo.backfill.samples.load(Ordering::Relaxed) > 10_000);
    assert!(
        dir.path().join("settlement-demo.csv").exists(),
        "the statement is kept for users"
    );

    let stations: serde_json::Value = client
        .get(format!("{base}/api/stations"))
        .send()
        .await
        .expect("stations")
        .json()
        .await
        .expect("json");
    let stations = stations.as_array().expect("array");
    assert_eq!(stations.len(), 5);
    for s in stations {
        assert!(s["devices_reporting"].as_i64().unwrap_or(0) > 0, "{s}");
    }

    // Every station has settled months; one is flagged by reconciliation with a reason.
    let mut flagged = 0;
    for s in stations {
        let id = s["id"].as_str().expect("id");
        let months = client
            .get(format!("{base}/api/stations/{id}/months"))
            .send()
            .await
            .expect("months");
        assert_eq!(months.status(), 200, "{id}");
        let text = months.text().await.expect("body");
        assert!(text.contains("settled"), "{id}: {text}");
        if text.contains("\"flagged\":true") {
            flagged += 1;
        }
        let page = client
            .get(format!("{base}/stations/{id}"))
            .send()
            .await
            .expect("station page");
        assert_eq!(page.status(), 200, "{id}");
    }
    assert_eq!(
        flagged, 1,
        "exactly one station's settlement disagrees with its meter"
    );

    for path in ["/alerts", "/villages", "/mqtt", "/metrics", "/healthz"] {
        let r = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect(path);
        assert_eq!(r.status(), 200, "{path}");
    }
    demo.shutdown().await;
}
