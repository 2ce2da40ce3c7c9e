//! `sunshare logger-config`: the settings a field technician loads into the data loggers of one
//! station (broker, topic, interval, poll table, JSON keys), rendered from the logger templates and
//! the register maps.

use super::template::{self, Directory, PayloadKind};
use super::Error;
use crate::config::Deployment;
use std::fmt::Write as _;

/// One Modbus read the logger repeats every interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRead {
    pub function: u8,
    pub start: u16,
    pub count: u16,
}

/// Plans the reads that cover a register map (implemented next to the register maps, so the logger
/// reads exactly what the decoder needs).
pub trait PollPlanner: std::fmt::Debug {
    fn poll_table(&self, model: &str, max_registers_per_read: u16)
        -> Result<Vec<PollRead>, String>;
    /// Where a metric lives in a register map, for JSON loggers that poll by themselves.
    fn register_of(&self, model: &str, metric: crate::domain::Metric) -> Option<String>;
}

/// Renders the logger configuration for every logger at `station`.
pub fn logger_config(
    deployment: &Deployment,
    station: &str,
    planner: Option<&dyn PollPlanner>,
) -> Result<String, Error> {
    let mqtt = deployment
        .mqtt
        .as_ref()
        .ok_or_else(|| Error::Config("the deployment has no [mqtt] table".into()))?;
    if deployment.station(station).is_none() {
        return Err(Error::Config(format!(
            "station '{station}' is not declared in the deployment"
        )));
    }
    let templates = template::load_templates(mqtt.loggers_dir.as_deref())?;
    let dir = Directory::build(deployment, &templates)?;
    let loggers = dir.loggers_at(station);
    if loggers.is_empty() {
        return Err(Error::Config(format!(
            "station '{station}' has no data logger; add [[mqtt.loggers]] with station = \"{station}\""
        )));
    }
    let broker = match (&mqtt.broker, mqtt.embedded) {
        (Some(b), _) => b.clone(),
        (None, true) => format!(
            "{} (this Sunshare's embedded broker; use the address the loggers can reach)",
            mqtt.listen
        ),
        (None, false) => "(set mqtt.broker)".to_owned(),
    };
    let mut out = String::new();
    for l in loggers {
        let t = &l.template;
        let topic = dir
            .pattern_of(&t.name)
            .map(|p| p.render(station, &l.id, None, None))
            .unwrap_or_default();
        let _ = writeln!(out, "# Data logger {} at station {station}", l.id);
        let _ = writeln!(out, "# template {}: {}", t.name, t.description);
        let _ = writeln!(out, "[mqtt]");
        let _ = writeln!(out, "broker = \"{broker}\"");
        let _ = writeln!(out, "client_id = \"{}\"", l.id);
        let _ = writeln!(out, "topic = \"{topic}\"");
        let _ = writeln!(out, "qos = 1");
        let _ = writeln!(out, "retain = false");
        let _ = writeln!(out, "clean_session = false");
        if mqtt.tls.is_some() {
            let _ = writeln!(out, "tls = true");
        }
        let _ = writeln!(out, "interval_s = {}", t.interval.as_secs());
        let _ = writeln!(
            out,
            "payload = \"{}\"",
            match t.payload {
                PayloadKind::Json => "json",
                PayloadKind::Registers => "registers",
            }
        );
        let max_read = t
            .registers
            .as_ref()
            .map_or(64, |r| r.max_registers_per_read);
        if let Some(r) = &t.registers {
            let encoding = match r.encoding {
                template::BlockEncoding::Hex => "hex",
                template::BlockEncoding::Base64 => "base64",
            };
            let _ = writeln!(out, "encoding = \"{encoding}\"");
        }
        for d in &l.devices {
            let _ = writeln!(out);
            let _ = writeln!(out, "[[devices]]");
            let _ = writeln!(out, "id = \"{}\"", d.id);
            let _ = writeln!(
                out,
                "unit = {}",
                d.unit.map_or("1".to_owned(), |u| u.to_string())
            );
            let _ = writeln!(out, "register_map = \"{}\"", d.model);
            match planner.map(|p| p.poll_table(&d.model, max_read)) {
                Some(Ok(reads)) => {
                    let _ = writeln!(out, "# fc, start (PDU, 0-based), count");
                    let _ = writeln!(out, "poll = [");
                    for r in reads {
                        let _ = writeln!(
                            out,
                            "  {{ fc = {}, start = {}, count = {} }},",
                            r.function, r.start, r.count
                        );
                    }
                    let _ = writeln!(out, "]");
                }
                Some(Err(e)) => {
                    let _ = writeln!(out, "# no poll table: {e}");
                }
                None => {
                    let _ = writeln!(out, "# no poll table: register maps are not available");
                }
            }
        }
        if let Some(j) = &t.json {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "# JSON the logger sends: {{\"{}\": <epoch s>, {}\"{}\": {{ <key>: <value> }}}}",
                j.time,
                j.unit
                    .as_ref()
                    .map(|u| format!("\"{u}\": <unit>, "))
                    .unwrap_or_default(),
                j.values
            );
            let _ = writeln!(out, "[json_keys]");
            let model = l.devices.first().map(|d| d.model.as_str());
            for (key, map) in &j.fields {
                let source = match (planner, model) {
                    (Some(p), Some(m)) => {
                        p.register_of(m, map.metric()).map(|r| format!("  # {r}"))
                    }
                    _ => None,
                };
                let scale = if (map.scale() - 1.0).abs() > f64::EPSILON {
                    format!(" (Sunshare multiplies by {})", map.scale())
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{key} = \"{}{scale}\"{}",
                    map.metric(),
                    source.unwrap_or_default()
                );
            }
            if let Some(s) = &j.state {
                let _ = writeln!(out, "{s} = \"device status code\"");
            }
        }
        if !t.setup_notes.is_empty() {
            let _ = writeln!(out);
            for n in &t.setup_notes {
                let _ = writeln!(out, "# {n}");
            }
        }
        let _ = writeln!(out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_topic_interval_and_devices() {
        let d = super::super::payload::tests_support::deployment();
        let text = logger_config(&d, "S1", None).expect("config");
        assert!(
            text.contains("topic = \"t1/sunshare/S1/L1/telemetry\""),
            "{text}"
        );
        assert!(
            text.contains("topic = \"t1/sunshare/S1/L2/registers\""),
            "{text}"
        );
        assert!(text.contains("interval_s = 60"), "{text}");
        assert!(text.contains("id = \"S1-INV2\"\nunit = 2"), "{text}");
        assert!(
            text.contains("etotal = \"energy_lifetime_wh (Sunshare multiplies by 1000)\""),
            "{text}"
        );
        let e = logger_config(&d, "S404", None).expect_err("unknown station");
        assert!(e.to_string().contains("S404"));
    }
}
