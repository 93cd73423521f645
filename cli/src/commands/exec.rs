//! `corral exec POD [-c CONTAINER] -- COMMAND [ARGS...]`: runs a command in a
//! running container on the pod's node (through its agent, see
//! `node::agent::server`), prints its stdout and stderr as they come, and
//! exits with the command's exit code.

use clap::Args;
use control_plane::api::pod::PodPhase;
use node::agent::server::exec_wire::Frame;
use tokio::io::AsyncWriteExt;

use super::agent::locate;
use super::{Cli, CliError, Result};

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The pod.
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(cli: &Cli, args: &ExecArgs) -> Result<()> {
    if args.command.iter().any(|a| a.contains('\0')) {
        return Err(CliError::msg("the command contains a NUL byte, which no program can receive"));
    }
    let agent = locate(&cli.client(), &args.namespace, &args.pod).await?;
    let phase = agent.pod.status.as_ref().and_then(|s| s.phase);
    if phase != Some(PodPhase::Running) {
        let phase = phase.map_or("Pending".to_string(), |p| format!("{p:?}"));
        return Err(CliError::msg(format!(
            "pod {:?} is {phase}, not Running: exec needs a running container; watch it with corral get pod {} -w",
            args.pod, args.pod
        )));
    }
    let mut path = format!("/exec/{}/{}", args.namespace, args.pod);
    if let Some(c) = &args.container {
        path = format!("{path}?container={c}");
    }
    let body: Vec<u8> = args.command.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut reader = agent.request(&format!("POST {path} HTTP/1.0"), &body).await?;
    let node = &agent.node;
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let broke = |e: std::io::Error| CliError::msg(format!("node {node:?}: the exec stream broke off: {e}"));
    loop {
        match Frame::read_from(&mut reader).await.map_err(broke)? {
            Some(Frame::Stdout(b)) => stdout.write_all(&b).await.map_err(broke)?,
            Some(Frame::Stderr(b)) => stderr.write_all(&b).await.map_err(broke)?,
            Some(Frame::Exit(code)) => {
                stdout.flush().await.ok();
                stderr.flush().await.ok();
                return match code {
                    0 => Ok(()),
                    // Shells report codes above 255 modulo 256; -1 is "unknown".
                    1..=255 => Err(CliError::Exit(code as u8)),
                    _ => Err(CliError::Exit(255)),
                };
            }
            Some(Frame::Error(m)) => return Err(CliError::msg(format!("node {node:?}: {m}"))),
            None => {
                return Err(CliError::msg(format!(
                "node {node:?} closed the exec stream before the command ended: its agent may have restarted"
            )))
            }
        }
    }
}
