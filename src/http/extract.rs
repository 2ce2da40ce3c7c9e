//! Path, query and JSON body extractors for the JSON API whose rejections are [`ApiError`]s: a
//! malformed request gets the JSON error body, naming the parameter, like every other error.

use super::ApiError;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;

/// Like [`Path`], rejecting with a 400 that names the path parameter.
#[derive(Debug)]
pub(super) struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => {
                let names: Vec<String> = RawPathParams::from_request_parts(parts, state)
                    .await
                    .map(|raw| raw.iter().map(|(name, _)| name.to_owned()).collect())
                    .unwrap_or_default();
                Err(path_error(rejection, &names))
            }
        }
    }
}

/// `names` are the route's parameters in order, to name the one a tuple or single value failed on.
fn path_error(rejection: PathRejection, names: &[String]) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        // The route and the extractor disagree: a programming error, not the caller's.
        return ApiError::Internal(rejection.body_text());
    };
    let name_at = |i: usize| names.get(i).map_or("path parameter", String::as_str);
    let not_a = |name: &str, value: &str, expected: &str| {
        ApiError::BadRequest(format!(
            "{name} '{value}' is not a valid {}",
            describe(expected)
        ))
    };
    match e.into_kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => not_a(&key, &value, expected_type),
        ErrorKind::ParseErrorAtIndex {
            index,
            value,
            expected_type,
        } => not_a(name_at(index), &value, expected_type),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => not_a(name_at(0), &value, expected_type),
        ErrorKind::InvalidUtf8InPathParam { key } => {
            ApiError::BadRequest(format!("{key} is not valid UTF-8 once percent-decoded"))
        }
        other => ApiError::BadRequest(format!("path: {other}")),
    }
}

fn describe(rust_type: &str) -> String {
    match rust_type {
        "i32" => "integer (32 bits)".to_owned(),
        "i64" => "integer (64 bits)".to_owned(),
        "u32" | "u64" | "usize" => "non-negative integer".to_owned(),
        other => other.to_owned(),
    }
}

/// Like [`Query`], rejecting with a 400 that says what is wrong with the query string.
#[derive(Debug)]
pub(super) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Like [`Json`], rejecting with a 400 that says what is wrong with the body.
#[derive(Debug)]
pub(super) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|e| ApiError::BadRequest(format!("request body: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;

    #[tokio::test]
    async fn bad_paths_and_queries_are_json_400s_naming_the_parameter() -> anyhow::Result<()> {
        #[derive(serde::Deserialize)]
        struct Q {
            #[serde(rename = "to")]
            _to: Option<String>,
        }
        let router = Router::new()
            .route(
                "/v/{code}/p/{year}",
                get(|ApiPath((_, y)): ApiPath<(String, i32)>| async move { y.to_string() }),
            )
            .route(
                "/a/{id}",
                get(|ApiPath(id): ApiPath<i64>| async move { id.to_string() }),
            )
            .route("/q", get(|ApiQuery(_): ApiQuery<Q>| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let get = |path: &str| client.get(format!("{base}{path}")).send();

        let r = get("/v/V1/p/2147483648").await?;
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["error"], "bad_request");
        assert_eq!(
            body["message"],
            "year '2147483648' is not a valid integer (32 bits)"
        );
        let body: serde_json::Value = get("/a/abc").await?.json().await?;
        assert_eq!(body["message"], "id 'abc' is not a valid integer (64 bits)");
        let r = get("/q?to=a&to=b").await?;
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await?;
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("duplicate field `to`")),
            "{body}"
        );
        assert_eq!(get("/a/7").await?.text().await?, "7");
        server.abort();
        Ok(())
    }
}
