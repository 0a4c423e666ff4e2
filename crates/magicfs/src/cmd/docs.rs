//! `magicfs completions SHELL` and `magicfs man`: shell completions and man
//! pages generated from the command line's own definition, so they never
//! fall behind the flags.

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use anyhow::Context;
use clap::CommandFactory;

pub fn completions(a: CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "magicfs", &mut std::io::stdout());
    Ok(0)
}

pub fn man(a: ManArgs) -> anyhow::Result<i32> {
    let cmd = Cli::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
        None => {
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("writing the man page")?;
        }
    }
    Ok(0)
}
