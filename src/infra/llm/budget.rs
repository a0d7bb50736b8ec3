//! Budget maths: the daily token allowance, what one request may spend of it, and the
//! per-minute request rate. Pure.

use std::time::Duration;

use supervisor_agent::protocol::{ModelMessage, ToolSpec};

pub use crate::domain::clock::day_start;

const MINUTE_MS: i64 = 60_000;

/// Why no request goes out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the daily model budget of {limit} tokens is used up ({used} used today); it resets at 00:00 UTC")]
pub struct OverBudget {
    pub limit: u64,
    pub used: u64,
}

/// Refuses a request once today's tokens reach the limit (0: no limit).
pub fn check_daily(used_today: u64, limit: u64) -> Result<(), OverBudget> {
    if limit > 0 && used_today >= limit {
        Err(OverBudget {
            limit,
            used: used_today,
        })
    } else {
        Ok(())
    }
}

/// A guess at a request's prompt tokens, made before the call so that one request cannot
/// overshoot the daily budget: the bytes of its messages and tools as JSON, a token per 4
/// bytes, rounded up. The JSON's keys and quotes count too, which errs on the high side for
/// ordinary text (a tokenizer averages about 4 bytes of English per token).
pub fn estimate_prompt_tokens(messages: &[ModelMessage], tools: &[ToolSpec]) -> u64 {
    let bytes = serde_json::to_vec(messages).map_or(0, |b| b.len())
        + serde_json::to_vec(tools).map_or(0, |b| b.len());
    (bytes as u64).div_ceil(4)
}

/// Why a request may not go out under the daily budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    UsedUp(#[from] OverBudget),
    #[error(
        "this request's prompt of about {estimate} tokens does not fit in what is left of the \
         daily model budget ({left} of {limit} tokens); it resets at 00:00 UTC"
    )]
    PromptTooLarge {
        estimate: u64,
        left: u64,
        limit: u64,
    },
}

/// The completion tokens one request may ask for: what the agent asked for (the ceiling when
/// it named nothing), never more than `ceiling`, and under a daily limit (0: none) never more
/// than what is left once the prompt's estimate is taken off. Refused when today's tokens
/// have reached the limit, or when the prompt alone would use all that is left.
pub fn allowance(
    used_today: u64,
    daily_limit: u64,
    prompt_estimate: u64,
    requested: Option<u32>,
    ceiling: u32,
) -> Result<u32, Refusal> {
    let wanted = requested.map_or(ceiling, |r| r.min(ceiling));
    if daily_limit == 0 {
        return Ok(wanted);
    }
    check_daily(used_today, daily_limit)?;
    let left = daily_limit - used_today;
    if prompt_estimate >= left {
        return Err(Refusal::PromptTooLarge {
            estimate: prompt_estimate,
            left,
            limit: daily_limit,
        });
    }
    let room = u32::try_from(left - prompt_estimate).unwrap_or(u32::MAX);
    Ok(wanted.min(room))
}

/// How long to wait before the next request so that no more than `per_minute` requests start
/// in any 60 s window, given the start times of recent ones (0: no limit).
pub fn rate_delay(recent: &[i64], per_minute: u32, now: i64) -> Duration {
    if per_minute == 0 {
        return Duration::ZERO;
    }
    let mut in_window: Vec<i64> = recent
        .iter()
        .copied()
        .filter(|t| now - t < MINUTE_MS)
        .collect();
    if in_window.len() < per_minute as usize {
        return Duration::ZERO;
    }
    in_window.sort_unstable();
    // The request that frees a slot is the one `per_minute` places before the end.
    let oldest_blocking = in_window[in_window.len() - per_minute as usize];
    Duration::from_millis((oldest_blocking + MINUTE_MS - now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_utc_midnight() {
        assert_eq!(day_start(1_767_225_600_000 + 5), 1_767_225_600_000);
        assert_eq!(day_start(1_767_225_600_000), 1_767_225_600_000);
    }

    #[test]
    fn daily_limit() {
        assert!(check_daily(999, 1000).is_ok());
        assert_eq!(
            check_daily(1000, 1000),
            Err(OverBudget {
                limit: 1000,
                used: 1000
            })
        );
        assert!(check_daily(u64::MAX, 0).is_ok(), "0 means no limit");
    }

    fn user(content: &str) -> ModelMessage {
        ModelMessage {
            role: supervisor_agent::protocol::Role::User,
            content: content.into(),
            tool_calls: vec![],
            tool_call_id: None,
        }
    }

    #[test]
    fn the_prompt_estimate_counts_messages_and_tools_and_errs_high() {
        assert_eq!(estimate_prompt_tokens(&[], &[]), 1, "\"[]\" twice: 4 bytes");
        let text = "x".repeat(4_000);
        let one = estimate_prompt_tokens(&[user(&text)], &[]);
        assert!(one > 1_000, "at least a token per 4 bytes of text: {one}");
        assert!(one < 1_020, "and not much more: {one}");
        let tool = ToolSpec {
            name: "read_file".into(),
            description: "d".repeat(400),
            parameters: serde_json::json!({"type": "object"}),
        };
        let with_tool = estimate_prompt_tokens(&[user(&text)], &[tool]);
        assert!(with_tool > one + 100, "tools count: {with_tool}");
        // Text that JSON escapes counts as escaped (more bytes, never fewer).
        assert!(estimate_prompt_tokens(&[user(&"\n".repeat(400))], &[]) >= 200);
    }

    #[test]
    fn the_ceiling_caps_what_a_request_asks_for() {
        assert_eq!(allowance(0, 0, 10, None, 4096), Ok(4096));
        assert_eq!(allowance(0, 0, 10, Some(100_000), 4096), Ok(4096));
        assert_eq!(allowance(0, 0, 10, Some(512), 4096), Ok(512));
        assert_eq!(allowance(u64::MAX, 0, u64::MAX, None, 7), Ok(7), "no limit");
    }

    #[test]
    fn a_request_never_asks_for_more_than_is_left_of_the_day() {
        // 1,000 a day, 900 used, a prompt of about 60: at most 40 more.
        assert_eq!(allowance(900, 1_000, 60, None, 4096), Ok(40));
        assert_eq!(allowance(900, 1_000, 60, Some(10), 4096), Ok(10));
        assert_eq!(allowance(0, 1_000, 0, None, 4096), Ok(1_000));
        // A huge prompt with almost nothing left is refused before any call.
        assert_eq!(
            allowance(995, 1_000, 250_000, Some(u32::MAX), 4096),
            Err(Refusal::PromptTooLarge {
                estimate: 250_000,
                left: 5,
                limit: 1_000
            })
        );
        // A prompt that uses exactly what is left leaves no room for an answer.
        assert!(matches!(
            allowance(900, 1_000, 100, None, 4096),
            Err(Refusal::PromptTooLarge { left: 100, .. })
        ));
        // Used up: the same refusal as before any estimate.
        assert_eq!(
            allowance(1_200, 1_000, 1, None, 4096),
            Err(Refusal::UsedUp(OverBudget {
                limit: 1_000,
                used: 1_200
            }))
        );
        let text = allowance(995, 1_000, 250_000, None, 4096)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("about 250000 tokens") && text.contains("(5 of 1000 tokens)"),
            "{text}"
        );
        // More left than a u32 holds: the ceiling decides.
        assert_eq!(allowance(0, u64::MAX, 1, None, 4096), Ok(4096));
    }

    #[test]
    fn rate_window() {
        assert_eq!(rate_delay(&[0, 1, 2], 0, 3), Duration::ZERO);
        assert_eq!(rate_delay(&[0, 10_000], 3, 20_000), Duration::ZERO);
        // Three in the last minute, limit 3: wait until the oldest leaves the window.
        assert_eq!(
            rate_delay(&[0, 10_000, 20_000], 3, 30_000),
            Duration::from_millis(30_000)
        );
        // Requests older than a minute do not count.
        assert_eq!(
            rate_delay(&[-70_000, 10_000, 20_000], 3, 30_000),
            Duration::ZERO
        );
    }
}
