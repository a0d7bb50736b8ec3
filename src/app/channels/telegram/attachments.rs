//! A message's photo or document, downloaded (`getFile`) into the workspace's `inbox/` when it
//! is within the size cap and its sender is let in; and the note the agent sees about it.

use std::sync::Arc;

use super::Link;
use crate::domain::format::bytes as shown_bytes;
use crate::domain::telegram::Attachment;
use crate::infra::telegram::BotError;

/// Tries of a download step while the Bot API is unavailable, a second apart: a blip does not
/// cost the file, and an outage does not hold the message up for long.
const TRIES: u32 = 3;

async fn with_retries<T, F, Fut>(mut step: F) -> Result<T, BotError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BotError>>,
{
    let mut tries = 1;
    loop {
        match step().await {
            Err(BotError::Unavailable(_)) if tries < TRIES => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            r => return r,
        }
    }
}

/// Downloads `a` into the workspace's inbox; the note the agent sees about it.
pub async fn fetch(
    link: &Arc<Link>,
    paths: &crate::infra::home::InstancePaths,
    owner: Option<(u32, u32)>,
    update_id: i64,
    a: &Attachment,
) -> String {
    let limit = link.config.max_attachment_bytes();
    let what = a.shown_name();
    let too_large = |size: u64| {
        format!(
            "[{what}, {}, not downloaded: larger than the {} limit]",
            shown_bytes(size),
            shown_bytes(limit)
        )
    };
    if let Some(size) = a.size.filter(|&s| s > limit) {
        return too_large(size);
    }
    let file = match with_retries(|| link.api.get_file(&a.file_id)).await {
        Ok(f) => f,
        Err(BotError::Refused(_, d)) if d.contains("too big") => {
            return too_large(a.size.unwrap_or(limit + 1))
        }
        Err(e) => return format!("[{what} could not be downloaded: {e}]"),
    };
    if let Some(size) = file.file_size.filter(|&s| s > limit) {
        return too_large(size);
    }
    let Some(path) = file.file_path else {
        return format!("[{what} could not be downloaded: the Bot API gave no file path]");
    };
    let bytes = match with_retries(|| link.api.download(&path, limit)).await {
        Ok(b) => b,
        Err(BotError::Refused(413, _)) => return too_large(limit + 1),
        Err(e) => return format!("[{what} could not be downloaded: {e}]"),
    };
    let name = a.inbox_name(update_id, Some(&path));
    let size = bytes.len() as u64;
    let paths = paths.clone();
    match tokio::task::spawn_blocking(move || {
        crate::infra::inbox::save(&paths, owner, &name, &bytes)
    })
    .await
    {
        Ok(Ok(shown)) => format!(
            "[{what}, {}, saved as /workspace/{shown}]",
            shown_bytes(size)
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "an attachment could not be saved in the workspace");
            format!("[{what} could not be saved in the workspace's inbox/]")
        }
        Err(e) => format!("[{what} could not be saved: {e}]"),
    }
}
