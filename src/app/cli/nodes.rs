//! `supervisor nodes`: the swarm's nodes (`[engine] kind = "swarm"`), one row each, with the
//! instances of this home whose task runs there.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use comfy_table::presets::NOTHING;
use comfy_table::Table;
use serde::Serialize;

use crate::domain::engine_config::EngineKind;
use crate::infra::docker::{self, swarm::nodes::NodeView};
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (`{"nodes": [...]}`; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

/// How long the engine has to answer, all questions together.
const ENGINE_WAIT: Duration = Duration::from_secs(15);

/// How many instance names a row of the table shows before it only counts them.
const NAMES_SHOWN: usize = 3;

/// One node, as listed.
#[derive(Debug, Serialize)]
struct Row {
    #[serde(flatten)]
    node: NodeView,
    /// This home's instances whose task runs (or is meant to run) on it, sorted.
    instances: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Listing {
    nodes: Vec<Row>,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let host = home.host_config()?;
    if host.engine.kind != EngineKind::Swarm {
        anyhow::bail!(
            "the engine is this host's Docker (engine.kind = \"docker\"): there are no nodes; see docs/scale.md"
        );
    }
    let home_id = home.open()?.home_id()?;
    let endpoint = docker::endpoint(&host.docker);
    let asked = crate::infra::blocking::block_on(async {
        tokio::time::timeout(ENGINE_WAIT, async {
            let client = docker::connect(&host.docker).await?;
            let nodes = docker::swarm::nodes::list(&client).await?;
            let settings = docker::swarm::Settings::of(&host, home.root())
                .expect("the engine is a swarm (checked above)");
            let engine = docker::swarm::SwarmEngine::connect(client, settings).await?;
            let placed = engine.instances_by_node(&home_id).await?;
            Ok::<_, docker::DockerError>((nodes, placed))
        })
        .await
    });
    let (nodes, placed) = asked
        .map_err(|_| {
            anyhow::anyhow!(
                "the engine at {endpoint} did not answer within {} s",
                ENGINE_WAIT.as_secs()
            )
        })?
        .with_context(|| format!("cannot list the swarm's nodes through {endpoint}"))?;
    let listing = Listing {
        nodes: rows(nodes, placed),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else {
        print!("{}", table(&listing.nodes));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "the swarm lists no nodes\n".to_string();
    }
    let mut table = Table::new();
    table.load_style(NOTHING).set_header([
        "NODE",
        "ID",
        "ROLE",
        "STATE",
        "AVAILABILITY",
        "ADDRESS",
        "ENGINE",
        "LABELS",
        "INSTANCES",
    ]);
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    for r in rows {
        let n = &r.node;
        let role = if n.leader {
            format!("{}*", n.role)
        } else {
            n.role.clone()
        };
        let labels = n
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        table.add_row([
            or_dash(&n.hostname),
            n.short_id().to_string(),
            role,
            n.state.clone(),
            n.availability.clone(),
            or_dash(&n.addr),
            or_dash(&n.engine_version),
            or_dash(&labels),
            instances_cell(&r.instances),
        ]);
    }
    crate::app::render::flush_left(table)
}

/// `alice, bob`, or past [`NAMES_SHOWN`] names `12: alice, bob, carol, …`.
fn instances_cell(names: &[String]) -> String {
    match names.len() {
        0 => "-".to_string(),
        n if n <= NAMES_SHOWN => names.join(", "),
        n => format!("{n}: {}, …", names[..NAMES_SHOWN].join(", ")),
    }
}

/// Each node with the instances `placed` (node id → instances) says run on it.
fn rows(nodes: Vec<NodeView>, mut placed: BTreeMap<String, Vec<String>>) -> Vec<Row> {
    nodes
        .into_iter()
        .map(|node| Row {
            instances: placed.remove(&node.id).unwrap_or_default(),
            node,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str, role: &str, leader: bool, state: &str, avail: &str) -> NodeView {
        NodeView {
            id: id.into(),
            hostname: host.into(),
            role: role.into(),
            leader,
            state: state.into(),
            availability: avail.into(),
            addr: String::new(),
            engine_version: "20.10.24+dfsg1".into(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn the_table_marks_the_leader_and_counts_many_instances() {
        let mut w1 = node(
            "y5lzchlhc1xonmobywy0qs5aa",
            "w1",
            "worker",
            false,
            "ready",
            "active",
        );
        w1.labels.insert("zone".into(), "eu".into());
        w1.labels.insert("disk".into(), "ssd".into());
        w1.addr = "10.231.0.2".into();
        let nodes = vec![
            node(
                "sum45w5zgmlxhz79ietmfs923",
                "mgr",
                "manager",
                true,
                "ready",
                "active",
            ),
            w1,
            node(
                "v62myle03xg5kauusj6pdxwm7",
                "w2",
                "worker",
                false,
                "down",
                "drain",
            ),
        ];
        let placed = BTreeMap::from([
            (
                "sum45w5zgmlxhz79ietmfs923".to_string(),
                vec!["alice".to_string()],
            ),
            (
                "y5lzchlhc1xonmobywy0qs5aa".to_string(),
                ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            ),
        ]);
        let rows = rows(nodes, placed);
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NODE"), "{text}");
        assert!(lines[0].contains("INSTANCES"), "{text}");
        let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            words(lines[1]),
            [
                "mgr",
                "sum45w5zgmlx",
                "manager*",
                "ready",
                "active",
                "-",
                "20.10.24+dfsg1",
                "-",
                "alice"
            ]
        );
        assert!(
            lines[2].contains("disk=ssd,zone=eu") && lines[2].contains("5: a, b, c, …"),
            "{text}"
        );
        assert!(lines[2].contains("10.231.0.2"), "{text}");
        assert_eq!(words(lines[3])[2..5], ["worker", "down", "drain"], "{text}");
        assert!(lines[3].trim_end().ends_with('-'), "no instances: {text}");
        let json = serde_json::to_value(Listing { nodes: rows }).unwrap();
        let first = &json["nodes"][0];
        assert_eq!(first["hostname"], "mgr");
        assert_eq!(first["leader"], true);
        assert_eq!(first["engine_version"], "20.10.24+dfsg1");
        assert_eq!(first["instances"], serde_json::json!(["alice"]));
        assert_eq!(json["nodes"][1]["labels"]["zone"], "eu");
    }

    #[test]
    fn few_instances_are_named_many_counted() {
        let names = |n: usize| (0..n).map(|i| format!("i{i}")).collect::<Vec<_>>();
        assert_eq!(instances_cell(&[]), "-");
        assert_eq!(instances_cell(&names(3)), "i0, i1, i2");
        assert_eq!(instances_cell(&names(4)), "4: i0, i1, i2, …");
    }
}
