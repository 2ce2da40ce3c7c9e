//! The embedded MQTT broker for single-machine deployments and the demo: rumqttd's router behind a
//! listener Sunshare owns.
//!
//! rumqttd binds its own socket and has no shutdown, so it listens on a private loopback port and
//! Sunshare relays each client connection from the public listener to it. Owning the public side
//! gives a bound address even for port 0, and lets Sunshare close every client connection and stop
//! listening (shutdown, or a broker outage in tests) while the router keeps its persistent sessions
//! and queued QoS 1 messages, as a broker with persistence does across a restart.
//!
//! Never used for deployments with an external broker (Mosquitto, EMQX).

use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
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
    inner: SocketAddr,
    /// Cancels the current listener and every relayed connection.
    epoch: CancellationToken,
    tracker: TaskTracker,
    server: tokio::task::JoinHandle<()>,
    /// The accept loop of the current listener.
    accept: Option<tokio::task::JoinHandle<()>>,
}

/// How large a message the embedded broker accepts from a client, in bytes.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

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

impl EmbeddedBroker {
    /// Starts the router and listens on `listen` (port 0 picks a free port; see [`Self::addr`]).
    pub async fn start(listen: SocketAddr, max_payload: usize) -> Result<EmbeddedBroker, Error> {
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
        let settings = ServerSettings {
            name: "sunshare-embedded".into(),
            listen: inner,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 10_000,
                max_payload_size: max_payload.max(1024),
                max_inflight_count: 500,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let mut server = rumqttd::Server::new(settings, router_tx, rumqttd::protocol::v4::V4);
        let tracker = TaskTracker::new();
        let server = tokio::spawn(async move {
            if let Err(error) = server.start(rumqttd::LinkType::Remote).await {
                warn!(?error, "embedded broker stopped");
            }
        });
        // Readiness: a bounded wait for the private listener to accept.
        let mut ready = false;
        for _ in 0..200 {
            if TcpStream::connect(inner).await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !ready {
            server.abort();
            return Err(Error::NotReady(format!("nothing listens on {inner}")));
        }
        let bound = bind(listen).and_then(|l| Ok((l.local_addr()?, l)));
        let (addr, listener) = match bound {
            Ok(b) => b,
            Err(source) => {
                server.abort();
                return Err(Error::Listen {
                    addr: listen,
                    source,
                });
            }
        };
        let mut broker = EmbeddedBroker {
            addr,
            inner,
            epoch: CancellationToken::new(),
            tracker,
            server,
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

    fn serve(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let epoch = self.epoch.clone();
        let inner = self.inner;
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
                tracker.spawn(async move {
                    let _ = client.set_nodelay(true);
                    let upstream =
                        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(inner))
                            .await;
                    let Ok(Ok(upstream)) = upstream else {
                        warn!(%peer, "embedded broker router unreachable");
                        return;
                    };
                    let _ = upstream.set_nodelay(true);
                    let (mut a, mut b) = (client, upstream);
                    tokio::select! {
                        () = epoch.cancelled() => {}
                        r = tokio::io::copy_bidirectional(&mut a, &mut b) => {
                            debug!(%peer, ?r, "mqtt client connection closed");
                        }
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
        self.server.abort();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tracker.wait()).await;
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // rumqttd has no shutdown of its own: stop its listener with ours. Its router thread idles.
        self.epoch.cancel();
        self.server.abort();
    }
}
