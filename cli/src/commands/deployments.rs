//! What operators do to deployments: `scale`, `set image`, and `rollout
//! status | history | undo`. Changes read the deployment, change it with a
//! pure function, and write it back with compare-and-swap (`ops::update`).

use std::ops::ControlFlow;

use clap::{Args, Subcommand};
use control_plane::api::{Deployment, Kind, Object};
use control_plane::controllers::deployment::{self, revisions};
use tokio::time::Instant;

use super::{ops, Cli, CliError, Result};
use crate::output::table;
use crate::resource;
use crate::watch::{self, Change, Follow};

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// deployment/NAME (or deployment NAME)
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    #[arg(long)]
    pub replicas: i32,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Change container images of a deployment's pod template (starts a rollout).
    #[command(
        after_help = "Examples:\n  corral set image deployment/web web=corral/busybox:2\n  corral set image deployment/web '*=corral/busybox:2'   # every container"
    )]
    Image(SetImageArgs),
}

#[derive(Debug, Args)]
pub struct SetImageArgs {
    /// deployment/NAME
    pub target: String,
    /// CONTAINER=IMAGE, one or more (`*` for every container).
    #[arg(required = true)]
    pub images: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Follow a deployment's rollout until it is done, fails or --timeout passes.
    #[command(
        after_help = "Examples:\n  corral rollout status deployment/web\n  corral --timeout 5m rollout status deployment/web"
    )]
    Status(RolloutArgs),
    /// The deployment's revisions (--revision N: that revision's pod template).
    #[command(
        after_help = "Examples:\n  corral rollout history deployment/web\n  corral rollout history deployment/web --revision 2"
    )]
    History(HistoryArgs),
    /// Roll a deployment back to its previous revision (or --to-revision N).
    #[command(
        after_help = "Examples:\n  corral rollout undo deployment/web\n  corral rollout undo deployment/web --to-revision 2"
    )]
    Undo(UndoArgs),
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// deployment/NAME
    pub target: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Show this revision's pod template.
    #[arg(long)]
    pub revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    #[arg(long)]
    pub to_revision: Option<i64>,
}

pub async fn scale(cli: &Cli, args: &ScaleArgs) -> Result<()> {
    let name = resource::deployment(&args.target)?;
    cli.client().scale("deployments", &args.namespace, &name, args.replicas).await?;
    println!("deployment.apps/{name} scaled");
    Ok(())
}

/// Sets `CONTAINER=IMAGE` pairs (`*`: every container) on `d`'s template. Pure.
pub fn set_images(mut d: Deployment, pairs: &[String]) -> std::result::Result<Deployment, String> {
    for pair in pairs {
        let (container, image) = pair
            .split_once('=')
            .filter(|(c, i)| !c.is_empty() && !i.is_empty())
            .ok_or_else(|| format!("{pair:?}: give CONTAINER=IMAGE, e.g. web=corral/busybox:2"))?;
        let containers = &mut d.spec.template.spec.containers;
        let mut found = false;
        for c in containers.iter_mut().filter(|c| container == "*" || c.name == container) {
            c.image = image.to_string();
            found = true;
        }
        if !found {
            let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "unable to find container named {container:?} in deployment {:?} (it has {})",
                d.metadata.name,
                names.join(", ")
            ));
        }
    }
    Ok(d)
}

fn as_deployment(obj: Object) -> std::result::Result<Deployment, String> {
    match obj {
        Object::Deployment(d) => Ok(d),
        other => Err(format!("{} {:?} is not a deployment", other.kind(), other.meta().name)),
    }
}

pub async fn set(cli: &Cli, cmd: &SetCommand) -> Result<()> {
    let SetCommand::Image(args) = cmd;
    let name = resource::deployment(std::slice::from_ref(&args.target))?;
    ops::update(&cli.client(), "deployments", &args.namespace, &name, |obj| {
        set_images(as_deployment(obj)?, &args.images).map(Object::Deployment)
    })
    .await?;
    println!("deployment.apps/{name} image updated");
    Ok(())
}

/// Where a rollout stands, in kubectl's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Waiting(String),
    Done(String),
    Failed(String),
}

/// Reads a deployment's rollout progress from its status. Pure.
pub fn progress(d: &Deployment) -> Progress {
    let name = &d.metadata.name;
    let s = d.status.clone().unwrap_or_default();
    if d.metadata.generation > s.observed_generation {
        return Progress::Waiting("Waiting for deployment spec update to be observed...".into());
    }
    if s.conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    {
        return Progress::Failed(format!("deployment {name:?} exceeded its progress deadline"));
    }
    let replicas = d.replicas();
    let wait = |what: String| {
        Progress::Waiting(format!("Waiting for deployment {name:?} rollout to finish: {what}..."))
    };
    if s.updated_replicas < replicas {
        return wait(format!("{} out of {replicas} new replicas have been updated", s.updated_replicas));
    }
    if s.replicas > s.updated_replicas {
        return wait(format!("{} old replicas are pending termination", s.replicas - s.updated_replicas));
    }
    if s.available_replicas < s.updated_replicas {
        return wait(format!(
            "{} of {} updated replicas are available",
            s.available_replicas, s.updated_replicas
        ));
    }
    Progress::Done(format!("deployment {name:?} successfully rolled out"))
}

pub async fn rollout(cli: &Cli, cmd: &RolloutCommand) -> Result<()> {
    match cmd {
        RolloutCommand::Status(args) => status(cli, args).await,
        RolloutCommand::History(args) => history(cli, args).await,
        RolloutCommand::Undo(args) => {
            let r = &args.rollout;
            let name = resource::deployment(std::slice::from_ref(&r.target))?;
            ops::update(&cli.client(), "deployments", &r.namespace, &name, |obj| {
                deployment::rollback(&as_deployment(obj)?, args.to_revision).map(Object::Deployment)
            })
            .await?;
            println!("deployment.apps/{name} rolled back");
            Ok(())
        }
    }
}

/// Follows the deployment through the watch, printing each new step.
async fn status(cli: &Cli, args: &RolloutArgs) -> Result<()> {
    let name = resource::deployment(std::slice::from_ref(&args.target))?;
    let what = format!("deployment {name:?} to roll out");
    let deadline = Instant::now() + cli.timeout;
    let follow = Follow {
        kind: Kind::Deployment,
        namespace: &args.namespace,
        selector: "",
        deadline: Some(deadline),
        what: &what,
    };
    let key = format!("{}/{name}", args.namespace);
    let mut last = String::new();
    let outcome = watch::follow(&cli.client(), &follow, |seen, change| {
        if matches!(change, Change::Event { object, .. } if object.meta().name != name) {
            return ControlFlow::Continue(());
        }
        let Some(Object::Deployment(d)) = seen.get(&key) else {
            return ControlFlow::Break(Err(format!(
                "deployment {name:?} not found in namespace {:?}",
                args.namespace
            )));
        };
        match progress(d) {
            Progress::Waiting(m) => {
                if m != last {
                    println!("{m}");
                    last = m;
                }
                ControlFlow::Continue(())
            }
            Progress::Done(m) => ControlFlow::Break(Ok(m)),
            Progress::Failed(m) => ControlFlow::Break(Err(m)),
        }
    })
    .await?;
    println!("{}", outcome.map_err(CliError::Msg)?);
    Ok(())
}

async fn history(cli: &Cli, args: &HistoryArgs) -> Result<()> {
    let r = &args.rollout;
    let name = resource::deployment(std::slice::from_ref(&r.target))?;
    let d = as_deployment(cli.client().get_object("deployments", &r.namespace, &name).await?)
        .map_err(CliError::Msg)?;
    let (current, revs) = revisions(&d);
    if let Some(n) = args.revision {
        let rev = revs.iter().find(|e| e.number == n).ok_or_else(|| {
            CliError::msg(format!("unable to find the specified revision {n} of deployment {name:?}"))
        })?;
        println!("deployment.apps/{name} with revision #{n}");
        print!("{}", serde_yaml_ng::to_string(&rev.template).map_err(|e| CliError::msg(e.to_string()))?);
        return Ok(());
    }
    let rows = revs
        .iter()
        .map(|e| {
            let images: Vec<&str> = e.template.spec.containers.iter().map(|c| c.image.as_str()).collect();
            let marker = if e.number == current { "*" } else { "" };
            vec![e.number.to_string(), format!("{name}-{}", e.hash), images.join(","), marker.to_string()]
        })
        .collect();
    println!("deployment.apps/{name}");
    println!("{}", table(&["revision", "replicaset", "images", "current"], rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_plane::api::deployment::DeploymentStatus;
    use control_plane::api::manifest;
    use control_plane::api::pod::Condition;

    fn web() -> Deployment {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, generation: 2}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: a}, {name: side, image: b}]}\n";
        as_deployment(manifest::parse("t", text).unwrap().remove(0)).unwrap()
    }

    #[test]
    fn set_image_changes_the_named_containers_only() {
        let d = set_images(web(), &["side=c".into()]).unwrap();
        let images: Vec<&str> = d.spec.template.spec.containers.iter().map(|c| c.image.as_str()).collect();
        assert_eq!(images, ["a", "c"]);
        let d = set_images(web(), &["*=z".into()]).unwrap();
        assert!(d.spec.template.spec.containers.iter().all(|c| c.image == "z"));
        let err = set_images(web(), &["nope=x".into()]).unwrap_err();
        assert!(
            err.contains("unable to find container named \"nope\"") && err.contains("web, side"),
            "{err}"
        );
        assert!(set_images(web(), &["web".into()]).unwrap_err().contains("CONTAINER=IMAGE"));
    }

    #[test]
    fn rollout_progress_reads_like_kubectl() {
        let status = |observed, replicas, updated, available, reason: Option<&str>| DeploymentStatus {
            observed_generation: Some(observed),
            replicas,
            updated_replicas: updated,
            available_replicas: available,
            conditions: reason
                .map(|r| Condition {
                    type_: "Progressing".into(),
                    status: "False".into(),
                    reason: Some(r.into()),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let wait =
            |m: &str| Progress::Waiting(format!("Waiting for deployment \"web\" rollout to finish: {m}..."));
        let cases = [
            (
                status(1, 3, 3, 3, None),
                Progress::Waiting("Waiting for deployment spec update to be observed...".into()),
            ),
            (status(2, 3, 1, 1, None), wait("1 out of 3 new replicas have been updated")),
            (status(2, 5, 3, 3, None), wait("2 old replicas are pending termination")),
            (status(2, 3, 3, 1, None), wait("1 of 3 updated replicas are available")),
            (status(2, 3, 3, 3, None), Progress::Done("deployment \"web\" successfully rolled out".into())),
            (
                status(2, 3, 1, 1, Some("ProgressDeadlineExceeded")),
                Progress::Failed("deployment \"web\" exceeded its progress deadline".into()),
            ),
        ];
        for (s, want) in cases {
            let mut d = web();
            d.status = Some(s.clone());
            assert_eq!(progress(&d), want, "{s:?}");
        }
    }
}
