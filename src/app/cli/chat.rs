//! `chat`: an interactive conversation, one line one message. The history lives in the
//! store, so a chat can be left and picked up again (`history` shows it).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::chat_input::ChatInput;
use super::send::{request, send_with_retry};
use crate::app::client::DaemonClient;
use crate::domain::escape;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance to talk with
    pub name: String,
    /// How long to wait for each answer, in seconds
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    home.open()?.instance(name.as_str())?;
    let client = DaemonClient::for_home(home);
    // Fail early, before the user types anything, when no answer can come.
    super::can_answer::ensure(home, &client, name.as_str())?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("chatting with {name}; /quit or Ctrl-D to leave");
    }
    let mut input = ChatInput::new(interactive, home.instance_paths(&name).dir)?;
    let mut out = std::io::stdout();
    while let Some(line) = input.next_line()? {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text == "/quit" || text == "/exit" {
            break;
        }
        // Its own id, so that a line sent again (the daemon failed mid-request) is one message.
        let request = request(text, crate::domain::ids::new_id(), true, args.timeout);
        match send_with_retry(&client, name.as_str(), &request) {
            Ok(resp) => match resp.reply {
                // The agent wrote it: escape sequences in it are shown, not obeyed.
                Some(reply) => writeln!(out, "{name}> {}", escape::text(&reply))?,
                None => writeln!(out, "({} is {})", resp.id, resp.state)?,
            },
            Err(e) => eprintln!("error: {}", escape::line(&e.to_string())),
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
