//! The OpenAPI description of the JSON API, served at `GET /api/openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]`; this file lists them, adds what every operation
//! shares (the error body for 401 and 403, the two security schemes) and serves the result. The
//! tests keep the list equal to the `/api/` routes of the route table.

use super::routes::{Access, Routes};
use super::{energy, fleet, ledger, mqtt, quarantine};
use axum::Json;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToSchema};

/// The description of the API is public: it says what exists, not what anyone holds.
pub fn routes() -> Routes {
    Routes::new().get("/api/openapi.json", Access::PUBLIC, openapi_json)
}

/// The body of every error answer: a stable kind for programs, a sentence for people, and the
/// request field that was wrong when one was.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`, `conflict`,
    /// `too_large`, `unprocessable`, `too_many_requests`, `busy` or `internal`.
    #[schema(example = "not_found")]
    pub error: String,
    /// What went wrong and, where it helps, how to put it right. Never internals.
    #[schema(example = "not found: station 'S9'")]
    pub message: String,
    /// The name of the request field (path or query parameter, body member) that was wrong.
    #[schema(example = "limit")]
    pub field: Option<String>,
}

/// A string schema that admits only `values`.
pub(super) fn string_enum(values: &[&str], description: &str) -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Sunshare",
        version = env!("CARGO_PKG_VERSION"),
        description = "Monitoring of photovoltaic poverty-alleviation stations and allocation of \
            their income to villages. Energy figures travel with their completeness and notes; \
            a month is provisional (metered) until the grid company's settlement is imported, and \
            settled after. Amounts of money are strings in yuan with two decimals. Errors are \
            JSON: `{\"error\": kind, \"message\": text, \"field\": name or null}`."
    ),
    paths(
        fleet::fleet_json,
        fleet::totals_json,
        energy::energy_json,
        energy::months_json,
        energy::upload_settlement,
        super::alerts::alerts_json,
        super::alerts::ack,
        quarantine::list,
        mqtt::unknown_json,
        mqtt::rejected_json,
        ledger::month_json,
        ledger::plan_json,
        ledger::plan_transition,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "fleet", description = "Stations and their condition now"),
        (name = "energy", description = "Daily and monthly energy, grid settlements"),
        (name = "alerts", description = "Sun-aware alerts and their acknowledgement"),
        (name = "ingest", description = "What ingest and the MQTT collector refused or could not place"),
        (name = "ledger", description = "Village income, statements and yearly plans"),
        (name = "meta", description = "This description"),
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn doc() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 description of the JSON API", body = Object))
)]
async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(doc())
}

/// What every operation shares: the security schemes and the 401 and 403 answers.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sst_...")
                    .description(Some(
                        "An API token made with `sunshare token add`: `Authorization: Bearer \
                         sst_...`. It acts as its user, with their role and scope, until it \
                         expires or is revoked.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "sunshare_session",
                "The session cookie a browser gets at `/login`. A state change made with it \
                 also carries the session's CSRF token (header `X-CSRF-Token`).",
            ))),
        );
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "ErrorBody",
                            ))))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            if let Some(post) = &mut item.post {
                post.responses
                    .responses
                    .entry("413".into())
                    .or_insert_with(|| error("The body is larger than the endpoint accepts"));
            }
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut op.responses.responses;
                responses.entry("503".into()).or_insert_with(|| {
                    error("Too many heavy requests at once, or one took too long: try again")
                });
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("No credential, or one that is not valid"));
                responses
                    .entry("403".into())
                    .or_insert_with(|| error("The caller may not do this"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
