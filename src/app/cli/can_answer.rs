//! The check a conversation makes before the user types: a daemon answers, and the instance
//! can answer (`daemon::answerable`). Without it, every line would wait out its timeout.

use crate::app::client::DaemonClient;
use crate::app::daemon::answerable;
use crate::infra::home::Home;

/// Fails, with the reason and the fix, when no answer can come from `name` now.
pub(super) fn ensure(home: &Home, client: &DaemonClient, name: &str) -> anyhow::Result<()> {
    let live = crate::infra::blocking::block_on(client.status())?;
    let record = home.open()?.instance(name)?;
    match answerable::why_no_answer(&record, live.docker_reachable) {
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(()),
    }
}
