//! `corral top nodes|pods` (usage the agents report with their heartbeats)
//! and `corral autoscale` (a HorizontalPodAutoscaler for a deployment).

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use control_plane::api::autoscaling::{resource_metric, CrossVersionObjectReference, HpaSpec, HPA_V2};
use control_plane::api::node::NodeMetrics;
use control_plane::api::{HorizontalPodAutoscaler, Node, Object, ObjectMeta};

use super::{Cli, CliError, Result};
use crate::output::table;

#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// CPU and memory of each node's pods, against its allocatable capacity.
    #[command(after_help = "Examples:\n  corral top nodes")]
    Nodes,
    /// CPU and memory of each pod (sampled by its node every 10 s).
    #[command(
        after_help = "Examples:\n  corral top pods\n  corral top pods -A --containers\n  corral top pods -l app=web"
    )]
    Pods(TopPodsArgs),
}

#[derive(Debug, Args)]
pub struct TopPodsArgs {
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only pods whose labels match (k=v,k2!=v2, ...).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// One line per container.
    #[arg(long)]
    pub containers: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  corral autoscale deployment/web --cpu-percent=50 --min=1 --max=10\n  corral get hpa"
)]
pub struct AutoscaleArgs {
    /// deployment/NAME
    pub target: String,
    #[arg(long)]
    pub max: i32,
    #[arg(long, default_value_t = 1)]
    pub min: i32,
    /// Target average CPU utilization, in percent of the pods' requests (Kubernetes' default: 80).
    #[arg(long)]
    pub cpu_percent: Option<i32>,
    /// The autoscaler's name (default: the deployment's).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

async fn nodes(cli: &Cli) -> Result<Vec<Node>> {
    let (items, _) = cli.client().list_objects("nodes", "", "").await?;
    Ok(items.into_iter().filter_map(|o| if let Object::Node(n) = o { Some(n) } else { None }).collect())
}

fn metrics(n: &Node) -> Option<&NodeMetrics> {
    n.status.as_ref()?.metrics.as_ref()
}

/// Millicores as kubectl prints them (`250m`).
fn cores(millis: u64) -> String {
    format!("{millis}m")
}

/// Milli-bytes as kubectl prints memory (`12Mi`).
fn mebibytes(millis: u64) -> String {
    format!("{}Mi", (millis / 1000).div_ceil(1 << 20))
}

pub async fn run(cli: &Cli, cmd: &TopCommand) -> Result<()> {
    let nodes = nodes(cli).await?;
    if nodes.iter().all(|n| metrics(n).is_none()) {
        return Err(CliError::msg(
            "no usage reported yet: node agents sample their pods every 10 s and report with the next heartbeat; try again shortly",
        ));
    }
    let out = match cmd {
        TopCommand::Nodes => top_nodes(&nodes),
        TopCommand::Pods(args) => top_pods(cli, &nodes, args).await?,
    };
    println!("{out}");
    Ok(())
}

fn top_nodes(nodes: &[Node]) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            let allocatable = n.status.as_ref().map(|s| &s.allocatable);
            let cap = |r: &str| allocatable.and_then(|a| a.get(r)).map_or(0, |q| q.millis());
            match metrics(n) {
                Some(m) => {
                    let used = |r: &str| m.usage.get(r).map_or(0, |q| q.millis());
                    let pct = |r: &str| match cap(r) {
                        0 => "<unknown>".to_string(),
                        c => format!("{}%", used(r) * 100 / c),
                    };
                    vec![
                        n.metadata.name.clone(),
                        cores(used("cpu")),
                        pct("cpu"),
                        mebibytes(used("memory")),
                        pct("memory"),
                    ]
                }
                None => vec![
                    n.metadata.name.clone(),
                    "<unknown>".into(),
                    "<unknown>".into(),
                    "<unknown>".into(),
                    "<unknown>".into(),
                ],
            }
        })
        .collect();
    table(&["name", "cpu(cores)", "cpu%", "memory(bytes)", "memory%"], rows)
}

async fn top_pods(cli: &Cli, nodes: &[Node], args: &TopPodsArgs) -> Result<String> {
    // The pods the selector picks (usage lives on the nodes; the labels on the pods).
    let ns = if args.all_namespaces { "" } else { args.namespace.as_str() };
    let (pods, _) = cli.client().list_objects("pods", ns, args.selector.as_deref().unwrap_or("")).await?;
    let wanted: BTreeMap<(String, String), ()> =
        pods.iter().map(|p| ((p.namespace().to_string(), p.meta().name.clone()), ())).collect();
    let mut rows = Vec::new();
    for m in nodes.iter().filter_map(metrics) {
        for p in &m.pods {
            if !wanted.contains_key(&(p.namespace.clone(), p.name.clone())) {
                continue;
            }
            let mut lead = Vec::new();
            if args.all_namespaces {
                lead.push(p.namespace.clone());
            }
            lead.push(p.name.clone());
            if args.containers {
                for c in &p.containers {
                    let used = |r: &str| c.usage.get(r).map_or(0, |q| q.millis());
                    let mut row = lead.clone();
                    row.extend([c.name.clone(), cores(used("cpu")), mebibytes(used("memory"))]);
                    rows.push(row);
                }
            } else {
                let mut row = lead;
                row.extend([cores(p.total_millis("cpu")), mebibytes(p.total_millis("memory"))]);
                rows.push(row);
            }
        }
    }
    rows.sort();
    if rows.is_empty() {
        return Err(CliError::msg(format!(
            "no usage reported for the pods{}: running pods are sampled every 10 s",
            if ns.is_empty() { String::new() } else { format!(" of namespace {ns:?}") }
        )));
    }
    let mut headers = Vec::new();
    if args.all_namespaces {
        headers.push("namespace");
    }
    headers.push("name");
    if args.containers {
        headers.push("container");
    }
    headers.extend(["cpu(cores)", "memory(bytes)"]);
    Ok(table(&headers, rows))
}

pub async fn autoscale(cli: &Cli, args: &AutoscaleArgs) -> Result<()> {
    let (kind, name) = args
        .target
        .split_once('/')
        .ok_or_else(|| CliError::msg(format!("{:?}: name the target as deployment/NAME", args.target)))?;
    if !matches!(kind, "deployment" | "deployments" | "deploy" | "deployment.apps") {
        return Err(CliError::msg(format!("{kind:?}: Corral autoscales deployments only (deployment/NAME)")));
    }
    // The target must exist: say so now rather than in the HPA's conditions.
    cli.client().get_object("deployments", &args.namespace, name).await?;
    let hpa = HorizontalPodAutoscaler {
        api_version: HPA_V2.into(),
        kind: "HorizontalPodAutoscaler".into(),
        metadata: ObjectMeta {
            name: args.name.clone().unwrap_or_else(|| name.to_string()),
            namespace: Some(args.namespace.clone()),
            ..Default::default()
        },
        spec: HpaSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: name.to_string(),
            },
            min_replicas: Some(args.min),
            max_replicas: args.max,
            metrics: args.cpu_percent.map(|p| vec![resource_metric("cpu", p)]).unwrap_or_default(),
            behavior: None,
        },
        status: None,
    };
    let (stored, _) = cli.client().apply(&Object::HorizontalPodAutoscaler(hpa)).await?;
    println!("horizontalpodautoscaler.autoscaling/{} autoscaled", stored.meta().name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_prints_like_kubectl_top() {
        assert_eq!(cores(250), "250m");
        assert_eq!(mebibytes(12 * (1 << 20) * 1000), "12Mi");
        assert_eq!(mebibytes(1000), "1Mi", "any usage shows as at least 1Mi");
    }

    #[test]
    fn node_table_shows_usage_against_allocatable() {
        let mut n = Node::default();
        n.metadata.name = "n1".into();
        let mut status = control_plane::api::node::NodeStatus::default();
        status.allocatable.insert("cpu".into(), "2".parse().unwrap());
        status.allocatable.insert("memory".into(), "1Gi".parse().unwrap());
        status.metrics = Some(NodeMetrics {
            usage: BTreeMap::from([
                ("cpu".into(), "500m".parse().unwrap()),
                ("memory".into(), "256Mi".parse().unwrap()),
            ]),
            ..Default::default()
        });
        n.status = Some(status);
        assert_eq!(
            top_nodes(&[n]),
            "NAME  CPU(CORES)  CPU%  MEMORY(BYTES)  MEMORY%\nn1    500m        25%   256Mi          25%"
        );
    }
}
