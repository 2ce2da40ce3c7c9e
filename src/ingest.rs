//! The one door into storage. Collectors submit samples through an [`IngestHandle`]; the
//! [`IngestWorker`] validates them, quarantines what fails (with its reason), writes the rest in
//! batches and forwards what was stored to the sinks.
//!
//! Never drops a value silently: every sample ends up stored, recognised as a duplicate, or
//! quarantined and counted. The one exception is a shutdown while the store is down, and it is
//! loud: one error line and `sunshare_samples_not_written_total` say what was not written.

use crate::domain::{DeviceId, DeviceState, Metric, Sample};
use crate::metrics::Metrics;
use crate::retry::{retry, Backoff, Fault};
use crate::store::{QuarantineEntry, Store};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// What ingest knows about each device to judge its values.
#[derive(Debug, Clone)]
pub struct DeviceProfile {
    pub rated_power_w: f64,
    pub timezone: Tz,
    /// Polled by Sunshare (Modbus): each reading is stamped as it is read, so one is never late;
    /// a reading stamped before the device's last accepted one means the clock went back.
    pub polled: bool,
}

/// How far a sample's clock may stray from ours before it is quarantined.
#[derive(Debug, Clone, Copy)]
pub struct ClockLimits {
    /// Logger clocks run ahead a little; more than this is a wrong clock.
    pub max_ahead: ChronoDuration,
    /// Older than this is refused. Keep it at most the raw retention: a sample older than the
    /// purge horizon may already be in the rollups, and with its raw row gone it could not be
    /// recognised as a duplicate.
    pub max_age: ChronoDuration,
}

impl Default for ClockLimits {
    fn default() -> Self {
        Self {
            max_ahead: ChronoDuration::minutes(10),
            max_age: ChronoDuration::days(30),
        }
    }
}

impl ClockLimits {
    /// Limits whose `max_age` follows the raw retention (`storage.raw_retention`).
    pub fn for_retention(retention: Duration) -> Self {
        let max_age = ChronoDuration::from_std(retention).unwrap_or(ChronoDuration::days(30));
        Self {
            max_age,
            ..Self::default()
        }
    }
}

/// Why a sample was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    UnknownDevice,
    NotFinite(Metric),
    Negative(Metric),
    PowerAboveRated {
        power_w: f64,
        limit_w: f64,
    },
    /// A value outside what the physics of a grid-tied PV inverter allows.
    OutOfRange {
        metric: Metric,
        value: f64,
        min: f64,
        max: f64,
    },
    /// The grid frequency reads 0 while the device says it feeds power: a decode or sensor fault.
    FrequencyZeroWhileProducing {
        power_w: f64,
    },
    InFuture {
        by_s: i64,
    },
    TooOld {
        by_days: i64,
    },
    /// The lifetime counter is lower than a reading taken before it.
    CounterBackwards {
        value_wh: f64,
        reference_wh: f64,
        reference_at: DateTime<Utc>,
    },
    /// Stamped before a reading accepted earlier with a counter that says otherwise (it is above
    /// the later one's), or a polled reading stamped before its device's last one: the clock that
    /// stamped it is behind (Sunshare's own after the system clock stepped back, or a logger's).
    ClockBehind {
        value_wh: f64,
        reference_wh: f64,
        reference_at: DateTime<Utc>,
    },
    /// The lifetime counter moved more than the device could produce in the time between.
    CounterSpike {
        value_wh: f64,
        reference_wh: f64,
        reference_at: DateTime<Utc>,
        limit_wh: f64,
    },
}

impl Rejection {
    /// A stable label for metrics and the quarantine table.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::UnknownDevice => "unknown_device",
            Rejection::NotFinite(_) => "not_finite",
            Rejection::Negative(_) => "negative",
            Rejection::PowerAboveRated { .. } => "power_above_rated",
            Rejection::OutOfRange { .. } => "out_of_range",
            Rejection::FrequencyZeroWhileProducing { .. } => "frequency_zero",
            Rejection::InFuture { .. } => "in_future",
            Rejection::TooOld { .. } => "too_old",
            Rejection::CounterBackwards { .. } => "counter_backwards",
            Rejection::ClockBehind { .. } => "clock_behind",
            Rejection::CounterSpike { .. } => "counter_spike",
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
            Rejection::OutOfRange {
                metric,
                value,
                min,
                max,
            } => format!("{metric} {value} is outside the physical range [{min}, {max}]"),
            Rejection::FrequencyZeroWhileProducing { power_w } => {
                format!("frequency_hz is 0 while producing ({power_w:.0} W)")
            }
            Rejection::InFuture { by_s } => format!("timestamp is {by_s} s in the future"),
            Rejection::TooOld { by_days } => format!("timestamp is {by_days} days old"),
            Rejection::CounterBackwards {
                value_wh,
                reference_wh,
                reference_at,
            } => format!(
                "energy_lifetime_wh {value_wh:.0} is below {reference_wh:.0} accepted at {}",
                reference_at.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            Rejection::ClockBehind {
                value_wh,
                reference_wh,
                reference_at,
            } => format!(
                "stamped before the reading accepted at {} (energy_lifetime_wh {value_wh:.0} against {reference_wh:.0}): the clock that stamped it is behind",
                reference_at.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            Rejection::CounterSpike {
                value_wh,
                reference_wh,
                reference_at,
                limit_wh,
            } => format!(
                "energy_lifetime_wh jumped from {reference_wh:.0} ({}) to {value_wh:.0}, more than the {limit_wh:.0} Wh the device can produce in that time",
                reference_at.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        }
    }
}

/// The physical range of a metric for a device of `rated_w`; `None` for unbounded metrics.
fn physical_range(metric: Metric, rated_w: f64) -> Option<(f64, f64)> {
    Some(match metric {
        // Inverters draw a little at night; more than 10 % of rated flowing backwards is a decode fault.
        Metric::AcPowerW => (-0.1 * rated_w, f64::INFINITY),
        Metric::ReactivePowerVar => (-1.5 * rated_w, 1.5 * rated_w),
        Metric::PowerFactor => (-1.0, 1.0),
        // 0 is a sleeping inverter; otherwise a 50 Hz or 60 Hz grid within protection limits.
        Metric::FrequencyHz => (0.0, 70.0),
        Metric::PhaseVoltageV(_) => (0.0, 1_000.0),
        Metric::PhaseCurrentA(_) | Metric::PvCurrentA(_) => (0.0, 5_000.0),
        // DC/AC ratios reach 1.5; twice rated is beyond any real array.
        Metric::DcPowerW => (-0.1 * rated_w, 2.0 * rated_w),
        Metric::PvVoltageV(_) => (0.0, 1_600.0),
        Metric::TemperatureC => (-50.0, 150.0),
        Metric::InsulationMohm => (0.0, f64::INFINITY),
        Metric::EfficiencyPct => (0.0, 100.0),
        Metric::EnergyTodayWh => (0.0, 1.5 * rated_w * 24.0),
        Metric::EnergyLifetimeWh | Metric::EnergyExportWh => (0.0, f64::INFINITY),
    })
}

/// Range and clock checks for one sample (pure).
pub fn validate(
    sample: &Sample,
    profile: Option<&DeviceProfile>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    validate_with(sample, profile, now, &ClockLimits::default())
}

/// [`validate`] with explicit clock limits.
pub fn validate_with(
    sample: &Sample,
    profile: Option<&DeviceProfile>,
    now: DateTime<Utc>,
    limits: &ClockLimits,
) -> Result<(), Rejection> {
    let profile = profile.ok_or(Rejection::UnknownDevice)?;
    let ahead = sample.at - now;
    if ahead > limits.max_ahead {
        return Err(Rejection::InFuture {
            by_s: ahead.num_seconds(),
        });
    }
    let age = now - sample.at;
    if age > limits.max_age {
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
    for (metric, value) in &sample.readings.values {
        if let Some((min, max)) = physical_range(*metric, profile.rated_power_w) {
            if *value < min || *value > max {
                return Err(Rejection::OutOfRange {
                    metric: *metric,
                    value: *value,
                    min,
                    max,
                });
            }
        }
    }
    if sample.readings.get(Metric::FrequencyHz) == Some(0.0) {
        let power = sample.readings.get(Metric::AcPowerW).unwrap_or(0.0);
        // 1 % of rated: below that an inverter may be waking up with its grid relay still open.
        let producing = power > 0.01 * profile.rated_power_w
            || (sample.readings.state == Some(DeviceState::Producing) && power > 0.0);
        if producing {
            return Err(Rejection::FrequencyZeroWhileProducing { power_w: power });
        }
    }
    Ok(())
}

/// A lifetime counter reading accepted earlier, the reference for the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterRef {
    pub at: DateTime<Utc>,
    pub wh: f64,
}

/// Counters are integers on most devices; allow for float rounding of scaled registers.
const COUNTER_BACK_TOLERANCE_WH: f64 = 1.0;
/// Devices with a 1 kWh counter resolution step by up to 1 kWh at once.
const COUNTER_STEP_SLACK_WH: f64 = 1_000.0;

/// Checks a lifetime counter against an accepted reading of the same device (pure). Works in both
/// directions of time, so a late sample from a logger backlog is judged as fairly as a live one:
/// between an earlier reading `a` and a later reading `b`, `0 <= b - a <= 1.5 x rated x hours`.
pub fn check_counter(
    at: DateTime<Utc>,
    wh: f64,
    reference: CounterRef,
    rated_power_w: f64,
) -> Result<(), Rejection> {
    let (earlier, later) = if at >= reference.at {
        ((reference.at, reference.wh), (at, wh))
    } else {
        ((at, wh), (reference.at, reference.wh))
    };
    let delta = later.1 - earlier.1;
    if delta < -COUNTER_BACK_TOLERANCE_WH && at < reference.at {
        return Err(Rejection::ClockBehind {
            value_wh: wh,
            reference_wh: reference.wh,
            reference_at: reference.at,
        });
    }
    if delta < -COUNTER_BACK_TOLERANCE_WH {
        return Err(Rejection::CounterBackwards {
            value_wh: wh,
            reference_wh: reference.wh,
            reference_at: reference.at,
        });
    }
    let hours = (later.0 - earlier.0).num_milliseconds() as f64 / 3_600_000.0;
    let limit = 1.5 * rated_power_w * hours + COUNTER_STEP_SLACK_WH;
    if delta > limit {
        return Err(Rejection::CounterSpike {
            value_wh: wh,
            reference_wh: reference.wh,
            reference_at: reference.at,
            limit_wh: limit,
        });
    }
    Ok(())
}

/// How many consecutive, mutually consistent readings below the reference make a counter reset
/// (a replaced inverter or a cleared memory) believable.
const RESET_CONFIRMATIONS: u32 = 3;

/// The per-device last accepted counter, seeded from the store's `latest` table so a restart keeps it.
#[derive(Debug, Default)]
pub struct CounterCache {
    refs: HashMap<DeviceId, CounterRef>,
    /// Readings that went backwards but agree with each other: a possible reset being confirmed.
    reset_candidates: HashMap<DeviceId, (CounterRef, u32)>,
}

impl CounterCache {
    pub fn get(&self, device: &DeviceId) -> Option<CounterRef> {
        self.refs.get(device).copied()
    }

    pub fn seed(&mut self, device: DeviceId, reference: CounterRef) {
        self.refs.insert(device, reference);
    }

    /// A polled reading is never late: stamped before its device's last accepted counter, it was
    /// stamped by a clock that went back, whatever its counter says.
    pub fn check_polled_order(&self, sample: &Sample) -> Result<(), Rejection> {
        let Some(wh) = sample.readings.get(Metric::EnergyLifetimeWh) else {
            return Ok(());
        };
        match self.refs.get(&sample.device) {
            Some(r) if sample.at < r.at => Err(Rejection::ClockBehind {
                value_wh: wh,
                reference_wh: r.wh,
                reference_at: r.at,
            }),
            _ => Ok(()),
        }
    }

    /// Judges `sample`'s lifetime counter and, when accepted, moves the reference forward.
    pub fn check_and_update(
        &mut self,
        sample: &Sample,
        rated_power_w: f64,
    ) -> Result<(), Rejection> {
        let Some(wh) = sample.readings.get(Metric::EnergyLifetimeWh) else {
            return Ok(());
        };
        let current = CounterRef { at: sample.at, wh };
        let Some(reference) = self.refs.get(&sample.device).copied() else {
            self.refs.insert(sample.device.clone(), current);
            return Ok(());
        };
        match check_counter(sample.at, wh, reference, rated_power_w) {
            Ok(()) => {
                self.reset_candidates.remove(&sample.device);
                if sample.at > reference.at {
                    self.refs.insert(sample.device.clone(), current);
                }
                Ok(())
            }
            Err(rejection @ Rejection::CounterBackwards { .. }) if sample.at > reference.at => {
                let confirmed = match self.reset_candidates.get(&sample.device) {
                    Some((prev, n))
                        if sample.at > prev.at
                            && check_counter(sample.at, wh, *prev, rated_power_w).is_ok() =>
                    {
                        n + 1
                    }
                    _ => 1,
                };
                if confirmed >= RESET_CONFIRMATIONS {
                    warn!(
                        device = %sample.device,
                        from_wh = reference.wh,
                        to_wh = wh,
                        "lifetime counter reset accepted after consistent readings"
                    );
                    self.reset_candidates.remove(&sample.device);
                    self.refs.insert(sample.device.clone(), current);
                    return Ok(());
                }
                self.reset_candidates
                    .insert(sample.device.clone(), (current, confirmed));
                Err(rejection)
            }
            Err(rejection) => Err(rejection),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the ingest worker has stopped")]
pub struct Closed;

/// Cheap to clone; given to every collector.
#[derive(Debug, Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Submission>,
}

/// One submission: its samples, and who waits to hear they are stored.
#[derive(Debug)]
struct Submission {
    samples: Vec<Sample>,
    written: Option<oneshot::Sender<()>>,
}

/// Resolves once the samples of an [`IngestHandle::submit_confirmed`] are stored (written,
/// recognised as duplicates or quarantined, all in the store): what a collector waits for before
/// it tells a broker the data is safe. `false` when the worker stopped without storing them.
#[derive(Debug)]
pub struct Written(oneshot::Receiver<()>);

impl std::future::Future for Written {
    type Output = bool;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<bool> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.is_ok())
    }
}

impl Written {
    /// Whether the samples are stored, without waiting: `None` while they are not yet.
    pub fn try_stored(&mut self) -> Option<bool> {
        match self.0.try_recv() {
            Ok(()) => Some(true),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(false),
        }
    }
}

impl IngestHandle {
    /// Queues samples. When the queue is full this waits: collectors slow down rather than lose data.
    pub async fn submit(&self, samples: Vec<Sample>) -> Result<(), Closed> {
        if samples.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Submission {
                samples,
                written: None,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Submissions queued and not yet taken by the worker.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues samples and returns what resolves once they are stored. A batch with someone
    /// waiting on it is written as soon as the queue is empty (no lingering for more), so a
    /// broker's window of unacknowledged messages keeps moving.
    pub async fn submit_confirmed(&self, samples: Vec<Sample>) -> Result<Written, Closed> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Submission {
                samples,
                written: Some(tx),
            })
            .await
            .map_err(|_| Closed)?;
        Ok(Written(rx))
    }
}

/// Samples taken off the queue together, and the submitters waiting for them.
struct Batch {
    samples: Vec<Sample>,
    waiting: Vec<oneshot::Sender<()>>,
}

/// Drains the queue into the store in batches.
#[derive(Debug)]
pub struct IngestWorker {
    rx: mpsc::Receiver<Submission>,
    store: Store,
    profiles: Arc<HashMap<DeviceId, DeviceProfile>>,
    metrics: Arc<Metrics>,
    forward: Option<mpsc::Sender<Vec<Sample>>>,
    max_batch: usize,
    limits: ClockLimits,
    counters: CounterCache,
    seeded: bool,
    /// Between retries of a failed store write: 100 ms doubling to 10 s.
    backoff: Backoff,
}

/// How long a batch under load waits to fill up to the batch limit. Each commit writes every index
/// page it touched, and samples of different devices touch different pages, so a commit of many
/// samples costs far less per sample than many small ones (a reader waits at most this long more).
const LINGER: Duration = Duration::from_millis(100);

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
            max_batch: 8_000,
            limits: ClockLimits::default(),
            counters: CounterCache::default(),
            seeded: false,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        },
    )
}

impl IngestWorker {
    /// Sends every stored batch on to `tx` as well (the InfluxDB sink). When that queue is full the
    /// worker waits, so the sink's own spool decides what happens under pressure.
    pub fn forward_to(&mut self, tx: mpsc::Sender<Vec<Sample>>) {
        self.forward = Some(tx);
    }

    /// Replaces the clock limits (see [`ClockLimits::for_retention`]).
    pub fn with_limits(mut self, limits: ClockLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Loads each device's last accepted lifetime counter from the store so counter sanity survives
    /// a restart. Runs by itself before the first batch; call it early to fail fast.
    pub async fn seed_counters(&mut self) -> Result<(), crate::store::Error> {
        let rows = self.store.latest().await?;
        self.seed_from(rows);
        Ok(())
    }

    fn seed_from(&mut self, rows: Vec<crate::store::LatestRow>) {
        for row in rows {
            if let Some(wh) = row.energy_lifetime_wh {
                self.counters
                    .seed(row.device, CounterRef { at: row.at, wh });
            }
        }
        self.seeded = true;
    }

    /// Validates and writes one batch now (the deterministic step tests drive). Never cancelled:
    /// a store error is retried until the batch is written.
    pub async fn ingest_now(&mut self, batch: Vec<Sample>, now: DateTime<Utc>) {
        let never = CancellationToken::new();
        if let Err(left) = self.process(batch, now, &never).await {
            left.report(&self.metrics);
        }
    }

    /// Runs until cancelled, then drains what is already queued. A store that is down holds a batch in memory, retried with backoff, for as
    /// long as the service runs; a cancel ends the wait for the next retry at once. At shutdown
    /// every queued batch is still tried once, until one write fails: the rest is not tried, and
    /// one error line says what was not written (those samples are lost: see [`Unwritten`]).
    pub async fn run(self, cancel: CancellationToken) {
        self.run_counted(cancel).await;
    }

    /// [`IngestWorker::run`], returning how many samples it left unwritten at shutdown.
    pub async fn run_counted(mut self, cancel: CancellationToken) -> u64 {
        let mut left: Option<Unwritten> = None;
        loop {
            // Only the wait for a submission races the cancel: a batch taken off the queue is
            // always processed to its end (written, or reported unwritten).
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                first = self.rx.recv() => match first {
                    Some(first) => first,
                    None => break,
                },
            };
            let batch = self.fill(first).await;
            if let Err(unwritten) = self.process_batch(batch, &cancel).await {
                left = Some(unwritten);
                break;
            }
        }
        self.rx.close();
        while let Some(first) = self.rx.recv().await {
            let batch = self.fill(first).await;
            match left.as_mut() {
                // The store failed at shutdown already: trying each batch again would only delay
                // it. Its waiters hear nothing was stored (their senders are dropped).
                Some(left) => left.add_samples(&batch.samples),
                None => {
                    if let Err(unwritten) = self.process_batch(batch, &cancel).await {
                        left = Some(unwritten);
                    }
                }
            }
        }
        let not_written = match left {
            Some(left) => left.report(&self.metrics),
            None => 0,
        };
        debug!(not_written, "ingest worker drained");
        not_written
    }

    /// Waits for at least one submission, writes everything queued up to the batch limit. Returns
    /// false once every handle is gone and the queue is empty.
    pub async fn tick(&mut self) -> bool {
        let Some(first) = self.rx.recv().await else {
            return false;
        };
        let batch = self.fill(first).await;
        let never = CancellationToken::new();
        if let Err(left) = self.process_batch(batch, &never).await {
            left.report(&self.metrics);
        }
        true
    }

    /// Adds to `first` what else is queued, up to the batch limit.
    async fn fill(&mut self, first: Submission) -> Batch {
        let mut batch = Batch {
            samples: Vec::new(),
            waiting: Vec::new(),
        };
        let take = |batch: &mut Batch, s: Submission| {
            batch.samples.extend(s.samples);
            batch.waiting.extend(s.written);
        };
        take(&mut batch, first);
        // Under load (more was already queued), a batch waits up to LINGER to fill: fewer, larger
        // transactions. A lone submission is written at once, and so is a batch someone waits on
        // once nothing more is queued (a broker holds its next messages until these are acked).
        // One timer serves the whole wait.
        let mut linger: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        while batch.samples.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(more) => {
                    take(&mut batch, more);
                    linger.get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    if !batch.waiting.is_empty() {
                        break;
                    }
                    let Some(wait) = linger.as_mut() else { break };
                    tokio::select! {
                        biased;
                        more = self.rx.recv() => match more {
                            Some(more) => take(&mut batch, more),
                            None => break,
                        },
                        () = wait.as_mut() => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        self.metrics
            .queue_depth
            .get_or_create(&vec![("queue", "ingest".to_owned())])
            .set(i64::try_from(self.rx.len()).unwrap_or(i64::MAX));
        batch
    }

    /// [`IngestWorker::process`] for a batch taken off the queue: its waiters hear once it is
    /// stored, or (dropped with it) that it was not.
    async fn process_batch(
        &mut self,
        batch: Batch,
        cancel: &CancellationToken,
    ) -> Result<(), Unwritten> {
        let Batch { samples, waiting } = batch;
        self.process(samples, Utc::now(), cancel).await?;
        for w in waiting {
            // A submitter that stopped waiting does not mind.
            let _ = w.send(());
        }
        Ok(())
    }

    /// Validates and writes one batch. Every store error is retried (`retry::Fault::Retriable`):
    /// the batch in memory is the only copy of these samples, so no error may drop it while the
    /// service runs. Only a cancel ends the retries, and then the batch comes back as [`Unwritten`].
    async fn process(
        &mut self,
        batch: Vec<Sample>,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<(), Unwritten> {
        if !self.seeded {
            let store = &self.store;
            let metrics = &self.metrics;
            let rows = retry(
                &mut self.backoff,
                None,
                cancel,
                || async move { store.latest().await.map_err(Fault::Retriable) },
                |error, attempt, wait| {
                    metrics.store_write_retries.inc();
                    warn!(%error, attempt, retry_in = ?wait, "cannot load the last counters; retrying");
                },
            )
            .await;
            match rows {
                Ok(rows) => self.seed_from(rows),
                Err(gave_up) => {
                    let mut left = Unwritten::new(gave_up.into_error().to_string());
                    left.add_samples(&batch);
                    return Err(left);
                }
            }
        }
        let mut good = Vec::with_capacity(batch.len());
        let mut refused: Vec<(Sample, Rejection)> = Vec::new();
        for s in batch {
            let profile = self.profiles.get(&s.device);
            let verdict = validate_with(&s, profile, now, &self.limits).and_then(|()| {
                if profile.is_some_and(|p| p.polled) {
                    self.counters.check_polled_order(&s)?;
                }
                let rated = profile.map_or(0.0, |p| p.rated_power_w);
                self.counters.check_and_update(&s, rated)
            });
            match verdict {
                Ok(()) => good.push(s),
                Err(r) => refused.push((s, r)),
            }
        }
        if !refused.is_empty() {
            for (s, r) in &refused {
                self.metrics
                    .samples_quarantined
                    .get_or_create(&vec![("reason", r.label().to_owned())])
                    .inc();
                debug!(device = %s.device, reason = r.label(), "sample quarantined");
            }
            let rows: Vec<QuarantineEntry<'_>> = refused
                .iter()
                .map(|(s, r)| QuarantineEntry {
                    sample: s,
                    code: r.label(),
                    reason: r.describe(),
                })
                .collect();
            // Quarantined values are kept like good ones: retried, never dropped.
            let store = &self.store;
            let metrics = &self.metrics;
            let rows = &rows;
            let recorded = retry(
                &mut self.backoff,
                None,
                cancel,
                || async move {
                    store
                        .quarantine_many(rows, now)
                        .await
                        .map_err(Fault::Retriable)
                },
                |error, attempt, wait| {
                    metrics.store_write_retries.inc();
                    warn!(%error, attempt, retry_in = ?wait, samples = rows.len(), "could not record quarantined samples; retrying");
                },
            )
            .await;
            if let Err(gave_up) = recorded {
                let mut left = Unwritten::new(gave_up.into_error().to_string());
                left.add_samples(&good);
                left.add_quarantined(refused.iter().map(|(s, _)| s));
                return Err(left);
            }
        }
        if good.is_empty() {
            return Ok(());
        }
        let profiles = Arc::clone(&self.profiles);
        let tz_of = move |d: &DeviceId| {
            profiles
                .get(d)
                .map_or(chrono_tz::Asia::Shanghai, |p| p.timezone)
        };
        let started = Instant::now();
        let store = &self.store;
        let metrics = &self.metrics;
        let samples = &good;
        let tz_of = &tz_of;
        let written = retry(
            &mut self.backoff,
            None,
            cancel,
            || async move {
                store
                    .write_samples_marked(samples, tz_of)
                    .await
                    .map_err(Fault::Retriable)
            },
            |error, attempt, wait| {
                metrics.store_write_retries.inc();
                warn!(%error, attempt, retry_in = ?wait, samples = samples.len(), "store write failed; retrying");
            },
        )
        .await;
        let (outcome, stored) = match written {
            Ok(done) => done,
            Err(gave_up) => {
                let mut left = Unwritten::new(gave_up.into_error().to_string());
                left.add_samples(&good);
                return Err(left);
            }
        };
        // Only rows newly stored go on to the sinks: a redelivery is not a new point.
        let mut marks = stored.into_iter();
        good.retain(|_| marks.next().unwrap_or(false));
        self.metrics
            .store_write_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .samples_ingested
            .inc_by(outcome.inserted as u64);
        self.metrics
            .samples_duplicate
            .inc_by(outcome.duplicates as u64);
        if let Some(tx) = self.forward.as_ref().filter(|_| !good.is_empty()) {
            if tx.send(good).await.is_err() {
                warn!("sink queue closed; samples stay in the store only");
                self.forward = None;
            }
        }
        Ok(())
    }
}

/// What a shutdown during a store outage left unwritten. These samples are lost: a Modbus reading
/// is not taken again, and an MQTT message is acknowledged to the broker once its samples are
/// queued into ingest (see `collect::mqtt`), so the broker does not deliver it again. Only a
/// logger's own history could send them again.
#[derive(Debug)]
struct Unwritten {
    error: String,
    samples: u64,
    quarantined: u64,
    devices: std::collections::BTreeSet<DeviceId>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Unwritten {
    fn new(error: String) -> Self {
        Self {
            error,
            samples: 0,
            quarantined: 0,
            devices: Default::default(),
            first: None,
            last: None,
        }
    }

    fn note(&mut self, s: &Sample) {
        self.devices.insert(s.device.clone());
        self.first = Some(self.first.map_or(s.at, |f| f.min(s.at)));
        self.last = Some(self.last.map_or(s.at, |l| l.max(s.at)));
    }

    fn add_samples(&mut self, batch: &[Sample]) {
        for s in batch {
            self.samples += 1;
            self.note(s);
        }
    }

    fn add_quarantined<'a>(&mut self, refused: impl Iterator<Item = &'a Sample>) {
        for s in refused {
            self.quarantined += 1;
            self.note(s);
        }
    }

    /// One error line saying what was not written; returns how many samples that is.
    fn report(self, metrics: &Metrics) -> u64 {
        let total = self.samples + self.quarantined;
        metrics.samples_not_written.inc_by(total);
        let shown: Vec<&str> = self.devices.iter().take(20).map(DeviceId::as_str).collect();
        let fmt = |t: Option<DateTime<Utc>>| {
            t.map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        };
        error!(
            error = %self.error,
            samples = self.samples,
            quarantined = self.quarantined,
            devices = self.devices.len(),
            device_ids = %shown.join(","),
            read_from = %fmt(self.first),
            read_to = %fmt(self.last),
            "stopping while the store is unavailable: these samples were NOT written and are lost \
             (MQTT messages were acknowledged when queued into ingest, so the broker will not \
             deliver them again; Modbus readings are not read again)"
        );
        total
    }
}

/// Deletes raw samples older than `storage.raw_retention`; rollups and latest values stay.
#[derive(Debug, Clone)]
pub struct RawRetention {
    store: Store,
    retention: Duration,
    metrics: Arc<Metrics>,
}

impl RawRetention {
    pub fn new(store: Store, retention: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            retention,
            metrics,
        }
    }

    /// One purge pass as of `now`; returns how many raw rows were removed.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<u64, crate::store::Error> {
        let keep = ChronoDuration::from_std(self.retention).unwrap_or(ChronoDuration::days(30));
        let removed = self.store.purge_raw_before(now - keep).await?;
        self.metrics.raw_samples_purged.inc_by(removed);
        if removed > 0 {
            debug!(removed, "raw samples past retention purged");
        }
        Ok(removed)
    }

    /// Purges every `every` while `leadership` says this instance leads, until cancelled (first
    /// pass right away).
    pub async fn run(
        self,
        every: Duration,
        leadership: crate::store::Leadership,
        cancel: CancellationToken,
    ) {
        let mut interval = tokio::time::interval(every.max(Duration::from_secs(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {
                    if leadership.fence().is_none() {
                        continue;
                    }
                    if let Err(error) = self.tick(Utc::now()).await {
                        warn!(%error, "raw retention purge failed; next pass retries");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Readings;
    use crate::store::testing;
    use chrono::TimeZone;

    const RATED: f64 = 50_000.0;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 4, 0, 0)
            .single()
            .expect("valid time")
    }

    fn sample(device: &str, at: DateTime<Utc>, power: f64, lifetime: f64) -> Sample {
        let mut readings = Readings::default();
        readings.set(Metric::AcPowerW, power);
        readings.set(Metric::EnergyLifetimeWh, lifetime);
        readings.set(Metric::FrequencyHz, 50.0);
        readings.state = Some(DeviceState::Producing);
        Sample {
            device: DeviceId::new(device),
            at,
            readings,
        }
    }

    fn profile() -> DeviceProfile {
        DeviceProfile {
            polled: false,
            rated_power_w: RATED,
            timezone: chrono_tz::Asia::Shanghai,
        }
    }

    fn profiles() -> HashMap<DeviceId, DeviceProfile> {
        ["inv-1", "inv-2"]
            .into_iter()
            .map(|d| (DeviceId::new(d), profile()))
            .collect()
    }

    fn limits() -> ClockLimits {
        ClockLimits {
            max_ahead: ChronoDuration::minutes(10),
            max_age: ChronoDuration::days(30),
        }
    }

    fn label(s: &Sample, now: DateTime<Utc>) -> Option<&'static str> {
        validate_with(s, Some(&profile()), now, &limits())
            .err()
            .map(|r| r.label())
    }

    #[test]
    fn physical_ranges_and_clock_are_checked() {
        let now = t0();
        let ok = sample("inv-1", now, 30_000.0, 1e6);
        assert_eq!(label(&ok, now), None);

        let mut nan = ok.clone();
        nan.readings.set(Metric::TemperatureC, f64::NAN);
        assert_eq!(label(&nan, now), Some("not_finite"));

        let mut hot = ok.clone();
        hot.readings.set(Metric::TemperatureC, 400.0);
        assert_eq!(label(&hot, now), Some("out_of_range"));

        let mut pf = ok.clone();
        pf.readings.set(Metric::PowerFactor, 1.7);
        assert_eq!(label(&pf, now), Some("out_of_range"));

        let mut freq = ok.clone();
        freq.readings.set(Metric::FrequencyHz, 0.0);
        assert_eq!(label(&freq, now), Some("frequency_zero"));
        // Asleep at night with frequency 0 and no power is normal.
        let mut night = sample("inv-1", now, 0.0, 1e6);
        night.readings.set(Metric::FrequencyHz, 0.0);
        night.readings.state = Some(DeviceState::StandbyNight);
        assert_eq!(label(&night, now), None);

        let big = sample("inv-1", now, RATED * 1.6, 1e6);
        assert_eq!(label(&big, now), Some("power_above_rated"));

        let mut neg = ok.clone();
        neg.readings.set(Metric::EnergyTodayWh, -5.0);
        assert_eq!(label(&neg, now), Some("negative"));

        let future = sample("inv-1", now + ChronoDuration::minutes(11), 1.0, 1e6);
        assert_eq!(label(&future, now), Some("in_future"));
        let drift = sample("inv-1", now + ChronoDuration::minutes(9), 1.0, 1e6);
        assert_eq!(label(&drift, now), None);
        let old = sample("inv-1", now - ChronoDuration::days(31), 1.0, 1e6);
        assert_eq!(label(&old, now), Some("too_old"));
        assert_eq!(
            validate(&ok, None, now).map_err(|r| r.label()),
            Err("unknown_device")
        );
    }

    #[test]
    fn counter_checks_work_in_both_directions_of_time() {
        let r = CounterRef {
            at: t0(),
            wh: 100_000.0,
        };
        let hour = ChronoDuration::hours(1);
        // One hour later a 50 kW device can add at most 75 kWh (+ resolution slack).
        assert!(check_counter(t0() + hour, 150_000.0, r, RATED).is_ok());
        assert_eq!(
            check_counter(t0() + hour, 200_000.0, r, RATED).map_err(|e| e.label()),
            Err("counter_spike")
        );
        assert_eq!(
            check_counter(t0() + hour, 90_000.0, r, RATED).map_err(|e| e.label()),
            Err("counter_backwards")
        );
        // A late sample one hour before the reference must be lower, but not by more than 76 kWh;
        // one that is higher was stamped by a clock that is behind.
        assert!(check_counter(t0() - hour, 60_000.0, r, RATED).is_ok());
        assert_eq!(
            check_counter(t0() - hour, 110_000.0, r, RATED).map_err(|e| e.label()),
            Err("clock_behind")
        );
        assert_eq!(
            check_counter(t0() - hour, 1_000.0, r, RATED).map_err(|e| e.label()),
            Err("counter_spike")
        );
    }

    #[test]
    fn a_polled_reading_stamped_before_the_last_one_is_clock_behind_whatever_its_counter() {
        let mut cache = CounterCache::default();
        let m = |n: i64| t0() + ChronoDuration::minutes(n);
        assert!(cache
            .check_and_update(&sample("inv-1", m(60), 1.0, 5e6), RATED)
            .is_ok());
        // An hour back, the counter unchanged (a slow counter): from a logger it could be a late
        // reading, but Sunshare stamps what it polls as it reads it.
        let behind = sample("inv-1", m(1), 1.0, 5e6);
        assert!(cache.check_and_update(&behind, RATED).is_ok());
        assert_eq!(
            cache.check_polled_order(&behind).map_err(|e| e.label()),
            Err("clock_behind")
        );
        assert!(cache
            .check_polled_order(&sample("inv-1", m(61), 1.0, 5e6 + 10.0))
            .is_ok());
        assert!(cache
            .check_polled_order(&sample("inv-2", m(1), 1.0, 1.0))
            .is_ok());
    }

    #[test]
    fn a_counter_reset_is_accepted_only_after_consistent_readings() {
        let mut cache = CounterCache::default();
        let m = |n: i64| t0() + ChronoDuration::minutes(n);
        assert!(cache
            .check_and_update(&sample("inv-1", m(0), 1.0, 5e6), RATED)
            .is_ok());
        // A single glitch backwards is refused and the reference stays.
        assert!(cache
            .check_and_update(&sample("inv-1", m(1), 1.0, 10.0), RATED)
            .is_err());
        assert!(cache
            .check_and_update(&sample("inv-1", m(2), 1.0, 5e6 + 100.0), RATED)
            .is_ok());
        assert_eq!(
            cache.get(&DeviceId::new("inv-1")).map(|r| r.wh),
            Some(5e6 + 100.0)
        );
        // A replaced inverter starts near zero and keeps counting: the third reading is accepted.
        assert!(cache
            .check_and_update(&sample("inv-1", m(3), 1.0, 10.0), RATED)
            .is_err());
        assert!(cache
            .check_and_update(&sample("inv-1", m(4), 1.0, 20.0), RATED)
            .is_err());
        assert!(cache
            .check_and_update(&sample("inv-1", m(5), 1.0, 30.0), RATED)
            .is_ok());
        assert!(cache
            .check_and_update(&sample("inv-1", m(6), 1.0, 40.0), RATED)
            .is_ok());
    }

    async fn worker_for(store: &Store) -> (IngestHandle, IngestWorker, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let (h, w) = channel(8, store.clone(), profiles(), Arc::clone(&metrics));
        (h, w.with_limits(limits()), metrics)
    }

    /// Polls `done` until it holds; `tokio::time::timeout` around it is the failure bound.
    async fn until(done: impl Fn() -> bool) {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_cancel_during_a_store_outage_stops_the_worker_and_says_what_was_not_written(
    ) -> anyhow::Result<()> {
        let bound = Duration::from_secs(10);
        let now = Utc::now();
        let m = |n: i64| now - ChronoDuration::minutes(n);
        // The store answered at start-up (counters seeded), then went away: every write fails.
        let ts = testing::sqlite().await?;
        let (h, mut w, metrics) = worker_for(&ts.store).await;
        w.seed_counters().await?;
        ts.store.close().await;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(w.run_counted(cancel.clone()));
        // One good sample and one for the quarantine: the quarantine write fails first.
        h.submit(vec![
            sample("inv-1", m(3), 1_000.0, 1e6),
            sample("ghost", m(3), 1_000.0, 1e6),
        ])
        .await?;
        tokio::time::timeout(bound, until(|| metrics.store_write_retries.get() >= 2)).await?;
        // Queued behind the batch being retried: never tried, but counted.
        h.submit(vec![sample("inv-2", m(2), 1_000.0, 2e6)]).await?;
        assert!(!task.is_finished(), "the batch is held while not cancelled");
        cancel.cancel();
        let not_written = tokio::time::timeout(bound, task).await??;
        assert_eq!(not_written, 3);
        assert_eq!(metrics.samples_not_written.get(), 3);
        assert_eq!(metrics.samples_ingested.get(), 0);

        // Never seeded: the counters cannot be loaded, and a cancel ends that wait as well.
        let ts = testing::sqlite().await?;
        let (h, w, metrics) = worker_for(&ts.store).await;
        ts.store.close().await;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(w.run_counted(cancel.clone()));
        h.submit(vec![sample("inv-1", m(1), 1_000.0, 1e6)]).await?;
        tokio::time::timeout(bound, until(|| metrics.store_write_retries.get() >= 1)).await?;
        cancel.cancel();
        assert_eq!(tokio::time::timeout(bound, task).await??, 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_confirmed_submission_resolves_once_stored_and_says_so_when_it_was_not(
    ) -> anyhow::Result<()> {
        let bound = Duration::from_secs(10);
        let now = Utc::now();
        let m = |n: i64| now - ChronoDuration::minutes(n);
        let ts = testing::sqlite().await?;
        let (h, mut w, _) = worker_for(&ts.store).await;
        let mut written = h
            .submit_confirmed(vec![sample("inv-1", m(3), 1_000.0, 1e6)])
            .await?;
        assert_eq!(
            written.try_stored(),
            None,
            "not stored before the worker ran"
        );
        assert!(w.tick().await);
        assert_eq!(ts.store.raw_count().await?, 1);
        assert_eq!(written.try_stored(), Some(true));
        // Several waiting in one batch hear together, a quarantined sample counts as stored.
        let a = h
            .submit_confirmed(vec![sample("inv-1", m(2), 1_000.0, 1e6 + 10.0)])
            .await?;
        let b = h
            .submit_confirmed(vec![sample("ghost", m(2), 1_000.0, 1e6)])
            .await?;
        assert!(w.tick().await);
        assert!(tokio::time::timeout(bound, a).await? && tokio::time::timeout(bound, b).await?);

        // The store went away and the service stops: the waiter hears nothing was stored, so a
        // broker is never told the message is safe.
        let ts = testing::sqlite().await?;
        let (h, mut w, metrics) = worker_for(&ts.store).await;
        w.seed_counters().await?;
        ts.store.close().await;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(w.run_counted(cancel.clone()));
        let lost = h
            .submit_confirmed(vec![sample("inv-1", m(1), 1_000.0, 1e6)])
            .await?;
        tokio::time::timeout(bound, until(|| metrics.store_write_retries.get() >= 1)).await?;
        cancel.cancel();
        assert_eq!(tokio::time::timeout(bound, task).await??, 1);
        assert!(!tokio::time::timeout(bound, lost).await?);
        Ok(())
    }

    #[tokio::test]
    async fn at_shutdown_a_store_that_answers_gets_the_whole_queue() -> anyhow::Result<()> {
        let ts = testing::sqlite().await?;
        let (h, w, metrics) = worker_for(&ts.store).await;
        let now = Utc::now();
        let cancel = CancellationToken::new();
        // Queued before the worker runs, cancelled before it starts: the drain still writes it all.
        for i in 0..5 {
            h.submit(vec![sample(
                "inv-1",
                now - ChronoDuration::minutes(10 - i),
                1_000.0,
                1e6 + i as f64,
            )])
            .await?;
        }
        cancel.cancel();
        let not_written =
            tokio::time::timeout(Duration::from_secs(10), w.run_counted(cancel)).await?;
        assert_eq!(not_written, 0);
        assert_eq!(ts.store.raw_count().await?, 5);
        assert_eq!(metrics.samples_not_written.get(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn bad_samples_are_quarantined_with_reasons_and_counted() -> anyhow::Result<()> {
        for ts in testing::all("bad_samples_are_quarantined_with_reasons_and_counted").await? {
            let store = &ts.store;
            let (_h, mut w, metrics) = worker_for(store).await;
            let now = t0();
            let mut nan = sample("inv-1", now, 1_000.0, 1e6);
            nan.readings.set(Metric::AcPowerW, f64::NAN);
            let batch = vec![
                sample("inv-1", now - ChronoDuration::minutes(2), 1_000.0, 1e6),
                nan,
                sample("inv-1", now - ChronoDuration::minutes(1), 1_000.0, 9e5),
                sample("ghost", now, 1_000.0, 1e6),
            ];
            w.ingest_now(batch, now).await;
            assert_eq!(store.raw_count().await?, 1, "{}", ts.name);
            let q = store.quarantined(None, 10).await?;
            let mut codes: Vec<_> = q.iter().map(|r| r.code.as_str()).collect();
            codes.sort_unstable();
            assert_eq!(
                codes,
                ["counter_backwards", "not_finite", "unknown_device"],
                "{}",
                ts.name
            );
            let one = store.quarantined(Some(&DeviceId::new("ghost")), 10).await?;
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].reason, "device is not in the registry");
            let text = metrics.render();
            assert!(
                text.contains("sunshare_samples_quarantined_total{reason=\"counter_backwards\"} 1"),
                "{text}"
            );
            assert!(store.quarantined(None, 2).await?.len() == 2);
        }
        Ok(())
    }

    #[tokio::test]
    async fn duplicates_are_stored_once_and_rollups_never_double_count() -> anyhow::Result<()> {
        for ts in testing::all("duplicates_are_stored_once_and_rollups_never_double_count").await? {
            let store = &ts.store;
            let (_h, mut w, metrics) = worker_for(store).await;
            let now = t0();
            let at = |m: i64| now - ChronoDuration::minutes(m);
            let live: Vec<Sample> = (0..5)
                .map(|i| {
                    sample(
                        "inv-1",
                        at(10 - i),
                        10_000.0 + i as f64,
                        1e6 + 100.0 * i as f64,
                    )
                })
                .collect();
            w.ingest_now(live.clone(), now).await;
            // A QoS 1 redelivery of the whole batch plus an in-batch repeat.
            let mut again = live.clone();
            again.push(live[0].clone());
            w.ingest_now(again, now).await;
            assert_eq!(store.raw_count().await?, 5, "{}", ts.name);
            assert_eq!(metrics.samples_ingested.get(), 5);
            assert_eq!(metrics.samples_duplicate.get(), 6);
            let day = store
                .rollups(
                    &DeviceId::new("inv-1"),
                    86_400,
                    now - ChronoDuration::days(1),
                    now + ChronoDuration::days(1),
                )
                .await?;
            assert_eq!(day.len(), 1);
            assert_eq!(day[0].samples, 5, "{}", ts.name);
            assert_eq!(day[0].power_max_w, Some(10_004.0));
            let avg = day[0].power_avg_w.unwrap_or_default();
            assert!((avg - 10_002.0).abs() < 1e-9, "{avg}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn only_newly_stored_samples_are_forwarded_to_the_sinks() -> anyhow::Result<()> {
        let ts = testing::sqlite().await?;
        let (_h, mut w, _) = worker_for(&ts.store).await;
        let (tx, mut rx) = mpsc::channel(8);
        w.forward_to(tx);
        let now = t0();
        let a = sample("inv-1", now - ChronoDuration::minutes(2), 1.0, 1e6);
        let b = sample("inv-1", now - ChronoDuration::minutes(1), 1.0, 1e6 + 10.0);
        w.ingest_now(vec![a.clone(), b.clone()], now).await;
        w.ingest_now(vec![b.clone(), a.clone()], now).await;
        let mut nan = b.clone();
        nan.at = now;
        nan.readings.set(Metric::AcPowerW, f64::NAN);
        w.ingest_now(vec![nan], now).await;
        drop(w);
        let mut forwarded = Vec::new();
        while let Some(batch) = rx.recv().await {
            forwarded.extend(batch);
        }
        assert_eq!(forwarded, vec![a, b]);
        Ok(())
    }

    #[tokio::test]
    async fn a_day_of_backlog_arriving_late_updates_the_rollups() -> anyhow::Result<()> {
        for ts in testing::all("a_day_of_backlog_arriving_late_updates_the_rollups").await? {
            let store = &ts.store;
            let (_h, mut w, _) = worker_for(store).await;
            let now = t0();
            let dev = DeviceId::new("inv-2");
            // Live data arrives for the current hour first...
            let live: Vec<Sample> = (0..12)
                .map(|i| {
                    sample(
                        "inv-2",
                        now - ChronoDuration::minutes(60 - 5 * i),
                        20_000.0,
                        2e6 + 1_000.0 * i as f64,
                    )
                })
                .collect();
            w.ingest_now(live, now).await;
            // ...then the logger uploads the previous day, oldest first, 5-minute samples.
            let start = now - ChronoDuration::hours(25);
            let backlog: Vec<Sample> = (0..288)
                .map(|i| {
                    sample(
                        "inv-2",
                        start + ChronoDuration::minutes(5 * i),
                        5_000.0,
                        1_900_000.0 + 300.0 * i as f64,
                    )
                })
                .collect();
            w.ingest_now(backlog, now).await;
            assert_eq!(store.raw_count().await?, 300, "{}", ts.name);
            assert!(store.quarantined(None, 10).await?.is_empty(), "{}", ts.name);
            let hours = store
                .rollups(
                    &dev,
                    3600,
                    start - ChronoDuration::hours(1),
                    now + ChronoDuration::hours(1),
                )
                .await?;
            let total: i64 = hours.iter().map(|h| h.samples).sum();
            assert_eq!(total, 300, "{}", ts.name);
            let days = store
                .rollups(
                    &dev,
                    86_400,
                    start - ChronoDuration::days(1),
                    now + ChronoDuration::days(1),
                )
                .await?;
            // The earliest counter in the earliest day comes from the backlog, not the live data.
            let first_day = &days[0];
            assert_eq!(first_day.energy_first.map(|e| e.1), Some(1_900_000.0));
            let last = days.last().and_then(|d| d.energy_last).map(|e| e.1);
            assert_eq!(last, Some(2e6 + 11_000.0));
        }
        Ok(())
    }

    #[tokio::test]
    async fn the_counter_cache_survives_a_restart() -> anyhow::Result<()> {
        for ts in testing::all("the_counter_cache_survives_a_restart").await? {
            let store = &ts.store;
            let now = t0();
            {
                let (_h, mut w, _) = worker_for(store).await;
                w.ingest_now(
                    vec![sample("inv-1", now - ChronoDuration::minutes(5), 1.0, 7e6)],
                    now,
                )
                .await;
            }
            let (_h, mut w, _) = worker_for(store).await;
            w.ingest_now(
                vec![
                    sample("inv-1", now, 1.0, 6e6),
                    sample("inv-1", now + ChronoDuration::minutes(1), 1.0, 7e6 + 50.0),
                ],
                now + ChronoDuration::minutes(1),
            )
            .await;
            let q = store.quarantined(Some(&DeviceId::new("inv-1")), 10).await?;
            assert_eq!(q.len(), 1, "{}", ts.name);
            assert_eq!(q[0].code, "counter_backwards");
            assert!(q[0].reason.contains("7000000"), "{}", q[0].reason);
            assert_eq!(store.raw_count().await?, 2);
        }
        Ok(())
    }

    #[tokio::test]
    async fn retention_purges_raw_but_keeps_rollups() -> anyhow::Result<()> {
        for ts in testing::all("retention_purges_raw_but_keeps_rollups").await? {
            let store = &ts.store;
            let now = t0();
            let (_h, mut w, metrics) = worker_for(store).await;
            let batch: Vec<Sample> = (0..10)
                .map(|d| {
                    sample(
                        "inv-1",
                        now - ChronoDuration::days(d) - ChronoDuration::hours(1),
                        1.0,
                        1e6 + d as f64,
                    )
                })
                .rev()
                .collect();
            // Counters grow with time: oldest sample has the smallest value.
            let batch: Vec<Sample> = batch
                .into_iter()
                .enumerate()
                .map(|(i, mut s)| {
                    s.readings
                        .set(Metric::EnergyLifetimeWh, 1e6 + 1_000.0 * i as f64);
                    s
                })
                .collect();
            w.ingest_now(batch, now).await;
            assert_eq!(store.raw_count().await?, 10, "{}", ts.name);
            let purge = RawRetention::new(
                store.clone(),
                Duration::from_secs(5 * 86_400),
                Arc::clone(&metrics),
            );
            assert_eq!(purge.tick(now).await?, 5, "{}", ts.name);
            assert_eq!(store.raw_count().await?, 5);
            assert_eq!(purge.tick(now).await?, 0);
            assert_eq!(metrics.raw_samples_purged.get(), 5);
            let days = store
                .rollups(
                    &DeviceId::new("inv-1"),
                    86_400,
                    now - ChronoDuration::days(20),
                    now,
                )
                .await?;
            assert!(days.len() >= 10, "rollups kept: {}", days.len());
        }
        Ok(())
    }
}
