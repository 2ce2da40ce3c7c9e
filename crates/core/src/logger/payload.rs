//! Turning one MQTT message into samples: JSON telemetry through a template's field mapping, or
//! forwarded register blocks through the inverter's register map.
//!
//! Pure: no I/O, no clock. Every record either becomes a `Sample` or a [`Problem`] with its reason;
//! nothing is dropped without one.

use super::template::{
    Captures, Directory, FieldMap, JsonLayout, LoggedDevice, LoggerEntry, PayloadKind, TimeFormat,
};
use crate::domain::{DeviceState, Readings, Sample};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt;

/// Why a message or a record was refused. The label is stable (metrics, the operators' page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Oversized,
    BinaryGarbage,
    MalformedJson,
    WrongType,
    MissingField,
    BadTimestamp,
    TruncatedBlock,
    DecodeFailed,
    NoValues,
    UnexpectedTopic,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::BinaryGarbage => "binary_garbage",
            Reason::MalformedJson => "malformed_json",
            Reason::WrongType => "wrong_type",
            Reason::MissingField => "missing_field",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::TruncatedBlock => "truncated_block",
            Reason::DecodeFailed => "decode_failed",
            Reason::NoValues => "no_values",
            Reason::UnexpectedTopic => "unexpected_topic",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One thing wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The message is unusable (or one of its records is): counted and listed with the reason.
    Rejected { reason: Reason, detail: String },
    /// Well-formed, but from a logger or device the deployment does not know (a new logger in the
    /// field, a unit id not yet registered): listed for operators.
    UnknownDevice { logger: String, key: String },
}

/// A block of registers as the logger read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterBlock {
    pub unit: u8,
    /// Modbus function code: 3 holding or 4 input registers.
    pub function: u8,
    /// PDU (0-based) start address.
    pub start: u16,
    pub words: Vec<u16>,
}

/// Decodes forwarded register blocks with the register map named by a device's `model`. The
/// implementation lives with the register maps so the Modbus poller and this path share one map.
pub trait BlockDecoder: Send + Sync + fmt::Debug {
    fn decode(&self, model: &str, blocks: &[RegisterBlock]) -> Result<Readings, String>;
}

/// What one message produced.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    pub problems: Vec<Problem>,
}

impl Decoded {
    fn reject(&mut self, reason: Reason, detail: impl Into<String>) {
        self.problems.push(Problem::Rejected {
            reason,
            detail: detail.into(),
        });
    }
}

/// Error of one record; the record is skipped whole (half a record is never stored).
struct RecordError(Problem);

fn rejected(reason: Reason, detail: String) -> RecordError {
    RecordError(Problem::Rejected { reason, detail })
}

/// Decodes a message that arrived on `topic`. `max_bytes` is the size limit.
pub fn decode_message(
    dir: &Directory,
    decoder: Option<&dyn BlockDecoder>,
    topic: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Decoded {
    let mut out = Decoded::default();
    if payload.len() > max_bytes {
        out.reject(
            Reason::Oversized,
            format!("{} bytes, the limit is {max_bytes}", payload.len()),
        );
        return out;
    }
    let Some((captures, logger)) = dir.resolve(topic) else {
        out.reject(
            Reason::UnexpectedTopic,
            format!("topic '{topic}' matches no logger template in use"),
        );
        return out;
    };
    let Some(logger) = logger else {
        out.problems.push(Problem::UnknownDevice {
            logger: captures.logger,
            key: String::new(),
        });
        return out;
    };
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        Err(e) => {
            out.reject(
                Reason::BinaryGarbage,
                format!(
                    "not UTF-8 text (bad byte at {}): {}",
                    e.valid_up_to(),
                    excerpt_bytes(payload)
                ),
            );
            return out;
        }
    };
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.reject(Reason::MalformedJson, format!("{e}: {}", excerpt(text)));
            return out;
        }
    };
    let records: Vec<&Value> = match &root {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    if records.is_empty() {
        out.reject(Reason::NoValues, "an empty array");
    }
    for (i, record) in records.into_iter().enumerate() {
        let Value::Object(obj) = record else {
            out.reject(
                Reason::WrongType,
                format!("record {i} is {}, expected an object", kind_of(record)),
            );
            continue;
        };
        let result = match logger.template.payload {
            PayloadKind::Json => match &logger.template.json {
                Some(layout) => json_record(logger, layout, &captures, obj).map(|s| vec![s]),
                None => Err(rejected(
                    Reason::DecodeFailed,
                    "template has no [json]".into(),
                )),
            },
            PayloadKind::Registers => register_record(logger, decoder, &captures, obj),
        };
        match result {
            Ok(samples) => out.samples.extend(samples),
            Err(RecordError(p)) => out.problems.push(p),
        }
    }
    out
}

fn json_record(
    logger: &LoggerEntry,
    layout: &JsonLayout,
    captures: &Captures,
    obj: &Map<String, Value>,
) -> Result<Sample, RecordError> {
    let device = resolve_device(
        logger,
        captures,
        layout.device.as_deref(),
        layout.unit.as_deref(),
        obj,
    )?;
    let at = time_field(obj, &layout.time, layout.time_format)?;
    let values = if layout.values.is_empty() {
        obj
    } else {
        match obj.get(&layout.values) {
            Some(Value::Object(v)) => v,
            Some(other) => {
                return Err(rejected(
                    Reason::WrongType,
                    format!(
                        "'{}' is {}, expected an object",
                        layout.values,
                        kind_of(other)
                    ),
                ))
            }
            None => {
                return Err(rejected(
                    Reason::MissingField,
                    format!("no '{}' object in the record", layout.values),
                ))
            }
        }
    };
    let mut readings = Readings::default();
    for (field, map) in &layout.fields {
        let Some(v) = values.get(field) else { continue };
        if let Some(x) = number(v, field)? {
            readings.set(map.metric(), x * FieldMap::scale(map));
        }
    }
    if let Some(state_field) = &layout.state {
        if let Some(v) = values.get(state_field).or_else(|| obj.get(state_field)) {
            let code = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_owned(),
                Value::Null => String::new(),
                other => {
                    return Err(rejected(
                        Reason::WrongType,
                        format!("'{state_field}' is {}, expected a code", kind_of(other)),
                    ))
                }
            };
            if !code.is_empty() {
                readings.state = Some(
                    layout
                        .states
                        .get(&code)
                        .copied()
                        .unwrap_or(DeviceState::Unknown),
                );
            }
        }
    }
    if readings.values.is_empty() && readings.state.is_none() {
        return Err(rejected(
            Reason::NoValues,
            format!(
                "none of the mapped fields ({}) is present",
                layout.fields.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(Sample {
        device: device.id.clone(),
        at,
        readings,
    })
}

/// A JSON value as a number: numbers and numeric strings count, `null` is "not read".
fn number(v: &Value, field: &str) -> Result<Option<f64>, RecordError> {
    match v {
        Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| {
            rejected(
                Reason::WrongType,
                format!("'{field}' = {n} is not representable"),
            )
        }),
        Value::String(s) => s.trim().parse::<f64>().map(Some).map_err(|_| {
            rejected(
                Reason::WrongType,
                format!(
                    "'{field}' is the string {}, expected a number",
                    excerpt(&format!("{s:?}"))
                ),
            )
        }),
        Value::Null => Ok(None),
        other => Err(rejected(
            Reason::WrongType,
            format!("'{field}' is {}, expected a number", kind_of(other)),
        )),
    }
}

fn resolve_device<'a>(
    logger: &'a LoggerEntry,
    captures: &Captures,
    device_field: Option<&str>,
    unit_field: Option<&str>,
    obj: &Map<String, Value>,
) -> Result<&'a LoggedDevice, RecordError> {
    let unknown = |key: String| {
        RecordError(Problem::UnknownDevice {
            logger: logger.id.clone(),
            key,
        })
    };
    if let Some(v) = device_field.and_then(|f| obj.get(f)) {
        let Value::String(id) = v else {
            return Err(rejected(
                Reason::WrongType,
                format!("device field is {}, expected a string", kind_of(v)),
            ));
        };
        return logger
            .by_id(id)
            .ok_or_else(|| unknown(format!("device {id}")));
    }
    if let Some(id) = &captures.device {
        return logger
            .by_id(id)
            .ok_or_else(|| unknown(format!("device {id}")));
    }
    let unit = match unit_field.and_then(|f| obj.get(f)) {
        Some(v) => Some(unit_of(v)?),
        None => match &captures.unit {
            Some(u) => Some(u.parse::<u8>().map_err(|_| {
                rejected(
                    Reason::WrongType,
                    format!("unit '{u}' in the topic is not 0..=255"),
                )
            })?),
            None => None,
        },
    };
    match unit {
        Some(u) => logger
            .by_unit(u)
            .ok_or_else(|| unknown(format!("unit {u}"))),
        None => logger.sole().ok_or_else(|| {
            rejected(
                Reason::MissingField,
                format!(
                    "the record names no unit or device and logger '{}' has {} devices",
                    logger.id,
                    logger.devices.len()
                ),
            )
        }),
    }
}

fn unit_of(v: &Value) -> Result<u8, RecordError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u8::try_from(n).ok()).ok_or_else(|| {
        rejected(
            Reason::WrongType,
            format!(
                "unit is {}, expected an integer 0..=255",
                excerpt(&v.to_string())
            ),
        )
    })
}

fn time_field(
    obj: &Map<String, Value>,
    field: &str,
    format: TimeFormat,
) -> Result<DateTime<Utc>, RecordError> {
    let v = obj.get(field).ok_or_else(|| {
        rejected(
            Reason::MissingField,
            format!("no '{field}' (read time) in the record"),
        )
    })?;
    parse_time(v, format).ok_or_else(|| {
        rejected(
            Reason::BadTimestamp,
            format!(
                "'{field}' = {} is not a {format:?} time",
                excerpt(&v.to_string())
            ),
        )
    })
}

/// A read time in the given format; `None` when it does not parse or is out of range.
pub fn parse_time(v: &Value, format: TimeFormat) -> Option<DateTime<Utc>> {
    let from_number = |x: f64, ms: bool| -> Option<DateTime<Utc>> {
        if !x.is_finite() || x < 0.0 {
            return None;
        }
        let ms = if ms { x } else { x * 1000.0 };
        if ms > 1e15 {
            return None;
        }
        DateTime::from_timestamp_millis(ms.round() as i64)
    };
    match (v, format) {
        (Value::Number(n), TimeFormat::EpochS) => from_number(n.as_f64()?, false),
        (Value::Number(n), TimeFormat::EpochMs) => from_number(n.as_f64()?, true),
        (Value::Number(n), TimeFormat::Auto) => {
            let x = n.as_f64()?;
            from_number(x, x >= 1e11)
        }
        (Value::String(s), TimeFormat::Rfc3339 | TimeFormat::Auto) => {
            DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(|d| d.with_timezone(&Utc))
        }
        _ => None,
    }
}

fn register_record(
    logger: &LoggerEntry,
    decoder: Option<&dyn BlockDecoder>,
    captures: &Captures,
    obj: &Map<String, Value>,
) -> Result<Vec<Sample>, RecordError> {
    let default_at = match obj.get("ts") {
        Some(v) => Some(parse_time(v, TimeFormat::Auto).ok_or_else(|| {
            rejected(
                Reason::BadTimestamp,
                format!("'ts' = {} is not a time", excerpt(&v.to_string())),
            )
        })?),
        None => None,
    };
    let blocks = match obj.get("blocks") {
        Some(Value::Array(b)) => b,
        Some(other) => {
            return Err(rejected(
                Reason::WrongType,
                format!("'blocks' is {}, expected an array", kind_of(other)),
            ))
        }
        None => return Err(rejected(Reason::MissingField, "no 'blocks' array".into())),
    };
    if blocks.is_empty() {
        return Err(rejected(Reason::NoValues, "'blocks' is empty".into()));
    }
    // Blocks of one device read at one instant decode into one sample.
    let mut groups: Vec<(u8, DateTime<Utc>, Vec<RegisterBlock>)> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let Value::Object(b) = b else {
            return Err(rejected(
                Reason::WrongType,
                format!("blocks[{i}] is {}, expected an object", kind_of(b)),
            ));
        };
        let (block, at) = parse_block(i, b, default_at)?;
        match groups
            .iter_mut()
            .find(|(u, t, _)| *u == block.unit && *t == at)
        {
            Some((_, _, v)) => v.push(block),
            None => groups.push((block.unit, at, vec![block])),
        }
    }
    let mut samples = Vec::with_capacity(groups.len());
    for (unit, at, blocks) in groups {
        let device = match &captures.device {
            Some(id) => logger.by_id(id),
            None => logger.by_unit(unit).or_else(|| {
                // A single-inverter logger may use any unit id.
                logger.sole().filter(|d| d.unit.is_none())
            }),
        }
        .ok_or_else(|| {
            RecordError(Problem::UnknownDevice {
                logger: logger.id.clone(),
                key: format!("unit {unit}"),
            })
        })?;
        let Some(decoder) = decoder else {
            return Err(rejected(
                Reason::DecodeFailed,
                "no register maps are loaded to decode blocks".into(),
            ));
        };
        let readings = decoder.decode(&device.model, &blocks).map_err(|e| {
            rejected(
                Reason::DecodeFailed,
                format!("unit {unit} ({}): {e}", device.model),
            )
        })?;
        samples.push(Sample {
            device: device.id.clone(),
            at,
            readings,
        });
    }
    Ok(samples)
}

fn parse_block(
    i: usize,
    b: &Map<String, Value>,
    default_at: Option<DateTime<Utc>>,
) -> Result<(RegisterBlock, DateTime<Utc>), RecordError> {
    let int = |key: &str, max: u64| -> Result<u64, RecordError> {
        match b.get(key) {
            Some(Value::Number(n)) => n.as_u64().filter(|x| *x <= max).ok_or_else(|| {
                rejected(
                    Reason::WrongType,
                    format!("blocks[{i}].{key} = {n} is not an integer 0..={max}"),
                )
            }),
            Some(other) => Err(rejected(
                Reason::WrongType,
                format!(
                    "blocks[{i}].{key} is {}, expected an integer",
                    kind_of(other)
                ),
            )),
            None => Err(rejected(
                Reason::MissingField,
                format!("blocks[{i}] has no '{key}'"),
            )),
        }
    };
    let unit = int("unit", 255)? as u8;
    let function = int("fc", 255)? as u8;
    if !matches!(function, 3 | 4) {
        return Err(rejected(
            Reason::WrongType,
            format!("blocks[{i}].fc = {function}: only 3 (holding) and 4 (input) are forwarded"),
        ));
    }
    let start = int("start", 65_535)? as u16;
    let at = match b.get("ts") {
        Some(v) => parse_time(v, TimeFormat::Auto).ok_or_else(|| {
            rejected(
                Reason::BadTimestamp,
                format!("blocks[{i}].ts = {} is not a time", excerpt(&v.to_string())),
            )
        })?,
        None => default_at.ok_or_else(|| {
            rejected(
                Reason::MissingField,
                format!("neither the message nor blocks[{i}] has a 'ts'"),
            )
        })?,
    };
    let bytes = match (b.get("hex"), b.get("b64")) {
        (Some(Value::String(h)), None) => {
            let h: String = h.chars().filter(|c| !c.is_whitespace()).collect();
            if h.len() % 4 != 0 {
                return Err(rejected(
                    Reason::TruncatedBlock,
                    format!(
                        "blocks[{i}].hex has {} hex digits, not a whole number of registers (4 per register)",
                        h.len()
                    ),
                ));
            }
            hex::decode(&h).map_err(|e| {
                rejected(
                    Reason::WrongType,
                    format!("blocks[{i}].hex is not hex: {e}"),
                )
            })?
        }
        (None, Some(Value::String(s))) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| {
                    rejected(
                        Reason::WrongType,
                        format!("blocks[{i}].b64 is not base64: {e}"),
                    )
                })?;
            if raw.len() % 2 != 0 {
                return Err(rejected(
                    Reason::TruncatedBlock,
                    format!(
                        "blocks[{i}].b64 holds {} bytes, not whole registers",
                        raw.len()
                    ),
                ));
            }
            raw
        }
        (Some(_), Some(_)) => {
            return Err(rejected(
                Reason::WrongType,
                format!("blocks[{i}] has both 'hex' and 'b64'; send one"),
            ))
        }
        (None, None) => {
            return Err(rejected(
                Reason::MissingField,
                format!("blocks[{i}] has no 'hex' or 'b64' data"),
            ))
        }
        _ => {
            return Err(rejected(
                Reason::WrongType,
                format!("blocks[{i}] register data must be a string"),
            ))
        }
    };
    let words: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    if words.is_empty() {
        return Err(rejected(
            Reason::TruncatedBlock,
            format!("blocks[{i}] holds no registers"),
        ));
    }
    if let Some(count) = b.get("count") {
        let expected = count.as_u64().ok_or_else(|| {
            rejected(
                Reason::WrongType,
                format!("blocks[{i}].count is not an integer"),
            )
        })?;
        if expected != words.len() as u64 {
            return Err(rejected(
                Reason::TruncatedBlock,
                format!(
                    "blocks[{i}] declares {expected} registers but carries {}",
                    words.len()
                ),
            ));
        }
    }
    if u32::from(start) + words.len() as u32 > 65_536 {
        return Err(rejected(
            Reason::WrongType,
            format!("blocks[{i}] runs past register 65535"),
        ));
    }
    Ok((
        RegisterBlock {
            unit,
            function,
            start,
            words,
        },
        at,
    ))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 120 characters of text for a problem's detail.
pub fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn excerpt_bytes(b: &[u8]) -> String {
    let head = &b[..b.len().min(32)];
    let mut out = hex::encode(head);
    if b.len() > head.len() {
        out.push('…');
    }
    format!("0x{out}")
}

/// A small deployment with two loggers, for the tests of this crate and of the service's MQTT
/// collector (feature `testing`).
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::expect_used)]
pub mod tests_support {
    use crate::config::Deployment;
    use std::collections::HashSet;

    pub fn deployment() -> Deployment {
        let text = r#"
[mqtt]
embedded = true
topic_prefix = "t1"
[[mqtt.loggers]]
id = "L1"
station = "S1"
template = "json_generic"
[[mqtt.loggers]]
id = "L2"
station = "S1"
template = "modbus_forward"

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
transport = { type = "mqtt", logger = "L1", unit = 1 }
rated_power_w = 50000
[[devices]]
id = "S1-INV2"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "mqtt", logger = "L1", unit = 2 }
rated_power_w = 50000
[[devices]]
id = "S1-INV3"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "mqtt", logger = "L2", unit = 1 }
rated_power_w = 50000
"#;
        let models: HashSet<String> = ["huawei_sun2000".to_owned()].into();
        Deployment::from_str_with_env("test.toml", text, &[], &models).expect("deployment")
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::deployment;
    use super::*;
    use crate::domain::{DeviceId, Metric};
    use crate::logger::template::{load_templates, Directory};

    fn dir() -> Directory {
        Directory::build(&deployment(), &load_templates(None).expect("templates")).expect("dir")
    }

    const JSON_TOPIC: &str = "t1/sunshare/S1/L1/telemetry";

    fn reasons(d: &Decoded) -> Vec<String> {
        d.problems
            .iter()
            .map(|p| match p {
                Problem::Rejected { reason, .. } => reason.label().to_owned(),
                Problem::UnknownDevice { logger, key } => format!("unknown {logger} {key}"),
            })
            .collect()
    }

    #[test]
    fn json_record_maps_fields_scales_and_states() {
        let d = decode_message(
            &dir(),
            None,
            JSON_TOPIC,
            br#"{"ts": 1763884800, "addr": 2, "data": {"pac": 48210, "etotal": "184233.7", "temp": null, "status": 1, "extra": "x"}}"#,
            4096,
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let s = &d.samples[0];
        assert_eq!(s.device, DeviceId::new("S1-INV2"));
        assert_eq!(s.at.timestamp(), 1_763_884_800);
        assert_eq!(s.readings.get(Metric::AcPowerW), Some(48_210.0));
        assert_eq!(
            s.readings.get(Metric::EnergyLifetimeWh),
            Some(184_233_700.0)
        );
        assert_eq!(s.readings.get(Metric::TemperatureC), None);
        assert_eq!(s.readings.state, Some(DeviceState::Producing));
    }

    #[test]
    fn backlog_arrays_keep_their_own_times_and_bad_records_alone() {
        let d = decode_message(
            &dir(),
            None,
            JSON_TOPIC,
            br#"[{"ts": 1763884500000, "addr": 1, "data": {"pac": 1}},
                 {"ts": "2025-11-23T08:00:00Z", "addr": 1, "data": {"pac": "n/a"}},
                 {"ts": "2025-11-23T08:05:00+08:00", "addr": 1, "data": {"pac": 3}}]"#,
            4096,
        );
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.samples[0].at.timestamp(), 1_763_884_500);
        assert_eq!(d.samples[1].at.to_rfc3339(), "2025-11-23T00:05:00+00:00");
        assert_eq!(reasons(&d), vec!["wrong_type"]);
    }

    #[test]
    fn each_bad_input_has_its_reason() {
        let dir = dir();
        let cases: [(&[u8], &str); 10] = [
            (
                b"{\"ts\": 1, \"addr\": 1, \"data\": {\"pac\": 1}",
                "malformed_json",
            ),
            (b"\xff\xfe\x00garbage\x81", "binary_garbage"),
            (b"{\"addr\": 1, \"data\": {\"pac\": 1}}", "missing_field"),
            (
                b"{\"ts\": \"yesterday\", \"addr\": 1, \"data\": {\"pac\": 1}}",
                "bad_timestamp",
            ),
            (
                b"{\"ts\": 1763884800, \"addr\": 1, \"data\": [1,2]}",
                "wrong_type",
            ),
            (
                b"{\"ts\": 1763884800, \"addr\": 1, \"data\": {\"pac\": true}}",
                "wrong_type",
            ),
            (
                b"{\"ts\": 1763884800, \"addr\": 1, \"data\": {\"other\": 5}}",
                "no_values",
            ),
            (
                b"{\"ts\": 1763884800, \"data\": {\"pac\": 5}}",
                "missing_field",
            ),
            (
                b"{\"ts\": 1763884800, \"addr\": 7, \"data\": {\"pac\": 5}}",
                "unknown L1 unit 7",
            ),
            (b"42", "wrong_type"),
        ];
        for (payload, want) in cases {
            let d = decode_message(&dir, None, JSON_TOPIC, payload, 4096);
            assert!(d.samples.is_empty(), "{want}");
            assert_eq!(
                reasons(&d),
                vec![want.to_owned()],
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        let big = vec![b' '; 5000];
        assert_eq!(
            reasons(&decode_message(&dir, None, JSON_TOPIC, &big, 4096)),
            vec!["oversized"]
        );
        assert_eq!(
            reasons(&decode_message(
                &dir,
                None,
                "t1/sunshare/S1/L404/telemetry",
                b"{}",
                4096
            )),
            vec!["unknown L404 "]
        );
        assert_eq!(
            reasons(&decode_message(&dir, None, "t1/elsewhere", b"{}", 4096)),
            vec!["unexpected_topic"]
        );
    }

    #[derive(Debug)]
    struct SumDecoder;
    impl BlockDecoder for SumDecoder {
        fn decode(&self, model: &str, blocks: &[RegisterBlock]) -> Result<Readings, String> {
            assert_eq!(model, "huawei_sun2000");
            let mut r = Readings::default();
            let sum: u32 = blocks
                .iter()
                .flat_map(|b| b.words.iter().map(|w| u32::from(*w)))
                .sum();
            r.set(Metric::AcPowerW, f64::from(sum));
            Ok(r)
        }
    }

    #[test]
    fn register_blocks_hex_and_base64() {
        let d = decode_message(
            &dir(),
            Some(&SumDecoder),
            "t1/sunshare/S1/L2/registers",
            br#"{"ts": 1763884800, "blocks": [
                {"unit": 1, "fc": 3, "start": 32080, "count": 2, "hex": "0001 0002"},
                {"unit": 1, "fc": 3, "start": 32106, "b64": "AAMABA=="}]}"#,
            4096,
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.samples.len(), 1);
        assert_eq!(d.samples[0].readings.get(Metric::AcPowerW), Some(10.0));
    }

    #[test]
    fn truncated_and_wrong_blocks_are_refused() {
        let dir = dir();
        let topic = "t1/sunshare/S1/L2/registers";
        let cases: [(&[u8], &str); 7] = [
            (br#"{"ts": 1, "blocks": [{"unit": 1, "fc": 3, "start": 0, "hex": "00010"}]}"#, "truncated_block"),
            (br#"{"ts": 1, "blocks": [{"unit": 1, "fc": 3, "start": 0, "count": 3, "hex": "00010002"}]}"#, "truncated_block"),
            (br#"{"ts": 1, "blocks": [{"unit": 1, "fc": 3, "start": 0, "b64": "AAMA"}]}"#, "truncated_block"),
            (br#"{"ts": 1, "blocks": [{"unit": 1, "fc": 6, "start": 0, "hex": "0001"}]}"#, "wrong_type"),
            (br#"{"ts": 1, "blocks": [{"unit": 1, "fc": 3, "start": "0", "hex": "0001"}]}"#, "wrong_type"),
            (br#"{"blocks": [{"unit": 1, "fc": 3, "start": 0, "hex": "0001"}]}"#, "missing_field"),
            (br#"{"ts": 1, "blocks": [{"unit": 9, "fc": 3, "start": 0, "hex": "0001"}]}"#, "unknown L2 unit 9"),
        ];
        for (payload, want) in cases {
            let d = decode_message(&dir, Some(&SumDecoder), topic, payload, 4096);
            assert!(d.samples.is_empty(), "{want}");
            assert_eq!(
                reasons(&d),
                vec![want.to_owned()],
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
