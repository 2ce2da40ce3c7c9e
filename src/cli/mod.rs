//! The command line below the top-level parser: every subcommand's flags and its handler. Each
//! handler returns the text to print, or a [`Failure`] that says what to report and with which exit
//! code; none of them prints or exits by itself. A command that runs until Ctrl-C returns a
//! [`Running`]: its banner to print first, then [`Running::until_ctrl_c`].

pub mod accounts;
#[cfg(feature = "bench")]
pub mod bench;
pub mod config;
pub mod demo;
pub mod energy;
pub mod ledger;
pub mod modbus;

use crate::app;
use crate::config::Deployment;
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};

/// Every subcommand of `sunshare`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run a simulated fleet end to end on embedded defaults (no external service needed).
    Demo(demo::DemoArgs),
    /// Run the service for a deployment file.
    Serve {
        /// The deployment file (see sunshare.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a deployment file and exit non-zero with precise messages if it is wrong.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print what a field technician loads into the 4G data loggers of a station (broker, topic,
    /// interval, poll table, JSON keys).
    LoggerConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// The station id, as in the deployment file.
        #[arg(long)]
        station: String,
    },
    /// Read one inverter once over Modbus and print what it says (for commissioning).
    Probe(modbus::ProbeArgs),
    /// Serve simulated inverters over Modbus (gateways x unit ids) until Ctrl-C.
    Simulate(modbus::SimulateArgs),
    /// Measure a component against its ceiling and a peer (see BENCHMARKS.md).
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Allocate a month's station income to villages and households, and record it in the ledger.
    Allocate(ledger::AllocateArgs),
    /// Move village annual plans through their workflow.
    Plan(ledger::PlanArgs),
    /// Lock paid months, export statements and rosters, read the audit trail.
    Ledger(ledger::LedgerArgs),
    /// Grid settlements (结算单): import the grid company's monthly statements.
    #[command(subcommand)]
    Settlement(energy::SettlementCommand),
    /// Users: add (the first administrator too), passwd, disable, enable, list.
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// API tokens for dashboards and scripts: add, list, revoke.
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Print a station's energy for a month: the figure and its basis (settled or provisional),
    /// each day with completeness and notes, KPIs and the reconciliation.
    Energy {
        #[arg(long, short)]
        config: PathBuf,
        /// Station id as in the deployment file.
        #[arg(long)]
        station: String,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: crate::domain::YearMonth,
    },
}

/// A command that did not succeed: what to write to standard error, and the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration or usage: the message is written as it is; exit code 2.
    Usage(String),
    /// The command ran and failed: the message is written as it is; exit code 1.
    Failed(String),
    /// Anything else: written as `error: ` and the error with its causes; exit code 1.
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::Error(error)
    }
}

/// A command that runs until Ctrl-C: print [`Running::banner`], then await
/// [`Running::until_ctrl_c`].
pub struct Running {
    /// What to print once the command has started.
    pub banner: String,
    stop: BoxFuture<'static, ()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("banner", &self.banner)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Waits for Ctrl-C (or SIGTERM), then stops what the command started.
    pub async fn until_ctrl_c(self) {
        app::shutdown_signal().await;
        self.stop.await;
    }
}

/// The deployment file, or its errors as a usage failure (exit code 2).
fn load_config(config: &Path) -> Result<Deployment, Failure> {
    app::load_config(config).map_err(|e| Failure::Usage(e.to_string()))
}

/// Where a deployment keeps its embedded store.
fn data_dir(d: &Deployment) -> PathBuf {
    d.storage
        .data_dir
        .clone()
        .unwrap_or_else(app::default_data_dir)
}
