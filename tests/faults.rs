//! Faults injected on purpose, and what must hold afterwards: the daemon killed with SIGKILL
//! at random points while messages flow, an agent that dies mid-turn (again and again for a
//! poison message), the Docker engine going away while messages keep flowing, a full disk,
//! and a flood of malformed IPC files. Each test prints the fault it injected and the
//! outcome. Random choices come from a seed that is printed; `SUPERVISOR_FAULT_SEED=<seed>`
//! repeats a run.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::daemon::{send_wait_in_background, wait_until, with_docker, Daemon, ReadyHome};
use common::fake_llm::FakeLlm;
use common::malformed::{self, Entry, XorShift};
use common::TestHome;
use serde_json::json;
use supervisor::infra::docker::container;
use supervisor_agent::protocol::{parse_envelope, EnvelopeError};

const LONG: Duration = Duration::from_secs(120);

fn db(home: &TestHome) -> rusqlite::Connection {
    rusqlite::Connection::open(home.path("supervisor.db")).unwrap()
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn strings(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    db.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn report(fault: &str, outcome: &str) {
    println!("fault: {fault}\n  outcome: {outcome}");
}

/// The exactly-once rules, checked in the database for every instance at once: every inbound
/// message answered, exactly one final answer per turn, no turn shared by two instances.
fn assert_exactly_once(home: &TestHome) {
    let db = db(home);
    let open = count(
        &db,
        "SELECT count(*) FROM messages WHERE direction = 'in' AND state != 'answered'",
    );
    assert_eq!(open, 0, "every inbound message is answered");
    let turns_without_one_final = strings(
        &db,
        "SELECT t.turn_id FROM (SELECT DISTINCT turn_id FROM messages WHERE direction = 'in') t
         WHERE (SELECT count(*) FROM messages f WHERE f.turn_id = t.turn_id
                AND f.direction = 'out' AND f.state = 'final') != 1",
    );
    assert!(
        turns_without_one_final.is_empty(),
        "turns without exactly one final answer: {turns_without_one_final:?}"
    );
    let shared = strings(
        &db,
        "SELECT turn_id FROM messages WHERE turn_id IS NOT NULL
         GROUP BY turn_id HAVING count(DISTINCT instance_id) > 1",
    );
    assert!(
        shared.is_empty(),
        "turn ids shared by instances: {shared:?}"
    );
}

fn kill_container(h: &ReadyHome, instance: &str) {
    let id = h
        .container_of(instance)
        .unwrap_or_else(|| panic!("{instance} has no container"))
        .id;
    with_docker(async move |d| container::kill(&d, &id).await.unwrap());
}

// ---------------------------------------------------------------------------------------
// a. kill -9 of the daemon at random points while 1,000 messages flow
// ---------------------------------------------------------------------------------------

#[test]
fn the_daemon_killed_at_random_points_while_1000_messages_flow_answers_each_exactly_once() {
    const TOTAL: usize = 1000;
    const SENDERS: usize = 6;
    const KILLS: usize = 6;
    let seed = malformed::seed();
    println!("seed {seed} (SUPERVISOR_FAULT_SEED={seed} repeats this run)");
    let mut rng = XorShift::new(seed);
    let instances = ["ann", "ben", "cat"];
    let h = ReadyHome::new();
    for name in instances {
        h.home.run(&["create-instance", name]).ok();
    }
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "--all", "--wait"]).ok();

    // Kill points: after a random number of messages has been sent, plus a random delay.
    let mut points: Vec<usize> = (0..KILLS).map(|_| rng.range(30, 970) as usize).collect();
    points.sort();
    let sent = AtomicUsize::new(0);
    // Sends that failed even after `send`'s own retries (the daemon died under each of them):
    // sent again under the same id, so each message is still stored once.
    let ambiguous: Mutex<Vec<(String, String)>> = Mutex::default();
    let started = Instant::now();
    let mut kills = Vec::new();
    std::thread::scope(|s| {
        for k in 0..SENDERS {
            let (home, sent, ambiguous) = (&h.home, &sent, &ambiguous);
            let mut pace = XorShift::new(seed.wrapping_add(k as u64 + 1));
            s.spawn(move || {
                for i in (k..TOTAL).step_by(SENDERS) {
                    let (instance, body) = (instances[i % instances.len()], format!("m{i:04}"));
                    let mut tries = 0;
                    loop {
                        // Without a daemon, `send` stores the message itself: it never fails
                        // for want of one.
                        let run = home.run(&["send", instance, &body, "--id", &body]);
                        if run.code == 0 {
                            break;
                        }
                        tries += 1;
                        assert!(tries < 50, "send keeps failing: {}", run.stderr);
                        let error = run.stderr.trim().to_string();
                        ambiguous.lock().unwrap().push((body.clone(), error));
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(pace.below(15)));
                }
            });
        }
        for &point in &points {
            assert!(
                wait_until(LONG, || sent.load(Ordering::SeqCst) >= point),
                "senders stalled before {point}"
            );
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            let at = sent.load(Ordering::SeqCst);
            daemon.kill9();
            // Messages keep arriving (stored by `send` itself) while no daemon runs.
            std::thread::sleep(Duration::from_millis(rng.below(700)));
            daemon = Daemon::start(&h.home);
            kills.push(at);
        }
    });
    let everything_sent = started.elapsed();
    let db = db(&h.home);
    let answered = || {
        count(
            &db,
            "SELECT count(*) FROM messages WHERE direction = 'in' AND state != 'answered'",
        ) == 0
    };
    assert!(
        wait_until(Duration::from_secs(300), answered),
        "not everything answered: {}",
        daemon.log_text()
    );
    assert!(daemon.is_running());

    assert_exactly_once(&h.home);
    let failures = ambiguous.into_inner().unwrap();
    // How a send fails when the daemon dies under it (ids and paths left out).
    let mut failure_kinds: Vec<String> = failures
        .iter()
        .map(|(_, e)| e.split(':').take(2).collect::<Vec<_>>().join(":"))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    failure_kinds.sort();
    for (body, e) in &failures {
        assert!(
            e.contains("talking to the daemon failed"),
            "{body}: a send failed for another reason: {e}"
        );
    }
    let mut stored: HashMap<String, (String, i64)> = HashMap::new();
    let rows: Vec<(String, String)> = db
        .prepare(
            "SELECT m.body, i.name FROM messages m JOIN instances i ON i.id = m.instance_id
             WHERE m.direction = 'in'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (body, instance) in &rows {
        let e = stored.entry(body.clone()).or_insert((instance.clone(), 0));
        assert_eq!(&e.0, instance, "{body} reached the wrong instance");
        e.1 += 1;
    }
    for i in 0..TOTAL {
        let body = format!("m{i:04}");
        let (instance, n) = stored
            .get(&body)
            .unwrap_or_else(|| panic!("{body} was lost"));
        assert_eq!(instance, instances[i % instances.len()]);
        assert_eq!(*n, 1, "{body} stored {n} times");
    }
    assert_eq!(stored.len(), TOTAL);
    // Every answer is the echo of one of its turn's messages, and nothing failed or was
    // parked: the daemon dying is never counted as an attempt of the agent.
    let bad_answers = count(
        &db,
        "SELECT count(*) FROM messages f WHERE f.direction = 'out' AND f.state = 'final'
         AND (f.error IS NOT NULL OR NOT EXISTS (SELECT 1 FROM messages m
              WHERE m.turn_id = f.turn_id AND m.direction = 'in'
              AND f.body = 'echo: [local] ' || m.body))",
    );
    assert_eq!(bad_answers, 0, "answers that are not an echo of their turn");
    assert_eq!(
        count(
            &db,
            "SELECT max(attempts) FROM messages WHERE direction = 'in'"
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM events WHERE kind = 'message.parked'"
        ),
        0
    );
    let turns = count(
        &db,
        "SELECT count(DISTINCT turn_id) FROM messages WHERE direction = 'in'",
    );
    report(
        &format!(
            "kill -9 of the daemon {} times (after {kills:?} of {TOTAL} messages were sent), \
             restarted each time; {SENDERS} senders over {} instances (seed {seed})",
            kills.len(),
            instances.len()
        ),
        &format!(
            "all {TOTAL} messages stored once each ({} sends failed after their retries as \
             the daemon died under them and were sent again under the same id \
             ({failure_kinds:?})) and answered exactly once: {} inbound rows in {turns} \
             turns, one final answer each, no turn shared; sending took {everything_sent:.1?}",
            failures.len(),
            rows.len()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// b. an agent that dies mid-turn, and a poison message that always kills it
// ---------------------------------------------------------------------------------------

fn use_model(h: &ReadyHome, instance: &str, name: &str, fake: &FakeLlm) {
    h.edit_config(instance, |c| {
        c["model"] = json!({"provider": "openai", "name": name, "base_url": fake.base_url,
                            "api_key_env": null});
    });
}

fn attempts_of(h: &ReadyHome, body: &str) -> i64 {
    db(&h.home)
        .query_row(
            "SELECT attempts FROM messages WHERE direction = 'in' AND body = ?1",
            [body],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn an_agent_killed_mid_turn_twice_answers_after_its_restart_exactly_once() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    use_model(&h, "alice", "stall", &fake);
    let daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let text = "please stall a little";
    let waiter = send_wait_in_background(&h, "alice", text);
    for call in 1..=2 {
        assert!(
            wait_until(LONG, || fake.calls() >= call),
            "model call {call} never came: {}",
            daemon.log_text()
        );
        kill_container(&h, "alice");
    }
    let out = waiter.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v}");
    assert_eq!(v["reply"], "answered after stalling");
    let finals = common::daemon::finals(&h.home, "alice");
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(
        attempts_of(&h, text),
        3,
        "three agent runs took the turn up"
    );
    assert!(fake.calls() >= 3);
    assert_exactly_once(&h.home);
    report(
        "the agent's container killed (SIGKILL) twice while its turn waited for the model",
        &format!(
            "restarted by the daemon each time; the third run answered, once (attempts 3, \
             {} model calls); send --wait got the answer",
            fake.calls()
        ),
    );
}

#[test]
fn a_poison_message_is_parked_after_three_attempts_and_the_next_one_is_answered() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    use_model(&h, "alice", "stall", &fake);
    let daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let poison = "stall: this message kills the agent every time";
    let waiter = send_wait_in_background(&h, "alice", poison);
    let db = db(&h.home);
    let parked = || {
        count(
            &db,
            "SELECT count(*) FROM events WHERE kind = 'message.parked'",
        ) > 0
    };
    // Whenever an agent run takes the poison up (it asks the model), it dies.
    let (mut kills, mut seen) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !parked() {
        assert!(
            Instant::now() < deadline,
            "never parked: {}",
            daemon.log_text()
        );
        if fake.calls() > seen && !parked() {
            seen = fake.calls();
            kill_container(&h, "alice");
            kills += 1;
            assert!(kills <= 3, "killed {kills} times and still not parked");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a parked message is a failed send"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = "Sorry, I could not answer this time: this message was set aside after 3 \
                    attempts that did not finish (the agent stopped each time)";
    assert_eq!(
        (v["failed"].as_bool(), v["reply"].as_str()),
        (Some(true), Some(expected))
    );
    assert_eq!(kills, 3);
    assert_eq!(attempts_of(&h, poison), 3);
    let (error, detail): (String, String) = db
        .query_row(
            "SELECT f.error, e.detail FROM messages f, events e
             WHERE f.direction = 'out' AND f.state = 'final' AND e.kind = 'message.parked'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(error.starts_with("this message was set aside after 3 attempts"));
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["attempts"], 3);
    let in_dir = h.home.ipc_in("alice");
    let turn_files = std::fs::read_dir(&in_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path())
                .ok()
                .and_then(|b| parse_envelope(&b).ok())
                .is_some_and(|env| env.payload.type_name() == "turn")
        })
        .count();
    assert_eq!(turn_files, 0, "the parked turn's file left in/");

    // The instance moves on.
    let next = h
        .home
        .run(&["send", "alice", "something easy", "--wait"])
        .ok();
    assert_eq!(next.stdout.trim(), "fast answer");
    assert_eq!(common::daemon::finals(&h.home, "alice").len(), 2);
    assert_exactly_once(&h.home);
    report(
        "a poison message: the agent's container killed every time a run took it up",
        &format!(
            "killed {kills} times, then parked with \"{expected}\" (send --wait exit 1), a \
             message.parked event recorded; the next message was answered normally"
        ),
    );
}

// ---------------------------------------------------------------------------------------
// c. the Docker engine goes away and comes back
// ---------------------------------------------------------------------------------------

#[test]
fn messages_flow_while_the_engine_is_away_and_the_daemon_reconverges_after() {
    let h = ReadyHome::new();
    for name in ["alice", "bob"] {
        h.home.run(&["create-instance", name]).ok();
    }
    let mut proxy = common::proxy::DockerProxy::start(&h.home.scratch().join("docker.sock"));
    std::fs::write(
        h.home.path("supervisor.toml"),
        format!("[docker]\nhost = \"{}\"\n", proxy.uri()),
    )
    .unwrap();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "--all", "--wait"]).ok();

    proxy.cut();
    assert!(
        wait_until(LONG, || daemon
            .log_text()
            .contains("Docker engine unreachable")),
        "the daemon never noticed: {}",
        daemon.log_text()
    );
    let mut answers = Vec::new();
    for i in 0..3 {
        let text = format!("while the engine is away {i}");
        let out = h.home.run(&["send", "alice", &text, "--wait"]).ok();
        assert_eq!(out.stdout.trim(), format!("echo: [local] {text}"));
        answers.push(out.stdout.trim().to_string());
    }
    // bob's container dies while the daemon cannot see the engine.
    kill_container(&h, "bob");
    h.home.run(&["send", "bob", "are you back?"]).ok();
    let out = h.home.run(&["send", "alice", "still here?", "--wait"]).ok();
    assert_eq!(out.stdout.trim(), "echo: [local] still here?");
    assert!(daemon.is_running(), "the daemon survived the outage");
    assert!(
        !h.container_of("bob").unwrap().running,
        "nothing restarts bob while the engine is away"
    );
    assert!(common::daemon::finals(&h.home, "bob").is_empty());

    proxy.resume();
    assert!(
        wait_until(LONG, || h.container_of("bob").is_some_and(|c| c.running)),
        "bob not restarted: {}",
        daemon.log_text()
    );
    assert!(
        wait_until(LONG, || common::daemon::finals(&h.home, "bob").len() == 1),
        "bob's message not answered: {}",
        daemon.log_text()
    );
    assert_eq!(
        common::daemon::finals(&h.home, "bob")[0]["body"],
        "echo: [local] are you back?"
    );
    assert!(wait_until(LONG, || h.record("bob").state == "running"));
    assert!(daemon.is_running());
    assert_exactly_once(&h.home);
    report(
        "the Docker engine unreachable (its socket cut) while two instances ran; bob's \
         container killed during the outage",
        &format!(
            "alice kept answering through the outage ({} messages); once the engine was back \
             the daemon restarted bob and its waiting message was answered once",
            answers.len() + 1
        ),
    );
}

// ---------------------------------------------------------------------------------------
// d. a full disk
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted for the test; unmounted when dropped, even when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the full-disk test mounts a {size} tmpfs at {} and cannot: {} (it needs root, or \
             CAP_SYS_ADMIN, and a mount(8))",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// Fills the file system holding `path` to the last byte.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for chunk in [64 * 1024, 4096, 1] {
        let buf = vec![0xa5u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
    }
    written
}

/// A command that failed cleanly: a non-zero exit and one line on stderr, no panic.
#[track_caller]
fn fails_in_one_line(run: common::Run, what: &str) -> String {
    assert_ne!(
        run.code, 0,
        "{what} succeeded on a full disk: {}",
        run.stdout
    );
    let err = run.stderr.trim().to_string();
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked") && !err.contains("backtrace"),
        "{what}: {err}"
    );
    err
}

/// A command that failed the way a full disk should make it fail: one line naming the cause.
#[track_caller]
fn fails_for_want_of_space(run: common::Run, what: &str) -> String {
    let err = fails_in_one_line(run, what);
    assert!(
        ["No space left on device", "disk is full"]
            .iter()
            .any(|n| err.contains(n)),
        "{what}: the error does not name the cause: {err}"
    );
    err
}

fn writes_on_a_full_disk(home: &TestHome, check: fn(common::Run, &str) -> String) -> Vec<String> {
    vec![
        check(home.run(&["create-instance", "bob"]), "create-instance"),
        check(
            home.run(&["send", "alice", "written while the disk was full"]),
            "send",
        ),
        check(
            home.run(&[
                "task",
                "add",
                "alice",
                "--every",
                "2h",
                "--prompt",
                "never stored",
            ]),
            "task add",
        ),
    ]
}

#[test]
fn a_full_disk_gives_clear_errors_and_never_corrupts_the_database() {
    let home = TestHome::new();
    let _disk = Tmpfs::mount(&home.root, "8m");
    home.run(&["init"]).ok();
    home.run(&["create-instance", "alice"]).ok();
    home.run(&["send", "alice", "written before the disk filled"])
        .ok();
    home.run(&[
        "task",
        "add",
        "alice",
        "--every",
        "1h",
        "--prompt",
        "tidy the notes",
    ])
    .ok();
    let counts = |conn: &rusqlite::Connection| {
        (
            count(conn, "SELECT count(*) FROM messages"),
            count(conn, "SELECT count(*) FROM tasks"),
            count(conn, "SELECT count(*) FROM instances"),
        )
    };
    let before = counts(&db(&home));

    // 1. The disk fills while the database is open elsewhere (as when a daemon runs): its
    //    shared-memory file exists, so the database opens, reads work and writes fail.
    let held = db(&home);
    counts(&held);
    let ballast = home.path("ballast");
    let filled = fill(&ballast);
    let while_open = writes_on_a_full_disk(&home, fails_for_want_of_space);
    home.run(&["list"]).ok();
    let history = home.run(&["history", "alice"]).ok();
    assert!(history.stdout.contains("written before the disk filled"));

    // 2. Nothing has the database open: SQLite cannot even size its shared-memory file, so
    //    every command, reading ones too, fails at opening the database.
    drop(held);
    let filled = filled + fill(&home.path("ballast-2"));
    let while_closed = writes_on_a_full_disk(&home, fails_in_one_line);
    let list = fails_in_one_line(home.run(&["list"]), "list");
    for err in while_closed.iter().chain([&list]) {
        assert!(err.contains("supervisor.db"), "names the database: {err}");
    }

    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(home.path("ballast-2")).unwrap();
    let conn = db(&home);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(counts(&conn), before, "nothing half-written, nothing lost");
    let kept: String = conn
        .query_row("SELECT body FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "written before the disk filled");
    let leftovers: Vec<String> = common::tree(&home.path("instances"))
        .into_iter()
        .filter(|p| !p.starts_with("alice"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-made instance left: {leftovers:?}"
    );
    drop(conn);

    // With room again, the same commands work.
    home.run(&["create-instance", "bob"]).ok();
    home.run(&["send", "alice", "written after"]).ok();
    home.run(&[
        "task",
        "add",
        "alice",
        "--every",
        "2h",
        "--prompt",
        "stored now",
    ])
    .ok();
    let conn = db(&home);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(counts(&conn), (before.0 + 1, before.1 + 1, before.2 + 1));
    report(
        &format!(
            "a full disk: an 8 MiB tmpfs home filled to the last byte ({filled} bytes), first \
             while the database was open elsewhere, then while nothing had it open"
        ),
        &format!(
            "with the database open, writes failed in one line naming the cause ({}) and reads \
             still worked; with nothing holding it, every command failed in one line at opening \
             it ({:?}); after freeing space integrity_check is ok, the earlier data is intact, \
             no half-made instance is left, and the same commands succeed",
            while_open
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join("; "),
            list
        ),
    );
}

// ---------------------------------------------------------------------------------------
// e. 10,000 malformed IPC files
// ---------------------------------------------------------------------------------------

fn sha(path: &Path) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

#[test]
fn ten_thousand_malformed_ipc_files_are_quarantined_and_valid_messages_still_answered() {
    const JUNK: usize = 10_000;
    const DURING: usize = 20;
    let seed = malformed::seed();
    println!("seed {seed} (SUPERVISOR_FAULT_SEED={seed} repeats this run)");
    let h = ReadyHome::new();
    for name in ["alice", "bob"] {
        h.home.run(&["create-instance", name]).ok();
    }
    // Entries are renamed into out/ from a directory on the same file system (alice's
    // volume, outside her mounts), and hard links can only reach files there: the decoy is one.
    let volume = h.home.volume("alice");
    let decoy = volume.join("decoy.json");
    std::fs::write(&decoy, b"{\"not\": \"an envelope\"").unwrap();
    let targets = malformed::Targets {
        other_instance: h.home.path("instances/bob"),
        decoy: decoy.clone(),
    };
    let junk = malformed::generate(&mut XorShift::new(seed), JUNK, &targets);
    // The generator only makes files the host must refuse.
    for j in &junk {
        if let Entry::File(bytes) = &j.entry {
            match parse_envelope(bytes) {
                Err(_) => {}
                Ok(env) => assert!(
                    !supervisor::infra::ipc::from_agent(&env.payload),
                    "{:?} ({}) is a valid agent envelope",
                    j.name,
                    j.kind
                ),
            }
        }
    }
    let watched = [
        PathBuf::from("/etc/passwd"),
        decoy.clone(),
        h.home.path("instances/bob/config.json"),
    ];
    let sums: Vec<Vec<u8>> = watched.iter().map(|p| sha(p)).collect();

    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    // bob's volume is mounted by now (his actor opened it); nothing in it may change.
    h.home.volume("bob");
    let bob_before = common::tree(&h.home.path("instances/bob"));
    // Everything is made beside out/ and renamed into it, so each entry appears whole.
    let stage = volume.join("stage");
    std::fs::create_dir(&stage).unwrap();
    for j in &junk {
        malformed::create(&stage, j);
    }
    let out = h.home.ipc_out("alice");
    // Valid answers naming turns alice does not have: read, refused, recorded.
    let spoofed = 25;
    for i in 0..spoofed {
        let env = json!({"v": 1, "id": format!("spoof{i}"), "ts": 1, "type": "reply",
                         "turn_id": format!("not-alices-turn-{i}"), "body": "spoofed"});
        std::fs::write(stage.join(format!("1-spoof{i}.json")), env.to_string()).unwrap();
    }

    let flood_started = Instant::now();
    let replies = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            (0..DURING)
                .map(|i| {
                    let text = format!("during the flood {i}");
                    let run = h
                        .home
                        .run(&["send", "alice", &text, "--wait", "--timeout", "600"]);
                    (text, run)
                })
                .collect::<Vec<_>>()
        });
        let mut names: Vec<_> = std::fs::read_dir(&stage)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            std::fs::rename(stage.join(&name), out.join(&name)).unwrap();
        }
        sender.join().unwrap()
    });
    for (text, run) in replies {
        assert_eq!(run.code, 0, "{text}: {}", run.stderr);
        assert_eq!(run.stdout.trim(), format!("echo: [local] {text}"));
    }

    let temps: Vec<&malformed::Junk> = junk.iter().filter(|j| j.temp).collect();
    let bad: Vec<&malformed::Junk> = junk.iter().filter(|j| !j.temp).collect();
    assert!(
        wait_until(Duration::from_secs(600), || std::fs::read_dir(&out)
            .unwrap()
            .count()
            == temps.len()),
        "out/ not drained: {} left; {}",
        std::fs::read_dir(&out).unwrap().count(),
        daemon.log_text()
    );
    let flood_took = flood_started.elapsed();
    assert!(daemon.is_running(), "the daemon survived");
    // Names the host skips are left as they are, unread.
    for t in &temps {
        let Entry::File(bytes) = &t.entry else {
            unreachable!()
        };
        assert_eq!(&std::fs::read(out.join(&t.name)).unwrap(), bytes);
    }

    // The quarantine keeps copies (regular files only, never a link or a FIFO moved in), each
    // with its one-line reason, and never more than its cap.
    let quarantine = h.home.quarantine("alice");
    let mut held: HashMap<String, PathBuf> = HashMap::new();
    for e in std::fs::read_dir(&quarantine).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let (stamp, rest) = name.split_once('-').unwrap();
        assert!(
            stamp.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{name}"
        );
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        assert!(
            meta.is_file(),
            "{name} is not a regular file: {:?}",
            meta.file_type()
        );
        assert_eq!(
            meta.len().min(1 << 20),
            meta.len(),
            "{name}: a copy is capped"
        );
        held.insert(rest.to_string(), e.path());
    }
    let reasons: Vec<&String> = held.keys().filter(|k| k.ends_with(".reason")).collect();
    assert!(!reasons.is_empty());
    assert!(
        reasons.len() <= supervisor::infra::ipc::QUARANTINE_MAX_ITEMS,
        "{} items kept",
        reasons.len()
    );
    let mut reasons_by_kind: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut kept = 0;
    for j in &bad {
        let safe = supervisor::infra::ipc::quarantine_name(&j.name.to_string_lossy());
        let Some(reason_file) = held.get(&format!("{safe}.reason")) else {
            continue;
        };
        kept += 1;
        let reason = std::fs::read_to_string(reason_file).unwrap();
        assert!(
            reason.ends_with('\n')
                && reason.trim().lines().count() == 1
                && !reason.trim().is_empty(),
            "{reason:?}"
        );
        let expected = match &j.entry {
            // A name is judged before what it names.
            _ if j.name.to_str().is_none() => "the name is not UTF-8",
            Entry::Symlink(_) => "a symbolic link",
            Entry::Fifo => "a FIFO",
            Entry::Socket => "a socket",
            Entry::Dir => "a directory",
            Entry::HardLink(_) | Entry::File(_) => "",
        };
        assert!(reason.contains(expected), "{:?}: {reason}", j.name);
        // Only a regular file's bytes are copied.
        let copied = held.contains_key(&safe);
        assert_eq!(
            copied,
            matches!(j.entry, Entry::HardLink(_) | Entry::File(_)),
            "{:?} ({})",
            j.name,
            j.kind
        );
        let readable_name = j.name.to_str().is_some();
        if j.kind == "oversized" && readable_name {
            assert!(reason.contains("over the 1048576-byte limit"), "{reason}");
        }
        if j.kind == "host-only-type" && readable_name {
            assert!(reason.contains("is not sent by an agent"), "{reason}");
        }
        reasons_by_kind
            .entry(j.kind)
            .or_default()
            .insert(reason.trim().chars().take(60).collect());
    }
    assert!(kept > 0);
    // Nothing a link pointed at was touched; bob is as he was.
    let after: Vec<Vec<u8>> = watched.iter().map(|p| sha(p)).collect();
    assert_eq!(sums, after, "a link's target changed");
    assert_eq!(common::tree(&h.home.path("instances/bob")), bob_before);

    // At most one event per round (and per ten seconds), however many entries it refused;
    // together, once what was held back is recorded, they count every one.
    let db = db(&h.home);
    let summed = |kind: &str| -> (usize, u64) {
        let details = strings(
            &db,
            &format!("SELECT detail FROM events WHERE kind = '{kind}' AND instance = 'alice'"),
        );
        let total = details
            .iter()
            .map(|d| {
                serde_json::from_str::<serde_json::Value>(d).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        (details.len(), total)
    };
    common::daemon::wait_until(Duration::from_secs(120), || {
        summed("ipc.quarantined").1 >= bad.len() as u64
            && summed("ipc.unknown_turn").1 >= spoofed as u64
    });
    let (events, counted) = summed("ipc.quarantined");
    assert_eq!(
        counted,
        bad.len() as u64,
        "every refused entry is counted once"
    );
    assert!(
        events * 100 <= bad.len() * 2,
        "{events} events for {} entries",
        bad.len()
    );
    let (unknown_events, unknown) = summed("ipc.unknown_turn");
    assert_eq!(unknown, spoofed as u64, "every spoofed reply counted once");
    assert!(unknown_events as i64 <= spoofed);
    let last = h
        .home
        .run(&["send", "alice", "after the flood", "--wait"])
        .ok();
    assert_eq!(last.stdout.trim(), "echo: [local] after the flood");
    assert_eq!(
        common::daemon::finals(&h.home, "alice").len(),
        DURING + 1,
        "each valid message answered once"
    );
    assert_exactly_once(&h.home);
    assert!(!daemon.log_text().contains("panicked"));
    let mut kinds: Vec<_> = bad
        .iter()
        .map(|j| j.kind)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    kinds.sort();
    let tally: Vec<String> = kinds
        .iter()
        .map(|k| format!("{k} {}", bad.iter().filter(|j| j.kind == *k).count()))
        .collect();
    report(
        &format!(
            "{JUNK} malformed entries dropped into a running instance's out/ (seed {seed}): {}, \
             plus {} with temporary names and {spoofed} valid replies to turns alice does not have",
            tally.join(", "),
            temps.len()
        ),
        &format!(
            "the daemon stayed up; all {} bad entries refused, {kept} of them kept in the \
             quarantine as copies with a one-line reason (links, FIFOs and sockets never \
             followed or opened), counted by {} ipc.quarantined events; temporary names left \
             unread, the spoofed replies recorded as ipc.unknown_turn; the {DURING} messages \
             sent during the flood and one after it answered exactly once; out/ drained in \
             {flood_took:.1?}",
            bad.len(),
            events
        ),
    );
}

// ---------------------------------------------------------------------------------------
// The envelope parser, fed 100,000 generated inputs.
// ---------------------------------------------------------------------------------------

/// A valid agent or host envelope with random ids, text and extra fields.
fn random_valid(rng: &mut XorShift) -> serde_json::Value {
    let mut v = if rng.chance(80) {
        malformed::valid_agent_envelope(rng)
    } else {
        malformed::host_only_envelope(rng)
    };
    let id_chars = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    let mut id = || -> String {
        let n = rng.range(1, 65) as usize;
        (0..n).map(|_| *rng.pick(id_chars) as char).collect()
    };
    v["id"] = json!(id());
    for field in ["turn_id", "request_id"] {
        if v.get(field).is_some() {
            v[field] = json!(id());
        }
    }
    let texts = [
        "",
        "hello",
        "ünïcödé 🙂",
        "line\nbreak \"quoted\" \\ \u{1}",
        "\u{0}",
    ];
    for field in ["body", "error", "content", "agent_version", "action"] {
        if v.get(field).is_some() {
            v[field] = json!(rng.pick(&texts));
        }
    }
    v["ts"] = json!(rng.next_u64() as i64);
    if rng.chance(20) {
        v["unknown_extra"] = json!({"nested": [1, 2.5, -0.0, 1e300, null]});
    }
    v
}

/// One random change to some bytes: a flip, a cut, an insertion, a repeat or a swap.
fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(rng.next_u64() as u8);
        return;
    }
    let at = rng.below(bytes.len() as u64) as usize;
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => {
            let end = (at + rng.range(1, 16) as usize).min(bytes.len());
            bytes.drain(at..end);
        }
        2 => bytes.insert(at, *rng.pick(b"{}[]\":,0123456789-.eE \\u\xff")),
        3 => {
            let end = (at + rng.range(1, 32) as usize).min(bytes.len());
            let piece = bytes[at..end].to_vec();
            bytes.splice(at..at, piece);
        }
        4 => {
            let other = rng.below(bytes.len() as u64) as usize;
            bytes.swap(at, other);
        }
        _ => bytes[at] = rng.next_u64() as u8,
    }
}

#[test]
fn parse_envelope_never_panics_and_accepts_only_what_round_trips() {
    const INPUTS: usize = 100_000;
    let seed = malformed::seed();
    println!("seed {seed} (SUPERVISOR_FAULT_SEED={seed} repeats this run)");
    let mut rng = XorShift::new(seed);
    let (mut oversized, mut deep) = (malformed::MAX_OVERSIZED - 2, malformed::MAX_DEEP - 20);
    let mut accepted = 0;
    let mut refused: HashMap<&'static str, usize> = HashMap::new();
    for n in 0..INPUTS {
        let (origin, bytes) = match rng.below(10) {
            0..=3 => malformed::file_content(&mut rng, &mut oversized, &mut deep),
            4..=5 => (
                "valid",
                serde_json::to_vec(&random_valid(&mut rng)).unwrap(),
            ),
            _ => {
                let mut b = serde_json::to_vec(&random_valid(&mut rng)).unwrap();
                for _ in 0..rng.range(1, 4) {
                    mutate(&mut rng, &mut b);
                }
                ("mutated", b)
            }
        };
        let parsed = std::panic::catch_unwind(|| parse_envelope(&bytes)).unwrap_or_else(|_| {
            panic!(
                "input {n} ({origin}) made parse_envelope panic: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        match parsed {
            Ok(env) => {
                accepted += 1;
                let again = env.to_json_bytes().unwrap_or_else(|e| {
                    panic!("input {n} accepted but cannot be written again ({e}): {env:?}")
                });
                assert_eq!(
                    parse_envelope(&again).as_ref(),
                    Ok(&env),
                    "input {n} ({origin}) does not survive a round trip"
                );
            }
            Err(e) => {
                assert_ne!(origin, "valid", "a valid envelope was refused: {e}");
                let kind = match e {
                    EnvelopeError::TooLarge => "too large",
                    EnvelopeError::NotUtf8 => "not UTF-8",
                    EnvelopeError::InvalidJson(_) => "invalid JSON",
                    EnvelopeError::WrongVersion(_) => "wrong version",
                    EnvelopeError::UnknownType(_) => "unknown type",
                    EnvelopeError::BadId => "bad id",
                };
                *refused.entry(kind).or_default() += 1;
            }
        }
    }
    let mut refused: Vec<_> = refused.into_iter().collect();
    refused.sort();
    report(
        &format!("{INPUTS} generated inputs fed to parse_envelope (seed {seed})"),
        &format!(
            "no panic; {accepted} accepted, each written again and read back equal; refused: \
             {refused:?}"
        ),
    );
}
