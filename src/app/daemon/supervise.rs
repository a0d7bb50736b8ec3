//! Supervision of the daemon's long-lived actors: an actor that dies (it panics, or it ends
//! with a failure such as a store it cannot open) is noticed, logged, reported, and started
//! again after a growing pause, until it is told to stop.
//!
//! An actor's mailbox outlives its incarnations, so nothing sent to it while it restarts is
//! lost, and the senders (the daemon's handle, the file watcher) never need to learn of a
//! restart.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};

/// An actor's mailbox, shared by its incarnations (one reads it at a time).
pub type Mailbox<C> = Arc<Mutex<mpsc::UnboundedReceiver<C>>>;

/// A fresh mailbox and its sender.
pub fn mailbox<C>() -> (mpsc::UnboundedSender<C>, Mailbox<C>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, Arc::new(Mutex::new(rx)))
}

/// The control messages that end an actor on purpose.
pub trait Control {
    fn is_stop(&self) -> bool;
}

/// How an incarnation ended, when it did not panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Told to stop (or its mailbox closed): it is not started again.
    Stopped,
    /// It could not go on: started again after a pause.
    Failed(String),
}

/// The pause before a restart: `first`, doubling with every failure in a row up to `max`.
/// An incarnation that ran for `healthy_after` before it failed starts the count again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub healthy_after: Duration,
}

impl Backoff {
    /// The daemon's actors: a second, up to a minute; a run of ten minutes was healthy.
    pub const ACTORS: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(60),
        healthy_after: Duration::from_secs(600),
    };

    /// The pause after the `failures_in_a_row`-th failure (1 for the first).
    pub fn delay(&self, failures_in_a_row: u32) -> Duration {
        let doublings = failures_in_a_row.saturating_sub(1).min(20);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// A failure, as reported to whoever shows it (the daemon's live view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Restarts so far, this one included.
    pub restarts: u32,
    pub reason: String,
    /// The pause before the restart.
    pub delay: Duration,
}

/// Runs `start()`'s actor for `name` until it stops on purpose, starting it again after each
/// failure or panic; `report` hears of every failure before the pause.
pub async fn supervise<C, F, Fut>(
    name: &str,
    mailbox: Mailbox<C>,
    backoff: Backoff,
    mut start: F,
    report: impl Fn(&Failure),
) where
    C: Control + Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Ended> + Send + 'static,
{
    let mut restarts = 0u32;
    let mut in_a_row = 0u32;
    loop {
        let began = Instant::now();
        // Its own task, so a panic ends the incarnation, not the supervisor.
        let reason = match tokio::spawn(start()).await {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Failed(reason)) => reason,
            Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e.into_panic())),
            Err(e) => format!("ended: {e}"),
        };
        if began.elapsed() >= backoff.healthy_after {
            in_a_row = 0;
        }
        in_a_row += 1;
        restarts += 1;
        let failure = Failure {
            restarts,
            reason,
            delay: backoff.delay(in_a_row),
        };
        tracing::error!(actor = name, reason = %failure.reason, restarts, retry_in_ms = failure.delay.as_millis() as u64, "actor died; it is started again");
        report(&failure);
        tokio::select! {
            _ = tokio::time::sleep(failure.delay) => {}
            _ = stop_requested(&mailbox) => return,
        }
    }
}

/// Resolves when the mailbox says stop (or closes). Other messages are dropped: a new
/// incarnation starts by looking at everything anyway.
async fn stop_requested<C: Control>(mailbox: &Mailbox<C>) {
    let mut rx = mailbox.lock().await;
    while let Some(c) = rx.recv().await {
        if c.is_stop() {
            return;
        }
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "(no message)".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug, PartialEq)]
    enum Msg {
        Work,
        Stop,
    }

    impl Control for Msg {
        fn is_stop(&self) -> bool {
            *self == Msg::Stop
        }
    }

    const QUICK: Backoff = Backoff {
        first: Duration::from_millis(1),
        max: Duration::from_millis(8),
        healthy_after: Duration::from_secs(3600),
    };

    #[test]
    fn the_pause_doubles_up_to_its_cap() {
        let b = Backoff::ACTORS;
        let delays: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(u32::MAX), b.max);
    }

    /// An actor that panics on its first two incarnations and stops on its third.
    #[tokio::test]
    async fn an_actor_that_panics_is_started_again_with_growing_pauses() {
        let (_tx, mb) = mailbox::<Msg>();
        let started = Arc::new(AtomicU32::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, f, inbox) = (started.clone(), failures.clone(), mb.clone());
        let run = supervise(
            "test",
            mb,
            QUICK,
            move || {
                let n = s.fetch_add(1, Ordering::SeqCst) + 1;
                let inbox = inbox.clone();
                async move {
                    // Holding the mailbox when it panics: the next one can still take it.
                    let _rx = inbox.lock().await;
                    if n <= 2 {
                        panic!("incarnation {n} fails");
                    }
                    Ended::Stopped
                }
            },
            move |failure: &Failure| f.lock().unwrap().push(failure.clone()),
        );
        run.await;
        assert_eq!(started.load(Ordering::SeqCst), 3);
        let failures = failures.lock().unwrap();
        let seen: Vec<(u32, Duration)> = failures.iter().map(|f| (f.restarts, f.delay)).collect();
        assert_eq!(
            seen,
            [(1, Duration::from_millis(1)), (2, Duration::from_millis(2))]
        );
        assert!(
            failures[0].reason.contains("incarnation 1 fails"),
            "{failures:?}"
        );
    }

    #[tokio::test]
    async fn a_failure_is_reported_and_started_again() {
        let (_tx, mb) = mailbox::<Msg>();
        let started = Arc::new(AtomicU32::new(0));
        let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, r) = (started.clone(), reasons.clone());
        supervise(
            "test",
            mb,
            QUICK,
            move || {
                let n = s.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Ended::Failed("cannot open the store".into())
                    } else {
                        Ended::Stopped
                    }
                }
            },
            move |failure: &Failure| r.lock().unwrap().push(failure.reason.clone()),
        )
        .await;
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(*reasons.lock().unwrap(), ["cannot open the store"]);
    }

    /// Told to stop while it waits to restart, a failed actor is not started again.
    #[tokio::test]
    async fn a_stopped_actor_is_not_started_again() {
        let (tx, mb) = mailbox::<Msg>();
        let started = Arc::new(AtomicU32::new(0));
        let s = started.clone();
        let slow = Backoff {
            first: Duration::from_secs(3600),
            ..QUICK
        };
        tx.send(Msg::Work).unwrap();
        tx.send(Msg::Stop).unwrap();
        supervise(
            "test",
            mb,
            slow,
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                async { Ended::Failed("broken".into()) }
            },
            |_: &Failure| {},
        )
        .await;
        assert_eq!(started.load(Ordering::SeqCst), 1);

        // One that stops on purpose is not started again either.
        let (_tx, mb) = mailbox::<Msg>();
        let started = Arc::new(AtomicU32::new(0));
        let s = started.clone();
        supervise(
            "test",
            mb,
            QUICK,
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                async { Ended::Stopped }
            },
            |_: &Failure| panic!("nothing failed"),
        )
        .await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }
}
