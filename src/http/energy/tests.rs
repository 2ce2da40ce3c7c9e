//! The station page, the energy API and settlement upload over a real socket.

use crate::energy::testing::{deployment, history, sh};
use crate::http::{serve, AppState};
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}

#[tokio::test]
async fn station_page_api_and_upload() -> anyhow::Result<()> {
    let t = crate::store::testing::sqlite().await?;
    let d = deployment();
    let tz = |_: &crate::domain::DeviceId| chrono_tz::Asia::Shanghai;
    t.store
        .write_samples(&history("S1-INV1", |_| false), &tz)
        .await?;
    let state = AppState::new(Arc::new(d), t.store.clone(), Arc::new(Metrics::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(listener, state, cancel.clone()));
    let token = crate::store::testing::api_token(
        &t.store,
        crate::domain::Role::Operator,
        vec![crate::domain::ScopeEntry::All],
    )
    .await?;
    let client = crate::http::testing::client_with_token(&token);

    // A bad statement: 422 with line numbers, nothing stored.
    let bad = gbk("电站编号,结算月份,上网电量(kWh)\nS1,2026-03,33\nS1,2026-03,-1\n");
    let r = client
        .post(format!("{base}/api/settlements?name=bad.csv"))
        .body(bad)
        .send()
        .await?;
    assert_eq!(r.status(), 422);
    let json: serde_json::Value = r.json().await?;
    assert_eq!(json["problems"][0]["line"], 3, "{json}");

    // March metered at 36 kWh, settled at 33: 9% apart, flagged with an explanation.
    let good = gbk("电站编号,结算月份,上网电量(kWh),结算金额(元)\nS1,2026-03,33,28.05\n");
    let r = client
        .post(format!("{base}/api/settlements?name=结算单.csv"))
        .body(good.clone())
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let json: serde_json::Value = r.json().await?;
    assert_eq!(
        (json["imported"].clone(), json["encoding"].clone()),
        (1.into(), "gbk".into())
    );
    assert_eq!(json["sha256"], crate::energy::settlement::digest(&good));
    assert_eq!(json["lines"][0]["computed_amount_yuan"], "28.05");
    assert_eq!(json["warnings"], serde_json::json!([]));
    let first_import = json["import_id"].clone();

    // The same bytes again: 409 naming the first import; nothing stored twice.
    let r = client
        .post(format!("{base}/api/settlements?name=结算单.csv"))
        .body(good)
        .send()
        .await?;
    assert_eq!(r.status(), 409);
    let json: serde_json::Value = r.json().await?;
    assert_eq!(json["error"], "duplicate", "{json}");
    assert_eq!(json["import"]["id"], first_import, "{json}");
    assert_eq!(json["import"]["source"], "结算单.csv", "{json}");

    // Another file of the same name is a new import; its amount 0.50 yuan off 10 kWh × 0.85 is a
    // warning, not a refusal.
    let april = gbk("电站编号,结算月份,上网电量(kWh),结算金额(元)\nS1,2026-04,10,9.00\n");
    let r = client
        .post(format!("{base}/api/settlements?name=结算单.csv"))
        .body(april)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let json: serde_json::Value = r.json().await?;
    assert_ne!(json["import_id"], first_import);
    let w = &json["warnings"][0];
    assert_eq!(
        (
            w["line"].clone(),
            w["settled_yuan"].clone(),
            w["computed_yuan"].clone(),
            w["difference_yuan"].clone()
        ),
        (2.into(), "9.00".into(), "8.50".into(), "0.50".into()),
        "{json}"
    );

    let months: serde_json::Value = client
        .get(format!(
            "{base}/api/stations/S1/months?from=2026-02&to=2026-03"
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(months[0]["basis"], "metered");
    assert_eq!(months[0]["provisional"], true);
    let march = &months[1];
    assert_eq!(march["basis"], "settled", "{march}");
    assert_eq!(march["energy_wh"], 33_000);
    assert_eq!(march["metered_wh"], 36_000);
    assert_eq!(march["settled_amount_yuan"], "28.05");
    assert_eq!(march["reconciliation"]["flagged"], true);
    assert_eq!(march["reconciliation"]["causes"][0]["code"], "unexplained");

    let days: serde_json::Value = client
        .get(format!(
            "{base}/api/stations/S1/energy?from=2026-03-01&to=2026-03-03"
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(days.as_array().map(Vec::len), Some(3));
    assert_eq!(days[1]["energy_wh"], 12_000);
    assert!(
        days[1]["completeness"]["ratio"]
            .as_f64()
            .is_some_and(|r| r > 0.99),
        "{days}"
    );
    // Three stations in the county, two without data: no median to compare against.
    assert!(days[1]["performance_index"].is_null());

    let r = client
        .get(format!(
            "{base}/api/stations/S1/energy?from=2026-03-05&to=2026-03-01"
        ))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let r = client.get(format!("{base}/stations/NOPE")).send().await?;
    assert_eq!(r.status(), 404);
    let page = client.get(format!("{base}/stations/S1")).send().await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    assert!(html.contains("东村光伏电站"));
    assert!(html.contains("id=\"months\"") && html.contains("id=\"days\""));
    assert!(html.contains("provisional"));
    assert!(html.contains("S1-INV1"));

    cancel.cancel();
    server.await??;
    let _ = sh(3, 1, 0, 0);
    Ok(())
}
