//! The `sunshare` command line: parses arguments, sets up tracing, runs one subcommand and maps its
//! outcome to an exit code (0 success, 1 failure, 2 bad configuration or usage). The subcommands
//! and their handlers are in `sunshare::cli`.

use clap::Parser;
use std::process::ExitCode;
use sunshare::cli::{self, Command, Failure};

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
    let outcome = runtime.block_on(run(cli.command));
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprint!("{message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprint!("{message}");
            ExitCode::FAILURE
        }
        Err(Failure::Error(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand; returns the text to print.
async fn run(command: Command) -> Result<String, Failure> {
    match command {
        Command::Demo(args) => until_ctrl_c(cli::demo::demo(args).await?).await,
        Command::Simulate(args) => until_ctrl_c(cli::modbus::simulate(args).await?).await,
        Command::Serve { config } => cli::config::serve(&config).await,
        Command::CheckConfig { config } => cli::config::check_config(&config),
        Command::LoggerConfig { config, station } => cli::config::logger_config(&config, &station),
        Command::Probe(args) => cli::modbus::probe(args).await,
        #[cfg(feature = "bench")]
        Command::Bench(what) => cli::bench::bench(what).await,
        Command::Allocate(args) => {
            let json = args.format == cli::ledger::Format::Json;
            cli::ledger::allocate(args)
                .await
                .map_err(|e| cli::ledger::refusal(e, json))
        }
        Command::Plan(args) => Ok(cli::ledger::plan(args).await.map_err(anyhow::Error::from)?),
        Command::Ledger(args) => Ok(cli::ledger::ledger(args)
            .await
            .map_err(anyhow::Error::from)?),
        Command::Settlement(cmd) => cli::energy::settlement(cmd).await,
        Command::User(cmd) => Ok(cli::accounts::user(cmd).await?),
        Command::Token(cmd) => Ok(cli::accounts::token(cmd).await?),
        Command::Energy {
            config,
            station,
            month,
        } => cli::energy::energy(&config, &station, month).await,
    }
}

/// Prints a long-running command's banner, then waits for Ctrl-C and stops it.
async fn until_ctrl_c(running: cli::Running) -> Result<String, Failure> {
    print!("{}", running.banner);
    running.until_ctrl_c().await;
    Ok(String::new())
}
