//! Cold start: `supervisor start NAME` (CLI → daemon socket → reconcile pass → container
//! created and started) against the floor: a raw create + start of the same image with the
//! same hardened spec through the Docker API, measured in the same run.
//!
//! Run with scripts/bench/start (or `cargo bench --bench start`). REPS=N sets repetitions.

mod common;

use common::sv;
use std::time::{Duration, Instant};

use supervisor::container_spec::{ContainerSpec, SpecInputs};
use supervisor::docker::{self, container};
use supervisor::home::Home;
use supervisor::host_config::DockerConfig;
use supervisor::instance::{InstanceConfig, InstanceName};

fn stats(name: &str, xs: &mut [Duration]) -> f64 {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(xs[xs.len() / 2]);
    println!(
        "{name:<44} median {median:>7.1} ms   min {:>7.1}   max {:>7.1}   (n={})",
        ms(xs[0]),
        ms(xs[xs.len() - 1]),
        xs.len()
    );
    median
}

fn main() {
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    common::prepared_home(&root, "bench-", reps);
    let daemon = common::start_daemon(&root);
    std::thread::sleep(Duration::from_millis(300));

    // supervisor start: returns once the daemon's pass has created and started the container.
    let mut supervised = Vec::new();
    for i in 0..reps {
        let t = Instant::now();
        sv(&root, &["start", &format!("bench-{i}")]);
        supervised.push(t.elapsed());
    }

    // The floor: the same image and hardened spec, created and started directly.
    let home = Home::new(&root).unwrap();
    let mut store = home.open().unwrap();
    let home_id = store.home_id().unwrap();
    let runtime = store.active_runtime().unwrap().unwrap().runtime_id;
    let image = supervisor::agent_image::current_tag("supervisor-agent");
    let raw_home = format!("{}-raw", &home_id[..8]);
    let user = supervisor::daemon::user::ContainerUser::detect();
    let mut raw = Vec::new();
    docker::block_on(async {
        let d = docker::connect(&DockerConfig::default()).await.unwrap();
        for i in 0..reps {
            let name = InstanceName::parse(&format!("bench-{i}")).unwrap();
            let paths = home.instance_paths(&name);
            let config = InstanceConfig::load(&paths.config).unwrap();
            let mut spec = ContainerSpec::for_instance(&SpecInputs {
                home_id: &raw_home,
                instance: name.as_str(),
                config: &config,
                paths: &paths,
                runtime_id: &runtime,
                runtime_dir: home.runtime_dir().join(&runtime),
                image: &image,
                user: &user.spec,
            });
            spec.name = format!("{}-raw", spec.name);
            let t = Instant::now();
            let id = container::create(&d, &spec).await.unwrap();
            container::start(&d, &id).await.unwrap();
            raw.push(t.elapsed());
            container::remove(&d, &id).await.unwrap();
        }
    });

    println!("\ncold start, {reps} repetitions, same run:");
    let s = stats("supervisor start (CLI → daemon → running)", &mut supervised);
    let r = stats("raw create+start via the Docker API", &mut raw);
    println!(
        "ratio (supervisor / raw, medians)             {:.2}x",
        s / r
    );

    common::tear_down(&root, daemon);
}
