//! The household registry of a village in the browser: the list with the form to add a household,
//! a household's page (edit, status and change history, retire), and the import of the
//! poverty-registry roster (建档立卡) with a preview of every line before anything is stored.
//!
//! Reading needs the village's personal-data right; changing needs `EditRegistry` (the village's
//! accountant, administrators). A refused form is shown again with each message next to its field
//! (`aria-invalid`), status 422, and nothing stored.

use super::guard::{Caller, CSRF_FIELD};
use super::i18n::{tr, trf, Lang};
use super::ledger::problem_text;
use super::page::{frame, href, local_time};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::domain::JobPost;
use crate::domain::{Household, HouseholdId, LabourCapacity, PovertyStatus, VillageId};
use crate::ledger::households::{self as registry, HouseholdInput, Problem, RosterLine, Verdict};
use crate::ledger::jobs::JobInput;
use crate::ledger::roster;
use crate::store::{HouseholdChangeRow, HouseholdRow, Origin, RosterImportRow};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;
use strum::VariantArray;

use super::extract::{Path, Query};

pub fn routes() -> Routes {
    let read = Access::village(Action::ViewPersonalData, "code");
    let edit = Access::village(Action::EditRegistry, "code");
    Routes::new()
        .get("/villages/{code}/households", read, list_page)
        .post("/villages/{code}/households", edit, add_form)
        .post("/villages/{code}/households/import", edit, import_form)
        .upload(super::MAX_UPLOAD)
        .post("/villages/{code}/households/import/apply", edit, apply_form)
        .get(
            "/villages/{code}/households/{household}",
            read,
            household_page,
        )
        .post("/villages/{code}/households/{household}", edit, edit_form)
        .post(
            "/villages/{code}/households/{household}/retire",
            edit,
            retire_form,
        )
        .post("/villages/{code}/jobs", edit, add_job_form)
        .post("/villages/{code}/jobs/{job}/end", edit, end_job_form)
}

/// Beijing time for the registry's lists (a village's stations share its zone).
const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

fn at(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(String::new, |t| local_time(t, TZ))
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

fn status_label(lang: Lang, s: PovertyStatus) -> String {
    tr(lang, &format!("household.status_{s}"))
}

fn labour_label(lang: Lang, l: LabourCapacity) -> String {
    tr(lang, &format!("household.labour_{l}"))
}

fn yes_no(lang: Lang, b: bool) -> String {
    tr(lang, if b { "household.yes" } else { "household.no" })
}

/// A bank account as lists show it: the last four digits.
fn masked_account(account: Option<&str>) -> String {
    match account {
        Some(a) if a.len() > 4 => format!("•••• {}", &a[a.len() - 4..]),
        Some(a) => a.to_owned(),
        None => "–".to_owned(),
    }
}

/// The session's CSRF token for a form (API-token callers have none and need none).
fn csrf_field(caller: &Caller) -> Markup {
    html! { @if let Some(csrf) = caller.csrf.as_deref() { input type="hidden" name=(CSRF_FIELD) value=(csrf); } }
}

fn current_status(h: &Household) -> Option<&crate::domain::StatusPeriod> {
    h.status.iter().max_by_key(|p| p.from)
}

/// The form of a household (add or edit), as typed.
#[derive(Debug, Default, Deserialize)]
struct HouseholdForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    head: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    status_from: String,
    #[serde(default)]
    deep_poverty: Option<String>,
    #[serde(default)]
    labour: String,
    #[serde(default)]
    birth_year: String,
    #[serde(default)]
    bank_account: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

impl HouseholdForm {
    fn input(&self) -> HouseholdInput {
        HouseholdInput {
            id: self.id.clone(),
            head: self.head.clone(),
            status: self.status.clone(),
            status_from: self.status_from.clone(),
            deep_poverty: self.deep_poverty.as_deref().is_some_and(|v| !v.is_empty()),
            labour: self.labour.clone(),
            birth_year: self.birth_year.clone(),
            bank_account: self.bank_account.clone(),
        }
    }
}

fn input_of(h: &Household) -> HouseholdInput {
    HouseholdInput {
        id: h.id.as_str().to_owned(),
        head: h.head.clone(),
        status: current_status(h).map_or_else(String::new, |p| p.status.to_string()),
        status_from: String::new(),
        deep_poverty: h.deep_poverty,
        labour: h.labour.to_string(),
        birth_year: h.birth_year.map_or_else(String::new, |y| y.to_string()),
        bank_account: h.bank_account.clone().unwrap_or_default(),
    }
}

/// The household form's fields with their values and the problems next to them.
fn household_fields(lang: Lang, v: &HouseholdInput, problems: &[Problem], new: bool) -> Markup {
    let errors = |field: &str| -> Vec<String> {
        problems
            .iter()
            .filter(|p| p.field == field)
            .map(|p| problem_text(lang, p))
            .collect()
    };
    let invalid = |field: &str| problems.iter().any(|p| p.field == field).then_some("true");
    let error_list = |field: &str| {
        html! { @for e in errors(field) { p.field-error id=(format!("{field}-error")) role="alert" { (e) } } }
    };
    html! {
        @if new {
            label { (tr(lang, "household.col_id")) " "
                input type="text" name="id" value=(v.id) maxlength="40" aria-invalid=[invalid("id")]; }
            (error_list("id"))
        }
        label { (tr(lang, "household.col_head")) " "
            input type="text" name="head" value=(v.head) maxlength="40" aria-invalid=[invalid("head")]; }
        (error_list("head"))
        label { (tr(lang, "household.col_status")) " "
            select name="status" aria-invalid=[invalid("status")] {
                @for s in PovertyStatus::VARIANTS {
                    option value=(s.to_string()) selected[v.status == s.to_string()] { (status_label(lang, *s)) }
                }
            }
        }
        (error_list("status"))
        label { (tr(lang, "household.col_status_from")) " "
            input type="date" name="status_from" value=(v.status_from) aria-invalid=[invalid("status_from")]; }
        @if !new { span.muted { " " (tr(lang, "household.status_hint")) } }
        (error_list("status_from"))
        label { (tr(lang, "household.col_labour")) " "
            select name="labour" aria-invalid=[invalid("labour")] {
                @for l in LabourCapacity::VARIANTS {
                    option value=(l.to_string()) selected[v.labour == l.to_string()] { (labour_label(lang, *l)) }
                }
            }
        }
        (error_list("labour"))
        label { input type="checkbox" name="deep_poverty" value="yes" checked[v.deep_poverty]; " " (tr(lang, "household.col_deep")) }
        label { (tr(lang, "household.col_birth_year")) " "
            input type="number" name="birth_year" value=(v.birth_year) min="1900" aria-invalid=[invalid("birth_year")]; }
        (error_list("birth_year"))
        label { (tr(lang, "household.col_bank")) " "
            input type="text" name="bank_account" value=(v.bank_account) inputmode="numeric" aria-invalid=[invalid("bank_account")]; }
        span.muted { " " (tr(lang, "household.bank_hint")) }
        (error_list("bank_account"))
    }
}

/// What the list page shows above its tables.
enum Notice {
    None,
    Added(String),
    Applied { add: usize, edit: usize },
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    added: Option<String>,
    #[serde(default)]
    applied_add: Option<usize>,
    #[serde(default)]
    applied_edit: Option<usize>,
}

async fn list_page(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, ApiError> {
    let notice = match (q.added, q.applied_add, q.applied_edit) {
        (Some(id), _, _) => Notice::Added(id),
        (None, Some(add), edit) => Notice::Applied {
            add,
            edit: edit.unwrap_or(0),
        },
        _ => Notice::None,
    };
    render_list(&state, &caller, &code, &notice, &Forms::default()).await
}

/// What the registry page's forms show after a refusal: what was typed and the problems.
#[derive(Debug, Default)]
struct Forms {
    /// The add-household form.
    draft: HouseholdInput,
    problems: Vec<Problem>,
    /// Why a roster upload was not read.
    import: Option<String>,
    /// The add-job form.
    job: JobInput,
    job_problems: Vec<Problem>,
    /// The job whose end was refused, and why.
    end: Option<(String, Vec<Problem>)>,
}

/// The registry page, its forms refilled from `forms` after a refusal.
async fn render_list(
    state: &AppState,
    caller: &Caller,
    code: &str,
    notice: &Notice,
    forms: &Forms,
) -> Result<Html<String>, ApiError> {
    let (draft, problems, import) = (&forms.draft, &forms.problems[..], forms.import.clone());
    let lang = caller.lang;
    let name = village_name(state, code)?;
    let rows = state.store.households_of(&VillageId::new(code)).await?;
    let (live, retired): (Vec<&HouseholdRow>, Vec<&HouseholdRow>) =
        rows.iter().partition(|r| !r.retired());
    let may_edit = state
        .geography
        .may_on_village(caller.who(), Action::EditRegistry, code);
    let jobs =
        registry::village_jobs(&state.store, &state.deployment, &VillageId::new(code)).await?;
    let draft = if draft.status.is_empty() && draft.labour.is_empty() {
        HouseholdInput {
            status: PovertyStatus::Exited.to_string(),
            labour: LabourCapacity::Full.to_string(),
            ..draft.clone()
        }
    } else {
        draft.clone()
    };
    let body = html! {
        h1 { (trf(lang, "household.title", &[("village", &name)])) " " span.muted { (code) } }
        p.muted { (tr(lang, "household.intro")) " " a href=(format!("/villages/{code}")) { (tr(lang, "household.back")) } }
        @match notice {
            Notice::Added(id) => p.note #registry-done { (trf(lang, "household.added", &[("id", id)])) },
            Notice::Applied { add, edit } => p.note #registry-done { (trf(lang, "household.applied", &[("add", add), ("edit", edit)])) },
            Notice::None => {},
        }
        p #household-count { (trf(lang, "household.count", &[("count", &live.len())])) }
        table #households {
            thead { tr {
                th { (tr(lang, "household.col_id")) } th { (tr(lang, "household.col_head")) }
                th { (tr(lang, "household.col_status")) } th { (tr(lang, "household.col_status_from")) }
                th { (tr(lang, "household.col_deep")) } th { (tr(lang, "household.col_labour")) }
                th.num { (tr(lang, "household.col_birth_year")) } th { (tr(lang, "household.col_bank")) }
                th { (tr(lang, "household.col_origin")) } th { (tr(lang, "household.col_updated")) }
            } }
            tbody { @for r in &live {
                @let h = &r.household;
                tr data-household=(h.id) {
                    td { a href=(format!("/villages/{code}/households/{}", h.id)) { (h.id) } }
                    td { (h.head) }
                    @match current_status(h) {
                        Some(p) => { td data-status=(p.status.to_string()) { (status_label(lang, p.status)) } td { (p.from) } }
                        None => { td {} td {} }
                    }
                    td { (yes_no(lang, h.deep_poverty)) }
                    td { (labour_label(lang, h.labour)) }
                    td.num { (h.birth_year.map_or_else(String::new, |y| y.to_string())) }
                    td { (masked_account(h.bank_account.as_deref())) }
                    td { (origin_label(lang, r.origin)) }
                    td { (at(r.updated_ms)) " · " (who_label(lang, &r.updated_by)) }
                }
            } }
        }
        @if !retired.is_empty() {
            h2 { (tr(lang, "household.retired_title")) }
            table #retired {
                thead { tr {
                    th { (tr(lang, "household.col_id")) } th { (tr(lang, "household.col_head")) }
                    th { (tr(lang, "household.col_retired")) } th { (tr(lang, "household.col_reason")) }
                } }
                tbody { @for r in &retired {
                    tr data-household=(r.household.id) {
                        td { a href=(format!("/villages/{code}/households/{}", r.household.id)) { (r.household.id) } }
                        td { (r.household.head) }
                        td { (r.retired_ms.map(at).unwrap_or_default()) }
                        td { (r.retired_reason.as_deref().unwrap_or_default()) }
                    }
                } }
            }
        }
        (jobs_section(lang, caller, code, &jobs, &live, may_edit, forms))
        @if may_edit {
            h2 #add { (tr(lang, "household.add_title")) }
            form.plan-step #add-household method="post" action=(format!("/villages/{code}/households")) {
                (csrf_field(caller))
                (household_fields(lang, &draft, problems, true))
                button type="submit" { (tr(lang, "household.add")) }
            }
            h2 #import { (tr(lang, "household.import_title")) }
            p.muted { (tr(lang, "household.import_hint")) }
            @if let Some(message) = import {
                p.field-error #import-error role="alert" { (message) }
            }
            form.plan-step #roster-form method="post" action=(format!("/villages/{code}/households/import")) enctype="multipart/form-data" {
                (csrf_field(caller))
                label { (tr(lang, "household.import_file")) " "
                    input type="file" name="file" accept=".csv,.xlsx,.xls,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"; }
                button type="submit" { (tr(lang, "household.preview")) }
            }
        }
    };
    Ok(Html(
        frame(
            caller,
            &trf(lang, "household.title", &[("village", &name)]),
            body,
        )
        .into_string(),
    ))
}

/// Who changed a household: a user name, or the deployment file that seeded it.
fn who_label(lang: Lang, who: &str) -> String {
    if who == crate::store::SEEDED_BY {
        tr(lang, "household.origin_file")
    } else {
        who.to_owned()
    }
}

fn origin_label(lang: Lang, o: Origin) -> String {
    tr(lang, &format!("household.origin_{o}"))
}

fn what_label(lang: Lang, what: &str) -> String {
    match what {
        "added" | "imported" | "edited" | "retired" => tr(lang, &format!("household.what_{what}")),
        other => other.to_owned(),
    }
}

/// Field names of an edit in the caller's language.
fn fields_label(lang: Lang, fields: &str) -> String {
    fields
        .split(", ")
        .filter(|f| !f.is_empty())
        .map(|f| match f {
            "head" => tr(lang, "household.col_head"),
            "status" => tr(lang, "household.col_status"),
            "deep_poverty" => tr(lang, "household.col_deep"),
            "labour" => tr(lang, "household.col_labour"),
            "birth_year" => tr(lang, "household.col_birth_year"),
            "bank_account" => tr(lang, "household.col_bank"),
            other => other.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("、")
}

async fn add_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: HouseholdForm = super::extract::parse_form(&body)?;
    let who = caller.signed_in()?.username.clone();
    let input = form.input();
    match registry::add(&state.store, &VillageId::new(&code), &input, &who).await? {
        Ok(h) => Ok(Redirect::to(&href(
            &format!("/villages/{code}/households"),
            &[("added", h.id.as_str())],
        ))
        .into_response()),
        Err(problems) => {
            let forms = Forms {
                draft: input,
                problems,
                ..Forms::default()
            };
            let page = render_list(&state, &caller, &code, &Notice::None, &forms).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// The household named by the path, if it is one of the village's.
async fn household_of(
    state: &AppState,
    code: &str,
    household: &str,
) -> Result<HouseholdRow, ApiError> {
    match state.store.household(&HouseholdId::new(household)).await? {
        Some(r) if r.household.village.as_str() == code => Ok(r),
        _ => Err(ApiError::NotFound(format!(
            "no household {household} in village {code}"
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
struct SavedQuery {
    #[serde(default)]
    saved: Option<String>,
}

async fn household_page(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, household)): Path<(String, String)>,
    Query(q): Query<SavedQuery>,
) -> Result<Html<String>, ApiError> {
    let row = household_of(&state, &code, &household).await?;
    let draft = input_of(&row.household);
    render_household(&state, &caller, &code, &row, q.saved.is_some(), &draft, &[]).await
}

async fn render_household(
    state: &AppState,
    caller: &Caller,
    code: &str,
    row: &HouseholdRow,
    saved: bool,
    draft: &HouseholdInput,
    problems: &[Problem],
) -> Result<Html<String>, ApiError> {
    let lang = caller.lang;
    let name = village_name(state, code)?;
    let h = &row.household;
    let changes = state.store.household_changes(&h.id).await?;
    let may_edit = state
        .geography
        .may_on_village(caller.who(), Action::EditRegistry, code)
        && !row.retired();
    let base = format!("/villages/{code}/households/{}", h.id);
    let retire_problems: Vec<&Problem> = problems.iter().filter(|p| p.field == "reason").collect();
    let body = html! {
        h1 { (h.head) " " span.muted { (h.id) " · " (name) } }
        p { a href=(format!("/villages/{code}/households")) { (tr(lang, "household.link")) } }
        @if saved { p.note #registry-done { (tr(lang, "household.saved")) } }
        @if let (Some(ms), reason) = (row.retired_ms, row.retired_reason.as_deref()) {
            p.note #retired-note { (trf(lang, "household.retired_note", &[("at", &at(ms)), ("reason", &reason.unwrap_or_default())])) }
        }
        table #household {
            tbody {
                tr { th { (tr(lang, "household.col_deep")) } td { (yes_no(lang, h.deep_poverty)) } }
                tr { th { (tr(lang, "household.col_labour")) } td { (labour_label(lang, h.labour)) } }
                tr { th { (tr(lang, "household.col_birth_year")) } td { (h.birth_year.map_or_else(String::new, |y| y.to_string())) } }
                tr { th { (tr(lang, "household.col_bank")) } td #bank-account { (h.bank_account.as_deref().unwrap_or("–")) } }
                tr { th { (tr(lang, "household.col_origin")) } td { (origin_label(lang, row.origin)) } }
            }
        }
        h2 { (tr(lang, "household.history_title")) }
        table #status-history {
            thead { tr { th { (tr(lang, "household.col_status_from")) } th { (tr(lang, "household.col_status")) } } }
            tbody { @for p in &h.status {
                tr data-status=(p.status.to_string()) { td { (p.from) } td { (status_label(lang, p.status)) } }
            } }
        }
        @if may_edit {
            h2 #edit { (tr(lang, "household.edit_title")) }
            form.plan-step #edit-household method="post" action=(base) {
                (csrf_field(caller))
                (household_fields(lang, draft, problems, false))
                button type="submit" { (tr(lang, "household.save")) }
            }
            h2 #retire { (tr(lang, "household.retire_title")) }
            p.muted { (tr(lang, "household.retire_hint")) }
            form.plan-step #retire-household method="post" action=(format!("{base}/retire")) {
                (csrf_field(caller))
                label { (tr(lang, "household.col_reason")) " "
                    input type="text" name="reason" maxlength="200" aria-invalid=[(!retire_problems.is_empty()).then_some("true")]; }
                @for p in &retire_problems { p.field-error #reason-error role="alert" { (problem_text(lang, p)) } }
                button type="submit" { (tr(lang, "household.retire")) }
            }
        }
        h2 { (tr(lang, "household.changes_title")) }
        (changes_table(lang, &changes))
    };
    Ok(Html(frame(caller, &h.head, body).into_string()))
}

fn changes_table(lang: Lang, changes: &[HouseholdChangeRow]) -> Markup {
    html! {
        @if changes.is_empty() { p.muted #changes { (tr(lang, "common.none")) } }
        @else {
            table #changes {
                thead { tr {
                    th { (tr(lang, "household.col_when")) } th { (tr(lang, "household.col_who")) }
                    th { (tr(lang, "household.col_what")) } th { (tr(lang, "household.col_detail")) }
                } }
                tbody { @for c in changes {
                    tr data-what=(c.what) {
                        td { (at(c.at_ms)) } td { (who_label(lang, &c.who)) } td { (what_label(lang, &c.what)) }
                        td { @if c.what == "edited" { (fields_label(lang, &c.detail)) } @else { (c.detail) } }
                    }
                } }
            }
        }
    }
}

async fn edit_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, household)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: HouseholdForm = super::extract::parse_form(&body)?;
    let who = caller.signed_in()?.username.clone();
    let row = household_of(&state, &code, &household).await?;
    let input = HouseholdInput {
        id: household.clone(),
        ..form.input()
    };
    let outcome = if row.retired() {
        Err(vec![Problem {
            field: "id".into(),
            key: "household.err.id_retired".into(),
            args: vec![("id".into(), household.clone())],
        }])
    } else {
        registry::edit(&state.store, &VillageId::new(&code), &row, &input, &who).await?
    };
    match outcome {
        Ok(_) => Ok(Redirect::to(&href(
            &format!("/villages/{code}/households/{household}"),
            &[("saved", "1")],
        ))
        .into_response()),
        Err(problems) => {
            let page =
                render_household(&state, &caller, &code, &row, false, &input, &problems).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RetireForm {
    #[serde(default)]
    reason: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

async fn retire_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, household)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: RetireForm = super::extract::parse_form(&body)?;
    let who = caller.signed_in()?.username.clone();
    let row = household_of(&state, &code, &household).await?;
    match registry::retire(
        &state.store,
        &state.deployment,
        &row.household.village,
        &row.household.id,
        &form.reason,
        &who,
    )
    .await?
    {
        Ok(()) => Ok(Redirect::to(&format!("/villages/{code}/households")).into_response()),
        Err(problems) => {
            let draft = input_of(&row.household);
            let page =
                render_household(&state, &caller, &code, &row, false, &draft, &problems).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// The registry as the roster is judged against: every household, by id.
async fn registry_by_id(state: &AppState) -> Result<HashMap<String, HouseholdRow>, ApiError> {
    Ok(state
        .store
        .households()
        .await?
        .into_iter()
        .map(|r| (r.household.id.as_str().to_owned(), r))
        .collect())
}

/// The registry page again with why an upload was not read (422).
async fn refuse_upload(
    state: &AppState,
    caller: &Caller,
    code: &str,
    message: String,
) -> Result<Response, ApiError> {
    let forms = Forms {
        import: Some(message),
        ..Forms::default()
    };
    let page = render_list(state, caller, code, &Notice::None, &forms).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// Reads an uploaded roster and shows what applying it would do, line by line.
async fn import_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let lang = caller.lang;
    let who = caller.signed_in()?.username.clone();
    let content_type = super::guard::content_type(req.headers());
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(|e| ApiError::BadRequest(format!("the upload could not be read: {e}")))?;
    let Some((name, file)) = super::settlements::file_field(&bytes, &content_type).await? else {
        return refuse_upload(&state, &caller, &code, tr(lang, "household.no_file")).await;
    };
    let read = match roster::read(&file) {
        Ok(r) => r,
        Err(e) => {
            let said = super::i18n::trs(lang, e.said.0, &e.said.1);
            let message = trf(
                lang,
                "household.unreadable",
                &[("line", &e.line), ("message", &said)],
            );
            return refuse_upload(&state, &caller, &code, message).await;
        }
    };
    let rows_json = serde_json::to_string(&read.lines)
        .map_err(|e| ApiError::Internal(format!("roster lines: {e}")))?;
    let import = RosterImportRow {
        id: 0,
        village: VillageId::new(&code),
        source: name,
        sha256: crate::energy::settlement::digest(&file),
        encoding: read.encoding.to_owned(),
        rows_json,
        uploaded_ms: Utc::now().timestamp_millis(),
        uploaded_by: who,
        applied_ms: None,
    };
    let id = state.store.save_roster_import(&import).await?;
    let import = RosterImportRow { id, ..import };
    let (status, page) = render_preview(&state, &caller, &code, &import, &read.lines).await?;
    Ok((status, page).into_response())
}

/// The preview of a roster: every line with what it would do; the apply button only when no line
/// is refused.
async fn render_preview(
    state: &AppState,
    caller: &Caller,
    code: &str,
    import: &RosterImportRow,
    lines: &[RosterLine],
) -> Result<(StatusCode, Html<String>), ApiError> {
    let lang = caller.lang;
    let name = village_name(state, code)?;
    let village = VillageId::new(code);
    let registry = registry_by_id(state).await?;
    let plan = registry::plan(lines, &village, &name, &registry, Utc::now().date_naive());
    let count = |f: fn(&Verdict) -> bool| plan.iter().filter(|(_, _, v)| f(v)).count();
    let add = count(|v| matches!(v, Verdict::Add(_)));
    let edit = count(|v| matches!(v, Verdict::Edit { .. }));
    let same = count(|v| matches!(v, Verdict::Unchanged));
    let refused = count(|v| matches!(v, Verdict::Refused(_)));
    let listed: std::collections::HashSet<&str> =
        plan.iter().map(|(_, id, _)| id.as_str()).collect();
    let missing: Vec<&str> = registry
        .values()
        .filter(|r| r.household.village == village && !r.retired())
        .map(|r| r.household.id.as_str())
        .filter(|id| !listed.contains(id))
        .collect();
    let heads: HashMap<usize, &str> = lines
        .iter()
        .map(|l| (l.line, l.input.head.as_str()))
        .collect();
    let body = html! {
        h1 { (trf(lang, "household.preview_title", &[("file", &import.source)])) }
        p { a href=(format!("/villages/{code}/households")) { (tr(lang, "household.link")) } " · " (name) " · " (import.encoding) " · " code title=(import.sha256) { (import.sha256.get(..12).unwrap_or(&import.sha256)) "…" } }
        p #preview-summary { (trf(lang, "household.preview_summary", &[("lines", &plan.len()), ("add", &add), ("edit", &edit), ("same", &same), ("refused", &refused)])) }
        @if refused > 0 {
            p.field-error #import-error role="alert" { (trf(lang, "household.preview_refused", &[("refused", &refused)])) }
        }
        table #roster-preview {
            thead { tr {
                th { (tr(lang, "household.col_line")) } th { (tr(lang, "household.col_id")) }
                th { (tr(lang, "household.col_head")) } th { (tr(lang, "household.col_verdict")) }
            } }
            tbody { @for (line, id, verdict) in &plan {
                @let kind = match verdict { Verdict::Add(_) => "add", Verdict::Edit { .. } => "edit", Verdict::Unchanged => "same", Verdict::Refused(_) => "refused" };
                tr data-line=(line) data-verdict=(kind) {
                    td { (line) } td { (id) } td { (heads.get(line).copied().unwrap_or_default()) }
                    td {
                        @match verdict {
                            Verdict::Add(_) => { (tr(lang, "household.verdict_add")) }
                            Verdict::Edit { fields, .. } => { (trf(lang, "household.verdict_edit", &[("fields", &fields_label(lang, &fields.join(", ")))])) }
                            Verdict::Unchanged => { span.muted { (tr(lang, "household.verdict_same")) } }
                            Verdict::Refused(problems) => {
                                b.bad { (tr(lang, "household.verdict_refused")) } ": "
                                @for (i, p) in problems.iter().enumerate() { @if i > 0 { " " } span.field-error data-field=(p.field) { (problem_text(lang, p)) } }
                            }
                        }
                    }
                }
            } }
        }
        @if !missing.is_empty() {
            p.muted #not-in-roster { (trf(lang, "household.preview_missing", &[("ids", &missing.join("、"))])) }
        }
        @if refused == 0 {
            form.plan-step #roster-apply method="post" action=(format!("/villages/{code}/households/import/apply")) {
                (csrf_field(caller))
                input type="hidden" name="import" value=(import.id);
                button type="submit" { (tr(lang, "household.apply")) }
            }
        }
    };
    let status = if refused > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Html(frame(caller, &tr(lang, "household.import_title"), body).into_string()),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct ApplyForm {
    #[serde(default)]
    import: i64,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Applies a previewed roster: judged again against the registry as it is now, and stored whole
/// or not at all.
async fn apply_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: ApplyForm = super::extract::parse_form(&body)?;
    let who = caller.signed_in()?.username.clone();
    let stale = |state: AppState, caller: Caller, code: String| async move {
        let forms = Forms {
            import: Some(tr(caller.lang, "household.import_stale")),
            ..Forms::default()
        };
        let page = render_list(&state, &caller, &code, &Notice::None, &forms).await?;
        Ok::<_, ApiError>((StatusCode::CONFLICT, page).into_response())
    };
    let import = match state.store.roster_import(form.import).await? {
        Some(i) if i.village.as_str() == code && i.applied_ms.is_none() => i,
        Some(i) if i.village.as_str() == code => return stale(state, caller, code).await,
        _ => {
            return Err(ApiError::NotFound(format!(
                "no roster import {} for village {code}",
                form.import
            )))
        }
    };
    let lines: Vec<RosterLine> = serde_json::from_str(&import.rows_json)
        .map_err(|e| ApiError::Internal(format!("stored roster {}: {e}", import.id)))?;
    let name = village_name(&state, &code)?;
    let registry = registry_by_id(&state).await?;
    let plan = registry::plan(
        &lines,
        &VillageId::new(&code),
        &name,
        &registry,
        Utc::now().date_naive(),
    );
    let Some(changes) = registry::changes_of(&plan) else {
        // Something changed since the preview: show it again, with what is refused now.
        let (status, page) = render_preview(&state, &caller, &code, &import, &lines).await?;
        return Ok((status, page).into_response());
    };
    let add = changes
        .iter()
        .filter(|c| matches!(c, crate::store::HouseholdChange::Add(..)))
        .count();
    let edit = changes.len() - add;
    match state
        .store
        .change_households(
            &changes,
            &who,
            Utc::now().timestamp_millis(),
            Some(import.id),
        )
        .await
    {
        Ok(()) => {}
        Err(crate::store::Error::Exists(_)) => return stale(state, caller, code).await,
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to(&href(
        &format!("/villages/{code}/households"),
        &[
            ("applied_add", &add.to_string()),
            ("applied_edit", &edit.to_string()),
        ],
    ))
    .into_response())
}

/// The village's public-welfare jobs: who holds each, at what wage, from and until when; the form
/// to add one and, for each job in force, the form to end it.
fn jobs_section(
    lang: Lang,
    caller: &Caller,
    code: &str,
    jobs: &[JobPost],
    live: &[&HouseholdRow],
    may_edit: bool,
    forms: &Forms,
) -> Markup {
    let today = Utc::now().with_timezone(&TZ).date_naive();
    let head_of = |id: &HouseholdId| {
        live.iter()
            .find(|r| &r.household.id == id)
            .map_or("", |r| r.household.head.as_str())
    };
    let p = &forms.job_problems;
    let invalid = |field: &str| p.iter().any(|x| x.field == field).then_some("true");
    let errors = |field: &str| {
        html! { @for x in p.iter().filter(|x| x.field == field) { p.field-error id=(format!("{field}-error")) role="alert" { (problem_text(lang, x)) } } }
    };
    let v = &forms.job;
    html! {
        h2 #jobs-title { (tr(lang, "job.title")) }
        @if jobs.is_empty() { p.muted { (tr(lang, "common.none")) } }
        @else {
            table #jobs {
                thead { tr {
                    th { (tr(lang, "job.col_id")) } th { (tr(lang, "job.col_title")) }
                    th { (tr(lang, "job.col_holder")) } th.num { (tr(lang, "job.col_wage")) }
                    th { (tr(lang, "job.col_from")) } th { (tr(lang, "job.col_until")) }
                    th { (tr(lang, "job.col_state")) }
                    @if may_edit { th {} }
                } }
                tbody { @for j in jobs {
                    @let in_force = j.until.is_none_or(|u| u >= today);
                    @let state = if j.from > today { "pending" } else if in_force { "current" } else { "ended" };
                    tr data-job=(j.id) data-state=(state) {
                        td { (j.id) } td { (j.title) }
                        td { (j.holder) " " (head_of(&j.holder)) }
                        td.num { (j.monthly_wage) }
                        td { (j.from) } td { (j.until.map_or_else(|| "–".to_owned(), |u| u.to_string())) }
                        td { (tr(lang, &format!("job.state_{state}"))) }
                        @if may_edit {
                            td {
                                @if in_force {
                                    @let refused = forms.end.as_ref().filter(|(id, _)| id == j.id.as_str());
                                    form.inline id=(format!("end-{}", j.id)) method="post" action=(format!("/villages/{code}/jobs/{}/end", j.id)) {
                                        (csrf_field(caller))
                                        input type="date" name="until" aria-label=(tr(lang, "job.until_label")) aria-invalid=[refused.map(|_| "true")];
                                        button type="submit" { (tr(lang, "job.end")) }
                                        @if let Some((_, problems)) = refused {
                                            @for x in problems { p.field-error.end-error role="alert" { (problem_text(lang, x)) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        @if may_edit {
            h2 #add-job-title { (tr(lang, "job.add_title")) }
            p.muted { (tr(lang, "job.add_hint")) }
            form.plan-step #add-job method="post" action=(format!("/villages/{code}/jobs")) {
                (csrf_field(caller))
                label { (tr(lang, "job.col_id")) " " input type="text" name="job_id" value=(v.id) maxlength="40" aria-invalid=[invalid("job_id")]; }
                (errors("job_id"))
                label { (tr(lang, "job.col_title")) " " input type="text" name="title" value=(v.title) maxlength="40" placeholder=(tr(lang, "job.title_hint")) aria-invalid=[invalid("title")]; }
                (errors("title"))
                label { (tr(lang, "job.col_holder")) " "
                    select name="holder" aria-invalid=[invalid("holder")] {
                        @for r in live {
                            option value=(r.household.id) selected[v.holder == r.household.id.as_str()] { (r.household.id) " " (r.household.head) }
                        }
                    }
                }
                (errors("holder"))
                label { (tr(lang, "job.col_wage")) " " input type="text" name="monthly_wage" value=(v.monthly_wage) inputmode="decimal" size="8" aria-invalid=[invalid("monthly_wage")]; }
                (errors("monthly_wage"))
                label { (tr(lang, "job.col_from")) " " input type="date" name="from" value=(v.from) aria-invalid=[invalid("from")]; }
                (errors("from"))
                label { (tr(lang, "job.col_until")) " " input type="date" name="until" value=(v.until) aria-invalid=[invalid("until")]; }
                (errors("until"))
                button type="submit" { (tr(lang, "job.add")) }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct JobForm {
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    holder: String,
    #[serde(default)]
    monthly_wage: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

async fn add_job_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: JobForm = super::extract::parse_form(&body)?;
    let who = caller.signed_in()?.username.clone();
    let input = JobInput {
        id: form.job_id,
        title: form.title,
        holder: form.holder,
        monthly_wage: form.monthly_wage,
        from: form.from,
        until: form.until,
    };
    let village = VillageId::new(&code);
    match crate::ledger::jobs::add(&state.store, &state.deployment, &village, &input, &who).await? {
        Ok(_) => {
            Ok(Redirect::to(&format!("/villages/{code}/households#jobs-title")).into_response())
        }
        Err(problems) => {
            let forms = Forms {
                job: input,
                job_problems: problems,
                ..Forms::default()
            };
            let page = render_list(&state, &caller, &code, &Notice::None, &forms).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct EndForm {
    #[serde(default)]
    until: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

async fn end_job_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, job)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: EndForm = super::extract::parse_form(&body)?;
    let who = caller.signed_in()?.username.clone();
    let jobs =
        registry::village_jobs(&state.store, &state.deployment, &VillageId::new(&code)).await?;
    let Some(post) = jobs.into_iter().find(|j| j.id.as_str() == job) else {
        return Err(ApiError::NotFound(format!(
            "no job {job} in village {code}"
        )));
    };
    if state.store.job(&post.id).await?.is_none() {
        // A job of the file that the registry was never seeded with (a store not synced).
        state
            .store
            .seed_jobs(std::slice::from_ref(&post), Utc::now().timestamp_millis())
            .await?;
    }
    match crate::ledger::jobs::end(&state.store, &post, &form.until, &who).await? {
        Ok(()) => {
            Ok(Redirect::to(&format!("/villages/{code}/households#jobs-title")).into_response())
        }
        Err(problems) => {
            let forms = Forms {
                end: Some((job, problems)),
                ..Forms::default()
            };
            let page = render_list(&state, &caller, &code, &Notice::None, &forms).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys built at run time (statuses, labour, origins, changes, problems) have texts in both
    /// languages; the catalogue test only sees literal keys.
    #[test]
    fn every_key_built_at_run_time_has_its_texts() {
        let mut keys: Vec<String> = registry::PROBLEM_KEYS
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        keys.extend(
            PovertyStatus::VARIANTS
                .iter()
                .map(|s| format!("household.status_{s}")),
        );
        keys.extend(
            LabourCapacity::VARIANTS
                .iter()
                .map(|l| format!("household.labour_{l}")),
        );
        keys.extend(
            [Origin::File, Origin::Web, Origin::Roster]
                .iter()
                .map(|o| format!("household.origin_{o}")),
        );
        keys.extend(
            ["added", "imported", "edited", "retired"]
                .iter()
                .map(|w| format!("household.what_{w}")),
        );
        keys.extend(
            crate::ledger::steps::PROBLEM_KEYS
                .iter()
                .map(|k| (*k).to_owned()),
        );
        keys.extend(
            crate::ledger::ATTENDANCE_PROBLEM_KEYS
                .iter()
                .map(|k| (*k).to_owned()),
        );
        keys.extend(
            crate::ledger::ADJUST_PROBLEM_KEYS
                .iter()
                .map(|k| (*k).to_owned()),
        );
        keys.extend(
            crate::ledger::plans::PROBLEM_KEYS
                .iter()
                .map(|k| (*k).to_owned()),
        );
        keys.extend(
            crate::ledger::pools::PROBLEM_KEYS
                .iter()
                .chain(crate::ledger::jobs::PROBLEM_KEYS)
                .chain(crate::tabular::PROBLEM_KEYS)
                .chain(&["household.err.roster_no_header"])
                .map(|k| (*k).to_owned()),
        );
        keys.extend(
            crate::ledger::steps::MEETINGS
                .iter()
                .map(|m| format!("plan.meeting_{m}")),
        );
        for key in &keys {
            for lang in [Lang::Zh, Lang::En] {
                assert_ne!(&tr(lang, key), key, "{key} has no {lang:?} text");
            }
        }
    }

    #[test]
    fn lists_show_only_the_end_of_a_bank_account() {
        assert_eq!(masked_account(Some("6228000011112222")), "•••• 2222");
        assert_eq!(masked_account(None), "–");
    }
}
