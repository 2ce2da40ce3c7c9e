//! The audit log as a page for administrators: every state change made through HTTP (allowed or
//! refused), every sign-in and sign-out, every account change, newest first.

use super::extract::Query;
use super::guard::Caller;
use super::i18n::{tr, trf};
use super::page::frame;
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use axum::extract::State;
use axum::response::Html;
use maud::html;
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
    let lang = caller.lang;
    let body = html! {
        h1 { (tr(lang, "audit.title")) }
        p.muted { (trf(lang, "audit.intro", &[("count", &lines.len())])) " "
            a href=(format!("/audit?limit={MAX_LINES}")) { (tr(lang, "audit.more")) } }
        table #audit {
            thead { tr {
                th { (tr(lang, "audit.col_when")) } th { (tr(lang, "audit.col_who")) }
                th { (tr(lang, "audit.col_role")) } th { (tr(lang, "audit.col_from")) }
                th { (tr(lang, "audit.col_what")) } th { (tr(lang, "audit.col_target")) }
                th { (tr(lang, "audit.col_outcome")) }
            } }
            tbody { @for e in &lines {
                tr {
                    td { (e.at.with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m-%d %H:%M:%S")) }
                    td { (e.actor) } td { (e.role) } td { (e.origin) }
                    td { (e.action) } td { (e.target) } td { (e.outcome) }
                }
            } }
        }
    };
    Ok(Html(
        frame(&caller, &tr(lang, "audit.title"), body).into_string(),
    ))
}
