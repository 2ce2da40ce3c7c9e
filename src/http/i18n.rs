//! The pages' language: Chinese (zh-CN) first, English on request. Every label, message and
//! error a page shows comes from `locales/*.toml` (each key with both languages side by side)
//! through [`tr`]; numbers, money and dates follow Chinese conventions in both languages
//! (yuan with two decimals, `2026-12-02`, 24-hour times in the station's zone).
//!
//! The choice is a cookie set by `GET /lang?to=en&back=/path` (a link in the header), so it works
//! with JavaScript off and survives signing in and out.

use super::guard::Caller;
use super::routes::{Access, Routes};
use axum::extract::Query;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// The cookie that keeps the choice.
pub const COOKIE: &str = "sunshare_lang";

/// A language the pages speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// The locale code of the catalogue and of `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The other language, offered in the header.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// Parses a locale code; anything unknown is Chinese.
    pub fn from_code(code: &str) -> Lang {
        if code.eq_ignore_ascii_case("en") || code.to_ascii_lowercase().starts_with("en-") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    /// The language a request's cookie chose (Chinese when none did).
    pub fn from_headers(headers: &HeaderMap) -> Lang {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map_or(Lang::Zh, |(_, value)| Lang::from_code(value.trim()))
    }
}

/// The text of `key` in `lang`. A key missing from the catalogue shows as itself (and the test
/// over `locales/` keeps that from happening).
pub fn tr(lang: Lang, key: &str) -> String {
    rust_i18n::t!(key, locale = lang.code()).into_owned()
}

/// The text of `key` with each `{name}` replaced by its value.
pub fn trf(lang: Lang, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut text = tr(lang, key);
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), &value.to_string());
    }
    text
}

/// [`trf`] with the arguments as the problems of the registry, the ledger and the imports carry
/// them: names and texts.
pub fn trs<K: AsRef<str>, V: AsRef<str>>(lang: Lang, key: &str, args: &[(K, V)]) -> String {
    let mut text = tr(lang, key);
    for (name, value) in args {
        text = text.replace(&format!("{{{}}}", name.as_ref()), value.as_ref());
    }
    text
}

pub fn routes() -> Routes {
    Routes::new().get("/lang", Access::PUBLIC, switch)
}

#[derive(Debug, Deserialize)]
struct Switch {
    to: String,
    #[serde(default)]
    back: Option<String>,
}

/// Sets the language cookie and goes back to the page the link was on (only a path on this
/// site: never an open redirect).
async fn switch(_caller: Caller, Query(q): Query<Switch>) -> Response {
    let lang = Lang::from_code(&q.to);
    let back = q
        .back
        .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/".to_owned());
    let cookie = format!(
        "{COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.code()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&back)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_chooses_and_chinese_is_the_default() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_headers(&h), Lang::Zh);
        h.insert(header::COOKIE, "a=b; sunshare_lang=en".parse().unwrap());
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert(header::COOKIE, "sunshare_lang=fr".parse().unwrap());
        assert_eq!(Lang::from_headers(&h), Lang::Zh);
    }

    #[test]
    fn the_catalogue_is_complete_and_every_key_used_exists() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/locales");
        let mut keys = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: toml::Table = toml::from_str(&text).unwrap();
            fn walk(
                prefix: &str,
                t: &toml::Table,
                keys: &mut std::collections::BTreeSet<String>,
                file: &std::path::Path,
            ) {
                for (k, v) in t {
                    if k == "_version" {
                        continue;
                    }
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    let table = v
                        .as_table()
                        .unwrap_or_else(|| panic!("{}: {name} is not a table", file.display()));
                    if table.contains_key("zh-CN") || table.contains_key("en") {
                        for lang in ["zh-CN", "en"] {
                            let text = table.get(lang).and_then(|v| v.as_str());
                            assert!(
                                text.is_some_and(|t| !t.trim().is_empty()),
                                "{}: {name} has no {lang} text",
                                file.display()
                            );
                        }
                        assert!(keys.insert(name.clone()), "{name} is defined twice");
                    } else {
                        walk(&name, table, keys, file);
                    }
                }
            }
            walk("", &doc, &mut keys, &path);
        }
        assert!(keys.len() > 20, "the catalogue was not read: {keys:?}");
        // Keys used in the source: the string literal right after `tr(lang, `.
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut missing = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(src)];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for call in ["tr(", "trf("] {
                for (at, _) in text.match_indices(call) {
                    let rest = &text[at + call.len()..];
                    let Some((_, after)) = rest.split_once(',') else {
                        continue;
                    };
                    let after = after.trim_start();
                    let Some(lit) = after.strip_prefix('"') else {
                        continue;
                    };
                    let Some((key, _)) = lit.split_once('"') else {
                        continue;
                    };
                    let is_key = key.contains('.')
                        && key.split('.').all(|part| {
                            !part.is_empty()
                                && part.chars().all(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
                                })
                        });
                    if is_key && !keys.contains(key) {
                        missing.push(format!("{}: {key}", p.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys used but not in locales/: {missing:#?}"
        );
    }
}
