//! `corral bench pods`: pod startup latency on real processes: masters and
//! `corral node` agents on the local Docker engine. Bare pods are applied
//! one at a time, each timed from its apply returning to a watch showing it
//! Running and Ready (scheduling, the agent's sync, sandbox and container
//! start, the status write through Raft); then a burst is applied at once
//! and timed until every pod is Ready.
//!
//! Masters, agents, Docker and the containers all share this machine's
//! cores. Every container and volume of the run carries the label
//! `io.corral.bench=<run id>` and is removed when the run ends, also after
//! an error or Ctrl-C.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use control_plane::api::pod::PodPhase;
use control_plane::api::{manifest, Object};
use control_plane::CorralClient;
use futures::StreamExt;
use hdrhistogram::Histogram;
use raft_store::Revision;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::bench::PodsBenchArgs;
use super::{CliError, Result};
use crate::local::{self, free_base_port, LocalCluster, LocalOptions};
use crate::output::table;

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::msg(e.to_string())
}

/// Kubernetes' pod startup SLO (sig-scalability): p99 of stateless pods,
/// image pulls excluded, from creation to started as seen through a watch.
const K8S_SLO: Duration = Duration::from_secs(5);

/// What a run started. Dropping it (at the end, after an error, on Ctrl-C)
/// stops the agents and then the masters by PID and removes every
/// container and volume with the run's label.
struct Run {
    cluster: LocalCluster,
    /// The node agents' names.
    nodes: Vec<String>,
    label: String,
    _dir: tempfile::TempDir,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.cluster.stop_all();
        let removed = local::remove_labelled(&self.label);
        eprintln!(
            "  cleanup: agents and masters stopped, {removed} containers labelled {} removed",
            self.label
        );
    }
}

/// One bare pod: a busybox container sleeping. A grace of 1 s because
/// `sleep` as PID 1 ignores SIGTERM: deleting waits out the whole grace.
fn bench_pod(name: &str) -> Result<Object> {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: bench}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: app, image: 'corral/busybox:1', command: [sleep, '3600']}}]\n"
    );
    let mut objs = manifest::parse("bench", &text).map_err(|e| err(format!("{e:?}")))?;
    Ok(objs.remove(0))
}

/// Follows the pods of `default` from `from` and notes the first moment
/// each was seen Running and Ready. Re-opens the watch where it left off
/// when the stream ends (a master restarting, a leader change).
fn follow_ready(
    client: CorralClient,
    mut from: Revision,
    cancel: CancellationToken,
) -> watch::Receiver<HashMap<String, Instant>> {
    let (tx, rx) = watch::channel(HashMap::new());
    tokio::spawn(async move {
        while !cancel.is_cancelled() {
            let mut stream = match client.watch_objects("pods", "default", Some(from)).await {
                Ok(s) => Box::pin(s),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            loop {
                let batch = tokio::select! {
                    _ = cancel.cancelled() => return,
                    batch = stream.next() => batch,
                };
                let Some(Ok(events)) = batch else { break };
                let seen = Instant::now();
                for e in events {
                    from = Revision(e.revision.0 + 1);
                    let Object::Pod(p) = e.object else { continue };
                    if e.type_ != "DELETED" && p.phase() == Some(PodPhase::Running) && p.is_ready() {
                        tx.send_if_modified(|ready| {
                            let new = !ready.contains_key(&p.metadata.name);
                            ready.entry(p.metadata.name.clone()).or_insert(seen);
                            new
                        });
                    }
                }
            }
        }
    });
    rx
}

/// When each of `names` was first seen Ready; an error after `within`.
async fn wait_ready(
    ready: &mut watch::Receiver<HashMap<String, Instant>>,
    names: &[String],
    within: Duration,
) -> Result<Vec<Instant>> {
    let all = |m: &HashMap<String, Instant>| names.iter().all(|n| m.contains_key(n));
    let waited = tokio::time::timeout(within, async {
        ready.wait_for(all).await.map(|m| names.iter().map(|n| m[n]).collect::<Vec<Instant>>())
    })
    .await;
    match waited {
        Ok(Ok(at)) => Ok(at),
        Ok(Err(_)) => Err(err("the pod watch stopped")),
        Err(_) => {
            let m = ready.borrow();
            let missing: Vec<&String> = names.iter().filter(|n| !m.contains_key(*n)).collect();
            Err(err(format!(
                "{} of {} pods not Running and Ready within {within:?}, e.g. {:?} (--state-dir DIR keeps the agents' logs)",
                missing.len(),
                names.len(),
                &missing[..missing.len().min(3)]
            )))
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.0}", us as f64 / 1000.0)
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn new_hist() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("histogram bounds are valid")
}

/// Runs the benchmark; Ctrl-C or SIGTERM ends it early, cleanup included.
pub async fn run(args: &PodsBenchArgs) -> Result<()> {
    tokio::select! {
        done = bench(args) => done,
        _ = super::master::wait_for_signal() => Err(err("interrupted; cleaned up")),
    }
}

async fn start(args: &PodsBenchArgs) -> Result<Run> {
    if args.nodes == 0 || args.nodes > 200 {
        return Err(err(format!("--nodes must be 1 to 200 (127.0.0.21 to .220), not {}", args.nodes)));
    }
    let runtime = node::runtime::docker::DockerRuntime::connect(node::runtime::docker::DEFAULT_NETWORK)
        .await
        .map_err(|e| err(format!("cannot use Docker: {e}")))?;
    node::runtime::docker::ensure_busybox_images(runtime.docker()).await.map_err(err)?;

    let dir = tempfile::Builder::new().prefix("corral-bench-").tempdir().map_err(err)?;
    let opts = LocalOptions {
        exe: std::env::current_exe().map_err(err)?,
        state_dir: args.state_dir.clone().unwrap_or_else(|| dir.path().to_path_buf()),
        masters: args.masters,
        base_port: free_base_port(args.masters as u16),
        master_flags: Vec::new(),
        master_hosts: Vec::new(),
    };
    let id = format!("b{:08x}", rand::random::<u32>());
    let mut run = Run {
        cluster: LocalCluster::start(opts).map_err(err)?,
        nodes: (1..=args.nodes).map(|i| format!("{id}-n{i}")).collect(),
        label: format!("io.corral.bench={id}"),
        _dir: dir,
    };
    run.cluster.wait_ready(Duration::from_secs(60), |m| eprintln!("  {m}")).await.map_err(err)?;
    let extra = ["--container-labels".to_string(), run.label.clone()];
    for (i, name) in (1..).zip(run.nodes.clone()) {
        run.cluster.spawn_node_as(i, &name, &format!("127.0.0.{}", 20 + i), &extra).map_err(err)?;
    }
    Ok(run)
}

async fn wait_nodes_ready(client: &CorralClient, run: &Run) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = 0;
        for name in &run.nodes {
            if let Ok(Object::Node(node)) = client.get_object("nodes", "", name).await {
                ready += usize::from(node.is_ready());
            }
        }
        if ready == run.nodes.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!("{ready}/{} nodes Ready after 60 s", run.nodes.len())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bench(args: &PodsBenchArgs) -> Result<()> {
    let started = Instant::now();
    let run = start(args).await?;
    let client = run.cluster.client().with_timeout(Duration::from_secs(30));
    wait_nodes_ready(&client, &run).await?;
    let nodes = &run.cluster.file.nodes;
    println!(
        "corral bench pods: {} masters, {} node agents on Docker ({}), bare pods of one busybox container",
        args.masters,
        nodes.len(),
        nodes.iter().map(|n| n.address.as_str()).collect::<Vec<_>>().join(", ")
    );
    println!("cluster and nodes Ready {:.1} s after the start", started.elapsed().as_secs_f64());

    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (_, rev) = client.list_objects("pods", "default", "").await?;
    let mut ready = follow_ready(client.clone(), Revision(rev.0 + 1), cancel);

    if args.pods > 0 {
        one_at_a_time(&client, &mut ready, args).await?;
    }
    if args.burst > 0 {
        burst(&client, &mut ready, args).await?;
    }
    let (pods, _) = client.list_objects("pods", "default", "app=bench").await?;
    print_spread(&pods);
    delete_all(&client, &pods).await;
    Ok(())
}

/// Applies `args.pods` pods one after the other, each once the previous is
/// Ready, and times each from its apply returning to Running and Ready.
async fn one_at_a_time(
    client: &CorralClient,
    ready: &mut watch::Receiver<HashMap<String, Instant>>,
    args: &PodsBenchArgs,
) -> Result<()> {
    let (mut applied_hist, mut startup) = (new_hist(), new_hist());
    for i in 0..args.pods {
        let name = format!("seq-{i:04}");
        let pod = bench_pod(&name)?;
        let t = Instant::now();
        client.apply(&pod).await?;
        let applied = Instant::now();
        let _ = applied_hist.record(micros(applied - t));
        let at = wait_ready(ready, std::slice::from_ref(&name), args.pod_timeout).await?;
        let _ = startup.record(micros(at[0].saturating_duration_since(applied)));
    }
    println!("{} pods one at a time, from the apply returning to Running and Ready, in ms:", args.pods);
    let row = [0.50, 0.90, 0.99].iter().map(|&q| ms(startup.value_at_quantile(q))).collect::<Vec<_>>();
    let row = [row, vec![ms(startup.max()), ms(startup.mean() as u64)]].concat();
    println!("{}", table(&["p50", "p90", "p99", "max", "mean"], vec![row]));
    println!(
        "(the apply call itself: p50 {} ms, p99 {} ms)",
        ms(applied_hist.value_at_quantile(0.5)),
        ms(applied_hist.value_at_quantile(0.99))
    );
    let p99 = Duration::from_micros(startup.value_at_quantile(0.99));
    println!(
        "Kubernetes' pod startup SLO: p99 <= {} s (stateless pods, no image pull, creation to started seen by a watch); here p99 {:.2} s to Ready: {}",
        K8S_SLO.as_secs(),
        p99.as_secs_f64(),
        if p99 <= K8S_SLO { "within it" } else { "over it" }
    );
    Ok(())
}

/// Applies `args.burst` pods at once and times them until all are Ready.
async fn burst(
    client: &CorralClient,
    ready: &mut watch::Receiver<HashMap<String, Instant>>,
    args: &PodsBenchArgs,
) -> Result<()> {
    let names: Vec<String> = (0..args.burst).map(|i| format!("burst-{i:04}")).collect();
    let pods = names.iter().map(|n| bench_pod(n)).collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let applies = pods.iter().map(|p| client.apply(p));
    for applied in futures::future::join_all(applies).await {
        applied?;
    }
    let all_applied = start.elapsed();
    let at = wait_ready(ready, &names, args.pod_timeout).await?;
    let mut hist = new_hist();
    for t in &at {
        let _ = hist.record(micros(t.saturating_duration_since(start)));
    }
    let last = at.iter().max().copied().unwrap_or(start);
    let all_ready = last.saturating_duration_since(start);
    println!(
        "{} pods applied at once: all applied in {:.2} s, all Running and Ready in {:.2} s: {:.1} pods/s \
         (from the burst's start: p50 {} ms, p99 {} ms)",
        args.burst,
        all_applied.as_secs_f64(),
        all_ready.as_secs_f64(),
        args.burst as f64 / all_ready.as_secs_f64(),
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.99))
    );
    Ok(())
}

/// Prints how many of `pods` each node runs.
fn print_spread(pods: &[Object]) {
    let mut per_node = std::collections::BTreeMap::<&str, usize>::new();
    for p in pods {
        if let Object::Pod(p) = p {
            *per_node.entry(p.spec.node_name.as_deref().unwrap_or("(none)")).or_default() += 1;
        }
    }
    let spread: Vec<String> = per_node.iter().map(|(n, c)| format!("{n} {c}")).collect();
    println!("pods per node: {}", spread.join(", "));
}

/// Deletes `pods` and waits (30 s at most) for them to go; whatever is
/// left, the [`Run`] guard removes from Docker.
async fn delete_all(client: &CorralClient, pods: &[Object]) {
    let t = Instant::now();
    let deletes = pods.iter().map(|p| client.delete_object("pods", "default", &p.meta().name));
    let failed = futures::future::join_all(deletes).await.iter().filter(|r| r.is_err()).count();
    while t.elapsed() < Duration::from_secs(30) {
        match client.list_objects("pods", "default", "app=bench").await {
            Ok((left, _)) if left.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    eprintln!(
        "  {} pods deleted in {:.1} s ({failed} deletes failed)",
        pods.len(),
        t.elapsed().as_secs_f64()
    );
}
