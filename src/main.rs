//! The `sunshare` command line: parses arguments, sets up tracing, runs one subcommand and maps its
//! outcome to an exit code (0 success, 1 failure, 2 bad configuration or usage).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use sunshare::app;

#[derive(Parser, Debug)]
#[command(
    name = "sunshare",
    version,
    about = "Monitoring and revenue allocation for photovoltaic poverty-alleviation stations",
    long_about = "Sunshare collects inverter data over Modbus and MQTT, stores it, turns lifetime \
                  counters into daily and monthly energy, allocates the income to village \
                  collectives and households, and alerts operators.\n\n\
                  Start with `sunshare demo`: a simulated county fleet on http://127.0.0.1:8080."
)]
struct Cli {
    /// Log filter, e.g. `info` or `sunshare=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "SUNSHARE_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a simulated fleet end to end on embedded defaults (no external service needed).
    Demo(app::DemoArgs),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => {
            app::run_demo(args).await.context("running the demo")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let deployment = match app::load_config(&config) {
                Ok(d) => d,
                Err(e) => {
                    eprint!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            app::serve(deployment).await.context("serving")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => match app::load_config(&config) {
            Ok(d) => {
                println!(
                    "{}: ok ({} stations, {} devices, {} villages, {} households, {} jobs)",
                    config.display(),
                    d.stations.len(),
                    d.devices.len(),
                    d.villages.len(),
                    d.households.len(),
                    d.jobs.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprint!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::LoggerConfig { config, station } => {
            let deployment = match app::load_config(&config) {
                Ok(d) => d,
                Err(e) => {
                    eprint!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let maps = match app::load_catalog(&config) {
                Ok(c) => sunshare::collect::mqtt::maps::CatalogMaps::new(c),
                Err(e) => {
                    eprint!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            match sunshare::collect::mqtt::setup::logger_config(&deployment, &station, Some(&maps))
            {
                Ok(text) => {
                    print!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}
