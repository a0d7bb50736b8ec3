//! Messages: send (and optionally wait for the answer) and read an instance's history.
//!
//! Who a message is from depends on how it came. The unix socket (mode 0600) is the home's
//! user, the operator: its callers name the sender, `local` by default. Anyone holding the
//! API token can call over TCP, so a TCP caller is never `local`: it is `api:tcp` unless it
//! names another sender, and a request naming `local` is refused.

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::extract::ApiJson;
use super::{api_error, blocking, ApiError, AppState, Wake};
use crate::app::daemon::answerable;
use crate::app::router::policy;
pub use crate::app::wire::{SendRequest, SendResponse};
use crate::domain::instance::InstanceName;
use crate::infra::store::messages::{is_valid_message_id, new_message_id, Inbound, MessageRow};
use crate::infra::store::{Store, StoreError};

/// The operator at the CLI: only a caller on the unix socket can be it.
pub const LOCAL_SENDER: &str = "local";
/// Who a TCP caller is when it names no sender.
pub const TCP_SENDER: &str = "api:tcp";
const SOCKET_CHANNEL: &str = "cli";
const TCP_CHANNEL: &str = "api";

/// How a request reached the daemon, set by the listener that accepted it. A request that
/// carries none is taken to have come over TCP, the less trusted way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The unix socket: the home's user.
    Socket,
    /// A TCP listener (the API's or an instance's port): anyone with the token.
    Tcp,
}

/// The sender and channel a message is recorded with, or why it is refused.
pub fn origin(
    transport: Transport,
    sender: Option<&str>,
    channel: Option<&str>,
) -> Result<(String, String), String> {
    let (default_sender, default_channel) = match transport {
        Transport::Socket => (LOCAL_SENDER, SOCKET_CHANNEL),
        Transport::Tcp => (TCP_SENDER, TCP_CHANNEL),
    };
    let sender = sender.unwrap_or(default_sender);
    // Any spelling of it, so that history never shows a look-alike of the operator.
    if transport == Transport::Tcp && sender.trim().eq_ignore_ascii_case(LOCAL_SENDER) {
        return Err(format!(
            "the sender {LOCAL_SENDER:?} is the operator on the daemon's unix socket and cannot be \
             claimed over TCP; leave sender out (the message is from {TCP_SENDER:?}) or name \
             another sender, and list it in the instance's allow_from"
        ));
    }
    Ok((
        sender.to_string(),
        channel.unwrap_or(default_channel).to_string(),
    ))
}

/// Most text one message may carry.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why an empty or blank message is refused (before anything is stored).
pub const EMPTY_MESSAGE: &str = "the message is empty: give it some text";

pub(super) async fn send_message(
    State(s): State<AppState>,
    transport: Option<Extension<Transport>>,
    UrlPath(name): UrlPath<String>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let started = std::time::Instant::now();
    let transport = transport.map_or(Transport::Tcp, |Extension(t)| t);
    let (sender, channel) = origin(transport, req.sender.as_deref(), req.channel.as_deref())
        .map_err(|e| api_error(StatusCode::FORBIDDEN, e))?;
    let iname = InstanceName::parse(&name).map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    if req.text.trim().is_empty() {
        return Err(api_error(StatusCode::UNPROCESSABLE_ENTITY, EMPTY_MESSAGE));
    }
    if req.text.len() > MAX_MESSAGE_BYTES {
        return Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a message may carry at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    if let Some(id) = &req.id {
        if !is_valid_message_id(id) {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!("message id {id:?}: expected 1 to 64 letters, digits, - or _"),
            ));
        }
    }
    // Subscribed before the message is stored, so that no answer can slip between the two.
    let mut answers = s.messaging.subscribe();
    let home = s.home.clone();
    let configs = s.configs.clone();
    let (row, disposition, answered, record) =
        tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let mut store = Store::open(&home.db_path())
                .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
            let record = store
                .instance(iname.as_str())
                .map_err(|e| api_error(StatusCode::NOT_FOUND, e))?;
            let config = configs
                .load(iname.as_str(), &home.instance_paths(&iname).config)
                .map_err(|e| api_error(StatusCode::CONFLICT, e))?
                .into_config();
            let disposition = policy::classify(&config, &sender, &req.text);
            let id = req.id.clone().unwrap_or_else(new_message_id);
            let inbound = Inbound {
                instance: iname.as_str(),
                channel: &channel,
                sender: &sender,
                body: &req.text,
                state: disposition.state(),
            };
            let row = store
                .accept_message_once(&id, &inbound)
                .map_err(|e| match e {
                    StoreError::MessageIdTaken(_) => api_error(StatusCode::CONFLICT, e),
                    e => api_error(StatusCode::INTERNAL_SERVER_ERROR, e),
                })?;
            // Sent again after it was answered: the answer is already there.
            let answered = match row.state.as_str() {
                "answered" => store
                    .answer_to(&row.id)
                    .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?
                    .map(|a| (a.body, a.error.is_some())),
                _ => None,
            };
            Ok((row, disposition, answered, record))
        })
        .await
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))??;

    if disposition != policy::Disposition::Refused {
        s.messaging.poke(&name);
        // An on-demand instance's container starts for the work.
        let _ = s.wake.send(Wake::Api(None));
    }
    let mut response = SendResponse {
        id: row.id.clone(),
        instance: name.clone(),
        state: row.state.clone(),
        reply: None,
        failed: false,
        latency_ms: None,
    };
    if !req.wait || disposition != policy::Disposition::Queued {
        return Ok(Json(response));
    }
    if let Some((reply, failed)) = answered {
        response.state = "answered".into();
        response.reply = Some(reply);
        response.failed = failed;
        response.latency_ms = Some(started.elapsed().as_millis() as u64);
        return Ok(Json(response));
    }
    // No answer can come while it stays so: say it now rather than at the end of the wait.
    if let Some(why) = answerable::why_no_answer(&record, s.live.snapshot().docker_reachable) {
        return Err(api_error(
            StatusCode::CONFLICT,
            answerable::stored_but_unanswered(&why, &row.id, &name),
        ));
    }
    let timeout = std::time::Duration::from_secs(req.timeout_secs.unwrap_or(120).min(3600));
    let wait = async {
        loop {
            match answers.recv().await {
                Ok(ev) if ev.message_ids.contains(&row.id) => return Some(ev),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Some(ev)) => {
            response.state = "answered".into();
            response.reply = Some(ev.body);
            response.failed = ev.failed;
            response.latency_ms = Some(started.elapsed().as_millis() as u64);
            Ok(Json(response))
        }
        _ => Err(api_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no answer within {}s; message {} stays queued and will be answered",
                timeout.as_secs(),
                row.id
            ),
        )),
    }
}

/// `?limit=N`, read by hand so that a bad value gets a sentence, not a parser's message.
#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    #[serde(default)]
    limit: Option<String>,
}

impl HistoryQuery {
    /// How many messages: 20 unless asked, at most 1000.
    fn limit(&self) -> Result<u32, ApiError> {
        match self.limit.as_deref() {
            None => Ok(20),
            Some(raw) => raw.parse::<u32>().map(|n| n.clamp(1, 1000)).map_err(|_| {
                api_error(
                    StatusCode::BAD_REQUEST,
                    format!("limit {raw:?}: expected a whole number from 1 to 1000"),
                )
            }),
        }
    }
}

/// An instance's last messages, both directions, oldest first (as `history --json`).
pub(super) async fn history(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<MessageRow>>, ApiError> {
    let iname = InstanceName::parse(&name).map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    let limit = q.limit()?;
    blocking(&s, move |store: &mut Store| {
        store
            .instance(iname.as_str())
            .map_err(|e| api_error(StatusCode::NOT_FOUND, e))?;
        store
            .history(iname.as_str(), limit)
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str) -> Result<(String, String), String> {
        Ok((a.to_string(), b.to_string()))
    }

    #[test]
    fn the_socket_is_local_by_default_and_may_name_any_sender() {
        assert_eq!(origin(Transport::Socket, None, None), pair("local", "cli"));
        assert_eq!(
            origin(Transport::Socket, Some("telegram:1"), Some("telegram")),
            pair("telegram:1", "telegram")
        );
        assert_eq!(
            origin(Transport::Socket, Some("local"), None),
            pair("local", "cli")
        );
    }

    #[test]
    fn tcp_is_never_local() {
        assert_eq!(origin(Transport::Tcp, None, None), pair("api:tcp", "api"));
        assert_eq!(
            origin(Transport::Tcp, Some("telegram:1"), Some("telegram")),
            pair("telegram:1", "telegram")
        );
        for claim in ["local", "LOCAL", " Local "] {
            let e = origin(Transport::Tcp, Some(claim), None).unwrap_err();
            assert!(e.contains("cannot be claimed over TCP"), "{claim:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
