//! The text of the service files, from the templates in templates/service/. No I/O here.
//!
//! The templates hold two kinds of marks: `@NAME@` is replaced by a value (escaped for the
//! file's syntax), and a line starting `@cond@` is kept, without the mark, only when the
//! condition holds (`system`, `user`, `run_as`). Values are never scanned again, so a path
//! containing `@` is safe.

use std::path::Path;
use std::time::Duration;

use super::{Scope, ServiceError, ENV_FILE, LAUNCHD_LOG};

const SYSTEMD_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/service/supervisor.service"
));
const LAUNCHD_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/service/supervisor.plist"
));

/// Beyond the containers' own stop timeout, what a graceful stop may take (finishing a pass,
/// closing the socket) before the service manager kills the daemon.
const STOP_MARGIN: Duration = Duration::from_secs(30);

/// A systemd unit that runs `<exe> --home <home> run`.
#[derive(Debug, Clone)]
pub struct SystemdUnit<'a> {
    /// Absolute: systemd runs nothing from a search path here.
    pub exe: &'a Path,
    /// Absolute.
    pub home: &'a Path,
    pub scope: Scope,
    /// `User=` of a system unit (None: root). Ignored for user units.
    pub run_as: Option<&'a str>,
    /// `daemon.stop_timeout`: with `on_shutdown = "stop"` a graceful stop waits that long for
    /// the containers.
    pub stop_timeout: Duration,
    /// The daemon mounts instances' disk images (root, hard disk limits): their mounts must be
    /// in the host's mount namespace, so a system unit then has no file-system sandboxing.
    pub disk_images: bool,
}

/// A launchd agent that runs `<exe> --home <home> run`.
#[derive(Debug, Clone)]
pub struct LaunchdAgent<'a> {
    pub label: &'a str,
    pub exe: &'a Path,
    pub home: &'a Path,
    pub stop_timeout: Duration,
}

/// How long the service manager lets a graceful stop take.
pub fn stop_grace(stop_timeout: Duration) -> u64 {
    (stop_timeout + STOP_MARGIN).as_secs()
}

pub fn systemd_unit(unit: &SystemdUnit) -> Result<String, ServiceError> {
    let exe = text("the executable path", unit.exe, "systemd unit")?;
    let home = text("the home path", unit.home, "systemd unit")?;
    let env_file = unit.home.join(ENV_FILE);
    let env_file = text("the environment file path", &env_file, "systemd unit")?;
    let system = unit.scope == Scope::System;
    let run_as = unit.run_as.filter(|_| system);
    // Only root mounts images; a system unit with User= runs its limits soft.
    let images = system && run_as.is_none() && unit.disk_images;
    if let Some(user) = run_as {
        check_user_name(user)?;
    }
    let exec_start = format!(
        "{} --home {} run",
        systemd_exec_word("the executable path", exe)?,
        systemd_exec_word("the home path", home)?
    );
    let vars = [
        ("EXEC_START", exec_start),
        ("RUN_AS", run_as.unwrap_or_default().replace('%', "%%")),
        ("ENV_FILE", systemd_path_value("the home path", env_file)?),
        ("READ_WRITE", systemd_path_word("the home path", home)?),
        (
            "TIMEOUT_STOP",
            format!("{}s", stop_grace(unit.stop_timeout)),
        ),
        ("WANTED_BY", unit.scope.wanted_by().to_string()),
        (
            "SYSTEMCTL_SCOPE",
            if system { "" } else { "--user " }.to_string(),
        ),
    ];
    Ok(fill(
        SYSTEMD_TEMPLATE,
        |cond| match cond {
            "system" => system,
            "user" => !system,
            "run_as" => run_as.is_some(),
            "fs_sandbox" => system && !images,
            "disk_images" => images,
            "private_tmp" => system && !images && !under_tmp(unit.home) && !under_tmp(unit.exe),
            _ => unreachable!("unknown condition @{cond}@ in the systemd template"),
        },
        &vars,
    ))
}

pub fn launchd_plist(agent: &LaunchdAgent) -> Result<String, ServiceError> {
    let xml = |what, path: &Path| {
        text(what, path, "launchd property list").and_then(|s| xml_escape(what, s))
    };
    let vars = [
        ("LABEL", xml_escape("the label", agent.label)?),
        ("EXE", xml("the executable path", agent.exe)?),
        ("HOME", xml("the home path", agent.home)?),
        ("LOG", xml("the home path", &agent.home.join(LAUNCHD_LOG))?),
        ("TIMEOUT_STOP", stop_grace(agent.stop_timeout).to_string()),
    ];
    Ok(fill(
        LAUNCHD_TEMPLATE,
        |cond| unreachable!("unknown condition @{cond}@ in the launchd template"),
        &vars,
    ))
}

/// Keeps the lines whose condition holds, then replaces each `@NAME@` of the template.
fn fill(template: &str, keep: impl Fn(&str) -> bool, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    for line in template.split_inclusive('\n') {
        let line = match condition(line) {
            Some((cond, rest)) if keep(cond) => rest,
            Some(_) => continue,
            None => line,
        };
        let mut rest = line;
        while let Some(start) = rest.find('@') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(after.len());
            let value = (name_len > 0 && after[name_len..].starts_with('@'))
                .then(|| vars.iter().find(|(n, _)| *n == &after[..name_len]))
                .flatten();
            match value {
                Some((_, value)) => {
                    out.push_str(value);
                    rest = &after[name_len + 1..];
                }
                None => {
                    out.push('@');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
    }
    out
}

/// Whether PrivateTmp= would hide `path` (the service gets empty /tmp and /var/tmp of its
/// own).
fn under_tmp(path: &Path) -> bool {
    path.starts_with("/tmp") || path.starts_with("/var/tmp")
}

/// `@cond@rest` → (`cond`, `rest`), for a lower-case condition name.
fn condition(line: &str) -> Option<(&str, &str)> {
    let after = line.strip_prefix('@')?;
    let end = after.find('@')?;
    let cond = &after[..end];
    (!cond.is_empty() && cond.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .then(|| (cond, &after[end + 1..]))
}

/// The path as UTF-8 with no control character (a newline would end the unit's line, and
/// XML 1.0 cannot carry most of them).
fn text<'p>(
    what: &'static str,
    path: &'p Path,
    format: &'static str,
) -> Result<&'p str, ServiceError> {
    let fail = |reason| ServiceError::Unrepresentable {
        what,
        value: path.display().to_string(),
        format,
        reason,
    };
    let s = path.to_str().ok_or_else(|| fail("is not valid UTF-8"))?;
    if s.chars().any(char::is_control) {
        return Err(fail("contains a control character"));
    }
    Ok(s)
}

/// Quotes and backslashes cannot be written faithfully into every setting that holds the
/// home (ReadWritePaths= keeps backslash escapes as they are), so such paths are refused
/// rather than written in a way systemd would read differently.
fn systemd_safe<'s>(what: &'static str, s: &'s str) -> Result<&'s str, ServiceError> {
    if s.contains(['"', '\\']) {
        return Err(ServiceError::Unrepresentable {
            what,
            value: s.to_string(),
            format: "systemd unit",
            reason: "contains a double quote or a backslash",
        });
    }
    Ok(s)
}

/// One word of ExecStart=: double-quoted (spaces stay in the word), `%` doubled (specifiers
/// are expanded there) and `$` doubled (so are environment variables).
fn systemd_exec_word(what: &'static str, s: &str) -> Result<String, ServiceError> {
    let s = systemd_safe(what, s)?;
    Ok(format!("\"{}\"", s.replace('%', "%%").replace('$', "$$")))
}

/// One path in a list setting such as ReadWritePaths=: quoted, specifiers escaped (no
/// environment variables are expanded there).
fn systemd_path_word(what: &'static str, s: &str) -> Result<String, ServiceError> {
    let s = systemd_safe(what, s)?;
    Ok(format!("\"{}\"", s.replace('%', "%%")))
}

/// A setting whose whole value is one path, such as EnvironmentFile=: systemd takes it as
/// written (quotes would become part of the path), only expanding specifiers.
fn systemd_path_value(what: &'static str, s: &str) -> Result<String, ServiceError> {
    let s = systemd_safe(what, s)?;
    Ok(s.replace('%', "%%"))
}

/// systemd accepts names of letters, digits, `_`, `.` and `-` (or a numeric uid).
fn check_user_name(user: &str) -> Result<(), ServiceError> {
    let ok = !user.is_empty()
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Unrepresentable {
            what: "the user name",
            value: user.to_string(),
            format: "systemd unit",
            reason: "is not a name systemd accepts in User=",
        })
    }
}

fn xml_escape(what: &'static str, s: &str) -> Result<String, ServiceError> {
    if s.chars().any(char::is_control) {
        return Err(ServiceError::Unrepresentable {
            what,
            value: s.to_string(),
            format: "launchd property list",
            reason: "contains a control character",
        });
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(exe: &str, home: &str, scope: Scope, run_as: Option<&str>) -> String {
        systemd_unit(&SystemdUnit {
            exe: Path::new(exe),
            home: Path::new(home),
            scope,
            run_as,
            stop_timeout: Duration::from_secs(10),
            disk_images: false,
        })
        .unwrap()
    }

    /// The value of the one line `key=…` (panics when there is none, or several).
    fn setting<'u>(unit: &'u str, key: &str) -> &'u str {
        let prefix = format!("{key}=");
        let found: Vec<_> = unit
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect();
        assert_eq!(found.len(), 1, "{key}= in\n{unit}");
        found[0]
    }

    /// The section a `key=` line is in.
    fn section_of<'u>(unit: &'u str, key: &str) -> &'u str {
        let mut section = "";
        for line in unit.lines() {
            if line.starts_with('[') {
                section = line;
            } else if line.starts_with(&format!("{key}=")) {
                return section;
            }
        }
        panic!("no {key}= in\n{unit}")
    }

    #[test]
    fn user_unit_runs_the_daemon_under_notify_with_the_watchdog() {
        let u = unit(
            "/usr/local/bin/supervisor",
            "/home/ann/.local/share/supervisor",
            Scope::User,
            Some("ann"),
        );
        assert_eq!(
            setting(&u, "ExecStart"),
            r#""/usr/local/bin/supervisor" --home "/home/ann/.local/share/supervisor" run"#
        );
        for (key, value) in [
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            ("WatchdogSec", "30s"),
            ("Restart", "on-failure"),
            ("RestartSec", "2s"),
            ("KillMode", "mixed"),
            ("TimeoutStopSec", "40s"),
            ("UMask", "0077"),
            ("NoNewPrivileges", "yes"),
            ("LockPersonality", "yes"),
            ("RestrictRealtime", "yes"),
            ("RestrictSUIDSGID", "yes"),
            ("SystemCallArchitectures", "native"),
            (
                "EnvironmentFile",
                "-/home/ann/.local/share/supervisor/supervisor.env",
            ),
            ("WantedBy", "default.target"),
        ] {
            assert_eq!(setting(&u, key), value, "{key}");
        }
        for key in ["StartLimitIntervalSec", "StartLimitBurst", "Description"] {
            assert_eq!(section_of(&u, key), "[Unit]", "{key}");
        }
        assert_eq!(section_of(&u, "ExecStart"), "[Service]");
        assert_eq!(section_of(&u, "WantedBy"), "[Install]");
        // No namespacing in a user unit, no User= (the user manager runs it as its user), no
        // ordering against system units it cannot see.
        for absent in [
            "ProtectSystem=",
            "ReadWritePaths=",
            "PrivateTmp=",
            "User=",
            "After=",
        ] {
            assert!(
                !u.lines().any(|l| l.starts_with(absent)),
                "{absent} in\n{u}"
            );
        }
        assert!(u.contains("systemctl --user edit supervisor"));
        assert!(!u.contains('@'), "a mark was left:\n{u}");
    }

    #[test]
    fn system_unit_is_sandboxed_but_keeps_the_home_writable() {
        let u = unit(
            "/usr/local/bin/supervisor",
            "/srv/supervisor",
            Scope::System,
            Some("svc"),
        );
        for (key, value) in [
            ("User", "svc"),
            ("ProtectSystem", "strict"),
            ("ReadWritePaths", "\"/srv/supervisor\""),
            ("ProtectHome", "read-only"),
            ("PrivateTmp", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectControlGroups", "yes"),
            ("NoNewPrivileges", "yes"),
            ("WantedBy", "multi-user.target"),
            ("After", "network-online.target docker.service"),
            ("Wants", "network-online.target"),
        ] {
            assert_eq!(setting(&u, key), value, "{key}");
        }
        assert!(u.contains("`systemctl edit supervisor`"));
        // A home or program under /tmp would vanish behind a private /tmp.
        for (exe, home) in [
            ("/usr/bin/supervisor", "/tmp/s"),
            ("/var/tmp/b/supervisor", "/srv/s"),
        ] {
            let u = unit(exe, home, Scope::System, None);
            assert!(!u.lines().any(|l| l.starts_with("PrivateTmp=")), "{u}");
            assert_eq!(setting(&u, "ProtectSystem"), "strict");
        }
        // Path prefixes count whole components.
        let u = unit("/usr/bin/supervisor", "/tmpfoo", Scope::System, None);
        assert_eq!(setting(&u, "PrivateTmp"), "yes");
        assert!(!u.contains('@'), "a mark was left:\n{u}");
        // Root's unit has no User= line at all.
        let root = unit("/usr/bin/supervisor", "/srv/s", Scope::System, None);
        assert!(!root.lines().any(|l| l.starts_with("User=")), "{root}");
    }

    #[test]
    fn paths_with_spaces_and_specials_are_escaped_for_systemd() {
        let u = unit(
            "/opt/my tools/supervisor",
            "/srv/agents 100% $HOME's",
            Scope::System,
            None,
        );
        assert_eq!(
            setting(&u, "ExecStart"),
            r#""/opt/my tools/supervisor" --home "/srv/agents 100%% $$HOME's" run"#
        );
        assert_eq!(
            setting(&u, "ReadWritePaths"),
            r#""/srv/agents 100%% $HOME's""#
        );
        assert_eq!(
            setting(&u, "EnvironmentFile"),
            "-/srv/agents 100%% $HOME's/supervisor.env"
        );
    }

    #[test]
    fn paths_systemd_cannot_carry_are_refused() {
        for home in ["/srv/a\"b", "/srv/a\\b", "/srv/a\nb"] {
            let err = systemd_unit(&SystemdUnit {
                exe: Path::new("/usr/bin/supervisor"),
                home: Path::new(home),
                scope: Scope::User,
                run_as: None,
                stop_timeout: Duration::from_secs(10),
                disk_images: false,
            })
            .unwrap_err();
            assert!(
                matches!(err, ServiceError::Unrepresentable { .. }),
                "{home:?}: {err}"
            );
        }
        let err = systemd_unit(&SystemdUnit {
            exe: Path::new("/usr/bin/supervisor"),
            home: Path::new("/srv/s"),
            scope: Scope::System,
            run_as: Some("a b"),
            stop_timeout: Duration::from_secs(10),
            disk_images: false,
        })
        .unwrap_err();
        assert!(err.to_string().contains("User="), "{err}");
    }

    #[test]
    fn the_stop_timeout_follows_the_containers_stop_timeout() {
        let u = systemd_unit(&SystemdUnit {
            exe: Path::new("/usr/bin/supervisor"),
            home: Path::new("/srv/s"),
            scope: Scope::System,
            run_as: None,
            stop_timeout: Duration::from_secs(600),
            disk_images: false,
        })
        .unwrap();
        assert_eq!(setting(&u, "TimeoutStopSec"), "630s");
    }

    #[test]
    fn a_root_unit_that_mounts_disk_images_has_no_mount_namespace() {
        let with = |run_as, disk_images| {
            systemd_unit(&SystemdUnit {
                exe: Path::new("/usr/bin/supervisor"),
                home: Path::new("/srv/s"),
                scope: Scope::System,
                run_as,
                stop_timeout: Duration::from_secs(10),
                disk_images,
            })
            .unwrap()
        };
        let namespacing = [
            "ProtectSystem=",
            "ReadWritePaths=",
            "ProtectHome=",
            "PrivateTmp=",
            "ProtectKernelTunables=",
            "ProtectKernelModules=",
            "ProtectControlGroups=",
        ];
        let root = with(None, true);
        for key in namespacing {
            assert!(
                !root.lines().any(|l| l.starts_with(key)),
                "{key} in\n{root}"
            );
        }
        assert!(root.contains("invisible to the Docker engine"), "{root}");
        assert_eq!(setting(&root, "NoNewPrivileges"), "yes");
        assert!(!root.contains('@'), "a mark was left:\n{root}");
        // A unit with User= cannot mount: its limits are soft and its sandbox stays.
        let user = with(Some("svc"), true);
        assert_eq!(setting(&user, "ProtectSystem"), "strict");
        let soft = with(None, false);
        assert_eq!(setting(&soft, "ProtectSystem"), "strict");
    }

    fn plist(exe: &str, home: &str) -> String {
        launchd_plist(&LaunchdAgent {
            label: "io.supervisor.3f9c02ab",
            exe: Path::new(exe),
            home: Path::new(home),
            stop_timeout: Duration::from_secs(10),
        })
        .unwrap()
    }

    #[test]
    fn launchd_agent_keeps_the_daemon_alive() {
        let p = plist("/usr/local/bin/supervisor", "/Users/ann/Library/supervisor");
        let squeezed: String = p.split_whitespace().collect();
        for part in [
            "<key>Label</key><string>io.supervisor.3f9c02ab</string>",
            concat!(
                "<key>ProgramArguments</key><array><string>/usr/local/bin/supervisor</string>",
                "<string>--home</string><string>/Users/ann/Library/supervisor</string>",
                "<string>run</string></array>"
            ),
            "<key>RunAtLoad</key><true/>",
            "<key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>",
            "<key>ThrottleInterval</key><integer>10</integer>",
            "<key>ExitTimeOut</key><integer>40</integer>",
            concat!(
                "<key>StandardErrorPath</key>",
                "<string>/Users/ann/Library/supervisor/logs/daemon.log</string>"
            ),
        ] {
            assert!(squeezed.contains(part), "{part} in\n{p}");
        }
        assert!(!p.contains('@'), "a mark was left:\n{p}");
    }

    #[test]
    fn launchd_values_are_xml_escaped() {
        let p = plist(
            "/Applications/A & B/supervisor",
            "/Users/ann/<agents> \"x\" 'y'",
        );
        assert!(
            p.contains("<string>/Applications/A &amp; B/supervisor</string>"),
            "{p}"
        );
        assert!(
            p.contains("<string>/Users/ann/&lt;agents&gt; &quot;x&quot; &apos;y&apos;</string>"),
            "{p}"
        );
        assert!(!p.contains("A & B"), "{p}");
        let err = launchd_plist(&LaunchdAgent {
            label: "io.supervisor.x",
            exe: Path::new("/usr/bin/supervisor"),
            home: Path::new("/Users/a\u{1}b"),
            stop_timeout: Duration::from_secs(10),
        })
        .unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
    }

    #[test]
    fn fill_replaces_known_marks_only_and_never_rescans_values() {
        let out = fill(
            "@on@a=@X@\n@off@b\nc=@Y@ @lower@ me@host\n",
            |c| c == "on",
            &[("X", "@Y@".to_string()), ("Y", "1".to_string())],
        );
        assert_eq!(out, "a=@Y@\nc=1 @lower@ me@host\n");
    }
}
