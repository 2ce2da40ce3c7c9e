//! Forwarding stored samples to external time-series databases. One sink today: InfluxDB v2 line
//! protocol ([`influx`]) with a bounded disk spool ([`spool`]) so an outage loses nothing.
//!
//! Sinks never decide what is true: they receive only samples ingest has already stored.

pub mod influx;
pub mod spool;
#[doc(hidden)]
pub mod victoria;
