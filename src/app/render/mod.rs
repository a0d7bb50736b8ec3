//! Pure rendering: records in, text out. No I/O here, so every view is unit-testable.

pub mod events;
pub mod status;
pub mod tasks;

use std::path::Path;

use comfy_table::{presets::NOTHING, Table};
use serde::Serialize;

use crate::domain::instance::InstanceConfig;
use crate::infra::home::InstancePaths;
use crate::infra::store::events::Event;
use crate::infra::store::instances::{InstanceCounts, InstanceRecord};

pub use crate::domain::format::{bytes, timestamp};

/// One instance as `list` shows it; the JSON form is a documented, stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceSummary {
    pub name: String,
    pub soul: String,
    pub model: Option<String>,
    pub lifecycle: Option<String>,
    pub port: Option<u16>,
    pub network: Option<String>,
    pub desired_state: String,
    pub state: String,
    pub state_detail: Option<String>,
    pub restart_count: i64,
    pub last_exit_code: Option<i64>,
    pub created_at: String,
    pub dir: String,
    pub config_error: Option<String>,
}

impl InstanceSummary {
    pub fn new(rec: InstanceRecord, dir: &Path, config: Result<InstanceConfig, String>) -> Self {
        let (cfg, config_error) = match config {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            model: cfg.as_ref().map(|c| c.model.spec()),
            lifecycle: cfg.as_ref().map(|c| c.lifecycle.mode.as_str().to_string()),
            port: cfg.as_ref().and_then(|c| c.port),
            network: cfg.as_ref().map(|c| c.network.as_str().to_string()),
            name: rec.name,
            soul: rec.soul,
            desired_state: rec.desired_state.to_string(),
            state: rec.state.to_string(),
            state_detail: rec.state_detail,
            restart_count: rec.restart_count,
            last_exit_code: rec.last_exit_code,
            created_at: timestamp(rec.created_at),
            dir: dir.display().to_string(),
            config_error,
        }
    }
}

/// An instance's disk as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskView {
    /// `limits.disk` as configured.
    pub limit: String,
    /// "hard" (its own disk image) or "soft" (measured; stopped past it).
    pub enforcement: String,
    pub used_bytes: Option<u64>,
    pub used_inodes: Option<u64>,
    /// Why it could not be measured, or why the limit is soft.
    pub note: Option<String>,
}

/// Everything `show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceDetail {
    #[serde(flatten)]
    pub summary: InstanceSummary,
    pub soul_title: Option<String>,
    /// Why the persona's title could not be read (SOUL.md is not a regular file, ...).
    pub soul_problem: Option<String>,
    /// The uid the instance's container runs as and its files belong to.
    pub uid: u32,
    pub disk: Option<DiskView>,
    pub paths: InstancePaths,
    pub config: Option<InstanceConfig>,
    pub counts: InstanceCounts,
    pub recent_events: Vec<Event>,
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

pub fn instance_table(rows: &[InstanceSummary]) -> String {
    if rows.is_empty() {
        return "no instances (create one with `supervisor create-instance NAME`)\n".to_string();
    }
    let mut table = Table::new();
    table.load_style(NOTHING).set_header([
        "NAME",
        "SOUL",
        "MODEL",
        "LIFECYCLE",
        "PORT",
        "DESIRED",
        "STATE",
        "CREATED",
    ]);
    for r in rows {
        let model = match &r.config_error {
            Some(_) => "(config error)".to_string(),
            None => or_dash(r.model.as_deref()),
        };
        table.add_row([
            r.name.clone(),
            r.soul.clone(),
            model,
            or_dash(r.lifecycle.as_deref()),
            or_dash(r.port),
            r.desired_state.clone(),
            r.state.clone(),
            r.created_at.clone(),
        ]);
    }
    flush_left(table)
}

/// "12.3 MB and 31 inodes used of 1g (hard: its own disk image)".
fn disk_line(d: &DiskView) -> String {
    let used = match (d.used_bytes, d.used_inodes) {
        (Some(b), Some(i)) => format!("{} and {i} inodes used of ", crate::app::render::bytes(b)),
        _ => String::new(),
    };
    let how = match d.enforcement.as_str() {
        "hard" => "hard: its own disk image".to_string(),
        other => match &d.note {
            Some(n) => format!("{other}: {n}"),
            None => other.to_string(),
        },
    };
    let mut line = format!("{used}{} ({how})", d.limit);
    if let (Some(n), "hard") = (&d.note, d.enforcement.as_str()) {
        line.push_str(&format!("; {n}"));
    }
    line
}

pub fn instance_detail(d: &InstanceDetail) -> String {
    let s = &d.summary;
    let mut lines: Vec<(&str, String)> = vec![
        ("name", s.name.clone()),
        (
            "state",
            format!(
                "{} (desired: {}){}",
                s.state,
                s.desired_state,
                s.state_detail
                    .as_ref()
                    .map(|x| format!(" — {x}"))
                    .unwrap_or_default()
            ),
        ),
        (
            "soul",
            match (&d.soul_title, &d.soul_problem) {
                (Some(t), _) => format!("{} — {t}", s.soul),
                (None, Some(p)) => format!("{} (SOUL.md {p})", s.soul),
                (None, None) => s.soul.clone(),
            },
        ),
    ];
    match (&d.config, &s.config_error) {
        (Some(c), _) => {
            lines.push(("model", c.model.spec()));
            if let Some(url) = &c.model.base_url {
                lines.push(("base url", url.clone()));
            }
            if let Some(env) = &c.model.api_key_env {
                lines.push(("api key from", format!("${env} (host environment)")));
            }
            lines.push((
                "lifecycle",
                match c.lifecycle.mode {
                    crate::domain::instance::config::LifecycleMode::OnDemand => {
                        format!("on-demand (idle timeout {})", c.lifecycle.idle_timeout)
                    }
                    m => m.as_str().to_string(),
                },
            ));
            lines.push(("port", or_dash(c.port)));
            lines.push(("network", c.network.as_str().to_string()));
            lines.push((
                "limits",
                format!(
                    "memory {}, cpus {}, pids {}, /tmp {}, disk {}",
                    c.limits.memory, c.limits.cpus, c.limits.pids, c.limits.tmp, c.limits.disk
                ),
            ));
            lines.push(("trigger", or_dash(c.trigger.as_deref())));
            lines.push(("allow from", c.allow_from.join(", ")));
        }
        (None, Some(e)) => lines.push(("config", format!("INVALID: {e}"))),
        (None, None) => {}
    }
    if let Some(disk) = &d.disk {
        lines.push(("disk", disk_line(disk)));
    }
    lines.push(("uid", d.uid.to_string()));
    lines.push(("restarts", s.restart_count.to_string()));
    lines.push(("created", s.created_at.clone()));
    lines.push(("directory", s.dir.clone()));
    lines.push(("config file", d.paths.config.display().to_string()));
    lines.push(("workspace", d.paths.workspace.display().to_string()));
    lines.push(("ipc", d.paths.ipc.display().to_string()));
    lines.push((
        "history",
        format!("{} messages, {} tasks", d.counts.messages, d.counts.tasks),
    ));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    // Every value on one line, whatever it holds: the soul's title comes from the
    // agent-writable SOUL.md, the state detail quotes the container's last output.
    for (k, v) in lines {
        out.push_str(&format!(
            "{:<width$} {}\n",
            format!("{k}:"),
            crate::domain::escape::line(&v)
        ));
    }
    if !d.recent_events.is_empty() {
        out.push_str("recent events:\n");
        for e in &d.recent_events {
            out.push_str(&format!(
                "  {}  {:<18} by {}\n",
                timestamp(e.at),
                crate::domain::escape::line(&e.kind),
                crate::domain::escape::line(&e.actor)
            ));
        }
    }
    out
}

pub fn runtime_table(rows: &[crate::infra::runtime::RuntimeView]) -> String {
    if rows.is_empty() {
        return "no runtimes (build one with `supervisor runtime build`)\n".to_string();
    }
    let mut table = Table::new();
    table.load_style(NOTHING).set_header([
        "ID", "STATUS", "AGENT", "TOOLBOX", "SIZE", "USED BY", "BUILT",
    ]);
    for r in rows {
        let mut status = Vec::new();
        if r.active {
            status.push("active");
        }
        if r.rollback_target {
            status.push("rollback");
        }
        if !r.on_disk {
            status.push("missing");
        }
        if !r.registered {
            status.push("unregistered");
        }
        table.add_row([
            r.id.clone(),
            if status.is_empty() {
                "-".into()
            } else {
                status.join(",")
            },
            or_dash(r.agent_version.as_deref()),
            if r.toolbox.is_some() {
                "busybox".into()
            } else {
                "-".to_string()
            },
            or_dash(r.size_bytes.map(bytes)),
            if r.used_by.is_empty() {
                "-".into()
            } else {
                r.used_by.join(",")
            },
            or_dash(r.built_at.map(timestamp)),
        ]);
    }
    flush_left(table)
}

/// One roll-out step as `runtime activate` prints it while following a roll-out. A
/// failure's reason may quote the container's last output, so it is escaped.
pub fn rollout_step(step: &crate::infra::store::rollouts::RolloutStep) -> String {
    let what = match step.state.as_str() {
        "moving" => "moving: recreated, waiting for its agent".to_string(),
        "ready" => step.detail.clone().unwrap_or_else(|| "ready".into()),
        _ => format!(
            "put back on the previous runtime: {}",
            step.detail.as_deref().unwrap_or("no reason recorded")
        ),
    };
    format!(
        "  {:<20} {}",
        step.instance,
        crate::domain::escape::line(&what)
    )
}

/// The latest roll-out, as `runtime rollout` shows it.
pub fn rollout(r: &crate::infra::store::rollouts::Rollout) -> String {
    let mut out = format!(
        "roll-out of runtime {} (from {}), started {}: {}\n",
        r.runtime_id,
        r.previous_id,
        timestamp(r.activated_at),
        r.state
    );
    if let Some(detail) = &r.detail {
        out += &format!("  reason: {}\n", crate::domain::escape::line(detail));
    }
    if r.steps.is_empty() {
        out += "  no instance moved\n";
    }
    for step in &r.steps {
        out += &rollout_step(step);
        out.push('\n');
    }
    out
}

/// comfy-table pads the first column with a space; the CLI wants flush-left columns.
pub(crate) fn flush_left(table: Table) -> String {
    let mut out = table
        .to_string()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> InstanceRecord {
        InstanceRecord {
            created_at: 1_767_225_600_000,
            desired_state: crate::domain::instance::state::DesiredState::Stopped,
            ..crate::infra::store::instances::test_record(name, "stopped")
        }
    }

    #[test]
    fn table_has_a_row_per_instance() {
        let rows = vec![
            InstanceSummary::new(
                record("alice"),
                Path::new("/h/alice"),
                Ok(InstanceConfig::default()),
            ),
            InstanceSummary::new(record("bob"), Path::new("/h/bob"), Err("broken".into())),
        ];
        let out = instance_table(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].starts_with("alice") && lines[1].contains("echo/echo"));
        assert!(lines[2].contains("(config error)"));
        assert!(lines[1].contains("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn show_escapes_the_soul_title_and_the_state_detail() {
        let mut rec = record("alice");
        rec.state_detail = Some("last output: \u{1b}]0;pwned\u{7} | \u{9b}2J".into());
        let home = crate::infra::home::Home::new(Path::new("/h")).unwrap();
        let name = crate::domain::instance::InstanceName::parse("alice").unwrap();
        let detail = InstanceDetail {
            summary: InstanceSummary::new(
                rec,
                Path::new("/h/alice"),
                Ok(InstanceConfig::default()),
            ),
            soul_title: Some("Helper\u{202e}txt.exe".into()),
            soul_problem: None,
            uid: 16_777_217,
            disk: None,
            paths: home.instance_paths(&name),
            config: Some(InstanceConfig::default()),
            counts: InstanceCounts {
                messages: 0,
                tasks: 0,
            },
            recent_events: vec![],
        };
        let out = instance_detail(&detail);
        for raw in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
            assert!(!out.contains(raw), "{raw:?} in\n{out}");
        }
        assert!(out.contains("\\u{1b}]0;pwned\\u{7} | \\u{9b}2J"), "{out}");
        assert!(out.contains("Helper\\u{202e}txt.exe"), "{out}");
    }

    #[test]
    fn a_rollouts_reasons_are_escaped() {
        use crate::infra::store::rollouts::{Rollout, RolloutStep};
        let quoted = "crash-loop on runtime new: last output: \u{1b}[2J\u{9b}H";
        let r = Rollout {
            activation_id: 2,
            runtime_id: "new".into(),
            previous_id: "old".into(),
            state: "failed".into(),
            activated_at: 0,
            detail: Some(quoted.into()),
            steps: vec![RolloutStep {
                instance: "alice".into(),
                state: "reverted".into(),
                started_at: 0,
                finished_at: Some(1),
                detail: Some(quoted.into()),
            }],
        };
        let out = rollout(&r);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{9b}'),
            "{out:?}"
        );
        assert_eq!(
            out.matches("last output: \\u{1b}[2J\\u{9b}H").count(),
            2,
            "{out}"
        );
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(106), "106 B");
        assert_eq!(bytes(1_362_440), "1.4 MB");
        assert_eq!(bytes(15_000_000_000), "15.0 GB");
    }

    #[test]
    fn empty_table_says_how_to_start() {
        assert!(instance_table(&[]).contains("create-instance"));
    }
}
