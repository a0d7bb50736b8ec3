//! `status`: the operator's view of the daemon, the engine and every instance.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (fields in docs/cli.md)
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// A live dashboard in the terminal, refreshed in place; q quits
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch (at least 0.5)
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = interval, requires = "watch")]
    pub interval: Duration,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    if args.watch && !std::io::stdout().is_terminal() {
        // Raw mode and the alternate screen would only send escape codes down the pipe.
        anyhow::bail!(
            "--watch needs a terminal, and stdout is not one (`status` or `status --json` print once)"
        );
    }
    let report = crate::app::status::gather(home)?;
    if args.watch {
        crate::app::tui::run(home, report, args.interval).context("the dashboard failed")?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!(
            "{}",
            crate::app::render::status::status_text(&report, home.root(), colour)
        );
    }
    Ok(exit_code(&report))
}

/// What a script checking on the home can act on without reading the table.
pub const EXIT_INSTANCE_IN_ERROR: u8 = 3;

/// 0, or [`EXIT_INSTANCE_IN_ERROR`] when an instance shown is in `error`.
fn exit_code(report: &crate::app::status::StatusReport) -> ExitCode {
    if report
        .instances
        .iter()
        .any(|i| i.state == crate::domain::instance::state::InstanceState::Error)
    {
        ExitCode::from(EXIT_INSTANCE_IN_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--interval`: seconds, fractions allowed; under half a second the refreshes (a store
/// read and a daemon query each) would cost more than they show.
fn interval(raw: &str) -> Result<Duration, String> {
    let secs: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
    // NaN compares false both ways: ask for a number at least 0.5, not "not below it".
    if secs.is_nan() || secs < 0.5 {
        return Err(format!("{raw} is too short: at least 0.5"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{raw} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(interval("0.4").unwrap_err().contains("at least 0.5"));
        assert!(interval("NaN").is_err());
        assert!(interval("-1").is_err());
        assert!(interval("two").unwrap_err().contains("not a number"));
        assert!(interval("1e300").unwrap_err().contains("too long"));
    }
}
