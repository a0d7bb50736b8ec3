//! `runtime activate` and `runtime rollback`: one way to change the active runtime, so a
//! rollback is gated exactly like an activation (a running daemon moves instances one at a
//! time and puts the previous runtime back when one does not become ready).

use std::process::ExitCode;

use serde::Serialize;

use crate::app::client::DaemonClient;
use crate::app::render;
use crate::infra::home::Home;
use crate::infra::runtime;
use crate::infra::store::rollouts::Rollout;
use crate::infra::store::Store;

/// What an activation did, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    /// The runtime now active.
    pub runtime_id: String,
    /// Its rollback target: the runtime it replaced (or kept, when nothing changed).
    pub previous_id: Option<String>,
    /// False when the runtime was active already (nothing recorded).
    pub changed: bool,
    /// Whether a daemon answered on this home.
    pub daemon_running: bool,
    /// The roll-out, in the state the command last saw it; null when there is none.
    pub rollout: Option<Rollout>,
}

/// How an activation is reported: lines as it goes, or nothing until the JSON at the end.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    pub no_wait: bool,
    pub json: bool,
}

impl Follow {
    fn say(&self, line: &str) {
        if !self.json {
            println!("{line}");
        }
    }
}

/// The activation and, when its roll-out failed or could not be followed, the error the
/// command exits 1 with (after printing what happened).
pub type Outcome = (Activation, Option<anyhow::Error>);

/// Activates the registered runtime `given` names (id or unique prefix). Refusals (unknown,
/// ambiguous, damaged) are errors and change nothing.
pub fn activate(home: &Home, given: &str, follow: Follow) -> anyhow::Result<Outcome> {
    let mut store = home.open()?;
    let id = runtime::resolve_registered(&store, given)?;
    let before = store.active_runtime()?;
    let previous = runtime::activate(home, &mut store, &id, super::CLI_ACTOR)?;
    let changed = before.as_ref().map(|a| a.runtime_id.as_str()) != Some(id.as_str());
    let rollout = store.current_rollout()?.filter(|r| r.runtime_id == id);
    match &previous {
        Some(prev) if prev != &id => follow.say(&format!(
            "runtime {id} is active (previous: {prev}, kept as rollback target)"
        )),
        _ => follow.say(&format!("runtime {id} is active")),
    }
    let client = DaemonClient::for_home(home);
    // Wakes a running daemon so that it starts the roll-out now.
    let daemon_running = crate::infra::blocking::block_on(client.reconcile()).is_ok();
    let mut activation = Activation {
        runtime_id: id,
        previous_id: previous,
        changed,
        daemon_running,
        rollout,
    };
    let Some(started) = activation.rollout.clone() else {
        return Ok((activation, None));
    };
    if !daemon_running {
        follow.say(
            "the daemon is not running: it moves running instances one at a time when it starts",
        );
        return Ok((activation, None));
    }
    if follow.no_wait {
        follow.say("rolling out; follow it with `supervisor runtime rollout`");
        return Ok((activation, None));
    }
    let (last, failure) = follow_rollout(&store, &client, started.activation_id, follow)?;
    activation.rollout = Some(last);
    Ok((activation, failure))
}

/// Returns to the active runtime's rollback target through [`activate`].
pub fn rollback(home: &Home, follow: Follow) -> anyhow::Result<Outcome> {
    let store = home.open()?;
    let Some(active) = store.active_runtime()? else {
        anyhow::bail!(
            "no runtime is active on this home, so there is nothing to roll back to (see `supervisor runtime list`)"
        );
    };
    let Some(target) = active.previous_id else {
        anyhow::bail!(
            "runtime {} has no rollback target: it is the first runtime activated on this home",
            active.runtime_id
        );
    };
    drop(store);
    follow.say(&format!(
        "rolling back from runtime {} to {target}",
        active.runtime_id
    ));
    activate(home, &target, follow)
}

/// Prints the JSON (with `--json`), then ends as the outcome says.
pub fn finish(outcome: Outcome, json: bool) -> anyhow::Result<ExitCode> {
    let (activation, failure) = outcome;
    if json {
        println!("{}", serde_json::to_string_pretty(&activation)?);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Prints each step of a roll-out as the daemon records it, until the roll-out ends.
/// Returns the roll-out as it ended and, when it failed, why.
fn follow_rollout(
    store: &Store,
    client: &DaemonClient,
    activation_id: i64,
    follow: Follow,
) -> anyhow::Result<(Rollout, Option<anyhow::Error>)> {
    let mut printed: Vec<(String, String)> = Vec::new();
    let mut polls: u64 = 0;
    loop {
        let r = store
            .rollout(activation_id)?
            .ok_or_else(|| anyhow::anyhow!("the roll-out's record is gone"))?;
        for step in &r.steps {
            let seen = (step.instance.clone(), step.state.clone());
            if !printed.contains(&seen) {
                follow.say(&render::rollout_step(step));
                printed.push(seen);
            }
        }
        match r.state.as_str() {
            "done" => {
                let moved = r.steps.iter().filter(|s| s.state == "ready").count();
                follow.say(&format!(
                    "roll-out done: {moved} running instance(s) moved to {}",
                    r.runtime_id
                ));
                return Ok((r, None));
            }
            "failed" => {
                let detail = r.detail.as_deref().unwrap_or("no reason recorded");
                let e = if detail.starts_with("superseded") {
                    anyhow::anyhow!("roll-out of runtime {} stopped: {detail}", r.runtime_id)
                } else {
                    anyhow::anyhow!(
                        "roll-out of runtime {} stopped: {detail}; runtime {} is active again",
                        r.runtime_id,
                        r.previous_id
                    )
                };
                return Ok((r, Some(e)));
            }
            _ => {}
        }
        polls += 1;
        // The daemon carries the roll-out: if it stops, say so rather than wait forever.
        if polls.is_multiple_of(25) && crate::infra::blocking::block_on(client.health()).is_err() {
            let e = anyhow::anyhow!(
                "the daemon stopped during the roll-out of runtime {}; it carries on when the daemon starts again (`supervisor runtime rollout` shows where it is)",
                r.runtime_id
            );
            return Ok((r, Some(e)));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
