use std::process::ExitCode;

use crate::infra::home::Home;
use crate::infra::store::Store;

pub fn run(home: &Home) -> anyhow::Result<ExitCode> {
    let existed = home.is_initialized();
    let mut store = home.init()?;
    let id = store.home_id()?;
    let verb = if existed {
        "already initialised"
    } else {
        "initialised"
    };
    println!("{verb} supervisor home {} (id {id})", home.root().display());
    print!("{}", next_steps(home, &store)?);
    Ok(ExitCode::SUCCESS)
}

/// The commands that take this home from here to a running instance, leaving out what is
/// done already (an active runtime, an instance).
fn next_steps(home: &Home, store: &Store) -> anyhow::Result<String> {
    let cmd = format!("supervisor --home {}", home.root().display());
    let mut steps = Vec::new();
    if store.active_runtime()?.is_none() {
        steps.push(format!(
            "{cmd} image build                # the agent image"
        ));
        steps.push(format!(
            "{cmd} runtime build --activate   # the agent's runtime"
        ));
    }
    let instances = store.instances()?;
    let name = match instances.first() {
        Some(first) => first.name.clone(),
        None => {
            steps.push(format!("{cmd} create-instance alice"));
            "alice".to_string()
        }
    };
    steps.push(format!(
        "{cmd} run                        # the daemon (or `service install --now`)"
    ));
    steps.push(format!("{cmd} start {name} --wait"));
    steps.push(format!("{cmd} status"));
    let mut out = String::from("next:\n");
    for s in steps {
        out.push_str(&format!("  {s}\n"));
    }
    Ok(out)
}
