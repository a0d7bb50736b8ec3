//! What the agent asks of the host during a turn, as a trait so the turn loop can be driven by
//! a fake in tests, and [`FileHost`], which does it through the IPC directories.

use crate::inbox::{Inbox, Item};
use crate::ipc;
use crate::protocol::{Envelope, ModelMessage, Payload, ToolCall, ToolSpec};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for the model's answer.
pub const MODEL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to wait for the answer to a task request.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the answer to a web request: longer than the longest time an egress
/// policy lets one request take (10 minutes), so the host's own error arrives first.
pub const WEB_TIMEOUT: Duration = Duration::from_secs(630);

/// One call of the model: the fields of a [`Payload::ModelRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    pub request_id: String,
    pub turn_id: String,
    pub messages: Vec<ModelMessage>,
    pub tools: Vec<ToolSpec>,
}

impl ModelCall {
    pub fn into_payload(self) -> Payload {
        Payload::ModelRequest {
            request_id: self.request_id,
            turn_id: self.turn_id,
            messages: self.messages,
            tools: self.tools,
            max_tokens: None,
        }
    }
}

/// The model's answer: the fields of a [`Payload::ModelResponse`] that the loop uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelAnswer {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub error: Option<String>,
}

/// The host's answer to a task request.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskAnswer {
    pub ok: bool,
    pub result: serde_json::Value,
    pub error: Option<String>,
}

/// The host's answer to a web request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebAnswer {
    pub text: String,
    pub error: Option<String>,
}

/// Why the host could not do what was asked.
#[derive(Debug)]
pub enum HostError {
    /// A shutdown message arrived: stop now.
    Shutdown,
    /// No answer within the time limit.
    Timeout(Duration),
    /// The request could not be written, or the inbox read.
    Io(io::Error),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Shutdown => write!(f, "the agent is shutting down"),
            HostError::Timeout(d) => {
                write!(f, "the host did not answer within {} s", d.as_secs())
            }
            HostError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HostError {}

/// The host, as the turn loop and the tools see it.
pub trait Host {
    /// Sends a model request and waits for its answer.
    fn call_model(&mut self, call: ModelCall) -> Result<ModelAnswer, HostError>;
    /// Sends an extra chat message for a turn.
    fn send_message(&mut self, turn_id: &str, body: &str) -> Result<(), HostError>;
    /// Sends a task request and waits for its answer.
    fn task(&mut self, action: &str, args: serde_json::Value) -> Result<TaskAnswer, HostError>;
    /// Sends a web request (`fetch` a URL or `search` a query) and waits for its answer.
    fn web(&mut self, turn_id: &str, action: &str, target: &str) -> Result<WebAnswer, HostError>;
}

/// The host at the other end of the IPC directories: requests are envelopes written to `out`,
/// answers are taken from the inbox. Turns that arrive while waiting are kept, in order, for
/// [`FileHost::next_item`].
#[derive(Debug)]
pub struct FileHost {
    inbox: Inbox,
    out: PathBuf,
    queued: VecDeque<Item>,
    last_ts: i64,
    pub model_timeout: Duration,
    pub task_timeout: Duration,
    pub web_timeout: Duration,
}

/// What is being waited for.
#[derive(Clone, Copy)]
enum Awaited<'a> {
    Model(&'a str),
    Task(&'a str),
    Web(&'a str),
}

impl FileHost {
    pub fn new(inbox: Inbox, out: &Path) -> FileHost {
        FileHost {
            inbox,
            out: out.to_path_buf(),
            queued: VecDeque::new(),
            last_ts: 0,
            model_timeout: MODEL_TIMEOUT,
            task_timeout: TASK_TIMEOUT,
            web_timeout: WEB_TIMEOUT,
        }
    }

    /// The next message to handle: turns queued while waiting first, then the inbox. Blocks
    /// until there is one; an error means the inbox cannot be read.
    pub fn next_item(&mut self) -> io::Result<Item> {
        if let Some(item) = self.queued.pop_front() {
            return Ok(item);
        }
        loop {
            if let Some(item) = self.inbox.next(None)? {
                return Ok(item);
            }
        }
    }

    /// Deletes a handled item's file.
    pub fn finish(&mut self, item: &Item) {
        self.inbox.remove(item);
    }

    /// Writes `payload` to the out directory in a new envelope.
    pub fn write(&mut self, payload: Payload) -> io::Result<PathBuf> {
        // Strictly increasing timestamps, so that the host, reading in name order, sees two
        // envelopes written in the same millisecond in the order they were written.
        let ts = ipc::now_ms().max(self.last_ts + 1);
        self.last_ts = ts;
        ipc::write_envelope(&self.out, &Envelope::new(ipc::new_id(), ts, payload))
    }

    /// Reports and deletes an item nobody is waiting for: a stale response (to a request from
    /// before a restart, or one that timed out) or a type the host should not send.
    pub fn drop_unexpected(&mut self, item: &Item) {
        let what = match &item.envelope.payload {
            Payload::ModelResponse { request_id, .. }
            | Payload::TaskResponse { request_id, .. }
            | Payload::WebResponse { request_id, .. } => {
                format!("a response to unknown request {request_id}")
            }
            other => format!("an unexpected {} message", other.type_name()),
        };
        let path = self.inbox.dir().join(&item.name);
        crate::note(&format!("deleting {}: {what}", path.display()));
        self.inbox.remove(item);
    }

    /// Takes items from the inbox until the answer awaited arrives or `timeout` passes.
    fn wait_for(&mut self, awaited: Awaited, timeout: Duration) -> Result<Payload, HostError> {
        let deadline = Instant::now() + timeout;
        loop {
            let item = match self.inbox.next(Some(deadline)) {
                Ok(Some(item)) => item,
                Ok(None) => return Err(HostError::Timeout(timeout)),
                Err(e) => return Err(HostError::Io(e)),
            };
            let matched = match (&item.envelope.payload, awaited) {
                (Payload::ModelResponse { request_id, .. }, Awaited::Model(want))
                | (Payload::TaskResponse { request_id, .. }, Awaited::Task(want))
                | (Payload::WebResponse { request_id, .. }, Awaited::Web(want)) => {
                    request_id == want
                }
                _ => false,
            };
            if matched {
                self.inbox.remove(&item);
                return Ok(item.envelope.payload);
            }
            match &item.envelope.payload {
                Payload::Turn { .. } => self.queued.push_back(item),
                Payload::Shutdown {} => {
                    self.inbox.remove(&item);
                    return Err(HostError::Shutdown);
                }
                _ => self.drop_unexpected(&item),
            }
        }
    }
}

impl Host for FileHost {
    fn call_model(&mut self, call: ModelCall) -> Result<ModelAnswer, HostError> {
        let request_id = call.request_id.clone();
        self.write(call.into_payload()).map_err(HostError::Io)?;
        match self.wait_for(Awaited::Model(&request_id), self.model_timeout)? {
            Payload::ModelResponse {
                content,
                tool_calls,
                error,
                ..
            } => Ok(ModelAnswer {
                content,
                tool_calls,
                error,
            }),
            _ => unreachable!("wait_for returns the awaited type"),
        }
    }

    fn send_message(&mut self, turn_id: &str, body: &str) -> Result<(), HostError> {
        self.write(Payload::Message {
            turn_id: turn_id.to_string(),
            body: body.to_string(),
        })
        .map(|_| ())
        .map_err(HostError::Io)
    }

    fn task(&mut self, action: &str, args: serde_json::Value) -> Result<TaskAnswer, HostError> {
        let request_id = ipc::new_id();
        self.write(Payload::TaskRequest {
            request_id: request_id.clone(),
            action: action.to_string(),
            args,
        })
        .map_err(HostError::Io)?;
        match self.wait_for(Awaited::Task(&request_id), self.task_timeout)? {
            Payload::TaskResponse {
                ok, result, error, ..
            } => Ok(TaskAnswer { ok, result, error }),
            _ => unreachable!("wait_for returns the awaited type"),
        }
    }

    fn web(&mut self, turn_id: &str, action: &str, target: &str) -> Result<WebAnswer, HostError> {
        let request_id = ipc::new_id();
        self.write(Payload::WebRequest {
            request_id: request_id.clone(),
            turn_id: turn_id.to_string(),
            action: action.to_string(),
            target: target.to_string(),
        })
        .map_err(HostError::Io)?;
        match self.wait_for(Awaited::Web(&request_id), self.web_timeout)? {
            Payload::WebResponse { text, error, .. } => Ok(WebAnswer { text, error }),
            _ => unreachable!("wait_for returns the awaited type"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{is_temp_name, parse_envelope, Usage};
    use std::fs;

    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let (inp, out) = (tmp.path().join("in"), tmp.path().join("out"));
        fs::create_dir(&inp).unwrap();
        fs::create_dir(&out).unwrap();
        (tmp, inp, out)
    }

    fn put(dir: &Path, id: &str, ts: i64, payload: Payload) {
        ipc::write_envelope(dir, &Envelope::new(id, ts, payload)).unwrap();
    }

    fn response(request_id: &str, content: &str) -> Payload {
        Payload::ModelResponse {
            request_id: request_id.into(),
            content: content.into(),
            tool_calls: vec![],
            error: None,
            usage: Usage::default(),
        }
    }

    fn turn(id: &str) -> Payload {
        Payload::Turn {
            turn_id: id.into(),
            messages: vec![],
            history: vec![],
            scheduled: false,
            web: false,
            web_search: false,
        }
    }

    fn out_payloads(out: &Path) -> Vec<Payload> {
        let mut names: Vec<_> = fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !is_temp_name(&p.file_name().unwrap().to_string_lossy()))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| parse_envelope(&fs::read(p).unwrap()).unwrap().payload)
            .collect()
    }

    fn call(id: &str) -> ModelCall {
        ModelCall {
            request_id: id.into(),
            turn_id: "t".into(),
            messages: vec![],
            tools: vec![],
        }
    }

    #[test]
    fn model_answer_is_matched_by_request_id() {
        let (_tmp, inp, out) = dirs();
        // Already waiting: a stale response, a turn, and the answer.
        put(&inp, "a", 1, response("old", "stale"));
        put(&inp, "b", 2, turn("t-2"));
        put(&inp, "c", 3, response("r-1", "hello"));
        let mut host = FileHost::new(Inbox::polling(&inp), &out);
        let answer = host.call_model(call("r-1")).unwrap();
        assert_eq!(answer.content, "hello");
        // The request was written; the stale and the answered responses are gone; the turn
        // stays on disk and comes out next.
        assert!(matches!(
            &out_payloads(&out)[..],
            [Payload::ModelRequest { request_id, .. }] if request_id == "r-1"
        ));
        let left: Vec<_> = fs::read_dir(&inp).unwrap().collect();
        assert_eq!(left.len(), 1);
        let next = host.next_item().unwrap();
        assert!(
            matches!(&next.envelope.payload, Payload::Turn { turn_id, .. } if turn_id == "t-2")
        );
        host.finish(&next);
        assert_eq!(fs::read_dir(&inp).unwrap().count(), 0);
    }

    #[test]
    fn shutdown_and_timeout() {
        let (_tmp, inp, out) = dirs();
        let mut host = FileHost::new(Inbox::polling(&inp), &out);
        host.model_timeout = Duration::from_millis(300);
        assert!(matches!(
            host.call_model(call("r-1")),
            Err(HostError::Timeout(_))
        ));
        put(&inp, "s", 1, Payload::Shutdown {});
        assert!(matches!(
            host.call_model(call("r-2")),
            Err(HostError::Shutdown)
        ));
        assert_eq!(fs::read_dir(&inp).unwrap().count(), 0);
    }

    #[test]
    fn task_round_trip() {
        let (_tmp, inp, out) = dirs();
        let mut host = FileHost::new(Inbox::polling(&inp), &out);
        let out2 = out.clone();
        let inp2 = inp.clone();
        let responder = std::thread::spawn(move || loop {
            if let Some(Payload::TaskRequest {
                request_id, action, ..
            }) = out_payloads(&out2).into_iter().next()
            {
                assert_eq!(action, "list");
                put(&inp2, "x", 1, response(&request_id, "wrong type"));
                put(
                    &inp2,
                    "y",
                    2,
                    Payload::TaskResponse {
                        request_id,
                        ok: true,
                        result: serde_json::json!([]),
                        error: None,
                    },
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        });
        let answer = host.task("list", serde_json::json!({})).unwrap();
        responder.join().unwrap();
        assert!(answer.ok);
        assert_eq!(answer.result, serde_json::json!([]));
    }

    #[test]
    fn timestamps_increase() {
        let (_tmp, inp, out) = dirs();
        let mut host = FileHost::new(Inbox::polling(&inp), &out);
        for i in 0..20 {
            host.send_message("t", &format!("m{i:02}")).unwrap();
        }
        let bodies: Vec<String> = out_payloads(&out)
            .into_iter()
            .map(|p| match p {
                Payload::Message { body, .. } => body,
                other => panic!("{other:?}"),
            })
            .collect();
        let mut sorted = bodies.clone();
        sorted.sort();
        assert_eq!(bodies, sorted);
        assert_eq!(bodies.len(), 20);
    }
}
