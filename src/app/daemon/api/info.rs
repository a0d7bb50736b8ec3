//! `GET /v1/daemon`: what this daemon process is and what it runs with, for `doctor`. Its
//! API token is read once when it starts, so only the daemon can say which one it really
//! accepts; it says so by a fingerprint, never the token itself.

use axum::extract::State;
use axum::Json;
use sha2::{Digest, Sha256};

use super::AppState;
pub use crate::app::wire::DaemonInfo;

/// Fixed when the daemon starts.
#[derive(Debug, Clone, Default)]
pub struct Started {
    /// The fingerprint of the bearer token the TCP listener and instance ports accept; None
    /// when the daemon has no usable token (they stay closed).
    pub token_fingerprint: Option<String>,
    /// The TCP listener's address, when it has one.
    pub listen: Option<String>,
}

/// A token's fingerprint: `sha256:` and the first 12 hex digits of its SHA-256. Enough to
/// tell two tokens apart, useless for guessing one (tokens are 32 characters or more).
pub fn fingerprint(token: &str) -> String {
    let digest = hex::encode(Sha256::digest(token.trim().as_bytes()));
    format!("sha256:{}", &digest[..12])
}

pub(super) async fn daemon(State(s): State<AppState>) -> Json<DaemonInfo> {
    Json(DaemonInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        home: s.home.root().display().to_string(),
        home_id: s.home_id.clone(),
        listen: s.started.listen.clone(),
        token_fingerprint: s.started.token_fingerprint.clone(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fingerprint_tells_tokens_apart_and_hides_them() {
        let a = super::fingerprint(&"a".repeat(40));
        assert_eq!(a.len(), "sha256:".len() + 12);
        assert!(a.starts_with("sha256:"));
        assert!(!a.contains("aaaa"));
        assert_ne!(a, super::fingerprint(&"b".repeat(40)));
        assert_eq!(a, super::fingerprint(&format!(" {} \n", "a".repeat(40))));
    }
}
