//! `corral bench`: the benchmarks' arguments, and `corral bench store`:
//! write throughput and latency of a 3-master loopback cluster with durable
//! writes, then leader failover times under load. The other benchmarks live
//! in `bench_*.rs`. Each prints its figures and asserts nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use control_plane::CorralClient;
use hdrhistogram::Histogram;

use super::{CliError, Result};
use crate::local::{free_base_port, LocalCluster, LocalOptions};
use crate::output::table;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Writes/s and latency at 1, 16 and 64 clients, then kill -9 of the leader under load.
    #[command(after_help = "Examples:\n  corral bench store --duration 10s --failovers 5")]
    Store(StoreBenchArgs),
    /// Scheduling throughput through Raft: simulated nodes, many pods.
    #[command(after_help = "Examples:\n  corral bench scheduler --nodes 1000 --pods 30000")]
    Scheduler(SchedulerBenchArgs),
    /// Pod startup latency on real node agents and Docker: apply to Running and Ready.
    #[command(after_help = "Examples:\n  corral bench pods --pods 50 --nodes 2")]
    Pods(PodsBenchArgs),
    /// The service proxy's requests/s, added latency and bulk MB/s against direct connections.
    #[command(
        after_help = "Examples:\n  corral bench proxy --requests 20000 --connections 8 --payload 1024"
    )]
    Proxy(ProxyBenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PodsBenchArgs {
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    /// Node agents (`corral node` processes on the local Docker engine) at 127.0.0.21, .22, ...
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Pods created one at a time, each timed from its apply to Running and Ready.
    #[arg(long, default_value_t = 50)]
    pub pods: usize,
    /// Pods applied all at once afterwards, timed until every one is Ready (0 skips it).
    #[arg(long, default_value_t = 50)]
    pub burst: usize,
    /// Give up when a pod (or the burst) is not Ready after this long.
    #[arg(long, default_value = "120s", value_parser = super::parse_duration)]
    pub pod_timeout: Duration,
    /// Keep the cluster's data and logs here (default: a temp dir, removed afterwards).
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ProxyBenchArgs {
    /// Round trips per measurement (direct and proxied, with kept-alive
    /// connections and with a new connection per request).
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Concurrent client connections (or connects in flight, per request).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Bytes each request sends; the backend echoes them back.
    #[arg(long, default_value_t = 1024)]
    pub payload: usize,
    /// MiB sent in one bulk transfer, direct and proxied (0 skips it).
    #[arg(long, default_value_t = 256)]
    pub bulk_mib: u64,
    /// Every measurement stops after this long, even short of --requests.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub max_time: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct SchedulerBenchArgs {
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    /// Simulated nodes (one in-process fleet).
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Pods in all, spread over the deployments.
    #[arg(long, default_value_t = 30_000)]
    pub pods: usize,
    #[arg(long, default_value_t = 6)]
    pub deployments: usize,
    /// Give up after this long.
    #[arg(long, default_value = "15m", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// Keep the cluster's data and logs here (default: a temp dir, removed afterwards).
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StoreBenchArgs {
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    /// How long each concurrency level writes.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Concurrent clients per run.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// kill -9 trials on the leader.
    #[arg(long, default_value_t = 5)]
    pub failovers: usize,
    /// Extra flags for every master, e.g. --master-flags="--snapshot-every 500".
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    pub master_flags: Vec<String>,
    /// Keep the cluster's data and logs here (default: a temp dir, removed afterwards).
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
}

pub async fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Store(args) => store(args).await,
        BenchCommand::Scheduler(args) => super::bench_scheduler::run(args).await,
        BenchCommand::Pods(args) => super::bench_pods::run(args).await,
        BenchCommand::Proxy(args) => super::bench_proxy::run(args).await,
    }
}

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::msg(e.to_string())
}

async fn store(args: &StoreBenchArgs) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("corral-bench-").tempdir().map_err(err)?;
    let exe = std::env::current_exe().map_err(err)?;
    let opts = LocalOptions {
        exe,
        state_dir: args.state_dir.clone().unwrap_or_else(|| dir.path().to_path_buf()),
        masters: args.masters,
        base_port: free_base_port(args.masters as u16),
        master_flags: args.master_flags.clone(),
        master_hosts: Vec::new(),
    };
    let mut cluster = LocalCluster::start(opts).map_err(err)?;
    cluster.wait_ready(Duration::from_secs(60), |m| eprintln!("  {m}")).await.map_err(err)?;
    println!(
        "corral bench store: {} masters on loopback, durable (fsync) writes of {}-byte values, {:?} per run",
        args.masters, args.value_size, args.duration
    );

    let mut rows = Vec::new();
    for &clients in &args.clients {
        let r = load(&cluster.client(), clients, args.value_size, args.duration, None).await;
        rows.push(vec![
            clients.to_string(),
            format!("{:.0}", r.ok as f64 / r.elapsed.as_secs_f64()),
            format!("{:.2}", r.hist.value_at_quantile(0.50) as f64 / 1000.0),
            format!("{:.2}", r.hist.value_at_quantile(0.99) as f64 / 1000.0),
            r.failed.to_string(),
        ]);
    }
    println!("{}", table(&["clients", "writes/s", "p50 ms", "p99 ms", "errors"], rows));

    if args.failovers > 0 {
        let mut times = Vec::new();
        for trial in 1..=args.failovers {
            let t = match failover_trial(&mut cluster, args.value_size).await {
                Ok(t) => t,
                Err(e) => {
                    if args.state_dir.is_some() {
                        // Leave the processes up for inspection (`corral down` stops them).
                        cluster.detach();
                    }
                    return Err(e);
                }
            };
            println!(
                "failover {trial}: {:.0} ms from kill -9 of the leader to the first acknowledged write",
                t * 1e3
            );
            times.push(t);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "failover over {} trials: min {:.0} ms, mean {:.0} ms, max {:.0} ms",
            times.len(),
            times[0] * 1e3,
            mean * 1e3,
            times[times.len() - 1] * 1e3
        );
    }
    cluster.stop_all();
    Ok(())
}

struct LoadResult {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

/// `clients` tasks write distinct keys until `duration` passes (or `stop` is set).
async fn load(
    client: &CorralClient,
    clients: usize,
    value_size: usize,
    duration: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> LoadResult {
    let start = Instant::now();
    let deadline = start + duration;
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone().with_timeout(Duration::from_secs(5));
        let failed = failed.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram bounds are valid");
            let value = vec![b'x'; value_size];
            let mut n = 0u64;
            while Instant::now() < deadline && !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                let key = format!("bench/{c}/{n}");
                let t = Instant::now();
                match client.put(key.as_bytes(), &value, None).await {
                    Ok(_) => {
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
            hist
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("histogram bounds are valid");
    for t in tasks {
        if let Ok(h) = t.await {
            hist.add(h).expect("histograms share bounds");
        }
    }
    LoadResult { ok: hist.len(), failed: failed.load(Ordering::Relaxed), elapsed: start.elapsed(), hist }
}

/// Kills the leader under a 16-client write load; returns the seconds from
/// the kill to the first write acknowledged after it. Restarts the killed
/// master and waits for the full cluster before returning.
async fn failover_trial(cluster: &mut LocalCluster, value_size: usize) -> Result<f64> {
    let client = cluster.client();
    // The leader as the leader itself reports it (not a follower's stale view).
    let status = client.status().await?;
    let leader = status.members.iter().find(|m| m.role == "leader").map(|m| m.id).unwrap_or(0);
    if leader == 0 || leader != status.leader_id {
        return Err(CliError::msg(format!("no settled leader before the trial: {status:?}")));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move { load(&client, 16, value_size, Duration::from_secs(30), Some(stop)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = Instant::now();
    cluster.signal_master(leader, libc::SIGKILL).map_err(err)?;
    let prober = client
        .with_backoff(Duration::from_millis(5), Duration::from_millis(5))
        .with_timeout(Duration::from_secs(30));
    prober.put(b"bench/failover-probe", &vec![b'p'; value_size], None).await?;
    let took = killed_at.elapsed().as_secs_f64();

    stop.store(true, Ordering::Relaxed);
    let _ = background.await;
    cluster.restart_master(leader).map_err(err)?;
    cluster.wait_ready(Duration::from_secs(60), |_| {}).await.map_err(err)?;
    Ok(took)
}
