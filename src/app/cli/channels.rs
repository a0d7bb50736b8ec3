//! `supervisor channels [NAME]`: each instance's channels, how their way out stands (the
//! outbox's backlog, the last answer sent, the last failure) and when a message last came in.
//! Read from the store and the configs; secrets are named, never read or shown.

use std::process::ExitCode;

use serde::Serialize;

use crate::app::render::timestamp;
use crate::domain::escape;
use crate::domain::instance::InstanceConfig;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this instance's channels
    pub name: Option<String>,
    /// Print JSON (an array of channel objects)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct ChannelRow {
    instance: String,
    channel: &'static str,
    /// `ok`, `failing` (answers are waiting on failed tries) or `receive-only` (no url).
    state: &'static str,
    /// The environment variable the daemon reads the secret from.
    secret_env: String,
    url: Option<String>,
    last_in_at: Option<i64>,
    last_out_at: Option<i64>,
    backlog: u64,
    last_error: Option<String>,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let store = home.open()?;
    let names: Vec<String> = match &args.name {
        Some(n) => {
            let name = super::parse_name(n)?;
            store.instance(name.as_str())?;
            vec![name.as_str().to_string()]
        }
        None => store.instances()?.into_iter().map(|r| r.name).collect(),
    };
    let mut rows = Vec::new();
    for name in names {
        let iname = super::parse_name(&name)?;
        // A config that does not load shows no channels here; `config check` says why.
        let Ok(config) = InstanceConfig::load(&home.instance_paths(&iname).config) else {
            continue;
        };
        if let Some(w) = config.channels.webhook {
            let backlog = store.backlog(&name, "webhook")?;
            let state = match (&w.url, &backlog.last_error) {
                (None, _) => "receive-only",
                (Some(_), Some(_)) => "failing",
                (Some(_), None) => "ok",
            };
            rows.push(ChannelRow {
                last_in_at: store.last_inbound_at(&name, "webhook")?,
                instance: name.clone(),
                channel: "webhook",
                state,
                secret_env: w.secret_env,
                url: w.url,
                last_out_at: backlog.last_sent_at,
                backlog: backlog.pending,
                last_error: backlog.last_error,
            });
        }
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
    }
    Ok(ExitCode::SUCCESS)
}
