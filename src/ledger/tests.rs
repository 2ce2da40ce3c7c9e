//! The ledger service against a real store (SQLite always, PostgreSQL when configured).

use super::*;
use crate::allocate::{PlanState, Rule};
use crate::config::Deployment;
use crate::domain::{Fen, VillageId, YearMonth};
use crate::store::testing;
use std::collections::HashSet;

use super::testing::FixedEnergy;

const V: &str = "V1";

fn deployment(extra: &str) -> Deployment {
    let mut t = String::from(
        r#"
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
[[households]]
id = "H2"
village = "V1"
head = "李四"
labour = "weak"
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
lines = { job_wages = "7200", temp_labour = "1000", small_project = "0", reward_subsidy = "0", reserve = "1200" }
temp_labour = [{ household = "H2", month = "2026-02", amount = "1000", work = "ditch clearing, 10 days" }]
"#,
    );
    t.push_str(extra);
    match Deployment::from_str_with_env("test.toml", &t, &[], &HashSet::new()) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn ym(s: &str) -> YearMonth {
    s.parse().expect("month")
}

async fn activate(store: &Store, d: &Deployment) {
    let v = VillageId::new(V);
    for to in [
        PlanState::Deliberated,
        PlanState::PlanPublished,
        PlanState::TownshipReviewed,
        PlanState::CountyFiled,
        PlanState::Active,
    ] {
        transition(store, d, &v, 2026, to, "村会计 王五", &format!("to {to}"))
            .await
            .expect("transition");
    }
}

#[tokio::test]
async fn workflow_runs_reruns_locks_and_audits() {
    for t in testing::all("workflow_runs_reruns_locks_and_audits")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let energy = FixedEnergy::settled(30_000_000); // 30,000 kWh → base 9,960.00
        let v = VillageId::new(V);

        // Not ACTIVE yet: income recorded, no payouts.
        let jan = run_month(store, &d, &energy, ym("2026-01"), "test", true)
            .await
            .expect("jan");
        assert!(jan.villages[0].payouts.is_empty(), "{}", t.name);
        // Skipping forward is refused: no gaps in the ledger.
        let gap = run_month(store, &d, &energy, ym("2026-03"), "test", true).await;
        assert!(matches!(gap, Err(Error::Gap { .. })), "{:?}", gap);

        // Workflow: illegal jump refused; who and note required; each step recorded.
        let jump = transition(store, &d, &v, 2026, PlanState::Active, "x", "skip").await;
        assert!(matches!(jump, Err(Error::Workflow(_))), "{jump:?}");
        let no_note = transition(store, &d, &v, 2026, PlanState::Deliberated, "x", " ").await;
        assert!(matches!(no_note, Err(Error::Workflow(_))));
        activate(store, &d).await;
        assert_eq!(
            store.plan_state(V, 2026).await.expect("state"),
            PlanState::Active
        );
        let history = store.plan_history(V, 2026).await.expect("history");
        assert_eq!(history.len(), 5);
        assert_eq!(history[4].to, "ACTIVE");
        assert_eq!(history[4].who, "村会计 王五");

        // January again: now with the job paid; re-running unchanged gives identical rows.
        let jan = run_month(store, &d, &energy, ym("2026-01"), "test", true)
            .await
            .expect("jan");
        let first = store
            .village_month(V, "2026-01")
            .await
            .expect("read")
            .expect("row");
        let jan2 = run_month(store, &d, &energy, ym("2026-01"), "test", true)
            .await
            .expect("rerun");
        assert_eq!(jan, jan2);
        let second = store
            .village_month(V, "2026-01")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(first, second);
        assert_eq!(first.payouts_fen, 60_000);
        assert_eq!(
            first.entries.iter().filter(|e| e.kind == "PAYOUT").count(),
            1
        );
        assert_eq!(
            first.cash_fen,
            first.payouts_fen + first.reserve_fen + first.carry_over_fen
        );

        // Pay January: locked, re-run refused, nothing changes.
        pay_month(store, ym("2026-01"), "county finance", "bank batch 1")
            .await
            .expect("pay");
        let locked = run_month(store, &d, &energy, ym("2026-01"), "test", true).await;
        assert!(matches!(locked, Err(Error::Locked(_))), "{locked:?}");
        assert_eq!(
            store
                .village_month(V, "2026-01")
                .await
                .expect("read")
                .expect("row")
                .month_status,
            "PAID"
        );

        // February carries January's closing balance.
        let feb = run_month(store, &d, &energy, ym("2026-02"), "test", true)
            .await
            .expect("feb");
        assert_eq!(feb.villages[0].opening_balance.0, first.closing_fen);

        let audit = store.audit_trail(100).await.expect("audit");
        assert!(audit
            .iter()
            .any(|a| a.action == "month_paid" && a.who == "county finance"));
        assert!(audit.iter().any(|a| a.detail.contains("re-run, unchanged")));
        assert_eq!(
            audit
                .iter()
                .filter(|a| a.action == "plan_transition")
                .count(),
            5
        );
        t.store.close().await;
    }
}

#[tokio::test]
async fn a_broken_rule_records_nothing() {
    for t in testing::all("a_broken_rule_records_nothing")
        .await
        .expect("stores")
    {
        let store = &t.store;
        // H1 already exited before the plan year: not eligible for the job.
        let mut d = deployment("");
        d.households[0].status.push(crate::domain::StatusPeriod {
            status: crate::domain::PovertyStatus::Exited,
            from: chrono::NaiveDate::from_ymd_opt(2025, 6, 1).expect("date"),
        });
        activate(store, &d).await;
        let err = run_month(
            store,
            &d,
            &FixedEnergy::settled(30_000_000),
            ym("2026-01"),
            "test",
            true,
        )
        .await
        .expect_err("ineligible");
        match &err {
            Error::Allocate(e) => assert_eq!(e.violated(), Some(Rule::BeneficiaryEligible)),
            other => panic!("{other:?}"),
        }
        assert!(store
            .ledger_month(ym("2026-01"))
            .await
            .expect("read")
            .is_none());
        assert!(store
            .village_month(V, "2026-01")
            .await
            .expect("read")
            .is_none());
        t.store.close().await;
    }
}

#[test]
fn names_are_masked_for_the_public_notice() {
    assert_eq!(mask_name("张小三"), "张*三");
    assert_eq!(mask_name("李四"), "李*");
    assert_eq!(mask_name("欧阳小明"), "欧**明");
    assert_eq!(mask_name("王"), "*");
}

#[test]
fn tokens_in_the_deployment_file_are_refused_with_where_they_went() {
    let err = crate::config::Deployment::from_str_with_env(
        "fleet.toml",
        "[[ledger.tokens]]\nname = \"county finance\"\nrole = \"accountant\"\ntoken = \"s3cret-token\"\n",
        &[],
        &Default::default(),
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("ledger.tokens"), "{text}");
    assert!(text.contains("sunshare user add"), "{text}");
    assert!(
        !text.contains("s3cret"),
        "the old secret is not echoed: {text}"
    );
}

#[test]
fn exports_write_exact_amounts_and_roster_accounts() {
    let d = deployment("");
    let row = crate::store::VillageMonthRow {
        month: "2026-02".into(),
        village: V.into(),
        provisional: true,
        plan_state: Some("ACTIVE".into()),
        opening_fen: 0,
        income_fen: 100_001,
        advance_fen: 0,
        advance_repaid_fen: 0,
        advance_outstanding_fen: 0,
        cash_fen: 100_001,
        payouts_fen: 60_000 + 100_000,
        reserve_fen: 0,
        carry_over_fen: -59_999,
        closing_fen: -59_999,
        notes: vec![],
        entries: vec![
            crate::store::EntryRow {
                kind: "PAYOUT".into(),
                line: "JOB_WAGES".into(),
                station: None,
                household: Some("H1".into()),
                payee: "H1".into(),
                reference: "J1".into(),
                amount_fen: 60_000,
                basis: "wage".into(),
            },
            crate::store::EntryRow {
                kind: "PAYOUT".into(),
                line: "TEMP_LABOUR".into(),
                station: None,
                household: Some("H1".into()),
                payee: "H1".into(),
                reference: "ditch".into(),
                amount_fen: 100_000,
                basis: "plan".into(),
            },
        ],
        month_status: "COMPUTED".into(),
    };
    let public = String::from_utf8(
        export::to_csv(&export::statement_table(&row, &d, export::Audience::Public)).expect("csv"),
    )
    .expect("utf8");
    assert!(
        public.contains("张*三") && !public.contains("张小三") && !public.contains("H1 "),
        "{public}"
    );
    assert!(public.contains("1000.01") && public.contains("600.00"));
    let roster = String::from_utf8(export::to_csv(&export::roster_table(&row, &d)).expect("csv"))
        .expect("utf8");
    assert!(
        roster.contains("H1,张小三,6228000011112222,1600.00,JOB_WAGES TEMP_LABOUR"),
        "{roster}"
    );
    let xlsx = export::to_xlsx("roster", &export::roster_table(&row, &d)).expect("xlsx");
    assert!(xlsx.starts_with(b"PK"), "an xlsx is a zip");
}

#[tokio::test]
async fn demo_allocation_runs_a_year_cleanly() {
    let t = testing::sqlite().await.expect("store");
    let mut d = deployment(
        r#"
[[households]]
id = "H3"
village = "V1"
head = "赵六"
labour = "none"
status = [{ status = "not_exited", from = "2016-01-01" }]
"#,
    );
    d.plans.clear();
    d.jobs.clear();
    demo::add_demo_allocation(&mut d, 2026);
    crate::allocate::Book::new(&d.allocation_input()).expect("demo plans obey every rule");
    assert_eq!(d.plans.len(), 1);
    assert!(!d.jobs.is_empty());
    demo::activate_plans(&t.store, &d, 2026, "demo")
        .await
        .expect("activate");
    assert_eq!(
        t.store.plan_state(V, 2026).await.expect("state"),
        PlanState::Active
    );
    // A poor year: 80 kWh per kW a month (960 a year), below the 1,100 the plan assumes.
    for m in 1..=12 {
        let month = YearMonth::new(2026, m).expect("month");
        let run = run_month(
            &t.store,
            &d,
            &FixedEnergy::settled(24_000_000),
            month,
            "demo",
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{month}: {e}"));
        assert!(!run.villages[0].payouts.is_empty(), "{month}");
    }
    t.store.close().await;
}

#[test]
fn check_config_reports_allocation_rule_errors() {
    let text = r#"
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
[[plans]]
village = "V1"
year = 2020
expected_net = "1000"
lines = { job_wages = "0", temp_labour = "0", small_project = "1000", reward_subsidy = "0", reserve = "0" }
"#;
    let err = Deployment::from_str_with_env("t.toml", text, &[], &HashSet::new())
        .expect_err("labour share");
    let msg = err.to_string();
    assert!(
        msg.contains("LABOUR_SHARE") && msg.contains("t.toml:14"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_steps_record_is_kept_with_its_transition_on_every_backend() {
    for t in testing::all("a_steps_record_is_kept_with_its_transition")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let v = VillageId::new(V);
        let input = super::steps::StepInput {
            meetings: ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"].map(str::to_owned),
            attachments: "会议记录.pdf".into(),
            ..Default::default()
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 10).expect("day");
        let record = super::steps::check(PlanState::Draft, PlanState::Deliberated, &input, today)
            .expect("a complete record");
        super::transition_recorded(
            store,
            &d,
            &v,
            2026,
            PlanState::Deliberated,
            "村会计",
            "四议通过",
            &record,
        )
        .await
        .expect("transition");
        // A step without a record stores none.
        transition(store, &d, &v, 2026, PlanState::Draft, "村会计", "退回")
            .await
            .expect("back");
        let history = store.plan_history(V, 2026).await.expect("history");
        let kept: super::steps::StepRecord =
            serde_json::from_str(history[0].record.as_deref().expect("a record")).expect("json");
        assert_eq!(kept, record, "{}", t.name);
        assert_eq!(history[1].record, None, "{}", t.name);
    }
}

#[tokio::test]
async fn a_review_names_its_run_is_replaced_by_the_next_and_stops_at_payment_on_every_backend() {
    for t in testing::all("a_review_names_its_run")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let v = VillageId::new(V);
        let month = ym("2026-01");
        let missing = super::review_month(store, &v, month, "村会计", "").await;
        assert!(matches!(missing, Err(Error::NotFound(_))), "{}", t.name);
        run_month(
            store,
            &d,
            &FixedEnergy::settled(30_000_000),
            month,
            "test",
            true,
        )
        .await
        .expect("jan");
        let first = super::review_month(store, &v, month, "村会计", " 已核对 ")
            .await
            .expect("review");
        assert_eq!(first.note, "已核对", "{}", t.name);
        let run = store.ledger_month(month).await.expect("read").expect("jan");
        assert_eq!(first.fingerprint, run.fingerprint, "{}", t.name);
        super::review_month(store, &v, month, "村主任", "")
            .await
            .expect("again");
        let reviews = store.month_reviews("2026-01").await.expect("reviews");
        assert_eq!(
            reviews.len(),
            1,
            "{}: one review per village and month",
            t.name
        );
        assert_eq!(reviews[0].by, "村主任", "{}", t.name);
        super::pay_month(store, month, "county", "batch 1")
            .await
            .expect("pay");
        let paid = super::review_month(store, &v, month, "村会计", "").await;
        assert!(matches!(paid, Err(Error::Locked(_))), "{}", t.name);
    }
}

#[tokio::test]
async fn the_first_month_opens_from_the_opening_balance_which_is_then_fixed_on_every_backend() {
    for t in testing::all("the_first_month_opens_from_the_opening_balance")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let v = VillageId::new(V);
        let bad = super::set_opening_balance(store, &d, &v, "-5", "x", " ", "county")
            .await
            .expect("checked");
        let fields: Vec<String> = bad
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            ["balance", "advance_outstanding", "note"],
            "{}",
            t.name
        );
        assert!(
            store.opening_balances().await.expect("read").is_empty(),
            "{}",
            t.name
        );
        super::set_opening_balance(
            store,
            &d,
            &v,
            "12345.67",
            "",
            "农商行 2025-12-31 对账单",
            "county",
        )
        .await
        .expect("set")
        .expect("valid");
        let jan = run_month(
            store,
            &d,
            &FixedEnergy::settled(30_000_000),
            ym("2026-01"),
            "test",
            true,
        )
        .await
        .expect("jan");
        assert_eq!(
            jan.villages[0].opening_balance,
            Fen(1_234_567),
            "{}",
            t.name
        );
        let row = store
            .village_month(V, "2026-01")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(row.opening_fen, 1_234_567, "{}", t.name);
        let late = super::set_opening_balance(store, &d, &v, "1", "", "later", "county")
            .await
            .expect("checked");
        assert_eq!(
            late.err()
                .and_then(|p| p.first().map(|p| p.key.clone()))
                .as_deref(),
            Some("opening.err.started"),
            "{}",
            t.name
        );
        assert_eq!(
            store.opening_balances().await.expect("read")[0].balance,
            Fen(1_234_567)
        );
    }
}

#[tokio::test]
async fn a_receipt_recorded_in_the_browser_counts_in_its_month_and_not_in_a_paid_one_on_every_backend(
) {
    for t in testing::all("a_receipt_recorded_in_the_browser")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let station = d.stations[0].id.to_string();
        let bad = super::record_receipt(store, &d, "NOPE", "2026-13", "0", " ", "county")
            .await
            .expect("checked");
        let fields: Vec<String> = bad
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            ["station", "receipt_month", "amount", "covers"],
            "{}",
            t.name
        );
        let energy = FixedEnergy::settled(30_000_000);
        let before = run_month(store, &d, &energy, ym("2026-01"), "test", false)
            .await
            .expect("jan");
        super::record_receipt(
            store,
            &d,
            &station,
            "2026-01",
            "1234.56",
            "2025 年度补贴",
            "county",
        )
        .await
        .expect("recorded")
        .expect("valid");
        let after = run_month(store, &d, &energy, ym("2026-01"), "test", true)
            .await
            .expect("jan");
        assert_eq!(
            after.stations[0].subsidy_received,
            before.stations[0]
                .subsidy_received
                .checked_add(Fen(123_456))
                .expect("sum"),
            "{}",
            t.name
        );
        super::pay_month(store, ym("2026-01"), "county", "batch")
            .await
            .expect("pay");
        let late = super::record_receipt(store, &d, &station, "2026-01", "1", "late", "county")
            .await
            .expect("checked");
        assert_eq!(
            late.err()
                .and_then(|p| p.first().map(|p| p.key.clone()))
                .as_deref(),
            Some("receipt.err.month_paid"),
            "{}",
            t.name
        );
        assert_eq!(store.receipts().await.expect("read").len(), 1, "{}", t.name);
    }
}

#[tokio::test]
async fn an_advance_recorded_in_the_browser_reaches_the_village_and_not_a_paid_month_on_every_backend(
) {
    for t in testing::all("an_advance_recorded_in_the_browser")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let bad = super::record_advance(store, &d, "NOPE", "x", "0", "", "county")
            .await
            .expect("checked");
        let fields: Vec<String> = bad
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            ["village", "advance_month", "advance_amount", "reference"],
            "{}",
            t.name
        );
        super::record_advance(
            store,
            &d,
            V,
            "2026-01",
            "800",
            "县财发〔2026〕12 号",
            "county",
        )
        .await
        .expect("recorded")
        .expect("valid");
        let jan = run_month(
            store,
            &d,
            &FixedEnergy::settled(30_000_000),
            ym("2026-01"),
            "test",
            true,
        )
        .await
        .expect("jan");
        let village = jan
            .villages
            .iter()
            .find(|x| x.village.as_str() == V)
            .expect("V");
        assert_eq!(village.advance, Fen(80_000), "{}", t.name);
        super::pay_month(store, ym("2026-01"), "county", "batch")
            .await
            .expect("pay");
        let late = super::record_advance(store, &d, V, "2026-01", "1", "late", "county")
            .await
            .expect("checked");
        assert_eq!(
            late.err()
                .and_then(|p| p.first().map(|p| p.key.clone()))
                .as_deref(),
            Some("advance.err.month_paid"),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn a_month_recorded_with_the_old_crc32_fingerprint_is_told_apart_honestly_on_every_backend() {
    for t in testing::all("a_month_recorded_with_the_old_crc32_fingerprint")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let v = VillageId::new(V);
        let month = ym("2026-01");
        let energy = FixedEnergy::settled(30_000_000);
        let run = run_month(store, &d, &energy, month, "test", true)
            .await
            .expect("jan");
        let fp = super::fingerprint(&run).expect("fingerprint");
        assert_eq!(fp.sha256.len(), 64, "{}", t.name);
        assert!(fp.sha256.chars().all(|c| c.is_ascii_hexdigit()));
        let row = store.ledger_month(month).await.expect("read").expect("jan");
        assert_eq!(row.fingerprint, fp.sha256, "{}", t.name);
        // A database written before SHA-256: the month and its review carry the CRC32.
        super::review_month(store, &v, month, "村会计", "")
            .await
            .expect("review");
        for table in ["ledger_months", "ledger_village_reviews"] {
            sqlx::query(&format!(
                "UPDATE {table} SET fingerprint = $1 WHERE month = $2"
            ))
            .bind(&fp.legacy_crc32)
            .bind(month.to_string())
            .execute(store.pool())
            .await
            .expect("old fingerprint");
        }
        // Re-run with the same figures: unchanged, says why the fingerprint differs, and the
        // review of that run still holds.
        run_month(store, &d, &energy, month, "test", true)
            .await
            .expect("re-run");
        let trail = store.audit_trail(1).await.expect("audit");
        assert!(
            trail[0]
                .detail
                .contains("re-run, unchanged; fingerprint algorithm changed from CRC32 to SHA-256"),
            "{}: {}",
            t.name,
            trail[0].detail
        );
        assert!(
            trail[0].detail.contains(&fp.legacy_crc32),
            "{}",
            trail[0].detail
        );
        assert!(trail[0].detail.contains(&fp.sha256), "{}", trail[0].detail);
        let row = store.ledger_month(month).await.expect("read").expect("jan");
        assert_eq!(row.fingerprint, fp.sha256, "{}", t.name);
        let reviews = store.month_reviews("2026-01").await.expect("reviews");
        assert_eq!(
            reviews[0].fingerprint, fp.sha256,
            "{}: the review holds",
            t.name
        );
        // Other figures over a CRC32 month: changed, and the review no longer holds.
        sqlx::query("UPDATE ledger_months SET fingerprint = $1 WHERE month = $2")
            .bind(&fp.legacy_crc32)
            .bind(month.to_string())
            .execute(store.pool())
            .await
            .expect("old fingerprint");
        let other = run_month(
            store,
            &d,
            &FixedEnergy::settled(31_000_000),
            month,
            "test",
            true,
        )
        .await
        .expect("changed run");
        let trail = store.audit_trail(1).await.expect("audit");
        assert!(
            trail[0].detail.starts_with("re-run, changed: fingerprint"),
            "{}: {}",
            t.name,
            trail[0].detail
        );
        let new = super::fingerprint(&other).expect("fingerprint").sha256;
        assert_ne!(new, fp.sha256);
        let reviews = store.month_reviews("2026-01").await.expect("reviews");
        assert_eq!(reviews[0].fingerprint, fp.sha256, "{}", t.name);
        let row = store.ledger_month(month).await.expect("read").expect("jan");
        assert_ne!(reviews[0].fingerprint, row.fingerprint, "{}", t.name);
    }
}

#[tokio::test]
async fn an_adjustment_recorded_in_the_browser_is_paid_in_its_month_and_refused_where_the_month_would_fail_on_every_backend(
) {
    for t in testing::all("an_adjustment_recorded_in_the_browser")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment("");
        let v = VillageId::new(V);
        let input = |household: &str, month: &str, corrects: &str, amount: &str, reason: &str| {
            super::AdjustmentInput {
                household: household.into(),
                month: month.into(),
                corrects: corrects.into(),
                amount: amount.into(),
                reason: reason.into(),
            }
        };
        let keys = |r: Result<(), Vec<super::households::Problem>>| -> Vec<(String, String)> {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.field, p.key))
                .collect()
        };
        // Every field wrong at once: each named.
        let bad = super::record_adjustment(
            store,
            &d,
            &v,
            &input("H9", "2026-13", "x", "-5", " "),
            "acc",
        )
        .await
        .expect("checked");
        let fields: Vec<String> = keys(bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "household",
                "corrects",
                "adjust_month",
                "adjust_amount",
                "reason"
            ],
            "{}",
            t.name
        );
        // A correction of a later month, and one before the plan is active: refused before the
        // month's allocation would refuse the whole county.
        let later = super::record_adjustment(
            store,
            &d,
            &v,
            &input("H1", "2026-02", "2026-03", "60", "r"),
            "acc",
        )
        .await
        .expect("checked");
        assert_eq!(
            keys(later),
            [(
                "corrects".to_owned(),
                "adjust.err.corrects_not_earlier".to_owned()
            )],
            "{}",
            t.name
        );
        let early = super::record_adjustment(
            store,
            &d,
            &v,
            &input("H1", "2026-02", "2026-01", "60", "r"),
            "acc",
        )
        .await
        .expect("checked");
        assert_eq!(
            keys(early),
            [(
                "adjust_month".to_owned(),
                "adjust.err.plan_not_active".to_owned()
            )],
            "{}",
            t.name
        );
        assert!(
            store.adjustments().await.expect("read").is_empty(),
            "{}",
            t.name
        );

        // Under the active plan it is paid in its month, as its own line.
        activate(store, &d).await;
        super::record_adjustment(
            store,
            &d,
            &v,
            &input("H1", "2026-02", "2026-01", "60", "1 月出勤复核为 22 天"),
            "acc",
        )
        .await
        .expect("recorded")
        .expect("valid");
        let energy = FixedEnergy::settled(30_000_000);
        let feb = run_month(store, &d, &energy, ym("2026-02"), "test", true)
            .await
            .expect("feb");
        let paid: Vec<(String, Fen)> = feb.villages[0]
            .payouts
            .iter()
            .filter(|p| p.line == crate::allocate::PlanLine::Adjustment)
            .map(|p| (p.reference.to_string(), p.amount))
            .collect();
        assert_eq!(
            paid,
            [("corrects 2026-01".to_owned(), Fen(6_000))],
            "{}",
            t.name
        );
        super::pay_month(store, ym("2026-02"), "county", "batch")
            .await
            .expect("pay");
        let locked = super::record_adjustment(
            store,
            &d,
            &v,
            &input("H1", "2026-02", "2026-01", "1", "r"),
            "acc",
        )
        .await
        .expect("checked");
        assert_eq!(
            keys(locked),
            [(
                "adjust_month".to_owned(),
                "adjust.err.month_paid".to_owned()
            )],
            "{}",
            t.name
        );
        assert_eq!(
            store.adjustments().await.expect("read").len(),
            1,
            "{}",
            t.name
        );
        let audit = store.audit_trail(50).await.expect("audit");
        assert!(
            audit
                .iter()
                .any(|a| a.action == "payout_adjustment" && a.detail.contains("H1")),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn attendance_recorded_in_the_browser_prorates_the_wage_replaces_the_files_and_is_checked_on_every_backend(
) {
    for t in testing::all("attendance_recorded_in_the_browser")
        .await
        .expect("stores")
    {
        let store = &t.store;
        // The file says J1 worked every day of February; the browser's record replaces it.
        let d = deployment(
            "[[attendance]]\njob = \"J1\"\nmonth = \"2026-02\"\nworked = 20\nrequired = 20\n",
        );
        let v = VillageId::new(V);
        let line = |job: &str, worked: &str, required: &str| super::AttendanceInput {
            job: job.into(),
            worked: worked.into(),
            required: required.into(),
        };
        let fields = |r: Result<usize, Vec<super::households::Problem>>| -> Vec<(String, String)> {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.field, p.key))
                .collect()
        };
        let bad_month = super::record_attendance(store, &d, &v, "2026-2x", &[], "acc")
            .await
            .expect("checked");
        assert_eq!(
            fields(bad_month),
            [(
                "attendance_month".to_owned(),
                "attendance.err.month_bad".to_owned()
            )],
            "{}",
            t.name
        );
        for (worked, required, field, key) in [
            ("21", "20", "worked.J1", "attendance.err.more_than_required"),
            ("x", "20", "worked.J1", "attendance.err.count_bad"),
            ("5", "0", "required.J1", "attendance.err.count_bad"),
            ("5", "", "required.J1", "attendance.err.half_given"),
        ] {
            let r = super::record_attendance(
                store,
                &d,
                &v,
                "2026-02",
                &[line("J1", worked, required)],
                "acc",
            )
            .await
            .expect("checked");
            assert_eq!(
                fields(r),
                [(field.to_owned(), key.to_owned())],
                "{}: {worked}/{required}",
                t.name
            );
        }
        assert!(
            store.attendance().await.expect("read").is_empty(),
            "{}",
            t.name
        );
        // A job that is not the village's, or not held that month, is no line.
        let n = super::record_attendance(
            store,
            &d,
            &v,
            "2025-12",
            &[line("J1", "10", "20"), line("J9", "1", "2")],
            "acc",
        )
        .await
        .expect("checked")
        .expect("valid");
        assert_eq!(n, 0, "{}", t.name);

        activate(store, &d).await;
        let n =
            super::record_attendance(store, &d, &v, "2026-02", &[line("J1", "15", "20")], "acc")
                .await
                .expect("checked")
                .expect("valid");
        assert_eq!(n, 1, "{}", t.name);
        let energy = FixedEnergy::settled(30_000_000);
        let feb = run_month(store, &d, &energy, ym("2026-02"), "test", true)
            .await
            .expect("feb");
        let wage: Vec<Fen> = feb.villages[0]
            .payouts
            .iter()
            .filter(|p| p.line == crate::allocate::PlanLine::JobWages)
            .map(|p| p.amount)
            .collect();
        // 600 yuan x 15/20.
        assert_eq!(wage, [Fen(45_000)], "{}", t.name);
        super::pay_month(store, ym("2026-02"), "county", "batch")
            .await
            .expect("pay");
        let late =
            super::record_attendance(store, &d, &v, "2026-02", &[line("J1", "20", "20")], "acc")
                .await
                .expect("checked");
        assert_eq!(
            fields(late),
            [(
                "attendance_month".to_owned(),
                "attendance.err.month_paid".to_owned()
            )],
            "{}",
            t.name
        );
        assert_eq!(
            store.attendance().await.expect("read")[0].worked,
            15,
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn a_plan_drafted_in_the_browser_is_checked_as_a_run_would_kept_to_drafts_and_allocated_on_every_backend(
) {
    use super::plans::{self, EntryInput, PlanInput};
    for t in testing::all("a_plan_drafted_in_the_browser")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let mut d = deployment("");
        d.policy
            .labour_share
            .push(crate::allocate::LabourShareRule {
                year: 2027,
                province: None,
                min_percent: 60,
                base: crate::allocate::ShareBase::Net,
            });
        let v = VillageId::new(V);
        let fields = |r: Result<(), Vec<super::households::Problem>>| -> Vec<(String, String)> {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.field, p.key))
                .collect()
        };
        let input = |net: &str, job: &str, temp: &str, small: &str, reward: &str, reserve: &str| {
            PlanInput {
                expected_net: net.into(),
                expected_gross: String::new(),
                job_wages: job.into(),
                temp_labour: temp.into(),
                small_project: small.into(),
                reward_subsidy: reward.into(),
                reserve: reserve.into(),
                status_change_immediate: false,
            }
        };
        let save = |i: PlanInput| {
            let (store, d, v) = (store, &d, &v);
            async move {
                plans::save_plan(store, d, v, 2027, &i, "村会计 王五")
                    .await
                    .expect("checked")
            }
        };
        // Each refusal names its field; nothing is stored.
        for (i, field, key) in [
            (
                input("", "7200", "0", "0", "0", "0"),
                "expected_net",
                "net_empty",
            ),
            (
                input("50000", "-5", "0", "0", "0", "0"),
                "job_wages",
                "amount_bad",
            ),
            (
                input("9000", "7200", "2000", "0", "0", "0"),
                "expected_net",
                "within_income",
            ),
            (
                input("50000", "7200", "2000", "0", "0", "0"),
                "job_wages",
                "labour_share",
            ),
            // J1 is paid 600 a month all of 2027: 7,200 of wages in a budget of 7,000.
            (
                input("10000", "7000", "2000", "0", "0", "0"),
                "job_wages",
                "line_budget",
            ),
        ] {
            assert_eq!(
                fields(save(i).await),
                [(field.to_owned(), format!("plan_edit.err.{key}"))],
                "{}: {field}",
                t.name
            );
        }
        let over = save(input("9000", "7200", "2000", "0", "0", "0")).await;
        let args = &over.expect_err("over")[0].args;
        assert!(
            args.contains(&("planned".to_owned(), "9200.00".to_owned()))
                && args.contains(&("limit".to_owned(), "9000.00".to_owned())),
            "{}: {args:?}",
            t.name
        );
        assert!(
            store.stored_plan(V, 2027).await.expect("read").is_none(),
            "{}",
            t.name
        );

        save(input("12000", "7200", "2000", "1500", "800", "500"))
            .await
            .expect("a plan within every rule");
        let entry = |line: &str, month: &str, household: &str, amount: &str| EntryInput {
            line: line.into(),
            month: month.into(),
            household: household.into(),
            payee: String::new(),
            amount: amount.into(),
            description: "road repair, 15 days".into(),
            approval: String::new(),
        };
        let add = |e: EntryInput| {
            let (store, d, v) = (store, &d, &v);
            async move {
                plans::add_entry(store, d, v, 2027, &e, "村会计 王五")
                    .await
                    .expect("checked")
            }
        };
        add(entry("TEMP_LABOUR", "2027-03", "H2", "1500"))
            .await
            .expect("temporary labour within its budget");
        let project = EntryInput {
            payee: String::new(),
            ..entry("SMALL_PROJECT", "2027-04", "", "1500")
        };
        let reward = entry("REWARD_SUBSIDY", "2027-05", "H1", "800");
        for (e, field, key) in [
            (
                entry("TEMP_LABOUR", "2027-06", "H2", "600"),
                "amount",
                "line_budget",
            ),
            (
                entry("TEMP_LABOUR", "2026-06", "H2", "100"),
                "month",
                "month_outside",
            ),
            (
                entry("TEMP_LABOUR", "2027-13", "H2", "100"),
                "month",
                "month_bad",
            ),
            (
                entry("TEMP_LABOUR", "2027-06", "H9", "100"),
                "household",
                "household_unknown",
            ),
            (
                entry("TEMP_LABOUR", "2027-06", "H2", "0"),
                "amount",
                "amount_bad",
            ),
            (
                entry("JOB_WAGES", "2027-06", "H2", "100"),
                "line",
                "line_bad",
            ),
            (project, "payee", "payee_empty"),
            (reward, "approval", "approval_empty"),
        ] {
            assert_eq!(
                fields(add(e).await),
                [(field.to_owned(), format!("plan_edit.err.{key}"))],
                "{}: {field}",
                t.name
            );
        }
        add(EntryInput {
            approval: "县乡振〔2027〕12号".into(),
            ..entry("REWARD_SUBSIDY", "2027-05", "H1", "800")
        })
        .await
        .expect("an approved reward");
        let stored = store
            .stored_plan(V, 2027)
            .await
            .expect("read")
            .expect("saved");
        assert_eq!(stored.entries.len(), 2, "{}", t.name);
        let effective = super::households::effective(store, &d)
            .await
            .expect("overlay");
        let p = effective
            .plans
            .iter()
            .find(|p| p.year == 2027)
            .expect("the browser's plan is in force");
        assert_eq!(
            (p.expected_net, p.temp_labour.len(), p.rewards.len()),
            (Fen(1_200_000), 1, 1),
            "{}",
            t.name
        );
        let audit: Vec<String> = store
            .audit_trail(100)
            .await
            .expect("audit")
            .into_iter()
            .map(|a| a.action)
            .collect();
        for action in ["plan_drafted", "plan_entry_added"] {
            assert!(audit.iter().any(|a| a == action), "{}: {action}", t.name);
        }

        // A plan that has left DRAFT is not changed.
        transition(
            store,
            &d,
            &v,
            2027,
            PlanState::Deliberated,
            "村会计 王五",
            "四议",
        )
        .await
        .expect("the drafted plan moves");
        assert_eq!(
            fields(save(input("12000", "7200", "2000", "1500", "800", "400")).await),
            [("plan".to_owned(), "plan_edit.err.not_draft".to_owned())],
            "{}",
            t.name
        );
        let id = stored.entries[0].id;
        assert_eq!(
            fields(
                plans::remove_entry(store, &d, &v, 2027, id, "acc")
                    .await
                    .expect("checked")
            ),
            [("entry".to_owned(), "plan_edit.err.not_draft".to_owned())],
            "{}",
            t.name
        );

        // The file's plan of 2026 comes into the registry, entries and all, on its first save, and
        // is what the month runs over; a paid month's entries stay.
        save_2026(store, &d, "1200").await.expect("saved");
        let s2026 = store
            .stored_plan(V, 2026)
            .await
            .expect("read")
            .expect("copied");
        assert_eq!(
            s2026
                .entries
                .iter()
                .map(|e| (e.line, e.month, e.amount))
                .collect::<Vec<_>>(),
            [(
                crate::allocate::PlanLine::TempLabour,
                ym("2026-02"),
                Fen(100_000)
            )],
            "{}",
            t.name
        );
        activate(store, &d).await;
        let energy = FixedEnergy::settled(30_000_000);
        let feb = run_month(store, &d, &energy, ym("2026-02"), "test", true)
            .await
            .expect("feb");
        assert!(
            feb.villages[0].payouts.iter().any(
                |p| p.line == crate::allocate::PlanLine::TempLabour && p.amount == Fen(100_000)
            ),
            "{}",
            t.name
        );
        super::pay_month(store, ym("2026-02"), "county", "batch")
            .await
            .expect("pay");
        for to in [PlanState::Deliberated, PlanState::Draft] {
            transition(store, &d, &v, 2026, to, "村会计 王五", "amendment")
                .await
                .expect("back to draft");
        }
        assert_eq!(
            fields(
                plans::remove_entry(store, &d, &v, 2026, s2026.entries[0].id, "acc")
                    .await
                    .expect("checked")
            ),
            [("entry".to_owned(), "plan_edit.err.month_paid".to_owned())],
            "{}",
            t.name
        );
        save_2026(store, &d, "1000")
            .await
            .expect("the budgets may change");
        assert_eq!(
            store
                .stored_plan(V, 2026)
                .await
                .expect("read")
                .expect("kept")
                .entries
                .len(),
            1,
            "{}",
            t.name
        );
    }
}

async fn save_2026(
    store: &Store,
    d: &Deployment,
    reserve: &str,
) -> Result<(), Vec<super::households::Problem>> {
    let input = super::plans::PlanInput {
        expected_net: "100000".into(),
        expected_gross: String::new(),
        job_wages: "7200".into(),
        temp_labour: "1000".into(),
        small_project: "0".into(),
        reward_subsidy: "0".into(),
        reserve: reserve.into(),
        status_change_immediate: false,
    };
    super::plans::save_plan(store, d, &VillageId::new(V), 2026, &input, "村会计 王五")
        .await
        .expect("checked")
}

/// A centralized station of the county with the file's one beneficiary, H3 (H1 holds a job and
/// H2 is paid temporary labour in February 2026).
const CENTRAL: &str = r#"
[[households]]
id = "H3"
village = "V1"
head = "王五"
labour = "none"
status = [{ status = "not_exited", from = "2016-01-01" }]
[[stations]]
id = "CS1"
name = "县集中式电站"
kind = "centralized"
county = "C1"
capacity_kwp = 20000
latitude = 37.8
longitude = 112.5
commissioned = "2016-06-30"
tariff = "III"
payment_per_beneficiary = "3000"
beneficiaries = ["H3"]
"#;

fn pool_of(run: &crate::allocate::MonthRun) -> Vec<String> {
    run.pools
        .iter()
        .flat_map(|p| p.lines.iter().map(|l| l.household.to_string()))
        .collect()
}

#[tokio::test]
async fn pool_beneficiaries_are_added_and_ended_in_unpaid_months_only() {
    use super::pools::{add, end, members, Kept, PoolInput};
    for t in testing::all("pool_beneficiaries_are_added_and_ended")
        .await
        .expect("stores")
    {
        let store = &t.store;
        let d = deployment(CENTRAL);
        let energy = FixedEnergy::settled(30_000_000);
        let input = |station: &str, household: &str, from: &str, until: &str| PoolInput {
            station: station.into(),
            household: household.into(),
            from: from.into(),
            until: until.into(),
        };
        fn keys<T>(r: Result<T, Vec<households::Problem>>) -> Vec<(String, String)> {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.field, p.key))
                .collect()
        }
        let file = members(store, &d).await.expect("members");
        assert_eq!(file.len(), 1, "{}", t.name);
        assert_eq!(
            (file[0].household.as_str(), &file[0].kept),
            ("H3", &Kept::File)
        );

        // Refusals, each on its field; nothing is kept.
        let bad = add(store, &d, &input("S1", "H9", "2026-13", ""), "县财政 赵六")
            .await
            .expect("add");
        assert_eq!(
            keys(bad),
            [
                ("station".to_owned(), "pool.err.station_unknown".to_owned()),
                ("from".to_owned(), "pool.err.month_bad".to_owned()),
                (
                    "household".to_owned(),
                    "pool.err.household_unknown".to_owned()
                ),
            ],
            "{}",
            t.name
        );
        let twice = add(store, &d, &input("CS1", "H3", "2026-02", ""), "x")
            .await
            .expect("add");
        assert_eq!(
            keys(twice),
            [("household".to_owned(), "pool.err.member_already".to_owned())]
        );
        // NO_DOUBLE_BENEFIT: H1 holds job J1 from January, H2 is paid temporary labour in February.
        for h in ["H1", "H2"] {
            let double = add(store, &d, &input("CS1", h, "2026-02", ""), "x")
                .await
                .expect("add");
            assert_eq!(
                keys(double),
                [("household".to_owned(), "pool.err.double_benefit".to_owned())],
                "{h}"
            );
        }
        let backwards = add(store, &d, &input("CS1", "H2", "2026-05", "2026-04"), "x")
            .await
            .expect("add");
        assert_eq!(
            keys(backwards),
            [("until".to_owned(), "pool.err.until_before".to_owned())]
        );
        assert!(store.pool_members().await.expect("rows").is_empty());

        // H2 from March: January and February pay H3 alone, March both, 250.00 each (3,000 a year).
        let added = add(store, &d, &input("CS1", "H2", "2026-03", ""), "县财政 赵六")
            .await
            .expect("add")
            .expect("valid");
        assert_eq!(added.from, Some(ym("2026-03")));
        for (month, paid) in [
            ("2026-01", &["H3"][..]),
            ("2026-02", &["H3"]),
            ("2026-03", &["H2", "H3"]),
        ] {
            let run = run_month(store, &d, &energy, ym(month), "test", true)
                .await
                .expect(month);
            assert_eq!(pool_of(&run), paid, "{month} {}", t.name);
            assert!(run.pools[0].lines.iter().all(|l| l.amount == Fen(25_000)));
        }

        // With January paid, neither an end before February nor one before a start is taken.
        pay_month(store, ym("2026-01"), "县财政 赵六", "代发")
            .await
            .expect("pay");
        let h2 = crate::domain::HouseholdId::new("H2");
        let h3 = &file[0].household;
        let early = end(store, &d, &file[0].station, h3, "2025-12", "x")
            .await
            .expect("end");
        assert_eq!(
            keys(early),
            [("until".to_owned(), "pool.err.month_paid".to_owned())]
        );
        let before_start = end(store, &d, &file[0].station, &h2, "2026-02", "x")
            .await
            .expect("end");
        assert_eq!(
            keys(before_start),
            [("until".to_owned(), "pool.err.end_bad".to_owned())]
        );

        // The file's H3 ends with March: it is kept in the registry from now on, with its
        // window, and April pays H2 alone. Ending it again is refused.
        end(store, &d, &file[0].station, h3, "2026-03", "县财政 赵六")
            .await
            .expect("end")
            .expect("ended");
        let now = members(store, &d).await.expect("members");
        let ended = now.iter().find(|m| &m.household == h3).expect("H3");
        assert_eq!(
            (ended.from, ended.until),
            (Some(ym("2016-06")), Some(ym("2026-03")))
        );
        assert!(matches!(ended.kept, Kept::Browser { .. }));
        let again = end(store, &d, &file[0].station, h3, "2026-04", "x")
            .await
            .expect("end");
        assert_eq!(
            keys(again),
            [("until".to_owned(), "pool.err.end_bad".to_owned())]
        );
        let mar = run_month(store, &d, &energy, ym("2026-03"), "test", true)
            .await
            .expect("mar");
        assert_eq!(pool_of(&mar), ["H2", "H3"], "{}", t.name);
        let apr = run_month(store, &d, &energy, ym("2026-04"), "test", true)
            .await
            .expect("apr");
        assert_eq!(pool_of(&apr), ["H2"], "{}", t.name);

        // A household with an open membership is not retired until it ends.
        let v = VillageId::new(V);
        let retire = households::retire(store, &d, &v, &h2, "迁出", "x")
            .await
            .expect("retire");
        assert_eq!(
            keys(retire),
            [("reason".to_owned(), "household.err.beneficiary".to_owned())]
        );

        // Nor given a public-welfare job in its months.
        let job = super::jobs::JobInput {
            id: "J9".into(),
            title: "保洁员".into(),
            holder: "H2".into(),
            monthly_wage: "500".into(),
            from: "2026-06-01".into(),
            until: String::new(),
        };
        let refused = super::jobs::add(store, &d, &v, &job, "x")
            .await
            .expect("job");
        assert_eq!(
            keys(refused),
            [("holder".to_owned(), "job.err.pool_member".to_owned())]
        );

        let audit = store.audit_trail(20).await.expect("audit");
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert!(actions.contains(&"pool_member_add"), "{actions:?}");
        assert!(actions.contains(&"pool_member_end"), "{actions:?}");
    }
}
