//! The embedded MQTT broker for single-machine deployments and the demo: rumqttd's router behind a
//! listener Sunshare owns.
//!
//! rumqttd binds its own socket and has no shutdown, so it listens on a private loopback port and
//! Sunshare relays each client connection from the public listener to it. Owning the public side
//! gives a bound address even for port 0, and lets Sunshare close every client connection and stop
//! listening (shutdown, or a broker outage in tests) while the router keeps its persistent sessions
//! and queued QoS 1 messages, as a broker with persistence does across a restart.
//!
//! The relay also guards rumqttd's client listener. That listener keeps a table of last-will
//! handlers behind a mutex, and one stale entry (left by a connection the router refused, for
//! example a client id with `/` in it) makes the next connection with the same id panic while
//! holding it; from then on every new connection dies before its CONNACK. So the relay:
//! - reads each client's CONNECT itself and answers what rumqttd would drop without a word (a
//!   client id rumqttd refuses, a protocol level other than 3.1.1) with a CONNACK refusal;
//! - keeps the private side of a connection open until rumqttd has answered the CONNECT, even when
//!   the client has already gone, so that rumqttd never fails half-way through accepting it;
//! - treats a private connection closed before any answer to a well-formed CONNECT as a wedged
//!   listener: it starts a fresh rumqttd listener on a new private port, for the same router (so
//!   sessions and queued messages stay), and replays the client's bytes to it.
//!
//! Never used for deployments with an external broker (Mosquitto, EMQX).

use rumqttc::{ConnAck, ConnectReturnCode, Packet, Protocol};
use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::bytes::BytesMut;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("embedded broker cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker did not become ready: {0}")]
    NotReady(String),
}

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    upstream: Arc<Upstream>,
    /// Cancels the current listener and every relayed connection.
    epoch: CancellationToken,
    tracker: TaskTracker,
    /// The accept loop of the current listener.
    accept: Option<JoinHandle<()>>,
}

/// How large a message the embedded broker accepts from a client, in bytes.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// How long a client has to send its CONNECT, and rumqttd to answer it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times one client connection may find the private listener wedged before it is closed.
const MAX_ATTEMPTS: u32 = 3;

/// Characters rumqttd's router refuses in a client id (it drops such a connection silently).
const REFUSED_IN_CLIENT_ID: &[char] = &['+', '$', '#', '/'];

fn free_loopback_port() -> Result<SocketAddr, std::io::Error> {
    // rumqttd binds by address only, so pick a free port for it; it is reachable from loopback only.
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Rebinding the same port right after closing it (resume) must not wait for TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Starts a rumqttd client listener on a private loopback port for the router.
type Launch = dyn Fn(SocketAddr) -> JoinHandle<()> + Send + Sync;

/// The current rumqttd client listener.
struct Listener {
    generation: u64,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// rumqttd's side: one router for the broker's lifetime, and a client listener that can be
/// replaced.
struct Upstream {
    launch: Box<Launch>,
    current: Mutex<Listener>,
    /// Serialises replacements, so that clients that find the same listener wedged replace it once.
    replacing: tokio::sync::Mutex<()>,
    replaced: AtomicU64,
    max_payload: usize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        f.debug_struct("Upstream")
            .field("generation", &current.0)
            .field("addr", &current.1)
            .field("replaced", &self.replaced.load(Ordering::Relaxed))
            .finish()
    }
}

/// Waits, bounded, until something accepts on `addr`.
async fn wait_listening(addr: SocketAddr) -> Result<(), Error> {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(Error::NotReady(format!("nothing listens on {addr}")))
}

impl Upstream {
    fn current(&self) -> (u64, SocketAddr) {
        let l = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (l.generation, l.addr)
    }

    /// Replaces the listener of generation `seen` (unless another client already did).
    async fn replace(&self, seen: u64) -> Result<(), Error> {
        let _one_at_a_time = self.replacing.lock().await;
        if self.current().0 != seen {
            return Ok(());
        }
        let addr = free_loopback_port().map_err(|source| Error::Listen {
            addr: ([127, 0, 0, 1], 0).into(),
            source,
        })?;
        let task = (self.launch)(addr);
        if let Err(e) = wait_listening(addr).await {
            task.abort();
            return Err(e);
        }
        let old = {
            let mut l = self.current.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(
                &mut *l,
                Listener {
                    generation: seen + 1,
                    addr,
                    task,
                },
            )
        };
        old.task.abort();
        self.replaced.fetch_add(1, Ordering::Relaxed);
        warn!(
            old = %old.addr,
            new = %addr,
            "embedded broker: rumqttd's client listener stopped answering CONNECTs; replaced it \
             (sessions and queued messages kept)"
        );
        Ok(())
    }

    fn stop(&self) {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .task
            .abort();
    }
}

impl EmbeddedBroker {
    /// Starts the router and listens on `listen` (port 0 picks a free port; see [`Self::addr`]).
    pub async fn start(listen: SocketAddr, max_payload: usize) -> Result<EmbeddedBroker, Error> {
        let max_payload = max_payload.max(1024);
        let inner = free_loopback_port().map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
        let router = rumqttd::Router::new(
            0,
            RouterConfig {
                max_connections: 10_000,
                max_outgoing_packet_count: 200,
                max_segment_size: 4 << 20,
                max_segment_count: 16,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: rumqttd::Strategy::default(),
            },
        );
        let router_tx = router.spawn();
        let launch = move |listen: SocketAddr| {
            let settings = ServerSettings {
                name: "sunshare-embedded".into(),
                listen,
                tls: None,
                next_connection_delay_ms: 0,
                connections: ConnectionSettings {
                    connection_timeout_ms: CONNECT_TIMEOUT.as_millis() as u16,
                    max_payload_size: max_payload,
                    max_inflight_count: 500,
                    auth: None,
                    external_auth: None,
                    dynamic_filters: true,
                },
            };
            let mut server =
                rumqttd::Server::new(settings, router_tx.clone(), rumqttd::protocol::v4::V4);
            tokio::spawn(async move {
                if let Err(error) = server.start(rumqttd::LinkType::Remote).await {
                    warn!(?error, "embedded broker listener stopped");
                }
            })
        };
        let task = launch(inner);
        if let Err(e) = wait_listening(inner).await {
            task.abort();
            return Err(e);
        }
        let upstream = Arc::new(Upstream {
            launch: Box::new(launch),
            current: Mutex::new(Listener {
                generation: 0,
                addr: inner,
                task,
            }),
            replacing: tokio::sync::Mutex::new(()),
            replaced: AtomicU64::new(0),
            max_payload,
        });
        let bound = bind(listen).and_then(|l| Ok((l.local_addr()?, l)));
        let (addr, listener) = match bound {
            Ok(b) => b,
            Err(source) => {
                upstream.stop();
                return Err(Error::Listen {
                    addr: listen,
                    source,
                });
            }
        };
        let mut broker = EmbeddedBroker {
            addr,
            upstream,
            epoch: CancellationToken::new(),
            tracker: TaskTracker::new(),
            accept: None,
        };
        broker.accept = Some(broker.serve(listener));
        info!(%addr, "embedded mqtt broker listening");
        Ok(broker)
    }

    /// The address loggers and the collector connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many times rumqttd's client listener stopped answering and was replaced.
    pub fn listener_replacements(&self) -> u64 {
        self.upstream.replaced.load(Ordering::Relaxed)
    }

    /// rumqttd's private listener, bypassing the relay: only for tests that must reach rumqttd
    /// directly.
    #[doc(hidden)]
    pub fn private_addr(&self) -> SocketAddr {
        self.upstream.current().1
    }

    fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let epoch = self.epoch.clone();
        let upstream = Arc::clone(&self.upstream);
        let tracker = self.tracker.clone();
        self.tracker.spawn(async move {
            loop {
                let (client, peer) = tokio::select! {
                    () = epoch.cancelled() => break,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(error) => {
                            warn!(%error, "embedded broker accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let epoch = epoch.clone();
                let upstream = Arc::clone(&upstream);
                tracker.spawn(async move {
                    tokio::select! {
                        () = epoch.cancelled() => {}
                        closed = relay(client, &upstream) => match closed {
                            Closed::Broker(why) => {
                                warn!(%peer, %why, "embedded broker could not serve a client")
                            }
                            Closed::Client(why) => debug!(%peer, why, "mqtt client left"),
                            Closed::Refused(code) => debug!(%peer, ?code, "mqtt client refused"),
                            Closed::Done(r) => debug!(%peer, ?r, "mqtt client connection closed"),
                        },
                    }
                });
            }
        })
    }

    /// Closes every client connection and stops listening: to clients the broker is gone. Sessions
    /// and queued messages stay in the router.
    pub async fn pause(&mut self) {
        self.epoch.cancel();
        self.epoch = CancellationToken::new();
        // The listener is closed once its accept loop has ended.
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    /// Listens again on the same address after [`Self::pause`].
    pub fn resume(&mut self) -> Result<(), Error> {
        let listener = bind(self.addr).map_err(|source| Error::Listen {
            addr: self.addr,
            source,
        })?;
        self.accept = Some(self.serve(listener));
        Ok(())
    }

    /// Stops listening and closes every connection.
    pub async fn shutdown(self) {
        self.epoch.cancel();
        self.upstream.stop();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tracker.wait()).await;
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // rumqttd has no shutdown of its own: stop its listener with ours. Its router thread idles.
        self.epoch.cancel();
        self.upstream.stop();
    }
}

/// Why a relayed connection ended.
#[derive(Debug)]
enum Closed {
    /// The client went away or broke the protocol before or after its CONNECT.
    Client(&'static str),
    /// The connection was refused with a CONNACK return code.
    Refused(ConnectReturnCode),
    /// rumqttd's side could not be reached, or kept closing without an answer.
    Broker(String),
    /// Both sides talked, then one closed.
    Done(std::io::Result<(u64, u64)>),
}

/// Reads the client's first packet, which must be a CONNECT; returns every byte read.
async fn read_connect(
    client: &mut TcpStream,
    max_payload: usize,
) -> Result<(BytesMut, rumqttc::Connect), Closed> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max_payload) {
            Ok(_) => {
                let mut frame = buf.clone();
                return match Packet::read(&mut frame, max_payload) {
                    Ok(Packet::Connect(c)) => Ok((buf, c)),
                    Ok(_) => Err(Closed::Client("first packet is not CONNECT")),
                    Err(
                        rumqttc::mqttbytes::Error::InvalidProtocol
                        | rumqttc::mqttbytes::Error::InvalidProtocolLevel(_),
                    ) => Err(Closed::Refused(ConnectReturnCode::RefusedProtocolVersion)),
                    Err(_) => Err(Closed::Client("malformed CONNECT")),
                };
            }
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                match tokio::time::timeout(CONNECT_TIMEOUT, client.read_buf(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Err(Closed::Client("gone before CONNECT")),
                    Ok(Ok(_)) => {}
                    Err(_) => return Err(Closed::Client("no CONNECT in time")),
                }
            }
            Err(_) => return Err(Closed::Client("malformed first packet")),
        }
    }
}

/// Relays one client connection to rumqttd's listener (see the module comment).
async fn relay(mut client: TcpStream, upstream: &Upstream) -> Closed {
    let _ = client.set_nodelay(true);
    let (mut sent, connect) = match read_connect(&mut client, upstream.max_payload).await {
        Ok(c) => c,
        Err(Closed::Refused(code)) => return refuse(&mut client, code).await,
        Err(other) => return other,
    };
    if connect.protocol != Protocol::V4 {
        return refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
    }
    if connect.client_id.contains(REFUSED_IN_CLIENT_ID) {
        warn!(
            client_id = %connect.client_id,
            "embedded broker refuses a client id with one of + $ # /"
        );
        return refuse(&mut client, ConnectReturnCode::BadClientId).await;
    }
    let mut answer = vec![0u8; 4096];
    let mut more = vec![0u8; 4096];
    for _ in 0..MAX_ATTEMPTS {
        let (generation, addr) = upstream.current();
        let connected =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await;
        let mut up = match connected {
            Ok(Ok(up)) => up,
            _ => {
                if let Err(e) = upstream.replace(generation).await {
                    return Closed::Broker(e.to_string());
                }
                continue;
            }
        };
        let _ = up.set_nodelay(true);
        if up.write_all(&sent).await.is_err() {
            if let Err(e) = upstream.replace(generation).await {
                return Closed::Broker(e.to_string());
            }
            continue;
        }
        // Until rumqttd answers, keep what the client sends, to replay it if rumqttd never does.
        let answered = loop {
            tokio::select! {
                r = up.read(&mut answer) => match r {
                    Ok(n) if n > 0 => break Some(n),
                    _ => break None,
                },
                r = client.read(&mut more) => match r {
                    Ok(n) if n > 0 => {
                        // MQTT lets a client send before its CONNACK, but not without bound.
                        if sent.len() + n > 2 * upstream.max_payload {
                            return Closed::Client("too much sent before CONNACK");
                        }
                        sent.extend_from_slice(&more[..n]);
                        if up.write_all(&more[..n]).await.is_err() {
                            break None;
                        }
                    }
                    _ => {
                        // The client left before rumqttd answered: let rumqttd finish accepting
                        // the connection (bounded), so that it never fails half-way.
                        let _ = tokio::time::timeout(CONNECT_TIMEOUT, up.read(&mut answer)).await;
                        return Closed::Client("gone before CONNACK");
                    }
                },
            }
        };
        match answered {
            Some(n) => {
                if client.write_all(&answer[..n]).await.is_err() {
                    return Closed::Client("gone at CONNACK");
                }
                drop((answer, more, sent));
                return Closed::Done(tokio::io::copy_bidirectional(&mut client, &mut up).await);
            }
            None => {
                if let Err(e) = upstream.replace(generation).await {
                    return Closed::Broker(e.to_string());
                }
            }
        }
    }
    Closed::Broker(format!(
        "rumqttd closed {MAX_ATTEMPTS} connections in a row without answering"
    ))
}

/// Answers a CONNECT with a refusal and closes.
async fn refuse(client: &mut TcpStream, code: ConnectReturnCode) -> Closed {
    let mut ack = BytesMut::with_capacity(4);
    if ConnAck::new(code, false).write(&mut ack).is_ok() {
        let _ = client.write_all(&ack).await;
        let _ = client.shutdown().await;
    }
    Closed::Refused(code)
}
