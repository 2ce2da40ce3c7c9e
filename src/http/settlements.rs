//! The settlement page (`/settlements`): the county operator uploads the grid company's monthly
//! statement (结算单) as it came, CSV or XLSX, and sees what was stored or, line by line, why
//! nothing was.

use super::guard::{Caller, CSRF_FIELD};
use super::i18n::{tr, trf, Lang};
use super::page::{frame, local_time};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::energy::settlement::{self, Duplicate, ImportError, ImportReport, Rejected};
use crate::store::SettlementImportRow;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use maud::{html, Markup};

pub fn routes() -> Routes {
    let import = Access::fleet(Action::ImportSettlement);
    Routes::new()
        .get("/settlements", import, page)
        .post("/settlements", import, upload)
        .upload(super::MAX_UPLOAD)
}

/// What the last upload did, shown above the form.
enum Outcome {
    Imported(ImportReport),
    Refused(Rejected),
    /// The same bytes were imported before.
    Duplicate(Duplicate),
    /// The form came without a file.
    NoFile,
}

async fn page(State(state): State<AppState>, caller: Caller) -> Result<Html<String>, ApiError> {
    render(&state, &caller, None).await
}

/// How many earlier imports the page lists.
const IMPORTS_LISTED: usize = 50;

async fn render(
    state: &AppState,
    caller: &Caller,
    outcome: Option<&Outcome>,
) -> Result<Html<String>, ApiError> {
    let lang = caller.lang;
    let mut imports = state.store.settlement_imports().await?;
    imports.truncate(IMPORTS_LISTED);
    let body = html! {
        h1 { (tr(lang, "settle.title")) }
        p.muted { (tr(lang, "settle.intro")) }
        @match outcome {
            Some(Outcome::Imported(report)) => (imported(lang, report)),
            Some(Outcome::Refused(rejected)) => (refused(lang, rejected)),
            Some(Outcome::Duplicate(d)) => {
                p.field-error #upload-error role="alert" {
                    (trf(lang, "settle.duplicate", &[
                        ("file", &d.file),
                        ("earlier", &d.earlier.source),
                        ("at", &local_time(d.earlier.uploaded, chrono_tz::Asia::Shanghai)),
                        ("id", &d.earlier.id),
                    ]))
                }
            }
            Some(Outcome::NoFile) => {
                p.field-error #upload-error role="alert" { (tr(lang, "settle.no_file")) }
            }
            None => {}
        }
        @if let Some(csrf) = caller.csrf.as_deref() {
            form.plan-step #upload-form method="post" action="/settlements" enctype="multipart/form-data" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label { (tr(lang, "settle.file")) " "
                    input type="file" name="file" accept=".csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"; }
                button type="submit" { (tr(lang, "settle.upload")) }
            }
        } @else {
            p.note { (tr(lang, "settle.api_hint")) " " code { "POST /api/settlements?name=结算单.csv" } }
        }
        h2 { (tr(lang, "settle.imports")) }
        @if imports.is_empty() { p.muted { (tr(lang, "common.none")) } }
        @else { (imports_table(lang, &imports)) }
    };
    Ok(Html(
        frame(caller, &tr(lang, "settle.title"), body).into_string(),
    ))
}

/// Every import with what tells same-named files apart: when, how large, its SHA-256.
fn imports_table(lang: Lang, imports: &[SettlementImportRow]) -> Markup {
    html! {
        table #imports {
            thead { tr {
                th { (tr(lang, "settle.col_uploaded")) } th { (tr(lang, "settle.file")) }
                th.num { (tr(lang, "settle.col_lines")) } th.num { (tr(lang, "settle.col_size")) }
                th { (tr(lang, "settle.col_encoding")) } th { "SHA-256" }
            } }
            tbody { @for i in imports {
                tr data-import=(i.id) {
                    td { (local_time(i.uploaded, chrono_tz::Asia::Shanghai)) }
                    td { (i.source) }
                    td.num { (i.lines) }
                    td.num { (i.size_bytes) }
                    td { (i.encoding) }
                    td { code title=(i.sha256) { (i.sha256.get(..12).unwrap_or(&i.sha256)) "…" } }
                }
            } }
        }
    }
}

fn imported(lang: Lang, report: &ImportReport) -> Markup {
    html! {
        div.note #upload-done {
            b { (trf(lang, "settle.imported", &[("count", &report.lines.len()), ("file", &report.source)])) }
            " " span.muted { "(" (report.encoding) ")" }
        }
        table #imported {
            thead { tr {
                th { (tr(lang, "settle.col_line")) } th { (tr(lang, "fleet.col_station")) }
                th { (tr(lang, "village.col_month")) } th.num { (tr(lang, "station.col_settled")) }
                th.num { (tr(lang, "settle.col_amount")) }
            } }
            tbody { @for l in &report.lines {
                tr data-station=(l.station) data-month=(l.month) {
                    td { (l.line) }
                    td { a href=(format!("/stations/{}", l.station)) { (l.station) } }
                    td { (l.month) }
                    td.num { (format!("{:.1}", l.energy.kwh())) }
                    td.num { (l.amount.map(|a| a.to_string()).unwrap_or_else(|| "–".to_owned())) }
                }
            } }
        }
        @if !report.warnings.is_empty() {
            h2 { (tr(lang, "settle.warnings")) }
            table #amount-warnings {
                thead { tr {
                    th { (tr(lang, "settle.col_line")) } th { (tr(lang, "fleet.col_station")) }
                    th { (tr(lang, "village.col_month")) } th.num { (tr(lang, "settle.col_amount")) }
                    th.num { (tr(lang, "settle.col_computed")) } th.num { (tr(lang, "station.col_difference")) }
                } }
                tbody { @for w in &report.warnings {
                    tr data-line=(w.line) {
                        td { (w.line) } td { (w.station) } td { (w.month) }
                        td.num { (w.settled) } td.num { (w.computed) } td.num { (w.difference) }
                    }
                } }
            }
            p.muted { (tr(lang, "settle.warnings_note")) }
        }
    }
}

fn refused(lang: Lang, rejected: &Rejected) -> Markup {
    html! {
        div.field-error #upload-error role="alert" {
            (trf(lang, "settle.refused", &[("count", &rejected.problems.len()), ("file", &rejected.file)]))
        }
        table #problems {
            thead { tr { th { (tr(lang, "settle.col_line")) } th { (tr(lang, "settle.col_problem")) } } }
            tbody { @for p in &rejected.problems {
                tr data-line=(p.line) {
                    td { @if p.line == 0 { (tr(lang, "settle.whole_file")) } @else { (p.line) } }
                    td { (problem_text(lang, p)) }
                }
            } }
        }
    }
}

/// A problem in the caller's language when the catalogue has it, else as the import wrote it.
fn problem_text(lang: Lang, p: &settlement::Problem) -> String {
    match &p.said {
        Some((key, args)) => super::i18n::trs(lang, key, args),
        None => p.message.clone(),
    }
}

/// Takes the uploaded file: every line is stored, or none (with the reasons).
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let content_type = super::guard::content_type(req.headers());
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(|e| ApiError::BadRequest(format!("the upload could not be read: {e}")))?;
    let Some((name, file)) = file_field(&bytes, &content_type).await? else {
        let page = render(&state, &caller, Some(&Outcome::NoFile)).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    };
    let allowed = |s: &crate::domain::StationId| {
        state
            .geography
            .may_on_station(caller.who(), Action::ImportSettlement, s.as_str())
    };
    let outcome = settlement::import_within(
        &state.store,
        &state.deployment,
        &file,
        &name,
        Utc::now(),
        allowed,
    )
    .await;
    let (status, outcome) = match outcome {
        Ok(report) => (StatusCode::CREATED, Outcome::Imported(report)),
        Err(ImportError::Rejected(r)) => (StatusCode::UNPROCESSABLE_ENTITY, Outcome::Refused(r)),
        Err(ImportError::Duplicate(d)) => (StatusCode::CONFLICT, Outcome::Duplicate(d)),
        Err(ImportError::Store(e)) => return Err(e.into()),
    };
    Ok((status, render(&state, &caller, Some(&outcome)).await?).into_response())
}

/// The file of the form: its name and bytes, or `None` when no file was chosen.
pub(super) async fn file_field(
    bytes: &Bytes,
    content_type: &str,
) -> Result<Option<(String, Bytes)>, ApiError> {
    let mut form = super::guard::multipart(bytes, content_type)
        .await
        .map_err(|e| ApiError::invalid("file", format!("not a file upload form: {e}")))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::invalid("file", e.to_string()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or_default().to_owned();
        let data = field
            .bytes()
            .await
            .map_err(|e| ApiError::invalid("file", e.to_string()))?;
        if name.is_empty() && data.is_empty() {
            return Ok(None);
        }
        return Ok(Some((name, data)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems the import words for the pages have their texts, and the page uses them.
    #[test]
    fn settlement_problems_are_said_in_the_callers_language() {
        let d = crate::energy::testing::deployment();
        let file =
            "电站编号,结算月份,上网电量(kWh)\n,2026-03,10\nNOPE,2026-13,-5\nS1,2026-03,abc\n";
        let problems = crate::energy::settlement::parse(file.as_bytes(), &d).expect_err("refused");
        let zh: Vec<String> = problems.iter().map(|p| problem_text(Lang::Zh, p)).collect();
        for text in &zh {
            assert!(
                !text.contains("settle.err."),
                "a key without its text: {text}"
            );
        }
        assert!(zh.iter().any(|t| t.contains("电站编号为空")), "{zh:?}");
        assert!(
            zh.iter().any(|t| t.contains("未登记的电站「NOPE」")),
            "{zh:?}"
        );
        assert!(
            zh.iter().any(|t| t.contains("「2026-13」不是月份")),
            "{zh:?}"
        );
        let en: Vec<String> = problems.iter().map(|p| problem_text(Lang::En, p)).collect();
        assert!(
            en.iter().any(|t| t.contains("Unknown station 'NOPE'")),
            "{en:?}"
        );
        let empty = crate::energy::settlement::parse(b"", &d).expect_err("empty");
        assert_eq!(problem_text(Lang::Zh, &empty[0]), "文件是空的。");
    }

    /// A file that is not a table at all (bytes neither UTF-8 nor GBK, a broken workbook) is said
    /// in the caller's language, with what the reader found.
    #[test]
    fn an_unreadable_file_is_said_in_the_callers_language() {
        let d = crate::energy::testing::deployment();
        let said = |bytes: &[u8], lang| -> String {
            let problems = crate::energy::settlement::parse(bytes, &d).expect_err("refused");
            assert_eq!(problems.len(), 1);
            problem_text(lang, &problems[0])
        };
        let binary = b"station,1\nS1,\x81\x20\xff\n".as_slice();
        let text = said(binary, Lang::Zh);
        assert!(text.contains("既不是 UTF-8 也不是 GBK"), "{text}");
        assert!(said(binary, Lang::En).contains("neither UTF-8 nor GBK"));
        // A ZIP signature with nothing readable behind it: the reader's own words, in a Chinese frame.
        let text = said(b"PK\x03\x04 not a workbook", Lang::Zh);
        assert!(text.starts_with("不是可读的电子表格："), "{text}");
    }

    /// The header, unit and total-row checks are said in Chinese too, with their figures.
    #[test]
    fn header_unit_and_total_problems_are_said_in_chinese() {
        let d = crate::energy::testing::deployment();
        let zh = |file: &str| -> Vec<String> {
            crate::energy::settlement::parse(file.as_bytes(), &d)
                .expect_err("refused")
                .iter()
                .map(|p| problem_text(Lang::Zh, p))
                .collect()
        };
        let cases = [
            ("甲,乙\n1,2\n", "找不到表头"),
            (
                "电站编号,结算月份,上网电量(MWh)\nS1,2026-03,10\n",
                "请以千瓦时",
            ),
            (
                "电站编号,结算月份,上网电量(kWh),上网电量\nS1,2026-03,10,10\n",
                "重复",
            ),
            (
                "电站编号,结算月份,上网电量(kWh)\nS1,2026-03,10\n合计,,20\n",
                "上方 1 个电站行合计 10.000 kWh",
            ),
            (
                "电站编号,结算月份,上网电量(kWh)\nS1,2026-03,10\n合计,,abc\n",
                "不是有效的数字",
            ),
        ];
        for (file, words) in cases {
            let texts = zh(file);
            assert!(texts.iter().any(|t| t.contains(words)), "{file}: {texts:?}");
            assert!(
                texts
                    .iter()
                    .all(|t| !t.contains("settle.err.") && !t.contains("row")),
                "{file}: {texts:?}"
            );
        }
        for key in crate::tabular::PROBLEM_KEYS {
            for lang in [Lang::Zh, Lang::En] {
                assert_ne!(tr(lang, key), *key, "{key} has no {lang:?} text");
            }
        }
        for key in [
            "settle.err.no_header",
            "settle.err.column_repeats",
            "settle.err.unit_energy",
            "settle.err.unit_amount",
            "settle.err.total_bad",
            "settle.err.tariff_unknown",
            "settle.err.amount_large",
            "settle.err.total_energy",
            "settle.err.total_amount",
            "settle.err.outside_scope",
            "settle.err.already_settled",
        ] {
            for lang in [Lang::Zh, Lang::En] {
                assert_ne!(tr(lang, key), key, "{key} has no {lang:?} text");
            }
        }
    }
}
