//! `corral delete -f FILE | KIND NAME [--wait]`: a pod on a node terminates
//! gracefully; `--wait` returns once the objects are gone (or --timeout).

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use control_plane::api::Kind;
use tokio::time::Instant;

use super::{apply, Cli, CliError, Result};
use crate::resource;
use crate::watch::{self, Follow};

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// KIND NAME, or KIND/NAME.
    #[arg(num_args = 0..=2)]
    pub target: Vec<String>,
    /// Delete what these manifests describe.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Return only once the objects are gone (pods: terminated on their node), within --timeout.
    #[arg(long)]
    pub wait: bool,
}

pub async fn delete(cli: &Cli, args: &DeleteArgs) -> Result<()> {
    let targets: Vec<(Kind, String, String)> = match (args.files.is_empty(), args.target.is_empty()) {
        (true, false) => {
            let (res, name) = resource::named(&args.target)?;
            let kind = res.kind("deleting")?;
            let ns = if kind.namespaced() { args.namespace.clone() } else { String::new() };
            vec![(kind, ns, name)]
        }
        (false, true) => apply::parse_all(&args.files)?
            .iter()
            .map(|o| (o.kind(), o.namespace().to_string(), o.meta().name.clone()))
            .collect(),
        _ => return Err(CliError::msg("give KIND NAME (or KIND/NAME), or -f FILE, not both")),
    };
    let client = cli.client();
    for (kind, ns, name) in &targets {
        let (action, _) = client.delete_object(kind.plural(), ns, name).await?;
        println!("{}/{name} {action}", kind.qualified());
    }
    if !args.wait {
        return Ok(());
    }
    let deadline = Instant::now() + cli.timeout;
    for (kind, ns, name) in &targets {
        let what = format!("{}/{name} to be deleted", kind.qualified());
        let follow =
            Follow { kind: *kind, namespace: ns, selector: "", deadline: Some(deadline), what: &what };
        let key = format!("{ns}/{name}");
        watch::follow(&client, &follow, |seen, _| match seen.contains_key(&key) {
            true => ControlFlow::Continue(()),
            false => ControlFlow::Break(()),
        })
        .await?;
        println!("{}/{name} gone", kind.qualified());
    }
    Ok(())
}
