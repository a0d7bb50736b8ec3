//! `db`: maintenance of the home's database.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::infra::home::Home;
use crate::infra::store::prune::{Checkpoint, Cutoff, PruneCounts};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Delete finished messages, task runs, events and usage older than an age
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Delete rows older than this (at least 1 day: 30d, 12w, 90days)
    #[arg(long, value_name = "AGE")]
    pub older_than: String,
    /// Count what would be deleted; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also rewrite the database file to give the freed space back (needs a quiet moment)
    #[arg(long, conflicts_with = "dry_run")]
    pub vacuum: bool,
    /// Print JSON: {"dry_run","older_than","cutoff","usage_cutoff","deleted","checkpoint","vacuumed"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Prune(args) => prune(home, args),
    }
}

/// Reads an age such as `30d` or `12w`.
fn parse_age(raw: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(raw.trim()).map_err(|e| {
        anyhow::anyhow!(
            "--older-than: expected an age like 30d, 12w or 90days, got {raw:?} ({})",
            crate::domain::duration_words::why_not(raw.trim(), &e)
        )
    })
}

#[derive(serde::Serialize)]
struct Outcome<'a> {
    dry_run: bool,
    older_than: &'a str,
    cutoff: i64,
    usage_cutoff: i64,
    deleted: PruneCounts,
    checkpoint: Option<Checkpoint>,
    vacuumed: bool,
}

fn prune(home: &Home, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let age = parse_age(&args.older_than)?;
    let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = Cutoff::new(crate::infra::store::now_ms(), age_ms, &args.older_than)?;
    let mut store = home.open()?;
    let (deleted, checkpoint) = if args.dry_run {
        (store.prune_counts(&cutoff)?, None)
    } else {
        let deleted = store
            .prune(&cutoff, super::CLI_ACTOR)
            .context("pruning the database failed; nothing was deleted")?;
        (deleted, Some(store.checkpoint_truncate()?))
    };
    if args.vacuum {
        store.vacuum().context(
            "the rows are deleted, but VACUUM failed (try again when the daemon is quiet)",
        )?;
    }
    let outcome = Outcome {
        dry_run: args.dry_run,
        older_than: &args.older_than,
        cutoff: cutoff.before,
        usage_cutoff: cutoff.usage_before,
        deleted,
        checkpoint,
        vacuumed: args.vacuum,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print!("{}", render(&outcome));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(o: &Outcome) -> String {
    let when = chrono::DateTime::from_timestamp_millis(o.cutoff)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let verb = if o.dry_run { "would delete" } else { "deleted" };
    let d = &o.deleted;
    let mut out = format!("{verb} (older than {}, before {when}):\n", o.older_than);
    for (table, n) in [
        ("messages", d.messages),
        ("task_runs", d.task_runs),
        ("events", d.events),
        ("model_usage", d.model_usage),
        ("web_requests", d.web_requests),
    ] {
        out.push_str(&format!("  {table:<12} {n}\n"));
    }
    if let Some(c) = o.checkpoint {
        out.push_str(if c.busy {
            "the WAL is in use and was not truncated; a later checkpoint shrinks it\n"
        } else {
            "WAL checkpointed and truncated\n"
        });
    }
    if o.vacuumed {
        out.push_str("database vacuumed\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::prune::{PruneError, MIN_AGE_MS};

    #[test]
    fn ages_parse_in_humane_units() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(
            parse_age("90days").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_age(" 1d 12h ").unwrap(),
            Duration::from_secs(36 * 3_600)
        );
        for bad in ["", "30", "thirty days", "-1d", "30x"] {
            let e = parse_age(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("--older-than: expected an age"),
                "{bad:?}: {e}"
            );
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn less_than_a_day_is_refused_in_one_line() {
        let now = 100 * MIN_AGE_MS;
        for raw in ["23h", "1h", "0s", "86399s"] {
            let age = parse_age(raw).unwrap().as_millis() as i64;
            let e = Cutoff::new(now, age, raw).unwrap_err();
            assert!(matches!(e, PruneError::TooRecent { .. }), "{raw}");
            let text = e.to_string();
            assert!(text.contains("at least 1 day") && text.contains(raw) && !text.contains('\n'));
        }
        let day = parse_age("1d").unwrap().as_millis() as i64;
        assert_eq!(
            Cutoff::new(now, day, "1d").unwrap().before,
            now - MIN_AGE_MS
        );
    }
}
