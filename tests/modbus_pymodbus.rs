//! The poller against an independent Modbus server (pymodbus), serving registers this test writes.
//!
//! Skips unless SUNSHARE_TEST_PYMODBUS names a python3 that has pymodbus (`pip install pymodbus`);
//! fails if it is set and the server cannot be used.

mod support;

use std::time::Duration;
use sunshare::collect::modbus::{Framing, Tick};
use sunshare::domain::{DeviceId, DeviceState, Metric};
use support::pymodbus::{python, start};
use support::*;

#[tokio::test]
async fn poller_reads_huawei_and_sungrow_registers_from_pymodbus() {
    let Some(python) = python(module_path!()) else {
        return;
    };
    let server = start(
        &python,
        serde_json::json!({"units": {
            "1": {"holding": {
                "30015": [0x4853, 0x3130, 0x3233, 0x3435, 0x3637],
                "32080": [0, 40012, 0xFFFF, 0xFE0C, 998, 5001, 9812, 452, 2500, 0x0200],
                "32106": [0x0002, 0xB5A8],
                "32008": [0x0080, 0, 0]
            }},
            "2": {"input": {
                "5003": [0x5A3C, 0x0001],
                "5030": [22500, 0],
                "5035": [500],
                "5037": [0x8100]
            }}
        }}),
    )
    .await;
    let address = server.address();
    let mut rig = rig(
        address,
        Framing::Tcp,
        vec![
            target("HW", 1, "huawei_sun2000", 60_000, 3_000),
            target("SG", 2, "sungrow_sg", 60_000, 3_000),
        ],
    )
    .await;
    let t = ticks(&mut rig.poller, 2, Duration::from_secs(20)).await;
    assert_eq!(
        t,
        vec![
            Tick::Polled {
                device: DeviceId::new("HW"),
                ok: true
            },
            Tick::Polled {
                device: DeviceId::new("SG"),
                ok: true
            },
        ],
        "{:?}",
        rig.poller.stats()
    );
    while rig.store.store.latest().await.expect("latest").len() < 2 {
        assert!(
            tokio::time::timeout(Duration::from_secs(20), rig.worker.tick())
                .await
                .expect("a sample reaches ingest within 20 s (or was it quarantined?)")
        );
    }
    let latest = rig.store.store.latest().await.expect("latest");
    let hw = latest
        .iter()
        .find(|r| r.device.as_str() == "HW")
        .expect("HW");
    assert_eq!(hw.ac_power_w, Some(40012.0));
    assert_eq!(hw.energy_lifetime_wh, Some(1_775_760.0));
    assert_eq!(hw.state.as_deref(), Some(DeviceState::Producing.as_str()));
    assert_eq!(hw.readings.get(Metric::PowerFactor), Some(0.998));
    assert_eq!(hw.readings.get(Metric::ReactivePowerVar), Some(-500.0));
    assert!(hw
        .readings
        .alarms
        .iter()
        .any(|a| a.code == "huawei.alarm1.b7" && a.grid_loss));
    let sg = latest
        .iter()
        .find(|r| r.device.as_str() == "SG")
        .expect("SG");
    // Sungrow: doc 5031 is wire 5030, low word first; 0x00015A3C kWh lifetime.
    assert_eq!(sg.ac_power_w, Some(22500.0));
    assert_eq!(sg.energy_lifetime_wh, Some(88_636_000.0));
    assert_eq!(sg.state.as_deref(), Some("derated"));
}
