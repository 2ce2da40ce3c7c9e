//! The pages in a real browser: headless Chromium driven over WebDriver (Debian's chromedriver,
//! started here on a free port) against the service started on port 0. A village accountant signs
//! in through the login form, sees only their village, is refused another's, signs out; the fleet
//! page's script updates its cells in place from the JSON API while signed in.
//!
//! Runs when `SUNSHARE_TEST_CHROMIUM` names a Chromium binary (CI sets it); otherwise says it
//! skipped. `SUNSHARE_TEST_CHROMEDRIVER` names chromedriver (default /usr/bin/chromedriver).
//! Screenshots land in `target/test-artifacts/`.

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use secrecy::SecretString;
use std::future::Future;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sunshare::accounts::{add_user, NewUser};
use sunshare::app::{self, Running};
use sunshare::config::Deployment;
use sunshare::domain::{
    DeviceId, DeviceState, Metric, Readings, Role, Sample, ScopeEntry, StationId,
};

const VILLAGE_A: &str = "140121101201";
const VILLAGE_B: &str = "140121101202";
const STATION_A: &str = "DY-01";
const STATION_B: &str = "XL-01";
const STATION_A_NAME: &str = "东于村光伏电站";
const STATION_B_NAME: &str = "西梁村光伏电站";

const ACCOUNTANT: &str = "acct-dongyu";
const ACCOUNTANT_NAME: &str = "赵春梅";
const ACCOUNTANT_PASSWORD: &str = "Chunmei-2026-pv";
const OPERATOR: &str = "op-wang";
const OPERATOR_PASSWORD: &str = "Wang-operator-2026";
const ADMIN: &str = "county-admin";
const ADMIN_PASSWORD: &str = "Qingxu-energy-2026";

const CONFIG: &str = r#"
[[counties]]
id = "140121"
name = "清徐县"
province = "shanxi"

[[townships]]
id = "140121-101"
name = "东于镇"
county = "140121"

[[villages]]
code = "140121101201"
name = "东于村"
township = "140121-101"

[[villages]]
code = "140121101202"
name = "西梁村"
township = "140121-101"

[[tariffs]]
id = "shanxi-2017"
price = "0.85"
province = "shanxi"

[[coal_prices]]
province = "shanxi"
from = "2017-07-01"
price = "0.332"

[[stations]]
id = "DY-01"
name = "东于村光伏电站"
kind = "village"
county = "140121"
capacity_kwp = 300
latitude = 37.607
longitude = 112.358
commissioned = "2017-06-30"
tariff = "shanxi-2017"
village = "140121101201"

[[stations]]
id = "XL-01"
name = "西梁村光伏电站"
kind = "village"
county = "140121"
capacity_kwp = 200
latitude = 37.612
longitude = 112.371
commissioned = "2018-05-20"
tariff = "shanxi-2017"
village = "140121101202"

[[devices]]
id = "DY-01-INV1"
station = "DY-01"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "mqtt", logger = "dtu-dongyu", unit = 1 }
rated_power_w = 100000

[[devices]]
id = "DY-01-INV2"
station = "DY-01"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "mqtt", logger = "dtu-dongyu", unit = 2 }
rated_power_w = 100000

[[devices]]
id = "XL-01-INV1"
station = "XL-01"
kind = "inverter"
model = "sungrow_sg"
transport = { type = "mqtt", logger = "dtu-xiliang", unit = 1 }
rated_power_w = 110000

[[households]]
id = "1401211012010001"
village = "140121101201"
head = "王秀兰"
status = [{ status = "not_exited", from = "2016-03-01" }]
labour = "weak"

[[households]]
id = "1401211012010002"
village = "140121101201"
head = "张志强"
status = [{ status = "not_exited", from = "2016-03-01" }]
labour = "full"
bank_account = "6228000011113333"

[[jobs]]
id = "DY-BJ-01"
village = "140121101201"
title = "保洁员"
holder = "1401211012010002"
monthly_wage = "600"
from = "2026-01-01"

[[plans]]
village = "140121101201"
year = 2026
expected_net = "100000"
lines = { job_wages = "7200", temp_labour = "0", small_project = "0", reward_subsidy = "0", reserve = "1200" }

[[households]]
id = "1401211012020001"
village = "140121101202"
head = "李建国"
status = [{ status = "not_exited", from = "2016-03-01" }]
labour = "full"
"#;

/// How long any one thing may take to show up in the browser or the store.
const PATIENCE: Duration = Duration::from_secs(20);

fn chromium() -> Option<String> {
    match std::env::var("SUNSHARE_TEST_CHROMIUM") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            sunshare::store::testing::announce_skip("SKIPPED (Chromium) browser tests: set SUNSHARE_TEST_CHROMIUM=/usr/bin/chromium (and SUNSHARE_TEST_CHROMEDRIVER if chromedriver is not /usr/bin/chromedriver) to run them");
            None
        }
    }
}

/// Polls `probe` until it yields a value, at most [`PATIENCE`]; panics naming `what` otherwise.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// chromedriver on a free port, in a process group of its own so that dropping it also ends the
/// Chromium it started, whatever state the test left the session in.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    async fn start(dir: &Path) -> Driver {
        let bin = std::env::var("SUNSHARE_TEST_CHROMEDRIVER")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/usr/bin/chromedriver".to_owned());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let mut driver = Driver { child, port, log };
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        eventually("chromedriver to report ready", || {
            let exited = driver.child.try_wait().expect("child status");
            assert!(
                exited.is_none(),
                "chromedriver exited ({exited:?}): {}",
                driver.log_text()
            );
            let request = http.get(&status).send();
            async move {
                let body: serde_json::Value = request.await.ok()?.json().await.ok()?;
                (body["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); Chromium and its helpers are in it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session in a fresh Chromium profile. Field order matters: the session is closed
/// (by `close`) before the driver is dropped, and the profile is removed last.
struct Browser {
    client: Client,
    driver: Driver,
    /// Where the browser saves what it downloads.
    downloads: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(chromium: &str) -> Browser {
        // rustls, which the WebDriver client is built on, cannot choose a crypto provider by
        // itself when the build has two (ring and aws-lc-rs); the connection is plain HTTP anyway.
        let _ =
            rumqttc::tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
        let profile = tempfile::tempdir().expect("profile dir");
        let driver = Driver::start(profile.path()).await;
        let user_data = profile.path().join("chromium");
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).expect("downloads dir");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| panic!("WebDriver session: {e}\n{}", driver.log_text()));
        Browser {
            client,
            driver,
            downloads,
            _profile: profile,
        }
    }

    async fn close(self) {
        let Browser {
            client,
            driver,
            downloads: _,
            _profile,
        } = self;
        client.close().await.expect("closing the session");
        drop(driver);
    }
}

/// The service with the deployment above and the accountant of village A.
async fn service(dir: &Path) -> (Running, Arc<Deployment>) {
    let deployment = Arc::new(
        Deployment::from_str_with_env("browser.toml", CONFIG, &[], &app::known_models())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = app::start(Arc::clone(&deployment), &dir.join("data"), listener)
        .await
        .expect("start");
    add_user(
        &running.store,
        &deployment,
        NewUser {
            username: ACCOUNTANT.to_owned(),
            display_name: ACCOUNTANT_NAME.to_owned(),
            role: Role::Accountant,
            scope: vec![ScopeEntry::Village(VILLAGE_A.to_owned())],
            password: SecretString::from(ACCOUNTANT_PASSWORD),
        },
        "test",
        "test",
    )
    .await
    .expect("add the accountant");
    add_user(
        &running.store,
        &deployment,
        NewUser {
            username: ADMIN.to_owned(),
            display_name: "县能源办".to_owned(),
            role: Role::Admin,
            scope: vec![ScopeEntry::All],
            password: SecretString::from(ADMIN_PASSWORD),
        },
        "test",
        "test",
    )
    .await
    .expect("add the administrator");
    add_user(
        &running.store,
        &deployment,
        NewUser {
            username: OPERATOR.to_owned(),
            display_name: "王工".to_owned(),
            role: Role::Operator,
            scope: vec![ScopeEntry::County("140121".to_owned())],
            password: SecretString::from(OPERATOR_PASSWORD),
        },
        "test",
        "test",
    )
    .await
    .expect("add the operator");
    (running, deployment)
}

/// The path (and query) the browser is on.
async fn location(c: &Client) -> String {
    let url = c.current_url().await.expect("current url");
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Waits until the browser is on `path` and `css` matches; returns that element's text.
async fn arrive(c: &Client, path: &str, css: &str) -> String {
    eventually(&format!("{path} with {css}"), || async move {
        if location(c).await != path {
            return None;
        }
        c.find(Locator::Css(css)).await.ok()?.text().await.ok()
    })
    .await
}

async fn fill(c: &Client, name: &str, value: &str) {
    fill_in(c, "form[action=\"/login\"]", name, value).await;
}

/// Types `value` into the field `name` of the form `form` (a CSS selector).
async fn fill_in(c: &Client, form: &str, name: &str, value: &str) {
    let field = c
        .find(Locator::Css(&format!("{form} input[name=\"{name}\"]")))
        .await
        .unwrap_or_else(|e| panic!("{form} field {name}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

/// The plan steps the village page offers, by their radio buttons' values.
async fn offered_steps(c: &Client) -> Vec<String> {
    let mut steps = Vec::new();
    for radio in c
        .find_all(Locator::Css("#plan-form input[name=\"to\"]"))
        .await
        .expect("step radios")
    {
        steps.extend(radio.attr("value").await.expect("value"));
    }
    steps
}

/// Fills in and submits the login form the browser is on.
async fn submit_login(c: &Client, username: &str, password: &str) {
    fill(c, "username", username).await;
    fill(c, "password", password).await;
    c.find(Locator::Css(
        "form[action=\"/login\"] button[type=\"submit\"]",
    ))
    .await
    .expect("sign-in button")
    .click()
    .await
    .expect("click sign in");
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = artifacts().join(name);
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("body text")
}

/// The station rows of the fleet table, by `data-station`.
async fn fleet_rows(c: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for row in c
        .find_all(Locator::Css("#fleet tr[data-station]"))
        .await
        .expect("fleet rows")
    {
        ids.extend(row.attr("data-station").await.expect("attribute"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accountant_signs_in_sees_only_their_village_and_signs_out() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, _deployment) = service(dir.path()).await;
    let base = format!("http://{}", running.http_addr);
    let browser = Browser::open(&chromium).await;
    let c = &browser.client;

    // Not signed in: the fleet page sends the browser to the login form, to come back to `/`.
    c.goto(&format!("{base}/")).await.expect("open /");
    let heading = arrive(c, "/login?next=%2F", ".login h1").await;
    assert!(heading.contains("登录"), "login heading: {heading}");
    assert!(c.find(Locator::Css("#signed-in")).await.is_err());
    screenshot(c, "login.png").await;

    // A wrong password: the error in place, the name kept, nobody signed in.
    submit_login(c, ACCOUNTANT, "not-the-password").await;
    let error = arrive(c, "/login", "#login-error").await;
    assert!(error.contains("用户名或密码不正确"), "login error: {error}");
    let kept = c
        .find(Locator::Css("input[name=\"username\"]"))
        .await
        .expect("username field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some(ACCOUNTANT));
    assert!(c.find(Locator::Css("#signed-in")).await.is_err());
    screenshot(c, "login-error.png").await;
    c.goto(&format!("{base}/")).await.expect("open /");
    arrive(c, "/login?next=%2F", "form[action=\"/login\"]").await;

    // The right password: back on the fleet page, as the accountant, with village A's station only.
    submit_login(c, ACCOUNTANT, ACCOUNTANT_PASSWORD).await;
    let who = arrive(c, "/", "#signed-in").await;
    assert!(
        who.contains(ACCOUNTANT_NAME) && who.contains("村会计"),
        "header: {who}"
    );
    assert_eq!(fleet_rows(c).await, vec![STATION_A.to_owned()]);
    let text = body_text(c).await;
    assert!(text.contains(STATION_A_NAME), "{text}");
    assert!(
        !text.contains(STATION_B_NAME) && !text.contains(STATION_B),
        "village B's station on the accountant's fleet page: {text}"
    );
    screenshot(c, "fleet-accountant.png").await;

    // The villages list: A only.
    c.goto(&format!("{base}/villages"))
        .await
        .expect("open /villages");
    arrive(c, "/villages", "#signed-in").await;
    let mut listed = Vec::new();
    for a in c
        .find_all(Locator::Css("main a[href^=\"/villages/\"]"))
        .await
        .expect("village links")
    {
        listed.extend(a.attr("href").await.expect("href"));
    }
    assert_eq!(listed, vec![format!("/villages/{VILLAGE_A}")]);
    let text = body_text(c).await;
    assert!(
        text.contains("东于村") && !text.contains("西梁村"),
        "{text}"
    );

    // Their own village opens; village B's page and station are refused with a 403 page.
    c.goto(&format!("{base}/villages/{VILLAGE_A}"))
        .await
        .expect("open village A");
    let own = arrive(c, &format!("/villages/{VILLAGE_A}"), "main h1").await;
    assert!(own.contains("东于村"), "village A's page: {own}");
    c.goto(&format!("{base}/stations/{STATION_B}"))
        .await
        .expect("open station B");
    let refused = arrive(c, &format!("/stations/{STATION_B}"), "main h1").await;
    assert!(refused.contains("403"), "station B: {refused}");
    c.goto(&format!("{base}/villages/{VILLAGE_B}"))
        .await
        .expect("open village B");
    let refused = arrive(c, &format!("/villages/{VILLAGE_B}"), "main h1").await;
    assert!(refused.contains("403"), "village B: {refused}");
    let reason = arrive(c, &format!("/villages/{VILLAGE_B}"), "#refusal-reason").await;
    assert!(
        reason.contains("无权查看该村账目"),
        "said in Chinese: {reason}"
    );
    let text = body_text(c).await;
    assert!(
        !text.contains("李建国"),
        "village B's household shown: {text}"
    );
    screenshot(c, "forbidden.png").await;

    // Signing out from the header: on the login form, and the session is gone.
    c.goto(&format!("{base}/")).await.expect("open /");
    arrive(c, "/", "#signed-in").await;
    c.find(Locator::Css("header form[action=\"/logout\"] button"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("click sign out");
    arrive(c, "/login", "form[action=\"/login\"]").await;
    c.goto(&format!("{base}/")).await.expect("open / again");
    arrive(c, "/login?next=%2F", "form[action=\"/login\"]").await;
    assert!(c.find(Locator::Css("#signed-in")).await.is_err());

    browser.close().await;
    running.shutdown().await;
}

fn producing(device: &str, watts: f64) -> Sample {
    let mut readings = Readings::default();
    readings.set(Metric::AcPowerW, watts);
    readings.state = Some(DeviceState::Producing);
    Sample {
        device: DeviceId::new(device),
        at: Utc::now(),
        readings,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_page_refreshes_in_place_when_signed_in() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, _deployment) = service(dir.path()).await;
    let base = format!("http://{}", running.http_addr);
    let browser = Browser::open(&chromium).await;
    let c = &browser.client;

    c.goto(&format!("{base}/")).await.expect("open /");
    arrive(c, "/login?next=%2F", "form[action=\"/login\"]").await;
    submit_login(c, ACCOUNTANT, ACCOUNTANT_PASSWORD).await;
    arrive(c, "/", "#signed-in").await;
    let power_cell = format!("#fleet tr[data-station=\"{STATION_A}\"] .power");
    let text_of = |css: String| async move {
        c.find(Locator::Css(&css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    };
    // Nothing reported yet, and the script has not run.
    assert_eq!(text_of(power_cell.clone()).await, "0.0");
    assert_eq!(text_of("#total-power".into()).await, "0.0 kW");
    let fleet = c.find(Locator::Css("#fleet")).await.expect("#fleet");
    assert_eq!(fleet.attr("data-refreshed").await.expect("attr"), None);
    // Survives only if the page is not reloaded.
    c.execute("window.sunshareTestMark = 'kept'; return true;", vec![])
        .await
        .expect("mark the page");

    // New samples for both villages, in the store before the page asks.
    running
        .ingest
        .submit(vec![
            producing("DY-01-INV1", 87_500.0),
            producing("XL-01-INV1", 50_000.0),
        ])
        .await
        .expect("submit");
    let store = &running.store;
    eventually("both samples in the store", || async move {
        let now = store.fleet_now().await.ok()?;
        let power = |id: &str| now.get(&StationId::new(id)).map(|n| n.power_w);
        (power(STATION_A) == Some(87_500.0) && power(STATION_B) == Some(50_000.0)).then_some(())
    })
    .await;

    // What the 15 s timer does, now: fetch /api/stations and update the cells.
    let kind = c
        .execute("refresh(); return typeof refresh;", vec![])
        .await
        .expect("call refresh()");
    assert_eq!(kind, "function");
    let refreshed = eventually("#fleet[data-refreshed] and the new power", || {
        let cell = power_cell.clone();
        async move {
            let stamp = c
                .find(Locator::Css("#fleet[data-refreshed]"))
                .await
                .ok()?
                .attr("data-refreshed")
                .await
                .ok()??;
            let power = c.find(Locator::Css(&cell)).await.ok()?.text().await.ok()?;
            (power == "87.5").then_some(stamp)
        }
    })
    .await;
    assert!(
        chrono::DateTime::parse_from_rfc3339(&refreshed).is_ok(),
        "data-refreshed is the refresh time: {refreshed}"
    );
    // The total is village A's alone: the API answers the accountant's scope, not B's 50 kW.
    assert_eq!(text_of("#total-power".into()).await, "87.5 kW");
    assert_eq!(fleet_rows(c).await, vec![STATION_A.to_owned()]);
    let mark = c
        .execute("return window.sunshareTestMark || null;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(mark, "kept", "the cells changed without a page load");
    screenshot(c, "fleet-refreshed.png").await;

    browser.close().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accountant_moves_the_plan_from_the_village_page_and_a_refusal_stays_in_place() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, _deployment) = service(dir.path()).await;
    let base = format!("http://{}", running.http_addr);
    let browser = Browser::open(&chromium).await;
    let c = &browser.client;
    let village = format!("/villages/{VILLAGE_A}");

    c.goto(&format!("{base}{village}"))
        .await
        .expect("open village A");
    arrive(
        c,
        "/login?next=%2Fvillages%2F140121101201",
        "form[action=\"/login\"]",
    )
    .await;
    submit_login(c, ACCOUNTANT, ACCOUNTANT_PASSWORD).await;
    let state = arrive(c, &village, "#plan-state").await;
    assert_eq!(state, "草拟");
    assert_eq!(offered_steps(c).await, ["DELIBERATED"]);
    assert!(body_text(c).await.contains("2026 年度收益分配方案"));
    screenshot(c, "village-plan-draft.png").await;

    // The plan's figures, on its own page: over the income is refused in place; then saved, and a
    // planned payment added within its line's budget.
    let plan_page = format!("{village}/plans/2026");
    c.find(Locator::Css("#plan-page-link"))
        .await
        .expect("plan page link")
        .click()
        .await
        .expect("open the plan page");
    arrive(c, &plan_page, "#plan-edit-form").await;
    fill_in(c, "#plan-edit-form", "expected_net", "8000").await;
    submit(c, "#plan-edit-form").await;
    let error = arrive(c, &plan_page, "#plan-expected_net-error").await;
    assert!(
        error.contains("超过预计净收入") && error.contains("8400.00"),
        "{error}"
    );
    screenshot(c, "plan-refused.png").await;
    fill_in(c, "#plan-edit-form", "expected_net", "100000").await;
    fill_in(c, "#plan-edit-form", "temp_labour", "1000").await;
    submit(c, "#plan-edit-form").await;
    let source = arrive(c, &plan_page, "#plan-source").await;
    assert!(source.contains(ACCOUNTANT), "{source}");
    choose(c, "#plan-entry-form", "line", "TEMP_LABOUR").await;
    fill_in(c, "#plan-entry-form", "month", "2026-03").await;
    choose(c, "#plan-entry-form", "household", "1401211012010001").await;
    fill_in(c, "#plan-entry-form", "amount", "800").await;
    fill_in(c, "#plan-entry-form", "description", "修缮村道 8 天").await;
    submit(c, "#plan-entry-form").await;
    let entries = arrive(c, &plan_page, "#plan-entries-table").await;
    assert!(
        entries.contains("修缮村道 8 天") && entries.contains("800.00"),
        "{entries}"
    );
    let stored = running
        .store
        .stored_plan(VILLAGE_A, 2026)
        .await
        .expect("read")
        .expect("the plan is in the registry");
    assert_eq!(stored.entries.len(), 1);
    screenshot(c, "plan-drafted.png").await;
    c.find(Locator::Css("#village-link"))
        .await
        .expect("back link")
        .click()
        .await
        .expect("back to the village");
    arrive(c, &village, "#plan-state").await;

    // No note: the refusal shows next to the form, the plan stays a draft.
    submit(c, "#plan-form").await;
    let error = arrive(
        c,
        &format!("{village}/plans/2026/transitions"),
        "#plan-error",
    )
    .await;
    assert!(error.contains("依据"), "{error}");
    let field = c
        .find(Locator::Css("#plan-form input[name=\"note\"]"))
        .await
        .expect("note field");
    assert_eq!(
        field.attr("aria-invalid").await.expect("attr").as_deref(),
        Some("true")
    );
    assert_eq!(
        c.find(Locator::Css("#plan-state"))
            .await
            .expect("state")
            .text()
            .await
            .expect("text"),
        "草拟"
    );
    assert_eq!(
        running
            .store
            .plan_state(VILLAGE_A, 2026)
            .await
            .expect("state"),
        sunshare::allocate::PlanState::Draft
    );
    screenshot(c, "village-plan-refused.png").await;

    // A note but not the dates of the four meetings: each missing date is named in place.
    fill_in(c, "#plan-form", "note", "2026年1月5日村民代表会议决议").await;
    set_date(c, "#plan-form", "meeting_proposal", "2026-01-02").await;
    set_date(c, "#plan-form", "meeting_consultation", "2026-01-01").await;
    submit(c, "#plan-form").await;
    let error = arrive(
        c,
        &format!("{village}/plans/2026/transitions"),
        "#meeting_consultation-error",
    )
    .await;
    assert!(error.contains("顺序"), "{error}");
    let missing = arrive(
        c,
        &format!("{village}/plans/2026/transitions"),
        "#meeting_resolution-error",
    )
    .await;
    assert!(missing.contains("请填写日期"), "{missing}");
    assert_eq!(
        running
            .store
            .plan_state(VILLAGE_A, 2026)
            .await
            .expect("state"),
        sunshare::allocate::PlanState::Draft
    );
    screenshot(c, "village-plan-meetings-refused.png").await;

    // With the meeting named and its four dates: deliberated, recorded with who, why and when.
    fill_in(c, "#plan-form", "note", "2026年1月5日村民代表会议决议").await;
    for (meeting, day) in [
        ("proposal", "2026-01-02"),
        ("consultation", "2026-01-03"),
        ("review", "2026-01-04"),
        ("resolution", "2026-01-05"),
    ] {
        set_date(c, "#plan-form", &format!("meeting_{meeting}"), day).await;
    }
    c.find(Locator::Css("#plan-form textarea[name=\"attachments\"]"))
        .await
        .expect("attachments")
        .send_keys("村民代表会议记录.pdf\n签到表.jpg")
        .await
        .expect("type");
    submit(c, "#plan-form").await;
    let state = arrive(c, &village, "#plan-state").await;
    assert_eq!(state, "四议通过");
    let history = c
        .find(Locator::Css("#plan-history tbody"))
        .await
        .expect("history")
        .text()
        .await
        .expect("text");
    assert!(
        history.contains("草拟 → 四议通过")
            && history.contains(ACCOUNTANT)
            && history.contains("村民代表会议决议")
            && history.contains("村党组织提议 2026-01-02")
            && history.contains("村民（代表）会议决议 2026-01-05")
            && history.contains("村民代表会议记录.pdf、签到表.jpg"),
        "{history}"
    );
    assert_eq!(
        running
            .store
            .plan_state(VILLAGE_A, 2026)
            .await
            .expect("state"),
        sunshare::allocate::PlanState::Deliberated
    );

    // Publishing is the village's; the township's approval is not offered to its accountant.
    assert_eq!(offered_steps(c).await, ["PLAN_PUBLISHED", "DRAFT"]);
    let chosen = c
        .find(Locator::Css("#plan-form input[value=\"PLAN_PUBLISHED\"]"))
        .await
        .expect("publish radio")
        .prop("checked")
        .await
        .expect("checked");
    assert_eq!(
        chosen.as_deref(),
        Some("true"),
        "the step forward is the one chosen"
    );
    fill_in(c, "#plan-form", "note", "村务公开栏张贴 5 天").await;
    set_date(c, "#plan-form", "published_on", "2026-01-06").await;
    submit(c, "#plan-form").await;
    let state = arrive(c, &village, "#plan-state").await;
    assert_eq!(state, "方案公开");
    let history = c
        .find(Locator::Css("#plan-history tr[data-to=\"PLAN_PUBLISHED\"]"))
        .await
        .expect("the publication in the history")
        .text()
        .await
        .expect("text");
    assert!(history.contains("公开 2026-01-06"), "{history}");
    assert_eq!(offered_steps(c).await, ["DRAFT"]);
    screenshot(c, "village-plan-published.png").await;

    browser.close().await;
    running.shutdown().await;
}

/// Clicks the submit button of the form `form` (a CSS selector).
async fn submit(c: &Client, form: &str) {
    c.find(Locator::Css(&format!("{form} button[type=\"submit\"]")))
        .await
        .unwrap_or_else(|e| panic!("{form} submit button: {e}"))
        .click()
        .await
        .expect("click submit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_county_allocates_a_month_and_locks_it_paid_from_the_villages_page() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, _deployment) = service(dir.path()).await;
    let base = format!("http://{}", running.http_addr);
    let browser = Browser::open(&chromium).await;
    let c = &browser.client;

    c.goto(&format!("{base}/villages"))
        .await
        .expect("open /villages");
    arrive(c, "/login?next=%2Fvillages", "form[action=\"/login\"]").await;
    submit_login(c, ADMIN, ADMIN_PASSWORD).await;
    arrive(c, "/villages", "#allocate-form").await;

    // A month that is not one: refused next to the field, nothing recorded.
    fill_in(c, "#allocate-form", "month", "2026-13").await;
    submit(c, "#allocate-form").await;
    let error = arrive(c, "/villages/months", "#allocate-error").await;
    assert!(error.contains("YYYY-MM"), "{error}");
    assert!(running
        .store
        .ledger_month_list(10)
        .await
        .expect("months")
        .is_empty());

    // November: recorded for every village, then listed as allocated and not paid.
    fill_in(c, "#allocate-form", "month", "2026-11").await;
    submit(c, "#allocate-form").await;
    arrive(c, "/villages", "#months-table tr[data-month=\"2026-11\"]").await;
    let row = c
        .find(Locator::Css("#months-table tr[data-month=\"2026-11\"]"))
        .await
        .expect("row");
    assert_eq!(
        row.attr("data-status").await.expect("attr").as_deref(),
        Some("COMPUTED")
    );
    assert!(row.text().await.expect("text").contains(ADMIN));
    let village = running
        .store
        .village_month(VILLAGE_A, "2026-11")
        .await
        .expect("read")
        .expect("village A's November");
    assert_eq!(village.month, "2026-11");

    // Paying needs the bank's batch; with it the month locks.
    submit(c, "#pay-form").await;
    let error = arrive(c, "/villages/months/2026-11/paid", "#pay-error").await;
    assert!(error.contains("批次"), "{error}");
    fill_in(c, "#pay-form", "note", "农商行代发 2026-11-001").await;
    submit(c, "#pay-form").await;
    arrive(c, "/villages", "#months-table tr[data-status=\"PAID\"]").await;
    assert!(
        c.find(Locator::Css("#pay-form")).await.is_err(),
        "nothing left to pay"
    );
    screenshot(c, "villages-months-paid.png").await;

    // A paid month is not computed again.
    fill_in(c, "#allocate-form", "month", "2026-11").await;
    submit(c, "#allocate-form").await;
    let error = arrive(c, "/villages/months", "#allocate-error").await;
    assert!(error.contains("2026-11"), "{error}");
    let paid = running
        .store
        .ledger_month(sunshare::domain::YearMonth::new(2026, 11).expect("month"))
        .await
        .expect("read")
        .expect("November");
    assert_eq!(paid.status, "PAID");

    // The accountant sees the month on their village page but is offered neither form.
    c.find(Locator::Css("header form[action=\"/logout\"] button"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("click sign out");
    arrive(c, "/login", "form[action=\"/login\"]").await;
    c.goto(&format!("{base}/villages"))
        .await
        .expect("open /villages");
    arrive(c, "/login?next=%2Fvillages", "form[action=\"/login\"]").await;
    submit_login(c, ACCOUNTANT, ACCOUNTANT_PASSWORD).await;
    arrive(c, "/villages", "#villages").await;
    assert!(c.find(Locator::Css("#allocate-form")).await.is_err());
    c.goto(&format!("{base}/villages/{VILLAGE_A}"))
        .await
        .expect("open village A");
    let status = arrive(c, &format!("/villages/{VILLAGE_A}"), "[data-month-status]").await;
    assert!(status.contains("已发放"), "{status}");
    assert!(
        c.find(Locator::Css("#roster-xlsx")).await.is_ok(),
        "the roster link"
    );
    let month_bar = c
        .find(Locator::Css(
            "svg.chart-village-money [data-label=\"2026-11\"]",
        ))
        .await
        .expect("November in the year's money chart");
    assert!(month_bar.attr("data-value").await.expect("attr").is_some());
    screenshot(c, "village-month-paid.png").await;

    browser.close().await;
    running.shutdown().await;
}

/// Sets the date field `name` of the form `form` to `value` (YYYY-MM-DD), as its picker would:
/// typed keys go through the picker's locale order.
async fn set_date(c: &Client, form: &str, name: &str, value: &str) {
    c.execute(
        "document.querySelector(arguments[0]).value = arguments[1];",
        vec![
            serde_json::json!(format!("{form} input[name=\"{name}\"]")),
            serde_json::json!(value),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{form} date {name}: {e}"));
}

/// Chooses `file` in the file field of the form `form` and submits it.
async fn upload(c: &Client, form: &str, file: &Path) {
    c.find(Locator::Css(&format!("{form} input[type=\"file\"]")))
        .await
        .unwrap_or_else(|e| panic!("{form} file input: {e}"))
        .send_keys(&file.display().to_string())
        .await
        .expect("choose file");
    submit(c, form).await;
}

/// Chooses `value` in the select `name` of the form `form`.
async fn choose(c: &Client, form: &str, name: &str, value: &str) {
    c.find(Locator::Css(&format!(
        "{form} select[name=\"{name}\"] option[value=\"{value}\"]"
    )))
    .await
    .unwrap_or_else(|e| panic!("{form} {name}={value}: {e}"))
    .click()
    .await
    .expect("choose");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_day_filter_the_fleet_import_the_settlement_acknowledge_an_alert() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, _deployment) = service(dir.path()).await;
    let base = format!("http://{}", running.http_addr);
    // Station B's gateway went quiet at noon.
    let noon = Utc::now() - chrono::Duration::minutes(30);
    running
        .store
        .open_alert(&sunshare::store::NewAlert {
            kind: "offline",
            station: STATION_B,
            subject: "",
            county: "140121",
            severity: "major",
            message: "no device has reported for 30 minutes while the sun is up",
            opened_at: noon,
            since: noon,
            flapping: false,
        })
        .await
        .expect("open an alert");
    let samples = vec![
        producing("DY-01-INV1", 61_000.0),
        producing("DY-01-INV2", 59_000.0),
    ];
    running.ingest.submit(samples).await.expect("submit");
    let browser = Browser::open(&chromium).await;
    let c = &browser.client;

    c.goto(&format!("{base}/")).await.expect("open /");
    arrive(c, "/login?next=%2F", "form[action=\"/login\"]").await;
    submit_login(c, OPERATOR, OPERATOR_PASSWORD).await;
    arrive(c, "/", "#fleet").await;
    eventually("both stations listed", || async {
        (fleet_rows(c).await.len() == 2).then_some(())
    })
    .await;

    // Only the stations producing now.
    eventually("station A producing", || async {
        c.goto(&format!("{base}/")).await.ok()?;
        let status = c
            .find(Locator::Css(&format!(
                "#fleet tr[data-station=\"{STATION_A}\"] .status"
            )))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (status == "发电中" || status == "夜间待机").then_some(())
    })
    .await;
    let station_a_status = c
        .find(Locator::Css(&format!(
            "#fleet tr[data-station=\"{STATION_A}\"] .status"
        )))
        .await
        .expect("status")
        .text()
        .await
        .expect("text");
    let code = if station_a_status == "发电中" {
        "producing"
    } else {
        "sleeping"
    };
    choose(c, "#fleet-filter", "status", code).await;
    submit(c, "#fleet-filter").await;
    arrive(
        c,
        &format!("/?county=&township=&kind=&status={code}&q="),
        "#filtered",
    )
    .await;
    assert_eq!(fleet_rows(c).await, [STATION_A]);
    screenshot(c, "operator-fleet-filtered.png").await;

    // The station page from the filtered list.
    c.find(Locator::Css(&format!(
        "#fleet a[href=\"/stations/{STATION_A}\"]"
    )))
    .await
    .expect("station link")
    .click()
    .await
    .expect("open station");
    let heading = arrive(c, &format!("/stations/{STATION_A}"), "main h1").await;
    assert!(heading.contains(STATION_A_NAME), "{heading}");
    // Today's power against the sun's curve: the reading of a moment ago is a point on it.
    let points = c
        .find_all(Locator::Css(
            "svg.chart-power-day circle.chart-point.chart-power",
        ))
        .await
        .expect("power points");
    assert!(!points.is_empty(), "no power point in today's chart");
    let kw = points[points.len() - 1]
        .attr("data-value")
        .await
        .expect("attr")
        .and_then(|v| v.parse::<f64>().ok())
        .expect("a kW value");
    assert!((kw - 120.0).abs() < 0.5, "power now {kw} kW, fed 120 kW");
    assert!(c
        .find(Locator::Css("svg.chart-power-day .chart-sun"))
        .await
        .is_ok());
    let bars = c
        .find_all(Locator::Css(
            "svg.chart-daily-energy .chart-bar[data-label]",
        ))
        .await
        .expect("day bars");
    assert_eq!(bars.len(), 30, "30 days of energy");
    assert!(c
        .find(Locator::Css("svg.chart-settled-metered"))
        .await
        .is_ok());
    screenshot(c, "operator-station.png").await;

    // The settlement: a file with a bad line is refused whole, with the line; the corrected file
    // is imported.
    let files = dir.path().join("uploads");
    std::fs::create_dir_all(&files).expect("uploads dir");
    let bad = files.join("结算单-错误.csv");
    std::fs::write(
        &bad,
        "电站编号,结算月份,上网电量(kWh)\nDY-01,2026-10,31250\nXL-01,2026-10,-5\n",
    )
    .expect("write");
    c.goto(&format!("{base}/settlements"))
        .await
        .expect("open /settlements");
    arrive(c, "/settlements", "#upload-form").await;
    upload(c, "#upload-form", &bad).await;
    let error = arrive(c, "/settlements", "#upload-error").await;
    assert!(error.contains("未导入"), "{error}");
    let problem = c
        .find(Locator::Css("#problems tr[data-line=\"3\"]"))
        .await
        .expect("the bad line named")
        .text()
        .await
        .expect("text");
    assert!(problem.contains('3'), "{problem}");
    assert!(running
        .store
        .settlements_of(&"DY-01".into())
        .await
        .expect("read")
        .is_empty());
    screenshot(c, "operator-settlement-refused.png").await;
    let good = files.join("结算单.csv");
    // As real statements come: a title row, the settled amounts, a total row (西梁村's amount is
    // 40 yuan short of 20,400 kWh at 0.85).
    std::fs::write(
        &good,
        "国网清徐县供电公司光伏扶贫电站上网电费结算单 2026年10月,,,\n\
         电站编号,结算月份,上网电量(kWh),结算金额(元)\n\
         DY-01,2026-10,31250,26562.50\n\
         XL-01,2026-10,20400,17300.00\n\
         合 计,,51650,43862.50\n",
    )
    .expect("write");
    upload(c, "#upload-form", &good).await;
    let done = arrive(c, "/settlements", "#upload-done").await;
    assert!(done.contains("已导入 2 个电站月份"), "{done}");
    assert_eq!(
        running
            .store
            .settlements_of(&"DY-01".into())
            .await
            .expect("read")
            .len(),
        1
    );
    let warned = c
        .find(Locator::Css("#amount-warnings tr[data-line=\"4\"]"))
        .await
        .expect("the short amount flagged")
        .text()
        .await
        .expect("text");
    assert!(
        warned.contains("XL-01") && warned.contains("-40.00"),
        "{warned}"
    );
    screenshot(c, "operator-settlement-imported.png").await;
    // The same file again, under the same name: recognised, nothing stored twice.
    upload(c, "#upload-form", &good).await;
    let error = arrive(c, "/settlements", "#upload-error").await;
    assert!(
        error.contains("已于") && error.contains("未重复导入"),
        "{error}"
    );
    assert_eq!(
        c.find_all(Locator::Css("#imports tr[data-import]"))
            .await
            .expect("imports")
            .len(),
        1
    );

    // The alert: acknowledged with a note, and no longer offered.
    c.goto(&format!("{base}/alerts"))
        .await
        .expect("open /alerts");
    arrive(c, "/alerts", "form.ack").await;
    fill_in(c, "form.ack", "note", "已派人去西梁村").await;
    submit(c, "form.ack").await;
    let acked = arrive(c, "/alerts", ".acked").await;
    assert!(
        acked.contains("王工") || acked.contains(OPERATOR),
        "{acked}"
    );
    assert!(c.find(Locator::Css("form.ack")).await.is_err());
    screenshot(c, "operator-alert-acknowledged.png").await;

    browser.close().await;
    running.shutdown().await;
}

/// The roster file of village A as the poverty registry exports it: 王秀兰 as registered,
/// 张志强 with a new payout account, and a household the registry does not hold yet.
fn roster_xlsx(path: &Path, extra: Option<[&str; 6]>) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let mut rows = vec![
        [
            "户编号",
            "户主姓名",
            "贫困户状态",
            "状态起始日期",
            "劳动能力",
            "银行卡号",
        ],
        [
            "1401211012010001",
            "王秀兰",
            "未脱贫",
            "2016-03-01",
            "弱劳动力",
            "",
        ],
        [
            "1401211012010002",
            "张志强",
            "未脱贫",
            "2016-03-01",
            "普通劳动力",
            "6228000022224444",
        ],
        [
            "1401211012010003",
            "刘桂芳",
            "已脱贫",
            "2019-12-31",
            "无劳动力",
            "",
        ],
    ];
    rows.extend(extra);
    sheet
        .merge_range(
            0,
            0,
            0,
            5,
            "东于村建档立卡户花名册",
            &rust_xlsxwriter::Format::new(),
        )
        .expect("title");
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            sheet
                .write_string(
                    u32::try_from(r + 1).expect("row"),
                    u16::try_from(c).expect("col"),
                    *cell,
                )
                .expect("cell");
        }
    }
    book.save(path).expect("write the roster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accountant_keeps_the_household_registry_and_downloads_the_payout_roster() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, deployment) = service(dir.path()).await;
    let base = format!("http://{}", running.http_addr);
    let browser = Browser::open(&chromium).await;
    let c = &browser.client;
    let registry = format!("/villages/{VILLAGE_A}/households");

    c.goto(&format!("{base}/villages/{VILLAGE_A}"))
        .await
        .expect("open village A");
    submit_login(c, ACCOUNTANT, ACCOUNTANT_PASSWORD).await;
    arrive(c, &format!("/villages/{VILLAGE_A}"), "#registry-link").await;
    c.find(Locator::Css("#registry-link"))
        .await
        .expect("registry link")
        .click()
        .await
        .expect("open the registry");
    let count = arrive(c, &registry, "#household-count").await;
    assert!(count.contains('2'), "{count}");

    // A household typed in with a bank account too short: the message is next to the field and
    // nothing is stored.
    fill_in(c, "#add-household", "id", "1401211012010004").await;
    fill_in(c, "#add-household", "head", "陈玉兰").await;
    choose(c, "#add-household", "status", "monitored").await;
    set_date(c, "#add-household", "status_from", "2022-06-01").await;
    choose(c, "#add-household", "labour", "weak").await;
    fill_in(c, "#add-household", "bank_account", "62280000").await;
    submit(c, "#add-household").await;
    let error = arrive(c, &registry, "#bank_account-error").await;
    assert!(error.contains("12–19 位数字"), "{error}");
    let field = c
        .find(Locator::Css("#add-household input[name=\"bank_account\"]"))
        .await
        .expect("bank field");
    assert_eq!(
        field.attr("aria-invalid").await.expect("attr").as_deref(),
        Some("true")
    );
    let households = |store: sunshare::store::Store| async move {
        store
            .households_of(&sunshare::domain::VillageId::new(VILLAGE_A))
            .await
            .expect("read the registry")
            .len()
    };
    assert_eq!(households(running.store.clone()).await, 2);
    fill_in(c, "#add-household", "bank_account", "6228 0000 5555 6666").await;
    submit(c, "#add-household").await;
    arrive(
        c,
        &format!("{registry}?added=1401211012010004"),
        "#registry-done",
    )
    .await;
    screenshot(c, "registry-household-added.png").await;

    // The roster with a line for another village is refused whole, with the line's reason.
    let bad = dir.path().join("花名册-错误.xlsx");
    roster_xlsx(
        &bad,
        Some([
            "1401211012020001",
            "李建国",
            "未脱贫",
            "2016-03-01",
            "普通劳动力",
            "",
        ]),
    );
    upload(c, "#roster-form", &bad).await;
    let error = arrive(
        c,
        &format!("{registry}/import"),
        "#roster-preview tr[data-verdict=\"refused\"]",
    )
    .await;
    assert!(error.contains("已登记在其他村"), "{error}");
    assert!(
        c.find(Locator::Css("#roster-apply")).await.is_err(),
        "no apply button"
    );
    assert_eq!(households(running.store.clone()).await, 3);

    // The corrected roster: previewed, then applied.
    let good = dir.path().join("花名册.xlsx");
    roster_xlsx(&good, None);
    c.goto(&format!("{base}{registry}"))
        .await
        .expect("back to the registry");
    upload(c, "#roster-form", &good).await;
    let summary = arrive(c, &format!("{registry}/import"), "#preview-summary").await;
    assert!(
        summary.contains("新增 1 户，修改 1 户，无变化 1 户，拒绝 0 行"),
        "{summary}"
    );
    screenshot(c, "registry-roster-preview.png").await;
    submit(c, "#roster-apply").await;
    arrive(
        c,
        &format!("{registry}?applied_add=1&applied_edit=1"),
        "#households tr[data-household=\"1401211012010003\"]",
    )
    .await;
    assert_eq!(households(running.store.clone()).await, 4);
    screenshot(c, "registry-after-import.png").await;

    // The plan goes through its steps and the county allocates November; the payout roster pays
    // the job holder on the account the roster brought, and the browser downloads it as XLSX.
    use sunshare::allocate::PlanState;
    for to in [
        PlanState::Deliberated,
        PlanState::PlanPublished,
        PlanState::TownshipReviewed,
        PlanState::CountyFiled,
        PlanState::Active,
    ] {
        sunshare::ledger::transition(
            &running.store,
            &deployment,
            &sunshare::domain::VillageId::new(VILLAGE_A),
            2026,
            to,
            "村委会",
            "step",
        )
        .await
        .expect("plan step");
    }
    // Before the county allocates November, the accountant records its attendance on the village
    // page: too many days is refused next to the field, then 20 of 22 days is kept.
    let attendance = format!("/villages/{VILLAGE_A}?attendance=2026-11");
    c.goto(&format!("{base}{attendance}"))
        .await
        .expect("attendance");
    arrive(c, &attendance, "#attendance-form").await;
    let first_job = c
        .find(Locator::Css("#attendance-table tbody tr"))
        .await
        .expect("a job line")
        .attr("data-job")
        .await
        .expect("attr")
        .expect("data-job");
    fill_in(c, "#attendance-form", "worked", "23").await;
    fill_in(c, "#attendance-form", "required", "22").await;
    submit(c, "#attendance-form").await;
    let refused = arrive(
        c,
        &format!("/villages/{VILLAGE_A}/attendance"),
        &format!("#attendance-worked-{first_job}-error"),
    )
    .await;
    assert!(refused.contains("多于应出勤"), "{refused}");
    fill_in(c, "#attendance-form", "worked", "20").await;
    submit(c, "#attendance-form").await;
    arrive(c, &attendance, "#attendance-table [data-recorded=\"yes\"]").await;
    screenshot(c, "village-attendance-recorded.png").await;
    let kept = running.store.attendance().await.expect("attendance");
    assert_eq!(
        kept.iter()
            .map(|a| (a.job.as_str(), a.month.to_string(), a.worked, a.required))
            .collect::<Vec<_>>(),
        [(first_job.as_str(), "2026-11".to_owned(), 20, 22)]
    );
    let run = sunshare::ledger::run_month(
        &running.store,
        &deployment,
        &sunshare::ledger::testing::FixedEnergy::metered(30_000_000),
        sunshare::domain::YearMonth::new(2026, 11).expect("month"),
        "county",
        true,
    )
    .await
    .expect("allocate November");
    let wage = run
        .villages
        .iter()
        .flat_map(|v| &v.payouts)
        .find(|p| p.reference.starts_with(first_job.as_str()))
        .map(|p| p.basis.to_string());
    assert!(
        wage.as_deref().is_some_and(|b| b.contains("20/22")),
        "the wage is prorated by the attendance: {wage:?}"
    );
    c.goto(&format!("{base}/villages/{VILLAGE_A}?month=2026-11"))
        .await
        .expect("village page");
    arrive(
        c,
        &format!("/villages/{VILLAGE_A}?month=2026-11"),
        "#roster-xlsx",
    )
    .await;
    c.find(Locator::Css("#roster-xlsx"))
        .await
        .expect("roster link")
        .click()
        .await
        .expect("download the roster");
    let file = eventually("the roster downloaded", || async {
        let entry = std::fs::read_dir(&browser.downloads)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "xlsx"))?;
        let bytes = std::fs::read(entry.path()).ok()?;
        // Chromium writes a .crdownload first and renames it when complete.
        bytes.starts_with(b"PK").then_some(bytes)
    })
    .await;
    use calamine::Reader as _;
    let mut book = calamine::open_workbook_auto_from_rs(std::io::Cursor::new(file))
        .expect("the roster opens as a workbook");
    let sheet = book
        .worksheet_range_at(0)
        .expect("a sheet")
        .expect("readable sheet");
    let cells: Vec<String> = sheet
        .rows()
        .flat_map(|r| r.iter().map(|c| c.to_string()))
        .collect();
    assert!(cells.iter().any(|c| c == "6228000022224444"), "{cells:?}");
    assert!(
        !cells.iter().any(|c| c == "6228000011113333"),
        "the old account: {cells:?}"
    );

    // The accountant reviews (复核) the month's statement before the county pays it.
    c.goto(&format!("{base}/villages/{VILLAGE_A}?month=2026-11"))
        .await
        .expect("village page");
    arrive(
        c,
        &format!("/villages/{VILLAGE_A}?month=2026-11"),
        "#review-none",
    )
    .await;
    fill_in(c, "#review-form", "note", "已核对岗位工资和代发名单").await;
    submit(c, "#review-form").await;
    let done = arrive(
        c,
        &format!("/villages/{VILLAGE_A}?month=2026-11"),
        "#review-done",
    )
    .await;
    assert!(
        done.contains(ACCOUNTANT) && done.contains("已核对"),
        "{done}"
    );
    screenshot(c, "village-month-reviewed.png").await;

    // The notice: the accountant's full version, and the masked one the village posts.
    c.goto(&format!("{base}/villages/{VILLAGE_A}/notice/2026-11"))
        .await
        .expect("notice");
    let notice = arrive(
        c,
        &format!("/villages/{VILLAGE_A}/notice/2026-11"),
        "#full-version",
    )
    .await;
    assert!(!notice.is_empty());
    c.find(Locator::Css("#public-version"))
        .await
        .expect("the version for posting")
        .click()
        .await
        .expect("open it");
    let notice = arrive(
        c,
        &format!("/villages/{VILLAGE_A}/notice/2026-11?public=1"),
        "#notice",
    )
    .await;
    assert!(
        notice.contains("张*强") && !notice.contains("张志强"),
        "{notice}"
    );
    assert!(!notice.contains("6228000022224444"), "{notice}");
    screenshot(c, "notice-2026-11-posted.png").await;

    browser.close().await;
    running.shutdown().await;
}
