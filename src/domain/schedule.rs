//! Schedules of tasks and the maths of their next run. Pure: every function takes the time
//! it reasons about, so tests inject the clock and never sleep.
//!
//! Three kinds:
//! - `cron`: a 5-field cron expression (minute hour day-of-month month day-of-week, parsed by
//!   the `croner` crate) in an IANA time zone;
//! - `every`: a fixed interval anchored to the first run, so runs never drift;
//! - `at`: one moment, given as local time in a zone or as RFC 3339 with an offset.
//!
//! Daylight saving time follows croner's rules for cron schedules: a fixed time that does not
//! exist on a day (the clock jumps over it) runs at the first instant after the jump; a fixed
//! time that exists twice (the clock goes back) runs once, at the first of the two. Patterns
//! with a wildcard or step in the hour (e.g. `*/15 * * * *`) run on real elapsed time, so they
//! also fire during the repeated hour.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The zone used when none is given.
pub const DEFAULT_TZ: &str = "UTC";

/// The shortest interval an `every` schedule accepts.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// At most this many missed occurrences are walked one by one after downtime; beyond it the
/// search jumps, so a year of missed minutes costs nothing.
const MISSED_WALK_LIMIT: u32 = 10_000;

/// Which kind of schedule a task has, as stored and as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cron,
    Every,
    At,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cron => "cron",
            Kind::Every => "every",
            Kind::At => "at",
        }
    }
}

impl FromStr for Kind {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, ScheduleError> {
        match s {
            "cron" => Ok(Kind::Cron),
            "every" => Ok(Kind::Every),
            "at" => Ok(Kind::At),
            other => Err(ScheduleError(format!(
                "unknown schedule kind {other:?} (expected cron, every or at)"
            ))),
        }
    }
}

/// Why a schedule was refused: one line, fit to print as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

fn err(msg: impl Into<String>) -> ScheduleError {
    ScheduleError(msg.into())
}

/// A parsed, valid schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron {
        expr: String,
        cron: Box<Cron>,
        tz: Tz,
    },
    Every {
        interval_ms: i64,
        text: String,
    },
    At {
        at_ms: i64,
        tz: Tz,
    },
}

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`).
pub fn parse_tz(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| {
        err(format!(
            "unknown time zone {name:?} (expected an IANA name such as Europe/Berlin or UTC)"
        ))
    })
}

/// Parses a duration such as `30m`, `2h`, `1h30m` or `45s`.
pub fn parse_interval(text: &str) -> Result<Duration, ScheduleError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        err(format!(
            "invalid interval {text:?}: {} (e.g. 30m, 2h, 1h30m)",
            crate::domain::duration_words::why_not(text.trim(), &e)
        ))
    })?;
    if d.is_zero() {
        return Err(err("the interval must be longer than zero"));
    }
    if d < MIN_INTERVAL {
        return Err(err(format!("the interval {text:?} is shorter than 1s")));
    }
    if d.as_millis() > i64::MAX as u128 / 4 {
        return Err(err(format!("the interval {text:?} is too long")));
    }
    Ok(d)
}

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

impl Schedule {
    /// Parses and validates a schedule of `kind` given as `text` in zone `tz` (default UTC).
    /// `now_ms` is used to refuse a one-shot time in the past.
    pub fn parse(
        kind: Kind,
        text: &str,
        tz: Option<&str>,
        now_ms: i64,
    ) -> Result<Schedule, ScheduleError> {
        let zone = parse_tz(tz.unwrap_or(DEFAULT_TZ))?;
        match kind {
            Kind::Cron => {
                let expr = text.trim().to_string();
                let cron = cron_parser()
                    .parse(&expr)
                    .map_err(|e| err(format!("invalid cron expression {expr:?}: {e}")))?;
                let s = Schedule::Cron {
                    expr,
                    cron: Box::new(cron),
                    tz: zone,
                };
                if s.next_after(now_ms).is_none() {
                    return Err(err(format!("the cron expression {text:?} never fires")));
                }
                Ok(s)
            }
            Kind::Every => {
                if tz.is_some() {
                    return Err(err(
                        "an interval takes no time zone (it counts elapsed time)",
                    ));
                }
                let d = parse_interval(text)?;
                Ok(Schedule::Every {
                    interval_ms: d.as_millis() as i64,
                    text: text.trim().to_string(),
                })
            }
            Kind::At => {
                let at_ms = parse_at(text.trim(), zone)?;
                if at_ms <= now_ms {
                    return Err(err(format!(
                        "{} is in the past (now is {})",
                        format_local(at_ms, zone),
                        format_local(now_ms, zone)
                    )));
                }
                Ok(Schedule::At { at_ms, tz: zone })
            }
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Schedule::Cron { .. } => Kind::Cron,
            Schedule::Every { .. } => Kind::Every,
            Schedule::At { .. } => Kind::At,
        }
    }

    /// What is stored in `tasks.schedule`: the expression, the interval as typed, or the
    /// one-shot time as Unix milliseconds.
    pub fn stored_text(&self) -> String {
        match self {
            Schedule::Cron { expr, .. } => expr.clone(),
            Schedule::Every { text, .. } => text.clone(),
            Schedule::At { at_ms, .. } => at_ms.to_string(),
        }
    }

    /// The zone stored with the task (none for intervals).
    pub fn tz_name(&self) -> Option<&'static str> {
        match self {
            Schedule::Cron { tz, .. } | Schedule::At { tz, .. } => Some(tz.name()),
            Schedule::Every { .. } => None,
        }
    }

    /// Rebuilds a stored schedule (no check against the clock: a stored one-shot may be past).
    pub fn from_stored(
        kind: &str,
        text: &str,
        tz: Option<&str>,
    ) -> Result<Schedule, ScheduleError> {
        match kind.parse::<Kind>()? {
            Kind::At => {
                let zone = parse_tz(tz.unwrap_or(DEFAULT_TZ))?;
                let at_ms = text
                    .parse()
                    .map_err(|_| err(format!("stored time {text:?} is not a number")))?;
                Ok(Schedule::At { at_ms, tz: zone })
            }
            k => Schedule::parse(k, text, tz, 0),
        }
    }

    /// The first occurrence strictly after `after_ms`, or None when there is none (a one-shot
    /// already past). For intervals this is the first run: `after_ms + interval`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Cron { cron, tz, .. } => {
                let from = tz.timestamp_millis_opt(after_ms).single()?;
                cron.find_next_occurrence(&from, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
            Schedule::Every { interval_ms, .. } => after_ms.checked_add(*interval_ms),
            Schedule::At { at_ms, .. } => (*at_ms > after_ms).then_some(*at_ms),
        }
    }

    /// The occurrence after `current` (a scheduled time): for intervals `current + interval`,
    /// so the anchor never moves.
    fn following(&self, current_ms: i64) -> Option<i64> {
        self.next_after(current_ms)
    }

    /// A human description: `cron 0 9 * * 1-5 (Europe/Berlin)`, `every 30m`,
    /// `at 2026-12-01 09:00 (Asia/Shanghai)`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron { expr, tz, .. } => format!("cron {expr} ({})", tz.name()),
            Schedule::Every { text, .. } => format!("every {text}"),
            Schedule::At { at_ms, tz } => {
                format!("at {} ({})", format_local(*at_ms, *tz), tz.name())
            }
        }
    }

    /// When a run is due at `now_ms` for a task whose next run was `next_ms`: which occurrence
    /// to run, how many missed ones are skipped, and the next run after it. Missed
    /// occurrences follow one policy: run the latest one once, skip the rest. None when
    /// `next_ms` is still in the future.
    pub fn fire(&self, next_ms: i64, now_ms: i64) -> Option<Fire> {
        if next_ms > now_ms {
            return None;
        }
        let mut scheduled_for = next_ms;
        let mut skipped: u64 = 0;
        match self {
            Schedule::Every { interval_ms, .. } => {
                // Arithmetic, not a walk: the latest slot on the anchor's grid not after now.
                let behind = (now_ms - next_ms) / interval_ms;
                scheduled_for = next_ms + behind * interval_ms;
                skipped = behind as u64;
            }
            _ => {
                let mut walked = 0;
                while let Some(n) = self.following(scheduled_for) {
                    if n > now_ms {
                        break;
                    }
                    walked += 1;
                    if walked > MISSED_WALK_LIMIT {
                        // Far behind: jump to the latest occurrence not after now, found by
                        // searching backwards from now; the exact count no longer matters.
                        if let Some(latest) = self.latest_not_after(now_ms) {
                            scheduled_for = latest.max(n);
                        }
                        break;
                    }
                    scheduled_for = n;
                    skipped += 1;
                }
            }
        }
        Some(Fire {
            scheduled_for,
            skipped,
            next: self.following(scheduled_for),
        })
    }

    /// The next run when a paused task is resumed at `now_ms`: occurrences missed while it
    /// was paused are skipped, not caught up, except a one-shot, which then runs at once.
    pub fn resume_next(&self, next_ms: Option<i64>, now_ms: i64) -> Option<i64> {
        match (self, next_ms) {
            (_, Some(n)) if n > now_ms => Some(n),
            (Schedule::At { at_ms, .. }, _) => Some((*at_ms).min(now_ms)),
            (Schedule::Every { .. }, Some(n)) => self.fire(n, now_ms).and_then(|f| f.next),
            _ => self.next_after(now_ms),
        }
    }

    fn latest_not_after(&self, now_ms: i64) -> Option<i64> {
        match self {
            Schedule::Cron { cron, tz, .. } => {
                let from = tz.timestamp_millis_opt(now_ms).single()?;
                cron.find_previous_occurrence(&from, true)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
            _ => None,
        }
    }
}

/// The outcome of [`Schedule::fire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// The occurrence to run now.
    pub scheduled_for: i64,
    /// Missed occurrences before it that are not run.
    pub skipped: u64,
    /// The next occurrence after it (None: the schedule is finished).
    pub next: Option<i64>,
}

/// Parses a one-shot time: RFC 3339 with an offset, or a local date-time
/// (`2026-12-01T09:00`, `2026-12-01 09:00[:ss]`) in `zone`.
fn parse_at(text: &str, zone: Tz) -> Result<i64, ScheduleError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let naive = [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .ok_or_else(|| {
        err(format!(
            "invalid time {text:?} (expected e.g. 2026-12-01T09:00, or RFC 3339 with an offset)"
        ))
    })?;
    match zone.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Ok(t.timestamp_millis()),
        // The clock goes back: the first of the two instants, as for cron.
        chrono::LocalResult::Ambiguous(first, _) => Ok(first.timestamp_millis()),
        chrono::LocalResult::None => Err(err(format!(
            "{text} does not exist in {} (the clock skips it for daylight saving time)",
            zone.name()
        ))),
    }
}

/// `2026-12-01 09:00` in `zone` (seconds shown only when not zero).
pub fn format_local(ms: i64, zone: Tz) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => {
            let local = t.with_timezone(&zone);
            if local.format("%S").to_string() == "00" {
                local.format("%Y-%m-%d %H:%M").to_string()
            } else {
                local.format("%Y-%m-%d %H:%M:%S").to_string()
            }
        }
        None => ms.to_string(),
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a wall-clock time in a zone (must exist and be unambiguous).
    fn at(zone: &str, s: &str) -> i64 {
        parse_at(s, parse_tz(zone).unwrap()).unwrap()
    }

    fn utc(s: &str) -> i64 {
        at("UTC", s)
    }

    fn local(ms: i64, zone: &str) -> String {
        format!(
            "{}",
            Utc.timestamp_millis_opt(ms)
                .unwrap()
                .with_timezone(&parse_tz(zone).unwrap())
                .format("%Y-%m-%d %H:%M %Z")
        )
    }

    fn cron(expr: &str, tz: &str) -> Schedule {
        Schedule::parse(Kind::Cron, expr, Some(tz), 0).unwrap()
    }

    #[test]
    fn weekday_mornings_in_a_zone() {
        let s = cron("0 9 * * 1-5", "Europe/Berlin");
        // Friday 2026-11-20 10:00 Berlin → Monday 09:00 Berlin (08:00 UTC in winter).
        let fri = at("Europe/Berlin", "2026-11-20T10:00");
        let next = s.next_after(fri).unwrap();
        assert_eq!(local(next, "Europe/Berlin"), "2026-11-23 09:00 CET");
        assert_eq!(local(next, "UTC"), "2026-11-23 08:00 UTC");
        // Exactly at an occurrence: the next one, not the same.
        assert_eq!(
            local(s.next_after(next).unwrap(), "Europe/Berlin"),
            "2026-11-24 09:00 CET"
        );
    }

    #[test]
    fn the_documented_dialect() {
        let next =
            |expr: &str, from: &str| local(cron(expr, "UTC").next_after(utc(from)).unwrap(), "UTC");
        assert_eq!(next("@daily", "2026-11-22T10:00"), "2026-11-23 00:00 UTC");
        assert_eq!(
            next("0 9 * * MON#1", "2026-11-22T10:00"),
            "2026-12-07 09:00 UTC"
        );
        assert_eq!(
            next("0 9 L * *", "2026-11-22T10:00"),
            "2026-11-30 09:00 UTC"
        );
        assert_eq!(
            next("0 9 * * 5L", "2026-11-22T10:00"),
            "2026-11-27 09:00 UTC"
        );
        // Day-of-month OR day-of-week, as in Vixie cron: the 1st, or any Monday.
        assert_eq!(
            next("0 0 1 * MON", "2026-11-22T10:00"),
            "2026-11-23 00:00 UTC"
        );
        assert_eq!(
            next("0 0 1 * MON", "2026-11-29T10:00"),
            "2026-11-30 00:00 UTC"
        );
        assert_eq!(
            next("0 0 1 * MON", "2026-11-30T10:00"),
            "2026-12-01 00:00 UTC"
        );
        assert!(
            Schedule::parse(Kind::Cron, "0 0 9 * * *", None, 0).is_err(),
            "no seconds field"
        );
    }

    #[test]
    fn a_time_the_clock_skips_runs_right_after_the_jump() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        let s = cron("30 2 * * *", "Europe/Berlin");
        let before = at("Europe/Berlin", "2026-03-28T12:00");
        let on_the_day = s.next_after(before).unwrap();
        assert_eq!(local(on_the_day, "Europe/Berlin"), "2026-03-29 03:00 CEST");
        assert_eq!(
            local(s.next_after(on_the_day).unwrap(), "Europe/Berlin"),
            "2026-03-30 02:30 CEST",
            "the next day is back to normal"
        );
    }

    #[test]
    fn a_time_that_happens_twice_runs_once() {
        // Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        let s = cron("30 2 * * *", "Europe/Berlin");
        let before = at("Europe/Berlin", "2026-10-24T12:00");
        let first = s.next_after(before).unwrap();
        assert_eq!(local(first, "Europe/Berlin"), "2026-10-25 02:30 CEST");
        let second = s.next_after(first).unwrap();
        assert_eq!(
            local(second, "Europe/Berlin"),
            "2026-10-26 02:30 CET",
            "not again an hour later"
        );
        // A quarter-hourly pattern counts real time: it fires in both 02:xx hours.
        let q = cron("*/30 * * * *", "Europe/Berlin");
        let mut t = at("Europe/Berlin", "2026-10-25T01:50");
        let mut seen = Vec::new();
        for _ in 0..6 {
            t = q.next_after(t).unwrap();
            seen.push(local(t, "Europe/Berlin"));
        }
        assert_eq!(
            seen,
            [
                "2026-10-25 02:00 CEST",
                "2026-10-25 02:30 CEST",
                "2026-10-25 02:00 CET",
                "2026-10-25 02:30 CET",
                "2026-10-25 03:00 CET",
                "2026-10-25 03:30 CET"
            ]
        );
    }

    #[test]
    fn a_one_shot_local_time_in_a_gap_is_refused() {
        let e =
            Schedule::parse(Kind::At, "2026-03-29T02:30", Some("Europe/Berlin"), 0).unwrap_err();
        assert!(e.0.contains("does not exist"), "{e}");
    }

    #[test]
    fn intervals_are_anchored_and_skip_missed_slots() {
        let s = Schedule::parse(Kind::Every, "30m", None, 0).unwrap();
        let created = utc("2026-11-22T10:00");
        let first = s.next_after(created).unwrap();
        assert_eq!(first, utc("2026-11-22T10:30"));
        // On time (woken 40 ms late): runs the slot, next is anchored, not now + 30m.
        let f = s.fire(first, first + 40).unwrap();
        assert_eq!(
            f,
            Fire {
                scheduled_for: first,
                skipped: 0,
                next: Some(utc("2026-11-22T11:00"))
            }
        );
        // Down from 10:31 to 12:10: slots 10:30..12:00 missed; run 12:00 once, next 12:30.
        let f = s.fire(first, utc("2026-11-22T12:10")).unwrap();
        assert_eq!(f.scheduled_for, utc("2026-11-22T12:00"));
        assert_eq!(f.skipped, 3);
        assert_eq!(f.next, Some(utc("2026-11-22T12:30")));
        assert_eq!(s.fire(first, first - 1), None, "not due yet");
    }

    #[test]
    fn missed_cron_runs_collapse_into_the_latest() {
        let s = cron("0 * * * *", "UTC");
        let f = s
            .fire(utc("2026-11-22T08:00"), utc("2026-11-22T11:59"))
            .unwrap();
        assert_eq!(f.scheduled_for, utc("2026-11-22T11:00"));
        assert_eq!(f.skipped, 3);
        assert_eq!(f.next, Some(utc("2026-11-22T12:00")));
        // A year of missed minutes is still one run and a quick answer.
        let m = cron("* * * * *", "UTC");
        let f = m
            .fire(utc("2025-11-22T00:00"), utc("2026-11-22T09:30"))
            .unwrap();
        assert_eq!(f.scheduled_for, utc("2026-11-22T09:30"));
        assert_eq!(f.next, Some(utc("2026-11-22T09:31")));
    }

    #[test]
    fn a_one_shot_fires_once() {
        let now = utc("2026-11-22T08:00");
        let s = Schedule::parse(Kind::At, "2026-12-01T09:00", Some("Asia/Shanghai"), now).unwrap();
        let when = s.next_after(now).unwrap();
        assert_eq!(when, utc("2026-12-01T01:00"));
        let f = s.fire(when, when + 5_000).unwrap();
        assert_eq!((f.scheduled_for, f.skipped, f.next), (when, 0, None));
        assert_eq!(s.next_after(when), None);
        // RFC 3339 with an offset needs no zone.
        let r = Schedule::parse(Kind::At, "2026-12-01T09:00:00+08:00", None, now).unwrap();
        assert_eq!(r.next_after(now), Some(when));
        // Stored and read back.
        let back = Schedule::from_stored("at", &s.stored_text(), s.tz_name()).unwrap();
        assert_eq!(back.next_after(now), Some(when));
        assert_eq!(s.describe(), "at 2026-12-01 09:00 (Asia/Shanghai)");
    }

    #[test]
    fn resuming_skips_what_was_missed_while_paused() {
        let every = Schedule::parse(Kind::Every, "10m", None, 0).unwrap();
        let next = utc("2026-11-22T10:00");
        let now = utc("2026-11-22T10:35");
        assert_eq!(
            every.resume_next(Some(next), now),
            Some(utc("2026-11-22T10:40"))
        );
        assert_eq!(every.resume_next(Some(now + 5), now), Some(now + 5));
        let c = cron("0 * * * *", "UTC");
        assert_eq!(
            c.resume_next(Some(next), now),
            Some(utc("2026-11-22T11:00"))
        );
        let once = Schedule::from_stored("at", &next.to_string(), None).unwrap();
        assert_eq!(
            once.resume_next(Some(next), now),
            Some(next),
            "a one-shot still runs"
        );
    }

    #[test]
    fn bad_input_is_refused_with_one_line() {
        let now = utc("2026-11-22T08:00");
        let cases = [
            (Kind::Cron, "61 * * * *", None, "invalid cron expression"),
            (Kind::Cron, "0 9 * *", None, "invalid cron expression"),
            (Kind::Cron, "0 0 31 2 *", None, "never fires"),
            (
                Kind::Cron,
                "0 9 * * *",
                Some("Mars/Olympus"),
                "unknown time zone",
            ),
            (Kind::Every, "0s", None, "longer than zero"),
            (Kind::Every, "500ms", None, "shorter than 1s"),
            (Kind::Every, "soon", None, "invalid interval"),
            (Kind::Every, "5m", Some("UTC"), "no time zone"),
            (Kind::At, "2026-11-21T09:00", None, "in the past"),
            (Kind::At, "tomorrow", None, "invalid time"),
        ];
        for (kind, text, tz, want) in cases {
            let e = Schedule::parse(kind, text, tz, now)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{kind:?} {text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!("weekly".parse::<Kind>().is_err());
    }

    #[test]
    fn stored_schedules_round_trip() {
        for (kind, text, tz) in [
            (Kind::Cron, "0 9 * * MON-FRI", Some("Europe/Berlin")),
            (Kind::Every, "1h30m", None),
        ] {
            let s = Schedule::parse(kind, text, tz, 0).unwrap();
            let back = Schedule::from_stored(kind.as_str(), &s.stored_text(), s.tz_name()).unwrap();
            assert_eq!(back.next_after(1_000), s.next_after(1_000));
            assert_eq!(back.describe(), s.describe());
        }
    }
}
