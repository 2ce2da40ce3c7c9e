//! `sunshare demo`: a simulated county fleet on embedded defaults, until Ctrl-C.

use super::{Failure, Running};
use crate::app::{self, DemoOptions};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `sunshare demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the web pages are served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory for the embedded store (default: the user's data directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Days of simulated history to backfill.
    #[arg(long, default_value_t = crate::sim::fleet::HISTORY_DAYS)]
    pub history_days: i64,
    /// Also write an administrator's API token to this file (mode 0600), for scripts and API
    /// test tools run against the demo.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

impl From<DemoArgs> for DemoOptions {
    fn from(a: DemoArgs) -> Self {
        Self {
            listen: a.listen,
            data: a.data,
            history_days: a.history_days,
            token_file: a.token_file,
        }
    }
}

/// Starts the demo; the banner says where the pages are and who can sign in.
pub async fn demo(args: DemoArgs) -> Result<Running, Failure> {
    let demo = app::start_demo(args.into())
        .await
        .context("starting the demo")?;
    let mut b = String::from("\n");
    let _ = writeln!(
        b,
        "  Sunshare demo: {} stations, {} inverters on {} simulated Modbus gateways",
        demo.stations,
        demo.devices,
        demo.gateways.len()
    );
    let _ = writeln!(b, "  Fleet page:    http://{}/", demo.running.http_addr);
    let _ = writeln!(
        b,
        "  Sign in as any of these, password {}:",
        crate::sim::accounts::DEMO_PASSWORD
    );
    for a in &demo.accounts {
        let scope: Vec<String> = a.scope.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            b,
            "    {:<22} {:<10} {} ({})",
            a.username,
            a.role.to_string(),
            a.display_name,
            scope.join(", ")
        );
    }
    let _ = writeln!(b, "  Data:          {}", demo.data_dir.display());
    let _ = writeln!(
        b,
        "  A year of history is being backfilled in the background; stop with Ctrl-C."
    );
    b.push('\n');
    Ok(Running {
        banner: b,
        stop: Box::pin(async move {
            tracing::info!("shutting down");
            demo.shutdown().await;
        }),
    })
}
