//! No secret Sunshare holds reaches its output, even at `trace`. The real binary serves a deployment
//! that uses every kind of secret there is, each a random string made for this run: the MQTT
//! collector's and the alert topic's passwords, the InfluxDB token, the robot access tokens in
//! webhook URLs, a webhook's basic-authentication password and the DingTalk signing secret (and the
//! signature made from it), the PostgreSQL password when a server is configured, a user's password
//! and a wrong one, an API token and wrong ones, session cookies and CSRF tokens. The collector's
//! password comes from the environment (`SUNSHARE_MQTT__PASSWORD`), the others from the file.
//!
//! Every one is really used: loopback stand-ins for the broker, InfluxDB and the chat robots record
//! what they were sent, and the login and the API calls must succeed. Then the captured stdout and
//! stderr of `serve`, `user add` and `token add` are searched for each secret; the one line where
//! `token add` prints its token is the only exception.
//!
//! With `SUNSHARE_TEST_MQTT` set the real broker is used instead of the stand-in; with
//! `SUNSHARE_TEST_PG_URL` set the store is a fresh PostgreSQL database whose URL carries a password.

mod support;
use support::{free_port, Served};

use base64::Engine as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_sunshare");
/// Every generated secret starts with this, so any of them showing up is caught by one search too.
const MARK: &str = "sekret-";
/// The longest wait for anything: start-up, a background attempt, shutdown.
const PATIENCE: Duration = Duration::from_secs(60);

fn random_hex() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn secret(kind: &str) -> String {
    format!("{MARK}{kind}-{}", random_hex())
}

/// A loopback HTTP server that keeps every request it receives (head and body, as text) and
/// answers each as `answer` says for its request line.
struct Recorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(answer: fn(&str) -> (u16, &'static str)) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let _ = answer_one(stream, answer, seen).await;
                });
            }
        });
        Recorder { addr, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }

    /// Whether some request contains every one of `parts`.
    fn saw(&self, parts: &[&str]) -> bool {
        self.requests()
            .iter()
            .any(|r| parts.iter().all(|p| r.contains(p)))
    }
}

async fn answer_one(
    mut stream: TcpStream,
    answer: fn(&str) -> (u16, &'static str),
    seen: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let (status, reply) = answer(head.lines().next().unwrap_or_default());
    seen.lock().expect("lock").push(format!("{head}{body}"));
    let response = format!(
        "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// InfluxDB: up, but the token is refused for the bucket check and for writes.
fn influx_answer(line: &str) -> (u16, &'static str) {
    if line.contains(" /health") {
        (200, r#"{"name":"influxdb","status":"pass"}"#)
    } else {
        (
            401,
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
        )
    }
}

/// The chat robots refuse the message; the generic webhook is broken.
fn robot_answer(line: &str) -> (u16, &'static str) {
    if line.contains("access_token=") {
        (200, r#"{"errcode":310000,"errmsg":"sign not match"}"#)
    } else if line.contains("key=") {
        (200, r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#)
    } else {
        (500, "upstream down")
    }
}

/// An MQTT broker that reads each client's CONNECT, keeps it, and refuses the login.
struct RefusingBroker {
    addr: SocketAddr,
    connects: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RefusingBroker {
    async fn start() -> RefusingBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connects = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&connects);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let _ = refuse_one(stream, seen).await;
                });
            }
        });
        RefusingBroker { addr, connects }
    }

    /// Whether a CONNECT carried `text` (a client id, a user name, a password).
    fn saw(&self, text: &str) -> bool {
        self.connects
            .lock()
            .expect("lock")
            .iter()
            .any(|c| c.windows(text.len()).any(|w| w == text.as_bytes()))
    }
}

async fn refuse_one(mut stream: TcpStream, seen: Arc<Mutex<Vec<Vec<u8>>>>) -> std::io::Result<()> {
    let kind = stream.read_u8().await?;
    if kind >> 4 != 1 {
        return Ok(());
    }
    let mut length = 0_usize;
    for shift in [0, 7, 14, 21] {
        let b = stream.read_u8().await?;
        length |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut packet = vec![0_u8; length];
    stream.read_exact(&mut packet).await?;
    seen.lock().expect("lock").push(packet);
    // CONNACK, return code 5: not authorised.
    stream.write_all(&[0x20, 0x02, 0x00, 0x05]).await?;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    Ok(())
}

/// Polls `done` until it holds, failing with `what` after [`PATIENCE`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Whether one line of `log` contains every one of `parts`.
fn logged(log: &str, parts: &[&str]) -> bool {
    log.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// A `sunshare` command line run to completion with tracing at its most verbose.
async fn cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("SUNSHARE_LOG", "trace")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sunshare");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the command finishes")
        .expect("its output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh PostgreSQL database and a URL for it carrying a password, when a server is configured.
/// Trust authentication ignores the password; one already in `SUNSHARE_TEST_PG_URL` is kept.
async fn postgres() -> Option<(String, String)> {
    let var = sunshare::store::testing::PG_URL_VAR;
    let Some(admin) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
        sunshare::store::testing::announce_skip(&format!(
            "SKIPPED (PostgreSQL) secrets_in_logs: set {var}=postgres://postgres@127.0.0.1:5432/test to cover its URL too"
        ));
        return None;
    };
    sqlx::any::install_default_drivers();
    let db = format!("sunshare_secrets_{}", &random_hex()[..16]);
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to the PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .expect("create a database");
    let mut url = reqwest::Url::parse(&admin).expect("a URL");
    let password = match url.password() {
        Some(p) => p.to_owned(),
        None => {
            let p = secret("pg");
            url.set_password(Some(&p))
                .expect("a URL that takes a password");
            p
        }
    };
    url.set_path(&format!("/{db}"));
    Some((url.to_string(), password))
}

/// The `sunshare_session` cookie a response sets.
fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("sunshare_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .filter(|v| !v.is_empty())
}

/// The hidden csrf field of a page.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("a csrf field") + marker.len();
    let token = html[at..].split('"').next().unwrap_or_default().to_owned();
    assert!(!token.is_empty(), "an empty csrf field");
    token
}

/// Lines of `sources` that contain any of `secrets`, as `source:line: what: text`.
fn leaks(sources: &[(String, String)], secrets: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (source, text) in sources {
        for (n, line) in text.lines().enumerate() {
            let found: Vec<&str> = secrets
                .iter()
                .filter(|(_, value)| line.contains(value.as_str()))
                .map(|(what, _)| what.as_str())
                .collect();
            if !found.is_empty() {
                let clipped: String = line.chars().take(400).collect();
                out.push(format!(
                    "{source}:{}: [{}] {clipped}",
                    n + 1,
                    found.join(", ")
                ));
            }
        }
    }
    out
}

/// A longitude where the sun is up now: the station is awake, so a silent gateway is offline.
fn noon_longitude() -> f64 {
    let since_midnight = chrono::Utc::now().timestamp().rem_euclid(86_400) as f64;
    let lon = (12.0 - since_midnight / 3600.0) * 15.0;
    if lon <= -180.0 {
        lon + 360.0
    } else {
        lon
    }
}

const FLEET: &str = r#"
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
name = "东岭村"
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
name = "东岭村光伏电站"
kind = "village"
county = "C1"
capacity_kwp = 60
latitude = 0.0
longitude = LONGITUDE
commissioned = "2019-06-30"
tariff = "III"
village = "V1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cancel = tokio_util::sync::CancellationToken::new();

    // What the deployment needs to talk to.
    let influx = Recorder::start(influx_answer).await;
    let robots = Recorder::start(robot_answer).await;
    let real_broker = std::env::var("SUNSHARE_TEST_MQTT")
        .ok()
        .filter(|v| !v.is_empty());
    let fake_broker = match real_broker {
        Some(_) => None,
        None => Some(RefusingBroker::start().await),
    };
    let broker = real_broker
        .clone()
        .or_else(|| fake_broker.as_ref().map(|b| b.addr.to_string()))
        .expect("a broker");
    // A simulated inverter gives the InfluxDB sink something to write; a gateway nobody answers
    // for goes offline, which raises the alert that every notifier then tries to deliver.
    let gateway = support::gateway(
        vec![support::unit(1, "huawei_sun2000")],
        sunshare::collect::modbus::Framing::Tcp,
        &cancel,
    )
    .await;
    let dead_gateway = free_port();
    let dead_webhook = free_port();
    let http_port = free_port();
    let run = random_hex();

    let mqtt_password = secret("mqtt");
    let alert_mqtt_password = secret("alert-mqtt");
    let influx_token = secret("influx");
    let webhook_token = secret("webhook");
    let webhook_password = secret("webhook-basic");
    let down_webhook_token = secret("webhook-down");
    let ding_token = secret("ding-token");
    let ding_secret = format!("SEC{}", secret("ding-sign"));
    let wecom_key = secret("wecom");
    let user_password = secret("user");
    let wrong_password = secret("wrong-password");
    let bogus_bearer = secret("bearer");
    let pg = postgres().await;

    let storage = match &pg {
        Some((url, _)) => format!(
            "backend = \"postgres\"\nurl = {url:?}\ndata_dir = {:?}",
            dir.path().join("data")
        ),
        None => format!("data_dir = {:?}", dir.path().join("data")),
    };
    let robot = robots.addr;
    let config = format!(
        r#"
[storage]
{storage}

[http]
listen = "127.0.0.1:{http_port}"

[collect]
poll_interval = "1s"
modbus_timeout = "500ms"
modbus_request_gap = "0s"
modbus_connect_delay = "0s"

[influx]
url = "http://{influx}"
org = "county"
bucket = "pv"
token = "{influx_token}"
batch_size = 1
flush_interval = "200ms"
request_timeout = "2s"
shutdown_deadline = "1s"

[mqtt]
broker = "{broker}"
username = "collector"
client_id = "sunshare-secrets-{run}"
topic_prefix = "secrets-{run}/"
reconnect_min = "200ms"
reconnect_max = "1s"

[[mqtt.loggers]]
id = "L1"
station = "S1"
template = "json_generic"

[alerts]
interval = "1s"
offline_after = "1s"

[alerts.notify]
timeout = "2s"
max_attempts = 2
backoff_initial = "50ms"
backoff_max = "100ms"

[[alerts.notify.webhooks]]
name = "ops-json"
url = "http://hook:{webhook_password}@{robot}/hook?token={webhook_token}"

[[alerts.notify.webhooks]]
name = "ops-dingtalk"
url = "http://{robot}/robot/send?access_token={ding_token}"
format = "dingtalk"
secret = "{ding_secret}"

[[alerts.notify.webhooks]]
name = "ops-wecom"
url = "http://{robot}/cgi-bin/webhook/send?key={wecom_key}"
format = "wecom"

[[alerts.notify.webhooks]]
name = "ops-down"
url = "http://127.0.0.1:{dead_webhook}/hook?token={down_webhook_token}"

[alerts.notify.mqtt]
broker = "{broker}"
topic = "secrets-{run}/alerts"
client_id = "sunshare-alerts-{run}"
username = "alerter"
password = "{alert_mqtt_password}"
{fleet}
[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
rated_power_w = 50000
transport = {{ type = "modbus_tcp", address = "{live}", unit = 1 }}

[[devices]]
id = "S1-INV2"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
rated_power_w = 50000
transport = {{ type = "modbus_tcp", address = "127.0.0.1:{dead_gateway}", unit = 1 }}
"#,
        influx = influx.addr,
        live = gateway.local_addr(),
        fleet = FLEET.replace("LONGITUDE", &format!("{:.3}", noon_longitude())),
    );
    let config_path = dir.path().join("fleet.toml");
    std::fs::write(&config_path, config).expect("write the deployment file");
    let cfg = config_path.to_str().expect("a UTF-8 path");
    // Secrets can come from the environment instead of the file: the collector's password does.
    let env = [("SUNSHARE_MQTT__PASSWORD", mqtt_password.as_str())];

    // The administrator and their API token, from the command line.
    let user_add = cli(
        &[
            "user", "add", "--config", cfg, "admin", "--role", "admin", "--all",
        ],
        &env,
        &format!("{user_password}\n"),
    )
    .await;
    assert!(user_add.0, "user add failed: {}", user_add.2);
    let token_add = cli(
        &[
            "token", "add", "--config", cfg, "--user", "admin", "--label", "t",
        ],
        &env,
        "",
    )
    .await;
    assert!(token_add.0, "token add failed: {}", token_add.2);
    let token = token_add
        .1
        .lines()
        .find(|l| l.starts_with("sst_"))
        .expect("token add prints the token")
        .trim()
        .to_owned();
    let (token_id, token_secret) = sunshare::auth::credentials::split_token(&token)
        .map(|(id, s)| (id.to_owned(), s.to_owned()))
        .expect("a well-formed token");
    let wrong_token = format!("sst_{token_id}_{}{}", random_hex(), random_hex());
    assert_eq!(
        format!("{}{}", token_add.1, token_add.2)
            .matches(token_secret.as_str())
            .count(),
        1,
        "token add shows its token exactly once"
    );

    // The service, with everything it writes kept.
    let stdout_path = dir.path().join("serve.stdout");
    let stderr_path = dir.path().join("serve.stderr");
    let child = std::process::Command::new(BIN)
        .args(["serve", "--config", cfg])
        .envs(env)
        .env("SUNSHARE_LOG", "trace")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start sunshare serve");
    let mut served = Served(child);
    let base = format!("http://127.0.0.1:{http_port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let until = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(status)) = served.0.try_wait() {
            let log = read(&stderr_path);
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!("serve exited with {status}: ...{}", tail.join("\n"));
        }
        let ready = client.get(format!("{base}/healthz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < until, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Sign in through the form, once wrongly, use a page, sign out.
    let r = client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(r.status(), 200);
    let anonymous = session_cookie(&r).expect("a session for the form");
    let form_csrf = csrf_of(&r.text().await.expect("body"));
    let login = |password: String| {
        client
            .post(format!("{base}/login"))
            .header("cookie", format!("sunshare_session={anonymous}"))
            .form(&[
                ("csrf", form_csrf.clone()),
                ("username", "admin".to_owned()),
                ("password", password),
                ("next", "/".to_owned()),
            ])
            .send()
    };
    let r = login(wrong_password.clone()).await.expect("login");
    assert_eq!(r.status(), 401, "the wrong password is refused");
    let r = login(user_password.clone()).await.expect("login");
    assert_eq!(r.status(), 303, "the right password signs in");
    let signed = session_cookie(&r).expect("a new session at sign-in");
    assert_ne!(signed, anonymous);
    let r = client
        .get(format!("{base}/"))
        .header("cookie", format!("sunshare_session={signed}"))
        .send()
        .await
        .expect("fleet page");
    assert_eq!(r.status(), 200, "the session opens the fleet page");
    let page_csrf = csrf_of(&r.text().await.expect("body"));
    let r = client
        .post(format!("{base}/logout"))
        .header("cookie", format!("sunshare_session={signed}"))
        .form(&[("csrf", page_csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 303, "signed out");

    // The API with the token, with wrong tokens, and a settlement upload.
    for path in ["/api/stations", "/api/alerts", "/metrics"] {
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("api");
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    for wrong in [&wrong_token, &bogus_bearer] {
        let r = client
            .get(format!("{base}/api/stations"))
            .bearer_auth(wrong)
            .send()
            .await
            .expect("api");
        assert_eq!(r.status(), 401, "a wrong token is refused");
    }
    let r = client
        .post(format!("{base}/api/settlements?name=statement.csv"))
        .bearer_auth(&token)
        .body("电站编号,结算月份,上网电量(kWh),结算金额(元)\nS1,2026-10,5400,4590.00\n")
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201, "the settlement is imported");

    // Every secret of the deployment really leaves the process.
    wait_until("InfluxDB to be sent the token on the bucket check", || {
        influx.saw(&["/api/v2/buckets", &format!("Token {influx_token}")])
    })
    .await;
    wait_until("InfluxDB to be sent a write with the token", || {
        influx.saw(&["/api/v2/write", &format!("Token {influx_token}")])
    })
    .await;
    // A password in a URL's user part goes as HTTP basic authentication.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("hook:{webhook_password}"));
    wait_until("the robots and the webhook to be sent the alert", || {
        robots.saw(&[
            &format!("/hook?token={webhook_token}"),
            &format!("Basic {basic}"),
        ]) && robots.saw(&[&format!("access_token={ding_token}"), "sign="])
            && robots.saw(&[&format!("key={wecom_key}")])
    })
    .await;
    if let Some(fake) = &fake_broker {
        wait_until("the broker to be sent both MQTT passwords", || {
            fake.saw(&mqtt_password) && fake.saw(&alert_mqtt_password)
        })
        .await;
    }
    let alert_sink = format!("mqtt:secrets-{run}/alerts");
    wait_until(
        "every notifier to report its outcome, and the collector its broker",
        || {
            let log = read(&stderr_path);
            ["ops-json", "ops-dingtalk", "ops-wecom", "ops-down"]
                .iter()
                .all(|sink| logged(&log, &["notification failed", sink]))
                && (logged(&log, &["notification failed", &alert_sink])
                    || logged(&log, &["notification sent", &alert_sink]))
                && (logged(&log, &["the mqtt broker refused the login"])
                    || logged(&log, &["connected to the mqtt broker"]))
        },
    )
    .await;

    // Stop it as an init system would.
    let pid = served.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "SIGTERM sent");
    let until = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = served.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < until, "serve did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "serve stops cleanly: {status}");
    cancel.cancel();

    let serve_out = read(&stdout_path);
    let serve_err = read(&stderr_path);
    assert!(
        serve_err.contains("sunshare is serving") && serve_err.contains("shutting down"),
        "the log covers the whole run"
    );
    assert!(
        logged(&serve_err, &["TRACE"]) && logged(&serve_err, &["DEBUG", "sunshare::"]),
        "tracing ran at its most verbose, Sunshare's own targets included"
    );
    assert!(
        logged(&user_add.2, &["DEBUG", "sqlx::query"])
            && logged(&token_add.2, &["DEBUG", "sqlx::query"]),
        "the command lines traced their statements too"
    );

    // What the robots were sent, signature included: the signature is made from the secret.
    let ding_request = robots
        .requests()
        .into_iter()
        .find(|r| r.contains(&ding_token))
        .expect("a DingTalk request");
    let query = ding_request
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|target| target.split_once('?'))
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    let sign_encoded = query
        .split('&')
        .find_map(|p| p.strip_prefix("sign="))
        .expect("a signed DingTalk URL")
        .to_owned();
    let sign = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "sign")
        .map(|(_, v)| v.into_owned())
        .expect("a signature");

    let mut secrets: Vec<(String, String)> = vec![
        ("MQTT password".into(), mqtt_password),
        ("alert MQTT password".into(), alert_mqtt_password),
        ("InfluxDB token".into(), influx_token),
        ("webhook token".into(), webhook_token),
        ("webhook password".into(), webhook_password),
        ("webhook basic credentials".into(), basic),
        ("unreachable webhook token".into(), down_webhook_token),
        ("DingTalk access token".into(), ding_token),
        ("DingTalk secret".into(), ding_secret),
        ("DingTalk signature".into(), sign),
        ("DingTalk signature (in the URL)".into(), sign_encoded),
        ("WeCom key".into(), wecom_key),
        ("user password".into(), user_password),
        ("wrong password".into(), wrong_password),
        ("API token".into(), token_secret.clone()),
        (
            "wrong API token".into(),
            wrong_token[wrong_token.len() - 64..].to_owned(),
        ),
        ("bogus bearer token".into(), bogus_bearer),
        ("session cookie before sign-in".into(), anonymous),
        ("session cookie".into(), signed),
        ("login form CSRF token".into(), form_csrf),
        ("page CSRF token".into(), page_csrf),
        ("any generated secret".into(), MARK.to_owned()),
    ];
    if let Some((_, password)) = pg {
        secrets.push(("PostgreSQL password".into(), password));
    }

    // `token add` prints its token once, on a line of its own: that line is its purpose.
    let token_out: String = token_add
        .1
        .lines()
        .filter(|l| l.trim() != token)
        .map(|l| format!("{l}\n"))
        .collect();
    let sources = vec![
        ("serve stdout".to_owned(), serve_out),
        ("serve stderr".to_owned(), serve_err),
        ("user add stdout".to_owned(), user_add.1),
        ("user add stderr".to_owned(), user_add.2),
        ("token add stdout".to_owned(), token_out),
        ("token add stderr".to_owned(), token_add.2),
    ];
    let found = leaks(&sources, &secrets);
    assert!(
        found.is_empty(),
        "{} log line(s) carry a secret:\n{}",
        found.len(),
        found.join("\n")
    );
}
