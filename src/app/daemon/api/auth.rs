//! The bearer token in front of every TCP listener: compared in constant time, never
//! logged. There is no "no token": a TCP listener without one is never opened.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

/// The one GET a TCP caller may ask without the token (channel messages, which carry their
/// own proof, are the only POSTs: `webhook::PATH_PREFIX`, `telegram_hook::PATH_PREFIX`).
const LIVENESS_PATH: &str = "/v1/health";

/// The token a TCP listener demands.
#[derive(Clone)]
pub struct Token(std::sync::Arc<str>);

impl Token {
    pub fn new(token: impl Into<std::sync::Arc<str>>) -> Self {
        Self(token.into())
    }
}

// The token never appears in debug output (or in logs that print it).
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(set)")
    }
}

/// Whether `header` (an `Authorization` value) carries `token`.
pub fn authorized(token: &str, header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    // Constant time in the content; the length may show, and says nothing useful.
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // A channel message's signature or secret is its authentication (the sender holds no
    // API token).
    let path = req.uri().path();
    let channel_post = req.method() == Method::POST
        && (path.starts_with(super::webhook::PATH_PREFIX)
            || path.starts_with(super::telegram_hook::PATH_PREFIX));
    if authorized(&token.0, given) || channel_post {
        return next.run(req).await;
    }
    // Liveness is for probes that hold no secret (a load balancer, a container healthcheck):
    // it answers without the token, and then with nothing but that the daemon answers.
    if req.method() == Method::GET && req.uri().path() == LIVENESS_PATH {
        return Json(serde_json::json!({ "status": "ok" })).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": "missing or wrong bearer token" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = "a".repeat(32);
        assert!(authorized(&t, Some(&format!("Bearer {t}"))));
        assert!(!authorized(&t, Some(&format!("Bearer {}", "a".repeat(31)))));
        assert!(!authorized(&t, Some(&format!("Bearer {t}x"))));
        assert!(!authorized(&t, Some(&format!("Basic {t}"))));
        assert!(!authorized(&t, Some(&t)));
        assert!(!authorized(&t, None));
        assert_eq!(format!("{:?}", Token::new(t)), "Token(set)");
    }
}
