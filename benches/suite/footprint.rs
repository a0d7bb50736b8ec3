//! Footprint: the daemon's resident memory idle and under load, an idle container's memory,
//! the image and the runtime on disk, and the disk 10 instances take.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, sv};
use crate::messages::request;
use crate::stats::{mib, rss_kib};
use supervisor::app::client::DaemonClient;
use supervisor::infra::home::Home;

const INSTANCES: usize = 10;

/// Bytes of regular files under `dir` (not following links).
/// What `dir` takes on its file system: blocks allocated (a sparse disk image counts what it
/// holds, not its size), not descending into what is mounted below it (an instance's image,
/// counted once as its file).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() && m.dev() == top.dev() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn image_bytes() -> u64 {
    supervisor::infra::blocking::block_on(async {
        let d = supervisor::infra::docker::connect(&Default::default())
            .await
            .unwrap();
        let tag = supervisor::infra::agent_image::current_tag("supervisor-agent");
        supervisor::infra::docker::image::inspect(&d, &tag)
            .await
            .unwrap()
            .map_or(0, |i| i.size)
    })
}

pub fn run() -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    common::prepared_home(&root, "f", INSTANCES);
    let daemon = common::start_daemon(&root);
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(daemon.id());
    sv(&root, &["start", "--all", "--wait"]);
    std::thread::sleep(Duration::from_secs(11));
    let running_idle = rss_kib(daemon.id());
    let v: Value = serde_json::from_str(&sv(&root, &["status", "--json"])).unwrap();
    let mut per: Vec<f64> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["memory_bytes"].as_u64())
        .map(|b| b as f64 / 1024.0 / 1024.0)
        .collect();
    per.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let container_mib = per[per.len() / 2];

    // Under load: every instance busy for a few seconds; the highest RSS seen.
    let home = Home::new(&root).unwrap();
    let mut peak = running_idle;
    let load = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..INSTANCES {
                let home = home.clone();
                tasks.push(tokio::spawn(async move {
                    let c = DaemonClient::for_home(&home);
                    for k in 0..100 {
                        c.send(&format!("f{i}"), &request(format!("load {k}")))
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    let started = Instant::now();
    while !load.is_finished() {
        peak = peak.max(rss_kib(daemon.id()));
        std::thread::sleep(Duration::from_millis(20));
    }
    load.join().unwrap();
    let load_secs = started.elapsed().as_secs_f64();
    common::lost_and_duplicated(&root);

    let image = image_bytes();
    let runtime = disk_bytes(&root.join("runtime"));
    let instances = disk_bytes(&root.join("instances"));
    let home_total = disk_bytes(&root);
    common::tear_down(&root, daemon);

    println!(
        "daemon RSS, no containers:                       {:>8.1} MiB",
        mib(idle)
    );
    println!(
        "daemon RSS, {INSTANCES} instances running, idle:          {:>8.1} MiB",
        mib(running_idle)
    );
    println!(
        "daemon RSS, peak under load ({} messages, {load_secs:.1} s): {:>8.1} MiB",
        INSTANCES * 100,
        mib(peak)
    );
    println!("container memory, idle agent (median of {INSTANCES}):    {container_mib:>8.2} MiB");
    println!(
        "image on disk:                                    {:>8} bytes",
        image
    );
    println!(
        "runtime on disk:                                  {:>8.2} MiB",
        runtime as f64 / 1048576.0
    );
    println!(
        "{INSTANCES} instances' directories after 1000 messages:  {:>8.2} MiB",
        instances as f64 / 1048576.0
    );
    println!(
        "whole home (database, runtime, instances):        {:>8.2} MiB",
        home_total as f64 / 1048576.0
    );
    json!({
        "daemon_rss_idle_mib": mib(idle),
        "daemon_rss_running_idle_mib": mib(running_idle),
        "daemon_rss_peak_under_load_mib": mib(peak),
        "container_memory_idle_mib": container_mib,
        "image_bytes": image,
        "runtime_bytes": runtime,
        "instances_dir_bytes": instances,
        "home_bytes_10_instances": home_total,
    })
}
