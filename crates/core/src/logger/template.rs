//! Logger templates (`firmware-config/loggers/*.toml`): how one model of 4G data logger names its
//! topics and shapes its payloads, and the directory that maps a topic to a configured logger and its
//! devices.
//!
//! Pure data and lookups: no I/O beyond reading template files at start-up.

use crate::config::Deployment;
use crate::domain::{DeviceId, DeviceState, Metric, StationId, Transport};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The templates shipped in the binary, so a deployment needs no files beside its config.
const BUILTIN: [(&str, &str); 2] = [
    (
        "json_generic",
        include_str!("../../../../firmware-config/loggers/json_generic.toml"),
    ),
    (
        "modbus_forward",
        include_str!("../../../../firmware-config/loggers/modbus_forward.toml"),
    ),
];

/// What a logger template or the logger directory got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("logger template {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read logger templates in {dir}: {message}")]
    Io { dir: String, message: String },
    #[error("mqtt.loggers[{index}] ('{logger}'): {message}")]
    Logger {
        index: usize,
        logger: String,
        message: String,
    },
    #[error("device '{device}': {message}")]
    Device { device: String, message: String },
}

/// The two payload families a logger can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// Named values, mapped field by field to normalised metrics.
    Json,
    /// Raw register blocks the logger read over RS-485, decoded with the inverter's register map.
    Registers,
}

/// How a JSON time field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    EpochS,
    EpochMs,
    Rfc3339,
    /// Numbers below 10^11 are seconds, larger ones milliseconds; strings are RFC 3339.
    #[default]
    Auto,
}

/// One vendor field: the metric it feeds and the factor that turns its unit into the metric's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawFieldMap")]
pub enum FieldMap {
    Metric(Metric),
    Scaled { metric: Metric, scale: f64 },
}

/// The file form: `"ac_power_w"` or `{ metric = "energy_lifetime_wh", scale = 1000.0 }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawFieldMap {
    Name(String),
    Table {
        metric: String,
        #[serde(default = "one")]
        scale: f64,
    },
}

impl TryFrom<RawFieldMap> for FieldMap {
    type Error = String;
    fn try_from(raw: RawFieldMap) -> Result<Self, Self::Error> {
        match raw {
            RawFieldMap::Name(n) => n.parse().map(FieldMap::Metric).map_err(|e| e.to_string()),
            RawFieldMap::Table { metric, scale } => {
                if !scale.is_finite() || scale == 0.0 {
                    return Err(format!("scale {scale} must be a finite, non-zero number"));
                }
                let metric = metric.parse::<Metric>().map_err(|e| e.to_string())?;
                Ok(FieldMap::Scaled { metric, scale })
            }
        }
    }
}

fn one() -> f64 {
    1.0
}

impl FieldMap {
    pub fn metric(&self) -> Metric {
        match self {
            FieldMap::Metric(m) | FieldMap::Scaled { metric: m, .. } => *m,
        }
    }
    pub fn scale(&self) -> f64 {
        match self {
            FieldMap::Metric(_) => 1.0,
            FieldMap::Scaled { scale, .. } => *scale,
        }
    }
}

/// The shape of a JSON telemetry payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonLayout {
    /// The field holding the time the logger read the values.
    pub time: String,
    #[serde(default)]
    pub time_format: TimeFormat,
    /// A field with the Modbus unit id of the device the record is about.
    #[serde(default)]
    pub unit: Option<String>,
    /// A field with the Sunshare device id (loggers that are told the id at commissioning).
    #[serde(default)]
    pub device: Option<String>,
    /// The object holding the values (`""`: the record itself).
    #[serde(default)]
    pub values: String,
    /// A field with the device's status code, translated through `states`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub states: BTreeMap<String, DeviceState>,
    /// Vendor field name -> metric.
    pub fields: BTreeMap<String, FieldMap>,
}

/// How a register-forwarding logger is set up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterLayout {
    /// The most registers this logger reads in one request (many DTUs want 64 or fewer).
    #[serde(default = "default_max_read")]
    pub max_registers_per_read: u16,
    /// How the logger writes register bytes: `hex` or `base64`.
    #[serde(default)]
    pub encoding: BlockEncoding,
}

fn default_max_read() -> u16 {
    64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BlockEncoding {
    #[default]
    Hex,
    Base64,
}

/// One logger model as `firmware-config/loggers/<name>.toml` describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggerTemplate {
    pub name: String,
    pub description: String,
    pub payload: PayloadKind,
    /// Topic the logger publishes on: `/`-separated, with whole-segment placeholders `{logger}`
    /// (required), `{station}`, `{device}`, `{unit}`.
    pub topic: String,
    /// How often the logger polls and publishes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default)]
    pub json: Option<JsonLayout>,
    #[serde(default)]
    pub registers: Option<RegisterLayout>,
    /// Free text printed by `sunshare logger-config` for the field technician.
    #[serde(default)]
    pub setup_notes: Vec<String>,
}

impl LoggerTemplate {
    /// Parses and checks a template; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<LoggerTemplate, TemplateError> {
        let invalid = |message: String| TemplateError::Invalid {
            file: file.to_owned(),
            message,
        };
        let t: LoggerTemplate = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        TopicPattern::parse(&t.topic).map_err(|m| invalid(format!("topic: {m}")))?;
        match t.payload {
            PayloadKind::Json if t.json.is_none() => {
                return Err(invalid("payload = \"json\" needs a [json] table".into()))
            }
            PayloadKind::Registers if t.json.is_some() => {
                return Err(invalid(
                    "payload = \"registers\" takes a [registers] table, not [json]".into(),
                ))
            }
            _ => {}
        }
        if let Some(r) = &t.registers {
            if !(1..=125).contains(&r.max_registers_per_read) {
                return Err(invalid(
                    "registers.max_registers_per_read must be 1..=125".into(),
                ));
            }
        }
        if t.interval.is_zero() {
            return Err(invalid("interval must be positive".into()));
        }
        Ok(t)
    }
}

/// The built-in templates plus those in `extra_dir` (which replace built-ins of the same name).
pub fn load_templates(
    extra_dir: Option<&Path>,
) -> Result<BTreeMap<String, Arc<LoggerTemplate>>, TemplateError> {
    let mut out = BTreeMap::new();
    for (name, text) in BUILTIN {
        let t = LoggerTemplate::parse(&format!("firmware-config/loggers/{name}.toml"), text)?;
        out.insert(name.to_owned(), Arc::new(t));
    }
    if let Some(dir) = extra_dir {
        let io = |e: std::io::Error| TemplateError::Io {
            dir: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let file = path.display().to_string();
            let t = LoggerTemplate::parse(&file, &text)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if stem != t.name {
                return Err(TemplateError::Invalid {
                    file,
                    message: format!("name = \"{}\" differs from the file name", t.name),
                });
            }
            out.insert(stem, Arc::new(t));
        }
    }
    Ok(out)
}

/// A placeholder in a topic pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Station,
    Logger,
    Device,
    Unit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(Var),
}

/// A topic layout such as `sunshare/{station}/{logger}/telemetry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    segments: Vec<Segment>,
}

/// What a topic told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    pub station: Option<String>,
    pub logger: String,
    pub device: Option<String>,
    pub unit: Option<String>,
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<TopicPattern, String> {
        if pattern.is_empty() {
            return Err("the topic is empty".into());
        }
        let mut segments = Vec::new();
        let mut has_logger = false;
        for seg in pattern.split('/') {
            if seg.contains('+') || seg.contains('#') {
                return Err(format!(
                    "'{seg}': wildcards are derived from placeholders; write {{logger}} etc."
                ));
            }
            let s = match seg {
                "{station}" => Segment::Var(Var::Station),
                "{logger}" => {
                    has_logger = true;
                    Segment::Var(Var::Logger)
                }
                "{device}" => Segment::Var(Var::Device),
                "{unit}" => Segment::Var(Var::Unit),
                other if other.contains('{') || other.contains('}') => {
                    return Err(format!(
                    "'{other}': placeholders must fill a whole segment and be one of {{station}}, {{logger}}, {{device}}, {{unit}}"
                ))
                }
                other => Segment::Literal(other.to_owned()),
            };
            segments.push(s);
        }
        if !has_logger {
            return Err("the topic must contain {logger}".into());
        }
        Ok(TopicPattern { segments })
    }

    /// Prepends a literal prefix such as `county-a/` (split on `/`).
    pub fn with_prefix(mut self, prefix: &str) -> TopicPattern {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            let mut segs: Vec<Segment> = prefix
                .split('/')
                .map(|s| Segment::Literal(s.to_owned()))
                .collect();
            segs.append(&mut self.segments);
            self.segments = segs;
        }
        self
    }

    /// The subscription filter: every placeholder becomes `+`.
    pub fn filter(&self) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Var(_) => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn matches(&self, topic: &str) -> Option<Captures> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut c = Captures::default();
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Var(Var::Station) => c.station = Some(part.to_owned()),
                Segment::Var(Var::Logger) => c.logger = part.to_owned(),
                Segment::Var(Var::Device) => c.device = Some(part.to_owned()),
                Segment::Var(Var::Unit) => c.unit = Some(part.to_owned()),
            }
        }
        Some(c)
    }

    /// The concrete topic for one logger (and device or unit, when the pattern has them).
    pub fn render(
        &self,
        station: &str,
        logger: &str,
        device: Option<&str>,
        unit: Option<u8>,
    ) -> String {
        let unit = unit.map(|u| u.to_string());
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.clone(),
                Segment::Var(Var::Station) => station.to_owned(),
                Segment::Var(Var::Logger) => logger.to_owned(),
                Segment::Var(Var::Device) => device.unwrap_or("{device}").to_owned(),
                Segment::Var(Var::Unit) => unit.clone().unwrap_or_else(|| "{unit}".to_owned()),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn has(&self, var: Var) -> bool {
        self.segments.contains(&Segment::Var(var))
    }
}

/// A device behind a logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDevice {
    pub id: DeviceId,
    /// Its register map (file stem in `firmware-config/inverters/`).
    pub model: String,
    pub unit: Option<u8>,
}

/// A configured logger with everything needed to read its messages.
#[derive(Debug, Clone)]
pub struct LoggerEntry {
    pub id: String,
    pub station: StationId,
    pub template: Arc<LoggerTemplate>,
    pub devices: Vec<LoggedDevice>,
}

impl LoggerEntry {
    pub fn by_unit(&self, unit: u8) -> Option<&LoggedDevice> {
        self.devices.iter().find(|d| d.unit == Some(unit))
    }
    pub fn by_id(&self, id: &str) -> Option<&LoggedDevice> {
        self.devices.iter().find(|d| d.id.as_str() == id)
    }
    /// The device a record without a unit or id is about: only when the logger has just one.
    pub fn sole(&self) -> Option<&LoggedDevice> {
        match self.devices.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

/// Topic -> logger -> devices, built once from the deployment.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    loggers: HashMap<String, LoggerEntry>,
    /// One pattern per template in use (with the deployment's prefix), in template-name order.
    patterns: Vec<(String, TopicPattern)>,
}

impl Directory {
    pub fn build(
        deployment: &Deployment,
        templates: &BTreeMap<String, Arc<LoggerTemplate>>,
    ) -> Result<Directory, TemplateError> {
        let Some(mqtt) = &deployment.mqtt else {
            return Ok(Directory::default());
        };
        let mut loggers: HashMap<String, LoggerEntry> = HashMap::new();
        for (index, l) in mqtt.loggers.iter().enumerate() {
            let err = |message: String| TemplateError::Logger {
                index,
                logger: l.id.clone(),
                message,
            };
            if l.id.is_empty() || l.id.contains(['/', '+', '#']) {
                return Err(err(
                    "a logger id must be non-empty without '/', '+' or '#'".into()
                ));
            }
            let template = templates.get(&l.template).ok_or_else(|| {
                err(format!(
                    "template '{}' does not exist (known: {})",
                    l.template,
                    templates.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            if deployment.station(l.station.as_str()).is_none() {
                return Err(err(format!("station '{}' is not declared", l.station)));
            }
            let entry = LoggerEntry {
                id: l.id.clone(),
                station: l.station.clone(),
                template: Arc::clone(template),
                devices: Vec::new(),
            };
            if loggers.insert(l.id.clone(), entry).is_some() {
                return Err(err("the same logger id is declared twice".into()));
            }
        }
        for d in &deployment.devices {
            let Transport::Mqtt { logger, unit } = &d.transport else {
                continue;
            };
            let entry = loggers
                .get_mut(logger)
                .ok_or_else(|| TemplateError::Device {
                    device: d.id.to_string(),
                    message: format!("logger '{logger}' is not declared in [[mqtt.loggers]]"),
                })?;
            if entry.station != d.station {
                return Err(TemplateError::Device {
                    device: d.id.to_string(),
                    message: format!(
                        "it is at station '{}' but logger '{logger}' is at station '{}'",
                        d.station, entry.station
                    ),
                });
            }
            if let Some(u) = unit {
                if entry.by_unit(*u).is_some() {
                    return Err(TemplateError::Device {
                        device: d.id.to_string(),
                        message: format!("unit {u} on logger '{logger}' is used twice"),
                    });
                }
            }
            entry.devices.push(LoggedDevice {
                id: d.id.clone(),
                model: d.model.clone(),
                unit: *unit,
            });
        }
        let mut used: Vec<&str> = loggers.values().map(|l| l.template.name.as_str()).collect();
        used.sort_unstable();
        used.dedup();
        let mut patterns = Vec::new();
        for name in used {
            if let Some(t) = templates.get(name) {
                let p = TopicPattern::parse(&t.topic)
                    .map_err(|message| TemplateError::Invalid {
                        file: name.to_owned(),
                        message,
                    })?
                    .with_prefix(&mqtt.topic_prefix);
                patterns.push((name.to_owned(), p));
            }
        }
        Ok(Directory { loggers, patterns })
    }

    /// The distinct subscription filters.
    pub fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.patterns.iter().map(|(_, p)| p.filter()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// Which template layout a topic follows, and what it captured. A logger id that matches a
    /// pattern but is not configured still resolves (its template is unknown: `None`).
    pub fn resolve(&self, topic: &str) -> Option<(Captures, Option<&LoggerEntry>)> {
        let mut first = None;
        for (name, p) in &self.patterns {
            if let Some(c) = p.matches(topic) {
                match self.loggers.get(&c.logger) {
                    Some(l) if &l.template.name == name => return Some((c, Some(l))),
                    _ => {
                        if first.is_none() {
                            first = Some(c);
                        }
                    }
                }
            }
        }
        first.map(|c| (c, None))
    }

    pub fn logger(&self, id: &str) -> Option<&LoggerEntry> {
        self.loggers.get(id)
    }

    pub fn loggers_at(&self, station: &str) -> Vec<&LoggerEntry> {
        let mut v: Vec<_> = self
            .loggers
            .values()
            .filter(|l| l.station.as_str() == station)
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The topic pattern a template publishes on in this deployment (with the prefix).
    pub fn pattern_of(&self, template: &str) -> Option<&TopicPattern> {
        self.patterns
            .iter()
            .find(|(n, _)| n == template)
            .map(|(_, p)| p)
    }

    pub fn is_empty(&self) -> bool {
        self.loggers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_parse() {
        let t = load_templates(None).expect("templates");
        assert!(t.contains_key("json_generic"));
        assert!(t.contains_key("modbus_forward"));
        let j = &t["json_generic"];
        assert_eq!(j.payload, PayloadKind::Json);
        let fields = &j.json.as_ref().expect("json").fields;
        assert!(fields
            .values()
            .any(|f| f.metric() == Metric::EnergyLifetimeWh));
    }

    #[test]
    fn patterns_filter_match_and_render() {
        let p = TopicPattern::parse("sunshare/{station}/{logger}/telemetry")
            .expect("pattern")
            .with_prefix("run42/");
        assert_eq!(p.filter(), "run42/sunshare/+/+/telemetry");
        let c = p
            .matches("run42/sunshare/S1/L9/telemetry")
            .expect("matches");
        assert_eq!(c.logger, "L9");
        assert_eq!(c.station.as_deref(), Some("S1"));
        assert!(p.matches("run42/sunshare/S1/L9/other").is_none());
        assert!(p.matches("run42/sunshare/S1/telemetry").is_none());
        assert_eq!(
            p.render("S1", "L9", None, None),
            "run42/sunshare/S1/L9/telemetry"
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(TopicPattern::parse("a/+/b").is_err());
        assert!(
            TopicPattern::parse("a/{station}/b").is_err(),
            "needs logger"
        );
        assert!(TopicPattern::parse("a/x{logger}").is_err());
        assert!(TopicPattern::parse("a/{serial}/{logger}").is_err());
    }

    #[test]
    fn template_errors_name_the_problem() {
        let e = LoggerTemplate::parse(
            "x.toml",
            "name='x'\ndescription=''\npayload='json'\ntopic='a/{logger}'\ninterval='1m'\n",
        )
        .expect_err("needs json table");
        assert!(e.to_string().contains("[json]"), "{e}");
        let e = LoggerTemplate::parse(
            "x.toml",
            "name='x'\ndescription=''\npayload='json'\ntopic='a/{logger}'\ninterval='1m'\n[json]\ntime='ts'\n[json.fields]\npac='power'\n",
        )
        .expect_err("bad metric");
        assert!(e.to_string().contains("unknown metric"), "{e}");
    }
}
