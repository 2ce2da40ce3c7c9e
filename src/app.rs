//! Wiring: builds the components a deployment declares, connects them with bounded channels, spawns
//! them into one `TaskTracker` and stops them all from one root `CancellationToken`.

use crate::config::Deployment;
use crate::http;
use crate::ingest::{self, DeviceProfile};
use crate::metrics::Metrics;
use crate::store::Store;
use anyhow::Context as _;
use chrono::Datelike as _;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// What `sunshare demo` starts: where it listens, where it keeps its data, how much history.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the web pages are served.
    pub listen: SocketAddr,
    /// Data directory for the embedded store (default: the user's data directory).
    pub data: Option<PathBuf>,
    /// Days of simulated history to backfill.
    pub history_days: i64,
    /// Also write an administrator's API token to this file (mode 0600), for scripts and API
    /// test tools run against the demo.
    pub token_file: Option<PathBuf>,
}

/// The register maps a deployment may name (the built-in ones).
pub fn known_models() -> HashSet<String> {
    crate::registers::Catalog::builtin()
        .map(|c| c.names())
        .unwrap_or_default()
}

/// Loads a deployment file (see [`Deployment::load`]: file, then environment, deserialised and
/// validated once) and checks its MQTT loggers; also returns the register maps it can use.
pub fn load(path: &Path) -> Result<crate::config::Loaded, crate::config::ConfigError> {
    let loaded = Deployment::load(path)?;
    crate::collect::mqtt::check(&loaded.deployment).map_err(|e| crate::config::ConfigError {
        file: path.display().to_string(),
        problems: vec![crate::config::Problem {
            key: "mqtt".into(),
            line: None,
            message: e.to_string(),
            fix: "declare each logger in [[mqtt.loggers]] with a known template and station, \
                  and point devices at it (docs/mqtt.md)"
                .into(),
        }],
    })?;
    Ok(loaded)
}

/// [`load`], for the commands that need only the deployment.
pub fn load_config(path: &Path) -> Result<Deployment, crate::config::ConfigError> {
    load(path).map(|l| l.deployment)
}

/// The default data directory: `$XDG_DATA_HOME/sunshare` or the platform's equivalent.
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("org", "sunshare", "sunshare")
        .map(|p| p.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("sunshare-data"))
}

/// Device profiles for ingest's range checks.
pub fn device_profiles(d: &Deployment) -> HashMap<crate::domain::DeviceId, DeviceProfile> {
    d.devices
        .iter()
        .map(|dev| {
            let tz = d
                .station(dev.station.as_str())
                .map_or(chrono_tz::Asia::Shanghai, |s| s.timezone);
            (
                dev.id.clone(),
                DeviceProfile {
                    rated_power_w: dev.rated_power_w,
                    timezone: tz,
                    polled: !matches!(dev.transport, crate::domain::Transport::Mqtt { .. }),
                },
            )
        })
        .collect()
}

/// A running service: its address and the handles to stop it.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    /// The door into storage, for collectors (and tests) to submit samples.
    pub ingest: ingest::IngestHandle,
    /// The embedded MQTT broker's address, when `mqtt.embedded` is on.
    pub mqtt_broker: Option<SocketAddr>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

impl Running {
    /// Cancels every component and waits until each has flushed and stopped.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.store.close().await;
    }
}

/// Extras a caller can hand to [`start`].
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Progress of a history backfill, shown on the pages while it runs (demo only).
    pub backfill: Option<Arc<crate::sim::history::Progress>>,
}

/// Starts every component a deployment declares, serving HTTP on an already-bound listener.
pub async fn start(
    deployment: Arc<Deployment>,
    data_dir: &Path,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    start_with(deployment, data_dir, listener, StartOptions::default()).await
}

/// [`start`] with extras (the demo's backfill progress).
pub async fn start_with(
    deployment: Arc<Deployment>,
    data_dir: &Path,
    listener: TcpListener,
    options: StartOptions,
) -> anyhow::Result<Running> {
    let store = Store::open(&deployment.storage, data_dir)
        .await
        .context("opening the store")?;
    store
        .sync_registry(&deployment)
        .await
        .context("writing the registry")?;
    let metrics = Arc::new(Metrics::new());
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    let (ingest_handle, worker) = ingest::channel(
        1024,
        store.clone(),
        device_profiles(&deployment),
        Arc::clone(&metrics),
    );
    let mut worker = worker.with_limits(ingest::ClockLimits::for_retention(
        deployment.storage.raw_retention,
    ));
    worker
        .seed_counters()
        .await
        .context("loading the last lifetime counters")?;
    if let Some(influx) = &deployment.influx {
        let health = crate::sinks::influx::healthcheck(influx).await;
        crate::sinks::influx::log_health(&health);
        let spool_dir = influx
            .spool_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("influx-spool"));
        let sink = crate::sinks::influx::InfluxSink::open(
            influx,
            &spool_dir,
            crate::sinks::influx::device_tags(&deployment),
            Arc::clone(&metrics),
        )
        .context("opening the InfluxDB sink")?;
        let (sink_tx, sink_rx) = tokio::sync::mpsc::channel(64);
        worker.forward_to(sink_tx);
        // Stopped by the ingest worker dropping its sender after draining, not by the token, so
        // whatever ingest stores during shutdown still reaches the spool.
        tracker.spawn(sink.run(sink_rx, CancellationToken::new()));
    }
    tracker.spawn(worker.run(cancel.child_token()));
    // On PostgreSQL several instances may share the database: they share the gateways by leases,
    // and one of them at a time (the holder of the jobs lease) runs the singleton jobs.
    let shared = deployment.storage.backend == crate::config::Backend::Postgres;
    let instance = crate::cluster::instance_name(deployment.cluster.instance.as_deref());
    let leadership = if shared {
        let leadership = crate::store::Leadership::follower(instance.clone());
        tracker.spawn(crate::cluster::lead(
            store.clone(),
            instance.clone(),
            deployment.cluster.lease,
            leadership.clone(),
            cancel.child_token(),
        ));
        leadership
    } else {
        crate::store::Leadership::alone()
    };
    let retention = ingest::RawRetention::new(
        store.clone(),
        deployment.storage.raw_retention,
        Arc::clone(&metrics),
    );
    tracker.spawn(retention.run(
        std::time::Duration::from_secs(3600),
        leadership.clone(),
        cancel.child_token(),
    ));
    tracker.spawn(crate::energy::daily::keep_fresh(
        store.clone(),
        Arc::clone(&deployment),
        std::time::Duration::from_secs(60),
        leadership.clone(),
        cancel.child_token(),
    ));
    tracker.spawn(crate::collect::clock::watch(
        Arc::clone(&metrics),
        cancel.child_token(),
    ));
    tracker.spawn(http::purge_logins(
        store.clone(),
        std::time::Duration::from_secs(3600),
        cancel.child_token(),
    ));

    let catalog = match &deployment.collect.firmware_dir {
        Some(dir) => crate::registers::Catalog::with_dir(dir),
        None => crate::registers::Catalog::builtin(),
    }
    .context("loading register maps")?;
    let gateways = crate::collect::modbus::spawn_all(
        &deployment,
        &catalog,
        ingest_handle.clone(),
        Arc::clone(&metrics),
        shared,
        &cancel,
        &tracker,
    )
    .map_err(|e| anyhow::anyhow!(e))
    .context("starting the modbus pollers")?;
    if shared {
        tracker.spawn(crate::cluster::share(
            store.clone(),
            instance.clone(),
            deployment.cluster.lease,
            gateways,
            tracker.clone(),
            cancel.child_token(),
        ));
    }

    crate::alerts::spawn(
        Arc::clone(&deployment),
        store.clone(),
        Arc::clone(&metrics),
        leadership,
        &tracker,
        &cancel,
    )
    .context("starting alerts")?;

    let mqtt = crate::collect::mqtt::spawn(
        &deployment,
        crate::collect::mqtt::Wiring {
            ingest: ingest_handle.clone(),
            metrics: Arc::clone(&metrics),
            store: store.clone(),
            decoder: Some(Arc::new(crate::collect::mqtt::maps::CatalogMaps::new(
                catalog.clone(),
            ))),
        },
        &tracker,
        &cancel,
    )
    .await
    .context("starting mqtt collection")?;

    let http_addr = listener.local_addr().context("reading the HTTP address")?;
    let mut state =
        http::AppState::new(Arc::clone(&deployment), store.clone(), Arc::clone(&metrics));
    state.backfill = options
        .backfill
        .map(|p| p as Arc<dyn crate::http::BackfillStatus>);
    let http_cancel = cancel.child_token();
    tracker.spawn(async move {
        if let Err(error) = http::serve(listener, state, http_cancel).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
    Ok(Running {
        mqtt_broker: mqtt.and_then(|m| m.embedded_broker),
        http_addr,
        ingest: ingest_handle,
        store,
        metrics,
        cancel,
        tracker,
    })
}

/// `sunshare serve`: runs until Ctrl-C or SIGTERM.
pub async fn serve(deployment: Deployment) -> anyhow::Result<()> {
    let data_dir = deployment
        .storage
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    let listener = TcpListener::bind(deployment.http.listen)
        .await
        .with_context(|| format!("binding {}", deployment.http.listen))?;
    let running = start(Arc::new(deployment), &data_dir, listener).await?;
    info!(url = %format!("http://{}/", running.http_addr), "sunshare is serving");
    shutdown_signal().await;
    info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// A running demo: the service plus its simulated gateways.
#[derive(Debug)]
pub struct Demo {
    pub running: Running,
    /// Who can sign in (all with [`crate::sim::accounts::DEMO_PASSWORD`]).
    pub accounts: Vec<crate::sim::accounts::DemoAccount>,
    pub data_dir: PathBuf,
    pub stations: usize,
    pub devices: usize,
    pub gateways: Vec<crate::sim::demo::Gateway>,
    pub backfill: Arc<crate::sim::history::Progress>,
}

impl Demo {
    pub async fn shutdown(self) {
        self.running.shutdown().await;
        for g in &self.gateways {
            g.stop();
        }
    }
}

/// `sunshare demo`: a simulated county fleet, collected live into a fresh embedded store, with a
/// year of history backfilled in the background.
pub async fn start_demo(args: DemoOptions) -> anyhow::Result<Demo> {
    let data_dir = args.data.unwrap_or_else(|| default_data_dir().join("demo"));
    let now = chrono::Utc::now();
    let mut fleet =
        crate::sim::fleet::DemoFleet::load(now, &known_models(), args.history_days.clamp(1, 400))
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("loading the demo fleet")?;
    // The demo's history is modelled from today, so an old demo database would disagree with it.
    for name in ["sunshare.db", "sunshare.db-wal", "sunshare.db-shm"] {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| {
                format!("removing the previous demo database {}", path.display())
            })?;
        }
    }
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "binding {} (use --listen to pick another address)",
            args.listen
        )
    })?;

    let catalog = crate::registers::Catalog::builtin().context("loading the register maps")?;
    let gateways = crate::sim::demo::start_gateways(&mut fleet, &catalog)
        .await
        .context("starting the simulated gateways")?;
    // The villages' plans, jobs and costs for this year, so the ledger has something to run.
    let year = now.with_timezone(&chrono_tz::Asia::Shanghai).year();
    crate::ledger::demo::add_demo_allocation(&mut fleet.deployment, year);
    let backfill = Arc::new(crate::sim::history::Progress::default());
    let deployment = Arc::new(fleet.deployment.clone());
    let running = start_with(
        Arc::clone(&deployment),
        &data_dir,
        listener,
        StartOptions {
            backfill: Some(Arc::clone(&backfill)),
        },
    )
    .await?;
    let accounts = crate::sim::accounts::create(&running.store, &deployment)
        .await
        .context("creating the demo accounts")?;
    if let Some(path) = &args.token_file {
        write_demo_token(&running.store, path).await?;
    }
    // History goes through its own ingest worker (same validation, same store), so live readings
    // are never queued behind a year of backfill, and so the demo knows when it is all written.
    let (history_ingest, history_worker) = ingest::channel(
        64,
        running.store.clone(),
        device_profiles(&deployment),
        Arc::clone(&running.metrics),
    );
    let history_worker = history_worker.with_limits(ingest::ClockLimits::for_retention(
        deployment.storage.raw_retention,
    ));
    let cancel = running.cancel.child_token();
    let progress = Arc::clone(&backfill);
    let store = running.store.clone();
    let settle_deployment = Arc::clone(&deployment);
    let statement = data_dir.join("settlement-demo.csv");
    let first_month = crate::domain::YearMonth::of(fleet.history_start.date_naive()).next();
    running.tracker.spawn(async move {
        let started = std::time::Instant::now();
        let writer = tokio::spawn(history_worker.run(cancel.clone()));
        let submitted = crate::sim::history::backfill(
            &fleet,
            now,
            &history_ingest,
            Arc::clone(&progress),
            &cancel,
        )
        .await;
        drop(history_ingest);
        // The worker returns once every queued sample is written.
        let _ = writer.await;
        if let Err(error) = submitted {
            tracing::warn!(%error, "history backfill stopped");
            return;
        }
        info!(
            samples = progress.samples.load(std::sync::atomic::Ordering::Relaxed),
            seconds = started.elapsed().as_secs(),
            "history backfilled"
        );
        if cancel.is_cancelled() {
            return;
        }
        match crate::sim::settlement::settle_demo_history(
            &store,
            &settle_deployment,
            now,
            12,
            Some(&statement),
        )
        .await
        {
            Ok(Some(report)) => {
                info!(file = %statement.display(), "grid settlement imported: {report}")
            }
            Ok(None) => info!("every past month of the demo is settled already"),
            Err(error) => tracing::warn!(%error, "demo settlement not imported"),
        }
        if let Err(error) = run_demo_ledger(&store, &settle_deployment, now, first_month).await {
            tracing::warn!(error = %format!("{error:#}"), "demo ledger stopped");
        }
        progress
            .settled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let outage_address = deployment
        .devices
        .iter()
        .find(|d| d.station.as_str() == crate::sim::fleet::OUTAGE_STATION)
        .and_then(|d| d.transport.gateway().map(str::to_owned));
    if let Some(g) = outage_address
        .and_then(|address| gateways.iter().find(|g| g.address().to_string() == address))
    {
        running.tracker.spawn(crate::sim::demo::play_outage(
            Arc::clone(&g.gateway),
            g.units.clone(),
            running.cancel.child_token(),
        ));
    }
    Ok(Demo {
        running,
        accounts,
        data_dir,
        stations: deployment.stations.len(),
        devices: deployment.devices.len(),
        gateways,
        backfill,
    })
}

/// An administrator's API token for the demo, written where only this user can read it.
async fn write_demo_token(store: &Store, path: &Path) -> anyhow::Result<()> {
    use secrecy::ExposeSecret as _;
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    let (_, token) =
        crate::accounts::add_token(store, "admin", "demo --token-file", until, "demo", "demo")
            .await
            .context("making the demo API token")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing the demo token to {}", path.display()))?;
    std::io::Write::write_all(&mut file, token.expose_secret().as_bytes())
        .with_context(|| format!("writing the demo token to {}", path.display()))?;
    Ok(())
}

/// Activates this year's village plans and runs (and pays) every complete month of the year that
/// the demo's history covers, so the village pages show real statements. The last month is left
/// computed but unpaid, as an accountant would find it before payday.
async fn run_demo_ledger(
    store: &Store,
    d: &Deployment,
    now: chrono::DateTime<chrono::Utc>,
    first_month: crate::domain::YearMonth,
) -> anyhow::Result<()> {
    use crate::domain::YearMonth;
    let current = YearMonth::of(now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive());
    let Some(january) = YearMonth::new(current.year(), 1) else {
        return Ok(());
    };
    crate::ledger::demo::activate_plans(store, d, current.year(), "demo")
        .await
        .context("activating the demo plans")?;
    let energy = crate::ledger::energy_source(store.clone(), Arc::new(d.clone()));
    let mut month = january.max(first_month);
    let mut previous: Option<YearMonth> = None;
    while month < current {
        crate::ledger::run_month(store, d, energy.as_ref(), month, "demo", true)
            .await
            .with_context(|| format!("allocating {month}"))?;
        if let Some(p) = previous {
            crate::ledger::pay_month(store, p, "demo", "paid by the village accountant")
                .await
                .with_context(|| format!("paying {p}"))?;
        }
        previous = Some(month);
        month = month.next();
    }
    info!(until = %current.prev(), "demo ledger: months allocated");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
