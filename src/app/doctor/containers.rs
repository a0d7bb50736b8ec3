//! The checks that need the Docker engine: the engine itself, the agent image, the live
//! hardening of each running container, and orphans, which `--fix` removes only once their
//! labels are confirmed again.

use std::time::Duration;

use crate::domain::host_config::HostConfig;
use crate::domain::instance::InstanceName;
use crate::infra::agent_image;
use crate::infra::container_spec::{
    ContainerSpec, SpecInputs, LABEL_HOME, LABEL_INSTANCE, LABEL_RUNTIME,
};
use crate::infra::container_user::ContainerUser;
use crate::infra::docker::container::{self, OwnedContainer};
use crate::infra::docker::hardening as live;
use crate::infra::docker::{self, Client, Engine};
use crate::infra::home::Home;
use crate::infra::runtime;
use crate::infra::store::StoreError;

use super::checks::{self, ImageFact, NO_DOCKER, START_DOCKER};
use super::facts::{Configs, StoreFacts};
use super::{hardening, same_id, Check};

/// How long the engine has to answer at all: an unreachable TCP endpoint must not hang
/// doctor for bollard's two minutes.
const DOCKER_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long everything doctor then asks the engine may take together (a liveness bound).
const DOCKER_WORK_WAIT: Duration = Duration::from_secs(120);

pub(super) struct DockerRows {
    pub docker: Check,
    pub image: Check,
    pub hardening: Vec<Check>,
    pub orphans: Vec<Check>,
    /// Other homes' containers running with this home's uids.
    pub shared_uids: Vec<Check>,
    /// Containers of another home that carries this home's id.
    pub home_id: Vec<Check>,
}

pub(super) async fn docker_checks(
    home: &Home,
    host: &HostConfig,
    facts: Option<&StoreFacts>,
    configs: &Configs,
    fix: bool,
) -> DockerRows {
    let endpoint = docker::endpoint(&host.docker);
    let unreachable = |docker: Check| DockerRows {
        docker,
        image: checks::image(&ImageFact::Unknown {
            reason: NO_DOCKER.into(),
        }),
        hardening: vec![Check::warn(checks::HARDENING, NO_DOCKER, START_DOCKER)],
        orphans: vec![Check::warn(checks::ORPHANS, NO_DOCKER, START_DOCKER)],
        shared_uids: Vec::new(),
        home_id: vec![Check::warn(same_id::HOME_ID, NO_DOCKER, START_DOCKER)],
    };
    let connected = tokio::time::timeout(DOCKER_CONNECT_WAIT, async {
        let (client, engine) = docker::connect_engine(host, home.root()).await?;
        let version = docker::stats::engine_version(&client).await?;
        Ok::<_, docker::DockerError>(((client, engine), version))
    })
    .await;
    let ((client, engine), version) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return unreachable(checks::docker(&Err(e.to_string()), &endpoint)),
        Err(_) => {
            let e = format!(
                "the Docker engine at {endpoint} did not answer within {} s",
                DOCKER_CONNECT_WAIT.as_secs()
            );
            return unreachable(checks::docker(&Err(e), &endpoint));
        }
    };
    let docker_row = checks::docker(&Ok(version), &endpoint);
    let work = async {
        let tag = agent_image::current_tag(&host.docker.image);
        let image = match docker::image::inspect(&client, &tag).await {
            Ok(Some(info)) => ImageFact::Present {
                tag: tag.clone(),
                id: info.id,
            },
            Ok(None) => ImageFact::Missing { tag: tag.clone() },
            Err(e) => ImageFact::Unknown {
                reason: e.to_string(),
            },
        };
        let (hardening, orphans, home_id) = match facts {
            Some(facts) => containers(engine.as_ref(), home, facts, configs, &tag, fix).await,
            None => {
                let why = "not checked: the database cannot be read (it holds this home's id, which labels its containers)";
                let fix = "fix the database first (see the database row)";
                (
                    vec![Check::warn(checks::HARDENING, why, fix)],
                    vec![Check::warn(checks::ORPHANS, why, fix)],
                    vec![Check::warn(same_id::HOME_ID, why, fix)],
                )
            }
        };
        let shared_uids = match facts {
            Some(facts) => other_homes_in_our_block(&client, facts).await,
            None => Vec::new(),
        };
        (
            checks::image(&image),
            hardening,
            orphans,
            shared_uids,
            home_id,
        )
    };
    match tokio::time::timeout(DOCKER_WORK_WAIT, work).await {
        Ok((image, hardening, orphans, shared_uids, home_id)) => DockerRows {
            docker: docker_row,
            image,
            hardening,
            orphans,
            shared_uids,
            home_id,
        },
        Err(_) => unreachable(Check::fail(
            checks::DOCKER,
            format!(
                "the Docker engine at {endpoint} stopped answering (nothing within {} s)",
                DOCKER_WORK_WAIT.as_secs()
            ),
            "check the engine (`docker info`), then run `supervisor doctor` again",
        )),
    }
}

/// Containers of other homes on this engine whose user is a uid of this home's block.
async fn other_homes_in_our_block(client: &Client, facts: &StoreFacts) -> Vec<Check> {
    let (Ok(block), Ok(all)) = (
        facts.store.uid_block(),
        container::list_supervised(client).await,
    ) else {
        return Vec::new();
    };
    let mut theirs = Vec::new();
    for c in all
        .iter()
        .filter(|c| c.labels.get(LABEL_HOME) != Some(&facts.home_id))
    {
        if let Ok(Some(found)) = live::inspect_hardening(client, &c.id).await {
            let uid = found
                .hardening
                .user
                .split(':')
                .next()
                .and_then(|u| u.parse().ok());
            if let Some(uid) = uid {
                let home = c.labels.get(LABEL_HOME).cloned().unwrap_or_default();
                theirs.push((c.name.clone(), home, uid));
            }
        }
    }
    super::isolation::shared_block(&theirs, block)
}

/// The hardening rows (one per running container of a known instance), the orphan rows and
/// the home-id rows. A container of another home with this home's id is only reported: it
/// is neither audited against this home's instances nor removed as an orphan.
async fn containers(
    engine: &dyn Engine,
    home: &Home,
    facts: &StoreFacts,
    configs: &Configs,
    image: &str,
    fix: bool,
) -> (Vec<Check>, Vec<Check>, Vec<Check>) {
    let owned = match engine.list(&facts.home_id).await {
        Ok(owned) => owned,
        Err(e) => {
            let why = format!("not checked: {e}");
            return (
                vec![Check::warn(checks::HARDENING, why.clone(), START_DOCKER)],
                vec![Check::warn(checks::ORPHANS, why.clone(), START_DOCKER)],
                vec![Check::warn(same_id::HOME_ID, why, START_DOCKER)],
            );
        }
    };
    let root = home.root().to_path_buf();
    let mut roots = vec![root.clone()];
    roots.extend(std::fs::canonicalize(&root).ok());
    let mut hardening_rows = Vec::new();
    let mut orphan_rows = Vec::new();
    let mut home_id_rows = Vec::new();
    for c in &owned {
        let binds: Vec<String> = match engine.inspect_hardening(&c.id).await {
            Ok(Some(found)) => found
                .hardening
                .mounts
                .into_iter()
                .filter(|m| m.kind == "bind")
                .map(|m| m.source)
                .collect(),
            _ => Vec::new(),
        };
        if let Some(other) = same_id::other_home(&binds, &roots) {
            home_id_rows.push(same_id::shared(
                &c.name,
                &c.instance,
                &facts.home_id,
                &other,
                &root.display().to_string(),
            ));
            continue;
        }
        if !facts.instances.contains(&c.instance) {
            orphan_rows.push(orphan(engine, facts, c, fix).await);
        } else if c.running {
            hardening_rows.push(audit(engine, home, facts, configs, image, c).await);
        }
    }
    if hardening_rows.is_empty() {
        hardening_rows.push(Check::ok(
            checks::HARDENING,
            "no running container of this home to compare",
        ));
    }
    if orphan_rows.is_empty() {
        orphan_rows.push(Check::ok(
            checks::ORPHANS,
            "every container of this home belongs to one of its instances",
        ));
    }
    if home_id_rows.is_empty() {
        home_id_rows.push(same_id::unique(&facts.home_id));
    }
    (hardening_rows, orphan_rows, home_id_rows)
}

/// Compares one running container with what the daemon would create for its instance.
async fn audit(
    engine: &dyn Engine,
    home: &Home,
    facts: &StoreFacts,
    configs: &Configs,
    image: &str,
    c: &OwnedContainer,
) -> Check {
    let who = format!("{} ({})", c.instance, c.name);
    let not_compared = |why: String, fix: &str| {
        Check::warn(
            checks::HARDENING,
            format!("{who}: not compared: {why}"),
            fix.to_string(),
        )
    };
    // A chat group's container is made from its instance's config, as a group runs it.
    let root = InstanceName::parse(&c.instance).ok().and_then(|n| n.root());
    let config = match root
        .as_ref()
        .map_or(configs.get(&c.instance), |r| configs.get(r.as_str()))
    {
        Some(Ok(config)) if root.is_some() => &config.clone().for_group(),
        Some(Ok(config)) => config,
        _ => {
            return not_compared(
                "its config.json is invalid".into(),
                "fix config.json first (see the config row)",
            )
        }
    };
    let Ok(name) = InstanceName::parse(&c.instance) else {
        return not_compared(
            "not a valid instance name".into(),
            "supervisor doctor --fix",
        );
    };
    // The runtime the container mounts is its label's (an older one is drift, not a
    // weakness); the daemon would give it the active one.
    let own_runtime = c
        .labels
        .get(LABEL_RUNTIME)
        .filter(|id| runtime::is_runtime_id(id))
        .or(facts.active_runtime.as_ref());
    let Some(own_runtime) = own_runtime else {
        return not_compared(
            "no runtime to compare with".into(),
            "supervisor runtime build --activate",
        );
    };
    let paths = home.instance_paths(&name);
    let uid = match facts.store.instance(&c.instance) {
        Ok(record) => record.uid,
        Err(e) => return not_compared(e.to_string(), "supervisor doctor --fix"),
    };
    let user = ContainerUser::detect().spec_for(uid);
    let spec_for = |runtime_id: &str| {
        ContainerSpec::for_instance(&SpecInputs {
            home_id: &facts.home_id,
            instance: &c.instance,
            config,
            paths: &paths,
            runtime_id,
            runtime_dir: home.runtime_dir().join(runtime_id),
            image,
            user: &user,
        })
    };
    let expected = engine.expected_hardening(&spec_for(own_runtime));
    match engine.inspect_hardening(&c.id).await {
        Ok(Some(found)) => {
            let diffs = hardening::compare(&expected, &found.hardening);
            let mut row = hardening::check(&c.instance, &c.name, &diffs);
            if found.from_service_spec {
                row.message.push_str(&format!(
                    " (its service's spec: the engine of node {} is not in [engine.swarm.nodes], so the live container was not inspected)",
                    c.node.as_deref().unwrap_or("?")
                ));
            }
            row
        }
        Ok(None) => Check::ok(
            checks::HARDENING,
            format!("{who}: removed while doctor looked"),
        ),
        Err(e) => not_compared(e.to_string(), START_DOCKER),
    }
}

/// One orphan; with `fix`, removed once Docker and the store confirm it again.
async fn orphan(engine: &dyn Engine, facts: &StoreFacts, c: &OwnedContainer, fix: bool) -> Check {
    let row = checks::orphan(&c.name, &c.instance, c.running);
    if !fix {
        return row;
    }
    // Listing filtered by the label and checked it once; look again right before removing,
    // and ask the store again, in case the instance was created meanwhile.
    let confirmed = match engine.inspect_hardening(&c.id).await {
        Ok(Some(found)) => {
            found.labels.get(LABEL_HOME) == Some(&facts.home_id)
                && found.labels.get(LABEL_INSTANCE) == Some(&c.instance)
        }
        Ok(None) => {
            let mut done = Check::ok(
                checks::ORPHANS,
                format!("container {} is already gone", c.name),
            );
            done.fixed = true;
            return done;
        }
        Err(_) => false,
    };
    let still_unknown = matches!(
        facts.store.instance(&c.instance),
        Err(StoreError::NoSuchInstance(_))
    );
    if !(confirmed && still_unknown) {
        let mut kept = row;
        kept.message
            .push_str("; not removed: it no longer looks like an orphan of this home");
        return kept;
    }
    match engine.remove(&c.id).await {
        Ok(()) => {
            let mut done = Check::ok(
                checks::ORPHANS,
                format!(
                    "removed container {} (instance {:?} is not in this home)",
                    c.name, c.instance
                ),
            );
            done.fixed = true;
            done
        }
        Err(e) => {
            let mut kept = row;
            kept.message.push_str(&format!("; removing it failed: {e}"));
            kept
        }
    }
}
