//! The one door into storage. Collectors submit samples through an [`IngestHandle`]; the
//! [`IngestWorker`] validates them, quarantines what fails (with its reason), writes the rest in
//! batches and forwards what was stored to the sinks.
//!
//! Never drops a value silently: every sample ends up stored, recognised as a duplicate, or
//! quarantined and counted.

use crate::domain::{DeviceId, Metric, Sample};
use crate::metrics::Metrics;
use crate::store::Store;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What ingest knows about each device to judge its values.
#[derive(Debug, Clone)]
pub struct DeviceProfile {
    pub rated_power_w: f64,
    pub timezone: Tz,
}

/// Why a sample was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    UnknownDevice,
    NotFinite(Metric),
    Negative(Metric),
    PowerAboveRated { power_w: f64, limit_w: f64 },
    InFuture { by_s: i64 },
    TooOld { by_days: i64 },
}

impl Rejection {
    /// A stable label for metrics and the quarantine table.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::UnknownDevice => "unknown_device",
            Rejection::NotFinite(_) => "not_finite",
            Rejection::Negative(_) => "negative",
            Rejection::PowerAboveRated { .. } => "power_above_rated",
            Rejection::InFuture { .. } => "in_future",
            Rejection::TooOld { .. } => "too_old",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Rejection::UnknownDevice => "device is not in the registry".into(),
            Rejection::NotFinite(m) => format!("{m} is NaN or infinite"),
            Rejection::Negative(m) => format!("{m} is negative"),
            Rejection::PowerAboveRated { power_w, limit_w } => {
                format!("ac_power_w {power_w:.0} exceeds 1.5 x rated ({limit_w:.0})")
            }
            Rejection::InFuture { by_s } => format!("timestamp is {by_s} s in the future"),
            Rejection::TooOld { by_days } => format!("timestamp is {by_days} days old"),
        }
    }
}

/// Range and clock checks for one sample (pure).
pub fn validate(
    sample: &Sample,
    profile: Option<&DeviceProfile>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let profile = profile.ok_or(Rejection::UnknownDevice)?;
    let ahead = sample.at - now;
    if ahead > ChronoDuration::minutes(10) {
        return Err(Rejection::InFuture {
            by_s: ahead.num_seconds(),
        });
    }
    let age = now - sample.at;
    if age > ChronoDuration::days(400) {
        return Err(Rejection::TooOld {
            by_days: age.num_days(),
        });
    }
    for (metric, value) in &sample.readings.values {
        if !value.is_finite() {
            return Err(Rejection::NotFinite(*metric));
        }
        let never_negative = metric.is_counter()
            || matches!(
                metric,
                Metric::EnergyTodayWh | Metric::FrequencyHz | Metric::InsulationMohm
            );
        if never_negative && *value < 0.0 {
            return Err(Rejection::Negative(*metric));
        }
    }
    if let Some(p) = sample.readings.get(Metric::AcPowerW) {
        let limit = profile.rated_power_w * 1.5;
        if p > limit {
            return Err(Rejection::PowerAboveRated {
                power_w: p,
                limit_w: limit,
            });
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("the ingest worker has stopped")]
pub struct Closed;

/// Cheap to clone; given to every collector.
#[derive(Debug, Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Vec<Sample>>,
}

impl IngestHandle {
    /// Queues samples. When the queue is full this waits: collectors slow down rather than lose data.
    pub async fn submit(&self, samples: Vec<Sample>) -> Result<(), Closed> {
        if samples.is_empty() {
            return Ok(());
        }
        self.tx.send(samples).await.map_err(|_| Closed)
    }
}

/// Drains the queue into the store in batches.
#[derive(Debug)]
pub struct IngestWorker {
    rx: mpsc::Receiver<Vec<Sample>>,
    store: Store,
    profiles: Arc<HashMap<DeviceId, DeviceProfile>>,
    metrics: Arc<Metrics>,
    forward: Option<mpsc::Sender<Vec<Sample>>>,
    max_batch: usize,
}

/// Creates the handle and its worker; `capacity` is in submissions (each a batch of samples).
pub fn channel(
    capacity: usize,
    store: Store,
    profiles: HashMap<DeviceId, DeviceProfile>,
    metrics: Arc<Metrics>,
) -> (IngestHandle, IngestWorker) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        IngestHandle { tx },
        IngestWorker {
            rx,
            store,
            profiles: Arc::new(profiles),
            metrics,
            forward: None,
            max_batch: 2_000,
        },
    )
}

impl IngestWorker {
    /// Sends every stored batch on to `tx` as well (the InfluxDB sink). When that queue is full the
    /// worker waits, so the sink's own spool decides what happens under pressure.
    pub fn forward_to(&mut self, tx: mpsc::Sender<Vec<Sample>>) {
        self.forward = Some(tx);
    }

    /// Runs until cancelled, then drains what is already queued.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                more = self.tick() => if !more { break },
            }
        }
        self.rx.close();
        while self.tick().await {}
        debug!("ingest worker drained");
    }

    /// Waits for at least one submission, writes everything queued up to the batch limit. Returns
    /// false once every handle is gone and the queue is empty.
    pub async fn tick(&mut self) -> bool {
        let Some(first) = self.rx.recv().await else {
            return false;
        };
        let mut batch = first;
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        self.metrics
            .queue_depth
            .get_or_create(&vec![("queue", "ingest".to_owned())])
            .set(i64::try_from(self.rx.len()).unwrap_or(i64::MAX));
        self.process(batch, Utc::now()).await;
        true
    }

    async fn process(&mut self, batch: Vec<Sample>, now: DateTime<Utc>) {
        let mut good = Vec::with_capacity(batch.len());
        for s in batch {
            match validate(&s, self.profiles.get(&s.device), now) {
                Ok(()) => good.push(s),
                Err(r) => {
                    self.metrics
                        .samples_quarantined
                        .get_or_create(&vec![("reason", r.label().to_owned())])
                        .inc();
                    if let Err(error) = self.store.quarantine(&s, &r.describe(), now).await {
                        warn!(%error, device = %s.device, "could not record quarantined sample");
                    }
                }
            }
        }
        if good.is_empty() {
            return;
        }
        let profiles = Arc::clone(&self.profiles);
        let tz_of = move |d: &DeviceId| {
            profiles
                .get(d)
                .map_or(chrono_tz::Asia::Shanghai, |p| p.timezone)
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        // A store error is retried with backoff: the batch is kept in memory, never dropped.
        loop {
            match self.store.write_samples(&good, &tz_of).await {
                Ok(outcome) => {
                    self.metrics
                        .store_write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics
                        .samples_ingested
                        .inc_by(outcome.inserted as u64);
                    self.metrics
                        .samples_duplicate
                        .inc_by(outcome.duplicates as u64);
                    break;
                }
                Err(error) => {
                    warn!(%error, samples = good.len(), "store write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        if let Some(tx) = &self.forward {
            if tx.send(good).await.is_err() {
                warn!("sink queue closed; samples stay in the store only");
                self.forward = None;
            }
        }
    }
}
