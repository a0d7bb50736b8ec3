//! The Telegram channel's webhook mode: `POST /v1/channels/telegram/NAME`, where Telegram
//! sends a bot's updates when its config sets `channels.telegram.webhook`. The secret Telegram
//! sends in `X-Telegram-Bot-Api-Secret-Token` is the authentication (it holds no API token):
//! a missing or wrong one is 401 and nothing is stored. The update is handed to the
//! instance's channel task, which stores it exactly as a polled one (once, by its update
//! id); the answer is 200 only once it is stored, so that Telegram sends it again otherwise.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::{api_error, ApiError, AppState};
use crate::app::channels::telegram::HookRefusal;

/// The path prefix the TCP listener's token check leaves to the secret.
pub const PATH_PREFIX: &str = "/v1/channels/telegram/";

/// The header Telegram sends the webhook's secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

pub(super) async fn receive(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    let tx = s
        .hub
        .telegram_hooks
        .admit(&name, secret)
        .map_err(|r| match r {
            HookRefusal::NotOpen => api_error(
                StatusCode::NOT_FOUND,
                format!("no instance {name:?} with a Telegram webhook open"),
            ),
            HookRefusal::WrongSecret => api_error(
                StatusCode::UNAUTHORIZED,
                format!("missing or wrong {SECRET_HEADER}"),
            ),
        })?;
    let update: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            format!("expected a Telegram update (a JSON object): {e}"),
        )
    })?;
    if !update["update_id"].is_i64() {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "expected a Telegram update: it has no update_id",
        ));
    }
    let (done, stored) = tokio::sync::oneshot::channel();
    let unavailable = || {
        api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Telegram channel is restarting; Telegram sends the update again",
        )
    };
    tx.send((vec![update], done))
        .await
        .map_err(|_| unavailable())?;
    match stored.await {
        Ok(Ok(())) => Ok(Json(serde_json::json!({"ok": true}))),
        Ok(Err(e)) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the update could not be stored ({e}); Telegram sends it again"),
        )),
        Err(_) => Err(unavailable()),
    }
}
