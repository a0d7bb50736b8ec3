//! The TCP listener's rules, checked before anything binds: loopback by default, a token
//! required anywhere else, and no short tokens.

use std::net::SocketAddr;

use crate::host_config::ApiConfig;

/// The shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    #[error("api.listen = {0}: a listener beyond loopback needs a bearer token: set the environment variable {1} (32 or more characters)")]
    TokenRequired(SocketAddr, String),
    #[error("the bearer token in {0} is {1} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)")]
    TokenTooShort(String, usize),
    #[error("api.listen = {0:?} is not an address and port")]
    BadAddress(String),
}

/// What to serve on TCP.
#[derive(Clone, PartialEq, Eq)]
pub struct TcpPlan {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl std::fmt::Debug for TcpPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpPlan")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// Decides the TCP listener from the config and the token's value (read by the caller from
/// the environment). None: no TCP listener.
pub fn plan(cfg: &ApiConfig, token: Option<String>) -> Result<Option<TcpPlan>, ListenError> {
    let Some(listen) = &cfg.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| ListenError::BadAddress(listen.clone()))?;
    let token = token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    match &token {
        Some(t) if t.chars().count() < MIN_TOKEN_LEN => {
            return Err(ListenError::TokenTooShort(
                cfg.token_env.clone(),
                t.chars().count(),
            ))
        }
        None if !addr.ip().is_loopback() => {
            return Err(ListenError::TokenRequired(addr, cfg.token_env.clone()))
        }
        _ => {}
    }
    Ok(Some(TcpPlan { addr, token }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: Option<&str>) -> ApiConfig {
        ApiConfig {
            listen: listen.map(str::to_string),
            ..ApiConfig::default()
        }
    }

    #[test]
    fn the_rules() {
        let good = Some("t".repeat(40));
        assert_eq!(plan(&cfg(None), good.clone()), Ok(None));
        let p = plan(&cfg(Some("127.0.0.1:8787")), None).unwrap().unwrap();
        assert_eq!(
            (p.addr.port(), p.token),
            (8787, None),
            "loopback may go without"
        );
        assert!(matches!(
            plan(&cfg(Some("0.0.0.0:8787")), None),
            Err(ListenError::TokenRequired(..))
        ));
        assert!(matches!(
            plan(&cfg(Some("[::]:8787")), Some("  ".into())),
            Err(ListenError::TokenRequired(..))
        ));
        let e = plan(&cfg(Some("0.0.0.0:8787")), Some("short".into())).unwrap_err();
        assert!(e.to_string().contains("5 characters"), "{e}");
        assert!(
            !e.to_string().contains("short"),
            "the token never appears: {e}"
        );
        let p = plan(&cfg(Some("0.0.0.0:8787")), good).unwrap().unwrap();
        assert!(p.token.is_some());
        assert!(!format!("{p:?}").contains("tttt"), "{p:?}");
    }
}
