//! The poller against misbehaving devices: exceptions, timeouts, dropped connections, wrong unit
//! ids, truncated and malformed frames, and one dead unit among eight on a gateway.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;
use sunshare::collect::modbus::{self as poll, Framing, Link, Tick};
use sunshare::domain::DeviceId;
use sunshare::sim::inverter::FaultScript;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn polled(device: &str, ok: bool) -> Tick {
    Tick::Polled {
        device: DeviceId::new(device),
        ok,
    }
}

#[tokio::test]
async fn busy_is_retried_with_backoff_and_then_succeeds() {
    let cancel = CancellationToken::new();
    let mut u = unit(1, "solis"); // one block per poll
    u.faults.busy_every = 2;
    let gw = gateway(vec![u], Framing::Tcp, &cancel).await;
    let mut rig = rig(
        gw.local_addr().to_string(),
        Framing::Tcp,
        vec![target("A", 1, "solis", 300, 1_000)],
    )
    .await;
    // Poll 1: request 1 answers. Poll 2: request 2 is busy, retried later as request 3.
    let t = ticks(&mut rig.poller, 3, Duration::from_secs(10)).await;
    assert_eq!(
        t,
        vec![polled("A", true), polled("A", false), polled("A", true)]
    );
    assert_eq!(gw.requests_of(1), 3);
    let s = &rig.poller.stats()[0];
    assert_eq!(
        (s.polls_ok, s.polls_failed),
        (2, 0),
        "a retried poll is not a failure"
    );
    assert!(rig.metrics.render().contains("kind=\"busy\""));
    cancel.cancel();
}

#[tokio::test]
async fn device_failure_gives_up_after_retries_and_opens_the_breaker() {
    let cancel = CancellationToken::new();
    let mut u = unit(1, "solis");
    u.faults.failure_every = 1;
    let gw = gateway(vec![u], Framing::Tcp, &cancel).await;
    let mut rig = rig(
        gw.local_addr().to_string(),
        Framing::Tcp,
        vec![target("A", 1, "solis", 100, 1_000)],
    )
    .await;
    // 3 slots x (1 try + 3 retries) = 12 requests, then the breaker is open.
    let t = ticks(&mut rig.poller, 12, Duration::from_secs(30)).await;
    assert_eq!(t.len(), 12);
    assert!(t.iter().all(|t| *t == polled("A", false)));
    let s = &rig.poller.stats()[0];
    assert_eq!(s.polls_failed, 3);
    assert_eq!(s.link, Link::Open);
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("0x04"),
        "{s:?}"
    );
    // While open, the device is left alone for at least its cooldown.
    let before = gw.requests_of(1);
    let quiet = tokio::time::timeout(Duration::from_millis(60), rig.poller.tick()).await;
    assert!(quiet.is_err(), "no poll during the cooldown");
    assert_eq!(gw.requests_of(1), before);
    // Recovery: the next trial after the cooldown succeeds and closes the breaker.
    gw.set_faults(1, FaultScript::default());
    let t = ticks(&mut rig.poller, 1, Duration::from_secs(5)).await;
    assert_eq!(t, vec![polled("A", true)]);
    assert_eq!(rig.poller.stats()[0].link, Link::Ok);
    cancel.cancel();
}

#[tokio::test]
async fn illegal_address_is_not_retried() {
    let cancel = CancellationToken::new();
    let mut u = unit(1, "solis");
    u.faults.illegal_address_every = 1;
    let gw = gateway(vec![u], Framing::Tcp, &cancel).await;
    let mut rig = rig(
        gw.local_addr().to_string(),
        Framing::Tcp,
        vec![target("A", 1, "solis", 100, 1_000)],
    )
    .await;
    let t = ticks(&mut rig.poller, 1, Duration::from_secs(5)).await;
    assert_eq!(t, vec![polled("A", false)]);
    let s = &rig.poller.stats()[0];
    assert_eq!(s.polls_failed, 1);
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("0x02"),
        "{s:?}"
    );
    assert_eq!(gw.requests_of(1), 1);
    cancel.cancel();
}

#[tokio::test]
async fn silent_unit_times_out() {
    let cancel = CancellationToken::new();
    let mut u = unit(1, "growatt");
    u.faults.silent = true;
    let gw = gateway(vec![u], Framing::Tcp, &cancel).await;
    let mut rig = rig(
        gw.local_addr().to_string(),
        Framing::Tcp,
        vec![target("A", 1, "growatt", 100, 150)],
    )
    .await;
    let started = std::time::Instant::now();
    let t = ticks(&mut rig.poller, 1, Duration::from_secs(5)).await;
    assert_eq!(t, vec![polled("A", false)]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(rig.poller.stats()[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("no answer"));
    cancel.cancel();
}

#[tokio::test]
async fn wrong_unit_id_fails_cleanly_on_both_framings() {
    let cancel = CancellationToken::new();
    // TCP gateway: exception 0x0B from the gateway.
    let gw = gateway(vec![unit(1, "solis")], Framing::Tcp, &cancel).await;
    let map = catalog().get("solis").expect("map");
    let err = poll::probe(
        &map,
        &gw.local_addr().to_string(),
        9,
        Framing::Tcp,
        Duration::from_millis(500),
    )
    .await
    .expect_err("no unit 9");
    assert!(err.to_string().contains("0x0b"), "{err}");
    // RTU line: nobody answers.
    let gw = gateway(vec![unit(1, "solis")], Framing::RtuOverTcp, &cancel).await;
    let err = poll::probe(
        &map,
        &gw.local_addr().to_string(),
        9,
        Framing::RtuOverTcp,
        Duration::from_millis(200),
    )
    .await
    .expect_err("no unit 9");
    assert!(matches!(err, poll::Error::Timeout { unit: 9, .. }), "{err}");
    cancel.cancel();
}

#[tokio::test]
async fn dropped_connection_is_reopened() {
    let cancel = CancellationToken::new();
    let mut u = unit(1, "solis");
    u.faults.drop_every = 2;
    let gw = gateway(vec![u], Framing::Tcp, &cancel).await;
    let mut rig = rig(
        gw.local_addr().to_string(),
        Framing::Tcp,
        vec![target("A", 1, "solis", 100, 1_000)],
    )
    .await;
    let t = ticks(&mut rig.poller, 3, Duration::from_secs(10)).await;
    assert_eq!(
        t,
        vec![polled("A", true), polled("A", false), polled("A", true)]
    );
    assert_eq!(gw.stats().connections.load(Ordering::Relaxed), 2);
    cancel.cancel();
}

/// A fake device that answers every request with `reply(request)` bytes.
async fn fake_device(reply: fn(&[u8]) -> Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 12];
                while s.read_exact(&mut buf).await.is_ok() {
                    let out = reply(&buf);
                    if s.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn truncated_frame_times_out_and_malformed_frame_is_a_transport_error() {
    let map = catalog().get("growatt").expect("map");
    // MBAP says 7 more bytes follow; only 3 arrive.
    let truncated = fake_device(|req| vec![req[0], req[1], 0, 0, 0, 7, req[6], 4, 4, 0]).await;
    let err = poll::probe(
        &map,
        &truncated,
        1,
        Framing::Tcp,
        Duration::from_millis(200),
    )
    .await
    .expect_err("truncated");
    assert!(matches!(err, poll::Error::Timeout { .. }), "{err}");
    // Well-formed MBAP, but the function code does not match the request.
    let malformed =
        fake_device(|req| vec![req[0], req[1], 0, 0, 0, 5, req[6], 0x10, 0, 1, 0]).await;
    let err = poll::probe(
        &map,
        &malformed,
        1,
        Framing::Tcp,
        Duration::from_millis(500),
    )
    .await
    .expect_err("malformed");
    assert!(matches!(err, poll::Error::Transport(_)), "{err}");
    // Fewer registers than asked for.
    let short = fake_device(|req| vec![req[0], req[1], 0, 0, 0, 5, req[6], 4, 2, 0, 1]).await;
    let err = poll::probe(&map, &short, 1, Framing::Tcp, Duration::from_millis(500))
        .await
        .expect_err("short");
    assert!(err.to_string().contains("asked for"), "{err}");
}

#[tokio::test]
async fn one_dead_unit_among_eight_does_not_delay_the_others() {
    let cancel = CancellationToken::new();
    let units = (1..=8)
        .map(|id| {
            let mut u = unit(id, "huawei_sun2000");
            u.faults.silent = id == 5;
            u.faults.latency = Duration::from_millis(2);
            u
        })
        .collect();
    let gw = gateway(units, Framing::Tcp, &cancel).await;
    // Generous slots: the point is that the dead unit's timeouts never push the others a whole
    // slot late, even on a loaded machine.
    let interval = 1_000;
    let targets = (1..=8)
        .map(|id| target(&format!("U{id}"), id, "huawei_sun2000", interval, 100))
        .collect();
    let mut rig = rig(gw.local_addr().to_string(), Framing::Tcp, targets).await;
    let window = Duration::from_millis(8_000);
    run_for(&mut rig.poller, window).await;
    let stats = rig.poller.stats();
    let slots = (window.as_millis() / interval as u128) as u64;
    for s in &stats {
        if s.unit == 5 {
            assert_eq!(s.polls_ok, 0);
            assert_eq!(s.link, Link::Open, "{s:?}");
            // The breaker spaces the dead unit's tries out (growing cooldown), not one per slot.
            assert!(s.polls_failed + 2 <= slots, "{s:?} in {slots} slots");
        } else {
            assert_eq!(s.missed, 0, "{s:?}");
            assert!(s.polls_ok + 1 >= slots, "{s:?} in {slots} slots");
        }
    }
    cancel.cancel();
}

#[tokio::test]
async fn unreachable_gateway_backs_off_instead_of_spinning() {
    // A port with nothing listening: every connect fails at once.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let mut rig = rig(addr, Framing::Tcp, vec![target("A", 1, "solis", 50, 100)]).await;
    let window = Duration::from_millis(2_500);
    let until = tokio::time::Instant::now() + window;
    let mut attempts = 0;
    while tokio::time::Instant::now() < until {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rig.poller.tick()).await {
            Ok(Tick::GatewayDown) => attempts += 1,
            Ok(other) => panic!("{other:?}"),
            Err(_) => break,
        }
    }
    // 1 s backoff capped at the 1 s floor: about 3 attempts, not 50.
    assert!((1..=4).contains(&attempts), "{attempts} connect attempts");
    let s = &rig.poller.stats()[0];
    assert_eq!(s.link, Link::Unreachable);
    assert_eq!(s.missed, 0, "an absent gateway is not a slow poller: {s:?}");
}

#[tokio::test]
async fn sleeping_gateway_refuses_tcp_at_night() {
    let cancel = CancellationToken::new();
    let mut u = unit(1, "sungrow_sg");
    // Midnight at the plant: the dongle is off.
    u.time_shift += chrono::Duration::hours(12);
    u.faults.night = sunshare::sim::inverter::NightMode::NoTcp;
    let gw = gateway(vec![u], Framing::Tcp, &cancel).await;
    let map = catalog().get("sungrow_sg").expect("map");
    let err = poll::probe(
        &map,
        &gw.local_addr().to_string(),
        1,
        Framing::Tcp,
        Duration::from_millis(500),
    )
    .await
    .expect_err("asleep");
    assert!(!matches!(err, poll::Error::Exception { .. }), "{err}");
    assert_eq!(gw.stats().refused.load(Ordering::Relaxed), 1);
    cancel.cancel();
}
