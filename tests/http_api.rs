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

/// The example fleet plus a second township and `extra` village stations of distinct sizes.
fn bigger_fleet(extra: usize) -> String {
    let mut text = include_str!("../sunshare.example.toml").to_owned();
    text.push_str(
        "\n[[townships]]\nid = \"140121-102\"\nname = \"西谷乡\"\ncounty = \"140121\"\n\n\
         [[villages]]\ncode = \"140121102201\"\nname = \"西谷村\"\ntownship = \"140121-102\"\n",
    );
    for i in 0..extra {
        let village = if i % 2 == 0 {
            "140121102201"
        } else {
            "140121101202"
        };
        text.push_str(&format!(
            "\n[[stations]]\nid = \"QX-EX-{i:02}\"\nname = \"扩建电站{i:02}\"\nkind = \"village\"\n\
             county = \"140121\"\ncapacity_kwp = {cap}\nlatitude = 37.6\nlongitude = 112.4\n\
             commissioned = 2019-06-30\ntariff = \"shanxi-zone3-2017\"\nvillage = \"{village}\"\n",
            cap = 100 + i
        ));
    }
    text
}

/// The `data-station` ids of the fleet table, in page order.
fn station_rows(html: &str) -> Vec<String> {
    html.split("<tr data-station=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn fleet_page_filters_sorts_and_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = bigger_fleet(24);
    let deployment = Arc::new(
        Deployment::from_str_with_env("bigger", &text, &[], &app::known_models())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = app::start(Arc::clone(&deployment), dir.path(), listener)
        .await
        .expect("start");
    let base = format!("http://{}", running.http_addr);
    let token = sunshare::store::testing::admin_token(&running.store)
        .await
        .expect("token");
    let client = sunshare::http::testing::client_with_token(&token);
    let get = |path: String| {
        let client = client.clone();
        async move {
            let r = client.get(path).send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        }
    };

    // 26 stations: 50 to a page by default, so one page; 10 to a page makes three.
    let (status, all) = get(format!("{base}/")).await;
    assert_eq!(status, 200);
    assert_eq!(station_rows(&all).len(), 26);
    assert!(!all.contains("id=\"pager\""), "one page needs no pager");
    let (_, first) = get(format!("{base}/?per=10&sort=capacity&dir=desc")).await;
    let rows = station_rows(&first);
    assert_eq!(rows.len(), 10);
    // The joint station (1200 kWp) and the village station (300 kWp) lead, then 123, 122, ... kWp.
    assert_eq!(&rows[..3], ["QX-LC-01", "QX-DY-01", "QX-EX-23"]);
    assert!(first.contains("第 1 页，共 3 页"), "{first}");
    assert!(first.contains("rel=\"next\""));
    let (_, third) = get(format!("{base}/?per=10&sort=capacity&dir=desc&page=3")).await;
    let rows3 = station_rows(&third);
    assert_eq!(rows3.len(), 6);
    assert_eq!(rows3.last().map(String::as_str), Some("QX-EX-00"));
    assert!(third.contains("rel=\"prev\"") && !third.contains("rel=\"next\""));
    // The next link keeps the filter and the order.
    assert!(
        first.contains("href=\"/?sort=capacity&amp;dir=desc&amp;page=2&amp;per=10\""),
        "{first}"
    );

    // Township, kind and search filters; totals follow the filter.
    let (_, west) = get(format!("{base}/?township=140121-102")).await;
    let west_rows = station_rows(&west);
    assert_eq!(west_rows.len(), 12, "{west_rows:?}");
    assert!(west_rows.iter().all(|id| id.starts_with("QX-EX-")));
    assert!(west.contains("id=\"producing\">0 / 12<"), "{west}");
    assert!(west.contains("显示 12 座电站（共 26 座）"), "{west}");
    let (_, joint) = get(format!("{base}/?kind=joint-village")).await;
    assert_eq!(station_rows(&joint), ["QX-LC-01"]);
    let (_, found) = get(format!("{base}/?q=%E6%89%A9%E5%BB%BA%E7%94%B5%E7%AB%9905")).await;
    assert_eq!(station_rows(&found), ["QX-EX-05"]);
    let (_, none) = get(format!("{base}/?status=producing")).await;
    assert!(station_rows(&none).is_empty());
    assert!(none.contains("没有符合条件的电站"), "{none}");

    // The JSON takes the same filter.
    let api: serde_json::Value = client
        .get(format!(
            "{base}/api/stations?township=140121-102&kind=village"
        ))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    assert_eq!(api.as_array().map(Vec::len), Some(12), "{api}");

    // The API pages as well: by name, with the total and the neighbouring pages in headers.
    let page = |n: usize| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let r = client
                .get(format!(
                    "{base}/api/stations?township=140121-102&kind=village&per=5&page={n}"
                ))
                .send()
                .await
                .expect("api");
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            let (total, link) = (header("x-total-count"), header("link"));
            let rows: serde_json::Value = r.json().await.expect("json");
            let ids: Vec<String> = rows
                .as_array()
                .expect("array")
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect();
            (ids, total, link)
        }
    };
    let (first, total, link) = page(1).await;
    assert_eq!((first.len(), total.as_str()), (5, "12"), "{first:?}");
    assert!(
        link.contains("page=2") && link.contains("rel=\"next\""),
        "{link}"
    );
    assert!(!link.contains("rel=\"prev\""), "{link}");
    let (last, _, link) = page(3).await;
    assert_eq!(last.len(), 2, "{last:?}");
    assert!(
        link.contains("page=2") && link.contains("rel=\"prev\""),
        "{link}"
    );
    assert!(!link.contains("rel=\"next\""), "{link}");
    let (middle, _, _) = page(2).await;
    let mut all: Vec<String> = [first, middle, last].concat();
    let listed = all.clone();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        12,
        "every station once over the pages: {listed:?}"
    );
    // The totals of the same filter, as the page's cards show them.
    let totals: serde_json::Value = client
        .get(format!(
            "{base}/api/fleet/totals?township=140121-102&kind=village"
        ))
        .send()
        .await
        .expect("totals")
        .json()
        .await
        .expect("json");
    assert_eq!(totals["stations"], 12, "{totals}");

    // A value that names nothing is a 400 naming the field, on the page and in the API (whose
    // pages hold 1 to 1,000 rows, the page's 10 to 500).
    for (query, field, api_too) in [
        ("kind=solar", "kind", true),
        ("township=nowhere", "township", true),
        ("status=asleep", "status", true),
        ("sort=price", "sort", true),
        ("per=5", "per", false),
        ("per=0", "per", true),
        ("page=0", "page", true),
    ] {
        let r = client
            .get(format!("{base}/api/stations?{query}"))
            .send()
            .await
            .expect("api");
        if api_too {
            assert_eq!(r.status(), 400, "{query}");
            let body = r.text().await.expect("body");
            assert!(body.contains(&format!("\"field\":\"{field}\"")), "{body}");
        } else {
            assert_eq!(r.status(), 200, "{query}");
        }
        let (status, body) = get(format!("{base}/?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(&format!("\"field\":\"{field}\"")), "{body}");
    }
    running.shutdown().await;
}
