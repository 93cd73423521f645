//! `corral completion bash|zsh|fish`: shell completion scripts (clap_complete).

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Result};

#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn run(args: &CompletionArgs) -> Result<()> {
    clap_complete::generate(args.shell, &mut Cli::command(), "corral", &mut std::io::stdout());
    Ok(())
}
