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
    /// Worker nodes to start (accepted; the node agent arrives in a later release).
    #[arg(long, default_value_t = 0)]
    pub nodes: usize,
    /// Where the cluster keeps its data, logs and cluster.json.
    #[arg(long, default_value = ".corral")]
    pub state_dir: PathBuf,
    /// The first master listens on 127.0.0.1:BASE_PORT, the next on +1, ...
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
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
    if args.nodes > 0 {
        eprintln!(
            "note: --nodes {}: the worker node agent is not part of this build yet; starting the masters only",
            args.nodes
        );
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
    let opts = LocalOptions {
        exe,
        state_dir: args.state_dir.clone(),
        masters: args.masters,
        base_port: args.base_port,
        master_flags: Vec::new(),
    };
    let cluster = LocalCluster::start(opts).map_err(|e| CliError::msg(e.to_string()))?;
    for m in &cluster.file.masters {
        eprintln!("started master {} at {} (pid {}, log {})", m.id, m.address, m.pid, m.log.display());
    }
    let status = cluster
        .wait_ready(Duration::from_secs(60), |msg| eprintln!("  {msg}"))
        .await
        .map_err(|e| CliError::msg(format!("{e}; see the logs in {}", args.state_dir.display())))?;
    let servers = cluster.file.addresses().join(",");
    cluster.detach();
    print!("{}", super::cluster::status_table(&status));
    println!("\ncluster state: {}", ClusterFile::path(&args.state_dir).display());
    println!("next: export CORRAL_SERVER={servers}");
    println!("      corral kv put hello world && corral kv get hello");
    println!("      corral cluster status");
    println!("      kill -9 <the leader's pid from cluster.json>; corral cluster status   # a new leader within a second");
    println!("      corral down --state-dir {}", args.state_dir.display());
    Ok(())
}

pub async fn run_down(args: &DownArgs) -> Result<()> {
    let file = ClusterFile::load(&args.state_dir).map_err(|e| {
        CliError::msg(format!(
            "{e}: no cluster started from {} (corral up writes it)",
            args.state_dir.display()
        ))
    })?;
    for p in file.masters.iter().chain(&file.nodes) {
        if !local::is_our_master(p.pid, &p.data_dir) {
            eprintln!("{} {} (pid {}) is not running", p.role, p.id, p.pid);
            continue;
        }
        local::stop_pid(p.pid, Duration::from_secs(10))
            .map_err(|e| CliError::msg(format!("cannot stop {} {} (pid {}): {e}", p.role, p.id, p.pid)))?;
        eprintln!("stopped {} {} (pid {})", p.role, p.id, p.pid);
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
