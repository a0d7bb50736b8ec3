//! One turn: call the model, run the tools it asks for, call it again with the results, until
//! it answers in text or the step limit is reached.

use crate::host::{Host, HostError, ModelCall};
use crate::ipc;
use crate::prompt;
use crate::protocol::{ModelMessage, Payload, Role};
use crate::tools::ToolBox;
pub use crate::turn_input::Turn;

/// The most model calls in one turn.
pub const MAX_MODEL_CALLS: usize = 8;

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEnd {
    /// The `reply` or `turn_failed` payload to send.
    Answer(Payload),
    /// A shutdown message arrived; nothing is sent and the turn is left to be redone.
    Shutdown,
}

/// Runs `turn` with `system_prompt` against `host`: at most [`MAX_MODEL_CALLS`] model calls.
///
/// - An answer with `error` ends the turn with `turn_failed` carrying that error.
/// - An answer with tool calls runs each tool in order; the assistant message with the calls
///   and one tool message per call (its result, or `error: ...`) are added to the
///   conversation, and the model is called again.
/// - Any other answer is the reply, answering the triggered messages; its text may be empty.
///
/// When the last allowed call still asks for tools, they are not run and the turn fails
/// with "step limit reached".
pub fn run_turn(
    turn: &Turn,
    system_prompt: String,
    tools: &ToolBox,
    host: &mut dyn Host,
) -> TurnEnd {
    let specs = tools.specs_for(turn.web_tools());
    let mut messages = prompt::conversation(system_prompt, turn);
    for call_no in 1..=MAX_MODEL_CALLS {
        let call = ModelCall {
            request_id: ipc::new_id(),
            turn_id: turn.turn_id.clone(),
            messages: messages.clone(),
            tools: specs.clone(),
        };
        let answer = match host.call_model(call) {
            Ok(answer) => answer,
            Err(HostError::Shutdown) => return TurnEnd::Shutdown,
            Err(HostError::Timeout(d)) => {
                return TurnEnd::Answer(
                    turn.failed(format!("the model did not answer within {} s", d.as_secs())),
                )
            }
            // Refused by the envelope encoder: in practice, over the 1 MiB envelope limit.
            Err(HostError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return TurnEnd::Answer(turn.failed(format!(
                    "the conversation grew too large to send to the model ({e})"
                )))
            }
            Err(HostError::Io(e)) => {
                return TurnEnd::Answer(turn.failed(format!("cannot call the model: {e}")))
            }
        };
        if let Some(error) = answer.error {
            return TurnEnd::Answer(turn.failed(error));
        }
        if answer.tool_calls.is_empty() {
            return TurnEnd::Answer(turn.reply(answer.content));
        }
        if call_no == MAX_MODEL_CALLS {
            break;
        }
        let calls = answer.tool_calls;
        let mut results = Vec::with_capacity(calls.len());
        for call in &calls {
            let Ok(text) = tools.call(call, &turn.turn_id, turn.web_tools(), host) else {
                return TurnEnd::Shutdown;
            };
            results.push(ModelMessage {
                role: Role::Tool,
                content: text,
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
            });
        }
        messages.push(ModelMessage {
            role: Role::Assistant,
            content: answer.content,
            tool_calls: calls,
            tool_call_id: None,
        });
        messages.extend(results);
    }
    TurnEnd::Answer(turn.failed("step limit reached"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{ModelAnswer, TaskAnswer, WebAnswer};
    use crate::protocol::{Envelope, ToolCall, TurnMessage};
    use crate::workspace::Workspace;
    use serde_json::json;
    use std::fs;

    /// A host whose model is a closure; records every call it gets.
    struct FakeModel<F: FnMut(&ModelCall) -> Result<ModelAnswer, HostError>> {
        model: F,
        calls: Vec<ModelCall>,
        sent: Vec<String>,
    }

    impl<F: FnMut(&ModelCall) -> Result<ModelAnswer, HostError>> FakeModel<F> {
        fn new(model: F) -> Self {
            FakeModel {
                model,
                calls: vec![],
                sent: vec![],
            }
        }
    }

    impl<F: FnMut(&ModelCall) -> Result<ModelAnswer, HostError>> Host for FakeModel<F> {
        fn call_model(&mut self, call: ModelCall) -> Result<ModelAnswer, HostError> {
            let answer = (self.model)(&call);
            self.calls.push(call);
            answer
        }
        fn send_message(&mut self, _: &str, body: &str) -> Result<(), HostError> {
            self.sent.push(body.into());
            Ok(())
        }
        fn task(&mut self, _: &str, _: serde_json::Value) -> Result<TaskAnswer, HostError> {
            Err(HostError::Timeout(std::time::Duration::from_secs(30)))
        }
        fn web(&mut self, _: &str, _: &str, target: &str) -> Result<WebAnswer, HostError> {
            Ok(WebAnswer {
                text: format!("text of {target}"),
                error: None,
            })
        }
    }

    fn text(content: &str) -> Result<ModelAnswer, HostError> {
        Ok(ModelAnswer {
            content: content.into(),
            ..ModelAnswer::default()
        })
    }

    fn tool_call(id: &str, name: &str, args: serde_json::Value) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args,
        }
    }

    fn setup() -> (tempfile::TempDir, ToolBox, Turn) {
        let tmp = tempfile::tempdir().unwrap();
        let tools = ToolBox {
            workspace: Workspace::new(tmp.path()).unwrap(),
            builtin_skills: None,
            persona: None,
            shared: None,
            shell: None,
        };
        let turn = Turn {
            turn_id: "t-1".into(),
            messages: vec![
                TurnMessage {
                    id: "m-1".into(),
                    sender: "alice".into(),
                    body: "earlier".into(),
                    ts: 1,
                    triggered: false,
                    chat: String::new(),
                },
                TurnMessage {
                    id: "m-2".into(),
                    sender: "bob".into(),
                    body: "save a note".into(),
                    ts: 2,
                    triggered: true,
                    chat: String::new(),
                },
            ],
            history: vec![],
            scheduled: false,
            web: false,
            web_search: false,
            now_ms: 1_795_329_600_000,
        };
        (tmp, tools, turn)
    }

    #[test]
    fn turn_from_envelope() {
        let (_tmp, _tools, turn) = setup();
        let payload = Payload::Turn {
            turn_id: turn.turn_id.clone(),
            messages: turn.messages.clone(),
            history: vec![],
            scheduled: false,
            web: false,
            web_search: false,
        };
        let envelope = Envelope::new("e-1", 1_795_329_600_000, payload);
        assert_eq!(Turn::from_envelope(&envelope), Some(turn));
        let shutdown = Envelope::new("e-2", 5, Payload::Shutdown {});
        assert_eq!(Turn::from_envelope(&shutdown), None);
    }

    #[test]
    fn plain_reply() {
        let (_tmp, tools, turn) = setup();
        let mut host = FakeModel::new(|_: &ModelCall| text("hello"));
        let end = run_turn(&turn, "SYS".into(), &tools, &mut host);
        assert_eq!(
            end,
            TurnEnd::Answer(Payload::Reply {
                turn_id: "t-1".into(),
                reply_to: vec!["m-2".into()],
                body: "hello".into(),
            })
        );
        assert_eq!(host.calls.len(), 1);
        let call = &host.calls[0];
        assert_eq!(call.turn_id, "t-1");
        assert!(crate::protocol::is_valid_id(&call.request_id));
        assert_eq!(call.messages.len(), 3);
        assert_eq!(
            call.messages[0].content,
            format!("SYS\n\n{}\n", prompt::clock_line(1_795_329_600_000))
        );
        assert_eq!(call.tools, tools.specs());
    }

    #[test]
    fn a_web_turn_offers_the_web_tools_and_runs_them() {
        let (_tmp, tools, mut turn) = setup();
        turn.web = true;
        turn.web_search = true;
        let mut host = FakeModel::new(|call: &ModelCall| {
            if call.messages.last().unwrap().role == Role::Tool {
                return text(&call.messages.last().unwrap().content.clone());
            }
            Ok(ModelAnswer {
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "web_fetch".into(),
                    arguments: json!({"url": "https://docs.rs/"}),
                }],
                error: None,
            })
        });
        let end = run_turn(&turn, "SYS".into(), &tools, &mut host);
        assert_eq!(
            end,
            TurnEnd::Answer(turn.reply("text of https://docs.rs/".into()))
        );
        assert_eq!(host.calls[0].tools, tools.specs_for(turn.web_tools()));
        assert!(host.calls[0].tools.iter().any(|t| t.name == "web_search"));
    }

    #[test]
    fn one_tool_round_then_reply() {
        let (tmp, tools, turn) = setup();
        let mut host = FakeModel::new(|call: &ModelCall| {
            if call.messages.last().unwrap().role == Role::Tool {
                return text("done");
            }
            Ok(ModelAnswer {
                content: "writing".into(),
                tool_calls: vec![
                    tool_call(
                        "c1",
                        "write_file",
                        json!({"path": "n/a.md", "content": "x"}),
                    ),
                    tool_call("c2", "read_file", json!({"path": "../escape"})),
                    tool_call("c3", "send_message", json!({"text": "on it"})),
                ],
                error: None,
            })
        });
        let end = run_turn(&turn, "SYS".into(), &tools, &mut host);
        assert!(matches!(end, TurnEnd::Answer(Payload::Reply { ref body, .. }) if body == "done"));
        assert_eq!(fs::read_to_string(tmp.path().join("n/a.md")).unwrap(), "x");
        assert_eq!(host.sent, ["on it"]);
        assert_eq!(host.calls.len(), 2);
        let second = &host.calls[1].messages;
        assert_eq!(second.len(), 3 + 1 + 3);
        // Each call gets a fresh request id; the turn id stays.
        assert_ne!(host.calls[0].request_id, host.calls[1].request_id);
        assert_eq!(host.calls[1].turn_id, "t-1");
        let assistant = &second[3];
        assert_eq!(assistant.role, Role::Assistant);
        assert_eq!(assistant.content, "writing");
        assert_eq!(assistant.tool_calls.len(), 3);
        let results: Vec<(Option<&str>, &str)> = second[4..]
            .iter()
            .map(|m| {
                assert_eq!(m.role, Role::Tool);
                (m.tool_call_id.as_deref(), m.content.as_str())
            })
            .collect();
        assert_eq!(results[0], (Some("c1"), "wrote 1 bytes to n/a.md"));
        assert_eq!(results[1].0, Some("c2"));
        assert!(results[1]
            .1
            .starts_with("error: ../escape: paths with `..` are refused"));
        assert_eq!(results[2], (Some("c3"), "sent"));
    }

    #[test]
    fn model_error_fails_the_turn() {
        let (_tmp, tools, turn) = setup();
        let mut host = FakeModel::new(|_: &ModelCall| {
            Ok(ModelAnswer {
                error: Some("rate limited".into()),
                ..ModelAnswer::default()
            })
        });
        assert_eq!(
            run_turn(&turn, "SYS".into(), &tools, &mut host),
            TurnEnd::Answer(Payload::TurnFailed {
                turn_id: "t-1".into(),
                error: "rate limited".into(),
            })
        );
        let mut host = FakeModel::new(|_: &ModelCall| {
            Err(HostError::Timeout(std::time::Duration::from_secs(300)))
        });
        assert_eq!(
            run_turn(&turn, "SYS".into(), &tools, &mut host),
            TurnEnd::Answer(turn.failed("the model did not answer within 300 s"))
        );
        let mut host = FakeModel::new(|_: &ModelCall| Err(HostError::Shutdown));
        assert_eq!(
            run_turn(&turn, "SYS".into(), &tools, &mut host),
            TurnEnd::Shutdown
        );
    }

    #[test]
    fn step_limit() {
        let (tmp, tools, turn) = setup();
        let mut n = 0;
        let mut host = FakeModel::new(|_: &ModelCall| {
            n += 1;
            Ok(ModelAnswer {
                tool_calls: vec![tool_call(
                    &format!("c{n}"),
                    "write_file",
                    json!({"path": format!("f{n}"), "content": ""}),
                )],
                ..ModelAnswer::default()
            })
        });
        assert_eq!(
            run_turn(&turn, "SYS".into(), &tools, &mut host),
            TurnEnd::Answer(turn.failed("step limit reached"))
        );
        assert_eq!(host.calls.len(), MAX_MODEL_CALLS);
        // The tools of the last call are not run.
        assert!(tmp.path().join("f7").exists());
        assert!(!tmp.path().join("f8").exists());
    }

    #[test]
    fn unknown_tool_is_reported_to_the_model() {
        let (_tmp, tools, turn) = setup();
        let mut host = FakeModel::new(|call: &ModelCall| {
            if let Some(last) = call.messages.last().filter(|m| m.role == Role::Tool) {
                return text(&last.content);
            }
            Ok(ModelAnswer {
                tool_calls: vec![tool_call("c", "teleport", json!({}))],
                ..ModelAnswer::default()
            })
        });
        match run_turn(&turn, "SYS".into(), &tools, &mut host) {
            TurnEnd::Answer(Payload::Reply { body, .. }) => {
                assert!(
                    body.starts_with("error: there is no tool named \"teleport\""),
                    "{body}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_reply_on_a_scheduled_turn() {
        let (_tmp, tools, mut turn) = setup();
        turn.scheduled = true;
        for m in &mut turn.messages {
            m.triggered = false;
        }
        let mut host = FakeModel::new(|_: &ModelCall| text(""));
        assert_eq!(
            run_turn(&turn, "SYS".into(), &tools, &mut host),
            TurnEnd::Answer(Payload::Reply {
                turn_id: "t-1".into(),
                reply_to: vec![],
                body: String::new(),
            })
        );
        let last = host.calls[0].messages.last().unwrap();
        assert_eq!(last.content, prompt::SCHEDULED_NOTE);
    }
}
