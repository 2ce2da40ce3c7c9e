//! Simulated 4G data loggers: each publishes what its inverters produce (from
//! [`PlantModel`](super::weather::PlantModel)) to an MQTT broker, as JSON telemetry or as forwarded
//! register blocks, and keeps readings while its 4G link is down to upload them as a backlog burst
//! when the link returns, the way real DTUs with an offline cache do.
//!
//! For the demo, the tests and the benchmark; never used by production paths.

use super::weather::PlantModel;
use crate::collect::mqtt::RegisterBlock;
use crate::config::Deployment;
use crate::domain::Transport;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Encodes a device's current state as the register blocks its logger would read. Implemented by
/// the register-map side so the simulated logger speaks exactly what the decoder expects.
pub trait RegisterSource: Send + Sync + std::fmt::Debug {
    fn blocks(
        &self,
        model: &str,
        unit: u8,
        plant: &PlantModel,
        at: DateTime<Utc>,
        max_registers_per_read: u16,
    ) -> Result<Vec<RegisterBlock>, String>;
}

/// Register blocks from the register maps, through the same encoder and device model the Modbus
/// simulator uses, split into the logger's read size.
#[derive(Debug, Clone)]
pub struct MapSource(pub Arc<crate::registers::Catalog>);

impl MapSource {
    /// The built-in register maps.
    pub fn builtin() -> Result<MapSource, crate::registers::MapError> {
        Ok(MapSource(Arc::new(crate::registers::Catalog::builtin()?)))
    }
}

impl RegisterSource for MapSource {
    fn blocks(
        &self,
        model: &str,
        unit: u8,
        plant: &PlantModel,
        at: DateTime<Utc>,
        max_registers_per_read: u16,
    ) -> Result<Vec<RegisterBlock>, String> {
        let map = self
            .0
            .get(model)
            .ok_or_else(|| format!("register map '{model}' does not exist"))?;
        let mut inverter = super::inverter::Inverter::new(super::inverter::SimUnit {
            unit,
            map: Arc::clone(&map),
            plant: plant.clone(),
            serial: format!("SIM{unit:04}"),
            model_name: model.to_owned(),
            faults: super::inverter::FaultScript::default(),
            time_shift: ChronoDuration::zero(),
        });
        let img = map.encode(&inverter.readings(at));
        Ok(
            crate::collect::mqtt::maps::split_plan(map.poll_plan(), max_registers_per_read)
                .into_iter()
                .map(|r| RegisterBlock {
                    unit,
                    function: r.function,
                    start: r.start,
                    words: (0..r.count)
                        .map(|i| {
                            r.start
                                .checked_add(i)
                                .and_then(|a| img.get(&a).copied())
                                .unwrap_or(0)
                        })
                        .collect(),
                })
                .collect(),
        )
    }
}

/// What a simulated logger sends.
#[derive(Debug, Clone)]
pub enum SimPayload {
    /// The `json_generic` template's shape.
    Json,
    /// The `modbus_forward` template's shape, registers hex-encoded.
    Registers {
        source: Arc<dyn RegisterSource>,
        max_registers_per_read: u16,
    },
}

/// One inverter behind a simulated logger.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub unit: u8,
    /// Register map name (for the register payload).
    pub model: String,
    pub plant: PlantModel,
}

/// A window of wall-clock time in which the logger's 4G link is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One simulated data logger.
#[derive(Debug, Clone)]
pub struct SimLogger {
    pub id: String,
    /// The concrete topic it publishes on (template pattern rendered for this logger).
    pub topic: String,
    pub payload: SimPayload,
    pub interval: Duration,
    pub devices: Vec<SimDevice>,
    /// Readings for this much time before start are uploaded first, as after an outage.
    pub backlog: Duration,
    pub link_down: Vec<LinkDown>,
    /// Records per backlog message.
    pub backlog_chunk: usize,
}

/// The `json_generic` record for one device at one instant.
pub fn json_record(d: &SimDevice, at: DateTime<Utc>) -> Value {
    let p = &d.plant;
    let ac = p.ac_power_w(at);
    let producing = ac > 0.0;
    let dc = if producing { ac / 0.975 } else { 0.0 };
    let phase_v = 230.0 + (p.device_seed % 7) as f64 * 0.3;
    let phase_a = ac / 3.0 / phase_v;
    json!({
        "ts": at.timestamp(),
        "addr": d.unit,
        "data": {
            "pac": ac.round(),
            "pdc": dc.round(),
            "fac": if producing { 50.0 } else { 0.0 },
            "temp": ((25.0 + 20.0 * ac / p.rated_ac_w) * 10.0).round() / 10.0,
            "ua": phase_v, "ub": phase_v, "uc": phase_v,
            "ia": (phase_a * 100.0).round() / 100.0,
            "ib": (phase_a * 100.0).round() / 100.0,
            "ic": (phase_a * 100.0).round() / 100.0,
            // kWh, as most loggers send it; etoday in China's local day (UTC+8).
            "etoday": (p.today_wh(at, 8 * 3600) / 10.0).round() / 100.0,
            "etotal": (p.lifetime_wh(at) / 10.0).round() / 100.0,
            "status": if producing { 1 } else { 0 },
        }
    })
}

impl SimLogger {
    fn is_down(&self, at: DateTime<Utc>) -> bool {
        self.link_down.iter().any(|w| w.from <= at && at < w.to)
    }

    /// The records of one poll cycle at `at`: one per device (JSON) or one message of blocks.
    pub fn records(&self, at: DateTime<Utc>) -> Vec<Value> {
        match &self.payload {
            SimPayload::Json => self.devices.iter().map(|d| json_record(d, at)).collect(),
            SimPayload::Registers {
                source,
                max_registers_per_read,
            } => {
                let mut blocks = Vec::new();
                for d in &self.devices {
                    match source.blocks(&d.model, d.unit, &d.plant, at, *max_registers_per_read) {
                        Ok(bs) => blocks.extend(bs.into_iter().map(|b| {
                            let bytes: Vec<u8> =
                                b.words.iter().flat_map(|w| w.to_be_bytes()).collect();
                            json!({
                                "unit": b.unit, "fc": b.function, "start": b.start,
                                "count": b.words.len(), "hex": hex::encode_upper(bytes),
                            })
                        })),
                        Err(error) => warn!(%error, logger = %self.id, "cannot simulate registers"),
                    }
                }
                if blocks.is_empty() {
                    Vec::new()
                } else {
                    vec![json!({"ts": at.timestamp(), "blocks": blocks})]
                }
            }
        }
    }

    /// The poll instants of the backlog: every interval from `start - backlog` up to `start`.
    fn backlog_times(&self, start: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let step = ChronoDuration::from_std(self.interval).unwrap_or(ChronoDuration::minutes(1));
        let span = ChronoDuration::from_std(self.backlog).unwrap_or_default();
        let mut out = Vec::new();
        if step <= ChronoDuration::zero() {
            return out;
        }
        let mut t = start - span;
        while t < start {
            out.push(t);
            t += step;
        }
        out
    }
}

/// Encodes records into the messages a logger sends: one per record live, chunks of records
/// (JSON arrays, oldest first) for a backlog.
pub fn messages(records: &[Value], chunk: usize) -> Vec<Vec<u8>> {
    records
        .chunks(chunk.max(1))
        .map(|c| {
            let v = if c.len() == 1 {
                c[0].clone()
            } else {
                Value::Array(c.to_vec())
            };
            serde_json::to_vec(&v).unwrap_or_default()
        })
        .collect()
}

/// Runs one simulated logger against the broker at `broker` until cancelled.
pub async fn run_logger(broker: SocketAddr, logger: SimLogger, cancel: CancellationToken) {
    let mut opts = MqttOptions::new(
        format!("sim-{}", logger.id),
        broker.ip().to_string(),
        broker.port(),
    );
    // A real DTU keeps its session too, so QoS 1 messages in flight survive a reconnect.
    opts.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let poll_cancel = cancel.clone();
    let id = logger.id.clone();
    let poller = tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::select! {
                () = poll_cancel.cancelled() => break,
                r = eventloop.poll() => match r {
                    Ok(_) => delay = Duration::from_millis(200),
                    Err(error) => {
                        debug!(%error, logger = %id, "simulated logger lost the broker");
                        tokio::select! {
                            () = poll_cancel.cancelled() => break,
                            () = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    });
    let publish = |payload: Vec<u8>| {
        let client = client.clone();
        let topic = logger.topic.clone();
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
        }
    };

    let start = Utc::now();
    let mut buffered: Vec<Value> = logger
        .backlog_times(start)
        .into_iter()
        .flat_map(|t| logger.records(t))
        .collect();
    if !buffered.is_empty() {
        info!(logger = %logger.id, records = buffered.len(), "simulated logger uploads its backlog");
    }
    let mut ticker = tokio::time::interval(logger.interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = Utc::now();
        let records = logger.records(now);
        if logger.is_down(now) {
            buffered.extend(records);
            continue;
        }
        let mut failed = false;
        for m in messages(&std::mem::take(&mut buffered), logger.backlog_chunk) {
            if publish(m).await.is_err() {
                failed = true;
            }
        }
        for r in &records {
            if publish(serde_json::to_vec(r).unwrap_or_default())
                .await
                .is_err()
            {
                failed = true;
            }
        }
        if failed {
            warn!(logger = %logger.id, "simulated logger could not queue a message");
        }
    }
    let _ = client.try_disconnect();
    poller.abort();
}

/// Starts every logger; the returned tracker finishes when `cancel` fires.
pub fn run_loggers(
    broker: SocketAddr,
    loggers: Vec<SimLogger>,
    cancel: &CancellationToken,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    for l in loggers {
        tracker.spawn(run_logger(broker, l, cancel.child_token()));
    }
    tracker.close();
    tracker
}

/// Simulated loggers for the `[[mqtt.loggers]]` of a deployment: JSON for `json_generic` loggers,
/// register blocks (when `registers` is given) for `modbus_forward` ones. Each device's plant is
/// sized from its rated power; `backlog` is uploaded first by every logger.
pub fn for_deployment(
    deployment: &Deployment,
    registers: Option<Arc<dyn RegisterSource>>,
    interval: Duration,
    backlog: Duration,
) -> Vec<SimLogger> {
    let Some(mqtt) = &deployment.mqtt else {
        return Vec::new();
    };
    let templates = crate::collect::mqtt::template::load_templates(mqtt.loggers_dir.as_deref())
        .unwrap_or_default();
    // The counter starts two days back from a base of some years' yield, so reading it integrates
    // two days at most.
    let now = Utc::now();
    let epoch =
        now - ChronoDuration::days(2) - ChronoDuration::seconds(now.timestamp().rem_euclid(86_400));
    let mut out = Vec::new();
    for l in &mqtt.loggers {
        let (Some(station), Some(t)) = (
            deployment.station(l.station.as_str()),
            templates.get(&l.template),
        ) else {
            continue;
        };
        let payload = match (t.payload, &registers) {
            (crate::collect::mqtt::template::PayloadKind::Json, _) => SimPayload::Json,
            (crate::collect::mqtt::template::PayloadKind::Registers, Some(src)) => {
                SimPayload::Registers {
                    source: Arc::clone(src),
                    max_registers_per_read: t
                        .registers
                        .as_ref()
                        .map_or(64, |r| r.max_registers_per_read),
                }
            }
            (crate::collect::mqtt::template::PayloadKind::Registers, None) => continue,
        };
        let devices: Vec<SimDevice> = deployment
            .devices
            .iter()
            .filter_map(|d| match &d.transport {
                Transport::Mqtt { logger, unit } if logger == &l.id => Some(SimDevice {
                    unit: unit.unwrap_or(1),
                    model: d.model.clone(),
                    plant: PlantModel {
                        latitude: station.latitude,
                        longitude: station.longitude,
                        dc_capacity_w: d.rated_power_w * 1.2,
                        rated_ac_w: d.rated_power_w,
                        station_seed: super::weather::seed_of(station.id.as_str()),
                        device_seed: super::weather::seed_of(d.id.as_str()),
                        counter_epoch: epoch,
                        counter_base_wh: d.rated_power_w * 1.2 * 1.3 * 365.0 * 5.0,
                        health: 1.0,
                        outages: Vec::new(),
                    },
                }),
                _ => None,
            })
            .collect();
        let Ok(pattern) = crate::collect::mqtt::template::TopicPattern::parse(&t.topic) else {
            continue;
        };
        let topic = pattern.with_prefix(&mqtt.topic_prefix).render(
            station.id.as_str(),
            &l.id,
            None,
            devices.first().map(|d| d.unit),
        );
        out.push(SimLogger {
            id: l.id.clone(),
            topic,
            payload,
            interval,
            devices,
            backlog,
            link_down: Vec::new(),
            backlog_chunk: 60,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn device() -> SimDevice {
        SimDevice {
            unit: 3,
            model: "huawei_sun2000".into(),
            plant: PlantModel {
                latitude: 37.87,
                longitude: 112.55,
                dc_capacity_w: 60_000.0,
                rated_ac_w: 50_000.0,
                station_seed: 1,
                device_seed: 2,
                counter_epoch: Utc
                    .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                    .single()
                    .expect("date"),
                counter_base_wh: 0.0,
                health: 1.0,
                outages: vec![],
            },
        }
    }

    #[test]
    fn json_records_follow_the_plant() {
        let d = device();
        let noon = Utc
            .with_ymd_and_hms(2025, 5, 2, 4, 30, 0)
            .single()
            .expect("date");
        let r = json_record(&d, noon);
        assert_eq!(r["addr"], 3);
        assert_eq!(r["ts"], noon.timestamp());
        let pac = r["data"]["pac"].as_f64().expect("pac");
        assert!((pac - d.plant.ac_power_w(noon)).abs() < 1.0);
        let etotal = r["data"]["etotal"].as_f64().expect("etotal");
        assert!((etotal * 1000.0 - d.plant.lifetime_wh(noon)).abs() < 10.0);
    }

    #[test]
    fn backlog_is_chunked_oldest_first() {
        let l = SimLogger {
            id: "L".into(),
            topic: "t".into(),
            payload: SimPayload::Json,
            interval: Duration::from_secs(300),
            devices: vec![device()],
            backlog: Duration::from_secs(3600),
            link_down: vec![],
            backlog_chunk: 5,
        };
        let start = Utc
            .with_ymd_and_hms(2025, 5, 2, 4, 0, 0)
            .single()
            .expect("date");
        let times = l.backlog_times(start);
        assert_eq!(times.len(), 12);
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        let records: Vec<Value> = times.iter().flat_map(|t| l.records(*t)).collect();
        let msgs = messages(&records, 5);
        assert_eq!(msgs.len(), 3);
        let first: Value = serde_json::from_slice(&msgs[0]).expect("json");
        assert_eq!(first.as_array().map(Vec::len), Some(5));
        assert_eq!(
            first[0]["ts"],
            (start - ChronoDuration::hours(1)).timestamp()
        );
    }
}
