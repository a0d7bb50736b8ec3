//! Draws the dashboard from an [`App`]: the header (same facts as `status`), the instance
//! table, the selected instance's events and log lines, and a footer with the keys.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::app::{App, Command, Detail, RowRef};
use crate::app::render::status::{
    channel_colour, channel_note, duration, row_cells, state_colour, COLUMNS, STATE_COLUMN,
};
use crate::app::render::{bytes, timestamp};
use crate::app::status::{InstanceStatus, StatusReport};
use crate::domain::escape;

const SELECTED_MARK: &str = "> ";
const SPACING: usize = 2;
const HEADER_HEIGHT: u16 = 4;

/// From this width on, the events and the log lines sit side by side; below it (an
/// 80-column terminal) one above the other, each as wide as the screen.
const SIDE_BY_SIDE_FROM: u16 = 120;

/// The dashboard's own column, after the state, while any instance has chat groups.
const GROUPS_COLUMN: usize = STATE_COLUMN + 1;
const GROUPS_HEADER: &str = "GROUPS";

/// The most lines the selected instance's state reason takes.
const REASON_LINES: u16 = 3;

pub fn draw(frame: &mut Frame, app: &App) {
    let width = frame.area().width;
    let footer = footer_lines(app, width);
    let footer_height = footer.len() as u16;
    let reason = reason_lines(app);
    let reason_height = if app.detail_open {
        // The channels' lines come on top of the reason's own.
        let channels = app.selected().map_or(0, |i| i.channels.len()) as u16;
        wrapped_height(&reason, width).min(REASON_LINES + channels)
    } else {
        0
    };
    let mut constraints = vec![Constraint::Length(HEADER_HEIGHT)];
    if app.detail_open {
        // The table as tall as its rows (and borders), up to half the room; the detail
        // pane takes the rest.
        let room = frame
            .area()
            .height
            .saturating_sub(HEADER_HEIGHT + footer_height + reason_height);
        let rows = app.rows().len().max(1) as u16 + 3;
        constraints.push(Constraint::Length(rows.min((room / 2).max(4))));
        constraints.push(Constraint::Length(reason_height));
    }
    constraints.push(Constraint::Fill(1));
    constraints.push(Constraint::Length(footer_height));
    let areas = Layout::vertical(constraints).split(frame.area());
    frame.render_widget(header(app.report(), &app.command), areas[0]);
    draw_table(frame, app, areas[1]);
    if app.detail_open {
        frame.render_widget(Paragraph::new(reason).wrap(Wrap { trim: false }), areas[2]);
        draw_detail(frame, app, areas[3]);
    }
    frame.render_widget(Paragraph::new(footer), areas[areas.len() - 1]);
}

/// The selected instance's state and why it is in it (`state_detail`), escaped: a detail
/// can quote a container's output.
fn reason_lines(app: &App) -> Vec<Line<'static>> {
    let Some(i) = app.selected() else {
        return vec![];
    };
    let mut spans = vec![
        Span::styled(format!("{}: ", i.name), Style::new().bold()),
        Span::styled(
            i.state.to_string(),
            match state_colour(i.state).filter(|_| app.colour) {
                Some(c) => Style::new().fg(colour(c)),
                None => Style::new(),
            },
        ),
    ];
    if let Some(detail) = i.detail.as_deref().filter(|d| !d.trim().is_empty()) {
        spans.push(Span::raw(format!(" — {}", escape::line(detail))));
    }
    let mut lines = vec![Line::from(spans)];
    // A line per channel, as the text view has them; a fault is marked even without colour.
    for c in &i.channels {
        let style = match channel_colour(&c.state).filter(|_| app.colour) {
            Some(fg) => Style::new().fg(colour(fg)),
            None if c.is_fault() => Style::new().bold(),
            None => Style::new(),
        };
        lines.push(Line::from(vec![
            Span::raw(if c.is_fault() { "! " } else { "  " }),
            Span::raw(format!("{}: ", c.channel)),
            Span::styled(c.state.clone(), style),
            Span::raw(channel_note(c)),
        ]));
    }
    lines
}

/// How many rows `lines` take when wrapped at `width` (ratatui wraps at words, which can
/// take a row more; the pane is capped anyway).
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| l.width().div_ceil(width).max(1) as u16)
        .sum()
}

/// The text view's four header lines, in the same words; `command` is how to call this
/// program on this home.
fn header(r: &StatusReport, command: &str) -> Paragraph<'static> {
    let d = &r.daemon;
    let daemon = match (d.running, d.pid, d.uptime_secs) {
        (true, Some(pid), Some(up)) => format!(
            "up, pid {pid}, uptime {}, version {}",
            duration(up),
            d.version.as_deref().unwrap_or("?")
        ),
        _ => format!("DOWN (start it with `{command} run`); states are from the store and Docker"),
    };
    let docker = match (r.docker.reachable, &r.docker.version) {
        (true, Some(v)) => format!("reachable, engine {v}"),
        (true, None) => "reachable".into(),
        (false, _) => "UNREACHABLE".into(),
    };
    let runtime = r
        .runtime
        .clone()
        .unwrap_or_else(|| "none active (`supervisor runtime build --activate`)".into());
    let database = format!("{} ({})", bytes(r.database.bytes), r.database.path);
    let line = |label: &'static str, value: String| {
        Line::from(vec![
            Span::styled(label, Style::new().bold()),
            Span::raw(value),
        ])
    };
    Paragraph::new(vec![
        line("daemon    ", daemon),
        line("docker    ", docker),
        line("runtime   ", runtime),
        line("database  ", database),
    ])
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(" instances ");
    if app.report().instances.is_empty() {
        let empty =
            Paragraph::new("no instances (create one with `supervisor create-instance NAME`)");
        frame.render_widget(empty.block(block), area);
        return;
    }
    let header = header_cells(app);
    let rows: Vec<Vec<Line<'static>>> = app
        .rows()
        .into_iter()
        .map(|r| table_row(app, r, header.len()))
        .collect();
    // Each column as wide as its widest cell, as the text view lays it out; on a narrow
    // terminal the rightmost columns go, rather than every column being cut short.
    let room = (block.inner(area).width as usize).saturating_sub(SELECTED_MARK.len());
    let mut used = 0;
    let widths: Vec<Constraint> = (0..header.len())
        .map(|c| {
            let widest = rows.iter().map(|r| r[c].width()).max().unwrap_or(0);
            widest.max(header[c].chars().count())
        })
        .enumerate()
        .take_while(|&(c, w)| {
            used += if c == 0 { w } else { SPACING + w };
            c == 0 || used <= room
        })
        .map(|(_, w)| Constraint::Length(w as u16))
        .collect();
    let shown = widths.len();
    let header = header.into_iter().take(shown);
    let table_rows = rows
        .into_iter()
        .map(|row| Row::new(row.into_iter().take(shown).map(Cell::new)));
    let table = Table::new(table_rows, widths)
        .header(Row::new(header).style(Style::new().bold()))
        .block(block)
        .column_spacing(SPACING as u16)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol(SELECTED_MARK);
    let mut state = TableState::new().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

/// Whether the table has the GROUPS column: without chat groups it would be empty.
fn has_groups(app: &App) -> bool {
    app.report()
        .instances
        .iter()
        .any(|i| !i.group_counts.is_empty())
}

/// The text view's columns (the sorted one with its arrow), and GROUPS when needed.
fn header_cells(app: &App) -> Vec<String> {
    let arrow = if app.descending() { " ▼" } else { " ▲" };
    let mut header: Vec<String> = COLUMNS
        .iter()
        .map(|c| match *c == app.sort.column() {
            true => format!("{c}{arrow}"),
            false => c.to_string(),
        })
        .collect();
    if has_groups(app) {
        header.insert(GROUPS_COLUMN, GROUPS_HEADER.into());
    }
    header
}

/// A row's cells, `columns` of them: the text view's, the state painted, and the group
/// counts when the table has that column. A group's name is indented under its instance's.
fn table_row(app: &App, row: RowRef, columns: usize) -> Vec<Line<'static>> {
    let status = app.row_status(row);
    let mut cells: Vec<Line<'static>> = row_cells(status).into_iter().map(Line::from).collect();
    if let Some(g) = row.group {
        let last = g + 1 == app.report().instances[row.instance].groups.len();
        let branch = if last { "└" } else { "├" };
        cells[0] = Line::from(format!(" {branch} {}", status.name));
    }
    if let Some(fg) = state_colour(status.state).filter(|_| app.colour) {
        cells[STATE_COLUMN] = cells[STATE_COLUMN]
            .clone()
            .style(Style::new().fg(colour(fg)));
    }
    if columns > COLUMNS.len() {
        let counts = match row.group {
            None => group_counts(status, app.is_expanded(status), app.colour),
            Some(_) => Line::default(),
        };
        cells.insert(GROUPS_COLUMN, counts);
    }
    cells
}

/// An instance's groups in a few cells: `▸ 3▶ 40· 1!` (running, idle, failing), only the
/// counts that are not zero, so that `!` shows only when a group fails; it is painted as a
/// failing state is, or bold without colour. `▸` becomes `▾` while the groups are shown.
fn group_counts(i: &InstanceStatus, expanded: bool, paint: bool) -> Line<'static> {
    let c = i.group_counts;
    if c.is_empty() {
        return Line::default();
    }
    let failing = match paint {
        true => Style::new().fg(Color::LightRed).bold(),
        false => Style::new().bold(),
    };
    let running = match paint {
        true => Style::new().fg(Color::LightGreen),
        false => Style::new(),
    };
    let mut spans = vec![Span::raw(if expanded { "▾" } else { "▸" })];
    for (n, mark, style) in [
        (c.running, "▶", running),
        (c.idle, "·", Style::new()),
        (c.failing, "!", failing),
    ] {
        if n > 0 {
            spans.push(Span::raw(" "));
            spans.push(Span::styled(format!("{n}{mark}"), style));
        }
    }
    Line::from(spans)
}

/// The text view's state colours (comfy-table's names) in ratatui's names: comfy-table
/// calls the bright colours plainly `Red` and the normal ones `DarkRed`; ratatui calls them
/// `LightRed` and `Red`.
fn colour(c: comfy_table::Color) -> Color {
    use comfy_table::Color as C;
    match c {
        C::Reset => Color::Reset,
        C::Black => Color::Black,
        C::DarkGrey => Color::DarkGray,
        C::Red => Color::LightRed,
        C::DarkRed => Color::Red,
        C::Green => Color::LightGreen,
        C::DarkGreen => Color::Green,
        C::Yellow => Color::LightYellow,
        C::DarkYellow => Color::Yellow,
        C::Blue => Color::LightBlue,
        C::DarkBlue => Color::Blue,
        C::Magenta => Color::LightMagenta,
        C::DarkMagenta => Color::Magenta,
        C::Cyan => Color::LightCyan,
        C::DarkCyan => Color::Cyan,
        C::White => Color::White,
        C::Grey => Color::Gray,
        C::Rgb { r, g, b } => Color::Rgb(r, g, b),
        C::AnsiValue(v) => Color::Indexed(v),
    }
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
    let [left, right] = if area.width >= SIDE_BY_SIDE_FROM {
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area)
    } else {
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area)
    };
    let Some(name) = app.selected_name() else {
        frame.render_widget(Block::bordered().title(" events "), left);
        frame.render_widget(Block::bordered().title(" logs "), right);
        return;
    };
    let events_block = Block::bordered().title(format!(" {name}: recent events "));
    let logs_block = Block::bordered().title(format!(" {name}: last log lines "));
    let Some(detail) = app.current_detail() else {
        frame.render_widget(Paragraph::new("loading…").block(events_block), left);
        frame.render_widget(Paragraph::new("loading…").block(logs_block), right);
        return;
    };
    // Events wrap: a detail is read whole, not cut at the pane's edge.
    frame.render_widget(
        Paragraph::new(event_lines(detail))
            .wrap(Wrap { trim: false })
            .block(events_block),
        left,
    );
    // The newest lines at the bottom, like a terminal's tail: keep the ones that fit.
    let fits = logs_block.inner(right).height as usize;
    frame.render_widget(
        Paragraph::new(log_lines(detail, fits)).block(logs_block),
        right,
    );
}

fn event_lines(detail: &Detail) -> Vec<Line<'static>> {
    match &detail.events {
        Err(note) => vec![note_line(note)],
        Ok(events) if events.is_empty() => vec![Line::from("no events")],
        Ok(events) => events
            .iter()
            .map(|e| {
                let mut spans = vec![
                    Span::raw(timestamp(e.at)),
                    Span::raw("  "),
                    Span::styled(escape::line(&e.kind).into_owned(), Style::new().bold()),
                    Span::raw(format!(" by {}", escape::line(&e.actor))),
                ];
                // JSON escapes C0 controls but not C1 ones or bidi overrides, and a
                // detail may quote what an agent wrote.
                if let Some(d) = &e.detail {
                    spans.push(Span::raw(format!("  {}", escape::line(&d.to_string()))));
                }
                Line::from(spans)
            })
            .collect(),
    }
}

fn log_lines(detail: &Detail, fits: usize) -> Vec<Line<'static>> {
    match &detail.logs {
        Err(note) => vec![note_line(note)],
        Ok(lines) if lines.is_empty() => vec![Line::from("no output")],
        Ok(lines) => lines[lines.len().saturating_sub(fits)..]
            .iter()
            .map(|l| Line::from(printable(l)))
            .collect(),
    }
}

/// A line of a container's output as a cell grid can hold it: a tab as spaces (cells have
/// no tab stops), and escape sequences and other controls shown, not sent to the terminal,
/// where they would move the cursor and garble the screen.
fn printable(line: &str) -> String {
    escape::line(&line.replace('\t', "    ")).into_owned()
}

fn note_line(note: &str) -> Line<'static> {
    Line::styled(escape::line(note).into_owned(), Style::new().italic())
}

/// The footer: the last command's outcome, a failed refresh, then the keys, packed into as
/// many rows as the width needs (a key is never split across rows).
fn footer_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let arrow = if app.descending() { "▼" } else { "▲" };
    let mut items = vec![
        format!(
            "refreshed {} (every {}s)",
            timestamp(app.refreshed_at),
            app.interval.as_secs_f64()
        ),
        "q quit".into(),
        "↑↓ select".into(),
        format!("s sort: {} {arrow}", app.sort.column().to_lowercase()),
        "S reverse".into(),
        "enter details".into(),
        "r refresh".into(),
    ];
    if has_groups(app) {
        items.push("→← groups (▶ running · idle ! failing)".into());
    }
    // The selected instance's keys start a row of their own.
    let mut actions = Vec::new();
    if let Some(name) = app.selected_name() {
        actions.push(format!("on {name}:"));
        for (key, _, label) in Command::KEYS {
            actions.push(format!("{key} {label}"));
        }
    }
    let mut lines = Vec::new();
    if let Some(m) = &app.message {
        lines.push(Line::styled(
            escape::line(m).into_owned(),
            Style::new().bold(),
        ));
    }
    if let Some(e) = &app.error {
        let style = match app.colour {
            true => Style::new().fg(Color::LightRed),
            false => Style::new().bold(),
        };
        lines.push(Line::styled(
            format!("refresh failed: {}", escape::line(e)),
            style,
        ));
    }
    let dim = Style::new().add_modifier(Modifier::DIM);
    let rows = pack(&items, usize::from(width))
        .into_iter()
        .chain(pack(&actions, usize::from(width)));
    for row in rows {
        lines.push(Line::styled(row, dim));
    }
    lines
}

/// `items` joined by two spaces, in rows of at most `width` columns.
fn pack(items: &[String], width: usize) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for item in items {
        match rows.last_mut() {
            Some(row) if row.chars().count() + 2 + item.chars().count() <= width => {
                row.push_str("  ");
                row.push_str(item);
            }
            _ => rows.push(item.clone()),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;

    use super::super::app::tests::{instance, report, with_groups};
    use super::*;
    use crate::infra::store::events::Event;

    fn render(app: &App, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        terminal.backend().buffer().clone()
    }

    fn lines(buffer: &Buffer) -> Vec<String> {
        let area = buffer.area;
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", lines.join("\n")))
    }

    /// The column where `needle` starts: borders and arrows are wider in bytes than in cells.
    fn column(line: &str, needle: &str) -> u16 {
        line[..line.find(needle).unwrap()].chars().count() as u16
    }

    fn app() -> App {
        let mut crashing = instance("bob", "crash-loop", None, 0);
        crashing.restarts = 5;
        let mut running = instance("alice", "running", Some(0.3), 5120);
        running.uptime_secs = Some(3660);
        running.health = "ready".into();
        App::new(
            report(vec![crashing, running]),
            1_767_225_600_000,
            Duration::from_secs(2),
            true,
        )
    }

    fn alice_detail() -> Detail {
        Detail {
            instance: "alice".into(),
            events: Ok(vec![Event {
                id: 1,
                at: 1_767_225_600_000,
                instance: Some("alice".into()),
                actor: "cli".into(),
                kind: "instance.start".into(),
                detail: None,
            }]),
            logs: Ok((1..=30).map(|n| format!("log line {n}")).collect()),
        }
    }

    #[test]
    fn the_header_says_what_the_text_view_says() {
        let out = lines(&render(&app(), 160, 40));
        assert!(
            out[0].starts_with("daemon    up, pid 4242, uptime 1h 2m, version 0.1.0"),
            "{}",
            out[0]
        );
        assert!(out[1].starts_with("docker    reachable, engine 20.10.24"));
        assert!(out[2].starts_with("runtime   rt-abc"));
        assert!(out[3].starts_with("database  2.1 MB (/h/supervisor.db)"));
        let mut down = app();
        let mut r = down.report().clone();
        r.daemon.running = false;
        r.docker.reachable = false;
        down.set_report(r, 0);
        let out = lines(&render(&down, 160, 40));
        assert!(out[0].starts_with("daemon    DOWN"), "{}", out[0]);
        assert!(out[1].starts_with("docker    UNREACHABLE"), "{}", out[1]);
    }

    #[test]
    fn the_table_has_every_instance_the_selection_and_the_sort_arrow() {
        let buffer = render(&app(), 160, 40);
        let out = lines(&buffer);
        let head = line_with(&out, "STATE");
        for c in COLUMNS.iter().skip(1) {
            assert!(head.contains(c), "{c} missing from {head}");
        }
        assert!(head.contains("NAME ▲"), "{head}");
        let alice = line_with(&out, "alice ");
        assert!(
            alice.contains("> alice"),
            "the first row is selected: {alice}"
        );
        for cell in ["running", "ready", "1h 1m", "0.3%", "5120"] {
            assert!(alice.contains(cell), "{cell} missing from {alice}");
        }
        let bob = line_with(&out, "crash-loop");
        assert!(bob.contains("bob") && !bob.contains('>'), "{bob}");
        // The selected row is reversed; the state cell is painted as the text view paints it.
        let y = out.iter().position(|l| l.contains("> alice")).unwrap();
        let x = column(&out[y], "alice");
        assert!(buffer[(x, y as u16)].modifier.contains(Modifier::REVERSED));
        let y = out.iter().position(|l| l.contains("crash-loop")).unwrap();
        let x = column(&out[y], "crash-loop");
        assert_eq!(buffer[(x, y as u16)].fg, Color::LightRed);
    }

    #[test]
    fn the_arrow_and_the_footer_follow_the_sort() {
        let mut app = app();
        app.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE));
        app.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE));
        let out = lines(&render(&app, 160, 40));
        assert!(line_with(&out, "STATE").contains("CPU ▼"));
        let footer = out[38..].join("\n");
        assert!(footer.contains("s sort: cpu ▼"), "{footer}");
        assert!(
            footer.contains("refreshed 2026-01-01T00:00:00Z (every 2s)"),
            "{footer}"
        );
        // alice has the CPU sample, so she is first now, and still selected.
        let first = out.iter().position(|l| l.contains("alice")).unwrap();
        let second = out.iter().position(|l| l.contains("bob")).unwrap();
        assert!(first < second);
        assert!(out[first].contains("> alice"));
    }

    #[test]
    fn the_detail_pane_shows_events_and_the_newest_log_lines() {
        let mut app = app();
        let out = lines(&render(&app, 160, 40));
        line_with(&out, "alice: recent events");
        line_with(&out, "loading…");
        app.set_detail(alice_detail());
        let out = lines(&render(&app, 160, 40));
        let event = line_with(&out, "instance.start");
        assert!(event.contains("2026-01-01T00:00:00Z") && event.contains("by cli"));
        assert!(
            out.iter().any(|l| l.contains("log line 30")),
            "the newest line"
        );
        assert!(
            !out.iter().any(|l| l.contains("log line 1 ")),
            "the oldest did not fit"
        );
        // Closed: neither pane.
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        let out = lines(&render(&app, 160, 40));
        assert!(!out.iter().any(|l| l.contains("recent events")));
    }

    #[test]
    fn what_agents_wrote_is_shown_escaped_never_sent_to_the_terminal() {
        let mut app = app();
        app.set_detail(Detail {
            instance: "alice".into(),
            events: Ok(vec![Event {
                id: 1,
                at: 1_767_225_600_000,
                instance: Some("alice".into()),
                actor: "agent".into(),
                kind: "x".into(),
                detail: Some(serde_json::json!({"t": "\u{9b}\u{202e}"})),
            }]),
            logs: Ok(vec!["\u{1b}[2Jwiped\ttab\u{7f}".into()]),
        });
        let out = lines(&render(&app, 160, 40)).join("\n");
        for raw in ['\u{1b}', '\u{9b}', '\u{202e}', '\u{7f}', '\t'] {
            assert!(!out.contains(raw), "{raw:?} reached the screen:\n{out}");
        }
        assert!(out.contains(r#"{"t":"\u{9b}\u{202e}""#), "{out}");
        assert!(out.contains("\\u{1b}[2Jwiped    tab\\u{7f}"), "{out}");
    }

    #[test]
    fn notes_stand_in_for_what_could_not_be_fetched() {
        let mut app = app();
        app.set_detail(Detail {
            instance: "alice".into(),
            events: Ok(vec![]),
            logs: Err("logs unavailable: Docker is unreachable".into()),
        });
        app.set_error("database is locked".into());
        let out = lines(&render(&app, 160, 40));
        assert!(out.iter().any(|l| l.contains("no events")));
        assert!(out
            .iter()
            .any(|l| l.contains("logs unavailable: Docker is unreachable")));
        assert!(
            out[37].contains("refresh failed: database is locked"),
            "{}",
            out[37]
        );
    }

    #[test]
    fn no_instances_says_how_to_create_one_and_no_colour_paints_nothing() {
        let mut app = App::new(report(vec![]), 0, Duration::from_secs(2), false);
        let out = lines(&render(&app, 100, 30));
        assert!(out
            .iter()
            .any(|l| l.contains("supervisor create-instance NAME")));
        app.set_report(report(vec![instance("bob", "crash-loop", None, 0)]), 0);
        let buffer = render(&app, 100, 30);
        let out = lines(&buffer);
        let y = out.iter().position(|l| l.contains("crash-loop")).unwrap();
        let x = column(&out[y], "crash-loop");
        assert_eq!(buffer[(x, y as u16)].fg, Color::Reset);
        // Too narrow for every column: the rightmost go, the others keep their width.
        let head = line_with(&out, "STATE");
        assert!(
            head.contains("LAST ACTIVITY") && !head.contains("TOKENS"),
            "{head}"
        );
    }

    #[test]
    fn at_80_columns_the_reason_whole_events_and_the_action_keys_are_on_screen() {
        let reason = "exited 5 times in a row within 10s of starting (last exit code 1); retrying every 5m; last output: SOUL.md is missing";
        let mut crashing = instance("bob", "crash-loop", None, 0);
        crashing.detail = Some(reason.into());
        let mut app = App::new(report(vec![crashing]), 0, Duration::from_secs(2), false);
        let long = "a detail of far more than twenty characters, ending here: END";
        app.set_detail(Detail {
            instance: "bob".into(),
            events: Ok(vec![Event {
                id: 1,
                at: 0,
                instance: Some("bob".into()),
                actor: "daemon".into(),
                kind: "instance.crash-loop".into(),
                detail: Some(serde_json::json!({ "reason": long })),
            }]),
            logs: Ok(vec!["SOUL.md is missing".into()]),
        });
        let out = lines(&render(&app, 80, 24));
        let screen = out.join("\n");
        assert!(out.iter().all(|l| l.chars().count() == 80));
        // The reason, wrapped, all of it.
        let joined: String = out
            .iter()
            .map(|l| l.trim_end())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.contains("bob: crash-loop — exited 5 times"),
            "{screen}"
        );
        assert!(joined.contains("SOUL.md is missing"), "{screen}");
        // The event, wrapped within its pane, to its end; the events above the logs.
        assert!(screen.contains("instance.crash-loop"), "{screen}");
        assert!(screen.contains("END"), "the detail is not cut:\n{screen}");
        let events = out
            .iter()
            .position(|l| l.contains("recent events"))
            .unwrap();
        let logs = out
            .iter()
            .position(|l| l.contains("last log lines"))
            .unwrap();
        assert!(events < logs, "{screen}");
        // The keys for the selected instance.
        for key in ["U start", "X stop", "R restart", "l follow logs", "q quit"] {
            assert!(screen.contains(key), "{key} is not shown:\n{screen}");
        }
    }

    #[test]
    fn the_outcome_of_a_command_and_the_home_in_hints() {
        let mut app = app();
        app.set_home(std::path::Path::new("/srv/h"));
        app.set_message("restarting alice".into());
        let mut r = app.report().clone();
        r.daemon.running = false;
        app.set_report(r, 0);
        let out = lines(&render(&app, 160, 40));
        assert!(
            out[0].contains("DOWN (start it with `supervisor --home /srv/h run`)"),
            "{}",
            out[0]
        );
        assert!(out.iter().any(|l| l.starts_with("restarting alice")));
    }

    #[test]
    fn the_detail_pane_shows_each_channel_and_marks_a_fault() {
        use crate::app::status::ChannelState;
        let mut app = app();
        let alice = app
            .report()
            .instances
            .iter()
            .position(|i| i.name == "alice")
            .unwrap();
        let mut r = app.report().clone();
        r.instances[alice].channels = vec![
            ChannelState {
                channel: "telegram".into(),
                state: "error".into(),
                backlog: 0,
                detail: Some("the Bot API refused the token (HTTP 401)".into()),
            },
            ChannelState {
                channel: "webhook".into(),
                state: "ok".into(),
                backlog: 2,
                detail: None,
            },
        ];
        app.set_report(r, 0);
        app.set_detail(alice_detail());
        let buffer = render(&app, 160, 40);
        let out = lines(&buffer);
        let tg = line_with(&out, "telegram: error");
        assert!(
            tg.starts_with("! telegram: error — the Bot API refused the token (HTTP 401)"),
            "{tg}"
        );
        let wh = line_with(&out, "webhook: ok");
        assert!(wh.starts_with("  webhook: ok, backlog 2"), "{wh}");
        let y = out
            .iter()
            .position(|l| l.contains("telegram: error"))
            .unwrap();
        let x = column(&out[y], "error");
        assert_eq!(buffer[(x, y as u16)].fg, Color::LightRed);
        // The events pane is still there, below.
        line_with(&out, "instance.start");
        // Closed: no channel lines (the table has the instance's state).
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        let out = lines(&render(&app, 160, 40));
        assert!(!out.iter().any(|l| l.contains("telegram: error")));
    }

    /// alice with three groups: two running, one crash-looping.
    fn grouped(colour: bool) -> App {
        let groups = vec![
            instance("alice_5e0b71c2", "running", Some(1.5), 42),
            instance("alice_77aa0001", "crash-loop", None, 0),
            instance("alice_9f00ab12", "running", Some(0.2), 7),
        ];
        let alice = with_groups(instance("alice", "running", Some(0.3), 5120), groups);
        App::new(
            report(vec![alice, instance("bob", "idle", None, 0)]),
            0,
            Duration::from_secs(2),
            colour,
        )
    }

    fn press(app: &mut App, code: KeyCode) {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    #[test]
    fn an_instance_shows_its_group_counts_and_a_failing_one_stands_out() {
        let buffer = render(&grouped(true), 160, 40);
        let out = lines(&buffer);
        let head = line_with(&out, "STATE");
        assert!(head.contains("STATE    GROUPS"), "after the state: {head}");
        let alice = line_with(&out, "> alice");
        assert!(
            alice.contains("▸ 2▶ 1!"),
            "no idle count when none: {alice}"
        );
        assert!(!out.iter().any(|l| l.contains("alice_")), "collapsed");
        let y = out.iter().position(|l| l.contains("> alice")).unwrap();
        let x = column(&out[y], "1!");
        assert_eq!(buffer[(x, y as u16)].fg, Color::LightRed);
        let x = column(&out[y], "2▶");
        assert_eq!(buffer[(x, y as u16)].fg, Color::LightGreen);
        let footer = out[36..].join("\n");
        assert!(footer.contains("→← groups"), "{footer}");
        // Without colour the failing count is bold, still set apart.
        let buffer = render(&grouped(false), 160, 40);
        let x = column(&out[y], "1!");
        assert_eq!(buffer[(x, y as u16)].fg, Color::Reset);
        assert!(buffer[(x, y as u16)].modifier.contains(Modifier::BOLD));
        // A home without groups has no such column, nor the key.
        let out = lines(&render(&app(), 160, 40));
        assert!(!line_with(&out, "STATE").contains("GROUPS"));
        assert!(!out.join("\n").contains("→← groups"));
    }

    #[test]
    fn expanded_groups_are_indented_rows_with_every_column_and_collapse_hides_them() {
        let mut app = grouped(true);
        press(&mut app, KeyCode::Right);
        let buffer = render(&app, 160, 40);
        let out = lines(&buffer);
        assert!(line_with(&out, "> alice").contains("▾ 2▶ 1!"), "open");
        let at = |name: &str| out.iter().position(|l| l.contains(name)).unwrap();
        let (alice, bob) = (at("> alice "), at(" bob "));
        let first = at("├ alice_5e0b71c2");
        let failing = at("├ alice_77aa0001");
        let last = at("└ alice_9f00ab12");
        assert_eq!(
            [alice + 1, alice + 2, alice + 3, bob],
            [first, failing, last, alice + 4]
        );
        for cell in ["running", "1.5%", "42"] {
            assert!(out[first].contains(cell), "{cell} missing: {}", out[first]);
        }
        // A group's state is painted as an instance's.
        let x = column(&out[failing], "crash-loop");
        assert_eq!(buffer[(x, failing as u16)].fg, Color::LightRed);
        press(&mut app, KeyCode::Left);
        let out = lines(&render(&app, 160, 40));
        assert!(!out.iter().any(|l| l.contains("alice_")), "shut again");
        assert!(line_with(&out, "> alice").contains("▸ 2▶ 1!"));
    }

    #[test]
    fn a_selected_group_row_is_highlighted_and_its_detail_shown() {
        let mut app = grouped(true);
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        assert_eq!(app.detail_wanted(), Some("alice_77aa0001"));
        app.set_detail(Detail {
            instance: "alice_77aa0001".into(),
            events: Ok(vec![]),
            logs: Ok(vec!["group log line".into()]),
        });
        let buffer = render(&app, 160, 40);
        let out = lines(&buffer);
        let y = out
            .iter()
            .position(|l| l.contains(">  ├ alice_77aa0001"))
            .unwrap_or_else(|| panic!("not selected:\n{}", out.join("\n")));
        let x = column(&out[y], "alice_77aa0001");
        assert!(buffer[(x, y as u16)].modifier.contains(Modifier::REVERSED));
        line_with(&out, "alice_77aa0001: crash-loop");
        line_with(&out, "alice_77aa0001: last log lines");
        line_with(&out, "group log line");
        let footer = out[36..].join("\n");
        assert!(footer.contains("on alice_77aa0001:"), "{footer}");
    }

    #[test]
    fn footer_items_are_packed_never_split() {
        let items: Vec<String> = ["aaaa", "bbb", "cc"].map(String::from).to_vec();
        assert_eq!(pack(&items, 9), ["aaaa  bbb", "cc"]);
        assert_eq!(pack(&items, 3), ["aaaa", "bbb", "cc"]);
    }

    #[test]
    fn a_small_terminal_does_not_panic() {
        let mut app = app();
        app.set_detail(alice_detail());
        for (w, h) in [(1, 1), (20, 5), (40, 12)] {
            render(&app, w, h);
        }
    }
}
