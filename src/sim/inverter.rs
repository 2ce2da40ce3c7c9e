//! One simulated inverter: a register map fed by the deterministic [`PlantModel`], plus a fault
//! script. Produces the register image a real device of that family would hold at an instant.
//!
//! Physics lives in `sim::weather`; this module only dresses it in registers. Never used by
//! production paths.

use super::weather::{PlantModel, STEP_S};
use crate::domain::{Alarm, DeviceState, Metric, Readings};
use crate::registers::{Decoded, RegisterImage, RegisterMap};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::Arc;
use std::time::Duration;

/// What a unit does when its sun is down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NightMode {
    /// Keeps answering with a standby state and zero power (Huawei, SunSpec).
    #[default]
    Standby,
    /// Stops answering requests (Solis asleep); the gateway still accepts connections.
    Silent,
    /// The inverter and its dongle switch off: no TCP at all while every such unit sleeps (Sungrow).
    NoTcp,
}

/// Faults on a script. Counters are per unit and deterministic: `busy_every = 3` answers every
/// third request with exception 0x06.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultScript {
    /// Added before every answer.
    pub latency: Duration,
    /// Every n-th request answers 0x06 (server busy). 0 = never.
    pub busy_every: u32,
    /// Every n-th request answers 0x04 (server device failure). 0 = never.
    pub failure_every: u32,
    /// Every n-th request answers 0x02 (illegal data address). 0 = never.
    pub illegal_address_every: u32,
    /// Every n-th request closes the connection instead of answering. 0 = never.
    pub drop_every: u32,
    /// Never answers at all (a dead unit behind a live gateway).
    pub silent: bool,
    pub night: NightMode,
    /// An alarm shown while producing (e.g. `huawei.alarm2.b2`), for alert demos.
    pub alarm: Option<String>,
}

/// What the gateway should do with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Words(Vec<u16>),
    Exception(u8),
    /// Say nothing (the client times out).
    Silence,
    /// Close the connection.
    Drop,
}

/// A unit as the demo, tests and benchmarks declare it.
#[derive(Clone, Debug)]
pub struct SimUnit {
    pub unit: u8,
    pub map: Arc<RegisterMap>,
    pub plant: PlantModel,
    pub serial: String,
    pub model_name: String,
    pub faults: FaultScript,
    /// Added to the wall clock: lets a test read a noon plant at any hour.
    pub time_shift: ChronoDuration,
}

/// A running simulated inverter: the unit plus its counters and caches.
#[derive(Debug)]
pub struct Inverter {
    pub spec: SimUnit,
    requests: u64,
    /// The plant re-anchored at a grid point at or before the current local midnight, so counters
    /// integrate from there rather than from the commissioning date on every read.
    anchored: PlantModel,
    anchor_at: DateTime<Utc>,
    /// (local midnight as epoch seconds, lifetime counter then).
    midnight: Option<(i64, f64)>,
    image: Option<(i64, RegisterImage)>,
}

/// China time: the inverters' "today" counters reset at local midnight.
const UTC_OFFSET_S: i64 = 8 * 3600;

impl Inverter {
    pub fn new(spec: SimUnit) -> Inverter {
        let anchored = spec.plant.clone();
        let anchor_at = spec.plant.counter_epoch;
        Inverter {
            spec,
            requests: 0,
            anchored,
            anchor_at,
            midnight: None,
            image: None,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.spec.time_shift
    }

    /// Moves the anchor forward to the last grid point before `at`, so a read integrates at most one
    /// step; remembers the counter at local midnight for the "today" value. Identical to
    /// integrating from the epoch: the anchors sit on the epoch's own 5-minute grid.
    fn reanchor(&mut self, at: DateTime<Utc>) {
        let epoch = self.spec.plant.counter_epoch;
        let local = at.timestamp() + UTC_OFFSET_S;
        let midnight_s = local - local.rem_euclid(86_400) - UTC_OFFSET_S;
        if self.midnight.map(|(m, _)| m) != Some(midnight_s) {
            let midnight = DateTime::from_timestamp(midnight_s, 0).unwrap_or(at);
            // The anchor never passes `at`, so it is still at or before this midnight's grid
            // point unless the clock went backwards (then integrate from the epoch again).
            if midnight < self.anchor_at {
                self.anchored = self.spec.plant.clone();
                self.anchor_at = epoch;
            }
            let value = self.anchored.lifetime_wh(midnight.max(epoch));
            self.midnight = Some((midnight_s, value));
        }
        if at <= epoch {
            return;
        }
        let steps = (at.timestamp() - epoch.timestamp()) / STEP_S;
        let target = epoch + ChronoDuration::seconds(steps * STEP_S);
        if target <= self.anchor_at {
            return;
        }
        let base = self.anchored.lifetime_wh(target);
        let mut plant = self.spec.plant.clone();
        plant.counter_epoch = target;
        plant.counter_base_wh = base;
        self.anchored = plant;
        self.anchor_at = target;
    }

    /// Whether the unit is asleep (no sun) at an instant.
    pub fn asleep(&mut self) -> bool {
        let at = self.now();
        self.spec.plant.ac_power_w(at) <= 0.0 && !self.sun_up(at)
    }

    fn sun_up(&self, at: DateTime<Utc>) -> bool {
        crate::solar::position(self.spec.plant.latitude, self.spec.plant.longitude, at)
            .elevation_deg
            > 0.0
    }

    /// The values the device reports at an instant.
    pub fn readings(&mut self, at: DateTime<Utc>) -> Decoded {
        self.reanchor(at);
        let p = &self.anchored;
        let ac = p.ac_power_w(at).round();
        let mut r = Readings::default();
        let producing = ac > 0.0;
        let dc = if producing { (ac / 0.975).round() } else { 0.0 };
        let load = ac / p.rated_ac_w.max(1.0);
        let wobble = ((at.timestamp() % 600) as f64 / 600.0 * std::f64::consts::TAU).sin();
        r.set(Metric::AcPowerW, ac);
        r.set(Metric::DcPowerW, dc);
        r.set(Metric::ReactivePowerVar, 0.0);
        r.set(Metric::PowerFactor, if producing { 0.999 } else { 0.0 });
        r.set(Metric::FrequencyHz, (50.0 + 0.02 * wobble).max(0.0));
        for ph in 1..=3 {
            r.set(
                Metric::PhaseVoltageV(ph),
                230.0 + f64::from(ph) * 0.4 + wobble,
            );
            r.set(
                Metric::PhaseCurrentA(ph),
                (ac / 3.0 / 230.0 * 100.0).round() / 100.0,
            );
        }
        for s in 1..=2u8 {
            let v = if producing { 600.0 + 10.0 * load } else { 0.0 };
            r.set(Metric::PvVoltageV(s), v);
            let a = if producing { dc / 2.0 / v } else { 0.0 };
            r.set(Metric::PvCurrentA(s), (a * 100.0).round() / 100.0);
        }
        r.set(Metric::TemperatureC, (25.0 + 20.0 * load).round());
        r.set(Metric::InsulationMohm, 2.0);
        r.set(Metric::EfficiencyPct, if producing { 97.5 } else { 0.0 });
        // Counters: whole Wh so every register scale (0.01 kWh, 0.1 kWh, kWh) reads consistently low.
        let lifetime = p.lifetime_wh(at);
        let today = lifetime - self.midnight.map_or(lifetime, |(_, v)| v);
        r.set(Metric::EnergyLifetimeWh, lifetime.floor());
        r.set(Metric::EnergyTodayWh, today.max(0.0).floor());
        r.state = Some(if producing {
            if ac >= p.rated_ac_w {
                DeviceState::Derated
            } else {
                DeviceState::Producing
            }
        } else if p.in_outage(at) {
            DeviceState::Fault
        } else {
            DeviceState::StandbyNight
        });
        if producing {
            if let Some(code) = &self.spec.faults.alarm {
                r.alarms.push(Alarm {
                    code: code.clone(),
                    text_en: String::new(),
                    text_zh: String::new(),
                    grid_loss: false,
                });
            }
        }
        Decoded {
            readings: r,
            serial: Some(self.spec.serial.clone()),
            model: Some(self.spec.model_name.clone()),
        }
    }

    /// The register image now, recomputed at most once a second.
    fn image(&mut self) -> &RegisterImage {
        let at = self.now();
        let second = at.timestamp();
        if self.image.as_ref().map(|(s, _)| *s) != Some(second) {
            let decoded = self.readings(at);
            let img = self.spec.map.encode(&decoded);
            self.image = Some((second, img));
        }
        match &self.image {
            Some((_, img)) => img,
            None => unreachable_image(),
        }
    }

    /// Answers one read request (`function` 3 or 4), applying the fault script.
    pub fn answer(&mut self, function: u8, start: u16, count: u16) -> Answer {
        self.requests += 1;
        let n = self.requests;
        let f = &self.spec.faults;
        let every = |k: u32| k > 0 && n % u64::from(k) == 0;
        if f.silent {
            return Answer::Silence;
        }
        if every(f.drop_every) {
            return Answer::Drop;
        }
        if every(f.busy_every) {
            return Answer::Exception(0x06);
        }
        if every(f.failure_every) {
            return Answer::Exception(0x04);
        }
        if every(f.illegal_address_every) {
            return Answer::Exception(0x02);
        }
        if f.night == NightMode::Silent && self.asleep() {
            return Answer::Silence;
        }
        if function != self.spec.map.function().code() {
            return Answer::Exception(0x01);
        }
        if count == 0 || count > 125 || u32::from(start) + u32::from(count) > 65536 {
            return Answer::Exception(0x03);
        }
        let img = self.image();
        let words = (0..count)
            .map(|i| img.get(&start.wrapping_add(i)).copied().unwrap_or(0))
            .collect();
        Answer::Words(words)
    }

    /// Restarts the fault script's request count.
    pub fn reset_requests(&mut self) {
        self.requests = 0;
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }
}

/// An empty image for the impossible case where the cache was just filled and is gone.
fn unreachable_image() -> &'static RegisterImage {
    static EMPTY: std::sync::OnceLock<RegisterImage> = std::sync::OnceLock::new();
    EMPTY.get_or_init(RegisterImage::new)
}

/// A plant for a simulated unit: `rated_w` nameplate, 1.2 DC/AC ratio, counter started a day ago
/// (cheap to integrate), at the given coordinates.
pub fn quick_plant(name: &str, rated_w: f64, latitude: f64, longitude: f64) -> PlantModel {
    let now = Utc::now();
    PlantModel {
        latitude,
        longitude,
        dc_capacity_w: rated_w * 1.2,
        rated_ac_w: rated_w,
        station_seed: super::weather::seed_of(name),
        device_seed: super::weather::seed_of(&format!("{name}/inv")),
        counter_epoch: now - ChronoDuration::days(1),
        counter_base_wh: 1_000_000.0,
        health: 1.0,
        outages: Vec::new(),
    }
}

/// The wall-clock shift that puts a station at local solar noon now (for tests and benchmarks that
/// want production whatever the hour).
pub fn shift_to_noon(longitude: f64) -> ChronoDuration {
    let now = Utc::now();
    let solar_noon_utc_s = 12.0 * 3600.0 - longitude / 15.0 * 3600.0;
    let since_midnight = f64::from(now.timestamp().rem_euclid(86_400) as i32);
    ChronoDuration::seconds((solar_noon_utc_s - since_midnight) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::Catalog;

    fn unit(map: &str) -> SimUnit {
        let catalog = Catalog::builtin().expect("catalog");
        let lon = 112.55;
        SimUnit {
            unit: 1,
            map: catalog.get(map).expect("map"),
            plant: quick_plant("S1", 50_000.0, 37.87, lon),
            serial: "SIM0001".into(),
            model_name: "SIM-50K".into(),
            faults: FaultScript::default(),
            time_shift: shift_to_noon(lon),
        }
    }

    #[test]
    fn image_decodes_back_to_the_plant() {
        for name in [
            "huawei_sun2000",
            "sungrow_sg",
            "sunspec",
            "solis",
            "growatt",
        ] {
            let mut inv = Inverter::new(unit(name));
            let map = Arc::clone(&inv.spec.map);
            let blocks: Vec<(u16, Vec<u16>)> = map
                .plan()
                .iter()
                .map(|b| match inv.answer(b.function.code(), b.start, b.count) {
                    Answer::Words(w) => (b.start, w),
                    other => panic!("{name}: {other:?}"),
                })
                .collect();
            let r = map.decode(&blocks).expect("decode");
            let truth = inv.readings(inv.now()).readings;
            let want = truth.get(Metric::EnergyLifetimeWh).expect("lifetime");
            let got = r.get(Metric::EnergyLifetimeWh).expect("lifetime decoded");
            // kWh-resolution registers (Sungrow, Solis) lose up to 1 kWh.
            assert!(
                got <= want && want - got < 1000.0,
                "{name}: {got} vs {want}"
            );
            assert!(r.get(Metric::AcPowerW).is_some(), "{name}");
        }
    }

    #[test]
    fn anchored_counters_match_the_plant_model() {
        let u = unit("huawei_sun2000");
        let plant = u.plant.clone();
        let mut inv = Inverter::new(u);
        let at = inv.now();
        for later in [0, 7, 301, 3_600] {
            let t = at + ChronoDuration::seconds(later);
            let r = inv.readings(t).readings;
            let want = plant.lifetime_wh(t).floor();
            let got = r.get(Metric::EnergyLifetimeWh).expect("lifetime");
            assert!((got - want).abs() <= 1.0, "{got} vs {want}");
            let today = plant.today_wh(t, UTC_OFFSET_S).floor();
            let got = r.get(Metric::EnergyTodayWh).expect("today");
            assert!((got - today).abs() <= 1.0, "{got} vs {today}");
        }
    }

    #[test]
    fn faults_follow_the_script() {
        let mut u = unit("huawei_sun2000");
        u.faults.busy_every = 2;
        let mut inv = Inverter::new(u);
        assert!(matches!(inv.answer(3, 32080, 2), Answer::Words(_)));
        assert_eq!(inv.answer(3, 32080, 2), Answer::Exception(6));
        assert_eq!(inv.answer(4, 32080, 2), Answer::Exception(1));
        inv.spec.faults.silent = true;
        assert_eq!(inv.answer(3, 32080, 2), Answer::Silence);
    }
}
