//! Messages with the `echo` model through real containers: the round trip (host accepts the
//! message → answer stored, as the daemon measures it; and as a client sees it over the
//! socket), and throughput across 1 and 10 instances with the count of lost and duplicated
//! answers, which must be 0.
//!
//! Run with scripts/bench/messages. N=messages for the round trip (default 1000).

mod common;

use common::sv;
use std::time::Instant;

use supervisor::daemon::api::SendRequest;
use supervisor::daemon::client::DaemonClient;
use supervisor::home::Home;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, xs: &mut [f64]) {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<46} p50 {:>6.1} ms  p95 {:>6.1}  p99 {:>6.1}  max {:>6.1}  (n={})",
        percentile(xs, 0.5),
        percentile(xs, 0.95),
        percentile(xs, 0.99),
        xs[xs.len() - 1],
        xs.len()
    );
}

fn request(text: String) -> SendRequest {
    SendRequest {
        text,
        sender: "local".into(),
        channel: "cli".into(),
        wait: true,
        timeout_secs: Some(120),
    }
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    common::prepared_home(&root, "b", 10);
    let daemon = common::start_daemon(&root);
    sv(&root, &["start", "--all", "--wait"]);
    let home = Home::new(&root).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = DaemonClient::for_home(&home);
        // Warm up.
        for i in 0..20 {
            client
                .send("b0", &request(format!("warm {i}")))
                .await
                .unwrap();
        }
        let (mut server, mut client_side) = (Vec::new(), Vec::new());
        for i in 0..n {
            let t = Instant::now();
            let r = client
                .send("b0", &request(format!("message {i}")))
                .await
                .unwrap();
            client_side.push(t.elapsed().as_secs_f64() * 1000.0);
            server.push(r.latency_ms.unwrap() as f64);
            assert_eq!(
                r.reply.as_deref(),
                Some(format!("echo: [local] message {i}").as_str())
            );
        }
        println!("\nround trip with echo, 1 instance, sequential:");
        report("accepted → answer stored (daemon)", &mut server);
        report("client send --wait over the socket", &mut client_side);

        println!("\nthroughput with echo (one sequential sender per instance):");
        for instances in [1usize, 10] {
            let per = (n / instances).max(20);
            let started = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..instances {
                let home = home.clone();
                tasks.push(tokio::spawn(async move {
                    let client = DaemonClient::for_home(&home);
                    for k in 0..per {
                        client
                            .send(&format!("b{i}"), &request(format!("t{instances}-{k}")))
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{instances:>2} instance(s): {:>6} messages in {secs:>6.2} s = {:>7.1} messages/s",
                per * instances,
                (per * instances) as f64 / secs
            );
        }
    });

    // Every message answered exactly once: count in the database.
    let db = rusqlite::Connection::open(root.join("supervisor.db")).unwrap();
    let (inbound, answered): (i64, i64) = db
        .query_row(
            "SELECT count(*), sum(state = 'answered') FROM messages WHERE direction = 'in'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let finals: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE direction = 'out' AND state = 'final'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let turns: i64 = db
        .query_row(
            "SELECT count(DISTINCT turn_id) FROM messages WHERE direction = 'in'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    println!(
        "\nmessages in: {inbound}, answered: {answered}, turns: {turns}, final answers: {finals}"
    );
    println!(
        "lost: {}, duplicated: {}",
        inbound - answered,
        finals - turns
    );
    assert_eq!(inbound, answered, "a message was lost");
    assert_eq!(finals, turns, "a turn was answered twice");

    common::tear_down(&root, daemon);
}
