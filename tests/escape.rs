//! Escape attempts from inside an instance's container, on the real daemon and engine: two
//! instances (alice and bob) run, the daemon holds a model API key in its environment, and
//! each test runs busybox's shell inside alice's container (as the agent's user, through the
//! engine's exec API) to try one way out. Every attempt must fail for the expected reason,
//! bob must keep answering and the daemon must stay healthy. Each attempt prints one line,
//! `escape: <attempt> → refused: <reason>`.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use common::daemon::{wait_until, with_docker};
use common::sandbox::{
    first_line, Sandbox, ALICE_MEMORY, ALICE_PIDS, ALICE_TMP, BUSYBOX, EXEC_TIMEOUT, KEY, KEY_ENV,
    LONG,
};
use supervisor::infra::docker::exec::{self, ExecOutput};

/// awk doubles a string until it is 1 GiB: real, touched memory, eight times alice's limit.
const ALLOCATE: &str = "awk 'BEGIN { s = \"0123456789abcdef\"; \
     while (length(s) < 1073741824) s = s s; print \"allocated\", length(s) }'";

/// Prints one line of the escape report.
fn report(attempt: &str, outcome: &str) {
    println!("escape: {attempt} → refused: {outcome}");
}

/// Runs an attempt in alice that must fail, with `reason` in its error output; reports it.
#[track_caller]
fn refused(s: &Sandbox, attempt: &str, script: &str, reason: &str) -> ExecOutput {
    let out = s.sh(script);
    assert_ne!(out.exit_code, 0, "{attempt} SUCCEEDED: {out:?}");
    assert!(
        out.stderr.contains(reason),
        "{attempt}: failed, but not with {reason:?}: {out:?}"
    );
    report(attempt, first_line(&out.stderr));
    out
}

#[test]
fn writing_the_runtime_or_the_root_filesystem_is_refused() {
    let s = Sandbox::new();
    for (attempt, script) in [
        (
            "overwrite the agent in /opt/runtime",
            "echo evil > /opt/runtime/bin/supervisor-agent",
        ),
        (
            "create a file in /opt/runtime",
            "echo evil > /opt/runtime/evil",
        ),
        (
            "create a directory in /opt/runtime",
            "mkdir /opt/runtime/evil",
        ),
        (
            "change the mode of /opt/runtime/toolbox/busybox",
            "chmod 777 /opt/runtime/toolbox/busybox",
        ),
        ("create a file in /", "echo evil > /evil"),
        ("create a directory in /", "mkdir /evil"),
        (
            "overwrite /etc/passwd",
            "echo 'root::0:0::/:/bin/sh' > /etc/passwd",
        ),
        ("create a file in /etc", "touch /etc/evil"),
    ] {
        refused(
            &s,
            &format!("write: {attempt}"),
            script,
            "Read-only file system",
        );
    }
    // The runtime is still exactly what was built.
    let runtime = s.h.container_of("alice").unwrap().labels["supervisor.runtime"].clone();
    s.h.home.run(&["runtime", "verify", &runtime]).ok();
    s.bob_answers("after the writes");
}

#[test]
fn another_instances_directories_are_not_there() {
    let s = Sandbox::new();
    let bob_ws = s.h.home.workspace("bob");
    let bob_in = s.h.home.ipc_in("bob");
    let bob_out = s.h.home.ipc_out("bob");
    let soul_before = std::fs::read(bob_ws.join("SOUL.md")).unwrap();

    // alice's own mounts are where they should be, so a missing path below means "not
    // mounted", not "the shell cannot see anything".
    let own = s.sh("ls /workspace/SOUL.md && ls -d /ipc/in /ipc/out");
    assert_eq!(own.exit_code, 0, "{own:?}");

    let host = |p: &std::path::Path| p.display().to_string();
    let targets = [
        ("bob's workspace by its host path", host(&bob_ws)),
        ("bob's IPC in/ by its host path", host(&bob_in)),
        ("bob's IPC out/ by its host path", host(&bob_out)),
        (
            "the instances directory by its host path",
            host(&s.h.home.path("instances")),
        ),
        ("the home by its host path", host(&s.h.home.root)),
        (
            "bob's workspace by a .. walk from /workspace",
            "/workspace/../instances/bob/workspace".into(),
        ),
        (
            "bob's workspace by a long .. walk",
            "/workspace/../../../../instances/bob/workspace".into(),
        ),
        (
            "bob's IPC directory by a .. walk from /ipc",
            "/ipc/../../bob/ipc".into(),
        ),
        ("a sibling of /workspace", "/workspace/../bob".into()),
    ];
    for (what, path) in &targets {
        let out = s.sh(&format!(
            "test -e '{path}' && echo EXISTS; ls '{path}/SOUL.md'; cat '{path}/SOUL.md'; echo evil > '{path}/evil'"
        ));
        assert!(
            !out.stdout.contains("EXISTS"),
            "{what}: {path} exists inside alice: {out:?}"
        );
        assert!(
            out.stderr.contains("No such file or directory"),
            "{what}: {out:?}"
        );
        assert_ne!(out.exit_code, 0, "{what}: the write SUCCEEDED: {out:?}");
        let last = out.stderr.lines().last().unwrap_or("").trim();
        report(
            &format!("read/write {what} ({path})"),
            &format!("read: {}; write: {last}", first_line(&out.stderr)),
        );
    }

    // `..` from the mounts ends at the container's own root, which holds no instance.
    let root = s.sh("cd /workspace/../../.. && pwd && ls -a");
    let names: Vec<&str> = root.stdout.lines().skip(1).collect();
    assert_eq!(root.stdout.lines().next(), Some("/"), "{root:?}");
    assert!(
        !names.iter().any(|n| *n == "instances" || *n == "bob"),
        "{root:?}"
    );
    report(
        "climb out of /workspace with ..",
        &format!("ends at the container's root: {}", names.join(" ")),
    );

    // A symbolic link to bob's host path resolves inside alice's mount namespace: nowhere.
    let link = s.sh(&format!(
        "ln -s '{}' /workspace/bob-link && cat /workspace/bob-link/SOUL.md; rc=$?; rm -f /workspace/bob-link; exit $rc",
        host(&bob_ws)
    ));
    assert_ne!(link.exit_code, 0, "followed a link into bob: {link:?}");
    assert!(
        link.stderr.contains("No such file or directory"),
        "{link:?}"
    );
    report(
        "read bob's SOUL.md through a symbolic link to its host path",
        first_line(&link.stderr),
    );

    // The mount table: alice's own directories, nothing of bob's.
    let mounts = s.sh("cat /proc/self/mountinfo");
    for dir in [&bob_ws, &bob_in, &bob_out] {
        assert!(
            !mounts.stdout.contains(&host(dir)),
            "bob is mounted: {}",
            mounts.stdout
        );
    }
    report(
        "find bob in the mount table",
        "no mount of bob's directories",
    );

    // Nothing reached bob's side.
    assert_eq!(std::fs::read(bob_ws.join("SOUL.md")).unwrap(), soul_before);
    for dir in [&bob_ws, &bob_in, &bob_out] {
        assert!(!dir.join("evil").exists(), "{}", dir.display());
    }
    s.bob_answers("are your files intact?");
}

/// The host's default gateway, from its routing table (none when it has no default route).
fn host_default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"00000000") {
            return None;
        }
        let raw = u32::from_str_radix(f.get(2)?, 16).ok()?;
        // The kernel prints the address in host byte order.
        Some(Ipv4Addr::from(raw.to_le_bytes()))
    })
}

#[test]
fn no_network_but_loopback() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = Sandbox::with_bob_port(Some(port));
    // bob's listener is really there on the host's loopback.
    assert!(
        wait_until(LONG, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "bob's port {port} does not accept connections on the host"
    );

    // `true`: `ip -6 route` fails on a kernel without IPv6, which is not the question here.
    let links =
        s.sh("ip -o link show; echo ---; cat /proc/net/dev; echo ---; ip route; ip -6 route; true");
    let mut parts = links.stdout.split("---\n");
    let link_names: Vec<&str> = parts
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(link_names, ["lo"], "{links:?}");
    let dev_names: Vec<&str> = parts
        .next()
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(str::trim))
        .collect();
    assert_eq!(dev_names, ["lo"], "{links:?}");
    assert!(
        parts
            .next()
            .unwrap()
            .lines()
            .all(|l| !l.contains("default")),
        "a route: {links:?}"
    );
    report(
        "find a network interface",
        "only lo (ip link, /proc/net/dev), no routes",
    );

    let mut targets: Vec<(String, String, u16)> = vec![
        ("a public DNS server".into(), "1.1.1.1".into(), 53),
        ("a public web server".into(), "1.1.1.1".into(), 80),
        // Docker's default bridge gateway: the host as containers usually see it, and where
        // an engine listening on TCP (2375 plain, 2376 TLS) is reached from a container.
        (
            "the Docker bridge gateway (host) on Docker's TCP port".into(),
            "172.17.0.1".into(),
            2375,
        ),
        (
            "the Docker bridge gateway (host) on Docker's TLS port".into(),
            "172.17.0.1".into(),
            2376,
        ),
    ];
    if let Some(gw) = host_default_gateway() {
        targets.push(("the host's default gateway".into(), gw.to_string(), 80));
    }
    if let Some(hostport) = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("tcp://").map(str::to_string))
    {
        if let Some((host, p)) = hostport.rsplit_once(':') {
            if let Ok(p) = p.trim_end_matches('/').parse() {
                targets.push(("the engine at DOCKER_HOST".into(), host.into(), p));
            }
        }
    }
    for (what, host, port) in &targets {
        refused(
            &s,
            &format!("network: TCP connect to {what} {host}:{port}"),
            &format!("nc -w 5 {host} {port} </dev/null"),
            "Network is unreachable",
        );
    }
    // The container's 127.0.0.1 is its own: the host's loopback listeners are not there.
    refused(
        &s,
        &format!("network: TCP connect to bob's API port on the host's loopback 127.0.0.1:{port}"),
        &format!("nc -w 5 127.0.0.1 {port} </dev/null"),
        "Connection refused",
    );
    let dns = s.sh("nslookup example.com");
    assert_ne!(dns.exit_code, 0, "a name resolved: {dns:?}");
    report(
        "network: resolve example.com",
        &format!("{} {}", first_line(&dns.stderr), first_line(&dns.stdout)),
    );
    s.bob_answers("network checked");
}

#[test]
fn no_docker_socket_anywhere() {
    let s = Sandbox::new();
    for path in ["/var/run/docker.sock", "/run/docker.sock"] {
        refused(
            &s,
            &format!("docker: open {path}"),
            &format!("ls -l {path} && nc -U {path} </dev/null"),
            "No such file or directory",
        );
    }
    let found =
        s.sh("find / -path /proc -prune -o \\( -type s -o -name '*.sock' \\) -print; echo done");
    assert_eq!(
        found.stdout.trim(),
        "done",
        "sockets or docker files inside alice: {found:?}"
    );
    report(
        "docker: find a socket file (any socket, any *.sock) on any path",
        "none found",
    );
    let unix = s.sh("cat /proc/net/unix");
    assert!(
        !unix.stdout.contains("docker") && !unix.stdout.contains("containerd"),
        "{unix:?}"
    );
    report(
        "docker: find an engine socket in /proc/net/unix",
        "no docker or containerd socket in the container's network namespace",
    );
    let env = s.sh("env");
    assert!(!env.stdout.contains("DOCKER_"), "{env:?}");
    report("docker: DOCKER_HOST in the environment", "not set");
}

#[test]
fn the_api_key_never_reaches_the_container() {
    let s = Sandbox::new();
    // The key is real on the host side: the daemon sent it with alice's model requests.
    let auth = s.model.auth_headers();
    assert!(!auth.is_empty(), "no model request reached the fake");
    assert!(
        auth.iter().all(|a| *a == format!("Bearer {KEY}")),
        "{auth:?}"
    );
    // And alice has just had a turn, so her IPC directory has seen the traffic.
    s.alice_answers();

    let env = s.sh("env");
    assert_eq!(env.exit_code, 0, "{env:?}");
    assert!(
        env.stdout.contains("PATH="),
        "env prints something: {env:?}"
    );
    assert!(
        !env.stdout.contains(KEY) && !env.stdout.contains(KEY_ENV),
        "the key is in the environment: {env:?}"
    );
    report("key: read it from the environment (env)", "not there");

    // Every process's environment and command line that alice can see, /proc/1 (the
    // container's init) and /proc/self included. HOME=/tmp is in the image's environment:
    // finding it proves the files were readable. Entries are NUL-separated, and grep stops a
    // line at a NUL, so they are split into lines first. The key and its variable's name are searched
    // for from a file assembled from halves, because written whole in the script they would
    // be found in the shell's and grep's own command lines.
    let (key_a, key_b) = KEY.split_at(KEY.len() / 2);
    let (env_a, env_b) = KEY_ENV.split_at(KEY_ENV.len() / 2);
    let procs = s.sh(&format!(
        "printf '%s%s\\n' '{key_a}' '{key_b}' '{env_a}' '{env_b}' > /tmp/needles; \
         for f in /proc/1/environ /proc/self/environ /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do \
           tr '\\0' '\\n' < \"$f\" > /tmp/entries 2>/dev/null || continue; \
           if grep -q -F HOME=/tmp /tmp/entries; then echo \"readable $f\"; fi; \
           if grep -q -F -f /tmp/needles /tmp/entries; then echo \"KEY IN $f\"; fi; \
         done; rm -f /tmp/needles /tmp/entries"
    ));
    assert!(!procs.stdout.contains("KEY IN"), "{procs:?}");
    assert!(
        procs.stdout.contains("readable /proc/1/environ")
            && procs.stdout.contains("readable /proc/self/environ"),
        "{procs:?}"
    );
    report(
        "key: read it from /proc/1/environ, /proc/self/environ and every /proc/<pid>/environ or cmdline",
        "not there",
    );

    // Every file the agent can read: a marker planted in alice's workspace must be found, the
    // key must not. /proc and /dev are searched where they hold files (above, and /dev/shm
    // and /dev/mqueue); /dev/zero and friends would never end. NULs become line ends, so that
    // a key after a NUL in a binary file is not missed; sysfs attributes are text.
    let marker = format!("escape-marker-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(s.h.home.workspace("alice").join("marker.txt"), &marker).unwrap();
    let search = |needle: &str| {
        s.sh(&format!(
            "{{ find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f -print; \
                find /dev/shm /dev/mqueue -type f; }} | while read f; do \
               tr '\\0' '\\n' < \"$f\" 2>/dev/null | grep -q -F '{needle}' && echo \"$f\"; \
             done; \
             grep -r -l -s -F '{needle}' /sys; \
             echo searched"
        ))
    };
    let control = search(&marker);
    assert!(
        control.stdout.contains("/workspace/marker.txt"),
        "the search does not reach readable files: {control:?}"
    );
    let found = search(KEY);
    assert_eq!(
        found.stdout.trim(),
        "searched",
        "the key is in a file alice can read: {found:?}"
    );
    report(
        "key: grep every readable file (/, /sys, /dev/shm, /dev/mqueue; /proc above)",
        "not found (a planted marker was)",
    );

    // The container's /proc is its own pid namespace: no host process, the daemon included.
    let status = s.daemon_status();
    let daemon_pid = status["daemon"]["pid"].as_i64().unwrap();
    let ps = s.sh(&format!(
        "for p in /proc/[0-9]*; do echo \"$p $(tr '\\0' ' ' < $p/cmdline)\"; done; \
         test -e /proc/{daemon_pid}/cmdline && echo \"/proc/{daemon_pid} $(tr '\\0' ' ' < /proc/{daemon_pid}/cmdline)\"; \
         true"
    ));
    // Its number may name one of the container's own processes by chance, never the daemon:
    // every process listed, that one included, is the container's.
    for line in ps.stdout.lines() {
        let cmd = line.split_once(' ').map_or("", |(_, c)| c.trim());
        assert!(
            cmd.is_empty()
                || cmd.starts_with("/sbin/docker-init")
                || cmd.starts_with("/opt/runtime/"),
            "a process from outside the container is visible: {line}\n{ps:?}"
        );
        assert!(
            !cmd.contains("supervisor run") && !cmd.contains(KEY),
            "{line}"
        );
    }
    report(
        &format!("key: read the daemon's /proc/{daemon_pid}/environ"),
        "no host process is visible, the daemon included: the container's /proc shows only docker-init, the agent and this shell",
    );
}

#[test]
fn no_way_to_gain_privileges() {
    let s = Sandbox::new();
    let ids = s.sh("id -u; id -g");
    let ids: Vec<&str> = ids.stdout.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|id| *id != "0"), "root inside: {ids:?}");
    report(
        "privileges: run as root",
        &format!("uid {} gid {}", ids[0], ids[1]),
    );

    let status = s.sh("cat /proc/self/status");
    let field = |name: &str| {
        status
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::trim))
            .unwrap_or_else(|| panic!("no {name} in {}", status.stdout))
            .to_string()
    };
    assert_eq!(field("NoNewPrivs"), "1");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field("Seccomp"), "2", "a seccomp filter applies");
    report(
        "privileges: capabilities and privilege gain",
        "NoNewPrivs 1, CapInh/CapPrm/CapEff/CapBnd/CapAmb all 0, seccomp filtering",
    );

    let setuid =
        s.sh("find / -path /proc -prune -o \\( -perm -4000 -o -perm -2000 \\) -print; echo done");
    assert_eq!(
        setuid.stdout.trim(),
        "done",
        "setuid/setgid files: {setuid:?}"
    );
    report(
        "privileges: find a setuid or setgid binary",
        "none on any path",
    );

    refused(
        &s,
        "privileges: su to root",
        "su -c id root",
        "must be suid",
    );
    refused(
        &s,
        "privileges: become root in a new user namespace (unshare -r)",
        "unshare -r id",
        "Operation not permitted",
    );
    refused(
        &s,
        "privileges: give a file to root (chown)",
        "touch /workspace/owned && chown 0:0 /workspace/owned; rc=$?; rm -f /workspace/owned; exit $rc",
        "Operation not permitted",
    );
    // A setuid bit the agent sets on its own copy is ignored (no-new-privileges), and could
    // only ever make it itself anyway.
    let own = s.sh(
        "mkdir -p /workspace/suid && cp /opt/runtime/toolbox/busybox /workspace/suid/busybox && \
         chmod 4755 /workspace/suid/busybox && /workspace/suid/busybox id -u; \
         rc=$?; rm -rf /workspace/suid; exit $rc",
    );
    assert_eq!(own.stdout.trim(), ids[0], "{own:?}");
    report(
        "privileges: run a setuid copy of busybox",
        &format!("still uid {}", own.stdout.trim()),
    );
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit_and_the_others_keep_answering() {
    let s = Sandbox::new();
    let ws = s.h.home.workspace("alice");
    let started_file = ws.join(".forks-started");
    let release = ws.join(".release-forks");
    let bound = ALICE_PIDS + 16;
    // Started in alice and left running: background sleeps until a fork fails, then, still
    // holding every process, wait on a FIFO in the workspace for the test to let go, and kill
    // them by pid. Only shell builtins run once the pool is full (no fork is needed).
    let script = format!(
        "mkfifo /workspace/.release-forks || exit 3; : > /tmp/pids; \
         ( i=0; while [ $i -lt {bound} ]; do sleep 600 </dev/null >/dev/null 2>&1 & echo $! >> /tmp/pids; i=$((i+1)); done; \
           echo \"no fork failed after {bound}\" ); \
         n=0; while read p; do n=$((n+1)); done < /tmp/pids; \
         echo \"started $n\"; \
         for f in /sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids.current; do \
           [ -r $f ] && read cur < $f && echo \"pids.current $cur\"; done; \
         echo $n > /workspace/.forks-started; \
         read go < /workspace/.release-forks; \
         k=0; while read p; do kill $p && k=$((k+1)); done < /tmp/pids; echo \"killed $k\""
    );
    let id = s.alice_id();
    let bomb = std::thread::spawn(move || {
        with_docker(async move |d| {
            exec::run(
                &d,
                &id,
                &[BUSYBOX, "sh", "-c", &script],
                Duration::from_secs(600),
            )
            .await
        })
    });

    let mut started = 0u32;
    assert!(
        wait_until(LONG, || {
            started = std::fs::read_to_string(&started_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            started > 0 || bomb.is_finished()
        }),
        "the fork loop never ended"
    );
    assert!(started > 0, "the fork loop failed: {:?}", bomb.join());
    assert!(
        started < ALICE_PIDS,
        "{started} processes started in a container limited to {ALICE_PIDS}"
    );
    assert!(
        started >= ALICE_PIDS / 2,
        "only {started} processes started: something else stopped the loop"
    );

    // While alice's process table is full: bob answers, the daemon is healthy.
    s.bob_answers("alice is full of processes");
    s.daemon_status();

    let mut fifo = None;
    assert!(
        wait_until(LONG, || {
            fifo = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&release)
                .ok();
            fifo.is_some()
        }),
        "nobody waits on {}",
        release.display()
    );
    fifo.unwrap().write_all(b"go\n").unwrap();
    let out = bomb.join().unwrap().expect("the fork loop's exec");
    assert!(
        out.stderr
            .contains("can't fork: Resource temporarily unavailable"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("no fork failed"), "{out:?}");
    assert!(out.stdout.contains(&format!("killed {started}")), "{out:?}");
    // The cgroup's own count while the loop held every process, where readable.
    let current = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("pids.current "))
        .map(|n| n.trim().parse::<u32>().unwrap());
    if let Some(current) = current {
        assert!(current <= ALICE_PIDS, "{out:?}");
    }
    report(
        &format!("fork bomb: start processes until refused (limits.pids = {ALICE_PIDS})"),
        &format!(
            "{} after {started} processes ({} of {ALICE_PIDS} in use); bob answered and the daemon stayed healthy meanwhile",
            first_line(&out.stderr),
            current.map_or("?".to_string(), |c| c.to_string()),
        ),
    );
    std::fs::remove_file(&release).unwrap();
    std::fs::remove_file(&started_file).unwrap();

    s.all_well();
}

#[test]
fn memory_beyond_the_limit_is_killed_and_the_others_keep_answering() {
    let s = Sandbox::new();
    let before = s.alice_id();
    // Then the cgroup's own account of it, v1 or v2, where readable.
    let out = s.sh(&format!(
        "{ALLOCATE}; \
         echo \"awk exit $?\"; \
         for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do \
           [ -r $f ] && grep '^oom_kill ' $f; done; \
         for f in /sys/fs/cgroup/memory/memory.max_usage_in_bytes /sys/fs/cgroup/memory.peak; do \
           [ -r $f ] && echo \"peak $(cat $f)\"; done; true"
    ));
    assert!(
        !out.stdout.contains("allocated"),
        "1 GiB allocated: {out:?}"
    );
    let awk_exit = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("awk exit "))
        .map(|c| c.trim().to_string());
    // Either awk alone was killed (137: SIGKILL) or failed, or the whole exec was.
    match &awk_exit {
        Some(code) => assert_ne!(code, "0", "{out:?}"),
        None => assert_eq!(out.exit_code, 137, "{out:?}"),
    }
    if let Some(n) = out.stdout.lines().find_map(|l| l.strip_prefix("oom_kill ")) {
        assert!(n.trim().parse::<u64>().unwrap() >= 1, "{out:?}");
    }
    if let Some(peak) = out.stdout.lines().find_map(|l| l.strip_prefix("peak ")) {
        let peak: i64 = peak.trim().parse().unwrap();
        assert!(
            peak <= ALICE_MEMORY,
            "used {peak} bytes over a {ALICE_MEMORY} limit"
        );
    }
    let after = s.alice_id();
    let container = if after == before {
        "the container kept running (only the allocating process was killed)"
    } else {
        "the daemon restarted the container"
    };
    report(
        "memory: allocate 1 GiB under limits.memory = 128m",
        &format!(
            "{} (awk exit {}; {}); {container}; bob answered, alice is back",
            first_line(&out.stderr),
            awk_exit.as_deref().unwrap_or("-"),
            out.stdout
                .lines()
                .filter(|l| l.starts_with("oom_kill") || l.starts_with("peak"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    s.all_well();

    // Again, with the agent made the OOM killer's choice: the container's main process dies,
    // and the daemon must notice the exit and start alice again by its restart policy.
    // Raising a process's oom_score_adj needs no privilege. The kernel scores a process by
    // its resident pages plus oom_score_adj × (limit in pages / 1000, rounded down), which
    // at 1000 is a little under the limit; so /tmp and /dev/shm are filled first (tmpfs
    // pages count against the limit but belong to no process), to keep awk well below it.
    let restarts = s.h.record("alice").restart_count;
    let agent_first = s.try_sh(
        &format!(
            "dd if=/dev/zero of=/tmp/fill bs=1M 2>/dev/null; \
             dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 2>/dev/null; \
             for p in /proc/[0-9]*; do \
               case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in \
                 /opt/runtime/bin/supervisor-agent*) echo 1000 > $p/oom_score_adj && echo \"agent ${{p#/proc/}} first\";; \
               esac; \
             done; {ALLOCATE}"
        ),
        EXEC_TIMEOUT,
    );
    // The exec may end with the container rather than report back: either is fine.
    if let Ok(out) = &agent_first {
        assert!(out.stdout.contains("first"), "{out:?}");
        assert!(
            !out.stdout.contains("allocated"),
            "1 GiB allocated: {out:?}"
        );
    }
    assert!(
        wait_until(LONG, || s.h.record("alice").restart_count > restarts
            && s.h.record("alice").state == "running"),
        "alice was not restarted: {:?}",
        s.h.record("alice")
    );
    let store = supervisor::infra::store::Store::open(&s.h.home.path("supervisor.db")).unwrap();
    let exited = store
        .recent_events(Some("alice"), 50)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "container.exited")
        .expect("a container.exited event");
    let detail = exited.detail.unwrap();
    assert_eq!(detail["exit_code"], 137, "{detail}");
    report(
        "memory: allocate 1 GiB with the agent as the OOM killer's first choice",
        &format!(
            "the agent was killed (container exit code {}, oom_killed {}); the daemon restarted alice (restart count {} → {}); bob answered, alice is back",
            detail["exit_code"],
            detail["oom_killed"],
            restarts,
            s.h.record("alice").restart_count
        ),
    );
    s.all_well();
}

#[test]
fn tmp_is_capped_and_noexec() {
    let s = Sandbox::new();
    let mounts = s.sh("grep ' /tmp ' /proc/self/mounts");
    for opt in [
        "noexec",
        "nosuid",
        "nodev",
        &format!("size={}k", ALICE_TMP >> 10),
    ] {
        assert!(mounts.stdout.contains(opt), "/tmp lacks {opt}: {mounts:?}");
    }
    let fill = refused(
        &s,
        "/tmp: write 32 MiB under limits.tmp = 16m",
        "dd if=/dev/zero of=/tmp/fill bs=1M count=32",
        "No space left on device",
    );
    let written = s.sh("wc -c < /tmp/fill");
    let written: i64 = written.stdout.trim().parse().unwrap();
    assert!(written <= ALICE_TMP, "{written} bytes in /tmp: {fill:?}");
    // /tmp is full: bob does not care.
    s.bob_answers("alice's /tmp is full");
    s.sh("rm -f /tmp/fill");

    refused(
        &s,
        "/tmp: run a binary copied there",
        "cp /opt/runtime/toolbox/busybox /tmp/bb && chmod 755 /tmp/bb && /tmp/bb true; rc=$?; rm -f /tmp/bb; exit $rc",
        "Permission denied",
    );
    s.all_well();
}
