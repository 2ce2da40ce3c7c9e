//! Wiring: builds the components a deployment declares, connects them with bounded channels, spawns
//! them into one `TaskTracker` and stops them all from one root `CancellationToken`.

use crate::config::Deployment;
use crate::http;
use crate::ingest::{self, DeviceProfile};
use crate::metrics::Metrics;
use crate::store::Store;
use anyhow::Context as _;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Flags of `sunshare demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the web pages are served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory for the embedded store (default: the user's data directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// The register maps a deployment may name (the built-in ones).
pub fn known_models() -> HashSet<String> {
    crate::registers::Catalog::builtin()
        .map(|c| c.names())
        .unwrap_or_default()
}

/// The register maps for a deployment file: built-in plus its `collect.firmware_dir` (relative to
/// the file's directory). A bad map file is reported with its file and key.
pub fn load_catalog(path: &Path) -> Result<crate::registers::Catalog, crate::config::ConfigError> {
    load_catalog_dir(path).map(|(c, _)| c)
}

fn load_catalog_dir(
    path: &Path,
) -> Result<(crate::registers::Catalog, Option<PathBuf>), crate::config::ConfigError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let firmware_dir = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| {
            t.get("collect")?
                .get("firmware_dir")?
                .as_str()
                .map(PathBuf::from)
        })
        .or_else(|| std::env::var_os("SUNSHARE_COLLECT__FIRMWARE_DIR").map(PathBuf::from));
    let dir = firmware_dir.map(|dir| {
        if dir.is_relative() {
            path.parent().unwrap_or(Path::new(".")).join(dir)
        } else {
            dir
        }
    });
    let result = match &dir {
        None => crate::registers::Catalog::builtin(),
        Some(dir) => crate::registers::Catalog::with_dir(dir),
    };
    result
        .map(|c| (c, dir))
        .map_err(|e| crate::config::ConfigError {
            file: e.file().to_owned(),
            problems: vec![crate::config::Problem {
                key: e.key().unwrap_or("(file)").to_owned(),
                line: None,
                message: e.message(),
                fix: "correct the register map (see docs/modbus.md for the format)".into(),
            }],
        })
}

/// Loads and validates a deployment file against the register maps it can use.
pub fn load_config(path: &Path) -> Result<Deployment, crate::config::ConfigError> {
    let (catalog, dir) = load_catalog_dir(path)?;
    let mut deployment = Deployment::load(path, &catalog.names())?;
    // Resolved against the file's directory, so `start` finds the same maps from any directory.
    deployment.collect.firmware_dir = dir;
    Ok(deployment)
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
                },
            )
        })
        .collect()
}

/// A running service: its address and the handles to stop it.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
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

/// Starts store, ingest and HTTP for a deployment on an already-bound listener.
pub async fn start(
    deployment: Arc<Deployment>,
    data_dir: &Path,
    listener: TcpListener,
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

    let (ingest, worker) = ingest::channel(
        1024,
        store.clone(),
        device_profiles(&deployment),
        Arc::clone(&metrics),
    );
    tracker.spawn(worker.run(cancel.child_token()));

    let catalog = match &deployment.collect.firmware_dir {
        Some(dir) => crate::registers::Catalog::with_dir(dir),
        None => crate::registers::Catalog::builtin(),
    }
    .context("loading register maps")?;
    crate::collect::modbus::spawn_all(
        &deployment,
        &catalog,
        ingest.clone(),
        Arc::clone(&metrics),
        &cancel,
        &tracker,
    )
    .map_err(|e| anyhow::anyhow!(e))
    .context("starting the modbus pollers")?;

    let http_addr = listener.local_addr().context("reading the HTTP address")?;
    let state = http::AppState {
        deployment: Arc::clone(&deployment),
        store: store.clone(),
        metrics: Arc::clone(&metrics),
    };
    let http_cancel = cancel.child_token();
    tracker.spawn(async move {
        if let Err(error) = http::serve(listener, state, http_cancel).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
    Ok(Running {
        http_addr,
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

/// `sunshare demo`.
pub async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let data_dir = args.data.unwrap_or_else(|| default_data_dir().join("demo"));
    anyhow::bail!(
        "the demo fleet is not wired yet (data dir {})",
        data_dir.display()
    )
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
