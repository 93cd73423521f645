//! `corral up` and `corral down`: a local HA cluster of real processes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, Result};
use crate::local::{self, ClusterFile, LocalCluster, LocalOptions};

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// How many masters (3 or 5 survive the loss of 1 or 2).
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    /// Worker nodes to start (node-1 at 127.0.0.11, node-2 at 127.0.0.12, ...), on the local Docker engine.
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// The nodes are named PREFIX-1, PREFIX-2, ... (two clusters on one Docker engine need different prefixes).
    #[arg(long, default_value = "node", value_name = "PREFIX")]
    pub node_prefix: String,
    /// The first node's address; the next nodes take the following ones (loopback keeps traffic on this machine).
    #[arg(long, default_value = "127.0.0.11", value_name = "IP")]
    pub node_address: std::net::Ipv4Addr,
    /// Do not deploy the demo web app.
    #[arg(long)]
    pub no_demo: bool,
    /// Where the cluster keeps its data, logs and cluster.json.
    #[arg(long, default_value = ".corral")]
    pub state_dir: PathBuf,
    /// The first master listens on 127.0.0.1:BASE_PORT, the next on +1, ...
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Every master and node on a host of its own: a network namespace with its own address
    /// on a virtual link (10.77.N.0/24; the machine is 10.77.N.1), every node with its own
    /// Docker engine, the pod network routed between them. Needs root.
    #[arg(long)]
    pub hosts: bool,
    /// With --hosts: how the nodes route pods to each other (host-gw or vxlan).
    #[arg(long, default_value = "host-gw", requires = "hosts")]
    pub network_backend: String,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    #[arg(long, default_value = ".corral")]
    pub state_dir: PathBuf,
    /// Also delete the data dirs and logs.
    #[arg(long)]
    pub purge: bool,
}

pub async fn run_up(args: &UpArgs) -> Result<()> {
    if args.masters == 0 {
        return Err(CliError::msg("--masters must be at least 1 (3 for a cluster that survives losing one)"));
    }
    if let Ok(existing) = ClusterFile::load(&args.state_dir) {
        let alive: Vec<String> = existing
            .masters
            .iter()
            .filter(|m| local::is_our_master(m.pid, &m.data_dir))
            .map(|m| m.pid.to_string())
            .collect();
        if !alive.is_empty() {
            return Err(CliError::msg(format!(
                "a cluster is already running from {} (pids {}): use it, or stop it with `corral down --state-dir {}`",
                args.state_dir.display(),
                alive.join(", "),
                args.state_dir.display()
            )));
        }
    }
    let exe =
        std::env::current_exe().map_err(|e| CliError::msg(format!("cannot find the corral binary: {e}")))?;
    let mut opts = LocalOptions {
        exe,
        state_dir: args.state_dir.clone(),
        masters: args.masters,
        base_port: args.base_port,
        master_flags: Vec::new(),
        master_hosts: Vec::new(),
    };
    let bed = if args.hosts { Some(super::up_hosts::prepare(args, &mut opts)?) } else { None };
    let mut cluster = LocalCluster::start(opts).map_err(|e| CliError::msg(e.to_string()))?;
    if let Some((bed, hosts)) = bed {
        cluster.file.bed = Some(bed);
        cluster.file.hosts = hosts;
        cluster.file.save(&cluster.opts.state_dir).map_err(|e| CliError::msg(e.to_string()))?;
    }
    for m in &cluster.file.masters {
        eprintln!("started master {} at {} (pid {}, log {})", m.id, m.address, m.pid, m.log.display());
    }
    let status = cluster
        .wait_ready(Duration::from_secs(60), |msg| eprintln!("  {msg}"))
        .await
        .map_err(|e| CliError::msg(format!("{e}; see the logs in {}", args.state_dir.display())))?;
    let servers = cluster.file.addresses().join(",");
    let demo = if args.nodes > 0 { start_nodes(&mut cluster, args).await? } else { None };
    let masters = cluster.file.masters.clone();
    let node_addresses = cluster_node_addresses(&cluster.file);
    cluster.detach();
    print!("{}", super::cluster::status_table(&status));
    let state = args.state_dir.display();
    let leader = masters.iter().find(|m| m.id == status.leader_id);
    println!();
    match &demo {
        Some(_) => println!(
            "Corral is up: {} masters, {} nodes, and the demo app (3 replicas) is ready.",
            args.masters, args.nodes
        ),
        None => println!("Corral is up: {} masters, {} nodes.", args.masters, args.nodes),
    }
    println!(
        "Every process (role, id, address, pid, log) is in {}.",
        ClusterFile::path(&args.state_dir).display()
    );
    println!("\nTry next:");
    let mut next: Vec<(String, String)> = vec![(format!("export CORRAL_SERVER={servers}"), String::new())];
    if let Some(url) = &demo {
        let nodes = &node_addresses;
        next.extend([
            (
                format!("curl {url}"),
                format!("the demo app through any node ({}), each replica in turn", nodes.join(", ")),
            ),
            ("corral get pods -o wide".into(), "the demo's pods, their IPs and nodes".into()),
            ("corral scale deployment/demo --replicas 5".into(), String::new()),
            ("corral apply -f examples/demo-v2.yaml".into(), "a rolling update to version 2".into()),
            (
                "corral rollout status deployment/demo".into(),
                "follow it; `corral rollout undo deployment/demo` goes back".into(),
            ),
        ]);
    }
    next.push(("corral cluster status".into(), "who leads, each master's term and log".into()));
    if let Some(m) = leader {
        next.push((
            format!("kill -9 {}", m.pid),
            format!("the leader (master {}): a new one within 2 s, the cluster keeps serving", m.id),
        ));
    }
    next.push((
        format!("corral down --state-dir {state}"),
        "stop everything and remove its containers".into(),
    ));
    let width = next.iter().filter(|(_, why)| !why.is_empty()).map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, why) in next {
        if why.is_empty() {
            println!("  {command}");
        } else {
            println!("  {command:width$}   # {why}");
        }
    }
    Ok(())
}

/// The demo app: 3 replicas of a busybox web server that answers with its
/// pod's name, behind a Service on port 8080 of every node.
const DEMO: &str = include_str!("../../../examples/demo.yaml");

/// Builds the images if missing, starts the node agents, waits for them to
/// be Ready and (unless --no-demo) deploys the demo app. Returns its URL.
async fn start_nodes(cluster: &mut LocalCluster, args: &UpArgs) -> Result<Option<String>> {
    let workers: Vec<crate::hosts::Host> =
        cluster.file.hosts.iter().filter(|h| h.engine.is_some()).cloned().collect();
    if workers.is_empty() {
        eprintln!("building the local images (corral/busybox:1, corral/pause:1) if missing");
        let runtime = node::runtime::docker::DockerRuntime::connect(node::runtime::docker::DEFAULT_NETWORK)
            .await
            .map_err(|e| CliError::msg(format!("cannot use Docker for the nodes: {e}")))?;
        node::runtime::docker::ensure_busybox_images(runtime.docker())
            .await
            .map_err(|e| CliError::msg(e.to_string()))?;
    } else {
        super::up_hosts::load_images(&workers).await?;
    }
    for i in 1..=args.nodes as u64 {
        let host = workers.get(i as usize - 1);
        let address = host.map_or_else(|| node_address(args, i), |h| h.address.to_string());
        let extra: Vec<String> = match host {
            Some(_) => vec!["--network-backend".into(), args.network_backend.clone()],
            None => Vec::new(),
        };
        let n = cluster
            .spawn_node_on(host, i, &node_name(args, i), &address, &extra)
            .map_err(|e| CliError::msg(e.to_string()))?;
        eprintln!(
            "started node {} at {} (pid {}, log {})",
            node_name(args, i),
            n.address,
            n.pid,
            n.log.display()
        );
    }
    let client = cluster.client();
    let names: Vec<String> = (1..=args.nodes as u64).map(|i| node_name(args, i)).collect();
    wait_until("nodes Ready", Duration::from_secs(60), || async {
        let mut ready = 0;
        for n in &names {
            if let Ok(control_plane::api::Object::Node(node)) = client.get_object("nodes", "", n).await {
                ready += usize::from(node.is_ready());
            }
        }
        (ready == names.len(), format!("{ready}/{} nodes Ready", names.len()))
    })
    .await?;
    if args.no_demo {
        return Ok(None);
    }
    for obj in
        control_plane::api::manifest::parse("demo.yaml", DEMO).map_err(|e| CliError::msg(format!("{e:?}")))?
    {
        let (stored, action) = client.apply(&obj).await.map_err(|e| CliError::msg(e.to_string()))?;
        eprintln!("{}/{} {action}", stored.kind().qualified(), stored.meta().name);
    }
    wait_until("the demo app ready", Duration::from_secs(90), || async {
        let ready = match client.list_objects("pods", "default", "app=demo").await {
            Ok((pods, _)) => pods
                .iter()
                .filter(|p| matches!(p, control_plane::api::Object::Pod(p) if p.is_ready()))
                .count(),
            Err(_) => 0,
        };
        (ready == 3, format!("{ready}/3 demo pods ready"))
    })
    .await?;
    let first = cluster.file.nodes.first().map_or_else(|| node_address(args, 1), |n| n.address.clone());
    Ok(Some(format!("http://{first}:8080/")))
}

/// The nodes' addresses, as `cluster.json` records them.
fn cluster_node_addresses(file: &ClusterFile) -> Vec<String> {
    file.nodes.iter().map(|n| n.address.clone()).collect()
}

fn node_name(args: &UpArgs, i: u64) -> String {
    format!("{}-{i}", args.node_prefix)
}

fn node_address(args: &UpArgs, i: u64) -> String {
    std::net::Ipv4Addr::from(u32::from(args.node_address) + i as u32 - 1).to_string()
}

/// Polls `check` every 250 ms, printing its progress when it changes.
async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, String)>,
{
    let deadline = std::time::Instant::now() + within;
    let mut last = String::new();
    loop {
        let (done, progress) = check().await;
        if progress != last {
            eprintln!("  {progress}");
            last = progress;
        }
        if done {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::msg(format!(
                "{what}: not within {within:?} ({last}); see the logs in the state dir"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run_down(args: &DownArgs) -> Result<()> {
    let file = ClusterFile::load(&args.state_dir).map_err(|e| {
        CliError::msg(format!(
            "{e}: no cluster started from {} (corral up writes it)",
            args.state_dir.display()
        ))
    })?;
    // Nodes first: their pods keep running without them, and are removed below.
    for p in file.nodes.iter().chain(&file.masters) {
        if !local::is_ours(p.pid, &p.role, &p.data_dir) {
            eprintln!("{} {} (pid {}) is not running", p.role, p.id, p.pid);
            continue;
        }
        local::stop_pid(p.pid, Duration::from_secs(10))
            .map_err(|e| CliError::msg(format!("cannot stop {} {} (pid {}): {e}", p.role, p.id, p.pid)))?;
        eprintln!("stopped {} {} (pid {})", p.role, p.id, p.pid);
    }
    if !file.nodes.is_empty() {
        // `up` labels with the canonical state dir (cluster.json holds it): a relative --state-dir must match.
        let state_dir = std::fs::canonicalize(&args.state_dir).unwrap_or_else(|_| args.state_dir.clone());
        let removed = local::remove_labelled(&local::cluster_label(&state_dir));
        if removed > 0 {
            eprintln!("removed {removed} containers");
        }
    }
    if let Some(bed) = &file.bed {
        let removed = crate::hosts::Bed::destroy(&bed.prefix(), Some(&args.state_dir));
        eprintln!("removed the test bed {}: {}", bed.prefix(), removed.join(", "));
    }
    if args.purge {
        std::fs::remove_dir_all(&args.state_dir)
            .map_err(|e| CliError::msg(format!("cannot remove {}: {e}", args.state_dir.display())))?;
        eprintln!("removed {}", args.state_dir.display());
    } else {
        let _ = std::fs::remove_file(ClusterFile::path(&args.state_dir));
    }
    Ok(())
}
