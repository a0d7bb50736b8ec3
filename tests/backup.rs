//! Backup, restore and pruning with the real binary: a backup taken from a running daemon
//! while messages flow, restored into a new home that then answers messages; damaged and
//! tampered archives refused without a trace; `db prune` on a home with old rows.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::daemon::{require_agent_bin, wait_until, Daemon, ReadyHome};
use common::{mode, TestHome};
use rusqlite::{Connection, OpenFlags};

const LONG: Duration = Duration::from_secs(60);

/// Test-only reads of a database (the product's SQL lives in src/store/).
fn db(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn message_ids(path: &Path) -> HashSet<String> {
    let conn = db(path);
    let mut stmt = conn.prepare("SELECT id FROM messages").unwrap();
    let ids = stmt.query_map([], |r| r.get(0)).unwrap();
    ids.collect::<rusqlite::Result<_>>().unwrap()
}

fn integrity(path: &Path) -> String {
    db(path)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// One archive entry: its full path (long names folded in), header and data.
type Raw = (String, tar::Header, Vec<u8>);

fn read_archive(bytes: &[u8]) -> Vec<Raw> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            (path, e.header().clone(), data)
        })
        .collect()
}

/// A valid tar.gz of these entries (a well-formed archive whose content someone changed).
fn write_archive(entries: &[Raw], path: &Path) {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (name, h, data) in entries {
        let mut h = h.clone();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap().finish().unwrap()).unwrap();
}

/// Asserts a restore into a new directory was refused in one line naming `needle`, and left
/// nothing behind: no target, no staging directory beside it.
#[track_caller]
fn refused(archive: &Path, needle: &str) {
    let target = TestHome::new();
    let out = target.run(&["restore", archive.to_str().unwrap()]);
    let out = out.fails(1, needle);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(!target.root.exists(), "the target was created");
    assert_eq!(common::tree(target.scratch()), Vec::<String>::new());
}

#[test]
fn a_backup_taken_while_messages_flow_restores_the_snapshot_and_refuses_tampering() {
    let h = ReadyHome::new();
    let home = &h.home;
    home.run(&["create-instance", "alice", "--model", "echo"])
        .ok();
    let ws = home.workspace("alice");
    std::fs::write(ws.join("notes.md"), "things to remember\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ws.join("passwd")).unwrap();
    let mut daemon = Daemon::start(home);
    home.run(&["start", "alice", "--wait"]).ok();
    for i in 0..3 {
        let answer = home
            .run(&["send", "alice", &format!("before {i}"), "--wait"])
            .ok();
        let text = &answer.stdout;
        assert!(
            text.contains("echo:") && text.contains(&format!("before {i}")),
            "{text}"
        );
    }

    let live_db = home.path("supervisor.db");
    let stop = AtomicBool::new(false);
    let sent = AtomicUsize::new(0);
    let (report, ids_before, ids_after, sent_during) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                home.run(&["send", "alice", &format!("during {i}"), "--wait"])
                    .ok();
                sent.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        });
        assert!(wait_until(LONG, || sent.load(Ordering::SeqCst) >= 3));
        // Everything committed before the backup starts must be in it; nothing committed
        // after it ends may be.
        let ids_before = message_ids(&live_db);
        let at_start = sent.load(Ordering::SeqCst);
        let report = home.run(&["backup", "--json"]).ok().json();
        let ids_after = message_ids(&live_db);
        assert!(wait_until(LONG, || sent.load(Ordering::SeqCst) >= at_start + 3));
        stop.store(true, Ordering::SeqCst);
        (
            report,
            ids_before,
            ids_after,
            sent.load(Ordering::SeqCst) - at_start,
        )
    });
    assert!(sent_during >= 3, "messages kept flowing across the backup");

    let archive = PathBuf::from(report["path"].as_str().unwrap());
    assert!(archive.starts_with(home.path("backups")), "{archive:?}");
    assert_eq!(mode(&archive), 0o600);
    let skipped = report["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["path"] == "instances/alice/workspace/passwd"
                && s["reason"].as_str().unwrap().contains("symbolic link")),
        "{skipped:?}"
    );
    let snapshot = report["database"]["messages"].as_u64().unwrap();

    // Restore into a new directory while the original daemon still runs.
    let target = TestHome::new();
    let restored = target
        .run(&["restore", archive.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(restored["integrity"], "ok");
    assert_eq!(restored["instances"], serde_json::json!(["alice"]));
    assert_eq!(restored["messages"].as_u64(), Some(snapshot));
    assert_eq!(
        restored["original_home_id"].as_str(),
        Some(h.home_id.as_str())
    );
    assert_ne!(restored["home_id"].as_str(), Some(h.home_id.as_str()));
    let _target_containers = ContainersOf(restored["home_id"].as_str().unwrap().to_string());

    let restored_db = target.path("supervisor.db");
    assert_eq!(integrity(&restored_db), "ok");
    let ids = message_ids(&restored_db);
    assert_eq!(
        ids.len() as u64,
        snapshot,
        "the restored count is the snapshot's"
    );
    assert!(
        ids_before.is_subset(&ids),
        "a message committed before the backup is missing"
    );
    assert!(
        ids.is_subset(&ids_after),
        "the backup holds a message committed after it"
    );
    // One commit's state: every answered question has its answer in the copy too.
    let orphans: i64 = db(&restored_db)
        .query_row(
            "SELECT count(*) FROM messages q WHERE q.direction = 'in' AND q.state = 'answered'
             AND NOT EXISTS (SELECT 1 FROM messages a WHERE a.turn_id = q.turn_id
                             AND a.direction = 'out' AND a.state = 'final')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);

    // The archive names files as instances/<name>/workspace/...; on disk they are in the
    // instance's volume (the live one on its mounted image, the restored one plain until its
    // daemon first starts it).
    home.volume("alice");
    for rel in [
        "supervisor.toml",
        "instances/alice/config.json",
        "instances/alice/volume/workspace/SOUL.md",
        "instances/alice/volume/workspace/AGENTS.md",
        "instances/alice/volume/workspace/memory/MEMORY.md",
        "instances/alice/volume/workspace/notes.md",
    ] {
        assert_eq!(
            std::fs::read(target.path(rel)).unwrap(),
            std::fs::read(home.path(rel)).unwrap(),
            "{rel}"
        );
        assert_eq!(mode(&target.path(rel)), 0o600, "{rel}");
    }
    assert_eq!(mode(&restored_db), 0o600);
    for dir in [
        "",
        "instances",
        "instances/alice",
        "instances/alice/volume/workspace",
        "instances/alice/volume/workspace/skills",
        "instances/alice/volume/ipc/in",
        "instances/alice/volume/ipc/out",
        "runtime",
        "run",
        "archive",
        "backups",
    ] {
        assert_eq!(mode(&target.path(dir)), 0o700, "{dir:?}");
    }
    assert!(
        std::fs::symlink_metadata(target.path("instances/alice/volume/workspace/passwd")).is_err()
    );
    assert_eq!(
        common::tree(&target.path("instances/alice/volume/ipc")),
        ["in", "out"]
    );
    let listed = target.run(&["list", "--json"]).ok().json();
    assert_eq!(listed[0]["name"], "alice");

    let bytes = std::fs::read(&archive).unwrap();
    let entries = read_archive(&bytes);
    assert_eq!(entries[0].0, "manifest.json", "the manifest comes first");
    let scratch = h.home.scratch();

    // (a) One flipped byte inside the gzip stream. A few deflate bits change nothing; pick
    // one that does change the data, as real damage would.
    let inflate = |b: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .ok()
            .map(|_| out)
    };
    let original = inflate(&bytes);
    let damaged = (bytes.len() / 2..bytes.len())
        .map(|at| {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            b
        })
        .find(|b| inflate(b) != original)
        .unwrap();
    let path = scratch.join("damaged.tar.gz");
    std::fs::write(&path, &damaged).unwrap();
    refused(&path, "the archive is");

    // (b) A well-formed archive with one file changed and the manifest kept.
    let mut changed = entries.clone();
    let soul = changed
        .iter_mut()
        .find(|(p, _, _)| p == "instances/alice/workspace/SOUL.md")
        .unwrap();
    soul.2[0] ^= 0x20;
    let path = scratch.join("changed.tar.gz");
    write_archive(&changed, &path);
    refused(
        &path,
        "instances/alice/workspace/SOUL.md: content does not match its sha256 in the manifest",
    );

    // (c) One file more than the manifest lists.
    let mut extra = entries.clone();
    let mut h2 = tar::Header::new_gnu();
    h2.set_entry_type(tar::EntryType::Regular);
    h2.set_mode(0o600);
    extra.push((
        "instances/alice/workspace/extra.sh".into(),
        h2,
        b"ls\n".to_vec(),
    ));
    let path = scratch.join("extra.tar.gz");
    write_archive(&extra, &path);
    refused(
        &path,
        "instances/alice/workspace/extra.sh: not listed in the manifest",
    );

    // (d) A target that already holds a database: the live home itself.
    let before = std::fs::metadata(&live_db).unwrap().modified().unwrap();
    home.run(&["restore", archive.to_str().unwrap()])
        .fails(1, "already holds a supervisor database");
    assert_eq!(
        std::fs::metadata(&live_db).unwrap().modified().unwrap(),
        before
    );

    // The restored home works on its own: it gets a runtime and answers from the restored
    // conversation (running beside the original is covered below).
    daemon.terminate();
    let agent = require_agent_bin();
    target
        .run(&[
            "runtime",
            "build",
            "--activate",
            "--agent-bin",
            agent.to_str().unwrap(),
        ])
        .ok();
    let _restored_daemon = Daemon::start(&target);
    target.run(&["start", "alice", "--wait"]).ok();
    let answer = target
        .run(&["send", "alice", "after restore", "--wait"])
        .ok();
    let text = &answer.stdout;
    assert!(
        text.contains("echo:") && text.contains("after restore"),
        "{text}"
    );
    let history = target
        .run(&["history", "alice", "--json", "--limit", "1000"])
        .ok()
        .json();
    let bodies: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert!(bodies.contains(&"before 0"), "{bodies:?}");
}

#[test]
fn db_prune_deletes_old_finished_rows_and_keeps_the_rest() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    home.run(&["create-instance", "alice", "--model", "echo"])
        .ok();
    home.run(&["send", "alice", "still waiting"]).ok();
    home.run(&["task", "add", "alice", "--every", "1h", "--prompt", "tick"])
        .ok();

    let day: i64 = 86_400_000;
    let now = chrono::Utc::now().timestamp_millis();
    let old = now - 40 * day;
    let recent = now - 2 * day;
    {
        // Back-dated rows, written the way the product would have written them then.
        let conn = Connection::open(home.path("supervisor.db")).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO messages (id, instance_id, direction, channel, sender, body, state, turn_id, created_at, updated_at)
             VALUES ('q-old', 1, 'in', 'cli', 'local', 'old question', 'answered', 't-old', {old}, {old}),
                    ('a-old', 1, 'out', 'agent', 'alice', 'old answer', 'final', 't-old', {old}, {old}),
                    ('r-old', 1, 'in', 'cli', 'mallory', 'refused long ago', 'refused', NULL, {old}, {old}),
                    ('w-old', 1, 'in', 'cli', 'local', 'old but waiting', 'queued', NULL, {old}, {old}),
                    ('d-old', 1, 'in', 'cli', 'local', 'old but in a turn', 'delivered', 't-open', {old}, {old}),
                    ('q-new', 1, 'in', 'cli', 'local', 'recent question', 'answered', 't-new', {recent}, {recent}),
                    ('a-new', 1, 'out', 'agent', 'alice', 'recent answer', 'final', 't-new', {recent}, {recent});
             INSERT INTO task_runs (task_id, scheduled_for, claimed_at, started_at, finished_at, status)
             VALUES (1, {old}, {old}, {old}, {old}, 'ok'),
                    (1, {recent}, {recent}, {recent}, {recent}, 'ok'),
                    (1, {old2}, {old2}, {old2}, NULL, 'running');
             INSERT INTO events (at, instance, actor, kind) VALUES ({old}, 'alice', 'test', 'old.event'),
                                                                ({recent}, 'alice', 'test', 'recent.event');
             INSERT INTO model_usage (instance_id, at, provider, model, prompt_tokens, completion_tokens, status)
             VALUES (1, {old}, 'echo', 'echo', 5, 5, 'ok'), (1, {now}, 'echo', 'echo', 7, 7, 'ok');
             INSERT INTO web_requests (instance_id, at, action, url, result)
             VALUES (1, {old}, 'fetch', 'https://docs.rs/', 'ok'), (1, {now}, 'fetch', 'https://docs.rs/', 'ok');",
            old2 = old + 1,
        ))
        .unwrap();
    }
    let count = |sql: &str| -> i64 {
        db(&home.path("supervisor.db"))
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    let totals = || {
        [
            count("SELECT count(*) FROM messages"),
            count("SELECT count(*) FROM task_runs"),
            count("SELECT count(*) FROM events"),
            count("SELECT count(*) FROM model_usage"),
            count("SELECT count(*) FROM web_requests"),
        ]
    };
    let start = totals();

    home.run(&["db", "prune", "--older-than", "23h"])
        .fails(1, "--older-than must be at least 1 day");
    home.run(&["db", "prune", "--older-than", "soon"])
        .fails(1, "--older-than: expected an age");
    assert_eq!(totals(), start, "a refused prune changes nothing");

    let dry = home
        .run(&["db", "prune", "--older-than", "30d", "--dry-run", "--json"])
        .ok()
        .json();
    let want = serde_json::json!({"messages": 3, "task_runs": 1, "events": 1, "model_usage": 1, "web_requests": 1});
    assert_eq!(dry["deleted"], want);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(totals(), start, "a dry run changes nothing");

    let done = home
        .run(&["db", "prune", "--older-than", "30d", "--json"])
        .ok()
        .json();
    assert_eq!(done["deleted"], want);
    assert_eq!(done["checkpoint"]["busy"], false);
    let gone = count("SELECT count(*) FROM messages WHERE id IN ('q-old', 'a-old', 'r-old')");
    assert_eq!(gone, 0);
    let kept = count(
        "SELECT count(*) FROM messages WHERE id IN ('w-old', 'd-old', 'q-new', 'a-new')
                                         OR body = 'still waiting'",
    );
    assert_eq!(kept, 5);
    assert_eq!(count("SELECT count(*) FROM task_runs"), 2);
    assert_eq!(
        count("SELECT count(*) FROM task_runs WHERE finished_at IS NULL"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM events WHERE kind = 'old.event'"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM events WHERE kind = 'recent.event'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM events WHERE kind = 'db.pruned'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM web_requests"),
        1,
        "today's web requests count against today's cap and stay"
    );
    assert_eq!(
        count("SELECT sum(prompt_tokens) FROM model_usage"),
        7,
        "today's usage stays"
    );
    assert_eq!(
        count("SELECT count(*) FROM tasks"),
        1,
        "tasks are not history"
    );
    assert_eq!(integrity(&home.path("supervisor.db")), "ok");
    assert_eq!(
        std::fs::metadata(home.path("supervisor.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0),
        0,
        "the WAL was truncated"
    );

    // Again, in text, with VACUUM: nothing left to delete.
    let text = home
        .run(&["db", "prune", "--older-than", "30d", "--vacuum"])
        .ok()
        .stdout;
    assert!(
        text.starts_with("deleted (older than 30d, before "),
        "{text}"
    );
    for table in [
        "messages",
        "task_runs",
        "events",
        "model_usage",
        "web_requests",
    ] {
        assert!(
            text.lines().any(|l| l.split_whitespace().eq([table, "0"])),
            "{table}: {text}"
        );
    }
    assert!(text.contains("database vacuumed"), "{text}");
    assert_eq!(integrity(&home.path("supervisor.db")), "ok");
    let history = home.run(&["history", "alice", "--json"]).ok().json();
    assert!(history
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["body"] == "still waiting"));
}

/// Removes a home's containers when the test ends (a restored home is not a ReadyHome).
struct ContainersOf(String);
impl Drop for ContainersOf {
    fn drop(&mut self) {
        let id = self.0.clone();
        common::daemon::with_docker(async move |c| {
            for owned in supervisor::infra::docker::container::list_owned(&c, &id)
                .await
                .unwrap_or_default()
            {
                let _ = supervisor::infra::docker::container::remove(&c, &owned.id).await;
            }
        });
    }
}

fn doctor_rows(home: &TestHome, name: &str) -> (i32, Vec<serde_json::Value>) {
    let run = home.run(&["doctor", "--json"]);
    let report = run.json();
    let rows = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .cloned()
        .collect();
    (run.code, rows)
}

#[test]
fn a_restored_copy_has_its_own_id_and_uids_and_runs_beside_the_original() {
    use std::os::unix::fs::MetadataExt;
    let h = ReadyHome::new();
    let home = &h.home;
    home.run(&["create-instance", "alice", "--model", "echo"])
        .ok();
    std::fs::write(home.workspace("alice").join("notes.md"), "mine\n").unwrap();
    let _daemon = Daemon::start(home);
    home.run(&["start", "alice", "--wait"]).ok();
    let original = h.container_of("alice").unwrap();
    let original_uid = h.record("alice").uid;
    let archive = home.scratch().join("b.tar.gz");
    home.run(&["backup", "--out", archive.to_str().unwrap()])
        .ok();

    // (a) The default: a new id and uid block, the files handed to the new uids.
    let copy = TestHome::new();
    let r = copy
        .run(&["restore", archive.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(r["original_home_id"], h.home_id.as_str());
    assert_eq!(r["same_id"], false);
    let copy_id = r["home_id"].as_str().unwrap().to_string();
    assert_ne!(copy_id, h.home_id);
    let _copy_containers = ContainersOf(copy_id.clone());
    let copy_uid = supervisor::infra::store::Store::open(&copy.path("supervisor.db"))
        .unwrap()
        .instance("alice")
        .unwrap()
        .uid;
    assert_ne!(copy_uid, original_uid);
    for dir in [
        copy.workspace("alice"),
        copy.ipc_in("alice"),
        copy.ipc_out("alice"),
    ] {
        assert_eq!(
            std::fs::metadata(&dir).unwrap().uid(),
            copy_uid,
            "{}",
            dir.display()
        );
    }
    assert_eq!(
        std::fs::metadata(copy.workspace("alice").join("notes.md"))
            .unwrap()
            .uid(),
        copy_uid
    );

    // It runs beside the original on the same engine, each with its own container.
    // Runtimes are not in backups: the one the copy's database names active is not on disk,
    // so the first runtime built there becomes active by itself.
    let gone = supervisor::infra::store::Store::open(&copy.path("supervisor.db"))
        .unwrap()
        .active_runtime()
        .unwrap()
        .unwrap()
        .runtime_id;
    let built = copy
        .run(&[
            "runtime",
            "build",
            "--no-toolbox",
            "--agent-bin",
            require_agent_bin().to_str().unwrap(),
        ])
        .ok();
    assert!(
        built.stdout.contains(&format!(
            "active   yes: the active runtime {gone} is not on disk"
        )),
        "{}",
        built.stdout
    );
    let _copy_daemon = Daemon::start(&copy);
    copy.run(&["start", "alice", "--wait"]).ok();
    let answer = copy.run(&["send", "alice", "from the copy", "--wait"]).ok();
    assert!(answer.stdout.contains("from the copy"), "{}", answer.stdout);
    let still = h.container_of("alice").unwrap();
    assert_eq!(
        (still.id.as_str(), still.running),
        (original.id.as_str(), true)
    );
    let (_, rows) = doctor_rows(&copy, "home-id");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "ok", "{rows:?}");

    // (b) --same-id keeps the id: doctor on that copy sees the original's container as
    // another home's, and neither audits it nor offers to replace it.
    let twin = TestHome::new();
    let r = twin
        .run(&["restore", archive.to_str().unwrap(), "--same-id", "--json"])
        .ok()
        .json();
    assert_eq!(
        (r["home_id"].as_str(), r["same_id"].as_bool()),
        (Some(h.home_id.as_str()), Some(true))
    );
    let (code, rows) = doctor_rows(&twin, "home-id");
    assert_eq!(code, 4, "{rows:?}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "fail");
    let message = rows[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&original.name) && message.contains(&home.root.display().to_string()),
        "{message}"
    );
    assert!(
        rows[0]["fix"].as_str().unwrap().contains("restore FILE"),
        "{rows:?}"
    );
    let (_, hardening) = doctor_rows(&twin, "hardening");
    assert!(
        hardening.iter().all(|r| r["status"] == "ok"),
        "the original's container is not audited as the twin's: {hardening:?}"
    );
    // An instance the twin does not have is no orphan of the twin's: --fix leaves it alone.
    home.run(&["create-instance", "bob", "--model", "echo"])
        .ok();
    home.run(&["start", "bob", "--wait"]).ok();
    let bob = h.container_of("bob").unwrap();
    let fixed = twin.run(&["doctor", "--fix", "--json"]).json();
    let named: Vec<&str> = fixed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "home-id")
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named.iter().any(|m| m.contains(&bob.name)), "{named:?}");
    assert!(
        fixed["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "orphans" || c["status"] == "ok"),
        "{fixed}"
    );
    assert_eq!(h.container_of("bob").map(|c| c.id), Some(bob.id));
    // The original itself sees only its own containers.
    let (_, rows) = doctor_rows(home, "home-id");
    assert_eq!(rows[0]["status"], "ok", "{rows:?}");
}
