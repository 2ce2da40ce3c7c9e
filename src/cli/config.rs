//! `sunshare serve`, `sunshare check-config` and `sunshare logger-config`: the commands that start
//! from a deployment file.

use super::{load_config, Failure};
use crate::app;
use anyhow::Context as _;
use std::path::Path;

/// `sunshare serve`: runs the service until Ctrl-C or SIGTERM; prints nothing.
pub async fn serve(config: &Path) -> Result<String, Failure> {
    let deployment = load_config(config)?;
    app::serve(deployment).await.context("serving")?;
    Ok(String::new())
}

/// `sunshare check-config`: one line with what the file declares, or its errors (exit code 2).
pub fn check_config(config: &Path) -> Result<String, Failure> {
    let d = load_config(config)?;
    Ok(format!(
        "{}: ok ({} stations, {} devices, {} villages, {} households, {} jobs)\n",
        config.display(),
        d.stations.len(),
        d.devices.len(),
        d.villages.len(),
        d.households.len(),
        d.jobs.len()
    ))
}

/// `sunshare logger-config`: what a technician loads into a station's data loggers.
pub fn logger_config(config: &Path, station: &str) -> Result<String, Failure> {
    let loaded = app::load(config).map_err(|e| Failure::Usage(e.to_string()))?;
    let maps = crate::collect::mqtt::maps::CatalogMaps::new(loaded.catalog);
    crate::collect::mqtt::setup::logger_config(&loaded.deployment, station, Some(&maps))
        .map_err(|e| Failure::Usage(format!("error: {e}\n")))
}
