//! `corral kv`: the raw replicated store, for operators and debugging.

use clap::{Args, Subcommand};
use futures::StreamExt;
use raft_store::{EventKind, Revision};

use super::{Cli, Result};
use crate::output::{table, Format};

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Write a key (linearizable, acknowledged once committed by a quorum).
    #[command(
        after_help = "Examples:\n  corral kv put greeting hello\n  corral kv put greeting hi --expect-revision 12   # compare-and-swap\n  corral kv put lock me --expect-revision 0        # create only if absent"
    )]
    Put(PutArgs),
    /// Read a key (linearizable unless --stale).
    #[command(after_help = "Examples:\n  corral kv get greeting\n  corral kv get greeting --stale -o json")]
    Get(GetArgs),
    /// Delete a key.
    #[command(after_help = "Examples:\n  corral kv del greeting")]
    Del(DelArgs),
    /// List keys under a prefix.
    #[command(after_help = "Examples:\n  corral kv list\n  corral kv list /registry/pods/")]
    List(ListArgs),
    /// Stream changes under a prefix, from a revision or from now.
    #[command(after_help = "Examples:\n  corral kv watch app/ --from 1")]
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct PutArgs {
    pub key: String,
    pub value: String,
    /// Only write if the key is at this revision (0 = only if absent).
    #[arg(long)]
    pub expect_revision: Option<u64>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub key: String,
    /// Read this master's state without a read index (may be stale).
    #[arg(long)]
    pub stale: bool,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    pub key: String,
    #[arg(long)]
    pub expect_revision: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(default_value = "")]
    pub prefix: String,
    #[arg(long)]
    pub stale: bool,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(default_value = "")]
    pub prefix: String,
    /// Start at this revision (events at it included); default: from now on.
    #[arg(long)]
    pub from: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<usize>,
}

pub async fn run(cli: &Cli, cmd: &KvCommand) -> Result<()> {
    let client = cli.client();
    match cmd {
        KvCommand::Put(a) => {
            let rev = client.put(a.key.as_bytes(), a.value.as_bytes(), a.expect_revision).await?;
            println!("{} written at revision {rev}", a.key);
        }
        KvCommand::Get(a) => {
            let (kv, at) = client.get(a.key.as_bytes(), a.stale).await?;
            let Some(kv) = kv else {
                return Err(super::CliError::msg(format!(
                    "key {:?} not found (store at revision {at})",
                    a.key
                )));
            };
            let value = String::from_utf8_lossy(&kv.value).to_string();
            match a.output {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({"key": a.key, "value": value, "revision": kv.revision.0})
                ),
                Format::Table => println!("{value}"),
            }
        }
        KvCommand::Del(a) => {
            let (rev, existed) = client.delete(a.key.as_bytes(), a.expect_revision).await?;
            if existed {
                println!("{} deleted at revision {rev}", a.key);
            } else {
                println!("{} did not exist", a.key);
            }
        }
        KvCommand::List(a) => {
            let (kvs, at) = client.list(a.prefix.as_bytes(), a.stale).await?;
            let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
            match a.output {
                Format::Json => {
                    let items: Vec<_> = kvs
                        .iter()
                        .map(|kv| serde_json::json!({"key": text(&kv.key), "value": text(&kv.value), "revision": kv.revision.0}))
                        .collect();
                    println!("{}", serde_json::json!({"revision": at.0, "items": items}));
                }
                Format::Table => {
                    let rows = kvs
                        .iter()
                        .map(|kv| vec![text(&kv.key), kv.revision.to_string(), text(&kv.value)])
                        .collect();
                    println!("{}", table(&["key", "revision", "value"], rows));
                }
            }
        }
        KvCommand::Watch(a) => {
            let mut stream = Box::pin(client.watch(a.prefix.as_bytes(), a.from.map(Revision)).await?);
            let mut seen = 0;
            while let Some(batch) = stream.next().await {
                for e in batch? {
                    let kind = match e.kind {
                        EventKind::Put => "PUT",
                        EventKind::Delete => "DELETE",
                    };
                    println!(
                        "{} {kind} {} {}",
                        e.revision,
                        String::from_utf8_lossy(&e.key),
                        String::from_utf8_lossy(&e.value)
                    );
                    seen += 1;
                    if a.limit.is_some_and(|l| seen >= l) {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}
