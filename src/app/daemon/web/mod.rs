//! The web, through the host: an agent's `web_request` is answered here under its instance's
//! egress policy (src/instance/egress.rs), within its request caps, and recorded as an event.

pub mod fetch;
pub mod search;
pub mod text;

use crate::domain::host_config::WebSearchConfig;
use crate::domain::instance::egress::EgressPolicy;
use std::collections::VecDeque;
use supervisor_agent::protocol::Payload;

/// The day-and-minute request counts of one instance (the actor keeps them).
#[derive(Debug, Default)]
pub struct WebRate {
    /// Start times of the requests of the last minute, oldest first.
    minute: VecDeque<i64>,
    /// The UTC day (days since the epoch) and how many requests it has had; `None` until
    /// the actor has read the day's count from the store.
    day: Option<(i64, u32)>,
}

/// Requests refused by the rate caps recorded (log line, row, event): at most ten a minute.
pub const RATE_REFUSALS_RECORDED: crate::app::daemon::rate_window::RateWindow =
    crate::app::daemon::rate_window::RateWindow::new(10, 60_000);

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

impl WebRate {
    /// Takes one request at `now_ms` if the policy's caps have room; otherwise why not.
    pub fn try_take(&mut self, policy: &EgressPolicy, now_ms: i64) -> Result<(), String> {
        while self
            .minute
            .front()
            .is_some_and(|t| now_ms - t >= MINUTE_MS || *t > now_ms)
        {
            self.minute.pop_front();
        }
        if self.needs_day_count(now_ms) {
            self.set_day_count(now_ms, 0);
        }
        let day = self.day.as_mut().expect("set above");
        let limits = &policy.limits;
        if day.1 >= limits.requests_per_day {
            return Err(format!(
                "this instance has made its {} web requests for today \
                 (egress.limits.requests_per_day); the count starts again at 00:00 UTC",
                limits.requests_per_day
            ));
        }
        if self.minute.len() >= limits.requests_per_minute as usize {
            return Err(format!(
                "this instance has made {} web requests in the last minute \
                 (egress.limits.requests_per_minute); wait a minute before the next",
                limits.requests_per_minute
            ));
        }
        self.minute.push_back(now_ms);
        day.1 += 1;
        Ok(())
    }

    /// True when the day's count is not known: at the first request, and when a new UTC day
    /// has begun. The actor then reads it from the store, so a restart does not reset it.
    pub fn needs_day_count(&self, now_ms: i64) -> bool {
        self.day.is_none_or(|(d, _)| d != now_ms.div_euclid(DAY_MS))
    }

    /// Sets today's count.
    pub fn set_day_count(&mut self, now_ms: i64, n: u64) {
        self.day = Some((now_ms.div_euclid(DAY_MS), n.min(u64::from(u32::MAX)) as u32));
    }

    /// When the UTC day of `now_ms` began, Unix ms.
    pub fn day_start(now_ms: i64) -> i64 {
        now_ms.div_euclid(DAY_MS) * DAY_MS
    }
}

/// How one web request ended, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `ok`, `refused` (by the policy or a cap) or `failed` (the server or the network).
    pub result: &'static str,
    /// Why, as a short word (`not_listed`, `address`, `rate`, `binary`, …); `None` for `ok`.
    pub reason: Option<&'static str>,
    /// The URL as it may be stored: see [`fetch::redact`].
    pub url: String,
    pub status: Option<u16>,
    pub bytes: u64,
    pub millis: u64,
}

/// One `web_request` as the agent made it.
pub struct Ask<'a> {
    pub request_id: String,
    /// `fetch` or `search`.
    pub action: &'a str,
    /// The URL, or the query.
    pub target: &'a str,
}

/// Answers one `web_request`: the `web_response` payload for the agent and what to record.
/// `turn` says whether the request is for the instance's turn in flight (why not, if not);
/// `policy` is the instance's egress policy, if it has one; `search` the host's backend.
pub async fn serve(
    turn: Result<(), String>,
    policy: Option<&EgressPolicy>,
    search: &WebSearchConfig,
    rate: &mut WebRate,
    ask: Ask<'_>,
    now_ms: i64,
) -> (Payload, Outcome) {
    let Ask {
        request_id,
        action,
        target,
    } = ask;
    let started = std::time::Instant::now();
    let shown = match reqwest::Url::parse(target.trim()) {
        Ok(u) => fetch::redact(&u),
        // Not a URL: keep a bounded, harmless trace of what was asked.
        Err(_) => target.chars().take(200).collect(),
    };
    let mut outcome = Outcome {
        result: "refused",
        reason: None,
        url: shown,
        status: None,
        bytes: 0,
        millis: 0,
    };
    let answer: Result<String, String> = match policy.filter(|p| p.is_enabled()) {
        // Like model requests: only for the turn in flight, so an agent between turns (or a
        // stale request) reaches nothing.
        _ if turn.is_err() => {
            outcome.reason = Some("turn");
            Err(turn.unwrap_err())
        }
        None => {
            outcome.reason = Some("no_policy");
            Err(crate::domain::instance::egress::Refusal::NoPolicy.to_string())
        }
        Some(_) if action == "search" && search.searxng_url.is_none() => {
            outcome.reason = Some("no_search");
            Err("this host has no search backend, so web_search is not available".into())
        }
        Some(_) if action != "fetch" && action != "search" => {
            outcome.reason = Some("bad_action");
            Err(format!("unknown web action {action:?}"))
        }
        Some(policy) => match rate.try_take(policy, now_ms) {
            Err(e) => {
                outcome.reason = Some("rate");
                Err(e)
            }
            Ok(()) if action == "search" => {
                let env = |name: &str| std::env::var(name).ok();
                outcome.url = "(search)".into();
                match search::search(search, target, policy.limits.timeout(), &env).await {
                    Ok(text) => {
                        outcome.result = "ok";
                        Ok(text)
                    }
                    Err(e) => {
                        outcome.result = "failed";
                        outcome.reason = Some("search");
                        Err(e)
                    }
                }
            }
            Ok(()) => {
                let env = |name: &str| std::env::var(name).ok();
                match fetch::fetch(policy, target, &env).await {
                    Ok(f) => {
                        outcome.result = "ok";
                        outcome.status = Some(f.status);
                        outcome.bytes = f.bytes;
                        outcome.url = f.final_url;
                        Ok(f.text)
                    }
                    Err(e) => {
                        if !e.is_refusal() {
                            outcome.result = "failed";
                        }
                        outcome.reason = Some(e.kind());
                        if let fetch::FetchError::Status { status, bytes } = e {
                            outcome.status = Some(status);
                            outcome.bytes = bytes;
                        }
                        Err(e.to_string())
                    }
                }
            }
        },
    };
    outcome.millis = started.elapsed().as_millis() as u64;
    let payload = match answer {
        Ok(text) => Payload::WebResponse {
            request_id,
            text,
            error: None,
        },
        Err(error) => Payload::WebResponse {
            request_id,
            text: String::new(),
            error: Some(error),
        },
    };
    (payload, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_hold() {
        let policy: EgressPolicy = serde_json::from_str(
            r#"{"allow": ["a.com"], "limits": {"requests_per_minute": 2, "requests_per_day": 3}}"#,
        )
        .unwrap();
        let mut rate = WebRate::default();
        let t0 = 10 * DAY_MS;
        assert!(rate.try_take(&policy, t0).is_ok());
        assert!(rate.try_take(&policy, t0 + 1).is_ok());
        let e = rate.try_take(&policy, t0 + 2).unwrap_err();
        assert!(e.contains("requests_per_minute"), "{e}");
        assert!(rate.try_take(&policy, t0 + MINUTE_MS).is_ok());
        let e = rate.try_take(&policy, t0 + 3 * MINUTE_MS).unwrap_err();
        assert!(e.contains("requests_per_day"), "{e}");
        assert!(rate.try_take(&policy, t0 + DAY_MS).is_ok());
        // A count read back from the record (after a restart) is where the day starts.
        let mut rate = WebRate::default();
        assert!(rate.needs_day_count(t0));
        rate.set_day_count(t0, 3);
        assert!(!rate.needs_day_count(t0 + 1));
        assert!(rate.try_take(&policy, t0 + 1).is_err());
        assert!(rate.needs_day_count(t0 + DAY_MS));
        assert_eq!(WebRate::day_start(t0 + 5), t0);
    }
}
