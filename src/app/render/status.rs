//! The `status` view: a header for the daemon, engine, runtime and database, then one row
//! per instance.

use comfy_table::{presets::NOTHING, Cell, Color, Table};

use super::bytes;
use crate::app::status::StatusReport;
use crate::domain::instance::state::InstanceState;

/// The instance table's columns, shared by the text view and the dashboard.
pub(crate) const COLUMNS: [&str; 12] = [
    "NAME",
    "STATE",
    "HEALTH",
    "UPTIME",
    "RESTARTS",
    "CPU",
    "MEMORY",
    "DISK",
    "QUEUED",
    "LAST ACTIVITY",
    "NEXT TASK",
    "TOKENS TODAY",
];

/// `1d 2h`, `3h 4m`, `5m 6s`, `7s`.
pub fn duration(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub(crate) fn state_colour(state: InstanceState) -> Option<Color> {
    match state {
        InstanceState::Running => Some(Color::Green),
        InstanceState::Starting | InstanceState::Restarting | InstanceState::Queued => {
            Some(Color::Yellow)
        }
        InstanceState::CrashLoop | InstanceState::Error => Some(Color::Red),
        InstanceState::Idle | InstanceState::Stopped => None,
    }
}

/// A channel's state colour: red for a fault, yellow while it starts or is not running.
pub(crate) fn channel_colour(state: &str) -> Option<Color> {
    match state {
        "ok" => Some(Color::Green),
        "failing" | "error" => Some(Color::Red),
        "starting" | crate::app::channels::health::NOT_RUNNING => Some(Color::Yellow),
        _ => None,
    }
}

/// What follows a channel's state: its backlog when answers wait, and what is wrong.
pub(crate) fn channel_note(c: &crate::app::status::ChannelState) -> String {
    let mut out = String::new();
    if c.backlog > 0 {
        out.push_str(&format!(", backlog {}", c.backlog));
    }
    if let Some(d) = c.detail.as_deref().filter(|d| !d.trim().is_empty()) {
        out.push_str(&format!(" — {}", crate::domain::escape::line(d)));
    }
    out
}

/// Each instance's channels, one line each under the table (escaped: a detail can quote
/// what the other side answered). A fault is marked, in colour or not.
fn channels(r: &StatusReport, colour: bool) -> String {
    let mut out = String::new();
    for i in &r.instances {
        for c in &i.channels {
            let state = match (colour, channel_colour(&c.state)) {
                (true, Some(fg)) => paint(&c.state, fg),
                _ => c.state.clone(),
            };
            let mark = if c.is_fault() { "! " } else { "  " };
            out.push_str(&format!(
                "{mark}{} {}: {state}{}\n",
                i.name,
                c.channel,
                channel_note(c)
            ));
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("\nchannels\n{out}")
    }
}

/// Each instance's chat groups, counted, one line per instance that has any.
fn groups(r: &StatusReport) -> String {
    let mut out = String::new();
    for i in r.instances.iter().filter(|i| !i.group_counts.is_empty()) {
        let c = i.group_counts;
        let mark = if c.failing > 0 { "! " } else { "  " };
        out.push_str(&format!(
            "{mark}{}: {} running, {} idle, {} failing (supervisor groups {})\n",
            i.name, c.running, c.idle, c.failing, i.name
        ));
    }
    if out.is_empty() {
        out
    } else {
        format!("\ngroups\n{out}")
    }
}

/// `text` in `fg`, as a terminal draws it (only the colours [`channel_colour`] gives).
fn paint(text: &str, fg: Color) -> String {
    let code = match fg {
        Color::Red => 31,
        Color::Green => 32,
        Color::Yellow => 33,
        _ => return text.to_string(),
    };
    format!("\u{1b}[{code}m{text}\u{1b}[0m")
}

/// Where the state is among [`COLUMNS`].
pub(crate) const STATE_COLUMN: usize = 1;

/// Where the text view puts its NODE column (a swarm's only), right after the name.
const NODE_COLUMN: usize = 1;

/// One instance's cells, in [`COLUMNS`] order: the text view's and the dashboard's.
pub(crate) fn row_cells(i: &crate::app::status::InstanceStatus) -> [String; 12] {
    let dash = || "-".to_string();
    let memory = match (i.memory_bytes, i.memory_limit_bytes) {
        // The limit as the config spells it (`512m`), the use as measured.
        (Some(used), Some(limit)) if limit > 0 => format!(
            "{} / {}",
            bytes(used),
            crate::domain::instance::config::format_size(limit)
        ),
        (Some(used), _) => bytes(used),
        _ => dash(),
    };
    // The limit in the units the config uses (`1g`), the use as measured.
    let disk = match (i.disk_bytes, i.disk_limit_bytes) {
        (Some(used), Some(limit)) => {
            format!(
                "{} / {}",
                bytes(used),
                crate::domain::instance::config::format_size(limit)
            )
        }
        (Some(used), None) => bytes(used),
        _ => dash(),
    };
    [
        i.name.clone(),
        i.state.to_string(),
        i.health.clone(),
        i.uptime_secs.map(duration).unwrap_or_else(dash),
        i.restarts.to_string(),
        i.cpu_percent
            .map(|c| format!("{c:.1}%"))
            .unwrap_or_else(dash),
        memory,
        disk,
        i.queued.to_string(),
        i.last_activity.clone().unwrap_or_else(dash),
        i.next_task.clone().unwrap_or_else(dash),
        i.tokens_today.to_string(),
    ]
}

/// The isolation line of the header.
fn isolation(i: &crate::app::status::Isolation) -> String {
    let uids = if i.uid_per_instance {
        "one uid per instance"
    } else {
        "every instance runs as the supervisor's own uid (it is not root)"
    };
    let disk = match (i.disk_limits.as_str(), &i.disk_why_not_hard) {
        ("hard", _) => "disk limits hard (a disk image per instance)".to_string(),
        ("unavailable", Some(why)) => {
            format!("disk limits UNAVAILABLE ([disk] enforce = \"hard\", but {why})")
        }
        (kind, Some(why)) => format!("disk limits {kind}: {why}"),
        (kind, None) => format!("disk limits {kind}"),
    };
    format!("{uids}; {disk}")
}

/// The reasons for the instances' states, one line each under the table (escaped: a detail
/// can carry an agent's output).
fn details(r: &StatusReport) -> String {
    let mut out = String::new();
    for i in &r.instances {
        if let Some(detail) = i.detail.as_deref().filter(|d| !d.trim().is_empty()) {
            out.push_str(&format!(
                "  {} ({}): {}\n",
                i.name,
                i.state,
                crate::domain::escape::line(detail)
            ));
        }
        if let Some(m) = &i.messaging {
            out.push_str(&format!(
                "  {} ({}): its messaging restarted {} time{}, last at {}: {}\n",
                i.name,
                i.state,
                m.restarts,
                if m.restarts == 1 { "" } else { "s" },
                crate::domain::format::timestamp(m.last_failure_at),
                crate::domain::escape::line(&m.last_failure)
            ));
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("\ndetails\n{out}")
    }
}

/// The report as text for the home at `home`; `colour` paints states (off when piped or with
/// NO_COLOR).
pub fn status_text(r: &StatusReport, home: &std::path::Path, colour: bool) -> String {
    let mut out = String::new();
    let d = &r.daemon;
    out.push_str(&match (d.running, d.pid, d.uptime_secs) {
        (true, Some(pid), Some(up)) => format!(
            "daemon    up, pid {pid}, uptime {}, version {}\n",
            duration(up),
            d.version.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "daemon    DOWN (start it with `supervisor --home {} run`); states below are from the store and Docker\n",
            home.display()
        ),
    });
    out.push_str(&format!(
        "docker    {}\n",
        match (r.docker.reachable, &r.docker.version) {
            (true, Some(v)) => format!("reachable, engine {v}"),
            (true, None) => "reachable".into(),
            (false, _) => "UNREACHABLE".into(),
        }
    ));
    out.push_str(&format!(
        "runtime   {}\n",
        r.runtime
            .as_deref()
            .unwrap_or("none active (`supervisor runtime build --activate`)")
    ));
    out.push_str(&format!(
        "database  {} ({})\n",
        bytes(r.database.bytes),
        r.database.path
    ));
    out.push_str(&format!("isolation {}\n\n", isolation(&r.isolation)));
    if r.instances.is_empty() {
        out.push_str("no instances (create one with `supervisor create-instance NAME`)\n");
        return out;
    }
    let mut table = Table::new();
    table.load_style(NOTHING);
    if colour {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    // On a swarm, where each instance runs, after its name.
    let with_node = r.instances.iter().any(|i| i.node.is_some());
    let mut header: Vec<&str> = COLUMNS.to_vec();
    if with_node {
        header.insert(NODE_COLUMN, "NODE");
    }
    table.set_header(header);
    for i in &r.instances {
        let mut cells: Vec<Cell> = row_cells(i)
            .into_iter()
            .enumerate()
            .map(|(c, text)| {
                let cell = Cell::new(text);
                match (c, colour, state_colour(i.state)) {
                    (STATE_COLUMN, true, Some(fg)) => cell.fg(fg),
                    _ => cell,
                }
            })
            .collect();
        if with_node {
            cells.insert(
                NODE_COLUMN,
                Cell::new(i.node.clone().unwrap_or_else(|| "-".to_string())),
            );
        }
        table.add_row(cells);
    }
    out.push_str(&table.to_string());
    out.push('\n');
    out.push_str(&channels(r, colour));
    out.push_str(&groups(r));
    out.push_str(&details(r));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::status::{DaemonStatus, DatabaseStatus, DockerStatus, InstanceStatus};

    fn report(daemon_up: bool) -> StatusReport {
        StatusReport {
            daemon: DaemonStatus {
                running: daemon_up,
                pid: daemon_up.then_some(42),
                version: daemon_up.then(|| "0.1.0".into()),
                uptime_secs: daemon_up.then_some(3725),
            },
            docker: DockerStatus {
                reachable: true,
                version: Some("20.10.24".into()),
                source: "daemon".into(),
            },
            runtime: Some("rt-abc".into()),
            database: DatabaseStatus {
                path: "/h/supervisor.db".into(),
                bytes: 2 << 20,
            },
            isolation: crate::app::status::Isolation {
                uid_per_instance: false,
                disk_limits: "soft".into(),
                disk_why_not_hard: Some("the supervisor does not run as root".into()),
            },
            instances: vec![InstanceStatus {
                name: "alice".into(),
                state: InstanceState::CrashLoop,
                desired: crate::domain::instance::state::DesiredState::Running,
                health: "failing".into(),
                detail: Some("exited 5 times; last output: \u{1b}[2Jboom\nagain".into()),
                uptime_secs: None,
                restarts: 5,
                cpu_percent: Some(1.25),
                memory_bytes: Some(3 << 20),
                memory_limit_bytes: Some(512 << 20),
                queued: 2,
                last_activity: None,
                next_task: None,
                tokens_today: 120,
                disk_bytes: Some(12 << 20),
                disk_limit_bytes: Some(1 << 30),
                messaging: None,
                channels: vec![],
                node: None,
                group_counts: Default::default(),
                groups: vec![],
            }],
        }
    }

    #[test]
    fn memory_in_the_configs_units_and_the_reasons_under_the_table() {
        let text = status_text(&report(true), std::path::Path::new("/h"), false);
        assert!(text.contains("3.1 MB / 512m"), "{text}");
        assert!(!text.contains("536.9 MB"), "{text}");
        let details = text.split("\ndetails\n").nth(1).expect("a details section");
        assert_eq!(
            details,
            "  alice (crash-loop): exited 5 times; last output: \\u{1b}[2Jboom\\u{a}again\n",
            "one line, escaped"
        );
    }

    #[test]
    fn a_restarted_messaging_actor_is_shown_under_the_table() {
        let mut r = report(true);
        r.instances[0].detail = None;
        r.instances[0].messaging = Some(crate::app::wire::ActorHealth {
            restarts: 2,
            last_failure: "cannot open the store".into(),
            last_failure_at: 1_795_305_600_000,
        });
        let text = status_text(&r, std::path::Path::new("/h"), false);
        let details = text.split("\ndetails\n").nth(1).expect("a details section");
        assert_eq!(
            details,
            "  alice (crash-loop): its messaging restarted 2 times, last at 2026-11-22T00:00:00Z: cannot open the store\n"
        );
        let json = serde_json::to_value(&r.instances[0]).unwrap();
        assert_eq!(json["messaging"]["restarts"], 2);
    }

    #[test]
    fn each_channel_has_a_line_with_its_backlog_and_a_fault_is_marked() {
        use crate::app::status::ChannelState;
        let mut r = report(true);
        r.instances[0].detail = None;
        let plain = status_text(&r, std::path::Path::new("/h"), false);
        assert!(
            !plain.contains("channels"),
            "no channels, no section: {plain}"
        );
        r.instances[0].channels = vec![
            ChannelState {
                channel: "telegram".into(),
                state: "ok".into(),
                backlog: 0,
                detail: None,
            },
            ChannelState {
                channel: "webhook".into(),
                state: "failing".into(),
                backlog: 3,
                detail: Some("HTTP 503\nfrom the receiver".into()),
            },
        ];
        let plain = status_text(&r, std::path::Path::new("/h"), false);
        let section = plain
            .split("\nchannels\n")
            .nth(1)
            .expect("a channels section");
        assert_eq!(
            section,
            "  alice telegram: ok\n! alice webhook: failing, backlog 3 — HTTP 503\\u{a}from the receiver\n"
        );
        let painted = status_text(&r, std::path::Path::new("/h"), true);
        assert!(painted.contains("\u{1b}[31mfailing\u{1b}[0m"), "{painted}");
        assert!(painted.contains("\u{1b}[32mok\u{1b}[0m"), "{painted}");
    }

    #[test]
    fn an_instances_groups_are_counted_under_the_table() {
        let mut r = report(true);
        let plain = status_text(&r, std::path::Path::new("/h"), false);
        assert!(!plain.contains("\ngroups\n"), "{plain}");
        r.instances[0].group_counts = crate::app::status::GroupCounts {
            running: 2,
            idle: 40,
            failing: 1,
        };
        let plain = status_text(&r, std::path::Path::new("/h"), false);
        let section = plain.split("\ngroups\n").nth(1).expect("a groups section");
        assert!(
            section
                .starts_with("! alice: 2 running, 40 idle, 1 failing (supervisor groups alice)\n"),
            "{section}"
        );
    }

    #[test]
    fn a_node_column_only_on_a_swarm() {
        let mut r = report(true);
        r.instances[0].detail = None;
        let plain = status_text(&r, std::path::Path::new("/h"), false);
        assert!(!plain.contains("NODE"), "{plain}");
        let mut bob = r.instances[0].clone();
        bob.name = "bob".into();
        bob.state = InstanceState::Stopped;
        r.instances[0].node = Some("worker-1".into());
        r.instances.push(bob);
        let painted = status_text(&r, std::path::Path::new("/h"), true);
        assert!(painted.contains("worker-1"), "{painted}");
        let plain = status_text(&r, std::path::Path::new("/h"), false);
        let rows: Vec<Vec<&str>> = plain
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("NAME"))
            .take(3)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0][..4], ["NAME", "NODE", "STATE", "HEALTH"], "{plain}");
        assert_eq!(rows[1][..3], ["alice", "worker-1", "crash-loop"], "{plain}");
        assert_eq!(rows[2][..3], ["bob", "-", "stopped"], "{plain}");
        let json = serde_json::to_value(&r.instances).unwrap();
        assert_eq!(json[0]["node"], "worker-1");
        assert!(json[1].get("node").is_none(), "left out: {}", json[1]);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(306), "5m 6s");
        assert_eq!(duration(3725), "1h 2m");
        assert_eq!(duration(93_600), "1d 2h");
    }

    #[test]
    fn colour_only_when_asked() {
        let home = std::path::Path::new("/srv/my home");
        let plain = status_text(&report(true), home, false);
        assert!(!plain.contains('\u{1b}'), "{plain}");
        assert!(
            plain.starts_with("daemon    up, pid 42, uptime 1h 2m, version 0.1.0\n"),
            "{plain}"
        );
        assert!(plain.contains("engine 20.10.24"));
        assert!(plain.contains("1.2%") || plain.contains("1.3%"), "{plain}");
        assert!(
            plain.contains("12.6 MB / 1g") || plain.contains("12 MiB / 1g"),
            "{plain}"
        );
        assert!(
            plain.contains("isolation every instance runs as the supervisor's own uid (it is not root); disk limits soft: the supervisor does not run as root"),
            "{plain}"
        );
        let painted = status_text(&report(true), home, true);
        assert!(painted.contains('\u{1b}'), "a crash-loop is painted");
        let down = status_text(&report(false), home, false);
        assert!(
            down.starts_with("daemon    DOWN (start it with `supervisor --home /srv/my home run`)"),
            "{down}"
        );
    }
}
