//! Who may do what where, over real HTTP, by walking the route table: every route is declared
//! with its access; an accountant of one village reaches nothing of another village through any
//! route; anonymous state changes are 401 anywhere; a browser's state change without its CSRF
//! token is 403; wrong passwords are rate limited; sessions rotate and end; revoked tokens and
//! disabled users stop at once; every state change is audited with who, when and from where.

use secrecy::SecretString;
use std::collections::HashSet;
use std::sync::Arc;
use sunshare::accounts::{self, NewUser};
use sunshare::allocate::PlanState;
use sunshare::auth::{decide, Action, Place, Principal, Via};
use sunshare::config::Deployment;
use sunshare::domain::{Role, ScopeEntry, VillageId};
use sunshare::http::{PlaceFrom, RouteSpec};
use sunshare::ledger::{self, testing::FixedEnergy};
use sunshare::store::{NewAlert, Store};

/// Two villages of one township, each with a village station, a household and a job.
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
code = "VA1001"
name = "东岭村"
township = "T1"
[[villages]]
code = "VB2002"
name = "西坡村"
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
id = "SA-east"
name = "东岭村光伏电站"
kind = "village"
county = "C1"
capacity_kwp = 300
latitude = 37.8
longitude = 112.5
commissioned = "2019-06-30"
tariff = "III"
village = "VA1001"
[[stations]]
id = "SB-west"
name = "西坡村光伏电站"
kind = "village"
county = "C1"
capacity_kwp = 300
latitude = 37.8
longitude = 112.6
commissioned = "2019-06-30"
tariff = "III"
village = "VB2002"
[[households]]
id = "HA1"
village = "VA1001"
head = "张小三"
labour = "full"
bank_account = "6228000011112222"
status = [{ status = "not_exited", from = "2016-01-01" }]
[[households]]
id = "HB1"
village = "VB2002"
head = "欧阳秀英"
labour = "full"
bank_account = "6228000099998888"
status = [{ status = "not_exited", from = "2016-01-01" }]
[[jobs]]
id = "JA"
village = "VA1001"
title = "电站管护员"
holder = "HA1"
monthly_wage = "600"
from = "2026-01-01"
[[jobs]]
id = "JB"
village = "VB2002"
title = "道路保洁员"
holder = "HB1"
monthly_wage = "500"
from = "2026-01-01"
[[plans]]
village = "VA1001"
year = 2026
expected_net = "100000"
lines = { job_wages = "7200", temp_labour = "0", small_project = "0", reward_subsidy = "0", reserve = "1200" }
[[plans]]
village = "VB2002"
year = 2026
expected_net = "100000"
lines = { job_wages = "6000", temp_labour = "0", small_project = "0", reward_subsidy = "0", reserve = "1200" }
"#;

/// What must never appear in anything village A's accountant is shown.
const B_SECRETS: [&str; 6] = [
    "SB-west",
    "VB2002",
    "西坡村",
    "欧阳秀英",
    "6228000099998888",
    "HB1",
];

const PASSWORD: &str = "spring-terrace-42";

struct Fleet {
    base: String,
    store: Store,
    deployment: Arc<Deployment>,
    alert_a: i64,
    alert_b: i64,
    _dir: tempfile::TempDir,
    cancel: tokio_util::sync::CancellationToken,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The service on port 0 with both villages allocated for January and an open alert at each
/// station; users for every role.
async fn fleet() -> Fleet {
    fleet_with("").await
}

/// As [`fleet`], with `extra` (e.g. an `[http]` section) at the head of the deployment file.
async fn fleet_with(extra: &str) -> Fleet {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{extra}\n{CONFIG}");
    let d = Arc::new(
        Deployment::from_str_with_env("access.toml", &text, &[], &HashSet::new())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let store = Store::open_sqlite(&dir.path().join("sunshare.db"))
        .await
        .expect("store");
    store.sync_registry(&d).await.expect("registry");
    for village in ["VA1001", "VB2002"] {
        for to in [
            PlanState::Deliberated,
            PlanState::PlanPublished,
            PlanState::TownshipReviewed,
            PlanState::CountyFiled,
            PlanState::Active,
        ] {
            ledger::transition(
                &store,
                &d,
                &VillageId::new(village),
                2026,
                to,
                "村委会",
                "step",
            )
            .await
            .expect("plan step");
        }
    }
    ledger::run_month(
        &store,
        &d,
        &FixedEnergy::metered(30_000_000),
        "2026-01".parse().expect("month"),
        "test",
        true,
    )
    .await
    .expect("allocate");
    let now = chrono::Utc::now();
    let alert = |station: &'static str| NewAlert {
        kind: "offline",
        station,
        subject: "gateway",
        county: "C1",
        severity: "critical",
        message: "no data",
        opened_at: now,
        since: now,
        flapping: false,
    };
    let alert_a = store.open_alert(&alert("SA-east")).await.expect("alert");
    let alert_b = store.open_alert(&alert("SB-west")).await.expect("alert");
    for (username, role, scope, name) in [
        (
            "acct-a",
            Role::Accountant,
            ScopeEntry::Village("VA1001".into()),
            "东岭村会计",
        ),
        (
            "acct-b",
            Role::Accountant,
            ScopeEntry::Village("VB2002".into()),
            "西坡村会计",
        ),
        (
            "operator",
            Role::Operator,
            ScopeEntry::County("C1".into()),
            "县能源办",
        ),
        ("admin", Role::Admin, ScopeEntry::All, "管理员"),
    ] {
        let user = NewUser {
            username: username.into(),
            display_name: name.into(),
            role,
            scope: vec![scope],
            password: SecretString::from(PASSWORD),
        };
        accounts::add_user(&store, &d, user, "test", "test")
            .await
            .expect("user");
    }
    let state = sunshare::http::AppState::new(
        Arc::clone(&d),
        store.clone(),
        Arc::new(sunshare::metrics::Metrics::new()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sunshare::http::serve(listener, state, cancel.clone()));
    Fleet {
        base,
        store,
        deployment: d,
        alert_a,
        alert_b,
        _dir: dir,
        cancel,
    }
}

fn client() -> reqwest::Client {
    sunshare::http::testing::client_with_token("")
}

async fn token_for(f: &Fleet, user: &str) -> String {
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    let (_, token) = accounts::add_token(&f.store, user, "test", until, "test", "test")
        .await
        .expect("token");
    secrecy::ExposeSecret::expose_secret(&token).to_owned()
}

/// The concrete URL of `spec` aimed at village `v` (its station, its alert).
fn url_for(f: &Fleet, spec: &RouteSpec, village: char) -> String {
    let (code, station, alert, file, household, job) = if village == 'a' {
        ("VA1001", "SA-east", f.alert_a, "roster.csv", "HA1", "JA")
    } else {
        ("VB2002", "SB-west", f.alert_b, "roster.csv", "HB1", "JB")
    };
    let path = spec
        .path
        .replace("{code}", code)
        .replace("{month}", "2026-01")
        .replace("{year}", "2026")
        .replace("{file}", file)
        .replace("{household}", household)
        .replace("{job}", job)
        .replace("{station}", station);
    let path = match spec.access.place {
        PlaceFrom::Alert(p) => path.replace(&format!("{{{p}}}"), &alert.to_string()),
        _ => path.replace("{id}", station),
    };
    assert!(!path.contains('{'), "an unfilled parameter in {path}");
    format!("{}{path}", f.base)
}

async fn send(client: &reqwest::Client, spec: &RouteSpec, url: &str) -> reqwest::Response {
    let request = match spec.method {
        "GET" => client.get(url),
        "POST" => client
            .post(url)
            .header("content-type", "application/json")
            .body("{\"to\":\"DELIBERATED\",\"note\":\"x\"}"),
        other => panic!("a route with method {other}: teach this test to send it"),
    };
    request.send().await.expect("request")
}

/// The principal the server builds for acct-a, to ask the policy what it should allow.
fn acct_a() -> Principal {
    Principal {
        user_id: 0,
        username: "acct-a".into(),
        display_name: String::new(),
        role: Role::Accountant,
        scope: vec![ScopeEntry::Village("VA1001".into())],
        via: Via::Session,
    }
}

#[test]
fn every_route_declares_its_access_and_takes_its_place_from_a_parameter() {
    let public: HashSet<(&str, &str)> = [
        ("GET", "/healthz"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/villages/{code}/notice/{month}"),
        ("GET", "/api/openapi.json"),
        ("GET", "/lang"),
    ]
    .into_iter()
    .collect();
    let specs = sunshare::http::routes().specs();
    assert!(specs.len() >= 20, "the table lists every route");
    let mut seen = HashSet::new();
    for spec in &specs {
        assert!(
            seen.insert((spec.method, spec.path)),
            "{} {} declared twice",
            spec.method,
            spec.path
        );
        let is_public = spec.access.action == Action::Public;
        assert_eq!(
            is_public,
            public.contains(&(spec.method, spec.path)),
            "{} {}: only the allow-listed routes are public",
            spec.method,
            spec.path
        );
        if !is_public {
            // A route about one station or village takes its place from that parameter; a
            // route that names a place but checks only fleet-wide access would leak it.
            let names_place = spec.path.contains("{code}") || spec.path.contains("{id}");
            assert_eq!(
                names_place,
                spec.access.place != PlaceFrom::Fleet,
                "{} {}: {:?}",
                spec.method,
                spec.path,
                spec.access
            );
            assert_eq!(
                spec.access.action.needs_place(),
                names_place,
                "{} {}: the action {:?} and the path disagree on whether there is a place",
                spec.method,
                spec.path,
                spec.access.action
            );
        }
        if let PlaceFrom::Station(p) | PlaceFrom::Village(p) | PlaceFrom::Alert(p) =
            spec.access.place
        {
            assert!(
                spec.path.contains(&format!("{{{p}}}")),
                "{} {}: the place parameter {p} is not in the path",
                spec.method,
                spec.path
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accountant_reaches_nothing_of_another_village_through_any_route() {
    let f = fleet().await;
    let a = sunshare::http::testing::client_with_token(&token_for(&f, "acct-a").await);
    let geo = sunshare::auth::Geography::new(
        f.deployment.townships.iter().map(|t| (&t.id, &t.county)),
        f.deployment.villages.iter().map(|v| (&v.code, &v.township)),
        &f.deployment.stations,
    );
    let me = acct_a();
    let mut checked = 0;
    for spec in sunshare::http::routes().specs() {
        if spec.access.action == Action::Public {
            continue;
        }
        let b_url = url_for(&f, &spec, 'b');
        let r = send(&a, &spec, &b_url).await;
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        match spec.access.place {
            PlaceFrom::Fleet => {
                // Lists: allowed or not, never a row of village B.
                assert!(
                    matches!(status, 200 | 303 | 403),
                    "{} {b_url}: {status} {body}",
                    spec.method
                );
                for secret in B_SECRETS {
                    assert!(
                        !body.contains(secret),
                        "{} {b_url} shows {secret} to village A's accountant: {body}",
                        spec.method
                    );
                }
            }
            _ => assert_eq!(
                status, 403,
                "{} {b_url} must be refused to village A's accountant: {body}",
                spec.method
            ),
        }
        // The same route for village A is allowed exactly when the policy says so.
        let place_a: Option<Place> = match spec.access.place {
            PlaceFrom::Fleet => None,
            PlaceFrom::Village(_) => geo.village("VA1001").cloned(),
            PlaceFrom::Station(_) | PlaceFrom::Alert(_) => geo.station("SA-east").cloned(),
        };
        let a_url = url_for(&f, &spec, 'a');
        let own = send(&a, &spec, &a_url).await.status().as_u16();
        let allowed = decide(Some(&me), spec.access.action, place_a.as_ref()).allowed();
        assert_eq!(
            own != 403,
            allowed,
            "{} {a_url}: answered {own}, the policy says allowed = {allowed}",
            spec.method
        );
        checked += 1;
    }
    assert!(checked >= 15, "walked {checked} routes");

    // The exports of village B in every format, the statement included.
    for file in ["statement.csv", "statement.xlsx", "roster.xlsx"] {
        let r = a
            .get(format!("{}/villages/VB2002/months/2026-01/{file}", f.base))
            .send()
            .await
            .expect("export");
        assert_eq!(r.status(), 403, "{file}");
    }
    // The public notice of B is public, and masked for A's accountant as for anyone.
    let notice = a
        .get(format!("{}/villages/VB2002/notice/2026-01", f.base))
        .send()
        .await
        .expect("notice")
        .text()
        .await
        .expect("body");
    assert!(notice.contains("欧**英"), "{notice}");
    assert!(!notice.contains("欧阳秀英") && !notice.contains("6228000099998888"));
    // And A's own roster is A's accountant's to export.
    let roster = a
        .get(format!(
            "{}/villages/VA1001/months/2026-01/roster.csv",
            f.base
        ))
        .send()
        .await
        .expect("roster")
        .text()
        .await
        .expect("body");
    assert!(roster.contains("6228000011112222"), "{roster}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_state_changes_are_401_everywhere_and_reads_need_a_credential() {
    let f = fleet().await;
    let anon = client();
    for spec in sunshare::http::routes().specs() {
        let url = url_for(&f, &spec, 'a');
        let r = send(&anon, &spec, &url).await;
        let status = r.status().as_u16();
        match (spec.access.action, spec.method) {
            (Action::Public, _) => assert_ne!(status, 401, "{} {url}", spec.method),
            (_, "GET") if spec.is_api() => assert_eq!(status, 401, "GET {url}"),
            // A page sends the browser to the login form and back.
            (_, "GET") => {
                assert_eq!(status, 303, "GET {url}");
                let to = r.headers()["location"].to_str().expect("location");
                assert!(to.starts_with("/login?next=%2F"), "{to}");
            }
            _ => assert_eq!(status, 401, "{} {url}", spec.method),
        }
    }
    for (method, path) in [
        (reqwest::Method::POST, "/api/no-such-thing"),
        (reqwest::Method::PUT, "/api/alerts"),
        (reqwest::Method::DELETE, "/villages/VA1001"),
        (reqwest::Method::PATCH, "/api/settlements"),
        (reqwest::Method::DELETE, "/"),
    ] {
        let r = anon
            .request(method.clone(), format!("{}{path}", f.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    // A token that is not one, a revoked one, one of a disabled user: 401.
    let token = token_for(&f, "operator").await;
    let ok = sunshare::http::testing::client_with_token(&token)
        .get(format!("{}/api/alerts", f.base))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    for bad in [
        "sst_0000000000000000_00",
        "not-a-token",
        &token[..token.len() - 1],
    ] {
        let r = sunshare::http::testing::client_with_token(bad)
            .get(format!("{}/api/alerts", f.base))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{bad}");
    }
    let id = token["sst_".len().."sst_".len() + 16].to_owned();
    accounts::revoke_token(&f.store, &id, "test", "test")
        .await
        .expect("revoke");
    let r = sunshare::http::testing::client_with_token(&token)
        .get(format!("{}/api/alerts", f.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "revoked");
    let other = token_for(&f, "operator").await;
    accounts::set_disabled(&f.store, "operator", true, "test", "test")
        .await
        .expect("disable");
    let r = sunshare::http::testing::client_with_token(&other)
        .get(format!("{}/api/alerts", f.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "disabled user");
}

/// The `sunshare_session` cookie a response sets, if any.
fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("sunshare_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The hidden csrf field of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap_or_default().to_owned()
}

/// GET /login: the anonymous session's cookie and the form's token.
async fn login_form(f: &Fleet) -> (String, String) {
    let r = client()
        .get(format!("{}/login", f.base))
        .send()
        .await
        .expect("login page");
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r).expect("a session for the form");
    let csrf = csrf_of(&r.text().await.expect("body"));
    (cookie, csrf)
}

async fn post_login(
    f: &Fleet,
    cookie: &str,
    csrf: &str,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    client()
        .post(format!("{}/login", f.base))
        .header("cookie", format!("sunshare_session={cookie}"))
        .form(&[
            ("csrf", csrf),
            ("username", user),
            ("password", pw),
            ("next", "/villages"),
        ])
        .send()
        .await
        .expect("login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_rotate_carry_csrf_and_end_at_logout() {
    let f = fleet().await;
    // Without the form's token the login itself is refused.
    let (cookie, csrf) = login_form(&f).await;
    let r = post_login(&f, &cookie, "forged", "acct-a", PASSWORD).await;
    assert_eq!(r.status(), 403);

    let r = post_login(&f, &cookie, &csrf, "acct-a", PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/villages");
    let signed = session_cookie(&r).expect("a new session id at sign-in");
    assert_ne!(signed, cookie, "the session id is rotated at sign-in");
    // The database keeps a digest of the id, never the cookie's value.
    let now = chrono::Utc::now();
    assert!(f.store.session(&signed, now).await.expect("read").is_none());
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(signed.as_bytes()))
    };
    assert!(f.store.session(&digest, now).await.expect("read").is_some());
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let with_session = |path: &str| {
        client()
            .get(format!("{}{path}", f.base))
            .header("cookie", format!("sunshare_session={signed}"))
            .send()
    };
    let page = with_session("/villages").await.expect("villages");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(
        html.contains("东岭村") && !html.contains("西坡村"),
        "{html}"
    );
    assert!(
        html.contains("东岭村会计"),
        "the header names who is signed in"
    );
    // The old, pre-login id is worth nothing.
    let stale = client()
        .get(format!("{}/villages", f.base))
        .header("cookie", format!("sunshare_session={cookie}"))
        .send()
        .await
        .expect("get");
    assert_eq!(stale.status(), 303);

    // A state change from the browser without the session's CSRF token: 403, and nothing done.
    let page_csrf = csrf_of(&html);
    let logout = |token: Option<&str>| {
        let mut form = vec![];
        if let Some(t) = token {
            form.push(("csrf", t.to_owned()));
        }
        client()
            .post(format!("{}/logout", f.base))
            .header("cookie", format!("sunshare_session={signed}"))
            .form(&form)
            .send()
    };
    assert_eq!(logout(None).await.expect("post").status(), 403);
    assert_eq!(logout(Some("0000")).await.expect("post").status(), 403);
    assert_eq!(with_session("/villages").await.expect("get").status(), 200);
    // The header works as well as the field (the pages' scripts use it).
    let r = client()
        .post(format!("{}/api/alerts/{}/ack", f.base, f.alert_a))
        .header("cookie", format!("sunshare_session={signed}"))
        .header("x-csrf-token", &page_csrf)
        .json(&serde_json::json!({"note": "x"}))
        .send()
        .await
        .expect("ack");
    assert_eq!(r.status(), 403, "an accountant does not acknowledge alerts");
    let out = logout(Some(&page_csrf)).await.expect("logout");
    assert_eq!(out.status(), 303);
    assert_eq!(with_session("/villages").await.expect("get").status(), 303);

    // Every state change above is in the audit log, with who and from where.
    let log = f.store.audit_log(100).await.expect("audit");
    let line = log
        .iter()
        .find(|e| e.action == "POST /api/alerts/{id}/ack")
        .expect("the refused acknowledgement is audited");
    assert_eq!(
        (
            line.actor.as_str(),
            line.origin.as_str(),
            line.outcome.as_str()
        ),
        ("acct-a", "127.0.0.1", "403")
    );
    assert!(log
        .iter()
        .any(|e| e.action == "login" && e.actor == "acct-a" && e.outcome == "signed in"));
    assert!(log
        .iter()
        .any(|e| e.action == "logout" && e.actor == "acct-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_rate_limited_per_user() {
    let f = fleet().await;
    let (cookie, csrf) = login_form(&f).await;
    for attempt in 1..=sunshare::http::MAX_FAILURES_PER_USER {
        let r = post_login(&f, &cookie, &csrf, "acct-b", "not-the-password").await;
        assert_eq!(r.status(), 401, "attempt {attempt}");
        let html = r.text().await.expect("body");
        assert!(
            html.contains("id=\"login-error\""),
            "the error is shown in place"
        );
    }
    // The next attempt is refused before the password is even checked: the right one too.
    let r = post_login(&f, &cookie, &csrf, "acct-b", PASSWORD).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");
    // Another user from the same address is not locked out by someone else's typing.
    let r = post_login(&f, &cookie, &csrf, "acct-a", PASSWORD).await;
    assert_eq!(r.status(), 303);
    let log = f.store.audit_log(100).await.expect("audit");
    assert!(log
        .iter()
        .any(|e| e.actor == "acct-b" && e.outcome == "refused: rate limited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_naming_the_field_and_bodies_are_bounded() {
    let f = fleet().await;
    let admin = sunshare::http::testing::client_with_token(&token_for(&f, "admin").await);
    let cases = [
        ("/api/stations/SA-east/energy?from=yesterday", "from"),
        ("/api/stations/SA-east/months?to=2026-13", "to"),
        ("/api/villages/VA1001/plans/twenty", "year"),
        ("/api/villages/VA1001/months/2026-1x", "month"),
        ("/api/quarantine?limit=-1", "limit"),
        ("/api/alerts?state=closed", "state"),
    ];
    for (path, field) in cases {
        let r = admin
            .get(format!("{}{path}", f.base))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    let r = admin
        .post(format!(
            "{}/api/villages/VA1001/plans/2026/transitions",
            f.base
        ))
        .header("content-type", "application/json")
        .body("{\"to\": 7, \"note\": \"x\"}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["field"], "to", "{body}");
    // A JSON body over 1 MiB is refused whole; a settlement file may be larger.
    let big = format!(
        "{{\"to\":\"DELIBERATED\",\"note\":\"{}\"}}",
        "x".repeat(2 << 20)
    );
    // On a connection of its own: the server answers before reading it all and closes it.
    let once = sunshare::http::testing::client_with_token(&token_for(&f, "admin").await);
    let r = once
        .post(format!(
            "{}/api/villages/VA1001/plans/2026/transitions",
            f.base
        ))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    let csv = format!(
        "电站编号,结算月份,上网电量(kWh),备注\nSA-east,2026-13,1,{}\n",
        "x".repeat(3 << 19)
    );
    let r = admin
        .post(format!("{}/api/settlements?name=big.csv", f.base))
        .body(csv)
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        422,
        "read whole and refused for its content, not its size"
    );
    assert_eq!(
        f.store.audit_log(10).await.expect("audit")[0].outcome,
        "422",
        "a refused upload is audited too"
    );
    // The administrator reads it as a page; nobody else does.
    let page = admin
        .get(format!("{}/audit", f.base))
        .send()
        .await
        .expect("audit page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(
        html.contains("POST /api/settlements") && html.contains("422"),
        "{html}"
    );
    let operator = sunshare::http::testing::client_with_token(&token_for(&f, "operator").await);
    let r = operator
        .get(format!("{}/audit", f.base))
        .send()
        .await
        .expect("audit page");
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_after_its_lifetime_whatever_the_cookie_says() {
    // Lifetimes of zero: a session is over as soon as it starts, so no test waits for a clock.
    // An absolute lifetime: the sign-in works, the next request must sign in again.
    let f = fleet_with("[http]\nsession_max = \"0s\"").await;
    let (cookie, csrf) = login_form(&f).await;
    let r = post_login(&f, &cookie, &csrf, "acct-a", PASSWORD).await;
    assert_eq!(r.status(), 303);
    let signed = session_cookie(&r).expect("cookie");
    let page = client()
        .get(format!("{}/villages", f.base))
        .header("cookie", format!("sunshare_session={signed}"))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 303, "past session_max: sign in again");
    // An idle lifetime: even the login form's session has lapsed when the form comes back, so
    // its CSRF token is no longer known.
    let f = fleet_with("[http]\nsession_idle = \"0s\"").await;
    let (cookie, csrf) = login_form(&f).await;
    let r = post_login(&f, &cookie, &csrf, "acct-a", PASSWORD).await;
    assert_eq!(
        r.status(),
        403,
        "past session_idle: the form's session is gone"
    );
    // And with the defaults the same steps keep the user signed in.
    let f = fleet().await;
    let (cookie, csrf) = login_form(&f).await;
    let r = post_login(&f, &cookie, &csrf, "acct-a", PASSWORD).await;
    let signed = session_cookie(&r).expect("cookie");
    let page = client()
        .get(format!("{}/villages", f.base))
        .header("cookie", format!("sunshare_session={signed}"))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
}

/// The language switch sets its cookie and goes back only to a path on this site; the pages then
/// speak the chosen language, Chinese when nothing was chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_switch_keeps_its_choice_and_never_redirects_off_site() {
    let f = fleet().await;
    let anon = client();
    for (back, expected) in [
        ("/villages?x=1", "/villages?x=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ] {
        let r = anon
            .get(format!("{}/lang", f.base))
            .query(&[("to", "en"), ("back", back)])
            .send()
            .await
            .expect("lang");
        assert!(r.status().is_redirection(), "{back}: {}", r.status());
        let to = r.headers()[reqwest::header::LOCATION].to_str().unwrap();
        assert_eq!(to, expected, "back={back}");
        let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.starts_with("sunshare_lang=en;"), "{cookie}");
    }
    let a = sunshare::http::testing::client_with_token(&token_for(&f, "acct-a").await);
    let page = |cookie: Option<&'static str>| {
        let mut req = a.get(format!("{}/", f.base));
        if let Some(c) = cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        async move { req.send().await.expect("fleet").text().await.expect("body") }
    };
    let zh = page(None).await;
    assert!(zh.contains("<html lang=\"zh-CN\">"), "{zh}");
    assert!(zh.contains(">电站总览</a>"), "{zh}");
    let en = page(Some("sunshare_lang=en")).await;
    assert!(en.contains("<html lang=\"en\">"), "{en}");
    assert!(
        en.contains(">Fleet</a>") && !en.contains(">电站总览</a>"),
        "{en}"
    );
    assert!(en.contains("href=\"/lang?to=zh-CN&amp;back=%2F\""), "{en}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_finishes_is_cut_off_and_stores_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A client that announces a settlement file and stops sending half-way (a stalled upload or
    // a slow-loris): the request ends at `request_timeout` with 503, not when the client gives up.
    let f = fleet_with("[http]\nrequest_timeout = \"300ms\"").await;
    let token = token_for(&f, "operator").await;
    let addr = f.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/settlements?name=stalled.csv HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {token}\r\ncontent-type: text/csv\r\ncontent-length: 4096\r\n\r\n\
         电站编号,结算月份,上网电量(kWh)\nSA-east,2026-01,"
    );
    socket.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // Bounded only so a broken build fails instead of hanging; the server answers far sooner.
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let n = socket.read(&mut buf).await.expect("read");
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled request");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        f.store
            .settlement_imports()
            .await
            .expect("imports")
            .is_empty(),
        "nothing of a cut-off upload is stored"
    );
    let health = client()
        .get(format!("{}/healthz", f.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200, "the service goes on serving");
}
