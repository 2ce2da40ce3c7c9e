//! Broker credentials, ACLs and TLS against a real Mosquitto that each test starts for itself
//! (SUNSHARE_TEST_MOSQUITTO names the binary): anonymous clients refused, a password file, an ACL per
//! logger topic, a plain, a TLS and a mutual-TLS listener on free ports, certificates made here.
//!
//! The collector is Sunshare's own (`MqttCollector` built from a deployment file, wired to ingest
//! and a fresh store); loggers are plain rumqttc clients with their own credentials. A refused login
//! or an untrusted certificate must show in `sunshare_mqtt_messages_total{outcome="connection_error"}`
//! and in the collector's status, and must never let data through.

use anyhow::{bail, Context as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashSet;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sunshare::collect::mqtt::{MqttCollector, StatusHandle, Wiring};
use sunshare::config::Deployment;
use sunshare::domain::{DeviceId, Metric};
use sunshare::ingest;
use sunshare::metrics::Metrics;
use sunshare::store::testing::{self, TestStore};
use tokio_util::sync::CancellationToken;

const VAR: &str = "SUNSHARE_TEST_MOSQUITTO";

const SUNSHARE_USER: &str = "sunshare";
const SUNSHARE_PASS: &str = "sun-Pass-7f3a";

/// Logger ids, each with a broker account `logger-<id>` allowed to write only its own topic. L1 and
/// L2 are in the deployment; L3 is a logger on the same broker that Sunshare's account may not read.
const LOGGERS: [&str; 3] = ["L1", "L2", "L3"];

fn logger_user(id: &str) -> String {
    format!("logger-{id}")
}

fn logger_pass(id: &str) -> String {
    format!("{id}-pass-91c2")
}

static RUN: AtomicU32 = AtomicU32::new(0);

/// A prefix no other run or test shares, for topics and client ids.
fn unique(test: &str) -> String {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{test}-{}-{n}-{nanos}", std::process::id())
}

/// The Mosquitto binary, or `None` (after a SKIPPED line) when the variable is not set.
fn mosquitto_binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os(VAR) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            testing::announce_skip(&format!(
                "SKIPPED (Mosquitto) {test}: set {VAR}=/usr/sbin/mosquitto to run it"
            ));
            None
        }
    }
}

/// `mosquitto_passwd`, beside the broker binary or on PATH (Debian puts the broker in /usr/sbin and
/// the tool in /usr/bin).
fn mosquitto_passwd(broker: &Path) -> anyhow::Result<PathBuf> {
    let beside = broker.parent().map(|d| d.join("mosquitto_passwd"));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("mosquitto_passwd"));
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "mosquitto_passwd is neither beside {} nor on PATH",
                broker.display()
            )
        })
}

/// Ports nobody listens on right now: bound together (so they differ), read, released.
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let l = TcpListener::bind("127.0.0.1:0")?;
        *port = l.local_addr()?.port();
        held.push(l);
    }
    Ok(ports)
}

/// A certificate authority made for one test, and certificates it signs.
struct Authority {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Authority {
    fn new(name: &str) -> anyhow::Result<Authority> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)?;
        Ok(Authority { issuer })
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate and its key (PEM) for `names` (IP addresses or DNS names).
    fn leaf(
        &self,
        name: &str,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<(String, String)> {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// One Mosquitto process with its own configuration, stopped when dropped.
struct Mosquitto {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
    plain: u16,
    tls: u16,
    mtls: u16,
    authority: Authority,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    /// Starts Mosquitto with accounts and ACLs for `prefix`, and waits until every listener answers.
    fn start(binary: &Path, prefix: &str) -> anyhow::Result<Mosquitto> {
        let dir = tempfile::tempdir()?;
        let path = |name: &str| dir.path().join(name);

        let passwd_tool = mosquitto_passwd(binary)?;
        let passwd = path("passwd");
        let mut accounts = vec![(SUNSHARE_USER.to_owned(), SUNSHARE_PASS.to_owned())];
        accounts.extend(LOGGERS.iter().map(|id| (logger_user(id), logger_pass(id))));
        for (i, (user, pass)) in accounts.iter().enumerate() {
            let mut cmd = Command::new(&passwd_tool);
            cmd.arg("-b");
            if i == 0 {
                cmd.arg("-c");
            }
            let out = cmd.arg(&passwd).arg(user).arg(pass).output()?;
            if !out.status.success() {
                bail!(
                    "{} failed: {}",
                    passwd_tool.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }

        // Sunshare reads the topics of its own loggers (L1, L2), nothing else; each logger writes
        // its own topic, nothing else.
        let mut acl = format!(
            "user {SUNSHARE_USER}\n\
             topic read {prefix}/sunshare/+/L1/telemetry\n\
             topic read {prefix}/sunshare/+/L2/telemetry\n"
        );
        for id in LOGGERS {
            acl.push_str(&format!(
                "\nuser {}\ntopic write {prefix}/sunshare/S1/{id}/telemetry\n",
                logger_user(id)
            ));
        }
        std::fs::write(path("acl"), acl)?;

        let authority = Authority::new("sunshare test CA")?;
        let (server_cert, server_key) = authority.leaf(
            "mosquitto",
            &["127.0.0.1", "localhost"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        std::fs::write(path("ca.pem"), authority.pem())?;
        std::fs::write(path("server.pem"), server_cert)?;
        std::fs::write(path("server.key"), server_key)?;

        let [plain, tls, mtls] = free_ports::<3>()?;
        let d = dir.path().display();
        // `user root`: started as root, Mosquitto would otherwise switch to the `mosquitto` account,
        // which cannot read this private directory (started by anyone else it stays who it is).
        let conf = format!(
            "per_listener_settings false\n\
             allow_anonymous false\n\
             password_file {d}/passwd\n\
             acl_file {d}/acl\n\
             persistence false\n\
             user root\n\
             log_dest stderr\n\
             log_type all\n\
             \n\
             listener {plain} 127.0.0.1\n\
             \n\
             listener {tls} 127.0.0.1\n\
             cafile {d}/ca.pem\n\
             certfile {d}/server.pem\n\
             keyfile {d}/server.key\n\
             \n\
             listener {mtls} 127.0.0.1\n\
             cafile {d}/ca.pem\n\
             certfile {d}/server.pem\n\
             keyfile {d}/server.key\n\
             require_certificate true\n"
        );
        std::fs::write(path("mosquitto.conf"), conf)?;
        let log = path("mosquitto.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(path("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut broker = Mosquitto {
            child,
            dir,
            log,
            plain,
            tls,
            mtls,
            authority,
        };
        broker.wait_ready()?;
        Ok(broker)
    }

    /// Retries a TCP connect to each listener until all answer (bounded), failing early with the
    /// broker's log if it exits.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in [self.plain, self.tls, self.mtls] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if let Some(status) = self.child.try_wait()? {
                    bail!("mosquitto exited ({status}): {}", self.log_text());
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("mosquitto does not listen on {addr}: {}", self.log_text());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` into the broker's directory and returns the path as a TOML string.
    fn write(&self, name: &str, contents: &str) -> anyhow::Result<String> {
        let p = self.file(name);
        std::fs::write(&p, contents)?;
        Ok(toml_path(&p))
    }
}

fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// A deployment with station S1, JSON loggers L1 (device S1-INV1) and L2 (device S1-INV2), and the
/// given broker settings.
fn deployment(
    prefix: &str,
    client_id: &str,
    mqtt: &str,
    env: &[(String, String)],
) -> anyhow::Result<Deployment> {
    let text = format!(
        r#"
[mqtt]
client_id = "{client_id}"
topic_prefix = "{prefix}"
reconnect_min = "50ms"
reconnect_max = "1s"
keep_alive = "5s"
{mqtt}
[[mqtt.loggers]]
id = "L1"
station = "S1"
template = "json_generic"
[[mqtt.loggers]]
id = "L2"
station = "S1"
template = "json_generic"

[[counties]]
id = "C1"
name = "County"
province = "shanxi"
[[townships]]
id = "T1"
name = "Town"
county = "C1"
[[villages]]
code = "V1"
name = "Village"
township = "T1"
[[tariffs]]
id = "TF"
price = "0.85"
province = "shanxi"
[[stations]]
id = "S1"
name = "Station"
kind = "village"
county = "C1"
village = "V1"
capacity_kwp = 100
latitude = 37.8
longitude = 112.5
commissioned = "2018-06-30"
tariff = "TF"
[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = {{ type = "mqtt", logger = "L1", unit = 1 }}
rated_power_w = 50000
[[devices]]
id = "S1-INV2"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = {{ type = "mqtt", logger = "L2", unit = 1 }}
rated_power_w = 50000
"#
    );
    let models: HashSet<String> = ["huawei_sun2000".to_owned()].into();
    Deployment::from_str_with_env("test.toml", &text, env, &models)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Store, ingest worker and metrics for one test.
struct Pipeline {
    store: TestStore,
    metrics: Arc<Metrics>,
    ingest: ingest::IngestHandle,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A running collector: its status, and the token and task that stop it.
struct Collector {
    status: StatusHandle,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    fn connected(&self) -> bool {
        self.status.lock().map(|s| s.connected).unwrap_or(false)
    }

    fn subscribed(&self) -> bool {
        self.status.lock().map(|s| s.subscribed).unwrap_or(false)
    }

    fn last_error(&self) -> String {
        self.status
            .lock()
            .ok()
            .and_then(|s| s.last_error.clone())
            .unwrap_or_default()
    }

    async fn wait_subscribed(&self) -> anyhow::Result<()> {
        wait_for("the subscription", Duration::from_secs(20), || async {
            if self.task.is_finished() {
                bail!("the collector task ended: {}", self.last_error());
            }
            Ok(self.subscribed())
        })
        .await
    }

    /// Stops the collector; fails if its task had died (a panic) instead of running to the stop.
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("the collector did not stop")?
            .context("the collector task failed")
    }
}

impl Pipeline {
    async fn new(d: &Deployment) -> anyhow::Result<Pipeline> {
        let store = testing::sqlite().await?;
        store.store.sync_registry(d).await?;
        let metrics = Arc::new(Metrics::new());
        let (ingest, worker) = ingest::channel(
            256,
            store.store.clone(),
            sunshare::app::device_profiles(d),
            Arc::clone(&metrics),
        );
        let cancel = CancellationToken::new();
        let tasks = vec![tokio::spawn(worker.run(cancel.child_token()))];
        Ok(Pipeline {
            store,
            metrics,
            ingest,
            cancel,
            tasks,
        })
    }

    /// Starts the collector of `d`, connecting where its `[mqtt]` table says.
    fn collector(&self, d: &Deployment) -> anyhow::Result<Collector> {
        let c = MqttCollector::new(
            d,
            None,
            Wiring {
                ingest: self.ingest.clone(),
                metrics: Arc::clone(&self.metrics),
                store: self.store.store.clone(),
                decoder: None,
            },
        )?;
        let status = c.status();
        let stop = self.cancel.child_token();
        let task = tokio::spawn(c.run(stop.clone()));
        Ok(Collector { status, stop, task })
    }

    fn count(&self, outcome: &str, reason: &str) -> u64 {
        let text = self.metrics.render();
        let needle =
            format!("sunshare_mqtt_messages_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Connection failures of every reason.
    fn connection_errors(&self) -> u64 {
        ["io", "timeout", "refused", "tls", "protocol", "other"]
            .iter()
            .map(|r| self.count("connection_error", r))
            .sum()
    }

    async fn stored(&self) -> anyhow::Result<i64> {
        Ok(self.store.store.raw_count().await?)
    }

    /// The AC power of every stored sample of `device`, oldest first.
    async fn powers(&self, device: &str) -> anyhow::Result<Vec<f64>> {
        let from = chrono::Utc::now() - chrono::Duration::days(30);
        let to = chrono::Utc::now() + chrono::Duration::days(1);
        let samples = self
            .store
            .store
            .raw_samples(&DeviceId::new(device), from, to)
            .await?;
        Ok(samples
            .iter()
            .filter_map(|s| s.readings.get(Metric::AcPowerW))
            .collect())
    }

    async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A logger: QoS 1 publisher logging in with its own account on the plain listener.
struct Logger {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    acked: Arc<AtomicU32>,
}

impl Logger {
    fn new(port: u16, id: &str, client_id: &str) -> Logger {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_credentials(logger_user(id), logger_pass(id));
        let (client, mut el) = AsyncClient::new(o, 100);
        let acked = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&acked);
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Logger {
            client,
            task,
            acked,
        }
    }

    /// Publishes one message and waits for the broker's PUBACK (sent once the broker has routed it).
    async fn publish(&self, topic: &str, payload: String) -> anyhow::Result<()> {
        let before = self.acked.load(Ordering::Relaxed);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())
            .await
            .context("queueing a publish")?;
        wait_for("the broker's ack", Duration::from_secs(20), || async {
            Ok(self.acked.load(Ordering::Relaxed) > before)
        })
        .await
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn topic(prefix: &str, logger: &str) -> String {
    format!("{prefix}/sunshare/S1/{logger}/telemetry")
}

/// A JSON record for unit 1, read `minutes_ago` minutes ago, with the given AC power.
fn record(minutes_ago: i64, power: f64) -> String {
    let now = chrono::Utc::now().timestamp();
    let ts = now - now.rem_euclid(60) - minutes_ago * 60;
    format!(
        r#"{{"ts": {ts}, "addr": 1, "data": {{"pac": {power}, "etotal": {e}, "status": 1}}}}"#,
        e = 5000.0 - minutes_ago as f64
    )
}

/// `[mqtt]` lines that log in as Sunshare's account on `port` (plain TCP).
fn plain_login(port: u16, password: &str) -> String {
    format!(
        "broker = \"127.0.0.1:{port}\"\nusername = \"{SUNSHARE_USER}\"\npassword = \"{password}\"\n"
    )
}

/// What the broker answers to a CONNECT without credentials.
async fn anonymous_answer(
    port: u16,
    id: &str,
) -> anyhow::Result<Result<(), rumqttc::ConnectionError>> {
    let o = MqttOptions::new(id, "127.0.0.1", port);
    let (_client, mut el) = AsyncClient::new(o, 10);
    let polled = tokio::time::timeout(Duration::from_secs(20), el.poll())
        .await
        .context("no answer to CONNECT within 20 s")?;
    Ok(match polled {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(()),
        Ok(other) => bail!("expected a CONNACK first, got {other:?}"),
        Err(e) => Err(e),
    })
}

/// (a) With the right username and password over plain TCP, a logger's message (published with the
/// logger's own account) reaches the store. The broker really requires a login: an anonymous client
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_logs_in_and_a_loggers_message_is_stored() -> anyhow::Result<()> {
    let Some(bin) = mosquitto_binary("the_right_password_logs_in_and_a_loggers_message_is_stored")
    else {
        return Ok(());
    };
    let id = unique("auth-ok");
    let broker = Mosquitto::start(&bin, &id)?;

    match anonymous_answer(broker.plain, &format!("{id}-anon")).await? {
        Err(rumqttc::ConnectionError::ConnectionRefused(_)) => {}
        other => bail!("an anonymous client must be refused, got {other:?}"),
    }

    let d = deployment(&id, &id, &plain_login(broker.plain, SUNSHARE_PASS), &[])?;
    let p = Pipeline::new(&d).await?;
    let c = p.collector(&d)?;
    c.wait_subscribed().await?;
    assert!(c.connected());

    let logger = Logger::new(broker.plain, "L1", &format!("{id}-L1"));
    logger.publish(&topic(&id, "L1"), record(5, 1234.0)).await?;
    wait_for("the logger's sample", Duration::from_secs(20), || async {
        Ok(p.stored().await? >= 1)
    })
    .await?;
    assert_eq!(p.powers("S1-INV1").await?, vec![1234.0]);
    assert_eq!(p.count("accepted", "ok"), 1);
    assert_eq!(p.connection_errors(), 0, "{}", broker.log_text());
    c.stop().await?;
    p.stop().await;
    Ok(())
}

/// (b) A wrong password, or none at all, is refused by the broker: the collector gets no data, counts
/// `connection_error/refused`, reports itself disconnected with the broker's refusal, and keeps
/// trying at the longest backoff. The same deployment with the right password (given through `SUNSHARE_MQTT__PASSWORD`)
/// then gets the logger's messages, so the password was the only thing wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_password_is_refused_visibly_and_gets_no_data() -> anyhow::Result<()> {
    let Some(bin) =
        mosquitto_binary("a_wrong_or_missing_password_is_refused_visibly_and_gets_no_data")
    else {
        return Ok(());
    };
    let id = unique("auth-bad");
    let broker = Mosquitto::start(&bin, &id)?;
    let logger = Logger::new(broker.plain, "L1", &format!("{id}-L1"));
    let refusals = [
        (
            "a wrong password",
            plain_login(broker.plain, "not-the-password"),
        ),
        (
            "no credentials",
            format!("broker = \"127.0.0.1:{}\"\n", broker.plain),
        ),
    ];
    for (n, (case, mqtt)) in refusals.iter().enumerate() {
        let d = deployment(&id, &format!("{id}-{n}"), mqtt, &[])?;
        let p = Pipeline::new(&d).await?;
        let c = p.collector(&d)?;
        wait_for("a refused login", Duration::from_secs(20), || async {
            Ok(p.count("connection_error", "refused") >= 1)
        })
        .await
        .with_context(|| format!("{case}: {}", c.last_error()))?;
        let first = Instant::now();
        wait_for(
            "a second refused login",
            Duration::from_secs(20),
            || async { Ok(p.count("connection_error", "refused") >= 2) },
        )
        .await
        .with_context(|| format!("{case}: {}", c.last_error()))?;
        // A refusal goes straight to the longest wait (reconnect_max = 1 s, jittered down to no
        // less than half): not the 50 ms a first retry after a lost connection would wait.
        let between = first.elapsed();
        assert!(
            between >= Duration::from_millis(400),
            "{case}: retried {between:?} after a refused login"
        );
        logger
            .publish(&topic(&id, "L1"), record(10 + n as i64, 50.0))
            .await?;
        assert!(!c.connected(), "{case}");
        assert!(!c.subscribed(), "{case}");
        let error = c.last_error();
        eprintln!("{case}: {error}");
        assert!(
            error.contains("refused") && error.contains("NotAuthorized"),
            "{case}: the status names the broker's refusal: {error}"
        );
        assert!(!error.contains("not-the-password"), "{case}: {error}");
        assert_eq!(p.count("accepted", "ok"), 0, "{case}");
        assert_eq!(p.stored().await?, 0, "{case}");
        c.stop().await?;
        p.stop().await;
    }

    let env = [(
        "SUNSHARE_MQTT__PASSWORD".to_owned(),
        SUNSHARE_PASS.to_owned(),
    )];
    let mqtt = format!(
        "broker = \"127.0.0.1:{}\"\nusername = \"{SUNSHARE_USER}\"\n",
        broker.plain
    );
    let d = deployment(&id, &format!("{id}-0"), &mqtt, &env)?;
    let p = Pipeline::new(&d).await?;
    let c = p.collector(&d)?;
    c.wait_subscribed().await?;
    logger.publish(&topic(&id, "L1"), record(20, 777.0)).await?;
    wait_for("the logger's sample", Duration::from_secs(20), || async {
        Ok(p.stored().await? >= 1)
    })
    .await?;
    assert_eq!(p.powers("S1-INV1").await?, vec![777.0]);
    assert_eq!(p.count("connection_error", "refused"), 0);
    c.stop().await?;
    p.stop().await;
    Ok(())
}

/// (c) The broker's ACL keeps each logger to its own topic and Sunshare to its loggers' topics: L2
/// publishing on L1's topic is acknowledged by the broker but never delivered (nothing stored for
/// S1-INV1 from it), L3 (a logger Sunshare's account may not read) never reaches Sunshare (not even
/// as an unknown logger), while L1 and L2 on their own topics are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_keep_each_logger_to_its_own_topic() -> anyhow::Result<()> {
    let Some(bin) = mosquitto_binary("acls_keep_each_logger_to_its_own_topic") else {
        return Ok(());
    };
    let id = unique("acl");
    let broker = Mosquitto::start(&bin, &id)?;
    let d = deployment(&id, &id, &plain_login(broker.plain, SUNSHARE_PASS), &[])?;
    let p = Pipeline::new(&d).await?;
    let c = p.collector(&d)?;
    c.wait_subscribed().await?;

    let l1 = Logger::new(broker.plain, "L1", &format!("{id}-L1"));
    let l2 = Logger::new(broker.plain, "L2", &format!("{id}-L2"));
    let l3 = Logger::new(broker.plain, "L3", &format!("{id}-L3"));
    // Each publish is acknowledged (and so routed or dropped by the broker) before the next, and the
    // broker hands Sunshare what it routes in order: once the last message is stored, any earlier
    // one that was going to be delivered has been.
    l3.publish(&topic(&id, "L3"), record(1, 333.0)).await?;
    l2.publish(&topic(&id, "L1"), record(2, 999.0)).await?;
    l2.publish(&topic(&id, "L2"), record(3, 222.0)).await?;
    l1.publish(&topic(&id, "L1"), record(4, 111.0)).await?;
    wait_for(
        "L1's and L2's own samples",
        Duration::from_secs(20),
        || async { Ok(p.stored().await? >= 2) },
    )
    .await?;
    assert_eq!(
        p.powers("S1-INV1").await?,
        vec![111.0],
        "L2 wrote into L1's topic"
    );
    assert_eq!(p.powers("S1-INV2").await?, vec![222.0]);
    assert_eq!(p.stored().await?, 2);
    assert_eq!(p.count("accepted", "ok"), 2);
    assert_eq!(
        p.count("unknown_device", "unknown_device"),
        0,
        "Sunshare heard L3, whose topic its account may not read"
    );
    // The broker says why (MQTT 3.1.1 gives the publisher no way to know).
    let denied = format!("Denied PUBLISH from {id}-L2");
    wait_for(
        "the broker's log of the denial",
        Duration::from_secs(10),
        || async { Ok(broker.log_text().contains(&denied)) },
    )
    .await?;
    c.stop().await?;
    p.stop().await;
    Ok(())
}

/// `[mqtt]` lines for Sunshare's account on a TLS listener, with the given `tls = {...}` table.
fn tls_login(port: u16, tls: &str) -> String {
    format!("{}tls = {tls}\n", plain_login(port, SUNSHARE_PASS))
}

/// Waits until the collector has failed to connect at least twice, and checks it got nothing.
async fn expect_no_connection(p: &Pipeline, c: &Collector, case: &str) -> anyhow::Result<String> {
    wait_for(
        "two failed connections",
        Duration::from_secs(20),
        || async {
            if c.task.is_finished() {
                bail!("{case}: the collector task ended: {}", c.last_error());
            }
            Ok(p.connection_errors() >= 2)
        },
    )
    .await
    .with_context(|| format!("{case}: {}", c.last_error()))?;
    let error = c.last_error();
    eprintln!("{case}: {error}");
    assert!(!c.connected(), "{case}");
    assert!(!c.subscribed(), "{case}");
    assert_eq!(p.count("accepted", "ok"), 0, "{case}");
    assert_eq!(p.stored().await?, 0, "{case}");
    Ok(error)
}

/// (d) Over TLS with `tls.ca_file` naming the broker's CA, data arrives; with another CA, or with no
/// `ca_file` (the platform's roots, which do not know this CA), the handshake fails: counted as
/// `connection_error/tls`, the status names the certificate problem, nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trusts_the_broker_only_through_ca_file() -> anyhow::Result<()> {
    let Some(bin) = mosquitto_binary("tls_trusts_the_broker_only_through_ca_file") else {
        return Ok(());
    };
    let id = unique("tls");
    let broker = Mosquitto::start(&bin, &id)?;
    let logger = Logger::new(broker.plain, "L1", &format!("{id}-L1"));

    let ca = toml_path(&broker.file("ca.pem"));
    let d = deployment(
        &id,
        &format!("{id}-good"),
        &tls_login(broker.tls, &format!("{{ ca_file = {ca} }}")),
        &[],
    )?;
    let p = Pipeline::new(&d).await?;
    let c = p.collector(&d)?;
    c.wait_subscribed().await?;
    logger.publish(&topic(&id, "L1"), record(1, 4321.0)).await?;
    wait_for("the sample over TLS", Duration::from_secs(20), || async {
        Ok(p.stored().await? >= 1)
    })
    .await?;
    assert_eq!(p.powers("S1-INV1").await?, vec![4321.0]);
    assert_eq!(p.connection_errors(), 0, "{}", c.last_error());
    c.stop().await?;
    p.stop().await;

    let stranger = Authority::new("some other CA")?;
    let other_ca = broker.write("other-ca.pem", &stranger.pem())?;
    let failures = [
        ("another CA", format!("{{ ca_file = {other_ca} }}")),
        ("no ca_file", "{}".to_owned()),
    ];
    for (n, (case, tls)) in failures.iter().enumerate() {
        let d = deployment(
            &id,
            &format!("{id}-bad{n}"),
            &tls_login(broker.tls, tls),
            &[],
        )?;
        let p = Pipeline::new(&d).await?;
        let c = p.collector(&d)?;
        let error = expect_no_connection(&p, &c, case).await?;
        assert!(p.count("connection_error", "tls") >= 2, "{case}: {error}");
        assert!(
            error.contains("TLS") && error.contains("certificate"),
            "{case}: the status names the certificate problem: {error}"
        );
        logger
            .publish(&topic(&id, "L1"), record(10 + n as i64, 1.0))
            .await?;
        assert_eq!(p.stored().await?, 0, "{case}");
        c.stop().await?;
        p.stop().await;
    }
    Ok(())
}

/// Mutual TLS: on a listener that requires a client certificate, `tls.client_cert` and
/// `tls.client_key` (signed by the broker's CA) get Sunshare in; without them the broker refuses the
/// connection (`connection_error/tls`, the status names the missing certificate) and nothing arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() -> anyhow::Result<()> {
    let Some(bin) = mosquitto_binary("mutual_tls_presents_the_client_certificate") else {
        return Ok(());
    };
    let id = unique("mtls");
    let broker = Mosquitto::start(&bin, &id)?;
    let logger = Logger::new(broker.plain, "L1", &format!("{id}-L1"));
    let ca = toml_path(&broker.file("ca.pem"));
    let (cert, key) = broker.authority.leaf(
        "sunshare",
        &["sunshare"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let cert = broker.write("client.pem", &cert)?;
    let key = broker.write("client.key", &key)?;

    let with_cert = format!("{{ ca_file = {ca}, client_cert = {cert}, client_key = {key} }}");
    let d = deployment(
        &id,
        &format!("{id}-cert"),
        &tls_login(broker.mtls, &with_cert),
        &[],
    )?;
    let p = Pipeline::new(&d).await?;
    let c = p.collector(&d)?;
    c.wait_subscribed().await?;
    logger.publish(&topic(&id, "L1"), record(1, 2468.0)).await?;
    wait_for(
        "the sample over mutual TLS",
        Duration::from_secs(20),
        || async { Ok(p.stored().await? >= 1) },
    )
    .await?;
    assert_eq!(p.powers("S1-INV1").await?, vec![2468.0]);
    c.stop().await?;
    p.stop().await;

    let without = format!("{{ ca_file = {ca} }}");
    let d = deployment(
        &id,
        &format!("{id}-nocert"),
        &tls_login(broker.mtls, &without),
        &[],
    )?;
    let p = Pipeline::new(&d).await?;
    let c = p.collector(&d)?;
    let error = expect_no_connection(&p, &c, "no client certificate").await?;
    // With TLS 1.3 the broker checks the client's certificate after the client has finished its
    // side of the handshake, so the refusal arrives as an alert on the first MQTT read: still a TLS
    // failure, and counted as one.
    assert!(error.contains("CertificateRequired"), "{error}");
    assert!(p.count("connection_error", "tls") >= 2, "{error}");
    logger.publish(&topic(&id, "L1"), record(2, 1.0)).await?;
    assert_eq!(p.stored().await?, 0, "{error}");
    c.stop().await?;
    p.stop().await;
    Ok(())
}
