//! `supervisor-agent self-check`: the agent inspects its own sandbox and reports, check by
//! check, whether it looks the way the supervisor means it to (non-root, read-only runtime and
//! rootfs, writable scratch and data mounts, no network, no secrets, no capabilities).
//!
//! Everything is read from `/proc` and the file system with std alone, so the check works in a
//! `FROM scratch` image with nothing but the agent binary.

use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the shared runtime is mounted, read-only.
pub const RUNTIME_DIR: &str = "/opt/runtime";
/// Where the instance workspace is mounted, read-write.
pub const WORKSPACE_DIR: &str = "/workspace";
/// Where the instance's IPC queues are: `/ipc/in` and `/ipc/out`, each mounted read-write.
pub const IPC_DIR: &str = "/ipc";
/// Where a chat group's container finds the instance's persona (`SOUL.md`, `AGENTS.md`,
/// `skills/`), mounted read-only; an ordinary instance container has none.
pub const PERSONA_DIR: &str = "/persona";
/// Where a chat group's container finds the instance's shared knowledge, mounted read-only;
/// optional even there.
pub const SHARED_DIR: &str = "/shared";
/// The scratch tmpfs.
pub const TMP_DIR: &str = "/tmp";

/// Paths at which a container-engine socket would give a way out of the sandbox.
pub const ENGINE_SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
];

/// Parts of an environment variable name that suggest it holds a secret.
pub const SECRET_NAME_PARTS: &[&str] =
    &["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"];

const EROFS: i32 = 30;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &str, ok: bool, detail: impl Into<String>) -> Self {
        Check {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        }
    }
}

/// The whole self-check, as printed by `self-check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// True when every check passed.
    pub ok: bool,
    pub agent_version: String,
    pub protocol: u32,
    pub checks: Vec<Check>,
}

impl Report {
    fn from_checks(checks: Vec<Check>) -> Self {
        Report {
            ok: checks.iter().all(|c| c.ok),
            agent_version: crate::AGENT_VERSION.to_string(),
            protocol: crate::protocol::PROTOCOL_VERSION,
            checks,
        }
    }

    /// A human-readable rendering, one line per check and a summary line.
    pub fn to_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = format!(
            "supervisor-agent {} self-check (protocol {})\n",
            self.agent_version, self.protocol
        );
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            out.push_str(&format!("{mark}  {:width$}  {}\n", c.name, c.detail));
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        out.push_str(&format!(
            "{} checks: {} passed, {} failed\n",
            self.checks.len(),
            self.checks.len() - failed,
            failed
        ));
        out
    }
}

/// Runs every check against the live sandbox.
pub fn run() -> Report {
    let status = fs::read_to_string("/proc/self/status");
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .map(|s| parse_mountinfo(&s))
        .ok();
    let mounts = mounts.as_deref();

    let mut checks = vec![
        check_non_root(&status),
        check_read_only("runtime_read_only", Path::new(RUNTIME_DIR), mounts),
        check_read_only("rootfs_read_only", Path::new("/"), mounts),
        check_writable("tmp_writable", Path::new(TMP_DIR), true, mounts),
        check_writable(
            "workspace_writable",
            Path::new(WORKSPACE_DIR),
            false,
            mounts,
        ),
        check_writable("ipc_writable", Path::new(IPC_DIR), false, mounts),
    ];
    for sub in ["in", "out"] {
        let dir = Path::new(IPC_DIR).join(sub);
        // Each queue is a mount of its own (so the agent cannot replace it); an /ipc mounted
        // whole holds them as plain directories.
        let mounted = is_mount_point(&dir, mounts) || is_mount_point(Path::new(IPC_DIR), mounts);
        if dir.is_dir() && mounted {
            checks.push(check_writable(
                &format!("ipc_{sub}_writable"),
                &dir,
                true,
                mounts,
            ));
        }
    }
    checks.push(check_network(fs::read_to_string("/proc/net/dev")));
    checks.push(check_secret_env(
        std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()),
    ));
    checks.push(check_engine_sockets(ENGINE_SOCKETS));
    checks.push(check_capabilities(&status));
    checks.push(check_no_new_privs(&status));
    Report::from_checks(checks)
}

/// The value of one `Name:\tvalue` line of `/proc/self/status`.
fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

fn status_or_fail<'a>(name: &str, status: &'a io::Result<String>) -> Result<&'a str, Check> {
    status
        .as_deref()
        .map_err(|e| Check::new(name, false, format!("cannot read /proc/self/status: {e}")))
}

fn check_non_root(status: &io::Result<String>) -> Check {
    const NAME: &str = "non_root";
    let status = match status_or_fail(NAME, status) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let ids = |field| -> Option<Vec<u32>> {
        status_field(status, field)?
            .split_whitespace()
            .map(|s| s.parse().ok())
            .collect()
    };
    match (ids("Uid"), ids("Gid")) {
        (Some(uids), Some(gids)) if !uids.is_empty() => {
            let root = uids.contains(&0);
            let detail = format!(
                "uid {} gid {} (real/effective/saved/fs)",
                join(&uids),
                join(&gids)
            );
            if root {
                Check::new(NAME, false, format!("running as root: {detail}"))
            } else {
                Check::new(NAME, true, detail)
            }
        }
        _ => Check::new(NAME, false, "no Uid/Gid lines in /proc/self/status"),
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join("/")
}

/// A unique probe file name in `dir`, using the IPC temporary-name rule so a reader of that
/// directory skips it.
fn probe_path(dir: &Path) -> std::path::PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".self-check-{}-{n}.tmp", std::process::id()))
}

/// Tries to create, write and remove a file in `dir`.
fn try_write(dir: &Path) -> io::Result<()> {
    let path = probe_path(dir);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let written = file.write_all(b"self-check\n");
    drop(file);
    let removed = fs::remove_file(&path);
    written.and(removed)
}

/// `dir` must exist and refuse file creation. Passes when the refusal is EROFS or the mount
/// holding `dir` is read-only; a refusal by permissions alone on a writable mount fails.
pub fn check_read_only(name: &str, dir: &Path, mounts: Option<&[Mount]>) -> Check {
    if !dir.is_dir() {
        return Check::new(name, false, format!("{} is missing", dir.display()));
    }
    let mount = mounts.and_then(|m| covering_mount(m, dir));
    let mount_desc = match mount {
        Some(m) => format!(
            "mount {} is {}",
            m.mount_point,
            if m.read_only { "ro" } else { "rw" }
        ),
        None => "mount unknown".to_string(),
    };
    match try_write(dir) {
        Ok(()) => Check::new(
            name,
            false,
            format!("created a file in {}; {mount_desc}", dir.display()),
        ),
        Err(e) if e.raw_os_error() == Some(EROFS) || mount.is_some_and(|m| m.read_only) => {
            Check::new(name, true, format!("create refused ({e}); {mount_desc}"))
        }
        Err(e) => Check::new(
            name,
            false,
            format!("create refused only by permissions ({e}); {mount_desc}"),
        ),
    }
}

/// `dir` must accept a new file. When `required` is false, a path that is not a mount point
/// (only the image's empty mount-point directory) is skipped; without mount information,
/// existence decides instead.
pub fn check_writable(name: &str, dir: &Path, required: bool, mounts: Option<&[Mount]>) -> Check {
    if !required {
        if !dir.exists() {
            return Check::new(name, true, format!("{} absent; skipped", dir.display()));
        }
        if !is_mount_point(dir, mounts) {
            return Check::new(
                name,
                true,
                format!("{} not mounted; skipped", dir.display()),
            );
        }
    }
    if !dir.is_dir() {
        return Check::new(name, false, format!("{} is missing", dir.display()));
    }
    let fs_desc = match mounts.and_then(|m| covering_mount(m, dir)) {
        Some(m) => format!(" ({} on {})", m.fs_type, m.mount_point),
        None => String::new(),
    };
    match try_write(dir) {
        Ok(()) => Check::new(name, true, format!("{} writable{fs_desc}", dir.display())),
        Err(e) => Check::new(
            name,
            false,
            format!("cannot write in {}: {e}{fs_desc}", dir.display()),
        ),
    }
}

fn is_mount_point(dir: &Path, mounts: Option<&[Mount]>) -> bool {
    match mounts {
        Some(m) => {
            let p = dir.to_string_lossy();
            m.iter().any(|m| m.mount_point == p)
        }
        None => dir.exists(),
    }
}

/// One line of `/proc/self/mountinfo`, reduced to what the checks use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub read_only: bool,
    pub fs_type: String,
}

/// Parses `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 {
                return None;
            }
            Some(Mount {
                mount_point: unescape_mount(fields[4]),
                read_only: fields[5].split(',').any(|o| o == "ro"),
                fs_type: fields.get(sep + 1)?.to_string(),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, and so on).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = b.get(i + 1..i + 4).and_then(octal_byte) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Three octal digits as a byte (`"040"` is a space).
fn octal_byte(digits: &[u8]) -> Option<u8> {
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()
}

/// The mount that holds `path`: the longest mount point that is `path` or a parent of it, the
/// last one listed winning ties (it is mounted on top).
pub fn covering_mount<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let p = path.to_string_lossy();
    let mut best: Option<&Mount> = None;
    for m in mounts {
        let mp = m.mount_point.as_str();
        let covers = mp == "/"
            || p == mp
            || (p.starts_with(mp) && p.as_bytes().get(mp.len()) == Some(&b'/'));
        if covers && best.is_none_or(|b| mp.len() >= b.mount_point.len()) {
            best = Some(m);
        }
    }
    best
}

/// Interface names in `/proc/net/dev` (after its two header lines).
pub fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

fn check_network(net_dev: io::Result<String>) -> Check {
    const NAME: &str = "no_network";
    let text = match net_dev {
        Ok(t) => t,
        Err(e) => return Check::new(NAME, false, format!("cannot read /proc/net/dev: {e}")),
    };
    let ifaces = parse_net_dev(&text);
    let others: Vec<&String> = ifaces.iter().filter(|n| *n != "lo").collect();
    if others.is_empty() {
        Check::new(NAME, true, format!("interfaces: {}", ifaces.join(", ")))
    } else {
        let names: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
        Check::new(
            NAME,
            false,
            format!("interfaces besides lo: {}", names.join(", ")),
        )
    }
}

/// Whether an environment variable name looks like it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

fn check_secret_env(names: impl Iterator<Item = String>) -> Check {
    const NAME: &str = "no_secret_env";
    let mut all: Vec<String> = names.collect();
    all.sort();
    let suspect: Vec<&str> = all
        .iter()
        .filter(|n| looks_secret(n))
        .map(|s| s.as_str())
        .collect();
    if suspect.is_empty() {
        Check::new(
            NAME,
            true,
            format!("{} variables, none secret-like", all.len()),
        )
    } else {
        // Names only: the values are never read into the report.
        Check::new(
            NAME,
            false,
            format!("secret-like variables: {}", suspect.join(", ")),
        )
    }
}

fn check_engine_sockets(paths: &[&str]) -> Check {
    const NAME: &str = "no_docker_socket";
    let present: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect();
    if present.is_empty() {
        Check::new(NAME, true, format!("none of {}", paths.join(", ")))
    } else {
        Check::new(NAME, false, format!("present: {}", present.join(", ")))
    }
}

fn cap_mask(status: &str, field: &str) -> Option<u64> {
    u64::from_str_radix(status_field(status, field)?, 16).ok()
}

fn check_capabilities(status: &io::Result<String>) -> Check {
    const NAME: &str = "no_capabilities";
    let status = match status_or_fail(NAME, status) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let Some(eff) = cap_mask(status, "CapEff") else {
        return Check::new(NAME, false, "no CapEff line in /proc/self/status");
    };
    let prm = cap_mask(status, "CapPrm");
    let amb = cap_mask(status, "CapAmb");
    let bnd = cap_mask(status, "CapBnd");
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| format!("{v:016x}"));
    let detail = format!(
        "CapEff {eff:016x} CapPrm {} CapAmb {} CapBnd {}",
        show(prm),
        show(amb),
        show(bnd)
    );
    // Permitted or ambient bits could be raised into the effective set, so they count too.
    let ok = eff == 0 && prm.unwrap_or(0) == 0 && amb.unwrap_or(0) == 0;
    Check::new(NAME, ok, detail)
}

fn check_no_new_privs(status: &io::Result<String>) -> Check {
    const NAME: &str = "no_new_privs";
    let status = match status_or_fail(NAME, status) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match status_field(status, "NoNewPrivs") {
        Some("1") => Check::new(NAME, true, "NoNewPrivs 1"),
        Some(v) => Check::new(NAME, false, format!("NoNewPrivs {v}")),
        None => Check::new(NAME, false, "no NoNewPrivs line in /proc/self/status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsupervisor-agent\nUmask:\t0022\nState:\tR (running)\n\
        Uid:\t65532\t65532\t65532\t65532\nGid:\t65532\t65532\t65532\t65532\n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
        CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";

    const ROOT_STATUS: &str = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
        CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t0\n";

    #[test]
    fn status_checks_pass_for_a_hardened_process() {
        let s = Ok(STATUS.to_string());
        assert!(check_non_root(&s).ok);
        assert!(check_capabilities(&s).ok);
        assert!(check_no_new_privs(&s).ok);
        assert_eq!(
            check_non_root(&s).detail,
            "uid 65532/65532/65532/65532 gid 65532/65532/65532/65532 (real/effective/saved/fs)"
        );
    }

    #[test]
    fn status_checks_fail_for_root() {
        let s = Ok(ROOT_STATUS.to_string());
        assert!(!check_non_root(&s).ok);
        assert!(!check_capabilities(&s).ok);
        assert!(!check_no_new_privs(&s).ok);
        let missing = Err(io::Error::from(io::ErrorKind::NotFound));
        assert!(!check_non_root(&missing).ok);
        assert!(!check_capabilities(&missing).ok);
        assert!(!check_no_new_privs(&missing).ok);
    }

    #[test]
    fn permitted_caps_count() {
        let s = Ok(STATUS.replace("CapPrm:\t0000000000000000", "CapPrm:\t0000000000000400"));
        assert!(!check_capabilities(&s).ok);
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets\n    lo:  0 0 0\n";
        assert_eq!(parse_net_dev(text), vec!["lo"]);
        assert!(check_network(Ok(text.into())).ok);
        let text = format!("{text}  eth0: 10 1 0\n");
        let c = check_network(Ok(text));
        assert!(!c.ok);
        assert_eq!(c.detail, "interfaces besides lo: eth0");
        assert!(!check_network(Err(io::Error::from(io::ErrorKind::NotFound))).ok);
    }

    #[test]
    fn secret_env_names() {
        for n in [
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "aws_secret_access_key",
            "DB_PASSWORD",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["PATH", "HOME", "HOSTNAME", "LANG"] {
            assert!(!looks_secret(n), "{n}");
        }
        let c = check_secret_env(["PATH", "MY_TOKEN"].iter().map(|s| s.to_string()));
        assert!(!c.ok);
        assert_eq!(c.detail, "secret-like variables: MY_TOKEN");
        assert!(check_secret_env(["PATH", "HOME"].iter().map(|s| s.to_string())).ok);
    }

    const MOUNTINFO: &str = "\
1 0 0:1 / / ro,relatime master:1 - overlay overlay rw,lowerdir=/x
2 1 0:2 / /proc rw,nosuid - proc proc rw
3 1 0:3 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k
4 1 8:1 /data/rt /opt/runtime ro,relatime - ext4 /dev/sda1 rw
5 1 8:1 /data/ws /workspace rw,relatime - ext4 /dev/sda1 rw
6 1 8:1 /data/odd /my\\040dir rw - ext4 /dev/sda1 rw
7 4 0:4 / /opt/runtime rw - tmpfs tmpfs rw
bad line
";

    #[test]
    fn mountinfo() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 7);
        assert!(m[0].read_only);
        assert_eq!(m[2].fs_type, "tmpfs");
        assert_eq!(m[5].mount_point, "/my dir");
        let at = |p: &str| {
            covering_mount(&m, Path::new(p))
                .unwrap()
                .mount_point
                .clone()
        };
        assert_eq!(at("/"), "/");
        assert_eq!(at("/tmp/x"), "/tmp");
        assert_eq!(at("/tmpfoo"), "/");
        assert_eq!(at("/workspace"), "/workspace");
        // The later mount on the same point is on top.
        assert!(
            !covering_mount(&m, Path::new("/opt/runtime/bin"))
                .unwrap()
                .read_only
        );
        assert!(is_mount_point(Path::new("/workspace"), Some(&m)));
        assert!(!is_mount_point(Path::new("/ipc"), Some(&m)));
    }

    #[test]
    fn writable_and_read_only_probes() {
        let dir = std::env::temp_dir().join(format!("agent-self-check-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let c = check_writable("w", &dir, true, None);
        assert!(c.ok, "{c:?}");
        // A writable directory fails the read-only check, and the probe leaves nothing behind.
        let c = check_read_only("r", &dir, None);
        assert!(!c.ok, "{c:?}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        // Optional mounts that are absent or not mounted are skipped; required ones fail.
        let missing = dir.join("missing");
        assert!(check_writable("w", &missing, false, None).ok);
        assert!(!check_writable("w", &missing, true, None).ok);
        assert!(!check_read_only("r", &missing, None).ok);
        let no_mounts: &[Mount] = &[];
        let c = check_writable("w", &dir, false, Some(no_mounts));
        assert!(c.ok && c.detail.ends_with("not mounted; skipped"), "{c:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn engine_sockets() {
        assert!(check_engine_sockets(&["/nonexistent/docker.sock"]).ok);
        assert!(!check_engine_sockets(&["/proc/self/status"]).ok);
    }

    #[test]
    fn report_text_and_json() {
        let r = Report::from_checks(vec![
            Check::new("a", true, "fine"),
            Check::new("bb", false, "broken"),
        ]);
        assert!(!r.ok);
        let text = r.to_text();
        assert!(text.contains("ok    a   fine\n"), "{text}");
        assert!(text.contains("FAIL  bb  broken\n"), "{text}");
        assert!(text.ends_with("2 checks: 1 passed, 1 failed\n"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }

    #[test]
    fn live_run_does_not_panic() {
        let r = run();
        assert!(r.checks.len() >= 11);
    }
}
