//! The `[alerts]` section of the deployment file: thresholds, grace periods, maintenance windows and
//! where notifications go. Every key has a default, so a deployment without the section still gets
//! sun-aware alerts on the pages (and no notifications).

use crate::domain::{Severity, StationId};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

/// How alerts are raised. Durations use humantime (`"90s"`, `"15m"`, `"2h"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Run the alert engine at all.
    pub enabled: bool,
    /// How often the rules are evaluated.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Below this solar elevation (degrees) a station is asleep: silence and zero power are normal.
    pub sleep_elevation_deg: f64,
    /// A gateway or logger silent this long (while it should be awake) is offline.
    #[serde(with = "humantime_serde")]
    pub offline_after: Duration,
    /// One device silent this long behind a gateway that still answers.
    #[serde(with = "humantime_serde")]
    pub comm_lost_after: Duration,
    /// Values identical this long in daylight while samples keep arriving.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// A fault or alarm code must persist this long before it becomes an alert.
    #[serde(with = "humantime_serde")]
    pub fault_after: Duration,
    /// Grid loss on every device of a station must persist this long.
    #[serde(with = "humantime_serde")]
    pub grid_outage_after: Duration,
    /// A condition must stay clear this long before its alert resolves.
    #[serde(with = "humantime_serde")]
    pub clear_after: Duration,
    /// An alert opened more than `flap_max` times within `flap_window` is flapping: it stops
    /// notifying and resolves only after a whole `flap_window` clear.
    #[serde(with = "humantime_serde")]
    pub flap_window: Duration,
    pub flap_max: u32,
    pub underperforming: UnderperformingConfig,
    /// Planned work: no alert opens, resolves or notifies for the station inside a window.
    pub maintenance: Vec<MaintenanceWindow>,
    pub notify: NotifyConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            sleep_elevation_deg: 3.0,
            offline_after: Duration::from_secs(15 * 60),
            comm_lost_after: Duration::from_secs(15 * 60),
            stale_after: Duration::from_secs(45 * 60),
            fault_after: Duration::from_secs(2 * 60),
            grid_outage_after: Duration::from_secs(5 * 60),
            clear_after: Duration::from_secs(5 * 60),
            flap_window: Duration::from_secs(3600),
            flap_max: 3,
            underperforming: UnderperformingConfig::default(),
            maintenance: Vec::new(),
            notify: NotifyConfig::default(),
        }
    }
}

/// Peer comparison: a station's specific yield (kWh per kWp) today against the median of the other
/// stations of its county.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnderperformingConfig {
    /// Raise below this share of the county median (0.6 = 60 %).
    pub share: f64,
    /// Only judge once the sun has been above `sleep_elevation_deg` this long today.
    #[serde(with = "humantime_serde")]
    pub min_daylight: Duration,
    /// Only judge with at least this many other stations in the county reporting.
    pub min_peers: usize,
    /// Skip days when the county median is below this (kWh/kWp): heavy overcast makes the ratio noise.
    pub min_median_yield: f64,
}

impl Default for UnderperformingConfig {
    fn default() -> Self {
        Self {
            share: 0.6,
            min_daylight: Duration::from_secs(3 * 3600),
            min_peers: 2,
            min_median_yield: 0.3,
        }
    }
}

/// A planned intervention on one station, in UTC (RFC 3339, e.g. `2026-06-01T01:00:00Z`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub station: StationId,
    #[serde(with = "crate::domain::date::instant")]
    pub from: DateTime<Utc>,
    #[serde(with = "crate::domain::date::instant")]
    pub to: DateTime<Utc>,
    #[serde(default)]
    pub note: String,
}

impl AlertsConfig {
    /// Whether `station` is inside a maintenance window at `at`.
    pub fn in_maintenance(&self, station: &StationId, at: DateTime<Utc>) -> bool {
        self.maintenance
            .iter()
            .any(|m| &m.station == station && m.from <= at && at < m.to)
    }

    /// Problems as (key, message, fix), checked with the rest of the deployment file.
    pub fn problems(&self, station_exists: &dyn Fn(&str) -> bool) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, m: String, f: &str| {
            out.push((format!("alerts.{k}"), m, f.to_owned()));
        };
        if self.interval.is_zero() {
            push(
                "interval",
                "the evaluation interval is 0".into(),
                "give a duration such as \"30s\"",
            );
        }
        if !(-18.0..=20.0).contains(&self.sleep_elevation_deg) {
            push(
                "sleep_elevation_deg",
                format!(
                    "{} degrees is not a plausible wake-up elevation",
                    self.sleep_elevation_deg
                ),
                "use a value between -18 and 20, typically 3",
            );
        }
        let u = &self.underperforming;
        if !(u.share > 0.0 && u.share < 1.0) {
            push(
                "underperforming.share",
                format!("share {} is not between 0 and 1", u.share),
                "give a fraction of the county median, e.g. 0.6",
            );
        }
        if u.min_peers == 0 {
            push(
                "underperforming.min_peers",
                "a median of no peers is meaningless".into(),
                "use at least 1 (2 or more recommended)",
            );
        }
        for (i, m) in self.maintenance.iter().enumerate() {
            if !station_exists(m.station.as_str()) {
                push(
                    &format!("maintenance[{i}].station"),
                    format!("station '{}' is not declared", m.station),
                    "name a station from [[stations]]",
                );
            }
            if m.to <= m.from {
                push(
                    &format!("maintenance[{i}].to"),
                    format!("the window ends ({}) before it starts ({})", m.to, m.from),
                    "give `to` after `from`",
                );
            }
        }
        for (k, m, f) in self.notify.problems() {
            push(&format!("notify.{k}"), m, &f);
        }
        out
    }
}

/// `[alerts.notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub webhooks: Vec<WebhookConfig>,
    pub mqtt: Option<MqttSinkConfig>,
    /// Per attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per message, the first included.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// More events than this in one batch (per destination) are sent as one summary.
    pub summary_threshold: usize,
    /// Messages per destination per hour; what does not fit waits and goes out as one summary.
    pub max_per_hour: usize,
    /// Link to the alerts page in chat messages, e.g. `http://noc.example:8080`.
    pub public_url: Option<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            mqtt: None,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            summary_threshold: 3,
            max_per_hour: 30,
            public_url: None,
        }
    }
}

impl NotifyConfig {
    pub(crate) fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        if self.max_attempts == 0 {
            out.push((
                "max_attempts".into(),
                "0 attempts would never send anything".into(),
                "use at least 1, e.g. 5".into(),
            ));
        }
        if self.max_per_hour == 0 {
            out.push((
                "max_per_hour".into(),
                "a rate of 0 messages per hour would never send anything".into(),
                "use at least 1, e.g. 30".into(),
            ));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let url = w.url.expose_secret();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push((
                    format!("webhooks[{i}].url"),
                    format!("webhook '{}' has a URL that is not http(s)", w.name),
                    "give the full URL, e.g. https://oapi.dingtalk.com/robot/send?access_token=..."
                        .into(),
                ));
            }
        }
        out
    }
}

/// One webhook destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Shown on the alerts page and in logs instead of the URL.
    pub name: String,
    /// Carries the robot's access token: a secret.
    pub url: SecretString,
    #[serde(default)]
    pub format: Format,
    /// Events below this severity are not sent here.
    #[serde(default)]
    pub min_severity: Severity,
    /// DingTalk "sign" security setting: the robot's secret (SEC...).
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// DingTalk/WeCom "keyword" security setting: put into every message.
    #[serde(default)]
    pub keyword: Option<String>,
}

/// `[alerts.notify.mqtt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// `host:port`.
    pub broker: String,
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default = "default_client")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
}

fn default_topic() -> String {
    "sunshare/alerts".into()
}

fn default_client() -> String {
    "sunshare-alerts".into()
}

/// The payload format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Sunshare's own JSON document (also used on MQTT).
    #[default]
    Json,
    /// DingTalk custom robot (钉钉群机器人), markdown message.
    Dingtalk,
    /// WeCom group robot (企业微信群机器人), markdown message.
    Wecom,
}
