//! Running the daemon as a service: `service install|uninstall|status` on real files (with a
//! stand-in `systemctl` where one must run), `systemd-analyze verify` on the units when it is
//! installed, and the daemon's sd_notify messages (READY, WATCHDOG, STOPPING) to a real
//! notify socket, as systemd would receive them.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, mode, TestHome};

const LONG: Duration = Duration::from_secs(60);

/// `supervisor --home <home> <args>`, run by `exe` with extra environment.
fn run_with(exe: &Path, home: &Path, args: &[&str], env: &[(&str, &str)]) -> common::Run {
    let mut cmd = Command::new(exe);
    cmd.env_remove("SUPERVISOR_HOME")
        .env("NO_COLOR", "1")
        .arg("--home")
        .arg(home)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run supervisor");
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The value of the one `key=` line of a unit.
fn setting(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    let found: Vec<_> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    assert_eq!(found.len(), 1, "one {key}= in\n{unit}");
    found[0].to_string()
}

/// `systemd-analyze verify` on a unit file, when the tool is installed: it must accept the
/// file without a single warning about it (warnings do not change its exit code).
fn verify_if_possible(unit: &Path) {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    else {
        eprintln!("note: systemd-analyze is not on PATH; the unit was not verified by systemd");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = unit.file_name().unwrap().to_str().unwrap();
    let about_unit: Vec<_> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify {}: {}\n{stderr}",
        unit.display(),
        out.status
    );
}

/// This test binary's supervisor, reachable through a path with a space (a hard link, or a
/// copy across file systems), so ExecStart= must quote it.
fn exe_with_space(dir: &Path) -> PathBuf {
    let dir = dir.join("my bin");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("supervisor");
    let original = env!("CARGO_BIN_EXE_supervisor");
    if std::fs::hard_link(original, &exe).is_err() {
        std::fs::copy(original, &exe).unwrap();
    }
    exe
}

#[test]
fn install_writes_a_user_unit_once_refuses_a_different_one_and_uninstall_removes_it() {
    let tmp = TestHome::new();
    let exe = exe_with_space(tmp.scratch());
    let home = tmp.scratch().join("agent home");
    let units = tmp.scratch().join("unit dir");
    let unit_path = units.join("supervisor.service");
    let unit_dir = units.to_str().unwrap();
    let install = ["service", "install", "--user", "--unit-dir", unit_dir];
    // Where --user puts completions and manual pages without --share-dir.
    let share = tmp.scratch().join("xdg data");
    let xdg = [("XDG_DATA_HOME", share.to_str().unwrap())];

    let out = run_with(&exe, &home, &install, &xdg).ok();
    assert!(
        out.stdout.contains(&format!(
            "wrote shell completions (bash, zsh, fish) and manual pages under {}",
            share.display()
        )),
        "{}",
        out.stdout
    );
    let companions = [
        "bash-completion/completions/supervisor",
        "zsh/site-functions/_supervisor",
        "fish/vendor_completions.d/supervisor.fish",
        "man/man1/supervisor.1",
        "man/man1/supervisor-service-install.1",
    ];
    for file in companions {
        let path = share.join(file);
        assert_eq!(mode(&path), 0o644, "{file}");
        assert_eq!(mode(path.parent().unwrap()), 0o755, "{file}");
    }
    let bash = std::fs::read_to_string(share.join(companions[0])).unwrap();
    assert!(bash.contains("complete -F _supervisor"), "{bash}");
    assert!(
        out.stdout
            .contains(&format!("wrote {}", unit_path.display())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "next: systemctl --user daemon-reload && systemctl --user enable --now supervisor"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("supervisor.env (mode 0600)"),
        "{}",
        out.stdout
    );
    assert!(
        home.join("supervisor.db").is_file(),
        "install initialises the home"
    );

    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let home_abs = std::fs::canonicalize(&home).unwrap();
    assert_eq!(
        setting(&unit, "ExecStart"),
        format!(
            "\"{}\" --home \"{}\" run",
            exe.display(),
            home_abs.display()
        )
    );
    assert_eq!(setting(&unit, "Type"), "notify");
    assert_eq!(setting(&unit, "WatchdogSec"), "30s");
    assert_eq!(setting(&unit, "WantedBy"), "default.target");
    assert_eq!(
        setting(&unit, "EnvironmentFile"),
        format!("-{}/supervisor.env", home_abs.display())
    );
    assert_eq!(mode(&unit_path), 0o644);
    verify_if_possible(&unit_path);

    // Installing again changes nothing.
    let out = run_with(&exe, &home, &install, &xdg).ok();
    assert!(out.stdout.contains("unchanged:"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), unit);

    let status = run_with(
        &exe,
        &home,
        &["service", "status", "--user", "--unit-dir", unit_dir],
        &[],
    )
    .ok();
    assert!(status.stdout.contains("(installed)"), "{}", status.stdout);
    assert!(!status.stdout.contains("differs"), "{}", status.stdout);

    // A unit written by someone else is not overwritten without --force.
    std::fs::write(&unit_path, "[Service]\nExecStart=/bin/true\n").unwrap();
    run_with(&exe, &home, &install, &xdg).fails(1, "--force");
    assert_eq!(
        std::fs::read_to_string(&unit_path).unwrap(),
        "[Service]\nExecStart=/bin/true\n"
    );
    let status = run_with(
        &exe,
        &home,
        &["service", "status", "--user", "--unit-dir", unit_dir],
        &[],
    )
    .ok();
    assert!(status.stdout.contains("differs"), "{}", status.stdout);
    let forced: Vec<&str> = install.iter().copied().chain(["--force"]).collect();
    let out = run_with(&exe, &home, &forced, &xdg).ok();
    assert!(out.stdout.contains("replaced"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), unit);

    // As `systemctl --user enable` would have left it: uninstall removes that link too.
    let wants = units.join("default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&unit_path, wants.join("supervisor.service")).unwrap();
    let uninstall = ["service", "uninstall", "--user", "--unit-dir", unit_dir];
    let out = run_with(&exe, &home, &uninstall, &xdg).ok();
    assert!(
        out.stdout
            .contains(&format!("removed {}", unit_path.display())),
        "{}",
        out.stdout
    );
    assert!(!unit_path.exists());
    for file in companions {
        assert!(!share.join(file).exists(), "{file} is removed");
    }
    assert!(
        out.stdout
            .contains("shell completion and manual page files under"),
        "{}",
        out.stdout
    );
    assert!(std::fs::symlink_metadata(wants.join("supervisor.service")).is_err());
    let out = run_with(&exe, &home, &uninstall, &xdg).ok();
    assert!(out.stdout.contains("nothing to remove"), "{}", out.stdout);
    let status = run_with(
        &exe,
        &home,
        &["service", "status", "--user", "--unit-dir", unit_dir],
        &[],
    )
    .ok();
    assert!(
        status.stdout.contains("(not installed)"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_system_unit_is_sandboxed_around_the_home_and_runs_as_its_owner() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    let units = h.scratch().join("system units");
    let unit_dir = units.to_str().unwrap();
    let unit_path = units.join("supervisor.service");
    let home_abs = std::fs::canonicalize(&h.root).unwrap();
    let me = nix::unistd::geteuid();
    // Owned by another user, when this test may arrange that (it runs as root).
    let owner = if me.is_root() {
        nix::unistd::chown(&h.root, Some(nix::unistd::Uid::from_raw(54321)), None).unwrap();
        Some("54321".to_string())
    } else {
        nix::unistd::User::from_uid(me).unwrap().map(|u| u.name)
    };
    let share = h.scratch().join("share");
    let share_dir = share.to_str().unwrap();
    h.run(&[
        "service",
        "install",
        "--unit-dir",
        unit_dir,
        "--share-dir",
        share_dir,
    ])
    .ok();
    assert!(share.join("man/man1/supervisor.1").is_file());
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert_eq!(
        setting(&unit, "ReadWritePaths"),
        format!("\"{}\"", home_abs.display())
    );
    assert_eq!(setting(&unit, "ProtectSystem"), "strict");
    assert_eq!(setting(&unit, "ProtectHome"), "read-only");
    assert_eq!(setting(&unit, "WantedBy"), "multi-user.target");
    if let Some(owner) = owner {
        assert_eq!(setting(&unit, "User"), owner);
    }
    // The test's home is under /tmp: a private /tmp would hide it.
    assert!(
        !unit.lines().any(|l| l.starts_with("PrivateTmp=")),
        "{unit}"
    );
    verify_if_possible(&unit_path);
}

/// A stand-in `systemctl` that records its arguments, and fails when `FAKE_FAIL` is set.
fn fake_systemctl(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin_dir = dir.join("fake-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let log = dir.join("systemctl.log");
    let script = bin_dir.join("systemctl");
    std::fs::write(
        &script,
        format!(
            concat!(
                "#!/bin/sh\n",
                "echo \"$*\" >> '{}'\n",
                "if [ -n \"$FAKE_FAIL\" ]; then echo 'Failed to connect to bus' >&2; exit 1; fi\n",
            ),
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin_dir, log)
}

#[test]
fn now_runs_systemctl_and_reports_its_failures() {
    let h = TestHome::new();
    let (fake_bin, log) = fake_systemctl(h.scratch());
    let path = fake_bin.to_str().unwrap();
    let units = h.scratch().join("units");
    let unit_dir = units.to_str().unwrap();
    let share = h.scratch().join("share");
    let share_dir = share.to_str().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_supervisor"));
    let install = [
        "service",
        "install",
        "--user",
        "--unit-dir",
        unit_dir,
        "--share-dir",
        share_dir,
        "--now",
    ];

    let failed = run_with(
        exe,
        &h.root,
        &install,
        &[("PATH", path), ("FAKE_FAIL", "1")],
    )
    .fails(1, "`systemctl --user daemon-reload` failed");
    assert!(
        failed.stderr.contains("Failed to connect to bus"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("the unit is written"),
        "{}",
        failed.stderr
    );
    assert!(units.join("supervisor.service").is_file());
    std::fs::remove_file(&log).unwrap();

    let out = run_with(exe, &h.root, &install, &[("PATH", path)]).ok();
    assert!(out.stdout.contains("started:"), "{}", out.stdout);
    let uninstall = [
        "service",
        "uninstall",
        "--user",
        "--unit-dir",
        unit_dir,
        "--share-dir",
        share_dir,
        "--now",
    ];
    run_with(exe, &h.root, &uninstall, &[("PATH", path)]).ok();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "--user daemon-reload\n--user enable --now supervisor\n\
         --user disable --now supervisor\n--user daemon-reload\n"
    );
    assert!(!units.join("supervisor.service").exists());
}

#[test]
fn status_answers_without_systemctl() {
    let h = TestHome::new();
    let empty = h.scratch().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let units = h.scratch().join("units");
    let out = run_with(
        Path::new(env!("CARGO_BIN_EXE_supervisor")),
        &h.root,
        &[
            "service",
            "status",
            "--user",
            "--unit-dir",
            units.to_str().unwrap(),
        ],
        &[("PATH", empty.to_str().unwrap())],
    )
    .ok();
    assert!(out.stdout.contains("(not installed)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("unknown (systemctl cannot be run"),
        "{}",
        out.stdout
    );
    assert!(!h.root.exists(), "status does not create the home");

    let out = run_with(
        Path::new(env!("CARGO_BIN_EXE_supervisor")),
        &h.root,
        &[
            "service",
            "status",
            "--user",
            "--unit-dir",
            units.to_str().unwrap(),
            "--json",
        ],
        &[("PATH", empty.to_str().unwrap())],
    )
    .ok();
    let report = out.json();
    assert_eq!(
        report["unit"],
        units.join("supervisor.service").to_str().unwrap()
    );
    assert_eq!(report["installed"], false);
    assert!(report["up_to_date"].is_null());
    assert!(report["service"]
        .as_str()
        .unwrap()
        .starts_with("unknown (systemctl cannot be run"));
    assert_eq!(report["query"], "systemctl --user is-active supervisor");
}

/// `supervisor run` as a child, killed if the test ends early.
struct DaemonChild(Child);

impl Drop for DaemonChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Receives notify datagrams until one satisfies `want`; every message seen is kept in
/// `seen`. Fails if the daemon exits or `LONG` passes first.
fn receive_until(
    sock: &UnixDatagram,
    daemon: &mut DaemonChild,
    log: &Path,
    seen: &mut Vec<String>,
    what: &str,
    want: impl Fn(&[String]) -> bool,
) {
    let end = Instant::now() + LONG;
    let mut buf = vec![0u8; 4096];
    while !want(seen) {
        let daemon_log = || std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            Instant::now() < end,
            "no {what} within {LONG:?}; received {seen:?}; daemon log:\n{}",
            daemon_log()
        );
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}) before {what}; received {seen:?}; log:\n{}",
                daemon_log()
            );
        }
        match sock.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("receiving on the notify socket: {e}"),
        }
    }
}

fn count(seen: &[String], line: &str) -> usize {
    seen.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

#[test]
fn the_daemon_tells_systemd_it_is_ready_alive_and_stopping() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    let socket = h.scratch().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = h.scratch().join("daemon.log");
    let mut daemon = DaemonChild(
        bin()
            .arg("--home")
            .arg(&h.root)
            .arg("run")
            .env("NOTIFY_SOCKET", &socket)
            // A 2 s watchdog: a ping every second.
            .env("WATCHDOG_USEC", "2000000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut seen = Vec::new();

    receive_until(&sock, &mut daemon, &log, &mut seen, "READY=1", |s| {
        count(s, "READY=1") > 0
    });
    let ready = seen
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap();
    assert!(ready.contains("STATUS=running"), "{ready:?}");
    // READY comes once the socket is bound, so the CLI can already reach the daemon.
    assert!(h.path("run/supervisor.sock").exists());
    assert_eq!(count(&seen, "STOPPING=1"), 0);

    let pings_before = count(&seen, "WATCHDOG=1");
    receive_until(&sock, &mut daemon, &log, &mut seen, "two WATCHDOG=1", |s| {
        count(s, "WATCHDOG=1") >= pings_before + 2
    });
    assert_eq!(count(&seen, "READY=1"), 1, "READY=1 is said once: {seen:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    receive_until(&sock, &mut daemon, &log, &mut seen, "STOPPING=1", |s| {
        count(s, "STOPPING=1") > 0
    });
    let end = Instant::now() + LONG;
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < end,
            "the daemon did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
