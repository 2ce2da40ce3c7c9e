//! `sunshare bench modbus`: polls a separate simulator process through the whole path (poller,
//! decode, ingest, SQLite store) and measures it against a bare tokio-modbus loop (the ceiling) and
//! a small Python asyncio pymodbus poller (the peer, `benches/peers/modbus_peer.py`).
//!
//! A measuring tool, not a test: it prints figures and asserts nothing.

use crate::collect::modbus::{Framing, GatewayPoller, PollObserver, PollTarget};
use crate::domain::DeviceId;
use crate::ingest::{self, DeviceProfile};
use crate::metrics::Metrics;
use crate::registers::{Catalog, Timing};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(String);

fn err(context: &str) -> impl Fn(String) -> BenchError + '_ {
    move |e| BenchError(format!("{context}: {e}"))
}

/// The fleet, schedule and contenders of `sunshare bench modbus`.
#[derive(Debug, Clone)]
pub struct ModbusOptions {
    /// Simulated gateways (one TCP connection each).
    pub gateways: usize,
    /// Unit ids per gateway.
    pub units: u8,
    /// Poll period of every device (small = as fast as the gateway allows).
    pub interval: Duration,
    /// How long Sunshare polls.
    pub duration: Duration,
    /// Latency the simulator adds to every answer, in ms.
    pub latency_ms: u64,
    /// Connections of the bare tokio-modbus loop (0 = skip the ceiling).
    pub ceiling_connections: usize,
    /// Seconds the ceiling and the peer each run.
    pub side_duration: Duration,
    /// Simulator processes sharing the gateways (each gateway costs the simulator two file
    /// descriptors: split large runs across processes to stay under the descriptor limit).
    pub sim_processes: usize,
    /// python3 with pymodbus for the peer (skipped when unset).
    pub peer_python: Option<String>,
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct ModbusBenchReport {
    pub devices: usize,
    pub gateways: usize,
    pub interval: Duration,
    pub latency_ms: u64,
    pub seconds: f64,
    pub polls: u64,
    pub blocks: u64,
    pub cpu_us_per_poll: f64,
    pub cpu_cores: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub missed: u64,
    pub failed: u64,
    pub rss_per_device_bytes: f64,
    pub rss_mib: f64,
    pub stored: i64,
    pub ceiling_reads_per_s: Option<f64>,
    /// CPU of this process per read in the bare loop: the floor of a poll's CPU is this times the
    /// reads per poll.
    pub ceiling_cpu_us_per_read: Option<f64>,
    pub peer: Option<String>,
    pub peer_reads_per_s: Option<f64>,
    pub peer_cpu_us_per_poll: Option<f64>,
}

impl ModbusBenchReport {
    pub fn to_markdown(&self) -> String {
        let s = self.seconds.max(1e-9);
        let mut o = String::new();
        o.push_str(&format!(
            "| figure | value |\n|---|---|\n| devices (gateways x units) | {} ({} x {}) |\n",
            self.devices,
            self.gateways,
            self.devices / self.gateways.max(1)
        ));
        o.push_str(&format!(
            "| schedule / simulator latency | {:?} / {} ms |\n",
            self.interval, self.latency_ms
        ));
        o.push_str(&format!("| polls/s | {:.0} |\n", self.polls as f64 / s));
        o.push_str(&format!(
            "| register-block reads/s | {:.0} |\n",
            self.blocks as f64 / s
        ));
        o.push_str(&format!(
            "| CPU per poll (poll + decode + ingest + SQLite) | {:.1} µs |\n",
            self.cpu_us_per_poll
        ));
        o.push_str(&format!("| CPU used | {:.2} cores |\n", self.cpu_cores));
        o.push_str(&format!(
            "| poll latency p50 / p99 | {:.2} / {:.2} ms |\n",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        ));
        o.push_str(&format!("| missed schedule slots | {} |\n", self.missed));
        o.push_str(&format!("| failed polls | {} |\n", self.failed));
        o.push_str(&format!(
            "| RSS / per device | {:.1} MiB / {:.0} B |\n",
            self.rss_mib, self.rss_per_device_bytes
        ));
        o.push_str(&format!("| samples stored | {} |\n", self.stored));
        match self.ceiling_reads_per_s {
            Some(c) => o.push_str(&format!(
                "| ceiling: bare tokio-modbus reads/s (120 registers) | {c:.0} (Sunshare reads at {:.0} % of it) |\n",
                self.blocks as f64 / s / c * 100.0
            )),
            None => o.push_str("| ceiling | not measured |\n"),
        }
        if let Some(c) = self.ceiling_cpu_us_per_read {
            let per_poll = self.blocks as f64 / (self.polls.max(1) as f64);
            o.push_str(&format!(
                "| ceiling: CPU per bare read / floor of a {per_poll:.0}-read poll | {c:.1} µs / {:.1} µs |\n",
                c * per_poll
            ));
        }
        match (self.peer_reads_per_s, self.peer_cpu_us_per_poll) {
            (Some(r), Some(c)) => o.push_str(&format!(
                "| peer: Python asyncio pymodbus reads/s / CPU per poll | {r:.0} / {c:.0} µs (Sunshare uses {:.1} % of its CPU per poll) |\n",
                self.cpu_us_per_poll / c * 100.0
            )),
            _ => o.push_str(&format!(
                "| peer | {} |\n",
                self.peer.as_deref().unwrap_or("not run (set SUNSHARE_TEST_PYMODBUS=python3)")
            )),
        }
        // What the transport alone costs against the peer: no poller built on the same reads can
        // use a smaller share of the peer's CPU than this.
        if let (Some(c), Some(p)) = (self.ceiling_cpu_us_per_read, self.peer_cpu_us_per_poll) {
            let per_poll = self.blocks as f64 / (self.polls.max(1) as f64);
            o.push_str(&format!(
                "| floor against the peer: the bare loop's reads of one poll | {:.1} % of the peer's CPU per poll (a tenth of it is {:.1} µs) |\n",
                c * per_poll / p * 100.0,
                p / 10.0
            ));
        }
        o
    }
}

/// CPU time of this process (user + system).
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start at index 2 = state.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 (1-based) = 11 and 12 after the state field.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Runs the whole benchmark.
pub async fn run_modbus(args: &ModbusOptions) -> Result<ModbusBenchReport, BenchError> {
    let exe =
        std::env::current_exe().map_err(|e| err("finding the sunshare binary")(e.to_string()))?;
    let processes = args.sim_processes.clamp(1, args.gateways.max(1));
    let mut sims = Vec::with_capacity(processes);
    let mut addresses = Vec::new();
    for p in 0..processes {
        let share = args.gateways / processes + usize::from(p < args.gateways % processes);
        let (child, mut addrs) = start_simulator(&exe, share, args.units, args.latency_ms).await?;
        sims.push(child);
        addresses.append(&mut addrs);
    }

    let mut report = ModbusBenchReport {
        gateways: addresses.len(),
        devices: addresses.len() * usize::from(args.units),
        interval: args.interval,
        latency_ms: args.latency_ms,
        ..Default::default()
    };

    if args.ceiling_connections > 0 {
        let (reads, cpu) =
            ceiling(&addresses, args.ceiling_connections, args.side_duration).await?;
        report.ceiling_reads_per_s = Some(reads);
        report.ceiling_cpu_us_per_read = Some(cpu);
    }
    if let Some(py) = &args.peer_python {
        match peer(py, &addresses, args.units, args.side_duration).await {
            Ok((reads, cpu)) => {
                report.peer_reads_per_s = Some(reads);
                report.peer_cpu_us_per_poll = Some(cpu);
            }
            Err(e) => report.peer = Some(format!("failed: {e}")),
        }
    }

    // The whole path: pollers -> ingest -> SQLite.
    let dir = std::env::temp_dir().join(format!("sunshare-bench-{}", std::process::id()));
    let store = crate::store::Store::open_sqlite(&dir.join("bench.db"))
        .await
        .map_err(|e| err("opening the store")(e.to_string()))?;
    let catalog = Catalog::builtin().map_err(|e| err("register maps")(e.to_string()))?;
    let map = catalog
        .get("huawei_sun2000")
        .ok_or_else(|| BenchError("no huawei map".into()))?;
    let metrics = Arc::new(Metrics::new());
    let mut profiles = HashMap::new();
    let rss_before = rss_bytes();
    let timing = Timing {
        connect_delay: Duration::ZERO,
        request_gap: Duration::ZERO,
        timeout: Duration::from_secs(10),
    };
    let mut per_gateway = Vec::with_capacity(addresses.len());
    for (g, _) in addresses.iter().enumerate() {
        let mut targets = Vec::with_capacity(usize::from(args.units));
        for u in 1..=args.units {
            let device = DeviceId::new(format!("G{g}U{u}"));
            profiles.insert(
                device.clone(),
                DeviceProfile {
                    polled: true,
                    rated_power_w: 60_000.0,
                    timezone: chrono_tz::Asia::Shanghai,
                },
            );
            targets.push(PollTarget {
                device,
                unit: u,
                map: Arc::clone(&map),
                interval: args.interval,
                timing,
            });
        }
        per_gateway.push(targets);
    }
    let (handle, worker) = ingest::channel(4096, store.clone(), profiles, Arc::clone(&metrics));
    let cancel = CancellationToken::new();
    let ingest_task = tokio::spawn(worker.run(cancel.child_token()));
    let observer = Arc::new(PollObserver::default());
    let poll_cancel = cancel.child_token();
    let mut tasks = Vec::with_capacity(addresses.len());
    for (g, targets) in per_gateway.into_iter().enumerate() {
        let phase = args.interval.mul_f64((g as f64 * 0.618_034).fract());
        let poller = GatewayPoller::new(
            addresses[g].clone(),
            Framing::Tcp,
            targets,
            handle.clone(),
            Arc::clone(&metrics),
        )
        .with_phase(phase)
        .with_observer(Arc::clone(&observer));
        tasks.push(tokio::spawn(poller.run(poll_cancel.clone())));
    }
    drop(handle);
    // Warm-up: one full schedule period (connections opened, first polls done), then measure.
    let warm = args
        .interval
        .min(Duration::from_secs(90))
        .max(Duration::from_secs(1));
    tokio::time::sleep(warm).await;
    // The window starts and ends with everything written behind in its tables, so the rollup
    // writes the window caused are billed to it however long the flush interval.
    store
        .settle()
        .await
        .map_err(|e| err("store")(e.to_string()))?;
    let polls0 = observer.polls.load(Ordering::Relaxed);
    let blocks0 = observer.blocks_read.load(Ordering::Relaxed);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    tokio::time::sleep(args.duration).await;
    store
        .settle()
        .await
        .map_err(|e| err("store")(e.to_string()))?;
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu0);
    let rss = rss_bytes();
    report.polls = observer.polls.load(Ordering::Relaxed) - polls0;
    report.blocks = observer.blocks_read.load(Ordering::Relaxed) - blocks0;
    report.seconds = seconds;
    report.cpu_cores = cpu.as_secs_f64() / seconds;
    report.cpu_us_per_poll = cpu.as_secs_f64() * 1e6 / (report.polls.max(1) as f64);
    report.p50 = observer.quantile(0.5);
    report.p99 = observer.quantile(0.99);
    report.rss_mib = rss as f64 / (1024.0 * 1024.0);
    report.rss_per_device_bytes =
        rss.saturating_sub(rss_before) as f64 / (report.devices.max(1) as f64);
    poll_cancel.cancel();
    for t in tasks {
        if let Ok(stats) = t.await {
            for s in stats {
                report.missed += s.missed;
                report.failed += s.polls_failed;
            }
        }
    }
    cancel.cancel();
    let _ = ingest_task.await;
    report.stored = store.raw_count().await.unwrap_or(-1);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    for mut sim in sims {
        let _ = sim.kill().await;
    }
    Ok(report)
}

/// Starts one `sunshare simulate` process and reads the addresses it prints.
async fn start_simulator(
    exe: &std::path::Path,
    gateways: usize,
    units: u8,
    latency_ms: u64,
) -> Result<(tokio::process::Child, Vec<String>), BenchError> {
    let mut sim = tokio::process::Command::new(exe)
        .args([
            "simulate",
            "--gateways",
            &gateways.to_string(),
            "--units",
            &units.to_string(),
            "--model",
            "huawei_sun2000",
            "--noon",
            "--latency-ms",
            &latency_ms.to_string(),
            "--log",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err("starting the simulator process")(e.to_string()))?;
    let stdout = sim
        .stdout
        .take()
        .ok_or_else(|| BenchError("simulator has no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addresses = Vec::new();
    let ready = async {
        while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
            if line == "ready" {
                return Ok(());
            }
            if let Some(addr) = line
                .strip_prefix("gateway ")
                .and_then(|r| r.split(' ').next())
            {
                addresses.push(addr.to_owned());
            }
        }
        Err("simulator exited before it was ready".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(600), ready)
        .await
        .map_err(|_| BenchError("simulator not ready within 600 s".into()))?
        .map_err(err("simulator"))?;
    // Keep draining its stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((sim, addresses))
}

/// A bare tokio-modbus request/response loop: 120 registers per read, one request in flight per
/// connection, no decoding, no storage.
/// Returns (reads/s, CPU µs of this process per read).
async fn ceiling(
    addresses: &[String],
    connections: usize,
    d: Duration,
) -> Result<(f64, f64), BenchError> {
    use tokio_modbus::client::Reader as _;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + d;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let addr: std::net::SocketAddr = addresses[i % addresses.len()]
            .parse()
            .map_err(|e: std::net::AddrParseError| BenchError(e.to_string()))?;
        let count = Arc::clone(&count);
        tasks.push(tokio::spawn(async move {
            let Ok(mut ctx) =
                tokio_modbus::client::tcp::connect_slave(addr, tokio_modbus::Slave(1)).await
            else {
                return;
            };
            while Instant::now() < stop {
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    ctx.read_holding_registers(32000, 120),
                )
                .await
                {
                    Ok(Ok(Ok(_))) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
        }));
    }
    let (t0, cpu0) = (Instant::now(), cpu_time());
    for t in tasks {
        let _ = t.await;
    }
    let reads = count.load(Ordering::Relaxed) as f64;
    let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64() * 1e6 / reads.max(1.0);
    Ok((reads / t0.elapsed().as_secs_f64(), cpu))
}

/// Runs `benches/peers/modbus_peer.py`; returns (reads/s, CPU µs per poll).
async fn peer(
    python: &str,
    addresses: &[String],
    units: u8,
    d: Duration,
) -> Result<(f64, f64), String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/modbus_peer.py");
    let out = tokio::time::timeout(
        d + Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(script)
            .arg("--units")
            .arg(units.to_string())
            .arg("--seconds")
            .arg(d.as_secs_f64().to_string())
            .args(addresses.iter().take(16))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "peer did not finish".to_owned())?
    .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
    let reads = v["reads_per_s"].as_f64().ok_or("peer: no reads_per_s")?;
    let cpu = v["cpu_us_per_poll"]
        .as_f64()
        .ok_or("peer: no cpu_us_per_poll")?;
    Ok((reads, cpu))
}
