//! `corral bench scheduler`: end-to-end scheduling throughput through Raft.
//! Simulated nodes register and heartbeat; deployments with mixed requests
//! and selectors ask for many pods; the figures are pods created and bound
//! per second, the time until every pod is bound, and the masters' peak RSS.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use control_plane::api::{manifest, Object};
use futures::StreamExt;
use node::fake::{run_fleet_with, FakeNodeSpec, FleetControl, FleetOptions};
use tokio_util::sync::CancellationToken;

use super::bench::SchedulerBenchArgs;
use super::{CliError, Result};
use crate::local::{free_base_port, LocalCluster, LocalOptions};

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::msg(e.to_string())
}

/// The deployments of the run: plain, cpu/memory-heavy, nodeSelector,
/// required node affinity and preferred anti-affinity, in turn.
fn deployment(i: usize, replicas: usize) -> Result<Object> {
    let name = format!("bench-{i}");
    let (requests, extra) = match i % 5 {
        0 => ("{cpu: 100m, memory: 128Mi}", String::new()),
        1 => ("{cpu: 500m, memory: 512Mi}", String::new()),
        2 => ("{cpu: 100m, memory: 64Mi}", "      nodeSelector: {disk: ssd}\n".to_string()),
        3 => (
            "{cpu: 200m, memory: 256Mi}",
            "      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [z0, z1]}]}]\n".to_string(),
        ),
        _ => (
            "{cpu: 100m, memory: 128Mi}",
            format!("      affinity:\n        podAntiAffinity:\n          preferredDuringSchedulingIgnoredDuringExecution:\n          - weight: 50\n            podAffinityTerm: {{topologyKey: kubernetes.io/hostname, labelSelector: {{matchLabels: {{app: {name}}}}}}}\n"),
        ),
    };
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{extra}      containers: [{{name: app, image: 'corral/busybox:1', resources: {{requests: {requests}}}}}]\n"
    );
    let mut objs = manifest::parse("bench", &text).map_err(|e| err(format!("{e:?}")))?;
    Ok(objs.remove(0))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(args: &SchedulerBenchArgs) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("corral-bench-").tempdir().map_err(err)?;
    let opts = LocalOptions {
        exe: std::env::current_exe().map_err(err)?,
        state_dir: args.state_dir.clone().unwrap_or_else(|| dir.path().to_path_buf()),
        masters: args.masters,
        base_port: free_base_port(args.masters as u16),
        // A cluster CIDR with room for a pod CIDR per node (4095 /24s).
        master_flags: [
            "--node-grace-seconds",
            "60",
            "--node-eviction-seconds",
            "120",
            "--cluster-cidr",
            "172.16.0.0/12",
        ]
        .map(String::from)
        .to_vec(),
        master_hosts: Vec::new(),
    };
    let cluster = LocalCluster::start(opts).map_err(err)?;
    cluster.wait_ready(Duration::from_secs(60), |m| eprintln!("  {m}")).await.map_err(err)?;
    let client = cluster.client().with_timeout(Duration::from_secs(60));

    let nodes: Vec<FakeNodeSpec> = (0..args.nodes)
        .map(|i| {
            let mut n = FakeNodeSpec::new(format!("node-{i:05}"));
            n.cpu = "32".into();
            n.memory = "128Gi".into();
            n.labels.insert("zone".into(), format!("z{}", i % 3));
            if i % 4 == 0 {
                n.labels.insert("disk".into(), "ssd".into());
            }
            n
        })
        .collect();
    let cancel = CancellationToken::new();
    let fleet = {
        let (client, cancel) = (client.clone(), cancel.clone());
        let options = FleetOptions { heartbeat: Duration::from_secs(10), report_pods: false };
        tokio::spawn(
            async move { run_fleet_with(client, nodes, options, FleetControl::default(), cancel).await },
        )
    };
    let registering = Instant::now();
    loop {
        let (listed, _) = client.list_objects("nodes", "", "").await?;
        if listed.len() >= args.nodes {
            break;
        }
        if fleet.is_finished() {
            return Err(err("the simulated fleet stopped while registering"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("{} simulated nodes registered in {:.1} s", args.nodes, registering.elapsed().as_secs_f64());

    let (_, rev) = client.list_objects("pods", "", "").await?;
    let mut watch = Box::pin(client.watch_objects("pods", "", Some(raft_store::Revision(rev.0 + 1))).await?);
    let start = Instant::now();
    let per = args.pods / args.deployments.max(1);
    for i in 0..args.deployments {
        let replicas = if i + 1 == args.deployments { args.pods - per * (args.deployments - 1) } else { per };
        client.apply(&deployment(i, replicas)?).await?;
    }
    let (mut created, mut bound) = (BTreeSet::new(), BTreeSet::new());
    let (mut all_created_at, mut last_report) = (None, Instant::now());
    while bound.len() < args.pods {
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
        if let Ok(Some(batch)) = next {
            for e in batch? {
                if let Object::Pod(p) = e.object {
                    created.insert(p.metadata.name.clone());
                    if p.spec.node_name.is_some() {
                        bound.insert(p.metadata.name);
                    }
                }
            }
        }
        if all_created_at.is_none() && created.len() >= args.pods {
            all_created_at = Some(start.elapsed());
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {:>6.1} s: {} pods created, {} bound",
                start.elapsed().as_secs_f64(),
                created.len(),
                bound.len()
            );
            last_report = Instant::now();
        }
        if start.elapsed() > args.timeout {
            return Err(err(format!(
                "gave up after {:?}: {} of {} pods bound",
                args.timeout,
                bound.len(),
                args.pods
            )));
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "corral bench scheduler: {} masters, {} nodes, {} pods in {} deployments (mixed requests, nodeSelector, node affinity, anti-affinity)",
        args.masters, args.nodes, args.pods, args.deployments
    );
    if let Some(c) = all_created_at {
        println!(
            "all pods created in {:.1} s ({:.0} pods/s)",
            c.as_secs_f64(),
            args.pods as f64 / c.as_secs_f64()
        );
    }
    println!(
        "all pods bound in {took:.1} s: {:.0} pods bound per second end to end",
        args.pods as f64 / took
    );
    for m in &cluster.file.masters {
        if let Some(kib) = peak_rss_kib(m.pid) {
            println!("master {} peak RSS {:.0} MiB", m.id, kib as f64 / 1024.0);
        }
    }
    cancel.cancel();
    let _ = fleet.await;
    Ok(())
}
