//! Scheduled tasks end to end: the daemon's scheduler, real containers, the real store.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{wait_until, Daemon, ReadyHome};
use common::fake_llm::FakeLlm;
use rusqlite::Connection;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn db(h: &ReadyHome) -> Connection {
    Connection::open(h.home.path("supervisor.db")).unwrap()
}

fn runs(h: &ReadyHome, task: i64) -> Vec<Value> {
    let v = h
        .home
        .run(&[
            "task",
            "runs",
            &task.to_string(),
            "--json",
            "--limit",
            "500",
        ])
        .ok()
        .json();
    let mut rows = v.as_array().unwrap().clone();
    rows.reverse();
    rows
}

fn finished(h: &ReadyHome, task: i64) -> Vec<Value> {
    runs(h, task)
        .into_iter()
        .filter(|r| r["finished_at"].is_i64())
        .collect()
}

fn add_every(h: &ReadyHome, instance: &str, every: &str, prompt: &str) -> i64 {
    let v = h
        .home
        .run(&[
            "task", "add", instance, "--every", every, "--prompt", prompt, "--json",
        ])
        .ok()
        .json();
    v["id"].as_i64().unwrap()
}

/// Every run's message was answered exactly once, and no occurrence was claimed twice.
fn assert_each_run_answered_once(h: &ReadyHome, task: i64) {
    let db = db(h);
    let bad: i64 = db
        .query_row(
            "SELECT count(*) FROM task_runs r WHERE r.task_id = ?1 AND r.finished_at IS NOT NULL AND
               (SELECT count(*) FROM messages o WHERE o.direction = 'out' AND o.state = 'final'
                  AND o.turn_id = (SELECT turn_id FROM messages i WHERE i.task_run_id = r.id)) != 1",
            [task],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bad, 0, "runs without exactly one final answer");
    let messages_per_run: Vec<i64> = db
        .prepare("SELECT count(m.id) FROM task_runs r LEFT JOIN messages m ON m.task_run_id = r.id AND m.direction = 'in' WHERE r.task_id = ?1 GROUP BY r.id")
        .unwrap()
        .query_map([task], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        messages_per_run.iter().all(|n| *n == 1),
        "{messages_per_run:?}"
    );
}

#[test]
fn an_interval_task_runs_on_its_grid_and_obeys_pause_resume_and_run_now() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let task = add_every(&h, "alice", "2s", "tick");

    assert!(
        wait_until(LONG, || finished(&h, task).len() >= 3),
        "{:?}",
        runs(&h, task)
    );
    let done = finished(&h, task);
    let first = done[0]["scheduled_for"].as_i64().unwrap();
    for r in &done {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["trigger"], "schedule");
        assert!(r["result"].as_str().unwrap().starts_with("echo: "), "{r}");
        let at = r["scheduled_for"].as_i64().unwrap();
        assert_eq!(
            (at - first) % 2000,
            0,
            "anchored to the first run, no drift"
        );
    }
    // The runs were scheduled turns of alice, shown as such in her history.
    let history = h.home.run(&["history", "alice"]).ok().stdout;
    assert!(history.contains("(scheduled task)"), "{history}");

    // Paused: nothing new is claimed.
    h.home.run(&["task", "pause", &task.to_string()]).ok();
    let listed = h.home.run(&["task", "list", "alice", "--json"]).ok().json();
    assert_eq!(listed[0]["status"], "paused");
    let claimed = runs(&h, task).len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(runs(&h, task).len(), claimed, "a paused task does not run");

    // Run-now works on a paused task, once.
    h.home.run(&["task", "run-now", &task.to_string()]).ok();
    assert!(wait_until(LONG, || finished(&h, task)
        .iter()
        .any(|r| r["trigger"] == "manual")));
    assert_eq!(runs(&h, task).len(), claimed + 1);

    // Resumed: the missed slots are skipped, the grid is kept.
    h.home.run(&["task", "resume", &task.to_string()]).ok();
    let before = finished(&h, task).len();
    assert!(wait_until(LONG, || finished(&h, task).len() >= before + 2));
    let after: Vec<i64> = finished(&h, task)
        .iter()
        .filter(|r| r["trigger"] == "schedule")
        .map(|r| r["scheduled_for"].as_i64().unwrap())
        .collect();
    assert!(after.iter().all(|at| (at - first) % 2000 == 0), "{after:?}");
    assert!(runs(&h, task).iter().all(|r| r["skipped"] == 0));
    assert_each_run_answered_once(&h, task);

    let listed = h.home.run(&["task", "list", "--json"]).ok().json();
    assert_eq!(listed[0]["last_status"], "ok");
    h.home.run(&["task", "rm", &task.to_string()]).ok();
    h.home
        .run(&["task", "runs", &task.to_string()])
        .fails(1, "no task");
}

#[test]
fn killing_the_daemon_right_after_a_claim_never_runs_an_occurrence_twice() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let task = add_every(&h, "alice", "3s", "tick");

    // Watch the store closely and kill -9 the daemon the moment the first claim lands.
    let db = db(&h);
    let claimed = || -> i64 {
        db.query_row(
            "SELECT count(*) FROM task_runs WHERE task_id = ?1",
            [task],
            |r| r.get(0),
        )
        .unwrap()
    };
    let deadline = Instant::now() + LONG;
    while claimed() == 0 {
        assert!(Instant::now() < deadline, "no claim");
        std::thread::sleep(Duration::from_millis(2));
    }
    daemon.kill9();
    let first: i64 = db
        .query_row(
            "SELECT scheduled_for FROM task_runs WHERE task_id = ?1",
            [task],
            |r| r.get(0),
        )
        .unwrap();
    // Down long enough to miss several occurrences.
    std::thread::sleep(Duration::from_secs(10));
    let _daemon = Daemon::start(&h.home);

    assert!(
        wait_until(LONG, || finished(&h, task).len() >= 3),
        "{:?}",
        runs(&h, task)
    );
    let all = runs(&h, task);
    let at: Vec<i64> = all
        .iter()
        .map(|r| r["scheduled_for"].as_i64().unwrap())
        .collect();
    let mut unique = at.clone();
    unique.dedup();
    assert_eq!(unique, at, "no occurrence claimed twice");
    assert_eq!(at[0], first, "the claimed run was kept, not redone");
    assert_eq!(
        all[0]["status"], "ok",
        "and it was answered after the restart"
    );
    // The downtime's missed occurrences collapsed into one run: the run that still waited
    // when the daemon came back, or, if it was answered first, the next one.
    let collapsed = all[0]["skipped"].as_i64().unwrap() + all[1]["skipped"].as_i64().unwrap();
    assert!(collapsed >= 2, "{all:?}");
    assert!(
        at[1] - at[0] >= 9_000,
        "the missed slots were not run: {at:?}"
    );
    assert!(all.iter().skip(2).all(|r| r["skipped"] == 0), "{all:?}");
    assert_each_run_answered_once(&h, task);
}

#[test]
fn the_agent_manages_only_its_own_tasks_and_silent_runs_stay_silent() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    for name in ["alice", "bob"] {
        h.home.run(&["create-instance", name]).ok();
        h.edit_config(name, |c| {
            c["model"] = json!({"provider": "openai", "name": "scheduler",
                                "base_url": fake.base_url, "api_key_env": null});
        });
    }
    // Alice's heartbeat is on: every 2 s, with nothing to say.
    h.edit_config("alice", |c| {
        c["heartbeat"] = json!({"enabled": true, "every": "2s"});
    });
    let bobs = add_every(&h, "bob", "1h", "bob's own task");
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();

    // The agent creates a task for itself through its tool.
    let out = h
        .home
        .run(&["send", "alice", "please schedule a tick", "--wait"])
        .ok();
    assert!(out.stdout.contains("tool said:"), "{}", out.stdout);
    assert!(out.stdout.contains("every 2s"), "{}", out.stdout);
    let tasks = h.home.run(&["task", "list", "alice", "--json"]).ok().json();
    let mine = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "agent")
        .expect("agent task")
        .clone();
    assert_eq!(mine["created_by"], "agent");
    assert_eq!(mine["prompt"], "agent tick");
    let heartbeat = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "heartbeat")
        .expect("heartbeat from the config")
        .clone();

    // Both run, and having nothing to say, stay out of the conversation.
    for t in [&mine, &heartbeat] {
        let id = t["id"].as_i64().unwrap();
        assert!(
            wait_until(LONG, || finished(&h, id).len() >= 2),
            "{:?}",
            runs(&h, id)
        );
        assert!(finished(&h, id).iter().all(|r| r["status"] == "silent"));
    }
    let history = h
        .home
        .run(&["history", "alice", "--json", "--limit", "500"])
        .ok()
        .json();
    // A task's run still in flight (the heartbeat comes round every few seconds) is shown
    // as such; what a finished silent run leaves is nothing.
    let chat: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !(m["channel"] == "task" && m["state"] != "answered"))
        .collect();
    assert_eq!(chat.len(), 2, "only the request and its answer: {chat:?}");

    // Another instance's task is out of reach, and the attempt is on record.
    let out = h
        .home
        .run(&["send", "alice", &format!("cancel task {bobs}"), "--wait"])
        .ok();
    assert!(
        out.stdout
            .contains(&format!("no task {bobs} of this instance")),
        "{}",
        out.stdout
    );
    let bob = h.home.run(&["task", "list", "bob", "--json"]).ok().json();
    assert_eq!(bob[0]["status"], "active");
    let refused: i64 = db(&h)
        .query_row(
            "SELECT count(*) FROM events WHERE instance = 'alice' AND kind = 'task.refused'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refused, 1);

    // Its own task it can cancel.
    let out = h
        .home
        .run(&[
            "send",
            "alice",
            &format!("cancel task {}", mine["id"]),
            "--wait",
        ])
        .ok();
    assert!(out.stdout.contains("removed"), "{}", out.stdout);
    h.home
        .run(&["task", "runs", &mine["id"].to_string()])
        .fails(1, "no task");
}

#[test]
fn an_occurrence_due_while_the_previous_run_waits_is_skipped_not_queued() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    // No container runs: the test plays the agent, so every run waits until it answers.
    let tasks: Vec<i64> = (0..5)
        .map(|i| add_every(&h, "alice", "1s", &format!("tick {i}")))
        .collect();
    let _daemon = Daemon::start(&h.home);

    // Several occurrences of each task fall due while its first run waits: each is counted
    // on that run, and none queues a run of its own.
    let skipped = |t: i64| {
        runs(&h, t)
            .first()
            .map_or(0, |r| r["skipped"].as_i64().unwrap())
    };
    let counts = || tasks.iter().map(|t| runs(&h, *t).len()).collect::<Vec<_>>();
    assert!(
        wait_until(LONG, || counts().iter().any(|n| *n > 1)
            || tasks.iter().all(|t| skipped(*t) >= 3)),
        "runs per task: {:?}",
        counts()
    );
    assert_eq!(counts(), [1; 5], "runs per task");
    let db = db(&h);
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM messages WHERE channel = 'task' AND state IN ('queued', 'delivered')"),
        5,
        "one waiting run per task"
    );
    assert_eq!(
        count("SELECT count(*) FROM events WHERE kind = 'task.missed'"),
        5,
        "one event per waiting run, not one per occurrence"
    );

    // The turn in flight is answered: its task's next occurrence is a run of its own again.
    let in_dir = h.home.ipc_in("alice");
    let turn: Value = std::fs::read_dir(&in_dir)
        .unwrap()
        .flatten()
        .find_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .expect("a turn delivered");
    let answered: i64 = turn["messages"][0]["sender"]
        .as_str()
        .unwrap()
        .strip_prefix("task:")
        .unwrap()
        .parse()
        .unwrap();
    let reply = json!({"v": 1, "id": "r1", "ts": 3, "type": "reply",
                       "turn_id": turn["turn_id"], "reply_to": [], "body": "tock"});
    let out = h.home.ipc_out("alice");
    std::fs::write(out.join(".3-r1.json.tmp"), reply.to_string()).unwrap();
    std::fs::rename(out.join(".3-r1.json.tmp"), out.join("3-r1.json")).unwrap();
    assert!(
        wait_until(LONG, || runs(&h, answered).len() == 2),
        "{:?}",
        runs(&h, answered)
    );
    let both = runs(&h, answered);
    assert_eq!(both[0]["status"], "ok");
    assert!(both[0]["skipped"].as_i64().unwrap() >= 3, "{both:?}");
    assert_eq!(both[1]["status"], "claimed");
    for t in tasks.iter().filter(|t| **t != answered) {
        assert_eq!(runs(&h, *t).len(), 1, "still waiting: {:?}", runs(&h, *t));
    }
    assert_each_run_answered_once(&h, answered);
}
