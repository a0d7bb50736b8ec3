//! Applying a pass's decisions: each planned action carried out through the engine, with
//! the instance's volume made ready before its container starts.

use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;

use super::derive::Applied;
use super::{Prepared, Reconciler, ACTOR};
use crate::app::daemon::plan::Action;
use crate::app::instances::persona;
use crate::domain::instance::InstanceName;
use crate::infra::container_spec::LABEL_RUNTIME;
use crate::infra::docker::container::{self, LogChunk, LogsRequest, OwnedContainer};
use crate::infra::docker::{DockerError, Engine};
use crate::infra::volume::{self, VolumeError};

/// Why one action on one instance failed: the engine, or the instance's own files.
#[derive(Debug, thiserror::Error)]
pub(super) enum ActionError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

impl Reconciler {
    pub(super) async fn apply(
        &mut self,
        engine: &dyn Engine,
        action: &Action,
        prepared: &BTreeMap<String, Prepared>,
        applied: &mut Applied,
    ) -> Result<(), ActionError> {
        let stop_timeout = self.host.daemon.stop_timeout_secs();
        let running = &mut applied.running;
        match action {
            Action::Create { instance } => {
                self.create_and_start(engine, instance, prepared, running)
                    .await?;
            }
            Action::Recreate { instance, id } => {
                engine.stop(id, stop_timeout).await?;
                engine.remove(id).await?;
                running.remove(instance);
                self.create_and_start(engine, instance, prepared, running)
                    .await?;
                self.store
                    .record_event(Some(instance), ACTOR, "container.recreated", None)
                    .ok();
            }
            Action::Start { instance, id } => {
                // A stopped container may have been weakened behind the daemon's back
                // (`docker update`, or one made by hand with the right labels) while its spec
                // hash still matches: never start one that fails the hardening audit.
                let spec = prepared.get(instance).and_then(|p| p.spec.as_ref());
                if let Some(spec) = spec {
                    let differences = match engine.inspect_hardening(id).await? {
                        Some(found) => crate::infra::docker::hardening_diff::compare(
                            &engine.expected_hardening(spec),
                            &found.hardening,
                        ),
                        None => vec!["the container is gone".to_string()],
                    };
                    if !differences.is_empty() {
                        let differences_text = differences.join("; ");
                        tracing::warn!(%instance, differences = %differences_text, "container fails the hardening audit: replacing it");
                        engine.remove(id).await?;
                        self.create_and_start(engine, instance, prepared, running)
                            .await?;
                        let detail = serde_json::json!({ "differences": differences });
                        self.store
                            .record_event(
                                Some(instance),
                                ACTOR,
                                "container.replaced",
                                Some(&detail),
                            )
                            .ok();
                        return Ok(());
                    }
                }
                self.prepare_volume(instance, prepared)?;
                self.live.container_starting(instance);
                engine.start(id).await?;
                let runtime = spec.map(|s| s.labels[LABEL_RUNTIME].clone());
                running.insert(instance.clone(), (id.clone(), runtime));
            }
            Action::Stop { instance, id } => {
                engine.stop(id, stop_timeout).await?;
                self.expect_exit(engine, instance, id).await?;
                running.remove(instance);
                self.memory.tracker.reset(instance);
            }
            Action::Remove { id } => {
                engine.stop(id, stop_timeout).await?;
                engine.remove(id).await?;
            }
        }
        Ok(())
    }

    async fn create_and_start(
        &mut self,
        engine: &dyn Engine,
        instance: &str,
        prepared: &BTreeMap<String, Prepared>,
        running: &mut HashMap<String, (String, Option<String>)>,
    ) -> Result<(), ActionError> {
        let p = &prepared[instance];
        let spec = p.spec.as_ref().expect("a runnable instance has a spec");
        self.prepare_volume(instance, prepared)?;
        let id = engine.create(spec).await?;
        self.live.container_starting(instance);
        engine.start(&id).await?;
        running.insert(
            instance.to_string(),
            (id, Some(spec.labels[LABEL_RUNTIME].clone())),
        );
        Ok(())
    }

    /// Gets the instance's volume ready for its container (no container of it runs now):
    /// its disk image made, grown, mounted, its directories its own (`volume::prepare`).
    fn prepare_volume(
        &mut self,
        instance: &str,
        prepared: &BTreeMap<String, Prepared>,
    ) -> Result<(), VolumeError> {
        let p = &prepared[instance];
        let name = InstanceName::parse(instance).expect("stored names are valid");
        let paths = self.home.instance_paths(&name);
        // A group's container reads its instance's persona from the start (it is refreshed
        // again before each turn).
        if let Err(e) = tokio::task::block_in_place(|| persona::refresh_group(&self.home, &name)) {
            tracing::warn!(instance, error = %e, "the persona could not be refreshed; the group keeps the copy it has");
        }
        let owner = self.user.owner_for(p.uid);
        let limit = p.config.limits.disk_bytes();
        let (_, done) =
            tokio::task::block_in_place(|| volume::prepare(&paths, &self.disk, limit, owner))?;
        if done.converted || done.resized.is_some() || done.chowned > 0 {
            let resized = done.resized.map(|r| format!("{r:?}").to_lowercase());
            tracing::info!(
                instance,
                converted = done.converted,
                resized = resized.as_deref().unwrap_or("no"),
                chowned = done.chowned,
                "volume prepared"
            );
            let detail = serde_json::json!({
                "converted_to_image": done.converted,
                "resized": resized,
                "owner_changed": done.chowned,
                "limit": p.config.limits.disk,
            });
            self.store
                .record_event(Some(instance), ACTOR, "volume.prepared", Some(&detail))
                .ok();
        }
        if let Some(pending) = done.pending {
            tracing::warn!(instance, %pending, "disk limit not applied yet");
        }
        Ok(())
    }

    /// Records that a container the daemon itself just stopped exited on purpose; returns
    /// its exit code.
    pub(super) async fn expect_exit(
        &mut self,
        engine: &dyn Engine,
        name: &str,
        id: &str,
    ) -> Result<Option<i64>, DockerError> {
        let Some(state) = engine.inspect(id).await? else {
            return Ok(None);
        };
        let key = (id.to_string(), state.finished_at.unwrap_or_default());
        self.memory.tracker.on_expected_exit(name, key);
        Ok(state.exit_code)
    }
}

/// The last few lines a container printed, on one line, for state details.
pub(super) async fn last_output(
    engine: &dyn Engine,
    owned: &[OwnedContainer],
    name: &str,
) -> String {
    let Some(c) = container::newest(owned, name) else {
        return "(none)".into();
    };
    let mut text = Vec::new();
    let request = LogsRequest {
        tail: Some(3),
        ..LogsRequest::default()
    };
    let mut logs = engine.logs(&c.id, request);
    while let Some(Ok(chunk)) = logs.next().await {
        let (LogChunk::Stdout(b) | LogChunk::Stderr(b)) = chunk;
        text.extend(b);
    }
    let text = String::from_utf8_lossy(&text);
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.dedup();
    let line = lines.join(" | ");
    if line.is_empty() {
        "(none)".into()
    } else {
        line.chars().take(300).collect()
    }
}
