//! `app::start` runs the Modbus pollers a deployment declares: simulated gateways in, samples in
//! the store out.

mod support;

use std::sync::Arc;
use std::time::Duration;
use sunshare::collect::modbus::Framing;
use sunshare::config::Deployment;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn deployment_devices_are_polled_into_the_store() {
    let cancel = CancellationToken::new();
    let tcp = gateway(
        vec![unit(1, "huawei_sun2000"), unit(2, "sunspec")],
        Framing::Tcp,
        &cancel,
    )
    .await;
    let rtu = gateway(vec![unit(7, "growatt")], Framing::RtuOverTcp, &cancel).await;
    let text = format!(
        r#"
[collect]
poll_interval = "1s"
modbus_connect_delay = "0s"
modbus_request_gap = "0s"

[[counties]]
id = "C1"
name = "County"
province = "shanxi"

[[townships]]
id = "T1"
name = "Township"
county = "C1"

[[villages]]
code = "V1"
name = "Village"
township = "T1"

[[tariffs]]
id = "TAR"
price = "0.85"
province = "shanxi"

[[stations]]
id = "S1"
name = "Station"
kind = "village"
county = "C1"
village = "V1"
capacity_kwp = 180.0
latitude = 37.87
longitude = 112.55
commissioned = "2019-06-30"
tariff = "TAR"

[[devices]]
id = "S1-HW"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
rated_power_w = 60000.0
transport = {{ type = "modbus_tcp", address = "{tcp}", unit = 1 }}

[[devices]]
id = "S1-SS"
station = "S1"
kind = "inverter"
model = "sunspec"
rated_power_w = 60000.0
transport = {{ type = "modbus_tcp", address = "{tcp}", unit = 2 }}

[[devices]]
id = "S1-GW"
station = "S1"
kind = "inverter"
model = "growatt"
rated_power_w = 60000.0
transport = {{ type = "rtu_over_tcp", address = "{rtu}", unit = 7 }}
"#,
        tcp = tcp.local_addr(),
        rtu = rtu.local_addr()
    );
    let names = catalog().names();
    let deployment =
        Deployment::from_str_with_env("test.toml", &text, &[], &names).expect("deployment");
    let dir = tempfile::tempdir().expect("dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = sunshare::app::start(Arc::new(deployment), dir.path(), listener)
        .await
        .expect("start");
    // Bounded wait: pollers start at a random phase within one interval.
    let mut devices = Vec::new();
    for _ in 0..100 {
        devices = running.store.latest().await.expect("latest");
        if devices.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = devices.iter().map(|d| d.device.as_str()).collect();
    assert_eq!(names, ["S1-GW", "S1-HW", "S1-SS"]);
    assert!(devices
        .iter()
        .all(|d| d.energy_lifetime_wh.unwrap_or(0.0) > 1_000_000.0));
    assert!(running.metrics.render().contains("sunshare_polls_total"));
    running.shutdown().await;
    cancel.cancel();
}
