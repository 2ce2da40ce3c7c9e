//! Notifier tests against a webhook receiver on 127.0.0.1:0 that records every request.

use super::*;
use crate::alerts::{AlertKey, AlertKind, EventKind};
use crate::domain::{CountyId, StationId};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use chrono::TimeZone;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Mutex;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    /// Status to answer with, and a body.
    reply: Arc<Mutex<(u16, String)>>,
}

impl Receiver {
    fn requests(&self) -> Vec<(String, Value)> {
        self.got.lock().expect("lock").clone()
    }
}

async fn record(State(r): State<Receiver>, uri: Uri, body: String) -> (StatusCode, String) {
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    r.got.lock().expect("lock").push((uri.to_string(), value));
    let (status, text) = r.reply.lock().expect("lock").clone();
    (StatusCode::from_u16(status).expect("status"), text)
}

/// Starts a receiver answering `status` with `body`; returns its base URL.
async fn receiver(status: u16, body: &str) -> (Receiver, String) {
    let r = Receiver::default();
    *r.reply.lock().expect("lock") = (status, body.to_owned());
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, format!("http://{addr}"))
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, h, m, 0)
        .single()
        .expect("valid")
}

fn notice(id: i64, kind: AlertKind, station: &str, subject: &str, message: &str) -> AlertNotice {
    AlertNotice {
        id,
        station_name: format!("{station} 光伏电站"),
        event: Event {
            kind: EventKind::Opened,
            key: AlertKey {
                kind,
                station: StationId::new(station),
                subject: subject.into(),
            },
            severity: kind.severity(),
            county: CountyId::new("C-LQ"),
            message: message.into(),
            since: at(4, 0),
            at: at(4, 15),
            flapping: false,
            notify: true,
        },
    }
}

fn hook(name: &str, url: String, format: Format) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url: SecretString::from(url),
        format,
        min_severity: Severity::Minor,
        secret: None,
        keyword: None,
    }
}

fn fast(webhooks: Vec<WebhookConfig>) -> NotifyConfig {
    NotifyConfig {
        webhooks,
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..NotifyConfig::default()
    }
}

#[tokio::test]
async fn json_webhook_gets_the_exact_alert_document() {
    let (r, base) = receiver(200, "ok").await;
    let cfg = fast(vec![hook("ops", format!("{base}/hook"), Format::Json)]);
    let mut d = Dispatcher::new(&cfg, None, Arc::new(Metrics::new())).expect("dispatcher");
    let n = notice(
        7,
        AlertKind::Offline,
        "S3",
        "10.0.0.3:502",
        "gateway silent for 15 min",
    );
    let report = d.dispatch(&[n], at(4, 15)).await;
    assert_eq!(report.messages_sent, 1);
    let got = r.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "/hook");
    assert_eq!(
        got[0].1,
        json!({
            "type": "alert",
            "alert": {
                "id": 7,
                "event": "opened",
                "kind": "offline",
                "severity": "critical",
                "station": "S3",
                "station_name": "S3 光伏电站",
                "county": "C-LQ",
                "subject": "10.0.0.3:502",
                "message": "gateway silent for 15 min",
                "since": "2026-06-01T04:00:00Z",
                "at": "2026-06-01T04:15:00Z"
            }
        })
    );
}

#[tokio::test]
async fn dingtalk_and_wecom_robots_get_their_markdown_formats() {
    let (r, base) = receiver(200, r#"{"errcode":0,"errmsg":"ok"}"#).await;
    let mut ding = hook(
        "dingtalk",
        format!("{base}/robot/send?access_token=T"),
        Format::Dingtalk,
    );
    ding.keyword = Some("光伏告警".into());
    ding.secret = Some(SecretString::from("SECtest".to_owned()));
    let wecom = hook(
        "wecom",
        format!("{base}/cgi-bin/webhook/send?key=K"),
        Format::Wecom,
    );
    let cfg = fast(vec![ding, wecom]);
    let mut d = Dispatcher::new(&cfg, None, Arc::new(Metrics::new())).expect("dispatcher");
    let n = notice(
        9,
        AlertKind::Fault,
        "S1",
        "S1-INV2",
        "device S1-INV2: x.1 Arc fault / 电弧故障",
    );
    assert_eq!(d.dispatch(&[n], at(4, 15)).await.messages_sent, 2);
    let got = r.requests();
    assert_eq!(got.len(), 2);
    let text = "光伏告警 ### [MAJOR] fault 故障 opened · S1 光伏电站\n\n\
                - station 电站: S1 光伏电站 (S1)\n- county 县: C-LQ\n- subject 对象: S1-INV2\n\
                - since 开始: 2026-06-01 04:00 UTC\n- alert id: 9\n\n\
                device S1-INV2: x.1 Arc fault / 电弧故障\n";
    assert!(
        got[0]
            .0
            .starts_with("/robot/send?access_token=T&timestamp="),
        "{}",
        got[0].0
    );
    assert!(got[0].0.contains("&sign="), "{}", got[0].0);
    assert_eq!(
        got[0].1,
        json!({"msgtype": "markdown", "markdown": {
            "title": "[MAJOR] fault 故障 opened · S1 光伏电站",
            "text": text,
        }})
    );
    assert_eq!(got[1].0, "/cgi-bin/webhook/send?key=K");
    assert_eq!(
        got[1].1,
        json!({"msgtype": "markdown", "markdown": { "content": text.trim_start_matches("光伏告警 ") }})
    );
}

#[test]
fn dingtalk_signature_is_hmac_sha256_of_timestamp_and_secret() {
    // Independent check of the documented scheme with a fixed timestamp.
    let url = format::dingtalk_signed_url(
        "https://oapi.example/robot/send?access_token=T",
        "SECabc",
        1_700_000_000_000,
    )
    .expect("url");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"SECabc").expect("key");
    mac.update(b"1700000000000\nSECabc");
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let parsed = reqwest::Url::parse(&url).expect("parse");
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        vec![
            ("access_token".into(), "T".into()),
            ("timestamp".into(), "1700000000000".into()),
            ("sign".into(), expected),
        ]
    );
}
use base64::Engine as _;
use hmac::{Hmac, Mac};

#[tokio::test]
async fn a_county_wide_burst_is_one_summary_message() {
    let (r, base) = receiver(200, "ok").await;
    let cfg = fast(vec![hook("ops", format!("{base}/hook"), Format::Json)]);
    let mut d = Dispatcher::new(&cfg, None, Arc::new(Metrics::new())).expect("dispatcher");
    let burst: Vec<AlertNotice> = (1..=40)
        .map(|i| {
            notice(
                i,
                AlertKind::GridOutage,
                &format!("S{i:02}"),
                "",
                "all 2 reporting devices report grid loss",
            )
        })
        .collect();
    let report = d.dispatch(&burst, at(2, 5)).await;
    assert_eq!(report.messages_sent, 1);
    let got = r.requests();
    assert_eq!(got.len(), 1, "one message for the whole county");
    let body = &got[0].1;
    assert_eq!(body["type"], "summary");
    assert_eq!(body["opened"], 40);
    assert_eq!(body["resolved"], 0);
    assert_eq!(body["by_kind"], json!({"grid_outage": 40}));
    assert_eq!(body["by_county"], json!({"C-LQ": 40}));
    assert_eq!(
        body["alerts"].as_array().map(Vec::len),
        Some(format::SUMMARY_LIST)
    );
    assert_eq!(body["omitted"], 20);
    assert_eq!(body["alerts"][0]["station"], "S01");
}

#[tokio::test]
async fn the_hourly_rate_limit_defers_into_one_later_summary() {
    let (r, base) = receiver(200, "ok").await;
    let mut cfg = fast(vec![hook("ops", format!("{base}/hook"), Format::Json)]);
    cfg.max_per_hour = 2;
    let mut d = Dispatcher::new(&cfg, None, Arc::new(Metrics::new())).expect("dispatcher");
    for i in 0..4 {
        let n = notice(i, AlertKind::Offline, &format!("S{i}"), "gw", "silent");
        d.dispatch(&[n], at(4, 10 + i as u32)).await;
    }
    assert_eq!(r.requests().len(), 2, "two messages fit the hour");
    // An hour after the first message the budget is back: the two deferred events go as one summary.
    let report = d.dispatch(&[], at(5, 11)).await;
    assert_eq!(report.messages_sent, 1);
    let got = r.requests();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].1["type"], "summary");
    assert_eq!(got[2].1["opened"], 2);
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_then_reported() {
    let (r, base) = receiver(500, "upstream broken").await;
    let ts = crate::store::testing::sqlite().await.expect("store");
    let metrics = Arc::new(Metrics::new());
    let cfg = fast(vec![hook(
        "county-office",
        format!("{base}/hook"),
        Format::Json,
    )]);
    let mut d =
        Dispatcher::new(&cfg, Some(ts.store.clone()), Arc::clone(&metrics)).expect("dispatcher");
    let n = notice(1, AlertKind::Offline, "S3", "gw", "silent");
    let report = d.dispatch(&[n], at(4, 15)).await;
    assert_eq!(report.messages_failed, 1);
    assert_eq!(r.requests().len(), 3, "max_attempts = 3");
    assert_eq!(metrics.notify_failures.get(), 1);
    let status = ts.store.notify_status().await.expect("status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].sink, "county-office");
    assert!(status[0].failing());
    assert_eq!(status[0].failures, 1);
    let error = status[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("after 3 attempt(s): HTTP 500"), "{error}");
    assert!(
        !error.contains("127.0.0.1"),
        "the URL (and its token) stays out: {error}"
    );
    // The endpoint recovers: the next message goes out and the status is healthy again.
    *r.reply.lock().expect("lock") = (200, "ok".into());
    let n = notice(2, AlertKind::Offline, "S4", "gw", "silent");
    assert_eq!(d.dispatch(&[n], at(4, 20)).await.messages_sent, 1);
    let status = ts.store.notify_status().await.expect("status");
    assert!(!status[0].failing());
}

#[tokio::test]
async fn a_robot_reply_that_never_arrives_is_retried_not_taken_for_a_refusal() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A robot that says 200 and then never sends the rest of its reply.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 64 * 1024];
            let _ = sock.read(&mut buf).await;
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
            let _ = sock.write_all(head.as_bytes()).await;
            held.push(sock);
        }
    });
    let metrics = Arc::new(Metrics::new());
    let mut cfg = fast(vec![hook(
        "dingtalk",
        format!("http://{addr}/robot"),
        Format::Dingtalk,
    )]);
    cfg.timeout = Duration::from_millis(300);
    let mut d = Dispatcher::new(&cfg, None, Arc::clone(&metrics)).expect("dispatcher");
    let report = d
        .dispatch(
            &[notice(1, AlertKind::Offline, "S3", "gw", "silent")],
            at(4, 15),
        )
        .await;
    assert_eq!(report.messages_failed, 1);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "an unread reply is worth another try (max_attempts = 3)"
    );
}

#[tokio::test]
async fn a_robot_refusal_is_not_retried() {
    let (r, base) = receiver(
        200,
        r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
    )
    .await;
    let metrics = Arc::new(Metrics::new());
    let cfg = fast(vec![hook(
        "dingtalk",
        format!("{base}/robot"),
        Format::Dingtalk,
    )]);
    let mut d = Dispatcher::new(&cfg, None, Arc::clone(&metrics)).expect("dispatcher");
    let report = d
        .dispatch(
            &[notice(1, AlertKind::Offline, "S3", "gw", "silent")],
            at(4, 15),
        )
        .await;
    assert_eq!(report.messages_failed, 1);
    assert_eq!(r.requests().len(), 1);
    assert_eq!(metrics.notify_failures.get(), 1);
}

#[tokio::test]
async fn flapping_and_low_severity_events_are_filtered_per_destination() {
    let (r, base) = receiver(200, "ok").await;
    let mut only_critical = hook("duty-phone", format!("{base}/hook"), Format::Json);
    only_critical.min_severity = Severity::Critical;
    let mut d = Dispatcher::new(&fast(vec![only_critical]), None, Arc::new(Metrics::new()))
        .expect("dispatcher");
    let mut flapping = notice(1, AlertKind::Offline, "S1", "gw", "silent");
    flapping.event.notify = false;
    let minor = notice(2, AlertKind::Stale, "S2", "S2-INV1", "frozen");
    let critical = notice(3, AlertKind::Offline, "S3", "gw", "silent");
    d.dispatch(&[flapping, minor, critical], at(4, 15)).await;
    let got = r.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["alert"]["id"], 3);
}

#[tokio::test]
async fn mqtt_alert_topic_receives_the_json_document() {
    let Ok(broker) = std::env::var("SUNSHARE_TEST_MQTT") else {
        crate::store::testing::announce_skip("SKIPPED (Mosquitto) mqtt_alert_topic_receives_the_json_document: set SUNSHARE_TEST_MQTT=127.0.0.1:1883 to run it");
        return;
    };
    let prefix = format!(
        "sunshare-test/{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    );
    // A subscriber first, so the QoS 1 publish has somewhere to go.
    let (host, port) = broker.rsplit_once(':').expect("host:port");
    let mut opts = rumqttc::MqttOptions::new(
        format!("sub-{}", std::process::id()),
        host,
        port.parse().expect("port"),
    );
    opts.set_keep_alive(Duration::from_secs(10));
    let (sub, mut sub_loop) = rumqttc::AsyncClient::new(opts, 16);
    sub.subscribe(format!("{prefix}/#"), rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, sub_loop.poll())
            .await
            .expect("SUNSHARE_TEST_MQTT is set but no SubAck arrived")
            .expect("subscriber connection");
        if matches!(ev, rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) {
            break;
        }
    }
    let cancel = CancellationToken::new();
    let cfg = MqttSinkConfig {
        broker: broker.clone(),
        topic: prefix.clone(),
        client_id: format!("pub-{}", std::process::id()),
        username: None,
        password: None,
    };
    let (sink, driver) = MqttSink::start(&cfg, cancel.clone()).expect("sink");
    let driver = tokio::spawn(driver);
    let mut d = Dispatcher::new(&fast(vec![]), None, Arc::new(Metrics::new())).expect("dispatcher");
    d.add_mqtt(sink);
    let n = notice(5, AlertKind::Offline, "S3", "gw", "silent");
    let report = d.dispatch(std::slice::from_ref(&n), at(4, 15)).await;
    assert_eq!(
        report.messages_sent, 1,
        "publish went through (retries cover the connect)"
    );
    let got = loop {
        let ev = tokio::time::timeout_at(deadline, sub_loop.poll())
            .await
            .expect("no alert message arrived within 10 s")
            .expect("subscriber connection");
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
            break p;
        }
    };
    assert_eq!(got.topic, format!("{prefix}/S3/offline"));
    let body: Value = serde_json::from_slice(&got.payload).expect("json");
    assert_eq!(
        body,
        json!({"type": "alert", "alert": format::alert_json(&n)})
    );
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
}
