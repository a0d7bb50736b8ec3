//! The webhook channel's way in: `POST /v1/channels/webhook/NAME`. Any system that can sign
//! a body (a chat bridge, n8n, Home Assistant, a CI bot) reaches an instance this way. The
//! signature is its authentication, so the route answers on TCP listeners without the API
//! token: a missing or wrong signature is 401 and stores nothing.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;

use super::{api_error, blocking, ApiError, AppState};
use crate::app::accept::{self, Incoming};
use crate::app::channels::webhook::{stored_id, MAX_ID_BYTES};
use crate::app::daemon::courier::DaemonCourier;
use crate::domain::channels::{self, WebhookChannel, SIGNATURE_HEADER, WEBHOOK};
use crate::domain::instance::InstanceName;

/// The path prefix the TCP listener's token check leaves to the signature.
pub const PATH_PREFIX: &str = "/v1/channels/webhook/";

/// A webhook message as it is POSTed.
#[derive(Debug, Deserialize)]
struct WebhookMessage {
    id: String,
    sender: String,
    chat: String,
    text: String,
    /// The chat's title, shown beside its group (`"isolation": "chat"`).
    #[serde(default)]
    title: Option<String>,
}

fn not_found(name: &str) -> ApiError {
    api_error(
        StatusCode::NOT_FOUND,
        format!("no instance {name:?} with a webhook channel"),
    )
}

/// The message in `body` once its signature is checked (before anything else is read of it)
/// and its fields are within bounds.
fn verified(
    name: &str,
    webhook: &WebhookChannel,
    body: &[u8],
    signature: Option<&str>,
) -> Result<WebhookMessage, ApiError> {
    let Some(secret) = std::env::var_os(&webhook.secret_env).filter(|v| !v.is_empty()) else {
        tracing::warn!(instance = %name, variable = %webhook.secret_env, "a webhook message arrived, but the daemon's environment does not set its secret variable");
        return Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the webhook channel of {name} is not ready: the daemon's environment does not set {}",
                webhook.secret_env
            ),
        ));
    };
    if !channels::verify(secret.as_encoded_bytes(), body, signature) {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong {SIGNATURE_HEADER}: expected sha256=<hex HMAC-SHA256 of the body with the secret>"),
        ));
    }
    let m: WebhookMessage = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "expected a JSON object {{\"id\", \"sender\", \"chat\", \"text\"}}: {e}"
        ))
    })?;
    if m.id.len() > MAX_ID_BYTES || !crate::infra::store::messages::is_valid_message_id(&m.id) {
        return Err(bad(format!(
            "id {:?}: expected 1 to {MAX_ID_BYTES} letters, digits, - or _",
            m.id
        )));
    }
    for (field, value) in [("sender", &m.sender), ("chat", &m.chat)] {
        if !channels::is_valid_name(value) {
            return Err(bad(format!(
                "{field} {value:?}: expected 1 to {} bytes, no control characters, no spaces at the ends",
                channels::MAX_NAME_BYTES
            )));
        }
    }
    accept::check(&m.text, None).map_err(bad)?;
    Ok(m)
}

fn bad(msg: impl std::fmt::Display) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, msg)
}

pub(super) async fn receive(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let iname = InstanceName::parse(&name).map_err(|_| not_found(&name))?;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (home, configs) = (s.home.clone(), s.configs.clone());
    // The config is read, and the message stored, off the async threads.
    let accepted = blocking(&s, move |store| {
        let config_path = home.instance_paths(&iname).config;
        let webhook: WebhookChannel = configs
            .load(iname.as_str(), &config_path)
            .ok()
            .and_then(|c| c.into_config().channels.webhook)
            .ok_or_else(|| not_found(iname.as_str()))?;
        let m = verified(iname.as_str(), &webhook, &body, signature.as_deref())?;
        let id = stored_id(iname.as_str(), &m.id);
        let sender = channels::chat_key(WEBHOOK, &m.sender);
        let chat = channels::chat_key(WEBHOOK, &m.chat);
        let incoming = Incoming {
            instance: &iname,
            channel: WEBHOOK,
            sender: &sender,
            text: &m.text,
            chat: &chat,
            id: Some(&id),
            addressed: crate::app::router::policy::Addressed::ByTrigger,
            sender_name: None,
            title: m.title.as_deref(),
        };
        accept::accept(store, &home, &configs, &incoming).map_err(super::messages::refusal)
    })
    .await?;
    let courier = DaemonCourier {
        messaging: &s.messaging,
        reconcile: &s.wake,
    };
    accept::deliver(&courier, &accepted);
    s.metrics.channel_message_in(&name, WEBHOOK);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "id": accepted.row.id,
            "instance": name,
            "state": accepted.row.state,
        })),
    ))
}
