//! One `web_fetch` on the host, under an instance's egress policy: the URL is checked, the name
//! resolved here and every address checked, and the connection made to the checked address
//! (a client pinned to it, so a second lookup cannot answer differently). Redirects are
//! followed by hand, each one checked the same way. Credentials are added for their exact host
//! only, and never appear in what this returns.

use crate::domain::instance::egress::{EgressPolicy, Refusal, Target};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::text::{self, BodyKind};

/// What a finished fetch gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The text for the model.
    pub text: String,
    pub status: u16,
    /// Body bytes read (at most the policy's `response_bytes`).
    pub bytes: u64,
    /// The URL the text came from, after redirects, as [`redact`] writes it.
    pub final_url: String,
}

/// Why a fetch gave no text. The text is what the model reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not a URL the host can fetch")]
    BadUrl(String),
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("{host} could not be resolved")]
    Resolve { host: String },
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("the request took longer than egress.limits.timeout ({0})")]
    Timeout(String),
    #[error("the server answered {status}")]
    Status { status: u16, bytes: u64 },
    #[error(
        "the response is {0}, a binary type this tool does not read (only text, HTML and JSON)"
    )]
    Binary(String),
    #[error("the response does not look like text")]
    NotText,
    #[error("the request failed: {0}")]
    Failed(String),
}

impl FetchError {
    /// A short, stable word for records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_url",
            FetchError::Refused(r) => r.kind(),
            FetchError::Resolve { .. } => "resolve",
            FetchError::TooManyRedirects(_) => "redirects",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status { .. } => "status",
            FetchError::Binary(_) => "binary",
            FetchError::NotText => "not_text",
            FetchError::Failed(_) => "failed",
        }
    }

    /// True when the policy refused the request before anything was sent.
    pub fn is_refusal(&self) -> bool {
        matches!(self, FetchError::Refused(_) | FetchError::BadUrl(_))
    }
}

/// The URL as it may be shown and stored: no user name or password, no fragment, and the
/// query's values replaced by `…` (they are where API keys and tokens travel).
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    let keys: Option<Vec<String>> = u.query().map(|_| {
        u.query_pairs()
            .map(|(k, _)| format!("{k}=\u{2026}"))
            .collect()
    });
    u.set_query(None);
    match keys {
        Some(keys) => format!("{u}?{}", keys.join("&")),
        None => u.to_string(),
    }
}

/// Fetches `url` under `policy`; `env` reads a host environment variable (the credentials'
/// values).
pub async fn fetch(
    policy: &EgressPolicy,
    url: &str,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Fetched, FetchError> {
    let limit = policy.limits.timeout();
    match tokio::time::timeout(limit, fetch_inner(policy, url, env)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(policy.limits.timeout.clone())),
    }
}

async fn fetch_inner(
    policy: &EgressPolicy,
    url: &str,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Fetched, FetchError> {
    let mut url =
        reqwest::Url::parse(url.trim()).map_err(|_| FetchError::BadUrl(url.trim().into()))?;
    let mut redirects = 0;
    loop {
        let target = policy.check_url(&url).map_err(FetchError::Refused)?;
        let addr = resolve_checked(policy, &url, &target).await?;
        let response = send(policy, &url, &target, addr, env).await?;
        let status = response.status();
        if status.is_redirection() {
            if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
                if redirects >= policy.limits.redirects {
                    return Err(FetchError::TooManyRedirects(policy.limits.redirects));
                }
                redirects += 1;
                let location = location.to_str().unwrap_or_default();
                url = url
                    .join(location)
                    .map_err(|_| FetchError::BadUrl(location.into()))?;
                continue;
            }
        }
        return read(policy, &url, response).await;
    }
}

/// Resolves the URL's host here and checks every address; the first is the one connected to.
async fn resolve_checked(
    policy: &EgressPolicy,
    url: &reqwest::Url,
    target: &Target,
) -> Result<IpAddr, FetchError> {
    let default_port = url.port_or_known_default().unwrap_or(target.port);
    let addrs: Vec<IpAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|_| FetchError::Resolve {
                host: target.host.clone(),
            })?
            .map(|a| a.ip())
            .collect(),
    };
    let Some(&first) = addrs.first() else {
        return Err(FetchError::Resolve {
            host: target.host.clone(),
        });
    };
    policy
        .check_addresses(target, default_port, &addrs)
        .map_err(FetchError::Refused)?;
    Ok(first)
}

async fn send(
    policy: &EgressPolicy,
    url: &reqwest::Url,
    target: &Target,
    addr: IpAddr,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<reqwest::Response, FetchError> {
    // A client per hop: it is pinned to the address just checked, never asks DNS itself, and
    // never goes through a proxy from the environment (which would resolve on its own).
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("supervisor/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10));
    if target.host.parse::<IpAddr>().is_err() {
        builder = builder.resolve(&target.host, SocketAddr::new(addr, target.port));
    }
    let client = builder
        .build()
        .map_err(|e| FetchError::Failed(e.to_string()))?;
    let mut request = client.get(url.clone()).header(
        reqwest::header::ACCEPT,
        "text/html, application/json, text/*;q=0.9, */*;q=0.1",
    );
    for credential in policy.credentials_for(&target.host) {
        // A credential whose variable is unset is left out: the server's answer says so.
        if let Some(value) = env(&credential.value_env).filter(|v| !v.is_empty()) {
            let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                FetchError::Failed(format!(
                    "the value of {} is not a valid header value",
                    credential.value_env
                ))
            })?;
            value.set_sensitive(true);
            request = request.header(credential.header.as_str(), value);
        }
    }
    request.send().await.map_err(|e| {
        // reqwest's error text names the URL, query included: say only what went wrong.
        let what = if e.is_connect() {
            "could not connect"
        } else if e.is_timeout() {
            "timed out"
        } else {
            "the connection failed"
        };
        FetchError::Failed(format!("{what} to {}", target.host))
    })
}

async fn read(
    policy: &EgressPolicy,
    url: &reqwest::Url,
    mut response: reqwest::Response,
) -> Result<Fetched, FetchError> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let kind = text::kind_of(content_type.as_deref());
    if kind == BodyKind::Binary {
        return Err(FetchError::Binary(content_type.unwrap_or_default()));
    }
    let cap = policy.limits.response_bytes() as usize;
    let mut body = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| FetchError::Failed("the response was cut off".into()))?
    {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let bytes = body.len() as u64;
    if !(200..300).contains(&status) {
        return Err(FetchError::Status { status, bytes });
    }
    let text = text::to_text(kind, &body, cut).ok_or(FetchError::NotText)?;
    Ok(Fetched {
        text,
        status,
        bytes,
        final_url: redact(url),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_userinfo_query_values_and_fragment() {
        let u =
            reqwest::Url::parse("https://user:pw@api.example.com/x?key=SECRET&q=a#frag").unwrap();
        let r = redact(&u);
        assert_eq!(r, "https://api.example.com/x?key=\u{2026}&q=\u{2026}");
        assert!(!r.contains("SECRET") && !r.contains("pw"));
    }
}
