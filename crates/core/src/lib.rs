//! The pure core of Sunshare: the vocabulary ([`domain`]), inverter register maps and their
//! decoding ([`registers`]), the money core ([`allocate`]), the sun ([`solar`]), tables as people
//! send them ([`tabular`]), the deployment file ([`config`]), what data loggers publish
//! ([`logger`]) and the grid company's settlement statements ([`settlement`]).
//!
//! No tokio, no sqlx, no axum: everything here is a function of its inputs, so it can be tested,
//! fuzzed and reasoned about alone. The service crate (`sunshare`) re-exports these modules under
//! the same names and does all I/O.
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

pub mod allocate;
pub mod config;
pub mod domain;
pub mod logger;
pub mod registers;
pub mod settlement;
pub mod solar;
pub mod tabular;
