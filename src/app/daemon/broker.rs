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
//! provider is called.

use std::collections::VecDeque;
use std::time::Instant;

use supervisor_agent::protocol::{Envelope, ModelMessage, Payload, ToolSpec, Usage};

use super::metrics::Metrics;
use super::rate_window::{Notice, Notices, RateWindow};
use crate::domain::instance::config::{Budget, Provider};
use crate::domain::instance::InstanceConfig;
use crate::infra::ipc::InstanceIpc;
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

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One instance's broker: borrows what it needs from the instance's messaging actor.
pub struct Broker<'a> {
    pub instance: &'a str,
    pub http: &'a reqwest::Client,
    /// Start times of recent requests, for the per-minute rate limit (the actor keeps them).
    pub recent_requests: &'a mut VecDeque<i64>,
    pub metrics: &'a Metrics,
    pub ipc: &'a InstanceIpc,
    /// Refusals are answered every time, but logged and recorded at a bounded rate.
    pub notices: &'a mut Notices,
}

/// Refused requests recorded (log line and usage row): at most ten a minute per instance.
const REFUSALS_RECORDED: RateWindow = RateWindow::new(10, 60_000);

impl Broker<'_> {
    /// Answers `req` with a `model_response` in `in/`: the provider's answer, or why there is
    /// none. `config` is the instance's config, or why it could not be read; `in_flight` is
    /// the instance's turn in flight.
    pub async fn serve(
        mut self,
        store: &mut Store,
        config: Result<InstanceConfig, String>,
        in_flight: Option<&str>,
        req: ModelRequest,
    ) -> Result<(), BrokerError> {
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                // The agent hears why; the turn fails with a clear answer.
                let error = format!("the instance's configuration is invalid: {e}");
                return self.answer(failure(req.request_id, error));
            }
        };
        let now = crate::infra::store::now_ms();
        let facts = Facts {
            turn_id: &req.turn_id,
            in_flight,
            budget: &config.budget,
            used_today: store.tokens_since(self.instance, budget::day_start(now))?,
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
            tracing::warn!(instance = %self.instance, turn = %req.turn_id, request = %req.request_id, %refusal, "model request refused");
        }
        if !refused {
            self.wait_for_a_slot(config.model.provider, config.budget.requests_per_minute)
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
                llm::complete(self.http, &config.model, request)
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
        self.metrics.model_request(
            self.instance,
            status,
            usage.input_tokens,
            usage.output_tokens,
        );
        if !recorded {
            return self.answer(payload);
        }
        store.record_usage(&UsageRecord {
            instance: self.instance,
            request_id: &req.request_id,
            provider: config.model.provider.as_str(),
            model: &config.model.name,
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            latency_ms,
            status,
            error: error.as_deref(),
        })?;
        self.answer(payload)
    }

    /// The per-minute rate limit protects providers' quotas; echo calls no one. The wait holds
    /// up only this instance.
    async fn wait_for_a_slot(&mut self, provider: Provider, per_minute: u32) {
        if provider == Provider::Echo {
            return;
        }
        let now = crate::infra::store::now_ms();
        let wait = budget::rate_delay(self.recent_requests.make_contiguous(), per_minute, now);
        if !wait.is_zero() {
            tracing::info!(instance = %self.instance, wait_ms = wait.as_millis() as u64, "rate limit: request waits");
            tokio::time::sleep(wait).await;
        }
        self.recent_requests
            .push_back(crate::infra::store::now_ms());
        while self.recent_requests.len() > 1024 {
            self.recent_requests.pop_front();
        }
    }

    fn answer(&self, payload: Payload) -> Result<(), BrokerError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        self.ipc
            .send(&Envelope::new(id, crate::infra::store::now_ms(), payload))?;
        Ok(())
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
