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
    /// Grid settlements (结算单): import the grid company's monthly statements.
    #[command(subcommand)]
    Settlement(SettlementCommand),
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
        month: sunshare::domain::YearMonth,
    },
}

#[derive(Subcommand, Debug)]
enum SettlementCommand {
    /// Import a statement (CSV in UTF-8 or GBK, or XLSX); all of it or, on any error, nothing.
    Import {
        /// The statement file (columns: 电站编号, 结算月份, 上网电量(kWh), optional 结算金额(元)).
        file: PathBuf,
        #[arg(long, short)]
        config: PathBuf,
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
        Command::Settlement(SettlementCommand::Import { file, config }) => {
            let Ok(d) = app::load_config(&config).map_err(|e| eprint!("{e}")) else {
                return Ok(ExitCode::from(2));
            };
            let data_dir = d
                .storage
                .data_dir
                .clone()
                .unwrap_or_else(app::default_data_dir);
            match sunshare::energy::import_file(&d, &data_dir, &file).await {
                Ok(report) => {
                    print!("{report}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(sunshare::energy::Error::Rejected(r)) => {
                    eprint!("{r}");
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e).context("importing the settlement"),
            }
        }
        Command::Energy {
            config,
            station,
            month,
        } => {
            let Ok(d) = app::load_config(&config).map_err(|e| eprint!("{e}")) else {
                return Ok(ExitCode::from(2));
            };
            let data_dir = d
                .storage
                .data_dir
                .clone()
                .unwrap_or_else(app::default_data_dir);
            let text = sunshare::energy::month_text(&d, &data_dir, &station.as_str().into(), month)
                .await
                .context("reading the station's energy")?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
