//! `send`: a message for an instance. Through the daemon when one runs; otherwise committed to
//! the store directly, to be answered when the daemon starts. Nothing is lost either way, and
//! nothing is stored twice: the message carries one id through every attempt, so a send whose
//! daemon died mid-request is simply sent again. Either way the message goes through the one
//! way in (`accept`), and is judged by the instance's last valid config.

use std::process::ExitCode;

use crate::app::accept::{self, AcceptError, Incoming, MAX_MESSAGE_BYTES};
use crate::app::client::{ClientError, DaemonClient};
use crate::app::daemon::api::{SendRequest, SendResponse, LOCAL_SENDER};
use crate::app::instances::last_good::LastGoodConfigs;
use crate::infra::home::Home;

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

/// The channel the CLI's messages come in on.
const CHANNEL: &str = "cli";

pub fn run(home: &Home, mut args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    if args.text == "-" {
        args.text = read_stdin()?;
    }
    match accept::check(&args.text, args.id.as_deref()) {
        Err(AcceptError::Empty) => {
            anyhow::bail!(
                "{} (or `-` to read it from standard input)",
                AcceptError::Empty
            )
        }
        checked => checked?,
    }
    let id = args.id.clone().unwrap_or_else(crate::domain::ids::new_id);
    let request = request(&args.text, id.clone(), args.wait, args.timeout);
    let client = DaemonClient::for_home(home);
    let response = match send_with_retry(&client, name.as_str(), &request) {
        Ok(r) => r,
        Err(e @ ClientError::NotRunning { .. }) => {
            // The daemon's own way in, so that the message is judged as the daemon would
            // judge it (by the last valid config); the daemon finds it waiting when it starts.
            let mut store = home.open()?;
            let incoming = Incoming {
                instance: &name,
                channel: CHANNEL,
                sender: LOCAL_SENDER,
                text: &args.text,
                chat: "",
                id: Some(&id),
                addressed: crate::app::router::policy::Addressed::ByTrigger,
                sender_name: None,
                title: None,
            };
            let accepted =
                accept::accept(&mut store, home, &LastGoodConfigs::default(), &incoming)?;
            let row = accepted.row;
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

/// The operator's message `text` under `id`, as the daemon is asked to take it.
pub(super) fn request(text: &str, id: String, wait: bool, timeout_secs: u64) -> SendRequest {
    SendRequest {
        text: text.to_string(),
        sender: Some(LOCAL_SENDER.into()),
        channel: Some(CHANNEL.into()),
        wait,
        timeout_secs: Some(timeout_secs),
        id: Some(id),
    }
}

/// Sends through the daemon, again when it fails mid-request (it may be restarting). Safe
/// because the request carries its message's id: a message stored by a try whose answer was
/// lost is not stored again.
pub(super) fn send_with_retry(
    client: &DaemonClient,
    name: &str,
    request: &SendRequest,
) -> Result<SendResponse, ClientError> {
    let mut attempt = 1;
    loop {
        match crate::infra::blocking::block_on(client.send(name, request)) {
            Err(ClientError::Transport(e)) if attempt < TRIES => {
                tracing::debug!(error = %e, attempt, "the daemon failed mid-request; sending again");
                attempt += 1;
                std::thread::sleep(RETRY_PAUSE);
            }
            other => return other,
        }
    }
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
