//! Message payloads: a generic JSON document, and the markdown messages of the DingTalk and WeCom
//! group robots (the formats those services define).

use super::{AlertNotice, Format, SendError};
use crate::alerts::EventKind;
use base64::Engine as _;
use chrono::SecondsFormat;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What one delivery carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Single(AlertNotice),
    /// Many events folded into one message.
    Summary(Vec<AlertNotice>),
}

impl Message {
    pub fn kind_label(&self) -> &'static str {
        match self {
            Message::Single(_) => "single",
            Message::Summary(_) => "summary",
        }
    }
}

/// At most this many alerts are listed in a summary; the rest are counted.
pub const SUMMARY_LIST: usize = 20;

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn event_word(k: EventKind) -> &'static str {
    match k {
        EventKind::Opened => "opened",
        EventKind::Resolved => "resolved",
    }
}

/// The generic JSON object of one alert event.
pub fn alert_json(n: &AlertNotice) -> Value {
    let e = &n.event;
    json!({
        "id": n.id,
        "event": event_word(e.kind),
        "kind": e.key.kind.as_str(),
        "severity": e.severity.as_str(),
        "station": e.key.station.as_str(),
        "station_name": n.station_name,
        "county": e.county.as_str(),
        "subject": e.key.subject,
        "message": e.message,
        "since": ts(e.since),
        "at": ts(e.at),
    })
}

fn summary_counts(
    list: &[AlertNotice],
) -> (
    usize,
    usize,
    BTreeMap<String, usize>,
    BTreeMap<String, usize>,
) {
    let opened = list
        .iter()
        .filter(|n| n.event.kind == EventKind::Opened)
        .count();
    let mut by_kind = BTreeMap::new();
    let mut by_county = BTreeMap::new();
    for n in list {
        *by_kind
            .entry(n.event.key.kind.as_str().to_owned())
            .or_insert(0) += 1;
        *by_county
            .entry(n.event.county.as_str().to_owned())
            .or_insert(0) += 1;
    }
    (opened, list.len() - opened, by_kind, by_county)
}

fn line(n: &AlertNotice) -> String {
    let e = &n.event;
    format!(
        "[{}] {} {} · {} ({}){}: {}",
        e.severity.as_str().to_uppercase(),
        e.key.kind.label(),
        event_word(e.kind),
        n.station_name,
        e.key.station,
        if e.key.subject.is_empty() {
            String::new()
        } else {
            format!(" {}", e.key.subject)
        },
        e.message
    )
}

fn markdown(message: &Message, keyword: Option<&str>, link: Option<&str>) -> (String, String) {
    let mut text = String::new();
    if let Some(k) = keyword {
        text.push_str(k);
        text.push(' ');
    }
    let title = match message {
        Message::Single(n) => {
            let e = &n.event;
            let title = format!(
                "[{}] {} {} · {}",
                e.severity.as_str().to_uppercase(),
                e.key.kind.label(),
                event_word(e.kind),
                n.station_name
            );
            text.push_str(&format!("### {title}\n\n"));
            text.push_str(&format!(
                "- station 电站: {} ({})\n- county 县: {}\n",
                n.station_name, e.key.station, e.county
            ));
            if !e.key.subject.is_empty() {
                text.push_str(&format!("- subject 对象: {}\n", e.key.subject));
            }
            text.push_str(&format!(
                "- since 开始: {} UTC\n- alert id: {}\n\n{}\n",
                e.since.format("%Y-%m-%d %H:%M"),
                n.id,
                e.message
            ));
            title
        }
        Message::Summary(list) => {
            let (opened, resolved, by_kind, by_county) = summary_counts(list);
            let title = format!("Sunshare: {opened} alert(s) opened, {resolved} resolved");
            text.push_str(&format!("### {title}\n\n"));
            let kinds: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let counties: Vec<String> = by_county.iter().map(|(k, v)| format!("{k} {v}")).collect();
            text.push_str(&format!(
                "- by kind 类型: {}\n- by county 县: {}\n\n",
                kinds.join(", "),
                counties.join(", ")
            ));
            for n in list.iter().take(SUMMARY_LIST) {
                text.push_str(&format!("- {}\n", line(n)));
            }
            if list.len() > SUMMARY_LIST {
                text.push_str(&format!("- ... and {} more\n", list.len() - SUMMARY_LIST));
            }
            title
        }
    };
    if let Some(base) = link {
        text.push_str(&format!(
            "\n[alerts page 告警页面]({}/alerts)\n",
            base.trim_end_matches('/')
        ));
    }
    (title, text)
}

/// The body to send for `message` in `format`.
pub fn render(
    format: Format,
    message: &Message,
    keyword: &Option<String>,
    link: Option<&str>,
) -> Value {
    match format {
        Format::Json => match message {
            Message::Single(n) => json!({ "type": "alert", "alert": alert_json(n) }),
            Message::Summary(list) => {
                let (opened, resolved, by_kind, by_county) = summary_counts(list);
                json!({
                    "type": "summary",
                    "opened": opened,
                    "resolved": resolved,
                    "by_kind": by_kind,
                    "by_county": by_county,
                    "alerts": list.iter().take(SUMMARY_LIST).map(alert_json).collect::<Vec<_>>(),
                    "omitted": list.len().saturating_sub(SUMMARY_LIST),
                })
            }
        },
        Format::Dingtalk => {
            let (title, text) = markdown(message, keyword.as_deref(), link);
            json!({ "msgtype": "markdown", "markdown": { "title": title, "text": text } })
        }
        Format::Wecom => {
            let (_, text) = markdown(message, keyword.as_deref(), link);
            // WeCom caps markdown content at 4096 bytes.
            let mut content = text;
            if content.len() > 4000 {
                let mut cut = 4000;
                while !content.is_char_boundary(cut) {
                    cut -= 1;
                }
                content.truncate(cut);
                content.push_str("\n...");
            }
            json!({ "msgtype": "markdown", "markdown": { "content": content } })
        }
    }
}

/// DingTalk's "sign" security setting: HMAC-SHA256 of `timestamp\nsecret`, base64, in the query.
pub fn dingtalk_signed_url(base: &str, secret: &str, timestamp_ms: i64) -> Result<String, String> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| "the DingTalk secret is not usable as an HMAC key".to_owned())?;
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let mut url =
        reqwest::Url::parse(base).map_err(|_| "the webhook URL does not parse".to_owned())?;
    url.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign);
    Ok(url.into())
}

/// DingTalk and WeCom answer HTTP 200 with `{"errcode": N, "errmsg": "..."}`; only 0 is success.
pub fn check_robot_reply(body: &str) -> Result<(), SendError> {
    #[derive(Deserialize)]
    struct Reply {
        errcode: i64,
        #[serde(default)]
        errmsg: String,
    }
    let Ok(reply) = serde_json::from_str::<Reply>(body) else {
        return Err(SendError::fatal(format!(
            "unexpected robot reply: {}",
            body.chars().take(200).collect::<String>()
        )));
    };
    match reply.errcode {
        0 => Ok(()),
        // Sent too fast (DingTalk 130101, WeCom 45009) or system busy (-1): try again later.
        130_101 | 45_009 | -1 => Err(SendError::retriable(format!(
            "robot busy: {} {}",
            reply.errcode, reply.errmsg
        ))),
        code => Err(SendError::fatal(format!(
            "robot refused the message: {code} {}",
            reply.errmsg
        ))),
    }
}
