//! Running a command in a running container with the caller's input and output attached:
//! `supervisor exec` and `supervisor shell`. Unlike [`super::exec`], nothing is bounded or
//! timed: a person is at the other end, and the command ends when they end it.

use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::exec::ExecError;

/// What to run, as whom, and how.
#[derive(Debug, Clone)]
pub struct Attached {
    pub cmd: Vec<String>,
    /// `uid:gid`.
    pub user: String,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: String,
    /// A pseudo-terminal of this size (columns, rows); None: plain pipes, stderr apart.
    pub tty: Option<(u16, u16)>,
}

/// Output of the command, as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
}

/// Runs `what` in the running container `id`. Each chunk received on `input` goes to the
/// command's stdin, and the end of `input` (its sender dropped) closes it; every chunk of
/// output goes to `output`; each size received on `resize` (columns, rows) becomes the
/// terminal's. Returns the command's exit code once its output has ended.
pub async fn run(
    docker: &Docker,
    id: &str,
    what: &Attached,
    mut input: mpsc::Receiver<Vec<u8>>,
    mut resize: mpsc::Receiver<(u16, u16)>,
    mut output: impl FnMut(Output) -> std::io::Result<()>,
) -> Result<i64, ExecError> {
    let err_id = || id.to_string();
    let options = CreateExecOptions {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(what.tty.is_some()),
        privileged: Some(false),
        cmd: Some(what.cmd.clone()),
        user: Some(what.user.clone()),
        env: Some(what.env.clone()),
        working_dir: Some(what.working_dir.clone()),
        ..Default::default()
    };
    let (exec, started) = super::exec::create_and_start(docker, id, options).await?;
    let StartExecResults::Attached {
        output: mut stream,
        input: mut stdin,
    } = started
    else {
        return Err(ExecError::NotAttached { id: err_id() });
    };
    if let Some((width, height)) = what.tty {
        // Best effort: a terminal of the wrong size still works, only less well.
        let _ = docker
            .resize_exec(&exec, ResizeExecOptions { height, width })
            .await;
    }
    let forward = async {
        while let Some(chunk) = input.recv().await {
            if stdin.write_all(&chunk).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
        // The end of our input is the end of the command's: it sees end-of-file.
        let _ = stdin.shutdown().await;
        // Then only the output decides when this ends.
        std::future::pending::<()>().await
    };
    let resizing = async {
        while let Some((width, height)) = resize.recv().await {
            if what.tty.is_some() {
                let _ = docker
                    .resize_exec(&exec, ResizeExecOptions { height, width })
                    .await;
            }
        }
        std::future::pending::<()>().await
    };
    let receive = async {
        while let Some(item) = stream.next().await {
            let item = item.map_err(|source| ExecError::Output {
                id: err_id(),
                source,
            })?;
            let chunk = match item {
                bollard::container::LogOutput::StdErr { message } => Output::Stderr(message),
                other => Output::Stdout(other.into_bytes()),
            };
            // A reader that went away (a closed pipe) ends the session like the command's end.
            if output(chunk).is_err() {
                break;
            }
        }
        Ok::<(), ExecError>(())
    };
    tokio::select! {
        result = receive => result?,
        _ = forward => unreachable!("forwarding input never ends by itself"),
        _ = resizing => unreachable!("following the size never ends by itself"),
    }
    loop {
        let inspect = docker
            .inspect_exec(&exec)
            .await
            .map_err(|source| ExecError::Inspect {
                id: err_id(),
                source,
            })?;
        if inspect.running != Some(true) {
            // No exit code from an ended exec means the engine lost track of it.
            return Ok(inspect.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
