//! What the CLI tells a new operator to do next, and what it must not claim: `init`'s next
//! commands, a paused task's (absent) next run, a TOML mistake on one line.

mod common;

use common::TestHome;

#[test]
fn init_prints_the_next_commands_with_the_home_in_use() {
    let h = TestHome::new();
    let out = h.run(&["init"]).ok().stdout;
    let home = h.root.display().to_string();
    let next = out
        .split("next:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    for step in [
        "image build",
        "runtime build --activate",
        "create-instance alice",
        "run",
        "start alice --wait",
        "status",
    ] {
        let cmd = format!("supervisor --home {home} {step}");
        assert!(next.contains(&cmd), "no {cmd:?} in\n{out}");
    }
    // Once there is an instance, its name is used and it is not created again.
    h.run(&["create-instance", "bob"]).ok();
    let again = h.run(&["init"]).ok().stdout;
    assert!(again.contains("already initialised"), "{again}");
    assert!(!again.contains("create-instance"), "{again}");
    assert!(again.contains("start bob --wait"), "{again}");
}

#[test]
fn a_paused_task_shows_no_next_run() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    let task = h
        .run(&[
            "task", "add", "alice", "--every", "1h", "--prompt", "tick", "--json",
        ])
        .ok()
        .json();
    let id = task["id"].to_string();
    let paused = h.run(&["task", "pause", &id]).ok().stdout;
    assert!(!paused.contains("next run"), "{paused}");
    assert!(
        paused.contains(&format!("no runs until `supervisor task resume {id}`")),
        "{paused}"
    );
    let resumed = h.run(&["task", "resume", &id]).ok().stdout;
    assert!(resumed.contains("next run 20"), "{resumed}");
}

#[test]
fn a_toml_mistake_is_one_line() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    for text in [
        "[daemon\nmax_running = 1\n",
        "[daemon]\nmax_running = \"many\"\n",
    ] {
        std::fs::write(h.path("supervisor.toml"), text).unwrap();
        let out = h.run(&["init"]).fails(1, "supervisor.toml");
        // One line, and nothing after it: a log line or an error is never split.
        assert_eq!(out.stderr.lines().count(), 1, "{text:?}: {:?}", out.stderr);
    }
}
