//! `corral apply | get | delete | scale`: Kubernetes-shaped objects, the
//! kubectl way.

use std::path::{Path, PathBuf};

use clap::Args;
use control_plane::api::{manifest, Kind, Object, Time};
use control_plane::clock::{Clock, SystemClock};
use control_plane::CorralClient;

use super::{Cli, CliError, Result};
use crate::output::table;

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them (.yaml, .yml, .json), or - for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GetFormat {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// pods, deployments, services, endpoints, nodes, events (or kind/name).
    pub kind: String,
    pub name: Option<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=web,tier!=db.
    #[arg(short = 'l', long, default_value = "")]
    pub selector: String,
    #[arg(short, long, value_enum)]
    pub output: Option<GetFormat>,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// KIND NAME, or KIND/NAME.
    pub target: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// deployment/NAME
    pub target: String,
    #[arg(long)]
    pub replicas: i32,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

fn manifest_files(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| CliError::msg(format!("cannot read stdin: {e}")))?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let files = if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| CliError::msg(format!("cannot read {}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            entries.sort();
            entries
        } else {
            vec![path.clone()]
        };
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| CliError::msg(format!("cannot read {}: {e}", f.display())))?;
            out.push((f.display().to_string(), text));
        }
    }
    Ok(out)
}

/// Parses and validates every document of every file before anything is applied.
fn parse_all(paths: &[PathBuf]) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in manifest_files(paths)? {
        match manifest::parse(&name, &text) {
            Ok(objs) => objects.extend(objs),
            Err(errs) => problems.extend(errs.into_iter().map(|e| e.to_string())),
        }
    }
    if !problems.is_empty() {
        return Err(CliError::msg(format!("nothing applied:\n  {}", problems.join("\n  "))));
    }
    Ok(objects)
}

fn split_target(target: &[String]) -> Result<(Kind, String)> {
    match target {
        [one] if one.contains('/') => {
            let (k, n) = one.split_once('/').expect("checked");
            Ok((Kind::parse(k).map_err(CliError::Msg)?, n.to_string()))
        }
        [kind, name] => Ok((Kind::parse(kind).map_err(CliError::Msg)?, name.clone())),
        _ => Err(CliError::msg("give KIND NAME or KIND/NAME (e.g. deployment/web), or -f FILE")),
    }
}

pub async fn apply(cli: &Cli, args: &ApplyArgs) -> Result<()> {
    let objects = parse_all(&args.files)?;
    let client = cli.client();
    for obj in &objects {
        let (_, action) = client.apply(obj).await?;
        println!("{}/{} {action}", obj.kind().qualified(), obj.meta().name);
    }
    Ok(())
}

pub async fn delete(cli: &Cli, args: &DeleteArgs) -> Result<()> {
    let client = cli.client();
    let targets: Vec<(Kind, String, String)> = if args.files.is_empty() {
        let (kind, name) = split_target(&args.target)?;
        vec![(kind, args.namespace.clone(), name)]
    } else {
        parse_all(&args.files)?
            .iter()
            .map(|o| (o.kind(), o.namespace().to_string(), o.meta().name.clone()))
            .collect()
    };
    for (kind, ns, name) in targets {
        let (action, _) = client.delete_object(kind.plural(), &ns, &name).await?;
        println!("{}/{name} {action}", kind.qualified());
    }
    Ok(())
}

pub async fn scale(cli: &Cli, args: &ScaleArgs) -> Result<()> {
    let (kind, name) = split_target(std::slice::from_ref(&args.target))?;
    cli.client().scale(kind.plural(), &args.namespace, &name, args.replicas).await?;
    println!("{}/{name} scaled", kind.qualified());
    Ok(())
}

pub async fn get(cli: &Cli, args: &GetArgs) -> Result<()> {
    let (kind, name) = match args.kind.split_once('/') {
        Some((k, n)) => (Kind::parse(k).map_err(CliError::Msg)?, Some(n.to_string())),
        None => (Kind::parse(&args.kind).map_err(CliError::Msg)?, args.name.clone()),
    };
    let client: CorralClient = cli.client();
    let namespace = if args.all_namespaces { String::new() } else { args.namespace.clone() };
    let objects = match &name {
        Some(n) => vec![client.get_object(kind.plural(), &args.namespace, n).await?],
        None => client.list_objects(kind.plural(), &namespace, &args.selector).await?.0,
    };
    match args.output {
        Some(GetFormat::Json) => {
            let values: Vec<serde_json::Value> = objects.iter().map(Object::to_value).collect();
            let doc = if name.is_some() {
                values.into_iter().next().unwrap_or_default()
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values})
            };
            println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        }
        Some(GetFormat::Yaml) => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!(
                    "{}",
                    serde_yaml_ng::to_string(&o.to_value()).map_err(|e| CliError::msg(e.to_string()))?
                );
            }
        }
        Some(GetFormat::Name) => {
            for o in &objects {
                println!("{}/{}", kind.qualified(), o.meta().name);
            }
        }
        format => {
            if objects.is_empty() {
                let scope = if args.all_namespaces {
                    String::new()
                } else {
                    format!(" in {} namespace", args.namespace)
                };
                eprintln!("No resources found{scope}.");
                return Ok(());
            }
            let wide = format == Some(GetFormat::Wide);
            print!("{}", render_table(kind, &objects, SystemClock.now(), args.all_namespaces, wide));
        }
    }
    Ok(())
}

/// kubectl's AGE: 42s, 5m, 3h, 2d.
pub fn age(created: Option<Time>, now: Time) -> String {
    let Some(c) = created else { return "<unknown>".into() };
    let s = (now.0 - c.0).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The kubectl-style table of `objects` of one kind.
pub fn render_table(kind: Kind, objects: &[Object], now: Time, with_ns: bool, wide: bool) -> String {
    let mut headers: Vec<&str> = Vec::new();
    if with_ns && kind.namespaced() {
        headers.push("namespace");
    }
    let cols: &[&str] = match (kind, wide) {
        (Kind::Pod, false) => &["name", "ready", "status", "restarts", "age"],
        (Kind::Pod, true) => &["name", "ready", "status", "restarts", "age", "ip", "node"],
        (Kind::Deployment, _) => &["name", "ready", "up-to-date", "available", "age"],
        (Kind::Service, _) => &["name", "type", "cluster-ip", "port(s)", "age"],
        (Kind::Node, _) => &["name", "status", "age"],
        (Kind::Endpoints, _) => &["name", "endpoints", "age"],
        (Kind::Event, _) => &["age", "type", "reason", "object", "message"],
        (Kind::HorizontalPodAutoscaler, _) => {
            &["name", "reference", "targets", "minpods", "maxpods", "replicas", "age"]
        }
        (Kind::Lease, _) => &["name", "holder", "age"],
    };
    headers.extend_from_slice(cols);
    let rows = objects
        .iter()
        .map(|o| {
            let mut row = Vec::new();
            if with_ns && kind.namespaced() {
                row.push(o.namespace().to_string());
            }
            let name = o.meta().name.clone();
            let a = age(o.meta().creation_timestamp, now);
            row.extend(match o {
                Object::Pod(p) => {
                    let statuses =
                        p.status.as_ref().map(|s| s.container_statuses.as_slice()).unwrap_or_default();
                    let ready = statuses.iter().filter(|c| c.ready).count();
                    let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
                    let status = if p.metadata.deletion_timestamp.is_some() {
                        "Terminating".to_string()
                    } else {
                        p.status
                            .as_ref()
                            .and_then(|s| s.reason.clone().or(s.phase.map(|ph| format!("{ph:?}"))))
                            .unwrap_or_else(|| "Pending".into())
                    };
                    let mut r = vec![
                        name,
                        format!("{ready}/{}", p.spec.containers.len()),
                        status,
                        restarts.to_string(),
                        a,
                    ];
                    if wide {
                        r.push(
                            p.status
                                .as_ref()
                                .and_then(|s| s.pod_ip.clone())
                                .unwrap_or_else(|| "<none>".into()),
                        );
                        r.push(p.spec.node_name.clone().unwrap_or_else(|| "<none>".into()));
                    }
                    r
                }
                Object::Deployment(d) => {
                    let s = d.status.clone().unwrap_or_default();
                    vec![
                        name,
                        format!("{}/{}", s.ready_replicas, d.replicas()),
                        s.updated_replicas.to_string(),
                        s.available_replicas.to_string(),
                        a,
                    ]
                }
                Object::Service(s) => {
                    let ports: Vec<String> = s
                        .spec
                        .ports
                        .iter()
                        .map(|p| {
                            let proto = p
                                .protocol
                                .map(|x| format!("{x:?}").to_uppercase())
                                .unwrap_or_else(|| "TCP".into());
                            match p.node_port {
                                Some(np) => format!("{}:{np}/{proto}", p.port),
                                None => format!("{}/{proto}", p.port),
                            }
                        })
                        .collect();
                    let type_ = s.spec.type_.map(|t| format!("{t:?}")).unwrap_or_else(|| "ClusterIP".into());
                    vec![
                        name,
                        type_,
                        s.spec.cluster_ip.clone().unwrap_or_else(|| "<none>".into()),
                        ports.join(","),
                        a,
                    ]
                }
                Object::Node(n) => {
                    let mut status = if n.is_ready() { "Ready".to_string() } else { "NotReady".to_string() };
                    if n.spec.unschedulable == Some(true) {
                        status.push_str(",SchedulingDisabled");
                    }
                    vec![name, status, a]
                }
                Object::Endpoints(ep) => {
                    let addrs: Vec<String> = ep
                        .subsets
                        .iter()
                        .flat_map(|s| {
                            s.addresses.iter().flat_map(move |ad| {
                                s.ports.iter().map(move |p| format!("{}:{}", ad.ip, p.port))
                            })
                        })
                        .collect();
                    vec![name, if addrs.is_empty() { "<none>".into() } else { addrs.join(",") }, a]
                }
                Object::Event(ev) => {
                    let obj = format!(
                        "{}/{}",
                        ev.involved_object.kind.clone().unwrap_or_default().to_lowercase(),
                        ev.involved_object.name.clone().unwrap_or_default()
                    );
                    vec![
                        age(ev.last_timestamp.or(o.meta().creation_timestamp), now),
                        ev.type_.clone().unwrap_or_default(),
                        ev.reason.clone().unwrap_or_default(),
                        obj,
                        ev.message.clone().unwrap_or_default(),
                    ]
                }
                Object::HorizontalPodAutoscaler(h) => {
                    let target = &h.spec.scale_target_ref;
                    vec![
                        name,
                        format!("{}/{}", target.kind, target.name),
                        h.targets(),
                        h.min_replicas().to_string(),
                        h.spec.max_replicas.to_string(),
                        h.status.as_ref().map_or(0, |s| s.current_replicas).to_string(),
                        a,
                    ]
                }
                Object::Lease(l) => {
                    vec![name, l.spec.holder_identity.clone().unwrap_or_else(|| "<none>".into()), a]
                }
            });
            row
        })
        .collect();
    format!("{}\n", table(&headers, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now = Time(10_000_000);
        for (ago, want) in [(5, "5s"), (119, "119s"), (300, "5m"), (7200, "2h"), (200_000, "2d")] {
            assert_eq!(age(Some(Time(now.0 - ago)), now), want);
        }
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn deployment_table_has_kubectl_columns() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, creationTimestamp: '1970-01-01T00:00:00Z'}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: busybox}]}\n";
        let objs = manifest::parse("t", text).unwrap();
        let out = render_table(Kind::Deployment, &objs, Time(90), false, false);
        assert_eq!(out, "NAME  READY  UP-TO-DATE  AVAILABLE  AGE\nweb   0/3    0           0          90s\n");
    }
}
