//! Energy accounting: daily and monthly energy from lifetime counters, data completeness, KPIs,
//! grid settlement import and reconciliation.
//!
//! The arithmetic ([`counters`], [`kpi`], [`reconcile`]) is pure. This module reads samples from
//! the store but never writes them; what it writes is imported settlements and the stations'
//! precomputed daily figures ([`daily`]). Money is not
//! computed here: the allocator takes [`month_energy`] and prices it.

pub mod counters;
pub mod daily;
pub mod kpi;
pub mod metered;
pub mod reconcile;
pub mod report;
pub mod settlement;
#[cfg(test)]
pub(crate) mod testing;

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
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Rejected(#[from] settlement::Rejected),
    #[error(transparent)]
    Duplicate(#[from] settlement::Duplicate),
}

impl From<settlement::ImportError> for Error {
    fn from(e: settlement::ImportError) -> Self {
        match e {
            settlement::ImportError::Rejected(r) => Error::Rejected(r),
            settlement::ImportError::Duplicate(d) => Error::Duplicate(d),
            settlement::ImportError::Store(s) => Error::Store(s),
        }
    }
}

/// `sunshare settlement import FILE`: reads the file and imports all of it or nothing.
pub async fn import_file(
    deployment: &Deployment,
    data_dir: &std::path::Path,
    file: &std::path::Path,
) -> Result<settlement::ImportReport, Error> {
    let bytes = std::fs::read(file).map_err(|source| Error::Io {
        path: file.display().to_string(),
        source,
    })?;
    let store = Store::open(&deployment.storage, data_dir).await?;
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let outcome = settlement::import(&store, deployment, &bytes, &name, Utc::now()).await;
    store.close().await;
    Ok(outcome?)
}

/// `sunshare energy --station ID --month YYYY-MM`.
pub async fn month_text(
    deployment: &Deployment,
    data_dir: &std::path::Path,
    station: &StationId,
    month: YearMonth,
) -> Result<String, Error> {
    let store = Store::open(&deployment.storage, data_dir).await?;
    let text = describe_month(&store, deployment, station, month).await;
    store.close().await;
    text
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
        energy: figures
            .first()
            .map_or(crate::domain::WattHours::ZERO, |f| f.energy),
        basis: EnergyBasis::Metered,
    })
}

/// A station-month as plain text for `sunshare energy`: the figure, its basis, the days with
/// completeness and notes, and the reconciliation when settled.
pub async fn describe_month(
    store: &Store,
    deployment: &Deployment,
    station: &StationId,
    month: YearMonth,
) -> Result<String, Error> {
    use std::fmt::Write as _;
    let s = deployment
        .station(station.as_str())
        .ok_or_else(|| Error::UnknownStation(station.to_string()))?;
    let now = Utc::now();
    let rows = report::months(store, deployment, s, month, month, now).await?;
    let days = report::days(
        store,
        deployment,
        s,
        month.first_day(),
        month
            .next()
            .first_day()
            .pred_opt()
            .unwrap_or(month.first_day()),
        now,
    )
    .await?;
    let mut out = String::new();
    let pct = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    for m in &rows {
        let _ = writeln!(
            out,
            "{} {} {}: {:.3} kWh ({}), metered {:.3} kWh, completeness {}",
            s.id,
            s.name,
            m.month,
            m.energy.kwh(),
            match m.basis {
                EnergyBasis::Settled => "settled",
                EnergyBasis::Metered => "metered, PROVISIONAL until the settlement is imported",
            },
            m.metered.energy.kwh(),
            pct(m.metered.completeness.ratio()),
        );
        let _ = writeln!(
            out,
            "  specific yield {} kWh/kWp, equivalent full-load hours {} h, availability {}",
            m.specific_yield
                .map_or_else(|| "-".to_owned(), |y| format!("{y:.2}")),
            m.full_load_hours
                .map_or_else(|| "-".to_owned(), |y| format!("{y:.1}")),
            pct(m.availability),
        );
        if let Some(r) = &m.reconciliation {
            let _ = writeln!(
                out,
                "  reconciliation: metered {:.3} kWh vs settled {:.3} kWh ({}){}",
                r.metered.kwh(),
                r.settled.kwh(),
                r.difference_pct
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:+.2}%")),
                if r.flagged { " FLAGGED" } else { " ok" }
            );
            for c in &r.causes {
                let _ = writeln!(out, "    - {}", c.explain());
            }
        }
    }
    let _ = writeln!(
        out,
        "  day         kWh       kWh/kWp  complete  PI     notes"
    );
    for d in &days {
        let notes: Vec<&str> = d.figures.notes.iter().map(|n| n.as_str()).collect();
        let _ = writeln!(
            out,
            "  {}  {:>10.3}  {:>6}  {:>8}  {:>5}  {}",
            d.day,
            d.figures.energy.kwh(),
            d.specific_yield
                .map_or_else(|| "-".to_owned(), |y| format!("{y:.2}")),
            pct(d.figures.completeness.ratio()),
            d.performance_index
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.2}")),
            notes.join(" "),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
