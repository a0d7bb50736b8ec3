//! The clock every part reads, and the day boundary budgets and counts reset at.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Start of the UTC day containing `now` (Unix ms).
pub fn day_start(now: i64) -> i64 {
    now - now.rem_euclid(DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_utc_midnight() {
        let noon = 1_795_305_600_000 + 12 * 3_600_000;
        assert_eq!(day_start(noon), 1_795_305_600_000);
        assert_eq!(day_start(1_795_305_600_000), 1_795_305_600_000);
        assert_eq!(day_start(1_795_305_600_000 - 1), 1_795_305_600_000 - DAY_MS);
    }
}
