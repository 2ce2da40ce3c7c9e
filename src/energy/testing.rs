//! A small deployment for the energy tests: one county, three village stations of 10 kWp with one
//! 10 kW inverter each, in Taiyuan (Shanxi).

use crate::config::Deployment;
use crate::domain::{DeviceId, Metric, Readings, Sample};
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use std::collections::HashSet;

pub const TOML: &str = r#"
[collect]
poll_interval = "5m"

[[counties]]
id = "C1"
name = "阳曲县"
province = "shanxi"

[[townships]]
id = "T1"
name = "东黄水镇"
county = "C1"

[[villages]]
code = "V1"
name = "东村"
township = "T1"

[[tariffs]]
id = "zone3-2017"
price = 0.85
province = "shanxi"

[[stations]]
id = "S1"
name = "东村光伏电站"
kind = "village"
county = "C1"
village = "V1"
capacity_kwp = 10.0
latitude = 37.87
longitude = 112.55
commissioned = "2019-06-30"
tariff = "zone3-2017"

[[stations]]
id = "S2"
name = "西村光伏电站"
kind = "village"
county = "C1"
village = "V1"
capacity_kwp = 10.0
latitude = 37.87
longitude = 112.55
commissioned = "2019-06-30"
tariff = "zone3-2017"

[[stations]]
id = "S3"
name = "南村光伏电站"
kind = "village"
county = "C1"
village = "V1"
capacity_kwp = 10.0
latitude = 37.87
longitude = 112.55
commissioned = "2019-06-30"
tariff = "zone3-2017"

[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "sim"
rated_power_w = 10000.0
transport = { type = "modbus_tcp", address = "127.0.0.1:1502", unit = 1 }

[[devices]]
id = "S2-INV1"
station = "S2"
kind = "inverter"
model = "sim"
rated_power_w = 10000.0
transport = { type = "modbus_tcp", address = "127.0.0.1:1502", unit = 2 }

[[devices]]
id = "S3-INV1"
station = "S3"
kind = "inverter"
model = "sim"
rated_power_w = 10000.0
transport = { type = "modbus_tcp", address = "127.0.0.1:1502", unit = 3 }
"#;

pub fn deployment() -> Deployment {
    let models: HashSet<String> = ["sim".to_owned()].into_iter().collect();
    match Deployment::from_str_with_env("energy-test.toml", TOML, &[], &models) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

pub fn sh(m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(2026, m, d, h, mi, 0)
        .single()
        .expect("valid")
        .with_timezone(&Utc)
}

/// Every 5 minutes from 1 to 3 March (local): the counter climbs 1,000 Wh an hour from 06:00 to
/// 18:00 and is flat at night. `skip` drops readings.
pub fn history(device: &str, skip: impl Fn(DateTime<Utc>) -> bool) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut at = sh(3, 1, 0, 0);
    let start = at;
    while at < sh(3, 4, 0, 0) {
        let day = (at - start).num_days();
        let local = at.with_timezone(&Shanghai);
        let minutes = (local.time() - chrono::NaiveTime::MIN).num_minutes();
        let today = (minutes - 360).clamp(0, 720) as f64 * 1000.0 / 60.0;
        let mut readings = Readings::default();
        readings.set(
            Metric::EnergyLifetimeWh,
            500_000.0 + day as f64 * 12_000.0 + today,
        );
        readings.set(
            Metric::AcPowerW,
            if today > 0.0 && today < 12_000.0 {
                1000.0
            } else {
                0.0
            },
        );
        if !skip(at) {
            out.push(Sample {
                device: DeviceId::new(device),
                at,
                readings,
            });
        }
        at += Duration::minutes(5);
    }
    out
}
