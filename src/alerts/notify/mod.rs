//! Delivers alert events to people: generic JSON webhooks, DingTalk and WeCom group-chat robots, and
//! an MQTT alert topic. Retries with capped exponential backoff and jitter; folds bursts into one
//! summary and rate-limits each destination, so a county-wide blackout is one message, not a
//! thousand. A destination that keeps failing is itself visible: a metric, a log line and a status
//! row the alerts page shows.
//!
//! Must never: block the alert engine (it hands batches over a bounded channel), or log a webhook URL
//! (robot URLs carry their access token).

mod format;
mod mqtt;

pub use crate::config::alerts::{Format, NotifyConfig, WebhookConfig};
pub use format::{render, Message};
pub use mqtt::{MqttSink, MqttSinkConfig};

use crate::alerts::{Event, Severity};
use crate::metrics::Metrics;
use crate::retry::{retry, Backoff, Fault};
use crate::store::Store;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("bad MQTT broker address '{0}' (expected host:port)")]
    BadBroker(String),
}

/// Why one delivery attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub retriable: bool,
    pub message: String,
}

impl SendError {
    fn retriable(message: impl Into<String>) -> Self {
        Self {
            retriable: true,
            message: message.into(),
        }
    }
    fn fatal(message: impl Into<String>) -> Self {
        Self {
            retriable: false,
            message: message.into(),
        }
    }
}

/// An event with what a person needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNotice {
    pub id: i64,
    pub station_name: String,
    pub event: Event,
}

enum SinkKind {
    Webhook {
        client: reqwest::Client,
        cfg: WebhookConfig,
    },
    Mqtt(MqttSink),
}

struct Slot {
    name: String,
    format: Format,
    min_severity: Severity,
    kind: SinkKind,
    sent: VecDeque<DateTime<Utc>>,
    deferred: Vec<AlertNotice>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("deferred", &self.deferred.len())
            .finish_non_exhaustive()
    }
}

/// What one dispatch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub messages_sent: usize,
    pub messages_failed: usize,
    pub deferred: usize,
}

/// Turns batches of events into messages per destination and delivers them.
#[derive(Debug)]
pub struct Dispatcher {
    slots: Vec<Slot>,
    cfg: NotifyConfig,
    store: Option<Store>,
    metrics: Arc<Metrics>,
    /// Ends the wait between retries of a delivery (the worker's token).
    cancel: CancellationToken,
}

impl Dispatcher {
    /// Builds the webhook destinations; add MQTT with [`Dispatcher::add_mqtt`].
    pub fn new(
        cfg: &NotifyConfig,
        store: Option<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let slots = cfg
            .webhooks
            .iter()
            .map(|w| Slot {
                name: w.name.clone(),
                format: w.format,
                min_severity: w.min_severity,
                kind: SinkKind::Webhook {
                    client: client.clone(),
                    cfg: w.clone(),
                },
                sent: VecDeque::new(),
                deferred: Vec::new(),
            })
            .collect();
        Ok(Self {
            slots,
            cfg: cfg.clone(),
            store,
            metrics,
            cancel: CancellationToken::new(),
        })
    }

    pub fn add_mqtt(&mut self, sink: MqttSink) {
        self.slots.push(Slot {
            name: sink.name(),
            format: Format::Json,
            min_severity: Severity::Minor,
            kind: SinkKind::Mqtt(sink),
            sent: VecDeque::new(),
            deferred: Vec::new(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sends `notices` (plus anything deferred by the rate limit) to every destination.
    pub async fn dispatch(
        &mut self,
        notices: &[AlertNotice],
        now: DateTime<Utc>,
    ) -> DispatchReport {
        let mut report = DispatchReport::default();
        let hour = chrono::Duration::hours(1);
        for i in 0..self.slots.len() {
            let (messages, deferred) = {
                let slot = &mut self.slots[i];
                while slot.sent.front().is_some_and(|t| now - *t >= hour) {
                    slot.sent.pop_front();
                }
                let had_deferred = !slot.deferred.is_empty();
                let mut pending = std::mem::take(&mut slot.deferred);
                pending.extend(
                    notices
                        .iter()
                        .filter(|n| n.event.notify && n.event.severity >= slot.min_severity)
                        .cloned(),
                );
                if pending.is_empty() {
                    continue;
                }
                let budget = self.cfg.max_per_hour.saturating_sub(slot.sent.len());
                let mut messages = Vec::new();
                if budget == 0 {
                    slot.deferred = pending;
                } else if had_deferred || pending.len() > self.cfg.summary_threshold {
                    messages.push(Message::Summary(pending));
                } else if pending.len() <= budget {
                    messages.extend(pending.into_iter().map(Message::Single));
                } else {
                    messages.push(Message::Summary(pending));
                }
                for _ in &messages {
                    slot.sent.push_back(now);
                }
                (messages, slot.deferred.len())
            };
            report.deferred += deferred;
            for m in messages {
                match self.deliver(i, &m).await {
                    Ok(()) => report.messages_sent += 1,
                    Err(_) => report.messages_failed += 1,
                }
            }
        }
        report
    }

    async fn deliver(&self, i: usize, message: &Message) -> Result<(), SendError> {
        let slot = &self.slots[i];
        let body = render(
            slot.format,
            message,
            &self.keyword(i),
            self.cfg.public_url.as_deref(),
        );
        let mut backoff = Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max);
        let body = &body;
        let timeout = self.cfg.timeout;
        let outcome = retry(
            &mut backoff,
            Some(self.cfg.max_attempts.max(1)),
            &self.cancel,
            || async move {
                let result = match &slot.kind {
                    SinkKind::Webhook { client, cfg } => {
                        send_webhook(client, cfg, slot.format, body, timeout).await
                    }
                    SinkKind::Mqtt(sink) => sink.publish(message, body, timeout).await,
                };
                result.map_err(|e| {
                    if e.retriable {
                        Fault::Retriable(e)
                    } else {
                        Fault::Fatal(e)
                    }
                })
            },
            |e, attempt, wait| {
                debug!(sink = %slot.name, attempt, retry_in = ?wait, error = %e.message, "notification failed; retrying");
            },
        )
        .await
        .map_err(|gave_up| (gave_up.attempts(), gave_up.into_error()));
        let now = Utc::now();
        match &outcome {
            Ok(()) => {
                info!(sink = %slot.name, kind = message.kind_label(), "notification sent");
                if let Some(store) = &self.store {
                    if let Err(error) = store.record_notify(&slot.name, now, None).await {
                        warn!(%error, "cannot record notifier status");
                    }
                }
            }
            Err((attempt, e)) => {
                self.metrics.notify_failures.inc();
                warn!(sink = %slot.name, attempts = attempt, error = %e.message, "notification failed");
                if let Some(store) = &self.store {
                    let text = format!("after {attempt} attempt(s): {}", e.message);
                    if let Err(error) = store.record_notify(&slot.name, now, Some(&text)).await {
                        warn!(%error, "cannot record notifier status");
                    }
                }
            }
        }
        outcome.map_err(|(_, e)| e)
    }

    fn keyword(&self, i: usize) -> Option<String> {
        match &self.slots[i].kind {
            SinkKind::Webhook { cfg, .. } => cfg.keyword.clone(),
            SinkKind::Mqtt(_) => None,
        }
    }
}

async fn send_webhook(
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    format: Format,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<(), SendError> {
    let url = match (&cfg.secret, format) {
        (Some(secret), Format::Dingtalk) => format::dingtalk_signed_url(
            cfg.url.expose_secret(),
            secret.expose_secret(),
            Utc::now().timestamp_millis(),
        )
        .map_err(SendError::fatal)?,
        _ => cfg.url.expose_secret().to_owned(),
    };
    let request = client.post(url).json(body).send();
    let response = match tokio::time::timeout(timeout, request).await {
        Err(_) => return Err(SendError::retriable("timed out")),
        // reqwest errors can embed the URL (and so the token): keep only the kind.
        Ok(Err(e)) => {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            return Err(SendError::retriable(kind));
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    // A body that could not be read is said so (and worth a retry), not taken for an empty reply.
    let body_read = match tokio::time::timeout(timeout, response.text()).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(_)) => Err("the reply could not be read"),
        Err(_) => Err("the reply timed out"),
    };
    let text = body_read.as_deref().unwrap_or_default().to_owned();
    if !status.is_success() {
        let retriable =
            status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        let snippet: String = text.chars().take(200).collect();
        let message = format!("HTTP {status}: {snippet}");
        return Err(if retriable {
            SendError::retriable(message)
        } else {
            SendError::fatal(message)
        });
    }
    if matches!(format, Format::Dingtalk | Format::Wecom) {
        // The robot says in its reply whether it took the message.
        return match body_read {
            Ok(_) => format::check_robot_reply(&text),
            Err(why) => Err(SendError::retriable(why)),
        };
    }
    Ok(())
}

/// The sending side the engine holds: never blocks; a full queue is a counted, logged failure.
#[derive(Debug, Clone)]
pub struct NotifyHandle {
    tx: mpsc::Sender<Vec<AlertNotice>>,
    metrics: Arc<Metrics>,
}

impl NotifyHandle {
    pub fn send(&self, batch: Vec<AlertNotice>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        if let Err(e) = self.tx.try_send(batch) {
            self.metrics.notify_failures.inc();
            warn!(events = n, error = %e, "notification queue full or closed; events recorded but not sent");
        }
    }
}

/// The task that owns the destinations.
#[derive(Debug)]
pub struct NotifyWorker {
    dispatcher: Dispatcher,
    rx: mpsc::Receiver<Vec<AlertNotice>>,
}

/// A bounded queue (`capacity` batches; when full the newest batch is dropped and counted) between the
/// engine and the dispatcher.
pub fn channel(
    dispatcher: Dispatcher,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> (NotifyHandle, NotifyWorker) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        NotifyHandle { tx, metrics },
        NotifyWorker { dispatcher, rx },
    )
}

impl NotifyWorker {
    /// Delivers batches until cancelled; every minute it also flushes what the rate limit deferred.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.dispatcher.cancel = cancel.clone();
        let mut flush = tokio::time::interval(Duration::from_secs(60));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                batch = self.rx.recv() => {
                    let Some(batch) = batch else { break };
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        _ = self.dispatcher.dispatch(&batch, Utc::now()) => {}
                    }
                }
                _ = flush.tick() => {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        _ = self.dispatcher.dispatch(&[], Utc::now()) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
