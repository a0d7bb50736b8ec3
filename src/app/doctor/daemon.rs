//! The daemon row: whether a daemon runs on the home, and whether the API token it really
//! uses (it reads its token once, when it starts, and reports it by fingerprint) is the one
//! doctor finds where the daemon would read it now.

use crate::app::daemon::api::info::DaemonInfo;

use super::Check;

pub const DAEMON: &str = "daemon";

/// What asking the home's socket gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonFact {
    /// With the instances meant to run (which then do not).
    NotRunning {
        wanted: Vec<String>,
    },
    /// Something answers but could not say what it runs with.
    Unknown {
        reason: String,
    },
    Running(DaemonInfo),
}

/// The token doctor finds where the daemon reads it (its environment, or the environment
/// file the service unit reads): a fingerprint, and where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalToken {
    pub fingerprint: Option<String>,
    /// "in the environment", "in /h/supervisor.env", or "in the environment nor in …".
    pub source: String,
}

pub fn daemon(fact: &DaemonFact, local: &LocalToken, root: &str) -> Check {
    let info = match fact {
        DaemonFact::NotRunning { wanted } if wanted.is_empty() => {
            return Check::ok(
                DAEMON,
                format!(
                    "no daemon is running on {root}, and no instance is meant to run (start one with `supervisor --home {root} run`)"
                ),
            )
        }
        DaemonFact::NotRunning { wanted } => {
            return Check::warn(
                DAEMON,
                format!(
                    "no daemon is running on {root}: {} meant to run, and not running ({})",
                    if wanted.len() == 1 { "1 instance is".to_string() } else { format!("{} instances are", wanted.len()) },
                    wanted.join(", ")
                ),
                format!("supervisor --home {root} run (or `supervisor --home {root} service install`)"),
            )
        }
        DaemonFact::Unknown { reason } => {
            return Check::warn(
                DAEMON,
                format!("a daemon answers on {root} but does not say what it runs with: {reason}"),
                "restart the daemon with this version of supervisor",
            )
        }
        DaemonFact::Running(info) => info,
    };
    let running = format!("running (pid {}, supervisor {})", info.pid, info.version);
    let ours = env!("CARGO_PKG_VERSION");
    if info.version != ours {
        return Check::warn(
            DAEMON,
            format!("{running}, but this is supervisor {ours}"),
            "restart the daemon so that it runs this version",
        );
    }
    let restart = "restart the daemon: it reads its token only when it starts";
    match (&info.token_fingerprint, &local.fingerprint) {
        (None, None) => Check::ok(DAEMON, format!("{running}; no API token (ports and TCP listener closed)")),
        (Some(theirs), Some(mine)) if theirs == mine => Check::ok(
            DAEMON,
            format!(
                "{running}; its API token ({theirs}) is the one {}{}",
                local.source,
                info.listen
                    .as_ref()
                    .map(|a| format!("; TCP API on {a}"))
                    .unwrap_or_default()
            ),
        ),
        (Some(theirs), Some(mine)) => Check::warn(
            DAEMON,
            format!(
                "{running} with API token {theirs}, but the token {} is {mine}: clients sending that one are refused",
                local.source
            ),
            restart,
        ),
        (Some(theirs), None) => Check::warn(
            DAEMON,
            format!(
                "{running} with API token {theirs}, but there is none {}: once restarted it would have none",
                local.source
            ),
            "put the token back where the daemon reads it (its environment, or <home>/supervisor.env)",
        ),
        (None, Some(mine)) => Check::warn(
            DAEMON,
            format!(
                "{running} without a usable API token, but there is one {} ({mine})",
                local.source
            ),
            restart,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::doctor::Status;

    fn info(token: Option<&str>) -> DaemonFact {
        DaemonFact::Running(DaemonInfo {
            pid: 42,
            version: env!("CARGO_PKG_VERSION").into(),
            home: "/h".into(),
            home_id: "0123".into(),
            listen: Some("127.0.0.1:8787".into()),
            token_fingerprint: token.map(str::to_string),
        })
    }

    fn local(token: Option<&str>) -> LocalToken {
        LocalToken {
            fingerprint: token.map(str::to_string),
            source: "in the environment".into(),
        }
    }

    #[test]
    fn the_daemons_own_token_is_compared_with_the_one_found() {
        let same = daemon(&info(Some("sha256:aaa")), &local(Some("sha256:aaa")), "/h");
        assert_eq!(same.status, Status::Ok, "{}", same.message);
        assert!(same.message.contains("pid 42"), "{}", same.message);
        let other = daemon(&info(Some("sha256:aaa")), &local(Some("sha256:bbb")), "/h");
        assert_eq!(other.status, Status::Warn);
        assert!(
            other.message.contains("sha256:aaa") && other.message.contains("sha256:bbb"),
            "{}",
            other.message
        );
        assert!(other.fix.unwrap().contains("restart the daemon"));
        assert_eq!(daemon(&info(None), &local(None), "/h").status, Status::Ok);
        assert_eq!(
            daemon(&info(None), &local(Some("sha256:b")), "/h").status,
            Status::Warn
        );
        assert_eq!(
            daemon(&info(Some("sha256:a")), &local(None), "/h").status,
            Status::Warn
        );
    }

    #[test]
    fn no_daemon_says_how_to_start_one_on_this_home() {
        let wanted = DaemonFact::NotRunning {
            wanted: vec!["alice".into()],
        };
        let c = daemon(&wanted, &local(None), "/srv/h");
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.message.contains("1 instance is meant to run"),
            "{}",
            c.message
        );
        assert!(c.fix.unwrap().starts_with("supervisor --home /srv/h run"));
        let idle = daemon(
            &DaemonFact::NotRunning { wanted: vec![] },
            &local(None),
            "/srv/h",
        );
        assert_eq!(idle.status, Status::Ok, "nothing is missing");
        assert!(
            idle.message.contains("supervisor --home /srv/h run"),
            "{}",
            idle.message
        );
    }

    #[test]
    fn another_version_is_a_warning() {
        let DaemonFact::Running(mut i) = info(None) else {
            unreachable!()
        };
        i.version = "0.0.0-old".into();
        let c = daemon(&DaemonFact::Running(i), &local(None), "/h");
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.contains("0.0.0-old"), "{}", c.message);
    }
}
