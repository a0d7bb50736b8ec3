//! Throughput with the `echo` model across 1, 10 and 50 instances: one sequential sender per
//! instance over the socket, about N messages in all (default 1000) per round, with the count
//! of lost and duplicated answers (which fails the run unless 0).

use std::time::Instant;

use serde_json::{json, Value};

use crate::common::{self, sv};
use crate::messages::{n, request};
use supervisor::app::client::DaemonClient;
use supervisor::infra::home::Home;

const ROUNDS: &[usize] = &[1, 10, 50];

pub fn run() -> Value {
    let total = n();
    let most = *ROUNDS.iter().max().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    common::prepared_home(&root, "t", most);
    let daemon = common::start_daemon(&root);
    sv(&root, &["start", "--all", "--wait"]);
    let home = Home::new(&root).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rounds = Vec::new();
    println!("throughput with echo (one sequential sender per instance):");
    for &instances in ROUNDS {
        let per = (total / instances).max(20);
        let started = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..instances {
                let home = home.clone();
                tasks.push(tokio::spawn(async move {
                    let client = DaemonClient::for_home(&home);
                    for k in 0..per {
                        client
                            .send(&format!("t{i}"), &request(format!("r{instances}-{k}")))
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let secs = started.elapsed().as_secs_f64();
        let rate = (per * instances) as f64 / secs;
        println!(
            "{instances:>3} instance(s): {:>6} messages in {secs:>6.2} s = {rate:>7.1} messages/s",
            per * instances
        );
        rounds.push(json!({"instances": instances, "messages": per * instances, "seconds": secs, "messages_per_second": rate}));
    }
    let (lost, duplicated) = common::lost_and_duplicated(&root);
    println!("lost: {lost}, duplicated: {duplicated}");
    common::tear_down(&root, daemon);
    json!({"rounds": rounds, "lost": lost, "duplicated": duplicated})
}
