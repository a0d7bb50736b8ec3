//! `supervisor doctor`: checks an installation and says how to fix what it finds.
//!
//! Each check is a small pure function over facts gathered beforehand (`checks.rs`,
//! `hardening.rs`, `perms.rs`), so the judgement is unit-tested without Docker or a real
//! home; `run.rs` and `containers.rs` (what needs the engine) gather the facts and carry out
//! `--fix`, and `render.rs` prints the table.
//! Doctor works with the daemon down and with Docker down: whatever needs the engine then
//! says it could not be checked, and everything else is still checked.

pub mod channels;
pub mod checks;
mod containers;
pub mod daemon;
pub mod egress;
mod facts;
pub mod hardening;
pub mod isolation;
pub mod perms;
pub mod render;
pub mod run;
pub mod same_id;
pub mod swarm;

use serde::Serialize;

pub use run::run;

/// How a check came out. Ordered: the worst status of a report decides its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One row of the report. `status` is the state after doctor ran: a problem `--fix`
/// repaired is `ok` with `fixed` set, and its message says what was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub message: String,
    /// The command or edit that fixes it; None when there is nothing to fix.
    pub fix: Option<String>,
    pub fixed: bool,
}

impl Check {
    pub fn ok(name: &str, message: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, message, None)
    }
    pub fn warn(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, message, Some(fix.into()))
    }
    pub fn fail(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, message, Some(fix.into()))
    }
    fn new(name: &str, status: Status, message: impl Into<String>, fix: Option<String>) -> Self {
        Self {
            name: name.to_string(),
            status,
            // One line each, whatever an underlying error put in its text.
            message: message.into().replace('\n', " "),
            fix,
            fixed: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

/// What `doctor --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub summary: Summary,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                Status::Ok => summary.ok += 1,
                Status::Warn => summary.warn += 1,
                Status::Fail => summary.fail += 1,
            }
        }
        Self { checks, summary }
    }

    /// 0 when every check is ok, 3 with warnings and no failure, 4 with any failure: apart
    /// from 1 (doctor itself could not run) and 2 (a usage error, as for every command).
    pub fn exit_code(&self) -> u8 {
        match self.checks.iter().map(|c| c.status).max() {
            None | Some(Status::Ok) => 0,
            Some(Status::Warn) => 3,
            Some(Status::Fail) => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_decides_the_exit_code() {
        let ok = Check::ok("a", "fine");
        let warn = Check::warn("b", "meh", "do x");
        let fail = Check::fail("c", "bad", "do y");
        assert_eq!(Report::new(vec![]).exit_code(), 0);
        assert_eq!(Report::new(vec![ok.clone()]).exit_code(), 0);
        assert_eq!(Report::new(vec![ok.clone(), warn.clone()]).exit_code(), 3);
        let all = Report::new(vec![fail, ok, warn]);
        assert_eq!(all.exit_code(), 4);
        assert_eq!(
            all.summary,
            Summary {
                ok: 1,
                warn: 1,
                fail: 1
            }
        );
    }

    #[test]
    fn json_shape() {
        let mut c = Check::warn("permissions", "two\nlines", "chmod 700 /x");
        c.fixed = true;
        let v = serde_json::to_value(Report::new(vec![c])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "checks": [{"name": "permissions", "status": "warn", "message": "two lines",
                            "fix": "chmod 700 /x", "fixed": true}],
                "summary": {"ok": 0, "warn": 1, "fail": 0}
            })
        );
    }
}
