//! The vocabulary of Sunshare: identifiers, physical and money units, the registry of places, stations,
//! devices and households, and the `Sample` every collector produces.
//!
//! Pure data with invariants. This module never does I/O and never knows about JSON or SQL shapes.

mod account;
pub mod date;
mod energy;
mod ids;
mod plan;
mod registry;
mod sample;
mod severity;
mod units;

pub use account::{Account, Role, ScopeEntry};
pub use energy::{BadMonth, EnergyBasis, MonthEnergy, YearMonth};
pub use ids::{CountyId, DeviceId, HouseholdId, JobId, StationId, TariffId, TownshipId, VillageId};
pub use plan::PlanState;
pub use registry::{
    Device, DeviceKind, Household, JobPost, LabourCapacity, OwnerShare, PovertyStatus, Station,
    StationKind, StatusPeriod, Transport,
};
pub use sample::{Alarm, DeviceState, Metric, Readings, Sample};
pub use severity::Severity;
pub use units::{Fen, ParseAmountError, Price, WattHours, Watts};
