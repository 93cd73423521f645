//! `corral cluster status | add-master | remove-master`.

use clap::{Args, Subcommand};
use raft_store::NodeId;

use super::{Cli, Result};
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
    }
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
