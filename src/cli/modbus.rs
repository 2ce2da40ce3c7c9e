//! `sunshare probe` (read one inverter once, for commissioning) and `sunshare simulate` (serve
//! simulated inverters over Modbus until Ctrl-C).

use super::{Failure, Running};
use crate::collect::modbus::{self as poll, Framing};
use crate::registers::Catalog;
use crate::sim::modbus::FleetSpec;
use anyhow::Context as _;
use std::fmt::Write as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Flags of `sunshare probe`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Register map name (e.g. huawei_sun2000, sungrow_sg, sunspec, solis, growatt).
    #[arg(long)]
    pub model: String,
    /// host:port of the inverter or gateway.
    #[arg(long)]
    pub address: String,
    /// Modbus unit id.
    #[arg(long, default_value_t = 1)]
    pub unit: u8,
    /// RTU framing over TCP (serial servers, DTUs) instead of Modbus TCP.
    #[arg(long)]
    pub rtu: bool,
    #[arg(long, value_enum, default_value_t = ProbeFormat::Text)]
    pub format: ProbeFormat,
    /// Per-request timeout (default: the register map's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Extra register maps directory.
    #[arg(long)]
    pub firmware_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeFormat {
    Text,
    Json,
}

/// `sunshare probe`: what the inverter says, as text or JSON; an unknown map is a usage failure
/// (exit code 2), an inverter that does not answer a failure (exit code 1).
pub async fn probe(args: ProbeArgs) -> Result<String, Failure> {
    let catalog = match &args.firmware_dir {
        Some(dir) => Catalog::with_dir(dir),
        None => Catalog::builtin(),
    }
    .context("loading register maps")?;
    let Some(map) = catalog.get(&args.model) else {
        let mut names: Vec<_> = catalog.names().into_iter().collect();
        names.sort();
        return Err(Failure::Usage(format!(
            "error: no register map '{}' (known: {})\n",
            args.model,
            names.join(", ")
        )));
    };
    let framing = if args.rtu {
        Framing::RtuOverTcp
    } else {
        Framing::Tcp
    };
    let timeout = args.timeout.unwrap_or(map.timing().timeout);
    match poll::probe(&map, &args.address, args.unit, framing, timeout).await {
        Ok(decoded) => Ok(match args.format {
            ProbeFormat::Json => format!("{}\n", poll::probe_json(&map, &decoded)),
            ProbeFormat::Text => poll::probe_text(&map, &decoded),
        }),
        Err(error) => Err(Failure::Failed(format!(
            "error: probing unit {} at {} with map {}: {error}\n",
            args.unit, args.address, args.model
        ))),
    }
}

/// Flags of `sunshare simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Number of gateways (one TCP listener each).
    #[arg(long, default_value_t = 1)]
    pub gateways: usize,
    /// Unit ids per gateway (1..=N).
    #[arg(long, default_value_t = 4)]
    pub units: u8,
    /// Register map of every unit, or `mixed` to cycle through the built-in families.
    #[arg(long, default_value = "huawei_sun2000")]
    pub model: String,
    /// Serve RTU-over-TCP framing instead of Modbus TCP.
    #[arg(long)]
    pub rtu: bool,
    /// Host to listen on; ports are chosen by the system unless --base-port is given.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// First port (gateway n listens on base + n); 0 = any free port.
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Shift each plant's clock to its solar noon, so it produces whatever the hour.
    #[arg(long)]
    pub noon: bool,
}

impl From<SimulateArgs> for FleetSpec {
    fn from(a: SimulateArgs) -> Self {
        Self {
            gateways: a.gateways,
            units: a.units,
            model: a.model,
            rtu: a.rtu,
            host: a.host,
            base_port: a.base_port,
            latency_ms: a.latency_ms,
            noon: a.noon,
        }
    }
}

/// `sunshare simulate`: starts the gateways; the banner is one line per gateway (address, framing,
/// `unit:model` pairs) and then `ready`.
pub async fn simulate(args: SimulateArgs) -> Result<Running, Failure> {
    let spec = FleetSpec::from(args);
    let catalog = Catalog::builtin().context("loading register maps")?;
    let cancel = CancellationToken::new();
    let started = crate::sim::modbus::start_fleet(&spec, &catalog, &cancel)
        .await
        .context("starting simulated gateways")?;
    let mut banner = String::new();
    for s in &started {
        let units: Vec<String> = s.units.iter().map(|(u, m)| format!("{u}:{m}")).collect();
        let _ = writeln!(
            banner,
            "gateway {} {} units {}",
            s.gateway.local_addr(),
            if spec.rtu { "rtu" } else { "tcp" },
            units.join(",")
        );
    }
    banner.push_str("ready\n");
    Ok(Running {
        banner,
        stop: Box::pin(async move {
            cancel.cancel();
            drop(started);
        }),
    })
}
