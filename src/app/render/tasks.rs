//! Tables of tasks and task runs.

use comfy_table::{presets::NOTHING, Table};

use super::timestamp;
use crate::app::tasks::TaskView;
use crate::infra::store::tasks::RunRow;

/// Longest prompt or result shown in a table cell.
const CELL_CHARS: usize = 40;

/// A prompt, a result or an error in one cell: on one line, cut short, and escaped (an
/// agent writes results, and prompts too when it schedules its own tasks).
fn cut(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let short = match one_line.char_indices().nth(CELL_CHARS) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    };
    crate::domain::escape::line(&short).into_owned()
}

/// How far `at` is from `now`, in the largest whole unit: `in 5m`, `3h ago`, `now`.
pub fn relative(at_ms: i64, now_ms: i64) -> String {
    let secs = (at_ms - now_ms) / 1000;
    let n = secs.unsigned_abs();
    let amount = match n {
        0 => return "now".to_string(),
        1..=59 => format!("{n}s"),
        60..=3599 => format!("{}m", n / 60),
        3600..=86_399 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86_400),
    };
    if secs > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn when(rfc: &Option<String>, now_ms: i64) -> String {
    let Some(text) = rfc else {
        return "-".into();
    };
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => format!("{text} ({})", relative(t.timestamp_millis(), now_ms)),
        Err(_) => text.clone(),
    }
}

pub fn tasks_table(rows: &[TaskView], now_ms: i64) -> String {
    if rows.is_empty() {
        return "no tasks (add one with `supervisor task add NAME --every 30m --prompt ...`)\n"
            .into();
    }
    let mut table = Table::new();
    table.load_style(NOTHING).set_header([
        "ID", "INSTANCE", "KIND", "SCHEDULE", "STATUS", "NEXT RUN", "LAST RUN", "LAST", "PROMPT",
    ]);
    for t in rows {
        let last = match (&t.last_status, &t.last_result) {
            (Some(s), Some(r)) if s == "ok" => format!("ok: {}", cut(r)),
            (Some(s), _) => crate::domain::escape::line(s).into_owned(),
            (None, _) => "-".into(),
        };
        table.add_row([
            t.id.to_string(),
            t.instance.clone(),
            t.kind.clone(),
            crate::domain::escape::line(&t.schedule).into_owned(),
            t.status.clone(),
            when(&t.next_run, now_ms),
            when(&t.last_run, now_ms),
            last,
            cut(&t.prompt),
        ]);
    }
    format!("{table}\n")
}

pub fn runs_table(rows: &[RunRow]) -> String {
    if rows.is_empty() {
        return "no runs yet\n".into();
    }
    let mut table = Table::new();
    table.load_style(NOTHING).set_header([
        "RUN",
        "SCHEDULED FOR",
        "TRIGGER",
        "STATUS",
        "TOOK",
        "SKIPPED",
        "RESULT",
    ]);
    for r in rows {
        let took = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => format!("{:.1}s", (f - s) as f64 / 1000.0),
            _ => "-".into(),
        };
        let result = match (&r.error, &r.result) {
            (Some(e), _) => format!("error: {}", cut(e)),
            (None, Some(text)) => cut(text),
            (None, None) => "-".into(),
        };
        table.add_row([
            r.id.to_string(),
            timestamp(r.scheduled_for),
            r.trigger.clone(),
            r.status.clone(),
            took,
            r.skipped.to_string(),
            result,
        ]);
    }
    format!("{table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(relative(1_000, 1_000), "now");
        assert_eq!(relative(46_000, 1_000), "in 45s");
        assert_eq!(relative(1_000, 7_201_000), "2h ago");
        assert_eq!(relative(3 * 86_400_000, 0), "in 3d");
    }

    #[test]
    fn tables_show_outcomes_and_cut_long_text() {
        let run = RunRow {
            id: 7,
            task_id: 1,
            scheduled_for: 0,
            claimed_at: 0,
            started_at: Some(1_000),
            finished_at: Some(3_500),
            status: "ok".into(),
            result: Some("a\nvery ".repeat(20)),
            error: None,
            trigger: "schedule".into(),
            skipped: 2,
        };
        let text = runs_table(&[run]);
        assert!(text.contains("2.5s"), "{text}");
        assert!(text.contains("a very a very"), "{text}");
        assert!(text.contains('…'), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(runs_table(&[]), "no runs yet\n");
    }

    #[test]
    fn results_and_errors_an_agent_wrote_are_escaped() {
        let run = RunRow {
            id: 1,
            task_id: 1,
            scheduled_for: 0,
            claimed_at: 0,
            started_at: None,
            finished_at: None,
            status: "ok".into(),
            result: Some("\u{1b}]0;owned\u{7}done".into()),
            error: None,
            trigger: "schedule".into(),
            skipped: 0,
        };
        let text = runs_table(std::slice::from_ref(&run));
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("\\u{1b}]0;owned\\u{7}done"), "{text}");
        let failed = RunRow {
            result: None,
            error: Some("bad\u{9b}2J\u{202e}".into()),
            ..run
        };
        let text = runs_table(&[failed]);
        assert!(text.contains("error: bad\\u{9b}2J\\u{202e}"), "{text}");
    }
}
