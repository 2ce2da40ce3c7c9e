//! The MQTT subscriber: reads what 4G data loggers publish, decodes it (JSON telemetry through a
//! logger template, or forwarded register blocks through the inverter's register map) and hands the
//! samples to ingest.
//!
//! Delivery: QoS 1 on a persistent session (clean session off, stable client id), so the broker keeps
//! what loggers publish while Sunshare restarts. A message is acknowledged only once its samples are
//! in the store (acks leave in the order the messages came, as MQTT requires), so a Sunshare killed
//! at any moment has the broker deliver again whatever it had not stored; a redelivery carries the
//! same read times and is recognised by the store as a duplicate, never stored twice. Reconnects
//! wait a capped exponential backoff with jitter.
//!
//! Never drops a message silently: each one is accepted, refused with a reason, or recorded as coming
//! from an unknown logger or device, and counted in `sunshare_mqtt_messages{outcome,reason}`. Never
//! writes SQL itself (problems go through `store`), never logs a secret.

pub mod maps;
pub use sunshare_core::logger::{payload, template};
pub mod setup;

pub use payload::{BlockDecoder, Decoded, Problem, Reason, RegisterBlock};
pub use template::{Directory, LoggerTemplate, TemplateError};

use crate::config::{Deployment, MqttConfig};
use crate::ingest::IngestHandle;
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::store::{MqttRejectedRow, MqttUnknownRow, Store};
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS};
use secrecy::ExposeSecret;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};

/// What can stop the collector from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mqtt configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("reading {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// Where to connect: `host:port`, defaulting the port to 1883 (8883 with TLS).
pub fn parse_broker(addr: &str, tls: bool) -> Result<(String, u16), Error> {
    let addr = addr
        .trim()
        .trim_start_matches("mqtt://")
        .trim_start_matches("mqtts://")
        .trim_start_matches("tcp://");
    let default = if tls { 8883 } else { 1883 };
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            let port = port.parse::<u16>().map_err(|_| {
                Error::Config(format!("mqtt.broker '{addr}': port is not a number"))
            })?;
            Ok((host.trim_matches(['[', ']']).to_owned(), port))
        }
        _ if !addr.is_empty() => Ok((addr.to_owned(), default)),
        _ => Err(Error::Config("mqtt.broker is empty".into())),
    }
}

/// The transport limit is larger than the application limit so that an oversized message is read,
/// refused with a reason and acknowledged, instead of breaking the connection (and being redelivered
/// forever on the persistent session).
fn transport_limit(max_message: usize) -> usize {
    max_message
        .saturating_mul(4)
        .clamp(1 << 20, 64 << 20)
        .max(max_message + 1024)
}

/// Client options from the configuration. Credentials go straight into the options: they are
/// never formatted or logged.
pub fn options(cfg: &MqttConfig, host: &str, port: u16) -> Result<MqttOptions, Error> {
    if cfg.client_id.is_empty() {
        return Err(Error::Config(
            "mqtt.client_id must be set: the persistent session is keyed by it".into(),
        ));
    }
    let mut o = MqttOptions::new(cfg.client_id.clone(), host, port);
    o.set_clean_session(false)
        .set_keep_alive(cfg.keep_alive.max(Duration::from_secs(5)))
        .set_manual_acks(true)
        .set_max_packet_size(transport_limit(cfg.max_message_bytes), 64 * 1024);
    match (&cfg.username, &cfg.password) {
        (Some(user), Some(pass)) => {
            o.set_credentials(user.clone(), pass.expose_secret().to_owned());
        }
        (Some(user), None) => {
            o.set_credentials(user.clone(), String::new());
        }
        (None, Some(_)) => {
            return Err(Error::Config(
                "mqtt.password is set without mqtt.username".into(),
            ))
        }
        (None, None) => {}
    }
    if let Some(tls) = &cfg.tls {
        choose_tls_provider();
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| Error::File {
                path: p.display().to_string(),
                source,
            })
        };
        // rumqttc parses these only when it connects, again at every attempt: a file without
        // what it should hold is a configuration error, found at start.
        let pem = |key: &str, p: &std::path::Path| -> Result<Vec<u8>, Error> {
            use rumqttc::tokio_rustls::rustls::pki_types::{
                pem::PemObject, CertificateDer, PrivateKeyDer,
            };
            let bytes = read(p)?;
            let (holds, what) = if key == "client_key" {
                (PrivateKeyDer::from_pem_slice(&bytes).is_ok(), "private key")
            } else {
                let mut certs = CertificateDer::pem_slice_iter(&bytes);
                (certs.any(|c| c.is_ok()), "certificate")
            };
            if !holds {
                return Err(Error::Config(format!(
                    "mqtt.tls.{key} {}: no PEM {what} in it",
                    p.display()
                )));
            }
            Ok(bytes)
        };
        let client_auth = match (&tls.client_cert, &tls.client_key) {
            (Some(c), Some(k)) => Some((pem("client_cert", c)?, pem("client_key", k)?)),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "mqtt.tls: give both client_cert and client_key, or neither".into(),
                ))
            }
        };
        let transport = match &tls.ca_file {
            Some(ca) => rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
                ca: pem("ca_file", ca)?,
                alpn: None,
                client_auth,
            }),
            None if client_auth.is_none() => rumqttc::Transport::tls_with_default_config(),
            None => {
                return Err(Error::Config(
                    "mqtt.tls: a client certificate needs ca_file as well".into(),
                ))
            }
        };
        o.set_transport(transport);
    }
    Ok(o)
}

/// rumqttc builds its TLS client configuration with rustls' process-wide crypto provider, which
/// rustls picks by itself only when exactly one provider is compiled in. Sunshare has two (ring,
/// through reqwest; aws-lc-rs, through rumqttc's own TLS feature), so without a choice every TLS
/// connection attempt panics in the collector task. Chooses aws-lc-rs (always there with rumqttc's
/// TLS) unless the process has already chosen.
fn choose_tls_provider() {
    use rumqttc::tokio_rustls::rustls::crypto::{aws_lc_rs, CryptoProvider};
    if CryptoProvider::get_default().is_none() {
        // Losing a race against another caller is fine: either choice works.
        let _ = aws_lc_rs::default_provider().install_default();
    }
}

/// Problems seen since the last flush, aggregated so that a flood costs memory bounded by
/// [`ProblemLog::MAX_KEYS`] and one store write per flush.
#[derive(Debug, Default)]
struct ProblemLog {
    unknown: HashMap<(String, String), MqttUnknownRow>,
    rejected: HashMap<(String, String), MqttRejectedRow>,
    overflow: u64,
}

impl ProblemLog {
    const MAX_KEYS: usize = 1_000;

    /// Returns true the first time a key is seen in this window (worth a log line).
    fn note(&mut self, topic: &str, problem: &Problem, payload: &[u8], now: DateTime<Utc>) -> bool {
        let full = self.unknown.len() + self.rejected.len() >= Self::MAX_KEYS;
        match problem {
            Problem::UnknownDevice { logger, key } => {
                let k = (logger.clone(), key.clone());
                if let Some(row) = self.unknown.get_mut(&k) {
                    row.messages += 1;
                    row.last_seen = now;
                    return false;
                }
                if full {
                    self.overflow += 1;
                    return false;
                }
                let sample = String::from_utf8_lossy(&payload[..payload.len().min(240)]);
                self.unknown.insert(
                    k,
                    MqttUnknownRow {
                        logger: logger.clone(),
                        device_key: key.clone(),
                        topic: topic.to_owned(),
                        first_seen: now,
                        last_seen: now,
                        messages: 1,
                        last_payload: payload::excerpt(&sample),
                    },
                );
                true
            }
            Problem::Rejected { reason, detail } => {
                let k = (topic.to_owned(), reason.label().to_owned());
                if let Some(row) = self.rejected.get_mut(&k) {
                    row.messages += 1;
                    row.last_seen = now;
                    row.last_detail.clone_from(detail);
                    return false;
                }
                if full {
                    self.overflow += 1;
                    return false;
                }
                self.rejected.insert(
                    k,
                    MqttRejectedRow {
                        topic: topic.to_owned(),
                        reason: reason.label().to_owned(),
                        first_seen: now,
                        last_seen: now,
                        messages: 1,
                        last_detail: detail.clone(),
                    },
                );
                true
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.unknown.is_empty() && self.rejected.is_empty() && self.overflow == 0
    }
}

/// How the collector is doing, for the operators' page.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub connected: bool,
    /// The broker acknowledged every subscription of the current connection.
    pub subscribed: bool,
    pub broker: String,
    pub last_error: Option<String>,
    pub last_message: Option<DateTime<Utc>>,
    pub subscriptions: Vec<String>,
}

/// Shared, cheap to clone view of the collector's status.
pub type StatusHandle = Arc<std::sync::Mutex<Status>>;

/// The subscriber. Build it with [`MqttCollector::new`], then [`MqttCollector::run`] it.
pub struct MqttCollector {
    options: MqttOptions,
    broker: String,
    filters: Vec<String>,
    directory: Arc<Directory>,
    decoder: Option<Arc<dyn BlockDecoder>>,
    ingest: IngestHandle,
    metrics: Arc<Metrics>,
    /// The `accepted/ok` message counter, looked up once.
    accepted: prometheus_client::metrics::counter::Counter,
    store: Store,
    max_message_bytes: usize,
    backoff: Backoff,
    problems: ProblemLog,
    status: StatusHandle,
}

impl fmt::Debug for MqttCollector {
    // Hand-written so the client options (which hold the password) never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttCollector")
            .field("broker", &self.broker)
            .field("filters", &self.filters)
            .finish_non_exhaustive()
    }
}

/// Everything the collector needs from the rest of the application.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub ingest: IngestHandle,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Decodes forwarded register blocks; `None` refuses them with `decode_failed`.
    pub decoder: Option<Arc<dyn BlockDecoder>>,
}

impl MqttCollector {
    /// Builds the collector for a deployment. `broker` overrides `mqtt.broker` (the embedded
    /// broker's actual address).
    pub fn new(
        deployment: &Deployment,
        broker: Option<&str>,
        wiring: Wiring,
    ) -> Result<MqttCollector, Error> {
        let cfg = deployment
            .mqtt
            .as_ref()
            .ok_or_else(|| Error::Config("the deployment has no [mqtt] table".into()))?;
        let templates = template::load_templates(cfg.loggers_dir.as_deref())?;
        let directory = Directory::build(deployment, &templates)?;
        let addr = broker
            .map(str::to_owned)
            .or_else(|| cfg.broker.clone())
            .ok_or_else(|| {
                Error::Config("set mqtt.broker = \"host:port\" or mqtt.embedded = true".into())
            })?;
        let (host, port) = parse_broker(&addr, cfg.tls.is_some())?;
        let options = options(cfg, &host, port)?;
        let filters = directory
            .filters()
            .into_iter()
            .map(|f| match &cfg.shared_group {
                Some(g) => format!("$share/{g}/{f}"),
                None => f,
            })
            .collect();
        if let Some(g) = &cfg.shared_group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                return Err(Error::Config(format!(
                    "mqtt.shared_group '{g}' must be a plain name without '/', '+' or '#'"
                )));
            }
        }
        let accepted = wiring
            .metrics
            .mqtt_messages
            .get_or_create(&vec![
                ("outcome", "accepted".to_owned()),
                ("reason", "ok".to_owned()),
            ])
            .clone();
        Ok(MqttCollector {
            options,
            broker: format!("{host}:{port}"),
            filters,
            directory: Arc::new(directory),
            decoder: wiring.decoder,
            ingest: wiring.ingest,
            accepted,
            metrics: wiring.metrics,
            store: wiring.store,
            max_message_bytes: cfg.max_message_bytes,
            backoff: Backoff::new(
                cfg.reconnect_min.max(Duration::from_millis(10)),
                cfg.reconnect_max,
            ),
            problems: ProblemLog::default(),
            status: StatusHandle::default(),
        })
    }

    /// The subscription filters (with `$share/...` when configured).
    pub fn filters(&self) -> &[String] {
        &self.filters
    }

    pub fn status(&self) -> StatusHandle {
        Arc::clone(&self.status)
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn count(&self, outcome: &str, reason: &str) {
        self.metrics
            .mqtt_messages
            .get_or_create(&vec![
                ("outcome", outcome.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Decodes one message and queues its samples; returns the problems it had and, when it had
    /// samples, what resolves once they are stored. Errors only when ingest has stopped.
    pub async fn handle_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Problem>, Option<crate::ingest::Written>), crate::ingest::Closed> {
        let mut decoded = payload::decode_message(
            &self.directory,
            self.decoder.as_deref(),
            topic,
            payload,
            self.max_message_bytes,
        );
        for p in &decoded.problems {
            match p {
                Problem::Rejected { reason, detail } => {
                    self.count("rejected", reason.label());
                    if self.problems.note(topic, p, payload, now) {
                        warn!(
                            topic,
                            reason = reason.label(),
                            detail,
                            "mqtt message refused"
                        );
                    }
                }
                Problem::UnknownDevice { logger, key } => {
                    self.count("unknown_device", "unknown_device");
                    if self.problems.note(topic, p, payload, now) {
                        warn!(
                            topic,
                            logger, key, "mqtt message from an unknown logger or device"
                        );
                    }
                }
            }
        }
        let samples = std::mem::take(&mut decoded.samples);
        let written = if samples.is_empty() {
            None
        } else {
            self.accepted.inc();
            Some(self.ingest.submit_confirmed(samples).await?)
        };
        Ok((decoded.problems, written))
    }

    /// Writes the aggregated problems to the store (for `/api/mqtt/unknown`).
    pub async fn flush_problems(&mut self) {
        if self.problems.is_empty() {
            return;
        }
        let log = std::mem::take(&mut self.problems);
        if log.overflow > 0 {
            warn!(
                dropped_keys = log.overflow,
                "too many distinct mqtt problems in one window; counted in metrics only"
            );
        }
        let unknown: Vec<_> = log.unknown.into_values().collect();
        let rejected: Vec<_> = log.rejected.into_values().collect();
        let write = async {
            self.store.record_mqtt_unknown(&unknown).await?;
            self.store.record_mqtt_rejected(&rejected).await
        };
        match tokio::time::timeout(Duration::from_secs(10), write).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "could not record mqtt problems"),
            Err(_) => warn!("recording mqtt problems timed out"),
        }
    }

    /// Runs until cancelled: connect, subscribe, read, reconnect with backoff.
    #[instrument(skip_all, fields(broker = %self.broker))]
    pub async fn run(mut self, cancel: CancellationToken) {
        if self.filters.is_empty() {
            warn!("no data loggers are configured; the mqtt collector has nothing to subscribe to");
        }
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 1024);
        // Acks that did not fit the request queue; sent before the next poll, never lost.
        let mut pending_acks: VecDeque<Publish> = VecDeque::new();
        // QoS 1 messages of this connection not yet acknowledged, in the order they came, each
        // with whether its samples are stored.
        let mut unacked: VecDeque<(Publish, Stored)> = VecDeque::new();
        // PUBACKs written into the connection's buffer but not yet sent (see `queue_puback`).
        let mut unflushed = false;
        let mut flush = tokio::time::interval(Duration::from_secs(2));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A live connection yields at least a ping response every keep-alive.
        let poll_timeout = self.options.keep_alive() * 3 + Duration::from_secs(10);
        self.set_status(|s| {
            s.broker.clone_from(&self.broker);
            s.subscriptions.clone_from(&self.filters);
        });
        loop {
            // Messages whose samples are stored are acknowledged, in the order they came.
            let mut ingest_stopped = false;
            while let Some((_, state)) = unacked.front_mut() {
                if let Stored::Waiting(w) = state {
                    if let Some(done) = w.try_stored() {
                        *state = Stored::Done(done);
                    }
                }
                match state {
                    Stored::Waiting(_) => break,
                    Stored::Done(false) => {
                        ingest_stopped = true;
                        break;
                    }
                    Stored::Done(true) => {
                        if let Some((p, _)) = unacked.pop_front() {
                            ack(
                                &client,
                                &mut eventloop,
                                p,
                                &mut pending_acks,
                                &mut unflushed,
                            )
                            .await;
                        }
                    }
                }
            }
            if ingest_stopped {
                // Not acknowledged: the broker keeps it for the next run.
                warn!("ingest stopped before storing a message; the mqtt collector stops without acknowledging it");
                break;
            }
            while let Some(p) = pending_acks.front() {
                if client.try_ack(p).is_err() {
                    break;
                }
                pending_acks.pop_front();
            }
            // The messages of one network read are handed out one poll at a time; once they are
            // all handled, their acks leave in one write before the next read.
            if unflushed && eventloop.state.events.is_empty() {
                unflushed = false;
                if let Err(reason) = flush_acks(&mut eventloop).await {
                    // The connection is failing: the next poll reports it and reconnects; the
                    // broker redelivers what was not acknowledged.
                    debug!(reason, "could not send the acknowledgements");
                }
            }
            let event = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                // Never while connecting: dropping `poll` then abandons the half-open connection,
                // and rumqttd, seeing that session's client come and go, can tear down the
                // connection that follows it (it reuses connection ids). Once connected, `poll`
                // only waits on cancel-safe reads and buffered writes.
                _ = flush.tick(), if eventloop.network.is_some() => {
                    self.flush_problems().await;
                    continue;
                }
                // The oldest message's samples stored: its ack (and those after it) can go.
                () = first_stored(&mut unacked), if matches!(unacked.front(), Some((_, Stored::Waiting(_)))) => continue,
                e = tokio::time::timeout(poll_timeout, eventloop.poll()) => e,
            };
            match event {
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                    info!(
                        session_present = ack.session_present,
                        "connected to the mqtt broker"
                    );
                    self.backoff.reset();
                    self.set_status(|s| {
                        s.connected = true;
                        s.subscribed = false;
                        s.last_error = None;
                    });
                    // Subscribing again is harmless when the broker kept the session, and needed
                    // when it did not (a broker restarted without persistence, a new filter).
                    let subs = self
                        .filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if !self.filters.is_empty() {
                        if let Err(error) = client.try_subscribe_many(subs) {
                            warn!(%error, "could not queue the subscription; reconnecting");
                            eventloop.clean();
                        }
                    }
                }
                Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                    let failed = ack
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .count();
                    if failed > 0 {
                        error!(failed, filters = ?self.filters, "the broker refused subscriptions (check its ACLs)");
                    } else {
                        debug!(filters = ?self.filters, "subscribed");
                        self.set_status(|s| s.subscribed = true);
                    }
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let now = Utc::now();
                    self.set_status(|s| s.last_message = Some(now));
                    match self.handle_message(&p.topic, &p.payload, now).await {
                        Ok((_, written)) => {
                            if p.qos != QoS::AtMostOnce {
                                // A message without samples (refused, unknown) is acked in its turn.
                                let state = written.map_or(Stored::Done(true), Stored::Waiting);
                                unacked.push_back((p, state));
                            }
                        }
                        Err(_) => {
                            // Not acknowledged: the broker keeps it for the next run.
                            warn!("ingest has stopped; the mqtt collector stops without acknowledging");
                            break;
                        }
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    // Acks of the lost connection are void: the broker redelivers those messages
                    // on the resumed session, and the store recognises them as duplicates.
                    pending_acks.clear();
                    unacked.clear();
                    unflushed = false;
                    let fatal = is_auth_error(&e);
                    let reason = connection_reason(&e);
                    self.count("connection_error", reason);
                    let delay = if fatal {
                        self.backoff.saturate();
                        self.backoff.next_delay()
                    } else {
                        self.backoff.next_delay()
                    };
                    if fatal {
                        error!(error = %e, retry_in = ?delay, "the mqtt broker refused the login");
                    } else {
                        warn!(error = %e, retry_in = ?delay, "mqtt connection lost");
                    }
                    self.set_status(|s| {
                        s.connected = false;
                        s.subscribed = false;
                        s.last_error = Some(e.to_string());
                    });
                    if !crate::retry::wait(&cancel, delay).await {
                        break;
                    }
                }
                Err(_) => {
                    pending_acks.clear();
                    unacked.clear();
                    unflushed = false;
                    let delay = self.backoff.next_delay();
                    warn!(retry_in = ?delay, "mqtt broker silent past the keep-alive; reconnecting");
                    eventloop.clean();
                    self.count("connection_error", "timeout");
                    self.set_status(|s| {
                        s.connected = false;
                        s.subscribed = false;
                        s.last_error = Some("broker silent past the keep-alive".into());
                    });
                    if !crate::retry::wait(&cancel, delay).await {
                        break;
                    }
                }
            }
        }
        // Messages handled before the stop are acknowledged once stored (ingest writes what is
        // queued as it stops), or the broker would deliver them again after the restart (stored
        // once all the same, but counted as duplicates); what is not stored in time stays
        // unacknowledged and comes again.
        let deadline = tokio::time::Instant::now() + ACK_FLUSH_TIMEOUT;
        while let Some((_, state)) = unacked.front_mut() {
            if let Stored::Waiting(w) = state {
                match tokio::time::timeout_at(deadline, w).await {
                    Ok(done) => *state = Stored::Done(done),
                    Err(_) => break,
                }
            }
            if !matches!(state, Stored::Done(true)) || eventloop.network.is_none() {
                break;
            }
            if let Some((p, _)) = unacked.pop_front() {
                ack(
                    &client,
                    &mut eventloop,
                    p,
                    &mut pending_acks,
                    &mut unflushed,
                )
                .await;
            }
        }
        if unflushed {
            if let Err(reason) = flush_acks(&mut eventloop).await {
                debug!(reason, "could not send the last acknowledgements");
            }
        }
        self.flush_problems().await;
        // A clean DISCONNECT keeps the persistent session on the broker (clean session is off).
        if client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        info!("mqtt collector stopped");
    }
}

/// How long sending buffered acknowledgements may take before the connection is given up.
const ACK_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a QoS 1 message's samples are in the store.
enum Stored {
    /// Handed to ingest, not yet written.
    Waiting(crate::ingest::Written),
    /// Stored (true), or ingest stopped without storing them (false); a message without samples
    /// is stored from the start.
    Done(bool),
}

/// Waits until the oldest unacknowledged message's samples are stored (cancel-safe: the wait can
/// be dropped and taken up again).
async fn first_stored(unacked: &mut VecDeque<(Publish, Stored)>) {
    if let Some((_, state)) = unacked.front_mut() {
        if let Stored::Waiting(w) = state {
            let done = w.await;
            *state = Stored::Done(done);
        }
    }
}

/// Acknowledges `p`: into the connection's buffer when there is one (sent with the others of the
/// same read), else through the request channel (kept for later when that is full).
async fn ack(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    p: Publish,
    pending_acks: &mut VecDeque<Publish>,
    unflushed: &mut bool,
) {
    match p.qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce if queue_puback(eventloop, p.pkid).await => *unflushed = true,
        _ => {
            if let Err(rumqttc::ClientError::TryRequest(_)) = client.try_ack(&p) {
                pending_acks.push_back(p);
            }
        }
    }
}

/// Writes a PUBACK into the connection's send buffer without sending it. rumqttc sends each manual
/// ack through its request channel with a write of its own; a logger's backlog arrives at thousands
/// of messages a second, so the acks of one network read are batched into one write instead (QoS 1
/// acks carry no state on the client side: the packet is all there is). False when there is no
/// connection to write to (the caller falls back to the request channel).
async fn queue_puback(eventloop: &mut rumqttc::EventLoop, pkid: u16) -> bool {
    let Some(network) = eventloop.network.as_mut() else {
        return false;
    };
    let write = network.write(Packet::PubAck(rumqttc::PubAck::new(pkid)));
    matches!(
        tokio::time::timeout(ACK_FLUSH_TIMEOUT, write).await,
        Ok(Ok(()))
    )
}

/// Sends the acknowledgements [`queue_puback`] buffered.
async fn flush_acks(eventloop: &mut rumqttc::EventLoop) -> Result<(), &'static str> {
    let Some(network) = eventloop.network.as_mut() else {
        return Err("no connection");
    };
    match tokio::time::timeout(ACK_FLUSH_TIMEOUT, network.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("write failed"),
        Err(_) => Err("timed out"),
    }
}

fn is_auth_error(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::BadUserNamePassword
                | rumqttc::ConnectReturnCode::NotAuthorized
                | rumqttc::ConnectReturnCode::BadClientId
        )
    )
}

/// A TLS failure that surfaced as an I/O error: a TLS 1.3 broker checks the client's certificate
/// after the client has finished its side of the handshake, so a missing or refused client
/// certificate arrives as an alert on the first MQTT read.
fn is_tls_alert(e: &ConnectionError) -> bool {
    use rumqttc::StateError;
    let io = match e {
        ConnectionError::Io(io)
        | ConnectionError::MqttState(StateError::Io(io))
        | ConnectionError::MqttState(StateError::Deserialization(rumqttc::mqttbytes::Error::Io(
            io,
        ))) => io,
        _ => return false,
    };
    io.get_ref()
        .is_some_and(|inner| inner.is::<rumqttc::tokio_rustls::rustls::Error>())
}

fn connection_reason(e: &ConnectionError) -> &'static str {
    if is_tls_alert(e) {
        return "tls";
    }
    match e {
        ConnectionError::ConnectionRefused(_) => "refused",
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => "timeout",
        ConnectionError::Io(_) => "io",
        ConnectionError::Tls(_) => "tls",
        ConnectionError::MqttState(_) => "protocol",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_a_device_on_an_undeclared_logger() {
        let mut d = payload::tests_support::deployment();
        assert!(check(&d).is_ok());
        if let Some(dev) = d.devices.last_mut() {
            dev.transport = crate::domain::Transport::Mqtt {
                logger: "L404".into(),
                unit: Some(1),
            };
        }
        let e = check(&d).expect_err("undeclared logger");
        assert!(e.to_string().contains("L404"), "{e}");
        assert!(e.to_string().contains("S1-INV3"), "{e}");
    }

    #[test]
    fn broker_addresses() {
        assert_eq!(
            parse_broker("127.0.0.1:1883", false).expect("addr"),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_broker("mqtts://broker.example", true).expect("addr"),
            ("broker.example".into(), 8883)
        );
        assert_eq!(
            parse_broker("[::1]:1884", false).expect("addr"),
            ("::1".into(), 1884)
        );
        assert!(parse_broker("host:x", false).is_err());
        assert!(parse_broker("", false).is_err());
    }

    #[test]
    fn a_tls_alert_after_the_handshake_counts_as_tls() {
        use rumqttc::tokio_rustls::rustls;
        let alert = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
            )
        };
        let read = ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::Io(alert()),
        ));
        assert_eq!(connection_reason(&read), "tls");
        assert_eq!(connection_reason(&ConnectionError::Io(alert())), "tls");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(connection_reason(&ConnectionError::Io(reset)), "io");
    }

    #[test]
    fn tls_files_without_pem_are_refused_at_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p.display().to_string()
        };
        let not_pem = write("notes.txt", "this is not a certificate\n");
        // A syntactically fine PEM section of another kind: no certificate, no key.
        let other = write(
            "req.pem",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        );
        let cfg = |tls: &str| -> MqttConfig {
            toml::from_str(&format!("broker = \"b:8883\"\ntls = {tls}")).expect("mqtt table")
        };
        for (tls, key) in [
            (format!("{{ ca_file = {not_pem:?} }}"), "mqtt.tls.ca_file"),
            (format!("{{ ca_file = {other:?} }}"), "mqtt.tls.ca_file"),
        ] {
            let e = options(&cfg(&tls), "b", 8883).expect_err(&tls);
            assert!(e.to_string().contains(key), "{e}");
            assert!(e.to_string().contains("no PEM certificate"), "{e}");
        }
        let ca = write(
            "ca.pem",
            &rcgen::generate_simple_self_signed(vec!["ca".to_owned()])
                .expect("certificate")
                .cert
                .pem(),
        );
        let tls = format!("{{ ca_file = {ca:?}, client_cert = {ca:?}, client_key = {other:?} }}");
        let e = options(&cfg(&tls), "b", 8883).expect_err("no key");
        assert!(e.to_string().contains("mqtt.tls.client_key"), "{e}");
        assert!(e.to_string().contains("no PEM private key"), "{e}");
        let tls =
            format!("{{ ca_file = {ca:?}, client_cert = {not_pem:?}, client_key = {other:?} }}");
        let e = options(&cfg(&tls), "b", 8883).expect_err("no client certificate");
        assert!(e.to_string().contains("mqtt.tls.client_cert"), "{e}");
        assert!(options(&cfg(&format!("{{ ca_file = {ca:?} }}")), "b", 8883).is_ok());
    }

    #[test]
    fn oversized_messages_fit_the_transport() {
        assert!(transport_limit(256 * 1024) > 256 * 1024);
        assert!(transport_limit(100 << 20) > 100 << 20);
    }
}

/// Checks the deployment's loggers, templates and MQTT devices without connecting (for
/// `check-config`).
pub fn check(deployment: &Deployment) -> Result<(), Error> {
    let Some(cfg) = &deployment.mqtt else {
        return Ok(());
    };
    let templates = template::load_templates(cfg.loggers_dir.as_deref())?;
    Directory::build(deployment, &templates)?;
    if cfg.broker.is_none() && !cfg.embedded {
        return Err(Error::Config(
            "set mqtt.broker = \"host:port\" or mqtt.embedded = true".into(),
        ));
    }
    Ok(())
}

/// What [`spawn`] started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The embedded broker's address, when `mqtt.embedded` is on.
    pub embedded_broker: Option<std::net::SocketAddr>,
    pub status: StatusHandle,
}

/// Starts the embedded broker (when configured) and the collector, both stopping on `cancel`.
/// Returns `None` when the deployment has no `[mqtt]` table.
pub async fn spawn(
    deployment: &Deployment,
    wiring: Wiring,
    tracker: &tokio_util::task::TaskTracker,
    cancel: &CancellationToken,
) -> Result<Option<Started>, Error> {
    let Some(cfg) = &deployment.mqtt else {
        return Ok(None);
    };
    let mut embedded_broker = None;
    let mut broker_override = None;
    if cfg.embedded {
        let max_payload = transport_limit(cfg.max_message_bytes);
        let broker = crate::collect::broker::EmbeddedBroker::start(cfg.listen, max_payload)
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        let addr = broker.addr();
        embedded_broker = Some(addr);
        if cfg.broker.is_none() {
            broker_override = Some(addr.to_string());
        }
        let stop = cancel.child_token();
        tracker.spawn(async move {
            stop.cancelled().await;
            broker.shutdown().await;
        });
    }
    let collector = MqttCollector::new(deployment, broker_override.as_deref(), wiring)?;
    let status = collector.status();
    tracker.spawn(collector.run(cancel.child_token()));
    Ok(Some(Started {
        embedded_broker,
        status,
    }))
}
