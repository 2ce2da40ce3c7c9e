//! A simulated Modbus gateway: one listener, several unit ids, Modbus TCP or RTU-over-TCP framing,
//! served with tokio-modbus. Each unit is an [`Inverter`] (register map + plant model + fault
//! script).
//!
//! Used by the demo, the tests and the benchmarks; never by production paths.

use super::inverter::{Answer, Inverter, NightMode, SimUnit};
use crate::registers::{Catalog, RegisterMap};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use crate::collect::modbus::Framing;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unit id {0} appears twice on one gateway")]
    DuplicateUnit(u8),
    #[error("reading the listener address: {0}")]
    Io(#[from] io::Error),
    #[error("register map '{0}' is not in the catalog")]
    UnknownMap(String),
    #[error("register maps: {0}")]
    Maps(#[from] crate::registers::MapError),
}

type Units = Arc<HashMap<u8, Arc<Mutex<Inverter>>>>;

/// Counters a test or benchmark can read.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub refused: AtomicU64,
}

/// A running simulated gateway. Stops when its cancellation token is cancelled.
#[derive(Debug)]
pub struct SimGateway {
    addr: SocketAddr,
    units: Units,
    stats: Arc<GatewayStats>,
    task: tokio::task::JoinHandle<()>,
}

impl SimGateway {
    /// Serves `units` on an already-bound listener until `cancel` fires.
    pub async fn start(
        listener: TcpListener,
        units: Vec<SimUnit>,
        framing: Framing,
        cancel: CancellationToken,
    ) -> Result<SimGateway, SimError> {
        let addr = listener.local_addr()?;
        let mut map = HashMap::new();
        for u in units {
            let id = u.unit;
            // Building the inverter integrates its counter once: do it off the async threads.
            let inv = tokio::task::spawn_blocking(move || {
                let mut inv = Inverter::new(u);
                let _ = inv.answer_warm();
                inv
            })
            .await
            .map_err(|e| SimError::Io(io::Error::other(e)))?;
            if map.insert(id, Arc::new(Mutex::new(inv))).is_some() {
                return Err(SimError::DuplicateUnit(id));
            }
        }
        let units: Units = Arc::new(map);
        let stats = Arc::new(GatewayStats::default());
        let task = tokio::spawn(serve(
            listener,
            Arc::clone(&units),
            framing,
            Arc::clone(&stats),
            cancel,
        ));
        Ok(SimGateway {
            addr,
            units,
            stats,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    /// Requests a unit has seen (answered or not).
    pub fn requests_of(&self, unit: u8) -> u64 {
        self.units
            .get(&unit)
            .and_then(|u| u.lock().ok().map(|i| i.requests()))
            .unwrap_or(0)
    }

    /// Changes a unit's fault script while running.
    pub fn set_faults(&self, unit: u8, faults: super::inverter::FaultScript) {
        if let Some(u) = self.units.get(&unit) {
            if let Ok(mut inv) = u.lock() {
                inv.spec.faults = faults;
            }
        }
    }

    /// Waits until the server task has stopped (after cancellation).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

impl Inverter {
    /// Fills the caches so the first request is as fast as the others.
    fn answer_warm(&mut self) -> Option<()> {
        let plan = self.spec.map.plan().first().copied()?;
        let saved = self.spec.faults.clone();
        self.spec.faults = Default::default();
        let _ = self.answer(plan.function.code(), plan.start, plan.count);
        self.spec.faults = saved;
        self.reset_requests();
        Some(())
    }
}

/// Whether every unit that switches its TCP off at night is asleep now (and there is one).
fn gateway_asleep(units: &Units) -> bool {
    let mut any = false;
    for u in units.values() {
        let Ok(mut inv) = u.lock() else { continue };
        if inv.spec.faults.night != NightMode::NoTcp {
            return false;
        }
        any = true;
        if !inv.asleep() {
            return false;
        }
    }
    any
}

async fn serve(
    listener: TcpListener,
    units: Units,
    framing: Framing,
    stats: Arc<GatewayStats>,
    cancel: CancellationToken,
) {
    let on_connected = |stream: TcpStream, peer: SocketAddr| {
        let units = Arc::clone(&units);
        let stats = Arc::clone(&stats);
        async move {
            if gateway_asleep(&units) {
                // The dongle is off: the connection goes nowhere.
                stats.refused.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "simulated gateway asleep; closing connection");
                return Ok(None);
            }
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let kill = Arc::new(AtomicBool::new(false));
            let service = GatewayService {
                units,
                stats,
                kill: Arc::clone(&kill),
                framing,
            };
            Ok(Some((
                service,
                Killable {
                    inner: stream,
                    kill,
                },
            )))
        }
    };
    let on_error = |error: io::Error| debug!(%error, "simulated gateway connection ended");
    let result = match framing {
        Framing::Tcp => {
            tokio_modbus::server::tcp::Server::new(listener)
                .serve_until(&on_connected, on_error, cancel.cancelled_owned())
                .await
        }
        Framing::RtuOverTcp => {
            tokio_modbus::server::rtu_over_tcp::Server::new(listener)
                .serve_until(&on_connected, on_error, cancel.cancelled_owned())
                .await
        }
    };
    if let Err(error) = result {
        warn!(%error, "simulated gateway stopped");
    }
}

/// Builds the response variant that matches the request's function code.
type WrapWords = fn(Vec<u16>) -> Response;

struct GatewayService {
    units: Units,
    stats: Arc<GatewayStats>,
    kill: Arc<AtomicBool>,
    framing: Framing,
}

impl tokio_modbus::server::Service for GatewayService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = BoxFuture<'static, Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let unit = self.units.get(&req.slave).cloned();
        let kill = Arc::clone(&self.kill);
        let framing = self.framing;
        let asleep = gateway_asleep(&self.units);
        Box::pin(async move {
            if asleep {
                kill.store(true, Ordering::SeqCst);
                return Ok(None);
            }
            let Some(unit) = unit else {
                // A TCP gateway says the target did not answer; a serial line just stays quiet.
                return match framing {
                    Framing::Tcp => Err(ExceptionCode::GatewayTargetDevice),
                    Framing::RtuOverTcp => Ok(None),
                };
            };
            let (function, start, count, wrap): (u8, u16, u16, WrapWords) = match req.request {
                Request::ReadHoldingRegisters(a, n) => (3, a, n, Response::ReadHoldingRegisters),
                Request::ReadInputRegisters(a, n) => (4, a, n, Response::ReadInputRegisters),
                _ => return Err(ExceptionCode::IllegalFunction),
            };
            let (answer, latency) = match unit.lock() {
                Ok(mut inv) => (inv.answer(function, start, count), inv.spec.faults.latency),
                Err(_) => return Err(ExceptionCode::ServerDeviceFailure),
            };
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            match answer {
                Answer::Words(w) => Ok(Some(wrap(w))),
                Answer::Exception(code) => Err(ExceptionCode::new(code)),
                Answer::Silence => Ok(None),
                Answer::Drop => {
                    kill.store(true, Ordering::SeqCst);
                    Ok(Some(wrap(Vec::new())))
                }
            }
        })
    }
}

/// A stream that fails once its connection is told to drop, so the server closes it.
struct Killable {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl AsyncRead for Killable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Killable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The simulated gateways `sunshare simulate` serves.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Number of gateways (one TCP listener each).
    pub gateways: usize,
    /// Unit ids per gateway (1..=N).
    pub units: u8,
    /// Register map of every unit, or `mixed` to cycle through the built-in families.
    pub model: String,
    /// Serve RTU-over-TCP framing instead of Modbus TCP.
    pub rtu: bool,
    /// Host to listen on; ports are chosen by the system unless `base_port` is given.
    pub host: String,
    /// First port (gateway n listens on base + n); 0 = any free port.
    pub base_port: u16,
    /// Latency added to every answer, in milliseconds.
    pub latency_ms: u64,
    /// Shift each plant's clock to its solar noon, so it produces whatever the hour.
    pub noon: bool,
}

/// A started gateway as `sunshare simulate` reports it.
#[derive(Debug)]
pub struct Started {
    pub gateway: SimGateway,
    pub units: Vec<(u8, String)>,
}

/// Starts the gateways `sunshare simulate` describes.
pub async fn start_fleet(
    args: &FleetSpec,
    catalog: &Catalog,
    cancel: &CancellationToken,
) -> Result<Vec<Started>, SimError> {
    let families = [
        "huawei_sun2000",
        "sungrow_sg",
        "sunspec",
        "solis",
        "growatt",
    ];
    let mut out = Vec::with_capacity(args.gateways);
    for g in 0..args.gateways {
        let port = if args.base_port == 0 {
            0
        } else {
            args.base_port
                .saturating_add(u16::try_from(g).unwrap_or(u16::MAX))
        };
        let listener = TcpListener::bind((args.host.as_str(), port)).await?;
        let mut units = Vec::new();
        let mut names = Vec::new();
        for u in 1..=args.units {
            let name = if args.model == "mixed" {
                families[(g + usize::from(u)) % families.len()].to_owned()
            } else {
                args.model.clone()
            };
            let map: Arc<RegisterMap> = catalog
                .get(&name)
                .ok_or_else(|| SimError::UnknownMap(name.clone()))?;
            let (lat, lon) = (36.0 + (g % 7) as f64, 105.0 + (g % 13) as f64);
            let station = format!("SIM-G{g}");
            let mut plant = super::inverter::quick_plant(&station, 50_000.0, lat, lon);
            plant.device_seed = super::weather::seed_of(&format!("{station}-U{u}"));
            units.push(SimUnit {
                unit: u,
                map,
                plant,
                serial: format!("SIM{g:05}{u:03}"),
                model_name: sample_model_name(&name),
                faults: super::inverter::FaultScript {
                    latency: std::time::Duration::from_millis(args.latency_ms),
                    ..Default::default()
                },
                time_shift: if args.noon {
                    super::inverter::shift_to_noon(lon)
                } else {
                    chrono::Duration::zero()
                },
            });
            names.push((u, name));
        }
        let framing = if args.rtu {
            Framing::RtuOverTcp
        } else {
            Framing::Tcp
        };
        let gateway = SimGateway::start(listener, units, framing, cancel.child_token()).await?;
        out.push(Started {
            gateway,
            units: names,
        });
    }
    Ok(out)
}

/// A plausible model string for a family (Sungrow reports a numeric device type).
pub fn sample_model_name(map: &str) -> String {
    match map {
        "huawei_sun2000" => "SUN2000-50KTL-M3".into(),
        "sungrow_sg" => "0x2C10".into(),
        "sunspec" => "SIM-SunSpec-50K".into(),
        other => format!("SIM-{other}"),
    }
}
