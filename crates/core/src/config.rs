//! The deployment file: one TOML document that declares the fleet (counties, villages, stations,
//! devices, households, jobs, tariffs) and the service (storage, HTTP, collection, sinks, MQTT).
//!
//! Loading is strict and happens once: unknown keys are refused, and cross-record rules are checked
//! before anything starts, with messages that name the file, the line, the key and the fix.
//! `SUNSHARE_SECTION__KEY=value` environment variables override keys (e.g. `SUNSHARE_STORAGE__URL`):
//! the environment wins over the file. [`Deployment::load`] is the one loader every command uses.
//! Secrets are `SecretString` and never reach a log line.

pub mod alerts;

pub use crate::allocate::{CoalPrice, Tariff};
use crate::domain::{
    CountyId, Device, Fen, Household, HouseholdId, JobPost, Price, Station, StationKind,
    TownshipId, VillageId,
};
use chrono::NaiveDate;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the deployment file declares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub collect: CollectConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub influx: Option<InfluxConfig>,
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub counties: Vec<County>,
    #[serde(default)]
    pub townships: Vec<Township>,
    #[serde(default)]
    pub villages: Vec<Village>,
    #[serde(default)]
    pub tariffs: Vec<Tariff>,
    #[serde(default)]
    pub coal_prices: Vec<CoalPrice>,
    #[serde(default)]
    pub stations: Vec<Station>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub households: Vec<Household>,
    #[serde(default)]
    pub jobs: Vec<JobPost>,
    #[serde(default)]
    pub alerts: alerts::AlertsConfig,
    /// Allocation rules of docs/policy.md section 5 (defaults: the national rules).
    #[serde(default)]
    pub policy: crate::allocate::PolicyConfig,
    #[serde(default)]
    pub adders: Vec<crate::allocate::Adder>,
    #[serde(default)]
    pub costs: Vec<crate::allocate::CostItem>,
    #[serde(default)]
    pub plans: Vec<crate::allocate::VillagePlan>,
    #[serde(default)]
    pub attendance: Vec<crate::allocate::Attendance>,
    #[serde(default)]
    pub subsidy_receipts: Vec<crate::allocate::SubsidyReceipt>,
    #[serde(default)]
    pub advances: Vec<crate::allocate::Advance>,
    #[serde(default)]
    pub adjustments: Vec<crate::allocate::Adjustment>,
    #[serde(default)]
    pub pool_membership: Vec<crate::allocate::PoolMembership>,
    /// Only to say where the bearer tokens that once lived here went (accounts in the database).
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub energy: EnergyConfig,
}

/// `[ledger]` in the deployment file. It once held bearer tokens; they are accounts in the database
/// now, and a file that still has them is refused with a message saying so.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    #[serde(default)]
    pub tokens: Option<toml::Value>,
}

/// Energy accounting and settlement reconciliation (docs/energy.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyConfig {
    /// A metered month differing from its settlement by more than this (percent) is flagged.
    #[serde(default = "default_reconcile_pct")]
    pub reconcile_threshold_pct: f64,
    /// Daylight without readings longer than this is a gap whose energy is marked bridged.
    #[serde(default = "default_max_gap", with = "humantime_serde")]
    pub max_gap: Duration,
}

fn default_reconcile_pct() -> f64 {
    3.0
}

fn default_max_gap() -> Duration {
    Duration::from_secs(30 * 60)
}

impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            reconcile_threshold_pct: default_reconcile_pct(),
            max_gap: default_max_gap(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An embedded file in `data_dir`: one instance, no server to run.
    #[default]
    Sqlite,
    /// A shared server for several instances.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub backend: Backend,
    /// Where the SQLite file, the sink spool and dead letters live.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://user:pass@host/db` for the PostgreSQL backend.
    #[serde(default)]
    pub url: Option<SecretString>,
    /// How long raw samples are kept; rollups are kept for years.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub raw_retention: Duration,
    #[serde(default = "default_pool_size")]
    pub max_connections: u32,
}

fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_pool_size() -> u32 {
    8
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            data_dir: None,
            url: None,
            raw_retention: default_retention(),
            max_connections: default_pool_size(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Send the session cookie only over HTTPS. Set it whenever Sunshare is reached through a
    /// TLS proxy (it should always be, beyond one machine).
    #[serde(default)]
    pub secure_cookies: bool,
    /// A browser session ends after this long without a request.
    #[serde(default = "default_session_idle", with = "humantime_serde")]
    pub session_idle: Duration,
    /// ... and after this long in any case: the user signs in again.
    #[serde(default = "default_session_max", with = "humantime_serde")]
    pub session_max: Duration,
    /// A request that takes longer is answered with 503.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Heavy pages (fleet, station, village) served at once; more wait their turn.
    #[serde(default = "default_heavy_pages")]
    pub heavy_pages: usize,
    /// How long a heavy page waits for its turn before it is answered with 503.
    #[serde(default = "default_heavy_wait", with = "humantime_serde")]
    pub heavy_wait: Duration,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_session_idle() -> Duration {
    Duration::from_secs(8 * 3600)
}

fn default_session_max() -> Duration {
    Duration::from_secs(12 * 3600)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_heavy_pages() -> usize {
    16
}

fn default_heavy_wait() -> Duration {
    Duration::from_secs(10)
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            secure_cookies: false,
            session_idle: default_session_idle(),
            session_max: default_session_max(),
            request_timeout: default_request_timeout(),
            heavy_pages: default_heavy_pages(),
            heavy_wait: default_heavy_wait(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Default poll period of a device.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Extra register maps that add to (or replace) the built-in ones of the same name.
    #[serde(default)]
    pub firmware_dir: Option<PathBuf>,
    /// Overrides every register map's per-request Modbus timeout.
    #[serde(default, with = "humantime_serde")]
    pub modbus_timeout: Option<Duration>,
    /// Overrides every register map's pause between two requests on one connection.
    #[serde(default, with = "humantime_serde")]
    pub modbus_request_gap: Option<Duration>,
    /// Overrides every register map's wait after connecting.
    #[serde(default, with = "humantime_serde")]
    pub modbus_connect_delay: Option<Duration>,
}

fn default_poll() -> Duration {
    Duration::from_secs(60)
}

/// Several instances on one PostgreSQL database: they divide the Modbus gateways among the live
/// ones by leases in the database (an embedded SQLite store has one instance, which polls all).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This instance's name in the leases; the same name after a restart takes its gateways back
    /// at once. Default: the host name and the process id.
    #[serde(default)]
    pub instance: Option<String>,
    /// How long a gateway stays with an instance that stopped renewing it: a stopped or cut-off
    /// instance's gateways are polled by another within this and one renewal (a third of it).
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
}

fn default_lease() -> Duration {
    Duration::from_secs(15)
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instance: None,
            lease: default_lease(),
        }
    }
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            poll_interval: default_poll(),
            firmware_dir: None,
            modbus_timeout: None,
            modbus_request_gap: None,
            modbus_connect_delay: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// e.g. `http://127.0.0.1:8086`
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: SecretString,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Upper bound of the on-disk spool used while the server is unreachable.
    #[serde(default = "default_spool_bytes")]
    pub spool_max_bytes: u64,
    /// What to drop when the spool is full (default: keep the newest data).
    #[serde(default)]
    pub spool_full: SpoolFull,
    /// Where the spool and the dead-letter file live (default: `<data_dir>/influx-spool`).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Timestamp precision written to the server.
    #[serde(default)]
    pub precision: InfluxPrecision,
    /// Longest wait for one write before it counts as failed and is retried from the spool.
    #[serde(default = "default_influx_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long shutdown may spend delivering what is buffered before leaving it in the spool.
    #[serde(default = "default_flush_deadline", with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

/// What the InfluxDB sink's spool drops when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFull {
    /// Drop the oldest spooled batches: recent data matters most to operators.
    #[default]
    DropOldest,
    /// Refuse new batches: keeps the oldest gap-free history.
    DropNewest,
}

/// Line-protocol timestamp precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InfluxPrecision {
    S,
    #[default]
    Ms,
    Us,
    Ns,
}

fn default_influx_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_flush_deadline() -> Duration {
    Duration::from_secs(5)
}

fn default_batch_size() -> usize {
    5_000
}

fn default_flush() -> Duration {
    Duration::from_secs(1)
}

fn default_spool_bytes() -> u64 {
    1 << 30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `host:port` of an external broker.
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Run the broker inside Sunshare (single-machine deployments); `broker` may then be omitted.
    #[serde(default)]
    pub embedded: bool,
    /// Where the embedded broker listens for data loggers.
    #[serde(default = "default_mqtt_listen")]
    pub listen: SocketAddr,
    /// Prepended to every logger template's topic (a tenant or site prefix, e.g. `county-a/`).
    #[serde(default)]
    pub topic_prefix: String,
    /// Subscribe through `$share/<group>/...` so several Sunshare instances split the messages.
    #[serde(default)]
    pub shared_group: Option<String>,
    /// TLS to the external broker; absent means plain TCP.
    #[serde(default)]
    pub tls: Option<MqttTlsConfig>,
    #[serde(default = "default_mqtt_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Messages larger than this are refused (counted as `oversized`), never parsed.
    #[serde(default = "default_mqtt_max_message")]
    pub max_message_bytes: usize,
    /// First and longest wait between reconnect attempts (capped exponential backoff with jitter).
    #[serde(default = "default_mqtt_backoff_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_mqtt_backoff_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Extra logger templates that add to (or replace) `firmware-config/loggers/`.
    #[serde(default)]
    pub loggers_dir: Option<PathBuf>,
    /// The data loggers in the field; devices name them in `transport = { type = "mqtt", logger = ... }`.
    #[serde(default)]
    pub loggers: Vec<MqttLogger>,
}

fn default_client_id() -> String {
    "sunshare".to_owned()
}

fn default_mqtt_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}

fn default_mqtt_keep_alive() -> Duration {
    Duration::from_secs(30)
}

fn default_mqtt_max_message() -> usize {
    256 * 1024
}

fn default_mqtt_backoff_min() -> Duration {
    Duration::from_millis(500)
}

fn default_mqtt_backoff_max() -> Duration {
    Duration::from_secs(60)
}

/// TLS to the broker. Without `ca_file` the platform's root certificates are trusted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that authenticate clients by certificate.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// One 4G data logger (DTU) in the field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttLogger {
    /// The id the logger puts in its topic, usually its IMEI or serial.
    pub id: String,
    pub station: crate::domain::StationId,
    /// A template in `firmware-config/loggers/` (file stem), e.g. `json_generic`.
    pub template: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct County {
    pub id: CountyId,
    pub name: String,
    /// Province code for the coal benchmark price series, e.g. `shanxi`.
    pub province: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Township {
    pub id: TownshipId,
    pub name: String,
    pub county: CountyId,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Village {
    /// The village's administrative code.
    pub code: VillageId,
    pub name: String,
    pub township: TownshipId,
}

/// One thing wrong with a deployment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `stations[2].owners`.
    pub key: String,
    /// 1-based line in the file, when the key can be found there.
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

/// A deployment file that cannot be used, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{} found",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            match p.line {
                Some(line) => write!(f, "  {}:{line}: ", self.file)?,
                None => write!(f, "  {}: ", self.file)?,
            }
            writeln!(f, "{}: {}", p.key, p.message)?;
            writeln!(f, "      fix: {}", p.fix)?;
        }
        Ok(())
    }
}

/// A deployment file loaded by [`Deployment::load`], with the register maps it can use (the
/// built-in ones plus its `collect.firmware_dir`).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub deployment: Deployment,
    pub catalog: crate::registers::Catalog,
}

/// The `SUNSHARE_SECTION__KEY` variables of the process (not `SUNSHARE_LOG` and the like). One
/// whose value is not UTF-8 is a problem naming it, never silently skipped.
fn environment() -> Result<Vec<(String, String)>, Problem> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| {
            n.strip_prefix("SUNSHARE_")
                .is_some_and(|k| k.contains("__"))
        }) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => out.push((name.to_owned(), value)),
            Err(_) => {
                return Err(Problem {
                    key: name.to_owned(),
                    line: None,
                    message: "the value is not valid UTF-8".into(),
                    fix: format!("set {name} to UTF-8 text or unset it"),
                })
            }
        }
    }
    Ok(out)
}

impl Deployment {
    /// The one loader of a deployment file, used by every command: reads the file once, lays the
    /// `SUNSHARE_SECTION__KEY` environment variables over it (the environment wins), deserialises
    /// once, resolves `collect.firmware_dir` against the file's directory, loads the register maps
    /// it names and validates once against them.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let env = environment().map_err(|p| ConfigError {
            file: path.display().to_string(),
            problems: vec![p],
        })?;
        Self::load_with_env(path, &env)
    }

    /// [`Deployment::load`] with the environment given as pairs.
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
        let file = path.display().to_string();
        let err = |problems| ConfigError {
            file: file.clone(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(vec![Problem {
                key: "(file)".into(),
                line: None,
                message: format!("cannot read the file: {e}"),
                fix: "check the path given with --config".into(),
            }])
        })?;
        let mut deployment = Self::layered(&file, &text, env)?;
        // Relative to the file, so a service started from any directory finds the same maps.
        let dir = deployment.collect.firmware_dir.take().map(|dir| {
            if dir.is_relative() {
                path.parent().unwrap_or(Path::new(".")).join(dir)
            } else {
                dir
            }
        });
        let catalog = match &dir {
            None => crate::registers::Catalog::builtin(),
            Some(dir) => crate::registers::Catalog::with_dir(dir),
        }
        .map_err(|e| ConfigError {
            file: e.file().to_owned(),
            problems: vec![Problem {
                key: e.key().unwrap_or("(file)").to_owned(),
                line: None,
                message: e.message(),
                fix: "correct the register map (see docs/modbus.md for the format)".into(),
            }],
        })?;
        deployment.collect.firmware_dir = dir;
        deployment.check(&file, &text, &catalog.names())?;
        Ok(Loaded {
            deployment,
            catalog,
        })
    }

    /// The pure core of [`Deployment::load`] for a text whose register maps are known: `env` is
    /// the environment as pairs.
    pub fn from_str_with_env(
        file: &str,
        text: &str,
        env: &[(String, String)],
        known_models: &HashSet<String>,
    ) -> Result<Deployment, ConfigError> {
        let deployment = Self::layered(file, text, env)?;
        deployment.check(file, text, known_models)?;
        Ok(deployment)
    }

    /// The file with the environment laid over it, deserialised once. An error in a key an
    /// environment variable set names the variable.
    fn layered(
        file: &str,
        text: &str,
        env: &[(String, String)],
    ) -> Result<Deployment, ConfigError> {
        let err = |problems| ConfigError {
            file: file.to_owned(),
            problems,
        };
        let overrides: Vec<(&str, Vec<String>, &str)> = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("SUNSHARE_")?;
                rest.contains("__").then(|| {
                    let path = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
                    (k.as_str(), path, v.as_str())
                })
            })
            .collect();
        if overrides.is_empty() {
            return toml::from_str(text).map_err(|e| err(vec![parse_problem(text, &e)]));
        }
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| err(vec![parse_problem(text, &e)]))?;
        for (name, path, value) in &overrides {
            if let Err(message) = apply_override(&mut table, path, value) {
                return Err(err(vec![Problem {
                    key: (*name).to_owned(),
                    line: None,
                    message,
                    fix: "override only keys of tables, e.g. SUNSHARE_STORAGE__URL".into(),
                }]));
            }
        }
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().message().to_owned();
            // The variable that set this key or something under it (a key of a table it made).
            let variable = overrides.iter().find(|(_, path, _)| {
                let dotted = path.join(".");
                dotted == key
                    || dotted.starts_with(&format!("{key}."))
                    || (key == "."
                        && path
                            .first()
                            .is_some_and(|first| message.contains(&format!("`{first}`"))))
            });
            let problem = match variable {
                // Not the value itself: it may be a secret (SUNSHARE_STORAGE__URL).
                Some((name, path, _)) => Problem {
                    key: (*name).to_owned(),
                    line: None,
                    message: format!("{name} (for {}): {message}", path.join(".")),
                    fix: format!("correct the value of {name} or unset it"),
                },
                None => Problem {
                    line: Locator::new(text).line_of(&key),
                    key,
                    message,
                    fix: "correct the value to the expected type".into(),
                },
            };
            err(vec![problem])
        })
    }

    /// Cross-record validation, once, against the register maps the deployment can use.
    fn check(
        &self,
        file: &str,
        text: &str,
        known_models: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        let problems = self.validate(known_models, &Locator::new(text));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: file.to_owned(),
                problems,
            })
        }
    }

    pub fn station(&self, id: &str) -> Option<&Station> {
        self.stations.iter().find(|s| s.id.as_str() == id)
    }

    pub fn county_of_village(&self, village: &VillageId) -> Option<&CountyId> {
        let township = &self.villages.iter().find(|v| &v.code == village)?.township;
        Some(&self.townships.iter().find(|t| &t.id == township)?.county)
    }

    /// What the money core reads of this deployment: the one mapping from the file's (or, in the
    /// ledger, the registry-overlaid) deployment to an allocation's input. Each village comes with
    /// the province of its township's county.
    pub fn allocation_input(&self) -> crate::allocate::AllocationInput<'_> {
        let county_province: HashMap<&str, &str> = self
            .counties
            .iter()
            .map(|c| (c.id.as_str(), c.province.as_str()))
            .collect();
        let township_county: HashMap<&str, &str> = self
            .townships
            .iter()
            .map(|t| (t.id.as_str(), t.county.as_str()))
            .collect();
        let villages = self
            .villages
            .iter()
            .map(|v| crate::allocate::AllocationVillage {
                code: &v.code,
                province: township_county
                    .get(v.township.as_str())
                    .and_then(|county| county_province.get(county).copied()),
            })
            .collect();
        crate::allocate::AllocationInput {
            stations: &self.stations,
            villages,
            households: &self.households,
            jobs: &self.jobs,
            tariffs: &self.tariffs,
            coal_prices: &self.coal_prices,
            policy: &self.policy,
            adders: &self.adders,
            costs: &self.costs,
            plans: &self.plans,
            attendance: &self.attendance,
            subsidy_receipts: &self.subsidy_receipts,
            advances: &self.advances,
            adjustments: &self.adjustments,
            pool_membership: &self.pool_membership,
        }
    }

    /// The coal benchmark price in force for `province` on `day`.
    pub fn coal_price(&self, province: &str, day: NaiveDate) -> Option<Price> {
        crate::allocate::coal_price_on(&self.coal_prices, province, day)
    }

    /// Cross-record rules; each problem names its key and how to fix it.
    fn validate(&self, known_models: &HashSet<String>, loc: &Locator) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut push = |key: String, message: String, fix: &str| {
            let line = loc.line_of(&key);
            out.push(Problem {
                key,
                line,
                message,
                fix: fix.to_owned(),
            });
        };

        if self.storage.backend == Backend::Postgres && self.storage.url.is_none() {
            push(
                "storage.url".into(),
                "the postgres backend needs a connection URL".into(),
                "set storage.url = \"postgres://user@host/db\" or SUNSHARE_STORAGE__URL",
            );
        }

        if self.cluster.lease < Duration::from_secs(1) {
            push(
                "cluster.lease".into(),
                format!(
                    "a lease of {} ms is renewed faster than a database answers under load",
                    self.cluster.lease.as_millis()
                ),
                "set cluster.lease to a few seconds or more (default 15s)",
            );
        }
        if self
            .cluster
            .instance
            .as_deref()
            .is_some_and(|i| i.trim().is_empty() || i.len() > 100)
        {
            push(
                "cluster.instance".into(),
                "the instance name is empty or longer than 100 characters".into(),
                "name the instance after its machine, e.g. instance = \"sunshare-2\"",
            );
        }

        if self.ledger.tokens.is_some() {
            push(
                "ledger.tokens".into(),
                "bearer tokens are no longer kept in the deployment file: accounts and API tokens \
                 live in the database, hashed, each with a role and the villages it covers"
                    .into(),
                "remove [[ledger.tokens]]; create users with `sunshare user add` and API tokens \
                 with `sunshare token add`",
            );
        }

        if let Some(influx) = &self.influx {
            let scheme_ok = influx.url.starts_with("http://") || influx.url.starts_with("https://");
            if !scheme_ok || url::Url::parse(&influx.url).is_err() {
                push(
                    "influx.url".into(),
                    format!("'{}' is not an http(s) URL", influx.url),
                    "give the server's base URL, e.g. url = \"http://127.0.0.1:8086\"",
                );
            }
            if influx.batch_size == 0 {
                push(
                    "influx.batch_size".into(),
                    "a batch size of 0 points".into(),
                    "give the points per write request, e.g. batch_size = 5000",
                );
            }
            if influx.spool_max_bytes < 1 << 20 {
                push(
                    "influx.spool_max_bytes".into(),
                    format!(
                        "a spool of {} bytes cannot hold a batch",
                        influx.spool_max_bytes
                    ),
                    "give at least 1 MiB, e.g. spool_max_bytes = 1073741824 (1 GiB)",
                );
            }
        }

        let counties = unique_ids(&self.counties, |c| c.id.as_str(), "counties", &mut push);
        let townships = unique_ids(&self.townships, |t| t.id.as_str(), "townships", &mut push);
        let villages = unique_ids(&self.villages, |v| v.code.as_str(), "villages", &mut push);
        let tariffs = unique_ids(&self.tariffs, |t| t.id.as_str(), "tariffs", &mut push);
        let stations = unique_ids(&self.stations, |s| s.id.as_str(), "stations", &mut push);
        unique_ids(&self.devices, |d| d.id.as_str(), "devices", &mut push);
        unique_ids(&self.jobs, |j| j.id.as_str(), "jobs", &mut push);

        for (i, t) in self.townships.iter().enumerate() {
            if !counties.contains(t.county.as_str()) {
                push(
                    format!("townships[{i}].county"),
                    format!(
                        "township '{}' names county '{}', which is not declared",
                        t.id, t.county
                    ),
                    "add a [[counties]] entry with that id or correct the county",
                );
            }
        }
        for (i, v) in self.villages.iter().enumerate() {
            if !townships.contains(v.township.as_str()) {
                push(
                    format!("villages[{i}].township"),
                    format!(
                        "village '{}' names township '{}', which is not declared",
                        v.code, v.township
                    ),
                    "add a [[townships]] entry with that id or correct the township",
                );
            }
        }

        for (i, s) in self.stations.iter().enumerate() {
            let key = |field: &str| format!("stations[{i}].{field}");
            if !counties.contains(s.county.as_str()) {
                push(
                    key("county"),
                    format!(
                        "station '{}' names county '{}', which is not declared",
                        s.id, s.county
                    ),
                    "add a [[counties]] entry with that id or correct the county",
                );
            }
            if !tariffs.contains(s.tariff.as_str()) {
                push(
                    key("tariff"),
                    format!(
                        "station '{}' names tariff '{}', which is not declared",
                        s.id, s.tariff
                    ),
                    "add a [[tariffs]] entry with that id or correct the tariff",
                );
            }
            if !(s.capacity_kwp > 0.0 && s.capacity_kwp.is_finite()) {
                push(
                    key("capacity_kwp"),
                    format!("capacity {} kWp is not a positive number", s.capacity_kwp),
                    "give the installed DC capacity in kWp, e.g. 300",
                );
            }
            if !(-90.0..=90.0).contains(&s.latitude) || !(-180.0..=180.0).contains(&s.longitude) {
                push(
                    key("latitude"),
                    format!(
                        "coordinates ({}, {}) are not on Earth",
                        s.latitude, s.longitude
                    ),
                    "give latitude and longitude in decimal degrees, e.g. 37.87 and 112.55",
                );
            }
            match s.kind {
                StationKind::Village => match &s.village {
                    None => push(
                        key("village"),
                        format!("village station '{}' has no owning village", s.id),
                        "set village = \"<village code>\"",
                    ),
                    Some(v) if !villages.contains(v.as_str()) => push(
                        key("village"),
                        format!("village '{v}' is not declared"),
                        "add a [[villages]] entry with that code or correct it",
                    ),
                    Some(_) => {}
                },
                StationKind::JointVillage => {
                    if s.owners.len() < 2 {
                        push(
                            key("owners"),
                            format!(
                                "joint-village station '{}' has {} owner(s)",
                                s.id,
                                s.owners.len()
                            ),
                            "list at least two owners = [{ village = \"...\", weight = N }, ...]",
                        );
                    }
                    let mut seen = HashSet::new();
                    for (j, o) in s.owners.iter().enumerate() {
                        if !villages.contains(o.village.as_str()) {
                            push(
                                format!("stations[{i}].owners[{j}].village"),
                                format!("village '{}' is not declared", o.village),
                                "add a [[villages]] entry with that code or correct it",
                            );
                        }
                        if !seen.insert(o.village.as_str()) {
                            push(
                                format!("stations[{i}].owners[{j}].village"),
                                format!("village '{}' is listed twice", o.village),
                                "merge the two shares into one entry",
                            );
                        }
                        if o.weight == 0 {
                            push(
                                format!("stations[{i}].owners[{j}].weight"),
                                "an ownership weight of 0".into(),
                                "remove the owner or give its weight",
                            );
                        }
                    }
                    let sum: u64 = s.owners.iter().map(|o| o.weight).sum();
                    if let Some(total) = s.total_weight {
                        if sum != total {
                            push(key("owners"), format!("ownership weights sum to {sum}, but total_weight is {total}"), "make the weights sum to total_weight (integer kW or yuan invested)");
                        }
                    }
                }
                StationKind::Centralized => {
                    if s.payment_per_beneficiary.is_none() {
                        push(
                            key("payment_per_beneficiary"),
                            format!(
                                "centralized station '{}' has no payment per beneficiary",
                                s.id
                            ),
                            "set payment_per_beneficiary = \"3000\" (yuan per household per year)",
                        );
                    }
                }
            }
        }

        let mut gateways: HashMap<(&str, u8), &str> = HashMap::new();
        for (i, d) in self.devices.iter().enumerate() {
            if !stations.contains(d.station.as_str()) {
                push(
                    format!("devices[{i}].station"),
                    format!(
                        "device '{}' names station '{}', which is not declared",
                        d.id, d.station
                    ),
                    "add a [[stations]] entry with that id or correct the station",
                );
            }
            if !known_models.contains(&d.model) {
                let mut names: Vec<_> = known_models.iter().map(String::as_str).collect();
                names.sort_unstable();
                push(
                    format!("devices[{i}].model"),
                    format!(
                        "device '{}' uses register map '{}', which does not exist",
                        d.id, d.model
                    ),
                    &format!(
                        "use one of: {}; or add firmware-config/inverters/{}.toml",
                        names.join(", "),
                        d.model
                    ),
                );
            }
            if !(d.rated_power_w > 0.0 && d.rated_power_w.is_finite()) {
                push(
                    format!("devices[{i}].rated_power_w"),
                    format!("rated power {} W is not positive", d.rated_power_w),
                    "give the nameplate AC power in W",
                );
            }
            if let crate::domain::Transport::ModbusTcp { address, unit }
            | crate::domain::Transport::RtuOverTcp { address, unit } = &d.transport
            {
                if let Some(other) = gateways.insert((address.as_str(), *unit), d.id.as_str()) {
                    push(
                        format!("devices[{i}].transport"),
                        format!(
                            "device '{}' and device '{other}' both use unit {unit} at {address}",
                            d.id
                        ),
                        "give each device behind one gateway its own unit id",
                    );
                }
            }
        }

        let mut household_village: HashMap<&str, &VillageId> = HashMap::new();
        for (i, h) in self.households.iter().enumerate() {
            if let Some(first) = household_village.get(h.id.as_str()) {
                let message = if *first == &h.village {
                    format!("household '{}' is declared twice", h.id)
                } else {
                    format!("household '{}' is registered in village '{first}' and again in village '{}' (one household, one village: docs/policy.md 5)", h.id, h.village)
                };
                push(
                    format!("households[{i}].id"),
                    message,
                    "keep a single entry for the household, in the village where it is registered",
                );
                continue;
            }
            household_village.insert(h.id.as_str(), &h.village);
            if !villages.contains(h.village.as_str()) {
                push(
                    format!("households[{i}].village"),
                    format!("village '{}' is not declared", h.village),
                    "add a [[villages]] entry with that code or correct it",
                );
            }
            if h.status.is_empty() {
                push(
                    format!("households[{i}].status"),
                    format!("household '{}' has no poverty status", h.id),
                    "add status = [{ status = \"not_exited\", from = 2016-01-01 }]",
                );
            }
        }
        let known_household = |id: &HouseholdId| household_village.contains_key(id.as_str());
        for (i, s) in self.stations.iter().enumerate() {
            for (j, b) in s.beneficiaries.iter().enumerate() {
                if !known_household(b) {
                    push(
                        format!("stations[{i}].beneficiaries[{j}]"),
                        format!("household '{b}' is not declared"),
                        "add it to [[households]] or remove it",
                    );
                }
            }
        }
        let mut holders: HashMap<&str, Vec<&JobPost>> = HashMap::new();
        for (i, j) in self.jobs.iter().enumerate() {
            match household_village.get(j.holder.as_str()) {
                None => push(
                    format!("jobs[{i}].holder"),
                    format!(
                        "job '{}' is held by household '{}', which is not declared",
                        j.id, j.holder
                    ),
                    "add the household or correct the holder",
                ),
                Some(v) if *v != &j.village => push(
                    format!("jobs[{i}].holder"),
                    format!(
                        "job '{}' is in village '{}' but its holder belongs to village '{v}'",
                        j.id, j.village
                    ),
                    "a job is held by a household of its own village",
                ),
                Some(_) => {}
            }
            if j.monthly_wage <= Fen::ZERO {
                push(
                    format!("jobs[{i}].monthly_wage"),
                    format!("monthly wage {} is not positive", j.monthly_wage),
                    "give the wage in yuan, e.g. monthly_wage = \"600\"",
                );
            }
            // ONE_JOB_PER_HOUSEHOLD as the allocator applies it: two jobs of one household may not
            // be paid in the same month; with the policy off a household may hold several.
            let earlier: &mut Vec<&JobPost> = holders.entry(j.holder.as_str()).or_default();
            if self.policy.one_job_per_household {
                let clash = earlier.iter().find_map(|other| {
                    crate::allocate::first_month_paid_together(other, j).map(|m| (other, m))
                });
                if let Some((other, month)) = clash {
                    push(
                        format!("jobs[{i}].holder"),
                        format!(
                            "household '{}' holds job '{}' ({}) and job '{}' ({}), both paid in {month} \
                             (one job per household: docs/policy.md 5, policy.one_job_per_household)",
                            j.holder,
                            other.id,
                            JobSpan(other),
                            j.id,
                            JobSpan(j),
                        ),
                        "a job is paid for every month it is held on any day: end one job in the month \
                         before the other starts, give this job to another household, or set \
                         one_job_per_household = false under [policy]",
                    );
                }
            }
            earlier.push(j);
        }
        for (i, c) in self.coal_prices.iter().enumerate() {
            if c.price <= Price(0) {
                push(
                    format!("coal_prices[{i}].price"),
                    format!("coal price {} is not positive", c.price),
                    "give the benchmark price in yuan/kWh, e.g. 0.332",
                );
            }
        }
        for (key, message, fix) in self.alerts.problems(&|id| stations.contains(id)) {
            push(key, message, &fix);
        }
        if out.is_empty() {
            // Allocation data (plans, costs, policies) is checked by the money core's own rules.
            if let Err(e) = crate::allocate::Book::new(&self.allocation_input()) {
                out.push(Problem {
                    key: "plans".into(),
                    line: loc.line_of("plans"),
                    message: e.to_string(),
                    fix: "correct the allocation data the message names (see docs/allocation.md)"
                        .into(),
                });
            }
        }
        out
    }
}

/// A job's dates as a message shows them: `2026-01-01 to 2026-06-30`, `from 2026-07-01`.
struct JobSpan<'a>(&'a JobPost);

impl fmt::Display for JobSpan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.until {
            Some(until) => write!(f, "{} to {until}", self.0.from),
            None => write!(f, "from {}", self.0.from),
        }
    }
}

/// Records duplicate ids as problems and returns the set of ids.
fn unique_ids<'a, T>(
    items: &'a [T],
    id: impl Fn(&'a T) -> &'a str,
    table: &str,
    push: &mut impl FnMut(String, String, &str),
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let value = id(item);
        if !seen.insert(value) {
            let field = if table == "villages" { "code" } else { "id" };
            push(
                format!("{table}[{i}].{field}"),
                format!("duplicate {field} '{value}' in [[{table}]]"),
                "every entry needs its own id; rename or remove one of them",
            );
        }
    }
    seen
}

fn parse_problem(text: &str, e: &toml::de::Error) -> Problem {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().to_owned();
    let fix = if message.contains("unknown field") {
        "remove the key or correct its spelling (the message lists the keys allowed here)"
    } else if message.contains("missing field") {
        "add the missing key to this table"
    } else {
        "correct the value to the expected type"
    };
    Problem {
        key: "(syntax)".into(),
        line,
        message,
        fix: fix.into(),
    }
}

fn apply_override(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| "empty override path".to_owned())?;
    let mut current = table;
    for p in parents {
        let entry = current
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("'{p}' is not a table"))?;
    }
    // A value that parses as TOML (a number, a boolean, an array) keeps its type; anything else is a string.
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    current.insert(last.clone(), value);
    Ok(())
}

/// Finds the line of a key path such as `stations[2].owners[0].village` in the original text.
struct Locator {
    doc: Option<toml_edit::ImDocument<String>>,
    text: String,
}

impl Locator {
    fn new(text: &str) -> Self {
        Self {
            doc: toml_edit::ImDocument::parse(text.to_owned()).ok(),
            text: text.to_owned(),
        }
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item: &toml_edit::Item = doc.as_item();
        let mut best = item.span();
        for segment in key.split('.') {
            let (name, index) = match segment.split_once('[') {
                Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (segment, None),
            };
            item = item.get(name)?;
            best = item.span().or(best);
            if let Some(i) = index {
                item = item.get(i)?;
                best = item.span().or(best);
            }
        }
        best.map(|span| {
            self.text[..span.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        })
    }
}

#[cfg(test)]
mod tests;
