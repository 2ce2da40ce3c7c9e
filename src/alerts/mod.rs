//! Sun-aware alerts. [`rules`] decides, purely, which conditions hold for the fleet (offline
//! gateways, lost devices, grid outages, faults, underperformance, frozen data) and turns them into
//! lifecycle events; [`engine`] feeds the rules from the store on a timer, persists alerts and hands
//! events to [`notify`].
//!
//! Must never: raise an alert because the sun went down, or do I/O inside the rules.

pub mod engine;
pub mod notify;
pub mod rules;

pub use crate::config::alerts::{AlertsConfig, MaintenanceWindow, UnderperformingConfig};
pub use engine::{spawn, Engine};
pub use rules::{
    evaluate, AlertKey, AlertKind, Condition, DeviceInput, Evaluation, Event, EventKind,
    LastReading, RulesState, Severity, Snapshot, StationInput,
};

/// What can go wrong around the rules (the rules themselves cannot fail).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("alert store: {0}")]
    Store(#[from] crate::store::Error),
    #[error("notifier setup: {0}")]
    Notify(#[from] notify::Error),
}

#[cfg(test)]
mod tests;
