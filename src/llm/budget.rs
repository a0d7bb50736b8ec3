//! Budget maths: the daily token allowance and the per-minute request rate. Pure.

use std::time::Duration;

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// Start of the UTC day containing `now` (unix ms).
pub fn day_start(now: i64) -> i64 {
    now - now.rem_euclid(DAY_MS)
}

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
