//! `corral cluster status | add-master | remove-master | snapshot save | snapshot restore`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use raft_store::backup::{self, Backup};
use raft_store::NodeId;

use super::{Cli, CliError, Result};
use crate::output::{table, Format};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show every master: role, address, term, log, committed and applied index, and who leads.
    #[command(after_help = "Examples:\n  corral cluster status\n  corral cluster status -o json")]
    Status(StatusArgs),
    /// Add a master: it joins as a learner and becomes a voter once caught up.
    #[command(
        after_help = "Examples:\n  # start the new master first, then add it\n  corral master --id 4 --listen 127.0.0.1:7004 --data-dir m4 --join 127.0.0.1:7001\n  (or, if it was started without --join) corral cluster add-master 4 127.0.0.1:7004"
    )]
    AddMaster(AddMasterArgs),
    /// Remove a master from the cluster (then stop its process).
    #[command(after_help = "Examples:\n  corral cluster remove-master 4")]
    RemoveMaster(RemoveMasterArgs),
    /// Save a consistent backup of the store, or restore one into a new cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save every key of the store at one revision (read on the leader) to FILE.
    #[command(after_help = "Examples:\n  corral cluster snapshot save backup.corral")]
    Save(SaveArgs),
    /// Write a new data dir from FILE, from which a new single-master cluster starts.
    #[command(
        after_help = "Examples:\n  corral cluster snapshot restore backup.corral --data-dir /var/lib/corral/r1 --id 1 --listen 127.0.0.1:7001\n  # then start the master it prints, and add the others with --join"
    )]
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write the backup (written whole, then renamed into place).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `corral cluster snapshot save`.
    pub file: PathBuf,
    /// The new master's data dir: must be missing or empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new master's id.
    #[arg(long, default_value_t = 1)]
    pub id: NodeId,
    /// The address the new master will listen on (recorded in the new cluster's membership).
    #[arg(long)]
    pub listen: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct AddMasterArgs {
    pub id: NodeId,
    /// host:port the new master listens on.
    pub address: String,
}

#[derive(Debug, Args)]
pub struct RemoveMasterArgs {
    pub id: NodeId,
}

pub async fn run(cli: &Cli, cmd: &ClusterCommand) -> Result<()> {
    let client = cli.client();
    match cmd {
        ClusterCommand::Status(args) => {
            let status = client.status().await?;
            match args.output {
                Format::Json => println!("{}", status_json(&status)),
                Format::Table => print!("{}", status_table(&status)),
            }
        }
        ClusterCommand::AddMaster(args) => {
            eprintln!(
                "adding master {} at {} (learner first, voter once caught up)...",
                args.id, args.address
            );
            let reply = client.add_master(args.id, &args.address).await?;
            println!("{}; voters {:?}, learners {:?}", reply.message, reply.voters, reply.learners);
        }
        ClusterCommand::RemoveMaster(args) => {
            let reply = client.remove_master(args.id).await?;
            println!("{}; voters {:?}, learners {:?}", reply.message, reply.voters, reply.learners);
        }
        ClusterCommand::Snapshot(SnapshotCommand::Save(args)) => {
            let bytes = client.snapshot().await?;
            let backup = Backup::decode(&bytes)
                .map_err(|e| CliError::msg(format!("the cluster sent an unusable snapshot: {e}")))?;
            write_atomically(&args.file, &bytes)?;
            println!(
                "saved cluster {} at revision {} ({} keys, {} bytes, read on master {}) to {}",
                backup.cluster_id.as_deref().unwrap_or("(no id)"),
                backup.revision,
                backup.kvs.len(),
                bytes.len(),
                backup.taken_by,
                args.file.display()
            );
        }
        ClusterCommand::Snapshot(SnapshotCommand::Restore(args)) => restore(args).await?,
    }
    Ok(())
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames
/// it into place: a crash never leaves half a backup under the final name.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let failed = |e: std::io::Error| CliError::msg(format!("cannot write {}: {e}", path.display()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(failed)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

async fn restore(args: &RestoreArgs) -> Result<()> {
    if args.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(CliError::msg(format!(
            "--listen: {:?} is not an ip:port address such as 127.0.0.1:7001",
            args.listen
        )));
    }
    let bytes = std::fs::read(&args.file)
        .map_err(|e| CliError::msg(format!("cannot read {}: {e}", args.file.display())))?;
    let refused = |e: backup::BackupError| CliError::msg(format!("{}: {e}", args.file.display()));
    let backup = Backup::decode(&bytes).map_err(refused)?;
    let done = backup::restore(&backup, &args.data_dir, args.id, &args.listen).await.map_err(refused)?;
    let (dir, id, addr) = (args.data_dir.display(), args.id, &args.listen);
    println!(
        "restored cluster {} at revision {} ({} keys) into {dir} for master {id} at {addr}",
        backup.cluster_id.as_deref().unwrap_or("(no id)"),
        done.revision,
        done.keys
    );
    println!("next: corral master --id {id} --listen {addr} --data-dir {dir}");
    println!("then add masters: corral master --id N --listen HOST:PORT --data-dir DIR --join {addr}");
    Ok(())
}

pub fn status_json(s: &control_plane::pb::StatusResponse) -> String {
    let members: Vec<_> = s
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id, "address": m.address, "role": m.role, "voter": m.voter, "term": m.term,
                "lastLogIndex": m.last_log_index, "committedIndex": m.committed_index,
                "appliedIndex": m.applied_index, "error": if m.error.is_empty() { None } else { Some(&m.error) },
            })
        })
        .collect();
    let leader = if s.leader_id == 0 { None } else { Some(s.leader_id) };
    serde_json::to_string_pretty(&serde_json::json!({ "leader": leader, "term": s.term, "members": members }))
        .expect("json values serialize")
}

pub fn status_table(s: &control_plane::pb::StatusResponse) -> String {
    let rows = s
        .members
        .iter()
        .map(|m| {
            let role = if m.voter || m.role == "unreachable" {
                m.role.clone()
            } else {
                format!("{} (learner)", m.role)
            };
            let num = |n: u64| if m.role == "unreachable" { "-".to_string() } else { n.to_string() };
            vec![
                m.id.to_string(),
                m.address.clone(),
                role,
                num(m.term),
                num(m.last_log_index),
                num(m.committed_index),
                num(m.applied_index),
                m.error.clone(),
            ]
        })
        .collect();
    let leader = match s.leader_id {
        0 => "no leader (an election is under way)".to_string(),
        id => format!("master {id} leads in term {}", s.term),
    };
    format!(
        "{}\n{leader}\n",
        table(&["id", "address", "role", "term", "last log", "committed", "applied", "error"], rows)
    )
}
