//! `web_search` on the host: the query goes to the SearXNG backend named in supervisor.toml,
//! and the results come back as a numbered list for the model. The backend is the operator's
//! choice, so it is not held to an instance's allow-list; what the agent then fetches is.

use crate::domain::host_config::WebSearchConfig;
use std::time::Duration;
use supervisor_agent::protocol::MAX_WEB_TEXT_BYTES;

/// The most results given to the model.
const MAX_RESULTS: usize = 10;

/// Searches `query` on the backend; the text for the model, or why there is none.
pub async fn search(
    config: &WebSearchConfig,
    query: &str,
    timeout: Duration,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<String, String> {
    let base = config
        .searxng_url
        .as_deref()
        .ok_or("this host has no search backend, so web_search is not available")?;
    let mut url = reqwest::Url::parse(base)
        .map_err(|_| "the search backend's URL is not valid".to_string())?;
    url.set_path(&format!("{}/search", url.path().trim_end_matches('/')));
    url.query_pairs_mut()
        .append_pair("q", query)
        .append_pair("format", "json");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(url);
    if let Some(key) = config.api_key_env.as_deref().and_then(env) {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|_| "the search backend could not be reached".to_string())?;
    if !response.status().is_success() {
        return Err(format!(
            "the search backend answered {}",
            response.status().as_u16()
        ));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|_| "the search backend's answer is not SearXNG JSON".to_string())?;
    Ok(format_results(&body))
}

/// A numbered list of title, URL and extract per result.
fn format_results(body: &serde_json::Value) -> String {
    let results = body["results"].as_array().cloned().unwrap_or_default();
    if results.is_empty() {
        return "no results".into();
    }
    let mut text = String::new();
    for (i, r) in results.iter().take(MAX_RESULTS).enumerate() {
        let field = |k: &str| r[k].as_str().unwrap_or("").trim().to_string();
        text.push_str(&format!(
            "{}. {}\n   {}\n",
            i + 1,
            field("title"),
            field("url")
        ));
        let content = field("content");
        if !content.is_empty() {
            text.push_str(&format!("   {content}\n"));
        }
        if text.len() > MAX_WEB_TEXT_BYTES - 4096 {
            break;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_numbered() {
        let body = serde_json::json!({"results": [
            {"title": "Serde", "url": "https://serde.rs/", "content": "A framework"},
            {"title": "docs.rs", "url": "https://docs.rs/serde"}
        ]});
        assert_eq!(
            format_results(&body),
            "1. Serde\n   https://serde.rs/\n   A framework\n2. docs.rs\n   https://docs.rs/serde\n"
        );
        assert_eq!(format_results(&serde_json::json!({})), "no results");
    }
}
