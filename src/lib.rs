//! Sunshare watches photovoltaic poverty-alleviation stations and turns what they generate into the
//! income of the villages that own them.
//!
//! Data flows one way (see ARCHITECTURE.md):
//!
//! - [`collect`] reads inverters over Modbus and data loggers over MQTT, decoding with [`registers`];
//! - [`ingest`] is the one door into storage: validation, dedupe, quarantine;
//! - [`store`] owns all SQL (SQLite embedded, PostgreSQL shared); [`sinks`] forward to InfluxDB v2;
//! - [`energy`] turns lifetime counters into daily and monthly energy and reconciles with settlements;
//! - [`allocate`] is the pure money core; the ledger in [`store`] records plans and payouts;
//! - [`alerts`] are pure rules with [`solar`] to know night from outage; `alerts::notify` delivers them;
//! - [`http`] serves the JSON API, the HTML pages and `/metrics`; [`sim`] simulates a fleet;
//! - [`accounts`] creates users and API tokens; [`cli`] holds the subcommands' flags and handlers;
//! - [`auth`] decides who may do what where (roles, scopes, credentials); pure;
//! - [`tabular`] reads CSV (UTF-8, GBK, UTF-16) and XLSX tables as people send them; pure;
//! - [`retry`] is the one retry policy (capped backoff with jitter, cancel-aware);
//! - [`cluster`]: several instances on one PostgreSQL database share the gateways and the jobs;
//! - [`app`] wires the components; [`config`] is the deployment file; [`domain`] the vocabulary.
//!
//! The pure part (`domain`, `registers`, `allocate`, `solar`, `tabular`, `config` and the data
//! loggers' payloads) is the `sunshare-core` crate (`crates/core`: no tokio, no sqlx, no axum),
//! re-exported here under the same names.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

// The pages' texts in both languages, compiled in from `locales/` (see `http::i18n`).
rust_i18n::i18n!("locales", fallback = "zh-CN");

pub mod accounts;
pub mod alerts;
pub use sunshare_core::allocate;
pub mod app;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod collect;
pub use sunshare_core::config;
pub use sunshare_core::domain;
pub mod energy;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod metrics;
pub use sunshare_core::registers;
pub mod retry;
pub mod sim;
pub mod sinks;
pub use sunshare_core::solar;
pub mod store;
pub use sunshare_core::tabular;
