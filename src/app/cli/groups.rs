//! `supervisor groups NAME`: an instance's chat groups (`"isolation": "chat"`), one row each.

use std::process::ExitCode;

use comfy_table::presets::NOTHING;
use comfy_table::Table;
use serde::Serialize;

use crate::domain::format;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance whose groups to list
    pub name: String,
    /// Print JSON (an array of objects; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

/// One group, as listed.
#[derive(Debug, Serialize)]
struct Row {
    /// The group's instance name (`<instance>_<key>`): what `stop`, `logs`, `history`,
    /// `show` and `remove` take.
    name: String,
    key: String,
    chat: String,
    title: Option<String>,
    state: String,
    desired_state: String,
    last_activity_at: Option<i64>,
    messages: i64,
    tokens_today: i64,
    /// Bytes its workspace and queues use, as the daemon last measured them; None when no
    /// daemon runs or it has not measured them yet.
    disk_bytes: Option<u64>,
    uid: u32,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    if name.is_group() {
        anyhow::bail!(
            "{name} is a group itself: list the groups of its instance, {}",
            name.root().expect("a group has an instance")
        );
    }
    let store = home.open()?;
    store.instance(name.as_str())?;
    let day_start = crate::domain::clock::day_start(crate::infra::store::now_ms());
    // Disk use as the daemon last measured it: measuring here would mount every idle
    // group's disk image.
    let disk =
        crate::infra::blocking::block_on(crate::app::client::DaemonClient::for_home(home).status())
            .map(|live| live.disk)
            .unwrap_or_default();
    let rows: Vec<Row> = store
        .group_rows(name.as_str(), day_start)?
        .into_iter()
        .filter_map(|g| {
            let r = g.record;
            let of = r.group?;
            Some(Row {
                key: crate::domain::instance::InstanceName::parse(&r.name)
                    .ok()
                    .and_then(|n| n.key().map(str::to_string))
                    .unwrap_or_default(),
                disk_bytes: disk.get(&r.name).map(|d| d.used_bytes),
                name: r.name,
                chat: of.chat,
                title: of.title,
                state: r.state.to_string(),
                desired_state: r.desired_state.to_string(),
                last_activity_at: r.last_activity_at,
                messages: g.messages,
                tokens_today: g.tokens_today,
                uid: r.uid,
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&name.to_string(), &rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(instance: &str, rows: &[Row]) -> String {
    if rows.is_empty() {
        return format!(
            "{instance} has no chat groups (with \"isolation\": \"chat\" in its config.json, each chat that talks to it gets one)\n"
        );
    }
    let mut table = Table::new();
    table.load_style(NOTHING).set_header([
        "NAME",
        "TITLE",
        "CHAT",
        "STATE",
        "LAST ACTIVITY",
        "MESSAGES",
        "TOKENS TODAY",
        "DISK",
    ]);
    for r in rows {
        table.add_row([
            r.name.clone(),
            r.title.clone().unwrap_or_else(|| "-".into()),
            r.chat.clone(),
            r.state.clone(),
            r.last_activity_at
                .map_or_else(|| "-".into(), format::timestamp),
            r.messages.to_string(),
            r.tokens_today.to_string(),
            r.disk_bytes.map_or_else(|| "-".into(), format::bytes),
        ]);
    }
    crate::app::render::flush_left(table)
}
