//! `supervisor channels [NAME]`: each instance's channels, how they stand (the connection's
//! state and what to do about a fault, the outbox's backlog, the last answer sent, the last
//! failure) and when a message last came in; and `supervisor channels pair NAME CODE`, which
//! lets in the sender a pairing code was given to. Read from the store and the configs;
//! secrets are named, never read or shown.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::app::render::timestamp;
use crate::domain::escape;
use crate::domain::instance::InstanceConfig;
use crate::infra::home::Home;
use crate::infra::store::channels::Pairing;
use crate::infra::store::Store;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Sub>,
    /// Only this instance's channels
    pub name: Option<String>,
    /// Print JSON (an array of channel objects)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Let in the sender who was given pairing CODE (adds them to allow_from)
    Pair {
        /// The instance they wrote to
        name: String,
        /// The code the bot gave them
        code: String,
    },
}

#[derive(Debug, Serialize)]
struct ChannelRow {
    instance: String,
    channel: &'static str,
    /// `ok`, `starting`, `failing` (retrying on its own), `error` (needs the operator),
    /// `receive-only` (a webhook without url), or `not running` (no daemon has run it yet).
    state: String,
    /// What is wrong, and the fix.
    detail: Option<String>,
    /// The account it speaks as (a bot's `@username`).
    account: Option<String>,
    /// The environment variable the daemon reads its secret (or token) from.
    secret_env: String,
    url: Option<String>,
    last_in_at: Option<i64>,
    last_out_at: Option<i64>,
    backlog: u64,
    last_error: Option<String>,
    /// Senders waiting to be let in, with their codes.
    pairings: Vec<Pairing>,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Sub::Pair { name, code }) = args.command {
        return pair(home, &name, &code);
    }
    let store = home.open()?;
    let names: Vec<String> = match &args.name {
        Some(n) => {
            let name = super::parse_name(n)?;
            store.instance(name.as_str())?;
            vec![name.as_str().to_string()]
        }
        None => store.instances()?.into_iter().map(|r| r.name).collect(),
    };
    // What a stopped daemon recorded is not how things stand: nothing receives or sends.
    let daemon_runs =
        crate::infra::blocking::block_on(crate::app::client::DaemonClient::for_home(home).status())
            .is_ok();
    let mut rows = Vec::new();
    for name in names {
        rows.extend(rows_of(home, &store, &name, daemon_runs)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no channels: add a \"channels\" block to an instance's config.json (docs/channels.md)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: Option<i64>| t.map_or_else(|| "never".to_string(), timestamp);
    for r in rows {
        println!("{} {}: {}", r.instance, r.channel, r.state);
        if let Some(d) = &r.detail {
            println!("  problem      {}", escape::line(d));
        }
        if let Some(a) = &r.account {
            println!("  account      {}", escape::line(a));
        }
        println!("  secret from  ${}", r.secret_env);
        if let Some(url) = &r.url {
            println!("  answers to   {}", escape::line(url));
        }
        println!("  last in      {}", when(r.last_in_at));
        println!("  last out     {}", when(r.last_out_at));
        println!("  backlog      {}", r.backlog);
        if let Some(e) = &r.last_error {
            println!("  last error   {}", escape::line(e));
        }
        for p in &r.pairings {
            println!(
                "  waiting      {} ({}) — let in with: supervisor channels pair {} {}",
                escape::line(&p.name),
                p.sender,
                r.instance,
                p.code
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rows_of(
    home: &Home,
    store: &Store,
    name: &str,
    daemon_runs: bool,
) -> anyhow::Result<Vec<ChannelRow>> {
    let iname = super::parse_name(name)?;
    // A config that does not load shows no channels here; `config check` says why.
    let Ok(config) = InstanceConfig::load(&home.instance_paths(&iname).config) else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for h in crate::app::channels::health::of_instance(store, name, &config.channels)? {
        let h = if daemon_runs { h } else { h.without_daemon() };
        let pairings = store
            .pairings(name)?
            .into_iter()
            .filter(|p| p.channel == h.channel)
            .collect();
        rows.push(ChannelRow {
            instance: name.to_string(),
            channel: h.channel,
            last_in_at: store.last_inbound_at(name, h.channel)?,
            state: h.state,
            detail: h.detail,
            account: h.account,
            secret_env: h.secret_env,
            url: h.url,
            last_out_at: h.backlog.last_sent_at,
            backlog: h.backlog.pending,
            last_error: h.backlog.last_error,
            pairings,
        });
    }
    Ok(rows)
}

/// Lets in the sender pairing `code` of instance `name` was given to: the sender joins
/// `allow_from` in config.json (replaced atomically, validated first), then the code is spent.
fn pair(home: &Home, name: &str, code: &str) -> anyhow::Result<ExitCode> {
    let iname = super::parse_name(name)?;
    let mut store = home.open()?;
    store.instance(iname.as_str())?;
    let canonical = crate::domain::telegram::normalize_code(code).ok_or_else(|| {
        anyhow::anyhow!(
            "{:?} is not a pairing code: expected {} letters and digits, as the bot sent them",
            escape::line(code),
            crate::domain::telegram::CODE_LEN
        )
    })?;
    let Some(p) = store.pairing(iname.as_str(), &canonical)? else {
        anyhow::bail!(
            "no pairing code {canonical} waits for {name}: it may have expired (codes last an \
             hour) or been used; ask the sender to write to the bot again for a new one \
             (`supervisor channels {name}` lists the codes waiting)"
        );
    };
    let path = home.instance_paths(&iname).config;
    let original =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    // The bytes read are the ones judged, and the ones checked unchanged before the write.
    let mut config = InstanceConfig::parse(&original)
        .with_context(|| format!("{} must be valid to add a sender to it", path.display()))?;
    let already = crate::app::router::policy::allowed(&config.allow_from, &p.sender);
    if !already {
        config.allow_from.push(p.sender.clone());
        config
            .validate()
            .with_context(|| format!("{} with {} added", path.display(), p.sender))?;
        // Someone may be editing it right now: their change is never overwritten.
        let now =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        anyhow::ensure!(
            now == original,
            "{} changed meanwhile; run the command again",
            path.display()
        );
        crate::infra::fsutil::write_atomic(&path, config.to_json_pretty().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    store.pairing_used(&p, super::CLI_ACTOR)?;
    println!(
        "{} ({}) may now talk to {name}: {} is in allow_from in {}{}",
        escape::line(&p.name),
        p.channel,
        p.sender,
        path.display(),
        if already { " (it already was)" } else { "" }
    );
    println!("a running daemon applies it at once; they can write to the bot again");
    Ok(ExitCode::SUCCESS)
}
