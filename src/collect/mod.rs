//! Collectors: they read devices and hand `Sample`s to the one ingest door. They never write to the
//! store or forward to sinks themselves.
//!
//! - [`modbus`]: one task per gateway connection polling the unit ids behind it.

pub mod modbus;
