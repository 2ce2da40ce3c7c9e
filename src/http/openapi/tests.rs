//! Keeps the OpenAPI document equal to the routes: every `/api/` route the modules register is
//! documented, nothing else is, and what every operation shares is there.

use super::*;
use crate::http::ApiError;
use axum::response::IntoResponse;
use serde_json::Value;
use std::collections::BTreeSet;

/// `(METHOD, path)`, e.g. `("GET", "/api/stations/{id}/energy")`.
type Route = (String, String);

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

/// The `/api/` routes of the route table (the router is built from it, so nothing else is routed).
fn registered() -> BTreeSet<Route> {
    crate::http::routes()
        .specs()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect()
}

#[test]
fn the_document_lists_every_api_route_and_nothing_else() {
    let registered = registered();
    let documented = documented();
    assert!(
        registered.len() >= 13,
        "the route table has too few API routes: {registered:?}"
    );
    let missing: Vec<_> = registered.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routed but not in the OpenAPI document (add #[utoipa::path] and list it in ApiDoc): \
         {missing:?}; documented but not routed: {extra:?}"
    );
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
