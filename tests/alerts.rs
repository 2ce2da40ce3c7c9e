//! The alert engine end to end on the store: a scripted demo-like outage (a gateway that stops
//! answering at noon), the night before it, the webhook it sends, the API and the pages.

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use sunshare::alerts::notify::{self, Dispatcher};
use sunshare::alerts::Engine;
use sunshare::config::Deployment;
use sunshare::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use sunshare::http::AppState;
use sunshare::metrics::Metrics;
use sunshare::store::{testing, Store};
use tokio_util::sync::CancellationToken;

const DEPLOYMENT: &str = r#"
[alerts]
interval = "15s"
offline_after = "3m"
clear_after = "1m"

[[counties]]
id = "C1"
name = "清徐县"
province = "shanxi"

[[townships]]
id = "T1"
name = "东于镇"
county = "C1"

[[villages]]
code = "V1"
name = "东于村"
township = "T1"

[[tariffs]]
id = "t"
price = 0.85
province = "shanxi"

[[stations]]
id = "S1"
name = "东于村一号电站"
kind = "village"
county = "C1"
capacity_kwp = 100
latitude = 37.6
longitude = 112.4
commissioned = "2017-06-30"
tariff = "t"
village = "V1"

[[stations]]
id = "S2"
name = "东于村二号电站"
kind = "village"
county = "C1"
capacity_kwp = 100
latitude = 37.6
longitude = 112.4
commissioned = "2017-06-30"
tariff = "t"
village = "V1"

[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "modbus_tcp", address = "127.0.0.2:502", unit = 1 }
rated_power_w = 50000

[[devices]]
id = "S1-INV2"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "modbus_tcp", address = "127.0.0.2:502", unit = 2 }
rated_power_w = 50000

[[devices]]
id = "S2-INV1"
station = "S2"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "modbus_tcp", address = "127.0.0.3:502", unit = 1 }
rated_power_w = 50000
"#;

fn deployment(webhook: Option<&str>) -> Arc<Deployment> {
    deployment_with(webhook, "")
}

fn deployment_with(webhook: Option<&str>, notify_extra: &str) -> Arc<Deployment> {
    let mut text = DEPLOYMENT.to_owned();
    if let Some(url) = webhook {
        text = text.replacen(
            "clear_after = \"1m\"\n",
            &format!(
                "clear_after = \"1m\"\n\n[alerts.notify]\nbackoff_initial = \"10ms\"\n{notify_extra}\n\
                 [[alerts.notify.webhooks]]\nname = \"ops\"\nurl = \"{url}\"\n"
            ),
            1,
        );
    }
    let models: HashSet<String> = sunshare::app::known_models();
    Arc::new(
        Deployment::from_str_with_env("test.toml", &text, &[], &models).expect("valid deployment"),
    )
}

/// Beijing time to UTC.
fn bj(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 6, d, h, m, 0)
        .single()
        .expect("valid")
        .with_timezone(&Utc)
}

/// A sample as a sleeping or producing inverter reports it at `at`.
fn sample(device: &str, at: DateTime<Utc>) -> Sample {
    let elev = sunshare::solar::position(37.6, 112.4, at).elevation_deg;
    let mut r = Readings::default();
    let power = if elev > 0.0 {
        (40_000.0 * elev.to_radians().sin()).round()
    } else {
        0.0
    };
    r.set(Metric::AcPowerW, power);
    r.set(Metric::EnergyLifetimeWh, (at.timestamp() / 10) as f64);
    r.state = Some(if power > 0.0 {
        DeviceState::Producing
    } else {
        DeviceState::StandbyNight
    });
    Sample {
        device: DeviceId::new(device),
        at,
        readings: r,
    }
}

/// Devices that answer at `at` (S2's gateway is down from 12:00 to 12:10 on June 2).
fn answering(at: DateTime<Utc>) -> Vec<&'static str> {
    let elev = sunshare::solar::position(37.6, 112.4, at).elevation_deg;
    if elev <= 0.0 {
        // Like the simulator's Solis family: silent at night.
        return vec![];
    }
    let mut v = vec!["S1-INV1", "S1-INV2"];
    if !(at >= bj(2, 12, 0) && at < bj(2, 12, 10)) {
        v.push("S2-INV1");
    }
    v
}

async fn write(store: &Store, at: DateTime<Utc>) {
    let batch: Vec<Sample> = answering(at).into_iter().map(|d| sample(d, at)).collect();
    if !batch.is_empty() {
        store
            .write_samples(&batch, &|_| chrono_tz::Asia::Shanghai)
            .await
            .expect("write");
    }
}

/// Received webhook bodies.
type Got = Arc<Mutex<Vec<serde_json::Value>>>;

async fn webhook_receiver() -> (Got, String) {
    let got: Got = Arc::default();
    let g = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let g = Arc::clone(&g);
            async move {
                g.lock().expect("lock").push(body.0);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (got, url)
}

/// The shared state for the router.
fn app_state(d: Arc<Deployment>, store: Store, metrics: Arc<Metrics>) -> AppState {
    AppState::new(d, store, metrics)
}

async fn serve(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(sunshare::http::serve(
        listener,
        state,
        CancellationToken::new(),
    ));
    base
}

#[tokio::test]
async fn a_noon_outage_is_raised_notified_acknowledged_and_resolved_and_the_night_is_quiet() {
    for ts in testing::all("alerts_end_to_end").await.expect("stores") {
        let (got, url) = webhook_receiver().await;
        let d = deployment(Some(&url));
        let store = ts.store.clone();
        let metrics = Arc::new(Metrics::new());
        let dispatcher =
            Dispatcher::new(&d.alerts.notify, Some(store.clone()), Arc::clone(&metrics))
                .expect("dispatcher");
        let (handle, worker) = notify::channel(dispatcher, 16, Arc::clone(&metrics));
        let cancel = CancellationToken::new();
        let worker = tokio::spawn(worker.run(cancel.clone()));
        let mut engine = Engine::new(
            Arc::clone(&d),
            store.clone(),
            Arc::clone(&metrics),
            Some(handle),
        );

        // From the evening of June 1 to the morning of June 2 every 30 s, ticking every minute:
        // the inverters fall silent at sunset and wake at sunrise, and nothing is raised.
        let mut t = bj(1, 17, 0);
        while t < bj(2, 11, 0) {
            write(&store, t).await;
            if t.timestamp() % 60 == 0 {
                let events = engine.tick(t).await.expect("tick");
                assert!(events.is_empty(), "{} at {t}: {events:?}", ts.name);
            }
            t += Duration::seconds(30);
        }
        assert_eq!(metrics.alerts_open.get(), 0);

        // Noon on June 2: S2's gateway stops answering at 12:00 (last sample 11:59:30).
        let mut opened_at = None;
        let mut t = bj(2, 11, 0);
        while t < bj(2, 12, 10) {
            write(&store, t).await;
            if t.timestamp() % 60 == 0 {
                for n in engine.tick(t).await.expect("tick") {
                    assert_eq!(n.event.key.kind.as_str(), "offline", "{}", ts.name);
                    assert_eq!(n.event.key.station.as_str(), "S2");
                    assert_eq!(n.station_name, "东于村二号电站");
                    opened_at = Some(t);
                }
            }
            t += Duration::seconds(30);
        }
        // More than 3 minutes of silence first holds at the 12:03 tick (3.5 min).
        assert_eq!(opened_at, Some(bj(2, 12, 3)), "{}", ts.name);
        assert_eq!(metrics.alerts_open.get(), 1);

        // The webhook receives one message for it.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.lock().expect("lock").is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no webhook within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let first = got.lock().expect("lock")[0].clone();
        assert_eq!(first["type"], "alert");
        assert_eq!(first["alert"]["kind"], "offline");
        assert_eq!(first["alert"]["station"], "S2");
        assert_eq!(first["alert"]["subject"], "127.0.0.3:502");
        assert_eq!(first["alert"]["since"], "2026-06-02T04:03:00Z");

        // API and pages.
        let state = app_state(Arc::clone(&d), store.clone(), Arc::clone(&metrics));
        let operator = sunshare::http::testing::caller(
            sunshare::domain::Role::Operator,
            vec![sunshare::domain::ScopeEntry::All],
        );
        let boxed = sunshare::http::alerts::open_alerts_box(&state, &operator)
            .await
            .into_string();
        assert!(boxed.contains("未解决告警（1）"), "{boxed}");
        assert!(
            boxed.contains("东于村二号电站") && boxed.contains("127.0.0.3:502"),
            "{boxed}"
        );
        let base = serve(state).await;
        let token = testing::api_token(
            &store,
            sunshare::domain::Role::Operator,
            vec![sunshare::domain::ScopeEntry::All],
        )
        .await
        .expect("token");
        let http = sunshare::http::testing::client_with_token(&token);
        let open: serde_json::Value = http
            .get(format!("{base}/api/alerts?state=open"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let list = open.as_array().expect("array");
        assert_eq!(list.len(), 1);
        let id = list[0]["id"].as_i64().expect("id");
        assert_eq!(list[0]["severity"], "critical");
        assert_eq!(list[0]["state"], "open");
        let bad = http
            .get(format!("{base}/api/alerts?state=closed"))
            .send()
            .await
            .expect("get");
        assert_eq!(bad.status(), 400);

        let long = http
            .post(format!("{base}/api/alerts/{id}/ack"))
            .json(&serde_json::json!({"who": "王工", "note": "x".repeat(1001)}))
            .send()
            .await
            .expect("post");
        assert_eq!(long.status(), 400);
        let long: serde_json::Value = long.json().await.expect("json");
        assert_eq!(long["field"], "note");
        let missing = http
            .post(format!("{base}/api/alerts/999999/ack"))
            .json(&serde_json::json!({"who": "王工"}))
            .send()
            .await
            .expect("post");
        assert_eq!(missing.status(), 404);
        let acked: serde_json::Value = http
            .post(format!("{base}/api/alerts/{id}/ack"))
            .json(&serde_json::json!({"who": "王工", "note": "已派人去现场"}))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        assert_eq!(acked["state"], "acknowledged");
        let by = acked["acknowledged"]["by"].as_str().expect("by");
        assert!(
            by.starts_with("王工 (via t"),
            "the person and the account: {by}"
        );
        // The page's form works too (and redirects back to the page).
        let form = http
            .post(format!("{base}/api/alerts/{id}/ack"))
            .form(&[("who", "李工"), ("note", "到达现场")])
            .send()
            .await
            .expect("post");
        assert_eq!(form.status(), 303);
        let page = http
            .get(format!("{base}/alerts"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(
            page.contains("已由 李工 (via t") && page.contains("-operator) 确认"),
            "{page}"
        );
        assert!(page.contains("东于村二号电站"));

        // The gateway answers again at 12:10; one minute clear resolves the alert.
        let mut resolved_at = None;
        let mut t = bj(2, 12, 10);
        while t < bj(2, 12, 20) {
            write(&store, t).await;
            if t.timestamp() % 60 == 0 {
                for n in engine.tick(t).await.expect("tick") {
                    assert_eq!(n.event.kind, sunshare::alerts::EventKind::Resolved);
                    resolved_at = Some(t);
                }
            }
            t += Duration::seconds(30);
        }
        assert_eq!(resolved_at, Some(bj(2, 12, 11)), "{}", ts.name);
        assert_eq!(metrics.alerts_open.get(), 0);
        let late = http
            .post(format!("{base}/api/alerts/{id}/ack"))
            .json(&serde_json::json!({"who": "王工"}))
            .send()
            .await
            .expect("post");
        assert_eq!(late.status(), 409);

        let history = store.alert_history(10).await.expect("history");
        let events: Vec<&str> = history.iter().rev().map(|h| h.event.as_str()).collect();
        assert_eq!(
            events,
            ["opened", "acknowledged", "acknowledged", "resolved"]
        );
        let page = http
            .get(format!("{base}/alerts"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(page.contains("没有未解决的告警"), "{page}");
        assert!(page.contains("data-event=\"resolved\"") && page.contains("已派人去现场"));

        // The webhook saw the resolution too.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.lock().expect("lock").len() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no resolution webhook within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(got.lock().expect("lock")[1]["alert"]["event"], "resolved");

        // A restarted engine adopts nothing (all resolved) and opens nothing new.
        let mut again = Engine::new(Arc::clone(&d), store.clone(), Arc::clone(&metrics), None);
        assert!(again.tick(bj(2, 12, 21)).await.expect("tick").is_empty());
        cancel.cancel();
        worker.await.expect("worker");
    }
}

#[tokio::test]
async fn a_restarted_engine_keeps_an_open_alert_instead_of_opening_it_again() {
    for ts in testing::all("alerts_restart").await.expect("stores") {
        let d = deployment(None);
        let store = ts.store.clone();
        let metrics = Arc::new(Metrics::new());
        let mut engine = Engine::new(Arc::clone(&d), store.clone(), Arc::clone(&metrics), None);
        write(&store, bj(2, 11, 50)).await;
        assert!(engine.tick(bj(2, 11, 50)).await.expect("tick").is_empty());
        // Both gateways fall silent; alerts open at 11:54.
        let opened = engine.tick(bj(2, 11, 54)).await.expect("tick");
        assert_eq!(opened.len(), 2, "{}: {opened:?}", ts.name);
        drop(engine);
        let mut engine = Engine::new(Arc::clone(&d), store.clone(), Arc::clone(&metrics), None);
        assert!(engine.tick(bj(2, 11, 55)).await.expect("tick").is_empty());
        assert_eq!(store.count_unresolved_alerts().await.expect("count"), 2);
        assert_eq!(metrics.alerts_open.get(), 2);
    }
}

#[tokio::test]
async fn a_grid_outage_across_the_county_sends_one_summary() {
    let ts = testing::sqlite().await.expect("store");
    let (got, url) = webhook_receiver().await;
    // Two stations in this county: fold anything above one event into a summary.
    let d = deployment_with(Some(&url), "summary_threshold = 1\n");
    let store = ts.store.clone();
    let metrics = Arc::new(Metrics::new());
    let dispatcher = Dispatcher::new(&d.alerts.notify, Some(store.clone()), Arc::clone(&metrics))
        .expect("dispatcher");
    let (handle, worker) = notify::channel(dispatcher, 16, Arc::clone(&metrics));
    let cancel = CancellationToken::new();
    let worker = tokio::spawn(worker.run(cancel.clone()));
    let mut engine = Engine::new(
        Arc::clone(&d),
        store.clone(),
        Arc::clone(&metrics),
        Some(handle),
    );
    let mut t = bj(2, 9, 0);
    while t < bj(2, 10, 30) {
        let grid_down = t >= bj(2, 10, 0);
        let batch: Vec<Sample> = ["S1-INV1", "S1-INV2", "S2-INV1"]
            .into_iter()
            .map(|dev| {
                let mut s = sample(dev, t);
                if grid_down {
                    s.readings.set(Metric::AcPowerW, 0.0);
                    s.readings.state = Some(DeviceState::Fault);
                    s.readings.alarms.push(sunshare::domain::Alarm {
                        code: "huawei.alarm1.b3".into(),
                        text_en: "Grid power outage".into(),
                        text_zh: "电网掉电".into(),
                        grid_loss: true,
                    });
                }
                s
            })
            .collect();
        store
            .write_samples(&batch, &|_| chrono_tz::Asia::Shanghai)
            .await
            .expect("write");
        if t.timestamp() % 60 == 0 {
            engine.tick(t).await.expect("tick");
        }
        t += Duration::seconds(30);
    }
    assert_eq!(metrics.alerts_open.get(), 2);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no webhook within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Give a stray second message the chance to arrive before counting.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let got = got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "summary");
    assert_eq!(got[0]["opened"], 2);
    assert_eq!(got[0]["by_kind"], serde_json::json!({"grid_outage": 2}));
    assert_eq!(got[0]["by_county"], serde_json::json!({"C1": 2}));
    cancel.cancel();
    worker.await.expect("worker");
}

#[test]
fn check_config_names_bad_alert_settings_with_their_lines() {
    let text = DEPLOYMENT.replacen(
        "clear_after = \"1m\"\n",
        "clear_after = \"1m\"\n\n[alerts.underperforming]\nshare = 1.5\n\n\
         [[alerts.maintenance]]\nstation = \"S9\"\nfrom = \"2026-06-01T01:00:00Z\"\nto = \"2026-06-01T00:00:00Z\"\n",
        1,
    );
    let models: HashSet<String> = sunshare::app::known_models();
    let err = Deployment::from_str_with_env("fleet.toml", &text, &[], &models)
        .expect_err("bad alert settings");
    let shown = err.to_string();
    assert!(
        shown.contains("alerts.underperforming.share: share 1.5 is not between 0 and 1"),
        "{shown}"
    );
    assert!(
        shown.contains("alerts.maintenance[0].station: station 'S9' is not declared"),
        "{shown}"
    );
    assert!(
        shown.contains("alerts.maintenance[0].to: the window ends"),
        "{shown}"
    );
    let station = err
        .problems
        .iter()
        .find(|p| p.key == "alerts.maintenance[0].station")
        .expect("problem");
    let line = text
        .lines()
        .position(|l| l == "station = \"S9\"")
        .map(|i| i + 1);
    assert_eq!(station.line, line, "{shown}");
    // An unknown key in the section is refused at parse time.
    let typo = DEPLOYMENT.replacen("offline_after", "offline_afer", 1);
    let err = Deployment::from_str_with_env("fleet.toml", &typo, &[], &models).expect_err("typo");
    assert!(err.to_string().contains("offline_afer"), "{err}");
}

#[tokio::test]
async fn the_service_starts_the_engine_serves_the_page_and_stops_cleanly() {
    let dir = std::env::temp_dir().join(format!("sunshare-alerts-app-{}", std::process::id()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = sunshare::app::start(deployment(None), &dir, listener)
        .await
        .expect("start");
    let base = format!("http://{}", running.http_addr);
    let anonymous = reqwest::get(format!("{base}/api/alerts"))
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 401);
    let token = testing::admin_token(&running.store).await.expect("token");
    let http = sunshare::http::testing::client_with_token(&token);
    let page = http
        .get(format!("{base}/alerts"))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let api: serde_json::Value = http
        .get(format!("{base}/api/alerts?state=all"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(api.as_array().is_some());
    tokio::time::timeout(std::time::Duration::from_secs(10), running.shutdown())
        .await
        .expect("every task stops within 10 s");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_instances_on_one_database_record_and_notify_an_alert_once() {
    for ts in testing::all("alerts_two_instances").await.expect("stores") {
        let d = deployment(None);
        let store = ts.store.clone();
        let metrics = Arc::new(Metrics::new());
        let mut a = Engine::new(Arc::clone(&d), store.clone(), Arc::clone(&metrics), None);
        let mut b = Engine::new(Arc::clone(&d), store.clone(), Arc::clone(&metrics), None);
        write(&store, bj(2, 11, 50)).await;
        assert!(a.tick(bj(2, 11, 50)).await.expect("tick").is_empty());
        assert!(b.tick(bj(2, 11, 50)).await.expect("tick").is_empty());
        // Both see the silence; the first records and notifies, the second adopts.
        assert_eq!(a.tick(bj(2, 11, 54)).await.expect("tick").len(), 2);
        assert!(
            b.tick(bj(2, 11, 54)).await.expect("tick").is_empty(),
            "{}",
            ts.name
        );
        assert_eq!(store.count_unresolved_alerts().await.expect("count"), 2);
        // Either instance resolves the shared row when the gateways return.
        write(&store, bj(2, 11, 55)).await;
        b.tick(bj(2, 11, 55)).await.expect("tick");
        write(&store, bj(2, 11, 57)).await;
        let resolved = b.tick(bj(2, 11, 57)).await.expect("tick");
        assert_eq!(resolved.len(), 2, "{}: {resolved:?}", ts.name);
        assert_eq!(store.count_unresolved_alerts().await.expect("count"), 0);
        // The other sees the same return: the rows are resolved already, so it says nothing
        // (the resolution is notified once).
        let again = a.tick(bj(2, 11, 57)).await.expect("tick");
        assert!(again.is_empty(), "{}: {again:?}", ts.name);
    }
}
