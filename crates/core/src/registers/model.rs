//! The register-map file format (serde) and its compiled form.
//!
//! A map file is parsed once into raw serde structs (`deny_unknown_fields`), then compiled into a
//! [`RegisterMap`]: addresses turned into PDU addresses, units folded into one factor, blocks planned.
//! Every problem names the map file and the key.

use super::MapError;
use crate::domain::{DeviceState, Metric};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Which Modbus read a map uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionCode {
    /// FC3, read holding registers.
    ReadHolding,
    /// FC4, read input registers.
    ReadInput,
}

impl FunctionCode {
    pub fn code(self) -> u8 {
        match self {
            FunctionCode::ReadHolding => 3,
            FunctionCode::ReadInput => 4,
        }
    }
}

/// One request of a read plan: `count` registers from PDU address `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadBlock {
    pub function: FunctionCode,
    pub start: u16,
    pub count: u16,
}

impl ReadBlock {
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// How the manual numbers registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Numbering {
    /// Addresses are what goes on the wire.
    Pdu,
    /// 1-based manual numbering: the wire address is doc − 1.
    Doc,
}

/// Order of the two words of a 32-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    HighFirst,
    LowFirst,
}

/// Register data types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    /// An unsigned 32-bit counter that only grows (SunSpec acc32).
    Acc32,
    Float32,
    String,
    Bitfield16,
    Bitfield32,
    Enum16,
    /// A SunSpec scale factor: int16 exponent of ten.
    Sunssf,
}

impl DataType {
    pub fn words(self) -> u16 {
        match self {
            DataType::U16
            | DataType::I16
            | DataType::Bitfield16
            | DataType::Enum16
            | DataType::Sunssf
            | DataType::String => 1,
            DataType::U32
            | DataType::I32
            | DataType::Acc32
            | DataType::Float32
            | DataType::Bitfield32 => 2,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file format
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMap {
    pub family: String,
    pub description: String,
    /// 3 (holding) or 4 (input).
    pub function: u8,
    pub numbering: Numbering,
    pub word_order: WordOrder,
    #[serde(default = "default_max_block")]
    pub max_block: u16,
    /// Largest run of unused registers a block may read through rather than split.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    #[serde(default)]
    pub timing: RawTiming,
    #[serde(default)]
    pub sentinels: RawSentinels,
    #[serde(default)]
    pub identity: RawIdentity,
    /// State tables; the first whose register exists on the device is used (SunSpec: one per
    /// model family).
    #[serde(default, rename = "state")]
    pub states: Vec<RawState>,
    #[serde(default, rename = "field")]
    pub fields: Vec<RawField>,
    #[serde(default, rename = "alarm")]
    pub alarms: Vec<RawAlarm>,
    #[serde(default)]
    pub sunspec: Option<RawSunspec>,
    #[serde(default, rename = "test")]
    pub tests: Vec<RawTest>,
}

fn default_max_block() -> u16 {
    125
}

fn default_max_gap() -> u16 {
    16
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTiming {
    #[serde(default, with = "humantime_serde")]
    pub connect_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_gap: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// Raw values that mean "not implemented / invalid" for each type.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSentinels {
    pub u16: Option<u16>,
    pub i16: Option<u16>,
    pub u32: Option<u32>,
    pub i32: Option<u32>,
    pub acc32: Option<u32>,
    #[serde(default)]
    pub float32_nan: bool,
}

/// Where a value lives: an absolute `address`, or for SunSpec maps a `models` list and `offset`
/// from the model's id register (and for model 160, a 1-based `module`).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawText {
    pub address: Option<u32>,
    pub models: Option<Vec<u16>>,
    pub offset: Option<u16>,
    pub words: u16,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub serial: Option<RawText>,
    pub model: Option<RawText>,
    /// A numeric device-type register shown as `0x2C10` when there is no model string.
    pub model_code: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub metric: String,
    pub address: Option<u32>,
    pub models: Option<Vec<u16>>,
    pub offset: Option<u16>,
    pub module: Option<u16>,
    #[serde(rename = "type")]
    pub ty: DataType,
    /// Multiply the raw value by this (e.g. 0.1 for "÷10").
    #[serde(default = "one")]
    pub scale: f64,
    /// A SunSpec scale-factor register (address, or offset in the same model).
    pub scale_factor: Option<u32>,
    /// The scale-factor value the simulator writes (SunSpec only).
    #[serde(default)]
    pub encode_sf: i16,
    /// Unit of raw × scale: W, kW, var, kvar, Wh, kWh, MWh, V, A, Hz, C, %, MOhm, kOhm, or "".
    pub unit: String,
    /// Set false for registers that have no "not implemented" value.
    #[serde(default = "yes")]
    pub sentinel: bool,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub address: Option<u32>,
    pub models: Option<Vec<u16>>,
    pub offset: Option<u16>,
    /// Unlisted raw values decode to this (default `unknown`).
    #[serde(default)]
    pub otherwise: Option<DeviceState>,
    pub values: Vec<RawStateValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStateValue {
    pub raw: u32,
    pub state: DeviceState,
    pub text: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum AlarmKind {
    /// Each set bit is one alarm.
    Bits,
    /// The register holds one fault code (0 = none).
    Code,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlarm {
    pub kind: AlarmKind,
    pub address: Option<u32>,
    pub models: Option<Vec<u16>>,
    pub offset: Option<u16>,
    /// 1 or 2 registers (bit fields).
    #[serde(default = "one_word")]
    pub words: u16,
    /// Stable prefix of the alarm codes, e.g. `huawei.alarm1`.
    pub code: String,
    /// Only report these alarms while the device is in one of these states.
    #[serde(default)]
    pub only_in_states: Vec<DeviceState>,
    #[serde(default)]
    pub bits: Vec<RawBit>,
    #[serde(default)]
    pub codes: Vec<RawCode>,
}

fn one_word() -> u16 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBit {
    pub bit: u8,
    pub en: String,
    pub zh: String,
    #[serde(default)]
    pub grid_loss: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCode {
    pub value: u32,
    pub en: String,
    pub zh: String,
    #[serde(default)]
    pub grid_loss: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSunspec {
    /// Base addresses tried in order when looking for the "SunS" marker.
    pub bases: Vec<u16>,
    /// The model chain assumed without discovery (simulator, golden tests): ids in order.
    pub default_chain: Vec<u16>,
    /// Number of modules of model 160 in the default chain.
    #[serde(default = "two")]
    pub default_mppt_modules: u16,
}

fn two() -> u16 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTest {
    pub name: String,
    /// Address (in the map's numbering) → words starting there.
    pub registers: BTreeMap<String, Vec<u16>>,
    /// Metric name → value; plus `state` (string), `alarms` (codes), `serial`, `model`.
    pub expect: toml::Table,
    /// Metrics that must be absent (sentinel values).
    #[serde(default)]
    pub absent: Vec<String>,
    /// SunSpec maps: the model chain to lay out for this vector (default: the map's own).
    #[serde(default)]
    pub chain: Option<Vec<u16>>,
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

/// Where a value sits once the model chain is known.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Loc {
    /// Absolute PDU address.
    Abs(u16),
    /// SunSpec: offset from the id register of the first present model of `models`.
    Model { models: Vec<u16>, offset: u16 },
}

#[derive(Clone, Debug)]
pub(super) struct Field {
    pub key: String,
    pub metric: Metric,
    pub loc: Loc,
    pub ty: DataType,
    /// raw × factor = value in the metric's unit.
    pub factor: f64,
    pub scale_factor: Option<Loc>,
    pub encode_sf: i16,
    pub sentinel: Option<u32>,
    pub nan_is_sentinel: bool,
}

#[derive(Clone, Debug)]
pub(super) struct TextField {
    pub loc: Loc,
    pub words: u16,
}

#[derive(Clone, Debug)]
pub(super) struct StateTable {
    pub loc: Loc,
    pub otherwise: DeviceState,
    pub values: Vec<(u32, DeviceState, String)>,
}

#[derive(Clone, Debug)]
pub(super) struct AlarmTable {
    pub kind: AlarmKind,
    pub loc: Loc,
    pub words: u16,
    pub code: String,
    pub only_in_states: Vec<DeviceState>,
    /// (bit or code value, en, zh, grid_loss)
    pub entries: Vec<(u32, String, String, bool)>,
}

/// Connection timing a map recommends; config may override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Wait after connecting before the first request (some dongles need a moment).
    pub connect_delay: Duration,
    /// Pause between two requests on one connection.
    pub request_gap: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_delay: Duration::ZERO,
            request_gap: Duration::ZERO,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A SunSpec model placed in the register space: its id register and its length `L`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelLoc {
    pub id: u16,
    /// PDU address of the model id register.
    pub address: u16,
    /// Length excluding the id and length registers.
    pub len: u16,
}

/// The SunSpec layout of one device: marker base and the models in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SunspecChain {
    pub base: u16,
    pub models: Vec<ModelLoc>,
}

impl SunspecChain {
    pub fn find(&self, ids: &[u16]) -> Option<ModelLoc> {
        self.models.iter().copied().find(|m| ids.contains(&m.id))
    }
}

#[derive(Clone, Debug)]
pub(super) struct SunspecInfo {
    pub bases: Vec<u16>,
}

/// A compiled register map. For SunSpec maps, fields are placed using a chain: the default chain
/// when built, the discovered one after [`RegisterMap::with_chain`].
#[derive(Clone, Debug)]
pub struct RegisterMap {
    pub(super) name: String,
    pub(super) family: String,
    pub(super) description: String,
    pub(super) function: FunctionCode,
    pub(super) word_order: WordOrder,
    pub(super) max_block: u16,
    pub(super) max_gap: u16,
    pub(super) timing: Timing,
    pub(super) fields: Vec<Field>,
    pub(super) serial: Option<TextField>,
    pub(super) model: Option<TextField>,
    pub(super) model_code: Option<Loc>,
    pub(super) states: Vec<StateTable>,
    pub(super) alarms: Vec<AlarmTable>,
    pub(super) sunspec: Option<SunspecInfo>,
    pub(super) chain: Option<SunspecChain>,
    pub(super) plan: Vec<ReadBlock>,
    pub(super) poll: Vec<ReadBlock>,
}

/// The dimension a metric is measured in, and the units that can feed it.
fn unit_factor(metric: Metric, unit: &str) -> Option<f64> {
    use Metric as M;
    let f = match (metric, unit) {
        (M::AcPowerW | M::DcPowerW, "W") => 1.0,
        (M::AcPowerW | M::DcPowerW, "kW") => 1000.0,
        (M::ReactivePowerVar, "var") => 1.0,
        (M::ReactivePowerVar, "kvar") => 1000.0,
        (M::PowerFactor, "") => 1.0,
        (M::PowerFactor, "%") => 0.01,
        (M::FrequencyHz, "Hz") => 1.0,
        (M::PhaseVoltageV(_) | M::PvVoltageV(_), "V") => 1.0,
        (M::PhaseCurrentA(_) | M::PvCurrentA(_), "A") => 1.0,
        (M::TemperatureC, "C") => 1.0,
        (M::InsulationMohm, "MOhm") => 1.0,
        (M::InsulationMohm, "kOhm") => 0.001,
        (M::EfficiencyPct, "%") => 1.0,
        (M::EnergyTodayWh | M::EnergyLifetimeWh | M::EnergyExportWh, "Wh") => 1.0,
        (M::EnergyTodayWh | M::EnergyLifetimeWh | M::EnergyExportWh, "kWh") => 1000.0,
        (M::EnergyTodayWh | M::EnergyLifetimeWh | M::EnergyExportWh, "MWh") => 1_000_000.0,
        _ => return None,
    };
    Some(f)
}

struct Compiler<'a> {
    file: &'a str,
    numbering: Numbering,
    sunspec: bool,
}

impl Compiler<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> MapError {
        MapError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn addr(&self, key: &str, address: u32) -> Result<u16, MapError> {
        let pdu = match self.numbering {
            Numbering::Pdu => address,
            Numbering::Doc => address.checked_sub(1).ok_or_else(|| {
                self.err(key, "doc numbering starts at 1; address 0 does not exist")
            })?,
        };
        u16::try_from(pdu).map_err(|_| self.err(key, format!("address {address} exceeds 65535")))
    }

    fn loc(
        &self,
        key: &str,
        address: Option<u32>,
        models: Option<&Vec<u16>>,
        offset: Option<u16>,
    ) -> Result<Loc, MapError> {
        match (address, models, offset, self.sunspec) {
            (Some(a), None, None, false) => Ok(Loc::Abs(self.addr(key, a)?)),
            (None, Some(m), Some(o), true) if !m.is_empty() => Ok(Loc::Model {
                models: m.clone(),
                offset: o,
            }),
            (_, _, _, false) => Err(self.err(
                key,
                "give `address` (and no `models`/`offset`): this is not a SunSpec map",
            )),
            (_, _, _, true) => Err(self.err(
                key,
                "a SunSpec map places values with `models = [..]` and `offset = N`, not `address`",
            )),
        }
    }
}

impl RegisterMap {
    /// Parses and compiles one map file. `file` names it in errors; `name` is its catalog name.
    pub fn parse(name: &str, file: &str, text: &str) -> Result<RegisterMap, MapError> {
        let raw: RawMap = toml::from_str(text).map_err(|e| MapError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let map = Self::compile(name, file, raw)?;
        Ok(map)
    }

    fn compile(name: &str, file: &str, raw: RawMap) -> Result<RegisterMap, MapError> {
        let c = Compiler {
            file,
            numbering: raw.numbering,
            sunspec: raw.sunspec.is_some(),
        };
        let function = match raw.function {
            3 => FunctionCode::ReadHolding,
            4 => FunctionCode::ReadInput,
            other => {
                return Err(c.err(
                    "function",
                    format!("function code {other} is not a register read; use 3 or 4"),
                ))
            }
        };
        if raw.max_block == 0 || raw.max_block > 125 {
            return Err(c.err(
                "max_block",
                format!(
                    "{} registers per read is outside 1..=125 (the Modbus limit)",
                    raw.max_block
                ),
            ));
        }
        let defaults = Timing::default();
        let timing = Timing {
            connect_delay: raw.timing.connect_delay.unwrap_or(defaults.connect_delay),
            request_gap: raw.timing.request_gap.unwrap_or(defaults.request_gap),
            timeout: raw.timing.timeout.unwrap_or(defaults.timeout),
        };
        if timing.timeout.is_zero() {
            return Err(c.err("timing.timeout", "a zero timeout would fail every request"));
        }

        let mut fields = Vec::with_capacity(raw.fields.len());
        for (i, f) in raw.fields.iter().enumerate() {
            let key = format!("field[{i}]");
            let metric: Metric = f
                .metric
                .parse()
                .map_err(|e| c.err(format!("{key}.metric"), format!("{e}")))?;
            let unit = unit_factor(metric, &f.unit).ok_or_else(|| {
                c.err(
                    format!("{key}.unit"),
                    format!("unit '{}' cannot feed {metric}", f.unit),
                )
            })?;
            if matches!(
                f.ty,
                DataType::String | DataType::Bitfield16 | DataType::Bitfield32 | DataType::Sunssf
            ) {
                return Err(c.err(
                    format!("{key}.type"),
                    "a metric needs a numeric type (u16, i16, u32, i32, acc32, enum16, float32)",
                ));
            }
            if !(f.scale.is_finite() && f.scale != 0.0) {
                return Err(c.err(format!("{key}.scale"), "scale must be a non-zero number"));
            }
            let loc = c.loc(&key, f.address, f.models.as_ref(), f.offset)?;
            let loc = match (loc, f.module) {
                (Loc::Model { models, offset }, Some(m)) if m >= 1 => Loc::Model {
                    models,
                    // Model 160 repeats 20-register modules from offset 10.
                    offset: offset + 10 + 20 * (m - 1),
                },
                (_, Some(_)) => {
                    return Err(c.err(
                        format!("{key}.module"),
                        "module is 1-based and only for SunSpec model 160",
                    ))
                }
                (loc, None) => loc,
            };
            let scale_factor = match f.scale_factor {
                None => None,
                Some(sf) if c.sunspec => Some(Loc::Model {
                    models: f.models.clone().unwrap_or_default(),
                    offset: u16::try_from(sf).map_err(|_| {
                        c.err(format!("{key}.scale_factor"), "offset exceeds 65535")
                    })?,
                }),
                Some(sf) => Some(Loc::Abs(c.addr(&format!("{key}.scale_factor"), sf)?)),
            };
            let s = &raw.sentinels;
            let sentinel = if f.sentinel {
                match f.ty {
                    DataType::U16 | DataType::Enum16 => s.u16.map(u32::from),
                    DataType::I16 => s.i16.map(u32::from),
                    DataType::U32 => s.u32,
                    DataType::I32 => s.i32,
                    DataType::Acc32 => s.acc32,
                    _ => None,
                }
            } else {
                None
            };
            fields.push(Field {
                key,
                metric,
                loc,
                ty: f.ty,
                factor: f.scale * unit,
                scale_factor,
                encode_sf: f.encode_sf,
                sentinel,
                nan_is_sentinel: f.sentinel && s.float32_nan,
            });
        }
        for (i, a) in fields.iter().enumerate() {
            let overlaps = |b: &Field| match (&a.loc, &b.loc) {
                (Loc::Model { models: x, .. }, Loc::Model { models: y, .. }) => {
                    x.iter().any(|m| y.contains(m))
                }
                _ => true,
            };
            if let Some(b) = fields[..i]
                .iter()
                .find(|b| b.metric == a.metric && overlaps(b))
            {
                return Err(c.err(
                    format!("{}.metric", a.key),
                    format!("{} is already given by {}", a.metric, b.key),
                ));
            }
        }

        let text = |key: &str, t: &RawText| -> Result<TextField, MapError> {
            if t.words == 0 || t.words > 64 {
                return Err(c.err(format!("{key}.words"), "a string spans 1..=64 registers"));
            }
            Ok(TextField {
                loc: c.loc(key, t.address, t.models.as_ref(), t.offset)?,
                words: t.words,
            })
        };
        let serial = raw
            .identity
            .serial
            .as_ref()
            .map(|t| text("identity.serial", t))
            .transpose()?;
        let model = raw
            .identity
            .model
            .as_ref()
            .map(|t| text("identity.model", t))
            .transpose()?;
        let model_code = raw
            .identity
            .model_code
            .map(|a| c.addr("identity.model_code", a).map(Loc::Abs))
            .transpose()?;

        let mut states = Vec::with_capacity(raw.states.len());
        for (k, s) in raw.states.iter().enumerate() {
            let key = format!("state[{k}]");
            let loc = c.loc(&key, s.address, s.models.as_ref(), s.offset)?;
            let mut values = Vec::with_capacity(s.values.len());
            for (i, v) in s.values.iter().enumerate() {
                if values.iter().any(|(r, _, _)| *r == v.raw) {
                    return Err(c.err(
                        format!("{key}.values[{i}].raw"),
                        format!("raw value {:#06x} is listed twice", v.raw),
                    ));
                }
                values.push((v.raw, v.state, v.text.clone()));
            }
            states.push(StateTable {
                loc,
                otherwise: s.otherwise.unwrap_or(DeviceState::Unknown),
                values,
            });
        }

        let mut alarms = Vec::with_capacity(raw.alarms.len());
        for (i, a) in raw.alarms.iter().enumerate() {
            let key = format!("alarm[{i}]");
            if !(a.words == 1 || a.words == 2) {
                return Err(c.err(format!("{key}.words"), "an alarm register is 1 or 2 words"));
            }
            let loc = c.loc(&key, a.address, a.models.as_ref(), a.offset)?;
            let entries: Vec<(u32, String, String, bool)> = match a.kind {
                AlarmKind::Bits => {
                    if !a.codes.is_empty() {
                        return Err(c.err(format!("{key}.codes"), "a bits alarm lists `bits`"));
                    }
                    let mut out = Vec::new();
                    for (j, b) in a.bits.iter().enumerate() {
                        if u16::from(b.bit) >= 16 * a.words {
                            return Err(c.err(
                                format!("{key}.bits[{j}].bit"),
                                format!("bit {} does not fit in {} word(s)", b.bit, a.words),
                            ));
                        }
                        out.push((u32::from(b.bit), b.en.clone(), b.zh.clone(), b.grid_loss));
                    }
                    out
                }
                AlarmKind::Code => {
                    if !a.bits.is_empty() {
                        return Err(c.err(format!("{key}.bits"), "a code alarm lists `codes`"));
                    }
                    a.codes
                        .iter()
                        .map(|b| (b.value, b.en.clone(), b.zh.clone(), b.grid_loss))
                        .collect()
                }
            };
            alarms.push(AlarmTable {
                kind: a.kind,
                loc,
                words: a.words,
                code: a.code.clone(),
                only_in_states: a.only_in_states.clone(),
                entries,
            });
        }

        let (sunspec, chain) = match &raw.sunspec {
            None => (None, None),
            Some(s) => {
                if s.bases.is_empty() {
                    return Err(c.err("sunspec.bases", "list at least one base, e.g. [40000]"));
                }
                let chain = super::sunspec::default_chain(
                    s.bases[0],
                    &s.default_chain,
                    s.default_mppt_modules,
                )
                .map_err(|m| c.err("sunspec.default_chain", m))?;
                (
                    Some(SunspecInfo {
                        bases: s.bases.clone(),
                    }),
                    Some(chain),
                )
            }
        };

        let mut map = RegisterMap {
            name: name.to_owned(),
            family: raw.family,
            description: raw.description,
            function,
            word_order: raw.word_order,
            max_block: raw.max_block,
            max_gap: raw.max_gap,
            timing,
            fields,
            serial,
            model,
            model_code,
            states,
            alarms,
            sunspec,
            chain: None,
            plan: Vec::new(),
            poll: Vec::new(),
        };
        if let Some(chain) = chain {
            map = map
                .with_chain(chain)
                .map_err(|e| c.err("sunspec.default_chain", e.to_string()))?;
        } else {
            map.plan_reads();
        }
        for (i, t) in raw.tests.iter().enumerate() {
            super::vectors::run(&map, &c.numbering, t)
                .map_err(|m| c.err(format!("test[{i}] ({})", t.name), m))?;
        }
        if raw.tests.is_empty() {
            return Err(c.err(
                "test",
                "a register map needs at least one [[test]] vector (raw registers -> values)",
            ));
        }
        Ok(map)
    }

    /// Every register span the map reads (absolute PDU addresses), for the plan and the encoder.
    pub(super) fn spans(&self) -> Vec<(u16, u16)> {
        let mut spans = self.reading_spans();
        let mut add = |loc: &Loc, words: u16| {
            if let Some(a) = self.place(loc) {
                spans.push((a, words));
            }
        };
        if let Some(t) = &self.serial {
            add(&t.loc, t.words);
        }
        if let Some(t) = &self.model {
            add(&t.loc, t.words);
        }
        if let Some(l) = &self.model_code {
            add(l, 1);
        }
        spans
    }

    /// The spans the readings are decoded from: everything but the identity.
    fn reading_spans(&self) -> Vec<(u16, u16)> {
        let mut spans = Vec::new();
        let mut add = |loc: &Loc, words: u16| {
            if let Some(a) = self.place(loc) {
                spans.push((a, words));
            }
        };
        for f in &self.fields {
            add(&f.loc, f.ty.words());
            if let Some(sf) = &f.scale_factor {
                add(sf, 1);
            }
        }
        for s in &self.states {
            add(&s.loc, 1);
        }
        for a in &self.alarms {
            add(&a.loc, a.words);
        }
        spans
    }

    /// The PDU address of a location, if its model is in the chain.
    pub(super) fn place(&self, loc: &Loc) -> Option<u16> {
        match loc {
            Loc::Abs(a) => Some(*a),
            Loc::Model { models, offset } => {
                let m = self.chain.as_ref()?.find(models)?;
                if *offset >= m.len + 2 {
                    return None;
                }
                m.address.checked_add(*offset)
            }
        }
    }

    /// Lays out both plans: everything (probe), and the readings alone (routine polls).
    fn plan_reads(&mut self) {
        self.plan = self.build_plan(self.spans());
        self.poll = self.build_plan(self.reading_spans());
    }

    /// Merges the spans into blocks of at most `max_block` registers, reading through gaps of at
    /// most `max_gap` unused registers.
    fn build_plan(&self, mut spans: Vec<(u16, u16)>) -> Vec<ReadBlock> {
        spans.sort_unstable();
        let mut plan: Vec<ReadBlock> = Vec::new();
        for (start, words) in spans {
            let end = u32::from(start) + u32::from(words);
            if let Some(last) = plan.last_mut() {
                let gap_ok = u32::from(start) <= last.end() + u32::from(self.max_gap);
                let fits = end.saturating_sub(u32::from(last.start)) <= u32::from(self.max_block);
                if end <= last.end() {
                    continue;
                }
                if gap_ok && fits {
                    last.count = u16::try_from(end - u32::from(last.start)).unwrap_or(last.count);
                    continue;
                }
            }
            plan.push(ReadBlock {
                function: self.function,
                start,
                count: words,
            });
        }
        plan
    }

    /// The map placed on a discovered SunSpec chain (no-op for other maps).
    pub fn with_chain(&self, chain: SunspecChain) -> Result<RegisterMap, super::DecodeError> {
        if self.sunspec.is_none() {
            return Ok(self.clone());
        }
        let mut map = self.clone();
        map.chain = Some(chain);
        if !map.fields.iter().any(|f| map.place(&f.loc).is_some()) {
            return Err(super::DecodeError::NoKnownModel);
        }
        map.plan_reads();
        Ok(map)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn family(&self) -> &str {
        &self.family
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn function(&self) -> FunctionCode {
        self.function
    }

    /// The requests that read everything this map decodes, identity included, in address order
    /// (what `probe` reads).
    pub fn plan(&self) -> &[ReadBlock] {
        &self.plan
    }

    /// The requests of a routine poll: the registers the readings are decoded from. The serial
    /// number and model never change while a device runs, so a poll does not spend a request on
    /// them (on a serial bus behind a data logger every request costs its gap and its air time).
    pub fn poll_plan(&self) -> &[ReadBlock] {
        &self.poll
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn is_sunspec(&self) -> bool {
        self.sunspec.is_some()
    }

    /// Base addresses to try for the SunSpec marker.
    pub fn sunspec_bases(&self) -> &[u16] {
        self.sunspec.as_ref().map_or(&[], |s| &s.bases)
    }

    /// The chain the fields are placed on (SunSpec maps only).
    pub fn chain(&self) -> Option<&SunspecChain> {
        self.chain.as_ref()
    }

    /// The metrics this map can produce.
    pub fn metrics(&self) -> Vec<Metric> {
        self.fields
            .iter()
            .filter(|f| self.place(&f.loc).is_some())
            .map(|f| f.metric)
            .collect()
    }

    /// The state table that applies to the device (the first whose register exists).
    pub(super) fn state_table(&self) -> Option<(&StateTable, u16)> {
        self.states
            .iter()
            .find_map(|t| self.place(&t.loc).map(|a| (t, a)))
    }

    /// The raw value the map uses to say "state" (first listed), for the encoder.
    pub(super) fn state_raw(&self, t: &StateTable, state: DeviceState) -> Option<u32> {
        t.values
            .iter()
            .find(|(_, s, _)| *s == state)
            .map(|(r, _, _)| *r)
    }
}
