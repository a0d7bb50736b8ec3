//! Gathers the facts, runs the checks in order and, with `--fix`, repairs modes (chmod).
//! What needs the Docker engine is in `containers.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::domain::host_config::HostConfig;
use crate::domain::instance::{InstanceConfig, InstanceName};
use crate::infra::home::Home;
use crate::infra::runtime::{self, manifest::Manifest};
use crate::infra::safefs::SafeDir;
use crate::infra::store::StoreError;

use super::checks::{self, RuntimeFact};
use super::containers::docker_checks;
use super::facts::{Configs, StoreFacts};
use super::{channels, daemon, perms, Check, Report};
use crate::app::channels::health as channel_health;
use crate::app::client::{ClientError, DaemonClient};
use crate::domain::channels::{TelegramChannel, WEBHOOK};
use crate::domain::telegram::TELEGRAM;
use crate::infra::store::Store;
use crate::infra::telegram::{BotApi, BotError};

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Repair modes and remove orphan containers.
    pub fix: bool,
}

/// Runs every check; never fails as a whole: each problem is a row.
pub fn run(home: &Home, opts: &Options) -> Report {
    let root = home.root().display().to_string();
    let initialized = home.is_initialized();
    let host = home.host_config();
    let mut rows = vec![
        checks::home(&root, initialized),
        checks::host_config(&host.as_ref().map(drop).map_err(|e| e.to_string())),
    ];
    let host = host.unwrap_or_default();

    // Modes before anything opens the database, which may create its WAL files itself.
    let perm_rows = if home.root().is_dir() {
        permissions(home, opts.fix)
    } else {
        vec![Check::warn(
            checks::PERMISSIONS,
            format!("not checked: {root} does not exist"),
            format!("supervisor --home {root} init"),
        )]
    };

    let (database_row, facts) = open_store(home, initialized);
    let configs: Configs = facts
        .as_ref()
        .map(|f| {
            f.instances
                .iter()
                .filter_map(|name| {
                    let iname = InstanceName::parse(name).ok()?;
                    // A chat group runs with its instance's config: checked once, there.
                    if iname.is_group() {
                        return None;
                    }
                    let path = home.instance_paths(&iname).config;
                    Some((name.clone(), InstanceConfig::load(&path)))
                })
                .collect()
        })
        .unwrap_or_default();
    let runtime_row = checks::runtime(&runtime_fact(home, facts.as_ref()));

    let docker_rows = crate::infra::blocking::block_on(docker_checks(
        home,
        &host,
        facts.as_ref(),
        &configs,
        opts.fix,
    ));

    let records = facts
        .as_ref()
        .and_then(|f| f.store.instances().ok())
        .unwrap_or_default();
    let (daemon_check, daemon_runs) = daemon_row(home, &host, initialized, &records);
    rows.push(daemon_check);
    rows.push(docker_rows.docker);
    rows.push(docker_rows.image);
    if host.engine.kind == crate::domain::engine_config::EngineKind::Swarm {
        let nodes = crate::infra::blocking::block_on(super::swarm::gather(&host));
        rows.extend(super::swarm::rows(&nodes));
    }
    rows.push(runtime_row);
    rows.push(database_row);
    rows.extend(perm_rows);
    rows.extend(config_rows(facts.as_ref(), &configs));
    if let Some(facts) = &facts {
        rows.extend(channel_rows(&facts.store, &configs, daemon_runs));
    }
    rows.extend(docker_rows.hardening);
    rows.extend(docker_rows.orphans);
    rows.extend(docker_rows.home_id);
    rows.extend(super::isolation::local_rows(
        home,
        &records,
        &host.disk.enforcement(),
    ));
    rows.extend(docker_rows.shared_uids);
    rows.push(disk_row(home.root()));
    rows.push(token_row(home, &host));
    if !initialized {
        // Whatever could not be checked for want of a home has one fix: making it.
        let init = format!("supervisor --home {root} init");
        for row in rows
            .iter_mut()
            .filter(|r| r.status != super::Status::Ok && r.message.starts_with("not checked"))
        {
            row.fix = Some(init.clone());
        }
    }
    Report::new(rows)
}

fn permissions(home: &Home, fix: bool) -> Vec<Check> {
    let layout = perms::layout(home.root());
    let mut rows = Vec::new();
    let mut seen = 0;
    // The home may be a link to where the data lives: that is the operator's choice.
    let home_dir = match SafeDir::open_following(home.root()) {
        Ok(d) => d,
        Err(e) => {
            return vec![Check::warn(
                checks::PERMISSIONS,
                format!("{}: cannot open it: {e}", home.root().display()),
                "run doctor as the user that runs the daemon",
            )]
        }
    };
    // Each instance's volume, opened once (its image mounted if need be), or why not.
    let mut volumes: BTreeMap<String, Result<crate::infra::volume::OpenVolume, String>> =
        BTreeMap::new();
    for expect in perms::expectations(&layout) {
        let is_root = expect.path == layout.root;
        let rel = match expect.path.strip_prefix(home.root()) {
            Ok(p) if !is_root => p.display().to_string(),
            _ => expect.path.display().to_string(),
        };
        let base = match &expect.base {
            perms::Base::Home => &home_dir,
            perms::Base::Volume(name) => {
                let opened = volumes.entry(name.clone()).or_insert_with(|| {
                    let iname = InstanceName::parse(name).map_err(|e| e.to_string())?;
                    crate::infra::volume::open(&home.instance_paths(&iname))
                        .map_err(|e| e.to_string())
                });
                match opened {
                    Ok(v) => &v.root,
                    Err(e) => {
                        if expect.rel.as_os_str().is_empty() {
                            rows.push(Check::warn(
                                checks::PERMISSIONS,
                                format!("{rel}: not checked: {e}"),
                                "see the message; `supervisor doctor` again once it is fixed",
                            ));
                        }
                        continue;
                    }
                }
            }
        };
        let found = match perms::look(&expect, base) {
            Ok(found) => found,
            Err(e) => {
                rows.push(Check::warn(
                    checks::PERMISSIONS,
                    format!("{rel}: cannot look at it: {e}"),
                    "run doctor as the user that runs the daemon",
                ));
                continue;
            }
        };
        if found != perms::Found::Missing {
            seen += 1;
        }
        let verdict = perms::judge(&expect, found);
        if verdict == perms::Verdict::Ok {
            continue;
        }
        let outcome = (fix && matches!(verdict, perms::Verdict::Mode { .. }))
            .then(|| perms::repair(&expect, base));
        rows.push(perms::finding(&expect, &verdict, &rel, outcome.as_ref()));
    }
    if rows.is_empty() {
        rows.push(Check::ok(
            checks::PERMISSIONS,
            format!("{seen} paths checked: every mode is as the supervisor creates it"),
        ));
    }
    rows
}

fn open_store(home: &Home, initialized: bool) -> (Check, Option<StoreFacts>) {
    if !initialized {
        let e = Err("not checked: the home has no database".to_string());
        return (checks::database(&e, 0), None);
    }
    let size = ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            std::fs::metadata(format!("{}{suffix}", home.db_path().display()))
                .ok()
                .map(|m| m.len())
        })
        .sum();
    let read = || -> Result<(String, StoreFacts), String> {
        let mut store = home.open().map_err(|e| e.to_string())?;
        let integrity = store.integrity_check().map_err(|e| e.to_string())?;
        let facts = (|| -> Result<_, StoreError> {
            Ok((
                store.home_id()?,
                store.instances()?.into_iter().map(|r| r.name).collect(),
                store.active_runtime()?.map(|a| a.runtime_id),
            ))
        })();
        let (home_id, instances, active_runtime) = facts.map_err(|e| e.to_string())?;
        Ok((
            integrity,
            StoreFacts {
                store,
                home_id,
                instances,
                active_runtime,
            },
        ))
    };
    match read() {
        Ok((integrity, facts)) => (checks::database(&Ok(integrity), size), Some(facts)),
        Err(e) => (checks::database(&Err(e), size), None),
    }
}

fn runtime_fact(home: &Home, facts: Option<&StoreFacts>) -> RuntimeFact {
    let Some(facts) = facts else {
        return RuntimeFact::Unknown {
            reason: "not checked: the database cannot be read".into(),
        };
    };
    let Some(id) = &facts.active_runtime else {
        return RuntimeFact::NoneActive;
    };
    let dir = home.runtime_dir().join(id);
    if !runtime::is_runtime_id(id) || !dir.is_dir() {
        return RuntimeFact::MissingDir { id: id.clone() };
    }
    // The same verification `runtime verify` and activation use.
    match Manifest::verify_dir(&dir, id) {
        Ok(diffs) if diffs.is_empty() => RuntimeFact::Intact { id: id.clone() },
        Ok(diffs) => RuntimeFact::Damaged {
            id: id.clone(),
            differences: diffs.iter().map(ToString::to_string).collect(),
        },
        Err(e) => RuntimeFact::Unreadable {
            id: id.clone(),
            error: e.to_string(),
        },
    }
}

fn config_rows(facts: Option<&StoreFacts>, configs: &Configs) -> Vec<Check> {
    if facts.is_none() {
        return vec![Check::warn(
            checks::CONFIG,
            "not checked: the database cannot be read, so the instances are unknown",
            "fix the database first (see the database row)",
        )];
    }
    if configs.is_empty() {
        return vec![Check::ok(checks::CONFIG, "no instances")];
    }
    let mut rows: Vec<Check> = configs
        .iter()
        .map(|(name, loaded)| checks::config(name, loaded))
        .collect();
    for (name, loaded) in configs {
        if let Ok(config) = loaded {
            rows.extend(super::egress::rows(name, config));
        }
    }
    rows
}

fn disk_row(root: &Path) -> Check {
    // A home that does not exist yet would be created on the nearest existing ancestor.
    let existing = root.ancestors().find(|p| p.exists()).unwrap_or(root);
    match nix::sys::statvfs::statvfs(existing) {
        // The field types differ by platform (u32 on some); u64 holds them all.
        #[allow(clippy::unnecessary_cast)]
        Ok(s) => checks::disk(
            (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64),
            &existing.display().to_string(),
        ),
        Err(e) => Check::warn(
            checks::DISK,
            format!("cannot read the free space of {}: {e}", existing.display()),
            "df -h on the home's file system",
        ),
    }
}

/// The token as the daemon would see it: its environment, or the environment file the
/// service unit reads, and where it was found (or looked for). The value goes only to the
/// rules and to a fingerprint, never into a row.
fn local_token(home: &Home, host: &HostConfig) -> (Option<String>, String) {
    let var = &host.api.token_env;
    let env_file = home.root().join("supervisor.env");
    if let Some(t) = std::env::var(var).ok().filter(|t| !t.trim().is_empty()) {
        return (Some(t), "in the environment".to_string());
    }
    let from_file = std::fs::read_to_string(&env_file)
        .ok()
        .and_then(|text| checks::env_file_value(&text, var))
        .filter(|t| !t.trim().is_empty());
    match from_file {
        Some(t) => (Some(t), format!("in {}", env_file.display())),
        None => (
            None,
            format!("in the environment nor in {}", env_file.display()),
        ),
    }
}

fn token_row(home: &Home, host: &HostConfig) -> Check {
    let (token, source) = local_token(home, host);
    checks::api_token(&host.api, token, &source)
}

/// How long the daemon has to say what it runs with.
const DAEMON_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks the home's daemon (if any) what it runs with and compares its token with ours; and
/// whether a daemon answers at all.
fn daemon_row(
    home: &Home,
    host: &HostConfig,
    initialized: bool,
    records: &[crate::infra::store::instances::InstanceRecord],
) -> (Check, bool) {
    let root = home.root().display().to_string();
    if !initialized {
        let row = Check::warn(
            daemon::DAEMON,
            format!("not checked: there is no home at {root}"),
            format!("supervisor --home {root} init"),
        );
        return (row, false);
    }
    let client = DaemonClient::for_home(home);
    let asked = crate::infra::blocking::block_on(async {
        tokio::time::timeout(DAEMON_WAIT, async {
            match client.info().await {
                // A daemon from before `/v1/daemon`: it runs, but cannot say with what.
                Err(ClientError::Status { status: 404, .. }) => match client.health().await {
                    Ok(h) => Err(ClientError::Transport(format!(
                        "supervisor {} does not report its token",
                        h.version
                    ))),
                    Err(e) => Err(e),
                },
                other => other,
            }
        })
        .await
    });
    let fact = match asked {
        Ok(Ok(info)) => daemon::DaemonFact::Running(info),
        Ok(Err(ClientError::NotRunning { .. })) => daemon::DaemonFact::NotRunning {
            wanted: records
                .iter()
                .filter(|r| {
                    r.desired_state == crate::domain::instance::state::DesiredState::Running
                })
                .map(|r| r.name.clone())
                .collect(),
        },
        Ok(Err(e)) => daemon::DaemonFact::Unknown {
            reason: e.to_string(),
        },
        Err(_) => daemon::DaemonFact::Unknown {
            reason: format!("no answer within {} s", DAEMON_WAIT.as_secs()),
        },
    };
    // One that answers but cannot say with what still runs the channels.
    let runs = !matches!(fact, daemon::DaemonFact::NotRunning { .. });
    let (token, source) = local_token(home, host);
    let local = daemon::LocalToken {
        fingerprint: token
            .as_deref()
            .map(crate::app::daemon::api::info::fingerprint),
        source,
    };
    (daemon::daemon(&fact, &local, &root), runs)
}

/// How long doctor waits for the Bot API's answer to getMe.
const BOT_API_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A row per channel of every valid config: judged by what the running daemon recorded, or,
/// with no daemon, by what doctor's own environment (and the Bot API) says.
fn channel_rows(store: &Store, configs: &Configs, daemon_runs: bool) -> Vec<Check> {
    let mut asked = if daemon_runs {
        Default::default()
    } else {
        ask_every_bot(configs)
    };
    let mut rows = Vec::new();
    for (name, loaded) in configs {
        let Ok(config) = loaded else { continue };
        if config.channels.is_empty() {
            continue;
        }
        let health = match channel_health::of_instance(store, name, &config.channels) {
            Ok(h) => h,
            Err(e) => {
                rows.push(Check::warn(
                    channels::CHANNELS,
                    format!("{name}: not checked: {e}"),
                    "fix the database first (see the database row)",
                ));
                continue;
            }
        };
        for h in health {
            rows.push(match h.channel {
                TELEGRAM => {
                    let Some(t) = &config.channels.telegram else {
                        continue;
                    };
                    let fact = if daemon_runs {
                        channels::TelegramFact::Daemon(h)
                    } else {
                        match asked.remove(name) {
                            Some(answer) => channels::TelegramFact::Asked(answer),
                            None => channels::TelegramFact::NoToken,
                        }
                    };
                    channels::telegram(name, &t.token_env, &fact)
                }
                WEBHOOK => {
                    let Some(w) = &config.channels.webhook else {
                        continue;
                    };
                    let fact = if daemon_runs {
                        channels::WebhookFact::Daemon(h)
                    } else {
                        // As the daemon reads it: any value but an empty one.
                        let secret_set =
                            std::env::var_os(&w.secret_env).is_some_and(|s| !s.is_empty());
                        channels::WebhookFact::NoDaemon {
                            secret_set,
                            health: h,
                        }
                    };
                    channels::webhook(name, w, &fact)
                }
                _ => continue,
            });
        }
    }
    rows
}

/// Who the bot of `token` is, by getMe: its username, or what went wrong (never the token:
/// the Bot API's errors carry no URL).
/// Asks the Bot API who each bot is whose token doctor's environment holds, all at once (so
/// that doctor waits [`BOT_API_WAIT`] at most, however many bots): the answers by instance.
fn ask_every_bot(
    configs: &Configs,
) -> std::collections::HashMap<String, Result<String, channels::AskError>> {
    let asks: Vec<(String, TelegramChannel, String)> = configs
        .iter()
        .filter_map(|(name, loaded)| {
            let t = loaded.as_ref().ok()?.channels.telegram.as_ref()?;
            let token = crate::app::channels::telegram::token(t).ok()?;
            Some((name.clone(), t.clone(), token))
        })
        .collect();
    let http = reqwest::Client::new();
    crate::infra::blocking::block_on(futures_util::future::join_all(asks.iter().map(
        |(name, t, token)| {
            let http = http.clone();
            async move { (name.clone(), ask_bot(t, token, http).await) }
        },
    )))
    .into_iter()
    .collect()
}

async fn ask_bot(
    config: &TelegramChannel,
    token: &str,
    http: reqwest::Client,
) -> Result<String, channels::AskError> {
    let api = BotApi::new(config.api_base(), token, http);
    let asked = tokio::time::timeout(BOT_API_WAIT, api.get_me()).await;
    match asked {
        Ok(Ok(bot)) => Ok(bot.username),
        Ok(Err(e)) => Err(channels::AskError {
            transient: matches!(e, BotError::Unavailable(_) | BotError::RetryAfter(_)),
            message: e.to_string(),
        }),
        Err(_) => Err(channels::AskError {
            message: format!(
                "the Bot API at {} did not answer within {} s",
                config.api_base(),
                BOT_API_WAIT.as_secs()
            ),
            transient: true,
        }),
    }
}
