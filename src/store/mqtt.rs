//! What the MQTT collector could not use: unknown loggers and devices, and refused messages, kept
//! aggregated for operators.

use super::{Result, Store};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Messages from a logger or device the deployment does not declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUnknownRow {
    pub logger: String,
    /// `""` for an unknown logger, else e.g. `unit 7` or `device S9-INV1`.
    pub device_key: String,
    pub topic: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub messages: i64,
    pub last_payload: String,
}

/// Messages refused for one reason on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttRejectedRow {
    pub topic: String,
    pub reason: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub messages: i64,
    pub last_detail: String,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn utc(ms: i64, column: &str) -> Result<DateTime<Utc>> {
    super::stored_time(ms, column)
}

impl Store {
    /// Adds counts to the unknown-device list (one transaction).
    pub async fn record_mqtt_unknown(&self, rows: &[MqttUnknownRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(self.pool()).await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO mqtt_unknown (logger, device_key, topic, first_seen_ms, last_seen_ms, \
                 messages, last_payload) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (logger, device_key) DO UPDATE SET topic = excluded.topic, \
                 messages = mqtt_unknown.messages + excluded.messages, \
                 last_payload = excluded.last_payload, \
                 last_seen_ms = CASE WHEN excluded.last_seen_ms > mqtt_unknown.last_seen_ms \
                     THEN excluded.last_seen_ms ELSE mqtt_unknown.last_seen_ms END",
            )
            .bind(&r.logger)
            .bind(&r.device_key)
            .bind(&r.topic)
            .bind(ms(r.first_seen))
            .bind(ms(r.last_seen))
            .bind(r.messages)
            .bind(&r.last_payload)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds counts to the refused-message list (one transaction).
    pub async fn record_mqtt_rejected(&self, rows: &[MqttRejectedRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(self.pool()).await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO mqtt_rejected (topic, reason, first_seen_ms, last_seen_ms, messages, \
                 last_detail) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (topic, reason) DO UPDATE SET \
                 messages = mqtt_rejected.messages + excluded.messages, \
                 last_detail = excluded.last_detail, \
                 last_seen_ms = CASE WHEN excluded.last_seen_ms > mqtt_rejected.last_seen_ms \
                     THEN excluded.last_seen_ms ELSE mqtt_rejected.last_seen_ms END",
            )
            .bind(&r.topic)
            .bind(&r.reason)
            .bind(ms(r.first_seen))
            .bind(ms(r.last_seen))
            .bind(r.messages)
            .bind(&r.last_detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Unknown loggers and devices, most recently seen first.
    pub async fn mqtt_unknown(&self, limit: i64) -> Result<Vec<MqttUnknownRow>> {
        let rows = sqlx::query(
            "SELECT logger, device_key, topic, first_seen_ms, last_seen_ms, messages, last_payload \
             FROM mqtt_unknown ORDER BY last_seen_ms DESC, logger, device_key LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MqttUnknownRow {
                    logger: r.try_get(0)?,
                    device_key: r.try_get(1)?,
                    topic: r.try_get(2)?,
                    first_seen: utc(r.try_get(3)?, "mqtt_unknown.first_seen_ms")?,
                    last_seen: utc(r.try_get(4)?, "mqtt_unknown.last_seen_ms")?,
                    messages: r.try_get(5)?,
                    last_payload: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Refused messages by topic and reason, most recently seen first.
    pub async fn mqtt_rejected(&self, limit: i64) -> Result<Vec<MqttRejectedRow>> {
        let rows = sqlx::query(
            "SELECT topic, reason, first_seen_ms, last_seen_ms, messages, last_detail \
             FROM mqtt_rejected ORDER BY last_seen_ms DESC, topic, reason LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MqttRejectedRow {
                    topic: r.try_get(0)?,
                    reason: r.try_get(1)?,
                    first_seen: utc(r.try_get(2)?, "mqtt_rejected.first_seen_ms")?,
                    last_seen: utc(r.try_get(3)?, "mqtt_rejected.last_seen_ms")?,
                    messages: r.try_get(4)?,
                    last_detail: r.try_get(5)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn problems_accumulate_on_every_backend() {
        for t in testing::all("store::mqtt::problems_accumulate_on_every_backend")
            .await
            .expect("stores")
        {
            let s = &t.store;
            let t0 = utc(1_700_000_000_000, "t0").expect("time");
            let t1 = utc(1_700_000_060_000, "t1").expect("time");
            let row = MqttUnknownRow {
                logger: "L9".into(),
                device_key: "unit 3".into(),
                topic: "a/L9".into(),
                first_seen: t0,
                last_seen: t0,
                messages: 2,
                last_payload: "{}".into(),
            };
            s.record_mqtt_unknown(std::slice::from_ref(&row))
                .await
                .expect("write");
            let later = MqttUnknownRow {
                last_seen: t1,
                first_seen: t1,
                messages: 5,
                ..row.clone()
            };
            s.record_mqtt_unknown(&[later]).await.expect("write");
            let got = s.mqtt_unknown(10).await.expect("read");
            assert_eq!(got.len(), 1, "{}", t.name);
            assert_eq!(got[0].messages, 7, "{}", t.name);
            assert_eq!(got[0].first_seen, t0, "{}", t.name);
            assert_eq!(got[0].last_seen, t1, "{}", t.name);

            let rej = MqttRejectedRow {
                topic: "a/L1".into(),
                reason: "malformed_json".into(),
                first_seen: t0,
                last_seen: t0,
                messages: 1,
                last_detail: "EOF".into(),
            };
            s.record_mqtt_rejected(&[
                rej.clone(),
                MqttRejectedRow {
                    reason: "oversized".into(),
                    ..rej.clone()
                },
            ])
            .await
            .expect("write");
            s.record_mqtt_rejected(&[MqttRejectedRow {
                last_detail: "trailing".into(),
                last_seen: t1,
                ..rej
            }])
            .await
            .expect("write");
            let got = s.mqtt_rejected(10).await.expect("read");
            assert_eq!(got.len(), 2, "{}", t.name);
            assert_eq!(got[0].reason, "malformed_json", "{}", t.name);
            assert_eq!(got[0].messages, 2, "{}", t.name);
            assert_eq!(got[0].last_detail, "trailing", "{}", t.name);
        }
    }
}
