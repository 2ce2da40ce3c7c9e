//! The household registry over real HTTP: the deployment file seeds it, the village's accountant
//! adds, edits and retires households through the forms (each refusal names its field and stores
//! nothing), and imports the poverty-registry roster after a preview that lists every line it
//! would refuse, applied whole or not at all. Allocation then works on the registry.

use std::collections::HashSet;
use std::sync::Arc;
use sunshare::config::Deployment;
use sunshare::domain::{HouseholdId, PovertyStatus, Role, ScopeEntry, VillageId};
use sunshare::http::testing::client_with_token;
use sunshare::store::testing::named_token;
use sunshare::store::{Origin, Store};

const CONFIG: &str = r#"
[[counties]]
id = "C1"
name = "阳光县"
province = "shanxi"
[[townships]]
id = "T1"
name = "东岭镇"
county = "C1"
[[villages]]
code = "V1"
name = "东村"
township = "T1"
[[villages]]
code = "V2"
name = "西村"
township = "T1"
[[households]]
id = "H1"
village = "V1"
head = "张小三"
labour = "full"
bank_account = "6228000011112222"
status = [{ status = "not_exited", from = "2016-01-01" }]
[[households]]
id = "H9"
village = "V2"
head = "欧阳秀英"
labour = "weak"
status = [{ status = "exited", from = "2019-12-31" }]
[[jobs]]
id = "J1"
village = "V1"
title = "电站管护员"
holder = "H1"
monthly_wage = "600"
from = "2026-01-01"
"#;

struct Service {
    base: String,
    store: Store,
    deployment: Arc<Deployment>,
    cancel: tokio_util::sync::CancellationToken,
    _t: sunshare::store::testing::TestStore,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn service() -> anyhow::Result<Service> {
    let t = sunshare::store::testing::sqlite().await?;
    let store = t.store.clone();
    let d = Arc::new(
        Deployment::from_str_with_env("households.toml", CONFIG, &[], &HashSet::new())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    store.sync_registry(&d).await?;
    let state = sunshare::http::AppState::new(
        Arc::clone(&d),
        store.clone(),
        Arc::new(sunshare::metrics::Metrics::new()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sunshare::http::serve(listener, state, cancel.clone()));
    Ok(Service {
        base,
        store,
        deployment: d,
        cancel,
        _t: t,
    })
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn post_form(
    client: &reqwest::Client,
    url: &str,
    pairs: &[(&str, &str)],
) -> anyhow::Result<(u16, String, String)> {
    let r = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await?;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, location, r.text().await?))
}

async fn upload(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    // A multipart form as a browser sends it, one file field.
    let boundary = "----sunshare-roster-boundary";
    let mut body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = client
        .post(url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}

async fn ids_of(store: &Store, village: &str) -> anyhow::Result<Vec<String>> {
    Ok(store
        .households_of(&VillageId::new(village))
        .await?
        .iter()
        .map(|r| r.household.id.as_str().to_owned())
        .collect())
}

#[tokio::test]
async fn the_accountant_keeps_the_registry_through_the_forms() -> anyhow::Result<()> {
    let s = service().await?;
    let acct = client_with_token(
        &named_token(
            &s.store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let list = format!("{}/villages/V1/households", s.base);

    // Seeded from the file: the list shows H1, not V2's H9, and the account only by its end.
    let page = acct.get(&list).send().await?.text().await?;
    assert!(
        page.contains("data-household=\"H1\"") && page.contains("张小三"),
        "{page}"
    );
    assert!(
        page.contains("部署文件") && page.contains("•••• 2222"),
        "{page}"
    );
    assert!(!page.contains("H9") && !page.contains("欧阳秀英"), "{page}");

    // Bad input: every problem next to its field, nothing stored.
    let (status, _, page) = post_form(
        &acct,
        &list,
        &[
            ("id", "H 2"),
            ("head", " "),
            ("status", "exited"),
            ("status_from", "2020-01-01"),
            ("labour", "weak"),
            ("bank_account", "123"),
        ],
    )
    .await?;
    assert_eq!(status, 422, "{page}");
    for field in ["id", "head", "bank_account"] {
        assert!(
            page.contains(&format!("id=\"{field}-error\"")),
            "{field}: {page}"
        );
    }
    assert!(page.contains("户编号「H 2」只能由字母"), "{page}");
    assert!(
        page.contains("value=\"H 2\""),
        "the form keeps what was typed: {page}"
    );
    assert_eq!(ids_of(&s.store, "V1").await?, ["H1"]);
    // One household, one village: V2's id is refused without showing V2's data.
    let (status, _, page) = post_form(
        &acct,
        &list,
        &[
            ("id", "H9"),
            ("head", "王五"),
            ("status", "exited"),
            ("status_from", "2020-01-01"),
            ("labour", "weak"),
        ],
    )
    .await?;
    assert_eq!(status, 422);
    assert!(
        page.contains("已登记在其他村") && !page.contains("欧阳秀英"),
        "{page}"
    );

    // A good household is added, with who added it.
    let (status, location, _) = post_form(
        &acct,
        &list,
        &[
            ("id", "H2"),
            ("head", "李四"),
            ("status", "exited"),
            ("status_from", "2020-01-01"),
            ("labour", "weak"),
            ("deep_poverty", "yes"),
            ("birth_year", "1958"),
            ("bank_account", "6228 0000 3333 4444"),
        ],
    )
    .await?;
    assert_eq!(
        (status, location.as_str()),
        (303, "/villages/V1/households?added=H2")
    );
    let h2 = s
        .store
        .household(&HouseholdId::new("H2"))
        .await?
        .expect("H2 stored");
    assert_eq!(
        h2.household.bank_account.as_deref(),
        Some("6228000033334444")
    );
    assert!(h2.household.deep_poverty);
    assert_eq!(h2.household.birth_year, Some(1958));
    assert_eq!((h2.origin, h2.updated_by.as_str()), (Origin::Web, "li"));

    // A status change must start after the last one; then it is appended to the history.
    let h2_url = format!("{list}/H2");
    let edit = |from: &'static str| {
        [
            ("head", "李四"),
            ("status", "monitored"),
            ("status_from", from),
            ("labour", "weak"),
            ("deep_poverty", "yes"),
            ("birth_year", "1958"),
            ("bank_account", "6228000033334444"),
        ]
    };
    let (status, _, page) = post_form(&acct, &h2_url, &edit("2019-06-01")).await?;
    assert_eq!(status, 422);
    assert!(
        page.contains("id=\"status_from-error\"") && page.contains("2020-01-01"),
        "{page}"
    );
    let (status, location, _) = post_form(&acct, &h2_url, &edit("2024-05-01")).await?;
    assert_eq!(
        (status, location.as_str()),
        (303, "/villages/V1/households/H2?saved=1")
    );
    let h2 = s
        .store
        .household(&HouseholdId::new("H2"))
        .await?
        .expect("H2");
    let statuses: Vec<PovertyStatus> = h2.household.status.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [PovertyStatus::Exited, PovertyStatus::Monitored]);
    let page = acct.get(&h2_url).send().await?.text().await?;
    assert!(
        page.contains("data-what=\"edited\"") && page.contains("贫困户状态"),
        "{page}"
    );
    assert!(page.contains("data-what=\"added\""), "{page}");

    // A household holding a job in force is not retired; another is, with its reason.
    let (status, _, page) =
        post_form(&acct, &format!("{list}/H1/retire"), &[("reason", "迁出")]).await?;
    assert_eq!(status, 422);
    assert!(
        page.contains("id=\"reason-error\"") && page.contains("J1"),
        "{page}"
    );
    let (status, _, page) =
        post_form(&acct, &format!("{h2_url}/retire"), &[("reason", "")]).await?;
    assert_eq!(status, 422, "a reason is required: {page}");
    let (status, _, _) = post_form(
        &acct,
        &format!("{h2_url}/retire"),
        &[("reason", "全户迁出本村")],
    )
    .await?;
    assert_eq!(status, 303);
    let page = acct.get(&list).send().await?.text().await?;
    assert!(
        page.contains("id=\"retired\"") && page.contains("全户迁出本村"),
        "{page}"
    );
    // Allocation works on the registry: H2 was added and then retired, so it is not paid.
    let d = sunshare::ledger::households::effective(&s.store, &s.deployment).await?;
    let ids: Vec<&str> = d.households.iter().map(|h| h.id.as_str()).collect();
    assert!(
        ids.contains(&"H1") && ids.contains(&"H9") && !ids.contains(&"H2"),
        "{ids:?}"
    );
    // A retired household's page has no forms any more, and its edit is refused.
    let (status, _, _) = post_form(&acct, &h2_url, &edit("2025-01-01")).await?;
    assert_eq!(status, 422);

    // The page of a household of another village is not reached through this village.
    let r = acct.get(format!("{list}/H9")).send().await?;
    assert_eq!(r.status(), 404);
    Ok(())
}

#[tokio::test]
async fn a_roster_is_previewed_line_by_line_and_applied_whole_or_not_at_all() -> anyhow::Result<()>
{
    let s = service().await?;
    let acct = client_with_token(
        &named_token(
            &s.store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let import = format!("{}/villages/V1/households/import", s.base);

    // A GBK export with a title row and four bad lines: each refused with its reason.
    let bad = gbk("东村建档立卡户花名册（2026年）,,,,,,\n\
        户编号,户主姓名,证件号码,贫困户状态,状态起始日期,劳动能力,银行卡号,所在村\n\
        H3,王五,140101196505061234,已脱贫,2019/12/31,弱劳动力,6228000055556666,东村\n\
        H3,王五,,已脱贫,2019/12/31,弱劳动力,,东村\n\
        H9,欧阳,,已脱贫,2019/12/31,弱劳动力,,东村\n\
        H4,赵六,,返贫户,2019/12/31,弱劳动力,,东村\n\
        H5,钱七,,已脱贫,2019/12/31,弱劳动力,,西村\n");
    let (status, page) = upload(&acct, &import, "花名册.csv", bad).await?;
    assert_eq!(status, 422, "{page}");
    assert_eq!(
        page.matches("data-verdict=\"refused\"").count(),
        4,
        "{page}"
    );
    assert!(
        page.contains("data-line=\"3\" data-verdict=\"add\""),
        "{page}"
    );
    for reason in [
        "在第 3 行已出现过",
        "已登记在其他村",
        "「返贫户」无法识别",
        "不是东村",
    ] {
        assert!(page.contains(reason), "{reason}: {page}");
    }
    assert!(
        !page.contains("id=\"roster-apply\""),
        "no apply button with a refused line"
    );
    assert!(
        !page.contains("140101196505061234"),
        "the identity card is never shown"
    );
    assert_eq!(
        ids_of(&s.store, "V1").await?,
        ["H1"],
        "a preview stores no household"
    );

    // A clean XLSX: one change to H1, two new households; applied whole.
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let rows: [[&str; 6]; 4] = [
        [
            "户编号",
            "户主姓名",
            "贫困户状态",
            "状态起始日期",
            "劳动能力",
            "银行卡号",
        ],
        [
            "H1",
            "张小三",
            "未脱贫",
            "2016-01-01",
            "普通劳动力",
            "6228000077778888",
        ],
        [
            "H3",
            "王五",
            "已脱贫",
            "2019-12-31",
            "弱劳动力",
            "6228000055556666",
        ],
        ["H4", "赵六", "监测户", "2021-03-01", "无劳动力", ""],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            sheet.write_string(u32::try_from(r)?, u16::try_from(c)?, *cell)?;
        }
    }
    let xlsx = book.save_to_buffer()?;
    let (status, page) = upload(&acct, &import, "花名册.xlsx", xlsx).await?;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("新增 2 户，修改 1 户，无变化 0 户，拒绝 0 行"),
        "{page}"
    );
    assert!(page.contains("修改：代发银行账号"), "{page}");
    let id = page
        .split("name=\"import\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the apply form names its import")
        .to_owned();
    let apply = format!("{import}/apply");
    let (status, location, _) = post_form(&acct, &apply, &[("import", &id)]).await?;
    assert_eq!(status, 303);
    assert!(
        location.contains("applied_add=2") && location.contains("applied_edit=1"),
        "{location}"
    );
    assert_eq!(ids_of(&s.store, "V1").await?, ["H1", "H3", "H4"]);
    let h1 = s
        .store
        .household(&HouseholdId::new("H1"))
        .await?
        .expect("H1");
    assert_eq!(
        h1.household.bank_account.as_deref(),
        Some("6228000077778888")
    );
    let h4 = s
        .store
        .household(&HouseholdId::new("H4"))
        .await?
        .expect("H4");
    assert_eq!(h4.origin, Origin::Roster);
    assert_eq!(h4.household.status[0].status, PovertyStatus::Monitored);
    // The same preview is not applied twice.
    let (status, _, page) = post_form(&acct, &apply, &[("import", &id)]).await?;
    assert_eq!(status, 409, "{page}");
    assert_eq!(ids_of(&s.store, "V1").await?, ["H1", "H3", "H4"]);
    Ok(())
}

#[tokio::test]
async fn only_the_villages_accountant_and_administrators_keep_its_registry() -> anyhow::Result<()> {
    let s = service().await?;
    let token = |name: &'static str, role, scope| {
        let store = s.store.clone();
        async move {
            named_token(&store, name, role, scope)
                .await
                .map(|t| client_with_token(&t))
        }
    };
    let viewer = token("viewer", Role::Viewer, vec![ScopeEntry::All]).await?;
    let operator = token(
        "operator",
        Role::Operator,
        vec![ScopeEntry::County("C1".into())],
    )
    .await?;
    let reviewer = token(
        "reviewer",
        Role::Reviewer,
        vec![ScopeEntry::Township("T1".into())],
    )
    .await?;
    let other = token(
        "acct-v2",
        Role::Accountant,
        vec![ScopeEntry::Village("V2".into())],
    )
    .await?;
    let admin = token("admin", Role::Admin, vec![ScopeEntry::All]).await?;
    let list = format!("{}/villages/V1/households", s.base);
    let new = [
        ("id", "H7"),
        ("head", "孙八"),
        ("status", "exited"),
        ("status_from", "2020-01-01"),
        ("labour", "full"),
    ];
    for (who, client, read, write) in [
        ("viewer", &viewer, 403, 403),
        ("operator", &operator, 403, 403),
        ("reviewer", &reviewer, 200, 403),
        ("V2's accountant", &other, 403, 403),
    ] {
        assert_eq!(
            client.get(&list).send().await?.status().as_u16(),
            read,
            "{who} reads"
        );
        let (status, _, _) = post_form(client, &list, &new).await?;
        assert_eq!(status, write, "{who} adds");
    }
    assert_eq!(ids_of(&s.store, "V1").await?, ["H1"]);
    let (status, _, _) = post_form(&admin, &list, &new).await?;
    assert_eq!(status, 303, "an administrator may");
    assert_eq!(ids_of(&s.store, "V1").await?, ["H1", "H7"]);
    // Every change went through the guard's audit log with who did it.
    let audit = s.store.audit_log(50).await?;
    assert!(
        audit
            .iter()
            .any(|a| a.target.contains("/villages/V1/households") && a.outcome == "303"),
        "{audit:?}"
    );
    Ok(())
}

#[tokio::test]
async fn jobs_are_added_and_ended_in_the_registry_and_allocation_follows_them() -> anyhow::Result<()>
{
    let s = service().await?;
    let acct = client_with_token(
        &named_token(
            &s.store,
            "li",
            Role::Accountant,
            vec![ScopeEntry::Village("V1".into())],
        )
        .await?,
    );
    let list = format!("{}/villages/V1/households", s.base);
    let jobs = format!("{}/villages/V1/jobs", s.base);
    // A second household of the village, to hold a new post.
    let (status, _, _) = post_form(
        &acct,
        &list,
        &[
            ("id", "H2"),
            ("head", "李四"),
            ("status", "exited"),
            ("status_from", "2020-01-01"),
            ("labour", "weak"),
        ],
    )
    .await?;
    assert_eq!(status, 303);
    let page = acct.get(&list).send().await?.text().await?;
    assert!(
        page.contains("data-job=\"J1\" data-state=\"current\""),
        "the file's job is listed: {page}"
    );

    // Refusals name their fields and store nothing: a holder of another village, a wage of zero,
    // a second job paid in the same months as H1's J1 (one job per household).
    let (status, _, page) = post_form(
        &acct,
        &jobs,
        &[
            ("job_id", "J2"),
            ("title", "护林员"),
            ("holder", "H9"),
            ("monthly_wage", "0"),
            ("from", "2026-03-01"),
        ],
    )
    .await?;
    assert_eq!(status, 422);
    assert!(
        page.contains("id=\"holder-error\"") && page.contains("id=\"monthly_wage-error\""),
        "{page}"
    );
    let (status, _, page) = post_form(
        &acct,
        &jobs,
        &[
            ("job_id", "J2"),
            ("title", "护林员"),
            ("holder", "H1"),
            ("monthly_wage", "500"),
            ("from", "2026-03-01"),
        ],
    )
    .await?;
    assert_eq!(status, 422);
    assert!(page.contains("一户一岗") && page.contains("J1"), "{page}");
    assert!(s
        .store
        .job(&sunshare::domain::JobId::new("J2"))
        .await?
        .is_none());

    // A good job for H2; allocation sees it, with its wage in fen.
    let (status, _, _) = post_form(
        &acct,
        &jobs,
        &[
            ("job_id", "J2"),
            ("title", "护林员"),
            ("holder", "H2"),
            ("monthly_wage", "550.50"),
            ("from", "2026-03-01"),
        ],
    )
    .await?;
    assert_eq!(status, 303);
    let d = sunshare::ledger::households::effective(&s.store, &s.deployment).await?;
    let j2 = d
        .jobs
        .iter()
        .find(|j| j.id.as_str() == "J2")
        .expect("J2 in the allocation's input");
    assert_eq!((j2.holder.as_str(), j2.monthly_wage.0), ("H2", 55_050));

    // H2 cannot be retired while it holds J2; ending J2 first makes it possible.
    let (status, _, _) =
        post_form(&acct, &format!("{list}/H2/retire"), &[("reason", "迁出")]).await?;
    assert_eq!(status, 422);
    let end = format!("{jobs}/J2/end");
    let (status, _, page) = post_form(&acct, &end, &[("until", "2026-02-01")]).await?;
    assert_eq!(status, 422, "not before it started: {page}");
    assert!(page.contains("end-error"), "{page}");
    let (status, _, _) = post_form(&acct, &end, &[("until", "2026-04-30")]).await?;
    assert_eq!(status, 303);
    let j2 = s
        .store
        .job(&sunshare::domain::JobId::new("J2"))
        .await?
        .expect("J2");
    assert_eq!(
        j2.job.until.map(|u| u.to_string()).as_deref(),
        Some("2026-04-30")
    );
    let (status, _, _) =
        post_form(&acct, &format!("{list}/H2/retire"), &[("reason", "迁出")]).await?;
    assert_eq!(
        status, 303,
        "the job ended in the past, so the household may go"
    );
    let history: Vec<String> = s
        .store
        .job_changes(&sunshare::domain::JobId::new("J2"))
        .await?
        .into_iter()
        .map(|c| c.what)
        .collect();
    assert_eq!(history, ["ended", "added"]);
    // A job of another village is not reached through this one.
    let (status, _, _) = post_form(
        &acct,
        &format!("{}/villages/V1/jobs/J9/end", s.base),
        &[("until", "2026-04-30")],
    )
    .await?;
    assert_eq!(status, 404);
    Ok(())
}
