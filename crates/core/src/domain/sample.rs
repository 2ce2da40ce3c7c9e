//! The normalised reading every inverter family and data logger maps into.
//!
//! A register map or a logger template translates vendor registers into these metrics; everything
//! downstream (ingest, store, energy, alerts, sinks) speaks only this vocabulary.

use super::ids::DeviceId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A normalised metric. The wire name carries the unit (`ac_power_w`), so a number never travels
/// without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    AcPowerW,
    ReactivePowerVar,
    PowerFactor,
    FrequencyHz,
    /// Phase voltage A, B, C (1..=3).
    PhaseVoltageV(u8),
    /// Phase current A, B, C (1..=3).
    PhaseCurrentA(u8),
    DcPowerW,
    /// MPPT tracker or PV string n (1-based) voltage.
    PvVoltageV(u8),
    /// MPPT tracker or PV string n (1-based) current.
    PvCurrentA(u8),
    TemperatureC,
    InsulationMohm,
    EfficiencyPct,
    /// Energy produced today by the device's own reckoning (resets at the device's midnight).
    EnergyTodayWh,
    /// The lifetime counter: the basis of all energy accounting.
    EnergyLifetimeWh,
    /// A meter's exported (on-grid) energy counter.
    EnergyExportWh,
}

impl Metric {
    /// The metrics that are not indexed, for listings and parsing.
    pub const SCALARS: [Metric; 11] = [
        Metric::AcPowerW,
        Metric::ReactivePowerVar,
        Metric::PowerFactor,
        Metric::FrequencyHz,
        Metric::DcPowerW,
        Metric::TemperatureC,
        Metric::InsulationMohm,
        Metric::EfficiencyPct,
        Metric::EnergyTodayWh,
        Metric::EnergyLifetimeWh,
        Metric::EnergyExportWh,
    ];

    pub fn name(self) -> String {
        self.to_string()
    }

    fn scalar_name(self) -> &'static str {
        match self {
            Metric::AcPowerW => "ac_power_w",
            Metric::ReactivePowerVar => "reactive_power_var",
            Metric::PowerFactor => "power_factor",
            Metric::FrequencyHz => "frequency_hz",
            Metric::DcPowerW => "dc_power_w",
            Metric::TemperatureC => "temperature_c",
            Metric::InsulationMohm => "insulation_mohm",
            Metric::EfficiencyPct => "efficiency_pct",
            Metric::EnergyTodayWh => "energy_today_wh",
            Metric::EnergyLifetimeWh => "energy_lifetime_wh",
            Metric::EnergyExportWh => "energy_export_wh",
            Metric::PhaseVoltageV(_)
            | Metric::PhaseCurrentA(_)
            | Metric::PvVoltageV(_)
            | Metric::PvCurrentA(_) => "indexed",
        }
    }

    /// Counters only grow; ingest checks them for resets and spikes.
    pub fn is_counter(self) -> bool {
        matches!(self, Metric::EnergyLifetimeWh | Metric::EnergyExportWh)
    }
}

fn phase_letter(n: u8) -> char {
    match n {
        1 => 'a',
        2 => 'b',
        3 => 'c',
        _ => '?',
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Metric::PhaseVoltageV(n) => write!(f, "phase{}_voltage_v", phase_letter(n)),
            Metric::PhaseCurrentA(n) => write!(f, "phase{}_current_a", phase_letter(n)),
            Metric::PvVoltageV(n) => write!(f, "pv{n}_voltage_v"),
            Metric::PvCurrentA(n) => write!(f, "pv{n}_current_a"),
            other => f.write_str(other.scalar_name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown metric '{0}' (expected a name such as ac_power_w, energy_lifetime_wh, pv1_voltage_v)"
)]
pub struct UnknownMetric(pub String);

impl FromStr for Metric {
    type Err = UnknownMetric;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(m) = Metric::SCALARS.iter().find(|m| m.scalar_name() == s) {
            return Ok(*m);
        }
        let unknown = || UnknownMetric(s.to_owned());
        let indexed = |rest: &str, suffix: &str| -> Option<u8> {
            rest.strip_suffix(suffix)?
                .parse::<u8>()
                .ok()
                .filter(|n| *n >= 1)
        };
        if let Some(rest) = s.strip_prefix("pv") {
            if let Some(n) = indexed(rest, "_voltage_v") {
                return Ok(Metric::PvVoltageV(n));
            }
            if let Some(n) = indexed(rest, "_current_a") {
                return Ok(Metric::PvCurrentA(n));
            }
        }
        if let Some(rest) = s.strip_prefix("phase") {
            let mut chars = rest.chars();
            let n = match chars.next() {
                Some('a') => 1,
                Some('b') => 2,
                Some('c') => 3,
                _ => return Err(unknown()),
            };
            match chars.as_str() {
                "_voltage_v" => return Ok(Metric::PhaseVoltageV(n)),
                "_current_a" => return Ok(Metric::PhaseCurrentA(n)),
                _ => {}
            }
        }
        Err(unknown())
    }
}

/// A metric name formatted on the stack (the longest, `pv255_current_a`, has 15 bytes).
struct NameBuf {
    bytes: [u8; 24],
    len: usize,
}

impl fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Without an intermediate String: scalar names are static, indexed ones built on the stack.
        match self {
            Metric::PhaseVoltageV(_)
            | Metric::PhaseCurrentA(_)
            | Metric::PvVoltageV(_)
            | Metric::PvCurrentA(_) => {
                let mut name = NameBuf {
                    bytes: [0; 24],
                    len: 0,
                };
                match fmt::Write::write_fmt(&mut name, format_args!("{self}")) {
                    Ok(()) => match std::str::from_utf8(&name.bytes[..name.len]) {
                        Ok(text) => s.serialize_str(text),
                        Err(_) => s.collect_str(self),
                    },
                    Err(_) => s.collect_str(self),
                }
            }
            other => s.serialize_str(other.scalar_name()),
        }
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the device says it is doing, normalised across families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Producing,
    /// Standby because there is no sun: normal every night, never an alarm.
    StandbyNight,
    Starting,
    Derated,
    Fault,
    Shutdown,
    #[default]
    Unknown,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Producing => "producing",
            DeviceState::StandbyNight => "standby_night",
            DeviceState::Starting => "starting",
            DeviceState::Derated => "derated",
            DeviceState::Fault => "fault",
            DeviceState::Shutdown => "shutdown",
            DeviceState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> DeviceState {
        match s {
            "producing" => DeviceState::Producing,
            "standby_night" => DeviceState::StandbyNight,
            "starting" => DeviceState::Starting,
            "derated" => DeviceState::Derated,
            "fault" => DeviceState::Fault,
            "shutdown" => DeviceState::Shutdown,
            _ => DeviceState::Unknown,
        }
    }
}

/// An active alarm as the register map explains it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Alarm {
    /// Stable code, e.g. `huawei.alarm2.b2` or `sungrow.fault.0x0012`.
    pub code: String,
    pub text_en: String,
    pub text_zh: String,
    /// Grid loss alarms let alerts tell a grid outage from a broken inverter.
    #[serde(default)]
    pub grid_loss: bool,
}

/// The decoded values of one read. Values are kept in metric order so equal readings compare equal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Readings {
    /// A value that is not finite (quarantined as `not_finite`) is kept as `"NaN"`, `"inf"` or
    /// `"-inf"`: JSON has no such numbers, and writing `null` would not read back.
    #[serde(with = "values_json")]
    pub values: Vec<(Metric, f64)>,
    pub state: Option<DeviceState>,
    pub alarms: Vec<Alarm>,
}

/// The JSON of [`Readings::values`]: pairs of metric and number, non-finite numbers named.
mod values_json {
    use super::Metric;
    use serde::de::Visitor;
    use serde::ser::SerializeSeq as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(values: &[(Metric, f64)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(values.len()))?;
        for (metric, v) in values {
            match *v {
                v if v.is_finite() => seq.serialize_element(&(metric, v))?,
                v if v.is_nan() => seq.serialize_element(&(metric, "NaN"))?,
                v if v > 0.0 => seq.serialize_element(&(metric, "inf"))?,
                _ => seq.serialize_element(&(metric, "-inf"))?,
            }
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Metric, f64)>, D::Error> {
        let pairs: Vec<(Metric, Number)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().map(|(m, n)| (m, n.0)).collect())
    }

    /// A number as stored: a JSON number, a named non-finite value, or `null` (how a non-finite
    /// value was written before they were named: it was not a number).
    struct Number(f64);

    impl<'de> Deserialize<'de> for Number {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Number, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Number;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number, \"NaN\", \"inf\" or \"-inf\"")
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Number, E> {
                    Ok(Number(v))
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Number, E> {
                    Ok(Number(v as f64))
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Number, E> {
                    Ok(Number(v as f64))
                }
                fn visit_unit<E: serde::de::Error>(self) -> Result<Number, E> {
                    Ok(Number(f64::NAN))
                }
                fn visit_none<E: serde::de::Error>(self) -> Result<Number, E> {
                    Ok(Number(f64::NAN))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Number, E> {
                    match v {
                        "NaN" => Ok(Number(f64::NAN)),
                        "inf" => Ok(Number(f64::INFINITY)),
                        "-inf" => Ok(Number(f64::NEG_INFINITY)),
                        other => Err(E::custom(format!("'{other}' is not a number"))),
                    }
                }
            }
            d.deserialize_any(V)
        }
    }
}

impl Readings {
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.values
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
    }

    /// Sets a value, replacing an earlier one for the same metric.
    pub fn set(&mut self, metric: Metric, value: f64) {
        match self.values.binary_search_by(|(m, _)| m.cmp(&metric)) {
            Ok(i) => self.values[i].1 = value,
            Err(i) => self.values.insert(i, (metric, value)),
        }
    }
}

/// One read of one device, stamped when it was read (or, for a logger backlog, when the logger read it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub device: DeviceId,
    pub at: DateTime<Utc>,
    pub readings: Readings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_survive_their_json_and_old_nulls_read_as_nan() {
        let mut r = Readings::default();
        r.set(Metric::AcPowerW, f64::NAN);
        r.set(Metric::TemperatureC, f64::INFINITY);
        r.set(Metric::DcPowerW, f64::NEG_INFINITY);
        r.set(Metric::FrequencyHz, 50.0);
        let text = serde_json::to_string(&r).expect("encode");
        assert!(text.contains(r#"["ac_power_w","NaN"]"#), "{text}");
        let back: Readings = serde_json::from_str(&text).expect("decode");
        assert!(
            back.get(Metric::AcPowerW).is_some_and(f64::is_nan),
            "{text}"
        );
        assert_eq!(back.get(Metric::TemperatureC), Some(f64::INFINITY));
        assert_eq!(back.get(Metric::DcPowerW), Some(f64::NEG_INFINITY));
        assert_eq!(back.get(Metric::FrequencyHz), Some(50.0));
        // Rows written before: a non-finite value was stored as null.
        let old: Readings = serde_json::from_str(
            r#"{"values":[["ac_power_w",null],["frequency_hz",50]],"state":null,"alarms":[]}"#,
        )
        .expect("old row");
        assert!(old.get(Metric::AcPowerW).is_some_and(f64::is_nan));
        assert_eq!(old.get(Metric::FrequencyHz), Some(50.0));
        assert!(serde_json::from_str::<Readings>(
            r#"{"values":[["ac_power_w","lots"]],"state":null,"alarms":[]}"#
        )
        .is_err());
    }

    #[test]
    fn metric_names_round_trip() {
        let all = Metric::SCALARS.iter().copied().chain([
            Metric::PhaseVoltageV(2),
            Metric::PhaseCurrentA(3),
            Metric::PvVoltageV(12),
            Metric::PvCurrentA(1),
        ]);
        for m in all {
            assert_eq!(m.name().parse::<Metric>(), Ok(m), "{m}");
        }
        assert!("pv0_voltage_v".parse::<Metric>().is_err());
        assert!("phased_voltage_v".parse::<Metric>().is_err());
        assert!("power".parse::<Metric>().is_err());
    }

    #[test]
    fn metric_json_names_are_their_display_names() {
        let all = Metric::SCALARS.iter().copied().chain([
            Metric::PhaseVoltageV(1),
            Metric::PhaseCurrentA(3),
            Metric::PvVoltageV(12),
            Metric::PvCurrentA(255),
        ]);
        for m in all {
            let json = serde_json::to_string(&m).expect("serialise");
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<Metric>(&json).expect("parse"), m);
        }
    }

    #[test]
    fn readings_set_replaces_and_sorts() {
        let mut r = Readings::default();
        r.set(Metric::EnergyLifetimeWh, 10.0);
        r.set(Metric::AcPowerW, 5.0);
        r.set(Metric::EnergyLifetimeWh, 11.0);
        assert_eq!(
            r.values,
            vec![(Metric::AcPowerW, 5.0), (Metric::EnergyLifetimeWh, 11.0)]
        );
        assert_eq!(r.get(Metric::EnergyLifetimeWh), Some(11.0));
        assert_eq!(r.get(Metric::FrequencyHz), None);
    }
}
