//! A deterministic generator of malformed IPC entries: everything an agent (or whatever runs
//! in its container) could leave in `out/` that the host must refuse without crashing,
//! hanging, or following it. The same seed gives the same entries, so a failure can be
//! replayed (`SUPERVISOR_FAULT_SEED`).
//!
//! Every entry's name starts with its index (after any leading dots), so the names stay
//! distinct once the host has made them safe for the quarantine.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// xorshift64*: small, fast and good enough to pick test cases; no crate needed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        Self(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The seed from `SUPERVISOR_FAULT_SEED`, else a fresh one from the clock and the process id.
pub fn seed() -> u64 {
    if let Ok(s) = std::env::var("SUPERVISOR_FAULT_SEED") {
        return s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SUPERVISOR_FAULT_SEED={s:?} is not a number"));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// What an entry is on disk.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symbolic link to this target (not necessarily existing).
    Symlink(PathBuf),
    Fifo,
    /// A directory, with one file inside.
    Dir,
    /// A unix socket.
    Socket,
    /// A hard link to this existing file.
    HardLink(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Junk {
    pub name: OsString,
    /// Which generator made it, for messages and tallies.
    pub kind: &'static str,
    pub entry: Entry,
    /// A temporary name (`.<…>.tmp`): readers skip these, so the host must leave it alone.
    pub temp: bool,
}

/// Places the generator may point links at.
pub struct Targets {
    /// Another instance's directory: a link there must never let one instance act as another.
    pub other_instance: PathBuf,
    /// A file outside the home for hard links; its bytes must never change.
    pub decoy: PathBuf,
}

/// Of every 1,000 entries, how many are of each non-file kind; the rest are files.
const SYMLINKS: u64 = 60;
const FIFOS: u64 = 30;
const DIRS: u64 = 20;
const SOCKETS: u64 = 10;
const HARD_LINKS: u64 = 20;
const TEMPS: u64 = 10;
/// Files over the size limit are costly; a few are enough.
pub const MAX_OVERSIZED: usize = 8;
/// Deep nesting up to 100,000 levels costs up to 200 KB a file.
pub const MAX_DEEP: usize = 200;

/// `count` malformed entries from `rng`.
pub fn generate(rng: &mut XorShift, count: usize, targets: &Targets) -> Vec<Junk> {
    let mut out = Vec::with_capacity(count);
    let (mut oversized, mut deep) = (0, 0);
    for i in 0..count {
        let roll = rng.below(1000);
        let mut bounds = [SYMLINKS, FIFOS, DIRS, SOCKETS, HARD_LINKS, TEMPS].into_iter();
        let mut edge = 0;
        let mut slot = || {
            edge += bounds.next().unwrap();
            roll < edge
        };
        let (kind, entry, temp) = if slot() {
            let target = rng
                .pick(&[
                    PathBuf::from("/etc/passwd"),
                    PathBuf::from("/etc/shadow"),
                    PathBuf::from("/"),
                    PathBuf::from("/dev/zero"),
                    PathBuf::from("/proc/self/mem"),
                    targets.other_instance.clone(),
                    targets.other_instance.join("ipc/out"),
                    targets.other_instance.join("config.json"),
                    PathBuf::from("../in"),
                    PathBuf::from("../../config.json"),
                    PathBuf::from("/nonexistent/dangling.json"),
                    PathBuf::from("dangling-relative.json"),
                    PathBuf::from(format!("{i:05}-loop.json")),
                ])
                .clone();
            ("symlink", Entry::Symlink(target), false)
        } else if slot() {
            ("fifo", Entry::Fifo, false)
        } else if slot() {
            ("directory", Entry::Dir, false)
        } else if slot() {
            ("socket", Entry::Socket, false)
        } else if slot() {
            ("hard-link", Entry::HardLink(targets.decoy.clone()), false)
        } else if slot() {
            let (kind, bytes) = file_content(rng, &mut oversized, &mut deep);
            (kind, Entry::File(bytes), true)
        } else {
            let (kind, bytes) = file_content(rng, &mut oversized, &mut deep);
            (kind, Entry::File(bytes), false)
        };
        let name = if temp {
            OsString::from(format!(".{i:05}-{kind}.json.tmp"))
        } else {
            entry_name(rng, i, kind)
        };
        // A link to itself: a loop.
        let entry = match entry {
            Entry::Symlink(t) if t.to_string_lossy().ends_with("-loop.json") => {
                Entry::Symlink(PathBuf::from(&name))
            }
            other => other,
        };
        out.push(Junk {
            name,
            kind,
            entry,
            temp,
        });
    }
    out
}

/// A file name for entry `i`: mostly like an envelope's, sometimes odd (no extension, a
/// leading dot, spaces and quotes, bytes that are not UTF-8, very long).
fn entry_name(rng: &mut XorShift, i: usize, kind: &str) -> OsString {
    let base = format!("{i:05}-{kind}");
    match rng.below(10) {
        0 => OsString::from(format!(".{base}.json")),
        1 => OsString::from(format!("{base} with spaces'\"$(x).json")),
        2 => OsString::from_vec([base.as_bytes(), b"-\xff\xfe\xc0\xaf.json"].concat()),
        3 => OsString::from(format!("{base}-{}.json", "x".repeat(200))),
        4 => OsString::from(format!("{base}-ünïcödé-🙂.json")),
        5 => OsString::from(base),
        6 => OsString::from(format!("{base}.reason.json")),
        _ => OsString::from(format!("1767225600000-{base}.json")),
    }
}

/// A valid envelope of a type an agent sends, as JSON.
pub fn valid_agent_envelope(rng: &mut XorShift) -> Value {
    let head =
        |ty: &str| json!({"v": 1, "id": "a7e3c9f15b2d48e6", "ts": 1767225603050_i64, "type": ty});
    let mut v = match rng.below(6) {
        0 => head("ready"),
        1 => head("reply"),
        2 => head("message"),
        3 => head("turn_failed"),
        4 => head("model_request"),
        _ => head("task_request"),
    };
    let fields = match v["type"].as_str().unwrap() {
        "ready" => json!({"agent_version": "0.1.0", "protocol": 1}),
        "reply" => json!({"turn_id": "019b76daad0a7c3e", "reply_to": ["m1"], "body": "hi"}),
        "message" => json!({"turn_id": "019b76daad0a7c3e", "body": "working"}),
        "turn_failed" => json!({"turn_id": "019b76daad0a7c3e", "error": "step limit reached"}),
        "model_request" => json!({
            "request_id": "c41e8a2f", "turn_id": "019b76daad0a7c3e",
            "messages": [{"role": "user", "content": "hello"}],
            "tools": [{"name": "read_file", "description": "d", "parameters": {"type": "object"}}],
            "max_tokens": 64
        }),
        _ => json!({"request_id": "f8a3c1e6", "action": "list", "args": {}}),
    };
    for (k, val) in fields.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

/// A valid envelope of a type only the host sends: refused when found in `out/`.
pub fn host_only_envelope(rng: &mut XorShift) -> Value {
    match rng.below(4) {
        0 => json!({"v": 1, "id": "t1", "ts": 1, "type": "turn", "turn_id": "t1",
                    "messages": [{"id": "m", "sender": "local", "body": "hi", "ts": 1}]}),
        1 => json!({"v": 1, "id": "r1", "ts": 1, "type": "model_response", "request_id": "q1",
                    "content": "ok"}),
        2 => json!({"v": 1, "id": "r2", "ts": 1, "type": "task_response", "request_id": "q1",
                    "ok": true}),
        _ => json!({"v": 1, "id": "s1", "ts": 1, "type": "shutdown"}),
    }
}

/// The required fields of an agent envelope's type (beyond the header).
fn required(ty: &str) -> &'static [&'static str] {
    match ty {
        "ready" => &["agent_version", "protocol"],
        "reply" => &["turn_id", "body"],
        "message" => &["turn_id", "body"],
        "turn_failed" => &["turn_id", "error"],
        "model_request" => &["request_id", "turn_id", "messages"],
        _ => &["request_id", "action"],
    }
}

/// A value of the wrong type for `field` of a `ty` envelope (never one serde would accept).
fn wrong_value(rng: &mut XorShift, field: &str) -> Value {
    let not_string = [json!(7), json!(true), json!([]), json!({}), json!(1.5)];
    let not_unsigned = [json!("1"), json!(1.5), json!(-1), json!(true), json!([1])];
    let not_array = [json!("x"), json!(7), json!({}), json!(true), json!([7])];
    match field {
        "v" | "protocol" | "max_tokens" => rng.pick(&not_unsigned).clone(),
        "ts" => rng
            .pick(&[json!("1"), json!(1.5), json!(true), json!([]), json!(1e300)])
            .clone(),
        "reply_to" | "tools" => rng.pick(&not_array).clone(),
        "messages" => rng
            .pick(&[
                json!("x"),
                json!({}),
                json!([{"role": "robot", "content": "x"}]),
                json!([{"role": "user", "content": 5}]),
                json!([7]),
            ])
            .clone(),
        _ => rng.pick(&not_string).clone(),
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// A malformed file's bytes and what makes them malformed. At most [`MAX_OVERSIZED`] files
/// over the size limit and [`MAX_DEEP`] deeply nested ones are made, counted in `oversized`
/// and `deep`.
pub fn file_content(
    rng: &mut XorShift,
    oversized: &mut usize,
    deep: &mut usize,
) -> (&'static str, Vec<u8>) {
    loop {
        match rng.below(16) {
            0 => {
                // Bytes that are not UTF-8, inside an otherwise fine envelope.
                let mut text = to_bytes(&valid_agent_envelope(rng));
                let bad: [&[u8]; 5] = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80"];
                let at = rng.range(1, text.len() as u64) as usize;
                let insert = rng.pick(&bad).to_vec();
                text.splice(at..at, insert);
                return ("not-utf8", text);
            }
            1 => {
                let text = to_bytes(&valid_agent_envelope(rng));
                let cut = rng.below(text.len() as u64) as usize;
                return ("truncated", text[..cut].to_vec());
            }
            2 if *deep < MAX_DEEP => {
                *deep += 1;
                let depth = rng.range(200, 100_001) as usize;
                let bytes = match rng.below(3) {
                    0 => "[".repeat(depth).into_bytes(),
                    1 => "{\"a\":".repeat(depth).into_bytes(),
                    _ => {
                        // Closed, and in a field that takes any JSON: still too deep.
                        let depth = depth.min(5_000);
                        format!(
                            r#"{{"v":1,"id":"a","ts":1,"type":"task_request","request_id":"r","action":"list","args":{}{}}}"#,
                            "[".repeat(depth),
                            "]".repeat(depth)
                        )
                        .into_bytes()
                    }
                };
                return ("deep", bytes);
            }
            3 => {
                let mut v = valid_agent_envelope(rng);
                let ty = v["type"].as_str().unwrap().to_string();
                let mut fields = vec!["v", "id", "ts"];
                fields.extend(required(&ty));
                if ty == "reply" {
                    fields.push("reply_to");
                }
                if ty == "model_request" {
                    fields.extend(["tools", "max_tokens"]);
                }
                let field = *rng.pick(&fields);
                v[field] = wrong_value(rng, field);
                return ("wrong-type", to_bytes(&v));
            }
            4 => {
                let mut v = valid_agent_envelope(rng);
                v["v"] = rng
                    .pick(&[
                        json!(0),
                        json!(2),
                        json!(99),
                        json!(4_294_967_296_u64),
                        json!(u64::MAX),
                        json!(-1),
                        json!(1.0),
                        json!("1"),
                        json!(null),
                    ])
                    .clone();
                if rng.chance(10) {
                    v.as_object_mut().unwrap().remove("v");
                }
                return ("wrong-version", to_bytes(&v));
            }
            5 => {
                let mut v = valid_agent_envelope(rng);
                let t = rng
                    .pick(&[
                        json!("Reply"),
                        json!("REPLY"),
                        json!("reply "),
                        json!(""),
                        json!("launch_missiles"),
                        json!("ModelRequest"),
                        json!("turn\u{0}"),
                        json!(5),
                        json!(null),
                    ])
                    .clone();
                v["type"] = t;
                return ("unknown-type", to_bytes(&v));
            }
            6 => {
                let mut v = valid_agent_envelope(rng);
                let ty = v["type"].as_str().unwrap().to_string();
                let id = rng
                    .pick(&[
                        "",
                        "a/b",
                        "../../etc/passwd",
                        "..",
                        ".",
                        "a\u{0}b",
                        "/abs",
                        "a\\b",
                        "a.json",
                        "a b",
                        "é",
                        "%2e%2e%2f",
                        "x\n",
                    ])
                    .to_string();
                let id = if rng.chance(5) { "x".repeat(65) } else { id };
                let mut fields = vec!["id"];
                fields.extend(required(&ty).iter().filter(|f| f.ends_with("_id")).copied());
                v[*rng.pick(&fields)] = json!(id);
                return ("bad-id", to_bytes(&v));
            }
            7 => return ("host-only-type", to_bytes(&host_only_envelope(rng))),
            8 => {
                let texts: [&[u8]; 8] = [
                    b"",
                    b"   \n",
                    b"[]",
                    b"\"text\"",
                    b"42",
                    b"null",
                    b"true",
                    b"[{\"v\":1}]",
                ];
                let text = *rng.pick(&texts);
                return ("not-an-object", text.to_vec());
            }
            9 => {
                let mut v = valid_agent_envelope(rng);
                let ty = v["type"].as_str().unwrap().to_string();
                let mut fields = vec!["ts"];
                fields.extend(required(&ty));
                let field = *rng.pick(&fields);
                v.as_object_mut().unwrap().remove(field);
                return ("missing-field", to_bytes(&v));
            }
            10 => {
                let n = rng.below(4096) as usize;
                let mut bytes = rng.bytes(n);
                // Random bytes that happen to be valid JSON would be a bad test case: a
                // leading NUL is never JSON.
                bytes.insert(0, 0);
                return ("random-bytes", bytes);
            }
            11 if *oversized < MAX_OVERSIZED => {
                *oversized += 1;
                let mut bytes = to_bytes(&valid_agent_envelope(rng));
                let size = (1 << 20) + rng.range(1, 64 * 1024) as usize;
                bytes.resize(size, b' ');
                return ("oversized", bytes);
            }
            12 => {
                let one = to_bytes(&valid_agent_envelope(rng));
                let tails: [&[u8]; 4] = [b"x", b",", b"}", b"\0"];
                let tail = *rng.pick(&tails);
                let bytes = if rng.chance(50) {
                    [one.as_slice(), one.as_slice()].concat()
                } else {
                    [one.as_slice(), tail].concat()
                };
                return ("trailing-data", bytes);
            }
            13 => {
                let text = String::from_utf8(to_bytes(&valid_agent_envelope(rng))).unwrap();
                let bad = rng
                    .pick(&[
                        r#""ts":NaN"#,
                        r#""ts":Infinity"#,
                        r#""ts":1e999"#,
                        r#""ts":0x10"#,
                        r#""ts":01"#,
                        r#""ts":+1"#,
                    ])
                    .to_string();
                let bytes = text.replacen(r#""ts":1767225603050"#, &bad, 1).into_bytes();
                return ("bad-number", bytes);
            }
            14 => {
                // Encodings and escapes JSON does not allow: a byte-order mark, UTF-16, a lone
                // surrogate, a raw control character in a string.
                let v = valid_agent_envelope(rng);
                let text = serde_json::to_string(&v).unwrap();
                let bytes = match rng.below(4) {
                    0 => [&b"\xef\xbb\xbf"[..], text.as_bytes()].concat(),
                    1 => text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
                    2 => text
                        .replacen(
                            r#""id":"a7e3c9f15b2d48e6""#,
                            r#""id":"a7e3","x":"\ud800""#,
                            1,
                        )
                        .into_bytes(),
                    _ => text
                        .replacen(r#""id":"a7e3c9f15b2d48e6""#, "\"id\":\"a7\u{1}e3\"", 1)
                        .into_bytes(),
                };
                return ("bad-encoding", bytes);
            }
            15 => {
                // Keys and quoting JSON does not allow.
                let text = String::from_utf8(to_bytes(&valid_agent_envelope(rng))).unwrap();
                let bytes = match rng.below(3) {
                    0 => text.replace('"', "'"),
                    1 => text.replacen("\"v\":", "v:", 1),
                    _ => text.replacen(',', ",,", 1),
                }
                .into_bytes();
                return ("bad-syntax", bytes);
            }
            _ => continue,
        }
    }
}

/// Creates `junk` at `dir/<its name>` (`dir` must have a short path, for sockets). A directory
/// gets one file inside; a socket is bound and closed (its file stays).
pub fn create(dir: &Path, junk: &Junk) {
    let path = dir.join(&junk.name);
    match &junk.entry {
        Entry::File(bytes) => std::fs::write(&path, bytes).unwrap(),
        Entry::Symlink(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
        Entry::Fifo => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
        Entry::Dir => {
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("inside.json"), b"{}").unwrap();
        }
        Entry::Socket => {
            // A socket's path must be short: bound under a short name, then renamed.
            let short = dir.join("s.sock");
            drop(std::os::unix::net::UnixListener::bind(&short).unwrap());
            std::fs::rename(&short, &path).unwrap();
        }
        Entry::HardLink(target) => std::fs::hard_link(target, &path).unwrap(),
    }
}
