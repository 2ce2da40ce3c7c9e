//! Keeps the OpenAPI document equal to the routes: every `/api/` route the modules register is
//! documented, nothing else is, and what every operation shares is there.

use super::*;
use crate::http::ApiError;
use axum::response::IntoResponse;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// `(METHOD, path)`, e.g. `("GET", "/api/stations/{id}/energy")`.
type Route = (String, String);

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn documented() -> BTreeSet<Route> {
    let mut out = BTreeSet::new();
    for (path, item) in &doc().paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ] {
            if op.is_some() {
                out.insert((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

/// The text from `open` (just after a `(`) to its matching `)`, skipping string literals.
fn balanced(text: &str) -> Option<&str> {
    let mut depth = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every `.route("/api/...", get(..).post(..))` call in `source`, one entry per method.
fn api_routes_in(source: &str) -> Result<Vec<Route>, String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let args = balanced(rest).ok_or("unbalanced .route( call")?;
        let Some((_, after_quote)) = args.split_once('"') else {
            continue;
        };
        let Some((path, methods)) = after_quote.split_once('"') else {
            continue;
        };
        if !path.starts_with("/api/") {
            continue;
        }
        let before = out.len();
        for (i, _) in methods.match_indices('(') {
            let word_start = methods[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |j| j + 1);
            let word = &methods[word_start..i];
            let route = (word.to_ascii_uppercase(), path.to_owned());
            if METHODS.contains(&word) && !out[before..].contains(&route) {
                out.push(route);
            }
        }
        if out.len() == before {
            return Err(format!(
                "route {path}: no get/post/put/delete/patch method router found in `{args}`"
            ));
        }
    }
    Ok(out)
}

/// The `/api/` routes registered by `src/http` outside test code.
fn registered() -> BTreeSet<Route> {
    fn walk(dir: &Path, out: &mut BTreeSet<Route>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => panic!("{}: {e}", path.display()),
                };
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                match api_routes_in(code) {
                    Ok(routes) => out.extend(routes),
                    Err(e) => panic!("{}: {e}", path.display()),
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut out,
    );
    out
}

#[test]
fn the_document_lists_every_api_route_and_nothing_else() {
    let registered = registered();
    let documented = documented();
    assert!(
        registered.len() >= 13,
        "the source scan found too few routes: {registered:?}"
    );
    let missing: Vec<_> = registered.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routed but not in the OpenAPI document (add #[utoipa::path] and list it in ApiDoc): \
         {missing:?}; documented but not routed: {extra:?}"
    );
}

#[test]
fn routes_are_found_across_lines_and_in_chained_method_routers() {
    let source = r#"
        Router::new()
            .route("/", get(page))
            .route("/api/a/{id}", get(a_json).post(a_create))
            .route(
                "/api/b/{x}/c",
                post(b_make),
            )
            .route("/api/d", axum::routing::delete(d_gone))
            .route("/api/e", get(|State(s): State<S>| async move { s.get("x") }))
    "#;
    let found = api_routes_in(source).unwrap_or_default();
    let want: Vec<Route> = [
        ("GET", "/api/a/{id}"),
        ("POST", "/api/a/{id}"),
        ("POST", "/api/b/{x}/c"),
        ("DELETE", "/api/d"),
        ("GET", "/api/e"),
    ]
    .iter()
    .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
    .collect();
    assert_eq!(found, want);
    assert!(api_routes_in(r#".route("/api/f", any(f))"#).is_err());
}

fn as_json() -> Value {
    match serde_json::to_value(doc()) {
        Ok(v) => v,
        Err(e) => panic!("the document does not serialise: {e}"),
    }
}

#[test]
fn every_operation_answers_401_and_403_with_the_error_body_under_both_schemes() {
    let json = as_json();
    let schemes = &json["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["type"], "apiKey");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "sunshare_session");
    assert_eq!(
        json["security"],
        serde_json::json!([{ "bearer": [] }, { "session": [] }])
    );
    assert_eq!(json["info"]["title"], "Sunshare");
    assert_eq!(json["info"]["version"], env!("CARGO_PKG_VERSION"));
    let error_ref = "#/components/schemas/ErrorBody";
    let mut operations = 0;
    for (path, item) in json["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            operations += 1;
            for status in ["401", "403"] {
                assert_eq!(
                    op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                    error_ref,
                    "{method} {path} {status}"
                );
            }
            assert!(op["tags"][0].is_string(), "{method} {path} has no tag");
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description"
                );
            }
        }
    }
    assert_eq!(operations, documented().len());
}

fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.insert(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let json = as_json();
    let mut found = BTreeSet::new();
    refs(&json, &mut found);
    assert!(found.len() > 10, "{found:?}");
    for r in found {
        let pointer = r.strip_prefix('#').unwrap_or(&r);
        assert!(json.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

#[tokio::test]
async fn every_api_error_body_validates_against_the_error_body_schema() -> anyhow::Result<()> {
    let json = as_json();
    let schema = serde_json::json!({
        "$ref": "#/components/schemas/ErrorBody",
        "components": json["components"],
    });
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for error in [
        ApiError::NotFound("station 'S9'".into()),
        ApiError::BadRequest("limit '0' is out of range".into()),
        ApiError::Conflict("already resolved".into()),
        ApiError::Unprocessable("who: too long".into()),
        ApiError::Forbidden("viewer".into()),
        ApiError::Internal("disk full".into()),
    ] {
        let response = error.into_response();
        assert_eq!(
            response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
        let body: Value = serde_json::from_slice(&bytes)?;
        let problems: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(problems.is_empty(), "{body}: {problems:?}");
    }
    // The schema is not vacuous: a body without `message` fails it.
    assert!(!validator.is_valid(&serde_json::json!({ "error": "not_found" })));
    Ok(())
}
