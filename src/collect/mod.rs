//! Collection: the Modbus poller and the MQTT subscriber turn what devices say into `Sample`s and hand
//! them to ingest. Collectors never write to the store themselves.

pub mod broker;
pub mod mqtt;
