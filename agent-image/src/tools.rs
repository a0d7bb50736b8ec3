//! The tools the model may call: their specs (JSON Schema parameters and descriptions the
//! model acts on) and their execution. Every failure is returned to the model as text starting
//! with `error: `, so it can correct itself; only a shutdown stops the turn.

use crate::exec::{self, Shell};
use crate::host::{Host, HostError};
use crate::protocol::{ToolCall, ToolSpec};
use crate::web_tools::{self, WebTools};
use crate::workspace::{Kind, Workspace, READ_CAP};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The memory file, relative to the workspace.
pub const MEMORY_FILE: &str = "memory/MEMORY.md";
/// The longest note `remember` takes, in bytes.
pub const NOTE_CAP: usize = 2048;
/// The path under which `read_file` reads the built-in skills.
pub const BUILTIN_SKILLS_PREFIX: &str = "/opt/runtime/skills/";
/// The actions of `schedule_task`.
pub const TASK_ACTIONS: &[&str] = &["create", "list", "pause", "resume", "cancel"];
/// How `schedule` is written for each `schedule_kind`. Spelled out in full because a model
/// guesses otherwise (a seconds field, "every day at 9", a time without a zone), and the host
/// can only refuse what it cannot read.
const SCHEDULE_FORMATS: &str = "For create. cron: a standard 5-field cron expression, \
\"minute hour day-of-month month day-of-week\", e.g. \"0 9 * * 1-5\"; names like MON and \
the extensions L, # and W are allowed; there is no seconds field; read in tz. every: a \
duration such as \"30m\", \"2h\" or \"1h30m\" (at least 1s), counted from the first run. \
at: a local date-time such as \"2026-12-01T09:00\", read in tz, or RFC 3339 with an offset \
such as \"2026-12-01T09:00:00+01:00\".";

/// A shutdown arrived while a tool waited for the host; the turn must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown;

/// Why a tool call failed.
enum Failure {
    /// Told to the model as `error: <text>`.
    Text(String),
    Shutdown,
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Text(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure::Text(s.to_string())
    }
}

/// The tools, and what they work on.
#[derive(Debug, Clone)]
pub struct ToolBox {
    /// The file tools' root (`/workspace`); also the working directory of `exec`.
    pub workspace: Workspace,
    /// The built-in skills (`/opt/runtime/skills`), readable with `read_file`.
    pub builtin_skills: Option<Workspace>,
    /// The instance's persona (`/persona`, read-only), in a chat group's container: read with
    /// `read_file` and `list_dir` by absolute paths under its label.
    pub persona: Option<Workspace>,
    /// The instance's shared knowledge (`/shared`, read-only), reached like `persona`.
    pub shared: Option<Workspace>,
    /// The shell for `exec`; the tool is offered only when there is one.
    pub shell: Option<Shell>,
}

impl ToolBox {
    /// The read-only trees there are, reached by absolute paths under their labels, each with
    /// the phrase that tells the model what it holds.
    fn read_only_trees(&self) -> impl Iterator<Item = (&Workspace, &'static str)> {
        [
            (
                self.persona.as_ref(),
                "the instance's persona, shared by every conversation",
            ),
            (
                self.shared.as_ref(),
                "knowledge shared by every conversation of the instance",
            ),
        ]
        .into_iter()
        .filter_map(|(tree, what)| Some((tree?, what)))
    }

    /// What a file tool's description adds about each read-only tree there is, or "" when
    /// there is none: the model should not look for trees its container lacks.
    fn read_only_note(&self, tool: &str) -> String {
        self.read_only_trees()
            .map(|(tree, what)| {
                let label = tree.label();
                match tool {
                    "read_file" => format!(
                        " Also readable, by absolute path: \"{label}/NAME\", {what} \
                         (read-only)."
                    ),
                    "list_dir" => format!(" \"{label}\" lists {what} (read-only)."),
                    _ => format!(" \"{label}\" is read-only."),
                }
            })
            .collect()
    }

    /// The specs of the tools on offer, in a fixed order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = vec![
            spec(
                "read_file",
                &(String::from(
                    "Read a text file from the workspace. The path is relative to /workspace, \
                     e.g. \"notes/todo.md\"; absolute paths and \"..\" are refused, except the \
                     built-in skills, which are read as \"/opt/runtime/skills/NAME.md\". \
                     Returns the file's text, at most 256 KiB; a longer file is cut and says so.",
                ) + &self.read_only_note("read_file")),
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path relative to /workspace."}
                    },
                    "required": ["path"]
                }),
            ),
            spec(
                "write_file",
                &(String::from(
                    "Create a file in the workspace, or replace one entirely, with the given \
                     content (at most 1 MiB). Missing parent folders are created. The path is \
                     relative to /workspace. To change an existing file, read it first and \
                     write back the complete new version.",
                ) + &self.read_only_note("write_file")),
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path relative to /workspace."},
                        "content": {"type": "string", "description": "The complete new contents of the file."}
                    },
                    "required": ["path", "content"]
                }),
            ),
            spec(
                "list_dir",
                &(String::from(
                    "List a folder in the workspace: one line per entry with its kind (file, \
                     dir or link), its size in bytes and its name. The path is relative to \
                     /workspace; leave it out to list /workspace itself.",
                ) + &self.read_only_note("list_dir")),
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Folder path relative to /workspace.", "default": "."}
                    }
                }),
            ),
        ];
        if self.shell.is_some() {
            specs.push(spec(
                "exec",
                "Run a shell command (busybox sh, with busybox's basic utilities such as ls, \
                 grep, sed, awk, sort, wc, find, head) in /workspace. There is no network and \
                 no input. The command and everything it starts are killed after timeout_secs. \
                 Returns the exit status and the combined stdout and stderr, cut at 64 KiB.",
                json!({
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "description": "The command line, run with sh -c."},
                        "timeout_secs": {
                            "type": "integer", "minimum": 1, "maximum": exec::MAX_TIMEOUT_SECS,
                            "default": exec::DEFAULT_TIMEOUT_SECS,
                            "description": "Time limit in seconds."
                        }
                    },
                    "required": ["command"]
                }),
            ));
        }
        specs.extend([
            spec(
                "remember",
                "Save a note to long-term memory (memory/MEMORY.md, which you see at the start \
                 of every turn). It is stored as \"- YYYY-MM-DD: note\" with today's date. Use \
                 it for facts that will matter later: preferences, decisions and their reasons, \
                 commitments. One line, at most 2 KiB. Never save secrets.",
                json!({
                    "type": "object",
                    "properties": {
                        "note": {"type": "string", "description": "One fact, stated plainly, on one line."}
                    },
                    "required": ["note"]
                }),
            ),
            spec(
                "send_message",
                "Send a separate chat message right away, before your final reply: a \
                 follow-up, or a result worth reporting on a scheduled turn. Your final reply \
                 is sent anyway, so don't use this to split an ordinary answer into pieces.",
                json!({
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "description": "The message to send."}
                    },
                    "required": ["text"]
                }),
            ),
            spec(
                "schedule_task",
                "Manage your scheduled tasks: each one starts a turn for you later. You can \
                 only see and change the tasks of this instance. \"create\" needs \
                 schedule_kind, schedule and prompt (tz and context_mode are optional); \
                 \"list\" shows your tasks with their ids; \"pause\", \"resume\" and \
                 \"cancel\" need task_id, and a paused task does not run until it is resumed. \
                 Cron and at times are read in tz, UTC if it is left out. The prompt is all \
                 your future self will see of this conversation, so make it complete. Returns \
                 the host's answer.",
                json!({
                    "type": "object",
                    "properties": {
                        "action": {"type": "string", "enum": TASK_ACTIONS},
                        "task_id": {"type": "integer", "description": "Needed for pause, resume and cancel: the id shown by list."},
                        "schedule_kind": {
                            "type": "string", "enum": ["cron", "every", "at"],
                            "description": "For create. cron: repeatedly, by a cron expression read in tz; every: repeatedly, at a fixed interval; at: once, at a given time in the future."
                        },
                        "schedule": {
                            "type": "string",
                            "description": SCHEDULE_FORMATS
                        },
                        "tz": {"type": "string", "description": "For cron and at only (leave it out for every): an IANA time zone name such as \"Europe/Berlin\"; default \"UTC\"."},
                        "prompt": {"type": "string", "description": "What to do when the task runs, self-contained."},
                        "context_mode": {
                            "type": "string", "enum": ["isolated", "continue"],
                            "description": "isolated (default): the task's turn starts without chat history; continue: it sees the recent conversation."
                        }
                    },
                    "required": ["action"]
                }),
            ),
        ]);
        specs
    }

    /// The specs on offer on a turn: [`ToolBox::specs`], and the web tools it offers.
    pub fn specs_for(&self, web: WebTools) -> Vec<ToolSpec> {
        let mut specs = self.specs();
        specs.extend(web_tools::specs(web));
        specs
    }

    /// Runs one tool call and returns the text for the model (`error: ...` on failure). The
    /// web tools run only when `web` offers them.
    pub fn call(
        &self,
        call: &ToolCall,
        turn_id: &str,
        web: WebTools,
        host: &mut dyn Host,
    ) -> Result<String, Shutdown> {
        match self.dispatch(call, turn_id, web, host) {
            Ok(text) => Ok(text),
            Err(Failure::Text(msg)) => Ok(format!("error: {msg}")),
            Err(Failure::Shutdown) => Err(Shutdown),
        }
    }

    fn dispatch(
        &self,
        call: &ToolCall,
        turn_id: &str,
        web: WebTools,
        host: &mut dyn Host,
    ) -> Result<String, Failure> {
        let args = arguments(&call.arguments)?;
        match call.name.as_str() {
            "read_file" => self.read_file(str_arg(&args, "path")?),
            "write_file" => {
                let path = str_arg(&args, "path")?;
                let content = str_arg(&args, "content")?;
                self.refuse_read_only(path)?;
                let n = self.workspace.write_file(path, content.as_bytes())?;
                Ok(format!("wrote {n} bytes to {path}"))
            }
            "list_dir" => self.list_dir(opt_str_arg(&args, "path")?.unwrap_or(".")),
            "exec" if self.shell.is_some() => self.exec(&args),
            "remember" => self.remember(str_arg(&args, "note")?, unix_now()),
            "send_message" => {
                let text = str_arg(&args, "text")?;
                if text.trim().is_empty() {
                    return Err("the message is empty".into());
                }
                host.send_message(turn_id, text).map_err(host_failure)?;
                Ok("sent".into())
            }
            "schedule_task" => schedule_task(args, host),
            "web_fetch" if web.fetch => {
                web_tools::call(host, turn_id, "fetch", str_arg(&args, "url")?).map_err(Into::into)
            }
            "web_search" if web.search => {
                web_tools::call(host, turn_id, "search", str_arg(&args, "query")?)
                    .map_err(Into::into)
            }
            other => Err(format!(
                "there is no tool named {other:?}; the tools are: {}",
                self.specs_for(web)
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into()),
        }
    }

    /// The tree a path of `read_file` or `list_dir` is in, and the path within it: a
    /// read-only tree for an absolute path under its label, the built-in skills for one under
    /// [`BUILTIN_SKILLS_PREFIX`], else the workspace, which refuses any other absolute path.
    fn tree_of<'a>(&'a self, path: &'a str) -> (&'a Workspace, &'a str) {
        for (tree, _) in self.read_only_trees() {
            if let Some(rel) = within(tree.label(), path) {
                return (tree, rel);
            }
        }
        match (
            path.strip_prefix(BUILTIN_SKILLS_PREFIX),
            &self.builtin_skills,
        ) {
            (Some(name), Some(skills)) => (skills, name),
            _ => (&self.workspace, path),
        }
    }

    /// Refuses a path in a read-only tree, before the workspace would refuse it as absolute,
    /// so the model learns where it may write instead.
    fn refuse_read_only(&self, path: &str) -> Result<(), Failure> {
        match self
            .read_only_trees()
            .find(|(tree, _)| within(tree.label(), path).is_some())
        {
            Some((tree, what)) => Err(format!(
                "{} is read-only: it is {what}; write in /workspace instead",
                tree.label()
            )
            .into()),
            None => Ok(()),
        }
    }

    fn read_file(&self, path: &str) -> Result<String, Failure> {
        let (tree, rel) = self.tree_of(path);
        let got = tree.read_capped(rel, READ_CAP)?;
        let mut text = got.text();
        if got.truncated {
            text.push_str(&format!(
                "\n[truncated: showing the first {} KiB of {} bytes]",
                READ_CAP / 1024,
                got.size
            ));
        } else if text.is_empty() {
            text.push_str("(empty file)");
        }
        Ok(text)
    }

    fn list_dir(&self, path: &str) -> Result<String, Failure> {
        let (tree, rel) = self.tree_of(path);
        let (entries, more) = tree.list_dir(rel)?;
        if entries.is_empty() {
            return Ok("(empty folder)".into());
        }
        let mut text = String::new();
        for e in &entries {
            let size = match e.kind {
                Kind::File => e.size.to_string(),
                _ => "-".to_string(),
            };
            text.push_str(&format!("{:<5} {:>10}  {}\n", e.kind.name(), size, e.name));
        }
        if more {
            text.push_str(&format!(
                "[only the first {} entries are shown]\n",
                entries.len()
            ));
        }
        Ok(text)
    }

    fn exec(&self, args: &Map<String, Value>) -> Result<String, Failure> {
        let shell = self
            .shell
            .as_ref()
            .expect("exec is offered only with a shell");
        let command = str_arg(args, "command")?;
        let (secs, note) = match args.get("timeout_secs") {
            None | Some(Value::Null) => (exec::DEFAULT_TIMEOUT_SECS, None),
            Some(v) => match v.as_f64() {
                Some(s) if s > exec::MAX_TIMEOUT_SECS as f64 => (
                    exec::MAX_TIMEOUT_SECS,
                    Some(format!(
                        "[timeout_secs lowered to the maximum, {}]\n",
                        exec::MAX_TIMEOUT_SECS
                    )),
                ),
                Some(s) if s >= 0.0 => ((s.ceil() as u64).max(1), None),
                _ => return Err("timeout_secs must be a positive number of seconds".into()),
            },
        };
        let outcome = exec::run(
            shell,
            self.workspace.root(),
            command,
            Duration::from_secs(secs),
            exec::OUTPUT_CAP,
        )
        .map_err(|e| format!("cannot run the command: {e}"))?;
        Ok(note.unwrap_or_default() + &outcome.to_text())
    }

    /// `remember` at `unix_secs`.
    fn remember(&self, note: &str, unix_secs: i64) -> Result<String, Failure> {
        let note = note.trim();
        if note.is_empty() {
            return Err("the note is empty".into());
        }
        if note.contains(['\n', '\r']) {
            return Err(
                "the note has more than one line; save one fact as one line (call remember \
                 again for each further fact), or put longer material in a workspace file \
                 and remember where it is"
                    .into(),
            );
        }
        if note.len() > NOTE_CAP {
            return Err(format!(
                "the note is {} bytes; notes are at most {NOTE_CAP} bytes (2 KiB). Shorten it, \
                 or put the detail in a workspace file and remember where it is",
                note.len()
            )
            .into());
        }
        let line = format!("- {}: {note}\n", utc_date(unix_secs));
        self.workspace.append_line(MEMORY_FILE, &line)?;
        Ok(format!("saved to {MEMORY_FILE}: {}", line.trim_end()))
    }
}

/// The path inside the tree labelled `label` (such as `/persona`) that the absolute `path`
/// names, `.` for the tree itself, or `None` if `path` is not under it.
fn within<'a>(label: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(label)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        // "/personal/x" is not under "/persona".
        return None;
    }
    match rest.trim_start_matches('/') {
        "" => Some("."),
        rel => Some(rel),
    }
}

fn schedule_task(mut args: Map<String, Value>, host: &mut dyn Host) -> Result<String, Failure> {
    let action = match args.remove("action") {
        Some(Value::String(a)) if TASK_ACTIONS.contains(&a.as_str()) => a,
        _ => return Err(format!("action must be one of: {}", TASK_ACTIONS.join(", ")).into()),
    };
    let answer = host
        .task(&action, Value::Object(args))
        .map_err(|e| match e {
            HostError::Timeout(d) => Failure::Text(format!(
                "the host did not answer within {} s; the request may or may not have been \
                 carried out, check with action \"list\"",
                d.as_secs()
            )),
            other => host_failure(other),
        })?;
    if !answer.ok {
        return Err(answer
            .error
            .unwrap_or_else(|| "the host refused the request".into())
            .into());
    }
    Ok(match answer.result {
        Value::Null => "ok".into(),
        Value::String(s) => s,
        other => serde_json::to_string_pretty(&other).unwrap_or_else(|_| other.to_string()),
    })
}

impl From<web_tools::WebFailure> for Failure {
    fn from(f: web_tools::WebFailure) -> Failure {
        match f {
            web_tools::WebFailure::Text(t) => Failure::Text(t),
            web_tools::WebFailure::Shutdown => Failure::Shutdown,
        }
    }
}

fn host_failure(e: HostError) -> Failure {
    match e {
        HostError::Shutdown => Failure::Shutdown,
        other => Failure::Text(other.to_string()),
    }
}

fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters,
    }
}

/// The call's arguments as an object. A JSON string holding an object is accepted too, as
/// some providers pass arguments that way; no arguments at all is an empty object.
fn arguments(value: &Value) -> Result<Map<String, Value>, Failure> {
    match value {
        Value::Object(map) => Ok(map.clone()),
        Value::Null => Ok(Map::new()),
        Value::String(s) => match serde_json::from_str(s) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err("the arguments must be a JSON object".into()),
        },
        _ => Err("the arguments must be a JSON object".into()),
    }
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, Failure> {
    opt_str_arg(args, name)?.ok_or_else(|| format!("missing argument {name:?}").into())
}

fn opt_str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Failure> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("argument {name:?} must be a string").into()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The UTC date of a Unix time, as `YYYY-MM-DD`.
pub fn utc_date(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC date and time of a Unix time, to the minute, as `YYYY-MM-DD HH:MM`.
pub fn utc_date_time(unix_secs: i64) -> String {
    let secs_of_day = unix_secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}",
        utc_date(unix_secs),
        secs_of_day / 3600,
        secs_of_day % 3600 / 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{ModelAnswer, ModelCall, TaskAnswer, WebAnswer};
    use std::fs;
    use std::path::Path;

    /// A host that records messages and task requests and answers tasks from a closure.
    pub struct Recorder {
        pub sent: Vec<(String, String)>,
        pub tasks: Vec<(String, Value)>,
        pub task_answer: Box<dyn FnMut() -> Result<TaskAnswer, HostError>>,
        pub web: Vec<(String, String, String)>,
        pub web_answer: Box<dyn FnMut() -> Result<WebAnswer, HostError>>,
    }

    impl Recorder {
        fn new() -> Recorder {
            Recorder {
                sent: vec![],
                tasks: vec![],
                task_answer: Box::new(|| {
                    Ok(TaskAnswer {
                        ok: true,
                        result: json!({"task_id": 4}),
                        error: None,
                    })
                }),
                web: vec![],
                web_answer: Box::new(|| {
                    Ok(WebAnswer {
                        text: "the page".into(),
                        error: None,
                    })
                }),
            }
        }
    }

    impl Host for Recorder {
        fn call_model(&mut self, _: ModelCall) -> Result<ModelAnswer, HostError> {
            unreachable!("tools do not call the model")
        }
        fn send_message(&mut self, turn_id: &str, body: &str) -> Result<(), HostError> {
            self.sent.push((turn_id.into(), body.into()));
            Ok(())
        }
        fn task(&mut self, action: &str, args: Value) -> Result<TaskAnswer, HostError> {
            self.tasks.push((action.into(), args));
            (self.task_answer)()
        }
        fn web(&mut self, turn: &str, action: &str, target: &str) -> Result<WebAnswer, HostError> {
            self.web.push((turn.into(), action.into(), target.into()));
            (self.web_answer)()
        }
    }

    fn toolbox(root: &Path, shell: bool) -> ToolBox {
        let ws = root.join("ws");
        let skills = root.join("skills");
        fs::create_dir_all(&ws).unwrap();
        fs::create_dir_all(&skills).unwrap();
        fs::write(skills.join("notes.md"), "# Keeping memory tidy\n").unwrap();
        ToolBox {
            workspace: Workspace::new(&ws).unwrap(),
            builtin_skills: Some(Workspace::with_label(&skills, "/opt/runtime/skills").unwrap()),
            persona: None,
            shared: None,
            shell: shell.then(|| Shell::plain(Path::new("/bin/sh"))),
        }
    }

    fn run(tb: &ToolBox, host: &mut Recorder, name: &str, args: Value) -> String {
        let call = ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments: args,
        };
        tb.call(&call, "t-1", WebTools::NONE, host).unwrap()
    }

    #[test]
    fn specs_are_well_formed() {
        let tmp = tempfile::tempdir().unwrap();
        let names =
            |tb: &ToolBox| -> Vec<String> { tb.specs().into_iter().map(|s| s.name).collect() };
        let with = toolbox(tmp.path(), true);
        assert_eq!(
            names(&with),
            [
                "read_file",
                "write_file",
                "list_dir",
                "exec",
                "remember",
                "send_message",
                "schedule_task"
            ]
        );
        let without = toolbox(tmp.path(), false);
        assert!(!names(&without).contains(&"exec".to_string()));
        for s in with.specs() {
            assert_eq!(s.parameters["type"], "object", "{}", s.name);
            assert!(s.description.len() > 40, "{}", s.name);
            for req in s.parameters["required"].as_array().into_iter().flatten() {
                let req = req.as_str().unwrap();
                assert!(s.parameters["properties"].get(req).is_some(), "{}", s.name);
            }
        }
        // exec is refused when it is not on offer.
        let mut host = Recorder::new();
        let out = run(&without, &mut host, "exec", json!({"command": "true"}));
        assert!(
            out.starts_with("error: there is no tool named \"exec\""),
            "{out}"
        );
    }

    #[test]
    fn file_tools() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), false);
        let mut host = Recorder::new();
        let out = run(
            &tb,
            &mut host,
            "write_file",
            json!({"path": "a/b.md", "content": "hi"}),
        );
        assert_eq!(out, "wrote 2 bytes to a/b.md");
        assert_eq!(
            run(&tb, &mut host, "read_file", json!({"path": "a/b.md"})),
            "hi"
        );
        let listing = run(&tb, &mut host, "list_dir", json!({}));
        assert_eq!(listing, "dir            -  a\n");
        let listing = run(&tb, &mut host, "list_dir", json!({"path": "a"}));
        assert_eq!(listing, "file           2  b.md\n");
        // Arguments as a JSON string, as some providers send them.
        let out = run(&tb, &mut host, "read_file", json!("{\"path\": \"a/b.md\"}"));
        assert_eq!(out, "hi");
        // Errors are text for the model.
        let out = run(&tb, &mut host, "read_file", json!({"path": "/etc/passwd"}));
        assert!(
            out.starts_with("error: /etc/passwd: absolute paths are refused"),
            "{out}"
        );
        let out = run(&tb, &mut host, "read_file", json!({}));
        assert_eq!(out, "error: missing argument \"path\"");
        let out = run(
            &tb,
            &mut host,
            "write_file",
            json!({"path": "x", "content": 5}),
        );
        assert_eq!(out, "error: argument \"content\" must be a string");
        let out = run(&tb, &mut host, "read_file", json!([1]));
        assert_eq!(out, "error: the arguments must be a JSON object");
        // Large files are cut, and say so.
        let big = "x".repeat(READ_CAP + 10);
        run(
            &tb,
            &mut host,
            "write_file",
            json!({"path": "big", "content": big}),
        );
        let out = run(&tb, &mut host, "read_file", json!({"path": "big"}));
        assert!(out.ends_with(&format!(
            "\n[truncated: showing the first 256 KiB of {} bytes]",
            READ_CAP + 10
        )));
    }

    #[test]
    fn builtin_skills_are_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), false);
        let mut host = Recorder::new();
        let out = run(
            &tb,
            &mut host,
            "read_file",
            json!({"path": "/opt/runtime/skills/notes.md"}),
        );
        assert_eq!(out, "# Keeping memory tidy\n");
        let out = run(
            &tb,
            &mut host,
            "read_file",
            json!({"path": "/opt/runtime/skills/../../ws/x"}),
        );
        assert!(out.contains("refused"), "{out}");
        let out = run(
            &tb,
            &mut host,
            "write_file",
            json!({"path": "/opt/runtime/skills/x.md", "content": ""}),
        );
        assert!(out.contains("absolute paths are refused"), "{out}");
    }

    /// [`toolbox`] with a persona (SOUL.md, skills/report.md) and a shared tree (prices.csv)
    /// under `root`, and a file beside them that neither may reach.
    fn group_toolbox(root: &Path) -> ToolBox {
        let persona = root.join("persona");
        let shared = root.join("shared");
        fs::create_dir_all(persona.join("skills")).unwrap();
        fs::create_dir_all(&shared).unwrap();
        fs::write(persona.join("SOUL.md"), "# Instance soul\n").unwrap();
        fs::write(persona.join("skills/report.md"), "# Weekly report\n").unwrap();
        fs::write(shared.join("prices.csv"), "a,1\n").unwrap();
        fs::write(root.join("secret.txt"), "secret").unwrap();
        ToolBox {
            persona: Some(Workspace::with_label(&persona, "/persona").unwrap()),
            shared: Some(Workspace::with_label(&shared, "/shared").unwrap()),
            ..toolbox(root, false)
        }
    }

    #[test]
    fn read_only_trees_are_read_and_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = group_toolbox(tmp.path());
        let mut host = Recorder::new();
        let read =
            |host: &mut Recorder, path: &str| run(&tb, host, "read_file", json!({ "path": path }));
        assert_eq!(read(&mut host, "/persona/SOUL.md"), "# Instance soul\n");
        assert_eq!(
            read(&mut host, "/persona/skills/report.md"),
            "# Weekly report\n"
        );
        assert_eq!(read(&mut host, "/shared/prices.csv"), "a,1\n");
        assert_eq!(read(&mut host, "/shared//prices.csv"), "a,1\n");
        let out = read(&mut host, "/persona");
        assert!(out.contains("is a directory; use list_dir"), "{out}");
        let list =
            |host: &mut Recorder, path: &str| run(&tb, host, "list_dir", json!({ "path": path }));
        assert_eq!(
            list(&mut host, "/persona"),
            "file          16  SOUL.md\ndir            -  skills\n"
        );
        assert_eq!(list(&mut host, "/persona/"), list(&mut host, "/persona"));
        assert_eq!(list(&mut host, "/shared"), "file           4  prices.csv\n");
        // A name that only begins like a tree's is an ordinary absolute path.
        let out = read(&mut host, "/personal/SOUL.md");
        assert!(out.contains("absolute paths are refused"), "{out}");
    }

    #[test]
    fn read_only_trees_do_not_lead_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = group_toolbox(tmp.path());
        let persona = tb.persona.as_ref().unwrap().root().to_path_buf();
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), persona.join("leak.md")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), persona.join("up")).unwrap();
        std::os::unix::fs::symlink(persona.join("SOUL.md"), persona.join("alias.md")).unwrap();
        let mut host = Recorder::new();
        for (tool, path) in [
            ("read_file", "/persona/../secret.txt"),
            ("read_file", "/shared/../persona/SOUL.md"),
            ("list_dir", "/persona/.."),
        ] {
            let out = run(&tb, &mut host, tool, json!({ "path": path }));
            assert!(out.contains("paths with `..` are refused"), "{path}: {out}");
        }
        for (tool, path) in [
            ("read_file", "/persona/leak.md"),
            ("read_file", "/persona/up/secret.txt"),
            ("list_dir", "/persona/up"),
        ] {
            let out = run(&tb, &mut host, tool, json!({ "path": path }));
            assert!(out.contains("leads outside /persona"), "{path}: {out}");
        }
        // A link that stays inside the tree is followed.
        let out = run(
            &tb,
            &mut host,
            "read_file",
            json!({"path": "/persona/alias.md"}),
        );
        assert_eq!(out, "# Instance soul\n");
    }

    #[test]
    fn read_only_trees_refuse_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = group_toolbox(tmp.path());
        let mut host = Recorder::new();
        for path in ["/persona/SOUL.md", "/persona", "/persona/new/x.md"] {
            let out = run(
                &tb,
                &mut host,
                "write_file",
                json!({"path": path, "content": "x"}),
            );
            assert_eq!(
                out,
                "error: /persona is read-only: it is the instance's persona, shared by every \
                 conversation; write in /workspace instead"
            );
        }
        let out = run(
            &tb,
            &mut host,
            "write_file",
            json!({"path": "/shared/prices.csv", "content": "x"}),
        );
        assert_eq!(
            out,
            "error: /shared is read-only: it is knowledge shared by every conversation of the \
             instance; write in /workspace instead"
        );
        let persona = tb.persona.as_ref().unwrap().root();
        assert_eq!(
            fs::read_to_string(persona.join("SOUL.md")).unwrap(),
            "# Instance soul\n"
        );
        assert!(!persona.join("new").exists());
        assert_eq!(
            fs::read_to_string(tmp.path().join("shared/prices.csv")).unwrap(),
            "a,1\n"
        );
        // Memory is the workspace's own, even in a group.
        run(&tb, &mut host, "remember", json!({"note": "n"}));
        assert!(tb.workspace.root().join(MEMORY_FILE).is_file());
        assert!(!persona.join("memory").exists());
    }

    #[test]
    fn absent_read_only_trees_are_plain_absolute_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), false);
        let mut host = Recorder::new();
        for (tool, args) in [
            ("read_file", json!({"path": "/persona/SOUL.md"})),
            ("list_dir", json!({"path": "/shared"})),
            ("write_file", json!({"path": "/persona/x", "content": ""})),
        ] {
            let out = run(&tb, &mut host, tool, args);
            assert!(out.contains("absolute paths are refused"), "{tool}: {out}");
        }
    }

    #[test]
    fn descriptions_mention_only_the_trees_there_are() {
        let tmp = tempfile::tempdir().unwrap();
        let description = |tb: &ToolBox, name: &str| {
            let specs = tb.specs();
            specs
                .into_iter()
                .find(|s| s.name == name)
                .unwrap()
                .description
        };
        let plain = toolbox(&tmp.path().join("plain"), false);
        let group = group_toolbox(&tmp.path().join("group"));
        let persona_only = ToolBox {
            shared: None,
            ..group.clone()
        };
        for name in ["read_file", "list_dir", "write_file"] {
            let text = description(&plain, name);
            assert!(
                !text.contains("/persona") && !text.contains("/shared"),
                "{text}"
            );
            let text = description(&group, name);
            assert!(
                text.contains("\"/persona") && text.contains("\"/shared"),
                "{text}"
            );
            let text = description(&persona_only, name);
            assert!(
                text.contains("/persona") && !text.contains("/shared"),
                "{text}"
            );
        }
        assert!(description(&group, "read_file").contains("\"/shared/NAME\""));
        assert!(description(&group, "list_dir").contains("\"/persona\" lists"));
        assert!(description(&group, "write_file").contains("\"/shared\" is read-only"));
    }

    #[test]
    fn remember_format() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), false);
        // 2025-03-14T12:00:00Z
        let t = 1_741_953_600;
        assert_eq!(
            tb.remember("  Prefers short replies. ", t).ok().unwrap(),
            "saved to memory/MEMORY.md: - 2025-03-14: Prefers short replies."
        );
        tb.remember("Uses Rust 1.89.", t + 86_400).ok().unwrap();
        let memory = fs::read_to_string(tb.workspace.root().join(MEMORY_FILE)).unwrap();
        assert_eq!(
            memory,
            "- 2025-03-14: Prefers short replies.\n- 2025-03-15: Uses Rust 1.89.\n"
        );
        let refused = |note: &str| match tb.remember(note, t) {
            Err(Failure::Text(msg)) => msg,
            _ => panic!("{note:?} was accepted"),
        };
        assert!(refused("two\nlines").contains("one line"));
        assert!(refused("cr\rhere").contains("one line"));
        assert!(refused("   ").contains("empty"));
        assert!(refused(&"x".repeat(NOTE_CAP + 1)).contains("2 KiB"));
        assert!(tb.remember(&"x".repeat(NOTE_CAP), t).is_ok());
        // Through the tool, with today's date.
        let mut host = Recorder::new();
        let out = run(&tb, &mut host, "remember", json!({"note": "today"}));
        assert_eq!(
            out,
            format!(
                "saved to memory/MEMORY.md: - {}: today",
                utc_date(unix_now())
            )
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(86_399), "1970-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_709_164_800), "2024-02-29");
        assert_eq!(utc_date(1_735_689_599), "2024-12-31");
        assert_eq!(utc_date(1_735_689_600), "2025-01-01");
        assert_eq!(utc_date(4_102_444_800), "2100-01-01");
        assert_eq!(utc_date(4_107_456_000), "2100-02-28");
        assert_eq!(utc_date(4_107_542_400), "2100-03-01");
    }

    #[test]
    fn date_times() {
        assert_eq!(utc_date_time(0), "1970-01-01 00:00");
        assert_eq!(utc_date_time(59), "1970-01-01 00:00");
        assert_eq!(utc_date_time(86_399), "1970-01-01 23:59");
        assert_eq!(utc_date_time(-1), "1969-12-31 23:59");
        assert_eq!(utc_date_time(-86_400), "1969-12-31 00:00");
        assert_eq!(utc_date_time(951_825_600), "2000-02-29 12:00");
        assert_eq!(utc_date_time(1_795_329_600), "2026-11-22 06:40");
    }

    #[test]
    fn schedule_task_spec() {
        let tmp = tempfile::tempdir().unwrap();
        let specs = toolbox(tmp.path(), false).specs();
        let spec = specs.iter().find(|s| s.name == "schedule_task").unwrap();
        let props = &spec.parameters["properties"];
        assert_eq!(
            props["action"]["enum"],
            json!(["create", "list", "pause", "resume", "cancel"])
        );
        assert_eq!(spec.parameters["required"], json!(["action"]));
        assert!(spec
            .description
            .contains("\"pause\", \"resume\" and \"cancel\" need task_id"));
        assert!(spec
            .description
            .contains("only see and change the tasks of this instance"));
        let task_id = props["task_id"]["description"].as_str().unwrap();
        assert!(task_id.contains("pause, resume and cancel"), "{task_id}");
        let schedule = props["schedule"]["description"].as_str().unwrap();
        for needle in [
            "5-field cron",
            "minute hour day-of-month month day-of-week",
            "MON",
            "L, # and W",
            "no seconds field",
            "\"1h30m\"",
            "at least 1s",
            "counted from the first run",
            "\"2026-12-01T09:00\", read in tz",
            "RFC 3339 with an offset",
        ] {
            assert!(schedule.contains(needle), "{needle:?} in {schedule}");
        }
        let tz = props["tz"]["description"].as_str().unwrap();
        assert!(
            tz.contains("IANA") && tz.contains("\"Europe/Berlin\""),
            "{tz}"
        );
        assert!(tz.contains("default \"UTC\""), "{tz}");
        assert!(tz.contains("leave it out for every"), "{tz}");
    }

    #[test]
    fn exec_tool() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), true);
        let mut host = Recorder::new();
        run(
            &tb,
            &mut host,
            "write_file",
            json!({"path": "f.txt", "content": "a\nb\n"}),
        );
        let out = run(&tb, &mut host, "exec", json!({"command": "wc -l < f.txt"}));
        assert_eq!(out, "exit status 0\noutput:\n2\n");
        let out = run(
            &tb,
            &mut host,
            "exec",
            json!({"command": "sleep 5", "timeout_secs": 1}),
        );
        assert!(out.starts_with("timed out after 1 s"), "{out}");
        let out = run(
            &tb,
            &mut host,
            "exec",
            json!({"command": "true", "timeout_secs": 1000}),
        );
        assert_eq!(
            out,
            "[timeout_secs lowered to the maximum, 120]\nexit status 0\n(no output)\n"
        );
        let out = run(
            &tb,
            &mut host,
            "exec",
            json!({"command": "true", "timeout_secs": "soon"}),
        );
        assert!(out.starts_with("error: timeout_secs"), "{out}");
    }

    #[test]
    fn send_message_and_schedule_task() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), false);
        let mut host = Recorder::new();
        assert_eq!(
            run(&tb, &mut host, "send_message", json!({"text": "hey"})),
            "sent"
        );
        assert_eq!(host.sent, [("t-1".to_string(), "hey".to_string())]);
        assert!(run(&tb, &mut host, "send_message", json!({"text": " "})).starts_with("error:"));

        let out = run(
            &tb,
            &mut host,
            "schedule_task",
            json!({"action": "create", "schedule_kind": "every", "schedule": "1d", "prompt": "p"}),
        );
        assert_eq!(out, "{\n  \"task_id\": 4\n}");
        assert_eq!(host.tasks[0].0, "create");
        assert_eq!(
            host.tasks[0].1,
            json!({"schedule_kind": "every", "schedule": "1d", "prompt": "p"})
        );
        let out = run(&tb, &mut host, "schedule_task", json!({"action": "delete"}));
        assert_eq!(
            out,
            "error: action must be one of: create, list, pause, resume, cancel"
        );
        for action in ["pause", "resume", "cancel"] {
            host.task_answer = Box::new(|| {
                Ok(TaskAnswer {
                    ok: true,
                    result: Value::Null,
                    error: None,
                })
            });
            let out = run(
                &tb,
                &mut host,
                "schedule_task",
                json!({"action": action, "task_id": 4}),
            );
            assert_eq!(out, "ok", "{action}");
            let (sent_action, args) = host.tasks.last().unwrap();
            assert_eq!(sent_action, action);
            assert_eq!(args, &json!({"task_id": 4}));
        }
        assert_eq!(host.tasks.len(), 4);

        host.task_answer = Box::new(|| {
            Ok(TaskAnswer {
                ok: false,
                result: Value::Null,
                error: Some("no task 9".into()),
            })
        });
        let out = run(
            &tb,
            &mut host,
            "schedule_task",
            json!({"action": "cancel", "task_id": 9}),
        );
        assert_eq!(out, "error: no task 9");
        host.task_answer = Box::new(|| Err(HostError::Timeout(Duration::from_secs(30))));
        let out = run(&tb, &mut host, "schedule_task", json!({"action": "list"}));
        assert!(
            out.starts_with("error: the host did not answer within 30 s"),
            "{out}"
        );
        host.task_answer = Box::new(|| Err(HostError::Shutdown));
        let call = ToolCall {
            id: "c".into(),
            name: "schedule_task".into(),
            arguments: json!({"action": "list"}),
        };
        assert_eq!(
            tb.call(&call, "t-1", WebTools::NONE, &mut host),
            Err(Shutdown)
        );
    }

    const ALL: WebTools = WebTools {
        fetch: true,
        search: true,
    };

    fn run_web(
        tb: &ToolBox,
        host: &mut Recorder,
        web: WebTools,
        name: &str,
        args: Value,
    ) -> String {
        let call = ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments: args,
        };
        tb.call(&call, "t-1", web, host).unwrap()
    }

    #[test]
    fn web_tools_are_offered_only_when_the_turn_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), false);
        let names =
            |web| -> Vec<String> { tb.specs_for(web).into_iter().map(|s| s.name).collect() };
        let fetch = WebTools {
            fetch: true,
            search: false,
        };
        assert!(!names(WebTools::NONE).iter().any(|n| n.starts_with("web_")));
        assert_eq!(tb.specs_for(WebTools::NONE), tb.specs());
        assert!(names(fetch).ends_with(&["web_fetch".to_string()]));
        assert!(names(ALL).ends_with(&["web_fetch".to_string(), "web_search".to_string()]));
        let mut host = Recorder::new();
        let out = run_web(&tb, &mut host, fetch, "web_search", json!({"query": "q"}));
        assert!(
            out.starts_with("error: there is no tool named \"web_search\""),
            "{out}"
        );
        // Not offered, not callable: the host is never asked.
        let mut host = Recorder::new();
        let out = run_web(
            &tb,
            &mut host,
            WebTools::NONE,
            "web_fetch",
            json!({"url": "https://docs.rs/"}),
        );
        assert!(
            out.starts_with("error: there is no tool named \"web_fetch\""),
            "{out}"
        );
        assert!(host.web.is_empty());
    }

    #[test]
    fn web_tools_ask_the_host_and_pass_on_its_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let tb = toolbox(tmp.path(), false);
        let mut host = Recorder::new();
        let out = run_web(
            &tb,
            &mut host,
            ALL,
            "web_fetch",
            json!({"url": " https://docs.rs/ "}),
        );
        assert_eq!(out, "the page");
        let out = run_web(
            &tb,
            &mut host,
            ALL,
            "web_search",
            json!({"query": "serde derive"}),
        );
        assert_eq!(out, "the page");
        assert_eq!(
            host.web,
            vec![
                ("t-1".into(), "fetch".into(), "https://docs.rs/".into()),
                ("t-1".into(), "search".into(), "serde derive".into()),
            ]
        );
        host.web_answer = Box::new(|| {
            Ok(WebAnswer {
                text: String::new(),
                error: Some("evil.example is not in this instance's egress.allow list".into()),
            })
        });
        let out = run_web(
            &tb,
            &mut host,
            ALL,
            "web_fetch",
            json!({"url": "https://evil.example/"}),
        );
        assert_eq!(
            out,
            "error: evil.example is not in this instance's egress.allow list"
        );
        // Refused before asking: empty, missing or oversized input.
        let asked = host.web.len();
        let long = "x".repeat(crate::protocol::MAX_WEB_TARGET_BYTES + 1);
        for (name, args) in [
            ("web_fetch", json!({"url": "  "})),
            ("web_fetch", json!({})),
            ("web_search", json!({"query": long})),
        ] {
            let out = run_web(&tb, &mut host, ALL, name, args);
            assert!(out.starts_with("error: "), "{out}");
        }
        assert_eq!(host.web.len(), asked);
        host.web_answer = Box::new(|| Err(HostError::Shutdown));
        let call = ToolCall {
            id: "c".into(),
            name: "web_fetch".into(),
            arguments: json!({"url": "https://docs.rs/"}),
        };
        assert_eq!(tb.call(&call, "t-1", ALL, &mut host), Err(Shutdown));
    }
}
