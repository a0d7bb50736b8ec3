//! What handlers take from a request (a JSON body, an instance name, a task id), refused
//! with the API's `{"error": "<sentence>"}` and a documented status instead of axum's plain
//! text rejections, and the router's answers for unknown paths and methods. The sentences
//! are about the request, in the words docs/api.md uses, never serde's or Rust's.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{header, request::Parts, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{api_error, ApiError};
use crate::domain::instance::InstanceName;
use crate::domain::serde_text;

/// A JSON body, read as `T`: `415` without a JSON content type, `400` when it is not JSON,
/// `422` when a key is missing, unknown or of the wrong kind, `413` when it is too large.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(not_json());
        }
        let bytes = body(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out (an empty body means `T::default()`); when there is
/// one, the rules of [`ApiJson`] apply.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers().get(header::CONTENT_TYPE));
        let bytes = body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        parse(&bytes).map(OptionalJson)
    }
}

fn not_json() -> ApiError {
    api_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the request body must be JSON, sent with the header `Content-Type: application/json`",
    )
}

async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            api_error(status, "the request body is too large")
        } else {
            api_error(status, "the request body could not be read")
        }
    })
}

/// `T` from a JSON body, or the refusal the API gives.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de)
        .map_err(|err| refusal(&err.path().to_string(), err.inner()))?;
    // Text after the value is not JSON either.
    de.end().map_err(|e| refusal(".", &e))?;
    Ok(value)
}

fn refusal(path: &str, e: &serde_json::Error) -> ApiError {
    let (path, message) = serde_text::json_error(path, e);
    match path.as_str() {
        "(syntax)" => api_error(
            StatusCode::BAD_REQUEST,
            format!("the request body is {message}"),
        ),
        "(top level)" => api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the request body: {message}"),
        ),
        key => api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the request body's {key:?}: {message}"),
        ),
    }
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(mime) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `{name}` of a path, as an instance name: `400` with the naming rule when it is not one.
pub struct InstanceParam(pub InstanceName);

impl<S: Send + Sync> FromRequestParts<S> for InstanceParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = param(parts, state, "name").await?;
        InstanceName::parse(&raw)
            .map(InstanceParam)
            .map_err(|e| api_error(StatusCode::BAD_REQUEST, e))
    }
}

/// The `{id}` of a path, as a task id: `400` when it is not a number.
pub struct TaskId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = param(parts, state, "id").await?;
        raw.parse().map(TaskId).map_err(|_| {
            api_error(
                StatusCode::BAD_REQUEST,
                format!("task id {raw:?}: expected a number, as `task list` shows"),
            )
        })
    }
}

async fn param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    key: &str,
) -> Result<String, ApiError> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|_| api_error(StatusCode::BAD_REQUEST, "the path is not valid UTF-8 text"))?;
    params.get(key).cloned().ok_or_else(|| {
        api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("this endpoint has no {{{key}}} in its path"),
        )
    })
}

/// A path no endpoint has.
pub async fn no_such_endpoint(method: Method, uri: Uri) -> ApiError {
    api_error(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}; docs/api.md lists them",
            uri.path()
        ),
    )
}

/// A path that exists, with a method it does not take.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    api_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; docs/api.md lists its methods",
            uri.path()
        ),
    )
}

/// The last word on every error answer: one that is not JSON yet (a rejection of axum's own
/// that no extractor above stood in for) becomes `{"error": "<its text>"}`, with the same
/// status, so a client always finds a sentence under `error`.
pub async fn errors_as_json(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json_already = is_json(response.headers().get(header::CONTENT_TYPE));
    if !(status.is_client_error() || status.is_server_error()) || is_json_already {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let sentence = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase()
    } else {
        text
    };
    let mut answer = api_error(status, sentence).into_response();
    // Headers such as `Allow` or `WWW-Authenticate` still say what they said.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        text: String,
        #[serde(default)]
        timeout_secs: Option<u64>,
    }

    fn refusal(body: &str) -> (StatusCode, String) {
        let (status, json) = parse::<Body>(body.as_bytes()).unwrap_err();
        (status, json["error"].as_str().unwrap().to_string())
    }

    #[test]
    fn bodies_are_refused_with_sentences_about_them() {
        assert_eq!(
            refusal("{\"text\": "),
            (
                StatusCode::BAD_REQUEST,
                "the request body is not valid JSON at line 1, column 9: it ends where a value should be".into()
            )
        );
        assert_eq!(
            refusal(""),
            (
                StatusCode::BAD_REQUEST,
                "the request body is empty, where JSON was expected".into()
            )
        );
        assert_eq!(
            refusal("{}"),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "the request body: the key \"text\" is missing".into()
            )
        );
        assert_eq!(
            refusal("{\"text\": \"hi\", \"timeout_secs\": \"soon\"}"),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "the request body's \"timeout_secs\": expected a whole number of 0 or more, got the string \"soon\"".into()
            )
        );
        assert_eq!(
            refusal("{\"text\": \"hi\"} x").0,
            StatusCode::BAD_REQUEST,
            "trailing text is not JSON"
        );
        assert!(parse::<Body>(b"{\"text\": \"hi\"}").is_ok());
    }

    #[test]
    fn json_content_types_are_recognised() {
        let v = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(is_json(Some(&v("application/merge-patch+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(Some(&v("application/jsonp"))));
        assert!(!is_json(None));
    }
}
