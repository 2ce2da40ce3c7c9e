//! The OpenAPI document against a running service: every documented GET answers 200 with real ids
//! from the deployment, and every answer (success or error, GET or POST) has a status the document
//! lists and a JSON body that validates against the schema documented for that status.

use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use sunshare::allocate::PlanState;
use sunshare::config::Deployment;
use sunshare::domain::{DeviceId, Metric, Readings, Sample, VillageId};
use sunshare::ledger::{self, testing::FixedEnergy};
use sunshare::store::{MqttRejectedRow, MqttUnknownRow, NewAlert, QuarantineEntry};

const CONFIG: &str = r#"
[[counties]]
id = "C1"
name = "县"
province = "shanxi"
[[townships]]
id = "T1"
name = "镇"
county = "C1"
[[villages]]
code = "V1"
name = "东村"
township = "T1"
[[tariffs]]
id = "III"
price = "0.85"
province = "shanxi"
[[coal_prices]]
province = "shanxi"
from = "2017-01-01"
price = "0.332"
[[stations]]
id = "S1"
name = "东村电站"
kind = "village"
county = "C1"
capacity_kwp = 300
latitude = 37.8
longitude = 112.5
commissioned = "2019-06-30"
tariff = "III"
village = "V1"
[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "modbus_tcp", address = "127.0.0.1:1502", unit = 1 }
rated_power_w = 100000
[[households]]
id = "H1"
village = "V1"
head = "张小三"
labour = "full"
bank_account = "6228000011112222"
status = [{ status = "not_exited", from = "2016-01-01" }]
[[jobs]]
id = "J1"
village = "V1"
title = "电站管护员"
holder = "H1"
monthly_wage = "600"
from = "2026-01-01"
[[plans]]
village = "V1"
year = 2026
expected_net = "100000"
lines = { job_wages = "7200", temp_labour = "0", small_project = "0", reward_subsidy = "0", reserve = "1200" }
"#;

/// Every 15 minutes over 1 and 2 March 2026 (Shanghai): the lifetime counter climbs from 06:00 to
/// 18:00 and is flat at night.
fn march_samples() -> Vec<Sample> {
    let tz = chrono_tz::Asia::Shanghai;
    let Some(start) = tz.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).single() else {
        panic!("a valid local time");
    };
    let mut out = Vec::new();
    let mut counter = 5_000_000.0;
    for step in 0..(2 * 24 * 4) {
        let at = start + Duration::minutes(15 * step);
        let hour = (step % (24 * 4)) / 4;
        let producing = (6..18).contains(&hour);
        if producing {
            counter += 12_500.0;
        }
        let mut readings = Readings::default();
        readings.set(Metric::EnergyLifetimeWh, counter);
        readings.set(Metric::AcPowerW, if producing { 50_000.0 } else { 0.0 });
        out.push(Sample {
            device: DeviceId::new("S1-INV1"),
            at: at.with_timezone(&Utc),
            readings,
        });
    }
    out
}

/// One request and the status it must get.
struct Case {
    method: &'static str,
    /// The path as documented, e.g. `/api/stations/{id}/energy`.
    template: &'static str,
    /// The path parameters, in order.
    params: Vec<String>,
    query: &'static str,
    body: Option<(&'static str, Vec<u8>)>,
    /// Who asks: a token, or nobody; the administrator's unless a case says otherwise.
    token: Option<Option<String>>,
    status: u16,
}

/// A GET of `template` with `params` in its placeholders, expecting 200.
fn ask(template: &'static str, params: &[&str], query: &'static str) -> Case {
    Case {
        method: "GET",
        template,
        params: params.iter().map(|p| (*p).to_owned()).collect(),
        query,
        body: None,
        token: None,
        status: 200,
    }
}

impl Case {
    fn status(mut self, status: u16) -> Case {
        self.status = status;
        self
    }
    fn post(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
        self.method = "POST";
        self.body = Some((content_type, body.into()));
        self
    }
    fn token(mut self, token: &str) -> Case {
        self.token = Some(Some(token.to_owned()));
        self
    }
    fn anonymous(mut self) -> Case {
        self.token = Some(None);
        self
    }
    fn url(&self, base: &str) -> String {
        let mut path = self.template.to_owned();
        for value in &self.params {
            let (Some(open), Some(close)) = (path.find('{'), path.find('}')) else {
                panic!("{}: more parameters than placeholders", self.template);
            };
            path.replace_range(open..=close, value.as_str());
        }
        assert!(
            !path.contains('{'),
            "{}: a placeholder is left",
            self.template
        );
        format!("{base}{path}{}", self.query)
    }
}

/// A validator for `schema`, whose `$ref`s point into the document's components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = match schema {
        Value::Object(map) => map.clone(),
        other => panic!("not a schema object: {other}"),
    };
    root.insert("components".into(), doc["components"].clone());
    match jsonschema::options()
        .should_validate_formats(true)
        .build(&Value::Object(root))
    {
        Ok(v) => v,
        Err(e) => panic!("{schema} is not a valid schema: {e}"),
    }
}

#[tokio::test]
async fn every_documented_answer_validates_against_its_schema() -> anyhow::Result<()> {
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let deployment =
        Deployment::from_str_with_env("openapi.toml", CONFIG, &[], &sunshare::app::known_models())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let d = Arc::new(deployment);

    // Something behind every list: energy, an allocated month, a plan history, an alert, a
    // quarantined sample, an unknown logger and a refused message.
    let samples = march_samples();
    store
        .write_samples(&samples, &|_: &DeviceId| chrono_tz::Asia::Shanghai)
        .await?;
    let v1 = VillageId::new("V1");
    for to in [
        PlanState::Deliberated,
        PlanState::PlanPublished,
        PlanState::TownshipReviewed,
        PlanState::CountyFiled,
        PlanState::Active,
    ] {
        ledger::transition(&store, &d, &v1, 2026, to, "村委会", "step").await?;
    }
    ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(30_000_000),
        "2026-01".parse()?,
        "test",
        true,
    )
    .await?;
    let now = Utc::now();
    let alert = store
        .open_alert(&NewAlert {
            kind: "offline",
            station: "S1",
            subject: "",
            county: "C1",
            severity: "critical",
            message: "no device has reported for 20 minutes",
            opened_at: now,
            since: now - Duration::minutes(20),
            flapping: false,
        })
        .await?;
    let mut bad = samples[0].clone();
    bad.readings.set(Metric::AcPowerW, f64::NAN);
    store
        .quarantine_many(
            &[QuarantineEntry {
                sample: &bad,
                code: "not_finite",
                reason: "ac_power_w is NaN or infinite".into(),
            }],
            now,
        )
        .await?;
    store
        .record_mqtt_unknown(&[MqttUnknownRow {
            logger: "LG-9".into(),
            device_key: String::new(),
            topic: "sunshare/LG-9/data".into(),
            first_seen: now,
            last_seen: now,
            messages: 3,
            last_payload: "{}".into(),
        }])
        .await?;
    store
        .record_mqtt_rejected(&[MqttRejectedRow {
            topic: "sunshare/LG-1/data".into(),
            reason: "not_json".into(),
            first_seen: now,
            last_seen: now,
            messages: 1,
            last_detail: "expected value at line 1".into(),
        }])
        .await?;

    let state = sunshare::http::AppState::new(
        Arc::clone(&d),
        store.clone(),
        Arc::new(sunshare::metrics::Metrics::new()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(sunshare::http::serve(listener, state, cancel.clone()));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    use sunshare::domain::{Role, ScopeEntry};
    let admin = sunshare::store::testing::admin_token(&store).await?;
    let accountant = sunshare::store::testing::api_token(
        &store,
        Role::Accountant,
        vec![ScopeEntry::Village("V1".into())],
    )
    .await?;

    let doc: Value = client
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(doc["info"]["title"], "Sunshare");

    // February's amount is a yuan above 1,000 kWh × 0.85: imported, with a warning.
    let statement = "电站编号,结算月份,上网电量(kWh),结算金额(元)\nS1,2026-03,1200,1020.00\n\
                     S1,2026-02,1000,851.00\n";
    let alert = alert.to_string();
    let cases = vec![
        // Writes first, so the reads below see a settled month and an acknowledged alert.
        ask("/api/settlements", &[], "?name=march.csv")
            .post("text/csv", statement)
            .status(201),
        ask("/api/settlements", &[], "?name=march-again.csv")
            .post("text/csv", statement)
            .status(409),
        ask("/api/settlements", &[], "?name=bad.csv")
            .post("text/csv", "电站编号,结算月份\nS1,2026-03\n")
            .status(422),
        ask("/api/alerts/{id}/ack", &[alert.as_str()], "").post(
            "application/json",
            r#"{"who": "王工", "note": "crew on the way"}"#,
        ),
        ask("/api/alerts/{id}/ack", &["999999"], "")
            .post("application/json", r#"{"who": "王工"}"#)
            .status(404),
        ask("/api/alerts/{id}/ack", &["abc"], "")
            .post("application/json", r#"{"who": "王工"}"#)
            .status(400),
        ask("/api/alerts/{id}/ack", &[alert.as_str()], "")
            .post(
                "application/json",
                format!(r#"{{"note": "{}"}}"#, "x".repeat(1001)),
            )
            .status(400),
        ask("/api/alerts/{id}/ack", &[alert.as_str()], "")
            .post("application/json", r#"{"note": "x"}"#)
            .token(&accountant)
            .status(403),
        ask("/api/alerts", &[], "").anonymous().status(401),
        ask(
            "/api/villages/{code}/plans/{year}/transitions",
            &["V1", "2026"],
            "",
        )
        .post("application/json", r#"{"to": "ACTIVE", "note": "again"}"#)
        .anonymous()
        .status(401),
        ask(
            "/api/villages/{code}/plans/{year}/transitions",
            &["V1", "2026"],
            "",
        )
        .post("application/json", r#"{"to": "ACTIVE", "note": "again"}"#)
        .status(409),
        ask(
            "/api/villages/{code}/plans/{year}/transitions",
            &["V1", "2026"],
            "",
        )
        .post(
            "application/json",
            r#"{"to": "DELIBERATED", "note": "amendment", "who": "李会计"}"#,
        )
        .token(&accountant),
        ask(
            "/api/villages/{code}/plans/{year}/transitions",
            &["V1", "2026"],
            "",
        )
        .post("text/plain", "ACTIVE")
        .token(&accountant)
        .status(400),
        // Every GET with real ids.
        ask("/api/stations", &[], ""),
        ask("/api/stations", &[], "?per=1&page=2&sort=power&dir=desc"),
        ask("/api/stations", &[], "?per=0").status(400),
        ask("/api/fleet/totals", &[], ""),
        ask("/api/fleet/totals", &[], "?kind=solar").status(400),
        ask(
            "/api/stations/{id}/energy",
            &["S1"],
            "?from=2026-03-01&to=2026-03-02",
        ),
        ask(
            "/api/stations/{id}/months",
            &["S1"],
            "?from=2026-02&to=2026-03",
        ),
        ask("/api/alerts", &[], "?state=all"),
        ask("/api/quarantine", &[], "?device=S1-INV1&limit=10"),
        ask("/api/mqtt/unknown", &[], ""),
        ask("/api/mqtt/rejected", &[], ""),
        ask(
            "/api/villages/{code}/months/{month}",
            &["V1", "2026-01"],
            "",
        ),
        ask("/api/villages/{code}/plans/{year}", &["V1", "2026"], ""),
        ask("/api/openapi.json", &[], ""),
        // And their errors.
        ask("/api/stations/{id}/energy", &["S9"], "").status(404),
        ask("/api/stations/{id}/energy", &["S1"], "?from=2026-3-1x").status(400),
        ask("/api/stations/{id}/energy", &["S1"], "?to=-262143-01-01").status(400),
        ask("/api/stations/{id}/energy", &["S1"], "?to=a&to=b").status(400),
        ask("/api/stations/{id}/months", &["S1"], "?to=2026-13").status(400),
        ask("/api/alerts", &[], "?state=closed").status(400),
        ask("/api/quarantine", &[], "?limit=0").status(400),
        ask(
            "/api/villages/{code}/months/{month}",
            &["V9", "2026-01"],
            "",
        )
        .status(404),
        ask(
            "/api/villages/{code}/months/{month}",
            &["V1", "2026-02"],
            "",
        )
        .status(404),
        ask("/api/villages/{code}/months/{month}", &["V1", "26-01"], "").status(400),
        ask(
            "/api/villages/{code}/plans/{year}",
            &["V1", "2147483648"],
            "",
        )
        .status(400),
        ask("/api/villages/{code}/plans/{year}", &["V9", "2026"], "").status(404),
    ];

    let mut answered_200: BTreeSet<(String, String)> = BTreeSet::new();
    for case in &cases {
        let url = case.url(&base);
        let mut request = match case.method {
            "GET" => client.get(&url),
            _ => client.post(&url),
        };
        if let Some((content_type, body)) = &case.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        match &case.token {
            None => request = request.bearer_auth(&admin),
            Some(Some(token)) => request = request.bearer_auth(token),
            Some(None) => {}
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await?;
        let what = format!("{} {url}", case.method);
        assert_eq!(status, case.status, "{what}: {text}");

        let operation = &doc["paths"][case.template][case.method.to_ascii_lowercase()];
        assert!(operation.is_object(), "{what}: not in the document");
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{what}: status {status} is not documented"
        );
        let Some(schema) = documented["content"]["application/json"].get("schema") else {
            assert!(text.is_empty(), "{what}: undocumented body {text}");
            continue;
        };
        assert!(
            content_type.starts_with("application/json"),
            "{what}: content type {content_type}"
        );
        let body: Value = serde_json::from_str(&text)?;
        let problems: Vec<String> = validator(&doc, schema)
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(problems.is_empty(), "{what}: {problems:?}\n{body:#}");
        if status == 200 {
            // Not vacuous: lists have something in them, so items are validated too.
            if let Value::Array(items) = &body {
                assert!(!items.is_empty(), "{what}: an empty list validates nothing");
            }
            answered_200.insert((case.method.to_owned(), case.template.to_owned()));
        }
    }

    // The settlement reached the month and the acknowledgement the alert: the reads saw the writes.
    let months: Value = client
        .get(format!(
            "{base}/api/stations/S1/months?from=2026-03&to=2026-03"
        ))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(months[0]["basis"], "settled", "{months}");
    assert!(months[0]["reconciliation"].is_object(), "{months}");

    // Every documented GET was asked with real ids and answered 200.
    let gets: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, item)| item.get("get").is_some())
        .map(|(path, _)| ("GET".to_owned(), path.clone()))
        .collect();
    let unasked: Vec<_> = gets.difference(&answered_200).collect();
    assert!(
        unasked.is_empty(),
        "documented GETs without a 200 case here: {unasked:?}"
    );

    cancel.cancel();
    server.await??;
    store.close().await;
    Ok(())
}
