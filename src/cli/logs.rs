use std::io::Write;
use std::process::ExitCode;

use futures_util::StreamExt;

use crate::docker::{self, container::LogChunk, container::OwnedContainer};
use crate::home::Home;
use crate::render::escape::{self, Utf8Stream};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance whose container output to print
    pub name: String,
    /// Keep printing new output
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let mut store = home.open()?;
    store.instance(name.as_str())?;
    let home_id = store.home_id()?;
    let config = home.host_config()?;
    docker::block_on(async {
        let client = docker::connect(&config.docker).await?;
        let owned = docker::container::list_owned(&client, &home_id).await?;
        let c = newest_container(&owned, name.as_str())?;
        let mut stream = std::pin::pin!(docker::container::logs(
            &client,
            &c.id,
            args.tail,
            args.follow
        ));
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        // The container's output is the agent's (and whatever it runs): its escape
        // sequences are shown, not obeyed. Each stream decodes on its own, as characters
        // may be split across its chunks.
        let (mut out_text, mut err_text) = (Utf8Stream::default(), Utf8Stream::default());
        while let Some(chunk) = stream.next().await {
            match chunk? {
                LogChunk::Stdout(b) => {
                    out.write_all(escape::text(&out_text.push(&b)).as_bytes())?
                }
                LogChunk::Stderr(b) => {
                    err.write_all(escape::text(&err_text.push(&b)).as_bytes())?
                }
            }
        }
        out.write_all(escape::text(&out_text.finish()).as_bytes())?;
        err.write_all(escape::text(&err_text.finish()).as_bytes())?;
        out.flush()?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The container whose output an instance's logs are: its newest, running or stopped, so
/// that the output of one that exited can still be read. `status --watch` shows the same.
pub(super) fn newest_container<'a>(
    owned: &'a [OwnedContainer],
    name: &str,
) -> anyhow::Result<&'a OwnedContainer> {
    owned
        .iter()
        .filter(|c| c.instance == name)
        .max_by_key(|c| c.created)
        .ok_or_else(|| {
            anyhow::anyhow!("{name} has no container yet (start it with `supervisor start {name}`)")
        })
}
