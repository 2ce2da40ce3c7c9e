//! `sunshare bench ...` (with the `bench` feature): the flags of each benchmark; the measuring is
//! in [`crate::bench`].

use super::Failure;
use crate::bench::modbus::ModbusOptions;
use crate::bench::{Benchmark, SinkOptions, StoreOptions};
use anyhow::Context as _;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Modbus polling throughput, CPU, latency and memory against a separate simulator process.
    Modbus(ModbusBenchArgs),
    /// The store write path (raw + rollups + latest) on SQLite, against peers on the same rows.
    Store(StoreArgs),
    /// The InfluxDB sink into a VictoriaMetrics it starts itself: live path and spool replay,
    /// against a plain HTTP client posting the same line protocol.
    Sink(SinkArgs),
    /// The fleet page, a station page and the stations API under concurrent clients on a large
    /// fleet with a year of history, against a bare SELECT of a station page's rows.
    Http(HttpArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Stations in the fleet (one inverter each, 100 to a county).
    #[arg(long, default_value_t = 10_000)]
    pub stations: usize,
    /// Days of history.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Readings a day per inverter in the history.
    #[arg(long, default_value_t = 4)]
    pub readings_per_day: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// How long each target is loaded.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Where the database goes (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Reuse the fleet and history an earlier run of the same size left in `--dir` instead of
    /// writing them again (a 10,000-station year takes about half an hour to prepare).
    #[arg(long, requires = "dir")]
    pub reuse: bool,
    /// Load only these targets (fleet, county, api, station, peers); default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// The victoria-metrics binary.
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    pub victoria: PathBuf,
    /// Points (full inverter readings) per phase.
    #[arg(long, default_value_t = 200_000)]
    pub points: usize,
    /// Points per write request.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// Devices in the simulated fleet.
    #[arg(long, default_value_t = 2_000)]
    pub devices: usize,
    /// Light points (ac_power_w, energy_lifetime_wh and state) instead of full inverter readings,
    /// to see the per-point cost apart from the per-field cost on the server.
    #[arg(long)]
    pub light: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Full inverter samples to write.
    #[arg(long, default_value_t = 300_000)]
    pub samples: usize,
    /// Devices reporting on a 60 s schedule.
    #[arg(long, default_value_t = 2_000)]
    pub devices: usize,
    /// Samples per write (the ingest worker's batch size).
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Samples given to the row-at-a-time peer (default: all of them, on an equally large table).
    #[arg(long)]
    pub peer_samples: Option<usize>,
    /// A python3 interpreter for the sqlite3.executemany peer (skipped when absent).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Where the benchmark databases go (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModbusBenchArgs {
    /// Simulated gateways (one TCP connection each).
    #[arg(long, default_value_t = 100)]
    pub gateways: usize,
    /// Unit ids per gateway.
    #[arg(long, default_value_t = 10)]
    pub units: u8,
    /// Poll period of every device (small = as fast as the gateway allows).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long Sunshare polls.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Latency the simulator adds to every answer, in ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Connections of the bare tokio-modbus loop (0 = skip the ceiling).
    #[arg(long, default_value_t = 16)]
    pub ceiling_connections: usize,
    /// Seconds the ceiling and the peer each run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub side_duration: Duration,
    /// Simulator processes sharing the gateways (each gateway costs the simulator two file
    /// descriptors: split large runs across processes to stay under the descriptor limit).
    #[arg(long, default_value_t = 1)]
    pub sim_processes: usize,
    /// python3 with pymodbus for the peer (skipped when unset).
    #[arg(long, env = "SUNSHARE_TEST_PYMODBUS")]
    pub peer_python: Option<String>,
}

impl From<BenchCommand> for Benchmark {
    fn from(c: BenchCommand) -> Self {
        match c {
            BenchCommand::Modbus(a) => Self::Modbus(ModbusOptions {
                gateways: a.gateways,
                units: a.units,
                interval: a.interval,
                duration: a.duration,
                latency_ms: a.latency_ms,
                ceiling_connections: a.ceiling_connections,
                side_duration: a.side_duration,
                sim_processes: a.sim_processes,
                peer_python: a.peer_python,
            }),
            BenchCommand::Store(a) => Self::Store(StoreOptions {
                samples: a.samples,
                devices: a.devices,
                batch: a.batch,
                peer_samples: a.peer_samples,
                python: a.python,
                dir: a.dir,
            }),
            BenchCommand::Http(a) => Self::Http(crate::bench::http::HttpOptions {
                stations: a.stations,
                days: a.days,
                readings_per_day: a.readings_per_day,
                clients: a.clients,
                duration: a.duration,
                dir: a.dir,
                reuse: a.reuse,
                only: a.only,
            }),
            BenchCommand::Sink(a) => Self::Sink(SinkOptions {
                victoria: a.victoria,
                points: a.points,
                batch: a.batch,
                devices: a.devices,
                light: a.light,
            }),
        }
    }
}

/// `sunshare bench ...`: the benchmark's report.
pub async fn bench(command: BenchCommand) -> Result<String, Failure> {
    Ok(crate::bench::run(command.into())
        .await
        .context("benchmark")?)
}
