//! `sunshare energy` and `sunshare settlement import`: a station's month, and the grid company's
//! statements.

use super::{data_dir, load_config, Failure};
use crate::domain::YearMonth;
use anyhow::Context as _;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum SettlementCommand {
    /// Import a statement (CSV in UTF-8 or GBK, or XLSX); all of it or, on any error, nothing.
    Import {
        /// The statement file (columns: 电站编号, 结算月份, 上网电量(kWh), optional 结算金额(元)).
        file: PathBuf,
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `sunshare settlement ...`: the import report, or what was rejected (exit code 1).
pub async fn settlement(command: SettlementCommand) -> Result<String, Failure> {
    match command {
        SettlementCommand::Import { file, config } => {
            let d = load_config(&config)?;
            match crate::energy::import_file(&d, &data_dir(&d), &file).await {
                Ok(report) => Ok(report.to_string()),
                Err(crate::energy::Error::Rejected(r)) => Err(Failure::Failed(r.to_string())),
                Err(crate::energy::Error::Duplicate(d)) => Err(Failure::Failed(d.to_string())),
                Err(e) => Err(anyhow::Error::from(e)
                    .context("importing the settlement")
                    .into()),
            }
        }
    }
}

/// `sunshare energy`: a station's month as text.
pub async fn energy(config: &Path, station: &str, month: YearMonth) -> Result<String, Failure> {
    let d = load_config(config)?;
    let text = crate::energy::month_text(&d, &data_dir(&d), &station.into(), month)
        .await
        .context("reading the station's energy")?;
    Ok(text)
}
