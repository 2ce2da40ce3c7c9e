//! The audit log as a page for administrators: every state change made through HTTP (allowed or
//! refused), every sign-in and sign-out, every account change, newest first.

use super::extract::Query;
use super::guard::Caller;
use super::page::{esc, layout};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use axum::extract::State;
use axum::response::Html;
use serde::Deserialize;

const DEFAULT_LINES: i64 = 200;
const MAX_LINES: i64 = 5_000;

pub fn routes() -> Routes {
    Routes::new().get("/audit", Access::fleet(Action::ViewAudit), page)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    limit: Option<i64>,
}

async fn page(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Html<String>, ApiError> {
    let limit = match p.limit {
        None => DEFAULT_LINES,
        Some(n) if (1..=MAX_LINES).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(
                "limit",
                format!("{n} is not between 1 and {MAX_LINES}"),
            ))
        }
    };
    let lines = state.store.audit_log(limit).await?;
    let mut rows = String::new();
    for e in &lines {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            esc(&e.actor),
            esc(&e.role),
            esc(&e.origin),
            esc(&e.action),
            esc(&e.target),
            esc(&e.outcome),
        ));
    }
    let body = format!(
        "<h1>审计日志 Audit log</h1><p class=\"muted\">The newest {n} lines: every change made \
         through Sunshare, allowed or refused, with who, when (UTC) and from where. \
         <a href=\"/audit?limit={MAX_LINES}\">more</a></p>\
         <table id=\"audit\"><thead><tr><th>when 时间</th><th>who 用户</th><th>role 角色</th>\
         <th>from 来源</th><th>what 操作</th><th>target 对象</th><th>outcome 结果</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        n = lines.len()
    );
    Ok(Html(layout("审计日志", &body, &caller)))
}
