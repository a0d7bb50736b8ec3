//! Messages: send (and optionally wait for the answer) and read an instance's history.
//!
//! Who a message is from depends on how it came. The unix socket (mode 0600) is the home's
//! user, the operator: its callers name the sender, `local` by default. Anyone holding the
//! API token can call over TCP, so a TCP caller is never `local`: it is `api:tcp` unless it
//! names another sender, and a request naming `local` is refused.

use std::future::Future;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::extract::ApiJson;
use super::{api_error, blocking, ApiError, AppState};
use crate::app::accept::{self, AcceptError, Incoming};
use crate::app::daemon::answerable;
use crate::app::daemon::courier::DaemonCourier;
use crate::app::daemon::messaging::AnswerEvent;
use crate::app::router::policy;
pub use crate::app::wire::{SendRequest, SendResponse};
use crate::domain::instance::InstanceName;
use crate::infra::store::messages::MessageRow;
use crate::infra::store::Store;

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

/// The answer to a refused message, with a fitting status.
pub(super) fn refusal(e: AcceptError) -> ApiError {
    let status = match &e {
        AcceptError::Empty => StatusCode::UNPROCESSABLE_ENTITY,
        AcceptError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        AcceptError::BadId(_) => StatusCode::BAD_REQUEST,
        AcceptError::NoSuchInstance(_) => StatusCode::NOT_FOUND,
        AcceptError::Config(_) | AcceptError::IdTaken(_) => StatusCode::CONFLICT,
        AcceptError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // A full disk, a lost volume: passing, so the sender sends again later.
        AcceptError::Group { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    api_error(status, e)
}

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
    accept::check(&req.text, req.id.as_deref()).map_err(refusal)?;
    // Subscribed before the message is stored, so that no answer can slip between the two.
    let mut answers = s.messaging.subscribe();
    let (home, configs) = (s.home.clone(), s.configs.clone());
    let (text, id) = (req.text, req.id);
    let accepted = blocking(&s, move |store| {
        let incoming = Incoming {
            instance: &iname,
            channel: &channel,
            sender: &sender,
            text: &text,
            chat: "",
            id: id.as_deref(),
            addressed: crate::app::router::policy::Addressed::ByTrigger,
            sender_name: None,
            title: None,
        };
        accept::accept(store, &home, &configs, &incoming).map_err(refusal)
    })
    .await?;
    let courier = DaemonCourier {
        messaging: &s.messaging,
        reconcile: &s.wake,
    };
    accept::deliver(&courier, &accepted);

    let row = accepted.row;
    let mut response = SendResponse {
        id: row.id.clone(),
        instance: name.clone(),
        state: row.state.clone(),
        reply: None,
        failed: false,
        latency_ms: None,
    };
    if !req.wait || accepted.disposition != policy::Disposition::Queued {
        return Ok(Json(response));
    }
    let mut answered = |(reply, failed): (String, bool)| {
        response.state = "answered".into();
        response.reply = Some(reply);
        response.failed = failed;
        response.latency_ms = Some(started.elapsed().as_millis() as u64);
    };
    if let Some(answer) = accepted.answered {
        answered(answer);
        return Ok(Json(response));
    }
    // No answer can come while it stays so: say it now rather than at the end of the wait.
    let docker_reachable = s.live.snapshot().docker_reachable;
    if let Some(why) = answerable::why_no_answer(&accepted.record, docker_reachable) {
        return Err(api_error(
            StatusCode::CONFLICT,
            answerable::stored_but_unanswered(&why, &row.id, &name),
        ));
    }
    let timeout = std::time::Duration::from_secs(req.timeout_secs.unwrap_or(120).min(3600));
    let stored = || {
        let (s, id) = (s.clone(), row.id.clone());
        async move { stored_answer(&s, id).await }
    };
    match tokio::time::timeout(timeout, answer_of(&mut answers, &row.id, stored)).await {
        Ok(Some(answer)) => {
            answered(answer);
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

/// The answer to message `id` as the store has it: (text, failed).
async fn stored_answer(s: &AppState, id: String) -> Option<(String, bool)> {
    let found = blocking(s, move |store| {
        store
            .answer_to(&id)
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await;
    match found {
        Ok(answer) => answer.map(|a| (a.body, a.error.is_some())),
        Err(e) => {
            tracing::warn!(error = ?e, "cannot read a stored answer");
            None
        }
    }
}

/// Waits for the answer to message `id`: (text, failed), or None when no more answers come.
/// A waiter that fell behind the broadcast (it missed answers, perhaps its own) looks in the
/// store, where every answer is recorded before it is announced.
async fn answer_of<F, Fut>(
    answers: &mut broadcast::Receiver<AnswerEvent>,
    id: &str,
    mut stored: F,
) -> Option<(String, bool)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<(String, bool)>>,
{
    loop {
        match answers.recv().await {
            Ok(ev) if ev.message_ids.iter().any(|m| m == id) => return Some((ev.body, ev.failed)),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if let Some(answer) = stored().await {
                    return Some(answer);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
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

    fn answer(message: &str, body: &str) -> AnswerEvent {
        AnswerEvent {
            instance: "alice".into(),
            turn_id: format!("turn-{message}"),
            message_ids: vec![message.into()],
            body: body.into(),
            failed: false,
        }
    }

    #[tokio::test]
    async fn a_waiter_hears_its_own_answer_and_skips_others() {
        let (tx, mut rx) = broadcast::channel(8);
        tx.send(answer("other", "not yours")).unwrap();
        tx.send(answer("m1", "yours")).unwrap();
        let got = answer_of(&mut rx, "m1", || async { None }).await;
        assert_eq!(got, Some(("yours".into(), false)));
    }

    #[tokio::test]
    async fn a_waiter_that_fell_behind_reads_the_stored_answer() {
        let (tx, mut rx) = broadcast::channel(2);
        // Its own answer is among those pushed out of the buffer before it listened.
        tx.send(answer("m1", "yours")).unwrap();
        for i in 0..4 {
            tx.send(answer(&format!("x{i}"), "other")).unwrap();
        }
        drop(tx);
        let mut looked = 0;
        let got = answer_of(&mut rx, "m1", || {
            looked += 1;
            async { Some(("yours, from the store".to_string(), false)) }
        })
        .await;
        assert_eq!(got, Some(("yours, from the store".into(), false)));
        assert_eq!(looked, 1);
    }

    #[tokio::test]
    async fn a_waiter_that_fell_behind_before_its_answer_keeps_waiting() {
        let (tx, mut rx) = broadcast::channel(2);
        for i in 0..4 {
            tx.send(answer(&format!("x{i}"), "other")).unwrap();
        }
        tx.send(answer("m1", "yours")).unwrap();
        let got = answer_of(&mut rx, "m1", || async { None }).await;
        assert_eq!(got, Some(("yours".into(), false)));
    }

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
