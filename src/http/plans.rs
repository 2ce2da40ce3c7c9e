//! A village's annual plan page: the income it is made against, each line's budget and the
//! planned payments of its lines, edited in place while the plan is a draft (the accountant drafts,
//! 四议 deliberates it: the workflow steps are on the village page). Every refused form shows its
//! problems next to their fields and keeps what was typed; nothing is stored then.

use super::extract::Path;
use super::guard::{Caller, CSRF_FIELD};
use super::i18n::{tr, trf, Lang};
use super::ledger::{
    audience, line_label, plan_line_label, plan_state_label, problem_text, village_households,
    village_name,
};
use super::page::{frame, local_time};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::allocate::{PlanLine, VillagePlan};
use crate::auth::Action;
use crate::domain::{Fen, PlanState, VillageId};
use crate::ledger::export::Audience;
use crate::ledger::households::Problem;
use crate::ledger::plans::{self, EntryInput, PlanInput, ENTRY_LINES};
use crate::store::StoredPlan;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

pub fn routes() -> Routes {
    let draft = Access::village(Action::DraftPlan, "code");
    Routes::new()
        .get(
            "/villages/{code}/plans/{year}",
            Access::village(Action::ViewLedger, "code"),
            plan_page,
        )
        .post("/villages/{code}/plans/{year}", draft, plan_form)
        .post("/villages/{code}/plans/{year}/entries", draft, entry_form)
        .post(
            "/villages/{code}/plans/{year}/entries/{id}/remove",
            draft,
            remove_form,
        )
}

/// A refused form of the page: which one, its problems, and what was typed.
#[derive(Default)]
struct Refused {
    problems: Vec<Problem>,
    plan: Option<PlanInput>,
    entry: Option<EntryInput>,
}

impl Refused {
    fn on(&self, field: &str) -> Option<&'static str> {
        self.problems
            .iter()
            .any(|p| p.field == field)
            .then_some("true")
    }

    fn messages(&self, lang: Lang, form: &str, field: &str) -> Markup {
        html! {
            @for p in self.problems.iter().filter(|p| p.field == field) {
                p.field-error id=(format!("{form}-{field}-error")) role="alert" { (problem_text(lang, &named_lines(lang, p))) }
            }
        }
    }
}

/// A problem with the plan line it names (`line`, a code) in the page's language.
fn named_lines(lang: Lang, p: &Problem) -> Problem {
    let mut p = p.clone();
    for (name, value) in &mut p.args {
        if name == "line" {
            *value = line_label(lang, value);
        }
    }
    p
}

async fn plan_page(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, year)): Path<(String, i32)>,
) -> Result<Html<String>, ApiError> {
    render(&state, &caller, &code, year, None)
        .await
        .map(|(_, page)| page)
}

async fn render(
    state: &AppState,
    caller: &Caller,
    code: &str,
    year: i32,
    refused: Option<Refused>,
) -> Result<(StatusCode, Html<String>), ApiError> {
    let lang = caller.lang;
    let name = village_name(state, code)?;
    if !plans::year_ok(year) {
        return Err(ApiError::NotFound(format!("no plan year {year}")));
    }
    let village = VillageId::new(code);
    let current = plans::plan_of(&state.store, &state.deployment, &village, year).await?;
    let plan_state = state.store.plan_state(code, year).await?;
    let may = state
        .geography
        .may_on_village(caller.who(), Action::DraftPlan, code);
    let csrf = caller.csrf.as_deref();
    let editable = plan_state == PlanState::Draft && may;
    let aud = audience(state, caller, code);
    let households = village_households(state, code).await?;
    // Only the households on the registry now are offered (a retired one is refused).
    let retired: std::collections::HashSet<String> = state
        .store
        .households_of(&village)
        .await?
        .into_iter()
        .filter(|r| r.retired())
        .map(|r| r.household.id.to_string())
        .collect();
    let refused_at = refused.is_some();
    let refused = refused.unwrap_or_default();
    let beijing = chrono_tz::Asia::Shanghai;
    let source = match &current {
        Some((_, Some(stored))) => trf(
            lang,
            "plan_edit.source_stored",
            &[
                ("who", &stored.plan.by),
                ("at", &local_time(stored.plan.at, beijing)),
            ],
        ),
        Some((_, None)) => tr(lang, "plan_edit.source_file"),
        None => tr(lang, "plan_edit.source_none"),
    };
    let plan = current.as_ref().map(|(p, _)| p);
    let stored = current.as_ref().and_then(|(_, s)| s.as_ref());
    let title = trf(lang, "plan_edit.title", &[("year", &year)]);
    let body = html! {
        h1 { (name) " " span.muted { (code) } " · " (title) }
        p { (tr(lang, "plan.now")) " " b #plan-state data-state=(plan_state.code()) { (plan_state_label(lang, plan_state)) }
            " · " a #village-link href=(format!("/villages/{code}#plan")) { (tr(lang, "plan_edit.back")) } }
        p.muted #plan-source { (source) }
        @if plan_state != PlanState::Draft {
            p.note #plan-locked { (trf(lang, "plan_edit.not_draft_note", &[("state", &plan_state_label(lang, plan_state))])) }
        } @else if !may {
            p.muted { (tr(lang, "plan_edit.read_only")) }
        }
        (figures(lang, code, year, plan, editable, csrf, &refused))
        @if plan.is_some() || editable {
            (entries(lang, code, year, plan, stored, editable, csrf, aud, &households, &retired, &refused))
        }
    };
    let status = if refused_at {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Html(frame(caller, &title, body).into_string())))
}

/// The plan's income and line budgets: a form while it is a draft, else a table.
fn figures(
    lang: Lang,
    code: &str,
    year: i32,
    plan: Option<&VillagePlan>,
    editable: bool,
    csrf: Option<&str>,
    refused: &Refused,
) -> Markup {
    let typed = refused
        .plan
        .clone()
        .or_else(|| plan.map(PlanInput::of))
        .unwrap_or_default();
    let lines: [(PlanLine, &str, &str); 5] = [
        (PlanLine::JobWages, "job_wages", &typed.job_wages),
        (PlanLine::TempLabour, "temp_labour", &typed.temp_labour),
        (
            PlanLine::SmallProject,
            "small_project",
            &typed.small_project,
        ),
        (
            PlanLine::RewardSubsidy,
            "reward_subsidy",
            &typed.reward_subsidy,
        ),
        (PlanLine::Reserve, "reserve", &typed.reserve),
    ];
    let total = plan.map(|p| {
        let l = &p.lines;
        Fen(l.job_wages.0 + l.temp_labour.0 + l.small_project.0 + l.reward_subsidy.0 + l.reserve.0)
    });
    html! {
        section #plan-figures {
            h2 { (tr(lang, "plan_edit.figures")) }
            @if editable {
                form.plan-step #plan-edit-form method="post" action=(format!("/villages/{code}/plans/{year}")) {
                    @if let Some(csrf) = csrf { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                    (refused.messages(lang, "plan", "plan"))
                    label { (tr(lang, "plan_edit.expected_net")) " "
                        input type="text" name="expected_net" inputmode="decimal" size="14" value=(typed.expected_net) aria-invalid=[refused.on("expected_net")]; }
                    (refused.messages(lang, "plan", "expected_net"))
                    label { (tr(lang, "plan_edit.expected_gross")) " "
                        input type="text" name="expected_gross" inputmode="decimal" size="14" value=(typed.expected_gross)
                            title=(tr(lang, "plan_edit.expected_gross_hint")) aria-invalid=[refused.on("expected_gross")]; }
                        " " span.muted { (tr(lang, "plan_edit.expected_gross_hint")) }
                    (refused.messages(lang, "plan", "expected_gross"))
                    fieldset #plan-lines {
                        legend { (tr(lang, "plan_edit.budget")) }
                        @for (line, field, value) in lines {
                            label { (plan_line_label(lang, line)) " "
                                input type="text" name=(field) inputmode="decimal" size="14" value=(value) aria-invalid=[refused.on(field)]; }
                            (refused.messages(lang, "plan", field))
                        }
                    }
                    label.choice { input type="checkbox" name="status_change_immediate" value="1" checked[typed.status_change_immediate];
                        " " (tr(lang, "plan_edit.immediate")) }
                    button type="submit" { (tr(lang, "plan_edit.save")) }
                }
            } @else if let Some(p) = plan {
                table #plan-figures-table {
                    tbody {
                        tr { th { (tr(lang, "plan_edit.expected_net")) } td.num { (p.expected_net) } }
                        @if let Some(g) = p.expected_gross { tr { th { (tr(lang, "plan_edit.expected_gross")) } td.num { (g) } } }
                        tr { th { (plan_line_label(lang, PlanLine::JobWages)) } td.num { (p.lines.job_wages) } }
                        tr { th { (plan_line_label(lang, PlanLine::TempLabour)) } td.num { (p.lines.temp_labour) } }
                        tr { th { (plan_line_label(lang, PlanLine::SmallProject)) } td.num { (p.lines.small_project) } }
                        tr { th { (plan_line_label(lang, PlanLine::RewardSubsidy)) } td.num { (p.lines.reward_subsidy) } }
                        tr { th { (plan_line_label(lang, PlanLine::Reserve)) } td.num { (p.lines.reserve) } }
                    }
                }
            } @else {
                p.note #no-plan { (tr(lang, "plan_edit.source_none")) }
            }
            @if let (Some(p), Some(total)) = (plan, total) {
                p.muted #plan-total { (trf(lang, "plan_edit.lines_total", &[("total", &total), ("net", &p.expected_net)])) }
            }
        }
    }
}

/// The planned payments, each line's total against its budget, and the form that adds one.
#[allow(clippy::too_many_arguments)]
fn entries(
    lang: Lang,
    code: &str,
    year: i32,
    plan: Option<&VillagePlan>,
    stored: Option<&StoredPlan>,
    editable: bool,
    csrf: Option<&str>,
    aud: Audience,
    households: &std::collections::HashMap<String, crate::domain::Household>,
    retired: &std::collections::HashSet<String>,
    refused: &Refused,
) -> Markup {
    let name = |id: &str| match (aud, households.get(id)) {
        (Audience::Authorised, Some(h)) => format!("{id} {}", h.head),
        _ => id.to_owned(),
    };
    // One row per entry: (id when saved in the registry, line, month, party, amount, text, approval).
    type Row = (Option<i64>, PlanLine, String, String, Fen, String, String);
    let rows: Vec<Row> = match (stored, plan) {
        (Some(s), _) => s
            .entries
            .iter()
            .map(|e| {
                let party = match (&e.household, &e.payee) {
                    (Some(h), _) => name(h),
                    (None, Some(p)) => p.clone(),
                    (None, None) => String::new(),
                };
                (
                    Some(e.id),
                    e.line,
                    e.month.to_string(),
                    party,
                    e.amount,
                    e.description.clone(),
                    e.approval.clone().unwrap_or_default(),
                )
            })
            .collect(),
        (None, Some(p)) => {
            let mut rows: Vec<Row> = Vec::new();
            rows.extend(p.temp_labour.iter().map(|t| {
                (
                    None,
                    PlanLine::TempLabour,
                    t.month.to_string(),
                    name(t.household.as_str()),
                    t.amount,
                    t.work.clone(),
                    String::new(),
                )
            }));
            rows.extend(p.projects.iter().map(|s| {
                (
                    None,
                    PlanLine::SmallProject,
                    s.month.to_string(),
                    s.payee.clone(),
                    s.amount,
                    s.project.clone(),
                    String::new(),
                )
            }));
            rows.extend(p.rewards.iter().map(|r| {
                (
                    None,
                    PlanLine::RewardSubsidy,
                    r.month.to_string(),
                    name(r.household.as_str()),
                    r.amount,
                    r.reason.clone(),
                    r.approval.clone(),
                )
            }));
            rows.sort_by(|a, b| a.2.cmp(&b.2));
            rows
        }
        (None, None) => Vec::new(),
    };
    let listed = |line: PlanLine| Fen(rows.iter().filter(|r| r.1 == line).map(|r| r.4 .0).sum());
    let budget = |line: PlanLine| {
        plan.map(|p| match line {
            PlanLine::TempLabour => p.lines.temp_labour,
            PlanLine::SmallProject => p.lines.small_project,
            _ => p.lines.reward_subsidy,
        })
        .unwrap_or(Fen::ZERO)
    };
    let typed = refused.entry.clone().unwrap_or_default();
    let mut live: Vec<&crate::domain::Household> = households
        .values()
        .filter(|h| !retired.contains(h.id.as_str()))
        .collect();
    live.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    html! {
        section #plan-entries {
            h2 { (tr(lang, "plan_edit.entries")) }
            p.muted #entry-totals {
                @for (i, line) in ENTRY_LINES.iter().enumerate() {
                    @if i > 0 { " · " }
                    span data-line=(line.code()) { (plan_line_label(lang, *line)) " "
                        (trf(lang, "plan_edit.listed_of", &[("listed", &listed(*line)), ("budget", &budget(*line))])) }
                }
            }
            (refused.messages(lang, "entry", "entry"))
            @if rows.is_empty() {
                p.muted #no-entries { (tr(lang, "plan_edit.no_entries")) }
            } @else {
                table #plan-entries-table {
                    thead { tr {
                        th { (tr(lang, "plan_edit.entry_line")) } th { (tr(lang, "plan_edit.month")) }
                        th { (tr(lang, "plan_edit.party")) } th.num { (tr(lang, "plan_edit.amount")) }
                        th { (tr(lang, "plan_edit.description")) } th { (tr(lang, "plan_edit.approval")) }
                        @if editable { th {} }
                    } }
                    tbody { @for (id, line, month, party, amount, text, approval) in &rows {
                        tr data-line=(line.code()) data-month=(month) {
                            td { (plan_line_label(lang, *line)) } td { (month) } td { (party) }
                            td.num { (amount) } td { (text) } td { (approval) }
                            @if editable {
                                td { @if let Some(id) = id {
                                    form.inline method="post" action=(format!("/villages/{code}/plans/{year}/entries/{id}/remove")) {
                                        @if let Some(csrf) = csrf { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                                        button.link type="submit" { (tr(lang, "plan_edit.remove")) }
                                    }
                                } }
                            }
                        }
                    } }
                }
            }
            @if editable && plan.is_some() {
                form.plan-step #plan-entry-form method="post" action=(format!("/villages/{code}/plans/{year}/entries")) {
                    @if let Some(csrf) = csrf { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
                    h3 { (tr(lang, "plan_edit.add_entry")) }
                    label { (tr(lang, "plan_edit.entry_line")) " "
                        select name="line" aria-invalid=[refused.on("line")] {
                            @for line in ENTRY_LINES {
                                option value=(line.code()) selected[typed.line == line.code()] { (plan_line_label(lang, line)) }
                            }
                        }
                    }
                    (refused.messages(lang, "entry", "line"))
                    label { (tr(lang, "plan_edit.month")) " " input type="text" name="month" size="8" placeholder=(format!("{year}-MM")) value=(typed.month) aria-invalid=[refused.on("month")]; }
                    (refused.messages(lang, "entry", "month"))
                    label { (tr(lang, "plan_edit.household")) " "
                        select name="household" aria-invalid=[refused.on("household")] {
                            option value="" { "—" }
                            @for h in &live {
                                option value=(h.id) selected[typed.household == h.id.as_str()] { (name(h.id.as_str())) }
                            }
                        }
                    }
                    (refused.messages(lang, "entry", "household"))
                    label { (tr(lang, "plan_edit.payee")) " " input type="text" name="payee" size="24" value=(typed.payee) aria-invalid=[refused.on("payee")]; }
                    (refused.messages(lang, "entry", "payee"))
                    label { (tr(lang, "plan_edit.amount")) " " input type="text" name="amount" inputmode="decimal" size="12" value=(typed.amount) aria-invalid=[refused.on("amount")]; }
                    (refused.messages(lang, "entry", "amount"))
                    label { (tr(lang, "plan_edit.description")) " " input type="text" name="description" size="36"
                        placeholder=(tr(lang, "plan_edit.description_hint")) value=(typed.description) aria-invalid=[refused.on("description")]; }
                    (refused.messages(lang, "entry", "description"))
                    label { (tr(lang, "plan_edit.approval")) " " input type="text" name="approval" size="20" value=(typed.approval) aria-invalid=[refused.on("approval")]; }
                    (refused.messages(lang, "entry", "approval"))
                    button type="submit" { (tr(lang, "plan_edit.add")) }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct PlanForm {
    #[serde(default)]
    expected_net: String,
    #[serde(default)]
    expected_gross: String,
    #[serde(default)]
    job_wages: String,
    #[serde(default)]
    temp_labour: String,
    #[serde(default)]
    small_project: String,
    #[serde(default)]
    reward_subsidy: String,
    #[serde(default)]
    reserve: String,
    #[serde(default)]
    status_change_immediate: Option<String>,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Saves the plan's income and budgets.
async fn plan_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, year)): Path<(String, i32)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: PlanForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    village_name(&state, &code)?;
    let input = PlanInput {
        expected_net: form.expected_net,
        expected_gross: form.expected_gross,
        job_wages: form.job_wages,
        temp_labour: form.temp_labour,
        small_project: form.small_project,
        reward_subsidy: form.reward_subsidy,
        reserve: form.reserve,
        status_change_immediate: form.status_change_immediate.is_some(),
    };
    let outcome = plans::save_plan(
        &state.store,
        &state.deployment,
        &VillageId::new(&code),
        year,
        &input,
        &account.username,
    )
    .await?;
    after(
        &state,
        &caller,
        &code,
        year,
        outcome,
        "#plan-figures",
        |problems| Refused {
            problems,
            plan: Some(input),
            entry: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct EntryForm {
    #[serde(default)]
    line: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    household: String,
    #[serde(default)]
    payee: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    approval: String,
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Adds a planned payment.
async fn entry_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, year)): Path<(String, i32)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: EntryForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    village_name(&state, &code)?;
    let input = EntryInput {
        line: form.line,
        month: form.month,
        household: form.household,
        payee: form.payee,
        amount: form.amount,
        description: form.description,
        approval: form.approval,
    };
    let outcome = plans::add_entry(
        &state.store,
        &state.deployment,
        &VillageId::new(&code),
        year,
        &input,
        &account.username,
    )
    .await?;
    after(
        &state,
        &caller,
        &code,
        year,
        outcome,
        "#plan-entries",
        |problems| Refused {
            problems,
            plan: None,
            entry: Some(input),
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct RemoveForm {
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Removes a planned payment.
async fn remove_form(
    State(state): State<AppState>,
    caller: Caller,
    Path((code, year, id)): Path<(String, i32, i64)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let _: RemoveForm = super::extract::parse_form(&body)?;
    let account = caller.signed_in()?;
    village_name(&state, &code)?;
    let outcome = plans::remove_entry(
        &state.store,
        &state.deployment,
        &VillageId::new(&code),
        year,
        id,
        &account.username,
    )
    .await?;
    after(
        &state,
        &caller,
        &code,
        year,
        outcome,
        "#plan-entries",
        |problems| Refused {
            problems,
            ..Refused::default()
        },
    )
    .await
}

/// Back to the plan page at `anchor` when the form was taken, else the page with the problems.
async fn after(
    state: &AppState,
    caller: &Caller,
    code: &str,
    year: i32,
    outcome: Result<(), Vec<Problem>>,
    anchor: &str,
    refused: impl FnOnce(Vec<Problem>) -> Refused,
) -> Result<Response, ApiError> {
    match outcome {
        Ok(()) => {
            Ok(Redirect::to(&format!("/villages/{code}/plans/{year}{anchor}")).into_response())
        }
        Err(problems) => {
            let (status, page) = render(state, caller, code, year, Some(refused(problems))).await?;
            Ok((status, page).into_response())
        }
    }
}
