//! Where an echo round trip's time goes, hop by hop: the instance's `in/` and `out/` are
//! watched from the benchmark (inotify, as the daemon and the agent watch them), and each
//! sequential message's file events are lined up between the client's send and its answer.
//!
//! An echo turn is two exchanges through the files: the turn goes in, the agent asks the host
//! for a model call (`out/`), the host answers it (`in/`), the agent writes its reply
//! (`out/`), the host records it and removes the file. A temporary file appearing marks the
//! start of a write, its rename into place the end of it, so every hop is one side's work:
//!
//! | hop | who | from → to |
//! |---|---|---|
//! | accept → turn written | daemon | send → turn's temp file created in `in/` |
//! | turn write | daemon | temp created → renamed into `in/` |
//! | agent takes the turn | agent | turn in `in/` → model request's temp created in `out/` |
//! | request write | agent | temp created → renamed into `out/` |
//! | host serves the request | daemon | request in `out/` → response's temp created in `in/` |
//! | response write | daemon | temp created → renamed into `in/` |
//! | agent takes the response | agent | response in `in/` → reply's temp created in `out/` |
//! | reply write | agent | temp created → renamed into `out/` |
//! | host records the answer | daemon | reply in `out/` → reply removed from `out/` |
//! | waiter answered | daemon + client | reply removed → the client has the answer |
//!
//! A directory fsync after a rename is not seen as an event: it falls into the next hop
//! (the writer's) or runs beside the other side's work.

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use notify::event::{CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use serde_json::{json, Value};

use crate::stats::{ms, summary};

pub const HOPS: &[&str] = &[
    "accept → turn written (daemon)",
    "turn write (daemon)",
    "agent takes the turn",
    "model request write (agent)",
    "host serves the model request",
    "model response write (daemon)",
    "agent takes the response",
    "reply write (agent)",
    "host records the answer",
    "waiter answered (daemon → client)",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Created,
    RenamedIn,
    Removed,
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    dir: Dir,
    kind: Kind,
    name: String,
}

/// Watches `in_dir` and `out_dir` until dropped; events arrive on the receiver.
pub struct Probe {
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::Receiver<Seen>,
    backlog: Vec<Seen>,
}

impl Probe {
    pub fn watch(in_dir: &Path, out_dir: &Path) -> Probe {
        let (tx, rx) = mpsc::channel();
        let (i, o) = (in_dir.to_path_buf(), out_dir.to_path_buf());
        let mut watcher = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
            let at = Instant::now();
            let Ok(event) = r else { return };
            let kind = match event.kind {
                EventKind::Create(CreateKind::File | CreateKind::Any) => Kind::Created,
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Kind::RenamedIn,
                EventKind::Remove(RemoveKind::File | RemoveKind::Any) => Kind::Removed,
                _ => return,
            };
            let Some(path) = event.paths.first() else {
                return;
            };
            let dir = match path.parent() {
                Some(p) if p == i => Dir::In,
                Some(p) if p == o => Dir::Out,
                _ => return,
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = tx.send(Seen {
                at,
                dir,
                kind,
                name,
            });
        })
        .unwrap();
        watcher.watch(in_dir, RecursiveMode::NonRecursive).unwrap();
        watcher.watch(out_dir, RecursiveMode::NonRecursive).unwrap();
        Probe {
            _watcher: watcher,
            rx,
            backlog: Vec::new(),
        }
    }

    /// The hops (ms, in [`HOPS`] order) of one round trip sent at `sent` and answered at
    /// `answered`, or `None` when its events do not line up as an echo turn's.
    pub fn round_trip(&mut self, sent: Instant, answered: Instant) -> Option<Vec<f64>> {
        // Events of this round trip can still be in flight on the watcher's thread.
        std::thread::sleep(std::time::Duration::from_millis(2));
        self.backlog.extend(self.rx.try_iter());
        let (mine, later): (Vec<Seen>, Vec<Seen>) =
            self.backlog.drain(..).partition(|s| s.at <= answered);
        self.backlog = later;
        let mine: Vec<&Seen> = mine.iter().filter(|s| s.at >= sent).collect();
        let pick = |dir: Dir, kind: Kind, temp: bool| -> Vec<&Seen> {
            mine.iter()
                .copied()
                .filter(|s| s.dir == dir && s.kind == kind && s.name.starts_with('.') == temp)
                .collect()
        };
        let (in_tmp, in_to) = (
            pick(Dir::In, Kind::Created, true),
            pick(Dir::In, Kind::RenamedIn, false),
        );
        let (out_tmp, out_to) = (
            pick(Dir::Out, Kind::Created, true),
            pick(Dir::Out, Kind::RenamedIn, false),
        );
        if in_tmp.len() != 2 || in_to.len() != 2 || out_tmp.len() != 2 || out_to.len() != 2 {
            return None;
        }
        let reply = &out_to[1].name;
        let removed = mine
            .iter()
            .find(|s| s.dir == Dir::Out && s.kind == Kind::Removed && &s.name == reply)?;
        let marks = [
            sent,
            in_tmp[0].at,
            in_to[0].at,
            out_tmp[0].at,
            out_to[0].at,
            in_tmp[1].at,
            in_to[1].at,
            out_tmp[1].at,
            out_to[1].at,
            removed.at,
            answered,
        ];
        if marks.windows(2).any(|w| w[1] < w[0]) {
            return None;
        }
        Some(marks.windows(2).map(|w| ms(w[1] - w[0])).collect())
    }
}

/// Prints the hops' percentiles and returns them as JSON; `samples[i]` is one round trip.
pub fn report(samples: &[Vec<f64>]) -> Value {
    println!("per hop ({} round trips lined up):", samples.len());
    let mut out = serde_json::Map::new();
    if samples.is_empty() {
        return json!(out);
    }
    for (i, hop) in HOPS.iter().enumerate() {
        let mut xs: Vec<f64> = samples.iter().map(|s| s[i]).collect();
        out.insert(hop.to_string(), summary(&format!("  {hop}"), &mut xs));
    }
    json!(out)
}
