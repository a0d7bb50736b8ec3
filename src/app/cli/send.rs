//! `send`: a message for an instance. Through the daemon when one runs; otherwise committed to
//! the store directly, to be answered when the daemon starts. Nothing is lost either way, and
//! nothing is stored twice: the message carries one id through every attempt, so a send whose
//! daemon died mid-request is simply sent again.

use std::process::ExitCode;

use crate::app::client::{ClientError, DaemonClient};
use crate::app::daemon::api::{
    SendRequest, SendResponse, EMPTY_MESSAGE, LOCAL_SENDER, MAX_MESSAGE_BYTES,
};
use crate::app::router::policy;
use crate::domain::instance::InstanceConfig;
use crate::infra::home::Home;
use crate::infra::store::messages::{is_valid_message_id, new_message_id, Inbound};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance to send the message to
    pub name: String,
    /// The message; `-` reads it from standard input
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
    /// The message's id (1-64 letters, digits, - or _); sending the same id and text again
    /// stores nothing new [default: a fresh id]
    #[arg(long)]
    pub id: Option<String>,
}

/// How often a send is tried when the daemon fails mid-request (it may be restarting), and
/// how long to wait between tries.
const TRIES: u32 = 5;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

pub fn run(home: &Home, mut args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    if args.text == "-" {
        args.text = read_stdin()?;
    }
    if args.text.trim().is_empty() {
        anyhow::bail!("{EMPTY_MESSAGE} (or `-` to read it from standard input)");
    }
    if let Some(id) = &args.id {
        if !is_valid_message_id(id) {
            anyhow::bail!("message id {id:?}: expected 1 to 64 letters, digits, - or _");
        }
    }
    let id = args.id.clone().unwrap_or_else(new_message_id);
    let request = SendRequest {
        text: args.text.clone(),
        sender: Some(LOCAL_SENDER.into()),
        channel: Some("cli".into()),
        wait: args.wait,
        timeout_secs: Some(args.timeout),
        id: Some(id.clone()),
    };
    let client = DaemonClient::for_home(home);
    let mut attempt = 1;
    let sent = loop {
        match crate::infra::blocking::block_on(client.send(name.as_str(), &request)) {
            Err(ClientError::Transport(e)) if attempt < TRIES => {
                tracing::debug!(error = %e, attempt, "the daemon failed mid-request; sending again");
                attempt += 1;
                std::thread::sleep(RETRY_PAUSE);
            }
            other => break other,
        }
    };
    let response = match sent {
        Ok(r) => r,
        Err(e @ ClientError::NotRunning { .. }) => {
            if args.text.len() > MAX_MESSAGE_BYTES {
                anyhow::bail!("a message may carry at most {MAX_MESSAGE_BYTES} bytes");
            }
            let mut store = home.open()?;
            store.instance(name.as_str())?;
            let config = InstanceConfig::load(&home.instance_paths(&name).config)?;
            let disposition = policy::classify(&config, LOCAL_SENDER, &args.text);
            let row = store.accept_message_once(
                &id,
                &Inbound {
                    instance: name.as_str(),
                    channel: "cli",
                    sender: LOCAL_SENDER,
                    body: &args.text,
                    state: disposition.state(),
                },
            )?;
            if args.wait {
                anyhow::bail!(
                    "cannot wait for an answer: {e}; message {} is stored and will be answered once a daemon runs",
                    row.id
                );
            }
            eprintln!(
                "note: message {} saved; it is answered once a daemon runs ({e})",
                row.id
            );
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
        // The agent wrote it: escape sequences in it are shown, not obeyed.
        println!("{}", crate::domain::escape::text(reply));
    } else {
        println!("message {} is {}", response.id, response.state);
    }
    Ok(if response.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The message from standard input (`send NAME -`), without the line end that `echo` or a
/// here-document leaves after it. Read up to one byte past the limit, so an endless stream is
/// refused rather than held in memory.
fn read_stdin() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the message from standard input: {e}"))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        anyhow::bail!("a message may carry at most {MAX_MESSAGE_BYTES} bytes");
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the message on standard input is not UTF-8 text"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}
