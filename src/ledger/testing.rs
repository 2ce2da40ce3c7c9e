//! Test support: an energy source with one figure for every station and month, so a ledger test
//! states the energy it allocates instead of writing a history of samples.

use super::{EnergySource, Error};
use crate::domain::{EnergyBasis, MonthEnergy, StationId, WattHours, YearMonth};

#[derive(Debug, Clone, Copy)]
pub struct FixedEnergy {
    pub energy: WattHours,
    pub basis: EnergyBasis,
}

impl FixedEnergy {
    /// `wh` a month, provisional (Sunshare's own meter).
    pub fn metered(wh: i64) -> FixedEnergy {
        FixedEnergy {
            energy: WattHours(wh),
            basis: EnergyBasis::Metered,
        }
    }

    /// `wh` a month, as the grid company settled it.
    pub fn settled(wh: i64) -> FixedEnergy {
        FixedEnergy {
            energy: WattHours(wh),
            basis: EnergyBasis::Settled,
        }
    }
}

#[async_trait::async_trait]
impl EnergySource for FixedEnergy {
    async fn month_energy(
        &self,
        station: &StationId,
        month: YearMonth,
    ) -> Result<MonthEnergy, Error> {
        Ok(MonthEnergy {
            station: station.clone(),
            month,
            energy: self.energy,
            basis: self.basis,
        })
    }
}
