//! `corral describe KIND NAME`: an object's key fields, its conditions and
//! its recent Events (those whose involvedObject is it), laid out as
//! kubectl lays them out. The text is built by pure functions over the
//! objects; `describe` only fetches them.

use std::collections::BTreeMap;
use std::fmt::Display;

use clap::Args;
use control_plane::api::autoscaling::HorizontalPodAutoscaler;
use control_plane::api::pod::{Condition, Container, PodTemplateSpec};
use control_plane::api::{Deployment, Event, Node, Object, ObjectMeta, Pod, Service, Time};
use control_plane::clock::{Clock, SystemClock};
use control_plane::objects::is_system_annotation;

use super::columns::{pod_status, service_ports, Item};
use super::get::{fetch, typed};
use super::replicasets::ReplicaSetView;
use super::{Cli, Result};
use crate::output::{age, Columns};
use crate::resource;

#[derive(Debug, Clone, Args)]
pub struct DescribeArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

/// How many of the newest events to show.
const RECENT_EVENTS: usize = 20;

pub async fn describe(cli: &Cli, args: &DescribeArgs) -> Result<()> {
    let (res, name) = resource::named(&args.target)?;
    let client = cli.client();
    let ns = if res.namespaced() { args.namespace.as_str() } else { "" };
    let item = fetch(&client, res, ns, "", Some(&name)).await?.remove(0);
    let events: Vec<Event> = typed(client.list_objects("events", "", "").await?.0);
    let extra = match &item {
        Item::Object(Object::Service(_)) => {
            client.get_object("endpoints", ns, &name).await.ok().into_iter().collect()
        }
        Item::Object(Object::Node(_)) => client.list_objects("pods", "", "").await?.0,
        _ => Vec::new(),
    };
    print!("{}", render(&item, &extra, &events, SystemClock.now()));
    Ok(())
}

/// Text with `Key:  value` lines aligned per block, as kubectl prints.
#[derive(Default)]
struct Doc(String);

impl Doc {
    fn field(&mut self, indent: usize, key: &str, value: impl Display) {
        let pad = 20usize.saturating_sub(indent + key.len() + 1).max(2);
        let value = value.to_string();
        let value = if value.is_empty() { "<none>".to_string() } else { value };
        self.0.push_str(&format!("{}{key}:{}{value}\n", " ".repeat(indent), " ".repeat(pad)));
    }

    fn title(&mut self, indent: usize, key: &str) {
        self.0.push_str(&format!("{}{key}:\n", " ".repeat(indent)));
    }

    /// `Key:  a=b` then the other pairs on lines of their own, aligned.
    fn map(&mut self, indent: usize, key: &str, map: &BTreeMap<String, String>) {
        let mut pairs = map.iter().map(|(k, v)| format!("{k}={v}"));
        self.field(indent, key, pairs.next().unwrap_or_default());
        let col = (indent + key.len() + 1).max(20).max(indent + key.len() + 3);
        for p in pairs {
            self.0.push_str(&format!("{}{p}\n", " ".repeat(col)));
        }
    }

    /// kubectl's describe tables: Title-case headers over dashes.
    fn table(&mut self, indent: usize, headers: &[&str], rows: Vec<Vec<String>>) {
        let titles: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let dashes: Vec<String> = headers.iter().map(|h| "-".repeat(h.len())).collect();
        let rows: Vec<Vec<String>> = [titles, dashes].into_iter().chain(rows).collect();
        let cols = Columns::new(headers, &rows, false);
        for r in &rows {
            self.0.push_str(&format!("{}{}\n", " ".repeat(indent), cols.row(r)));
        }
    }
}

fn joined(v: &[String]) -> String {
    v.join(" ")
}

fn time(t: Option<Time>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

/// The describe text of `item`. `extra`: a service's endpoints, or every pod (for a node).
pub fn render(item: &Item, extra: &[Object], events: &[Event], now: Time) -> String {
    let mut d = Doc::default();
    let (kind, meta) = match item {
        Item::Object(o) => (o.kind().name(), o.meta().clone()),
        Item::ReplicaSet(r) => ("ReplicaSet", ObjectMeta { name: r.name.clone(), ..Default::default() }),
    };
    match item {
        Item::Object(Object::Pod(p)) => pod(&mut d, p),
        Item::Object(Object::Deployment(dep)) => deployment(&mut d, dep),
        Item::Object(Object::Service(s)) => service(&mut d, s, extra),
        Item::Object(Object::Node(n)) => node(&mut d, n, extra),
        Item::Object(Object::HorizontalPodAutoscaler(h)) => hpa(&mut d, h),
        Item::ReplicaSet(r) => replicaset(&mut d, r),
        Item::Object(o) => {
            header(&mut d, o.meta(), o.kind().namespaced());
            let mut body = o.to_value();
            if let Some(m) = body.as_object_mut() {
                for k in ["apiVersion", "kind", "metadata"] {
                    m.remove(k);
                }
            }
            let yaml = serde_yaml_ng::to_string(&body).unwrap_or_default();
            d.0.push_str(&yaml);
        }
    }
    recent_events(&mut d, kind, &meta, events, now);
    d.0
}

fn header(d: &mut Doc, m: &ObjectMeta, namespaced: bool) {
    d.field(0, "Name", &m.name);
    if namespaced {
        d.field(0, "Namespace", m.namespace_or_default());
    }
    d.field(0, "CreationTimestamp", time(m.creation_timestamp));
    d.map(0, "Labels", &m.labels);
    let shown: BTreeMap<String, String> = m
        .annotations
        .iter()
        .filter(|(k, _)| !is_system_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    d.map(0, "Annotations", &shown);
    if let Some(o) = m.controller() {
        d.field(0, "Controlled By", format!("{}/{}", o.kind, o.name));
    }
}

fn pod(d: &mut Doc, p: &Pod) {
    header(d, &p.metadata, true);
    let s = p.status.clone().unwrap_or_default();
    d.field(0, "Node", p.spec.node_name.clone().unwrap_or_default());
    d.field(0, "Start Time", time(s.start_time));
    d.field(0, "Status", pod_status(p));
    if let Some(m) = &s.message {
        d.field(0, "Message", m);
    }
    d.field(0, "IP", s.pod_ip.clone().unwrap_or_default());
    d.title(0, "Containers");
    for c in &p.spec.containers {
        container(d, c, 2);
        if let Some(cs) = s.container_statuses.iter().find(|cs| cs.name == c.name) {
            let state = cs.state.clone().unwrap_or_default();
            let state = match (&state.running, &state.waiting, &state.terminated) {
                (Some(r), _, _) => format!("Running (since {})", time(r.started_at)),
                (_, Some(w), _) => format!("Waiting ({})", w.reason.clone().unwrap_or_default()),
                (_, _, Some(t)) => {
                    format!(
                        "Terminated ({}, exit code {})",
                        t.reason.clone().unwrap_or_default(),
                        t.exit_code
                    )
                }
                _ => String::new(),
            };
            d.field(4, "State", state);
            d.field(4, "Ready", cs.ready);
            d.field(4, "Restart Count", cs.restart_count);
        }
    }
    conditions(d, &s.conditions);
    d.title(0, "Volumes");
    for v in &p.spec.volumes {
        let source = match (&v.empty_dir, &v.host_path) {
            (Some(_), _) => "EmptyDir (a temporary directory that shares a pod's lifetime)".to_string(),
            (_, Some(h)) => format!("HostPath ({})", h.path),
            _ => String::new(),
        };
        d.field(2, &v.name, source);
    }
}

/// A container: its name at `at`, its fields under it.
fn container(d: &mut Doc, c: &Container, at: usize) {
    let i = at + 2;
    d.title(at, &c.name);
    d.field(i, "Image", &c.image);
    let ports: Vec<String> = c
        .ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.container_port,
                p.protocol.map_or("TCP".into(), |x| format!("{x:?}").to_uppercase())
            )
        })
        .collect();
    d.field(i, "Port", ports.join(", "));
    if !c.command.is_empty() {
        d.field(i, "Command", joined(&c.command));
    }
    if !c.args.is_empty() {
        d.field(i, "Args", joined(&c.args));
    }
    let q = |m: &BTreeMap<String, control_plane::api::quantity::Quantity>| {
        m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    };
    if !c.resources.limits.is_empty() {
        d.field(i, "Limits", q(&c.resources.limits));
    }
    if !c.resources.requests.is_empty() {
        d.field(i, "Requests", q(&c.resources.requests));
    }
    for (name, probe) in [("Liveness", &c.liveness_probe), ("Readiness", &c.readiness_probe)] {
        let Some(p) = probe else { continue };
        let how = match (&p.http_get, &p.tcp_socket, &p.exec) {
            (Some(h), _, _) => format!("http-get :{}{}", h.port, h.path.clone().unwrap_or_default()),
            (_, Some(t), _) => format!("tcp-socket :{}", t.port),
            (_, _, Some(e)) => format!("exec [{}]", e.command.join(" ")),
            _ => String::new(),
        };
        d.field(
            i,
            name,
            format!(
                "{how} delay={}s period={}s",
                p.initial_delay_seconds.unwrap_or(0),
                p.period_seconds.unwrap_or(10)
            ),
        );
    }
    let env: BTreeMap<String, String> =
        c.env.iter().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
    d.map(i, "Environment", &env);
}

fn template(d: &mut Doc, t: &PodTemplateSpec) {
    d.title(0, "Pod Template");
    d.map(2, "Labels", &t.metadata.labels);
    d.title(2, "Containers");
    for c in &t.spec.containers {
        container(d, c, 4);
    }
}

fn conditions(d: &mut Doc, conds: &[Condition]) {
    if conds.is_empty() {
        d.field(0, "Conditions", "");
        return;
    }
    d.title(0, "Conditions");
    let rows = conds
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    d.table(2, &["Type", "Status", "Reason", "Message"], rows);
}

fn deployment(d: &mut Doc, dep: &Deployment) {
    header(d, &dep.metadata, true);
    let sel = &dep.spec.selector.match_labels;
    d.field(0, "Selector", sel.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    let s = dep.status.clone().unwrap_or_default();
    d.field(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            dep.replicas(),
            s.updated_replicas,
            s.replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
    );
    let strategy = dep.spec.strategy.clone().unwrap_or_default();
    d.field(
        0,
        "StrategyType",
        format!(
            "{:?}",
            strategy.type_.unwrap_or(control_plane::api::deployment::StrategyType::RollingUpdate)
        ),
    );
    d.field(0, "MinReadySeconds", dep.spec.min_ready_seconds.unwrap_or(0));
    let ru = strategy.rolling_update.unwrap_or_default();
    let or25 =
        |v: Option<control_plane::api::IntOrString>| v.map(|v| v.to_string()).unwrap_or_else(|| "25%".into());
    d.field(
        0,
        "RollingUpdateStrategy",
        format!("{} max unavailable, {} max surge", or25(ru.max_unavailable), or25(ru.max_surge)),
    );
    if let Some(rev) =
        dep.metadata.annotations.get(control_plane::controllers::deployment::REVISION_ANNOTATION)
    {
        d.field(0, "Revision", rev);
    }
    template(d, &dep.spec.template);
    conditions(d, &s.conditions);
}

fn replicaset(d: &mut Doc, r: &ReplicaSetView) {
    d.field(0, "Name", &r.name);
    d.field(0, "Namespace", &r.namespace);
    d.field(0, "Controlled By", format!("Deployment/{}", r.deployment));
    d.field(0, "Revision", r.revision);
    d.field(0, "Replicas", format!("{} current / {} desired", r.current, r.desired));
    d.field(0, "Pods Status", format!("{} Ready", r.ready));
    template(d, &r.template);
}

fn service(d: &mut Doc, s: &Service, endpoints: &[Object]) {
    header(d, &s.metadata, true);
    d.map(0, "Selector", &s.spec.selector);
    d.field(0, "Type", s.spec.type_.map(|t| format!("{t:?}")).unwrap_or_else(|| "ClusterIP".into()));
    d.field(0, "IP", s.spec.cluster_ip.clone().unwrap_or_default());
    d.field(0, "Port(s)", service_ports(s));
    let targets: Vec<String> = s
        .spec
        .ports
        .iter()
        .map(|p| p.target_port.clone().unwrap_or(control_plane::api::IntOrString::Int(p.port)).to_string())
        .collect();
    d.field(0, "TargetPort", targets.join(","));
    let addrs: Vec<String> = endpoints
        .iter()
        .filter_map(|o| if let Object::Endpoints(e) = o { Some(e) } else { None })
        .flat_map(|e| e.subsets.iter())
        .flat_map(|s| {
            s.addresses.iter().flat_map(move |a| s.ports.iter().map(move |p| format!("{}:{}", a.ip, p.port)))
        })
        .collect();
    d.field(0, "Endpoints", addrs.join(","));
}

fn node(d: &mut Doc, n: &Node, pods: &[Object]) {
    header(d, &n.metadata, false);
    d.field(0, "Unschedulable", n.spec.unschedulable.unwrap_or(false));
    let s = n.status.clone().unwrap_or_default();
    conditions(d, &s.conditions);
    d.title(0, "Addresses");
    for a in &s.addresses {
        d.field(2, &a.type_, &a.address);
    }
    for (title, m) in [("Capacity", &s.capacity), ("Allocatable", &s.allocatable)] {
        d.title(0, title);
        for (k, v) in m {
            d.field(2, k, v);
        }
    }
    let rows: Vec<Vec<String>> = pods
        .iter()
        .filter_map(|o| if let Object::Pod(p) = o { Some(p) } else { None })
        .filter(|p| p.spec.node_name.as_deref() == Some(n.metadata.name.as_str()))
        .map(|p| vec![p.metadata.namespace_or_default().to_string(), p.metadata.name.clone(), pod_status(p)])
        .collect();
    d.title(0, &format!("Non-terminated Pods ({} in total)", rows.len()));
    d.table(2, &["Namespace", "Name", "Status"], rows);
}

/// kubectl's layout: reference, each metric as `current / target`, the
/// bounds, the behavior, the replica counts and the conditions.
fn hpa(d: &mut Doc, h: &HorizontalPodAutoscaler) {
    header(d, &h.metadata, true);
    let target = &h.spec.scale_target_ref;
    d.field(0, "Reference", format!("{}/{}", target.kind, target.name));
    d.field(0, "Metrics", "( current / target )");
    let current = h.status.as_ref().map(|s| s.current_metrics.as_slice()).unwrap_or_default();
    for r in h.metrics().iter().filter_map(|m| m.resource.as_ref()) {
        let now = current.iter().filter_map(|c| c.resource.as_ref()).find(|c| c.name == r.name);
        let value = |v: Option<String>| v.unwrap_or_else(|| "<unknown>".into());
        match (r.target.average_utilization, &r.target.average_value) {
            (Some(t), _) => {
                let pct = now.and_then(|c| c.current.average_utilization).map(|u| format!("{u}%"));
                let raw = now.and_then(|c| c.current.average_value.as_ref()).map(|v| format!(" ({v})"));
                d.field(
                    2,
                    &format!("resource {} on pods  (as a percentage of request)", r.name),
                    format!("{}{} / {t}%", value(pct), raw.unwrap_or_default()),
                );
            }
            (None, Some(t)) => {
                let v = now.and_then(|c| c.current.average_value.as_ref()).map(|v| v.to_string());
                d.field(2, &format!("resource {} on pods", r.name), format!("{} / {t}", value(v)));
            }
            _ => d.field(2, &format!("resource {} on pods", r.name), "<unknown>"),
        }
    }
    d.field(0, "Min replicas", h.spec.min_replicas.unwrap_or(1));
    d.field(0, "Max replicas", h.spec.max_replicas);
    if let Some(b) = &h.spec.behavior {
        d.title(0, "Behavior");
        for (title, rules) in [("Scale Up", &b.scale_up), ("Scale Down", &b.scale_down)] {
            let Some(rules) = rules else { continue };
            d.title(2, title);
            if let Some(w) = rules.stabilization_window_seconds {
                d.field(4, "Stabilization Window", format!("{w} seconds"));
            }
            if let Some(p) = &rules.select_policy {
                d.field(4, "Select Policy", p);
            }
            for p in &rules.policies {
                d.field(4, "Policy", format!("{} {} per {} seconds", p.type_, p.value, p.period_seconds));
            }
        }
    }
    let s = h.status.clone().unwrap_or_default();
    d.field(
        0,
        &format!("{} pods", target.kind),
        format!("{} current / {} desired", s.current_replicas, s.desired_replicas),
    );
    conditions(d, &s.conditions);
}

/// The newest events about the object, oldest first.
fn recent_events(d: &mut Doc, kind: &str, meta: &ObjectMeta, events: &[Event], now: Time) {
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(meta.name.as_str())
        })
        .filter(|e| {
            e.involved_object.namespace.is_none()
                || e.involved_object.namespace == meta.namespace.clone().or(Some("default".into()))
        })
        .collect();
    if mine.is_empty() {
        d.field(0, "Events", "");
        return;
    }
    mine.sort_by_key(|e| e.last_timestamp.or(e.metadata.creation_timestamp));
    let skip = mine.len().saturating_sub(RECENT_EVENTS);
    let rows = mine[skip..]
        .iter()
        .map(|e| {
            let last = age(e.last_timestamp.or(e.metadata.creation_timestamp), now);
            let seen = match e.count.unwrap_or(1) {
                n if n > 1 => format!("{last} (x{n} over {})", age(e.first_timestamp, now)),
                _ => last,
            };
            let from = e.source.as_ref().and_then(|s| s.component.clone()).unwrap_or_default();
            vec![
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                seen,
                from,
                e.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    d.title(0, "Events");
    d.table(2, &["Type", "Reason", "Age", "From", "Message"], rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_plane::api::manifest;

    fn parse(text: &str) -> Vec<Object> {
        manifest::parse("t", text).unwrap()
    }

    #[test]
    fn a_deployment_shows_replicas_template_conditions_and_its_own_events() {
        let dep = parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, labels: {app: web, tier: front}, annotations: {corral.io/revision-history: '[]', owner: me}}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'corral/busybox:1', ports: [{containerPort: 8080}]}]}\nstatus: {replicas: 3, updatedReplicas: 1, availableReplicas: 2, unavailableReplicas: 1, conditions: [{type: Progressing, status: 'True', reason: ReplicaSetUpdated}]}\n").remove(0);
        let events: Vec<Event> = typed(parse("apiVersion: v1\nkind: Event\nmetadata: {name: e1}\ninvolvedObject: {kind: Deployment, name: web, namespace: default}\nreason: RolloutStarted\ntype: Normal\nmessage: revision 2\ncount: 3\nfirstTimestamp: '1970-01-01T00:00:00Z'\nlastTimestamp: '1970-01-01T00:01:00Z'\nsource: {component: deployment-controller}\n---\napiVersion: v1\nkind: Event\nmetadata: {name: e2}\ninvolvedObject: {kind: Deployment, name: other}\nreason: Nope\n"));
        let text = render(&Item::Object(dep), &[], &events, Time(90));
        for want in [
            "Name:               web\n",
            "Labels:             app=web\n                    tier=front\n",
            "Annotations:        owner=me\n",
            "Replicas:           3 desired | 1 updated | 3 total | 2 available | 1 unavailable\n",
            "RollingUpdateStrategy:  25% max unavailable, 25% max surge\n",
            "      Image:        corral/busybox:1\n",
            "      Port:         8080/TCP\n",
            "  Type         Status  Reason             Message\n  ----         ------  ------             -------\n  Progressing  True    ReplicaSetUpdated\n",
            "  Normal  RolloutStarted  30s (x3 over 90s)  deployment-controller  revision 2\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("Nope") && !text.contains("revision-history"), "{text}");
    }

    #[test]
    fn an_hpa_shows_its_metrics_as_current_over_target_and_its_conditions() {
        let h = parse("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: php-apache}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: php-apache}\n  minReplicas: 1\n  maxReplicas: 10\n  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}, {type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}}]\n  behavior: {scaleDown: {stabilizationWindowSeconds: 60, policies: [{type: Pods, value: 1, periodSeconds: 15}]}}\nstatus:\n  currentReplicas: 2\n  desiredReplicas: 3\n  currentMetrics: [{type: Resource, resource: {name: cpu, current: {averageUtilization: 73, averageValue: 73m}}}]\n  conditions: [{type: AbleToScale, status: 'True', reason: SucceededRescale, message: the HPA controller was able to update the target scale to 3}]\n").remove(0);
        let text = render(&Item::Object(h), &[], &[], Time(0));
        for want in [
            "Reference:",
            "Deployment/php-apache\n",
            "Metrics:",
            "( current / target )\n",
            "resource cpu on pods  (as a percentage of request):",
            "73% (73m) / 50%\n",
            "resource memory on pods:",
            "<unknown> / 100Mi\n",
            "Min replicas:",
            "Max replicas:",
            "Stabilization Window:",
            "60 seconds\n",
            "Pods 1 per 15 seconds\n",
            "Deployment pods:",
            "2 current / 3 desired\n",
            "  AbleToScale  True    SucceededRescale  the HPA controller was able to update the target scale to 3\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn an_object_without_events_says_none() {
        let svc = parse("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, clusterIP: 10.96.0.9, ports: [{port: 80, targetPort: 8080}]}\n").remove(0);
        let ep = parse("apiVersion: v1\nkind: Endpoints\nmetadata: {name: web}\nsubsets: [{addresses: [{ip: 10.88.0.2}], ports: [{port: 8080}]}]\n");
        let text = render(&Item::Object(svc), &ep, &[], Time(0));
        assert!(text.contains("IP:                 10.96.0.9\n"), "{text}");
        assert!(text.contains("TargetPort:         8080\n"), "{text}");
        assert!(text.contains("Endpoints:          10.88.0.2:8080\n"), "{text}");
        assert!(text.ends_with("Events:             <none>\n"), "{text}");
    }
}
