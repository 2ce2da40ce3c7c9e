//! The pure alert rules: from what the fleet last said and where the sun is, decide which conditions
//! hold, and turn them into alert lifecycle events (opened, resolved) with grace periods, flapping
//! suppression, deduplication and maintenance windows.
//!
//! No I/O and no clock: the caller passes `now` and a [`Snapshot`]; [`RulesState`] carries what must
//! be remembered between evaluations (pending conditions, open alerts, frozen values).

use crate::config::alerts::AlertsConfig;
use crate::domain::{Alarm, CountyId, DeviceId, DeviceState, StationId};
use crate::solar;
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A gateway or data logger has not been heard from while it should be awake.
    Offline,
    /// One device is silent behind a gateway that still answers.
    CommLost,
    /// Every reporting device of a station reports loss of grid.
    GridOutage,
    /// A device reports a fault state or alarm codes.
    Fault,
    /// Specific yield well below the county's other stations today.
    Underperforming,
    /// Samples keep arriving but their values are frozen.
    Stale,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::Offline,
        AlertKind::CommLost,
        AlertKind::GridOutage,
        AlertKind::Fault,
        AlertKind::Underperforming,
        AlertKind::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Offline => "offline",
            AlertKind::CommLost => "comm_lost",
            AlertKind::GridOutage => "grid_outage",
            AlertKind::Fault => "fault",
            AlertKind::Underperforming => "underperforming",
            AlertKind::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A short bilingual label for pages and chat messages.
    pub fn label(self) -> &'static str {
        match self {
            AlertKind::Offline => "offline 离线",
            AlertKind::CommLost => "communication lost 通讯中断",
            AlertKind::GridOutage => "grid outage 电网停电",
            AlertKind::Fault => "fault 故障",
            AlertKind::Underperforming => "underperforming 发电偏低",
            AlertKind::Stale => "data stale 数据冻结",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            AlertKind::Offline | AlertKind::GridOutage => Severity::Critical,
            AlertKind::Fault | AlertKind::CommLost => Severity::Major,
            AlertKind::Underperforming | AlertKind::Stale => Severity::Minor,
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity is shared vocabulary: the deployment file names it per destination.
pub use crate::domain::Severity;

/// One alert's identity: at most one alert per key is open at a time (deduplication).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    pub kind: AlertKind,
    pub station: StationId,
    /// The gateway address, logger or device the alert is about; empty for station-wide alerts.
    pub subject: String,
}

/// A condition that holds now.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub key: AlertKey,
    pub county: CountyId,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Resolved,
}

/// A lifecycle change to persist and perhaps notify.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub key: AlertKey,
    pub severity: Severity,
    pub county: CountyId,
    pub message: String,
    /// When the condition was first seen (for `Opened`) or the alert opened (for `Resolved`).
    pub since: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub flapping: bool,
    /// False for flapping alerts: they are recorded but do not page anyone.
    pub notify: bool,
}

/// What the rules know of one device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInput {
    pub id: DeviceId,
    /// Devices sharing a gateway (a Modbus address or an MQTT logger) go silent together.
    pub gateway: String,
    pub last: Option<LastReading>,
}

/// A device's newest sample, reduced to what the rules use.
#[derive(Clone, Debug, PartialEq)]
pub struct LastReading {
    pub at: DateTime<Utc>,
    pub power_w: Option<f64>,
    pub state: Option<DeviceState>,
    pub alarms: Vec<Alarm>,
    /// A hash of all values: equal fingerprints on successive samples mean frozen values.
    pub fingerprint: u64,
}

/// What the rules know of one station.
#[derive(Clone, Debug, PartialEq)]
pub struct StationInput {
    pub id: StationId,
    pub county: CountyId,
    pub latitude: f64,
    pub longitude: f64,
    pub timezone: Tz,
    pub capacity_kwp: f64,
    pub devices: Vec<DeviceInput>,
    /// Energy produced since local midnight, when known.
    pub day_energy_wh: Option<f64>,
}

/// The fleet as last reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub stations: Vec<StationInput>,
}

#[derive(Clone, Debug, Default)]
struct Track {
    pending_since: Option<DateTime<Utc>>,
    open: Option<OpenTrack>,
    opens: VecDeque<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
struct OpenTrack {
    since: DateTime<Utc>,
    severity: Severity,
    county: CountyId,
    message: String,
    flapping: bool,
    clear_since: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
struct Frozen {
    fingerprint: u64,
    since: DateTime<Utc>,
    last_at: DateTime<Utc>,
}

/// What the rules remember between evaluations.
#[derive(Clone, Debug, Default)]
pub struct RulesState {
    started: Option<DateTime<Utc>>,
    tracks: BTreeMap<AlertKey, Track>,
    frozen: HashMap<DeviceId, Frozen>,
}

/// The outcome of one evaluation: conditions that hold, keys whose truth cannot be judged now (they
/// keep their state), and the lifecycle events.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub active: Vec<Condition>,
    pub held: HashSet<AlertKey>,
    pub events: Vec<Event>,
}

impl RulesState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Re-adopts an alert that was open before a restart, so it is not opened twice.
    pub fn restore(
        &mut self,
        key: AlertKey,
        county: CountyId,
        severity: Severity,
        message: String,
        since: DateTime<Utc>,
        flapping: bool,
    ) {
        let track = self.tracks.entry(key).or_default();
        track.opens.push_back(since);
        track.open = Some(OpenTrack {
            since,
            severity,
            county,
            message,
            flapping,
            clear_since: None,
        });
    }

    /// Keys of the alerts open now.
    pub fn open_keys(&self) -> impl Iterator<Item = &AlertKey> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.open.is_some())
            .map(|(k, _)| k)
    }
}

fn dur(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

fn elevation(s: &StationInput, at: DateTime<Utc>) -> f64 {
    solar::position(s.latitude, s.longitude, at).elevation_deg
}

/// When the sun last rose above `threshold` before `now` (searching back at most a day). `now` itself
/// when it is below.
pub fn risen_at(
    latitude: f64,
    longitude: f64,
    now: DateTime<Utc>,
    threshold: f64,
) -> DateTime<Utc> {
    let above =
        |t: DateTime<Utc>| solar::position(latitude, longitude, t).elevation_deg >= threshold;
    if !above(now) {
        return now;
    }
    let step = Duration::minutes(10);
    let mut hi = now;
    let mut lo = now - step;
    let limit = now - Duration::hours(24);
    while above(lo) {
        if lo <= limit {
            return limit;
        }
        hi = lo;
        lo -= step;
    }
    // The crossing is in (lo, hi]: bisect to the second.
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if above(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Time with the sun above `threshold` from local midnight to `now`, sampled every 5 minutes.
fn daylight_so_far(s: &StationInput, now: DateTime<Utc>, threshold: f64) -> Duration {
    let local_day = now.with_timezone(&s.timezone).date_naive();
    let midnight = local_day
        .and_hms_opt(0, 0, 0)
        .and_then(|m| s.timezone.from_local_datetime(&m).earliest())
        .map_or(now - Duration::hours(24), |m| m.with_timezone(&Utc));
    let step = Duration::minutes(5);
    let mut t = midnight;
    let mut total = Duration::zero();
    while t < now {
        if elevation(s, t) >= threshold {
            total += step.min(now - t);
        }
        t += step;
    }
    total
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn fmt_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%m-%d %H:%M").to_string()
}

fn alarm_text(alarms: &[Alarm]) -> String {
    alarms
        .iter()
        .map(|a| match (a.text_en.is_empty(), a.text_zh.is_empty()) {
            (true, true) => a.code.clone(),
            (false, true) => format!("{} {}", a.code, a.text_en),
            (true, false) => format!("{} {}", a.code, a.text_zh),
            (false, false) => format!("{} {} / {}", a.code, a.text_en, a.text_zh),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Evaluates the rules at `now` and advances the lifecycle: the one entry point.
pub fn evaluate(
    state: &mut RulesState,
    snapshot: &Snapshot,
    now: DateTime<Utc>,
    cfg: &AlertsConfig,
) -> Evaluation {
    let started = *state.started.get_or_insert(now);
    let mut eval = conditions(state, snapshot, now, started, cfg);
    // Right after a (re)start, silence and frozen values cannot be judged yet: alerts adopted from
    // before keep their state instead of resolving and opening again.
    let warming: Vec<AlertKey> = state
        .open_keys()
        .filter(|k| now - started < warm_up(k.kind, cfg))
        .cloned()
        .collect();
    eval.held.extend(warming);
    let maintenance: HashSet<&StationId> = snapshot
        .stations
        .iter()
        .filter(|s| cfg.in_maintenance(&s.id, now))
        .map(|s| &s.id)
        .collect();
    eval.events = lifecycle(state, &eval.active, &eval.held, &maintenance, now, cfg);
    eval
}

fn conditions(
    state: &mut RulesState,
    snapshot: &Snapshot,
    now: DateTime<Utc>,
    started: DateTime<Utc>,
    cfg: &AlertsConfig,
) -> Evaluation {
    let mut eval = Evaluation::default();
    let sleep = cfg.sleep_elevation_deg;
    let offline_after = dur(cfg.offline_after);
    let comm_after = dur(cfg.comm_lost_after);
    let stale_after = dur(cfg.stale_after);
    // Stations whose output cannot be compared with their peers today.
    let mut not_comparable: HashSet<&StationId> = HashSet::new();

    for s in &snapshot.stations {
        let sun_now = elevation(s, now);
        let awake = sun_now >= sleep;
        let woke = risen_at(s.latitude, s.longitude, now, sleep);
        let cond = |kind: AlertKind, subject: &str, message: String| Condition {
            key: AlertKey {
                kind,
                station: s.id.clone(),
                subject: subject.to_owned(),
            },
            county: s.county.clone(),
            message,
        };
        // A silence that began as the sun went down (or with a good-night state) is sleep, and
        // only counts from the moment the sun is back up; any other silence counts at once.
        let silence_start = |last: Option<&LastReading>| -> Option<DateTime<Utc>> {
            let (at, went_to_sleep) = match last {
                Some(l) => (
                    l.at,
                    l.state == Some(DeviceState::StandbyNight) || elevation(s, l.at) < sleep,
                ),
                None => (started, elevation(s, started) < sleep),
            };
            // Silence from before Sunshare was running is not the device's fault: the collectors
            // get `offline_after` to reach it first (no alert storm after a restart).
            let at = at.max(started);
            if went_to_sleep {
                if awake {
                    Some(at.max(woke))
                } else {
                    None
                }
            } else {
                Some(at)
            }
        };

        let mut gateways: BTreeMap<&str, Vec<&DeviceInput>> = BTreeMap::new();
        for d in &s.devices {
            gateways.entry(d.gateway.as_str()).or_default().push(d);
        }
        let mut offline_gateways: HashSet<&str> = HashSet::new();
        for (gw, devs) in &gateways {
            let newest = devs
                .iter()
                .filter_map(|d| d.last.as_ref())
                .max_by_key(|l| l.at);
            let Some(start) = silence_start(newest) else {
                continue;
            };
            if now - start > offline_after {
                offline_gateways.insert(gw);
                not_comparable.insert(&s.id);
                let last = newest.map_or_else(
                    || "never heard from".to_owned(),
                    |l| format!("last contact {}", fmt_time(l.at, s.timezone)),
                );
                eval.active.push(cond(
                    AlertKind::Offline,
                    gw,
                    format!(
                        "gateway {gw} ({} device{}) silent for {} min; {last}",
                        devs.len(),
                        if devs.len() == 1 { "" } else { "s" },
                        (now - start).num_minutes()
                    ),
                ));
            }
        }

        // Communication lost: one device silent while its gateway still answers.
        for (gw, devs) in &gateways {
            if offline_gateways.contains(gw) || devs.len() < 2 {
                continue;
            }
            let live = devs
                .iter()
                .any(|d| d.last.as_ref().is_some_and(|l| now - l.at <= comm_after));
            for d in devs {
                let key_subject = d.id.as_str();
                if !live {
                    eval.held
                        .insert(cond(AlertKind::CommLost, key_subject, String::new()).key);
                    continue;
                }
                let Some(start) = silence_start(d.last.as_ref()) else {
                    continue;
                };
                if now - start > comm_after {
                    eval.active.push(cond(
                        AlertKind::CommLost,
                        key_subject,
                        format!(
                            "device {} silent for {} min behind live gateway {gw}",
                            d.id,
                            (now - start).num_minutes()
                        ),
                    ));
                }
            }
        }

        // Grid outage: every freshly reporting device says the grid is gone.
        let fresh: Vec<(&DeviceInput, &LastReading)> = s
            .devices
            .iter()
            .filter(|d| !offline_gateways.contains(d.gateway.as_str()))
            .filter_map(|d| d.last.as_ref().map(|l| (d, l)))
            .filter(|(_, l)| now - l.at <= offline_after)
            .collect();
        let grid_out = !fresh.is_empty()
            && fresh
                .iter()
                .all(|(_, l)| l.alarms.iter().any(|a| a.grid_loss));
        if fresh.is_empty() {
            // Nobody to ask (asleep or offline): an outage is neither confirmed nor over.
            eval.held
                .insert(cond(AlertKind::GridOutage, "", String::new()).key);
        }
        if grid_out {
            not_comparable.insert(&s.id);
            eval.active.push(cond(
                AlertKind::GridOutage,
                "",
                format!(
                    "all {} reporting device{} report grid loss: {}",
                    fresh.len(),
                    if fresh.len() == 1 { "" } else { "s" },
                    alarm_text(&fresh[0].1.alarms)
                ),
            ));
        }

        for d in &s.devices {
            let subject = d.id.as_str();
            let Some(l) = d.last.as_ref() else {
                state.frozen.remove(&d.id);
                continue;
            };
            let is_fresh = now - l.at <= offline_after;
            // Fault: a fault state or alarm codes (grid loss is the grid's fault when station-wide).
            let faulted = l.state == Some(DeviceState::Fault) || !l.alarms.is_empty();
            // Many inverters only evaluate alarms while producing: a fault that vanishes at dusk
            // has not been repaired, so it is held until the device is awake again.
            if !is_fresh || offline_gateways.contains(d.gateway.as_str()) || (!awake && !faulted) {
                eval.held
                    .insert(cond(AlertKind::Fault, subject, String::new()).key);
            } else if !grid_out && faulted {
                let text = if l.alarms.is_empty() {
                    "fault state without an alarm code".to_owned()
                } else {
                    alarm_text(&l.alarms)
                };
                eval.active.push(cond(
                    AlertKind::Fault,
                    subject,
                    format!("device {}: {text}", d.id),
                ));
            }

            // Stale: new samples, same values, in daylight.
            let frozen = state.frozen.entry(d.id.clone()).or_insert(Frozen {
                fingerprint: l.fingerprint,
                since: l.at,
                last_at: l.at,
            });
            if frozen.fingerprint != l.fingerprint {
                *frozen = Frozen {
                    fingerprint: l.fingerprint,
                    since: l.at,
                    last_at: l.at,
                };
            } else {
                frozen.last_at = frozen.last_at.max(l.at);
            }
            let frozen_for = frozen.last_at - frozen.since.max(woke);
            if !is_fresh || !awake {
                eval.held
                    .insert(cond(AlertKind::Stale, subject, String::new()).key);
            } else if frozen_for >= stale_after && l.state != Some(DeviceState::StandbyNight) {
                eval.active.push(cond(
                    AlertKind::Stale,
                    subject,
                    format!(
                        "device {} reports identical values since {} ({} min)",
                        d.id,
                        fmt_time(frozen.since, s.timezone),
                        frozen_for.num_minutes()
                    ),
                ));
            }
        }
    }

    // Underperforming: today's specific yield against the median of the county's other stations.
    let u = &cfg.underperforming;
    let mut by_county: BTreeMap<&CountyId, Vec<(&StationInput, f64)>> = BTreeMap::new();
    for s in &snapshot.stations {
        let key = AlertKey {
            kind: AlertKind::Underperforming,
            station: s.id.clone(),
            subject: String::new(),
        };
        let judged = daylight_so_far(s, now, sleep) >= dur(u.min_daylight)
            && !not_comparable.contains(&s.id)
            && !cfg.in_maintenance(&s.id, now)
            && s.capacity_kwp > 0.0;
        match s.day_energy_wh {
            Some(wh) if judged => by_county
                .entry(&s.county)
                .or_default()
                .push((s, wh / 1000.0 / s.capacity_kwp)),
            _ => {
                eval.held.insert(key);
            }
        }
    }
    for peers in by_county.values() {
        for (s, y) in peers {
            let key = AlertKey {
                kind: AlertKind::Underperforming,
                station: s.id.clone(),
                subject: String::new(),
            };
            let mut others: Vec<f64> = peers
                .iter()
                .filter(|(o, _)| o.id != s.id)
                .map(|(_, y)| *y)
                .collect();
            let n = others.len();
            match median(&mut others) {
                Some(m) if n >= u.min_peers && m >= u.min_median_yield => {
                    if *y < u.share * m {
                        eval.active.push(Condition {
                            key,
                            county: s.county.clone(),
                            message: format!(
                                "specific yield today {y:.2} kWh/kWp is {:.0}% of the county median {m:.2} ({n} peers)",
                                100.0 * y / m
                            ),
                        });
                    }
                }
                _ => {
                    eval.held.insert(key);
                }
            }
        }
    }
    eval
}

/// How long after start-up a condition of `kind` needs before its absence means anything.
fn warm_up(kind: AlertKind, cfg: &AlertsConfig) -> Duration {
    match kind {
        AlertKind::Offline => dur(cfg.offline_after),
        AlertKind::CommLost => dur(cfg.comm_lost_after),
        AlertKind::Stale => dur(cfg.stale_after),
        AlertKind::GridOutage | AlertKind::Fault | AlertKind::Underperforming => Duration::zero(),
    }
}

fn grace(kind: AlertKind, cfg: &AlertsConfig) -> Duration {
    match kind {
        // These conditions already include their silence or freeze time.
        AlertKind::Offline | AlertKind::CommLost | AlertKind::Stale => Duration::zero(),
        AlertKind::Underperforming => Duration::zero(),
        AlertKind::Fault => dur(cfg.fault_after),
        AlertKind::GridOutage => dur(cfg.grid_outage_after),
    }
}

fn lifecycle(
    state: &mut RulesState,
    active: &[Condition],
    held: &HashSet<AlertKey>,
    maintenance: &HashSet<&StationId>,
    now: DateTime<Utc>,
    cfg: &AlertsConfig,
) -> Vec<Event> {
    let mut events = Vec::new();
    let flap_window = dur(cfg.flap_window);
    let mut seen: HashSet<&AlertKey> = HashSet::new();
    for c in active {
        if !seen.insert(&c.key) || maintenance.contains(&c.key.station) {
            continue;
        }
        let track = state.tracks.entry(c.key.clone()).or_default();
        if let Some(open) = track.open.as_mut() {
            open.clear_since = None;
            open.message.clone_from(&c.message);
            continue;
        }
        let since = *track.pending_since.get_or_insert(now);
        if now - since < grace(c.key.kind, cfg) {
            continue;
        }
        while track.opens.front().is_some_and(|t| now - *t > flap_window) {
            track.opens.pop_front();
        }
        track.opens.push_back(now);
        let flapping = track.opens.len() > cfg.flap_max as usize;
        let severity = c.key.kind.severity();
        track.pending_since = None;
        track.open = Some(OpenTrack {
            since: now,
            severity,
            county: c.county.clone(),
            message: c.message.clone(),
            flapping,
            clear_since: None,
        });
        events.push(Event {
            kind: EventKind::Opened,
            key: c.key.clone(),
            severity,
            county: c.county.clone(),
            message: c.message.clone(),
            since,
            at: now,
            flapping,
            notify: !flapping,
        });
    }
    let active_keys: HashSet<&AlertKey> = active.iter().map(|c| &c.key).collect();
    let mut forget = Vec::new();
    for (key, track) in state.tracks.iter_mut() {
        if active_keys.contains(key) || held.contains(key) || maintenance.contains(&key.station) {
            continue;
        }
        track.pending_since = None;
        let Some(open) = track.open.as_mut() else {
            if track.opens.back().is_none_or(|t| now - *t > flap_window) {
                forget.push(key.clone());
            }
            continue;
        };
        let clear_since = *open.clear_since.get_or_insert(now);
        let needed = if open.flapping {
            flap_window
        } else {
            dur(cfg.clear_after)
        };
        if now - clear_since >= needed {
            events.push(Event {
                kind: EventKind::Resolved,
                key: key.clone(),
                severity: open.severity,
                county: open.county.clone(),
                message: open.message.clone(),
                since: open.since,
                at: now,
                flapping: open.flapping,
                notify: !open.flapping,
            });
            track.open = None;
        }
    }
    for key in forget {
        state.tracks.remove(&key);
    }
    events
}
