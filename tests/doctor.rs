//! `supervisor doctor` on real homes and the real Docker engine: a healthy home under a
//! daemon, then each kind of damage it must report (and, with --fix, repair).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::daemon::{wait_until, with_docker, Daemon, ReadyHome};
use common::{mode, Run, TestHome};
use supervisor::domain::instance::InstanceConfig;
use supervisor::infra::container_spec::{ContainerSpec, MountSpec, SpecInputs};
use supervisor::infra::container_user::ContainerUser;
use supervisor::infra::docker::container;
use supervisor::infra::home::InstancePaths;

const LONG: Duration = Duration::from_secs(60);

fn rows<'a>(report: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

/// The rows that are not ok, for assertion messages.
fn problems(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| format!("{}: {} {}", c["name"], c["status"], c["message"]))
        .collect()
}

fn doctor(h: &TestHome, extra: &[&str]) -> (Run, serde_json::Value) {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let run = h.run(&args);
    let json = run.json();
    (run, json)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The spec the daemon would give `instance` now (same code, same inputs).
fn spec_for(h: &ReadyHome, instance: &str, paths: &InstancePaths) -> ContainerSpec {
    let store = supervisor::infra::store::Store::open(&h.home.path("supervisor.db")).unwrap();
    let runtime = store.active_runtime().unwrap().unwrap().runtime_id;
    // An instance the home does not have has no config.json: it gets the defaults.
    let config = InstanceConfig::load(&paths.config).unwrap_or_default();
    let image = supervisor::infra::agent_image::current_tag("supervisor-agent");
    // An instance the home does not have has no uid either: the image's own stands in.
    let uid = store.instance(instance).map_or(65532, |r| r.uid);
    let user = ContainerUser::detect().spec_for(uid);
    ContainerSpec::for_instance(&SpecInputs {
        home_id: &h.home_id,
        instance,
        config: &config,
        paths,
        runtime_id: &runtime,
        runtime_dir: h.home.path("runtime").join(&runtime),
        image: &image,
        user: &user,
    })
}

#[test]
fn a_healthy_home_under_a_daemon_is_all_ok() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert!(h.container_of("alice").is_some_and(|c| c.running));

    let (run, report) = doctor(&h.home, &[]);
    assert_eq!(run.code, 0, "{:?}\n{}", problems(&report), run.stderr);
    assert!(problems(&report).is_empty(), "{:?}", problems(&report));
    for name in [
        "home",
        "host-config",
        "docker",
        "image",
        "runtime",
        "database",
        "permissions",
        "config",
        "hardening",
        "orphans",
        "disk",
        "api-token",
        "daemon",
        "home-id",
    ] {
        assert!(!rows(&report, name).is_empty(), "no {name} row: {report}");
    }
    let hardening = rows(&report, "hardening");
    assert_eq!(hardening.len(), 1, "{hardening:?}");
    assert!(
        hardening[0]["message"]
            .as_str()
            .unwrap()
            .contains("alice (sv-"),
        "{hardening:?}"
    );
    let s = &report["summary"];
    assert_eq!((s["warn"].as_u64(), s["fail"].as_u64()), (Some(0), Some(0)));
    assert_eq!(
        s["ok"].as_u64().unwrap() as usize,
        report["checks"].as_array().unwrap().len()
    );

    let table = h.home.run(&["doctor"]);
    assert_eq!(table.code, 0, "{}", table.stdout);
    let header = table.stdout.lines().next().unwrap();
    for col in ["CHECK", "STATUS", "DETAIL", "FIX"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        table.stdout.contains("0 warnings, 0 failures"),
        "{}",
        table.stdout
    );
}

#[test]
fn open_modes_are_warned_about_and_fix_restores_them() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let dir = h.home.path("instances/alice");
    let config = dir.join("config.json");
    set_mode(&dir, 0o755);
    set_mode(&config, 0o644);

    let (run, report) = doctor(&h.home, &[]);
    assert_eq!(run.code, 3, "{:?}", problems(&report));
    let perms = rows(&report, "permissions");
    let find = |needle: &str| {
        perms
            .iter()
            .find(|r| r["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {perms:?}"))
    };
    let d = find("instances/alice: mode 0755, expected 0700");
    assert_eq!(
        (d["status"].as_str(), d["fixed"].as_bool()),
        (Some("warn"), Some(false))
    );
    assert_eq!(d["fix"], format!("chmod 700 {}", dir.display()));
    let c = find("instances/alice/config.json: mode 0644, expected 0600");
    assert_eq!(c["status"], "warn");
    assert_eq!(
        problems(&report).len(),
        2,
        "nothing else is wrong: {:?}",
        problems(&report)
    );
    assert_eq!(
        (mode(&dir), mode(&config)),
        (0o755, 0o644),
        "no --fix, no change"
    );

    let (run, report) = doctor(&h.home, &["--fix"]);
    assert_eq!(run.code, 0, "{:?}", problems(&report));
    let fixed: Vec<_> = rows(&report, "permissions")
        .into_iter()
        .filter(|r| r["fixed"] == true)
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fixed,
        [
            "instances/alice: mode was 0755, set to 0700",
            "instances/alice/config.json: mode was 0644, set to 0600"
        ]
    );
    assert_eq!((mode(&dir), mode(&config)), (0o700, 0o600));
    let (run, report) = doctor(&h.home, &[]);
    assert_eq!(run.code, 0, "{:?}", problems(&report));
}

#[test]
fn an_invalid_config_fails_naming_the_file_and_field() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    h.edit_config("alice", |v| v["limits"]["memory"] = "lots".into());
    let (run, report) = doctor(&h.home, &[]);
    assert_eq!(run.code, 4, "{:?}", problems(&report));
    let config = rows(&report, "config");
    assert_eq!(config.len(), 1);
    assert_eq!(config[0]["status"], "fail");
    let message = config[0]["message"].as_str().unwrap();
    let file = h.home.path("instances/alice/config.json");
    assert!(
        message.starts_with(&format!("{}: limits.memory: ", file.display())),
        "{message}"
    );
    assert!(config[0]["fix"].as_str().unwrap().contains("limits.memory"));
    assert_eq!(problems(&report).len(), 1, "{:?}", problems(&report));
}

#[test]
fn bridge_network_and_an_allow_everything_egress_are_warned_about() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    h.run(&["create-instance", "alice"]).ok();
    let path = h.path("instances/alice/config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["network"] = "bridge".into();
    v["egress"] = serde_json::json!({"allow": ["*"]});
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let (_run, report) = doctor(&h, &[]);
    let egress = rows(&report, "egress");
    let messages: Vec<&str> = egress
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(egress.len(), 2, "{messages:?}");
    assert!(egress.iter().all(|r| r["status"] == "warn"));
    assert!(
        messages[0].starts_with("alice: network is \"bridge\""),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("egress.allow has \"*\""),
        "{messages:?}"
    );
    assert!(egress[0]["fix"]
        .as_str()
        .unwrap()
        .contains("\"network\": \"none\""));
}

#[test]
fn an_orphan_container_is_reported_and_fix_removes_it() {
    let h = ReadyHome::new();
    // A container for "ghost", an instance this home does not have, made like the daemon
    // makes containers; its directories live outside the home.
    let paths = InstancePaths::under(h.home.scratch().join("ghost"));
    for d in [
        &paths.workspace,
        &paths.ipc.join("in"),
        &paths.ipc.join("out"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    let spec = spec_for(&h, "ghost", &paths);
    let id = with_docker(async |d| container::create(&d, &spec).await.unwrap());
    assert_eq!(h.containers().len(), 1);

    let (run, report) = doctor(&h.home, &[]);
    assert_eq!(run.code, 3, "{:?}", problems(&report));
    let orphans = rows(&report, "orphans");
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0]["status"], "warn");
    let message = orphans[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&spec.name) && message.contains("\"ghost\""),
        "{message}"
    );
    assert!(
        h.containers().iter().any(|c| c.id == id),
        "no --fix, no change"
    );

    let (run, report) = doctor(&h.home, &["--fix"]);
    assert_eq!(run.code, 0, "{:?}", problems(&report));
    let orphans = rows(&report, "orphans");
    assert_eq!(
        (orphans[0]["status"].as_str(), orphans[0]["fixed"].as_bool()),
        (Some("ok"), Some(true))
    );
    assert!(
        orphans[0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("removed container {}", spec.name)),
        "{orphans:?}"
    );
    assert!(h.containers().is_empty());
}

#[test]
fn a_weakened_container_started_by_hand_fails_the_hardening_check() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let name = supervisor::domain::instance::InstanceName::parse("alice").unwrap();
    let paths = supervisor::infra::home::Home::new(&h.home.root)
        .unwrap()
        .instance_paths(&name);
    // What the daemon would create, plus a host directory and a higher process limit: the
    // labels (and so the spec hash) still say all is well.
    let mut spec = spec_for(&h, "alice", &paths);
    spec.mounts.push(MountSpec {
        source: "/tmp".into(),
        target: "/host-tmp".into(),
        read_only: false,
    });
    spec.pids_limit += 1;
    let uid = h.record("alice").uid;
    supervisor::infra::volume::prepare(
        &paths,
        &supervisor::infra::disk::Enforcement::detect(Default::default()),
        1 << 30,
        ContainerUser::detect().owner_for(uid),
    )
    .unwrap();
    let id = with_docker(async |d| {
        let id = container::create(&d, &spec).await.unwrap();
        container::start(&d, &id).await.unwrap();
        id
    });
    assert!(
        wait_until(LONG, || h
            .containers()
            .iter()
            .any(|c| c.id == id && c.running)),
        "the container did not run"
    );

    let (run, report) = doctor(&h.home, &[]);
    assert_eq!(run.code, 4, "{:?}", problems(&report));
    let hardening = rows(&report, "hardening");
    assert_eq!(hardening.len(), 1, "{hardening:?}");
    assert_eq!(hardening[0]["status"], "fail");
    let message = hardening[0]["message"].as_str().unwrap();
    for needle in [
        "Mounts: extra bind /tmp at /host-tmp (read-write)",
        &format!(
            "PidsLimit is {}, policy {}",
            spec.pids_limit,
            spec.pids_limit - 1
        ),
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    let fix = hardening[0]["fix"].as_str().unwrap();
    assert!(fix.starts_with("supervisor restart alice"), "{fix}");
    assert_eq!(problems(&report).len(), 1, "{:?}", problems(&report));

    // Its labels and spec hash are right, so a daemon would adopt it as it is; but it is never
    // started again: the daemon stops it (alice should not run), and starting alice replaces it.
    let daemon = Daemon::start(&h.home);
    assert!(
        wait_until(LONG, || h
            .containers()
            .iter()
            .any(|c| c.id == id && !c.running)),
        "{}",
        daemon.log_text()
    );
    h.home.run(&["start", "alice", "--wait"]).ok();
    let now = h.container_of("alice").unwrap();
    assert_ne!(now.id, id, "the weakened container was started again");
    assert!(now.running);
    let (_, report) = doctor(&h.home, &[]);
    assert_eq!(rows(&report, "hardening")[0]["status"], "ok");
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let detail: String = db
        .query_row(
            "SELECT detail FROM events WHERE kind = 'container.replaced' AND instance = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.contains("PidsLimit"), "{detail}");
}

#[test]
fn with_docker_down_the_rest_is_still_checked() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    h.run(&["create-instance", "alice"]).ok();
    std::fs::write(
        h.path("supervisor.toml"),
        "[docker]\nhost = \"unix:///nonexistent/docker.sock\"\n",
    )
    .unwrap();
    let (run, report) = doctor(&h, &[]);
    assert_eq!(run.code, 4, "{:?}", problems(&report));
    assert_eq!(rows(&report, "docker")[0]["status"], "fail");
    assert!(rows(&report, "docker")[0]["message"]
        .as_str()
        .unwrap()
        .contains("unix:///nonexistent/docker.sock"));
    for name in ["image", "hardening", "orphans"] {
        let row = rows(&report, name)[0];
        assert!(
            row["message"].as_str().unwrap().starts_with("not checked"),
            "{row}"
        );
    }
    for name in ["database", "permissions", "config", "disk", "api-token"] {
        assert_eq!(rows(&report, name)[0]["status"], "ok", "{report}");
    }
    // No runtime was ever built in this home.
    assert_eq!(rows(&report, "runtime")[0]["status"], "fail");
}

#[test]
fn a_home_that_does_not_exist_is_reported_not_created() {
    let h = TestHome::new();
    let (run, report) = doctor(&h, &[]);
    assert_eq!(run.code, 4);
    let home = rows(&report, "home")[0];
    assert_eq!(home["status"], "fail");
    assert!(home["fix"].as_str().unwrap().ends_with(" init"), "{home}");
    assert!(!h.root.exists(), "doctor created the home");
}

#[test]
fn an_api_listener_beyond_loopback_without_a_token_fails() {
    let h = TestHome::new();
    h.run(&["init"]).ok();
    std::fs::write(
        h.path("supervisor.toml"),
        "[docker]\nhost = \"unix:///nonexistent/docker.sock\"\n[api]\nlisten = \"0.0.0.0:8787\"\ntoken_env = \"DOCTOR_TEST_TOKEN\"\n",
    )
    .unwrap();
    let run = |token: Option<&str>| {
        let mut cmd = common::bin();
        cmd.arg("--home")
            .arg(&h.root)
            .args(["doctor", "--json"])
            .env_remove("DOCTOR_TEST_TOKEN");
        if let Some(t) = token {
            cmd.env("DOCTOR_TEST_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let report = run(None);
    let row = rows(&report, "api-token")[0].clone();
    assert_eq!(row["status"], "fail", "{row}");
    assert!(row["message"].as_str().unwrap().contains("would not start"));
    let secret = "x".repeat(40);
    let report = run(Some(&secret));
    let row = rows(&report, "api-token")[0].clone();
    assert_eq!(row["status"], "ok", "{row}");
    assert!(
        !report.to_string().contains(&secret),
        "the token is never printed"
    );
}

#[test]
fn the_daemon_row_compares_the_token_the_daemon_really_uses() {
    let ready = ReadyHome::new();
    let h = &ready.home;
    h.run(&["create-instance", "alice"]).ok();
    h.run(&["start", "alice"]).ok();
    let (_, report) = doctor(h, &[]);
    let row = rows(&report, "daemon")[0].clone();
    assert_eq!(row["status"], "warn", "{row}");
    assert!(
        row["message"].as_str().unwrap().contains("alice"),
        "the instance left without its daemon: {row}"
    );
    assert_eq!(
        row["fix"].as_str().unwrap(),
        format!(
            "supervisor --home {0} run (or `supervisor --home {0} service install`)",
            h.root.display()
        )
    );
    h.run(&["stop", "alice"]).ok();

    // A free loopback port for the API, so that the daemon really reads its token.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        h.path("supervisor.toml"),
        format!("[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"DOCTOR_DAEMON_TOKEN\"\n"),
    )
    .unwrap();
    let theirs = "d".repeat(40);
    let _daemon = Daemon::start_with_env(h, &[("DOCTOR_DAEMON_TOKEN", theirs.as_str())]);
    let doctor_with = |token: &str| {
        let out = common::bin()
            .arg("--home")
            .arg(&h.root)
            .args(["doctor", "--json"])
            .env("DOCTOR_DAEMON_TOKEN", token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains(token), "a token is never printed");
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        (out.status.code(), rows(&report, "daemon")[0].clone())
    };
    let fingerprint = supervisor::app::daemon::api::info::fingerprint(&theirs);
    let (_, row) = doctor_with(&theirs);
    assert_eq!(row["status"], "ok", "{row}");
    let message = row["message"].as_str().unwrap();
    assert!(
        message.contains("running (pid ")
            && message.contains(&fingerprint)
            && message.contains(&format!("127.0.0.1:{port}")),
        "{message}"
    );
    // Another token where the daemon would read it now: the daemon still uses its own.
    let mine = "m".repeat(40);
    let (code, row) = doctor_with(&mine);
    assert_eq!(row["status"], "warn", "{row}");
    assert_eq!(code, Some(3), "warnings and no failure");
    let message = row["message"].as_str().unwrap();
    assert!(
        message.contains(&fingerprint)
            && message.contains(&supervisor::app::daemon::api::info::fingerprint(&mine)),
        "{message}"
    );
    assert!(row["fix"].as_str().unwrap().contains("restart the daemon"));
}

#[test]
fn on_a_home_that_does_not_exist_every_fix_is_init() {
    let h = TestHome::new();
    let (run, report) = doctor(&h, &[]);
    assert_eq!(run.code, 4);
    let init = format!("supervisor --home {} init", h.root.display());
    for row in report["checks"].as_array().unwrap() {
        // The engine and its image are the host's, not the home's.
        if row["status"] != "ok" && row["name"] != "docker" && row["name"] != "image" {
            assert_eq!(row["fix"], init.as_str(), "{row}");
        }
    }
    // A usage error stays 2, apart from doctor's own codes.
    assert_eq!(h.run(&["doctor", "--bogus"]).code, 2);
}

/// No daemon runs: the token in doctor's own environment is tried against the Bot API (a
/// loopback fake), and the token is never printed, whatever the outcome.
#[test]
fn without_a_daemon_the_telegram_token_here_is_tried_and_never_shown() {
    const TOKEN: &str = "123456:SECRET-part-never-shown";
    const SECRET: &str = "SECRET-part-never-shown";
    const VAR: &str = "DOCTOR_TELEGRAM_TOKEN";
    let tg = common::telegram::FakeTelegram::start(TOKEN);
    let h = TestHome::new();
    h.run(&["init"]).ok();
    h.run(&["create-instance", "alice"]).ok();
    // No engine: doctor has nothing to wait for there.
    std::fs::write(
        h.path("supervisor.toml"),
        "[docker]\nhost = \"unix:///nonexistent/docker.sock\"\n",
    )
    .unwrap();
    let config = h.path("instances/alice/config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["channels"] = serde_json::json!({"telegram": {"token_env": VAR, "api_base": tg.base}});
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let doctor_with = |token: Option<&str>| {
        let mut cmd = common::bin();
        cmd.arg("--home")
            .arg(&h.root)
            .args(["doctor", "--json"])
            .env_remove(VAR);
        if let Some(t) = token {
            cmd.env(VAR, t);
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            !stdout.contains(SECRET) && !stderr.contains(SECRET),
            "the token was shown:\n{stdout}\n{stderr}"
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let found = rows(&report, "channels");
        assert_eq!(found.len(), 1, "{report}");
        found[0].clone()
    };

    let row = doctor_with(Some(TOKEN));
    assert_eq!(row["status"], "ok", "{row}");
    assert!(
        row["message"].as_str().unwrap().contains("@test_bot"),
        "{row}"
    );

    tg.set_token_revoked(true);
    let row = doctor_with(Some(TOKEN));
    assert_eq!(row["status"], "fail", "{row}");
    assert!(row["message"].as_str().unwrap().contains("401"), "{row}");

    let row = doctor_with(None);
    assert_eq!(row["status"], "warn", "{row}");
    assert!(row["message"].as_str().unwrap().contains(VAR), "{row}");
    let fix = row["fix"].as_str().unwrap();
    assert!(
        fix.contains(VAR) && fix.contains("docs/channels.md"),
        "{fix}"
    );

    // The table shows the same, and no more of the token.
    let out = common::bin()
        .arg("--home")
        .arg(&h.root)
        .arg("doctor")
        .env(VAR, TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("channels") && text.contains("401"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}
