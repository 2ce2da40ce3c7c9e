//! The HTML frame shared by every page: one stylesheet, a navigation bar, the language switch.
//! Pages are maud templates: text is escaped and attribute values quoted where they are built.

use super::guard::{Caller, CSRF_FIELD};
use super::i18n::{tr, Lang};
use maud::{html, Markup, PreEscaped, DOCTYPE};

const STYLE: &str = r#"
:root { --fg:#1d2733; --muted:#5b6b7c; --line:#d8dee6; --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; --sun:#e3a008; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.45 system-ui, "PingFang SC", "Microsoft YaHei", sans-serif; color:var(--fg); background:#f6f8fa; }
header { background:#12324a; color:#fff; padding:10px 20px; display:flex; gap:24px; align-items:center; }
header a { color:#cfe3f5; text-decoration:none; } header a:hover { color:#fff; }
header .brand { font-weight:700; font-size:18px; color:#fff; } header nav { display:flex; gap:18px; }
main { padding:16px 20px; max-width:1200px; margin:auto; }
h1 { font-size:22px; margin:8px 0 12px; } h2 { font-size:18px; margin:20px 0 8px; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; }
th { background:#eef2f6; font-weight:600; } td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
.status { display:inline-block; padding:1px 8px; border-radius:10px; font-size:13px; }
.producing { background:#dafbe1; color:var(--ok); } .sleeping { background:#eef2f6; color:var(--muted); }
.offline, .fault { background:#ffebe9; color:var(--bad); } .partial, .stale { background:#fff8c5; color:var(--warn); }
.cards { display:flex; gap:12px; flex-wrap:wrap; margin-bottom:12px; }
.card { background:#fff; border:1px solid var(--line); border-radius:6px; padding:10px 14px; min-width:160px; }
.card .v { font-size:22px; font-weight:600; } .card .k { color:var(--muted); font-size:13px; }
.muted { color:var(--muted); } .note { background:#fff8c5; border:1px solid #eed888; padding:8px 12px; border-radius:6px; }
main a { color:#0b5cad; }
.login, .refusal { max-width:420px; margin:40px auto; background:#fff; border:1px solid var(--line); border-radius:8px; padding:20px 24px; }
.refusal { max-width:560px; } .login code { white-space:nowrap; }
.login label { display:block; margin:10px 0; } .login input { width:100%; padding:7px 9px; font-size:15px; border:1px solid var(--line); border-radius:4px; }
button { background:#12324a; color:#fff; border:0; border-radius:4px; padding:7px 16px; font-size:15px; cursor:pointer; }
header .who { margin-left:auto; color:#cfe3f5; display:flex; gap:10px; align-items:center; }
header .who button { background:transparent; border:1px solid #cfe3f5; color:#cfe3f5; padding:2px 10px; font-size:13px; }
form.filters { display:flex; gap:12px; flex-wrap:wrap; align-items:center; margin:8px 0 12px; }
form.filters select, form.filters input { padding:4px 6px; font-size:14px; border:1px solid var(--line); border-radius:4px; }
th a.sort { color:inherit; text-decoration:none; } th a.sort:hover { text-decoration:underline; }
nav.pager { display:flex; gap:16px; align-items:center; margin:10px 0; }
ol.track { display:flex; flex-wrap:wrap; gap:4px; list-style:none; padding:0; margin:8px 0; }
ol.track li { padding:3px 10px; border-radius:12px; background:#eef2f6; color:var(--muted); font-size:13px; }
ol.track li.done { background:#dafbe1; color:var(--ok); } ol.track li.now { background:#12324a; color:#fff; font-weight:600; }
form.plan-step, section#plan table { margin:10px 0; } form.plan-step fieldset { border:1px solid var(--line); border-radius:6px; background:#fff; }
form.plan-step label { display:inline-block; margin:6px 12px 6px 0; } form.plan-step input[type=text] { padding:5px 7px; border:1px solid var(--line); border-radius:4px; }
input[aria-invalid=true] { border-color:var(--bad) !important; }
.field-error { color:var(--bad); font-weight:600; margin:4px 0 8px; }
article.notice .signature { text-align:right; margin-top:24px; }
@media print { .noprint, form { display:none; } }
@media print { header { display:none; } body { background:#fff; } }
"#;

/// A moment as the station's clock shows it (minutes), e.g. `2026-12-03 16:20`.
pub fn local_time(at: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// Builds a link to `path` with its query parameters URL-encoded.
pub fn href(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{path}?{query}")
}

/// The sign-out form or the sign-in link, and the language switch.
fn who(caller: &Caller) -> Markup {
    let lang = caller.lang;
    let switch = href(
        "/lang",
        &[("to", lang.other().code()), ("back", &caller.path)],
    );
    html! {
        span.who {
            a #lang-switch href=(switch) lang=(lang.other().code()) { (tr(lang, "common.switch_to")) }
            @match (&caller.principal, &caller.csrf) {
                (Some(p), Some(csrf)) => {
                    span #signed-in { (p.display_name) " · " (role_label(lang, p.role)) }
                    form method="post" action="/logout" {
                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                        button type="submit" { (tr(lang, "common.sign_out")) }
                    }
                }
                (Some(p), None) => {
                    span #signed-in { (p.display_name) " · " (role_label(lang, p.role)) }
                }
                (None, _) => a href="/login" { (tr(lang, "common.sign_in")) },
            }
        }
    }
}

/// A role's name in the page's language.
pub fn role_label(lang: Lang, role: crate::domain::Role) -> String {
    match lang {
        Lang::Zh => role.label_zh().to_owned(),
        Lang::En => role.to_string().replace('_', " "),
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Sunshare" }
            style { (PreEscaped(STYLE)) (PreEscaped(super::charts::CHART_STYLE)) }
        }
    }
}

/// A whole page with the navigation bar; `body` is a template (escaped where it was built).
pub fn frame(caller: &Caller, title: &str, body: Markup) -> Markup {
    let lang = caller.lang;
    let may = |action| crate::auth::decide(caller.who(), action, None).allowed();
    let audit = may(crate::auth::Action::ViewAudit);
    let settlements = may(crate::auth::Action::ImportSettlement);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(title))
            body {
                header {
                    a.brand href="/" { (tr(lang, "common.brand")) }
                    nav {
                        a href="/" { (tr(lang, "common.nav_fleet")) }
                        a href="/alerts" { (tr(lang, "common.nav_alerts")) }
                        a href="/villages" { (tr(lang, "common.nav_villages")) }
                        a href="/mqtt" { (tr(lang, "common.nav_loggers")) }
                        @if settlements { a href="/settlements" { (tr(lang, "common.nav_settlements")) } }
                        @if audit { a href="/audit" { (tr(lang, "common.nav_audit")) } }
                    }
                    (who(caller))
                }
                main { (body) }
            }
        }
    }
}

/// A page without navigation: the login form, refusals, the public notice for anonymous readers.
pub fn bare_frame(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(title))
            body {
                header { a.brand href="/" { (tr(lang, "common.brand")) } }
                main { (body) }
            }
        }
    }
}
