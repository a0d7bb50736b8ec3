//! Telling systemd how the daemon is doing (sd_notify(3)), for units with `Type=notify` and
//! `WatchdogSec=`: READY=1 once it serves, WATCHDOG=1 while it lives, STOPPING=1 when it
//! stops. Every function is a no-op when `NOTIFY_SOCKET` is unset, that is whenever the
//! daemon was not started by a service manager that asked for this.
//!
//! The variables are left in the environment: the daemon notifies more than once, and it
//! starts no processes that could inherit them.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// What the service manager was last told: nothing yet, or READY with Docker up or down.
static ANNOUNCED: AtomicU8 = AtomicU8::new(NOTHING);
const NOTHING: u8 = 0;
const DOCKER_UP: u8 = 1;
const DOCKER_DOWN: u8 = 2;

/// Called after every turn of the main loop. The first call says READY=1: the socket is
/// bound and the first pass has run. That holds when the Docker engine is unreachable too,
/// since the daemon is meant to run (and serve the CLI) without it: waiting for the engine
/// would have systemd kill and restart the daemon while the engine is away. Later calls
/// only update STATUS= (shown by `systemctl status`) when the engine comes or goes.
pub fn ready(docker_reachable: bool) {
    let now = if docker_reachable {
        DOCKER_UP
    } else {
        DOCKER_DOWN
    };
    let before = ANNOUNCED.swap(now, Ordering::Relaxed);
    if before == now {
        return;
    }
    let status = if docker_reachable {
        NotifyState::Status("running; connected to the Docker engine")
    } else {
        NotifyState::Status("running; the Docker engine is unreachable, retrying")
    };
    if before == NOTHING {
        send(&[NotifyState::Ready, status]);
    } else {
        send(&[status]);
    }
}

/// A graceful stop has begun: systemd then waits for the exit (up to TimeoutStopSec=)
/// instead of treating the silence as a hang.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// When the service manager asked for a watchdog (`WATCHDOG_USEC`, for this process), sends
/// WATCHDOG=1 every half of its period, the margin sd_watchdog_enabled(3) recommends. The
/// pings come from a task on the daemon's runtime, so they stop, and systemd restarts the
/// daemon, when that runtime no longer runs tasks.
pub fn spawn_watchdog() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let Some(period) = sd_notify::watchdog_enabled().filter(|p| !p.is_zero()) else {
        return;
    };
    let every = (period / 2).max(Duration::from_millis(1));
    tracing::info!(
        period_secs = period.as_secs_f64(),
        every_secs = every.as_secs_f64(),
        "service manager watchdog enabled"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        // After a stall, ping at once and then keep the rhythm; never a burst of pings.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
