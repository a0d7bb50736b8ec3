//! The instance commands end to end: the real binary, a temp home, the real SQLite file.

mod common;

use common::{bin, mode, tree, TestHome};
use supervisor::infra::store::Store;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn init_lays_out_a_private_home_and_is_idempotent() {
    let h = TestHome::new();
    let out = h.run(&["init"]).ok();
    assert!(
        out.stdout.starts_with("initialised supervisor home"),
        "{}",
        out.stdout
    );
    for dir in ["", "instances", "archive", "runtime", "run", "backups"] {
        assert_eq!(mode(&h.path(dir)), 0o700, "{dir}");
    }
    for file in ["supervisor.db", "supervisor.toml"] {
        assert_eq!(mode(&h.path(file)), 0o600, "{file}");
    }
    let id1 = Store::open(&h.path("supervisor.db"))
        .unwrap()
        .home_id()
        .unwrap();
    let again = h.run(&["init"]).ok();
    assert!(
        again.stdout.starts_with("already initialised"),
        "{}",
        again.stdout
    );
    let id2 = Store::open(&h.path("supervisor.db"))
        .unwrap()
        .home_id()
        .unwrap();
    assert_eq!(id1, id2, "the home id is stable");
}

#[test]
fn create_instance_initialises_and_writes_everything() {
    let h = TestHome::new();
    let out = h
        .run(&[
            "create-instance",
            "alice",
            "--soul",
            "expert",
            "--model",
            "echo",
        ])
        .ok();
    assert!(
        out.stdout.contains("created instance alice"),
        "{}",
        out.stdout
    );
    assert!(h.path("supervisor.db").is_file(), "home was initialised");

    let dir = h.path("instances/alice");
    let volume = h.volume("alice");
    let soul = std::fs::read_to_string(h.workspace("alice").join("SOUL.md")).unwrap();
    assert_eq!(
        soul,
        std::fs::read_to_string(format!("{REPO}/souls/expert.md")).unwrap()
    );
    assert_eq!(mode(&dir.join("config.json")), 0o600);
    for f in ["workspace/AGENTS.md", "workspace/memory/MEMORY.md"] {
        assert!(volume.join(f).is_file(), "{f}");
        assert_eq!(mode(&volume.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&dir), 0o700);
    for d in [
        "",
        "ipc",
        "workspace",
        "workspace/memory",
        "workspace/skills",
        "ipc/in",
        "ipc/out",
    ] {
        assert_eq!(mode(&volume.join(d)), 0o700, "{d}");
    }
    // Its own uid owns what its agent may write, nobody else's.
    let uid = h.run(&["show", "alice", "--json"]).ok().json()["uid"]
        .as_u64()
        .unwrap() as u32;
    use std::os::unix::fs::MetadataExt;
    for d in ["workspace", "workspace/SOUL.md", "ipc/in", "ipc/out"] {
        assert_eq!(std::fs::metadata(volume.join(d)).unwrap().uid(), uid, "{d}");
    }
    assert_eq!(std::fs::metadata(volume.join("ipc")).unwrap().uid(), 0);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["provider"], "echo");
    assert_eq!(config["network"], "none");
    assert_eq!(config["allow_from"], serde_json::json!(["local"]));

    let store = Store::open(&h.path("supervisor.db")).unwrap();
    let rec = store.instance("alice").unwrap();
    assert_eq!(
        (rec.soul.as_str(), rec.desired_state.as_str()),
        ("expert", "stopped")
    );
    let events = store.recent_events(Some("alice"), 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].actor.as_str()),
        ("instance.created", "cli")
    );
    assert_eq!(events[0].detail.as_ref().unwrap()["model"], "echo/echo");
    assert!(
        !tree(&h.path("instances"))
            .iter()
            .any(|p| p.starts_with('.')),
        "no staging directory left"
    );
}

#[test]
fn create_instance_takes_every_option() {
    let h = TestHome::new();
    h.run(&[
        "create-instance",
        "bob",
        "--soul",
        "creative",
        "--port",
        "18791",
        "--model",
        "openai/gpt-4o-mini",
        "--lifecycle",
        "on-demand",
        "--memory",
        "1g",
        "--cpus",
        "0.5",
        "--pids",
        "128",
    ])
    .ok();
    let show = h.run(&["show", "bob", "--json"]).ok().json();
    let c = &show["config"];
    assert_eq!(c["port"], 18791);
    assert_eq!(c["model"]["name"], "gpt-4o-mini");
    assert_eq!(c["model"]["api_key_env"], "OPENAI_API_KEY");
    assert_eq!(c["lifecycle"]["mode"], "on-demand");
    assert_eq!(c["limits"]["memory"], "1g");
    assert_eq!(c["limits"]["cpus"], 0.5);
    assert_eq!(c["limits"]["pids"], 128);
}

#[test]
fn soul_file_and_custom_skeleton() {
    let h = TestHome::new();
    let mine = h.scratch().join("mine.md");
    std::fs::write(&mine, "# Soul: Gardener\nYou tend the garden.\n").unwrap();
    h.run(&[
        "create-instance",
        "gardener",
        "--soul-file",
        mine.to_str().unwrap(),
    ])
    .ok();
    let soul = std::fs::read_to_string(h.workspace("gardener").join("SOUL.md")).unwrap();
    assert_eq!(soul, "# Soul: Gardener\nYou tend the garden.\n");
    let show = h.run(&["show", "gardener", "--json"]).ok().json();
    assert_eq!(show["soul"], "file");
    assert_eq!(show["soul_title"], "Soul: Gardener");

    h.run(&["create-instance", "blank", "--soul", "custom"])
        .ok();
    let soul = std::fs::read_to_string(h.workspace("blank").join("SOUL.md")).unwrap();
    assert!(soul.contains("TODO"));
}

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let h = TestHome::new();
    for (name, reason) in [
        ("Alice", "must start with a lowercase letter"),
        ("../etc", "must start with a lowercase letter"),
        ("a/b", "use only lowercase letters, digits and dashes"),
        ("a.b", "use only lowercase letters, digits and dashes"),
        ("all", "is reserved"),
        ("x-", "must not end with a dash"),
        ("abcdefghijabcdefghijabcdefghijabc", "longer than 32"),
        (
            "alice_0a1b2c3d",
            "that form names a chat group of an instance",
        ),
        ("al_ice", "use only lowercase letters, digits and dashes"),
    ] {
        h.run(&["create-instance", name]).fails(1, reason);
        let err = h.run(&["create-instance", name]).stderr;
        assert_eq!(err.lines().count(), 1, "one-line error: {err:?}");
    }
    h.run(&["create-instance", ""])
        .fails(1, "instance name is empty");
    assert!(
        !h.root.exists(),
        "a refused create on a new home leaves no home behind"
    );
}

#[test]
fn duplicates_and_bad_inputs_leave_nothing_half_made() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice", "--soul", "expert"])
        .ok();
    let before = tree(&h.root);
    let config_before = std::fs::read(h.path("instances/alice/config.json")).unwrap();

    h.run(&["create-instance", "alice", "--soul", "creative"])
        .fails(1, "an instance named \"alice\" already exists");
    h.run(&["create-instance", "bob", "--soul", "wizard"])
        .fails(2, "invalid value 'wizard' for '--soul");
    h.run(&[
        "create-instance",
        "bob",
        "--soul-file",
        "/nonexistent/soul.md",
    ])
    .fails(1, "soul file /nonexistent/soul.md");
    h.run(&["create-instance", "bob", "--memory", "lots"])
        .fails(1, "--memory: expected a size");
    h.run(&["create-instance", "bob", "--model", "cohere/x"])
        .fails(1, "--model: expected one of echo, openai, anthropic");
    h.run(&["create-instance", "bob", "--port", "80"])
        .fails(1, "--port: expected a port from 1024");

    // A directory nobody owns blocks the name; it is left exactly as it was.
    std::fs::create_dir(h.path("instances/stray")).unwrap();
    std::fs::write(h.path("instances/stray/keep.txt"), "mine").unwrap();
    h.run(&["create-instance", "stray"])
        .fails(1, "already exists on disk");
    assert_eq!(
        std::fs::read_to_string(h.path("instances/stray/keep.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_dir_all(h.path("instances/stray")).unwrap();

    assert_eq!(
        tree(&h.root)
            .into_iter()
            .filter(|p| !p.contains("supervisor.db-"))
            .collect::<Vec<_>>(),
        before
            .into_iter()
            .filter(|p| !p.contains("supervisor.db-"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read(h.path("instances/alice/config.json")).unwrap(),
        config_before
    );
    let store = Store::open(&h.path("supervisor.db")).unwrap();
    let names: Vec<_> = store
        .instances()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["alice"]);
}

#[test]
fn ports_are_unique_across_instances() {
    let h = TestHome::new();
    h.run(&["create-instance", "bob", "--port", "18791"]).ok();
    h.run(&["create-instance", "carl", "--port", "18791"])
        .fails(1, "port 18791 is already used by instance \"bob\"");
    assert!(!h.path("instances/carl").exists());
}

#[test]
fn broken_config_is_reported_with_file_and_key() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    let file = h.path("instances/alice/config.json");
    let cases = [
        (
            r#"{"version": 1, "colour": "blue"}"#,
            "colour: not a known key here",
        ),
        (
            r#"{"version": 1, "limits": {"memory": "1g", "cpus": 1, "pids": "many", "tmp": "8m"}}"#,
            "limits.pids: expected a whole number from 0 to 4294967295, got the string \"many\"",
        ),
        (
            r#"{"version": 1, "network": "host"}"#,
            "network: expected \"none\" or \"bridge\", got \"host\"",
        ),
        (
            r#"{"version": 1, "allow_from": []}"#,
            "allow_from: is empty",
        ),
        (
            r#"{"version": 1,"#,
            "(syntax): not valid JSON at line 1, column 14: it ends",
        ),
        (
            r#"{"version": 1, 3: 4}"#,
            "(syntax): not valid JSON at line 1, column 16: a key must be a string in double quotes",
        ),
        (
            r#"{"version": 1, "limits": {"cpus": "two"}}"#,
            "limits.cpus: expected a number, got the string \"two\"",
        ),
    ];
    for (json, needle) in cases {
        std::fs::write(&file, json).unwrap();
        let out = h.run(&["show", "alice"]).fails(1, needle);
        assert!(
            out.stderr.contains(&file.display().to_string()),
            "{}",
            out.stderr
        );
        assert!(
            out.stdout.contains("INVALID"),
            "show still shows the rest: {}",
            out.stdout
        );
        let list = h.run(&["list", "--json"]).ok().json();
        assert!(list[0]["config_error"].as_str().unwrap().contains(needle));
        assert!(h.run(&["list"]).ok().stdout.contains("(config error)"));
    }
}

#[test]
fn bad_host_config_names_file_and_key() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    std::fs::write(h.path("supervisor.toml"), "[docker]\nsokcet = \"/x\"\n").unwrap();
    let out = h
        .run(&["init"])
        .fails(1, "supervisor.toml: docker.sokcet: not a known key here");
    assert_eq!(out.stderr.lines().count(), 1);
    std::fs::write(h.path("supervisor.toml"), "[daemon]\nmax_running = 1.5\n").unwrap();
    h.run(&["status"]).fails(
        1,
        "supervisor.toml: daemon.max_running: expected a whole number from 0 to 4294967295, got 1.5",
    );
}

#[test]
fn list_and_show_json_have_the_documented_fields() {
    let h = TestHome::new();
    h.run(&["list"]).fails(1, "run `supervisor --home");
    h.run(&["init"]).ok();
    assert!(h.run(&["list"]).ok().stdout.contains("no instances"));
    assert_eq!(
        h.run(&["list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    h.run(&["create-instance", "alice", "--soul", "expert"])
        .ok();
    h.run(&[
        "create-instance",
        "bob",
        "--soul",
        "creative",
        "--port",
        "18791",
    ])
    .ok();

    let list = h.run(&["list", "--json"]).ok().json();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let fields = [
        "name",
        "soul",
        "model",
        "lifecycle",
        "port",
        "network",
        "desired_state",
        "state",
        "state_detail",
        "restart_count",
        "last_exit_code",
        "created_at",
        "dir",
        "config_error",
    ];
    let obj = list[1].as_object().unwrap();
    let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
    keys.sort();
    let mut want = fields.to_vec();
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(list[1]["port"], 18791);
    assert_eq!(list[1]["model"], "echo/echo");
    assert!(list[1]["created_at"].as_str().unwrap().ends_with('Z'));

    let show = h.run(&["show", "alice", "--json"]).ok().json();
    for f in fields
        .iter()
        .chain(&["soul_title", "paths", "config", "counts", "recent_events"])
    {
        assert!(show.get(f).is_some(), "show --json lacks {f}");
    }
    assert_eq!(
        show["paths"]["workspace"],
        h.path("instances/alice/volume/workspace")
            .display()
            .to_string()
    );
    assert_eq!(show["counts"]["messages"], 0);
    assert_eq!(show["recent_events"][0]["kind"], "instance.created");

    let table = h.run(&["list"]).ok().stdout;
    assert!(table.lines().next().unwrap().starts_with("NAME"));
    assert!(table.contains("alice") && table.contains("18791"));
    h.run(&["show", "nobody"])
        .fails(1, "no instance named \"nobody\"");
}

#[test]
fn remove_archives_and_purge_deletes() {
    let h = TestHome::new();
    h.run(&["create-instance", "bob", "--soul", "creative"])
        .ok();
    std::fs::write(h.workspace("bob").join("notes.md"), "keep me").unwrap();
    let out = h.run(&["remove", "bob"]).ok();
    assert!(out.stdout.contains("kept in"), "{}", out.stdout);
    assert!(!h.path("instances/bob").exists());
    let archived: Vec<_> = std::fs::read_dir(h.path("archive"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(archived.len(), 1);
    // The archive holds the instance's directory as it was, its disk image included (and no
    // mount: the image left the mount table before the move); mounted, it has the files.
    let kept = supervisor::infra::home::InstancePaths::under(archived[0].path());
    assert!(!supervisor::infra::disk::is_attached(&kept.volume_image).unwrap());
    supervisor::infra::disk::mount(&kept.volume_image, &kept.volume).unwrap();
    assert_eq!(
        std::fs::read_to_string(kept.workspace.join("notes.md")).unwrap(),
        "keep me"
    );
    assert_eq!(
        h.run(&["list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    h.run(&["remove", "bob"])
        .fails(1, "no instance named \"bob\"");

    // The name is free again; purge then deletes files and history.
    h.run(&["create-instance", "bob"]).ok();
    h.run(&["remove", "bob", "--purge"]).ok();
    assert!(!h.path("instances/bob").exists());
    let left: Vec<_> = std::fs::read_dir(h.path("archive"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(
        left.len(),
        1,
        "purge leaves the earlier archive alone and nothing else"
    );
    let store = Store::open(&h.path("supervisor.db")).unwrap();
    let kinds: Vec<_> = store
        .recent_events(Some("bob"), 10)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "instance.purged",
            "instance.created",
            "instance.removed",
            "instance.created"
        ]
    );
}

#[test]
fn home_comes_from_env_or_the_default() {
    let tmp = tempfile::tempdir().unwrap();
    let env_home = tmp.path().join("from-env");
    let out = bin()
        .env("SUPERVISOR_HOME", &env_home)
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(env_home.join("supervisor.db").is_file());

    let fake_home = tmp.path().join("user");
    let out = bin()
        .env("HOME", &fake_home)
        .env_remove("XDG_DATA_HOME")
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(fake_home
        .join(".local/share/supervisor/supervisor.db")
        .is_file());
}

#[test]
fn a_second_process_works_while_another_holds_the_database() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    // Hold the store open the way the daemon does, and read from it throughout.
    let held = Store::open(&h.path("supervisor.db")).unwrap();
    let children: Vec<_> = (0..6)
        .map(|i| {
            bin()
                .arg("--home")
                .arg(&h.root)
                .args(["create-instance", &format!("agent-{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(held.instances().unwrap().len(), 6);
    assert_eq!(held.integrity_check().unwrap(), "ok");
}

#[test]
fn a_newer_database_is_refused_clearly() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    let conn = rusqlite::Connection::open(h.path("supervisor.db")).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    h.run(&["list"])
        .fails(1, "schema version 999, newer than this supervisor knows");
}
