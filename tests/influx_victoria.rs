//! The InfluxDB sink against a real line-protocol server (VictoriaMetrics), started by the test on a
//! free port. Skips unless SUNSHARE_TEST_VICTORIA names the binary.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use sunshare::config::{InfluxConfig, InfluxPrecision, SpoolFull};
use sunshare::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use sunshare::metrics::Metrics;
use sunshare::sinks::influx::{Delivery, DeviceTags, InfluxSink};
use sunshare::sinks::victoria::{self, Victoria};
use tokio_util::sync::CancellationToken;

fn config(url: &str) -> InfluxConfig {
    InfluxConfig {
        url: url.to_owned(),
        org: "county".into(),
        bucket: "pv".into(),
        token: SecretString::from("test-token"),
        batch_size: 100,
        flush_interval: Duration::from_millis(50),
        spool_max_bytes: 1 << 30,
        spool_full: SpoolFull::DropOldest,
        spool_dir: None,
        precision: InfluxPrecision::Ms,
        request_timeout: Duration::from_secs(5),
        shutdown_deadline: Duration::from_secs(5),
    }
}

fn tags(prefix: &str, devices: usize) -> HashMap<DeviceId, DeviceTags> {
    (0..devices)
        .map(|d| {
            (
                DeviceId::new(format!("{prefix}-{d}")),
                DeviceTags {
                    station: "st-1".into(),
                    village: Some("v-1".into()),
                    county: "c-1".into(),
                    model: "huawei_sun2000".into(),
                    kind: "inverter",
                },
            )
        })
        .collect()
}

/// Batch `i` of a fleet of `devices`: one sample per device, one minute apart per batch.
fn batch(prefix: &str, devices: usize, i: i64, base: DateTime<Utc>) -> Vec<Sample> {
    (0..devices)
        .map(|d| {
            let mut r = Readings::default();
            r.set(Metric::AcPowerW, 1_000.0 + i as f64);
            r.set(Metric::EnergyLifetimeWh, 5e6 + 20.0 * i as f64);
            r.set(Metric::FrequencyHz, 50.0);
            r.state = Some(DeviceState::Producing);
            Sample {
                device: DeviceId::new(format!("{prefix}-{d}")),
                at: base + ChronoDuration::minutes(i),
                readings: r,
            }
        })
        .collect()
}

/// Timestamps per device of `pv_device_ac_power_w` for devices named `prefix-*`.
async fn delivered(v: &Victoria, prefix: &str) -> anyhow::Result<BTreeMap<String, Vec<i64>>> {
    let series = v
        .export(&format!(
            "{{__name__=\"pv_device_ac_power_w\",device=~\"{prefix}-.*\"}}"
        ))
        .await?;
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in series {
        let dev = s.metric.get("device").cloned().unwrap_or_default();
        out.entry(dev).or_default().extend(s.timestamps);
    }
    for ts in out.values_mut() {
        ts.sort_unstable();
    }
    Ok(out)
}

fn expected(
    prefix: &str,
    devices: usize,
    batches: i64,
    base: DateTime<Utc>,
) -> BTreeMap<String, Vec<i64>> {
    (0..devices)
        .map(|d| {
            (
                format!("{prefix}-{d}"),
                (0..batches)
                    .map(|i| (base + ChronoDuration::minutes(i)).timestamp_millis())
                    .collect(),
            )
        })
        .collect()
}

/// Polls until the server holds `want` (bounded: 60 s), then checks nothing more arrives.
async fn assert_exactly_once(
    v: &Victoria,
    prefix: &str,
    want: &BTreeMap<String, Vec<i64>>,
) -> anyhow::Result<()> {
    let mut got = BTreeMap::new();
    for _ in 0..120 {
        got = delivered(v, prefix).await?;
        let n: usize = got.values().map(Vec::len).sum();
        let m: usize = want.values().map(Vec::len).sum();
        if n >= m {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(&got, want, "every point exactly once");
    Ok(())
}

fn base_time() -> DateTime<Utc> {
    // Recent, whole minutes, distinct per run.
    let now = Utc::now() - ChronoDuration::days(2);
    DateTime::from_timestamp(now.timestamp() / 60 * 60, 0).unwrap_or(now)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        Utc::now().timestamp_nanos_opt().unwrap_or(0) % 1_000_000_000
    )
}

#[tokio::test]
async fn points_read_back_with_their_tags_and_fields() -> anyhow::Result<()> {
    let Some(bin) = victoria::binary_for_test("points_read_back_with_their_tags_and_fields") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let v = Victoria::start(&bin, &dir.path().join("vm")).await?;
    let prefix = unique("tags");
    let metrics = Arc::new(Metrics::new());
    let mut sink = InfluxSink::open(
        &config(&v.url()),
        &dir.path().join("spool"),
        tags(&prefix, 3),
        Arc::clone(&metrics),
    )?;
    let base = base_time();
    for i in 0..5 {
        sink.push(&batch(&prefix, 3, i, base))?;
    }
    sink.flush_buffer()?;
    while let Some(d) = sink.send_next().await? {
        assert!(matches!(d, Delivery::Written(_)), "{d:?}");
    }
    assert_exactly_once(&v, &prefix, &expected(&prefix, 3, 5, base)).await?;
    let state = v
        .export(&format!(
            "{{__name__=\"pv_device_state_code\",device=\"{prefix}-0\"}}"
        ))
        .await?;
    assert_eq!(state.len(), 1);
    let labels = &state[0].metric;
    for (k, want) in [
        ("station", "st-1"),
        ("village", "v-1"),
        ("county", "c-1"),
        ("model", "huawei_sun2000"),
        ("kind", "inverter"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(want), "tag {k}");
    }
    assert!(
        state[0].values.iter().all(|v| *v == 1.0),
        "state_code producing = 1"
    );
    assert_eq!(metrics.sink_points_written.get(), 15);
    Ok(())
}

#[tokio::test]
async fn an_outage_mid_stream_loses_nothing_and_duplicates_nothing() -> anyhow::Result<()> {
    let Some(bin) =
        victoria::binary_for_test("an_outage_mid_stream_loses_nothing_and_duplicates_nothing")
    else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut v = Victoria::start(&bin, &dir.path().join("vm")).await?;
    let prefix = unique("outage");
    let devices = 20;
    let batches = 60;
    let metrics = Arc::new(Metrics::new());
    let mut cfg = config(&v.url());
    cfg.request_timeout = Duration::from_secs(2);
    let sink = InfluxSink::open(
        &cfg,
        &dir.path().join("spool"),
        tags(&prefix, devices),
        Arc::clone(&metrics),
    )?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sink.run(rx, cancel.clone()));
    let base = base_time();
    for i in 0..batches {
        if i == 20 {
            v.stop().await?;
        }
        if i == 40 {
            // The sink must have spooled while the server was away.
            assert!(
                metrics.sink_points_spooled.get() > 0,
                "points were spooled during the outage"
            );
            assert_eq!(
                metrics.sink_server_up.get(),
                0,
                "the sink noticed the outage"
            );
            assert!(
                metrics
                    .render()
                    .contains("sunshare_sink_write_errors_total{kind=\"retriable\"}"),
                "failed writes were counted as retriable"
            );
            v.restart().await?;
        }
        tx.send(batch(&prefix, devices, i, base)).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = (devices as i64 * batches) as u64;
    // Bounded wait for the spool to drain (backoff is capped at 30 s).
    for _ in 0..240 {
        if metrics.sink_points_written.get() >= total && metrics.sink_points_spooled.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(tx);
    cancel.cancel();
    task.await?;
    assert_eq!(metrics.sink_points_dropped.get(), 0);
    assert!(metrics.sink_points_written.get() >= total);
    assert_exactly_once(&v, &prefix, &expected(&prefix, devices, batches, base)).await?;
    Ok(())
}

#[tokio::test]
async fn a_sink_restarted_mid_spool_loses_nothing_and_duplicates_nothing() -> anyhow::Result<()> {
    let Some(bin) = victoria::binary_for_test(
        "a_sink_restarted_mid_spool_loses_nothing_and_duplicates_nothing",
    ) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let spool_dir = dir.path().join("spool");
    let mut v = Victoria::start(&bin, &dir.path().join("vm")).await?;
    let prefix = unique("restart");
    let devices = 10;
    let batches = 30;
    let base = base_time();
    v.stop().await?;
    {
        let mut sink = InfluxSink::open(
            &config(&v.url()),
            &spool_dir,
            tags(&prefix, devices),
            Arc::new(Metrics::new()),
        )?;
        for i in 0..batches {
            sink.push(&batch(&prefix, devices, i, base))?;
        }
        sink.flush_buffer()?;
        // The server is down: the first attempt fails and the batch stays.
        let d = sink.send_next().await?;
        assert!(matches!(d, Some(Delivery::Failed(_))), "{d:?}");
        assert_eq!(sink.pending_points(), (devices as i64 * batches) as u64);
        v.restart().await?;
        for _ in 0..2 {
            let d = sink.send_next().await?;
            assert!(matches!(d, Some(Delivery::Written(_))), "{d:?}");
        }
        // Dropped here, mid-spool.
    }
    let metrics = Arc::new(Metrics::new());
    let mut sink = InfluxSink::open(
        &config(&v.url()),
        &spool_dir,
        tags(&prefix, devices),
        Arc::clone(&metrics),
    )?;
    assert_eq!(
        sink.pending_points(),
        (devices as i64 * batches - 200) as u64
    );
    while let Some(d) = sink.send_next().await? {
        assert!(matches!(d, Delivery::Written(_)), "{d:?}");
    }
    assert_exactly_once(&v, &prefix, &expected(&prefix, devices, batches, base)).await?;
    let _ = Path::new(&spool_dir);
    Ok(())
}
