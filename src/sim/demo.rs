//! Starts the demo fleet's simulated Modbus gateways on loopback, points the deployment at them, and
//! plays the demo's fault script (the outage station's gateway goes silent for a while).

use super::fleet::{DemoFleet, OUTAGE_STATION};
use super::inverter::{FaultScript, NightMode, SimUnit};
use super::modbus::{Framing, SimError, SimGateway};
use crate::domain::Transport;
use crate::registers::Catalog;
use chrono::Duration as ChronoDuration;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// When the live outage starts after the demo starts, and how long it lasts.
pub const OUTAGE_AFTER: Duration = Duration::from_secs(120);
pub const OUTAGE_FOR: Duration = Duration::from_secs(15 * 60);

/// One simulated gateway serving the units behind a placeholder address.
#[derive(Debug)]
pub struct Gateway {
    pub placeholder: String,
    pub gateway: Arc<SimGateway>,
    /// Unit ids served, with their normal fault script.
    pub units: Vec<(u8, FaultScript)>,
    cancel: CancellationToken,
}

impl Gateway {
    pub fn address(&self) -> std::net::SocketAddr {
        self.gateway.local_addr()
    }

    /// Stops serving; the listener closes as soon as the server task sees the cancellation.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

/// How each family behaves at night, as the real devices do.
fn night_mode(model: &str) -> NightMode {
    match model {
        "sungrow_sg" => NightMode::NoTcp,
        "solis" => NightMode::Silent,
        _ => NightMode::Standby,
    }
}

/// Starts one simulated gateway per placeholder address and rewrites the fleet to use them.
pub async fn start_gateways(
    fleet: &mut DemoFleet,
    catalog: &Catalog,
) -> Result<Vec<Gateway>, SimError> {
    let mut out = Vec::new();
    let placeholders: Vec<_> = fleet.gateways.keys().cloned().collect();
    for placeholder in placeholders {
        let mut units = Vec::new();
        let mut framing = Framing::Tcp;
        for dev in fleet
            .deployment
            .devices
            .iter()
            .filter(|d| d.transport.gateway() == Some(placeholder.as_str()))
        {
            let unit = match &dev.transport {
                Transport::ModbusTcp { unit, .. } => *unit,
                Transport::RtuOverTcp { unit, .. } => {
                    framing = Framing::RtuOverTcp;
                    *unit
                }
                Transport::Mqtt { .. } => continue,
            };
            let map = catalog
                .get(&dev.model)
                .ok_or_else(|| SimError::UnknownMap(dev.model.clone()))?;
            let Some(plant) = fleet.plants.get(&dev.id).cloned() else {
                continue;
            };
            units.push(SimUnit {
                unit,
                map,
                plant,
                serial: format!("SIM{}", dev.id.as_str().replace('-', "")),
                model_name: dev.model.to_uppercase(),
                faults: FaultScript {
                    night: night_mode(&dev.model),
                    ..FaultScript::default()
                },
                time_shift: ChronoDuration::zero(),
            });
        }
        let normal: Vec<_> = units.iter().map(|u| (u.unit, u.faults.clone())).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let cancel = CancellationToken::new();
        let gateway = SimGateway::start(listener, units, framing, cancel.clone()).await?;
        let real = gateway.local_addr().to_string();
        fleet.rewrite_gateway(&placeholder, &real);
        info!(gateway = %placeholder, address = %real, "simulated gateway listening");
        out.push(Gateway {
            placeholder,
            gateway: Arc::new(gateway),
            units: normal,
            cancel,
        });
    }
    Ok(out)
}

/// The live part of the demo's fault script: the gateway stops answering [`OUTAGE_AFTER`] the
/// start, for [`OUTAGE_FOR`], then recovers. Returns early when `cancel` fires.
pub async fn play_outage(
    gateway: Arc<SimGateway>,
    units: Vec<(u8, FaultScript)>,
    cancel: CancellationToken,
) {
    let wait = |d| {
        let cancel = cancel.clone();
        async move {
            tokio::select! {
                () = cancel.cancelled() => false,
                () = tokio::time::sleep(d) => true,
            }
        }
    };
    if !wait(OUTAGE_AFTER).await {
        return;
    }
    info!(
        station = OUTAGE_STATION,
        minutes = OUTAGE_FOR.as_secs() / 60,
        "demo script: gateway goes silent"
    );
    for (unit, normal) in &units {
        gateway.set_faults(
            *unit,
            FaultScript {
                silent: true,
                ..normal.clone()
            },
        );
    }
    wait(OUTAGE_FOR).await;
    for (unit, normal) in &units {
        gateway.set_faults(*unit, normal.clone());
    }
    info!(
        station = OUTAGE_STATION,
        "demo script: gateway answers again"
    );
}
