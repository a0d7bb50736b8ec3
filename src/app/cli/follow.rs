//! What `events -f` and `history -f` share. Both follow the database, not the daemon: every
//! event and message is committed there first, whoever records it (the daemon, a CLI
//! command, a restore), and the file stays while the daemon restarts, so a follower neither
//! misses nor repeats anything across a restart.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

/// How often a follower looks for new rows: often enough to feel live, rarely enough to
/// cost nothing (one indexed query).
pub const POLL: Duration = Duration::from_millis(500);

/// One JSON object on its own line (JSON Lines), as `--json` prints while following: a
/// reader can take each line as it comes.
pub fn json_line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string(value)?)?;
    Ok(())
}
