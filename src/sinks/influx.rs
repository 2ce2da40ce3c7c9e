//! The InfluxDB v2 sink: stored samples become line protocol, are batched by size and time, pass
//! through the disk spool, and are written to `/api/v2/write` in order.
//!
//! Design:
//! - measurement `pv_device`, one point per sample; tags `station`, `village` (owner villages joined
//!   with `+`, absent for centralized stations), `county`, `device`, `model`, `kind`; fields are the
//!   metrics by name (`ac_power_w`, `energy_lifetime_wh`, `pv1_voltage_v`, ...), `state` (string),
//!   `state_code` (integer, for servers and panels that only handle numbers) and `alarms` (count);
//! - measurement `sunshare` (tag `instance`) carries the sink's own health every 10 s;
//! - every batch is appended to the spool first and the sender always sends the spool's oldest
//!   record, so order holds and a restart loses nothing; a batch leaves the spool only when the
//!   server answered 2xx (delivered), a 4xx other than 429 (kept in `dead-letter.lp`), or the
//!   spool-full policy dropped it (counted);
//! - 5xx, 429, timeouts and connection errors are retried with capped exponential backoff and jitter.
//!
//! Never blocks ingest for long: one request is in flight at a time while new samples keep being
//! spooled.

use super::spool::{self, Spool};
use crate::config::{Deployment, InfluxConfig, InfluxPrecision};
use crate::domain::{DeviceId, DeviceState, Sample};
use crate::metrics::Metrics;
use crate::retry::Backoff;
use futures::future::OptionFuture;
use influxdb2::api::write::TimestampPrecision;
use influxdb2::models::{DataPoint, WriteDataPoint};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub const MEASUREMENT: &str = "pv_device";
pub const HEALTH_MEASUREMENT: &str = "sunshare";
const HEALTH_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spool(#[from] spool::Error),
    #[error("cannot write the dead-letter file {path}: {source}")]
    DeadLetter {
        path: String,
        source: std::io::Error,
    },
    #[error("bad InfluxDB URL '{0}'")]
    Url(String),
}

/// The tags of one device, from the deployment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTags {
    pub station: String,
    pub village: Option<String>,
    pub county: String,
    pub model: String,
    pub kind: &'static str,
}

/// Tags for every declared device.
pub fn device_tags(d: &Deployment) -> HashMap<DeviceId, DeviceTags> {
    d.devices
        .iter()
        .map(|dev| {
            let station = d.station(dev.station.as_str());
            let mut villages: Vec<&str> = station
                .map(|s| s.owner_villages().into_iter().map(|v| v.as_str()).collect())
                .unwrap_or_default();
            villages.sort_unstable();
            let tags = DeviceTags {
                station: dev.station.to_string(),
                village: (!villages.is_empty()).then(|| villages.join("+")),
                county: station.map(|s| s.county.to_string()).unwrap_or_default(),
                model: dev.model.clone(),
                kind: match dev.kind {
                    crate::domain::DeviceKind::Inverter => "inverter",
                    crate::domain::DeviceKind::Meter => "meter",
                },
            };
            (dev.id.clone(), tags)
        })
        .collect()
}

fn state_code(s: DeviceState) -> i64 {
    match s {
        DeviceState::Producing => 1,
        DeviceState::StandbyNight => 2,
        DeviceState::Starting => 3,
        DeviceState::Derated => 4,
        DeviceState::Fault => 5,
        DeviceState::Shutdown => 6,
        DeviceState::Unknown => 0,
    }
}

fn scale(ms: i64, p: InfluxPrecision) -> i64 {
    match p {
        InfluxPrecision::S => ms.div_euclid(1000),
        InfluxPrecision::Ms => ms,
        InfluxPrecision::Us => ms.saturating_mul(1_000),
        InfluxPrecision::Ns => ms.saturating_mul(1_000_000),
    }
}

fn precision(p: InfluxPrecision) -> TimestampPrecision {
    match p {
        InfluxPrecision::S => TimestampPrecision::Seconds,
        InfluxPrecision::Ms => TimestampPrecision::Milliseconds,
        InfluxPrecision::Us => TimestampPrecision::Microseconds,
        InfluxPrecision::Ns => TimestampPrecision::Nanoseconds,
    }
}

/// Appends one line per sample to `out`; returns how many points were written. A sample of an
/// undeclared device still goes out, tagged with its device id only.
pub fn encode(
    samples: &[Sample],
    tags: &HashMap<DeviceId, DeviceTags>,
    p: InfluxPrecision,
    out: &mut Vec<u8>,
) -> usize {
    let mut n = 0;
    for s in samples {
        let mut b = DataPoint::builder(MEASUREMENT).tag("device", s.device.as_str());
        if let Some(t) = tags.get(&s.device) {
            b = b
                .tag("station", t.station.as_str())
                .tag("county", t.county.as_str())
                .tag("model", t.model.as_str())
                .tag("kind", t.kind);
            if let Some(v) = &t.village {
                b = b.tag("village", v.as_str());
            }
        }
        for (m, v) in &s.readings.values {
            if v.is_finite() {
                b = b.field(m.name(), *v);
            }
        }
        if let Some(st) = s.readings.state {
            b = b
                .field("state", st.as_str())
                .field("state_code", state_code(st));
        }
        b = b
            .field(
                "alarms",
                i64::try_from(s.readings.alarms.len()).unwrap_or(i64::MAX),
            )
            .timestamp(scale(s.at.timestamp_millis(), p));
        if let Ok(point) = b.build() {
            if point.write_data_point_to(&mut *out).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// How one write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Server down, slow, 5xx or 429: keep the batch and try again later.
    Retriable(String),
    /// A 4xx other than 429: the server will never take this batch.
    Rejected { status: u16, message: String },
}

/// What the sender needs, cheap to clone into an in-flight request.
#[derive(Clone)]
struct Target {
    client: influxdb2::Client,
    org: String,
    bucket: String,
    precision: InfluxPrecision,
    timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

async fn send(target: Target, body: Vec<u8>) -> Result<(), SendError> {
    let write = target.client.write_line_protocol_with_precision(
        &target.org,
        &target.bucket,
        body,
        precision(target.precision),
    );
    match tokio::time::timeout(target.timeout, write).await {
        Err(_) => Err(SendError::Retriable(format!(
            "no answer within {:?}",
            target.timeout
        ))),
        Ok(Ok(())) => Ok(()),
        Ok(Err(influxdb2::RequestError::Http { status, text })) => {
            let code = status.as_u16();
            let message: String = text.chars().take(500).collect();
            if (200..300).contains(&code) {
                Ok(())
            } else if code == 429 || !(400..500).contains(&code) {
                Err(SendError::Retriable(format!("HTTP {code}: {message}")))
            } else {
                Err(SendError::Rejected {
                    status: code,
                    message,
                })
            }
        }
        Ok(Err(other)) => Err(SendError::Retriable(other.to_string())),
    }
}

/// What the start-up healthcheck found, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub server: Result<String, String>,
    pub bucket: Result<String, String>,
}

/// Asks the server whether it is up (`/health`) and whether the bucket exists and the token may
/// see it (`/api/v2/buckets?name=`). Never fails: the answer is for the log.
pub async fn healthcheck(cfg: &InfluxConfig) -> Health {
    let base = cfg.url.trim_end_matches('/');
    let client = match reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Health {
                server: Err(format!("cannot build an HTTP client: {e}")),
                bucket: Err("not checked".into()),
            }
        }
    };
    let server = match client.get(format!("{base}/health")).send().await {
        Ok(r) if r.status().is_success() => Ok(format!("{base} answers /health")),
        Ok(r) => Err(format!(
            "{base}/health answered HTTP {}",
            r.status().as_u16()
        )),
        Err(e) => Err(format!("{base} is unreachable: {e}")),
    };
    let bucket = if server.is_err() {
        Err("not checked: the server is unreachable".into())
    } else {
        let resp = client
            .get(format!("{base}/api/v2/buckets"))
            .query(&[("name", cfg.bucket.as_str()), ("org", cfg.org.as_str())])
            .header(
                "Authorization",
                format!("Token {}", cfg.token.expose_secret()),
            )
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default();
                if body.contains(&format!("\"name\":\"{}\"", cfg.bucket))
                    || body.contains(&format!("\"name\": \"{}\"", cfg.bucket))
                {
                    Ok(format!(
                        "bucket '{}' found in org '{}'",
                        cfg.bucket, cfg.org
                    ))
                } else {
                    Err(format!(
                        "bucket '{}' not found in org '{}': create it or fix influx.bucket",
                        cfg.bucket, cfg.org
                    ))
                }
            }
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Err(format!(
                "the token is refused (HTTP {}): check influx.token",
                r.status().as_u16()
            )),
            Ok(r) => Ok(format!(
                "the server has no bucket API (HTTP {}); writes will tell",
                r.status().as_u16()
            )),
            Err(e) => Err(format!("bucket check failed: {e}")),
        }
    };
    Health { server, bucket }
}

/// Logs a healthcheck clearly: one line per finding.
pub fn log_health(h: &Health) {
    match &h.server {
        Ok(s) => info!(server = %s, "influx sink: server reachable"),
        Err(e) => {
            warn!(problem = %e, "influx sink: server NOT reachable; batches will spool to disk")
        }
    }
    match &h.bucket {
        Ok(s) => info!(bucket = %s, "influx sink: bucket check"),
        Err(e) => warn!(problem = %e, "influx sink: bucket NOT usable"),
    }
}

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Written(u32),
    DeadLettered(u32),
    Failed(String),
}

type InFlight = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>>;

pub struct InfluxSink {
    target: Target,
    batch_size: usize,
    flush_interval: Duration,
    shutdown_deadline: Duration,
    instance: String,
    tags: HashMap<DeviceId, DeviceTags>,
    spool: Spool,
    dead_letter: PathBuf,
    metrics: Arc<Metrics>,
    buf: Vec<u8>,
    buf_points: u32,
    backoff: Backoff,
}

impl std::fmt::Debug for InfluxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxSink")
            .field("target", &self.target)
            .field("spool", &self.spool.dir())
            .field("pending_points", &self.spool.pending_points())
            .finish_non_exhaustive()
    }
}

impl InfluxSink {
    /// Opens the sink and its spool in `spool_dir` (whatever a previous run left is replayed first).
    pub fn open(
        cfg: &InfluxConfig,
        spool_dir: &Path,
        tags: HashMap<DeviceId, DeviceTags>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        if reqwest::Url::parse(&cfg.url).is_err() {
            return Err(Error::Url(cfg.url.clone()));
        }
        let client = influxdb2::Client::new(
            cfg.url.trim_end_matches('/'),
            cfg.org.as_str(),
            cfg.token.expose_secret(),
        );
        let spool = Spool::open(spool_dir, cfg.spool_max_bytes, cfg.spool_full)?;
        if !spool.is_empty() {
            info!(
                points = spool.pending_points(),
                bytes = spool.pending_bytes(),
                "influx sink: replaying the spool left by the previous run"
            );
        }
        let sink = InfluxSink {
            target: Target {
                client,
                org: cfg.org.clone(),
                bucket: cfg.bucket.clone(),
                precision: cfg.precision,
                timeout: cfg.request_timeout,
            },
            batch_size: cfg.batch_size.max(1),
            flush_interval: cfg.flush_interval.max(Duration::from_millis(10)),
            shutdown_deadline: cfg.shutdown_deadline,
            instance: "sunshare".into(),
            tags,
            dead_letter: spool_dir.join("dead-letter.lp"),
            spool,
            metrics,
            buf: Vec::new(),
            buf_points: 0,
            backoff: Backoff::new(BACKOFF_START, BACKOFF_MAX),
        };
        sink.update_gauges();
        Ok(sink)
    }

    /// Points waiting in the spool (delivered ones are gone).
    pub fn pending_points(&self) -> u64 {
        self.spool.pending_points()
    }

    /// Points encoded but not yet spooled.
    pub fn buffered_points(&self) -> u32 {
        self.buf_points
    }

    fn update_gauges(&self) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics
            .sink_points_spooled
            .set(clamp(self.spool.pending_points()));
        self.metrics
            .sink_spool_bytes
            .set(clamp(self.spool.pending_bytes()));
    }

    /// Encodes samples; spools a batch whenever `batch_size` points are buffered.
    pub fn push(&mut self, samples: &[Sample]) -> Result<(), Error> {
        let n = encode(samples, &self.tags, self.target.precision, &mut self.buf);
        self.buf_points = self
            .buf_points
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if self.buf_points as usize >= self.batch_size {
            self.flush_buffer()?;
        }
        Ok(())
    }

    /// Moves what is buffered into the spool as one batch.
    pub fn flush_buffer(&mut self) -> Result<(), Error> {
        if self.buf_points == 0 {
            return Ok(());
        }
        let dropped = self.spool.append(&self.buf, self.buf_points)?;
        if dropped > 0 {
            warn!(
                dropped,
                "influx spool full: points dropped by the spool_full policy"
            );
            self.metrics.sink_points_dropped.inc_by(dropped);
        }
        self.buf.clear();
        self.buf_points = 0;
        self.update_gauges();
        Ok(())
    }

    fn health_point(&mut self) {
        let m = &self.metrics;
        let point = DataPoint::builder(HEALTH_MEASUREMENT)
            .tag("instance", self.instance.as_str())
            .field(
                "spool_points",
                i64::try_from(self.spool.pending_points()).unwrap_or(i64::MAX),
            )
            .field(
                "spool_bytes",
                i64::try_from(self.spool.pending_bytes()).unwrap_or(i64::MAX),
            )
            .field("points_written", clamp_i64(m.sink_points_written.get()))
            .field("points_dropped", clamp_i64(m.sink_points_dropped.get()))
            .field(
                "points_dead_letter",
                clamp_i64(m.sink_points_dead_letter.get()),
            )
            .field("samples_ingested", clamp_i64(m.samples_ingested.get()))
            .field("samples_duplicate", clamp_i64(m.samples_duplicate.get()))
            .timestamp(scale(
                chrono::Utc::now().timestamp_millis(),
                self.target.precision,
            ))
            .build();
        if let Ok(p) = point {
            if p.write_data_point_to(&mut self.buf).is_ok() {
                self.buf_points = self.buf_points.saturating_add(1);
            }
        }
    }

    fn dead_letter(&self, payload: &[u8], status: u16, message: &str) -> Result<(), Error> {
        let path = &self.dead_letter;
        let err = |source| Error::DeadLetter {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let one_line = message.replace('\n', " ");
        writeln!(
            f,
            "# {} HTTP {status}: {one_line}",
            chrono::Utc::now().to_rfc3339()
        )
        .map_err(err)?;
        f.write_all(payload).map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// Handles the answer to the record at the head of the spool.
    fn settle(
        &mut self,
        record: &spool::Record,
        payload: &[u8],
        result: Result<(), SendError>,
    ) -> Result<Delivery, Error> {
        let out = match result {
            Ok(()) => {
                self.spool.ack(record)?;
                self.metrics
                    .sink_points_written
                    .inc_by(u64::from(record.points));
                self.metrics.sink_server_up.set(1);
                self.backoff.reset();
                Delivery::Written(record.points)
            }
            Err(SendError::Rejected { status, message }) => {
                error!(status, server_message = %message, points = record.points, file = %self.dead_letter.display(), "influx server refused a batch; kept in the dead-letter file");
                self.dead_letter(payload, status, &message)?;
                self.spool.ack(record)?;
                self.metrics
                    .sink_points_dead_letter
                    .inc_by(u64::from(record.points));
                self.metrics
                    .sink_write_errors
                    .get_or_create(&vec![("kind", "rejected".to_owned())])
                    .inc();
                self.metrics.sink_server_up.set(1);
                Delivery::DeadLettered(record.points)
            }
            Err(SendError::Retriable(why)) => {
                self.metrics
                    .sink_write_errors
                    .get_or_create(&vec![("kind", "retriable".to_owned())])
                    .inc();
                self.metrics.sink_server_up.set(0);
                Delivery::Failed(why)
            }
        };
        self.update_gauges();
        Ok(out)
    }

    /// Sends the oldest spooled batch and waits for the answer (the deterministic step for tests
    /// and shutdown). `None` when the spool is empty.
    pub async fn send_next(&mut self) -> Result<Option<Delivery>, Error> {
        let Some(mut record) = self.spool.peek()? else {
            return Ok(None);
        };
        let payload = std::mem::take(&mut record.payload);
        let result = send(self.target.clone(), payload.clone()).await;
        self.settle(&record, &payload, result).map(Some)
    }

    /// Runs until cancelled or the sender side closes, then delivers what it can within
    /// `shutdown_deadline` and leaves the rest in the spool for the next start. In the service the
    /// sink is stopped by ingest dropping its sender (so nothing ingest drains at shutdown is
    /// missed); `cancel` is for callers that own the sink directly.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Vec<Sample>>, cancel: CancellationToken) {
        let mut flush_tick = tokio::time::interval(self.flush_interval);
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health_tick = tokio::time::interval(HEALTH_EVERY);
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inflight: Option<(spool::Record, Vec<u8>, InFlight)> = None;
        let mut retry_at = Instant::now();
        let mut open = true;
        loop {
            if inflight.is_none() && Instant::now() >= retry_at {
                match self.spool.peek() {
                    Ok(Some(mut record)) => {
                        let payload = std::mem::take(&mut record.payload);
                        let fut: InFlight = Box::pin(send(self.target.clone(), payload.clone()));
                        inflight = Some((record, payload, fut));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        error!(%error, "influx spool unreadable; retrying");
                        retry_at = Instant::now() + self.backoff.next_delay();
                    }
                }
            }
            // Only a future retry time is worth a wake-up; anything else would spin.
            let waiting = inflight.is_none() && !self.spool.is_empty() && retry_at > Instant::now();
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(result) = OptionFuture::from(inflight.as_mut().map(|(_, _, f)| f)) => {
                    if let Some((record, payload, _)) = inflight.take() {
                        match self.settle(&record, &payload, result) {
                            Ok(Delivery::Failed(why)) => {
                                let wait = self.backoff.next_delay();
                                warn!(reason = %why, retry_in = ?wait, pending = self.spool.pending_points(), "influx write failed; batch stays in the spool");
                                retry_at = Instant::now() + wait;
                            }
                            Ok(_) => {}
                            Err(error) => {
                                error!(%error, "influx sink could not settle a batch");
                                retry_at = Instant::now() + self.backoff.next_delay();
                            }
                        }
                    }
                }
                msg = rx.recv(), if open => match msg {
                    Some(samples) => {
                        if let Err(error) = self.push(&samples) {
                            error!(%error, "influx sink cannot spool; points lost from the sink (they stay in the store)");
                            self.metrics.sink_points_dropped.inc_by(samples.len() as u64);
                        }
                    }
                    None => open = false,
                },
                _ = flush_tick.tick() => {
                    if let Err(error) = self.flush_buffer() {
                        error!(%error, "influx sink cannot spool a batch");
                    }
                }
                _ = health_tick.tick() => self.health_point(),
                () = tokio::time::sleep_until(retry_at), if waiting => {}
            }
            if !open {
                // Ingest has stopped and dropped its sender: deliver what we can within the deadline.
                break;
            }
        }
        self.shutdown(rx, inflight).await;
    }

    async fn shutdown(
        &mut self,
        mut rx: mpsc::Receiver<Vec<Sample>>,
        inflight: Option<(spool::Record, Vec<u8>, InFlight)>,
    ) {
        let deadline = Instant::now() + self.shutdown_deadline;
        rx.close();
        while let Some(samples) = rx.recv().await {
            if let Err(error) = self.push(&samples) {
                error!(%error, "influx sink cannot spool at shutdown");
            }
        }
        if let Err(error) = self.flush_buffer() {
            error!(%error, "influx sink cannot spool at shutdown");
        }
        if let Some((record, payload, fut)) = inflight {
            if let Ok(result) = tokio::time::timeout_at(deadline, fut).await {
                let _ = self.settle(&record, &payload, result);
            }
        }
        while Instant::now() < deadline && !self.spool.is_empty() {
            match tokio::time::timeout_at(deadline, self.send_next()).await {
                Ok(Ok(Some(Delivery::Written(_) | Delivery::DeadLettered(_)))) => {}
                _ => break,
            }
        }
        if let Err(error) = self.spool.sync() {
            error!(%error, "influx spool could not be synced at shutdown");
        }
        debug!(
            pending = self.spool.pending_points(),
            "influx sink stopped; the rest waits in the spool"
        );
        if !self.spool.is_empty() {
            info!(
                points = self.spool.pending_points(),
                "influx sink stopped with points in the spool; they are sent after the next start"
            );
        }
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Metric, Readings};
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::Router;
    use secrecy::SecretString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cfg(url: &str) -> InfluxConfig {
        InfluxConfig {
            url: url.to_owned(),
            org: "o".into(),
            bucket: "b".into(),
            token: SecretString::from("t"),
            batch_size: 2,
            flush_interval: Duration::from_millis(50),
            spool_max_bytes: 1 << 20,
            spool_full: crate::config::SpoolFull::DropOldest,
            spool_dir: None,
            precision: InfluxPrecision::S,
            request_timeout: Duration::from_millis(500),
            shutdown_deadline: Duration::from_secs(1),
        }
    }

    fn sample(dev: &str, secs: i64) -> Sample {
        let mut r = Readings::default();
        r.set(Metric::AcPowerW, 1500.5);
        r.set(Metric::PvVoltageV(1), 600.0);
        r.state = Some(DeviceState::Producing);
        Sample {
            device: DeviceId::new(dev),
            at: chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default(),
            readings: r,
        }
    }

    #[test]
    fn line_protocol_carries_tags_fields_state_and_precision() {
        let mut tags = HashMap::new();
        tags.insert(
            DeviceId::new("inv 1"),
            DeviceTags {
                station: "st,1".into(),
                village: Some("v1+v2".into()),
                county: "c1".into(),
                model: "huawei_sun2000".into(),
                kind: "inverter",
            },
        );
        let mut out = Vec::new();
        let n = encode(
            &[sample("inv 1", 1_780_000_000)],
            &tags,
            InfluxPrecision::S,
            &mut out,
        );
        assert_eq!(n, 1);
        let line = String::from_utf8(out).unwrap_or_default();
        assert_eq!(
            line,
            "pv_device,county=c1,device=inv\\ 1,kind=inverter,model=huawei_sun2000,station=st\\,1,village=v1+v2 \
             ac_power_w=1500.5,alarms=0i,pv1_voltage_v=600,state=\"producing\",state_code=1i 1780000000\n"
        );
        let mut ns = Vec::new();
        encode(
            &[sample("x", 1)],
            &HashMap::new(),
            InfluxPrecision::Ns,
            &mut ns,
        );
        assert!(String::from_utf8_lossy(&ns).ends_with(" 1000000000\n"));
    }

    /// A stub server answering writes with the statuses in `script`, then 204.
    async fn stub(script: Vec<(u16, &'static str)>) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let script = Arc::new(script);
        let app = Router::new()
            .route(
                "/api/v2/write",
                post(move || {
                    let c = Arc::clone(&c);
                    let script = Arc::clone(&script);
                    async move {
                        let i = c.fetch_add(1, Ordering::SeqCst);
                        let (code, body) = script.get(i).copied().unwrap_or((204, ""));
                        (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), body)
                    }
                }),
            )
            .route("/health", get(|| async { "OK" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((format!("http://{addr}"), calls))
    }

    #[tokio::test]
    async fn retriable_errors_keep_the_batch_and_4xx_goes_to_dead_letters() -> anyhow::Result<()> {
        let (url, calls) = stub(vec![
            (503, "overloaded"),
            (429, "slow down"),
            (
                400,
                "{\"code\":\"invalid\",\"message\":\"field type conflict\"}",
            ),
        ])
        .await?;
        let dir = tempfile::tempdir()?;
        let metrics = Arc::new(Metrics::new());
        let mut sink =
            InfluxSink::open(&cfg(&url), dir.path(), HashMap::new(), Arc::clone(&metrics))?;
        sink.push(&[sample("a", 10), sample("a", 20)])?;
        sink.push(&[sample("a", 30), sample("a", 40)])?;
        assert_eq!(sink.pending_points(), 4);
        let d = sink.send_next().await?;
        assert!(
            matches!(d, Some(Delivery::Failed(ref w)) if w.contains("503")),
            "{d:?}"
        );
        let d = sink.send_next().await?;
        assert!(
            matches!(d, Some(Delivery::Failed(ref w)) if w.contains("429")),
            "{d:?}"
        );
        assert_eq!(
            sink.pending_points(),
            4,
            "retriable failures keep the batch"
        );
        assert_eq!(sink.send_next().await?, Some(Delivery::DeadLettered(2)));
        assert_eq!(sink.send_next().await?, Some(Delivery::Written(2)));
        assert_eq!(sink.send_next().await?, None);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let dead = std::fs::read_to_string(dir.path().join("dead-letter.lp"))?;
        assert!(
            dead.contains("HTTP 400: {\"code\":\"invalid\",\"message\":\"field type conflict\"}"),
            "{dead}"
        );
        assert!(
            dead.contains("pv_device,device=a ac_power_w=1500.5"),
            "{dead}"
        );
        assert_eq!(
            dead.lines().count(),
            3,
            "one comment line and the two points"
        );
        assert_eq!(metrics.sink_points_dead_letter.get(), 2);
        assert_eq!(metrics.sink_points_written.get(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn healthcheck_says_what_it_found() -> anyhow::Result<()> {
        let (url, _) = stub(vec![]).await?;
        let h = healthcheck(&cfg(&url)).await;
        assert!(h.server.is_ok(), "{h:?}");
        assert!(
            h.bucket.as_ref().is_ok_and(|s| s.contains("no bucket API")),
            "{h:?}"
        );
        let port = crate::sinks::victoria::free_port()?;
        let h = healthcheck(&cfg(&format!("http://127.0.0.1:{port}"))).await;
        assert!(
            h.server.as_ref().is_err_and(|e| e.contains("unreachable")),
            "{h:?}"
        );
        assert!(h.bucket.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_leaves_undelivered_points_in_the_spool() -> anyhow::Result<()> {
        let port = crate::sinks::victoria::free_port()?;
        let dir = tempfile::tempdir()?;
        let metrics = Arc::new(Metrics::new());
        let sink = InfluxSink::open(
            &cfg(&format!("http://127.0.0.1:{port}")),
            dir.path(),
            HashMap::new(),
            Arc::clone(&metrics),
        )?;
        let (tx, rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(sink.run(rx, cancel.clone()));
        tx.send(vec![sample("a", 1), sample("a", 2), sample("a", 3)])
            .await?;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await??;
        let reopened = InfluxSink::open(
            &cfg(&format!("http://127.0.0.1:{port}")),
            dir.path(),
            HashMap::new(),
            Arc::new(Metrics::new()),
        )?;
        assert!(
            reopened.pending_points() >= 3,
            "{}",
            reopened.pending_points()
        );
        Ok(())
    }
}

#[cfg(test)]
mod dashboard_tests {
    //! Every dashboard in `dashboards/` asks only for what this sink writes. The measurements, tag
    //! keys and field names are read off the sink's own output (a point of every declared device of
    //! `sunshare.example.toml` with every metric, a state and an alarm, and a health point), not
    //! from a list kept by hand.
    use super::*;
    use crate::domain::{Alarm, Metric, Readings};
    use std::collections::{BTreeMap, BTreeSet};

    /// Tag keys and field names of one measurement, as the sink wrote them.
    #[derive(Debug, Default)]
    struct Written {
        tags: BTreeSet<String>,
        fields: BTreeSet<String>,
    }

    /// Measurement, tag keys and field names of each line (no escaped separators in these lines).
    fn parse_lines(text: &str, into: &mut BTreeMap<String, Written>) {
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(key), Some(fields)) = (parts.next(), parts.next()) else {
                panic!("not a line-protocol point: {line}");
            };
            let mut key = key.split(',');
            let measurement = key.next().unwrap_or_default().to_owned();
            let w = into.entry(measurement).or_default();
            w.tags.extend(
                key.filter_map(|kv| kv.split_once('='))
                    .map(|(k, _)| k.to_owned()),
            );
            w.fields.extend(
                fields
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, _)| k.to_owned()),
            );
        }
    }

    fn what_the_sink_writes() -> BTreeMap<String, Written> {
        let text = include_str!("../../sunshare.example.toml");
        let env = [
            ("SUNSHARE_INFLUX__URL", "http://127.0.0.1:8086"),
            ("SUNSHARE_INFLUX__ORG", "o"),
            ("SUNSHARE_INFLUX__BUCKET", "b"),
            ("SUNSHARE_INFLUX__TOKEN", "t"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let d = Deployment::from_str_with_env("example", text, &env, &crate::app::known_models())
            .expect("the example deployment is valid");
        let tags = device_tags(&d);
        assert!(
            tags.values().any(|t| t.village.is_some()),
            "the example has a village station"
        );
        let mut readings = Readings::default();
        for m in Metric::SCALARS {
            readings.set(m, 1.0);
        }
        readings.state = Some(DeviceState::Fault);
        readings.alarms = vec![Alarm {
            code: "huawei.alarm1.b0".into(),
            text_en: "grid overvoltage".into(),
            text_zh: "电网过压".into(),
            grid_loss: false,
        }];
        let samples: Vec<Sample> = d
            .devices
            .iter()
            .map(|dev| Sample {
                device: dev.id.clone(),
                at: chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
                readings: readings.clone(),
            })
            .collect();
        let mut out = Vec::new();
        assert_eq!(
            encode(&samples, &tags, InfluxPrecision::S, &mut out),
            samples.len()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = d.influx.as_ref().expect("influx from the environment");
        let mut sink = InfluxSink::open(cfg, dir.path(), tags, Arc::new(Metrics::new()))
            .expect("the sink opens (nothing is sent)");
        sink.health_point();
        out.extend_from_slice(&sink.buf);
        let mut written = BTreeMap::new();
        parse_lines(&String::from_utf8(out).expect("UTF-8"), &mut written);
        assert_eq!(
            written.keys().map(String::as_str).collect::<Vec<_>>(),
            [MEASUREMENT, HEALTH_MEASUREMENT]
        );
        written
    }

    /// A field of `measurement` the sink writes: one it wrote above, or any metric name (the
    /// indexed ones, `pv7_current_a`, are not all in one sample).
    fn is_field(written: &BTreeMap<String, Written>, measurement: &str, field: &str) -> bool {
        written
            .get(measurement)
            .is_some_and(|w| w.fields.contains(field))
            || (measurement == MEASUREMENT && field.parse::<Metric>().is_ok())
    }

    /// The quoted texts right after each `pattern` in `q`.
    fn quoted_after<'q>(q: &'q str, pattern: &str) -> Vec<&'q str> {
        q.split(pattern)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default())
            .collect()
    }

    /// The quoted names in each list that follows `pattern`, e.g. `group(columns: [`.
    fn listed_after<'q>(q: &'q str, pattern: &str) -> Vec<&'q str> {
        q.split(pattern)
            .skip(1)
            .flat_map(|rest| {
                rest.split(']')
                    .next()
                    .unwrap_or_default()
                    .split('"')
                    .skip(1)
                    .step_by(2)
            })
            .collect()
    }

    /// Identifiers read as `r.<name>` (a record's column) in `q`.
    fn record_columns(q: &str) -> Vec<&str> {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        q.match_indices("r.")
            .filter(|(i, _)| {
                q[..*i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !ident(c) && c != '.')
            })
            .map(|(i, _)| {
                let rest = &q[i + 2..];
                &rest[..rest.find(|c: char| !ident(c)).unwrap_or(rest.len())]
            })
            .collect()
    }

    /// Whether `q` compares `column` with anything but `==` and a string literal (a regex or `!=`
    /// could match names the check cannot see; using the column as a value is fine).
    fn compared_otherwise(q: &str, column: &str) -> bool {
        q.split(column).skip(1).any(|rest| {
            let rest = rest.trim_start();
            match rest.strip_prefix("==") {
                Some(value) => !value.trim_start().starts_with('"'),
                None => rest.starts_with("=~") || rest.starts_with("!=") || rest.starts_with("!~"),
            }
        })
    }

    /// The template variables `q` uses (`${county}`, `${village:regex}`), or a problem for a `$name`
    /// written without braces.
    fn variables_used(q: &str) -> Result<Vec<&str>, String> {
        let mut used = Vec::new();
        for (i, _) in q.match_indices('$') {
            let rest = &q[i + 1..];
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find(['}', ':']).unwrap_or(inner.len());
                used.push(&inner[..end]);
            } else if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                return Err(format!(
                    "write the variable at '${}' as ${{name}}",
                    &rest[..rest.len().min(12)]
                ));
            }
        }
        Ok(used)
    }

    /// Everything wrong with one query: names the sink does not write, variables not defined
    /// (`defined`: the variables it may use).
    fn problems(
        q: &str,
        written: &BTreeMap<String, Written>,
        defined: &BTreeSet<&str>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let measurements = quoted_after(q, "r._measurement == \"");
        if measurements.is_empty() {
            out.push("names no measurement (r._measurement == \"...\")".to_owned());
        }
        for column in ["r._measurement", "r._field"] {
            if compared_otherwise(q, column) {
                out.push(format!("compares {column} otherwise than == \"...\""));
            }
        }
        for m in &measurements {
            if !written.contains_key(*m) {
                out.push(format!("measurement '{m}' is not written by the sink"));
            }
        }
        for field in quoted_after(q, "r._field == \"") {
            if !measurements.iter().any(|m| is_field(written, m, field)) {
                out.push(format!(
                    "field '{field}' is not written in {measurements:?}"
                ));
            }
        }
        let is_tag = |t: &str| {
            measurements
                .iter()
                .any(|m| written.get(*m).is_some_and(|w| w.tags.contains(t)))
        };
        let mut columns: Vec<(&str, &str)> =
            record_columns(q).into_iter().map(|c| ("r.", c)).collect();
        for pattern in ["tag: \"", "group(columns: [", "rowKey: [", "columnKey: ["] {
            let names = if pattern.ends_with('"') {
                quoted_after(q, pattern)
            } else {
                listed_after(q, pattern)
            };
            columns.extend(names.into_iter().map(|n| (pattern, n)));
        }
        for (context, c) in columns {
            if !c.starts_with('_') && !is_tag(c) {
                out.push(format!(
                    "'{c}' (in {context}) is not a tag of {measurements:?}"
                ));
            }
        }
        match variables_used(q) {
            Ok(vars) => out.extend(
                vars.into_iter()
                    .filter(|v| !v.starts_with("__") && !defined.contains(v))
                    .map(|v| format!("variable '{v}' is not defined before its use")),
            ),
            Err(e) => out.push(e),
        }
        out
    }

    /// Every panel's queries, rows' nested panels included, with the panel's title.
    fn panel_queries<'d>(panels: &'d [serde_json::Value], out: &mut Vec<(String, &'d str)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?");
            if p["type"] == "row" {
                panel_queries(p["panels"].as_array().map_or(&[], Vec::as_slice), out);
                continue;
            }
            let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(!targets.is_empty(), "panel '{title}' has no query");
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "sunshare-influx",
                    "panel '{title}' reads the provisioned datasource"
                );
                let q = t["query"].as_str().unwrap_or_default();
                assert!(!q.trim().is_empty(), "panel '{title}' has an empty query");
                out.push((format!("panel '{title}'"), q));
            }
        }
    }

    /// All problems of one dashboard file.
    fn dashboard_problems(
        text: &str,
        written: &BTreeMap<String, Written>,
    ) -> Result<Vec<String>, serde_json::Error> {
        let dash: serde_json::Value = serde_json::from_str(text)?;
        let mut out = Vec::new();
        let mut defined = BTreeSet::new();
        for v in dash["templating"]["list"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
        {
            let name = v["name"].as_str().unwrap_or_default();
            if let Some(q) = v["query"].as_str() {
                // A variable may use only the variables above it (Grafana chains them in order).
                out.extend(
                    problems(q, written, &defined)
                        .into_iter()
                        .map(|p| format!("variable '{name}': {p}")),
                );
            }
            if !defined.insert(name) {
                out.push(format!("variable '{name}' is defined twice"));
            }
        }
        let mut queries = Vec::new();
        panel_queries(
            dash["panels"].as_array().map_or(&[][..], Vec::as_slice),
            &mut queries,
        );
        if queries.is_empty() {
            out.push("no panel has a query".to_owned());
        }
        for (panel, q) in queries {
            out.extend(
                problems(q, written, &defined)
                    .into_iter()
                    .map(|p| format!("{panel}: {p}")),
            );
        }
        Ok(out)
    }

    fn dashboards() -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("dashboards/")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let text = std::fs::read_to_string(&p).expect("readable");
                (name, text)
            })
            .collect();
        files.sort();
        files
    }

    /// Every dashboard file is valid JSON, each with its own uid, and every query of its panels and
    /// template variables names only measurements, fields and tags the sink writes and only
    /// variables defined (above it, for a variable).
    #[test]
    fn every_dashboard_asks_only_for_what_the_sink_writes() {
        let written = what_the_sink_writes();
        let files = dashboards();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "sunshare-fleet.json",
            "sunshare-station.json",
            "sunshare-village-month.json",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        let mut uids = BTreeSet::new();
        for (name, text) in &files {
            let dash: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let uid = dash["uid"].as_str().unwrap_or_default().to_owned();
            assert!(
                !uid.is_empty() && uids.insert(uid),
                "{name}: a uid of its own"
            );
            let problems = dashboard_problems(text, &written).unwrap_or_else(|e| panic!("{e}"));
            assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
        }
    }

    fn file(name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("dashboards")
                .join(name),
        )
        .expect("readable");
        serde_json::from_str(&text).expect("valid JSON")
    }

    fn all_queries(dash: &serde_json::Value) -> String {
        let mut queries = Vec::new();
        panel_queries(
            dash["panels"].as_array().map_or(&[][..], Vec::as_slice),
            &mut queries,
        );
        queries
            .into_iter()
            .map(|(_, q)| q)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The drill-down chains county -> village -> station and shows the station's power, daily
    /// energy, states and alarms; the village dashboard sums energy per village and month.
    #[test]
    fn the_drill_down_and_village_dashboards_show_what_they_are_for() {
        let station = file("sunshare-station.json");
        let vars = station["templating"]["list"].as_array().expect("variables");
        let names: Vec<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(names, ["county", "village", "station"]);
        let q = |i: usize| vars[i]["query"].as_str().unwrap_or_default();
        assert!(q(0).contains("schema.tagValues(") && q(0).contains("tag: \"county\""));
        assert!(q(1).contains("tag: \"village\"") && q(1).contains("r.county == \"${county}\""));
        assert!(q(2).contains("tag: \"station\"") && q(2).contains("${county}"));
        assert!(q(2).contains("r.village =~") && q(2).contains("${village:regex}"));
        let panels = all_queries(&station);
        assert!(panels.contains("r.station == \"${station}\""));
        for field in ["ac_power_w", "energy_lifetime_wh", "state_code", "alarms"] {
            assert!(
                panels.contains(&format!("r._field == \"{field}\"")),
                "{field}"
            );
        }
        assert!(panels.contains("aggregateWindow(every: 1d, fn: spread"));

        let month = file("sunshare-village-month.json");
        let panels = all_queries(&month);
        assert!(panels.contains("aggregateWindow(every: 1mo, fn: spread"));
        assert!(panels.contains("group(columns: [\"village\", \"_time\"])"));
        assert!(panels.contains("timezone.location(name: \"Asia/Shanghai\")"));
    }

    /// The check has teeth: a made-up measurement, field, tag, variable or a `$name` without
    /// braces is refused.
    #[test]
    fn the_check_refuses_what_the_sink_does_not_write() {
        let written = what_the_sink_writes();
        let defined = BTreeSet::from(["county"]);
        let ok = "from(bucket: v.defaultBucket) |> filter(fn: (r) => r._measurement == \"pv_device\" and r._field == \"pv3_current_a\" and r.county == \"${county}\") |> group(columns: [\"station\", \"_time\"])";
        assert_eq!(problems(ok, &written, &defined), Vec::<String>::new());
        let health = "filter(fn: (r) => r._measurement == \"sunshare\" and r._field == \"spool_points\" and r.instance == \"a\")";
        assert_eq!(problems(health, &written, &defined), Vec::<String>::new());
        for (bad, expected) in [
            ("r._measurement == \"pv\"", "measurement 'pv'"),
            ("r._measurement == \"pv_device\" and r._field == \"power\"", "field 'power'"),
            ("r._measurement == \"sunshare\" and r._field == \"ac_power_w\"", "field 'ac_power_w'"),
            ("r._measurement == \"pv_device\" and r.township == \"x\"", "'township' (in r.)"),
            ("r._measurement == \"sunshare\" and r.station == \"x\"", "'station' (in r.)"),
            ("schema.tagValues(bucket: b, tag: \"name\", predicate: (r) => r._measurement == \"pv_device\")", "'name' (in tag: \")"),
            ("r._measurement == \"pv_device\" |> group(columns: [\"province\"])", "'province'"),
            ("r._measurement == \"pv_device\" and r.station == \"${station}\"", "variable 'station'"),
            ("r._measurement == \"pv_device\" and r.station == \"$station\"", "${name}"),
            ("r._measurement =~ /pv/", "names no measurement"),
            ("r._measurement == \"pv_device\" and r._field =~ /power/", "r._field otherwise"),
        ] {
            let found = problems(bad, &written, &defined);
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{bad}: {found:?}"
            );
        }
    }
}

#[cfg(test)]
mod config_tests {
    use crate::config::Deployment;

    #[test]
    fn a_bad_influx_table_is_refused_with_the_key_line_and_fix() {
        let text = "[influx]\nurl = \"127.0.0.1:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"\nbatch_size = 0\n";
        let err = Deployment::from_str_with_env("d.toml", text, &[], &Default::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("d.toml:2: influx.url: '127.0.0.1:8086' is not an http(s) URL"),
            "{err}"
        );
        assert!(err.contains("influx.batch_size"), "{err}");
        let ok = "[influx]\nurl = \"http://127.0.0.1:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"\nspool_full = \"drop_newest\"\nprecision = \"s\"\n";
        let d = Deployment::from_str_with_env("d.toml", ok, &[], &Default::default());
        let influx = d.ok().and_then(|d| d.influx);
        assert_eq!(
            influx.map(|i| (i.spool_full, i.precision)),
            Some((
                crate::config::SpoolFull::DropNewest,
                crate::config::InfluxPrecision::S
            ))
        );
    }
}
