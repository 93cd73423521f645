//! `corral logs POD [-c CONTAINER] [-f] [--tail N]`: streams a container's
//! log from the node that runs the pod (its agent serves it on port 10250
//! of the node's address).

use clap::Args;
use tokio::io::AsyncWriteExt;

use super::agent::locate;
use super::{Cli, CliError, Result};

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming as the container writes.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u64>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub async fn run(cli: &Cli, args: &LogsArgs) -> Result<()> {
    let agent = locate(&cli.client(), &args.namespace, &args.pod).await?;
    let mut path = format!("/logs/{}/{}", args.namespace, args.pod);
    if let Some(c) = &args.container {
        path.push('/');
        path.push_str(c);
    }
    let mut query = Vec::new();
    if args.follow {
        query.push("follow=true".to_string());
    }
    if let Some(n) = args.tail {
        query.push(format!("tail={n}"));
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let mut reader = agent.request(&format!("GET {path} HTTP/1.0"), &[]).await?;
    let mut out = tokio::io::stdout();
    tokio::io::copy(&mut reader, &mut out)
        .await
        .map_err(|e| CliError::msg(format!("node {:?}: {e}", agent.node)))?;
    out.flush().await.ok();
    Ok(())
}
