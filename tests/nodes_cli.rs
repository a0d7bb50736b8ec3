//! `supervisor nodes`: refused, with the reason, unless the engine is a swarm; and the
//! engine's failure is said when it is one. Neither needs a swarm (nor Docker).

mod common;

use common::TestHome;

#[test]
fn nodes_is_refused_on_this_hosts_docker() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    for args in [&["nodes"][..], &["nodes", "--json"]] {
        let run = home.run(args).fails(
            1,
            "the engine is this host's Docker (engine.kind = \"docker\"): there are no nodes; see docs/scale.md",
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
}

#[test]
fn nodes_says_why_the_swarm_engine_cannot_be_asked() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    let socket = home.scratch().join("no-engine.sock");
    let path = home.path("supervisor.toml");
    // Written whole: the template already has an [engine] table.
    let text = format!(
        "[docker]\nhost = \"unix://{}\"\n\n[engine]\nkind = \"swarm\"\n[engine.swarm]\n\
         registry = \"registry.example:5000\"\n[engine.swarm.storage]\ndevice = \":/srv/supervisor\"\n",
        socket.display()
    );
    std::fs::write(&path, text).unwrap();
    home.run(&["config", "check"]).ok();
    home.run(&["nodes"])
        .fails(1, "cannot list the swarm's nodes through unix://")
        .fails(1, "cannot reach the Docker engine");
}
