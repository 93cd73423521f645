//! Operations on nodes: `cordon`, `uncordon`, `drain`; and [`update`], the
//! read-change-write step of every command that edits an object: it reads
//! the object, changes it with a pure function (often the one the
//! controllers use), and writes it back with compare-and-swap on the
//! resourceVersion it read (retrying on a conflict).

use std::time::{Duration, Instant};

use clap::Args;
use control_plane::api::{Deployment, Object, Pod};
use control_plane::controllers::node_lifecycle;
use control_plane::{ClientError, CorralClient};

use super::{Cli, CliError, Result};

#[derive(Debug, Args)]
pub struct NodeArgs {
    pub node: String,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    pub node: String,
    /// Give up waiting for the pods to leave after this long.
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    pub drain_timeout: Duration,
}

/// Reads `kind/name`, applies `change`, writes it back with CAS; retries on conflict.
pub(super) async fn update(
    client: &CorralClient,
    kind: &str,
    ns: &str,
    name: &str,
    change: impl Fn(Object) -> std::result::Result<Object, String>,
) -> Result<Object> {
    for _ in 0..5 {
        let current = client.get_object(kind, ns, name).await?;
        let next = change(current).map_err(CliError::Msg)?;
        match client.apply(&next).await {
            Ok((obj, _)) => return Ok(obj),
            Err(ClientError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::msg(format!("{kind} {name:?} kept changing; try again")))
}

async fn set_unschedulable(client: &CorralClient, node: &str, value: bool) -> Result<()> {
    update(client, "node", "", node, |obj| {
        let Object::Node(mut n) = obj else { return Err("not a node".into()) };
        n.spec.unschedulable = value.then_some(true);
        Ok(Object::Node(n))
    })
    .await?;
    Ok(())
}

pub async fn cordon(cli: &Cli, args: &NodeArgs, value: bool) -> Result<()> {
    set_unschedulable(&cli.client(), &args.node, value).await?;
    println!("node/{} {}", args.node, if value { "cordoned" } else { "uncordoned" });
    Ok(())
}

fn pods_of(objs: Vec<Object>) -> Vec<Pod> {
    objs.into_iter().filter_map(|o| if let Object::Pod(p) = o { Some(p) } else { None }).collect()
}

/// Cordons the node, then evicts its pods a few at a time, never taking a
/// deployment below `replicas - maxUnavailable` available pods.
pub async fn drain(cli: &Cli, args: &DrainArgs) -> Result<()> {
    let client = cli.client();
    set_unschedulable(&client, &args.node, true).await?;
    eprintln!("node/{} cordoned", args.node);
    let deadline = Instant::now() + args.drain_timeout;
    loop {
        let all = pods_of(client.list_objects("pods", "", "").await?.0);
        let on_node: Vec<Pod> =
            all.iter().filter(|p| p.spec.node_name.as_deref() == Some(args.node.as_str())).cloned().collect();
        if on_node.is_empty() {
            println!("node/{} drained", args.node);
            return Ok(());
        }
        let deployments: Vec<Deployment> = client
            .list_objects("deployments", "", "")
            .await?
            .0
            .into_iter()
            .filter_map(|o| if let Object::Deployment(d) = o { Some(d) } else { None })
            .collect();
        for name in node_lifecycle::drain_plan(&on_node, &all, &deployments) {
            let Some(p) = on_node.iter().find(|p| p.metadata.name == name) else { continue };
            let (action, _) = client.delete_object("pod", p.metadata.namespace_or_default(), &name).await?;
            eprintln!("evicting pod/{name} ({action})");
        }
        if Instant::now() > deadline {
            let left: Vec<&str> = on_node.iter().map(|p| p.metadata.name.as_str()).collect();
            return Err(CliError::msg(format!(
                "node/{} not drained within {:?}: {} pod(s) left ({}); their deployments allow no more unavailable pods",
                args.node,
                args.drain_timeout,
                left.len(),
                left.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
