//! `web_fetch` and `web_search`: the container has no network, so both are requests to the
//! host, which fetches under the instance's egress policy. They are offered only on turns the
//! host marks `web` (the instance has a policy) and, for search, `web_search` (the host has a
//! search backend), so a model never sees a tool that can only fail.

use crate::host::{Host, HostError};
use crate::protocol::{ToolSpec, MAX_WEB_TARGET_BYTES};
use serde_json::json;

/// Which web tools a turn offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebTools {
    pub fetch: bool,
    pub search: bool,
}

impl WebTools {
    /// No web tools.
    pub const NONE: WebTools = WebTools {
        fetch: false,
        search: false,
    };

    /// Whether the tool `name` is on offer.
    pub fn offers(self, name: &str) -> bool {
        match name {
            "web_fetch" => self.fetch,
            "web_search" => self.search,
            _ => false,
        }
    }
}

/// The specs of the web tools on offer.
pub fn specs(offered: WebTools) -> Vec<ToolSpec> {
    let all = vec![
        ToolSpec {
            name: "web_fetch".into(),
            description: "Fetch a web page or API response by its http:// or https:// URL. \
                 The host fetches it for you, and only from the hosts this instance is allowed \
                 to reach; anything else is refused with the reason. Returns readable text: \
                 HTML reduced to text, JSON and plain text as they are, cut at 256 KiB with a \
                 note. Images and other binary files are refused."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "The full URL, starting with https:// or http://."}
                },
                "required": ["url"]
            }),
        },
        ToolSpec {
            name: "web_search".into(),
            description: "Search the web. Returns a numbered list of results, each with its \
                 title, URL and a short extract. Fetch a result with web_fetch to read it; \
                 results on hosts this instance may not reach are refused then."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to search for."}
                },
                "required": ["query"]
            }),
        },
    ];
    all.into_iter()
        .filter(|s| offered.offers(&s.name))
        .collect()
}

/// Runs a web tool: `action` is `fetch` or `search`, `target` the URL or query. The text for
/// the model, or why there is none.
pub fn call(
    host: &mut dyn Host,
    turn_id: &str,
    action: &str,
    target: &str,
) -> Result<String, WebFailure> {
    let target = target.trim();
    if target.is_empty() {
        return Err(WebFailure::Text(match action {
            "fetch" => "the URL is empty".into(),
            _ => "the query is empty".into(),
        }));
    }
    if target.len() > MAX_WEB_TARGET_BYTES {
        return Err(WebFailure::Text(format!(
            "the {} is {} bytes; at most {MAX_WEB_TARGET_BYTES} are accepted",
            if action == "fetch" { "URL" } else { "query" },
            target.len()
        )));
    }
    match host.web(turn_id, action, target) {
        Ok(answer) => match answer.error {
            Some(error) => Err(WebFailure::Text(error)),
            None if answer.text.is_empty() => Ok("(the response is empty)".into()),
            None => Ok(answer.text),
        },
        Err(HostError::Shutdown) => Err(WebFailure::Shutdown),
        Err(e) => Err(WebFailure::Text(e.to_string())),
    }
}

/// Why a web tool has no text.
#[derive(Debug, PartialEq, Eq)]
pub enum WebFailure {
    Text(String),
    Shutdown,
}
