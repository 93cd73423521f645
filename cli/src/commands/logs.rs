//! `corral logs POD [-c CONTAINER] [-f] [--tail N]`: streams a container's
//! log from the node that runs the pod (its agent serves it on port 10250
//! of the node's address).

use clap::Args;
use control_plane::api::Object;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

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
    let client = cli.client();
    let Object::Pod(pod) = client.get_object("pods", &args.namespace, &args.pod).await? else {
        return Err(CliError::msg(format!("{:?} is not a pod", args.pod)));
    };
    let node_name =
        pod.spec.node_name.clone().ok_or_else(|| {
            CliError::msg(format!("pod {:?} is not scheduled yet: it has no logs", args.pod))
        })?;
    let Object::Node(node) = client.get_object("nodes", "", &node_name).await? else {
        return Err(CliError::msg(format!("node {node_name:?} is not a node")));
    };
    let address = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .ok_or_else(|| CliError::msg(format!("node {node_name:?} has no address")))?;
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
    let target = format!("{address}:{}", node::agent::server::PORT);
    let mut stream = tokio::net::TcpStream::connect(&target).await.map_err(|e| {
        CliError::msg(format!("node {node_name:?} at {target} does not answer: {e}; is its agent running?"))
    })?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| CliError::msg(format!("node {node_name:?}: {e}")))?;
    // Headers, then the body as it comes (HTTP/1.0: until the node closes).
    let failed = |e: std::io::Error| CliError::msg(format!("node {node_name:?}: {e}"));
    let mut reader = tokio::io::BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.map_err(failed)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.map_err(failed)? == 0 {
            return Err(CliError::msg(format!("node {node_name:?} closed the connection")));
        }
        if header.trim().is_empty() {
            break;
        }
    }
    if !status.contains(" 200") {
        let mut body = String::new();
        let _ = reader.read_to_string(&mut body).await;
        return Err(CliError::msg(format!("node {node_name:?}: {}", body.trim())));
    }
    let mut out = tokio::io::stdout();
    tokio::io::copy(&mut reader, &mut out).await.map_err(failed)?;
    out.flush().await.ok();
    Ok(())
}
