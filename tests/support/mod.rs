//! Shared support code for the integration tests: simulated units, pollers wired to a fresh SQLite
//! store and bounded waits (the Modbus tests), the real binary as a child process (`binary`: the
//! crash tests' start, kill, stop and on-disk checks) and the pymodbus server (`pymodbus`).
#![allow(dead_code)]

pub mod binary;
pub mod pymodbus;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use sunshare::collect::modbus::{Framing, GatewayPoller, PollTarget, Tick};
use sunshare::domain::DeviceId;
use sunshare::ingest::{self, DeviceProfile, IngestWorker};
use sunshare::metrics::Metrics;
use sunshare::registers::{Catalog, Timing};
use sunshare::sim::inverter::{quick_plant, shift_to_noon, FaultScript, SimUnit};
use sunshare::sim::modbus::SimGateway;
use sunshare::store::testing::TestStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const LON: f64 = 112.55;

/// A loopback port free now (bound and released: the service binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `sunshare serve` as a child process, killed if the test ends before it was stopped.
pub struct Served(pub std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn catalog() -> Catalog {
    Catalog::builtin().expect("built-in maps")
}

/// A unit producing at solar noon whatever the hour.
pub fn unit(id: u8, map: &str) -> SimUnit {
    let mut plant = quick_plant("TEST-ST", 50_000.0, 37.87, LON);
    plant.device_seed = sunshare::sim::weather::seed_of(&format!("TEST-U{id}"));
    SimUnit {
        unit: id,
        map: catalog().get(map).expect("map"),
        plant,
        serial: format!("SN{id:04}"),
        model_name: sunshare::sim::modbus::sample_model_name(map),
        faults: FaultScript::default(),
        time_shift: shift_to_noon(LON),
    }
}

pub async fn gateway(
    units: Vec<SimUnit>,
    framing: Framing,
    cancel: &CancellationToken,
) -> SimGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    SimGateway::start(listener, units, framing, cancel.child_token())
        .await
        .expect("gateway")
}

pub fn fast_timing(timeout_ms: u64) -> Timing {
    Timing {
        connect_delay: Duration::ZERO,
        request_gap: Duration::ZERO,
        timeout: Duration::from_millis(timeout_ms),
    }
}

pub fn target(device: &str, unit: u8, map: &str, interval_ms: u64, timeout_ms: u64) -> PollTarget {
    PollTarget {
        device: DeviceId::new(device),
        unit,
        map: catalog().get(map).expect("map"),
        interval: Duration::from_millis(interval_ms),
        timing: fast_timing(timeout_ms),
    }
}

pub struct Rig {
    pub store: TestStore,
    pub worker: IngestWorker,
    pub metrics: Arc<Metrics>,
    pub poller: GatewayPoller,
}

/// A poller for `targets` at `address`, feeding a fresh SQLite store through ingest.
pub async fn rig(address: String, framing: Framing, targets: Vec<PollTarget>) -> Rig {
    let store = sunshare::store::testing::sqlite().await.expect("store");
    let metrics = Arc::new(Metrics::new());
    let profiles: HashMap<DeviceId, DeviceProfile> = targets
        .iter()
        .map(|t| {
            (
                t.device.clone(),
                DeviceProfile {
                    polled: true,
                    rated_power_w: 50_000.0,
                    timezone: chrono_tz::Asia::Shanghai,
                },
            )
        })
        .collect();
    let (handle, worker) =
        ingest::channel(1024, store.store.clone(), profiles, Arc::clone(&metrics));
    let poller = GatewayPoller::new(address, framing, targets, handle, Arc::clone(&metrics));
    Rig {
        store,
        worker,
        metrics,
        poller,
    }
}

/// Ticks until `n` polls have completed (bounded by a deadline).
pub async fn ticks(poller: &mut GatewayPoller, n: usize, deadline: Duration) -> Vec<Tick> {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + deadline;
    while out.len() < n {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, poller.tick()).await {
            Ok(t) => out.push(t),
            Err(_) => break,
        }
    }
    out
}

/// Ticks for a fixed wall-clock window.
pub async fn run_for(poller: &mut GatewayPoller, window: Duration) {
    let until = tokio::time::Instant::now() + window;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        if tokio::time::timeout(left, poller.tick()).await.is_err() {
            break;
        }
    }
}
