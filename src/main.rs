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
    /// Read one inverter once over Modbus and print what it says (for commissioning).
    Probe(sunshare::collect::modbus::ProbeArgs),
    /// Serve simulated inverters over Modbus (gateways x unit ids) until Ctrl-C.
    Simulate(sunshare::sim::modbus::SimulateArgs),
    /// Measure a component against its ceiling and a peer (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(sunshare::bench::BenchCommand),
    /// Allocate a month's station income to villages and households, and record it in the ledger.
    Allocate(sunshare::ledger::cli::AllocateArgs),
    /// Move village annual plans through their workflow.
    Plan(sunshare::ledger::cli::PlanArgs),
    /// Lock paid months, export statements and rosters, read the audit trail.
    Ledger(sunshare::ledger::cli::LedgerArgs),
    /// Grid settlements (结算单): import the grid company's monthly statements.
    #[command(subcommand)]
    Settlement(SettlementCommand),
    /// Users: add (the first administrator too), passwd, disable, enable, list.
    #[command(subcommand)]
    User(sunshare::cli::accounts::UserCommand),
    /// API tokens for dashboards and scripts: add, list, revoke.
    #[command(subcommand)]
    Token(sunshare::cli::accounts::TokenCommand),
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
            let demo = app::start_demo(args).await.context("starting the demo")?;
            println!();
            println!(
                "  Sunshare demo: {} stations, {} inverters on {} simulated Modbus gateways",
                demo.stations,
                demo.devices,
                demo.gateways.len()
            );
            println!("  Fleet page:    http://{}/", demo.running.http_addr);
            println!(
                "  Sign in as any of these, password {}:",
                sunshare::sim::accounts::DEMO_PASSWORD
            );
            for a in &demo.accounts {
                let scope: Vec<String> = a.scope.iter().map(ToString::to_string).collect();
                println!(
                    "    {:<22} {:<10} {} ({})",
                    a.username,
                    a.role.to_string(),
                    a.display_name,
                    scope.join(", ")
                );
            }
            println!("  Data:          {}", demo.data_dir.display());
            println!(
                "  A year of history is being backfilled in the background; stop with Ctrl-C."
            );
            println!();
            app::shutdown_signal().await;
            tracing::info!("shutting down");
            demo.shutdown().await;
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
        Command::Probe(args) => probe(args).await,
        Command::Simulate(args) => simulate(args).await,
        Command::Bench(what) => {
            print!("{}", sunshare::bench::run(what).await.context("benchmark")?);
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
        Command::Allocate(args) => {
            print!("{}", sunshare::ledger::cli::allocate(args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            print!("{}", sunshare::ledger::cli::plan(args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => {
            print!("{}", sunshare::cli::accounts::user(cmd).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(cmd) => {
            print!("{}", sunshare::cli::accounts::token(cmd).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger(args) => {
            print!("{}", sunshare::ledger::cli::ledger(args).await?);
            Ok(ExitCode::SUCCESS)
        }
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

async fn probe(args: sunshare::collect::modbus::ProbeArgs) -> anyhow::Result<ExitCode> {
    use sunshare::collect::modbus::{self as poll, Framing, ProbeFormat};
    let catalog = match &args.firmware_dir {
        Some(dir) => sunshare::registers::Catalog::with_dir(dir),
        None => sunshare::registers::Catalog::builtin(),
    }
    .context("loading register maps")?;
    let Some(map) = catalog.get(&args.model) else {
        let mut names: Vec<_> = catalog.names().into_iter().collect();
        names.sort();
        eprintln!(
            "error: no register map '{}' (known: {})",
            args.model,
            names.join(", ")
        );
        return Ok(ExitCode::from(2));
    };
    let framing = if args.rtu {
        Framing::RtuOverTcp
    } else {
        Framing::Tcp
    };
    let timeout = args.timeout.unwrap_or(map.timing().timeout);
    match poll::probe(&map, &args.address, args.unit, framing, timeout).await {
        Ok(decoded) => {
            match args.format {
                ProbeFormat::Json => println!("{}", poll::probe_json(&map, &decoded)),
                ProbeFormat::Text => print!("{}", poll::probe_text(&map, &decoded)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!(
                "error: probing unit {} at {} with map {}: {error}",
                args.unit, args.address, args.model
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn simulate(args: sunshare::sim::modbus::SimulateArgs) -> anyhow::Result<ExitCode> {
    let catalog = sunshare::registers::Catalog::builtin().context("loading register maps")?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = sunshare::sim::modbus::start_fleet(&args, &catalog, &cancel)
        .await
        .context("starting simulated gateways")?;
    for s in &started {
        let units: Vec<String> = s.units.iter().map(|(u, m)| format!("{u}:{m}")).collect();
        println!(
            "gateway {} {} units {}",
            s.gateway.local_addr(),
            if args.rtu { "rtu" } else { "tcp" },
            units.join(",")
        );
    }
    println!("ready");
    app::shutdown_signal().await;
    cancel.cancel();
    Ok(ExitCode::SUCCESS)
}
