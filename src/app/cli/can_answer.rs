//! The check a conversation makes before the user types: a daemon answers, and the instance
//! can answer (`daemon::answerable`). Without it, every line would wait out its timeout.

use crate::app::daemon::answerable;
use crate::app::daemon::client::DaemonClient;
use crate::infra::docker;
use crate::infra::home::Home;

/// Fails, with the reason and the fix, when no answer can come from `name` now.
pub(super) fn ensure(home: &Home, client: &DaemonClient, name: &str) -> anyhow::Result<()> {
    let live = docker::block_on(client.status())?;
    let record = home.open()?.instance(name)?;
    match answerable::why_no_answer(&record, live.docker_reachable) {
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(()),
    }
}
