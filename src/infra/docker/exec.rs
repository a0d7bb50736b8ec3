//! Running one command inside a running container through the Engine's exec API, as the
//! container's own user and with its confinement: for looking at the sandbox from the inside
//! (the escape tests). Output is bounded and the whole call has a time limit, so a command
//! that floods or never ends cannot take the caller down with it.

use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

/// The most output kept per stream; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// How often to ask whether the command has ended once its output has closed: the engine
/// can report the exit code a moment after the streams end.
const EXIT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("inspecting container {id} before exec failed: {source}")]
    InspectContainer {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("creating an exec in container {id} failed: {source}")]
    Create {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("starting the exec in container {id} failed: {source}")]
    Start {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("the engine started the exec in container {id} detached, without its output")]
    NotAttached { id: String },
    #[error("reading the output of the exec in container {id} failed: {source}")]
    Output {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("inspecting the exec in container {id} failed: {source}")]
    Inspect {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("the command in container {id} did not end within {after:?} (it may still be running there)")]
    Timeout { id: String, after: Duration },
}

/// How the command ended and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// The first [`OUTPUT_CAP`] bytes of stdout (lossy UTF-8).
    pub stdout: String,
    /// The first [`OUTPUT_CAP`] bytes of stderr (lossy UTF-8).
    pub stderr: String,
    /// True when either stream printed more than was kept.
    pub truncated: bool,
}

/// The first `cap` bytes of a stream, and how many more there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded {
    kept: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl Bounded {
    pub fn new(cap: usize) -> Self {
        Self {
            kept: Vec::new(),
            cap,
            dropped: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        let take = room.min(chunk.len());
        self.kept.extend_from_slice(&chunk[..take]);
        self.dropped += (chunk.len() - take) as u64;
    }

    pub fn kept(&self) -> &[u8] {
        &self.kept
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn into_text(self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

/// Runs `cmd` (argv, no shell) in the running container `id` as the user the container was
/// created with, unprivileged, with no extra environment and no input. Waits at most
/// `timeout` for it to end; on timeout the command is left to the container (the exec API
/// cannot kill it) and [`ExecError::Timeout`] is returned.
pub async fn run(
    docker: &Docker,
    id: &str,
    cmd: &[&str],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    match tokio::time::timeout(timeout, run_to_end(docker, id, cmd)).await {
        Ok(result) => result,
        Err(_) => Err(ExecError::Timeout {
            id: id.to_string(),
            after: timeout,
        }),
    }
}

/// Creates the exec `options` describe in the container `id` and starts it attached: the
/// exec's id and its streams.
pub(super) async fn create_and_start(
    docker: &Docker,
    id: &str,
    options: CreateExecOptions<String>,
) -> Result<(String, StartExecResults), ExecError> {
    let tty = options.tty.unwrap_or(false);
    let exec = docker
        .create_exec(id, options)
        .await
        .map_err(|source| ExecError::Create {
            id: id.to_string(),
            source,
        })?
        .id;
    let started = docker
        .start_exec(
            &exec,
            Some(StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|source| ExecError::Start {
            id: id.to_string(),
            source,
        })?;
    Ok((exec, started))
}

async fn run_to_end(docker: &Docker, id: &str, cmd: &[&str]) -> Result<ExecOutput, ExecError> {
    // The user is named explicitly rather than left to the engine's default, so the command
    // runs as exactly who the agent runs as even if that default changes.
    let user = docker
        .inspect_container(id, None)
        .await
        .map_err(|source| ExecError::InspectContainer {
            id: id.to_string(),
            source,
        })?
        .config
        .and_then(|c| c.user)
        .unwrap_or_default();
    let options = CreateExecOptions {
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        privileged: Some(false),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        user: Some(user),
        ..Default::default()
    };
    let (exec, started) = create_and_start(docker, id, options).await?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(ExecError::NotAttached { id: id.to_string() });
    };
    let mut stdout = Bounded::new(OUTPUT_CAP);
    let mut stderr = Bounded::new(OUTPUT_CAP);
    // Read to the end even past the cap: a command blocked on a full pipe would never end.
    while let Some(item) = output.next().await {
        match item.map_err(|source| ExecError::Output {
            id: id.to_string(),
            source,
        })? {
            bollard::container::LogOutput::StdErr { message } => stderr.push(&message),
            other => stdout.push(&other.into_bytes()),
        }
    }
    let exit_code = loop {
        let inspect = docker
            .inspect_exec(&exec)
            .await
            .map_err(|source| ExecError::Inspect {
                id: id.to_string(),
                source,
            })?;
        if inspect.running != Some(true) {
            // No exit code from an ended exec means the engine lost track of it: say so with
            // a code no real process returns rather than pretend it succeeded.
            break inspect.exit_code.unwrap_or(-1);
        }
        tokio::time::sleep(EXIT_POLL).await;
    };
    let truncated = stdout.dropped() > 0 || stderr.dropped() > 0;
    Ok(ExecOutput {
        exit_code,
        stdout: stdout.into_text(),
        stderr: stderr.into_text(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_cap() {
        let mut b = Bounded::new(10);
        b.push(b"abc");
        b.push(b"");
        b.push(b"defg");
        assert_eq!(b.kept(), b"abcdefg");
        assert_eq!(b.dropped(), 0);
    }

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let mut b = Bounded::new(5);
        b.push(b"abc");
        b.push(b"defg");
        b.push(b"hij");
        assert_eq!(b.kept(), b"abcde");
        assert_eq!(b.dropped(), 5);
        assert_eq!(b.into_text(), "abcde");
    }

    #[test]
    fn exactly_the_cap_is_not_truncation() {
        let mut b = Bounded::new(4);
        b.push(b"abcd");
        assert_eq!((b.kept(), b.dropped()), (&b"abcd"[..], 0));
        b.push(b"e");
        assert_eq!(b.dropped(), 1);
    }

    #[test]
    fn a_zero_cap_keeps_nothing() {
        let mut b = Bounded::new(0);
        b.push(b"xyz");
        assert!(b.kept().is_empty());
        assert_eq!(b.dropped(), 3);
    }

    #[test]
    fn cut_multibyte_text_is_read_lossily() {
        let mut b = Bounded::new(4);
        b.push("añb€".as_bytes());
        // "a" (1) + "ñ" (2) + "b" (1) fit; "€" (3) is dropped whole here by chance of the cap.
        assert_eq!(b.into_text(), "añb");
        let mut b = Bounded::new(2);
        b.push("€".as_bytes());
        assert_eq!(b.into_text(), "\u{fffd}");
    }
}
