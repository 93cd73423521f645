//! Every `corral` subcommand: its arguments (one clap struct each) and its run function.

pub mod agent;
pub mod apply;
pub mod bench;
pub mod bench_pods;
pub mod bench_proxy;
pub mod bench_scheduler;
pub mod cluster;
pub mod columns;
pub mod completion;
pub mod delete;
pub mod deployments;
pub mod describe;
pub mod exec;
pub mod get;
pub mod kv;
pub mod logs;
pub mod master;
pub mod node;
pub mod ops;
pub mod replicasets;
pub mod top;
pub mod up;
pub mod up_hosts;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use control_plane::{ClientError, CorralClient};
use raft_store::transport::TcpDialer;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Msg(String),
    /// The command `corral exec` ran ended with this (non-zero) exit code:
    /// `corral` exits with it, printing nothing more.
    #[error("the command exited with code {0}")]
    Exit(u8),
}

impl CliError {
    pub fn msg(m: impl Into<String>) -> Self {
        CliError::Msg(m.into())
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// Corral: a small, fast, honest Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, propagate_version = true)]
pub struct Cli {
    /// Master addresses (host:port, comma-separated); any master works. Else
    /// CORRAL_SERVER, else `server:` in ~/.corral/config, else 127.0.0.1:7001-7003.
    #[arg(long, global = true, env = "CORRAL_SERVER", value_delimiter = ',')]
    pub server: Vec<String>,
    /// How long a command keeps trying (or waits: rollout status, delete --wait) before it gives up (e.g. 15s, 500ms, 5m).
    #[arg(long, global = true, default_value = "15s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a master (a Raft member serving the API).
    #[command(
        after_help = "Examples:\n  corral master --id 1 --listen 127.0.0.1:7001 --data-dir /var/lib/corral/m1 \\\n      --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003\n  corral master --id 4 --listen 127.0.0.1:7004 --data-dir /var/lib/corral/m4 --join 127.0.0.1:7001"
    )]
    Master(master::MasterArgs),
    /// Run a worker node agent: pods on the local Docker engine, the service proxy, DNS.
    #[command(
        after_help = "Examples:\n  corral node --name n1 --address 127.0.0.11 --labels disk=ssd --server 127.0.0.1:7001,127.0.0.1:7002"
    )]
    Node(node::NodeArgs),
    /// Inspect and change the set of masters.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Read and write the raw replicated store (for operators and debugging).
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Create or update objects from manifests (YAML or JSON); all or nothing.
    #[command(
        after_help = "Examples:\n  corral apply -f web.yaml\n  corral apply -f manifests/\n  cat web.yaml | corral apply -f -\n  corral get deployment web -o yaml > web.yaml && corral apply -f web.yaml"
    )]
    Apply(apply::ApplyArgs),
    /// List or show objects, or watch them change.
    #[command(
        after_help = "Examples:\n  corral get pods\n  corral get deployment web -o yaml\n  corral get pods -A -l app=web -o wide\n  corral get rs                       # each deployment's revisions\n  corral get pods -w                  # then every change"
    )]
    Get(get::GetArgs),
    /// Show an object in detail: its key fields, conditions and recent events.
    #[command(
        after_help = "Examples:\n  corral describe deployment web\n  corral describe pod/web-7d4b9-x2x9q\n  corral describe node node-1"
    )]
    Describe(describe::DescribeArgs),
    /// Delete objects (a pod on a node terminates gracefully).
    #[command(
        after_help = "Examples:\n  corral delete deployment web\n  corral delete -f web.yaml\n  corral delete pod/web-7d4b9-x2x9q --wait --timeout 60s"
    )]
    Delete(delete::DeleteArgs),
    /// Set a deployment's replica count.
    #[command(after_help = "Examples:\n  corral scale deployment/web --replicas 5")]
    Scale(deployments::ScaleArgs),
    /// Change a deployment's pod template (starts a rollout).
    #[command(subcommand)]
    Set(deployments::SetCommand),
    /// Print or follow a container's log (from the node that runs the pod).
    #[command(
        after_help = "Examples:\n  corral logs web-7d4b9-x2x9q\n  corral logs duo -c server -f --tail 20"
    )]
    Logs(logs::LogsArgs),
    /// Run a command in a running container; exits with the command's exit code.
    #[command(
        after_help = "Examples:\n  corral exec web-7d4b9-x2x9q -- cat /etc/hostname\n  corral exec duo -c server -n shop -- sh -c 'echo $HOSTNAME; ls /data'"
    )]
    Exec(exec::ExecArgs),
    /// Follow, list and undo deployment rollouts.
    #[command(subcommand)]
    Rollout(deployments::RolloutCommand),
    /// Mark a node unschedulable: no new pods go there.
    #[command(after_help = "Examples:\n  corral cordon node-2")]
    Cordon(ops::NodeArgs),
    /// Mark a node schedulable again.
    #[command(after_help = "Examples:\n  corral uncordon node-2")]
    Uncordon(ops::NodeArgs),
    /// Cordon a node and evict its pods, respecting each deployment's maxUnavailable.
    #[command(after_help = "Examples:\n  corral drain n2 && corral uncordon n2")]
    Drain(ops::DrainArgs),
    /// Show CPU and memory usage of nodes or pods.
    #[command(subcommand)]
    Top(top::TopCommand),
    /// Scale a deployment on CPU with a HorizontalPodAutoscaler.
    Autoscale(top::AutoscaleArgs),
    /// Start a local cluster of real processes on loopback.
    #[command(
        after_help = "Examples:\n  corral up --masters 3 --state-dir .corral\n  corral down --state-dir .corral"
    )]
    Up(up::UpArgs),
    /// Stop everything `corral up` started.
    #[command(
        after_help = "Examples:\n  corral down --state-dir .corral\n  corral down --state-dir .corral --purge   # also delete data and logs"
    )]
    Down(up::DownArgs),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  source <(corral completion bash)\n  corral completion zsh > \"${fpath[1]}/_corral\"\n  corral completion fish > ~/.config/fish/completions/corral.fish"
    )]
    Completion(completion::CompletionArgs),
}

pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 15s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl Cli {
    pub fn client(&self) -> CorralClient {
        CorralClient::new(self.server.clone(), Arc::new(TcpDialer::default())).with_timeout(self.timeout)
    }
}

pub async fn run(mut cli: Cli) -> Result<()> {
    cli.server = crate::config::servers(std::mem::take(&mut cli.server), crate::config::path())?;
    match &cli.command {
        Command::Master(args) => master::run(args.clone()).await,
        Command::Node(args) => node::run(&cli, args).await,
        Command::Cluster(cmd) => cluster::run(&cli, cmd).await,
        Command::Kv(cmd) => kv::run(&cli, cmd).await,
        Command::Apply(args) => apply::apply(&cli, args).await,
        Command::Get(args) => get::get(&cli, args).await,
        Command::Describe(args) => describe::describe(&cli, args).await,
        Command::Delete(args) => delete::delete(&cli, args).await,
        Command::Scale(args) => deployments::scale(&cli, args).await,
        Command::Set(cmd) => deployments::set(&cli, cmd).await,
        Command::Logs(args) => logs::run(&cli, args).await,
        Command::Exec(args) => exec::run(&cli, args).await,
        Command::Rollout(cmd) => deployments::rollout(&cli, cmd).await,
        Command::Cordon(args) => ops::cordon(&cli, args, true).await,
        Command::Uncordon(args) => ops::cordon(&cli, args, false).await,
        Command::Drain(args) => ops::drain(&cli, args).await,
        Command::Top(cmd) => top::run(&cli, cmd).await,
        Command::Autoscale(args) => top::autoscale(&cli, args).await,
        Command::Up(args) => up::run_up(args).await,
        Command::Down(args) => up::run_down(args).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Completion(args) => completion::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert!(parse_duration("3h").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples() {
        use clap::CommandFactory;
        fn missing(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.has_subcommands() {
                cmd.get_subcommands().for_each(|c| missing(c, &path, out));
            } else if !cmd.get_after_help().is_some_and(|h| h.to_string().contains("Examples:")) {
                out.push(path);
            }
        }
        let mut out = Vec::new();
        Cli::command().get_subcommands().for_each(|c| missing(c, "", &mut out));
        assert!(out.is_empty(), "commands without an Examples section: {out:?}");
    }
}
