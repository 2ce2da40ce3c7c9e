//! The alert engine: every `alerts.interval` it reads the fleet's latest values and today's energy
//! from the store, runs the pure rules, records opened and resolved alerts (with history), updates
//! `alerts_open` and hands the events to the notifiers. `tick(now)` is one step, for tests.

use super::notify::{self, AlertNotice, Dispatcher, MqttSink, NotifyHandle};
use super::rules::{
    evaluate, AlertKey, AlertKind, DeviceInput, EventKind, LastReading, RulesState, Severity,
    Snapshot, StationInput,
};
use super::Error;
use crate::config::Deployment;
use crate::domain::{CountyId, DeviceId, Readings, StationId, Transport};
use crate::metrics::Metrics;
use crate::store::{bucket_start, LatestRow, NewAlert, Store};
use chrono::{DateTime, Duration, Utc};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, instrument, warn};

/// Drives the rules from the store.
#[derive(Debug)]
pub struct Engine {
    deployment: Arc<Deployment>,
    store: Store,
    metrics: Arc<Metrics>,
    notify: Option<NotifyHandle>,
    rules: RulesState,
    ids: HashMap<AlertKey, i64>,
    restored: bool,
    /// The jobs lease its writes are made under (an instance sharing the database), if any.
    fence: Option<crate::store::Fence>,
}

/// A hash of everything a device reported: equal on successive samples means frozen values.
pub fn fingerprint(r: &Readings) -> u64 {
    let mut h = DefaultHasher::new();
    for (m, v) in &r.values {
        m.name().hash(&mut h);
        v.to_bits().hash(&mut h);
    }
    r.state.map(|s| s.as_str()).hash(&mut h);
    for a in &r.alarms {
        a.code.hash(&mut h);
    }
    h.finish()
}

fn gateway_of(t: &Transport) -> String {
    match t {
        Transport::ModbusTcp { address, .. } | Transport::RtuOverTcp { address, .. } => {
            address.clone()
        }
        Transport::Mqtt { logger, .. } => format!("mqtt:{logger}"),
    }
}

impl Engine {
    pub fn new(
        deployment: Arc<Deployment>,
        store: Store,
        metrics: Arc<Metrics>,
        notify: Option<NotifyHandle>,
    ) -> Self {
        Self {
            deployment,
            store,
            metrics,
            notify,
            rules: RulesState::new(),
            ids: HashMap::new(),
            restored: false,
            fence: None,
        }
    }

    /// Adopts alerts left unresolved by an earlier run, so they resolve instead of opening twice.
    async fn restore(&mut self) -> Result<(), Error> {
        for row in self.store.alerts(true, 100_000).await? {
            let Some(kind) = AlertKind::parse(&row.kind) else {
                // A kind this version does not evaluate (a rule since removed): left as stored.
                warn!(alert = row.id, kind = %row.kind, "open alert of an unknown kind not adopted");
                continue;
            };
            let severity = Severity::parse(&row.severity).ok_or_else(|| {
                crate::store::Error::Corrupt(format!(
                    "alerts.severity of alert {} is '{}', not a severity",
                    row.id, row.severity
                ))
            })?;
            let key = AlertKey {
                kind,
                station: StationId::new(row.station.clone()),
                subject: row.subject.clone(),
            };
            self.rules.restore(
                key.clone(),
                CountyId::new(row.county.clone()),
                severity,
                row.message.clone(),
                row.opened_at,
                row.flapping,
            );
            self.ids.insert(key, row.id);
        }
        self.restored = true;
        Ok(())
    }

    /// What the rules need, read from the store.
    pub async fn snapshot(&self, now: DateTime<Utc>) -> Result<Snapshot, Error> {
        let latest: HashMap<DeviceId, LatestRow> = self
            .store
            .latest()
            .await?
            .into_iter()
            .map(|r| (r.device.clone(), r))
            .collect();
        let energy: HashMap<(StationId, i64), f64> = self
            .store
            .station_day_energy_since(now - Duration::hours(30))
            .await?
            .into_iter()
            .map(|(s, bucket, wh)| ((s, bucket), wh))
            .collect();
        let stations = self
            .deployment
            .stations
            .iter()
            .map(|s| StationInput {
                id: s.id.clone(),
                county: s.county.clone(),
                latitude: s.latitude,
                longitude: s.longitude,
                timezone: s.timezone,
                capacity_kwp: s.capacity_kwp,
                day_energy_wh: energy
                    .get(&(s.id.clone(), bucket_start(now, 86_400, s.timezone)))
                    .copied(),
                devices: self
                    .deployment
                    .devices
                    .iter()
                    .filter(|d| d.station == s.id)
                    .map(|d| DeviceInput {
                        id: d.id.clone(),
                        gateway: gateway_of(&d.transport),
                        last: latest.get(&d.id).map(|l| LastReading {
                            at: l.at,
                            power_w: l.ac_power_w,
                            state: l.readings.state,
                            alarms: l.readings.alarms.clone(),
                            fingerprint: fingerprint(&l.readings),
                        }),
                    })
                    .collect(),
            })
            .collect();
        Ok(Snapshot { stations })
    }

    /// One evaluation at `now`: persists what changed and returns the events handed to notifiers.
    #[instrument(skip_all, fields(now = %now))]
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<Vec<AlertNotice>, Error> {
        if !self.restored {
            self.restore().await?;
        }
        let snapshot = self.snapshot(now).await?;
        let eval = evaluate(&mut self.rules, &snapshot, now, &self.deployment.alerts);
        let mut notices = Vec::new();
        for event in eval.events {
            let id = match event.kind {
                EventKind::Opened => {
                    let opened = self
                        .store
                        .open_alert_fenced(
                            &NewAlert {
                                kind: event.key.kind.as_str(),
                                station: event.key.station.as_str(),
                                subject: &event.key.subject,
                                county: event.county.as_str(),
                                severity: event.severity.as_str(),
                                message: &event.message,
                                opened_at: event.at,
                                since: event.since,
                                flapping: event.flapping,
                            },
                            self.fence.as_ref(),
                        )
                        .await;
                    let id = match opened {
                        Ok(id) => id,
                        // This instance lost the jobs lease (paused past it): write nothing more.
                        Err(crate::store::Error::Fenced(why)) => {
                            return Err(crate::store::Error::Fenced(why).into())
                        }
                        // Already open in the shared database (another instance): adopt it and
                        // leave the notifying to whoever opened it.
                        Err(error) => match self.find(&event.key).await? {
                            Some(id) => {
                                self.ids.insert(event.key.clone(), id);
                                continue;
                            }
                            None => return Err(error.into()),
                        },
                    };
                    info!(id, kind = %event.key.kind, station = %event.key.station,
                          subject = %event.key.subject, "alert opened");
                    self.ids.insert(event.key.clone(), id);
                    id
                }
                EventKind::Resolved => {
                    let id = match self.ids.remove(&event.key) {
                        Some(id) => id,
                        None => match self.find(&event.key).await? {
                            Some(id) => id,
                            None => continue,
                        },
                    };
                    if !self
                        .store
                        .resolve_alert_fenced(
                            id,
                            event.at,
                            "condition cleared",
                            self.fence.as_ref(),
                        )
                        .await?
                    {
                        // Resolved already (by another instance): said by whoever resolved it.
                        continue;
                    }
                    info!(id, kind = %event.key.kind, station = %event.key.station, "alert resolved");
                    id
                }
            };
            let station_name = self
                .deployment
                .station(event.key.station.as_str())
                .map_or_else(|| event.key.station.to_string(), |s| s.name.clone());
            notices.push(AlertNotice {
                id,
                station_name,
                event,
            });
        }
        let open = self.store.count_unresolved_alerts().await?;
        self.metrics.alerts_open.set(open);
        if let Some(n) = &self.notify {
            n.send(notices.clone());
        }
        Ok(notices)
    }

    async fn find(&self, key: &AlertKey) -> Result<Option<i64>, Error> {
        Ok(self
            .store
            .find_unresolved_alert(key.kind.as_str(), key.station.as_str(), &key.subject)
            .await?)
    }

    /// Ticks every `alerts.interval` while `leadership` says this instance leads, until
    /// cancelled. An instance that starts leading adopts the open alerts from the store first, so
    /// it resolves what the last leader opened instead of opening it again.
    pub async fn run(mut self, leadership: crate::store::Leadership, cancel: CancellationToken) {
        let mut every = tokio::time::interval(self.deployment.alerts.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = every.tick() => {
                    if leadership.fence().is_none() {
                        self.restored = false;
                        self.rules = RulesState::new();
                        self.ids.clear();
                        continue;
                    }
                    self.fence = leadership.fence_token();
                    if let Err(error) = self.tick(Utc::now()).await {
                        warn!(%error, "alert evaluation failed; trying again next tick");
                    }
                }
            }
        }
    }
}

/// Starts the engine and the notifiers of `deployment.alerts` into `tracker`, stopping on `cancel`.
/// Does nothing when `alerts.enabled` is false.
pub fn spawn(
    deployment: Arc<Deployment>,
    store: Store,
    metrics: Arc<Metrics>,
    leadership: crate::store::Leadership,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let cfg = &deployment.alerts;
    if !cfg.enabled {
        info!("alerts are disabled (alerts.enabled = false)");
        return Ok(());
    }
    let mut dispatcher = Dispatcher::new(&cfg.notify, Some(store.clone()), Arc::clone(&metrics))?;
    if let Some(m) = &cfg.notify.mqtt {
        let (sink, driver) = MqttSink::start(m, cancel.child_token())?;
        tracker.spawn(driver);
        dispatcher.add_mqtt(sink);
    }
    let handle = if dispatcher.is_empty() {
        None
    } else {
        let (handle, worker) = notify::channel(dispatcher, 64, Arc::clone(&metrics));
        tracker.spawn(worker.run(cancel.child_token()));
        Some(handle)
    };
    let engine = Engine::new(deployment, store, metrics, handle);
    tracker.spawn(engine.run(leadership, cancel.child_token()));
    Ok(())
}
