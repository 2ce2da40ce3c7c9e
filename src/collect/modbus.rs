//! The Modbus poller. One task owns each gateway connection (Modbus TCP or RTU over TCP) and polls
//! every unit id behind it over that one connection, one request in flight.
//!
//! Every request has a timeout. Busy (0x06) and device-failure (0x04) answers are retried later
//! with capped exponential backoff and jitter, without holding the connection. A per-device circuit
//! breaker stops a dead or sleeping unit from eating the others' time; an unreachable gateway (a
//! dongle that switches off at night) is retried with capped backoff and logged once per change,
//! not once per poll. Schedules are fixed grids: a late poll never shifts the next one, and skipped
//! slots are counted.
//!
//! This module never writes to the store: everything goes through [`IngestHandle`].

use crate::config::Deployment;
use crate::domain::{DeviceId, Sample, Transport};
use crate::ingest::IngestHandle;
use crate::metrics::Metrics;
use crate::registers::{sunspec, Catalog, Decoded, FunctionCode, ReadBlock, RegisterMap, Timing};
use crate::retry::Backoff;
use chrono::{DateTime, Utc};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_modbus::client::{Client as _, Context};
use tokio_modbus::prelude::SlaveContext as _;
use tokio_modbus::Slave;
use tokio_modbus::{Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

/// How requests are framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Framing {
    /// Modbus TCP (MBAP header with transaction ids).
    Tcp,
    /// RTU frames (CRC, no transaction id) carried over TCP: serial servers and DTUs.
    RtuOverTcp,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("no connection to {address} within {timeout:?}")]
    ConnectTimeout { address: String, timeout: Duration },
    #[error("no answer from unit {unit} within {timeout:?}")]
    Timeout { unit: u8, timeout: Duration },
    #[error("unit {unit} answered with exception {code:#04x} ({})", exception_name(*.code))]
    Exception { unit: u8, code: u8 },
    #[error("transport: {0}")]
    Transport(String),
    #[error("decoding: {0}")]
    Decode(#[from] crate::registers::DecodeError),
    #[error("no SunSpec marker at any of the bases {0:?}")]
    NoSunspec(Vec<u16>),
}

impl Error {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Connect { .. } | Error::ConnectTimeout { .. } => "connect",
            Error::Timeout { .. } => "timeout",
            Error::Exception { code: 6, .. } => "busy",
            Error::Exception { code: 4, .. } => "device_failure",
            Error::Exception { .. } => "exception",
            Error::Transport(_) => "transport",
            Error::Decode(_) => "decode",
            Error::NoSunspec(_) => "no_sunspec",
        }
    }

    /// Busy and device failure mean "ask again a little later".
    fn retry_later(&self) -> bool {
        matches!(self, Error::Exception { code: 4 | 6, .. })
    }

    /// After these the byte stream can no longer be trusted: reconnect.
    fn poisons_connection(&self) -> bool {
        matches!(self, Error::Transport(_) | Error::Connect { .. })
    }
}

fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "other",
    }
}

/// Poller tuning that a deployment may set under `[collect]`, overriding the register map's timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimingOverride {
    pub timeout: Option<Duration>,
    pub request_gap: Option<Duration>,
    pub connect_delay: Option<Duration>,
}

impl TimingOverride {
    pub fn apply(&self, t: Timing) -> Timing {
        Timing {
            timeout: self.timeout.unwrap_or(t.timeout),
            request_gap: self.request_gap.unwrap_or(t.request_gap),
            connect_delay: self.connect_delay.unwrap_or(t.connect_delay),
        }
    }
}

/// One device to poll behind a gateway.
#[derive(Clone, Debug)]
pub struct PollTarget {
    pub device: DeviceId,
    pub unit: u8,
    pub map: Arc<RegisterMap>,
    pub interval: Duration,
    pub timing: Timing,
}

/// Retries a failing device this many times (busy / device failure) before giving up the slot.
const MAX_RETRIES: u32 = 3;
/// Consecutive failures that open a device's breaker.
const BREAKER_THRESHOLD: u32 = 3;
/// Longest a breaker stays open, and the longest wait before reconnecting to a gateway.
const MAX_COOLDOWN: Duration = Duration::from_secs(600);
/// Modbus TCP: reconnect after this many timeouts in a row (a late answer may be in the pipe).
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Where a device's link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Unknown,
    Ok,
    /// Failing, breaker still closed.
    Failing,
    /// Breaker open: not polled until the cooldown ends (asleep at night, or dead).
    Open,
    /// The gateway itself cannot be reached.
    Unreachable,
}

/// What a test or a status page can see of one device.
#[derive(Clone, Debug)]
pub struct DeviceStats {
    pub device: DeviceId,
    pub unit: u8,
    pub polls_ok: u64,
    pub polls_failed: u64,
    /// Scheduled slots that passed without a poll because the gateway was busy with others.
    pub missed: u64,
    pub last_read: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub link: Link,
}

#[derive(Debug)]
struct Slot {
    target: PollTarget,
    /// The map laid on the device's discovered SunSpec chain.
    placed: Option<Arc<RegisterMap>>,
    next_due: Instant,
    retry_at: Option<Instant>,
    attempt: u32,
    /// Between quick retries of a busy or failing device: 200 ms doubling to 10 s.
    retry: Backoff,
    failures: u32,
    open_until: Option<Instant>,
    /// How long the open breaker waits: the poll interval, doubling to 10 min (or the interval).
    cooldown: Backoff,
    stats: DeviceStats,
}

impl Slot {
    fn due(&self) -> Instant {
        if let Some(r) = self.retry_at {
            return r;
        }
        match self.open_until {
            Some(t) if t > self.next_due => t,
            _ => self.next_due,
        }
    }
}

/// Poll latency and read counts shared by many pollers (benchmarks, status pages). Lock-free: a
/// fixed log-scale histogram of atomics.
#[derive(Debug)]
pub struct PollObserver {
    /// Bucket i counts polls that took [1.1^i, 1.1^(i+1)) microseconds.
    buckets: Vec<std::sync::atomic::AtomicU64>,
    pub blocks_read: std::sync::atomic::AtomicU64,
    pub polls: std::sync::atomic::AtomicU64,
}

const BUCKET_BASE: f64 = 1.1;

impl Default for PollObserver {
    fn default() -> Self {
        PollObserver {
            buckets: (0..200).map(|_| Default::default()).collect(),
            blocks_read: Default::default(),
            polls: Default::default(),
        }
    }
}

impl PollObserver {
    fn record(&self, took: Duration, blocks: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let us = took.as_micros().max(1) as f64;
        let i = (us.ln() / BUCKET_BASE.ln()) as usize;
        if let Some(b) = self.buckets.get(i.min(self.buckets.len() - 1)) {
            b.fetch_add(1, Relaxed);
        }
        self.polls.fetch_add(1, Relaxed);
        self.blocks_read.fetch_add(blocks as u64, Relaxed);
    }

    /// The latency below which `q` (0..=1) of the polls fell (upper bucket edge, ±10 %).
    pub fn quantile(&self, q: f64) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Duration::from_micros(BUCKET_BASE.powi(i as i32 + 1) as u64);
            }
        }
        Duration::MAX
    }
}

/// What one [`GatewayPoller::tick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    Polled {
        device: DeviceId,
        ok: bool,
    },
    /// The gateway could not be reached; every device waits for the reconnect.
    GatewayDown,
    /// Nothing to poll.
    Idle,
}

/// Until when a lease is this instance's, by the monotonic clock; shared with the poller.
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<std::sync::Mutex<Option<Instant>>>);

impl Held {
    /// True while the lease is held.
    pub fn holds(&self) -> bool {
        self.until().is_some_and(|u| Instant::now() < u)
    }

    fn until(&self) -> Option<Instant> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Held until `until` (renewed), or not at all.
    pub fn set(&self, until: Option<Instant>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
    }
}

/// Builds a gateway's poller each time this instance takes its lease.
pub type MakePoller = Box<dyn Fn() -> GatewayPoller + Send + Sync>;

/// One gateway that instances sharing a database take turns to poll (see `crate::cluster`).
pub struct Gateway {
    /// The address, as the deployment names it: the lease is `modbus:<address>`.
    pub address: String,
    pub make: MakePoller,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("address", &self.address)
            .finish()
    }
}

/// Owns one gateway connection and the devices behind it.
pub struct GatewayPoller {
    address: String,
    framing: Framing,
    slots: Vec<Slot>,
    conn: Option<Context>,
    ingest: IngestHandle,
    metrics: Arc<Metrics>,
    reconnect_at: Option<Instant>,
    reconnect: Backoff,
    gateway_up: Option<bool>,
    timeouts_in_row: u32,
    last_request_end: Option<Instant>,
    observer: Option<Arc<PollObserver>>,
    /// When the gateway is shared by leases: no request goes out once the lease has run out.
    held: Option<Held>,
}

impl std::fmt::Debug for GatewayPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayPoller")
            .field("address", &self.address)
            .field("framing", &self.framing)
            .field("devices", &self.slots.len())
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl GatewayPoller {
    pub fn new(
        address: String,
        framing: Framing,
        targets: Vec<PollTarget>,
        ingest: IngestHandle,
        metrics: Arc<Metrics>,
    ) -> GatewayPoller {
        let now = Instant::now();
        // The longest wait for a reconnect is one poll interval (up to 10 min): a dongle that
        // wakes at dawn is picked up within one schedule slot.
        let reconnect_cap = targets
            .iter()
            .map(|t| t.interval)
            .min()
            .unwrap_or(MAX_COOLDOWN)
            .min(MAX_COOLDOWN)
            .max(Duration::from_secs(1));
        let slots = targets
            .into_iter()
            .map(|target| Slot {
                next_due: now,
                stats: DeviceStats {
                    device: target.device.clone(),
                    unit: target.unit,
                    polls_ok: 0,
                    polls_failed: 0,
                    missed: 0,
                    last_read: None,
                    last_error: None,
                    link: Link::Unknown,
                },
                cooldown: Backoff::new(target.interval, MAX_COOLDOWN.max(target.interval)),
                placed: None,
                retry_at: None,
                attempt: 0,
                retry: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
                failures: 0,
                open_until: None,
                target,
            })
            .collect();
        GatewayPoller {
            address,
            framing,
            slots,
            conn: None,
            ingest,
            metrics,
            reconnect_at: None,
            reconnect: Backoff::new(Duration::from_secs(1), reconnect_cap),
            gateway_up: None,
            timeouts_in_row: 0,
            last_request_end: None,
            observer: None,
            held: None,
        }
    }

    /// Records every successful poll's latency and block count into `observer`.
    pub fn with_observer(mut self, observer: Arc<PollObserver>) -> GatewayPoller {
        self.observer = Some(observer);
        self
    }

    /// Delays every first poll by `phase`, so thousands of gateways started together do not all
    /// fall due in the same instant.
    pub fn with_phase(mut self, phase: Duration) -> GatewayPoller {
        for s in &mut self.slots {
            s.next_due += phase;
        }
        self
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn stats(&self) -> Vec<DeviceStats> {
        self.slots.iter().map(|s| s.stats.clone()).collect()
    }

    /// Polls until cancelled; returns the devices' final statistics.
    pub async fn run(mut self, cancel: CancellationToken) -> Vec<DeviceStats> {
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                _ = self.tick() => {}
            }
        }
        if let Some(mut ctx) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), ctx.disconnect()).await;
        }
        debug!(gateway = %self.address, "poller stopped");
        self.stats()
    }

    /// Waits for the next device that falls due and polls it.
    pub async fn tick(&mut self) -> Tick {
        let Some(idx) = (0..self.slots.len()).min_by_key(|i| self.slots[*i].due()) else {
            std::future::pending::<()>().await;
            return Tick::Idle;
        };
        let mut due = self.slots[idx].due();
        if let Some(r) = self.reconnect_at {
            due = due.max(r);
        }
        tokio::time::sleep_until(due).await;
        if self.held.as_ref().is_some_and(|h| !h.holds()) {
            // The lease ran out (this process paused, or the database went away): another
            // instance may poll the gateway now. The keeper stops this poller.
            std::future::pending::<()>().await;
        }
        self.poll_slot(idx).await
    }

    /// Polls only while `held` says the lease is this instance's.
    pub fn with_lease(mut self, held: Held) -> Self {
        self.held = Some(held);
        self
    }

    fn count_error(&self, kind: &'static str) {
        self.metrics
            .poll_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// Moves the schedule past now, counting the slots that were skipped.
    fn advance_schedule(&mut self, idx: usize, now: Instant) {
        let slot = &mut self.slots[idx];
        if slot.retry_at.take().is_some() {
            return;
        }
        let interval = slot.target.interval.max(Duration::from_millis(1));
        let mut missed = 0u64;
        if now > slot.next_due {
            let late = now - slot.next_due;
            missed = (late.as_nanos() / interval.as_nanos()) as u64;
        }
        // Equivalent of MissedTickBehavior::Skip on a fixed grid: the next slot after now.
        slot.next_due += interval * (u32::try_from(missed).unwrap_or(u32::MAX).saturating_add(1));
        if missed > 0 && slot.open_until.is_none() {
            slot.stats.missed += missed;
            debug!(device = %slot.target.device, missed, "poll slots skipped");
            self.count_error("missed_schedule");
        }
    }

    async fn poll_slot(&mut self, idx: usize) -> Tick {
        let now = Instant::now();
        self.advance_schedule(idx, now);
        if self.conn.is_none() {
            match self.connect().await {
                Ok(()) => {}
                Err(error) => {
                    self.gateway_down(&error);
                    return Tick::GatewayDown;
                }
            }
        }
        let device = self.slots[idx].target.device.clone();
        let started = Instant::now();
        let result = self.read_slot(idx).await;
        let ok = result.is_ok();
        match result {
            Ok((at, readings)) => {
                if let Some(o) = &self.observer {
                    let map = &self.slots[idx].target.map;
                    o.record(started.elapsed(), map.poll_plan().len());
                }
                self.on_success(idx, at);
                let sample = Sample {
                    device: device.clone(),
                    at,
                    readings,
                };
                if self.ingest.submit(vec![sample]).await.is_err() {
                    warn!(gateway = %self.address, "ingest has stopped; sample not stored");
                }
            }
            Err(error) => self.on_failure(idx, &error),
        }
        Tick::Polled { device, ok }
    }

    async fn connect(&mut self) -> Result<(), Error> {
        let timeout = self
            .slots
            .iter()
            .map(|s| s.target.timing.timeout)
            .max()
            .unwrap_or(Duration::from_secs(5));
        let ctx = connect(&self.address, self.framing, 0, timeout).await?;
        let delay = self
            .slots
            .iter()
            .map(|s| s.target.timing.connect_delay)
            .max()
            .unwrap_or_default();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.conn = Some(ctx);
        self.reconnect_at = None;
        self.reconnect.reset();
        self.timeouts_in_row = 0;
        self.last_request_end = None;
        for s in &mut self.slots {
            // A new connection may reach a different device: discover SunSpec chains again.
            s.placed = None;
            if s.stats.link == Link::Unreachable {
                s.stats.link = Link::Unknown;
            }
        }
        match self.gateway_up {
            Some(false) => info!(gateway = %self.address, "gateway reachable again"),
            None => debug!(gateway = %self.address, "gateway connected"),
            Some(true) => debug!(gateway = %self.address, "reconnected"),
        }
        self.gateway_up = Some(true);
        Ok(())
    }

    fn gateway_down(&mut self, error: &Error) {
        self.count_error("connect");
        let wait = self.reconnect.next_delay();
        self.reconnect_at = Some(Instant::now() + wait);
        if self.gateway_up != Some(false) {
            // Once per change: a dongle that is off all night is one line, not one per poll.
            warn!(gateway = %self.address, %error, "gateway unreachable (asleep at night or offline); retrying with backoff");
        } else {
            debug!(gateway = %self.address, %error, ?wait, "gateway still unreachable");
        }
        self.gateway_up = Some(false);
        let back = Instant::now() + wait;
        for s in &mut self.slots {
            s.stats.link = Link::Unreachable;
            s.stats.last_error = Some(error.to_string());
            // Slots that pass while the gateway is away are not "missed" by a slow poller: move
            // the grid past the reconnect without counting them.
            let interval = s.target.interval.max(Duration::from_millis(1));
            if s.next_due < back {
                let behind = (back - s.next_due).as_nanos() / interval.as_nanos();
                let skip = u32::try_from(behind).unwrap_or(u32::MAX).saturating_add(1);
                s.next_due += interval.saturating_mul(skip);
            }
            s.retry_at = None;
            s.attempt = 0;
            s.retry.reset();
        }
    }

    fn on_success(&mut self, idx: usize, at: DateTime<Utc>) {
        self.timeouts_in_row = 0;
        self.metrics.polls.inc();
        let s = &mut self.slots[idx];
        if s.open_until.is_some() || s.stats.link == Link::Open {
            info!(device = %s.target.device, "device answering again");
        }
        s.attempt = 0;
        s.retry.reset();
        s.failures = 0;
        s.open_until = None;
        s.cooldown.reset();
        s.stats.polls_ok += 1;
        s.stats.last_read = Some(at);
        s.stats.link = Link::Ok;
    }

    fn on_failure(&mut self, idx: usize, error: &Error) {
        self.count_error(error.kind());
        if matches!(error, Error::Timeout { .. }) {
            self.timeouts_in_row += 1;
            // RTU has no transaction id: a late answer would be taken for the next one.
            if self.framing == Framing::RtuOverTcp
                || self.timeouts_in_row >= TIMEOUTS_BEFORE_RECONNECT
            {
                self.conn = None;
                self.timeouts_in_row = 0;
            }
        }
        if error.poisons_connection() {
            self.conn = None;
        }
        let now = Instant::now();
        let s = &mut self.slots[idx];
        s.stats.last_error = Some(error.to_string());
        if error.retry_later() && s.attempt < MAX_RETRIES {
            s.attempt += 1;
            s.retry_at = Some(now + s.retry.next_delay());
            debug!(device = %s.target.device, %error, attempt = s.attempt, "retrying later");
            return;
        }
        s.attempt = 0;
        s.retry.reset();
        s.failures += 1;
        s.stats.polls_failed += 1;
        if s.failures >= BREAKER_THRESHOLD {
            // Never shorter than the poll interval: the jitter only spreads longer cooldowns.
            let wait = s.cooldown.next_delay().max(s.target.interval);
            s.open_until = Some(now + wait);
            if s.stats.link != Link::Open {
                warn!(device = %s.target.device, %error, ?wait, "device not answering (asleep or failed); polling it less often");
            } else {
                debug!(device = %s.target.device, %error, ?wait, "device still not answering");
            }
            s.stats.link = Link::Open;
        } else {
            debug!(device = %s.target.device, %error, "poll failed");
            s.stats.link = Link::Failing;
        }
    }

    #[instrument(level = "debug", skip_all, fields(device = %self.slots[idx].target.device))]
    async fn read_slot(
        &mut self,
        idx: usize,
    ) -> Result<(DateTime<Utc>, crate::domain::Readings), Error> {
        let Some(ctx) = self.conn.as_mut() else {
            return Err(Error::Transport("not connected".into()));
        };
        let slot = &mut self.slots[idx];
        let unit = slot.target.unit;
        let timing = slot.target.timing;
        ctx.set_slave(Slave(unit));
        let mut pacer = Pacer {
            gap: timing.request_gap,
            last_end: self.last_request_end,
        };
        if slot.target.map.is_sunspec() && slot.placed.is_none() {
            let placed = discover(ctx, &slot.target.map, unit, timing.timeout, &mut pacer).await;
            self.last_request_end = pacer.last_end;
            slot.placed = Some(Arc::new(placed?));
        }
        let map = slot
            .placed
            .clone()
            .unwrap_or_else(|| Arc::clone(&slot.target.map));
        let result = read_plan(ctx, map.poll_plan(), unit, timing.timeout, &mut pacer).await;
        self.last_request_end = pacer.last_end;
        let (at, blocks) = result?;
        Ok((at, map.decode(&blocks)?))
    }
}

/// Keeps the inter-request gap on one connection.
struct Pacer {
    gap: Duration,
    last_end: Option<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        if let Some(end) = self.last_end {
            if !self.gap.is_zero() {
                tokio::time::sleep_until(end + self.gap).await;
            }
        }
    }
}

/// Connects to a gateway with a timeout.
pub async fn connect(
    address: &str,
    framing: Framing,
    unit: u8,
    timeout: Duration,
) -> Result<Context, Error> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| Error::ConnectTimeout {
            address: address.to_owned(),
            timeout,
        })?
        .map_err(|source| Error::Connect {
            address: address.to_owned(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(match framing {
        Framing::Tcp => tokio_modbus::client::tcp::attach_slave(stream, Slave(unit)),
        Framing::RtuOverTcp => tokio_modbus::client::rtu::attach_slave(stream, Slave(unit)),
    })
}

/// One register read with a timeout, checked for length.
async fn read_block(
    ctx: &mut Context,
    function: FunctionCode,
    start: u16,
    count: u16,
    unit: u8,
    timeout: Duration,
    pacer: &mut Pacer,
) -> Result<Vec<u16>, Error> {
    pacer.wait().await;
    // `Client::call` rather than the `Reader` methods: those assert on the answer's length, and a
    // device that sends the wrong count must be an error here, never a panic.
    let request = match function {
        FunctionCode::ReadHolding => Request::ReadHoldingRegisters(start, count),
        FunctionCode::ReadInput => Request::ReadInputRegisters(start, count),
    };
    let result = tokio::time::timeout(timeout, ctx.call(request)).await;
    pacer.last_end = Some(Instant::now());
    let words = match result {
        Err(_) => return Err(Error::Timeout { unit, timeout }),
        Ok(Err(e)) => return Err(Error::Transport(e.to_string())),
        Ok(Ok(Err(code))) => {
            return Err(Error::Exception {
                unit,
                code: u8::from(code),
            })
        }
        Ok(Ok(Ok(Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w)))) => w,
        Ok(Ok(Ok(other))) => {
            return Err(Error::Transport(format!(
                "unexpected answer to a register read: {other:?}"
            )))
        }
    };
    if words.len() == usize::from(count) {
        Ok(words)
    } else {
        Err(Error::Transport(format!(
            "asked for {count} registers at {start}, got {}",
            words.len()
        )))
    }
}

/// Reads the blocks of a plan. The sample is stamped when the first answer arrived.
async fn read_plan(
    ctx: &mut Context,
    plan: &[ReadBlock],
    unit: u8,
    timeout: Duration,
    pacer: &mut Pacer,
) -> Result<(DateTime<Utc>, Vec<(u16, Vec<u16>)>), Error> {
    let mut blocks = Vec::with_capacity(plan.len());
    let mut at = None;
    for b in plan {
        let words = read_block(ctx, b.function, b.start, b.count, unit, timeout, pacer).await?;
        at.get_or_insert_with(Utc::now);
        blocks.push((b.start, words));
    }
    Ok((at.unwrap_or_else(Utc::now), blocks))
}

/// Finds a SunSpec device's model chain and lays the map on it.
async fn discover(
    ctx: &mut Context,
    map: &RegisterMap,
    unit: u8,
    timeout: Duration,
    pacer: &mut Pacer,
) -> Result<RegisterMap, Error> {
    let f = map.function();
    for &base in map.sunspec_bases() {
        let words = match read_block(ctx, f, base, 2, unit, timeout, pacer).await {
            Ok(w) => w,
            // Illegal address: no marker here, try the next base.
            Err(Error::Exception { code: 2, .. }) => continue,
            Err(e) => return Err(e),
        };
        if !sunspec::is_marker(&words) {
            continue;
        }
        let mut walker = sunspec::ChainWalker::new(base);
        loop {
            let header = read_block(ctx, f, walker.next_address(), 2, unit, timeout, pacer).await?;
            match walker.feed(&header)? {
                sunspec::Step::Read(_) => continue,
                sunspec::Step::Done(chain) => {
                    debug!(unit, models = ?chain.models.iter().map(|m| m.id).collect::<Vec<_>>(), "SunSpec chain");
                    return Ok(map.with_chain(chain)?);
                }
            }
        }
    }
    Err(Error::NoSunspec(map.sunspec_bases().to_vec()))
}

/// A one-shot read for commissioning: connect, (discover), read every block, decode.
pub async fn probe(
    map: &RegisterMap,
    address: &str,
    unit: u8,
    framing: Framing,
    timeout: Duration,
) -> Result<Decoded, Error> {
    let timing = map.timing();
    let mut ctx = connect(address, framing, unit, timeout).await?;
    if !timing.connect_delay.is_zero() {
        tokio::time::sleep(timing.connect_delay).await;
    }
    let mut pacer = Pacer {
        gap: timing.request_gap,
        last_end: None,
    };
    let placed;
    let map = if map.is_sunspec() {
        placed = discover(&mut ctx, map, unit, timeout, &mut pacer).await?;
        &placed
    } else {
        map
    };
    let result = read_plan(&mut ctx, map.plan(), unit, timeout, &mut pacer).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), ctx.disconnect()).await;
    let (_, blocks) = result?;
    Ok(map.decode_full(&blocks)?)
}

/// The devices of a deployment grouped by the gateway connection that reaches them.
pub fn plan_gateways(
    deployment: &Deployment,
    catalog: &Catalog,
    tuning: TimingOverride,
) -> Result<BTreeMap<(String, Framing), Vec<PollTarget>>, String> {
    let mut out: BTreeMap<(String, Framing), Vec<PollTarget>> = BTreeMap::new();
    for d in &deployment.devices {
        let (framing, unit) = match &d.transport {
            Transport::ModbusTcp { unit, .. } => (Framing::Tcp, *unit),
            Transport::RtuOverTcp { unit, .. } => (Framing::RtuOverTcp, *unit),
            Transport::Mqtt { .. } => continue,
        };
        let Some(address) = d.transport.gateway() else {
            continue;
        };
        let map = catalog.get(&d.model).ok_or_else(|| {
            format!(
                "device '{}' uses register map '{}', which is not loaded",
                d.id, d.model
            )
        })?;
        let timing = tuning.apply(map.timing());
        out.entry((address.to_owned(), framing))
            .or_default()
            .push(PollTarget {
                device: d.id.clone(),
                unit,
                timing,
                interval: d.poll_interval.unwrap_or(deployment.collect.poll_interval),
                map,
            });
    }
    Ok(out)
}

/// Spawns one poller task per gateway connection, or, when the gateways are `shared` by several
/// instances, spawns none and returns a poller factory per gateway for `crate::cluster::share`.
pub fn spawn_all(
    deployment: &Deployment,
    catalog: &Catalog,
    ingest: IngestHandle,
    metrics: Arc<Metrics>,
    shared: bool,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Vec<Gateway>, String> {
    let tuning = TimingOverride {
        timeout: deployment.collect.modbus_timeout,
        request_gap: deployment.collect.modbus_request_gap,
        connect_delay: deployment.collect.modbus_connect_delay,
    };
    let gateways = plan_gateways(deployment, catalog, tuning)?;
    let n = gateways.len();
    let mut factories = Vec::new();
    for ((address, framing), targets) in gateways {
        let shortest = targets
            .iter()
            .map(|t| t.interval)
            .min()
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        let (ingest, metrics, at) = (ingest.clone(), Arc::clone(&metrics), address.clone());
        let make = move || {
            let phase = shortest.mul_f64(StdRng::from_entropy().gen_range(0.0..1.0));
            GatewayPoller::new(
                at.clone(),
                framing,
                targets.clone(),
                ingest.clone(),
                Arc::clone(&metrics),
            )
            .with_phase(phase)
        };
        if shared {
            factories.push(Gateway {
                address,
                make: Box::new(make),
            });
        } else {
            tracker.spawn(make().run(cancel.child_token()));
        }
    }
    if !shared && n > 0 {
        info!(gateways = n, "modbus pollers started");
    }
    Ok(factories)
}

/// The `sunshare probe` result as one JSON object: normalised metric names (unit in the name),
/// `state`, `alarms`, `serial`, `model` and the register map used.
pub fn probe_json(map: &RegisterMap, decoded: &Decoded) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("map".into(), map.name().into());
    o.insert(
        "model".into(),
        decoded
            .model
            .clone()
            .unwrap_or_else(|| map.name().to_owned())
            .into(),
    );
    o.insert(
        "serial".into(),
        decoded
            .serial
            .clone()
            .map_or(serde_json::Value::Null, Into::into),
    );
    for (m, v) in &decoded.readings.values {
        o.insert(m.name(), serde_json::json!(v));
    }
    o.insert(
        "state".into(),
        decoded
            .readings
            .state
            .map_or("unknown", |s| s.as_str())
            .into(),
    );
    o.insert(
        "alarms".into(),
        serde_json::Value::Array(
            decoded
                .readings
                .alarms
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "code": a.code, "text_en": a.text_en, "text_zh": a.text_zh,
                        "grid_loss": a.grid_loss,
                    })
                })
                .collect(),
        ),
    );
    serde_json::Value::Object(o)
}

/// The `sunshare probe` result as aligned text lines.
pub fn probe_text(map: &RegisterMap, decoded: &Decoded) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        out.push_str(&format!("{k:<22} {v}\n"));
    };
    line("map", format!("{} ({})", map.name(), map.description()));
    line("model", decoded.model.clone().unwrap_or_else(|| "-".into()));
    line(
        "serial",
        decoded.serial.clone().unwrap_or_else(|| "-".into()),
    );
    line(
        "state",
        decoded
            .readings
            .state
            .map_or("unknown", |s| s.as_str())
            .to_owned(),
    );
    for (m, v) in &decoded.readings.values {
        line(&m.name(), format!("{v}"));
    }
    if decoded.readings.alarms.is_empty() {
        line("alarms", "none".into());
    }
    for a in &decoded.readings.alarms {
        line(
            "alarm",
            format!(
                "{} {} / {}{}",
                a.code,
                a.text_en,
                a.text_zh,
                if a.grid_loss { " (grid loss)" } else { "" }
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_quantiles_follow_the_recorded_latencies() {
        let o = PollObserver::default();
        for _ in 0..98 {
            o.record(Duration::from_millis(2), 3);
        }
        o.record(Duration::from_millis(200), 3);
        o.record(Duration::from_millis(250), 3);
        let p50 = o.quantile(0.5);
        assert!(
            p50 >= Duration::from_millis(2) && p50 < Duration::from_micros(2_300),
            "{p50:?}"
        );
        let p99 = o.quantile(0.99);
        assert!(
            p99 >= Duration::from_millis(200) && p99 < Duration::from_millis(230),
            "{p99:?}"
        );
        assert_eq!(
            o.blocks_read.load(std::sync::atomic::Ordering::Relaxed),
            300
        );
    }

    #[test]
    fn only_busy_and_device_failure_are_retried() {
        let e = |code| Error::Exception { unit: 1, code };
        assert!(e(6).retry_later() && e(4).retry_later());
        assert!(!e(2).retry_later() && !e(0x0B).retry_later());
        assert!(!Error::Timeout {
            unit: 1,
            timeout: Duration::from_secs(1)
        }
        .retry_later());
        assert_eq!(e(6).kind(), "busy");
        assert!(e(2).to_string().contains("illegal data address"));
    }

    #[test]
    fn config_overrides_map_timing() {
        let t = TimingOverride {
            timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        }
        .apply(Timing {
            connect_delay: Duration::from_secs(1),
            request_gap: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
        });
        assert_eq!(t.timeout, Duration::from_secs(2));
        assert_eq!(t.connect_delay, Duration::from_secs(1));
    }
}
