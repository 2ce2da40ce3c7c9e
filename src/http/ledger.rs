//! Village ledger over HTTP: the villages list, a village's monthly statement, the printable public
//! notice (公示), exports, the month API and plan transitions.
//!
//! The public notice is public and masks personal data (张*三, no ids or accounts); whoever may
//! see the village's personal data (its accountant, its township) gets the full version. Each plan
//! transition is decided by `auth::decide` for the exact step.

use super::extract::{Json, Path, Query};
use super::guard::Caller;
use super::guard::CSRF_FIELD;
use super::i18n::{tr, trf, Lang};
use super::page::{bare_frame, frame, href, local_time};
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
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

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
        .post(
            "/villages/months",
            Access::fleet(Action::AllocateMonth),
            allocate_form,
        )
        .post(
            "/villages/months/{month}/paid",
            Access::fleet(Action::PayMonth),
            pay_form,
        )
        .post(
            "/villages/receipts",
            Access::fleet(Action::PayMonth),
            receipt_form,
        )
        .post(
            "/villages/advances",
            Access::fleet(Action::PayMonth),
            advance_form,
        )
        .post(
            "/villages/{code}/plans/{year}/transitions",
            Access::village(Action::WorkOnPlans, "code"),
            plan_step_form,
        )
        .post(
            "/villages/{code}/months/{month}/review",
            Access::village(Action::ReviewMonth, "code"),
            review_form,
        )
        .post(
            "/villages/{code}/opening",
            Access::village(Action::SetOpeningBalance, "code"),
            opening_form,
        )
        .post(
            "/villages/{code}/attendance",
            Access::village(Action::RecordAttendance, "code"),
            attendance_form,
        )
        .post(
            "/villages/{code}/adjustments",
            Access::village(Action::PostAdjustment, "code"),
            adjustment_form,
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
pub(super) fn audience(state: &AppState, caller: &Caller, village: &str) -> Audience {
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

pub(super) fn village_name(state: &AppState, code: &str) -> Result<String, ApiError> {
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

/// Settled or provisional, and the month's state in the ledger.
fn status_badge(lang: Lang, provisional: bool, month_status: &str) -> Markup {
    html! {
        @if provisional {
            span.status.partial data-basis="provisional" { (tr(lang, "village.provisional")) }
        } @else {
            span.status.producing data-basis="settled" { (tr(lang, "village.settled")) }
        }
        " "
        span.status.sleeping data-month-status=(month_status) { (month_status_label(lang, month_status)) }
    }
}

fn month_status_label(lang: Lang, status: &str) -> String {
    match status {
        "PAID" => tr(lang, "village.month_paid"),
        "COMPUTED" => tr(lang, "village.month_allocated"),
        other => other.to_owned(),
    }
}

/// A plan state in the page's language.
pub fn plan_state_label(lang: Lang, state: PlanState) -> String {
    tr(
        lang,
        &format!("plan.state_{}", state.code().to_ascii_lowercase()),
    )
}

async fn villages_page(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    render_villages(&state, &caller, None)
        .await
        .map(|(_, page)| page)
}

/// The villages list, and for the county's administrators the months of the ledger with the
/// forms that allocate the next one and mark the oldest unpaid one paid.
pub(super) async fn render_villages(
    state: &AppState,
    caller: &Caller,
    error: Option<FormError>,
) -> Result<(axum::http::StatusCode, Html<String>), ApiError> {
    let lang = caller.lang;
    let latest: HashMap<String, (String, i64, bool, String)> = state
        .store
        .villages_latest()
        .await?
        .into_iter()
        .map(|(v, m, c, p, s)| (v, (m, c, p, s)))
        .collect();
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
    let township = |id: &crate::domain::TownshipId| {
        state
            .deployment
            .townships
            .iter()
            .find(|t| &t.id == id)
            .map_or_else(|| id.to_string(), |t| t.name.clone())
    };
    let months = if decide(caller.who(), Action::AllocateMonth, None).allowed() {
        Some(months_panel(state, caller, error.as_ref()).await?)
    } else {
        None
    };
    let receipts = if decide(caller.who(), Action::PayMonth, None).allowed() {
        Some(receipts_panel(state, caller, error.as_ref()).await?)
    } else {
        None
    };
    let pools = if decide(caller.who(), Action::EditPool, None).allowed() {
        Some(super::pools::panel(state, caller, error.as_ref()).await?)
    } else {
        None
    };
    let body = html! {
        h1 { (tr(lang, "village.list_title")) }
        p.muted { (tr(lang, "village.list_note")) }
        table #villages {
            thead { tr {
                th { (tr(lang, "village.col_code")) } th { (tr(lang, "village.col_village")) }
                th { (tr(lang, "fleet.township")) } th { (tr(lang, "village.col_month")) }
                th.num { (tr(lang, "village.col_balance")) } th { (tr(lang, "village.col_status")) }
            } }
            tbody { @for v in &villages {
                tr data-village=(v.code) {
                    td { a href=(format!("/villages/{}", v.code)) { (v.code) } }
                    td { (v.name) }
                    td { (township(&v.township)) }
                    @match latest.get(v.code.as_str()) {
                        Some((m, closing, prov, status)) => {
                            td { (m) } td.num { (yuan(*closing)) } td { (status_badge(lang, *prov, status)) }
                        }
                        None => { td.muted colspan="3" { (tr(lang, "village.not_allocated")) } }
                    }
                }
            } }
        }
        @if let Some(months) = months { (months) }
        @if let Some(receipts) = receipts { (receipts) }
        @if let Some(pools) = pools { (pools) }
    };
    let status = if error.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    let page = frame(caller, &tr(lang, "village.list_title"), body).into_string();
    Ok((status, Html(page)))
}

/// How many ledger months the county's panel lists.
const MONTHS_LISTED: i64 = 24;

/// The ledger's months with who computed and paid them, and the two forms.
async fn months_panel(
    state: &AppState,
    caller: &Caller,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    let months = state.store.ledger_month_list(MONTHS_LISTED).await?;
    let beijing = chrono_tz::Asia::Shanghai;
    let next = match months
        .first()
        .and_then(|m| m.month.parse::<YearMonth>().ok())
    {
        Some(newest)
            if months
                .first()
                .is_some_and(|m| m.status == crate::store::MONTH_PAID) =>
        {
            newest.next()
        }
        Some(newest) => newest,
        None => YearMonth::of(chrono::Utc::now().with_timezone(&beijing).date_naive()).prev(),
    };
    let unpaid = months
        .iter()
        .rev()
        .find(|m| m.status != crate::store::MONTH_PAID)
        .map(|m| m.month.clone());
    let may_pay = decide(caller.who(), Action::PayMonth, None).allowed();
    let csrf = caller.csrf.as_deref();
    // Villages whose statement of each month run is reviewed, of those with a statement.
    let mut reviewed: HashMap<String, (usize, usize)> = HashMap::new();
    let mut unreviewed: Vec<String> = Vec::new();
    for m in &months {
        let villages = state.store.month_villages(&m.month).await?;
        let ok: std::collections::HashSet<String> = state
            .store
            .month_reviews(&m.month)
            .await?
            .into_iter()
            .filter(|r| r.fingerprint == m.fingerprint)
            .map(|r| r.village)
            .collect();
        if unpaid.as_deref() == Some(m.month.as_str()) {
            unreviewed = villages
                .iter()
                .filter(|v| !ok.contains(*v))
                .cloned()
                .collect();
        }
        reviewed.insert(m.month.clone(), (ok.len(), villages.len()));
    }
    let error_for = |field: &str| error.filter(|e| e.field == field);
    Ok(html! {
        section #ledger-months {
            h2 { (tr(lang, "month.title")) }
            p.muted { (tr(lang, "month.intro")) }
            @if let Some(csrf) = csrf {
                form.plan-step #allocate-form method="post" action="/villages/months" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    label { (tr(lang, "month.month")) " "
                        input type="text" name="month" value=(next) size="8" placeholder="YYYY-MM"
                            aria-invalid=[error_for("month").map(|_| "true")]; }
                    button type="submit" { (tr(lang, "month.allocate")) }
                    @if let Some(e) = error_for("month") {
                        p.field-error #allocate-error role="alert" { (e.message) }
                    }
                }
                @if let (Some(month), true) = (&unpaid, may_pay) {
                    form.plan-step #pay-form method="post" action=(format!("/villages/months/{month}/paid")) {
                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                        label { (trf(lang, "month.pay_label", &[("month", month)])) " "
                            input type="text" name="note" size="30" placeholder=(tr(lang, "month.pay_hint"))
                                aria-invalid=[error_for("note").map(|_| "true")]; }
                        button type="submit" { (tr(lang, "month.pay")) }
                        @if let Some(e) = error_for("note") {
                            p.field-error #pay-error role="alert" { (e.message) }
                        }
                    }
                }
            }
            @if !unreviewed.is_empty() {
                p.note #unreviewed { (trf(lang, "review.pending", &[("count", &unreviewed.len()), ("villages", &unreviewed.join("、"))])) }
            }
            @if !months.is_empty() {
                table #months-table {
                    thead { tr {
                        th { (tr(lang, "village.col_month")) } th { (tr(lang, "village.col_status")) }
                        th { (tr(lang, "month.computed")) } th { (tr(lang, "month.paid")) }
                        th { (tr(lang, "month.fingerprint")) } th { (tr(lang, "review.col")) }
                    } }
                    tbody { @for m in &months {
                        @let (reviewed, of) = reviewed.get(&m.month).copied().unwrap_or((0, 0));
                        tr data-month=(m.month) data-status=(m.status) data-reviewed=(format!("{reviewed}/{of}")) {
                            td { (m.month) }
                            td { (month_status_label(lang, &m.status)) }
                            td { (m.computed_by) " · " (local_time(m.computed_at, beijing)) }
                            td { @if let (Some(by), Some(at)) = (&m.paid_by, m.paid_at) { (by) " · " (local_time(at, beijing)) } }
                            td { code { (m.fingerprint) } }
                            td { (trf(lang, "review.count", &[("reviewed", &reviewed), ("of", &of)])) }
                        }
                    } }
                }
            }
        }
    })
}

/// Subsidy receipts: the form the county's finance desk records one with, and those recorded.
async fn receipts_panel(
    state: &AppState,
    caller: &Caller,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    let recorded = state.store.receipts().await?;
    let advances = state.store.advances().await?;
    let problems: Vec<&ledger::households::Problem> = error
        .filter(|e| e.field == "receipt" || e.field == "advance")
        .map(|e| e.problems.iter().collect())
        .unwrap_or_default();
    let invalid = |f: &str| problems.iter().any(|p| p.field == f).then_some("true");
    let errors = |f: &str| {
        html! { @for p in problems.iter().filter(|p| p.field == f) { p.field-error id=(format!("receipt-{f}-error")) role="alert" { (problem_text(lang, p)) } } }
    };
    let beijing = chrono_tz::Asia::Shanghai;
    Ok(html! {
        section #receipts {
            h2 { (tr(lang, "receipt.title")) }
            p.muted { (tr(lang, "receipt.intro")) }
            form.plan-step #receipt-form method="post" action="/villages/receipts" {
                @if let Some(csrf) = caller.csrf.as_deref() { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                label { (tr(lang, "fleet.col_station")) " "
                    select name="station" aria-invalid=[invalid("station")] {
                        @for s in &state.deployment.stations { option value=(s.id) { (s.id) " " (s.name) } }
                    }
                }
                (errors("station"))
                label { (tr(lang, "receipt.month")) " " input type="text" name="month" size="8" placeholder="YYYY-MM" aria-invalid=[invalid("receipt_month")]; }
                (errors("receipt_month"))
                label { (tr(lang, "receipt.amount")) " " input type="text" name="amount" inputmode="decimal" size="12" aria-invalid=[invalid("amount")]; }
                (errors("amount"))
                label { (tr(lang, "receipt.covers")) " " input type="text" name="covers" size="30" placeholder=(tr(lang, "receipt.covers_hint")) aria-invalid=[invalid("covers")]; }
                (errors("covers"))
                button type="submit" { (tr(lang, "receipt.submit")) }
            }
            h2 #advances-title { (tr(lang, "advance.title")) }
            p.muted { (tr(lang, "advance.intro")) }
            form.plan-step #advance-form method="post" action="/villages/advances" {
                @if let Some(csrf) = caller.csrf.as_deref() { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                label { (tr(lang, "village.col_village")) " "
                    select name="village" aria-invalid=[invalid("village")] {
                        @for v in &state.deployment.villages { option value=(v.code) { (v.code) " " (v.name) } }
                    }
                }
                (errors("village"))
                label { (tr(lang, "advance.month")) " " input type="text" name="month" size="8" placeholder="YYYY-MM" aria-invalid=[invalid("advance_month")]; }
                (errors("advance_month"))
                label { (tr(lang, "advance.amount")) " " input type="text" name="amount" inputmode="decimal" size="12" aria-invalid=[invalid("advance_amount")]; }
                (errors("advance_amount"))
                label { (tr(lang, "advance.reference")) " " input type="text" name="reference" size="30" placeholder=(tr(lang, "advance.reference_hint")) aria-invalid=[invalid("reference")]; }
                (errors("reference"))
                button type="submit" { (tr(lang, "advance.submit")) }
            }
            @if !advances.is_empty() {
                table #advances-table {
                    thead { tr {
                        th { (tr(lang, "village.col_village")) } th { (tr(lang, "advance.month")) }
                        th.num { (tr(lang, "advance.amount")) } th { (tr(lang, "advance.reference")) }
                        th { (tr(lang, "receipt.recorded")) }
                    } }
                    tbody { @for a in &advances {
                        tr data-village=(a.village) data-month=(a.month) {
                            td { (a.village) } td { (a.month) } td.num { (a.amount) } td { (a.reference) }
                            td { (a.by) " · " (local_time(a.at, beijing)) }
                        }
                    } }
                }
            }
            @if !recorded.is_empty() {
                table #receipts-table {
                    thead { tr {
                        th { (tr(lang, "fleet.col_station")) } th { (tr(lang, "receipt.month")) }
                        th.num { (tr(lang, "receipt.amount")) } th { (tr(lang, "receipt.covers")) }
                        th { (tr(lang, "receipt.recorded")) }
                    } }
                    tbody { @for r in &recorded {
                        tr data-station=(r.station) data-month=(r.month) {
                            td { (r.station) } td { (r.month) } td.num { (r.amount) } td { (r.covers) }
                            td { (r.by) " · " (local_time(r.at, beijing)) }
                        }
                    } }
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
struct AdvanceForm {
    #[serde(default)]
    village: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reference: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Records a county advance; each problem shows next to its field and nothing is kept.
async fn advance_form(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: AdvanceForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    match ledger::record_advance(
        &state.store,
        &state.deployment,
        &form.village,
        &form.month,
        &form.amount,
        &form.reference,
        &account.username,
    )
    .await?
    {
        Ok(()) => Ok(axum::response::Redirect::to("/villages#advances-title").into_response()),
        Err(problems) => {
            let e = FormError {
                field: "advance",
                message: String::new(),
                problems,
                typed: None,
                attendance: Vec::new(),
            };
            let (status, page) = render_villages(&state, &caller, Some(e)).await?;
            Ok((status, page).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct ReceiptForm {
    #[serde(default)]
    station: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    covers: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Records a subsidy receipt; each problem shows next to its field and nothing is kept.
async fn receipt_form(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: ReceiptForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    match ledger::record_receipt(
        &state.store,
        &state.deployment,
        &form.station,
        &form.month,
        &form.amount,
        &form.covers,
        &account.username,
    )
    .await?
    {
        Ok(()) => Ok(axum::response::Redirect::to("/villages#receipts").into_response()),
        Err(problems) => {
            let e = FormError {
                field: "receipt",
                message: String::new(),
                problems,
                typed: None,
                attendance: Vec::new(),
            };
            let (status, page) = render_villages(&state, &caller, Some(e)).await?;
            Ok((status, page).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct AllocateForm {
    #[serde(default)]
    month: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Allocates and records a month for every village; a refusal shows next to the month field and
/// records nothing.
async fn allocate_form(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let account = caller.signed_in()?;
    let form: AllocateForm = super::extract::parse_form(&body)?;
    let refused = |message: String| FormError {
        field: "month",
        message,
        problems: Vec::new(),
        typed: None,
        attendance: Vec::new(),
    };
    let outcome = match form.month.trim().parse::<YearMonth>() {
        Err(e) => Err(refused(trf(
            caller.lang,
            "month.bad_month",
            &[("detail", &e)],
        ))),
        Ok(month) => {
            let energy = ledger::energy_source(state.store.clone(), Arc::clone(&state.deployment));
            match ledger::run_month(
                &state.store,
                &state.deployment,
                energy.as_ref(),
                month,
                &account.username,
                true,
            )
            .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(refused(refusal(e)?)),
            }
        }
    };
    after_month_form(&state, &caller, outcome).await
}

/// What a refused ledger step says next to its field; a fault of the store stays an error.
fn refusal(e: ledger::Error) -> Result<String, ApiError> {
    match ApiError::from(e) {
        ApiError::Internal(m) => Err(ApiError::Internal(m)),
        other => Ok(other.to_string()),
    }
}

/// Back to the ledger months after a month form, or the villages page with the refusal in place.
async fn after_month_form(
    state: &AppState,
    caller: &Caller,
    outcome: Result<(), FormError>,
) -> Result<Response, ApiError> {
    match outcome {
        Ok(()) => Ok(axum::response::Redirect::to("/villages#ledger-months").into_response()),
        Err(e) => {
            let (status, page) = render_villages(state, caller, Some(e)).await?;
            Ok((status, page).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct PayForm {
    #[serde(default)]
    note: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Locks a month as paid, with the bank batch it was paid in.
async fn pay_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(month): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let account = caller.signed_in()?;
    let form: PayForm = super::extract::parse_form(&body)?;
    let month = parse_month(&month)?;
    let refused = |message: String| FormError {
        field: "note",
        message,
        problems: Vec::new(),
        typed: None,
        attendance: Vec::new(),
    };
    let outcome = if form.note.trim().is_empty() {
        Err(refused(tr(caller.lang, "month.pay_note_required")))
    } else {
        match ledger::pay_month(&state.store, month, &account.username, form.note.trim()).await {
            Ok(()) => Ok(()),
            Err(e) => Err(refused(refusal(e)?)),
        }
    };
    after_month_form(&state, &caller, outcome).await
}

#[derive(Debug, Deserialize)]
struct MonthQuery {
    month: Option<String>,
    /// The month whose attendance the form shows (default: the one after the county's latest).
    attendance: Option<String>,
}

async fn village_page(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Query(q): Query<MonthQuery>,
) -> Result<Html<String>, ApiError> {
    let month = q.month.as_deref().map(parse_month).transpose()?;
    let attendance = q.attendance.as_deref().map(parse_month).transpose()?;
    render_village(&state, &caller, &code, month, attendance, None)
        .await
        .map(|(_, page)| page)
}

/// A refused form, shown next to the field that was wrong; a plan step's record may have several
/// problems, each shown next to its own field.
pub(super) struct FormError {
    pub(super) field: &'static str,
    pub(super) message: String,
    pub(super) problems: Vec<ledger::households::Problem>,
    /// What the refused form held, to show it again (forms that keep what was typed).
    typed: Option<ledger::AdjustmentInput>,
    attendance: Vec<ledger::AttendanceInput>,
}

impl FormError {
    /// The problems of a form that shows them next to its fields and keeps nothing typed.
    pub(super) fn of(
        field: &'static str,
        message: String,
        problems: Vec<ledger::households::Problem>,
    ) -> Self {
        FormError {
            field,
            message,
            problems,
            typed: None,
            attendance: Vec::new(),
        }
    }
}

/// The village page: the month's statement, its links, and the year's plan with the steps the
/// caller may take.
async fn render_village(
    state: &AppState,
    caller: &Caller,
    code: &str,
    month: Option<YearMonth>,
    attendance: Option<YearMonth>,
    error: Option<FormError>,
) -> Result<(axum::http::StatusCode, Html<String>), ApiError> {
    let lang = caller.lang;
    let name = village_name(state, code)?;
    let months = state.store.village_month_list(code).await?;
    let plan_years =
        ledger::plans::plan_years(&state.store, &state.deployment, &VillageId::new(code)).await?;
    let month = match month {
        Some(m) => Some(m.to_string()),
        None => months.first().cloned(),
    };
    let row = match &month {
        Some(m) => Some(load_month(state, code, m).await?),
        None => None,
    };
    let year = match &month {
        Some(m) => m.get(..4).and_then(|y| y.parse::<i32>().ok()),
        None => None,
    }
    .or(plan_years.last().copied());
    let plan = match year {
        Some(y) => Some(plan_panel(state, caller, code, y, error.as_ref()).await?),
        None => None,
    };
    let plans_line = plans_line(state, caller, code, &plan_years);
    let aud = audience(state, caller, code);
    let households = village_households(state, code).await?;
    let money = match &month {
        Some(m) => year_money(state, code, &months, m.get(..4).unwrap_or_default()).await?,
        None => Vec::new(),
    };
    let title = match &month {
        Some(m) => format!("{name} {m}"),
        None => name.clone(),
    };
    let body = html! {
        h1 { (name) " " span.muted { (code) } @if let Some(m) = &month { " · " (m) } }
        @match &row {
            Some(row) => {
                @let m = &row.month;
                p { (status_badge(lang, row.provisional, &row.month_status)) }
                (review_panel(state, caller, code, row, error.as_ref()).await?)
                p.links #month-links {
                    a href=(format!("/villages/{code}/notice/{m}")) { (tr(lang, "village.notice")) } " · "
                    a href=(format!("/villages/{code}/months/{m}/statement.xlsx")) { (tr(lang, "village.statement_xlsx")) } " · "
                    a href=(format!("/villages/{code}/months/{m}/statement.csv")) { (tr(lang, "village.statement_csv")) }
                    @if state.geography.may_on_village(caller.who(), Action::ExportRoster, code) {
                        " · " a #roster-xlsx href=(format!("/villages/{code}/months/{m}/roster.xlsx")) { (tr(lang, "village.roster_xlsx")) }
                    }
                    " · " a href=(format!("/api/villages/{code}/months/{m}")) { "JSON" }
                }
                (statement(&households, lang, row, aud))
                (super::charts::income_vs_payouts(lang, &name, &money))
                @if !row.notes.is_empty() {
                    h2 { (tr(lang, "village.notes")) }
                    ul #notes { @for n in &row.notes { li { (note_text(lang, n)) } } }
                }
                @if months.len() > 1 {
                    p.muted #months { (tr(lang, "village.other_months")) " "
                        @for (i, other) in months.iter().enumerate() {
                            @if i > 0 { " · " }
                            @if other == m { b { (other) } } @else { a href=(href(&format!("/villages/{code}"), &[("month", other)])) { (other) } }
                        }
                    }
                }
            }
            None => { p.note #no-month { (tr(lang, "village.no_month")) } }
        }
        (opening_panel(state, caller, code, error.as_ref()).await?)
        (attendance_panel(state, caller, code, &households, attendance, error.as_ref()).await?)
        (adjustments_panel(state, caller, code, &households, aud, error.as_ref()).await?)
        @if state.geography.may_on_village(caller.who(), Action::ViewPersonalData, code) {
            p #registry { a #registry-link href=(format!("/villages/{code}/households")) { (tr(lang, "household.link")) } }
        }
        (plans_line)
        @if let Some(plan) = plan { (plan) }
    };
    let status = if error.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Html(frame(caller, &title, body).into_string())))
}

/// Links to the village's plans, and to drafting this year's or next year's plan for whoever may
/// draft one.
fn plans_line(state: &AppState, caller: &Caller, code: &str, years: &[i32]) -> Markup {
    let lang = caller.lang;
    let this_year =
        chrono::Datelike::year(&chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai));
    let may = state
        .geography
        .may_on_village(caller.who(), Action::DraftPlan, code);
    let new_years: Vec<i32> = [this_year, this_year + 1]
        .into_iter()
        .filter(|y| may && !years.contains(y))
        .collect();
    html! {
        p #plans {
            (tr(lang, "plan_edit.plans")) " "
            @for (i, y) in years.iter().enumerate() {
                @if i > 0 { " · " }
                a href=(format!("/villages/{code}/plans/{y}")) data-year=(y) { (trf(lang, "plan_edit.year", &[("year", y)])) }
            }
            @if years.is_empty() && new_years.is_empty() { span.muted { (tr(lang, "plan_edit.none")) } }
            @for y in &new_years {
                " · " a.draft href=(format!("/villages/{code}/plans/{y}")) data-draft=(y) { (trf(lang, "plan_edit.draft_year", &[("year", y)])) }
            }
        }
    }
}

/// The recorded months of `year` for the year's income chart, oldest first.
async fn year_money(
    state: &AppState,
    code: &str,
    months: &[String],
    year: &str,
) -> Result<Vec<super::charts::MoneyMonth>, ApiError> {
    let mut out = Vec::new();
    for m in months.iter().filter(|m| m.starts_with(year)) {
        let Ok(month) = m.parse::<YearMonth>() else {
            continue;
        };
        if let Some(row) = state.store.village_month(code, m).await? {
            out.push(super::charts::MoneyMonth {
                month,
                income: Fen(row.income_fen),
                payouts: Fen(row.payouts_fen),
                balance: Fen(row.closing_fen),
            });
        }
    }
    out.sort_by_key(|m| m.month);
    Ok(out)
}

/// The year's plan: its state, its history, and one form per step the caller may take now.
/// Whether the village's statement of this month run was reviewed (复核), and the form that
/// reviews it for the village's accountant while the month is not paid.
async fn review_panel(
    state: &AppState,
    caller: &Caller,
    code: &str,
    row: &VillageMonthRow,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    let run = match row.month.parse::<YearMonth>() {
        Ok(m) => state.store.ledger_month(m).await?,
        Err(_) => None,
    };
    let Some(run) = run else {
        return Ok(html! {});
    };
    let review = state
        .store
        .month_reviews(&row.month)
        .await?
        .into_iter()
        .find(|r| r.village == code);
    let current = review.as_ref().filter(|r| r.fingerprint == run.fingerprint);
    let paid = run.status == crate::store::MONTH_PAID;
    let may = state
        .geography
        .may_on_village(caller.who(), Action::ReviewMonth, code);
    let beijing = chrono_tz::Asia::Shanghai;
    let error = error.filter(|e| e.field == "review");
    Ok(html! {
        section #review data-reviewed=(if current.is_some() { "yes" } else { "no" }) {
            @match (current, &review) {
                (Some(r), _) => {
                    p.note #review-done { (trf(lang, "review.done", &[("who", &r.by), ("at", &local_time(r.at, beijing))]))
                        @if !r.note.is_empty() { " · " (r.note) } }
                }
                (None, Some(r)) => {
                    p.note #review-stale { (trf(lang, "review.stale", &[("who", &r.by), ("at", &local_time(r.at, beijing))])) }
                }
                (None, None) => { p.muted #review-none { (tr(lang, "review.none")) } }
            }
            @if may && !paid && current.is_none() {
                form.plan-step #review-form method="post" action=(format!("/villages/{code}/months/{}/review", row.month)) {
                    @if let Some(csrf) = caller.csrf.as_deref() { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                    label { (tr(lang, "review.note")) " " input type="text" name="note" size="40" placeholder=(tr(lang, "review.note_hint")); }
                    button type="submit" { (tr(lang, "review.submit")) }
                }
            }
            @if let Some(e) = error { p.field-error #review-error role="alert" { (e.message) } }
        }
    })
}

/// The village's opening balance: shown once set; for administrators, the form that sets it
/// while the ledger has no month recorded.
async fn opening_panel(
    state: &AppState,
    caller: &Caller,
    code: &str,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    let opening = state
        .store
        .opening_balances()
        .await?
        .into_iter()
        .find(|o| o.village == code);
    let started = !state.store.ledger_month_list(1).await?.is_empty();
    let may = state
        .geography
        .may_on_village(caller.who(), Action::SetOpeningBalance, code);
    let problems: Vec<&ledger::households::Problem> = error
        .filter(|e| e.field == "opening")
        .map(|e| e.problems.iter().collect())
        .unwrap_or_default();
    let invalid = |f: &str| problems.iter().any(|p| p.field == f).then_some("true");
    let errors = |f: &str| {
        html! { @for p in problems.iter().filter(|p| p.field == f) { p.field-error id=(format!("opening-{f}-error")) role="alert" { (problem_text(lang, p)) } } }
    };
    let form_open = may && !started;
    if opening.is_none() && !form_open && problems.is_empty() {
        return Ok(html! {});
    }
    let beijing = chrono_tz::Asia::Shanghai;
    Ok(html! {
        section #opening {
            h2 { (tr(lang, "opening.title")) }
            @if let Some(o) = &opening {
                p #opening-set { (trf(lang, "opening.set", &[
                    ("balance", &o.balance), ("advance", &o.advance_outstanding), ("note", &o.note),
                    ("who", &o.by), ("at", &local_time(o.at, beijing)),
                ])) }
            }
            @if started {
                @for p in &problems { p.field-error #opening-error role="alert" { (problem_text(lang, p)) } }
            }
            @if form_open {
                p.muted { (tr(lang, "opening.hint")) }
                form.plan-step #opening-form method="post" action=(format!("/villages/{code}/opening")) {
                    @if let Some(csrf) = caller.csrf.as_deref() { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                    label { (tr(lang, "opening.balance")) " " input type="text" name="balance" inputmode="decimal" size="12" aria-invalid=[invalid("balance")]; }
                    (errors("balance"))
                    label { (tr(lang, "opening.advance")) " " input type="text" name="advance_outstanding" inputmode="decimal" size="12" aria-invalid=[invalid("advance_outstanding")]; }
                    (errors("advance_outstanding"))
                    label { (tr(lang, "opening.note")) " " input type="text" name="note" size="40" placeholder=(tr(lang, "opening.note_hint")) aria-invalid=[invalid("note")]; }
                    (errors("note"))
                    button type="submit" { (tr(lang, "opening.submit")) }
                }
            }
        }
    })
}

/// The month the attendance form is for when none is asked: the one after the county's latest
/// recorded month, or this month (Beijing) before any is recorded.
async fn next_attendance_month(state: &AppState) -> Result<YearMonth, ApiError> {
    let latest = state.store.ledger_month_list(1).await?;
    Ok(
        match latest
            .first()
            .and_then(|m| m.month.parse::<YearMonth>().ok())
        {
            Some(m) => m.next(),
            None => YearMonth::of(
                chrono::Utc::now()
                    .with_timezone(&chrono_tz::Asia::Shanghai)
                    .date_naive(),
            ),
        },
    )
}

/// The month's attendance (考勤) of the village's job holders: for its accountant, a form with a
/// line per job held that month (days or points worked of required), filled with what is
/// recorded; wages are prorated by it when the month is allocated.
async fn attendance_panel(
    state: &AppState,
    caller: &Caller,
    code: &str,
    households: &HashMap<String, crate::domain::Household>,
    asked: Option<YearMonth>,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    if !state
        .geography
        .may_on_village(caller.who(), Action::RecordAttendance, code)
    {
        return Ok(html! {});
    }
    let month = match asked {
        Some(m) => m,
        None => next_attendance_month(state).await?,
    };
    let village = VillageId::new(code);
    let jobs: Vec<crate::domain::JobPost> =
        ledger::households::village_jobs(&state.store, &state.deployment, &village)
            .await?
            .into_iter()
            .filter(|j| crate::allocate::job_paid_in(j, month))
            .collect();
    let mut recorded: HashMap<String, (u32, u32)> = state
        .deployment
        .attendance
        .iter()
        .filter(|a| a.month == month)
        .map(|a| (a.job.to_string(), (a.worked, a.required)))
        .collect();
    for a in state.store.attendance().await? {
        if a.month == month && a.village == code {
            recorded.insert(a.job.clone(), (a.worked, a.required));
        }
    }
    let error = error.filter(|e| e.field == "attendance");
    let problems: Vec<&ledger::households::Problem> = error
        .map(|e| e.problems.iter().collect())
        .unwrap_or_default();
    let typed = error.map(|e| e.attendance.as_slice()).unwrap_or_default();
    let invalid = |f: &str| problems.iter().any(|p| p.field == f).then_some("true");
    let errors = |f: &str| {
        html! { @for p in problems.iter().filter(|p| p.field == f) { p.field-error id=(format!("attendance-{}-error", f.replace('.', "-"))) role="alert" { (problem_text(lang, p)) } } }
    };
    let value = |job: &str, worked: bool| -> String {
        if let Some(t) = typed.iter().find(|t| t.job == job) {
            return if worked {
                t.worked.clone()
            } else {
                t.required.clone()
            };
        }
        recorded
            .get(job)
            .map(|(w, r)| if worked { w.to_string() } else { r.to_string() })
            .unwrap_or_default()
    };
    let holder = |h: &crate::domain::HouseholdId| {
        households
            .get(h.as_str())
            .map_or_else(|| h.to_string(), |x| format!("{} {}", h, x.head))
    };
    Ok(html! {
        section #attendance data-month=(month) {
            h2 { (trf(lang, "attendance.title", &[("month", &month)])) }
            p.muted { (tr(lang, "attendance.intro")) }
            form.filters #attendance-month method="get" action=(format!("/villages/{code}")) {
                label { (tr(lang, "attendance.month")) " " input type="text" name="attendance" size="8" placeholder="YYYY-MM" value=(month); }
                button type="submit" { (tr(lang, "attendance.show")) }
            }
            (errors("attendance_month"))
            @if jobs.is_empty() {
                p.muted #attendance-none { (tr(lang, "attendance.no_jobs")) }
            } @else {
                form.plan-step #attendance-form method="post" action=(format!("/villages/{code}/attendance")) {
                    @if let Some(csrf) = caller.csrf.as_deref() { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                    input type="hidden" name="month" value=(month);
                    table #attendance-table {
                        thead { tr {
                            th { (tr(lang, "attendance.job")) } th { (tr(lang, "attendance.holder")) }
                            th.num { (tr(lang, "attendance.wage")) }
                            th { (tr(lang, "attendance.worked")) } th { (tr(lang, "attendance.required")) }
                            th { (tr(lang, "attendance.state")) }
                        } }
                        tbody { @for j in &jobs {
                            @let id = j.id.as_str();
                            @let worked_field = format!("worked.{id}");
                            @let required_field = format!("required.{id}");
                            tr data-job=(id) {
                                td { (id) " " (j.title) input type="hidden" name="job" value=(id); }
                                td { (holder(&j.holder)) }
                                td.num { (j.monthly_wage) }
                                td { input type="text" name="worked" inputmode="numeric" size="4" value=(value(id, true)) aria-invalid=[invalid(&worked_field)] aria-label=(tr(lang, "attendance.worked")); (errors(&worked_field)) }
                                td { input type="text" name="required" inputmode="numeric" size="4" value=(value(id, false)) aria-invalid=[invalid(&required_field)] aria-label=(tr(lang, "attendance.required")); (errors(&required_field)) }
                                td { @if recorded.contains_key(id) { span.status.producing data-recorded="yes" { (tr(lang, "attendance.recorded")) } } @else { span.status.partial data-recorded="no" { (tr(lang, "attendance.missing")) } } }
                            }
                        } }
                    }
                    button type="submit" { (tr(lang, "attendance.submit")) }
                }
            }
        }
    })
}

/// The attendance form: a line per job, as typed.
#[derive(Debug, Default)]
struct AttendanceForm {
    month: String,
    lines: Vec<ledger::AttendanceInput>,
}

impl AttendanceForm {
    /// The lines come as repeated `job`, `worked` and `required` fields, in table order.
    fn parse(body: &[u8]) -> AttendanceForm {
        let mut form = AttendanceForm::default();
        let (mut jobs, mut worked, mut required) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "month" => form.month = v.into_owned(),
                "job" => jobs.push(v.into_owned()),
                "worked" => worked.push(v.into_owned()),
                "required" => required.push(v.into_owned()),
                _ => {}
            }
        }
        for (i, job) in jobs.into_iter().enumerate() {
            form.lines.push(ledger::AttendanceInput {
                job,
                worked: worked.get(i).cloned().unwrap_or_default(),
                required: required.get(i).cloned().unwrap_or_default(),
            });
        }
        form
    }
}

/// Records the month's attendance; each problem shows next to its field, what was typed stays
/// in the form, and nothing is kept.
async fn attendance_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form = AttendanceForm::parse(&body);
    let account = caller.signed_in()?;
    match ledger::record_attendance(
        &state.store,
        &state.deployment,
        &VillageId::new(&code),
        &form.month,
        &form.lines,
        &account.username,
    )
    .await?
    {
        Ok(_) => Ok(axum::response::Redirect::to(&href(
            &format!("/villages/{code}"),
            &[("attendance", form.month.trim())],
        ))
        .into_response()),
        Err(problems) => {
            let month = form.month.trim().parse::<YearMonth>().ok();
            let e = FormError {
                field: "attendance",
                message: String::new(),
                problems,
                typed: None,
                attendance: form.lines,
            };
            let (status, page) =
                render_village(&state, &caller, &code, None, month, Some(e)).await?;
            Ok((status, page).into_response())
        }
    }
}

/// Payout adjustments (补发更正) recorded for the village, and for its accountant the form that
/// posts one into a month not yet paid. Household names only for who may see personal data.
async fn adjustments_panel(
    state: &AppState,
    caller: &Caller,
    code: &str,
    households: &HashMap<String, crate::domain::Household>,
    aud: Audience,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    let recorded: Vec<crate::store::AdjustmentRow> = state
        .store
        .adjustments()
        .await?
        .into_iter()
        .filter(|a| a.village == code)
        .collect();
    let may = state
        .geography
        .may_on_village(caller.who(), Action::PostAdjustment, code);
    if recorded.is_empty() && !may {
        return Ok(html! {});
    }
    let error = error.filter(|e| e.field == "adjust");
    let problems: Vec<&ledger::households::Problem> = error
        .map(|e| e.problems.iter().collect())
        .unwrap_or_default();
    let typed = error.and_then(|e| e.typed.clone()).unwrap_or_default();
    let invalid = |f: &str| problems.iter().any(|p| p.field == f).then_some("true");
    let errors = |f: &str| {
        html! { @for p in problems.iter().filter(|p| p.field == f) { p.field-error id=(format!("adjust-{f}-error")) role="alert" { (problem_text(lang, p)) } } }
    };
    let name = |id: &str| match (aud, households.get(id)) {
        (Audience::Authorised, Some(h)) => format!("{id} {}", h.head),
        _ => id.to_owned(),
    };
    // Only the households on the registry now are offered (a retired one is refused).
    let retired: std::collections::HashSet<String> = state
        .store
        .households_of(&VillageId::new(code))
        .await?
        .into_iter()
        .filter(|r| r.retired())
        .map(|r| r.household.id.to_string())
        .collect();
    let mut live: Vec<&crate::domain::Household> = households
        .values()
        .filter(|h| !retired.contains(h.id.as_str()))
        .collect();
    live.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let beijing = chrono_tz::Asia::Shanghai;
    Ok(html! {
        section #adjustments {
            h2 { (tr(lang, "adjust.title")) }
            p.muted { (tr(lang, "adjust.intro")) }
            @if may {
                form.plan-step #adjust-form method="post" action=(format!("/villages/{code}/adjustments")) {
                    @if let Some(csrf) = caller.csrf.as_deref() { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                    label { (tr(lang, "adjust.household")) " "
                        select name="household" aria-invalid=[invalid("household")] {
                            @for h in &live {
                                option value=(h.id) selected[typed.household == h.id.as_str()] { (name(h.id.as_str())) }
                            }
                        }
                    }
                    (errors("household"))
                    label { (tr(lang, "adjust.month")) " " input type="text" name="month" size="8" placeholder="YYYY-MM" value=(typed.month) aria-invalid=[invalid("adjust_month")]; }
                    (errors("adjust_month"))
                    label { (tr(lang, "adjust.corrects")) " " input type="text" name="corrects" size="8" placeholder="YYYY-MM" value=(typed.corrects) aria-invalid=[invalid("corrects")]; }
                    (errors("corrects"))
                    label { (tr(lang, "adjust.amount")) " " input type="text" name="amount" inputmode="decimal" size="12" value=(typed.amount) aria-invalid=[invalid("adjust_amount")]; }
                    (errors("adjust_amount"))
                    label { (tr(lang, "adjust.reason")) " " input type="text" name="reason" size="40" placeholder=(tr(lang, "adjust.reason_hint")) value=(typed.reason) aria-invalid=[invalid("reason")]; }
                    (errors("reason"))
                    button type="submit" { (tr(lang, "adjust.submit")) }
                }
            }
            @if !recorded.is_empty() {
                table #adjustments-table {
                    thead { tr {
                        th { (tr(lang, "adjust.household")) } th { (tr(lang, "adjust.month")) }
                        th { (tr(lang, "adjust.corrects")) } th.num { (tr(lang, "adjust.amount")) }
                        th { (tr(lang, "adjust.reason")) } th { (tr(lang, "receipt.recorded")) }
                    } }
                    tbody { @for a in &recorded {
                        tr data-household=(a.household) data-month=(a.month) {
                            td { (name(&a.household)) } td { (a.month) } td { (a.corrects) }
                            td.num { (a.amount) } td { (a.reason) }
                            td { (a.by) " · " (local_time(a.at, beijing)) }
                        }
                    } }
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
struct AdjustmentForm {
    #[serde(default)]
    household: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    corrects: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Posts a payout adjustment; each problem shows next to its field, what was typed stays in the
/// form, and nothing is kept.
async fn adjustment_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: AdjustmentForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    let input = ledger::AdjustmentInput {
        household: form.household,
        month: form.month,
        corrects: form.corrects,
        amount: form.amount,
        reason: form.reason,
    };
    match ledger::record_adjustment(
        &state.store,
        &state.deployment,
        &VillageId::new(&code),
        &input,
        &account.username,
    )
    .await?
    {
        Ok(()) => Ok(
            axum::response::Redirect::to(&format!("/villages/{code}#adjustments")).into_response(),
        ),
        Err(problems) => {
            let e = FormError {
                field: "adjust",
                message: String::new(),
                problems,
                typed: Some(input),
                attendance: Vec::new(),
            };
            let (status, page) =
                render_village(&state, &caller, &code, None, None, Some(e)).await?;
            Ok((status, page).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct OpeningForm {
    #[serde(default)]
    balance: String,
    #[serde(default)]
    advance_outstanding: String,
    #[serde(default)]
    note: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Sets the village's opening balance; each problem shows next to its field and nothing is kept.
async fn opening_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: OpeningForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    match ledger::set_opening_balance(
        &state.store,
        &state.deployment,
        &VillageId::new(&code),
        &form.balance,
        &form.advance_outstanding,
        &form.note,
        &account.username,
    )
    .await?
    {
        Ok(()) => {
            Ok(axum::response::Redirect::to(&format!("/villages/{code}#opening")).into_response())
        }
        Err(problems) => {
            let e = FormError {
                field: "opening",
                message: String::new(),
                problems,
                typed: None,
                attendance: Vec::new(),
            };
            let (status, page) =
                render_village(&state, &caller, &code, None, None, Some(e)).await?;
            Ok((status, page).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct ReviewForm {
    #[serde(default)]
    note: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// The village's accountant confirms the month's statement; a refusal (a paid month) shows next
/// to the form.
async fn review_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, month)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: ReviewForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    let ym = parse_month(&month)?;
    match ledger::review_month(
        &state.store,
        &VillageId::new(&code),
        ym,
        &account.username,
        &form.note,
    )
    .await
    {
        Ok(_) => Ok(axum::response::Redirect::to(&href(
            &format!("/villages/{code}"),
            &[("month", &ym.to_string())],
        ))
        .into_response()),
        Err(ledger::Error::Locked(m)) => {
            let e = FormError {
                field: "review",
                message: trf(caller.lang, "review.locked", &[("month", &m)]),
                problems: Vec::new(),
                typed: None,
                attendance: Vec::new(),
            };
            let (status, page) =
                render_village(&state, &caller, &code, Some(ym), None, Some(e)).await?;
            Ok((status, page).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

async fn plan_panel(
    state: &AppState,
    caller: &Caller,
    code: &str,
    year: i32,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    let current = state.store.plan_state(code, year).await?;
    let history = state.store.plan_history(code, year).await?;
    let declared =
        ledger::plans::plan_of(&state.store, &state.deployment, &VillageId::new(code), year)
            .await?
            .is_some();
    let place = state.geography.village(code);
    let mut steps: Vec<PlanState> = current
        .next_states()
        .into_iter()
        .filter(|to| decide(caller.who(), Action::MovePlan(current, *to), place).allowed())
        .collect();
    // The step forward first (and chosen), going back after it.
    steps.sort_by_key(|to| (*to < current, *to));
    let csrf = caller.csrf.as_deref();
    Ok(html! {
        section #plan data-state=(current.code()) {
            h2 { (trf(lang, "plan.title", &[("year", &year)])) }
            p { (tr(lang, "plan.now")) " " b #plan-state { (plan_state_label(lang, current)) } }
            (plan_track(lang, current))
            p #plan-page { a #plan-page-link href=(format!("/villages/{code}/plans/{year}")) { (tr(lang, "plan_edit.link")) } }
            @if !declared {
                p.note { (tr(lang, "plan.not_declared")) }
            } @else if let (false, Some(csrf)) = (steps.is_empty(), csrf) {
                form.plan-step #plan-form method="post" action=(format!("/villages/{code}/plans/{year}/transitions")) {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    fieldset {
                        legend { (tr(lang, "plan.next_step")) }
                        @for (i, to) in steps.iter().enumerate() {
                            label.choice {
                                input type="radio" name="to" value=(to.code()) checked[i == 0];
                                " " (plan_step_label(lang, current, *to))
                            }
                        }
                    }
                    label { (tr(lang, "plan.note")) " "
                        input type="text" name="note" size="50"
                            placeholder=(tr(lang, "plan.note_hint"))
                            aria-invalid=[error.is_some_and(|e| e.field == "note").then_some("true")];
                    }
                    label { (tr(lang, "plan.who")) " " input type="text" name="who" size="16"; }
                    (step_record_fields(lang, current, steps[0], error))
                    @if let Some(e) = error {
                        p.field-error #plan-error data-field=(e.field) role="alert" { (e.message) }
                    }
                    button type="submit" { (tr(lang, "plan.submit")) }
                }
            } @else if csrf.is_some() {
                p.muted { (tr(lang, "plan.no_step_for_you")) }
            }
            @if !history.is_empty() {
                table #plan-history {
                    thead { tr {
                        th { (tr(lang, "plan.col_at")) } th { (tr(lang, "plan.col_step")) }
                        th { (tr(lang, "plan.col_who")) } th { (tr(lang, "plan.note")) }
                        th { (tr(lang, "plan.col_record")) }
                    } }
                    tbody { @for t in &history {
                        tr data-to=(t.to) {
                            td { (local_time(t.at, chrono_tz::Asia::Shanghai)) }
                            td { (PlanState::parse(&t.from).map_or(t.from.clone(), |s| plan_state_label(lang, s)))
                                 " → " (PlanState::parse(&t.to).map_or(t.to.clone(), |s| plan_state_label(lang, s))) }
                            td { (t.who) }
                            td { (t.note) }
                            td.record { (step_record_text(lang, t.record.as_deref())) }
                        }
                    } }
                }
            }
        }
    })
}

/// The fields of what the step forward records: the four 四议 meeting dates, or the day the plan
/// or its result was made public, and the names of the documents kept; each problem next to its
/// field.
fn step_record_fields(
    lang: Lang,
    current: PlanState,
    forward: PlanState,
    error: Option<&FormError>,
) -> Markup {
    use ledger::steps::{needs, Needs, MEETINGS};
    let problems: Vec<&ledger::households::Problem> = error
        .map(|e| e.problems.iter().collect())
        .unwrap_or_default();
    let invalid = |field: &str| problems.iter().any(|p| p.field == field).then_some("true");
    let messages = |field: &str| -> Markup {
        html! {
            @for p in problems.iter().filter(|p| p.field == field) {
                p.field-error id=(format!("{field}-error")) role="alert" { (problem_text(lang, p)) }
            }
        }
    };
    let needs = needs(current, forward);
    html! {
        @match needs {
            Needs::Meetings => {
                fieldset #meetings {
                    legend { (tr(lang, "plan.meetings")) }
                    @for kind in MEETINGS {
                        @let field = format!("meeting_{kind}");
                        label { (tr(lang, &format!("plan.meeting_{kind}"))) " "
                            input type="date" name=(field) aria-invalid=[invalid(&field)]; }
                        (messages(&field))
                    }
                }
            }
            Needs::Publication => {
                label { (tr(lang, if forward == PlanState::ResultPublished { "plan.result_published_on" } else { "plan.published_on" })) " "
                    input type="date" name="published_on" aria-invalid=[invalid("published_on")]; }
                (messages("published_on"))
            }
            Needs::Nothing => {}
        }
        @if needs != Needs::Nothing {
            label { (tr(lang, "plan.attachments")) br;
                textarea name="attachments" rows="3" cols="50" placeholder=(tr(lang, "plan.attachments_hint")) aria-invalid=[invalid("attachments")] {} }
            (messages("attachments"))
        }
    }
}

/// An income line's basis in the caller's language: the ledger writes it as
/// `share W/T of received R − costs C`; anything else is shown as written.
fn income_reference(lang: Lang, reference: &str) -> String {
    let parsed = (|| {
        let rest = reference.strip_prefix("share ")?;
        let (share, rest) = rest.split_once(" of received ")?;
        let (received, costs) = rest.split_once(" − costs ")?;
        Some((share, received, costs))
    })();
    match parsed {
        Some((share, received, costs)) => trf(
            lang,
            "village.income_reference",
            &[
                ("share", &share),
                ("received", &received),
                ("costs", &costs),
            ],
        ),
        None => reference.to_owned(),
    }
}

/// A note of the month's allocation in the caller's language, for the notes the money core
/// writes about a village; any other note is shown as written.
fn note_text(lang: Lang, note: &str) -> String {
    let state_label = |s: &str| match PlanState::parse(s) {
        Some(state) => plan_state_label(lang, state),
        None if s.starts_with("not yet in the workflow") => {
            plan_state_label(lang, PlanState::Draft)
        }
        None => s.to_owned(),
    };
    if let Some(rest) = note.strip_prefix("plan ") {
        if let Some((year, rest)) = rest.split_once(" is ") {
            if let Some(state) =
                rest.strip_suffix(": no payouts (payouts only in ACTIVE, POLICY.md 6)")
            {
                return trf(
                    lang,
                    "village.note_plan_not_active",
                    &[("year", &year), ("state", &state_label(state))],
                );
            }
        }
    }
    if let Some(year) = note
        .strip_prefix("no annual plan for ")
        .and_then(|r| r.strip_suffix(": no payouts; income stays in the village account"))
    {
        return trf(lang, "village.note_no_plan", &[("year", &year)]);
    }
    if let Some((amount, reference)) = note
        .strip_prefix("county advance ")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|r| r.split_once(" ("))
    {
        return trf(
            lang,
            "village.note_advance",
            &[("amount", &amount), ("reference", &reference)],
        );
    }
    if let Some(amount) = note.strip_suffix(" of county advances settled from subsidy received") {
        return trf(lang, "village.note_advance_settled", &[("amount", &amount)]);
    }
    if let Some(short) = note
        .strip_prefix("overdrawn by ")
        .and_then(|r| r.strip_suffix(" (CASH_ON_HAND disabled)"))
    {
        return trf(lang, "village.note_overdrawn", &[("amount", &short)]);
    }
    note.to_owned()
}

/// A problem in the caller's language.
pub(super) fn problem_text(lang: Lang, p: &ledger::households::Problem) -> String {
    super::i18n::trs(lang, &p.key, &p.args)
}

/// What a step recorded, for the history: meeting dates, the publication day, the documents.
fn step_record_text(lang: Lang, record: Option<&str>) -> String {
    let Some(r) = record.and_then(|r| serde_json::from_str::<ledger::steps::StepRecord>(r).ok())
    else {
        return String::new();
    };
    let mut parts: Vec<String> = r
        .meetings
        .iter()
        .map(|m| format!("{} {}", tr(lang, &format!("plan.meeting_{}", m.kind)), m.on))
        .collect();
    if let Some(on) = r.published_on {
        parts.push(trf(lang, "plan.published_text", &[("on", &on)]));
    }
    if !r.attachments.is_empty() {
        parts.push(trf(
            lang,
            "plan.attachments_text",
            &[("names", &r.attachments.join("、"))],
        ));
    }
    parts.join("；")
}

/// The workflow as a row of steps, the current one marked.
fn plan_track(lang: Lang, current: PlanState) -> Markup {
    html! {
        ol.track {
            @for s in PlanState::ALL {
                li class=[if s == current { Some("now") } else if s < current { Some("done") } else { None }] {
                    (plan_state_label(lang, s))
                }
            }
        }
    }
}

/// What a step means, for the radio button that takes it.
fn plan_step_label(lang: Lang, from: PlanState, to: PlanState) -> String {
    if to < from {
        trf(
            lang,
            "plan.step_back",
            &[("to", &plan_state_label(lang, to))],
        )
    } else {
        plan_state_label(lang, to)
    }
}

/// The form of a plan step from the village page.
#[derive(Debug, Deserialize)]
struct StepForm {
    #[serde(default)]
    to: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    who: String,
    #[serde(default)]
    meeting_proposal: String,
    #[serde(default)]
    meeting_consultation: String,
    #[serde(default)]
    meeting_review: String,
    #[serde(default)]
    meeting_resolution: String,
    #[serde(default)]
    published_on: String,
    #[serde(default)]
    attachments: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Takes a plan step from the village page's form; a refusal shows next to the form and changes
/// nothing.
async fn plan_step_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, year)): Path<(String, i32)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: StepForm = super::extract::parse_form(&body)?;
    let lang = caller.lang;
    let refuse = |field: &'static str, message: String| FormError {
        field,
        message,
        problems: Vec::new(),
        typed: None,
        attendance: Vec::new(),
    };
    let from = state.store.plan_state(&code, year).await?;
    let input = ledger::steps::StepInput {
        meetings: [
            form.meeting_proposal.clone(),
            form.meeting_consultation.clone(),
            form.meeting_review.clone(),
            form.meeting_resolution.clone(),
        ],
        published_on: form.published_on.clone(),
        attachments: form.attachments.clone(),
    };
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let outcome = match PlanState::parse(&form.to) {
        None => Err(refuse("to", tr(lang, "plan.choose_step"))),
        Some(_) if form.note.trim().is_empty() => {
            Err(refuse("note", tr(lang, "plan.note_required")))
        }
        Some(to) => match ledger::steps::check(from, to, &input, today) {
            Err(problems) => Err(FormError {
                field: "record",
                message: tr(lang, "plan.record_refused"),
                problems,
                typed: None,
                attendance: Vec::new(),
            }),
            Ok(record) => match move_plan(
                &state,
                &caller,
                &code,
                year,
                to,
                &form.note,
                Some(form.who.as_str()),
                &record,
            )
            .await
            {
                Ok(()) => Ok(()),
                Err(
                    ApiError::Conflict(m) | ApiError::Unprocessable(m) | ApiError::Forbidden(m),
                ) => Err(refuse("to", m)),
                Err(other) => return Err(other),
            },
        },
    };
    match outcome {
        Ok(()) => {
            Ok(axum::response::Redirect::to(&format!("/villages/{code}#plan")).into_response())
        }
        Err(e) => {
            let (status, page) =
                render_village(&state, &caller, &code, None, None, Some(e)).await?;
            Ok((status, page).into_response())
        }
    }
}

/// A village's households by id, the registry's (retired ones too) over the file's seed: the
/// names its statements show.
pub(super) async fn village_households(
    state: &AppState,
    code: &str,
) -> Result<HashMap<String, crate::domain::Household>, ApiError> {
    let mut hh: HashMap<String, crate::domain::Household> = state
        .deployment
        .households
        .iter()
        .filter(|h| h.village.as_str() == code)
        .map(|h| (h.id.as_str().to_owned(), h.clone()))
        .collect();
    for r in state.store.households_of(&VillageId::new(code)).await? {
        hh.insert(r.household.id.as_str().to_owned(), r.household);
    }
    Ok(hh)
}

/// The statement table: opening balance, every line, the totals.
fn statement(
    households: &HashMap<String, crate::domain::Household>,
    lang: Lang,
    row: &VillageMonthRow,
    aud: Audience,
) -> Markup {
    let hh: HashMap<&str, &crate::domain::Household> =
        households.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let totals = [
        ("village.income_total", row.income_fen),
        ("village.advance", row.advance_fen),
        ("village.advance_repaid", row.advance_repaid_fen),
        ("village.cash", row.cash_fen),
        ("village.payouts", row.payouts_fen),
        ("village.reserve", row.reserve_fen),
        ("village.carry_over", row.carry_over_fen),
        ("village.closing", row.closing_fen),
    ];
    html! {
        table #statement {
            thead { tr {
                th { (tr(lang, "village.col_line")) } th { (tr(lang, "village.col_payee")) }
                th { (tr(lang, "village.col_reference")) } th.num { (tr(lang, "village.col_amount")) }
            } }
            tbody {
                tr { td { (tr(lang, "village.opening")) } td {} td {} td.num { (yuan(row.opening_fen)) } }
                @for e in &row.entries {
                    tr data-line=(e.line) {
                        td { @if e.kind == "INCOME" { (tr(lang, "village.income")) } @else { (line_label(lang, &e.line)) } }
                        td { (payee_label(e.household.as_deref(), &e.payee, &hh, aud)) }
                        td { @if e.kind == "INCOME" { (income_reference(lang, &e.reference)) } @else { (e.reference) } }
                        td.num { (yuan(e.amount_fen)) }
                    }
                }
            }
            tfoot { @for (key, fen) in totals {
                tr data-total=(key.trim_start_matches("village.")) { th { (tr(lang, key)) } th {} th {} th.num { (yuan(fen)) } }
            } }
        }
    }
}

/// A plan line's name; lines the page does not know show their code.
pub(super) fn line_label(lang: Lang, code: &str) -> String {
    match crate::allocate::PlanLine::parse(code) {
        Some(l) => plan_line_label(lang, l),
        None => code.to_owned(),
    }
}

/// A plan line's name in the page's language.
pub(super) fn plan_line_label(lang: Lang, line: crate::allocate::PlanLine) -> String {
    tr(
        lang,
        &format!("plan.line_{}", line.code().to_ascii_lowercase()),
    )
}

/// `?public=1` shows the masked version to someone who may see names: the one the village posts.
#[derive(Debug, Default, Deserialize)]
struct NoticeQuery {
    #[serde(default)]
    public: Option<String>,
}

async fn notice_page(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, month)): Path<(String, String)>,
    Query(q): Query<NoticeQuery>,
) -> Result<Html<String>, ApiError> {
    let lang = caller.lang;
    let name = village_name(&state, &code)?;
    let row = load_month(&state, &code, &month).await?;
    let aud = if q.public.is_some() {
        Audience::Public
    } else {
        audience(&state, &caller, &code)
    };
    let body = html! {
        article.notice #notice {
            h1 { (trf(lang, "notice.title", &[("village", &name)])) }
            p { (trf(lang, "notice.period", &[("month", &row.month)])) " · " (code) " · " (status_badge(lang, row.provisional, &row.month_status)) }
            (statement(&village_households(&state, &code).await?, lang, &row, aud))
            @if aud == Audience::Public {
                p.muted #masking { (tr(lang, "notice.masked")) }
            } @else {
                p.note #full-version { "FULL VERSION · " (tr(lang, "notice.full")) }
                p.noprint { a #public-version href=(href(&format!("/villages/{code}/notice/{}", row.month), &[("public", "1")])) { (tr(lang, "notice.public_version")) } }
            }
            p { (tr(lang, "notice.objections")) }
            p.signature { (trf(lang, "notice.signed", &[("village", &name)])) }
            p.noprint { button type="button" onclick="window.print()" { (tr(lang, "common.print")) } }
        }
    };
    let title = format!("{} {name} {}", tr(lang, "notice.short"), row.month);
    Ok(Html(
        if caller.who().is_some() {
            frame(&caller, &title, body)
        } else {
            bare_frame(lang, &title, body)
        }
        .into_string(),
    ))
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
    let registry = crate::ledger::households::with_retired(&state.store, &state.deployment).await?;
    let table = match kind {
        "statement" => export::statement_table(&row, &registry, aud),
        "roster" if may_roster => export::roster_table(&row, &registry),
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
    let households = village_households(&state, &code).await?;
    let hh: HashMap<&str, &crate::domain::Household> =
        households.iter().map(|(k, v)| (k.as_str(), v)).collect();
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
    /// The plan's figures; absent while the village has no plan for the year.
    figures: Option<PlanFiguresJson>,
}

/// A plan's income and line budgets, and what its planned payments add up to per line, in yuan with
/// two decimals (the payments themselves name households: they are on the plan's page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PlanFigures)]
struct PlanFiguresJson {
    /// `registry` (drafted in Sunshare) or `file` (the deployment file's).
    #[schema(schema_with = plan_source_schema)]
    source: &'static str,
    #[schema(example = "100000.00")]
    expected_net: String,
    expected_gross: Option<String>,
    job_wages: String,
    temp_labour: String,
    small_project: String,
    reward_subsidy: String,
    reserve: String,
    /// The planned temporary labour, small projects and rewards, each line in total.
    temp_labour_planned: String,
    small_project_planned: String,
    reward_subsidy_planned: String,
    /// A household's status change applies at once, not at the policy's default date.
    status_change_immediate: bool,
}

fn plan_source_schema() -> utoipa::openapi::Object {
    super::openapi::string_enum(&["registry", "file"], "where the plan is kept")
}

impl PlanFiguresJson {
    fn of(p: &crate::allocate::VillagePlan, stored: bool) -> PlanFiguresJson {
        let total = |amounts: &mut dyn Iterator<Item = Fen>| Fen(amounts.map(|f| f.0).sum());
        PlanFiguresJson {
            source: if stored { "registry" } else { "file" },
            expected_net: p.expected_net.to_string(),
            expected_gross: p.expected_gross.map(|g| g.to_string()),
            job_wages: p.lines.job_wages.to_string(),
            temp_labour: p.lines.temp_labour.to_string(),
            small_project: p.lines.small_project.to_string(),
            reward_subsidy: p.lines.reward_subsidy.to_string(),
            reserve: p.lines.reserve.to_string(),
            temp_labour_planned: total(&mut p.temp_labour.iter().map(|t| t.amount)).to_string(),
            small_project_planned: total(&mut p.projects.iter().map(|s| s.amount)).to_string(),
            reward_subsidy_planned: total(&mut p.rewards.iter().map(|r| r.amount)).to_string(),
            status_change_immediate: p.status_change_immediate,
        }
    }
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
    let figures = ledger::plans::plan_of(
        &state.store,
        &state.deployment,
        &VillageId::new(&code),
        year,
    )
    .await?
    .map(|(p, stored)| PlanFiguresJson::of(&p, stored.is_some()));
    Ok(axum::Json(PlanJson {
        village: code,
        year,
        state: current.to_string(),
        next: current.next_states().iter().map(|s| s.code()).collect(),
        transitions,
        figures,
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
    let to = PlanState::parse(&req.to)
        .ok_or_else(|| ApiError::invalid("to", format!("'{}' is not a plan state", req.to)))?;
    move_plan(
        &state,
        &caller,
        &code,
        year,
        to,
        &req.note,
        req.who.as_deref(),
        &ledger::steps::StepRecord::default(),
    )
    .await?;
    plan_json(State(state), Path((code, year))).await
}

/// One plan step for the signed-in caller, decided for exactly this step and recorded with who
/// took it (and who was at the desk, when one account is shared).
#[allow(clippy::too_many_arguments)]
async fn move_plan(
    state: &AppState,
    caller: &Caller,
    code: &str,
    year: i32,
    to: PlanState,
    note: &str,
    desk: Option<&str>,
    record: &ledger::steps::StepRecord,
) -> Result<(), ApiError> {
    let account = caller.signed_in()?;
    let from = state.store.plan_state(code, year).await?;
    if let Decision::Forbidden(reason) = decide(
        Some(account),
        Action::MovePlan(from, to),
        state.geography.village(code),
    ) {
        return Err(ApiError::Forbidden(reason));
    }
    let name = account.username.as_str();
    let who = match desk.map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) => format!("{w} (via {name})"),
        None => name.to_owned(),
    };
    ledger::transition_recorded(
        &state.store,
        &state.deployment,
        &VillageId::new(code),
        year,
        to,
        &who,
        note,
        record,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledgers_own_texts_are_shown_in_the_callers_language() {
        let r = "share 1/1 of received 9960.00 − costs 0.00";
        assert_eq!(
            income_reference(Lang::Zh, r),
            "持股 1/1，电站收入 9960.00 元，扣除成本 0.00 元"
        );
        assert!(income_reference(Lang::En, r).contains("share 1/1"));
        assert_eq!(
            income_reference(Lang::Zh, "something else"),
            "something else"
        );
        let cases = [
            ("plan 2026 is not yet in the workflow (DRAFT): no payouts (payouts only in ACTIVE, POLICY.md 6)", "2026 年度方案处于“草拟”，本月不支出（方案执行中才支出）"),
            ("plan 2026 is COUNTY_FILED: no payouts (payouts only in ACTIVE, POLICY.md 6)", "2026 年度方案处于“县级备案”，本月不支出（方案执行中才支出）"),
            ("no annual plan for 2027: no payouts; income stays in the village account", "尚无 2027 年度方案：本月不支出，收益留存村集体账户"),
            ("county advance 3000.00 (县财政垫付 2026-1)", "县级垫付 3000.00 元（县财政垫付 2026-1）"),
            ("120.00 of county advances settled from subsidy received", "以到账补贴归还县级垫付 120.00 元"),
            ("overdrawn by 5.00 (CASH_ON_HAND disabled)", "透支 5.00 元（未启用“以收定支”）"),
        ];
        for (note, zh) in cases {
            assert_eq!(note_text(Lang::Zh, note), zh, "{note}");
        }
        assert_eq!(note_text(Lang::Zh, "an unknown note"), "an unknown note");
    }
}
