//! Request extractors whose refusals are JSON [`ApiError`]s naming the field that was wrong, in
//! place of axum's plain-text rejections.

use super::ApiError;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// The field a serde error is about: the path where it happened, or the name a "missing field"
/// or "unknown field" message quotes.
fn field_of(path: &serde_path_to_error::Path, message: &str) -> String {
    let at = path.to_string();
    if !matches!(at.as_str(), "." | "?" | "") {
        return at;
    }
    message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field `"))
        .unwrap_or("body")
        .to_owned()
}

/// A JSON body; a body that does not parse is a 400 naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if !json {
            return Err(ApiError::invalid(
                "Content-Type",
                "send the body as application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(body_error)?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON with the failing field named.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        ApiError::invalid(field_of(e.path(), &message), message)
    })
}

/// A form body (`application/x-www-form-urlencoded`) with the failing field named.
pub fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(bytes));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        ApiError::invalid(field_of(e.path(), &message), message)
    })
}

pub(super) fn body_error(e: axum::extract::rejection::BytesRejection) -> ApiError {
    use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
    match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::TooLarge {
                limit: super::MAX_BODY,
            }
        }
        other => ApiError::BadRequest(format!("the request body could not be read: {other}")),
    }
}

/// The query string; a parameter that does not parse is a 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        parse_form(query.as_bytes()).map(Query)
    }
}

/// Path parameters; one that does not parse is a 400 naming it (as the route spells it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => {
                let names: Vec<String> = parts
                    .extensions
                    .get::<MatchedPath>()
                    .map(|m| param_names(m.as_str()))
                    .unwrap_or_default();
                Err(path_error(rejection, &names))
            }
        }
    }
}

/// `{name}` segments of a route template, in order.
fn param_names(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

fn path_error(rejection: PathRejection, names: &[String]) -> ApiError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        return ApiError::BadRequest(rejection.body_text());
    };
    let one = || names.first().cloned().unwrap_or_else(|| "path".to_owned());
    match e.kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => ApiError::invalid(key, format!("'{value}' is not a valid {expected_type}")),
        ErrorKind::ParseErrorAtIndex {
            index,
            value,
            expected_type,
        } => ApiError::invalid(
            names.get(*index).cloned().unwrap_or_else(|| "path".into()),
            format!("'{value}' is not a valid {expected_type}"),
        ),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => ApiError::invalid(one(), format!("'{value}' is not a valid {expected_type}")),
        ErrorKind::InvalidUtf8InPathParam { key } => ApiError::invalid(key, "is not valid UTF-8"),
        ErrorKind::DeserializeError {
            key,
            value,
            message,
        } => ApiError::invalid(key, format!("'{value}': {message}")),
        _ => ApiError::BadRequest(e.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        to: String,
        limit: u32,
    }

    fn field(e: ApiError) -> String {
        match e {
            ApiError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            field(parse_json::<Body>(br#"{"to":"x"}"#).unwrap_err()),
            "limit"
        );
        assert_eq!(
            field(parse_json::<Body>(br#"{"to":"x","limit":"many"}"#).unwrap_err()),
            "limit"
        );
        assert_eq!(
            field(parse_json::<Body>(br#"{"to":"x","limit":1,"who":2}"#).unwrap_err()),
            "who"
        );
        assert_eq!(field(parse_json::<Body>(b"{").unwrap_err()), "body");
    }

    #[test]
    fn query_errors_name_the_parameter() {
        assert_eq!(
            field(parse_form::<Body>(b"to=x&limit=-3").unwrap_err()),
            "limit"
        );
        assert!(parse_form::<Body>(b"to=x&limit=3").is_ok());
    }

    #[test]
    fn route_parameters_are_named_in_order() {
        assert_eq!(
            param_names("/api/villages/{code}/plans/{year}"),
            vec!["code".to_owned(), "year".to_owned()]
        );
    }
}
