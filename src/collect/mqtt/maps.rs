//! The register maps (`crate::registers`) seen from the MQTT path: decoding forwarded blocks and
//! planning the poll table a logger repeats, so one map serves the Modbus poller and the loggers.

use super::payload::{BlockDecoder, RegisterBlock};
use super::setup::{PollPlanner, PollRead};
use crate::domain::{Metric, Readings};
use crate::registers::{Catalog, Decoded, ReadBlock};
use std::sync::Arc;

/// A catalog of register maps used as decoder and poll planner.
#[derive(Debug, Clone)]
pub struct CatalogMaps(pub Arc<Catalog>);

impl CatalogMaps {
    pub fn new(catalog: Catalog) -> CatalogMaps {
        CatalogMaps(Arc::new(catalog))
    }
}

/// The built-in maps plus the deployment's `collect.firmware_dir`.
pub fn for_deployment(
    d: &crate::config::Deployment,
) -> Result<CatalogMaps, crate::registers::MapError> {
    let catalog = match &d.collect.firmware_dir {
        Some(dir) => Catalog::with_dir(dir)?,
        None => Catalog::builtin()?,
    };
    Ok(CatalogMaps::new(catalog))
}

/// Splits a map's read plan into requests of at most `max` registers (a logger's limit).
pub fn split_plan(plan: &[ReadBlock], max: u16) -> Vec<PollRead> {
    let max = max.max(1);
    let mut out = Vec::new();
    for b in plan {
        let mut start = b.start;
        let mut left = b.count;
        while left > 0 {
            let n = left.min(max);
            out.push(PollRead {
                function: b.function.code(),
                start,
                count: n,
            });
            left -= n;
            start = start.saturating_add(n);
        }
    }
    out
}

impl BlockDecoder for CatalogMaps {
    fn decode(&self, model: &str, blocks: &[RegisterBlock]) -> Result<Readings, String> {
        let map = self
            .0
            .get(model)
            .ok_or_else(|| format!("register map '{model}' does not exist"))?;
        if map.is_sunspec() && map.chain().is_none() {
            return Err("SunSpec maps need the model chain walked over Modbus TCP; \
                        forward a fixed-address map instead"
                .into());
        }
        let fc = map.function().code();
        if let Some(b) = blocks.iter().find(|b| b.function != fc) {
            return Err(format!(
                "block at {} was read with function {} but map '{model}' reads with function {fc}",
                b.start, b.function
            ));
        }
        let pairs: Vec<(u16, Vec<u16>)> =
            blocks.iter().map(|b| (b.start, b.words.clone())).collect();
        map.decode(&pairs).map_err(|e| e.to_string())
    }
}

impl PollPlanner for CatalogMaps {
    fn poll_table(
        &self,
        model: &str,
        max_registers_per_read: u16,
    ) -> Result<Vec<PollRead>, String> {
        let map = self
            .0
            .get(model)
            .ok_or_else(|| format!("register map '{model}' does not exist"))?;
        if map.is_sunspec() && map.chain().is_none() {
            return Err("a SunSpec device's addresses depend on its model chain; \
                        read it with `sunshare probe --model sunspec` first"
                .into());
        }
        Ok(split_plan(map.poll_plan(), max_registers_per_read))
    }

    fn register_of(&self, model: &str, metric: Metric) -> Option<String> {
        // The map's fields are private to `registers`: find the metric's registers as the ones
        // that change when only that metric is encoded.
        let map = self.0.get(model)?;
        if !map.metrics().contains(&metric) {
            return None;
        }
        let base = map.encode(&Decoded::default());
        // Probe with a few values: one may round to the sentinel or overflow a register's range.
        let changed: Vec<u16> = [1234.5, 123.0, 1.5]
            .iter()
            .map(|v| {
                let mut with = Decoded::default();
                with.readings.set(metric, *v);
                let img = map.encode(&with);
                img.iter()
                    .filter(|(a, w)| base.get(a) != Some(w))
                    .map(|(a, _)| *a)
                    .collect::<Vec<u16>>()
            })
            .find(|c| !c.is_empty())?;
        let first = *changed.first()?;
        let fc = map.function().code();
        Some(if changed.len() == 1 {
            format!("fc {fc} register {first}")
        } else {
            format!(
                "fc {fc} registers {first}..{}",
                first + changed.len() as u16 - 1
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::mqtt::payload::{decode_message, tests_support::deployment};
    use crate::collect::mqtt::template::{load_templates, Directory};
    use crate::registers::Catalog;

    fn maps() -> CatalogMaps {
        CatalogMaps::new(Catalog::builtin().expect("catalog"))
    }

    #[test]
    fn poll_table_respects_the_logger_limit_and_covers_the_plan() {
        let m = maps();
        let map = m.0.get("huawei_sun2000").expect("map");
        let reads = m.poll_table("huawei_sun2000", 64).expect("table");
        assert!(reads.iter().all(|r| r.count <= 64 && r.function == 3));
        let planned: u32 = map.poll_plan().iter().map(|b| u32::from(b.count)).sum();
        let polled: u32 = reads.iter().map(|r| u32::from(r.count)).sum();
        assert_eq!(planned, polled);
        assert!(m
            .register_of("huawei_sun2000", Metric::AcPowerW)
            .is_some_and(|r| r.contains("32080")));
    }

    /// The same registers the Modbus poller would read, forwarded by a logger in 64-register
    /// pieces as hex, decode to the same readings.
    #[test]
    fn forwarded_blocks_decode_like_the_poller() {
        let m = maps();
        let map = m.0.get("huawei_sun2000").expect("map");
        let mut want = Decoded::default();
        want.readings.set(Metric::AcPowerW, 41_234.0);
        want.readings.set(Metric::EnergyLifetimeWh, 184_233_700.0);
        let img = map.encode(&want);
        let blocks: Vec<serde_json::Value> = split_plan(map.poll_plan(), 64)
            .iter()
            .map(|r| {
                let words: Vec<u8> = (0..r.count)
                    .flat_map(|i| img.get(&(r.start + i)).copied().unwrap_or(0).to_be_bytes())
                    .collect();
                serde_json::json!({"unit": 1, "fc": r.function, "start": r.start, "hex": hex::encode(words)})
            })
            .collect();
        let payload = serde_json::json!({"ts": 1763884800, "blocks": blocks}).to_string();
        let dir = Directory::build(&deployment(), &load_templates(None).expect("templates"))
            .expect("dir");
        let d = decode_message(
            &dir,
            Some(&m),
            "t1/sunshare/S1/L2/registers",
            payload.as_bytes(),
            1 << 20,
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let r = &d.samples[0].readings;
        assert_eq!(r.get(Metric::AcPowerW), Some(41_234.0));
        assert_eq!(r.get(Metric::EnergyLifetimeWh), Some(184_233_700.0));

        // One block short: the decoder names the missing register.
        let short = serde_json::json!({"ts": 1763884800, "blocks": &blocks[..blocks.len() - 1]})
            .to_string();
        let d = decode_message(
            &dir,
            Some(&m),
            "t1/sunshare/S1/L2/registers",
            short.as_bytes(),
            1 << 20,
        );
        assert!(d.samples.is_empty());
        assert!(
            matches!(&d.problems[0], crate::collect::mqtt::Problem::Rejected { reason: crate::collect::mqtt::Reason::DecodeFailed, detail } if detail.contains("register")),
            "{:?}",
            d.problems
        );
    }
}
