//! Collectors: they read devices and hand `Sample`s to the one ingest door. They never write to the
//! store or forward to sinks themselves.
//!
//! - [`modbus`]: one task per gateway connection polling the unit ids behind it.
//! - [`mqtt`]: the subscriber for 4G data loggers (JSON telemetry or forwarded register blocks);
//!   [`broker`] is the embedded MQTT broker for single-machine deployments.
//! - [`clock`]: says when the system clock that stamps readings steps.

pub mod broker;
pub mod clock;
pub mod modbus;
pub mod mqtt;
