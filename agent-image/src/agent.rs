//! The agent's message loop, run on a thread of its own by `supervisor-agent run`: take the
//! envelopes from `/ipc/in` in order, answer turns one at a time, stop on a shutdown message.
//!
//! A turn's file is deleted only after its `reply` or `turn_failed` has been written, so a
//! turn interrupted by a crash or a stop is done again when the agent next starts. Every other
//! file is deleted once it has been handled.

use crate::exec::Shell;
use crate::host::FileHost;
use crate::inbox::{Inbox, Item};
use crate::lifecycle::Layout;
use crate::prompt;
use crate::protocol::Payload;
use crate::self_check::{PERSONA_DIR, RUNTIME_DIR, SHARED_DIR};
use crate::tools::ToolBox;
use crate::turn::{self, Turn, TurnEnd};
use crate::workspace::Workspace;
use std::io;
use std::path::{Path, PathBuf};

/// Where the agent's inputs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub layout: Layout,
    /// The shared runtime (`/opt/runtime`): `skills/` and the optional `toolbox/busybox`.
    pub runtime: PathBuf,
}

impl Config {
    /// The paths inside an instance container.
    pub fn container() -> Config {
        Config {
            layout: Layout::container(),
            runtime: PathBuf::from(RUNTIME_DIR),
        }
    }

    /// The tools: files under the workspace, the built-in skills if their directory exists,
    /// the persona and shared trees of the layout, and `exec` if the runtime has a busybox.
    /// A persona or shared directory of the layout that cannot be opened is an error, not
    /// left out: the agent would otherwise answer without the instance's persona.
    pub fn toolbox(&self) -> io::Result<ToolBox> {
        let busybox = self.runtime.join("toolbox/busybox");
        Ok(ToolBox {
            workspace: Workspace::new(&self.layout.workspace)?,
            builtin_skills: Workspace::with_label(
                &self.runtime.join("skills"),
                RUNTIME_SKILLS_LABEL,
            )
            .ok(),
            persona: read_only_tree(self.layout.persona.as_deref(), PERSONA_DIR)?,
            shared: read_only_tree(self.layout.shared.as_deref(), SHARED_DIR)?,
            shell: busybox.is_file().then(|| Shell::busybox(&busybox)),
        })
    }
}

/// The tree at `dir`, named `label` to the model, if the layout has one.
fn read_only_tree(dir: Option<&Path>, label: &str) -> io::Result<Option<Workspace>> {
    dir.map(|d| Workspace::with_label(d, label)).transpose()
}

const RUNTIME_SKILLS_LABEL: &str = "/opt/runtime/skills";

/// Runs the loop until a shutdown message (`Ok`) or until the inbox cannot be read (`Err`).
pub fn serve(config: &Config) -> io::Result<()> {
    let tools = config.toolbox()?;
    let mut host = FileHost::new(Inbox::open(&config.layout.ipc_in), &config.layout.ipc_out);
    serve_with(&mut host, &tools)
}

/// [`serve`] with a given host and tools.
pub fn serve_with(host: &mut FileHost, tools: &ToolBox) -> io::Result<()> {
    loop {
        let item = host.next_item()?;
        match &item.envelope.payload {
            Payload::Turn { .. } => {
                let turn = Turn::from_envelope(&item.envelope).expect("a turn");
                if handle_turn(host, tools, &item, &turn).is_err() {
                    return Ok(());
                }
            }
            Payload::Shutdown {} => {
                host.finish(&item);
                return Ok(());
            }
            _ => host.drop_unexpected(&item),
        }
    }
}

/// A shutdown arrived during the turn.
struct Stop;

fn handle_turn(host: &mut FileHost, tools: &ToolBox, item: &Item, turn: &Turn) -> Result<(), Stop> {
    let end = match prompt::system_prompt(tools) {
        Ok(system) => turn::run_turn(turn, system, tools, host),
        Err(e) => TurnEnd::Answer(turn.failed(e)),
    };
    let answer = match end {
        TurnEnd::Answer(answer) => answer,
        TurnEnd::Shutdown => return Err(Stop),
    };
    let written = match host.write(answer.clone()) {
        // A reply too big for an envelope: say so instead.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            crate::note(&format!(
                "turn {}: cannot send the answer: {e}",
                turn.turn_id
            ));
            let failed = turn.failed("the reply was too long to send (over 1 MiB)");
            host.write(failed.clone()).map(|_| failed)
        }
        other => other.map(|_| answer),
    };
    match written {
        Ok(sent) => {
            match &sent {
                Payload::TurnFailed { error, .. } => {
                    crate::note(&format!("turn {} failed: {error}", turn.turn_id))
                }
                _ => crate::note(&format!("turn {} answered", turn.turn_id)),
            }
            host.finish(item);
        }
        // The turn's file stays, so the turn is done again when the agent restarts.
        Err(e) => crate::note(&format!(
            "turn {}: cannot write the answer: {e}; the turn will be redone after a restart",
            turn.turn_id
        )),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::write_envelope;
    use crate::protocol::{is_temp_name, parse_envelope, Envelope, ToolCall, TurnMessage, Usage};
    use serde_json::json;
    use std::fs;
    use std::path::Path;
    use std::time::{Duration, Instant};

    struct Dirs {
        _tmp: tempfile::TempDir,
        config: Config,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::under(&tmp.path().join("workspace"), &tmp.path().join("ipc"));
        for d in [&layout.workspace, &layout.ipc_in, &layout.ipc_out] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(layout.soul(), "# Soul\n").unwrap();
        let runtime = tmp.path().join("runtime");
        fs::create_dir_all(runtime.join("skills")).unwrap();
        fs::write(runtime.join("skills/files.md"), "# Files\n").unwrap();
        Dirs {
            _tmp: tmp,
            config: Config { layout, runtime },
        }
    }

    fn send(dir: &Path, id: &str, payload: Payload) {
        // Increasing timestamps, so names sort in sending order.
        static TS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
        let ts = TS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        write_envelope(dir, &Envelope::new(id, ts, payload)).unwrap();
    }

    fn turn(id: &str, body: &str) -> Payload {
        Payload::Turn {
            turn_id: id.into(),
            messages: vec![TurnMessage {
                id: format!("{id}-m"),
                sender: "local".into(),
                body: body.into(),
                ts: 1,
                triggered: true,
                chat: String::new(),
            }],
            history: vec![],
            scheduled: false,
            web: false,
            web_search: false,
        }
    }

    /// Takes the agent's envelopes from `out` as they appear, deleting them.
    fn take_out(out: &Path, deadline: Instant) -> Vec<Payload> {
        loop {
            let mut names: Vec<String> = fs::read_dir(out)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| !is_temp_name(n))
                .collect();
            names.sort();
            if !names.is_empty() || Instant::now() > deadline {
                return names
                    .iter()
                    .map(|n| {
                        let path = out.join(n);
                        let env = parse_envelope(&fs::read(&path).unwrap()).unwrap();
                        fs::remove_file(path).unwrap();
                        env.payload
                    })
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Plays the host: answers model requests with `model`, until a reply or failure for
    /// each of `turns` has been seen, then sends a shutdown. Returns everything the agent
    /// wrote.
    fn play_host(
        config: &Config,
        turns: usize,
        mut model: impl FnMut(&Payload) -> Payload,
    ) -> Vec<Payload> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let mut answered = 0;
        while answered < turns {
            assert!(Instant::now() < deadline, "timed out; saw {seen:?}");
            for payload in take_out(&config.layout.ipc_out, deadline) {
                match &payload {
                    Payload::ModelRequest { request_id, .. } => {
                        let id = format!("resp-{request_id}");
                        send(&config.layout.ipc_in, &id, model(&payload));
                    }
                    Payload::Reply { .. } | Payload::TurnFailed { .. } => answered += 1,
                    _ => {}
                }
                seen.push(payload);
            }
        }
        send(&config.layout.ipc_in, "bye", Payload::Shutdown {});
        seen
    }

    fn answer(request: &Payload, content: &str, tool_calls: Vec<ToolCall>) -> Payload {
        let Payload::ModelRequest { request_id, .. } = request else {
            panic!("{request:?}")
        };
        Payload::ModelResponse {
            request_id: request_id.clone(),
            content: content.into(),
            tool_calls,
            error: None,
            usage: Usage::default(),
        }
    }

    #[test]
    fn turns_through_the_ipc_directories() {
        let d = dirs();
        // Present before the start: a stale response, a bad file and two turns, out of order.
        send(
            &d.config.layout.ipc_in,
            "stale",
            answer(
                &Payload::ModelRequest {
                    request_id: "gone".into(),
                    turn_id: "x".into(),
                    messages: vec![],
                    tools: vec![],
                    max_tokens: None,
                },
                "old",
                vec![],
            ),
        );
        fs::write(d.config.layout.ipc_in.join("0-junk.json"), "junk").unwrap();
        send(&d.config.layout.ipc_in, "t1", turn("t-1", "write it"));
        send(&d.config.layout.ipc_in, "t2", turn("t-2", "second"));
        let config = d.config.clone();
        let agent = std::thread::spawn(move || serve(&config));

        let seen = play_host(&d.config, 2, |req| {
            let Payload::ModelRequest {
                turn_id, messages, ..
            } = req
            else {
                unreachable!()
            };
            // While the first turn waits, both turn files are still there.
            let last = messages.last().unwrap();
            match (turn_id.as_str(), last.role) {
                ("t-1", crate::protocol::Role::User) => answer(
                    req,
                    "",
                    vec![ToolCall {
                        id: "c1".into(),
                        name: "write_file".into(),
                        arguments: json!({"path": "out/hello.txt", "content": "hi"}),
                    }],
                ),
                ("t-1", _) => answer(req, "written", vec![]),
                _ => answer(req, &format!("echo {}", last.content), vec![]),
            }
        });
        agent.join().unwrap().unwrap();

        let replies: Vec<(&str, &str)> = seen
            .iter()
            .filter_map(|p| match p {
                Payload::Reply { turn_id, body, .. } => Some((turn_id.as_str(), body.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            replies,
            [("t-1", "written"), ("t-2", "echo [local] second")]
        );
        // Three model requests, the first with the system prompt built from the workspace.
        let requests: Vec<_> = seen
            .iter()
            .filter(|p| matches!(p, Payload::ModelRequest { .. }))
            .collect();
        assert_eq!(requests.len(), 3);
        let Payload::ModelRequest {
            messages, tools, ..
        } = requests[0]
        else {
            unreachable!()
        };
        assert!(messages[0].content.starts_with("# Soul\n"));
        assert!(messages[0]
            .content
            .contains("- /opt/runtime/skills/files.md: Files"));
        assert_eq!(tools.len(), 6, "no busybox here, so no exec");
        assert_eq!(
            fs::read_to_string(d.config.layout.workspace.join("out/hello.txt")).unwrap(),
            "hi"
        );
        // Everything in the inbox was handled and deleted.
        assert_eq!(fs::read_dir(&d.config.layout.ipc_in).unwrap().count(), 0);
    }

    #[test]
    fn a_turn_arriving_during_another_waits_its_turn() {
        let d = dirs();
        send(&d.config.layout.ipc_in, "t1", turn("t-1", "first"));
        let config = d.config.clone();
        let agent = std::thread::spawn(move || serve(&config));
        let inbox = d.config.layout.ipc_in.clone();
        let mut sent_second = false;
        let seen = play_host(&d.config, 2, |req| {
            let Payload::ModelRequest { turn_id, .. } = req else {
                unreachable!()
            };
            if !sent_second {
                // Arrives while the agent waits for the first turn's model answer.
                send(&inbox, "t2", turn("t-2", "second"));
                std::thread::sleep(Duration::from_millis(300));
                sent_second = true;
            }
            answer(req, &format!("re {turn_id}"), vec![])
        });
        agent.join().unwrap().unwrap();
        let order: Vec<String> = seen
            .iter()
            .filter_map(|p| match p {
                Payload::ModelRequest { turn_id, .. } => Some(format!("req {turn_id}")),
                Payload::Reply { body, .. } => Some(body.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(order, ["req t-1", "re t-1", "req t-2", "re t-2"]);
    }

    #[test]
    fn shutdown_mid_turn_keeps_the_turn_file() {
        let d = dirs();
        send(&d.config.layout.ipc_in, "t1", turn("t-1", "first"));
        let config = d.config.clone();
        let agent = std::thread::spawn(move || serve(&config));
        let deadline = Instant::now() + Duration::from_secs(10);
        let out = take_out(&d.config.layout.ipc_out, deadline);
        assert!(
            matches!(&out[..], [Payload::ModelRequest { .. }]),
            "{out:?}"
        );
        send(&d.config.layout.ipc_in, "bye", Payload::Shutdown {});
        agent.join().unwrap().unwrap();
        let left: Vec<String> = fs::read_dir(&d.config.layout.ipc_in)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 1);
        assert!(left[0].ends_with("-t1.json"), "{left:?}");
    }

    #[test]
    fn toolbox_takes_the_layouts_read_only_trees() {
        let d = dirs();
        let plain = d.config.toolbox().unwrap();
        assert!(plain.persona.is_none() && plain.shared.is_none());

        let root = d.config.layout.workspace.parent().unwrap().to_path_buf();
        let (persona, shared) = (root.join("persona"), root.join("shared"));
        let mut config = d.config.clone();
        config.layout = config.layout.with_persona(&persona).with_shared(&shared);
        // A persona the layout names but that cannot be opened stops the agent.
        assert!(config.toolbox().is_err());
        fs::create_dir(&persona).unwrap();
        fs::create_dir(&shared).unwrap();
        let tools = config.toolbox().unwrap();
        assert_eq!(tools.persona.as_ref().unwrap().label(), "/persona");
        assert_eq!(tools.shared.as_ref().unwrap().label(), "/shared");
        assert_eq!(
            tools.persona.as_ref().unwrap().root(),
            fs::canonicalize(&persona).unwrap()
        );
    }

    #[test]
    fn a_group_turn_is_told_the_persona() {
        let d = dirs();
        let root = d.config.layout.workspace.parent().unwrap().to_path_buf();
        let persona = root.join("persona");
        fs::create_dir(&persona).unwrap();
        fs::write(persona.join("SOUL.md"), "# Instance soul\n").unwrap();
        fs::remove_file(d.config.layout.soul()).unwrap();
        let mut config = d.config.clone();
        config.layout = config.layout.with_persona(&persona);
        send(&config.layout.ipc_in, "t1", turn("t-1", "hi"));
        let agent_config = config.clone();
        let agent = std::thread::spawn(move || serve(&agent_config));
        let mut system = String::new();
        play_host(&config, 1, |req| {
            let Payload::ModelRequest { messages, .. } = req else {
                unreachable!()
            };
            system = messages[0].content.clone();
            answer(req, "hello", vec![])
        });
        agent.join().unwrap().unwrap();
        assert!(system.starts_with("# Instance soul\n"), "{system}");
    }

    #[test]
    fn missing_soul_fails_the_turn() {
        let d = dirs();
        fs::remove_file(d.config.layout.soul()).unwrap();
        send(&d.config.layout.ipc_in, "t1", turn("t-1", "hi"));
        let config = d.config.clone();
        let agent = std::thread::spawn(move || serve(&config));
        let seen = play_host(&d.config, 1, |_| unreachable!("no model call"));
        agent.join().unwrap().unwrap();
        match &seen[..] {
            [Payload::TurnFailed { turn_id, error }] => {
                assert_eq!(turn_id, "t-1");
                assert!(
                    error.starts_with("cannot read the persona: SOUL.md"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
