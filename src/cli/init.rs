use std::process::ExitCode;

use crate::home::Home;

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
    Ok(ExitCode::SUCCESS)
}
