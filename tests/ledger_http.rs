//! The village pages, notice, exports and plan API over real HTTP, and the CLI end to end.

use std::collections::HashSet;
use std::sync::Arc;
use sunshare::allocate::PlanState;
use sunshare::config::Deployment;
use sunshare::domain::{VillageId, YearMonth};
use sunshare::ledger::{self, testing::FixedEnergy};

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

/// The service on port 0 over `store`: its base URL, the token that stops it, and its task.
async fn serve(
    store: &sunshare::store::Store,
    d: &Arc<Deployment>,
) -> anyhow::Result<(
    String,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let state = sunshare::http::AppState::new(
        Arc::clone(d),
        store.clone(),
        Arc::new(sunshare::metrics::Metrics::new()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(sunshare::http::serve(listener, state, cancel.clone()));
    Ok((base, cancel, server))
}

fn deployment() -> Deployment {
    match Deployment::from_str_with_env("test.toml", CONFIG, &[], &HashSet::new()) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn village_pages_notice_exports_and_plan_api() -> anyhow::Result<()> {
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(deployment());
    let v = VillageId::new("V1");
    for to in [
        PlanState::Deliberated,
        PlanState::PlanPublished,
        PlanState::TownshipReviewed,
        PlanState::CountyFiled,
    ] {
        ledger::transition(&store, &d, &v, 2026, to, "村委会", "step").await?;
    }
    let month: YearMonth = "2026-01".parse()?;

    let (base, cancel, server) = serve(&store, &d).await?;
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let anonymous = client_with_token("");
    let viewer = client_with_token(
        &named_token(&store, "auditor", Role::Viewer, vec![ScopeEntry::All]).await?,
    );
    let accountant = client_with_token(
        &named_token(
            &store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let county = client_with_token(
        &named_token(
            &store,
            "county-office",
            Role::Admin,
            vec![ScopeEntry::County("C1".into())],
        )
        .await?,
    );

    // The last step over HTTP is the county's: refused without a credential, refused for a
    // viewer and for the village's accountant, done by the county office.
    let url = format!("{base}/api/villages/V1/plans/2026/transitions");
    let body =
        serde_json::json!({ "to": "ACTIVE", "note": "filed with the county", "who": "王科长" });
    let r = anonymous.post(&url).json(&body).send().await?;
    assert_eq!(r.status(), 401);
    let r = viewer.post(&url).json(&body).send().await?;
    assert_eq!(r.status(), 403);
    let r = accountant.post(&url).json(&body).send().await?;
    assert_eq!(
        r.status(),
        403,
        "activating a filed plan is the county's step"
    );
    let r = county.post(&url).json(&body).send().await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let plan: serde_json::Value = viewer
        .get(format!("{base}/api/villages/V1/plans/2026"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(plan["state"], "ACTIVE");
    assert_eq!(plan["transitions"][4]["who"], "王科长 (via county-office)");
    let r = county.post(&url).json(&body).send().await?;
    assert_eq!(r.status(), 409, "ACTIVE -> ACTIVE is not a transition");
    let r = county
        .post(&url)
        .json(&serde_json::json!({ "to": "SOMEWHERE", "note": "x" }))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await?;
    assert_eq!(err["field"], "to", "{err}");
    let r = county
        .post(&url)
        .json(&serde_json::json!({ "to": "CLOSED" }))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await?;
    assert_eq!(err["field"], "note", "{err}");
    let client = viewer;

    ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(30_000_000),
        month,
        "test",
        true,
    )
    .await?;

    let list = client
        .get(format!("{base}/villages"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        list.contains("东村") && list.contains("2026-01") && list.contains("provisional"),
        "{list}"
    );
    let page = client
        .get(format!("{base}/villages/V1"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("600.00") && page.contains("张*三") && !page.contains("张小三"),
        "{page}"
    );

    let notice = client
        .get(format!("{base}/villages/V1/notice/2026-01"))
        .send()
        .await?
        .text()
        .await?;
    assert!(notice.contains("公示") && notice.contains("张*三"));
    assert!(
        !notice.contains("张小三")
            && !notice.contains("6228000011112222")
            && !notice.contains("H1 ")
    );
    let public = anonymous
        .get(format!("{base}/villages/V1/notice/2026-01"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        public.contains("张*三") && !public.contains("张小三"),
        "{public}"
    );
    let full = accountant
        .get(format!("{base}/villages/V1/notice/2026-01"))
        .send()
        .await?
        .text()
        .await?;
    assert!(full.contains("张小三") && full.contains("FULL VERSION"));

    let json: serde_json::Value = client
        .get(format!("{base}/api/villages/V1/months/2026-01"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(json["payouts"], "600.00");
    assert_eq!(json["provisional"], true);
    assert_eq!(json["masked"], true);
    // 30,000 kWh × 0.332 = 9,960.00 income, 600.00 paid, reserve 100.00
    assert_eq!(json["income"], "9960.00");
    assert_eq!(json["reserve"], "100.00");
    assert_eq!(json["closing_balance"], "9360.00");

    let r = client
        .get(format!("{base}/villages/V1/months/2026-01/roster.csv"))
        .send()
        .await?;
    assert_eq!(r.status(), 403, "the roster holds bank accounts");
    let roster = accountant
        .get(format!("{base}/villages/V1/months/2026-01/roster.csv"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        roster.contains("H1,张小三,6228000011112222,600.00"),
        "{roster}"
    );
    let xlsx = client
        .get(format!("{base}/villages/V1/months/2026-01/statement.xlsx"))
        .send()
        .await?;
    assert_eq!(xlsx.status(), 200);
    assert!(xlsx.bytes().await?.starts_with(b"PK"));
    let missing = client
        .get(format!("{base}/api/villages/V1/months/2026-02"))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    cancel.cancel();
    server.await??;
    store.close().await;
    Ok(())
}

#[test]
fn cli_allocates_moves_plans_and_locks_months() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sunshare.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\n{CONFIG}",
            data.display().to_string()
        ),
    )?;
    let bin = env!("CARGO_BIN_EXE_sunshare");
    let run = |args: &[&str]| -> anyhow::Result<(bool, String, String)> {
        let out = std::process::Command::new(bin).args(args).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let cfg = config.to_str().unwrap_or_default();
    let (ok, out, err) = run(&["allocate", "--config", cfg, "--month", "2026-01"])?;
    assert!(ok, "{err}");
    assert!(
        out.contains("village V1") && out.contains("PROVISIONAL"),
        "{out}"
    );
    assert!(out.contains("no payouts"), "plan still DRAFT: {out}");
    let (ok, _, err) = run(&[
        "plan",
        "transition",
        "--config",
        cfg,
        "--village",
        "V1",
        "--year",
        "2026",
        "--to",
        "ACTIVE",
        "--who",
        "x",
        "--note",
        "jump",
    ])?;
    assert!(
        !ok && err.contains("DRAFT") && err.contains("DELIBERATED"),
        "{err}"
    );
    let (ok, out, err) = run(&[
        "plan",
        "transition",
        "--config",
        cfg,
        "--village",
        "V1",
        "--year",
        "2026",
        "--to",
        "DELIBERATED",
        "--who",
        "村委会",
        "--note",
        "四议 meeting 2026-01-05",
    ])?;
    assert!(ok, "{err}");
    assert!(out.contains("DRAFT -> DELIBERATED"), "{out}");
    let (ok, out, err) = run(&[
        "allocate", "--config", cfg, "--month", "2026-01", "--format", "csv",
    ])?;
    assert!(ok, "{err}");
    assert!(out.starts_with("month,village,provisional"), "{out}");
    let (ok, _, err) = run(&[
        "ledger",
        "pay",
        "--config",
        cfg,
        "--month",
        "2026-01",
        "--who",
        "county finance",
    ])?;
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["allocate", "--config", cfg, "--month", "2026-01"])?;
    assert!(!ok && err.contains("locked"), "{err}");
    // The same refusal for a script: one JSON object naming the kind.
    let (ok, out, err) = run(&[
        "allocate", "--config", cfg, "--month", "2026-01", "--format", "json",
    ])?;
    assert!(!ok && out.is_empty(), "{out}");
    let refusal: serde_json::Value = serde_json::from_str(err.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {err}"));
    assert_eq!(refusal["error"], "locked", "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("2026-01")),
        "{refusal}"
    );
    let out_file = dir.path().join("statement.xlsx");
    let (ok, _, err) = run(&[
        "ledger",
        "export",
        "--config",
        cfg,
        "--month",
        "2026-01",
        "--village",
        "V1",
        "--kind",
        "statement",
        "--out",
        out_file.to_str().unwrap_or_default(),
    ])?;
    assert!(ok, "{err}");
    assert!(std::fs::read(&out_file)?.starts_with(b"PK"));
    let (ok, out, _) = run(&["ledger", "audit", "--config", cfg])?;
    assert!(
        ok && out.contains("month_paid") && out.contains("plan_transition"),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn the_village_reviews_its_statement_and_a_new_run_or_a_paid_month_is_told_apart(
) -> anyhow::Result<()> {
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(deployment());
    let month: YearMonth = "2026-01".parse()?;
    ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(30_000_000),
        month,
        "county",
        true,
    )
    .await?;
    let (base, cancel, server) = serve(&store, &d).await?;
    let accountant = client_with_token(
        &named_token(
            &store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let admin = client_with_token(
        &named_token(&store, "county", Role::Admin, vec![ScopeEntry::All]).await?,
    );
    let viewer = client_with_token(
        &named_token(&store, "auditor", Role::Viewer, vec![ScopeEntry::All]).await?,
    );
    let page = |c: &reqwest::Client, path: &str| c.get(format!("{base}{path}")).send();
    let review = |c: &reqwest::Client| {
        c.post(format!("{base}/villages/V1/months/2026-01/review"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("note=%E5%B7%B2%E6%A0%B8%E5%AF%B9")
            .send()
    };

    // Not reviewed yet: the accountant is offered the form, the county sees 0 of 1.
    let html = page(&accountant, "/villages/V1?month=2026-01")
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"review-none\"") && html.contains("id=\"review-form\""),
        "{html}"
    );
    // The money core's own notes and references, as the allocator wrote them, read in Chinese.
    assert!(
        html.contains("2026 年度方案处于“草拟”，本月不支出"),
        "{html}"
    );
    assert!(html.contains("持股 1/1，电站收入"), "{html}");
    let html = page(&admin, "/villages").await?.text().await?;
    assert!(
        html.contains("data-reviewed=\"0/1\"") && html.contains("id=\"unreviewed\""),
        "{html}"
    );
    // A viewer may not review.
    assert_eq!(review(&viewer).await?.status(), 403);
    // The accountant reviews: recorded with who, shown on both pages.
    assert_eq!(review(&accountant).await?.status(), 303);
    let html = page(&accountant, "/villages/V1?month=2026-01")
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"review-done\"") && html.contains("li") && html.contains("已核对"),
        "{html}"
    );
    assert!(!html.contains("id=\"review-form\""), "{html}");
    let html = page(&admin, "/villages").await?.text().await?;
    assert!(
        html.contains("data-reviewed=\"1/1\"") && !html.contains("id=\"unreviewed\""),
        "{html}"
    );
    // The same month run again unchanged keeps the review; with other energy it needs another.
    ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(30_000_000),
        month,
        "county",
        true,
    )
    .await?;
    let html = page(&accountant, "/villages/V1?month=2026-01")
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"review-done\""),
        "an identical run keeps its review: {html}"
    );
    ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(31_000_000),
        month,
        "county",
        true,
    )
    .await?;
    let html = page(&accountant, "/villages/V1?month=2026-01")
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"review-stale\"") && html.contains("id=\"review-form\""),
        "{html}"
    );
    // Once paid, a review is refused in place and nothing is recorded.
    ledger::pay_month(&store, month, "county", "农商行代发 2026-01-001").await?;
    let r = review(&accountant).await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    assert!(
        html.contains("id=\"review-error\"") && html.contains("已发放并锁定"),
        "{html}"
    );
    let reviews = store.month_reviews("2026-01").await?;
    assert_eq!(reviews.len(), 1);
    assert_ne!(
        reviews[0].fingerprint,
        store.ledger_month(month).await?.expect("month").fingerprint,
        "the old review still names the old run"
    );
    cancel.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn the_county_sets_a_villages_opening_balance_from_the_village_page() -> anyhow::Result<()> {
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(deployment());
    let (base, cancel, server) = serve(&store, &d).await?;
    let admin = client_with_token(
        &named_token(&store, "county", Role::Admin, vec![ScopeEntry::All]).await?,
    );
    let accountant = client_with_token(
        &named_token(
            &store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let set = |c: &reqwest::Client, body: &'static str| {
        c.post(format!("{base}/villages/V1/opening"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let html = admin
        .get(format!("{base}/villages/V1"))
        .send()
        .await?
        .text()
        .await?;
    assert!(html.contains("id=\"opening-form\""), "{html}");
    // The accountant may see it once set, not set it.
    assert_eq!(set(&accountant, "balance=1&note=x").await?.status(), 403);
    let r = set(&admin, "balance=12%2C000&note=").await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    assert!(
        html.contains("id=\"opening-balance-error\"") && html.contains("id=\"opening-note-error\""),
        "{html}"
    );
    assert!(store.opening_balances().await?.is_empty());
    let r = set(
        &admin,
        "balance=12000.50&advance_outstanding=300&note=%E5%AF%B9%E8%B4%A6%E5%8D%95",
    )
    .await?;
    assert_eq!(r.status(), 303);
    let html = accountant
        .get(format!("{base}/villages/V1"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"opening-set\"") && html.contains("12000.50") && html.contains("300.00"),
        "{html}"
    );
    assert!(!html.contains("id=\"opening-form\""), "{html}");
    // Once a month is recorded the form is gone and a late change is refused in place.
    ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(30_000_000),
        "2026-01".parse()?,
        "county",
        true,
    )
    .await?;
    let html = admin
        .get(format!("{base}/villages/V1?month=2026-01"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        !html.contains("id=\"opening-form\"") && html.contains("12000.50"),
        "{html}"
    );
    let r = set(&admin, "balance=1&note=late").await?;
    assert_eq!(r.status(), 422);
    assert!(r.text().await?.contains("分配已经开始"));
    cancel.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn the_county_records_subsidy_receipts_on_the_villages_page() -> anyhow::Result<()> {
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(deployment());
    let (base, cancel, server) = serve(&store, &d).await?;
    let admin = client_with_token(
        &named_token(&store, "county", Role::Admin, vec![ScopeEntry::All]).await?,
    );
    let operator = client_with_token(
        &named_token(
            &store,
            "op",
            Role::Operator,
            vec![ScopeEntry::County("C1".into())],
        )
        .await?,
    );
    let post = |c: &reqwest::Client, body: &'static str| {
        c.post(format!("{base}/villages/receipts"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_eq!(
        post(&operator, "station=S1&month=2026-01&amount=1&covers=x")
            .await?
            .status(),
        403
    );
    let r = post(&admin, "station=S1&month=2026-1x&amount=-3&covers=").await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    for field in ["receipt_month", "amount", "covers"] {
        assert!(
            html.contains(&format!("id=\"receipt-{field}-error\"")),
            "{field}: {html}"
        );
    }
    assert!(store.receipts().await?.is_empty());
    let r = post(
        &admin,
        "station=S1&month=2026-01&amount=2500&covers=2025%E5%B9%B4%E5%BA%A6",
    )
    .await?;
    assert_eq!(r.status(), 303);
    let html = admin
        .get(format!("{base}/villages"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("data-station=\"S1\" data-month=\"2026-01\"") && html.contains("2500.00"),
        "{html}"
    );
    // A county advance, on the same page.
    let r = admin
        .post(format!("{base}/villages/advances"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("village=V1&month=2026-01&amount=&reference=")
        .send()
        .await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    assert!(
        html.contains("id=\"receipt-advance_amount-error\"") && html.contains("请填写垫付的文号"),
        "{html}"
    );
    let r = admin
        .post(format!("{base}/villages/advances"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("village=V1&month=2026-01&amount=800&reference=%E5%8E%BF%E8%B4%A2%E5%8F%91")
        .send()
        .await?;
    assert_eq!(r.status(), 303);
    assert_eq!(store.advances().await?.len(), 1);
    cancel.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn the_village_accountant_posts_a_payout_adjustment_from_the_village_page(
) -> anyhow::Result<()> {
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(deployment());
    let v = VillageId::new("V1");
    for to in [
        PlanState::Deliberated,
        PlanState::PlanPublished,
        PlanState::TownshipReviewed,
        PlanState::CountyFiled,
        PlanState::Active,
    ] {
        ledger::transition(&store, &d, &v, 2026, to, "村会计", "step").await?;
    }
    let (base, cancel, server) = serve(&store, &d).await?;
    let accountant = client_with_token(
        &named_token(
            &store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let viewer = client_with_token(
        &named_token(&store, "auditor", Role::Viewer, vec![ScopeEntry::All]).await?,
    );
    let post = |c: &reqwest::Client, body: &'static str| {
        c.post(format!("{base}/villages/V1/adjustments"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let html = accountant
        .get(format!("{base}/villages/V1"))
        .send()
        .await?
        .text()
        .await?;
    assert!(html.contains("id=\"adjust-form\""), "{html}");
    assert_eq!(
        post(
            &viewer,
            "household=H1&month=2026-02&corrects=2026-01&amount=60&reason=x"
        )
        .await?
        .status(),
        403
    );
    // Bad input: each problem next to its field, what was typed kept, nothing stored.
    let r = post(
        &accountant,
        "household=H1&month=2026-02&corrects=2026-01&amount=abc&reason=",
    )
    .await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    assert!(
        html.contains("id=\"adjust-adjust_amount-error\"")
            && html.contains("id=\"adjust-reason-error\"")
            && html.contains("value=\"abc\"")
            && html.contains("value=\"2026-02\""),
        "{html}"
    );
    assert!(html.contains("请写明补发原因"), "{html}");
    assert!(store.adjustments().await?.is_empty());
    let r = post(
        &accountant,
        "household=H1&month=2026-02&corrects=2026-03&amount=60&reason=x",
    )
    .await?;
    assert_eq!(r.status(), 422);
    assert!(r.text().await?.contains("id=\"adjust-corrects-error\""));
    // A good one is listed with its amount and reason, and paid in February.
    let r = post(
        &accountant,
        "household=H1&month=2026-02&corrects=2026-01&amount=60&reason=%E5%87%BA%E5%8B%A4%E5%A4%8D%E6%A0%B8",
    )
    .await?;
    assert_eq!(r.status(), 303);
    let html = accountant
        .get(format!("{base}/villages/V1"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"adjustments-table\"")
            && html.contains("60.00")
            && html.contains("出勤复核")
            && html.contains("张小三"),
        "{html}"
    );
    let run = ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(30_000_000),
        "2026-02".parse()?,
        "county",
        true,
    )
    .await?;
    assert!(
        run.villages[0]
            .payouts
            .iter()
            .any(|p| p.line == sunshare::allocate::PlanLine::Adjustment
                && p.amount == sunshare::domain::Fen(6_000)),
        "{:?}",
        run.villages[0].payouts
    );
    cancel.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn the_village_accountant_records_the_months_attendance_from_the_village_page(
) -> anyhow::Result<()> {
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(deployment());
    let (base, cancel, server) = serve(&store, &d).await?;
    let accountant = client_with_token(
        &named_token(
            &store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let reviewer = client_with_token(
        &named_token(
            &store,
            "zhen",
            Role::Reviewer,
            vec![ScopeEntry::Township("T1".into())],
        )
        .await?,
    );
    let post = |c: &reqwest::Client, body: &'static str| {
        c.post(format!("{base}/villages/V1/attendance"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let html = accountant
        .get(format!("{base}/villages/V1?attendance=2026-02"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"attendance-form\"")
            && html.contains("data-job=\"J1\"")
            && html.contains("data-recorded=\"no\""),
        "{html}"
    );
    // Before the job began there is no line to fill.
    let html = accountant
        .get(format!("{base}/villages/V1?attendance=2025-12"))
        .send()
        .await?
        .text()
        .await?;
    assert!(html.contains("id=\"attendance-none\""), "{html}");
    assert_eq!(
        post(&reviewer, "month=2026-02&job=J1&worked=20&required=20")
            .await?
            .status(),
        403
    );
    // More days worked than required: refused next to the field, typed values kept.
    let r = post(&accountant, "month=2026-02&job=J1&worked=23&required=20").await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    assert!(
        html.contains("id=\"attendance-worked-J1-error\"")
            && html.contains("value=\"23\"")
            && html.contains("多于应出勤"),
        "{html}"
    );
    assert!(store.attendance().await?.is_empty());
    let r = post(&accountant, "month=2026-02&job=J1&worked=18&required=20").await?;
    assert_eq!(r.status(), 303);
    let html = accountant
        .get(format!("{base}/villages/V1?attendance=2026-02"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("data-recorded=\"yes\"") && html.contains("value=\"18\""),
        "{html}"
    );
    let rows = store.attendance().await?;
    assert_eq!(
        rows.iter()
            .map(|a| (a.job.as_str(), a.worked, a.required, a.by.as_str()))
            .collect::<Vec<_>>(),
        [("J1", 18, 20, "li")]
    );
    cancel.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn the_village_accountant_drafts_next_years_plan_in_the_browser_and_moves_it(
) -> anyhow::Result<()> {
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(deployment());
    let (base, cancel, server) = serve(&store, &d).await?;
    let accountant = client_with_token(
        &named_token(
            &store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let viewer = client_with_token(
        &named_token(&store, "auditor", Role::Viewer, vec![ScopeEntry::All]).await?,
    );
    let post = |c: &reqwest::Client, path: &str, body: &'static str| {
        c.post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // The village page offers a plan for a year that has none.
    let html = accountant
        .get(format!("{base}/villages/V1"))
        .send()
        .await?
        .text()
        .await?;
    assert!(html.contains("/villages/V1/plans/2026"), "{html}");
    assert!(html.contains("data-draft="), "{html}");
    let page = accountant
        .get(format!("{base}/villages/V1/plans/2030"))
        .send()
        .await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    assert!(
        html.contains("id=\"plan-edit-form\"") && !html.contains("id=\"plan-entry-form\""),
        "{html}"
    );
    assert_eq!(
        post(&viewer, "/villages/V1/plans/2030", "expected_net=1000")
            .await?
            .status(),
        403
    );
    let viewed = viewer
        .get(format!("{base}/villages/V1/plans/2030"))
        .send()
        .await?
        .text()
        .await?;
    assert!(!viewed.contains("id=\"plan-edit-form\""), "{viewed}");

    // Over the income: the problem next to the field, what was typed kept, nothing stored.
    let r = post(
        &accountant,
        "/villages/V1/plans/2030",
        "expected_net=8000&job_wages=7200&temp_labour=1000&small_project=0&reward_subsidy=0&reserve=x",
    )
    .await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    assert!(
        html.contains("id=\"plan-reserve-error\"") && html.contains("value=\"8000\""),
        "{html}"
    );
    let r = post(
        &accountant,
        "/villages/V1/plans/2030",
        "expected_net=8000&job_wages=7200&temp_labour=1000&small_project=0&reward_subsidy=0&reserve=0",
    )
    .await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    assert!(
        html.contains("id=\"plan-expected_net-error\"") && html.contains("8200.00"),
        "{html}"
    );
    assert!(store.stored_plan("V1", 2030).await?.is_none());

    let r = post(
        &accountant,
        "/villages/V1/plans/2030",
        "expected_net=12000&job_wages=7200&temp_labour=1000&small_project=0&reward_subsidy=0&reserve=500",
    )
    .await?;
    assert_eq!(r.status(), 303);
    // A planned payment over the line's budget is refused next to its amount; one within it is listed.
    let r = post(
        &accountant,
        "/villages/V1/plans/2030/entries",
        "line=TEMP_LABOUR&month=2030-04&household=H1&amount=1200&description=road",
    )
    .await?;
    assert_eq!(r.status(), 422);
    assert!(r.text().await?.contains("id=\"entry-amount-error\""));
    let r = post(
        &accountant,
        "/villages/V1/plans/2030/entries",
        "line=TEMP_LABOUR&month=2030-04&household=H1&amount=800&description=%E4%BF%AE%E8%B7%AF",
    )
    .await?;
    assert_eq!(r.status(), 303);
    let html = accountant
        .get(format!("{base}/villages/V1/plans/2030"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"plan-entries-table\"")
            && html.contains("修路")
            && html.contains("张小三")
            && html.contains("800.00"),
        "{html}"
    );
    let id = store.stored_plan("V1", 2030).await?.expect("saved").entries[0].id;
    // The plan API gives the figures and says where the plan is kept.
    let api: serde_json::Value = accountant
        .get(format!("{base}/api/villages/V1/plans/2030"))
        .send()
        .await?
        .json()
        .await?;
    let figures = &api["figures"];
    assert_eq!(figures["source"], "registry", "{api}");
    assert_eq!(figures["expected_net"], "12000.00", "{api}");
    assert_eq!(figures["temp_labour"], "1000.00", "{api}");
    assert_eq!(figures["temp_labour_planned"], "800.00", "{api}");
    let file: serde_json::Value = accountant
        .get(format!("{base}/api/villages/V1/plans/2026"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(file["figures"]["source"], "file", "{file}");
    let none: serde_json::Value = accountant
        .get(format!("{base}/api/villages/V1/plans/2031"))
        .send()
        .await?
        .json()
        .await?;
    assert!(none["figures"].is_null(), "{none}");

    // The drafted plan moves through the workflow like the file's; then it is read-only.
    ledger::transition(
        &store,
        &d,
        &VillageId::new("V1"),
        2030,
        PlanState::Deliberated,
        "村会计",
        "四议",
    )
    .await?;
    let html = accountant
        .get(format!("{base}/villages/V1/plans/2030"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"plan-locked\"") && !html.contains("id=\"plan-edit-form\""),
        "{html}"
    );
    let r = post(
        &accountant,
        &format!("/villages/V1/plans/2030/entries/{id}/remove"),
        "",
    )
    .await?;
    assert_eq!(r.status(), 422);
    assert_eq!(
        store
            .stored_plan("V1", 2030)
            .await?
            .expect("kept")
            .entries
            .len(),
        1
    );
    cancel.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn the_county_adds_and_ends_centralized_station_beneficiaries_on_the_villages_page(
) -> anyhow::Result<()> {
    use sunshare::domain::{Role, ScopeEntry};
    use sunshare::http::testing::client_with_token;
    use sunshare::store::testing::named_token;
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let text = format!(
        "{CONFIG}\n[[households]]\nid = \"H2\"\nvillage = \"V1\"\nhead = \"李四\"\nlabour = \"weak\"\n\
         status = [{{ status = \"not_exited\", from = \"2016-01-01\" }}]\n\
         [[stations]]\nid = \"CS1\"\nname = \"县集中式电站\"\nkind = \"centralized\"\ncounty = \"C1\"\n\
         capacity_kwp = 20000\nlatitude = 37.8\nlongitude = 112.5\ncommissioned = \"2016-06-30\"\n\
         tariff = \"III\"\npayment_per_beneficiary = \"3000\"\nbeneficiaries = [\"H1\"]\n"
    );
    let d = Arc::new(
        Deployment::from_str_with_env("test.toml", &text, &[], &HashSet::new())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let (base, cancel, server) = serve(&store, &d).await?;
    let admin = client_with_token(
        &named_token(&store, "county", Role::Admin, vec![ScopeEntry::All]).await?,
    );
    let accountant = client_with_token(
        &named_token(
            &store,
            "acct",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let post = |c: &reqwest::Client, path: &str, body: &'static str| {
        c.post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // The village's accountant may not change the county's pool, and does not see the panel.
    let r = post(
        &accountant,
        "/villages/pools",
        "station=CS1&household=H2&from=2026-01",
    )
    .await?;
    assert_eq!(r.status(), 403);
    let page = accountant
        .get(format!("{base}/villages"))
        .send()
        .await?
        .text()
        .await?;
    assert!(!page.contains("id=\"pools\""), "{page}");
    // Bad input: each problem next to its field, nothing kept.
    let r = post(
        &admin,
        "/villages/pools",
        "station=S1&household=H9&from=2026-1x",
    )
    .await?;
    assert_eq!(r.status(), 422);
    let html = r.text().await?;
    for field in ["station", "household", "from"] {
        assert!(
            html.contains(&format!("id=\"pool-{field}-error\"")),
            "{field}: {html}"
        );
    }
    assert!(html.contains("不是已登记的集中式电站"), "{html}");
    assert!(store.pool_members().await?.is_empty());
    // H2 from January 2026, then H1 (the file's) ended with March.
    let r = post(
        &admin,
        "/villages/pools",
        "station=CS1&household=H2&from=2026-01",
    )
    .await?;
    assert_eq!(r.status(), 303);
    let r = post(&admin, "/villages/pools/CS1/H1/end", "until=2026-03").await?;
    assert_eq!(r.status(), 303);
    let r = post(&admin, "/villages/pools/CS1/H1/end", "until=2026-04").await?;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await?
        .contains("class=\"field-error pool-end-error\""));
    let page = admin
        .get(format!("{base}/villages"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("data-household=\"H2\" data-in-force=\"true\""),
        "{page}"
    );
    assert!(
        page.contains("data-household=\"H1\" data-in-force=\"false\""),
        "{page}"
    );
    let rows = store.pool_members().await?;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.by == "county"));
    // The month computed from the page's registry pays H2 alone in April.
    let run = ledger::run_month(
        &store,
        &d,
        &FixedEnergy::settled(30_000_000),
        YearMonth::new(2026, 4).ok_or_else(|| anyhow::anyhow!("month"))?,
        "test",
        false,
    )
    .await?;
    let paid: Vec<String> = run.pools[0]
        .lines
        .iter()
        .map(|l| l.household.to_string())
        .collect();
    assert_eq!(paid, ["H2"]);
    cancel.cancel();
    server.await??;
    Ok(())
}
