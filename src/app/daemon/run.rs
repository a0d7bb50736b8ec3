//! The daemon's main loop. It sleeps until something happens: the CLI changed the store
//! (socket), Docker reported an event for one of our containers, a backoff or idle deadline
//! came, or the slow safety tick. Then it runs one reconcile pass.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::api::{self, PassReport, Wake};
use super::config_watch::ConfigWatcher;
use super::live;
use super::lock::DaemonLock;
use super::messaging::Messaging;
use super::metrics::Metrics;
use super::reconcile::{PassError, Reconciler};
use super::scheduler::{Scheduler, SchedulerHandle};
use crate::domain::host_config::{HostConfig, ShutdownPolicy};
use crate::infra::container_user::ContainerUser;
use crate::infra::docker::{self, Client, Engine};
use crate::infra::home::Home;
use crate::infra::ipc::watch::OutWatcher;
use crate::infra::store::now_ms;
use anyhow::Context;
use std::sync::Arc;

/// Reconcile at least this often, whatever else happens (catches anything events missed).
pub const SAFETY_TICK: Duration = Duration::from_secs(30);
const DOCKER_RETRY_MAX: Duration = Duration::from_secs(30);
/// How soon to look again after an exit event (the engine's list can lag the event).
const EXIT_SETTLE: Duration = Duration::from_millis(250);

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(home: &Home) -> anyhow::Result<()> {
    let lock = DaemonLock::acquire(&home.run_dir())?;
    let mut store = home.open_or_init()?;
    let home_id = store.home_id()?;
    let host = home.host_config()?;
    let user = ContainerUser::detect();
    let disk = host.disk.enforcement();
    tracing::info!(
        home = %home.root().display(),
        %home_id,
        agents = %user.describe(),
        disk_limits = disk.label(),
        why_not_hard = disk.why_not_hard().unwrap_or(""),
        "supervisor daemon starting"
    );
    let reconciler = Reconciler::new(home.clone(), store, home_id, host.clone(), user);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(main_loop(home.clone(), host, reconciler))?;
    drop(lock);
    tracing::info!("supervisor daemon stopped");
    Ok(())
}

async fn main_loop(
    home: Home,
    host: crate::domain::host_config::HostConfig,
    mut reconciler: Reconciler,
) -> anyhow::Result<()> {
    // The TCP listener, if configured: its rules are checked before anything binds, and a
    // refusal stops the daemon from starting rather than serving something unsafe.
    let token = std::env::var(&host.api.token_env).ok();
    if let Some(t) = &token {
        crate::infra::logging::protect(t);
    }
    let tcp = api::listen::plan(&host.api, token.clone())?;
    // Instances' ports need the same token. Without one they stay closed and the instances
    // run without them; the reconciler tells on each instance.
    let port_token = api::listen::token(&host.api, token);
    let started = api::info::Started {
        token_fingerprint: port_token.as_deref().ok().map(api::info::fingerprint),
        listen: tcp.as_ref().map(|p| p.addr.to_string()),
    };
    let port_token = port_token.map(api::Token::new);
    if let Err(problem) = &port_token {
        reconciler.keep_ports_closed(problem.clone());
    }
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<Wake>();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    spawn_signal_handler(stop_tx);
    super::notify::spawn_watchdog(); // systemd: WATCHDOG=1, if asked

    let mut config_watch = ConfigWatcher::start(&home, wake_tx.clone());
    config_watch.sync(&reconciler.live_instances()?);
    let mut host = host;
    let live = reconciler.live();
    live.set_isolation(crate::app::status::Isolation::here(&host.disk));
    // The sampler follows the daemon's engine connection (None while it is away).
    // The engine the daemon works with (None while it is away): the sampler and the logs
    // endpoint follow it.
    let (docker_tx, docker_rx) = watch::channel::<Option<Arc<dyn Engine>>>(None);
    tokio::spawn(live::sample_forever(
        live.clone(),
        reconciler.home_id().to_string(),
        docker_rx.clone(),
    ));
    tokio::spawn(super::disk_usage::measure_forever(
        home.clone(),
        live.clone(),
        wake_tx.clone(),
    ));
    let scheduler = SchedulerHandle::default();
    let metrics = Metrics::default();
    let mut messaging = Messaging::new(
        home.clone(),
        scheduler.clone(),
        live.clone(),
        reconciler.configs(),
        metrics.clone(),
        // File events cross a swarm's network storage only when this machine serves it: an
        // agent's answer written on another machine is otherwise found by looking.
        match host.engine.swarm() {
            Some(swarm) => OutWatcher::with_polling(swarm.poll_interval()),
            None => OutWatcher::new(),
        },
    );
    // Messages flow even while the Docker engine is away (containers that run keep answering).
    messaging.ensure(&reconciler.live_instances()?);
    let scheduler_task = tokio::spawn(
        Scheduler::new(
            home.clone(),
            scheduler.clone(),
            messaging.handle(),
            wake_tx.clone(),
            reconciler.configs(),
        )
        .run(stop_rx.clone()),
    );
    let hub = crate::app::channels::Hub::default();
    let mut listeners = {
        let metrics = metrics.clone();
        crate::app::channels::listen::Listeners::new(
            crate::app::channels::Context {
                home: home.clone(),
                configs: reconciler.configs(),
                courier: std::sync::Arc::new(super::courier::OwnedCourier {
                    messaging: messaging.handle(),
                    reconcile: wake_tx.clone(),
                }),
                hub: hub.clone(),
                on_message: std::sync::Arc::new(move |instance: &str, channel: &str| {
                    metrics.channel_message_in(instance, channel)
                }),
            },
            stop_rx.clone(),
        )
    };
    // Channels take messages in even while the Docker engine is away.
    listeners.ensure(&reconciler.live_instances()?);
    tokio::spawn(super::outbox::run(
        home.clone(),
        reconciler.configs(),
        hub.clone(),
        messaging.handle(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let api_state = api::AppState::new(api::ApiContext {
        home: home.clone(),
        home_id: reconciler.home_id().to_string(),
        messaging: messaging.handle(),
        scheduler: scheduler.clone(),
        live: live.clone(),
        configs: reconciler.configs(),
        metrics,
        wake: wake_tx.clone(),
        started,
        stop: stop_rx.clone(),
        docker: docker_rx.clone(),
        hub,
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api_task = api::serve_unix(api_state.clone(), stopped(stop_rx.clone())).await?;
    if let Some(plan) = tcp {
        let addr = plan.addr;
        api::serve_tcp(api_state.clone(), plan, stopped(stop_rx.clone()))
            .await
            .with_context(|| format!("cannot listen on {addr} (api.listen)"))?;
        tracing::info!(%addr, "TCP API listening");
    }
    let mut ports = api::ports::InstancePorts::default();

    let mut docker: Option<Client> = None;
    let mut engine: Option<Arc<dyn Engine>> = None;
    let mut events: Option<tokio::task::JoinHandle<()>> = None;
    let mut docker_retry = Duration::from_secs(1);
    // Requests waiting for the pass that is about to run.
    let mut waiters: Vec<tokio::sync::oneshot::Sender<PassReport>> = Vec::new();
    // A container exited: look again shortly after the pass it triggers.
    let mut exit_seen = false;
    // A roll-out waits for an agent's readiness: an announcement triggers the next pass.
    let mut awaiting_ready = false;

    loop {
        if docker.is_none() {
            match docker::connect_engine(&host, home.root()).await {
                Ok((client, connected)) => {
                    tracing::info!(engine = ?host.engine.kind, "connected to the Docker engine");
                    events = Some(tokio::spawn(watch_events(
                        connected.clone(),
                        reconciler.home_id().to_string(),
                        wake_tx.clone(),
                    )));
                    live.set_docker(true, docker::stats::engine_version(&client).await.ok());
                    let _ = docker_tx.send(Some(connected.clone()));
                    docker = Some(client);
                    engine = Some(connected);
                    docker_retry = Duration::from_secs(1);
                }
                Err(e) => {
                    live.set_docker(false, None);
                    tracing::warn!(error = %e, retry_in_secs = docker_retry.as_secs_f64(), "Docker engine unreachable; instances keep their last state");
                }
            }
        }

        let mut sleep_for = SAFETY_TICK;
        let mut report = PassReport::default();
        if let Some(connected) = &engine {
            match reconciler.pass(connected.as_ref()).await {
                Ok(outcome) => {
                    messaging.ensure(&outcome.live);
                    listeners.ensure(&outcome.live);
                    config_watch.sync(&outcome.live);
                    live.set_converged(outcome.converged);
                    let configs = reconciler.configs();
                    let wanted = api::ports::InstancePorts::wanted(
                        outcome
                            .live
                            .iter()
                            .map(|n| (n.as_str(), configs.port_of(n))),
                    );
                    if let Ok(token) = &port_token {
                        ports.ensure(&wanted, &api_state, token).await;
                    }
                    // Instances and their configs may have changed: heartbeats follow.
                    scheduler.wake();
                    awaiting_ready = outcome.awaiting_ready;
                    report = PassReport {
                        actions: outcome.actions,
                        converged: outcome.converged,
                        docker: true,
                    };
                    if let Some(at) = outcome.next_wake {
                        let ms = (at - now_ms()).max(0) as u64;
                        sleep_for = sleep_for.min(Duration::from_millis(ms));
                    }
                }
                Err(PassError::Docker(e)) => {
                    tracing::warn!(error = %e, "lost the Docker engine");
                    live.set_docker(false, None);
                    let _ = docker_tx.send(None);
                    docker = None;
                    engine = None;
                    if let Some(t) = events.take() {
                        t.abort();
                    }
                }
                // The database is the source of truth: without it there is nothing safe to do.
                Err(PassError::Store(e)) => return Err(e.into()),
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(report.clone());
        }
        super::notify::ready(docker.is_some()); // systemd: READY=1 (first pass), STATUS=
        if std::mem::take(&mut exit_seen) {
            sleep_for = sleep_for.min(EXIT_SETTLE);
        }
        if docker.is_none() {
            sleep_for = sleep_for.min(docker_retry);
            docker_retry = (docker_retry * 2).min(DOCKER_RETRY_MAX);
        }

        tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => break,
            wake = wake_rx.recv() => {
                // Everything already queued is covered by the pass we are about to run.
                let mut lost = false;
                let mut config_changed = false;
                let mut next = wake;
                while let Some(w) = next {
                    match w {
                        Wake::DockerLost => lost = true,
                        Wake::Config => config_changed = true,
                        Wake::Api(Some(tx)) => waiters.push(tx),
                        Wake::DockerExit => exit_seen = true,
                        Wake::Api(None) | Wake::Docker | Wake::Usage => {}
                    }
                    next = wake_rx.try_recv().ok();
                }
                if config_changed {
                    tracing::debug!("config file changed: reloading");
                    // Instance configs are re-read by the pass about to run; the host
                    // config is applied here, or reported and the running one kept.
                    if let Some(changed) = reload_host_config(&home, &host, &mut reconciler) {
                        if changed.docker != host.docker || changed.engine != host.engine {
                            tracing::info!("docker settings changed: reconnecting");
                            lost = true;
                        }
                        live.set_isolation(crate::app::status::Isolation::here(&changed.disk));
                        host = changed;
                    }
                }
                if lost {
                    tracing::warn!("Docker event stream ended");
                    live.set_docker(false, None);
                    let _ = docker_tx.send(None);
                    docker = None;
                    engine = None;
                }
            }
            _ = live.agent_ready_signal(), if awaiting_ready => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }

    super::notify::stopping(); // systemd: STOPPING=1
    let policy = match host.daemon.on_shutdown {
        crate::domain::host_config::ShutdownPolicy::Leave => "leave",
        crate::domain::host_config::ShutdownPolicy::Stop => "stop",
    };
    tracing::info!(policy, "shutting down");
    if let Some(t) = events.take() {
        t.abort();
    }
    if host.daemon.on_shutdown == ShutdownPolicy::Stop {
        if let Some(connected) = &engine {
            let timeout = host.daemon.stop_timeout_secs();
            let stopped = stop_all(connected.as_ref(), reconciler.home_id(), timeout).await;
            reconciler.mark_stopped_at_shutdown(&stopped)?;
        }
    }
    let _ = api_task.await;
    let _ = scheduler_task.await;
    let _ = std::fs::remove_file(home.run_dir().join(api::SOCKET_FILE));
    Ok(())
}

/// Reads supervisor.toml again. A valid change is handed to the reconciler and returned; an
/// invalid file is reported (log and event) and the running config kept.
fn reload_host_config(
    home: &Home,
    current: &HostConfig,
    reconciler: &mut Reconciler,
) -> Option<HostConfig> {
    match home.host_config() {
        Ok(new) if &new == current => None,
        Ok(new) => {
            tracing::info!("supervisor.toml changed: applying it");
            if new.api != current.api {
                tracing::warn!("[api] settings take effect when the daemon restarts");
            }
            reconciler.record_event("config.reloaded", None);
            reconciler.set_host(new.clone());
            Some(new)
        }
        Err(e) => {
            tracing::warn!(error = %e, "supervisor.toml is invalid; keeping the running config");
            let detail = serde_json::json!({ "error": e.to_string() });
            reconciler.record_event("config.invalid", Some(&detail));
            None
        }
    }
}

/// First SIGTERM/SIGINT: stop gracefully. Second: exit at once.
fn spawn_signal_handler(stop: watch::Sender<bool>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if n == 0 {
                tracing::info!("signal received: stopping (send it again to exit at once)");
                let _ = stop.send(true);
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
}

async fn watch_events(engine: Arc<dyn Engine>, home_id: String, wake: mpsc::UnboundedSender<Wake>) {
    let mut stream = engine.events(&home_id);
    while let Some(event) = stream.next().await {
        match event {
            Ok(ev) => {
                tracing::debug!(instance = %ev.instance, action = %ev.action, "docker event");
                match ev.action.as_str() {
                    "die" | "oom" => {
                        let _ = wake.send(Wake::DockerExit);
                    }
                    "start" | "stop" | "destroy" | "kill" => {
                        let _ = wake.send(Wake::Docker);
                    }
                    _ => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Docker event stream failed");
                break;
            }
        }
    }
    let _ = wake.send(Wake::DockerLost);
}

/// Stops every running container of this home; returns the instances stopped.
async fn stop_all(engine: &dyn Engine, home_id: &str, timeout: i32) -> Vec<String> {
    let owned = match engine.list(home_id).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list containers to stop them");
            return Vec::new();
        }
    };
    let mut stopped = Vec::new();
    let stops = owned
        .iter()
        .filter(|c| c.running)
        .map(|c| engine.stop(&c.id, timeout));
    for (c, result) in owned
        .iter()
        .filter(|c| c.running)
        .zip(futures_util::future::join_all(stops).await)
    {
        match result {
            Ok(()) => stopped.push(c.instance.clone()),
            Err(e) => tracing::warn!(container = %c.name, error = %e, "stop failed"),
        }
    }
    stopped
}
