//! The TCP listeners' rules, checked before anything binds: every TCP listener, the API's
//! (`api.listen`) and the per-instance ports, demands the bearer token, and short tokens are
//! refused. Loopback is no exception: any local user can connect to it.

use std::net::SocketAddr;

use crate::domain::host_config::ApiConfig;

/// The shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 32;

/// Why there is no usable token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    #[error("the environment variable {0} (named by api.token_env in supervisor.toml) is not set")]
    Unset(String),
    #[error("the bearer token in {0} is {1} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort(String, usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    #[error("api.listen = {0}: a TCP listener needs a bearer token, even on loopback: set the environment variable {1} (api.token_env) to 32 or more characters, or remove api.listen")]
    TokenRequired(SocketAddr, String),
    #[error(transparent)]
    Token(TokenProblem),
    #[error("api.listen = {0:?} is not an address and port")]
    BadAddress(String),
}

/// What to serve on TCP.
#[derive(Clone, PartialEq, Eq)]
pub struct TcpPlan {
    pub addr: SocketAddr,
    pub token: String,
}

impl std::fmt::Debug for TcpPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpPlan")
            .field("addr", &self.addr)
            .field("token", &"(set)")
            .finish()
    }
}

/// The token from its variable's value (read by the caller from the environment):
/// surrounding blanks do not count, and a blank value is no token.
pub fn token(cfg: &ApiConfig, value: Option<String>) -> Result<String, TokenProblem> {
    let token = value
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenProblem::Unset(cfg.token_env.clone()))?;
    let len = token.chars().count();
    if len < MIN_TOKEN_LEN {
        return Err(TokenProblem::TooShort(cfg.token_env.clone(), len));
    }
    Ok(token)
}

/// Decides the API's TCP listener from the config and the token's value. None: no TCP
/// listener. Without a usable token there is none either: the daemon must not start.
pub fn plan(cfg: &ApiConfig, value: Option<String>) -> Result<Option<TcpPlan>, ListenError> {
    let Some(listen) = &cfg.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| ListenError::BadAddress(listen.clone()))?;
    match token(cfg, value) {
        Ok(token) => Ok(Some(TcpPlan { addr, token })),
        Err(TokenProblem::Unset(var)) => Err(ListenError::TokenRequired(addr, var)),
        Err(e) => Err(ListenError::Token(e)),
    }
}

/// What an instance's state detail says while its `port` stays closed for want of a token.
pub fn port_closed_note(port: u16, problem: &TokenProblem) -> String {
    format!(
        "port {port} is not open: a per-instance port needs the API's bearer token, and {problem}; \
         give the daemon a token of {MIN_TOKEN_LEN} or more characters in the variable [api] token_env \
         names, then restart it"
    )
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
        assert_eq!(
            plan(&cfg(None), None),
            Ok(None),
            "no listener, nothing to check"
        );
        for addr in ["127.0.0.1:8787", "[::1]:8787", "0.0.0.0:8787", "[::]:8787"] {
            assert!(
                matches!(
                    plan(&cfg(Some(addr)), None),
                    Err(ListenError::TokenRequired(..))
                ),
                "{addr} without a token"
            );
            assert!(
                matches!(
                    plan(&cfg(Some(addr)), Some("  ".into())),
                    Err(ListenError::TokenRequired(..))
                ),
                "{addr} with a blank token"
            );
        }
        let e = plan(&cfg(Some("127.0.0.1:8787")), None).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("api.listen") && text.contains("SUPERVISOR_API_TOKEN"),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");

        let e = plan(&cfg(Some("0.0.0.0:8787")), Some("short".into())).unwrap_err();
        assert!(e.to_string().contains("5 characters"), "{e}");
        assert!(
            !e.to_string().contains("short"),
            "the token never appears: {e}"
        );
        let p = plan(&cfg(Some("127.0.0.1:8787")), good).unwrap().unwrap();
        assert_eq!((p.addr.port(), p.token.len()), (8787, 40));
        assert!(!format!("{p:?}").contains("tttt"), "{p:?}");
    }

    #[test]
    fn the_token_for_instance_ports() {
        let c = cfg(None);
        assert_eq!(
            token(&c, None),
            Err(TokenProblem::Unset("SUPERVISOR_API_TOKEN".into()))
        );
        assert_eq!(
            token(&c, Some(" \n".into())),
            Err(TokenProblem::Unset("SUPERVISOR_API_TOKEN".into()))
        );
        assert_eq!(
            token(&c, Some("x".repeat(31))),
            Err(TokenProblem::TooShort("SUPERVISOR_API_TOKEN".into(), 31))
        );
        assert_eq!(
            token(&c, Some(format!(" {} ", "x".repeat(32)))),
            Ok("x".repeat(32))
        );

        let note = port_closed_note(9101, &token(&c, None).unwrap_err());
        assert!(note.starts_with("port 9101 is not open"), "{note}");
        assert!(
            note.contains("SUPERVISOR_API_TOKEN") && note.contains("[api] token_env"),
            "says how to fix it: {note}"
        );
        let short = port_closed_note(9101, &token(&c, Some("secret".into())).unwrap_err());
        assert!(
            short.contains("6 characters") && !short.contains("secret"),
            "{short}"
        );
    }
}
