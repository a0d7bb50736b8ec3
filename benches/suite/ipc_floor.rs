//! The IPC floor: the same write-temp, rename, file-event, read-and-parse, answer round trip
//! the host and the agent use, between two threads of one process, with no container and no
//! database. How close the full path comes to this is how much the rest costs.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use serde_json::{json, Value};

use crate::stats::{ms, summary};

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Waits for a regular, non-temporary file in `dir`, woken by file events.
fn take_one(dir: &Path, events: &mpsc::Receiver<()>) -> (PathBuf, Vec<u8>) {
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
        if let Some(p) = found {
            let bytes = std::fs::read(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            return (p, bytes);
        }
        let _ = events.recv_timeout(Duration::from_millis(250));
    }
}

fn watch(dir: &Path) -> (notify::RecommendedWatcher, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let mut w = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .unwrap();
    w.watch(dir, RecursiveMode::NonRecursive).unwrap();
    (w, rx)
}

pub fn run() -> Value {
    let n = crate::messages::n();
    let tmp = tempfile::tempdir().unwrap();
    let (to_agent, to_host) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&to_agent).unwrap();
    std::fs::create_dir_all(&to_host).unwrap();
    let (_wa, agent_events) = watch(&to_agent);
    let (_wh, host_events) = watch(&to_host);
    let (agent_dir, reply_dir) = (to_agent.clone(), to_host.clone());
    let agent = std::thread::spawn(move || {
        for _ in 0..n {
            let (_, bytes) = take_one(&agent_dir, &agent_events);
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let reply = json!({"v": 1, "id": v["id"], "ts": 0, "type": "reply",
                "turn_id": v["id"], "body": format!("echo: {}", v["body"])});
            write_atomic(
                &reply_dir,
                &format!("{}.json", v["id"].as_str().unwrap()),
                reply.to_string().as_bytes(),
            );
        }
    });
    let mut rtt = Vec::new();
    for i in 0..n {
        let id = format!("m{i:06}");
        let msg = json!({"v": 1, "id": id, "ts": 0, "type": "turn", "turn_id": id, "body": format!("message {i}")});
        let t = Instant::now();
        write_atomic(&to_agent, &format!("{id}.json"), msg.to_string().as_bytes());
        let (_, bytes) = take_one(&to_host, &host_events);
        rtt.push(ms(t.elapsed()));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], id);
    }
    agent.join().unwrap();
    println!("write-rename-notify round trip, two threads, no container or database:");
    let s = summary("IPC floor round trip", &mut rtt);
    json!({"messages": n, "round_trip": s})
}
