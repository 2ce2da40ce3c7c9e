//! Process-wide counters and gauges, rendered as Prometheus text on `/metrics`.
//!
//! Components receive an `Arc<Metrics>` and bump what they own; nothing here does I/O.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels for per-reason counters.
pub type ReasonLabels = Vec<(&'static str, String)>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub samples_ingested: Counter,
    pub samples_duplicate: Counter,
    pub samples_quarantined: Family<ReasonLabels, Counter>,
    pub poll_errors: Family<ReasonLabels, Counter>,
    pub polls: Counter,
    pub queue_depth: Family<ReasonLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub store_write_seconds: Histogram,
    pub store_write_retries: Counter,
    pub samples_not_written: Counter,
    pub sink_points_written: Counter,
    pub sink_points_spooled: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub sink_points_dropped: Counter,
    pub mqtt_messages: Family<ReasonLabels, Counter>,
    pub alerts_open: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub notify_failures: Counter<u64, AtomicU64>,
    pub raw_samples_purged: Counter,
    pub sink_points_dead_letter: Counter,
    pub sink_spool_bytes: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub sink_server_up: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub sink_write_errors: Family<ReasonLabels, Counter>,
    pub clock_steps: Family<ReasonLabels, Counter>,
    /// Read from the runtime at each [`Metrics::render`].
    pub tasks_alive: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sunshare");
        let m = Metrics {
            samples_ingested: Counter::default(),
            samples_duplicate: Counter::default(),
            samples_quarantined: Family::default(),
            poll_errors: Family::default(),
            polls: Counter::default(),
            queue_depth: Family::default(),
            store_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            store_write_retries: Counter::default(),
            samples_not_written: Counter::default(),
            sink_points_written: Counter::default(),
            sink_points_spooled: Gauge::default(),
            sink_points_dropped: Counter::default(),
            mqtt_messages: Family::default(),
            alerts_open: Gauge::default(),
            notify_failures: Counter::default(),
            raw_samples_purged: Counter::default(),
            sink_points_dead_letter: Counter::default(),
            sink_spool_bytes: Gauge::default(),
            sink_server_up: Gauge::default(),
            sink_write_errors: Family::default(),
            clock_steps: Family::default(),
            tasks_alive: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "samples_ingested",
            "Samples accepted into the store",
            m.samples_ingested.clone(),
        );
        registry.register(
            "samples_duplicate",
            "Samples recognised as already stored",
            m.samples_duplicate.clone(),
        );
        registry.register(
            "samples_quarantined",
            "Samples quarantined by validation, by reason",
            m.samples_quarantined.clone(),
        );
        registry.register("polls", "Device polls completed", m.polls.clone());
        registry.register(
            "poll_errors",
            "Device poll failures, by kind",
            m.poll_errors.clone(),
        );
        registry.register(
            "queue_depth",
            "Items waiting in internal queues",
            m.queue_depth.clone(),
        );
        registry.register(
            "store_write_seconds",
            "Latency of one batched store write",
            m.store_write_seconds.clone(),
        );
        registry.register(
            "store_write_retries",
            "Ingest store writes that failed and were tried again",
            m.store_write_retries.clone(),
        );
        registry.register(
            "samples_not_written",
            "Samples left unwritten by a shutdown while the store was unavailable",
            m.samples_not_written.clone(),
        );
        registry.register(
            "sink_points_written",
            "Points accepted by the InfluxDB sink's server",
            m.sink_points_written.clone(),
        );
        registry.register(
            "sink_points_spooled",
            "Points waiting in the sink's disk spool",
            m.sink_points_spooled.clone(),
        );
        registry.register(
            "sink_points_dropped",
            "Points dropped by the spool-full policy",
            m.sink_points_dropped.clone(),
        );
        registry.register(
            "mqtt_messages",
            "MQTT messages by outcome",
            m.mqtt_messages.clone(),
        );
        registry.register(
            "alerts_open",
            "Alerts currently open",
            m.alerts_open.clone(),
        );
        registry.register(
            "notify_failures",
            "Alert notifications that failed after retries",
            m.notify_failures.clone(),
        );
        registry.register(
            "raw_samples_purged",
            "Raw samples deleted by the retention purge",
            m.raw_samples_purged.clone(),
        );
        registry.register(
            "sink_points_dead_letter",
            "Points the InfluxDB server refused (4xx) and kept in the dead-letter file",
            m.sink_points_dead_letter.clone(),
        );
        registry.register(
            "sink_spool_bytes",
            "Bytes waiting in the sink's disk spool",
            m.sink_spool_bytes.clone(),
        );
        registry.register(
            "sink_server_up",
            "1 when the last write to the InfluxDB server succeeded, else 0",
            m.sink_server_up.clone(),
        );
        registry.register(
            "sink_write_errors",
            "Failed writes to the InfluxDB server, by kind",
            m.sink_write_errors.clone(),
        );
        registry.register(
            "clock_steps",
            "Steps of the system clock that stamps readings, by direction",
            m.clock_steps.clone(),
        );
        registry.register(
            "tasks_alive",
            "Tasks alive in the service's async runtime (flat under steady load)",
            m.tasks_alive.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.tasks_alive
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
