//! Cold start: `supervisor start NAME` until the daemon has heard the agent announce
//! readiness, against the floor: a raw create + start of the same image with the same
//! hardened spec through the Docker API, until the same agent writes its ready file.
//! REPS=N repetitions (default 10).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, sv};
use crate::stats::{ms, ratio, summary};
use supervisor::app::client::DaemonClient;
use supervisor::domain::instance::{InstanceConfig, InstanceName};
use supervisor::infra::container_spec::{ContainerSpec, SpecInputs};
use supervisor::infra::container_user::ContainerUser;
use supervisor::infra::docker::{self, container};
use supervisor::infra::home::Home;

pub fn reps() -> usize {
    std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Waits until the daemon reports every named agent ready (polled every 2 ms). The deadline
/// grows with the number of agents: two minutes, and half a second more for each.
pub fn wait_ready(home: &Home, names: &[String]) {
    let client = DaemonClient::for_home(home);
    let allowed = Duration::from_secs(120) + Duration::from_millis(500) * names.len() as u32;
    let deadline = Instant::now() + allowed;
    supervisor::infra::blocking::block_on(async {
        loop {
            let s = client.status().await.unwrap();
            let waiting: Vec<&String> = names
                .iter()
                .filter(|n| !(s.is_ready(n) && s.started.contains_key(*n)))
                .collect();
            if waiting.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} agents not ready after {allowed:?}, among them {:?}",
                waiting.len(),
                names.len(),
                &waiting[..waiting.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

/// Whether `out/` holds a ready envelope.
fn has_ready(out: &Path) -> bool {
    std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read(e.path())
                .map(|b| String::from_utf8_lossy(&b).contains("\"type\":\"ready\""))
                .unwrap_or(false)
        })
}

pub fn run() -> Value {
    let reps = reps();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    common::prepared_home(&root, "cs-", reps);
    let home = Home::new(&root).unwrap();
    let daemon = common::start_daemon(&root);
    std::thread::sleep(Duration::from_millis(300));

    let (mut started, mut ready) = (Vec::new(), Vec::new());
    for i in 0..reps {
        let name = format!("cs-{i}");
        let t = Instant::now();
        sv(&root, &["start", &name]);
        started.push(ms(t.elapsed()));
        wait_ready(&home, &[name]);
        ready.push(ms(t.elapsed()));
    }
    common::tear_down(&root, daemon);

    let (mut raw_started, mut raw_ready) = raw_starts(tmp.path(), reps);

    println!("cold start, {reps} repetitions, same run:");
    let s = summary("supervisor start → container running", &mut started);
    let r = summary(
        "supervisor start → agent ready (daemon heard it)",
        &mut ready,
    );
    let rs = summary("raw create+start (Docker API) → running", &mut raw_started);
    let rr = summary(
        "raw create+start → agent's ready file written",
        &mut raw_ready,
    );
    let ratio_ready = ratio("ratio, ready (supervisor / raw)", &r, &rr);
    let ratio_start = ratio("ratio, running (supervisor / raw)", &s, &rs);
    json!({
        "reps": reps,
        "supervisor_start_running": s,
        "supervisor_start_ready": r,
        "raw_create_start_running": rs,
        "raw_create_start_ready": rr,
        "ratio_ready": ratio_ready,
        "ratio_running": ratio_start,
    })
}

/// The floor of a container start: `reps` raw create + start of the agent image with the
/// instance's hardened spec through the Docker API, in a home of its own below `dir` with no
/// daemon (which would read the ready files). Milliseconds each until the container runs, and
/// until the agent's ready file is written.
pub fn raw_starts(dir: &Path, reps: usize) -> (Vec<f64>, Vec<f64>) {
    let raw_root = dir.join("raw");
    common::prepared_home(&raw_root, "raw-", reps);
    let raw_home = Home::new(&raw_root).unwrap();
    let mut store = raw_home.open().unwrap();
    let home_id = store.home_id().unwrap();
    let runtime = store.active_runtime().unwrap().unwrap().runtime_id;
    let image = supervisor::infra::agent_image::current_tag("supervisor-agent");
    let user = ContainerUser::detect();
    let (mut raw_started, mut raw_ready) = (Vec::new(), Vec::new());
    supervisor::infra::blocking::block_on(async {
        let d = docker::connect(&Default::default()).await.unwrap();
        for i in 0..reps {
            let name = InstanceName::parse(&format!("raw-{i}")).unwrap();
            let paths = raw_home.instance_paths(&name);
            let config = InstanceConfig::load(&paths.config).unwrap();
            let uid = store.instance(name.as_str()).unwrap().uid;
            // The same volume the daemon prepares (mounted, the instance's own): the floor
            // measures the container, not the disk.
            supervisor::infra::volume::prepare(
                &paths,
                &raw_home.host_config().unwrap().disk.enforcement(),
                config.limits.disk_bytes(),
                user.owner_for(uid),
            )
            .unwrap();
            let spec = ContainerSpec::for_instance(&SpecInputs {
                home_id: &home_id,
                instance: name.as_str(),
                config: &config,
                paths: &paths,
                runtime_id: &runtime,
                runtime_dir: raw_home.runtime_dir().join(&runtime),
                image: &image,
                user: &user.spec_for(uid),
            });
            let out = paths.ipc.join("out");
            let t = Instant::now();
            let id = container::create(&d, &spec).await.unwrap();
            container::start(&d, &id).await.unwrap();
            raw_started.push(ms(t.elapsed()));
            let deadline = Instant::now() + Duration::from_secs(60);
            while !has_ready(&out) {
                assert!(Instant::now() < deadline, "raw agent never ready");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            raw_ready.push(ms(t.elapsed()));
            container::remove(&d, &id).await.unwrap();
        }
    });
    supervisor::infra::disk::unmount_below(&raw_root);

    (raw_started, raw_ready)
}
