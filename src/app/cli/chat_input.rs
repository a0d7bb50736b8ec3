//! Where `chat` reads its lines. At a terminal: a line editor (rustyline) with the usual
//! keys (arrows, Home/End, Ctrl-A/E/W/U, Ctrl-R to search) and a history of what was typed
//! to this instance, kept across chats. From a pipe or a file: plain lines, as ever, with
//! no prompt and no history, so scripts see exactly what they fed in.
//!
//! The history lives in the instance's own directory, beside its config.json: the
//! supervisor's, never mounted into a container, so no agent can read what the operator
//! typed there or swap the file for a link. It goes with the instance when it is removed
//! (archived or purged).

use std::io::BufRead;
use std::path::PathBuf;

use rustyline::config::{Behavior, Config};
use rustyline::error::ReadlineError;
use rustyline::history::{DefaultHistory, History};
use rustyline::Editor;

/// The history file's name in `instances/<name>/`.
pub const HISTORY_FILE: &str = "chat_history";
/// Lines kept in it.
const HISTORY_LINES: usize = 1000;
const PROMPT: &str = "you> ";

/// Whether a line goes into the history: a message does, a blank line or the way out
/// (`/quit`, `/exit`) does not.
fn remembered(line: &str) -> bool {
    !matches!(line.trim(), "" | "/quit" | "/exit")
}

pub enum ChatInput {
    Terminal {
        editor: Box<Editor<(), DefaultHistory>>,
        history: PathBuf,
    },
    Plain(std::io::StdinLock<'static>),
}

impl ChatInput {
    /// A line editor when stdin is a terminal, plain lines otherwise.
    pub fn new(interactive: bool, instance_dir: PathBuf) -> anyhow::Result<Self> {
        if !interactive {
            return Ok(Self::Plain(std::io::stdin().lock()));
        }
        let config = Config::builder()
            // The prompt and the echo go to the terminal even when stdout is a file, so
            // that `chat alice > log` keeps only the answers.
            .behavior(Behavior::PreferTerm)
            .max_history_size(HISTORY_LINES)?
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .auto_add_history(false)
            .build();
        let mut editor = Box::new(Editor::with_config(config)?);
        let history = instance_dir.join(HISTORY_FILE);
        match editor.load_history(&history) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "note: cannot read the chat history {}: {e}; starting without it",
                history.display()
            ),
        }
        Ok(Self::Terminal { editor, history })
    }

    /// The next line, without its line ending; None at the end of input (Ctrl-D, or
    /// Ctrl-C at the prompt).
    pub fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        match self {
            Self::Plain(stdin) => {
                let mut line = String::new();
                if stdin.read_line(&mut line)? == 0 {
                    return Ok(None);
                }
                Ok(Some(line))
            }
            Self::Terminal { editor, history } => match editor.readline(PROMPT) {
                Ok(line) => {
                    if remembered(&line) && editor.history_mut().add(&line)? {
                        // Saved line by line, so that a chat that is killed keeps its lines.
                        if let Err(e) = editor.append_history(history) {
                            eprintln!(
                                "note: cannot save the chat history {}: {e}",
                                history.display()
                            );
                        }
                    }
                    Ok(Some(line))
                }
                Err(ReadlineError::Eof | ReadlineError::Interrupted) => Ok(None),
                Err(e) => Err(e.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_remembered_and_the_way_out_is_not() {
        assert!(super::remembered("what is on my list?"));
        assert!(super::remembered("/quitting time"));
        for line in ["", "   ", "/quit", " /exit "] {
            assert!(!super::remembered(line), "{line:?}");
        }
    }
}
