//! Energy accounting: daily and monthly energy from lifetime counters, data completeness, KPIs,
//! grid settlement import and reconciliation.
//!
//! The arithmetic ([`counters`], [`kpi`], [`reconcile`]) is pure. This module reads samples from
//! the store but never writes them; the only thing it writes is imported settlements. Money is not
//! computed here: the allocator takes [`month_energy`] and prices it.

pub mod counters;
pub mod kpi;
pub mod metered;
pub mod reconcile;
pub mod settlement;
#[cfg(test)]
mod testing;

use crate::config::Deployment;
use crate::domain::{EnergyBasis, MonthEnergy, StationId, YearMonth};
use crate::store::Store;
use chrono::Utc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("station '{0}' is not in the deployment file")]
    UnknownStation(String),
}

/// The energy a station's income for `month` is computed on: the grid settlement when one was
/// imported (61号 Art. 5), else Sunshare's metered figure, which is provisional and says so.
pub async fn month_energy(
    store: &Store,
    deployment: &Deployment,
    station: &StationId,
    month: YearMonth,
) -> Result<MonthEnergy, Error> {
    let s = deployment
        .station(station.as_str())
        .ok_or_else(|| Error::UnknownStation(station.to_string()))?;
    if let Some(settled) = store.settlement(station, month).await? {
        return Ok(MonthEnergy {
            station: station.clone(),
            month,
            energy: settled.energy,
            basis: EnergyBasis::Settled,
        });
    }
    let figures = metered::station_months(store, deployment, s, month, month, Utc::now()).await?;
    Ok(MonthEnergy {
        station: station.clone(),
        month,
        energy: figures.first().map_or(crate::domain::WattHours::ZERO, |f| f.energy),
        basis: EnergyBasis::Metered,
    })
}

#[cfg(test)]
mod tests;
