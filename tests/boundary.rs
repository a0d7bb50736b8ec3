//! Attacks on the host's file boundary, from inside a real container as the agent's user.
//!
//! The container holds (escape.rs), but the host daemon runs as root and reads, moves, writes,
//! chmods and chowns entries of directories the agent can rewrite: its workspace (/workspace)
//! and its IPC directory (/ipc, with in/ and out/). Each test here runs busybox's shell inside
//! alice's container (common::sandbox) to steer the host through those directories: links,
//! FIFOs, files and hard links where the host expects its own directories and files, races,
//! floods, deep trees, hostile names. What the host is steered at is a decoy tree outside the
//! home (common::decoy) whose every entry is compared before and after, or bob, the other
//! instance. Every attempt must leave the decoy as it was, bob answering and the daemon
//! healthy; attempts to replace /ipc/in or /ipc/out themselves must fail inside the container.
//!
//! Each attempt prints one line, `boundary: <attempt> → <outcome>`; a test goes through all of
//! its attempts and then fails with every one that did not hold.

mod common;

use std::fmt::Display;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::daemon::{wait_until, with_docker};
use common::decoy::{Decoy, SECRET};
use common::sandbox::{first_line, Sandbox, ALICE_ANSWER, BUSYBOX, LONG};
use common::TestHome;
use supervisor::infra::docker::exec::{ExecError, ExecOutput};

/// How long a CLI command may take before it counts as hung: liveness, not performance.
const CLI_DEADLINE: Duration = Duration::from_secs(30);
/// Address space allowed to a CLI command that might read without end (`ulimit -v`, KiB).
const CLI_MEMORY_KIB: u64 = 1 << 20;
/// More memory than any CLI command here needs (its peak resident set, KiB).
const CLI_RSS_CAP_KIB: i64 = 256 << 10;
/// More output than any CLI command here prints.
const CLI_OUTPUT_CAP: u64 = 64 << 10;
/// At most this many entries set aside in the quarantine after a flood of junk.
const QUARANTINE_CAP: usize = 1_000;
/// At most this many audit events after a flood of junk.
const EVENTS_CAP: i64 = 25;
/// How many more inotify watches the daemon may hold after the workspace grew.
const WATCH_SLACK: usize = 16;

/// Collects the outcome of every attempt of a test, one printed line each, and fails the test
/// at the end with every attempt that did not hold.
struct Report {
    failed: Vec<String>,
}

impl Report {
    fn new() -> Self {
        Self { failed: Vec::new() }
    }

    fn held(&mut self, attempt: &str, outcome: impl Display) {
        println!("boundary: {attempt} → {}", shorten(&outcome.to_string()));
    }

    fn broke(&mut self, attempt: &str, what: impl Display) {
        let what = shorten(&what.to_string());
        println!("boundary: {attempt} → FAILED: {what}");
        self.failed.push(format!("{attempt}: {what}"));
    }

    /// `Ok(outcome)`: the attempt held; `Err(what)`: it did not.
    fn check(&mut self, attempt: &str, result: Result<String, String>) {
        match result {
            Ok(outcome) => self.held(attempt, outcome),
            Err(what) => self.broke(attempt, what),
        }
    }

    #[track_caller]
    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} attempt(s) did not hold:\n  {}",
            self.failed.len(),
            self.failed.join("\n  ")
        );
    }
}

/// At most 600 characters of `s`: its start and its end.
fn shorten(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 600 {
        return s.to_string();
    }
    let head: String = chars[..300].iter().collect();
    let tail: String = chars[chars.len() - 200..].iter().collect();
    format!("{head} […] {tail}")
}

/// The decoy as it was, or what changed in it.
fn untouched(decoy: &Decoy) -> Result<String, String> {
    match decoy.changes_line() {
        None => Ok("the decoy is untouched (every entry, mode, owner and content)".into()),
        Some(changes) => Err(changes),
    }
}

/// bob answers a message of his own.
fn bob_answers(s: &Sandbox, text: &str) -> Result<String, String> {
    let run = s.send_wait("bob", text, 60);
    let want = format!("echo: [local] {text}");
    if run.code == 0 && run.stdout.trim() == want {
        Ok("bob answered".into())
    } else {
        Err(format!(
            "bob did not answer (exit {}): {} {}",
            run.code,
            run.stdout.trim(),
            first_line(&run.stderr)
        ))
    }
}

/// alice is running (again) and answers.
fn alice_answers(s: &Sandbox) -> Result<String, String> {
    if !wait_until(LONG, || s.h.record("alice").state == "running") {
        return Err(format!("alice is not running: {:?}", s.h.record("alice")));
    }
    let run = s.send_wait("alice", "are you there?", 60);
    if run.code == 0 && run.stdout.trim() == ALICE_ANSWER {
        Ok("alice answered".into())
    } else {
        Err(format!(
            "alice did not answer (exit {}): {} {}",
            run.code,
            run.stdout.trim(),
            first_line(&run.stderr)
        ))
    }
}

/// alice runs and answers again once her directories are her own: after a daemon restart
/// (which delivers again a turn written where her agent could not see it) and a restart of
/// her container (whose agent does again a turn it began while they were not).
fn alice_recovers(s: &mut Sandbox) -> Result<String, String> {
    s.restart_daemon();
    let run = s.h.home.run(&["restart", "alice", "--wait"]);
    if run.code != 0 {
        return Err(format!("restart alice failed: {}", first_line(&run.stderr)));
    }
    alice_answers(s).map(|_| "alice answered after a daemon and a container restart".into())
}

/// The daemon answers `status --json` and still reaches the engine.
fn daemon_healthy(s: &Sandbox) -> Result<String, String> {
    let run = s.h.home.run(&["status", "--json"]);
    // 3: the report is printed and an instance is in `error` (as attacks here make them).
    if run.code != 0 && run.code != 3 {
        return Err(format!("status --json failed: {}", first_line(&run.stderr)));
    }
    let status = run.json();
    if status["daemon"]["running"] == true && status["docker"]["reachable"] == true {
        Ok("the daemon is healthy (status --json)".into())
    } else {
        let log = s.daemon.log_text();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        Err(format!(
            "the daemon is not healthy: daemon {}, docker {}; the end of its log: {}",
            status["daemon"],
            status["docker"]["reachable"],
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    }
}

/// Three reconcile passes: `start` (a no-op, alice runs) asks for one, after which every
/// actor looks at its instance's directories again.
fn nudge(s: &Sandbox) {
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        let _ = s.h.home.run(&["start", "alice"]);
    }
    std::thread::sleep(Duration::from_secs(2));
}

/// Lets the daemon work on alice: a message for alice wakes her actor at once (and makes a
/// turn to deliver), then three reconcile passes.
fn let_the_daemon_work(s: &Sandbox) {
    let _ =
        s.h.home
            .run(&["send", "alice", "wake up and read your directories"]);
    nudge(s);
}

/// Has the daemon create a new container for alice (a change of limits recreates it; the
/// daemon first hands her directories, everything in them, to the container user), and
/// checks that she runs and answers.
fn recreate_alice(s: &Sandbox, cpus: f64) -> Result<String, String> {
    let before = s.container_id("alice");
    s.h.edit_config("alice", |c| c["limits"]["cpus"] = serde_json::json!(cpus));
    let run = s.h.home.run(&["start", "alice", "--wait"]);
    wait_until(LONG, || {
        s.h.container_of("alice")
            .is_some_and(|c| c.id != before && c.running)
            || s.h.record("alice").state == "error"
    });
    let record = s.h.record("alice");
    if record.state == "error" {
        return Err(format!(
            "alice is in the error state: {} (start --wait: exit {}, {})",
            record.state_detail.unwrap_or_default(),
            run.code,
            first_line(&run.stderr)
        ));
    }
    alice_answers(s).map(|_| "a new container: alice runs and answers".into())
}

/// A shell command planting a link at `at` (inside alice) to the host path `target`. The
/// host resolves the link in its own namespace; inside the container the same path is made a
/// directory of the container's own /tmp where it can be (the host's temporary directories
/// are there), so the link leads to a real directory on both sides and the agent carries on
/// as though nothing had happened.
fn plant_link(target: &Path, at: &str) -> String {
    let t = target.display();
    format!("{{ mkdir -p '{t}' 2>/dev/null; ln -s '{t}' '{at}'; }}")
}

/// What came of trying to replace `/ipc/<which>` inside alice.
enum Replaced {
    /// The rename was refused.
    Refused,
    /// The rename succeeded: the real directory is at `/ipc/<which>.real`.
    Done,
}

/// Tries, inside alice, to move `/ipc/<which>` to `/ipc/<which>.real` and run `make` (which
/// puts something else at `/ipc/<which>`), and reports the attempt. Expected: the rename is
/// refused, `/ipc/in` and `/ipc/out` being mount points of their own in a read-only `/ipc`.
fn replace_ipc_dir(s: &Sandbox, r: &mut Report, which: &str, what: &str, make: &str) -> Replaced {
    let attempt = format!("replace /ipc/{which} by {what} (mv /ipc/{which} /ipc/{which}.real)");
    let out = s.sh(&format!(
        "mv /ipc/{which} /ipc/{which}.real || exit 1; {make} || {{ rm -rf /ipc/{which}; mv /ipc/{which}.real /ipc/{which}; exit 2; }}"
    ));
    match out.exit_code {
        0 => {
            r.broke(
                &attempt,
                format!("the rename succeeded: /ipc/{which} is now {what}"),
            );
            Replaced::Done
        }
        1 if out.stderr.contains("Resource busy")
            || out.stderr.contains("Read-only file system") =>
        {
            r.held(&attempt, format!("refused: {}", first_line(&out.stderr)));
            Replaced::Refused
        }
        _ => {
            r.broke(
                &attempt,
                format!("failed, but not as a busy mount point in a read-only /ipc: {out:?}"),
            );
            Replaced::Refused
        }
    }
}

/// alice's `/ipc/<which>` on the host.
fn host_ipc(s: &Sandbox, which: &str) -> PathBuf {
    match which {
        "in" => s.h.home.ipc_in("alice"),
        "out" => s.h.home.ipc_out("alice"),
        _ => unreachable!("{which}"),
    }
}

/// The host path of `name` beside alice's `/ipc/<which>` (inside: `/ipc/<name>`).
fn host_ipc_sibling(s: &Sandbox, which: &str, name: &str) -> PathBuf {
    host_ipc(s, which).with_file_name(name)
}

/// The host path of a path inside alice's container, for one of her workspace's entries, her
/// `/ipc/in` and `/ipc/out`, or a name beside those two.
fn host_of(s: &Sandbox, inside: &str) -> PathBuf {
    if let Some(rest) = inside.strip_prefix("/workspace/") {
        return s.h.home.workspace("alice").join(rest);
    }
    match inside
        .strip_prefix("/ipc/")
        .expect("a path in /workspace or /ipc")
    {
        "in" => host_ipc(s, "in"),
        "out" => host_ipc(s, "out"),
        name => host_ipc_sibling(s, "in", name),
    }
}

/// Removes whatever is at `path` (a link, a file, a FIFO, a directory), following nothing.
fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Of `path` and `spare`, one holds the real entry and the other what the agent swapped in
/// (a link): the real one goes back to `path`, the other is removed.
fn unswap(path: &Path, spare: &Path) {
    let is_link = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    if is_link(path) && fs::symlink_metadata(spare).is_ok() {
        fs::remove_file(path).unwrap();
        fs::rename(spare, path).unwrap();
    } else {
        remove_any(spare);
    }
}

/// Puts alice's real `/ipc/<which>` back after [`replace_ipc_dir`] succeeded (from the host:
/// her agent may have stopped over it), and restarts her.
fn restore_ipc_dir(s: &Sandbox, which: &str) {
    let dir = host_ipc(s, which);
    remove_any(&dir);
    fs::rename(host_ipc_sibling(s, which, &format!("{which}.real")), &dir).unwrap();
    let _ = s.h.home.run(&["restart", "alice", "--wait"]);
}

/// Replaces the host directory `dir` of an instance by what `make` creates there (the real one
/// kept beside it), as though the container's mounts had not held, runs `f`, and puts the real
/// one back: whatever the daemon does with the container's side, it must not follow or act
/// on what it finds at its own path either.
fn with_host_replacement(dir: &Path, make: impl FnOnce(&Path), f: impl FnOnce()) {
    let real = dir.with_file_name(format!(
        "{}.real",
        dir.file_name().unwrap().to_string_lossy()
    ));
    fs::rename(dir, &real).unwrap();
    make(dir);
    f();
    remove_any(dir);
    fs::rename(&real, dir).unwrap();
}

/// A shell loop left running inside alice until stopped.
struct Background {
    name: String,
    container: String,
    handle: JoinHandle<Result<ExecOutput, ExecError>>,
}

impl Background {
    /// Runs `before`, then `body` over and over until [`Background::stop`], then `after`.
    fn start(s: &Sandbox, name: &str, before: &str, body: &str, after: &str) -> Self {
        let id = s.alice_id();
        let container = id.clone();
        let script = format!(
            "rm -f /tmp/stop-{name}; {before}; \
             while [ ! -e /tmp/stop-{name} ]; do {body}; done; {after}; echo stopped"
        );
        let handle = std::thread::spawn(move || {
            with_docker(async move |d| {
                supervisor::infra::docker::exec::run(
                    &d,
                    &id,
                    &[BUSYBOX, "sh", "-c", &script],
                    Duration::from_secs(600),
                )
                .await
            })
        });
        Self {
            name: name.to_string(),
            container,
            handle,
        }
    }

    /// Stops the loop, or finds it ended with its container (the agent may stop over what
    /// was done to its directories); what it printed, if anything.
    fn stop(self) -> Option<ExecOutput> {
        let id = self.container.clone();
        let stop = format!("touch /tmp/stop-{}", self.name);
        let _ = with_docker(async move |d| {
            supervisor::infra::docker::exec::run(&d, &id, &[BUSYBOX, "sh", "-c", &stop], LONG).await
        });
        self.handle.join().unwrap().ok()
    }
}

/// A 189-byte static x86-64 Linux program, written into the workspace by the agent itself:
/// `swap A B` exchanges the names A and B with `renameat2(RENAME_EXCHANGE)` in a loop, as
/// fast as the kernel allows (far faster than a shell loop of renames, which starts a
/// process for each), and exits 1 at the first failure; with fewer than two arguments it
/// exits 0, which shows that it can run.
fn swapper_elf() -> Vec<u8> {
    #[rustfmt::skip]
    let code: &[u8] = &[
        0x48, 0x8b, 0x04, 0x24,             // mov rax, [rsp]       ; argc
        0x48, 0x83, 0xf8, 0x03,             // cmp rax, 3
        0x72, 0x32,                         // jb ok_exit
        0x48, 0x8b, 0x5c, 0x24, 0x10,       // mov rbx, [rsp+16]    ; argv[1]
        0x4c, 0x8b, 0x64, 0x24, 0x18,       // mov r12, [rsp+24]    ; argv[2]
        0xb8, 0x3c, 0x01, 0x00, 0x00,       // loop: mov eax, 316   ; renameat2
        0xbf, 0x9c, 0xff, 0xff, 0xff,       // mov edi, AT_FDCWD
        0x48, 0x89, 0xde,                   // mov rsi, rbx
        0xba, 0x9c, 0xff, 0xff, 0xff,       // mov edx, AT_FDCWD
        0x4d, 0x89, 0xe2,                   // mov r10, r12
        0x41, 0xb8, 0x02, 0x00, 0x00, 0x00, // mov r8d, RENAME_EXCHANGE
        0x0f, 0x05,                         // syscall
        0x85, 0xc0,                         // test eax, eax
        0x74, 0xdf,                         // jz loop
        0xbf, 0x01, 0x00, 0x00, 0x00,       // mov edi, 1
        0xeb, 0x02,                         // jmp exit
        0x31, 0xff,                         // ok_exit: xor edi, edi
        0xb8, 0x3c, 0x00, 0x00, 0x00,       // exit: mov eax, 60    ; exit
        0x0f, 0x05,                         // syscall
    ];
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let total = HEADERS + code.len() as u64;
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    f.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // program headers
    f.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
        f.extend_from_slice(&half.to_le_bytes());
    }
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // R + X
    f.extend_from_slice(&0u64.to_le_bytes()); // from the file's start
    f.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    f.extend_from_slice(&BASE.to_le_bytes()); // paddr
    f.extend_from_slice(&total.to_le_bytes()); // filesz
    f.extend_from_slice(&total.to_le_bytes()); // memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    f.extend_from_slice(code);
    f
}

/// Where the agent keeps its swapper.
const SWAP: &str = "/workspace/.swap";

/// Has the agent write [`swapper_elf`] into its workspace and run it once: whether it can.
fn install_swapper(s: &Sandbox) -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let bytes: String = swapper_elf().iter().map(|b| format!("\\{b:03o}")).collect();
    let out = s.sh(&format!(
        "printf '{bytes}' > {SWAP} && chmod 755 {SWAP} && {SWAP} && echo runs"
    ));
    out.stdout.contains("runs")
}

/// A loop in alice exchanging the entries `a` and `b` as fast as it can: the swapper when it
/// runs, else a shell loop of renames.
fn start_swapping(s: &Sandbox, name: &str, a: &str, b: &str, swapper: bool) -> Background {
    if swapper {
        Background::start(
            s,
            name,
            &format!("{SWAP} '{a}' '{b}' & pid=$!"),
            "usleep 100000",
            "kill $pid 2>/dev/null; wait $pid; echo \"swapper exit $?\"",
        )
    } else {
        Background::start(
            s,
            name,
            ":",
            &format!("mv '{a}' '{a}.x' && mv '{b}' '{a}' && mv '{a}.x' '{b}'"),
            ":",
        )
    }
}

/// The files in a host directory, by name (none when it cannot be read).
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The audit events recorded for `instance` after the event `after_id`.
fn events_after(home: &TestHome, instance: &str, after_id: i64) -> i64 {
    let db = rusqlite::Connection::open(home.path("supervisor.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM events WHERE instance = ?1 AND id > ?2",
        rusqlite::params![instance, after_id],
        |r| r.get(0),
    )
    .unwrap()
}

fn last_event_id(home: &TestHome) -> i64 {
    let db = rusqlite::Connection::open(home.path("supervisor.db")).unwrap();
    db.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))
        .unwrap()
}

/// How a CLI command run by [`run_bounded`] ended.
struct Bounded {
    /// None: it did not end by the deadline and was killed.
    status: Option<std::process::ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    output_bytes: u64,
    /// Its peak resident memory.
    max_rss_kib: i64,
}

impl Bounded {
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }

    /// It ended by itself, not by a signal, with bounded output and memory.
    fn finished(&self) -> Result<(), String> {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            None => Err(format!("did not finish within {CLI_DEADLINE:?} (killed)")),
            Some(st) if st.signal().is_some() => Err(format!(
                "killed by signal {} ({})",
                st.signal().unwrap(),
                first_line(&String::from_utf8_lossy(&self.stderr))
            )),
            Some(_) if self.output_bytes > CLI_OUTPUT_CAP => {
                Err(format!("printed {} bytes", self.output_bytes))
            }
            Some(_) if self.max_rss_kib > CLI_RSS_CAP_KIB => {
                Err(format!("used {} MiB of memory", self.max_rss_kib >> 10))
            }
            Some(_) => Ok(()),
        }
    }
}

/// Runs the CLI on `home` with a deadline (killed after it), a limit on its address space (so
/// a read that never ends cannot take the machine's memory) and a record of its peak memory,
/// optionally a limit on open files, and its output to files.
// The child is reaped with wait4 (which also gives its peak memory), not through `Child`.
#[allow(clippy::zombie_processes)]
fn run_bounded(home: &TestHome, args: &[&str], open_files: Option<u32>) -> Bounded {
    use nix::libc;
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let nofile = open_files.map_or(String::new(), |n| format!("ulimit -n {n}; "));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CLI_MEMORY_KIB}; {nofile}exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_supervisor"))
        .arg("--home")
        .arg(&home.root)
        .args(args)
        .env_remove("SUPERVISOR_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut raw = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which `child` never
    // waits for itself.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let end = Instant::now() + CLI_DEADLINE;
    let status = loop {
        // SAFETY: valid pointers to locals; pid is our child.
        if unsafe { libc::wait4(pid, &mut raw, libc::WNOHANG, &mut usage) } == pid {
            break Some(std::process::ExitStatus::from_raw(raw));
        }
        if Instant::now() > end {
            let _ = child.kill();
            // SAFETY: as above; blocks until the killed child is reaped.
            unsafe { libc::wait4(pid, &mut raw, 0, &mut usage) };
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let output_bytes = size(&out_path) + size(&err_path);
    let head = |p: &Path| {
        use std::io::Read;
        let mut buf = Vec::new();
        fs::File::open(p)
            .unwrap()
            .take(CLI_OUTPUT_CAP)
            .read_to_end(&mut buf)
            .unwrap();
        buf
    };
    Bounded {
        status,
        stdout: head(&out_path),
        stderr: head(&err_path),
        output_bytes,
        max_rss_kib: usage.ru_maxrss,
    }
}

/// The inotify watches process `pid` holds.
fn inotify_watches(pid: i64) -> usize {
    common::inotify_inodes(pid).len()
}

/// The number of watches once it stops changing (the watcher adds them as events come).
fn settled_watches(pid: i64) -> usize {
    let mut last = inotify_watches(pid);
    let end = Instant::now() + LONG;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = inotify_watches(pid);
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

fn daemon_pid(s: &Sandbox) -> i64 {
    // Exit 3 (an instance in `error`) still prints the report.
    s.h.home.run(&["status", "--json"]).json()["daemon"]["pid"]
        .as_i64()
        .expect("the daemon's pid")
}

// ----------------------------------------------------------------------------------------
// out/ replaced by a link to a host tree
// ----------------------------------------------------------------------------------------

#[test]
fn ipc_out_replaced_by_a_link_to_a_host_tree() {
    queue_replaced_by_a_link_to_a_host_tree("out");
}

#[test]
fn ipc_in_replaced_by_a_link_to_a_host_tree() {
    queue_replaced_by_a_link_to_a_host_tree("in");
}

/// `/ipc/<which>` replaced by a link to a host tree from inside alice, then her host
/// `<which>/` itself, as though the mount had not held: the decoy is never touched, alice is
/// held in `error` (the daemon noticed), bob keeps answering.
fn queue_replaced_by_a_link_to_a_host_tree(which: &str) {
    let mut s = Sandbox::new();
    let mut r = Report::new();

    let decoy = Decoy::new(&s.h.home.root);
    let link = plant_link(&decoy.root, &format!("/ipc/{which}"));
    let replaced = replace_ipc_dir(&s, &mut r, which, "a link to a host tree", &link);
    let_the_daemon_work(&s);
    r.check(
        &format!(
            "a message for alice and three reconcile passes after /ipc/{which} was replaced by a link to a host tree"
        ),
        untouched(&decoy),
    );
    r.check(
        &format!("bob, while alice's /ipc/{which} is a link"),
        bob_answers(&s, "is alice's link followed?"),
    );
    r.check("the daemon, meanwhile", daemon_healthy(&s));
    if let Replaced::Done = replaced {
        restore_ipc_dir(&s, which);
    }

    let decoy = Decoy::new(&s.h.home.root);
    with_host_replacement(
        &host_ipc(&s, which),
        |p| std::os::unix::fs::symlink(&decoy.root, p).unwrap(),
        || {
            // A new daemon finds it so, and delivers the turn in flight again.
            s.restart_daemon();
            let_the_daemon_work(&s);
            r.check(
                &format!(
                    "a daemon restart and a message for alice with her host {which}/ a link to a host tree (as if the mount had not held)"
                ),
                untouched(&decoy),
            );
            r.check(
                &format!("alice's state, with her host {which}/ a link"),
                held_in_error(&s, "alice", "is a symbolic link"),
            );
            r.check(
                &format!("bob, while alice's host {which}/ is a link"),
                bob_answers(&s, "and on the host side?"),
            );
        },
    );
    r.check(
        &format!("alice, once her {which}/ is back"),
        alice_recovers(&mut s),
    );
    r.check("bob, at the end", bob_answers(&s, "all fine?"));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

/// The instance is held in `error` with `why` in its detail, and an `ipc.unexpected` event
/// says so: the daemon noticed, and touched nothing.
fn held_in_error(s: &Sandbox, instance: &str, why: &str) -> Result<String, String> {
    let held = wait_until(LONG, || {
        let r = s.h.record(instance);
        r.state == "error" && r.state_detail.as_deref().is_some_and(|d| d.contains(why))
    });
    let r = s.h.record(instance);
    let events: i64 = rusqlite::Connection::open(s.h.home.path("supervisor.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM events WHERE instance = ?1 AND kind = 'ipc.unexpected'",
            [instance],
            |row| row.get(0),
        )
        .unwrap();
    match (held, events) {
        (true, n) if n > 0 => Ok(format!(
            "error: {} ({n} ipc.unexpected event)",
            r.state_detail.unwrap_or_default()
        )),
        _ => Err(format!(
            "state {} ({:?}), {events} ipc.unexpected events",
            r.state, r.state_detail
        )),
    }
}

// ----------------------------------------------------------------------------------------
// out/ replaced by a link to bob's out/
// ----------------------------------------------------------------------------------------

/// Sends bob `n` messages one after the other (each must be answered), and checks that
/// nothing of them reached alice: her model's requests, her history, her `in/`.
fn bob_keeps_his_turns(s: &Sandbox, r: &mut Report, when: &str, n: usize) {
    let marker = format!("for-bob-only-{}", uuid::Uuid::new_v4().simple());
    let mut answered = 0;
    let mut failure = None;
    for i in 0..n {
        let text = format!("{marker} #{i}");
        let run = s.send_wait("bob", &text, 30);
        if run.code == 0 && run.stdout.trim() == format!("echo: [local] {text}") {
            answered += 1;
        } else {
            failure = Some(format!(
                "message {} of {n} was not answered (exit {}): {} {}",
                i + 1,
                run.code,
                run.stdout.trim(),
                first_line(&run.stderr)
            ));
            break;
        }
    }
    r.check(
        &format!("bob's turns {when}"),
        match failure {
            None => Ok(format!("all {answered} of bob's messages answered")),
            Some(f) => Err(f),
        },
    );
    let to_alices_model = s
        .model
        .requests()
        .iter()
        .filter(|q| q.body.contains(&marker))
        .count();
    let in_history =
        s.h.home
            .run(&["history", "alice", "--json", "--limit", "200"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.to_string().contains(&marker))
            .count();
    let in_alices_in = names_in(&s.h.home.ipc_in("alice"))
        .iter()
        .filter(|n| {
            fs::read_to_string(s.h.home.ipc_in("alice").join(n)).is_ok_and(|t| t.contains(&marker))
        })
        .count();
    r.check(
        &format!("bob's messages reaching alice {when}"),
        if to_alices_model + in_history + in_alices_in == 0 {
            Ok("none: not in alice's model requests, history or in/".into())
        } else {
            Err(format!(
                "{to_alices_model} of alice's model requests carried bob's conversation, \
                 {in_history} entries of alice's history and {in_alices_in} files in her in/ hold it"
            ))
        },
    );
}

#[test]
fn ipc_out_replaced_by_a_link_to_another_instances_out() {
    let mut s = Sandbox::new();
    let mut r = Report::new();
    let replaced = replace_ipc_dir(
        &s,
        &mut r,
        "out",
        "a link to bob's out/ on the host",
        &plant_link(&s.h.home.ipc_out("bob"), "/ipc/out"),
    );
    // The daemon watches alice's out/ (now /ipc/out.real inside): a file appearing there
    // wakes alice's actor, which then reads what /ipc/out leads to.
    let poker = match replaced {
        Replaced::Done => Some(Background::start(
            &s,
            "poke",
            ":",
            ": > /ipc/out.real/.poke.tmp; rm -f /ipc/out.real/.poke.tmp; usleep 20000",
            ":",
        )),
        Replaced::Refused => None,
    };
    bob_keeps_his_turns(&s, &mut r, "while alice's /ipc/out leads to bob's out/", 5);
    r.check("the daemon, meanwhile", daemon_healthy(&s));

    // A new daemon starts with the link in place: it watches and reads alice's out/ afresh.
    s.restart_daemon();
    bob_keeps_his_turns(
        &s,
        &mut r,
        "after a daemon restart with alice's /ipc/out leading to bob's out/",
        5,
    );
    if let Some(p) = poker {
        p.stop();
    }
    if let Replaced::Done = replaced {
        restore_ipc_dir(&s, "out");
    }

    // The same link at the host's own path, as though the mount had not held; and a daemon
    // starting with it there.
    let (alice_out, bob_out) = (s.h.home.ipc_out("alice"), s.h.home.ipc_out("bob"));
    with_host_replacement(
        &alice_out,
        |p| std::os::unix::fs::symlink(&bob_out, p).unwrap(),
        || {
            s.restart_daemon();
            bob_keeps_his_turns(
                &s,
                &mut r,
                "with alice's host out/ a link to bob's (as if the mount had not held)",
                5,
            );
        },
    );
    r.check("alice, once her out/ is back", alice_recovers(&mut s));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// in/ replaced by a link; in/ and out/ replaced by files and FIFOs, or swapped in a loop
// ----------------------------------------------------------------------------------------

#[test]
fn ipc_dirs_replaced_by_a_file_or_a_fifo() {
    let mut s = Sandbox::new();
    let mut r = Report::new();
    for which in ["out", "in"] {
        for (what, make) in [
            ("a regular file", format!("echo junk > /ipc/{which}")),
            ("a FIFO", format!("mkfifo /ipc/{which}")),
        ] {
            let replaced = replace_ipc_dir(&s, &mut r, which, what, &make);
            let_the_daemon_work(&s);
            // A daemon that starts with it there.
            s.restart_daemon();
            let_the_daemon_work(&s);
            r.check(
                &format!("the daemon, with alice's /ipc/{which} {what}, and after a restart"),
                daemon_healthy(&s),
            );
            r.check(
                &format!("bob, with alice's /ipc/{which} {what}"),
                bob_answers(&s, &format!("alice's {which} is {what}")),
            );
            if let Replaced::Done = replaced {
                restore_ipc_dir(&s, which);
            }
        }
    }
    r.check(
        "alice, once her directories are back",
        alice_recovers(&mut s),
    );
    r.finish();
}

#[test]
fn ipc_dirs_swapped_with_links_in_a_loop() {
    let mut s = Sandbox::new();
    let mut r = Report::new();
    let swapper = install_swapper(&s);
    let in_decoy = Decoy::new(&s.h.home.root);
    let out_decoy = Decoy::new(&s.h.home.root);
    // /ipc itself is read-only: the links can only be planted in the workspace, and each
    // exchange with a queue (another mount) must fail.
    let refused = s.sh(&plant_link(&in_decoy.root, "/ipc/.in-link"));
    r.check(
        "plant a link beside /ipc/in (in /ipc itself)",
        match refused.exit_code {
            0 => Err("planted: /ipc is writable".to_string()),
            _ => Ok(format!("refused: {}", first_line(&refused.stderr))),
        },
    );
    let planted = s.sh(&format!(
        "{} && {} && echo planted",
        plant_link(&in_decoy.root, "/workspace/.in-link"),
        plant_link(&out_decoy.root, "/workspace/.out-link"),
    ));
    assert!(planted.stdout.contains("planted"), "{planted:?}");
    let loops = [
        start_swapping(&s, "swap-in", "/ipc/in", "/workspace/.in-link", swapper),
        start_swapping(&s, "swap-out", "/ipc/out", "/workspace/.out-link", swapper),
    ];
    // The daemon works on alice while her directories flip between the real ones and links.
    for i in 0..5 {
        let _ =
            s.h.home
                .run(&["send", "alice", &format!("message {i} while swapping")]);
        std::thread::sleep(Duration::from_millis(500));
        let _ = s.h.home.run(&["start", "alice"]);
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut ran = Vec::new();
    for l in loops {
        let name = l.name.clone();
        let out = l.stop();
        ran.push(format!(
            "{name}: {}",
            match out {
                Some(out) => out
                    .stdout
                    .lines()
                    .find(|l| l.starts_with("swapper exit"))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("exec exit {}", out.exit_code)),
                None => "ended with its container".into(),
            }
        ));
    }
    // Put back whichever name holds the real directory.
    for n in ["in", "out"] {
        unswap(
            &host_of(&s, &format!("/ipc/{n}")),
            &host_of(&s, &format!("/workspace/.{n}-link")),
        );
    }
    let how = if swapper {
        "renameat2(RENAME_EXCHANGE) in a loop"
    } else {
        "a shell loop of renames"
    };
    r.check(
        &format!(
            "/ipc/in swapped with a link to a host tree ({how}; {}) while alice got 5 messages",
            ran.join(", ")
        ),
        untouched(&in_decoy),
    );
    r.check(
        "/ipc/out swapped with a link to a host tree, meanwhile",
        untouched(&out_decoy),
    );
    r.check(
        "bob, after the swapping",
        bob_answers(&s, "after the swaps"),
    );
    r.check("alice, once the swapping stopped", alice_recovers(&mut s));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// doctor --fix raced
// ----------------------------------------------------------------------------------------

#[test]
fn doctor_fix_raced_with_links_to_a_host_tree() {
    let mut s = Sandbox::new();
    let mut r = Report::new();
    let decoy = Decoy::new(&s.h.home.root);
    let swapper = install_swapper(&s);
    // Each entry doctor judges and the agent can rewrite, with a wrong mode, and beside it a
    // link to a decoy entry whose mode doctor would "repair".
    let targets = [
        ("/workspace/SOUL.md", "644", "notes.txt"),
        ("/workspace/AGENTS.md", "644", "sub/inner.txt"),
        ("/workspace/memory", "755", "sub"),
        ("/workspace/skills", "755", "open"),
    ];
    let mut setup = String::new();
    for (path, mode, target) in &targets {
        setup += &format!(
            "chmod {mode} {path} && ln -s '{}' {path}.swap && ",
            decoy.path(target).display()
        );
    }
    let out = s.sh(&format!("{setup} echo ready"));
    assert!(out.stdout.contains("ready"), "{out:?}");
    let mut loops: Vec<Background> = targets
        .iter()
        .enumerate()
        .map(|(i, (path, _, _))| {
            start_swapping(
                &s,
                &format!("swap{i}"),
                path,
                &format!("{path}.swap"),
                swapper,
            )
        })
        .collect();
    // doctor --fix puts the real entries' modes right: put them wrong again, over and over
    // (through a link, chmod inside the container leads nowhere).
    let rechmod: String = targets
        .iter()
        .map(|(path, mode, _)| format!("chmod {mode} {path} {path}.swap 2>/dev/null; "))
        .collect();
    loops.push(Background::start(
        &s,
        "rechmod",
        ":",
        &format!("{rechmod} usleep 20000"),
        ":",
    ));

    let mut runs = 0;
    let started = Instant::now();
    while runs < 40 && decoy.changes().is_empty() {
        let _ = s.h.home.run(&["doctor", "--fix"]);
        runs += 1;
    }
    let took = started.elapsed();
    for l in loops {
        l.stop();
    }
    for (path, mode, _) in &targets {
        let host = host_of(&s, path);
        unswap(&host, &host_of(&s, &format!("{path}.swap")));
        let mode = if *mode == "644" { 0o600 } else { 0o700 };
        fs::set_permissions(&host, fs::Permissions::from_mode(mode)).unwrap();
    }
    let how = if swapper {
        "renameat2(RENAME_EXCHANGE) in a loop"
    } else {
        "a shell loop of renames"
    };
    r.check(
        &format!(
            "doctor --fix run {runs} times ({:.0} s) while the agent swaps SOUL.md, AGENTS.md, \
             memory/ and skills/ with links to decoy entries ({how})",
            took.as_secs_f64()
        ),
        untouched(&decoy),
    );
    r.check("alice, after the race", alice_recovers(&mut s));
    r.check("bob, after the race", bob_answers(&s, "after doctor"));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// The config watcher and a growing workspace
// ----------------------------------------------------------------------------------------

#[test]
fn workspace_links_and_many_directories_add_no_inotify_watches() {
    let mut s = Sandbox::new();
    let mut r = Report::new();
    let pid = daemon_pid(&s);
    let before = settled_watches(pid);

    let out = s.sh("mkdir /workspace/many && cd /workspace/many && \
         mkdir $(i=0; while [ $i -lt 2000 ]; do echo d$i; i=$((i+1)); done) && \
         ls | wc -l");
    assert_eq!(out.stdout.trim(), "2000", "{out:?}");
    let with_dirs = settled_watches(pid);
    r.check(
        &format!(
            "2,000 directories made in the workspace (the daemon held {before} inotify watches)"
        ),
        if with_dirs <= before + WATCH_SLACK {
            Ok(format!("{with_dirs} watches"))
        } else {
            Err(format!(
                "the daemon now holds {with_dirs} inotify watches ({} more)",
                with_dirs - before
            ))
        },
    );

    let out = s.sh("ln -s /usr /workspace/usr && echo linked");
    assert!(out.stdout.contains("linked"), "{out:?}");
    s.restart_daemon();
    let pid = daemon_pid(&s);
    let restarted = settled_watches(pid);
    r.check(
        "a link /workspace/usr → /usr (the host's /usr, resolved by the host) and a daemon restart",
        if restarted <= before + WATCH_SLACK {
            Ok(format!("{restarted} watches"))
        } else {
            Err(format!(
                "the new daemon holds {restarted} inotify watches ({} more than {before})",
                restarted - before
            ))
        },
    );
    s.sh("rm -rf /workspace/many /workspace/usr");
    r.check("bob, at the end", bob_answers(&s, "watch this"));
    r.check("alice, at the end", alice_answers(&s));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// show and the workspace's SOUL.md
// ----------------------------------------------------------------------------------------

#[test]
fn show_does_not_follow_or_hang_on_the_workspace_soul() {
    let mut s = Sandbox::new();
    let mut r = Report::new();
    let decoy = Decoy::new(&s.h.home.root);
    let out = s.sh("mv /workspace/SOUL.md /workspace/SOUL.md.real && echo moved");
    assert!(out.stdout.contains("moved"), "{out:?}");

    let secret = decoy.host_path("secret.md");
    for (what, plant) in [
        (
            "a link to a root-only host file",
            format!("ln -s '{secret}' /workspace/SOUL.md"),
        ),
        (
            "a link to /dev/zero",
            "ln -s /dev/zero /workspace/SOUL.md".into(),
        ),
        ("a FIFO", "mkfifo /workspace/SOUL.md".into()),
        ("a directory", "mkdir /workspace/SOUL.md".into()),
    ] {
        let out = s.sh(&format!(
            "rm -rf /workspace/SOUL.md; {plant} && echo planted"
        ));
        assert!(out.stdout.contains("planted"), "{out:?}");
        for json in [false, true] {
            let mut args = vec!["show", "alice"];
            if json {
                args.push("--json");
            }
            let run = run_bounded(&s.h.home, &args, None);
            let result = run.finished().and_then(|()| {
                if run.text().contains(SECRET) {
                    Err(format!(
                        "printed the root-only file's title: {}",
                        run.text()
                            .lines()
                            .find(|l| l.contains(SECRET))
                            .unwrap()
                            .trim()
                    ))
                } else {
                    Ok(format!(
                        "finished (exit {}), {} bytes, {} MiB, no secret",
                        run.status.and_then(|s| s.code()).unwrap_or(-1),
                        run.output_bytes,
                        run.max_rss_kib >> 10
                    ))
                }
            });
            r.check(&format!("{} with SOUL.md {what}", args.join(" ")), result);
        }
    }
    let out = s.sh(
        "rm -rf /workspace/SOUL.md && mv /workspace/SOUL.md.real /workspace/SOUL.md && echo back",
    );
    assert!(out.stdout.contains("back"), "{out:?}");
    r.check("the decoy, after show", untouched(&decoy));
    r.check("alice, with her SOUL.md back", alice_recovers(&mut s));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// Unbounded growth: the disk, and a flood of junk in out/
// ----------------------------------------------------------------------------------------

#[test]
fn writing_past_the_disk_limit_fails() {
    let s = Sandbox::new();
    let mut r = Report::new();
    s.h.edit_config("alice", |c| {
        c["limits"]["disk"] = serde_json::json!("64m");
    });
    // The edit takes effect in the next pass: a new limit recreates the container, its disk
    // resized while none runs.
    let _ = s.h.home.run(&["start", "alice", "--wait"]);
    let relabelled = wait_until(LONG, || {
        s.h.container_of("alice").is_some_and(|c| {
            c.running && c.labels.get("supervisor.disk").map(String::as_str) == Some("64m")
        })
    });
    assert!(
        relabelled,
        "alice's container was not made again for the new limit: {:?}",
        s.h.record("alice")
    );
    let show = s.h.home.run(&["show", "alice", "--json"]);
    r.check(
        "limits.disk = \"64m\" in alice's config.json",
        if show.code == 0 {
            Ok("accepted".into())
        } else {
            Err(format!("refused: {}", first_line(&show.stderr)))
        },
    );
    r.check("alice, with the new limit", alice_answers(&s));

    const LIMIT: u64 = 64 << 20;
    for (where_, file) in [
        ("the workspace", "/workspace/fill"),
        ("out/ (under a temporary name)", "/ipc/out/.fill.tmp"),
    ] {
        let out = s.sh(&format!(
            "dd if=/dev/zero of={file} bs=1M count=256; echo \"dd exit $?\"; wc -c < {file}"
        ));
        let written: u64 = out
            .stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        let attempt = format!("write 256 MiB into {where_} under limits.disk = 64m");
        if out.stdout.contains("dd exit 0") || !out.stderr.contains("No space left on device") {
            r.broke(
                &attempt,
                format!("the write succeeded: {written} bytes written"),
            );
        } else if written > LIMIT {
            r.broke(&attempt, format!("refused only after {written} bytes"));
        } else {
            r.held(
                &attempt,
                format!(
                    "refused: {} ({written} bytes written)",
                    first_line(&out.stderr)
                ),
            );
        }
        r.check(
            &format!("bob, with {where_} of alice full"),
            bob_answers(&s, "is the disk full?"),
        );
        s.sh(&format!("rm -f {file}"));
    }
    // Inodes count too: about one per 16 KiB of the limit (4,096 for a new 64m disk; a disk
    // shrunk from 1g keeps its block group's 8,192).
    let files = s.sh("mkdir -p /workspace/many && cd /workspace/many && i=0; \
         while [ $i -lt 20000 ] && touch f$i 2>/tmp/err; do i=$((i+1)); done; \
         echo made $i; cat /tmp/err >&2; cd / && rm -rf /workspace/many");
    let made: u64 = files
        .stdout
        .trim()
        .strip_prefix("made ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    let attempt = "create 20,000 empty files in the workspace under limits.disk = 64m";
    if made < 8192 + 64 && files.stderr.contains("No space left on device") {
        r.held(
            attempt,
            format!("refused after {made}: {}", first_line(&files.stderr)),
        );
    } else {
        r.broke(attempt, format!("made {made}: {files:?}"));
    }
    r.check("alice, after the writes", alice_answers(&s));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

#[test]
fn a_flood_of_junk_in_out_is_capped() {
    let s = Sandbox::new();
    let mut r = Report::new();
    const JUNK: usize = 20_000;
    let first_event = last_event_id(&s.h.home);
    let quarantine = s.h.home.quarantine("alice");
    let out_dir = s.h.home.ipc_out("alice");
    let started = Instant::now();
    let out = s.sh(&format!(
        "cd /ipc/out && i=0; while [ $i -lt {JUNK} ]; do : > junk-$i.json; i=$((i+1)); done; echo made $i"
    ));
    assert!(out.stdout.contains(&format!("made {JUNK}")), "{out:?}");
    r.check(
        "bob, while the daemon deals with the junk",
        bob_answers(&s, "busy?"),
    );
    // Until the daemon is done with it: nothing moves any more.
    let count = || (names_in(&out_dir).len(), names_in(&quarantine).len());
    let mut last = count();
    let mut still = 0;
    while still < 3 && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_secs(2));
        let now = count();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    let names = names_in(&quarantine);
    let set_aside = names.iter().filter(|n| !n.ends_with(".reason")).count();
    let events = events_after(&s.h.home, "alice", first_event);
    let log_lines = s
        .daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("set aside in the quarantine"))
        .count();
    r.check(
        &format!("{JUNK} empty files in /ipc/out: the quarantine"),
        if set_aside <= QUARANTINE_CAP {
            Ok(format!(
                "{set_aside} entries set aside ({} files in it), {} left in out/",
                names.len(),
                last.0
            ))
        } else {
            Err(format!(
                "{set_aside} entries set aside ({} files with their reasons)",
                names.len()
            ))
        },
    );
    r.check(
        &format!("{JUNK} empty files in /ipc/out: the audit log"),
        if events <= EVENTS_CAP {
            Ok(format!("{events} events; {log_lines} daemon log lines"))
        } else {
            Err(format!(
                "{events} events recorded for alice ({log_lines} daemon log lines)"
            ))
        },
    );
    s.sh("find /ipc/out -name 'junk-*' -delete");
    r.check("alice, after the flood", alice_answers(&s));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// A hard link into what the host sets aside
// ----------------------------------------------------------------------------------------

#[test]
fn a_hard_link_cannot_change_a_quarantined_file() {
    let s = Sandbox::new();
    let mut r = Report::new();
    let quarantine = s.h.home.quarantine("alice");
    for (what, keep, bad) in [
        (
            "a hard link in /ipc/out under a temporary name",
            "/ipc/out/.keep.tmp",
            "bad.json",
        ),
        (
            "a hard link in /ipc, outside out/",
            "/ipc/.keep",
            "bad2.json",
        ),
    ] {
        let attempt = format!("an invalid file in /ipc/out, and {what} to it");
        let out = s.sh(&format!(
            "printf '{{bad' > {keep} && ln {keep} /ipc/out/{bad} && echo linked"
        ));
        if !out.stdout.contains("linked") {
            r.held(&attempt, format!("refused: {}", first_line(&out.stderr)));
            s.sh(&format!("rm -f {keep}"));
            continue;
        }
        let host_bad = s.h.home.ipc_out("alice").join(bad);
        wait_until(Duration::from_secs(30), || {
            !host_bad.exists()
                && names_in(&quarantine)
                    .iter()
                    .any(|n| n.ends_with(&format!("-{bad}")))
        });
        let entries: Vec<PathBuf> = names_in(&quarantine)
            .iter()
            .filter(|n| n.ends_with(&format!("-{bad}")))
            .map(|n| quarantine.join(n))
            .collect();
        let kept_before: Vec<(Vec<u8>, u32)> = entries
            .iter()
            .map(|p| {
                (
                    fs::read(p).unwrap_or_default(),
                    fs::symlink_metadata(p).unwrap().mode(),
                )
            })
            .collect();
        // The agent writes through its link after the host set the file aside.
        let out = s.sh(&format!(
            "printf 'EVIL-REWRITE' > {keep}; chmod 666 {keep}; echo written"
        ));
        assert!(out.stdout.contains("written"), "{out:?}");
        let kept_after: Vec<(Vec<u8>, u32)> = entries
            .iter()
            .map(|p| {
                (
                    fs::read(p).unwrap_or_default(),
                    fs::symlink_metadata(p).unwrap().mode(),
                )
            })
            .collect();
        let result = if entries.is_empty() {
            Ok("nothing of it was set aside".into())
        } else if kept_before != kept_after
            || kept_after.iter().any(|(b, _)| b.as_slice() != b"{bad")
        {
            let (bytes, mode) = &kept_after[0];
            Err(format!(
                "the agent rewrote the quarantined copy through its link: it now holds {:?}, mode {:o}, {} links",
                String::from_utf8_lossy(bytes),
                mode & 0o7777,
                fs::metadata(&entries[0]).unwrap().nlink()
            ))
        } else {
            Ok(format!(
                "set aside; the agent's write through its link did not reach it ({} links)",
                fs::metadata(&entries[0]).unwrap().nlink()
            ))
        };
        r.check(&attempt, result);
        s.sh(&format!("rm -f {keep} /ipc/out/{bad}"));
    }
    r.check("bob, at the end", bob_answers(&s, "linked?"));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// One uid per instance
// ----------------------------------------------------------------------------------------

#[test]
fn each_instance_runs_as_its_own_uid() {
    let s = Sandbox::new();
    let mut r = Report::new();
    let inspect = |instance: &str| {
        let id = s.container_id(instance);
        with_docker(async move |d| supervisor::infra::docker::container::inspect_raw(&d, &id).await)
            .unwrap()
    };
    let alice = inspect("alice");
    let bob = inspect("bob");
    let user_of = |i: &bollard::models::ContainerInspectResponse| {
        i.config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    };
    let (alice_user, bob_user) = (user_of(&alice), user_of(&bob));
    let uid = |u: &str| u.split(':').next().unwrap_or("").to_string();
    r.check(
        "alice's and bob's container users",
        if uid(&alice_user) != uid(&bob_user) {
            Ok(format!("alice runs as {alice_user}, bob as {bob_user}"))
        } else {
            Err(format!("both run as {alice_user}"))
        },
    );

    // bob's host directories against alice's uid.
    let alice_uid: u32 = uid(&alice_user).parse().unwrap_or(u32::MAX);
    let alice_gid: u32 = alice_user
        .split(':')
        .nth(1)
        .and_then(|g| g.parse().ok())
        .unwrap_or(u32::MAX);
    let mut readable = Vec::new();
    for (what, path) in [
        ("workspace", s.h.home.workspace("bob")),
        ("SOUL.md", s.h.home.workspace("bob").join("SOUL.md")),
        ("in/", s.h.home.ipc_in("bob")),
        ("out/", s.h.home.ipc_out("bob")),
    ] {
        let m = fs::symlink_metadata(&path).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        let by_owner = m.uid() == alice_uid && mode & 0o400 != 0;
        let by_group = m.uid() != alice_uid && m.gid() == alice_gid && mode & 0o040 != 0;
        let by_other = m.uid() != alice_uid && m.gid() != alice_gid && mode & 0o004 != 0;
        if by_owner || by_group || by_other {
            readable.push(format!("{what} ({}:{} {mode:04o})", m.uid(), m.gid()));
        }
    }
    r.check(
        &format!("bob's host directories, against alice's uid and gid {alice_uid}:{alice_gid}"),
        if readable.is_empty() {
            Ok("none is readable by alice's uid".into())
        } else {
            Err(format!("readable by alice's uid: {}", readable.join(", ")))
        },
    );

    // A throwaway container as alice's user, with bob's workspace mounted, as hardened as any.
    let image = alice.config.as_ref().and_then(|c| c.image.clone()).unwrap();
    let runtime = alice
        .mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination.as_deref() == Some("/opt/runtime"))
        .and_then(|m| m.source.clone())
        .unwrap();
    let mut spec = supervisor::infra::container_spec::throwaway(
        &image,
        vec![
            supervisor::infra::container_spec::MountSpec {
                source: runtime.into(),
                target: "/opt/runtime".into(),
                read_only: true,
            },
            supervisor::infra::container_spec::MountSpec {
                source: s.h.home.workspace("bob"),
                target: "/bob".into(),
                read_only: true,
            },
        ],
        // Not the home's label: the daemon removes containers of its home that are no
        // instance's. probe::run removes it whatever happens.
        std::collections::BTreeMap::from([(
            "supervisor.test".to_string(),
            "boundary-uid-probe".to_string(),
        )]),
    );
    spec.user = alice_user.clone();
    let probe = supervisor::infra::docker::probe::ProbeSpec {
        container: spec,
        entrypoint: Some(vec![
            BUSYBOX.into(),
            "sh".into(),
            "-c".into(),
            "id -u; head -n 1 /bob/SOUL.md".into(),
        ]),
        cmd: Vec::new(),
    };
    let out = with_docker(async move |d| supervisor::infra::docker::probe::run(&d, &probe).await)
        .expect("the throwaway container");
    r.check(
        &format!("read bob's SOUL.md as alice's user {alice_user} (a throwaway container with bob's workspace mounted)"),
        if out.exit_code != 0 && out.stderr.contains("Permission denied") {
            Ok(format!("refused: {}", first_line(&out.stderr)))
        } else {
            Err(format!(
                "read it (exit {}): {}",
                out.exit_code,
                out.stdout.lines().nth(1).unwrap_or("").trim()
            ))
        },
    );
    r.check("bob, at the end", bob_answers(&s, "whose files?"));
    r.finish();
}

// ----------------------------------------------------------------------------------------
// Deep trees and long names; hostile names; links, FIFOs and wrong kinds everywhere
// ----------------------------------------------------------------------------------------

#[test]
fn deep_trees_and_long_names_break_no_backup_container_or_removal() {
    let s = Sandbox::new();
    let mut r = Report::new();
    const DEPTH: usize = 1_500;
    // Deeper than a usual limit of open files; and, of names of 250 characters, longer than
    // PATH_MAX below the workspace (made in two halves, each of them short enough to name,
    // one then moved into the other).
    let long = "L".repeat(250);
    let out = s.sh(&format!(
        "cd /workspace && mkdir deep && cd deep && i=0; \
         while [ $i -lt {DEPTH} ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; echo leaf > leaf; \
         P={long}; i=1; while [ $i -lt 12 ]; do P=\"$P/{long}\"; i=$((i+1)); done; \
         cd /workspace && mkdir long && cd long && mkdir -p \"A/$P\" \"B/$P\" && \
         echo leaf > \"B/$P/leaf\" && mv B \"A/$P/\" && echo made"
    ));
    assert!(out.stdout.contains("made"), "{out:?}");
    let what = format!(
        "a tree {DEPTH} directories deep and one of 24 names of 250 characters (over 6,000 \
         characters of path) in the workspace"
    );

    let backup = s.h.home.scratch().join("deep.tar.gz");
    let run =
        s.h.home
            .run(&["backup", "--json", "--out", backup.to_str().unwrap()]);
    r.check(
        &format!("backup with {what}"),
        if run.code == 0 {
            let skipped = run.json()["skipped"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|e| {
                            let p = e["path"].as_str().unwrap_or("");
                            p.contains("/workspace/deep") || p.contains("/workspace/long")
                        })
                        .count()
                })
                .unwrap_or(0);
            Ok(format!(
                "succeeded; {skipped} entries of the trees reported as skipped"
            ))
        } else {
            Err(format!("failed: {}", first_line(&run.stderr)))
        },
    );
    r.check("bob, with alice's deep trees", bob_answers(&s, "deep?"));

    r.check(
        &format!("a new container for alice with {what}"),
        recreate_alice(&s, 0.5),
    );

    // As under a service manager's usual limit of 1,024 open files.
    let run = run_bounded(&s.h.home, &["remove", "alice", "--purge"], Some(1024));
    let left = names_in(&s.h.home.path("archive"));
    r.check(
        &format!("remove alice --purge with {what} (ulimit -n 1024)"),
        run.finished().and_then(|()| {
            let code = run.status.and_then(|s| s.code()).unwrap_or(-1);
            let text = run.text();
            // Whatever it could not delete, it must say so.
            let unreported: Vec<&String> = left.iter().filter(|n| !text.contains(*n)).collect();
            if code == 0 && !s.h.home.workspace("alice").exists() && unreported.is_empty() {
                Ok(match left.len() {
                    0 => "succeeded; nothing left behind".to_string(),
                    n => format!("succeeded; {n} entries left behind, each reported"),
                })
            } else {
                Err(format!(
                    "exit {code}: {}; left behind in archive/: {left:?}",
                    first_line(&String::from_utf8_lossy(&run.stderr))
                ))
            }
        }),
    );
    r.check("bob, at the end", bob_answers(&s, "still here?"));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

#[test]
fn control_characters_in_names_and_titles_forge_no_output() {
    let s = Sandbox::new();
    let mut r = Report::new();
    const FORGED: &str = "FORGED-LINE";
    // A forged line: one that begins with the planted text, or any escape or bell character.
    let is_forged =
        |l: &str| l.trim_start().starts_with(FORGED) || l.contains('\u{1b}') || l.contains('\u{7}');
    let has_forgery = |text: &str| text.lines().any(is_forged);
    let forged_line = |text: &str| {
        text.lines()
            .find(|l| is_forged(l))
            .unwrap_or("")
            .escape_debug()
            .to_string()
    };

    // A file in out/ whose name holds a line break and a terminal escape.
    let out = s.sh(&format!(
        "printf 'x' > \"/ipc/out/$(printf '1-a\\n{FORGED} level=ERROR all instances compromised\\033[2J.json')\" && echo planted"
    ));
    assert!(out.stdout.contains("planted"), "{out:?}");
    wait_until(Duration::from_secs(30), || {
        s.daemon
            .log_text()
            .lines()
            .any(|l| l.contains("quarantined IPC file"))
    });
    std::thread::sleep(Duration::from_secs(1));
    let log = s.daemon.log_text();
    r.check(
        "a file in /ipc/out named with a line break and an escape sequence: the daemon's log",
        if has_forgery(&log) {
            Err(format!("a forged log line: {}", forged_line(&log)))
        } else {
            Ok("no forged line, no escape sequence".into())
        },
    );

    // SOUL.md's title, which `show` prints.
    let out = s.sh(&format!(
        "cp /workspace/SOUL.md /tmp/soul && \
         {{ printf '# Title\\033]0;owned\\007\\033[2J\\n{FORGED} state: running\\n'; cat /tmp/soul; }} > /workspace/SOUL.md && echo planted"
    ));
    assert!(out.stdout.contains("planted"), "{out:?}");
    let run = run_bounded(&s.h.home, &["show", "alice"], None);
    let text = run.text();
    r.check(
        "a SOUL.md title with escape sequences: show alice",
        run.finished().and_then(|()| {
            if has_forgery(&text) {
                Err(format!("printed: {}", forged_line(&text)))
            } else {
                Ok("no escape sequence printed".into())
            }
        }),
    );
    s.sh("cp /tmp/soul /workspace/SOUL.md");

    // A link in the workspace (which backup skips and names) with a line break in its name.
    let out = s.sh(&format!(
        "ln -s /nowhere \"/workspace/$(printf 'x\\n  {FORGED} skipped everything of bob: forged\\033[2J')\" && echo planted"
    ));
    assert!(out.stdout.contains("planted"), "{out:?}");
    let backup = s.h.home.scratch().join("names.tar.gz");
    let run = s.h.home.run(&["backup", "--out", backup.to_str().unwrap()]);
    r.check(
        "a workspace link named with a line break and an escape sequence: backup's output",
        if run.code != 0 {
            Err(format!("backup failed: {}", first_line(&run.stderr)))
        } else if has_forgery(&run.stdout) {
            Err(format!("a forged line: {}", forged_line(&run.stdout)))
        } else {
            Ok("no forged line, no escape sequence".into())
        },
    );
    s.sh("rm -f /workspace/x*");
    r.check("bob, at the end", bob_answers(&s, "names?"));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}

#[test]
fn links_fifos_and_wrong_kinds_everywhere_the_host_looks() {
    let mut s = Sandbox::new();
    let mut r = Report::new();
    let decoy = Decoy::new(&s.h.home.root);
    // Every name of the workspace the host reads or judges, as something else: links to decoy
    // entries, a FIFO, a file where a directory belongs; and in in/ a FIFO and a link under
    // old temporary names (which the host clears).
    let plant = format!(
        "cd /workspace && mv AGENTS.md .AGENTS.md.real && mv memory .memory.real && mv skills .skills.real && \
         mkfifo AGENTS.md && ln -s '{sub}' memory && echo file > skills && \
         ln -s '{secret}' memory.md && ln -s '{notes}' notes-link && \
         mkfifo /ipc/in/.fifo.json.tmp && ln -s '{notes}' /ipc/in/.link.json.tmp && \
         touch -h -d '2000-01-01 00:00:00' /ipc/in/.fifo.json.tmp /ipc/in/.link.json.tmp && \
         ln -s '{sub}' /ipc/out/1-link.json && mkfifo /ipc/out/2-fifo.json && echo planted",
        sub = decoy.host_path("sub"),
        secret = decoy.host_path("secret.md"),
        notes = decoy.host_path("notes.txt"),
    );
    let out = s.sh(&plant);
    assert!(out.stdout.contains("planted"), "{out:?}");

    // No message for alice here: her agent reads AGENTS.md for a turn.
    nudge(&s);
    for (what, args) in [
        ("doctor --fix", vec!["doctor", "--fix"]),
        ("backup", vec!["backup", "--json"]),
        ("list", vec!["list"]),
        ("status", vec!["status"]),
    ] {
        let run = run_bounded(&s.h.home, &args, None);
        r.check(
            &format!("{what} over a workspace of links, FIFOs and wrong kinds"),
            run.finished().and_then(|()| {
                if run.text().contains(SECRET) {
                    Err("printed the root-only file's title".into())
                } else {
                    Ok(format!(
                        "finished (exit {})",
                        run.status.and_then(|s| s.code()).unwrap_or(-1)
                    ))
                }
            }),
        );
    }
    r.check(
        "a new container for alice over them",
        recreate_alice(&s, 0.75),
    );
    s.restart_daemon();
    nudge(&s);
    r.check(
        "the decoy, after doctor --fix, backup, list, status, a new container and a daemon restart",
        untouched(&decoy),
    );
    let out = s.sh(
        "cd /workspace && rm -f AGENTS.md memory skills memory.md notes-link \
         /ipc/in/.fifo.json.tmp /ipc/in/.link.json.tmp && \
         mv .AGENTS.md.real AGENTS.md && mv .memory.real memory && mv .skills.real skills && echo back",
    );
    assert!(out.stdout.contains("back"), "{out:?}");
    r.check("alice, with her files back", alice_recovers(&mut s));
    r.check("bob, at the end", bob_answers(&s, "kinds?"));
    r.check("the daemon, at the end", daemon_healthy(&s));
    r.finish();
}
