//! Village ledger over HTTP: the villages list, a village's monthly statement, the printable public
//! notice (公示), exports, the month API and plan transitions.
//!
//! The public notice is public and masks personal data (张*三, no ids or accounts); whoever may
//! see the village's personal data (its accountant, its township) gets the full version. Each plan
//! transition is decided by `auth::decide` for the exact step.

use super::extract::{Json, Path, Query};
use super::guard::Caller;
use super::page::{esc, layout};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::allocate::PlanState;
use crate::auth::{decide, Action, Decision};
use crate::domain::{Fen, VillageId, YearMonth};
use crate::ledger;
use crate::ledger::export::{self, payee_label, Audience};
use crate::store::VillageMonthRow;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub fn routes() -> Routes {
    let ledger = Access::village(Action::ViewLedger, "code");
    Routes::new()
        .get("/villages", Access::fleet(Action::ViewFleet), villages_page)
        .get("/villages/{code}", ledger, village_page)
        .heavy()
        .get(
            "/villages/{code}/notice/{month}",
            Access::PUBLIC,
            notice_page,
        )
        .get(
            "/villages/{code}/months/{month}/{file}",
            ledger,
            export_file,
        )
        .get("/api/villages/{code}/months/{month}", ledger, month_json)
        .get("/api/villages/{code}/plans/{year}", ledger, plan_json)
        .post(
            "/api/villages/{code}/plans/{year}/transitions",
            Access::village(Action::WorkOnPlans, "code"),
            plan_transition,
        )
}

impl From<ledger::Error> for ApiError {
    fn from(e: ledger::Error) -> Self {
        match e {
            ledger::Error::Locked(_) | ledger::Error::Workflow(_) | ledger::Error::Gap { .. } => {
                ApiError::Conflict(e.to_string())
            }
            ledger::Error::NotFound(m) => ApiError::NotFound(m),
            ledger::Error::Allocate(_) => ApiError::Unprocessable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The full version for whoever may see the village's personal data; masked for everyone else.
fn audience(state: &AppState, caller: &Caller, village: &str) -> Audience {
    if state
        .geography
        .may_on_village(caller.who(), Action::ViewPersonalData, village)
    {
        Audience::Authorised
    } else {
        Audience::Public
    }
}

fn parse_month(s: &str) -> Result<YearMonth, ApiError> {
    s.parse()
        .map_err(|e: crate::domain::BadMonth| ApiError::invalid("month", e.to_string()))
}

fn village_name(state: &AppState, code: &str) -> Result<String, ApiError> {
    state
        .deployment
        .villages
        .iter()
        .find(|v| v.code.as_str() == code)
        .map(|v| v.name.clone())
        .ok_or_else(|| ApiError::NotFound(format!("village {code} is not declared")))
}

async fn load_month(
    state: &AppState,
    code: &str,
    month: &str,
) -> Result<VillageMonthRow, ApiError> {
    village_name(state, code)?;
    let month = parse_month(month)?.to_string();
    state
        .store
        .village_month(code, &month)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{month} of village {code} has not been allocated yet"
            ))
        })
}

fn yuan(fen: i64) -> String {
    Fen(fen).to_string()
}

fn status_badge(provisional: bool, month_status: &str) -> String {
    let (css, label) = if provisional {
        ("partial", "provisional 暂估 (metered energy)")
    } else {
        ("producing", "settled 已结算")
    };
    format!(
        "<span class=\"status {css}\">{label}</span> <span class=\"status sleeping\">{}</span>",
        esc(month_status)
    )
}

async fn villages_page(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    let latest: HashMap<String, (String, i64, bool, String)> = state
        .store
        .villages_latest()
        .await?
        .into_iter()
        .map(|(v, m, c, p, s)| (v, (m, c, p, s)))
        .collect();
    let mut rows = String::new();
    let mut villages: Vec<_> = state
        .deployment
        .villages
        .iter()
        .filter(|v| {
            state
                .geography
                .may_on_village(caller.who(), Action::ViewLedger, v.code.as_str())
        })
        .collect();
    villages.sort_by(|a, b| a.code.cmp(&b.code));
    for v in villages {
        let cells = match latest.get(v.code.as_str()) {
            Some((m, closing, prov, status)) => format!(
                "<td>{}</td><td class=\"num\">{}</td><td>{}</td>",
                esc(m),
                yuan(*closing),
                status_badge(*prov, status)
            ),
            None => "<td class=\"muted\">not allocated yet</td><td></td><td></td>".into(),
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"/villages/{c}\">{c}</a></td><td>{n}</td>{cells}</tr>",
            c = esc(v.code.as_str()),
            n = esc(&v.name)
        ));
    }
    let body = format!(
        "<h1>Villages 村集体</h1><p class=\"muted\">Balance of the village PV account after the newest \
         allocated month. Provisional months rest on Sunshare's own meter readings until the grid \
         settlement is imported.</p><table><tr><th>code</th><th>village</th><th>month</th>\
         <th class=\"num\">balance 余额 (yuan)</th><th>status</th></tr>{rows}</table>"
    );
    Ok(Html(layout("Villages", &body, &caller)))
}

#[derive(Debug, Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

async fn village_page(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Query(q): Query<MonthQuery>,
) -> Result<Html<String>, ApiError> {
    let name = village_name(&state, &code)?;
    let months = state.store.village_month_list(&code).await?;
    let month = match q.month {
        Some(m) => parse_month(&m)?.to_string(),
        None => match months.first() {
            Some(m) => m.clone(),
            None => {
                let body = format!(
                    "<h1>{} {}</h1><p class=\"note\">No month has been allocated for this village yet \
                     (run <code>sunshare allocate --month YYYY-MM</code>).</p>",
                    esc(&code),
                    esc(&name)
                );
                return Ok(Html(layout(&name, &body, &caller)));
            }
        },
    };
    let row = load_month(&state, &code, &month).await?;
    let aud = audience(&state, &caller, &code);
    let table = statement_html(&state, &row, aud);
    let month_links: String = months
        .iter()
        .map(|m| {
            format!(
                "<a href=\"/villages/{c}?month={m}\">{m}</a>",
                c = esc(&code),
                m = esc(m)
            )
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let year = month.get(..4).unwrap_or_default();
    let plan_state = match year.parse::<i32>() {
        Ok(y) => state.store.plan_state(&code, y).await?.to_string(),
        Err(_) => String::new(),
    };
    let body = format!(
        "<h1>{c} {n} — {m}</h1><p>{badge} · plan {y}: <b>{ps}</b></p>\
         <p><a href=\"/villages/{c}/notice/{m}\">public notice 公示</a> · \
         <a href=\"/villages/{c}/months/{m}/statement.csv\">statement CSV</a> · \
         <a href=\"/villages/{c}/months/{m}/statement.xlsx\">statement XLSX</a> · \
         <a href=\"/api/villages/{c}/months/{m}\">JSON</a></p>{table}\
         <h2>Notes 说明</h2><ul>{notes}</ul><p class=\"muted\">Months: {month_links}</p>",
        c = esc(&code),
        n = esc(&name),
        m = esc(&month),
        badge = status_badge(row.provisional, &row.month_status),
        y = esc(year),
        ps = esc(&plan_state),
        notes = row
            .notes
            .iter()
            .map(|n| format!("<li>{}</li>", esc(n)))
            .collect::<String>(),
    );
    Ok(Html(layout(&format!("{name} {month}"), &body, &caller)))
}

fn statement_html(state: &AppState, row: &VillageMonthRow, aud: Audience) -> String {
    let hh: HashMap<&str, &crate::domain::Household> = state
        .deployment
        .households
        .iter()
        .map(|h| (h.id.as_str(), h))
        .collect();
    let mut s = String::from(
        "<table><tr><th>line 科目</th><th>station / payee 对象</th><th>reference 依据</th>\
         <th class=\"num\">amount 金额 (yuan)</th></tr>",
    );
    let line = |s: &mut String, a: &str, b: &str, c: &str, fen: i64| {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(a),
            esc(b),
            esc(c),
            yuan(fen)
        ));
    };
    line(&mut s, "opening balance 期初余额", "", "", row.opening_fen);
    for e in &row.entries {
        let who = payee_label(e.household.as_deref(), &e.payee, &hh, aud);
        let label = if e.kind == "INCOME" {
            "income 收入".to_owned()
        } else {
            e.line.clone()
        };
        line(&mut s, &label, &who, &e.reference, e.amount_fen);
    }
    for (label, v) in [
        ("income total 收入合计", row.income_fen),
        ("county advance 县级垫付", row.advance_fen),
        ("advance settled 垫付归还", row.advance_repaid_fen),
        ("cash on hand 可支配资金", row.cash_fen),
        ("payouts 支出合计", row.payouts_fen),
        ("RESERVE 预留", row.reserve_fen),
        ("carry-over 结转", row.carry_over_fen),
        ("closing balance 期末余额", row.closing_fen),
    ] {
        s.push_str(&format!(
            "<tr><th>{}</th><th></th><th></th><th class=\"num\">{}</th></tr>",
            esc(label),
            yuan(v)
        ));
    }
    s.push_str("</table>");
    s
}

async fn notice_page(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, month)): Path<(String, String)>,
) -> Result<Html<String>, ApiError> {
    let name = village_name(&state, &code)?;
    let row = load_month(&state, &code, &month).await?;
    let aud = audience(&state, &caller, &code);
    let table = statement_html(&state, &row, aud);
    let body = format!(
        "<h1>{n}光伏帮扶电站收益分配公示</h1><p>Public notice of PV income and its use · {c} · {m}</p>\
         <p>{badge}</p>{table}\
         <p class=\"muted\">{who} Objections may be raised with the village committee during the \
         posting period (公示期内如有异议，请向村委会反映).</p>",
        n = esc(&name),
        c = esc(&code),
        m = esc(&row.month),
        badge = status_badge(row.provisional, &row.month_status),
        who = if aud == Audience::Public {
            "Names are masked; no id or bank numbers are shown."
        } else {
            "FULL VERSION for authorised roles only — do not post."
        }
    );
    Ok(Html(layout(
        &format!("公示 {name} {}", row.month),
        &body,
        &caller,
    )))
}

async fn export_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, month, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let row = load_month(&state, &code, &month).await?;
    let aud = audience(&state, &caller, &code);
    let may_roster = state
        .geography
        .may_on_village(caller.who(), Action::ExportRoster, &code);
    let (kind, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| ApiError::NotFound(format!("no export named {file}")))?;
    let table = match kind {
        "statement" => export::statement_table(&row, &state.deployment, aud),
        "roster" if may_roster => export::roster_table(&row, &state.deployment),
        "roster" => return Err(ApiError::Forbidden(
            "the payout roster holds bank accounts: only the village's accountant may export it"
                .into(),
        )),
        _ => return Err(ApiError::NotFound(format!("no export named {file}"))),
    };
    let (bytes, mime) = match ext {
        "csv" => (export::to_csv(&table)?, "text/csv; charset=utf-8"),
        "xlsx" => (
            export::to_xlsx(kind, &table)?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        _ => return Err(ApiError::NotFound(format!("no export named {file}"))),
    };
    let disposition = format!("attachment; filename=\"{code}-{}-{file}\"", row.month);
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// One line of a village's monthly statement.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LedgerEntry)]
struct EntryJson {
    /// `INCOME`, `PAYOUT`, ...
    kind: String,
    /// The plan line, e.g. `JOB_WAGES`.
    line: String,
    /// Masked (张*三) unless the caller presented an authorised token.
    payee: String,
    reference: String,
    /// Yuan with two decimals, as a string.
    amount: String,
    basis: String,
}

/// A village's allocated month. Amounts are yuan with two decimals, as strings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = VillageMonth)]
struct MonthJson {
    village: String,
    month: String,
    status: String,
    provisional: bool,
    plan_state: Option<String>,
    opening_balance: String,
    income: String,
    advance: String,
    advance_settled: String,
    advance_outstanding: String,
    cash: String,
    payouts: String,
    reserve: String,
    carry_over: String,
    closing_balance: String,
    entries: Vec<EntryJson>,
    notes: Vec<String>,
    /// Personal data is masked: the caller presented no authorised token.
    masked: bool,
}

/// A village's statement for one month: income, advances, payouts, reserve and balances.
#[utoipa::path(
    get,
    path = "/api/villages/{code}/months/{month}",
    tag = "ledger",
    params(
        ("code" = String, Path, description = "Village code"),
        ("month" = String, Path, description = "`YYYY-MM`", pattern = r"^(19|[2-9][0-9])[0-9]{2}-(0?[1-9]|1[0-2])$", example = "2026-01"),
    ),
    responses(
        (status = 200, description = "The allocated month; payees masked for the public", body = MonthJson),
        (status = 400, description = "The month is malformed", body = super::openapi::ErrorBody),
        (status = 404, description = "No such village, or the month is not allocated yet", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn month_json(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, month)): Path<(String, String)>,
) -> Result<axum::Json<MonthJson>, ApiError> {
    let row = load_month(&state, &code, &month).await?;
    let aud = audience(&state, &caller, &code);
    let hh: HashMap<&str, &crate::domain::Household> = state
        .deployment
        .households
        .iter()
        .map(|h| (h.id.as_str(), h))
        .collect();
    Ok(axum::Json(MonthJson {
        village: row.village.clone(),
        month: row.month.clone(),
        status: row.month_status.clone(),
        provisional: row.provisional,
        plan_state: row.plan_state.clone(),
        opening_balance: yuan(row.opening_fen),
        income: yuan(row.income_fen),
        advance: yuan(row.advance_fen),
        advance_settled: yuan(row.advance_repaid_fen),
        advance_outstanding: yuan(row.advance_outstanding_fen),
        cash: yuan(row.cash_fen),
        payouts: yuan(row.payouts_fen),
        reserve: yuan(row.reserve_fen),
        carry_over: yuan(row.carry_over_fen),
        closing_balance: yuan(row.closing_fen),
        entries: row
            .entries
            .iter()
            .map(|e| EntryJson {
                kind: e.kind.clone(),
                line: e.line.clone(),
                payee: payee_label(e.household.as_deref(), &e.payee, &hh, aud),
                reference: e.reference.clone(),
                amount: yuan(e.amount_fen),
                basis: e.basis.clone(),
            })
            .collect(),
        notes: row.notes.clone(),
        masked: aud == Audience::Public,
    }))
}

/// One step of a plan's workflow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PlanTransition)]
struct TransitionJson {
    from: String,
    to: String,
    who: String,
    #[schema(format = DateTime)]
    at: String,
    note: String,
}

/// A village's yearly plan: where it stands in the workflow and how it got there.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Plan)]
struct PlanJson {
    village: String,
    year: i32,
    #[schema(schema_with = plan_state_schema)]
    state: String,
    /// The states one transition can reach from here.
    #[schema(schema_with = plan_states_schema)]
    next: Vec<&'static str>,
    /// Oldest first.
    transitions: Vec<TransitionJson>,
}

fn plan_state_schema() -> utoipa::openapi::Object {
    super::openapi::string_enum(
        &PlanState::ALL.map(PlanState::code),
        "民主决策 workflow state of the plan",
    )
}

fn plan_states_schema() -> utoipa::openapi::Array {
    utoipa::openapi::Array::new(plan_state_schema())
}

/// A village's plan for one year.
#[utoipa::path(
    get,
    path = "/api/villages/{code}/plans/{year}",
    tag = "ledger",
    params(
        ("code" = String, Path, description = "Village code"),
        ("year" = i32, Path, description = "Plan year", example = 2026),
    ),
    responses(
        (status = 200, description = "The plan's state and history", body = PlanJson),
        (status = 400, description = "The year is not a 32-bit integer", body = super::openapi::ErrorBody),
        (status = 404, description = "No such village", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn plan_json(
    State(state): State<AppState>,
    Path((code, year)): Path<(String, i32)>,
) -> Result<axum::Json<PlanJson>, ApiError> {
    village_name(&state, &code)?;
    let current = state.store.plan_state(&code, year).await?;
    let transitions = state
        .store
        .plan_history(&code, year)
        .await?
        .into_iter()
        .map(|t| TransitionJson {
            from: t.from,
            to: t.to,
            who: t.who,
            at: t.at.to_rfc3339(),
            note: t.note,
        })
        .collect();
    Ok(axum::Json(PlanJson {
        village: code,
        year,
        state: current.to_string(),
        next: current.next_states().iter().map(|s| s.code()).collect(),
        transitions,
    }))
}

/// Move a plan to another state.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PlanTransitionRequest)]
struct TransitionRequest {
    /// The state to move to (`ACTIVE`, `county-filed`, ...: case and `-`/`_` do not matter).
    #[schema(example = "ACTIVE")]
    to: String,
    /// Why, for the record (e.g. the meeting that decided it).
    note: String,
    /// Who acts, when one account is used at a shared desk; recorded beside the account's name.
    #[serde(default)]
    who: Option<String>,
}

/// Moves a plan one step in its workflow: the village's own steps are its accountant's, approval
/// is its township reviewer's, filing and activation the county's (an administrator).
#[utoipa::path(
    post,
    path = "/api/villages/{code}/plans/{year}/transitions",
    tag = "ledger",
    params(
        ("code" = String, Path, description = "Village code"),
        ("year" = i32, Path, description = "Plan year", example = 2026),
    ),
    request_body = TransitionRequest,
    responses(
        (status = 200, description = "Moved: the plan as it is now", body = PlanJson),
        (status = 400, description = "The body is not a transition request, the year is not a 32-bit integer, or `to` is not a plan state", body = super::openapi::ErrorBody),
        (status = 403, description = "The caller may not take this step for this village", body = super::openapi::ErrorBody),
        (status = 404, description = "No such village", body = super::openapi::ErrorBody),
        (status = 409, description = "The workflow does not allow this step now", body = super::openapi::ErrorBody),
        (status = 422, description = "The plan does not fit the rules", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be written", body = super::openapi::ErrorBody),
    )
)]
async fn plan_transition(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, year)): Path<(String, i32)>,
    Json(req): Json<TransitionRequest>,
) -> Result<axum::Json<PlanJson>, ApiError> {
    let account = caller.signed_in()?;
    let to = PlanState::parse(&req.to)
        .ok_or_else(|| ApiError::invalid("to", format!("'{}' is not a plan state", req.to)))?;
    let from = state.store.plan_state(&code, year).await?;
    if let Decision::Forbidden(reason) = decide(
        Some(account),
        Action::MovePlan(from, to),
        state.geography.village(&code),
    ) {
        return Err(ApiError::Forbidden(reason));
    }
    let name = account.username.as_str();
    let who = match req.who.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) => format!("{w} (via {name})"),
        None => name.to_owned(),
    };
    ledger::transition(
        &state.store,
        &state.deployment,
        &VillageId::new(code.clone()),
        year,
        to,
        &who,
        &req.note,
    )
    .await?;
    plan_json(State(state), Path((code, year))).await
}
