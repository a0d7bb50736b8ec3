//! `send`: a message for an instance. Through the daemon when one runs; otherwise committed to
//! the store directly, to be answered when the daemon starts. Nothing is lost either way.

use std::process::ExitCode;

use crate::daemon::api::{SendRequest, SendResponse, MAX_MESSAGE_BYTES};
use crate::daemon::client::{ClientError, DaemonClient};
use crate::docker;
use crate::home::Home;
use crate::instance::InstanceConfig;
use crate::router::policy;
use crate::store::messages::Inbound;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub name: String,
    /// The message
    pub text: String,
    /// Print the answer (waits for the turn to finish)
    #[arg(long)]
    pub wait: bool,
    /// Print JSON: {"id","instance","state","reply","failed","latency_ms"}
    #[arg(long)]
    pub json: bool,
    /// How long --wait waits, in seconds
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let request = SendRequest {
        text: args.text.clone(),
        sender: "local".into(),
        channel: "cli".into(),
        wait: args.wait,
        timeout_secs: Some(args.timeout),
    };
    let client = DaemonClient::for_home(home);
    let response = match docker::block_on(client.send(name.as_str(), &request)) {
        Ok(r) => r,
        Err(e @ ClientError::NotRunning { .. }) => {
            if args.text.len() > MAX_MESSAGE_BYTES {
                anyhow::bail!("a message may carry at most {MAX_MESSAGE_BYTES} bytes");
            }
            let mut store = home.open()?;
            store.instance(name.as_str())?;
            let config = InstanceConfig::load(&home.instance_paths(&name).config)?;
            let disposition = policy::classify(&config, "local", &args.text);
            let row = store.accept_message(&Inbound {
                instance: name.as_str(),
                channel: "cli",
                sender: "local",
                body: &args.text,
                state: disposition.state(),
            })?;
            eprintln!(
                "note: message {} saved; it is answered once a daemon runs ({e})",
                row.id
            );
            if args.wait {
                anyhow::bail!("cannot wait for an answer: no daemon is running");
            }
            SendResponse {
                id: row.id,
                instance: name.to_string(),
                state: row.state,
                reply: None,
                failed: false,
                latency_ms: None,
            }
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string(&response)?);
    } else if let Some(reply) = &response.reply {
        println!("{reply}");
    } else {
        println!("message {} is {}", response.id, response.state);
    }
    Ok(if response.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
