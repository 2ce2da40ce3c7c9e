//! Scripted days against the pure rules, driven by a controlled clock (5-minute steps).

use super::rules::*;
use crate::config::alerts::{AlertsConfig, MaintenanceWindow};
use crate::domain::{Alarm, CountyId, DeviceId, DeviceState, StationId};
use crate::solar;
use chrono::{DateTime, Duration, TimeZone, Utc};

const LAT: f64 = 37.87; // Taiyuan, Shanxi
const LON: f64 = 112.55;

/// Beijing time to UTC.
fn bj(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid local time")
        .with_timezone(&Utc)
}

/// How one simulated device behaves at an instant.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    Normal,
    /// Does not answer.
    Silent,
    /// Answers, reporting loss of grid.
    GridLoss,
    /// Answers with a fault state and an alarm code.
    Fault,
    /// Answers with the same values every time.
    Frozen,
}

struct SimStation {
    id: &'static str,
    county: &'static str,
    health: f64,
    devices: Vec<SimDevice>,
    energy_wh: f64,
    day: chrono::NaiveDate,
}

struct SimDevice {
    id: String,
    gateway: String,
    last: Option<LastReading>,
    script: Box<dyn Fn(DateTime<Utc>) -> Behaviour>,
}

struct Fleet {
    stations: Vec<SimStation>,
    state: RulesState,
    cfg: AlertsConfig,
    events: Vec<Event>,
}

fn normal() -> Box<dyn Fn(DateTime<Utc>) -> Behaviour> {
    Box::new(|_| Behaviour::Normal)
}

impl Fleet {
    fn new(cfg: AlertsConfig) -> Self {
        Self {
            stations: Vec::new(),
            state: RulesState::new(),
            cfg,
            events: Vec::new(),
        }
    }

    /// A 100 kWp station with two 50 kW inverters behind one gateway.
    fn station(&mut self, id: &'static str, county: &'static str, health: f64) -> &mut SimStation {
        self.stations.push(SimStation {
            id,
            county,
            health,
            devices: (1..=2)
                .map(|n| SimDevice {
                    id: format!("{id}-INV{n}"),
                    gateway: format!("gw-{id}"),
                    last: None,
                    script: normal(),
                })
                .collect(),
            energy_wh: 0.0,
            day: chrono::NaiveDate::MIN,
        });
        self.stations.last_mut().expect("just pushed")
    }

    fn script(
        &mut self,
        station: &str,
        device: usize,
        f: impl Fn(DateTime<Utc>) -> Behaviour + 'static,
    ) {
        let s = self
            .stations
            .iter_mut()
            .find(|s| s.id == station)
            .expect("station");
        s.devices[device].script = Box::new(f);
    }

    fn script_station(
        &mut self,
        station: &str,
        f: impl Fn(DateTime<Utc>) -> Behaviour + Clone + 'static,
    ) {
        self.script(station, 0, f.clone());
        self.script(station, 1, f);
    }

    /// Advances the simulated plants to `t` and evaluates the rules there.
    fn step(&mut self, t: DateTime<Utc>) {
        let elev = solar::position(LAT, LON, t).elevation_deg;
        let mut snapshot = Snapshot::default();
        for s in &mut self.stations {
            let local_day = t.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
            if local_day != s.day {
                s.day = local_day;
                s.energy_wh = 0.0;
            }
            let mut devices = Vec::new();
            for d in &mut s.devices {
                let b = (d.script)(t);
                // Inverters are awake (and answer) from half a degree of sun; silent at night.
                let awake = elev >= 0.5;
                let power = if awake {
                    50_000.0 * s.health * (elev.to_radians().sin()).max(0.0) * 0.9
                } else {
                    0.0
                };
                match b {
                    Behaviour::Silent => {}
                    _ if !awake => {}
                    Behaviour::Normal => {
                        s.energy_wh += power * 5.0 / 60.0;
                        d.last = Some(LastReading {
                            at: t,
                            power_w: Some(power),
                            state: Some(DeviceState::Producing),
                            alarms: vec![],
                            fingerprint: power.to_bits(),
                        });
                    }
                    Behaviour::Frozen => {
                        let fp = d.last.as_ref().map_or(1, |l| l.fingerprint);
                        d.last = Some(LastReading {
                            at: t,
                            power_w: Some(1.0),
                            state: Some(DeviceState::Producing),
                            alarms: vec![],
                            fingerprint: fp,
                        });
                    }
                    Behaviour::GridLoss | Behaviour::Fault => {
                        let grid = b == Behaviour::GridLoss;
                        d.last = Some(LastReading {
                            at: t,
                            power_w: Some(0.0),
                            state: Some(DeviceState::Fault),
                            alarms: vec![Alarm {
                                code: if grid {
                                    "test.grid_lost"
                                } else {
                                    "test.insulation"
                                }
                                .into(),
                                text_en: if grid {
                                    "Grid lost"
                                } else {
                                    "Low insulation resistance"
                                }
                                .into(),
                                text_zh: if grid {
                                    "电网掉电"
                                } else {
                                    "绝缘阻抗低"
                                }
                                .into(),
                                grid_loss: grid,
                            }],
                            fingerprint: t.timestamp() as u64,
                        });
                    }
                }
                devices.push(DeviceInput {
                    id: DeviceId::new(d.id.clone()),
                    gateway: d.gateway.clone(),
                    last: d.last.clone(),
                });
            }
            snapshot.stations.push(StationInput {
                id: StationId::new(s.id),
                county: CountyId::new(s.county),
                latitude: LAT,
                longitude: LON,
                timezone: chrono_tz::Asia::Shanghai,
                capacity_kwp: 100.0,
                devices,
                day_energy_wh: Some(s.energy_wh),
            });
        }
        let eval = evaluate(&mut self.state, &snapshot, t, &self.cfg);
        self.events.extend(eval.events);
    }

    fn run(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) {
        let mut t = from;
        while t < to {
            self.step(t);
            t += Duration::minutes(5);
        }
    }

    fn summary(&self) -> Vec<(EventKind, AlertKind, String, String, DateTime<Utc>)> {
        self.events
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.key.kind,
                    e.key.station.to_string(),
                    e.key.subject.clone(),
                    e.at,
                )
            })
            .collect()
    }
}

fn between(t: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    from <= t && t <= to
}

#[test]
fn stations_that_sleep_every_night_raise_nothing() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    for id in ["S1", "S2", "S3"] {
        fleet.station(id, "C1", 1.0);
    }
    // Three days and nights around the winter solstice and three around the summer solstice.
    fleet.run(bj(2026, 12, 20, 0, 0), bj(2026, 12, 23, 0, 0));
    fleet.run(bj(2027, 6, 20, 0, 0), bj(2027, 6, 23, 0, 0));
    assert_eq!(fleet.summary(), vec![]);
}

#[test]
fn a_logger_dropping_at_noon_raises_offline_after_grace_and_resolves_on_return() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    for id in ["S1", "S2", "S3"] {
        fleet.station(id, "C1", 1.0);
    }
    let drop = bj(2026, 6, 1, 12, 0);
    let back = bj(2026, 6, 1, 14, 0);
    fleet.script_station("S1", move |t| {
        if t >= drop && t < back {
            Behaviour::Silent
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 2, 12, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[0].0, EventKind::Opened);
    assert_eq!(ev[0].1, AlertKind::Offline);
    assert_eq!((ev[0].2.as_str(), ev[0].3.as_str()), ("S1", "gw-S1"));
    // Last contact 11:55; 15 minutes of silence is exceeded at the 12:15 tick.
    assert_eq!(ev[0].4, bj(2026, 6, 1, 12, 15));
    assert_eq!(fleet.events[0].severity, Severity::Critical);
    assert!(fleet.events[0].notify);
    assert_eq!(ev[1].0, EventKind::Resolved);
    assert_eq!(ev[1].1, AlertKind::Offline);
    // Back at 14:00, clear for 5 minutes.
    assert_eq!(ev[1].4, bj(2026, 6, 1, 14, 5));
}

#[test]
fn a_logger_dead_overnight_is_caught_in_the_morning_not_at_night() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    let dead_from = bj(2026, 6, 1, 22, 0);
    fleet.script_station("S1", move |t| {
        if t >= dead_from {
            Behaviour::Silent
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 2, 12, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].1, AlertKind::Offline);
    // The sun passes 3 degrees around 05:40 in Taiyuan in June; the alert follows 15 minutes later.
    let woke = risen_at(LAT, LON, bj(2026, 6, 2, 9, 0), 3.0);
    assert!(
        between(woke, bj(2026, 6, 2, 5, 20), bj(2026, 6, 2, 6, 0)),
        "{woke}"
    );
    assert!(
        between(
            ev[0].4,
            woke + Duration::minutes(15),
            woke + Duration::minutes(20)
        ),
        "{} vs woke {woke}",
        ev[0].4
    );
}

#[test]
fn a_logger_that_drops_at_noon_stays_offline_through_the_night() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    let drop = bj(2026, 6, 1, 12, 0);
    fleet.script_station("S1", move |t| {
        if t >= drop {
            Behaviour::Silent
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 6, 0), bj(2026, 6, 2, 12, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].0, ev[0].1), (EventKind::Opened, AlertKind::Offline));
}

#[test]
fn a_station_at_40_percent_of_its_neighbours_is_underperforming() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    for id in ["S1", "S2", "S3"] {
        fleet.station(id, "C1", 1.0);
    }
    fleet.station("S4", "C1", 0.4);
    // A county elsewhere with only the one station cannot be compared: nothing there.
    fleet.station("X1", "C2", 0.3);
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 2, 0, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].0, ev[0].1, ev[0].2.as_str()),
        (EventKind::Opened, AlertKind::Underperforming, "S4")
    );
    // Judged only after three hours of daylight (sun above 3 degrees from about 05:40).
    assert!(
        between(ev[0].4, bj(2026, 6, 1, 8, 30), bj(2026, 6, 1, 9, 0)),
        "{}",
        ev[0].4
    );
    assert!(
        fleet.events[0].message.contains("40%"),
        "{}",
        fleet.events[0].message
    );
    assert_eq!(fleet.events[0].severity, Severity::Minor);
}

#[test]
fn a_healthy_station_among_healthy_ones_is_not_underperforming_at_dawn() {
    // Early in the morning yields are tiny and noisy; a station a few minutes late must not alert.
    let mut fleet = Fleet::new(AlertsConfig::default());
    for id in ["S1", "S2", "S3"] {
        fleet.station(id, "C1", 1.0);
    }
    fleet.station("S4", "C1", 0.9);
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 3, 0, 0));
    assert_eq!(fleet.summary(), vec![]);
}

#[test]
fn a_county_wide_grid_outage_opens_one_grid_alert_per_station_and_no_faults() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    let from = bj(2026, 6, 1, 10, 0);
    let to = bj(2026, 6, 1, 11, 0);
    for id in ["S1", "S2", "S3", "S4", "S5"] {
        fleet.station(id, "C1", 1.0);
        fleet.script_station(id, move |t| {
            if t >= from && t < to {
                Behaviour::GridLoss
            } else {
                Behaviour::Normal
            }
        });
    }
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 2, 0, 0));
    let opened: Vec<_> = fleet
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Opened)
        .collect();
    assert_eq!(opened.len(), 5, "{:?}", fleet.summary());
    for e in &opened {
        assert_eq!(e.key.kind, AlertKind::GridOutage);
        // Grace of 5 minutes after the first report at 10:00; all in the same evaluation.
        assert_eq!(e.at, bj(2026, 6, 1, 10, 5));
        assert!(e.message.contains("Grid lost"), "{}", e.message);
    }
    let resolved: Vec<_> = fleet
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Resolved)
        .collect();
    assert_eq!(resolved.len(), 5);
    assert!(resolved.iter().all(|e| e.at == bj(2026, 6, 1, 11, 5)));
}

#[test]
fn one_silent_device_behind_a_live_gateway_is_communication_lost() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    let from = bj(2026, 6, 1, 10, 0);
    let to = bj(2026, 6, 1, 12, 0);
    fleet.script("S1", 1, move |t| {
        if t >= from && t < to {
            Behaviour::Silent
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 2, 8, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        (ev[0].0, ev[0].1, ev[0].3.as_str(), ev[0].4),
        (
            EventKind::Opened,
            AlertKind::CommLost,
            "S1-INV2",
            bj(2026, 6, 1, 10, 15)
        )
    );
    assert_eq!(
        (ev[1].0, ev[1].1, ev[1].4),
        (
            EventKind::Resolved,
            AlertKind::CommLost,
            bj(2026, 6, 1, 12, 5)
        )
    );
}

#[test]
fn a_fault_needs_its_grace_time_and_carries_the_alarm_text() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    // A one-tick blip at 09:00 stays below the 2-minute grace; the 10:00-10:30 fault does not.
    fleet.script("S1", 0, move |t| {
        if t == bj(2026, 6, 1, 9, 0) || (t >= bj(2026, 6, 1, 10, 0) && t < bj(2026, 6, 1, 10, 30)) {
            Behaviour::Fault
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 2, 0, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        (ev[0].0, ev[0].1, ev[0].3.as_str(), ev[0].4),
        (
            EventKind::Opened,
            AlertKind::Fault,
            "S1-INV1",
            bj(2026, 6, 1, 10, 5)
        )
    );
    assert!(fleet.events[0]
        .message
        .contains("test.insulation Low insulation resistance / 绝缘阻抗低"));
    assert_eq!(fleet.events[0].since, bj(2026, 6, 1, 10, 0));
    assert_eq!(
        (ev[1].0, ev[1].4),
        (EventKind::Resolved, bj(2026, 6, 1, 10, 35))
    );
}

#[test]
fn frozen_values_in_daylight_are_stale() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    let from = bj(2026, 6, 1, 10, 0);
    fleet.script("S1", 0, move |t| {
        if t >= from {
            Behaviour::Frozen
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 1, 12, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].1, ev[0].3.as_str()), (AlertKind::Stale, "S1-INV1"));
    // The values froze with the 09:55 sample; 45 minutes later is 10:40.
    assert_eq!(ev[0].4, bj(2026, 6, 1, 10, 40));
}

#[test]
fn nothing_opens_or_notifies_inside_a_maintenance_window() {
    let mut cfg = AlertsConfig::default();
    cfg.maintenance.push(MaintenanceWindow {
        station: StationId::new("S1"),
        from: bj(2026, 6, 1, 9, 0),
        to: bj(2026, 6, 1, 13, 0),
        note: "replacing the logger".into(),
    });
    let mut fleet = Fleet::new(cfg);
    fleet.station("S1", "C1", 1.0);
    let (a, b) = (bj(2026, 6, 1, 10, 0), bj(2026, 6, 1, 12, 0));
    fleet.script_station("S1", move |t| {
        if t >= a && t < b {
            Behaviour::Silent
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 2, 0, 0));
    assert_eq!(fleet.summary(), vec![]);
}

#[test]
fn a_flapping_logger_stops_paging_and_resolves_only_when_stable() {
    let cfg = AlertsConfig {
        offline_after: std::time::Duration::from_secs(5 * 60),
        clear_after: std::time::Duration::from_secs(0),
        ..AlertsConfig::default()
    };
    let mut fleet = Fleet::new(cfg);
    fleet.station("S1", "C1", 1.0);
    // Silent 10 minutes, answering 5 minutes, from 09:00 to 13:00, then stable.
    fleet.script_station("S1", move |t| {
        let from = bj(2026, 6, 1, 9, 0);
        let to = bj(2026, 6, 1, 13, 0);
        if t >= from && t < to && (t - from).num_minutes() % 15 < 10 {
            Behaviour::Silent
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 1, 16, 0));
    let opened: Vec<_> = fleet
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Opened)
        .collect();
    let notified = fleet.events.iter().filter(|e| e.notify).count();
    assert!(opened.len() >= 4, "{:?}", fleet.summary());
    assert!(opened[3].flapping && !opened[3].notify);
    assert!(notified < fleet.events.len());
    // The flapping alert resolves only a whole flap window (1 h) after the last silence (12:55).
    let last = fleet.events.last().expect("events");
    assert_eq!(last.kind, EventKind::Resolved);
    assert!(last.at >= bj(2026, 6, 1, 13, 50), "{}", last.at);
}

#[test]
fn restored_alerts_resolve_instead_of_opening_twice() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    fleet.state.restore(
        AlertKey {
            kind: AlertKind::Offline,
            station: StationId::new("S1"),
            subject: "gw-S1".into(),
        },
        CountyId::new("C1"),
        Severity::Critical,
        "from before the restart".into(),
        bj(2026, 6, 1, 8, 0),
        false,
    );
    fleet.run(bj(2026, 6, 1, 10, 0), bj(2026, 6, 1, 11, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].0, ev[0].1),
        (EventKind::Resolved, AlertKind::Offline)
    );
}

#[test]
fn an_alarm_shown_only_while_producing_is_one_alert_not_one_per_day() {
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    // The device raises its alarm whenever it produces, for three days; repaired on day four.
    let repaired = bj(2026, 6, 4, 0, 0);
    fleet.script("S1", 0, move |t| {
        if t < repaired {
            Behaviour::Fault
        } else {
            Behaviour::Normal
        }
    });
    fleet.run(bj(2026, 6, 1, 0, 0), bj(2026, 6, 4, 12, 0));
    let ev = fleet.summary();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!((ev[0].0, ev[0].1), (EventKind::Opened, AlertKind::Fault));
    // Resolved on the morning of day four, once the awake device shows no alarm.
    assert_eq!((ev[1].0, ev[1].1), (EventKind::Resolved, AlertKind::Fault));
    assert!(
        between(ev[1].4, bj(2026, 6, 4, 5, 0), bj(2026, 6, 4, 7, 0)),
        "{}",
        ev[1].4
    );
}

#[test]
fn a_restart_after_downtime_gives_collectors_time_before_blaming_gateways() {
    // Sunshare was down overnight and restarts at 10:00 with every last contact from yesterday.
    let mut fleet = Fleet::new(AlertsConfig::default());
    fleet.station("S1", "C1", 1.0);
    fleet.station("S2", "C1", 1.0);
    fleet.run(bj(2026, 6, 1, 10, 0), bj(2026, 6, 1, 11, 0));
    let mut fresh = Fleet::new(AlertsConfig::default());
    fresh.stations = std::mem::take(&mut fleet.stations);
    // S2 never answers again; S1 does.
    fresh.script_station("S2", |_| Behaviour::Silent);
    fresh.run(bj(2026, 6, 2, 10, 0), bj(2026, 6, 2, 11, 0));
    let ev = fresh.summary();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].1, ev[0].2.as_str()), (AlertKind::Offline, "S2"));
    // 15 minutes after the restart, not at once.
    assert_eq!(ev[0].4, bj(2026, 6, 2, 10, 20));
}
