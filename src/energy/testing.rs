//! A small deployment for the energy tests: one county, three village stations of 10 kWp with one
//! 10 kW inverter each, in Taiyuan (Shanxi).

use crate::config::Deployment;
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
