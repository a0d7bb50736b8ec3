//! The model broker: what the host does with an agent's `model_request`.
//!
//! The agent holds no keys, so every model call is the host's, on the instance's budget. An
//! agent may ask for anything, so before a call goes out the broker decides, as a pure
//! function of what the request says and what the store and config say ([`decide`]), whether
//! it goes out at all and how many completion tokens it may ask for:
//!
//! - only for the instance's turn in flight: a request naming any other turn, or sent while
//!   no turn is in flight, would spend the budget outside any turn;
//! - never more completion tokens than `budget.max_tokens_per_request`;
//! - under `budget.daily_tokens`, never a prompt (estimated) larger than what is left of the
//!   day, nor more completion tokens than what is left once the prompt is taken off.
//!
//! A refused request is answered with an error and recorded as a `refused` usage row; no
//! provider is called. [`Broker::serve`] is the one entry point: the actor hands it a request
//! and writes back the answer it returns.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use supervisor_agent::protocol::{ModelMessage, Payload, ToolSpec, Usage};

use super::metrics::Metrics;
use super::rate_window::{Notice, Notices, RateWindow};
use crate::domain::instance::config::{Budget, Provider};
use crate::domain::instance::InstanceConfig;
use crate::infra::llm::{self, budget};
use crate::infra::store::usage::UsageRecord;
use crate::infra::store::{Store, StoreError};

/// An agent's `model_request`, as read from its `out/`.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    pub request_id: String,
    pub turn_id: String,
    pub messages: Vec<ModelMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: Option<u32>,
}

/// Why a request does not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "model requests are served only during a turn, and no turn of this instance is in \
         flight (the request named turn {requested})"
    )]
    NoTurn { requested: String },
    #[error(
        "model requests are served only for the turn in flight, and turn {requested} is not it"
    )]
    OtherTurn { requested: String },
    #[error(transparent)]
    Budget(#[from] budget::Refusal),
}

/// What the broker knows when a request comes in.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The turn the request names.
    pub turn_id: &'a str,
    /// The instance's turn in flight, if any.
    pub in_flight: Option<&'a str>,
    pub budget: &'a Budget,
    /// Prompt + completion tokens the instance used today (UTC).
    pub used_today: u64,
    /// [`budget::estimate_prompt_tokens`] of the request.
    pub prompt_estimate: u64,
    /// The `max_tokens` the agent asked for.
    pub requested_max_tokens: Option<u32>,
}

/// Whether a request goes out, and with what `max_tokens`.
pub fn decide(f: &Facts) -> Result<u32, Refusal> {
    match f.in_flight {
        None => {
            return Err(Refusal::NoTurn {
                requested: f.turn_id.to_string(),
            })
        }
        Some(t) if t != f.turn_id => {
            return Err(Refusal::OtherTurn {
                requested: f.turn_id.to_string(),
            })
        }
        Some(_) => {}
    }
    Ok(budget::allowance(
        f.used_today,
        f.budget.daily_tokens,
        f.prompt_estimate,
        f.requested_max_tokens,
        f.budget.max_tokens_per_request,
    )?)
}

/// One instance's broker, kept by its messaging actor: what it remembers between requests.
#[derive(Debug, Default)]
pub struct Broker {
    /// Start times of recent requests, for the per-minute rate limit.
    recent_requests: VecDeque<i64>,
    /// Refusals are answered every time, but logged and recorded at a bounded rate.
    notices: Notices,
}

/// What the broker borrows from the actor for one request.
pub struct Context<'a> {
    pub instance: &'a str,
    pub http: &'a reqwest::Client,
    pub metrics: &'a Metrics,
    pub store: &'a mut Store,
    /// The instance's config, or why it could not be read.
    pub config: Result<InstanceConfig, String>,
    /// The instance's turn in flight.
    pub in_flight: Option<&'a str>,
}

/// Refused requests recorded (log line and usage row): at most ten a minute per instance.
const REFUSALS_RECORDED: RateWindow = RateWindow::new(10, 60_000);

impl Broker {
    /// Serves `req`: decides, waits for a rate-limit slot, calls the provider, counts the
    /// outcome in the metrics and the usage table, and returns the `model_response` for the
    /// agent (the provider's answer, or why there is none). Only a store failure is an error.
    pub async fn serve(
        &mut self,
        req: ModelRequest,
        cx: Context<'_>,
    ) -> Result<Payload, StoreError> {
        let Context {
            instance,
            http,
            metrics,
            store,
            config,
            in_flight,
        } = cx;
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                // The agent hears why; the turn fails with a clear answer.
                let error = format!("the instance's configuration is invalid: {e}");
                return Ok(failure(req.request_id, error));
            }
        };
        let now = crate::infra::store::now_ms();
        let facts = Facts {
            turn_id: &req.turn_id,
            in_flight,
            budget: &config.budget,
            // The instance's budget covers its chat groups too.
            used_today: store.family_tokens_since(instance, budget::day_start(now))?,
            prompt_estimate: budget::estimate_prompt_tokens(&req.messages, &req.tools),
            requested_max_tokens: req.max_tokens,
        };
        let decision = decide(&facts);
        let refused = decision.is_err();
        let recorded = !refused
            || matches!(
                self.notices
                    .note("model.refused", REFUSALS_RECORDED, 1, now),
                Notice::Go { .. }
            );
        if let (Err(refusal), true) = (&decision, recorded) {
            tracing::warn!(instance = %instance, turn = %req.turn_id, request = %req.request_id, %refusal, "model request refused");
        }
        if !refused {
            self.wait_for_a_slot(
                instance,
                config.model.provider,
                config.budget.requests_per_minute,
            )
            .await;
        }
        // The latency is the provider's, not the rate limit's wait.
        let started = Instant::now();
        let result = match decision {
            Err(refusal) => Err(refusal.to_string()),
            Ok(max_tokens) => {
                let request = llm::Request {
                    messages: &req.messages,
                    tools: &req.tools,
                    max_tokens: Some(max_tokens),
                };
                llm::complete(http, &config.model, request)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        let status = match (&result, refused) {
            (Ok(_), _) => "ok",
            (Err(_), true) => "refused",
            (Err(_), false) => "error",
        };
        let (payload, usage, error) = match result {
            Ok(answer) => (
                Payload::ModelResponse {
                    request_id: req.request_id.clone(),
                    content: answer.content,
                    tool_calls: answer.tool_calls,
                    error: None,
                    usage: answer.usage,
                },
                answer.usage,
                None,
            ),
            Err(e) => (
                failure(req.request_id.clone(), e.clone()),
                Usage::default(),
                Some(e),
            ),
        };
        metrics.model_request(instance, status, usage.input_tokens, usage.output_tokens);
        if recorded {
            store.record_usage(&UsageRecord {
                instance,
                request_id: &req.request_id,
                provider: config.model.provider.as_str(),
                model: &config.model.name,
                prompt_tokens: usage.input_tokens,
                completion_tokens: usage.output_tokens,
                latency_ms,
                status,
                error: error.as_deref(),
            })?;
        }
        Ok(payload)
    }

    /// How long a request to `provider` made `now` would wait for a rate-limit slot. The
    /// per-minute limit protects providers' quotas; echo calls no one.
    fn slot_wait(&self, provider: Provider, per_minute: u32, now: i64) -> Duration {
        if provider == Provider::Echo {
            return Duration::ZERO;
        }
        let recent: Vec<i64> = self.recent_requests.iter().copied().collect();
        budget::rate_delay(&recent, per_minute, now)
    }

    /// Waits for a rate-limit slot; the wait holds up only this instance.
    async fn wait_for_a_slot(&mut self, instance: &str, provider: Provider, per_minute: u32) {
        if provider == Provider::Echo {
            return;
        }
        let wait = self.slot_wait(provider, per_minute, crate::infra::store::now_ms());
        if !wait.is_zero() {
            tracing::info!(instance = %instance, wait_ms = wait.as_millis() as u64, "rate limit: request waits");
            tokio::time::sleep(wait).await;
        }
        self.recent_requests
            .push_back(crate::infra::store::now_ms());
        while self.recent_requests.len() > 1024 {
            self.recent_requests.pop_front();
        }
    }
}

/// A `model_response` that carries only an error.
fn failure(request_id: String, error: String) -> Payload {
    Payload::ModelResponse {
        request_id,
        content: String::new(),
        tool_calls: Vec::new(),
        error: Some(error),
        usage: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(daily_tokens: u64, max_tokens_per_request: u32) -> Budget {
        Budget {
            daily_tokens,
            max_tokens_per_request,
            ..Budget::default()
        }
    }

    fn facts<'a>(turn_id: &'a str, in_flight: Option<&'a str>, budget: &'a Budget) -> Facts<'a> {
        Facts {
            turn_id,
            in_flight,
            budget,
            used_today: 0,
            prompt_estimate: 10,
            requested_max_tokens: None,
        }
    }

    use supervisor_agent::protocol::Role;

    use crate::app::daemon::live::LiveSnapshot;
    use crate::domain::instance::config::ModelConfig;

    fn request(id: &str, turn: &str) -> ModelRequest {
        ModelRequest {
            request_id: id.into(),
            turn_id: turn.into(),
            messages: vec![ModelMessage {
                role: Role::User,
                content: "hello broker".into(),
                tool_calls: vec![],
                tool_call_id: None,
            }],
            tools: vec![],
            max_tokens: None,
        }
    }

    fn config(provider: Provider, base_url: Option<String>, budget: Budget) -> InstanceConfig {
        InstanceConfig {
            model: ModelConfig {
                provider,
                name: "m".into(),
                base_url,
                api_key_env: None,
            },
            budget,
            ..InstanceConfig::default()
        }
    }

    /// What the broker needs around it: a store with `alice`, metrics and an HTTP client.
    struct Bench {
        _dir: tempfile::TempDir,
        store: Store,
        metrics: Metrics,
        http: reqwest::Client,
        broker: Broker,
    }

    impl Bench {
        fn new() -> Self {
            let (_dir, store) = crate::infra::store::test_store(&["alice"]);
            Self {
                _dir,
                store,
                metrics: Metrics::default(),
                http: llm::http_client(),
                broker: Broker::default(),
            }
        }

        async fn serve(
            &mut self,
            req: ModelRequest,
            config: &InstanceConfig,
            in_flight: Option<&str>,
        ) -> Payload {
            let cx = Context {
                instance: "alice",
                http: &self.http,
                metrics: &self.metrics,
                store: &mut self.store,
                config: Ok(config.clone()),
                in_flight,
            };
            self.broker.serve(req, cx).await.unwrap()
        }

        fn metrics_text(&self) -> String {
            self.metrics
                .render(&[], &Default::default(), &LiveSnapshot::default())
        }

        fn usage(&self) -> Vec<(String, String)> {
            self.store.usage_statuses("alice").unwrap()
        }
    }

    fn response(p: &Payload) -> (&str, Option<&str>, Usage) {
        match p {
            Payload::ModelResponse {
                content,
                error,
                usage,
                ..
            } => (content.as_str(), error.as_deref(), *usage),
            other => panic!("not a model_response: {other:?}"),
        }
    }

    /// An OpenAI-compatible server on loopback: answers every completion with `status` and
    /// `body`.
    async fn provider(status: u16, body: serde_json::Value) -> String {
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        let app = axum::Router::new().route(
            "/chat/completions",
            axum::routing::post(move || {
                let body = body.to_string();
                async move { (status, body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn completion() -> serde_json::Value {
        serde_json::json!({
            "choices": [{"message": {"role": "assistant", "content": "from the provider"}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12},
        })
    }

    #[tokio::test]
    async fn a_served_request_is_answered_and_counted_in_usage_and_metrics() {
        let mut b = Bench::new();
        let base = provider(200, completion()).await;
        let cfg = config(Provider::Openai, Some(base), Budget::default());
        let answer = b.serve(request("r1", "t1"), &cfg, Some("t1")).await;
        let (content, error, usage) = response(&answer);
        assert_eq!((content, error), ("from the provider", None));
        assert_eq!((usage.input_tokens, usage.output_tokens), (30, 12));
        assert_eq!(b.usage(), [("r1".to_string(), "ok".to_string())]);
        assert_eq!(b.store.tokens_since("alice", 0).unwrap(), 42);
        let text = b.metrics_text();
        for line in [
            "supervisor_model_requests_total{instance=\"alice\",status=\"ok\"} 1",
            "supervisor_model_tokens_total{instance=\"alice\",kind=\"prompt\"} 30",
            "supervisor_model_tokens_total{instance=\"alice\",kind=\"completion\"} 12",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }

        // Echo answers with the request's last message, and is counted the same way.
        let echo = config(Provider::Echo, None, Budget::default());
        let answer = b.serve(request("r2", "t1"), &echo, Some("t1")).await;
        assert!(response(&answer).0.contains("hello broker"), "{answer:?}");
        assert_eq!(b.usage().len(), 2);
    }

    #[tokio::test]
    async fn a_spent_daily_budget_refuses_without_calling_the_provider() {
        let mut b = Bench::new();
        // The provider would fail the test's expectations were it called: it answers 500.
        let base = provider(500, serde_json::json!({"error": "called"})).await;
        let spent = UsageRecord {
            instance: "alice",
            request_id: "r0",
            provider: "openai",
            model: "m",
            prompt_tokens: 900,
            completion_tokens: 100,
            latency_ms: 1,
            status: "ok",
            error: None,
        };
        b.store.record_usage(&spent).unwrap();
        let cfg = config(Provider::Openai, Some(base), budget(1_000, 4096));
        let answer = b.serve(request("r1", "t1"), &cfg, Some("t1")).await;
        let error = response(&answer).1.expect("an error");
        assert!(error.contains("daily model budget"), "{error}");
        assert_eq!(b.usage()[1], ("r1".to_string(), "refused".to_string()));
        assert!(b
            .metrics_text()
            .contains("supervisor_model_requests_total{instance=\"alice\",status=\"refused\"} 1"));
    }

    #[tokio::test]
    async fn a_request_for_a_turn_not_in_flight_is_refused() {
        let mut b = Bench::new();
        let cfg = config(Provider::Echo, None, Budget::default());
        for (id, in_flight) in [("r1", None), ("r2", Some("t2"))] {
            let answer = b.serve(request(id, "t1"), &cfg, in_flight).await;
            let (content, error, _) = response(&answer);
            assert_eq!(content, "");
            assert!(error.expect("an error").contains("turn"), "{answer:?}");
        }
        let statuses: Vec<String> = b.usage().into_iter().map(|(_, s)| s).collect();
        assert_eq!(statuses, ["refused", "refused"]);
    }

    #[tokio::test]
    async fn a_provider_error_reaches_the_agent_as_an_error_answer() {
        let mut b = Bench::new();
        // 400 is not worth a retry: one call, one error.
        let base = provider(400, serde_json::json!({"error": "bad model"})).await;
        let cfg = config(Provider::Openai, Some(base), Budget::default());
        let answer = b.serve(request("r1", "t1"), &cfg, Some("t1")).await;
        let error = response(&answer).1.expect("an error");
        assert!(error.contains("HTTP 400"), "{error}");
        assert_eq!(b.usage(), [("r1".to_string(), "error".to_string())]);
        assert!(b
            .metrics_text()
            .contains("supervisor_model_requests_total{instance=\"alice\",status=\"error\"} 1"));

        // A config that cannot be read is the agent's answer too, and nothing is recorded.
        let cx = Context {
            instance: "alice",
            http: &b.http,
            metrics: &b.metrics,
            store: &mut b.store,
            config: Err("no such field".into()),
            in_flight: Some("t1"),
        };
        let answer = b.broker.serve(request("r2", "t1"), cx).await.unwrap();
        let error = response(&answer).1.expect("an error");
        assert!(error.contains("configuration is invalid"), "{error}");
        assert_eq!(b.usage().len(), 1);
    }

    #[tokio::test]
    async fn requests_past_the_per_minute_limit_wait_for_a_slot() {
        let mut b = Bench::new();
        let base = provider(200, completion()).await;
        let limit = Budget {
            requests_per_minute: 2,
            ..Budget::default()
        };
        let cfg = config(Provider::Openai, Some(base), limit);
        let now = crate::infra::store::now_ms();
        assert!(b.broker.slot_wait(Provider::Openai, 2, now).is_zero());
        for id in ["r1", "r2"] {
            b.serve(request(id, "t1"), &cfg, Some("t1")).await;
        }
        // Two requests went out this minute: a third waits for the first one's slot.
        let now = crate::infra::store::now_ms();
        let wait = b.broker.slot_wait(Provider::Openai, 2, now);
        assert!(
            !wait.is_zero() && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // No limit, or echo (which calls no one), never waits.
        assert!(b.broker.slot_wait(Provider::Openai, 0, now).is_zero());
        assert!(b.broker.slot_wait(Provider::Echo, 2, now).is_zero());
    }

    #[test]
    fn only_the_turn_in_flight_is_served() {
        let b = budget(0, 4096);
        assert_eq!(decide(&facts("t1", Some("t1"), &b)), Ok(4096));
        assert_eq!(
            decide(&facts("t1", None, &b)),
            Err(Refusal::NoTurn {
                requested: "t1".into()
            })
        );
        assert_eq!(
            decide(&facts("t0", Some("t1"), &b)),
            Err(Refusal::OtherTurn {
                requested: "t0".into()
            })
        );
        let text = decide(&facts("t1", None, &b)).unwrap_err().to_string();
        assert!(
            text.contains("no turn of this instance is in flight"),
            "{text}"
        );
        // Out of turn is refused before the budget is looked at, even with none left.
        let small = budget(100, 4096);
        let spent = Facts {
            used_today: 10_000,
            ..facts("t0", Some("t1"), &small)
        };
        assert!(matches!(decide(&spent), Err(Refusal::OtherTurn { .. })));
    }

    #[test]
    fn the_turn_in_flight_gets_what_the_budget_allows() {
        let b = budget(0, 1024);
        let asks = |n| Facts {
            requested_max_tokens: n,
            ..facts("t1", Some("t1"), &b)
        };
        assert_eq!(decide(&asks(None)), Ok(1024));
        assert_eq!(decide(&asks(Some(1_000_000))), Ok(1024));
        assert_eq!(decide(&asks(Some(64))), Ok(64));

        let daily = budget(1_000, 4096);
        let near_the_end = Facts {
            used_today: 950,
            prompt_estimate: 20,
            ..facts("t1", Some("t1"), &daily)
        };
        assert_eq!(decide(&near_the_end), Ok(30));
        let huge_prompt = Facts {
            prompt_estimate: 250_000,
            ..near_the_end
        };
        assert!(matches!(
            decide(&huge_prompt),
            Err(Refusal::Budget(budget::Refusal::PromptTooLarge { .. }))
        ));
        let used_up = Facts {
            used_today: 1_000,
            ..near_the_end
        };
        let text = decide(&used_up).unwrap_err().to_string();
        assert!(
            text.contains("the daily model budget of 1000 tokens is used up"),
            "{text}"
        );
    }
}
