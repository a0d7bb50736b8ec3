//! The bearer token in front of the TCP listener: compared in constant time, never logged.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

/// The token the listener demands (None: no token, allowed on loopback only).
#[derive(Clone)]
pub struct Token(pub Option<std::sync::Arc<str>>);

// The token never appears in debug output (or in logs that print it).
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(none)"
        })
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
    let Some(expected) = &token.0 else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorized(expected, given) {
        return next.run(req).await;
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
        assert_eq!(format!("{:?}", Token(Some(t.into()))), "Token(set)");
    }
}
