//! What `corral get` shows of each kind: kubectl's columns and how each
//! cell is read from an object. Pure; `output::Columns` lays them out.

use control_plane::api::pod::ContainerState;
use control_plane::api::{Object, Pod, Time};

use super::replicasets::ReplicaSetView;
use crate::output::age;
use crate::resource::Resource;

/// One listed thing: a stored object or a deployment revision.
// Items are built once per listing and not moved much (as `Object` itself).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Object(Object),
    ReplicaSet(ReplicaSetView),
}

impl Item {
    pub fn name(&self) -> &str {
        match self {
            Item::Object(o) => &o.meta().name,
            Item::ReplicaSet(r) => &r.name,
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            Item::Object(o) => o.namespace(),
            Item::ReplicaSet(r) => &r.namespace,
        }
    }

    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Item::Object(o) => o.to_value(),
            Item::ReplicaSet(r) => r.to_value(),
        }
    }
}

/// The column headers of `resource`'s table.
pub fn headers(resource: Resource, wide: bool, with_ns: bool) -> Vec<&'static str> {
    use control_plane::api::Kind::*;
    let mut h = Vec::new();
    if with_ns && resource.namespaced() {
        h.push("namespace");
    }
    h.extend_from_slice(match resource {
        Resource::Object(Pod) => &["name", "ready", "status", "restarts", "age"][..],
        Resource::Object(Deployment) => &["name", "ready", "up-to-date", "available", "age"],
        Resource::ReplicaSet => &["name", "desired", "current", "ready", "age"],
        Resource::Object(Service) => &["name", "type", "cluster-ip", "port(s)", "age"],
        Resource::Object(Node) => &["name", "status", "roles", "age"],
        Resource::Object(Endpoints) => &["name", "endpoints", "age"],
        Resource::Object(Event) => &["last seen", "type", "reason", "object", "message"],
        Resource::Object(HorizontalPodAutoscaler) => {
            &["name", "reference", "targets", "minpods", "maxpods", "replicas", "age"]
        }
        Resource::Object(Lease) => &["name", "holder", "age"],
    });
    if wide {
        h.extend_from_slice(match resource {
            Resource::Object(Pod) => &["ip", "node"][..],
            Resource::Object(Deployment) | Resource::ReplicaSet => &["containers", "images", "selector"],
            Resource::Object(Service) => &["selector"],
            Resource::Object(Node) => &["internal-ip"],
            _ => &[],
        });
    }
    h
}

/// The cells of one item, matching [`headers`].
pub fn row(item: &Item, now: Time, wide: bool, with_ns: bool) -> Vec<String> {
    let mut r = Vec::new();
    if with_ns && !item.namespace().is_empty() {
        r.push(item.namespace().to_string());
    }
    let (main, extra) = match item {
        Item::Object(o) => object_cells(o, now),
        Item::ReplicaSet(rs) => (
            vec![
                rs.name.clone(),
                rs.desired.to_string(),
                rs.current.to_string(),
                rs.ready.to_string(),
                age(rs.created, now),
            ],
            template_cells(&rs.template, &rs.template.metadata.labels),
        ),
    };
    r.extend(main);
    if wide {
        r.extend(extra);
    }
    r
}

fn or_none(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or_else(|| "<none>".into())
}

fn selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    or_none(Some(labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")))
}

fn template_cells(
    t: &control_plane::api::pod::PodTemplateSpec,
    sel: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let names: Vec<&str> = t.spec.containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = t.spec.containers.iter().map(|c| c.image.as_str()).collect();
    vec![names.join(","), images.join(","), selector(sel)]
}

/// The main cells and the `-o wide` ones of a stored object.
fn object_cells(o: &Object, now: Time) -> (Vec<String>, Vec<String>) {
    let name = o.meta().name.clone();
    let a = age(o.meta().creation_timestamp, now);
    match o {
        Object::Pod(p) => {
            let statuses = p.status.as_ref().map(|s| s.container_statuses.as_slice()).unwrap_or_default();
            let ready = statuses.iter().filter(|c| c.ready).count();
            let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
            let ip = or_none(p.status.as_ref().and_then(|s| s.pod_ip.clone()));
            (
                vec![
                    name,
                    format!("{ready}/{}", p.spec.containers.len()),
                    pod_status(p),
                    restarts.to_string(),
                    a,
                ],
                vec![ip, or_none(p.spec.node_name.clone())],
            )
        }
        Object::Deployment(d) => {
            let s = d.status.clone().unwrap_or_default();
            let sel = d.spec.selector.match_labels.clone();
            (
                vec![
                    name,
                    format!("{}/{}", s.ready_replicas, d.replicas()),
                    s.updated_replicas.to_string(),
                    s.available_replicas.to_string(),
                    a,
                ],
                template_cells(&d.spec.template, &sel),
            )
        }
        Object::Service(s) => {
            let type_ = s.spec.type_.map(|t| format!("{t:?}")).unwrap_or_else(|| "ClusterIP".into());
            (
                vec![name, type_, or_none(s.spec.cluster_ip.clone()), service_ports(s), a],
                vec![selector(&s.spec.selector)],
            )
        }
        Object::Node(n) => {
            let mut status = if n.is_ready() { "Ready".to_string() } else { "NotReady".to_string() };
            if n.spec.unschedulable == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<&str> =
                n.metadata.labels.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/")).collect();
            let ip = n
                .status
                .as_ref()
                .and_then(|s| s.addresses.iter().find(|a| a.type_ == "InternalIP"))
                .map(|a| a.address.clone());
            (vec![name, status, or_none(Some(roles.join(","))), a], vec![or_none(ip)])
        }
        Object::Endpoints(ep) => {
            let addrs: Vec<String> = ep
                .subsets
                .iter()
                .flat_map(|s| {
                    s.addresses
                        .iter()
                        .flat_map(move |ad| s.ports.iter().map(move |p| format!("{}:{}", ad.ip, p.port)))
                })
                .collect();
            (vec![name, or_none(Some(addrs.join(","))), a], vec![])
        }
        Object::Event(ev) => {
            let io = &ev.involved_object;
            let obj = format!(
                "{}/{}",
                io.kind.clone().unwrap_or_default().to_lowercase(),
                io.name.clone().unwrap_or_default()
            );
            let cells = vec![
                age(ev.last_timestamp.or(o.meta().creation_timestamp), now),
                ev.type_.clone().unwrap_or_default(),
                ev.reason.clone().unwrap_or_default(),
                obj,
                ev.message.clone().unwrap_or_default(),
            ];
            (cells, vec![])
        }
        Object::HorizontalPodAutoscaler(h) => {
            let target = &h.spec.scale_target_ref;
            let cells = vec![
                name,
                format!("{}/{}", target.kind, target.name),
                h.targets(),
                h.min_replicas().to_string(),
                h.spec.max_replicas.to_string(),
                h.status.as_ref().map_or(0, |s| s.current_replicas).to_string(),
                a,
            ];
            (cells, vec![])
        }
        Object::Lease(l) => (vec![name, or_none(l.spec.holder_identity.clone()), a], vec![]),
    }
}

/// `80/TCP,443:30443/TCP`.
pub fn service_ports(s: &control_plane::api::Service) -> String {
    let ports: Vec<String> = s
        .spec
        .ports
        .iter()
        .map(|p| {
            let proto = p.protocol.map(|x| format!("{x:?}").to_uppercase()).unwrap_or_else(|| "TCP".into());
            match p.node_port {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    or_none(Some(ports.join(",")))
}

/// kubectl's STATUS of a pod: Terminating, the pod's reason, a container's
/// waiting or terminated reason, or the phase.
pub fn pod_status(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let status = p.status.as_ref();
    if let Some(reason) = status.and_then(|s| s.reason.clone()) {
        return reason;
    }
    let containers = status.map(|s| s.container_statuses.as_slice()).unwrap_or_default();
    let reason = containers.iter().find_map(|c| match &c.state {
        Some(ContainerState { waiting: Some(w), .. }) => w.reason.clone(),
        Some(ContainerState { running: None, terminated: Some(t), .. }) => {
            Some(t.reason.clone().unwrap_or_else(|| format!("ExitCode:{}", t.exit_code)))
        }
        _ => None,
    });
    reason
        .or_else(|| status.and_then(|s| s.phase).map(|ph| format!("{ph:?}")))
        .unwrap_or_else(|| "Pending".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_plane::api::{manifest, Kind};

    fn items(text: &str) -> Vec<Item> {
        manifest::parse("t", text).unwrap().into_iter().map(Item::Object).collect()
    }

    fn table(resource: Resource, items: &[Item], wide: bool, with_ns: bool) -> String {
        let rows: Vec<Vec<String>> = items.iter().map(|i| row(i, Time(90), wide, with_ns)).collect();
        crate::output::table(&headers(resource, wide, with_ns), rows)
    }

    const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, creationTimestamp: '1970-01-01T00:00:00Z'}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: busybox}]}\n";

    #[test]
    fn deployment_table_has_kubectl_columns() {
        let d = Resource::Object(Kind::Deployment);
        assert_eq!(
            table(d, &items(DEPLOY), false, false),
            "NAME  READY  UP-TO-DATE  AVAILABLE  AGE\nweb   0/3    0           0          90s"
        );
        assert_eq!(
            table(d, &items(DEPLOY), true, true),
            "NAMESPACE  NAME  READY  UP-TO-DATE  AVAILABLE  AGE  CONTAINERS  IMAGES   SELECTOR\ndefault    web   0/3    0           0          90s  web         busybox  app=web"
        );
    }

    #[test]
    fn pod_status_prefers_the_most_telling_reason() {
        let pod =
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n";
        // (status yaml, expected STATUS)
        let cases = [
            ("", "Pending"),
            ("status: {phase: Running}\n", "Running"),
            (
                "status: {phase: Pending, containerStatuses: [{name: c, state: {waiting: {reason: ErrImageNeverPull}}}]}\n",
                "ErrImageNeverPull",
            ),
            (
                "status: {phase: Running, containerStatuses: [{name: c, state: {terminated: {exitCode: 1, reason: Error}}}]}\n",
                "Error",
            ),
            ("status: {phase: Failed, reason: Evicted}\n", "Evicted"),
        ];
        for (status, want) in cases {
            let Item::Object(Object::Pod(p)) = items(&format!("{pod}{status}")).remove(0) else { panic!() };
            assert_eq!(pod_status(&p), want, "{status}");
        }
    }

    #[test]
    fn services_nodes_and_events_read_like_kubectl() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: NodePort, clusterIP: 10.96.0.5, ports: [{name: http, port: 80}, {name: https, port: 443, nodePort: 30443}]}\n";
        assert_eq!(
            table(Resource::Object(Kind::Service), &items(svc), false, false),
            "NAME  TYPE      CLUSTER-IP  PORT(S)               AGE\nweb   NodePort  10.96.0.5   80/TCP,443:30443/TCP  <unknown>"
        );
        let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {node-role.kubernetes.io/worker: ''}}\nspec: {unschedulable: true}\n";
        assert_eq!(
            table(Resource::Object(Kind::Node), &items(node), false, true),
            "NAME  STATUS                       ROLES   AGE\nn1    NotReady,SchedulingDisabled  worker  <unknown>"
        );
        let ev = "apiVersion: v1\nkind: Event\nmetadata: {name: e}\ninvolvedObject: {kind: Pod, name: web-1}\nreason: Scheduled\ntype: Normal\nmessage: assigned\nlastTimestamp: '1970-01-01T00:00:30Z'\n";
        assert_eq!(
            table(Resource::Object(Kind::Event), &items(ev), false, false),
            "LAST SEEN  TYPE    REASON     OBJECT     MESSAGE\n60s        Normal  Scheduled  pod/web-1  assigned"
        );
    }
}
