//! What the benchmarks share: the real binary, a prepared home, the daemon, and clean-up.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Daemons this run started and has not torn down, and the homes it prepared: what
/// [`clean_up_after_panic`] stops, removes and unmounts.
static DAEMONS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HOMES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn home_id(root: &Path) -> String {
    supervisor::infra::store::Store::open(&root.join("supervisor.db"))
        .unwrap()
        .home_id()
        .unwrap()
}

/// Removes every container of `home_id`.
fn remove_containers(home_id: &str) {
    supervisor::infra::blocking::block_on(async {
        let d = supervisor::infra::docker::connect(&Default::default())
            .await
            .unwrap();
        for c in supervisor::infra::docker::container::list_owned(&d, home_id)
            .await
            .unwrap()
        {
            let _ = supervisor::infra::docker::container::remove(&d, &c.id).await;
        }
    });
}

/// After a section panicked: kills the daemons it left running and removes the containers of
/// every home this run prepared, so that a failed run leaves nothing behind.
pub fn clean_up_after_panic() {
    for pid in DAEMONS.lock().unwrap().drain(..) {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    for root in HOMES.lock().unwrap().drain(..) {
        remove_containers(&home_id(&root));
        supervisor::infra::disk::unmount_below(&root);
    }
}

/// The supervisor binary the benchmarks run: the one built with them, or `SUPERVISOR_BIN`
/// (to measure another build, such as an earlier commit's, with the same suite).
pub fn supervisor_bin() -> PathBuf {
    std::env::var_os("SUPERVISOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_supervisor")))
}

/// Runs the supervisor binary against `home`; panics on failure.
pub fn sv(home: &Path, args: &[&str]) -> String {
    let out = Command::new(supervisor_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("run supervisor");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A home with the image built, a runtime active and `instances` instances created.
pub fn prepared_home(root: &Path, prefix: &str, instances: usize) {
    let agent: PathBuf = std::env::var_os("SUPERVISOR_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            supervisor::infra::runtime::locate::built_agent_path(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            )
        });
    sv(root, &["init"]);
    sv(root, &["image", "build", "--quiet"]);
    sv(
        root,
        &[
            "runtime",
            "build",
            "--activate",
            "--agent-bin",
            agent.to_str().unwrap(),
        ],
    );
    HOMES.lock().unwrap().push(root.to_path_buf());
    for i in 0..instances {
        sv(root, &["create-instance", &format!("{prefix}{i}")]);
    }
}

/// Starts `supervisor run` and waits for its socket.
pub fn start_daemon(root: &Path) -> Child {
    start_daemon_with_env(root, &[])
}

/// Starts `supervisor run` with extra environment variables and waits for its socket.
pub fn start_daemon_with_env(root: &Path, env: &[(&str, &str)]) -> Child {
    let child = Command::new(supervisor_bin())
        .arg("--home")
        .arg(root)
        .arg("run")
        .envs(env.iter().copied())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    DAEMONS.lock().unwrap().push(child.id());
    while !root.join("run/supervisor.sock").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Counts, in the database, inbound messages never answered and turns answered more than
/// once; panics unless both are 0 (a benchmark that loses messages has no figures worth
/// keeping).
pub fn lost_and_duplicated(root: &Path) -> (i64, i64) {
    let db = rusqlite::Connection::open(root.join("supervisor.db")).unwrap();
    let q = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let lost = q("SELECT count(*) FROM messages WHERE direction = 'in' AND state != 'answered'");
    let turns = q("SELECT count(DISTINCT turn_id) FROM messages WHERE direction = 'in'");
    let finals = q("SELECT count(*) FROM messages WHERE direction = 'out' AND state = 'final'");
    let duplicated = finals - turns;
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "messages lost or answered twice"
    );
    (lost, duplicated)
}

/// Stops the daemon and removes every container of the home.
pub fn tear_down(root: &Path, mut daemon: Child) {
    let _ = daemon.kill();
    let _ = daemon.wait();
    DAEMONS.lock().unwrap().retain(|pid| *pid != daemon.id());
    remove_containers(&home_id(root));
    // Its instances' disk images leave the mount table with it.
    supervisor::infra::disk::unmount_below(root);
}
