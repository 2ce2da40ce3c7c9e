//! Simulated inverters and loggers, weather and fault scripts, for the demo, the tests and benchmarks.
//!
//! Never used by production paths: `app` builds a simulated fleet only for `sunshare demo` and
//! `sunshare simulate`.

pub mod accounts;
pub mod demo;
pub mod fleet;
pub mod history;
pub mod inverter;
pub mod logger;
pub mod modbus;
pub mod settlement;
pub mod weather;
