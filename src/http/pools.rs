//! The beneficiaries of the county's centralized stations on the villages page: the finance desk
//! adds a household with its first (and last) month and ends a membership; each refusal is shown
//! next to its field and nothing is kept.

use super::extract::Path;
use super::guard::{Caller, CSRF_FIELD};
use super::i18n::{tr, trf};
use super::ledger::{problem_text, render_villages, FormError};
use super::page::local_time;
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::domain::{HouseholdId, StationId, StationKind, YearMonth};
use crate::ledger::pools::{self, Kept, PoolInput};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

pub fn routes() -> Routes {
    let edit = Access::fleet(Action::EditPool);
    Routes::new().post("/villages/pools", edit, add_form).post(
        "/villages/pools/{station}/{household}/end",
        edit,
        end_form,
    )
}

/// The add form's field names, as problems name them.
const ADD_FIELDS: [&str; 4] = ["station", "household", "from", "until"];

/// The panel: every centralized station's beneficiaries with how many are paid this month, the
/// form that adds one and, on each open membership, the form that ends it.
pub(super) async fn panel(
    state: &AppState,
    caller: &Caller,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let lang = caller.lang;
    let members = pools::members(&state.store, &state.deployment).await?;
    let centralized: Vec<&crate::domain::Station> = state
        .deployment
        .stations
        .iter()
        .filter(|s| s.kind == StationKind::Centralized)
        .collect();
    let beijing = chrono_tz::Asia::Shanghai;
    let this_month = YearMonth::of(chrono::Utc::now().with_timezone(&beijing).date_naive());
    let added = error.filter(|e| e.field == "pool");
    let ended = error.filter(|e| e.field == "pool_end");
    let invalid = |f: &str| {
        added
            .is_some_and(|e| e.problems.iter().any(|p| p.field == f))
            .then_some("true")
    };
    let errors = |f: &'static str| {
        html! { @if let Some(e) = added { @for p in e.problems.iter().filter(|p| p.field == f) {
            p.field-error id=(format!("pool-{f}-error")) role="alert" { (problem_text(lang, p)) }
        } } }
    };
    let csrf = caller.csrf.as_deref();
    Ok(html! {
        section #pools {
            h2 #pools-title { (tr(lang, "pool.title")) }
            p.muted { (tr(lang, "pool.intro")) }
            @if centralized.is_empty() {
                p.muted { (tr(lang, "pool.none")) }
            } @else {
                form.plan-step #pool-form method="post" action="/villages/pools" {
                    @if let Some(csrf) = csrf { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                    label { (tr(lang, "pool.station")) " "
                        select name="station" aria-invalid=[invalid("station")] {
                            @for s in &centralized { option value=(s.id) { (s.id) " " (s.name) } }
                        }
                    }
                    (errors(ADD_FIELDS[0]))
                    label { (tr(lang, "pool.household")) " " input type="text" name="household" size="14" aria-invalid=[invalid("household")]; }
                    (errors(ADD_FIELDS[1]))
                    label { (tr(lang, "pool.from")) " " input type="text" name="from" size="8" placeholder="YYYY-MM" value=(this_month) aria-invalid=[invalid("from")]; }
                    (errors(ADD_FIELDS[2]))
                    label { (tr(lang, "pool.until")) " " input type="text" name="until" size="12" placeholder=(tr(lang, "pool.until_hint")) aria-invalid=[invalid("until")]; }
                    (errors(ADD_FIELDS[3]))
                    button type="submit" { (tr(lang, "pool.submit")) }
                }
                @for s in &centralized {
                    @let own: Vec<&pools::Member> = members.iter().filter(|m| m.station == s.id).collect();
                    @let paid_now = own.iter().filter(|m| m.in_force(this_month)).count();
                    h3 data-station=(s.id) { (s.id) " " (s.name) }
                    p.muted data-pool-count=(paid_now) {
                        (trf(lang, "pool.count", &[
                            ("count", &paid_now),
                            ("per", &s.payment_per_beneficiary.map_or_else(|| "–".to_owned(), |f| f.to_string())),
                        ]))
                    }
                    table.pool-members data-station=(s.id) {
                        thead { tr {
                            th { (tr(lang, "pool.household")) } th { (tr(lang, "pool.from")) }
                            th { (tr(lang, "pool.until")) } th { (tr(lang, "pool.kept")) } th {}
                        } }
                        tbody { @for m in &own {
                            @let row_key = format!("{}/{}", m.station, m.household);
                            @let row_error = ended.filter(|e| e.message == row_key);
                            tr data-household=(m.household) data-in-force=(m.in_force(this_month)) {
                                td { (m.household) }
                                td { (m.from.map_or_else(|| tr(lang, "pool.from_start"), |f| f.to_string())) }
                                td { (m.until.map_or_else(|| tr(lang, "pool.open"), |u| u.to_string())) }
                                td { @match &m.kept {
                                    Kept::File => (tr(lang, "pool.kept_file")),
                                    Kept::Browser { at, by } => { (by) " · " (local_time(*at, beijing)) },
                                } }
                                td { @if m.until.is_none() {
                                    form.inline method="post" action=(format!("/villages/pools/{}/{}/end", m.station, m.household)) {
                                        @if let Some(csrf) = csrf { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                                        input type="text" name="until" size="8" placeholder="YYYY-MM" value=(this_month)
                                            aria-label=(tr(lang, "pool.until")) aria-invalid=[row_error.map(|_| "true")];
                                        button type="submit" { (tr(lang, "pool.end")) }
                                    }
                                }
                                @if let Some(e) = row_error { @for p in &e.problems {
                                    p.field-error.pool-end-error role="alert" { (problem_text(lang, p)) }
                                } } }
                            }
                        } }
                    }
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
struct AddForm {
    #[serde(default)]
    station: String,
    #[serde(default)]
    household: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Adds a beneficiary; each problem shows next to its field and nothing is kept.
async fn add_form(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: AddForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    let input = PoolInput {
        station: form.station,
        household: form.household,
        from: form.from,
        until: form.until,
    };
    match pools::add(&state.store, &state.deployment, &input, &account.username).await? {
        Ok(_) => Ok(Redirect::to("/villages#pools-title").into_response()),
        Err(problems) => {
            let e = FormError::of("pool", String::new(), problems);
            Ok(render_villages(&state, &caller, Some(e))
                .await?
                .into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct EndForm {
    #[serde(default)]
    until: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Ends a membership after the month given; a refusal shows on its row.
async fn end_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((station, household)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: EndForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    let (station, household) = (StationId::new(&station), HouseholdId::new(&household));
    match pools::end(
        &state.store,
        &state.deployment,
        &station,
        &household,
        &form.until,
        &account.username,
    )
    .await?
    {
        Ok(()) => Ok(Redirect::to("/villages#pools-title").into_response()),
        Err(problems) => {
            let e = FormError::of("pool_end", format!("{station}/{household}"), problems);
            Ok(render_villages(&state, &caller, Some(e))
                .await?
                .into_response())
        }
    }
}
