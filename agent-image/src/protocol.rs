//! IPC protocol types, shared by the host and the agent so both sides use one definition.
//!
//! Every message is one JSON object in its own file (at most [`MAX_ENVELOPE_BYTES`]):
//!
//! ```json
//! {"v": 1, "id": "m-42", "ts": 1700000000000, "type": "reply", "turn_id": "t-7", "reply_to": [], "body": "hi"}
//! ```
//!
//! `v` is [`PROTOCOL_VERSION`], `id` is unique per sender and obeys [`is_valid_id`], `ts` is
//! Unix time in milliseconds, and `type` selects the [`Payload`] variant whose fields sit beside
//! the header fields. Unknown extra fields are ignored, so a side may add optional fields
//! without a version bump; removing or changing the meaning of a field needs one.
//!
//! Files are written under a temporary name (see [`temp_name_for`], [`is_temp_name`]) and then
//! renamed to [`file_name_for`], so a reader that skips temporary names never sees a partial
//! write.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the IPC envelope format. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest envelope file either side will read or write.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// Longest id accepted by [`is_valid_id`].
pub const MAX_ID_LEN: usize = 64;

/// One IPC message: the common header plus a typed body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version; always [`PROTOCOL_VERSION`] for envelopes this build accepts.
    pub v: u32,
    /// Unique per sender; 1–64 characters of `[A-Za-z0-9_-]`.
    pub id: String,
    /// Creation time, Unix milliseconds.
    pub ts: i64,
    /// The `type` tag and its fields.
    #[serde(flatten)]
    pub payload: Payload,
}

impl Envelope {
    /// An envelope of the current protocol version.
    pub fn new(id: impl Into<String>, ts: i64, payload: Payload) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            id: id.into(),
            ts,
            payload,
        }
    }

    /// Serializes to the bytes of an envelope file, refusing anything [`parse_envelope`] would
    /// refuse for its size or ids.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        if !is_valid_id(&self.id) || !self.payload.ids_valid() {
            return Err(EnvelopeError::BadId);
        }
        let bytes =
            serde_json::to_vec(self).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        Ok(bytes)
    }
}

/// The type-specific part of an envelope, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// Agent → host: the agent has started and can take turns.
    Ready {
        agent_version: String,
        /// The protocol version the agent speaks.
        protocol: u32,
    },
    /// Host → agent: new chat messages to respond to.
    Turn {
        turn_id: String,
        /// Messages that arrived since the last turn, oldest first.
        messages: Vec<TurnMessage>,
        /// Earlier conversation, oldest first, for context.
        #[serde(default)]
        history: Vec<HistoryItem>,
        /// True when the turn was started by a schedule rather than by someone writing.
        #[serde(default)]
        scheduled: bool,
        /// True when the instance has an egress policy: `web_fetch` is offered to the model
        /// for this turn. Absent means false.
        #[serde(default, skip_serializing_if = "is_false")]
        web: bool,
        /// True when, as well, the host has a search backend: `web_search` is offered too.
        #[serde(default, skip_serializing_if = "is_false")]
        web_search: bool,
    },
    /// Agent → host: the answer to a turn.
    Reply {
        turn_id: String,
        /// Ids of the [`TurnMessage`]s this answers; may be empty.
        #[serde(default)]
        reply_to: Vec<String>,
        body: String,
    },
    /// Agent → host: an extra chat message during a turn (the `send_message` tool).
    Message { turn_id: String, body: String },
    /// Agent → host: the turn cannot be completed; the host tells the user.
    TurnFailed { turn_id: String, error: String },
    /// Agent → host: please call the model (the host holds the credentials).
    ModelRequest {
        request_id: String,
        /// The turn this request serves.
        turn_id: String,
        messages: Vec<ModelMessage>,
        /// Tools the model may call.
        #[serde(default)]
        tools: Vec<ToolSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<u32>,
    },
    /// Host → agent: the model's answer to a [`Payload::ModelRequest`].
    ModelResponse {
        request_id: String,
        /// The text content; empty when the model only called tools or on error.
        #[serde(default)]
        content: String,
        /// Tools the model asked to call.
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
        /// Set when the call failed; `content` and `tool_calls` are then empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default)]
        usage: Usage,
    },
    /// Agent → host: a request about this instance's scheduled tasks (`schedule_task`).
    TaskRequest {
        request_id: String,
        /// `create`, `list`, `pause`, `resume` or `cancel`.
        action: String,
        #[serde(default)]
        args: serde_json::Value,
    },
    /// Host → agent: the answer to a [`Payload::TaskRequest`].
    TaskResponse {
        request_id: String,
        ok: bool,
        #[serde(default)]
        result: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Agent → host: fetch a page or search the web (`web_fetch`, `web_search`); the host
    /// does it under the instance's egress policy and answers with a [`Payload::WebResponse`].
    WebRequest {
        request_id: String,
        /// The turn this request serves.
        turn_id: String,
        /// `fetch` or `search`.
        action: String,
        /// The URL for `fetch` (at most [`MAX_WEB_TARGET_BYTES`]), the query for `search`.
        target: String,
    },
    /// Host → agent: the answer to a [`Payload::WebRequest`].
    WebResponse {
        request_id: String,
        /// Readable text for the model (at most [`MAX_WEB_TEXT_BYTES`]); empty on error.
        #[serde(default)]
        text: String,
        /// Set when the request was refused or failed: why, in words for the model.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Host → agent: finish the current step and exit.
    Shutdown {},
}

/// The longest URL or query a [`Payload::WebRequest`] may carry.
pub const MAX_WEB_TARGET_BYTES: usize = 8 * 1024;

/// The most text a [`Payload::WebResponse`] carries; the host cuts longer text and says so.
pub const MAX_WEB_TEXT_BYTES: usize = 256 * 1024;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Every `type` tag this build understands, in [`Payload`] order.
pub const PAYLOAD_TYPES: &[&str] = &[
    "ready",
    "turn",
    "reply",
    "message",
    "turn_failed",
    "model_request",
    "model_response",
    "task_request",
    "task_response",
    "web_request",
    "web_response",
    "shutdown",
];

impl Payload {
    /// The `type` tag this payload is written with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Payload::Ready { .. } => "ready",
            Payload::Turn { .. } => "turn",
            Payload::Reply { .. } => "reply",
            Payload::Message { .. } => "message",
            Payload::TurnFailed { .. } => "turn_failed",
            Payload::ModelRequest { .. } => "model_request",
            Payload::ModelResponse { .. } => "model_response",
            Payload::TaskRequest { .. } => "task_request",
            Payload::TaskResponse { .. } => "task_response",
            Payload::WebRequest { .. } => "web_request",
            Payload::WebResponse { .. } => "web_response",
            Payload::Shutdown {} => "shutdown",
        }
    }

    /// Whether the correlation ids in the body (`turn_id`, `request_id`) obey [`is_valid_id`].
    fn ids_valid(&self) -> bool {
        match self {
            Payload::Turn { turn_id, .. }
            | Payload::Reply { turn_id, .. }
            | Payload::Message { turn_id, .. }
            | Payload::TurnFailed { turn_id, .. } => is_valid_id(turn_id),
            Payload::ModelRequest {
                request_id,
                turn_id,
                ..
            }
            | Payload::WebRequest {
                request_id,
                turn_id,
                ..
            } => is_valid_id(request_id) && is_valid_id(turn_id),
            Payload::ModelResponse { request_id, .. }
            | Payload::WebResponse { request_id, .. }
            | Payload::TaskRequest { request_id, .. }
            | Payload::TaskResponse { request_id, .. } => is_valid_id(request_id),
            Payload::Ready { .. } | Payload::Shutdown {} => true,
        }
    }
}

/// One incoming chat message in a [`Payload::Turn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnMessage {
    /// The host's id for the message; replies name it in `reply_to`.
    pub id: String,
    /// Who wrote it, as the host identifies them.
    pub sender: String,
    pub body: String,
    /// When it arrived, Unix milliseconds.
    pub ts: i64,
    /// True for the message(s) that started the turn (e.g. matched the trigger).
    #[serde(default)]
    pub triggered: bool,
    /// The conversation it came from: empty for the operator's own, `<channel>:<chat>` for
    /// a channel's (`webhook:ops`). A turn's messages all share one; the answer goes there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chat: String,
}

/// Who said something, in history and model messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One earlier exchange in a [`Payload::Turn`]'s history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub role: Role,
    pub content: String,
}

/// One message sent to the model in a [`Payload::ModelRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMessage {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    /// For an assistant message: the tools it called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A tool the model may call: a name, what it does, and a JSON Schema for its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// A call of a tool by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub arguments: serde_json::Value,
}

/// Token counts reported with a [`Payload::ModelResponse`]; zero when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    TooLarge,
    /// Not valid UTF-8.
    NotUtf8,
    /// Not JSON, not an object, a missing or mistyped field.
    InvalidJson(String),
    /// A `v` other than [`PROTOCOL_VERSION`].
    WrongVersion(u32),
    /// A `type` this build does not know.
    UnknownType(String),
    /// `id`, `turn_id` or `request_id` missing or not matching [`is_valid_id`].
    BadId,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::TooLarge => {
                write!(f, "envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
            }
            EnvelopeError::NotUtf8 => write!(f, "envelope is not valid UTF-8"),
            EnvelopeError::InvalidJson(msg) => write!(f, "envelope is not valid: {msg}"),
            EnvelopeError::WrongVersion(v) => write!(
                f,
                "envelope has protocol version {v}, this build speaks {PROTOCOL_VERSION}"
            ),
            EnvelopeError::UnknownType(t) => write!(f, "envelope has unknown type {t:?}"),
            EnvelopeError::BadId => write!(
                f,
                "envelope id must be 1-{MAX_ID_LEN} characters of A-Z, a-z, 0-9, '_' or '-'"
            ),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// True for 1–64 characters of `[A-Za-z0-9_-]`, so an id can never hold a path separator or a
/// dot and is safe to use in a file name.
pub fn is_valid_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Decodes and checks one envelope file.
///
/// Checks run in this order, and the first failure is returned: size, UTF-8, JSON object,
/// version, type, id, then the typed body. The version is checked before the body is decoded,
/// so an envelope from a newer protocol reports [`EnvelopeError::WrongVersion`] rather than a
/// decoding error.
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8)?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| EnvelopeError::InvalidJson("not a JSON object".into()))?;

    let v = match obj.get("v") {
        None => return Err(EnvelopeError::InvalidJson("missing field `v`".into())),
        Some(v) => v.as_u64().ok_or_else(|| {
            EnvelopeError::InvalidJson("`v` is not a non-negative integer".into())
        })?,
    };
    if v != u64::from(PROTOCOL_VERSION) {
        return Err(EnvelopeError::WrongVersion(
            u32::try_from(v).unwrap_or(u32::MAX),
        ));
    }

    let ty = match obj.get("type") {
        None => return Err(EnvelopeError::InvalidJson("missing field `type`".into())),
        Some(t) => t
            .as_str()
            .ok_or_else(|| EnvelopeError::InvalidJson("`type` is not a string".into()))?,
    };
    if !PAYLOAD_TYPES.contains(&ty) {
        return Err(EnvelopeError::UnknownType(ty.to_string()));
    }

    match obj.get("id").and_then(|id| id.as_str()) {
        Some(id) if is_valid_id(id) => {}
        _ => return Err(EnvelopeError::BadId),
    }

    let env: Envelope =
        serde_json::from_value(value).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    if !env.payload.ids_valid() {
        return Err(EnvelopeError::BadId);
    }
    Ok(env)
}

/// The final file name of an envelope: `<ts>-<id>.json`.
pub fn file_name_for(env: &Envelope) -> String {
    format!("{}-{}.json", env.ts, env.id)
}

/// The temporary name an envelope is written under before being renamed to
/// [`file_name_for`]: `.<ts>-<id>.json.tmp`.
pub fn temp_name_for(env: &Envelope) -> String {
    format!(".{}.tmp", file_name_for(env))
}

/// True for names of files still being written, which readers must skip: they start with `.`
/// and end with `.tmp`.
pub fn is_temp_name(name: &str) -> bool {
    name.len() > ".tmp".len() && name.starts_with('.') && name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn samples() -> Vec<Payload> {
        vec![
            Payload::Ready {
                agent_version: "0.1.0".into(),
                protocol: PROTOCOL_VERSION,
            },
            Payload::Turn {
                turn_id: "t-1".into(),
                messages: vec![TurnMessage {
                    id: "m-1".into(),
                    sender: "local".into(),
                    body: "hello".into(),
                    ts: 1_700_000_000_000,
                    triggered: true,
                    chat: String::new(),
                }],
                history: vec![
                    HistoryItem {
                        role: Role::User,
                        content: "earlier".into(),
                    },
                    HistoryItem {
                        role: Role::Assistant,
                        content: "answer".into(),
                    },
                ],
                scheduled: false,
                web: true,
                web_search: true,
            },
            Payload::Reply {
                turn_id: "t-1".into(),
                reply_to: vec!["m-1".into()],
                body: "hi".into(),
            },
            Payload::Message {
                turn_id: "t-1".into(),
                body: "working on it".into(),
            },
            Payload::TurnFailed {
                turn_id: "t-1".into(),
                error: "step limit reached".into(),
            },
            Payload::ModelRequest {
                request_id: "r-1".into(),
                turn_id: "t-1".into(),
                messages: vec![
                    ModelMessage {
                        role: Role::System,
                        content: "be brief".into(),
                        tool_calls: vec![],
                        tool_call_id: None,
                    },
                    ModelMessage {
                        role: Role::Assistant,
                        content: String::new(),
                        tool_calls: vec![ToolCall {
                            id: "c1".into(),
                            name: "read_file".into(),
                            arguments: json!({"path": "notes.md"}),
                        }],
                        tool_call_id: None,
                    },
                    ModelMessage {
                        role: Role::Tool,
                        content: "the notes".into(),
                        tool_calls: vec![],
                        tool_call_id: Some("c1".into()),
                    },
                ],
                tools: vec![ToolSpec {
                    name: "read_file".into(),
                    description: "Reads a file.".into(),
                    parameters: json!({
                        "type": "object",
                        "properties": {"path": {"type": "string"}},
                        "required": ["path"]
                    }),
                }],
                max_tokens: Some(512),
            },
            Payload::ModelResponse {
                request_id: "r-1".into(),
                content: "ok".into(),
                tool_calls: vec![ToolCall {
                    id: "c2".into(),
                    name: "list_dir".into(),
                    arguments: json!({}),
                }],
                error: None,
                usage: Usage {
                    input_tokens: 10,
                    output_tokens: 2,
                },
            },
            Payload::TaskRequest {
                request_id: "q-1".into(),
                action: "create".into(),
                args: json!({"schedule_kind": "every", "schedule": "1h", "prompt": "check"}),
            },
            Payload::TaskResponse {
                request_id: "q-1".into(),
                ok: true,
                result: json!({"task_id": 3}),
                error: None,
            },
            Payload::WebRequest {
                request_id: "w-1".into(),
                turn_id: "t-1".into(),
                action: "fetch".into(),
                target: "https://docs.rs/serde".into(),
            },
            Payload::WebResponse {
                request_id: "w-1".into(),
                text: String::new(),
                error: Some("docs.rs is not in this instance's egress.allow list".into()),
            },
            Payload::Shutdown {},
        ]
    }

    fn obj(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn round_trip_every_type() {
        let payloads = samples();
        assert_eq!(payloads.len(), PAYLOAD_TYPES.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            assert_eq!(payload.type_name(), PAYLOAD_TYPES[i]);
            let env = Envelope::new(format!("e-{i}"), 1_700_000_000_123, payload);
            let bytes = env.to_json_bytes().unwrap();
            let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(raw["v"], json!(PROTOCOL_VERSION));
            assert_eq!(raw["type"], json!(PAYLOAD_TYPES[i]));
            assert_eq!(raw["ts"], json!(1_700_000_000_123_i64));
            assert_eq!(parse_envelope(&bytes).unwrap(), env);
        }
    }

    #[test]
    fn wire_format_is_flat() {
        let env = Envelope::new("abc", 5, Payload::Shutdown {});
        let raw: serde_json::Value = serde_json::from_slice(&env.to_json_bytes().unwrap()).unwrap();
        assert_eq!(
            raw,
            json!({"v": 1, "id": "abc", "ts": 5, "type": "shutdown"})
        );
    }

    #[test]
    fn optional_fields_default() {
        let env = parse_envelope(&obj(json!({
            "v": 1, "id": "x", "ts": 1, "type": "turn", "turn_id": "t",
            "messages": [{"id": "m", "sender": "s", "body": "b", "ts": 2}],
            "unknown_extra": true
        })))
        .unwrap();
        match env.payload {
            Payload::Turn {
                history,
                scheduled,
                messages,
                web,
                ..
            } => {
                assert!(history.is_empty());
                assert!(!scheduled);
                assert!(!web, "no web tools unless the host says so");
                assert!(!messages[0].triggered);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn too_large_is_checked_first() {
        let big = vec![0xff_u8; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(parse_envelope(&big), Err(EnvelopeError::TooLarge));
        let mut ok_size = br#"{"v":1,"id":"a","ts":1,"type":"shutdown"}"#.to_vec();
        ok_size.resize(MAX_ENVELOPE_BYTES, b' ');
        assert!(parse_envelope(&ok_size).is_ok());
    }

    #[test]
    fn to_json_bytes_refuses_oversize() {
        let env = Envelope::new(
            "a",
            1,
            Payload::Reply {
                turn_id: "t".into(),
                reply_to: vec![],
                body: "x".repeat(MAX_ENVELOPE_BYTES),
            },
        );
        assert_eq!(env.to_json_bytes(), Err(EnvelopeError::TooLarge));
    }

    #[test]
    fn not_utf8() {
        assert_eq!(
            parse_envelope(b"{\"v\":1,\"id\":\"\xff\"}"),
            Err(EnvelopeError::NotUtf8)
        );
    }

    #[test]
    fn invalid_json() {
        for bad in [
            &b"{not json"[..],
            b"[1,2]",
            b"\"text\"",
            b"",
            br#"{"id":"a","ts":1,"type":"shutdown"}"#,
            br#"{"v":"1","id":"a","ts":1,"type":"shutdown"}"#,
            br#"{"v":1,"id":"a","ts":1}"#,
            br#"{"v":1,"id":"a","ts":1,"type":7}"#,
            br#"{"v":1,"id":"a","type":"shutdown"}"#,
            br#"{"v":1,"id":"a","ts":1,"type":"reply","turn_id":"t"}"#,
            br#"{"v":1,"id":"a","ts":1,"type":"turn","turn_id":"t","messages":[],"scheduled":"no"}"#,
        ] {
            match parse_envelope(bad) {
                Err(EnvelopeError::InvalidJson(_)) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn version_is_checked_before_body() {
        // A v2 envelope with a body this build cannot decode still reports the version.
        let bytes = obj(json!({"v": 2, "id": "a", "ts": 1, "type": "turn", "turn_id": 5}));
        assert_eq!(parse_envelope(&bytes), Err(EnvelopeError::WrongVersion(2)));
        let bytes = obj(json!({"v": 0, "type": "no_such_type"}));
        assert_eq!(parse_envelope(&bytes), Err(EnvelopeError::WrongVersion(0)));
        let bytes = obj(json!({"v": 1u64 << 40, "id": "a", "ts": 1, "type": "shutdown"}));
        assert_eq!(
            parse_envelope(&bytes),
            Err(EnvelopeError::WrongVersion(u32::MAX))
        );
    }

    #[test]
    fn unknown_type() {
        let bytes = obj(json!({"v": 1, "id": "a", "ts": 1, "type": "teleport"}));
        assert_eq!(
            parse_envelope(&bytes),
            Err(EnvelopeError::UnknownType("teleport".into()))
        );
        // Tags are exact: no case folding, no Rust variant names.
        let bytes = obj(json!({"v": 1, "id": "a", "ts": 1, "type": "ModelRequest"}));
        assert_eq!(
            parse_envelope(&bytes),
            Err(EnvelopeError::UnknownType("ModelRequest".into()))
        );
    }

    #[test]
    fn bad_id() {
        for id in [
            json!(""),
            json!("a/b"),
            json!("../x"),
            json!("a.json"),
            json!("sp ace"),
            json!("é"),
            json!("x".repeat(65)),
            json!(7),
            json!(null),
        ] {
            let bytes = obj(json!({"v": 1, "id": id, "ts": 1, "type": "shutdown"}));
            assert_eq!(parse_envelope(&bytes), Err(EnvelopeError::BadId), "{id}");
        }
        let bytes = obj(json!({"v": 1, "ts": 1, "type": "shutdown"}));
        assert_eq!(parse_envelope(&bytes), Err(EnvelopeError::BadId));
        // Correlation ids in the body obey the same rule.
        let bytes = obj(json!({
            "v": 1, "id": "a", "ts": 1, "type": "reply",
            "turn_id": "../t", "body": "x"
        }));
        assert_eq!(parse_envelope(&bytes), Err(EnvelopeError::BadId));
        let env = Envelope::new("a.b", 1, Payload::Shutdown {});
        assert_eq!(env.to_json_bytes(), Err(EnvelopeError::BadId));
    }

    #[test]
    fn valid_ids() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id(&"Z".repeat(64)));
        assert!(is_valid_id("0190a3c4-7b2e-7c1d-9f00-1234567890ab"));
        assert!(is_valid_id("turn_1-A"));
        assert!(!is_valid_id("a\0"));
        assert!(!is_valid_id("a\\b"));
    }

    #[test]
    fn file_names() {
        let env = Envelope::new("m-1", 1_700_000_000_000, Payload::Shutdown {});
        assert_eq!(file_name_for(&env), "1700000000000-m-1.json");
        assert_eq!(temp_name_for(&env), ".1700000000000-m-1.json.tmp");
        assert!(is_temp_name(&temp_name_for(&env)));
        assert!(!is_temp_name(&file_name_for(&env)));
        assert!(!is_temp_name(".tmp"));
        assert!(!is_temp_name("x.tmp"));
        assert!(!is_temp_name(".hidden.json"));
    }

    #[test]
    fn new_payloads_wire_format() {
        let raw = |payload: Payload| -> serde_json::Value {
            let bytes = Envelope::new("e", 9, payload).to_json_bytes().unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let head = json!({"v": 1, "id": "e", "ts": 9});
        let with = |extra: serde_json::Value| {
            let mut all = head.clone();
            for (k, v) in extra.as_object().unwrap() {
                all[k] = v.clone();
            }
            all
        };
        assert_eq!(
            raw(Payload::Message {
                turn_id: "t".into(),
                body: "b".into()
            }),
            with(json!({"type": "message", "turn_id": "t", "body": "b"}))
        );
        assert_eq!(
            raw(Payload::TurnFailed {
                turn_id: "t".into(),
                error: "e".into()
            }),
            with(json!({"type": "turn_failed", "turn_id": "t", "error": "e"}))
        );
        // Empty tool_calls, a missing tool_call_id and max_tokens are left out.
        assert_eq!(
            raw(Payload::ModelRequest {
                request_id: "r".into(),
                turn_id: "t".into(),
                messages: vec![
                    ModelMessage {
                        role: Role::User,
                        content: "hi".into(),
                        tool_calls: vec![],
                        tool_call_id: None,
                    },
                    ModelMessage {
                        role: Role::Assistant,
                        content: String::new(),
                        tool_calls: vec![ToolCall {
                            id: "c".into(),
                            name: "list_dir".into(),
                            arguments: json!({"path": "."}),
                        }],
                        tool_call_id: None,
                    },
                    ModelMessage {
                        role: Role::Tool,
                        content: "x".into(),
                        tool_calls: vec![],
                        tool_call_id: Some("c".into()),
                    },
                ],
                tools: vec![ToolSpec {
                    name: "list_dir".into(),
                    description: "d".into(),
                    parameters: json!({"type": "object"}),
                }],
                max_tokens: None,
            }),
            with(json!({
                "type": "model_request", "request_id": "r", "turn_id": "t",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "",
                     "tool_calls": [{"id": "c", "name": "list_dir", "arguments": {"path": "."}}]},
                    {"role": "tool", "content": "x", "tool_call_id": "c"}
                ],
                "tools": [{"name": "list_dir", "description": "d", "parameters": {"type": "object"}}]
            }))
        );
        assert_eq!(
            raw(Payload::TaskRequest {
                request_id: "q".into(),
                action: "list".into(),
                args: json!({}),
            }),
            with(json!({"type": "task_request", "request_id": "q", "action": "list", "args": {}}))
        );
        assert_eq!(
            raw(Payload::TaskResponse {
                request_id: "q".into(),
                ok: false,
                result: serde_json::Value::Null,
                error: Some("no such task".into()),
            }),
            with(json!({
                "type": "task_response", "request_id": "q", "ok": false,
                "result": null, "error": "no such task"
            }))
        );
    }

    #[test]
    fn new_payloads_parse_with_defaults() {
        let env = parse_envelope(&obj(json!({
            "v": 1, "id": "h1", "ts": 1, "type": "model_response", "request_id": "r",
            "tool_calls": [{"id": "call_0", "name": "read_file", "arguments": {"path": "a"}},
                           {"id": "call_1", "name": "list_dir"}]
        })))
        .unwrap();
        match env.payload {
            Payload::ModelResponse {
                content,
                tool_calls,
                error,
                usage,
                ..
            } => {
                assert_eq!(content, "");
                assert_eq!(tool_calls.len(), 2);
                assert_eq!(tool_calls[0].arguments, json!({"path": "a"}));
                assert_eq!(tool_calls[1].arguments, serde_json::Value::Null);
                assert_eq!(error, None);
                assert_eq!(usage, Usage::default());
            }
            other => panic!("unexpected {other:?}"),
        }

        let env = parse_envelope(&obj(json!({
            "v": 1, "id": "h2", "ts": 1, "type": "model_request", "request_id": "r",
            "turn_id": "t", "messages": [{"role": "assistant"}]
        })))
        .unwrap();
        match env.payload {
            Payload::ModelRequest {
                messages,
                tools,
                max_tokens,
                ..
            } => {
                assert_eq!(messages[0].content, "");
                assert!(messages[0].tool_calls.is_empty());
                assert_eq!(messages[0].tool_call_id, None);
                assert!(tools.is_empty());
                assert_eq!(max_tokens, None);
            }
            other => panic!("unexpected {other:?}"),
        }

        let env = parse_envelope(&obj(json!({
            "v": 1, "id": "h3", "ts": 1, "type": "task_request", "request_id": "q",
            "action": "list"
        })))
        .unwrap();
        assert_eq!(
            env.payload,
            Payload::TaskRequest {
                request_id: "q".into(),
                action: "list".into(),
                args: serde_json::Value::Null,
            }
        );

        let env = parse_envelope(&obj(json!({
            "v": 1, "id": "h4", "ts": 1, "type": "task_response", "request_id": "q",
            "ok": false, "error": "unknown action"
        })))
        .unwrap();
        assert_eq!(
            env.payload,
            Payload::TaskResponse {
                request_id: "q".into(),
                ok: false,
                result: serde_json::Value::Null,
                error: Some("unknown action".into()),
            }
        );
    }

    #[test]
    fn new_payloads_missing_fields() {
        for bad in [
            json!({"type": "message", "turn_id": "t"}),
            json!({"type": "turn_failed", "turn_id": "t"}),
            json!({"type": "model_request", "request_id": "r", "messages": []}),
            json!({"type": "model_request", "request_id": "r", "turn_id": "t",
                   "messages": [{"role": "robot"}]}),
            json!({"type": "model_response", "request_id": "r",
                   "tool_calls": [{"id": "c"}]}),
            json!({"type": "model_response", "request_id": "r",
                   "tool_calls": [{"id": "c", "name": "x"}], "content": 5}),
            json!({"type": "task_request", "request_id": "q"}),
            json!({"type": "task_response", "request_id": "q"}),
        ] {
            let mut full = bad.clone();
            full["v"] = json!(1);
            full["id"] = json!("a");
            full["ts"] = json!(1);
            match parse_envelope(&obj(full)) {
                Err(EnvelopeError::InvalidJson(_)) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_ids_in_new_fields() {
        let bad_ids = [
            json!(""),
            json!("../x"),
            json!("a b"),
            json!("x".repeat(65)),
        ];
        for id in &bad_ids {
            for body in [
                json!({"type": "message", "turn_id": id, "body": "b"}),
                json!({"type": "turn_failed", "turn_id": id, "error": "e"}),
                json!({"type": "model_request", "request_id": "r", "turn_id": id,
                       "messages": []}),
                json!({"type": "model_request", "request_id": id, "turn_id": "t",
                       "messages": []}),
                json!({"type": "model_response", "request_id": id}),
                json!({"type": "task_request", "request_id": id, "action": "list"}),
                json!({"type": "task_response", "request_id": id, "ok": true}),
            ] {
                let mut full = body.clone();
                full["v"] = json!(1);
                full["id"] = json!("a");
                full["ts"] = json!(1);
                assert_eq!(
                    parse_envelope(&obj(full)),
                    Err(EnvelopeError::BadId),
                    "{body}"
                );
            }
        }
        // A non-string id is a decoding error, not a bad id.
        let bytes = obj(json!({
            "v": 1, "id": "a", "ts": 1, "type": "task_request", "request_id": 7, "action": "x"
        }));
        assert!(matches!(
            parse_envelope(&bytes),
            Err(EnvelopeError::InvalidJson(_))
        ));
        // The writer refuses the same envelopes.
        for payload in [
            Payload::Message {
                turn_id: "a/b".into(),
                body: "b".into(),
            },
            Payload::TurnFailed {
                turn_id: String::new(),
                error: "e".into(),
            },
            Payload::ModelRequest {
                request_id: "r".into(),
                turn_id: "t.1".into(),
                messages: vec![],
                tools: vec![],
                max_tokens: None,
            },
            Payload::TaskRequest {
                request_id: "q q".into(),
                action: "list".into(),
                args: json!({}),
            },
            Payload::TaskResponse {
                request_id: "é".into(),
                ok: true,
                result: json!(null),
                error: None,
            },
        ] {
            let env = Envelope::new("a", 1, payload);
            assert_eq!(env.to_json_bytes(), Err(EnvelopeError::BadId), "{env:?}");
        }
        // Tool call ids come from the model provider and are not file names: any string goes.
        let env = Envelope::new(
            "a",
            1,
            Payload::ModelResponse {
                request_id: "r".into(),
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "toolu_01/a.b".into(),
                    name: "x".into(),
                    arguments: json!({}),
                }],
                error: None,
                usage: Usage::default(),
            },
        );
        assert_eq!(parse_envelope(&env.to_json_bytes().unwrap()).unwrap(), env);
    }

    #[test]
    fn errors_display() {
        let errs = [
            EnvelopeError::TooLarge,
            EnvelopeError::NotUtf8,
            EnvelopeError::InvalidJson("x".into()),
            EnvelopeError::WrongVersion(2),
            EnvelopeError::UnknownType("t".into()),
            EnvelopeError::BadId,
        ];
        for e in errs {
            let boxed: Box<dyn std::error::Error> = Box::new(e);
            assert!(!boxed.to_string().is_empty());
        }
    }
}
