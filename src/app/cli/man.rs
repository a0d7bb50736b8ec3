//! `supervisor man`: the manual pages, in roff, generated from the same definitions the
//! parser uses: one page for the program and one per subcommand (`supervisor-task-add.1`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write every page (supervisor.1 and one per subcommand) into this directory instead
    /// of printing supervisor.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pages = pages()?;
    match args.dir {
        None => {
            let (_, top) = &pages[0];
            std::io::Write::write_all(&mut std::io::stdout().lock(), top)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, text) in &pages {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            println!("wrote {} pages to {}", pages.len(), dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every page as (file name, roff), the program's own first.
pub fn pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    // Built so that each subcommand knows its full name (`supervisor-task-add`); `help`
    // is a page of its own nowhere, as in clap_mangen's own generator.
    let mut root = super::Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    render_tree(root, &mut pages)?;
    Ok(pages)
}

/// `cmd`'s page, then its subcommands' in the order of `--help`.
fn render_tree(cmd: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let man = clap_mangen::Man::new(cmd);
    let mut text = Vec::new();
    man.render(&mut text)
        .context("cannot render a manual page")?;
    pages.push((man.get_filename(), text));
    for sub in subs {
        render_tree(sub, pages)?;
    }
    Ok(())
}
