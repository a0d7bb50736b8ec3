//! Counting what an agent can make the daemon do as often as it likes (write junk into
//! `out/`, name turns that do not exist, ask outside a turn, announce itself ready): the
//! daemon still deals with each, but its log lines, events and records come at a bounded
//! rate, whatever the agent does. Pure: the caller passes the time.

use std::collections::HashMap;

/// At most `per_window` uses in each window of `window_ms` (a fixed window that begins with
/// its first use).
#[derive(Debug, Clone)]
pub struct RateWindow {
    per_window: u32,
    window_ms: i64,
    started: i64,
    used: u32,
}

impl RateWindow {
    pub const fn new(per_window: u32, window_ms: i64) -> Self {
        Self {
            per_window,
            window_ms,
            started: i64::MIN,
            used: 0,
        }
    }

    /// Takes one use if the window has one left.
    pub fn try_take(&mut self, now_ms: i64) -> bool {
        if now_ms.saturating_sub(self.started) >= self.window_ms || now_ms < self.started {
            self.started = now_ms;
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

/// Whether a notice goes out now, and what was held back since the last one that did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Send it: `held_back` notices of this kind, and `amount` (this one's amount plus
    /// theirs), were not sent since the last one.
    Go { held_back: u64, amount: u64 },
    /// Not now: it is counted into the next one that goes out.
    Hold,
}

/// Notices by kind, each kind with its own [`RateWindow`].
#[derive(Debug, Default)]
pub struct Notices {
    kinds: HashMap<&'static str, (RateWindow, u64, u64)>,
}

/// How long a notice's window lasts.
pub const NOTICE_WINDOW_MS: i64 = 10_000;
/// One notice of a kind every ten seconds at most.
pub const NOTICE_WINDOW: RateWindow = RateWindow::new(1, NOTICE_WINDOW_MS);

impl Notices {
    /// A notice of `kind` about `amount` things (files, requests) at `now_ms`, limited by
    /// `limit` (the kind's window, taken the first time the kind is seen).
    pub fn note(
        &mut self,
        kind: &'static str,
        limit: RateWindow,
        amount: u64,
        now_ms: i64,
    ) -> Notice {
        let (window, held, held_amount) = self.kinds.entry(kind).or_insert((limit, 0, 0));
        if window.try_take(now_ms) {
            let go = Notice::Go {
                held_back: *held,
                amount: *held_amount + amount,
            };
            *held = 0;
            *held_amount = 0;
            go
        } else {
            *held += 1;
            *held_amount += amount;
            Notice::Hold
        }
    }

    /// The kinds with notices held back whose window has passed now: (kind, held back,
    /// their amount). Each counts as the kind's notice for its new window.
    pub fn due(&mut self, now_ms: i64) -> Vec<(&'static str, u64, u64)> {
        let mut due = Vec::new();
        for (kind, (window, held, amount)) in &mut self.kinds {
            if *held > 0 && window.try_take(now_ms) {
                due.push((*kind, std::mem::take(held), std::mem::take(amount)));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_gives_its_uses_then_refuses_until_it_ends() {
        let mut w = RateWindow::new(3, 60_000);
        assert!(w.try_take(0) && w.try_take(10) && w.try_take(20));
        assert!(!w.try_take(59_999));
        assert!(w.try_take(60_000), "a new window");
        assert!(w.try_take(60_001) && w.try_take(60_002) && !w.try_take(60_003));
    }

    #[test]
    fn a_clock_that_goes_back_starts_a_new_window() {
        let mut w = RateWindow::new(1, 10_000);
        assert!(w.try_take(50_000));
        assert!(!w.try_take(55_000));
        assert!(w.try_take(1_000));
    }

    #[test]
    fn held_back_notices_are_summed_into_the_next_one() {
        let mut n = Notices::default();
        assert_eq!(
            n.note("quarantine", NOTICE_WINDOW, 5, 0),
            Notice::Go {
                held_back: 0,
                amount: 5
            }
        );
        for t in 1..=100 {
            assert_eq!(n.note("quarantine", NOTICE_WINDOW, 2, t * 10), Notice::Hold);
        }
        // Another kind has a window of its own.
        assert!(matches!(
            n.note("ready", NOTICE_WINDOW, 1, 500),
            Notice::Go { .. }
        ));
        assert_eq!(
            n.note("quarantine", NOTICE_WINDOW, 1, 10_000),
            Notice::Go {
                held_back: 100,
                amount: 201
            }
        );
    }

    #[test]
    fn what_was_held_back_comes_due_when_its_window_ends() {
        let mut n = Notices::default();
        n.note("unknown", NOTICE_WINDOW, 1, 0);
        n.note("unknown", NOTICE_WINDOW, 1, 1);
        n.note("unknown", NOTICE_WINDOW, 1, 2);
        assert!(n.due(9_999).is_empty());
        assert_eq!(n.due(10_000), vec![("unknown", 2, 2)]);
        assert!(n.due(30_000).is_empty(), "nothing held any more");
    }
}
