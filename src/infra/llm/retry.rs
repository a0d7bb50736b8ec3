//! Bounded retries for transient provider failures.

use std::future::Future;
use std::time::Duration;

use super::LlmError;

pub const ATTEMPTS: u32 = 4;
const BASE: Duration = Duration::from_millis(500);
const MAX_WAIT: Duration = Duration::from_secs(10);

/// The wait before attempt `n + 1` (n ≥ 1): 0.5 s doubling, or what the provider asked for,
/// never more than 10 s.
pub fn delay(n: u32, retry_after: Option<u64>) -> Duration {
    let ours = BASE * 2u32.pow(n.saturating_sub(1).min(8));
    retry_after.map_or(ours, Duration::from_secs).min(MAX_WAIT)
}

pub async fn with_backoff<T, F, Fut>(mut call: F) -> Result<T, LlmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LlmError>>,
{
    let mut n = 1;
    loop {
        match call().await {
            Err(e) if e.is_transient() && n < ATTEMPTS => {
                let retry_after = match &e {
                    LlmError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                tracing::warn!(error = %e, attempt = n, "model call failed; retrying");
                tokio::time::sleep(delay(n, retry_after)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_respect_retry_after_within_a_cap() {
        assert_eq!(delay(1, None), Duration::from_millis(500));
        assert_eq!(delay(3, None), Duration::from_secs(2));
        assert_eq!(delay(1, Some(3)), Duration::from_secs(3));
        assert_eq!(delay(1, Some(3600)), MAX_WAIT);
        assert_eq!(delay(30, None), MAX_WAIT);
    }
}
