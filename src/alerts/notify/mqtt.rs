//! The MQTT alert topic: events published as the generic JSON document, QoS 1, not retained.
//! Singles go to `<topic>/<station>/<kind>`, summaries to `<topic>/summary`.

use super::{Error, Message, SendError};
pub use crate::config::alerts::MqttSinkConfig;
use crate::retry::Backoff;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use secrecy::ExposeSecret;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A connected (or reconnecting) publisher.
#[derive(Debug, Clone)]
pub struct MqttSink {
    client: AsyncClient,
    topic: String,
    connected: Arc<AtomicBool>,
}

impl MqttSink {
    /// Creates the client; the returned future drives the connection (reconnecting with capped
    /// backoff and jitter) until `cancel` fires and must be spawned.
    pub fn start(
        cfg: &MqttSinkConfig,
        cancel: CancellationToken,
    ) -> Result<
        (
            MqttSink,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        Error,
    > {
        let (host, port) = cfg
            .broker
            .rsplit_once(':')
            .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_owned(), p)))
            .ok_or_else(|| Error::BadBroker(cfg.broker.clone()))?;
        let mut options = MqttOptions::new(cfg.client_id.clone(), host, port);
        options.set_keep_alive(Duration::from_secs(30));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            options.set_credentials(user.clone(), pass.expose_secret().to_owned());
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let connected = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&connected);
        let driver = async move {
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            flag.store(true, Ordering::SeqCst);
                            backoff.reset();
                            debug!("alert MQTT connected");
                        }
                        Ok(_) => {}
                        Err(error) => {
                            flag.store(false, Ordering::SeqCst);
                            let wait = backoff.next_delay();
                            warn!(%error, retry_in = ?wait, "alert MQTT connection failed; retrying");
                            if !crate::retry::wait(&cancel, wait).await {
                                break;
                            }
                        }
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        };
        Ok((
            MqttSink {
                client,
                topic: cfg.topic.trim_end_matches('/').to_owned(),
                connected,
            },
            driver,
        ))
    }

    pub fn name(&self) -> String {
        format!("mqtt:{}", self.topic)
    }

    /// The topic a message goes to.
    pub fn topic_for(&self, message: &Message) -> String {
        match message {
            Message::Single(n) => format!(
                "{}/{}/{}",
                self.topic,
                n.event.key.station,
                n.event.key.kind.as_str()
            ),
            Message::Summary(_) => format!("{}/summary", self.topic),
        }
    }

    pub(super) async fn publish(
        &self,
        message: &Message,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<(), SendError> {
        if !self.connected.load(Ordering::SeqCst) {
            return Err(SendError::retriable("broker not connected"));
        }
        let payload = body.to_string();
        let publish =
            self.client
                .publish(self.topic_for(message), QoS::AtLeastOnce, false, payload);
        match tokio::time::timeout(timeout, publish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::retriable(format!("publish failed: {e}"))),
            Err(_) => Err(SendError::retriable("publish timed out")),
        }
    }
}
