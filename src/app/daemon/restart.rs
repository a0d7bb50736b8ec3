//! The restart policy for containers that exit while they should run: exponential backoff
//! (1 s doubling to a cap, reset by a stable run), and after repeated quick failures a
//! crash-loop state that is retried slowly instead of hammered. Pure: time is an argument.

use std::collections::HashMap;

/// A run shorter than this counts as a quick failure (towards a crash loop).
pub const QUICK_FAILURE_MS: i64 = 10_000;
/// A run at least this long resets the backoff.
pub const STABLE_RUN_MS: i64 = 60_000;
pub const BACKOFF_BASE_MS: i64 = 1_000;
pub const BACKOFF_CAP_MS: i64 = 60_000;
/// Consecutive quick failures that make a crash loop.
pub const CRASH_LOOP_AFTER: u32 = 5;
/// How often a crash-looping instance is still retried.
pub const CRASH_LOOP_RETRY_MS: i64 = 300_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartState {
    /// Consecutive failures since the last stable run: sets the backoff.
    pub failures: u32,
    /// Consecutive quick failures: makes a crash loop.
    pub quick_failures: u32,
    pub not_before: Option<i64>,
    /// The backoff chosen for the current wait, for the state detail.
    pub delay_ms: i64,
    pub crash_loop: bool,
    /// The exit already accounted for (container id, finish time), so that seeing the same
    /// stopped container again never counts as another failure.
    pub last_seen_exit: Option<(String, String)>,
}

#[derive(Debug, Default)]
pub struct RestartTracker {
    states: HashMap<String, RestartState>,
}

impl RestartTracker {
    pub fn get(&self, instance: &str) -> Option<&RestartState> {
        self.states.get(instance)
    }

    pub fn not_before(&self, instance: &str) -> Option<i64> {
        self.states.get(instance).and_then(|s| s.not_before)
    }

    /// Records an unexpected exit; returns the updated state, or None when this exit was
    /// already accounted for.
    pub fn on_exit(
        &mut self,
        instance: &str,
        exit_key: (String, String),
        ran_for_ms: i64,
        now: i64,
    ) -> Option<&RestartState> {
        let state = self.states.entry(instance.to_string()).or_default();
        if state.last_seen_exit.as_ref() == Some(&exit_key) {
            return None;
        }
        state.last_seen_exit = Some(exit_key);
        state.failures = if ran_for_ms >= STABLE_RUN_MS {
            1
        } else {
            state.failures + 1
        };
        state.quick_failures = if ran_for_ms < QUICK_FAILURE_MS {
            state.quick_failures + 1
        } else {
            0
        };
        state.crash_loop = state.quick_failures >= CRASH_LOOP_AFTER;
        state.delay_ms = if state.crash_loop {
            CRASH_LOOP_RETRY_MS
        } else {
            backoff_ms(state.failures)
        };
        state.not_before = Some(now + state.delay_ms);
        Some(state)
    }

    /// Marks an exit the supervisor caused itself (stop, restart, shutdown) or one it cannot
    /// judge (it happened while no daemon ran): seen, and not a failure.
    pub fn on_expected_exit(&mut self, instance: &str, exit_key: (String, String)) {
        self.states
            .entry(instance.to_string())
            .or_default()
            .last_seen_exit = Some(exit_key);
    }

    /// Forgets failures: the operator asked for a (re)start, or the instance stopped. The
    /// exit already seen stays seen, so it is not counted again.
    pub fn reset(&mut self, instance: &str) {
        if let Some(s) = self.states.get_mut(instance) {
            *s = RestartState {
                last_seen_exit: s.last_seen_exit.take(),
                ..RestartState::default()
            };
        }
    }
}

/// The delay after the `n`-th consecutive failure: 1 s, 2 s, 4 s, … up to the cap.
pub fn backoff_ms(n: u32) -> i64 {
    let exp = n.saturating_sub(1).min(16);
    (BACKOFF_BASE_MS << exp).min(BACKOFF_CAP_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> (String, String) {
        ("c".into(), format!("t{n}"))
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let delays: Vec<i64> = (1..=8).map(backoff_ms).collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
    }

    #[test]
    fn quick_failures_become_a_crash_loop_retried_slowly() {
        let mut t = RestartTracker::default();
        for n in 1..CRASH_LOOP_AFTER {
            let s = t.on_exit("a", key(n), 500, 0).unwrap();
            assert!(!s.crash_loop);
            assert_eq!(s.not_before, Some(backoff_ms(n)));
        }
        let s = t.on_exit("a", key(99), 500, 0).unwrap().clone();
        assert!(s.crash_loop);
        assert_eq!(s.not_before, Some(CRASH_LOOP_RETRY_MS));
    }

    #[test]
    fn runs_between_quick_and_stable_grow_the_backoff_to_its_cap_without_a_crash_loop() {
        let mut t = RestartTracker::default();
        let mut last = 0;
        for n in 1..=10 {
            let s = t.on_exit("a", key(n), 30_000, 0).unwrap();
            assert!(!s.crash_loop);
            last = s.delay_ms;
        }
        assert_eq!(last, BACKOFF_CAP_MS);
        let s = t.on_exit("a", key(11), STABLE_RUN_MS, 0).unwrap();
        assert_eq!(
            s.delay_ms, BACKOFF_BASE_MS,
            "a stable run resets the backoff"
        );
    }

    #[test]
    fn the_same_exit_counts_once_and_expected_exits_never() {
        let mut t = RestartTracker::default();
        t.on_exit("a", key(1), 100, 0);
        t.on_exit("a", key(2), 100, 0);
        assert!(
            t.on_exit("a", key(2), 100, 0).is_none(),
            "same exit seen twice"
        );
        t.reset("a");
        let s = t.get("a").unwrap();
        assert_eq!((s.failures, s.not_before, s.crash_loop), (0, None, false));
        assert!(
            t.on_exit("a", key(2), 100, 60).is_none(),
            "a reset does not recount"
        );
        t.on_expected_exit("a", key(3));
        assert!(
            t.on_exit("a", key(3), 100, 60).is_none(),
            "a stop we made is no failure"
        );
        assert_eq!(t.get("a").unwrap().failures, 0);
    }
}
