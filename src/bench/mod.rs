//! `sunshare bench ...`: throughput measurements of the write path and the InfluxDB sink, each
//! reported with a peer measured in the same run so the figures travel between machines.

pub mod http;
pub mod modbus;

use crate::store::bench::{Measured, StoreBench};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Sink(#[from] crate::sinks::influx::Error),
    #[error("{0}")]
    Setup(String),
}

/// One benchmark and its parameters.
#[derive(Debug, Clone)]
pub enum Benchmark {
    /// Modbus polling throughput, CPU, latency and memory against a separate simulator process.
    Modbus(modbus::ModbusOptions),
    /// The store write path (raw + rollups + latest) on SQLite, against peers on the same rows.
    Store(StoreOptions),
    /// The InfluxDB sink into a VictoriaMetrics it starts itself: live path and spool replay,
    /// against a plain HTTP client posting the same line protocol.
    Sink(SinkOptions),
    /// The pages and the stations API under concurrent clients on a large fleet with history,
    /// against a bare SELECT of a station page's rows.
    Http(http::HttpOptions),
}

/// `sunshare bench sink`: how many points, in which batches, from how many devices.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The victoria-metrics binary.
    pub victoria: PathBuf,
    /// Points (full inverter readings) per phase.
    pub points: usize,
    /// Points per write request.
    pub batch: usize,
    /// Devices in the simulated fleet.
    pub devices: usize,
    /// Light points (ac_power_w, energy_lifetime_wh and state) instead of full inverter readings,
    /// to see the per-point cost apart from the per-field cost on the server.
    pub light: bool,
}

/// `sunshare bench store`: how many samples, from how many devices, against which peers.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Full inverter samples to write.
    pub samples: usize,
    /// Devices reporting on a 60 s schedule.
    pub devices: usize,
    /// Samples per write (the ingest worker's batch size).
    pub batch: usize,
    /// Samples given to the row-at-a-time peer (default: all of them, on an equally large table).
    pub peer_samples: Option<usize>,
    /// A python3 interpreter for the sqlite3.executemany peer (skipped when absent).
    pub python: Option<PathBuf>,
    /// Where the benchmark databases go (default: a temporary directory).
    pub dir: Option<PathBuf>,
}

/// Runs one benchmark and returns its report as text.
pub async fn run(cmd: Benchmark) -> Result<String, Error> {
    match cmd {
        Benchmark::Modbus(a) => Ok(modbus::run_modbus(&a)
            .await
            .map_err(|e| Error::Setup(e.to_string()))?
            .to_markdown()),
        Benchmark::Store(a) => {
            let tmp;
            let dir = match a.dir {
                Some(d) => d,
                None => {
                    tmp = TempDir::new("sunshare-bench-store")?;
                    tmp.0.clone()
                }
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Setup(format!("creating {}: {e}", dir.display())))?;
            let b = StoreBench {
                samples: a.samples,
                devices: a.devices,
                batch: a.batch,
                peer_samples: a.peer_samples.unwrap_or(a.samples),
                python: a.python,
                dir,
            };
            let results = crate::store::bench::run(&b).await?;
            Ok(report(
                &format!(
                    "store write path, SQLite: {} samples of {} devices, batches of {}",
                    b.samples, b.devices, b.batch
                ),
                &results,
                "samples/s",
            ))
        }
        Benchmark::Sink(a) => sink(a).await,
        Benchmark::Http(a) => Ok(http::report(&a, &http::run_http(&a).await?)),
    }
}

async fn sink(a: SinkOptions) -> Result<String, Error> {
    use crate::sinks::influx::{self, InfluxSink};
    use crate::sinks::victoria::Victoria;
    use std::sync::Arc;
    use std::time::Instant;

    let setup = |e: &dyn std::fmt::Display| Error::Setup(e.to_string());
    let tmp = TempDir::new("sunshare-bench-sink")?;
    let mut vm = Victoria::start(&a.victoria, &tmp.0.join("vm"))
        .await
        .map_err(|e| setup(&e))?;
    let start = chrono::Utc::now() - chrono::Duration::days(400);
    let mut fleet = crate::store::bench::fleet(a.points * 2, a.devices, start);
    if a.light {
        use crate::domain::Metric;
        for s in &mut fleet {
            s.readings
                .values
                .retain(|(m, _)| matches!(m, Metric::AcPowerW | Metric::EnergyLifetimeWh));
        }
    }
    let (first, second) = fleet.split_at(a.points);
    let tags = std::collections::HashMap::new();
    let cfg = crate::config::InfluxConfig {
        url: vm.url(),
        org: "bench".into(),
        bucket: "bench".into(),
        token: secrecy::SecretString::from("bench"),
        batch_size: a.batch,
        flush_interval: std::time::Duration::from_secs(1),
        spool_max_bytes: 8 << 30,
        spool_full: crate::config::SpoolFull::DropOldest,
        spool_dir: None,
        precision: crate::config::InfluxPrecision::Ms,
        request_timeout: std::time::Duration::from_secs(60),
        shutdown_deadline: std::time::Duration::from_secs(5),
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let spool_dir = tmp.0.join("spool");
    let sink_err = |e: influx::Error| Error::Setup(e.to_string());

    // Peer: the same line protocol posted by a plain HTTP client, no spool, same batch size.
    let mut bodies = Vec::new();
    for chunk in first.chunks(a.batch.max(1)) {
        let mut body = Vec::new();
        influx::encode(chunk, &tags, cfg.precision, &mut body);
        bodies.push(body);
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| setup(&e))?;
    // Warm-up write (one point per device, an hour before the measured ones) so series creation
    // is not billed to whoever goes first.
    let warm: Vec<_> = first
        .iter()
        .take(a.devices)
        .map(|s| {
            let mut w = s.clone();
            w.at -= chrono::Duration::hours(1);
            w
        })
        .collect();
    let mut body = Vec::new();
    influx::encode(&warm, &tags, cfg.precision, &mut body);
    http.post(format!(
        "{}/api/v2/write?org=bench&bucket=bench&precision=ms",
        vm.url()
    ))
    .body(body)
    .send()
    .await
    .map_err(|e| setup(&e))?;
    let t = Instant::now();
    for body in &bodies {
        let r = http
            .post(format!(
                "{}/api/v2/write?org=bench&bucket=bench&precision=ms",
                vm.url()
            ))
            .body(body.clone())
            .send()
            .await
            .map_err(|e| setup(&e))?;
        if !r.status().is_success() {
            return Err(Error::Setup(format!("peer write: HTTP {}", r.status())));
        }
    }
    let peer = Measured {
        name: "peer: plain reqwest POST of the same line protocol (no spool)".into(),
        samples: first.len(),
        elapsed: t.elapsed(),
    };

    // Live: encode, spool, send; the same points again (the server overwrites nothing: VM keeps both,
    // which does not matter for a throughput figure).
    let mut sink =
        InfluxSink::open(&cfg, &spool_dir, tags.clone(), Arc::clone(&metrics)).map_err(sink_err)?;
    let t = Instant::now();
    let mut written = 0;
    for chunk in first.chunks(a.batch.max(1)) {
        sink.push(chunk).map_err(sink_err)?;
        written += drain_sink(&mut sink).await?;
    }
    sink.flush_buffer().map_err(sink_err)?;
    written += drain_sink(&mut sink).await?;
    let live = Measured {
        name: "sunshare sink, server up (encode + spool + write)".into(),
        samples: usize::try_from(written).unwrap_or(0),
        elapsed: t.elapsed(),
    };

    // Outage: everything spools; then the server returns and the spool is replayed.
    vm.stop().await.map_err(|e| setup(&e))?;
    let t = Instant::now();
    for chunk in second.chunks(a.batch.max(1)) {
        sink.push(chunk).map_err(sink_err)?;
    }
    sink.flush_buffer().map_err(sink_err)?;
    let spooled = Measured {
        name: "sunshare sink, server down (encode + spool to disk)".into(),
        samples: usize::try_from(sink.pending_points()).unwrap_or(0),
        elapsed: t.elapsed(),
    };
    drop(sink);
    vm.restart().await.map_err(|e| setup(&e))?;
    let mut sink =
        InfluxSink::open(&cfg, &spool_dir, tags.clone(), Arc::clone(&metrics)).map_err(sink_err)?;
    let t = Instant::now();
    let replayed = drain_sink(&mut sink).await?;
    let replay = Measured {
        name: "sunshare sink, spool replay after restart".into(),
        samples: usize::try_from(replayed).unwrap_or(0),
        elapsed: t.elapsed(),
    };
    let series = vm
        .export("{__name__=\"pv_device_ac_power_w\"}")
        .await
        .map_err(|e| setup(&e))?;
    let stored: usize = series.iter().map(|s| s.timestamps.len()).sum();
    let _ = vm.stop().await;
    let mut out = report(
        &format!(
            "InfluxDB sink into VictoriaMetrics: {} points per phase ({}, {} fields each), batches of {}",
            a.points,
            if a.light { "light points" } else { "full inverter readings" },
            fleet.first().map_or(0, |s| s.readings.values.len() + 3),
            a.batch
        ),
        &[live, peer.clone()],
        "points/s",
    );
    out.push_str(&report("spool replay:", &[replay, peer], "points/s"));
    out.push_str(&report("outage (no peer):", &[spooled], "points/s"));
    let _ = writeln!(
        out,
        "  check: pv_device_ac_power_w samples stored = {stored} (expected {})",
        a.points * 3 + a.devices.min(a.points)
    );
    Ok(out)
}

/// A table of contenders with their rates and the first one's ratio against each peer.
pub fn report(title: &str, results: &[Measured], unit: &str) -> String {
    let mut out = format!("{title}\n");
    let Some(first) = results.first() else {
        return out;
    };
    for m in results {
        let _ = writeln!(
            out,
            "  {:<60} {:>9} in {:>8.3} s = {:>10.0} {unit}",
            m.name,
            m.samples,
            m.elapsed.as_secs_f64(),
            m.per_second()
        );
    }
    for m in &results[1..] {
        let _ = writeln!(
            out,
            "  ratio: {:.2} x {}",
            first.per_second() / m.per_second().max(1e-9),
            m.name
        );
    }
    out
}

/// A directory removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> Result<Self, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Setup(format!("creating {}: {e}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn drain_sink(sink: &mut crate::sinks::influx::InfluxSink) -> Result<u64, Error> {
    use crate::sinks::influx::Delivery;
    let mut written = 0u64;
    while let Some(d) = sink.send_next().await? {
        match d {
            Delivery::Written(n) => written += u64::from(n),
            other => return Err(Error::Setup(format!("a bench write failed: {other:?}"))),
        }
    }
    Ok(written)
}
