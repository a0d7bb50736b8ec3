//! Chat groups (`"isolation": "chat"`): what a chat's own container costs, through the signed
//! webhook channel with the `echo` model, from the POST in to the answer POSTed out to a
//! loopback receiver.
//!
//! - A new group: GROUPS_N messages (default 20), each in a chat never seen before, so each
//!   makes its group (its row, uid, directories and disk) and has its container created and
//!   started before its turn. Also the POST alone (until `202`: the group made and the message
//!   stored).
//! - A warm group: the same chats again while their containers run (idle_timeout "10m",
//!   max_running 0).
//! - Their floors, same run: a raw create + start of the same image with the same hardened spec
//!   through the Docker API until the agent's ready file is written (as `cold_start`), and the
//!   same webhook round trip to a plain instance whose one container runs.
//! - The daemon's memory (RSS) with GROUPS_MEM groups of one instance (default 200; one
//!   message into each of as many chats, sent at once): when all are answered, and once every
//!   group is idle and stopped, and after a restart of the daemon; beside a home of as many
//!   plain instances, created (and so stopped) while its daemon runs, and after its restart.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cold_start::raw_starts;
use crate::common::{self, sv};
use crate::messages::{free_port, with_api_line};
use crate::stats::{mib, ms, ratio, rss_kib, summary};
use supervisor::domain::instance::name::group_key;
use supervisor::domain::instance::InstanceName;
use supervisor::infra::home::Home;

const SECRET: &str = "bench-groups-webhook-secret";
const SECRET_ENV: &str = "BENCH_GROUPS_WEBHOOK_SECRET";
/// The instance whose chats get groups, and the plain one beside it.
const CHATTY: &str = "g0";
const PLAIN: &str = "p0";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// supervisor.toml's text with `line` in its `[daemon]` table.
fn with_daemon_line(text: &str, line: &str) -> String {
    if text.starts_with("[daemon]\n") || text.contains("\n[daemon]\n") {
        text.replacen("[daemon]\n", &format!("[daemon]\n{line}\n"), 1)
    } else {
        format!("{text}\n[daemon]\n{line}\n")
    }
}

/// Gives `name` a webhook channel answering to `url`, lets `webhook:bench` in, and applies
/// `edit` to the rest of its config.
fn webhook_config(root: &Path, name: &str, url: &str, edit: impl FnOnce(&mut Value)) {
    let config = Home::new(root)
        .unwrap()
        .instance_paths(&InstanceName::parse(name).unwrap())
        .config;
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["allow_from"] = json!(["local", "webhook:bench"]);
    c["channels"] = json!({"webhook": {"secret_env": SECRET_ENV, "url": url}});
    edit(&mut c);
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

/// Serves the API on a free loopback port with no cap on running containers; the port.
fn host_config(root: &Path) -> u16 {
    let port = free_port();
    let toml = root.join("supervisor.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text = with_api_line(&text, &format!("listen = \"127.0.0.1:{port}\""));
    std::fs::write(&toml, with_daemon_line(&text, "max_running = 0")).unwrap();
    port
}

fn start(root: &Path) -> std::process::Child {
    common::start_daemon_with_env(
        root,
        &[
            (
                "SUPERVISOR_API_TOKEN",
                "bench-token-0123456789abcdef0123456789",
            ),
            (SECRET_ENV, SECRET),
        ],
    )
}

/// POSTs a signed message into `chat` of the instance at `url`; the instant just before the
/// POST (its `202` has come back when this returns).
async fn post(web: &reqwest::Client, url: &str, id: &str, chat: &str, text: &str) -> Instant {
    let message = json!({"id": id, "sender": "bench", "chat": chat, "text": text});
    super::messages::post_webhook(web, url, SECRET, &message).await
}

/// Waits for the answer to message `id` in `chat`; when it reached the receiver.
fn answer(received: &Receiver<(Instant, Value)>, id: &str, chat: &str, text: &str) -> Instant {
    let (at, a) = received
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|_| panic!("no answer to {id} in {chat}"));
    assert_eq!(a["reply_to"], id, "{a}");
    assert_eq!(a["chat"], chat, "{a}");
    let said = a["text"].as_str().unwrap_or_default();
    assert!(said.starts_with("echo: ") && said.ends_with(text), "{a}");
    at
}

/// One sequential round of messages, one into each chat: (POST → answer, POST → 202) in ms.
fn round(
    rt: &tokio::runtime::Runtime,
    url: &str,
    received: &Receiver<(Instant, Value)>,
    chats: &[String],
    tag: &str,
) -> (Vec<f64>, Vec<f64>) {
    let web = reqwest::Client::new();
    let (mut total, mut accepted) = (Vec::new(), Vec::new());
    for (i, chat) in chats.iter().enumerate() {
        let (id, text) = (format!("{tag}{i}"), format!("{tag} {i}"));
        let t = rt.block_on(post(&web, url, &id, chat, &text));
        accepted.push(ms(t.elapsed()));
        let at = answer(received, &id, chat, &text);
        total.push(ms(at.duration_since(t)));
    }
    (total, accepted)
}

/// The group rows `supervisor groups NAME --json` lists.
fn groups(root: &Path, name: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(&sv(root, &["groups", name, "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// How many of the home's containers run.
fn running_containers(root: &Path) -> usize {
    let home_id = Home::new(root).unwrap().open().unwrap().home_id().unwrap();
    supervisor::infra::blocking::block_on(async {
        let d = supervisor::infra::docker::connect(&Default::default())
            .await
            .unwrap();
        supervisor::infra::docker::container::list_owned(&d, &home_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.running)
            .count()
    })
}

fn latency(tmp: &Path, n: usize) -> Value {
    let root = tmp.join("latency");
    common::prepared_home(&root, "", 0);
    sv(&root, &["create-instance", CHATTY]);
    sv(&root, &["create-instance", PLAIN]);
    let (url, received) = crate::receiver::start();
    webhook_config(&root, CHATTY, &url, |c| {
        c["isolation"] = json!("chat");
        c["lifecycle"] = json!({"mode": "on-demand", "idle_timeout": "10m"});
    });
    webhook_config(&root, PLAIN, &url, |_| {});
    let port = host_config(&root);
    let daemon = start(&root);
    sv(&root, &["start", PLAIN, "--wait"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/v1/channels/webhook");

    // The plain instance's round trip, warmed first as `messages` is: the floor of a turn.
    let plain_url = format!("{base}/{PLAIN}");
    let warm: Vec<String> = (0..10).map(|i| format!("warm-{i}")).collect();
    round(&rt, &plain_url, &received, &warm, "pw");
    let plain_chats: Vec<String> = (0..n).map(|i| format!("plain-{i}")).collect();
    let (mut plain, _) = round(&rt, &plain_url, &received, &plain_chats, "p");

    // One chat, unmeasured, so that the first measured group is not the instance's first.
    let chatty_url = format!("{base}/{CHATTY}");
    round(&rt, &chatty_url, &received, &["first".to_string()], "f");
    let chats: Vec<String> = (0..n).map(|i| format!("room-{i}")).collect();
    let (mut fresh, mut fresh_accepted) = round(&rt, &chatty_url, &received, &chats, "n");
    let (mut warm, _) = round(&rt, &chatty_url, &received, &chats, "w");

    // Every chat has its own group, named after its key, and they all still run.
    let rows = groups(&root, CHATTY);
    assert_eq!(rows.len(), n + 1, "groups of {CHATTY}");
    for chat in &chats {
        let name = format!("{CHATTY}_{}", group_key(&format!("webhook:{chat}")));
        assert!(rows.iter().any(|r| r["name"] == name), "no group {name}");
    }
    let running = running_containers(&root);
    let (lost, duplicated) = common::lost_and_duplicated(&root);
    common::tear_down(&root, daemon);

    let (_, mut raw_ready) = raw_starts(tmp, n);

    println!("chat groups through the webhook channel, echo, sequential, {n} chats each:");
    let f = summary("new group: POST in → answer out", &mut fresh);
    let fa = summary("new group: POST in → 202 (group made)", &mut fresh_accepted);
    let w = summary("warm group (running): POST in → answer out", &mut warm);
    let p = summary("plain instance (running): POST in → answer out", &mut plain);
    let r = summary(
        "raw create+start → agent's ready file written",
        &mut raw_ready,
    );
    let ratio_raw = ratio("ratio, new group / raw start", &f, &r);
    let floor = r["median_ms"].as_f64().unwrap() + p["median_ms"].as_f64().unwrap();
    let ratio_floor = f["median_ms"].as_f64().unwrap() / floor;
    println!(
        "{:<50} {ratio_floor:.3}",
        "ratio, new group / (raw start + plain round trip)"
    );
    let ratio_warm = ratio("ratio, warm group / plain instance", &w, &p);
    println!(
        "containers running after both rounds: {running}; lost: {lost}, duplicated: {duplicated}"
    );
    json!({
        "chats": n,
        "new_group": f,
        "new_group_accepted": fa,
        "warm_group": w,
        "plain_instance": p,
        "raw_create_start_ready": r,
        "ratio_new_group_raw_start": ratio_raw,
        "ratio_new_group_raw_start_plus_plain": ratio_floor,
        "ratio_warm_group_plain": ratio_warm,
        "lost": lost,
        "duplicated": duplicated,
    })
}

/// Stops the home's daemon (as `tear_down`), starts a new one that finds the home as the old
/// one left it, and returns it with its RSS 11 s later (its first reconcile passes and
/// samples done).
fn restarted_rss(root: &Path, daemon: std::process::Child) -> (std::process::Child, u64) {
    common::tear_down(root, daemon);
    let _ = std::fs::remove_file(root.join("run/supervisor.sock"));
    let daemon = start(root);
    std::thread::sleep(Duration::from_secs(11));
    let rss = rss_kib(daemon.id());
    (daemon, rss)
}

/// Polls until `done` or `limit` passes; whether it came true.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    done()
}

fn memory(tmp: &Path, m: usize) -> Value {
    // Groups: one instance, m chats, each a message of its own, all sent at once.
    let root = tmp.join("groups");
    common::prepared_home(&root, "", 0);
    sv(&root, &["create-instance", CHATTY]);
    let (url, received) = crate::receiver::start();
    webhook_config(&root, CHATTY, &url, |c| {
        c["isolation"] = json!("chat");
        c["lifecycle"] = json!({"mode": "on-demand", "idle_timeout": "10s"});
    });
    let port = host_config(&root);
    let daemon = start(&root);
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(daemon.id());
    let hook = format!("http://127.0.0.1:{port}/v1/channels/webhook/{CHATTY}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let web = reqwest::Client::new();
    rt.block_on(async {
        for i in 0..m {
            post(&web, &hook, &format!("m{i}"), &format!("mem-{i}"), "hello").await;
        }
    });
    let all_posted = t.elapsed();
    let mut peak = rss_kib(daemon.id());
    let mut answered = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_secs(2) * m as u32;
    while answered.len() < m {
        assert!(
            Instant::now() < deadline,
            "{} of {m} groups answered",
            answered.len()
        );
        if let Ok((_, a)) = received.recv_timeout(Duration::from_millis(200)) {
            let said = a["text"].as_str().unwrap_or_default();
            assert!(said.starts_with("echo: ") && said.ends_with("hello"), "{a}");
            assert!(
                answered.insert(a["reply_to"].as_str().unwrap().to_string()),
                "{a}"
            );
        }
        peak = peak.max(rss_kib(daemon.id()));
    }
    let all_answered = t.elapsed();
    let answered_rss = rss_kib(daemon.id());
    let running_when_answered = running_containers(&root);
    assert_eq!(groups(&root, CHATTY).len(), m);
    assert!(
        wait_for(Duration::from_secs(300), || running_containers(&root) == 0),
        "groups still running after their idle timeout"
    );
    let all_idle = t.elapsed();
    std::thread::sleep(Duration::from_secs(11));
    let idle_rss = rss_kib(daemon.id());
    let group_disk = groups(&root, CHATTY)
        .iter()
        .filter_map(|g| g["disk_bytes"].as_u64())
        .sum::<u64>();
    common::lost_and_duplicated(&root);
    let (daemon, idle_restarted_rss) = restarted_rss(&root, daemon);
    common::tear_down(&root, daemon);

    // The same number of plain instances, created (and so stopped) while the daemon runs.
    let plain_root = tmp.join("plain");
    common::prepared_home(&plain_root, "", 0);
    let daemon = common::start_daemon(&plain_root);
    std::thread::sleep(Duration::from_secs(1));
    let plain_before = rss_kib(daemon.id());
    let t = Instant::now();
    for i in 0..m {
        sv(&plain_root, &["create-instance", &format!("p{i}")]);
    }
    let created = t.elapsed();
    std::thread::sleep(Duration::from_secs(11));
    let plain_rss = rss_kib(daemon.id());
    let (daemon, plain_restarted_rss) = restarted_rss(&plain_root, daemon);
    common::tear_down(&plain_root, daemon);

    println!(
        "daemon memory with {m} chat groups of one instance (one message each, sent at once):"
    );
    println!(
        "  all {m} POSTed (groups made) in {:.1} s, all answered in {:.1} s, all idle and stopped in {:.1} s",
        all_posted.as_secs_f64(),
        all_answered.as_secs_f64(),
        all_idle.as_secs_f64()
    );
    println!("  group containers running when the last was answered: {running_when_answered}");
    let per = |kib: u64, from: u64| (kib as f64 - from as f64) / m as f64;
    println!(
        "{:<50} {:>8.1} MiB",
        "daemon RSS, 1 instance, no groups",
        mib(before)
    );
    println!(
        "{:<50} {:>8.1} MiB",
        "daemon RSS, no instances (the plain home)",
        mib(plain_before)
    );
    println!(
        "{:<50} {:>8.1} MiB  ({:+.1} KiB a group)",
        format!("daemon RSS, {m} groups, all answered"),
        mib(answered_rss),
        per(answered_rss, before)
    );
    println!(
        "{:<50} {:>8.1} MiB",
        format!("daemon RSS, peak while {m} groups were made"),
        mib(peak)
    );
    println!(
        "{:<50} {:>8.1} MiB  ({:+.1} KiB a group)",
        format!("daemon RSS, {m} groups, all idle (stopped)"),
        mib(idle_rss),
        per(idle_rss, before)
    );
    println!(
        "{:<50} {:>8.1} MiB  ({:+.1} KiB an instance)",
        format!("daemon RSS, {m} plain instances, stopped"),
        mib(plain_rss),
        per(plain_rss, plain_before)
    );
    println!(
        "{:<50} {:>8.1} MiB",
        format!("daemon RSS, restarted with {m} idle groups"),
        mib(idle_restarted_rss)
    );
    println!(
        "{:<50} {:>8.1} MiB",
        format!("daemon RSS, restarted with {m} plain instances"),
        mib(plain_restarted_rss)
    );
    let r = idle_rss as f64 / plain_rss as f64;
    println!("{:<50} {r:.3}", "ratio, RSS idle groups / plain instances");
    let r_restarted = idle_restarted_rss as f64 / plain_restarted_rss as f64;
    println!(
        "{:<50} {r_restarted:.3}",
        "ratio, RSS restarted: idle groups / plain instances"
    );
    println!(
        "  {m} plain instances created (create-instance, a process each) in {:.1} s; the groups' workspaces and queues hold {:.1} MiB",
        created.as_secs_f64(),
        group_disk as f64 / 1048576.0
    );
    json!({
        "groups": m,
        "daemon_rss_no_groups_mib": mib(before),
        "daemon_rss_groups_answered_mib": mib(answered_rss),
        "daemon_rss_groups_peak_mib": mib(peak),
        "daemon_rss_groups_idle_mib": mib(idle_rss),
        "daemon_rss_no_instances_mib": mib(plain_before),
        "daemon_rss_plain_instances_mib": mib(plain_rss),
        "ratio_rss_idle_groups_plain": r,
        "daemon_rss_restarted_idle_groups_mib": mib(idle_restarted_rss),
        "daemon_rss_restarted_plain_instances_mib": mib(plain_restarted_rss),
        "ratio_rss_restarted_idle_groups_plain": r_restarted,
        "daemon_rss_added_per_idle_group_kib": per(idle_rss, before),
        "daemon_rss_added_per_plain_instance_kib": per(plain_rss, plain_before),
        "running_when_answered": running_when_answered,
        "all_posted_ms": ms(all_posted),
        "all_answered_ms": ms(all_answered),
        "all_idle_ms": ms(all_idle),
        "plain_instances_created_ms": ms(created),
        "groups_disk_bytes": group_disk,
    })
}

pub fn run() -> Value {
    let n = env_usize("GROUPS_N", 20);
    let m = env_usize("GROUPS_MEM", 200);
    let tmp = tempfile::tempdir().unwrap();
    let latency = latency(tmp.path(), n);
    let memory = memory(tmp.path(), m);
    json!({"latency": latency, "memory": memory})
}
