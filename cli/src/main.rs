//! `corral`: one binary for the daemons (`corral master`) and the operator CLI.

use std::process::ExitCode;

use clap::Parser;
use cli::commands::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.command {
        Command::Master(_) => "info,openraft=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::commands::CliError::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
