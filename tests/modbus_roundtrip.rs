//! Simulator -> poller -> ingest -> store, for every register-map family and both framings.

mod support;

use std::time::Duration;
use sunshare::collect::modbus::{Framing, Tick};
use sunshare::domain::DeviceId;
use support::*;
use tokio_util::sync::CancellationToken;

async fn round_trip(map: &str, framing: Framing) {
    let cancel = CancellationToken::new();
    let gw = gateway(vec![unit(3, map)], framing, &cancel).await;
    let device = format!("INV-{map}");
    let mut rig = rig(
        gw.local_addr().to_string(),
        framing,
        vec![target(&device, 3, map, 60_000, 2_000)],
    )
    .await;
    let before = chrono::Utc::now();
    let ticks = ticks(&mut rig.poller, 1, Duration::from_secs(10)).await;
    let after = chrono::Utc::now();
    assert_eq!(
        ticks,
        vec![Tick::Polled {
            device: DeviceId::new(&device),
            ok: true
        }],
        "{map} {framing:?}: {:?}",
        rig.poller.stats()
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(20), rig.worker.tick())
            .await
            .expect("a sample reaches ingest within 20 s (or was it quarantined?)")
    );
    let latest = rig.store.store.latest().await.expect("latest");
    assert_eq!(latest.len(), 1, "{map}");
    let row = &latest[0];
    assert_eq!(row.device.as_str(), device);
    assert!(
        row.at >= before - chrono::Duration::milliseconds(1) && row.at <= after,
        "{map}: stamped when read"
    );
    // The simulated plant is at solar noon: it produces, and its counter is near 1 MWh + a day.
    let power = row.ac_power_w.expect("power");
    assert!(power > 1_000.0 && power <= 50_000.0, "{map}: {power}");
    let lifetime = row.energy_lifetime_wh.expect("lifetime");
    assert!(
        (1_000_000.0..1_400_000.0).contains(&lifetime),
        "{map}: {lifetime}"
    );
    assert!(
        matches!(row.state.as_deref(), Some("producing" | "derated")),
        "{map}: {:?}",
        row.state
    );
    cancel.cancel();
}

#[tokio::test]
async fn huawei_over_tcp() {
    round_trip("huawei_sun2000", Framing::Tcp).await;
}

#[tokio::test]
async fn sungrow_over_tcp() {
    round_trip("sungrow_sg", Framing::Tcp).await;
}

#[tokio::test]
async fn sunspec_discovered_over_tcp() {
    round_trip("sunspec", Framing::Tcp).await;
}

#[tokio::test]
async fn solis_over_rtu() {
    round_trip("solis", Framing::RtuOverTcp).await;
}

#[tokio::test]
async fn growatt_over_rtu() {
    round_trip("growatt", Framing::RtuOverTcp).await;
}

#[tokio::test]
async fn huawei_over_rtu() {
    round_trip("huawei_sun2000", Framing::RtuOverTcp).await;
}

#[tokio::test]
async fn several_units_share_one_connection() {
    let cancel = CancellationToken::new();
    let maps = [
        "huawei_sun2000",
        "sungrow_sg",
        "sunspec",
        "solis",
        "growatt",
    ];
    let units = maps
        .iter()
        .enumerate()
        .map(|(i, m)| unit(i as u8 + 1, m))
        .collect();
    let gw = gateway(units, Framing::Tcp, &cancel).await;
    let targets = maps
        .iter()
        .enumerate()
        .map(|(i, m)| target(&format!("D{i}"), i as u8 + 1, m, 60_000, 2_000))
        .collect();
    let mut rig = rig(gw.local_addr().to_string(), Framing::Tcp, targets).await;
    let ticks = ticks(&mut rig.poller, 5, Duration::from_secs(60)).await;
    assert_eq!(ticks.len(), 5);
    assert!(
        ticks
            .iter()
            .all(|t| matches!(t, Tick::Polled { ok: true, .. })),
        "{ticks:?}"
    );
    assert_eq!(
        gw.stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    while rig.store.store.latest().await.expect("latest").len() < 5 {
        assert!(
            tokio::time::timeout(Duration::from_secs(20), rig.worker.tick())
                .await
                .expect("a sample reaches ingest within 20 s (or was it quarantined?)")
        );
    }
    cancel.cancel();
}
