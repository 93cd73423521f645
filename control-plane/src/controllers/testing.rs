//! Test fixtures shared by every controller's tests: small constructors for
//! pods, deployments, nodes and services, and chainable pod modifiers, so
//! that a test reads `pod("web-1").on("n1").ready_since(T0)`.

use std::collections::BTreeMap;

use crate::api::deployment::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StrategyType};
use crate::api::labels::LabelSelector;
use crate::api::meta::ObjectMeta;
use crate::api::node::{NodeSpec, NodeStatus};
use crate::api::pod::{
    Condition, Container, ContainerPort, ContainerStatus, PodPhase, PodSpec, PodStatus, PodTemplateSpec,
};
use crate::api::service::{ServicePort, ServiceSpec};
use crate::api::{Deployment, IntOrString, Node, Pod, Service, Time};

/// The fixtures' reference time.
pub(crate) const T0: Time = Time(1_800_000_000);

pub(crate) fn at(seconds_after_t0: i64) -> Time {
    Time(T0.0 + seconds_after_t0)
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub(crate) fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: Some(namespace.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        creation_timestamp: Some(T0),
        ..Default::default()
    }
}

/// A bare pod in `default`, created at T0, with no status.
pub(crate) fn pod(name: &str) -> Pod {
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: meta(name, "default"),
        spec: PodSpec {
            containers: vec![Container { name: "app".into(), ..Default::default() }],
            ..Default::default()
        },
        status: None,
    }
}

/// Chainable changes to a test pod.
pub(crate) trait PodExt: Sized {
    fn edit(self, f: impl FnOnce(&mut Pod)) -> Self;

    fn on(self, node: &str) -> Self {
        self.edit(|p| p.spec.node_name = Some(node.into()))
    }
    fn in_namespace(self, ns: &str) -> Self {
        self.edit(|p| p.metadata.namespace = Some(ns.into()))
    }
    fn created(self, t: Time) -> Self {
        self.edit(|p| p.metadata.creation_timestamp = Some(t))
    }
    fn labelled(self, pairs: &[(&str, &str)]) -> Self {
        self.edit(|p| p.metadata.labels.extend(labels(pairs)))
    }
    fn ip(self, ip: &str) -> Self {
        self.edit(|p| status(p).pod_ip = Some(ip.into()))
    }
    fn phase(self, phase: PodPhase) -> Self {
        self.edit(|p| status(p).phase = Some(phase))
    }
    /// Running, with Ready true since `t`.
    fn ready_since(self, t: Time) -> Self {
        self.phase(PodPhase::Running).edit(|p| set_ready(p, "True", t))
    }
    /// Running, with Ready false since `t`.
    fn not_ready(self, t: Time) -> Self {
        self.phase(PodPhase::Running).edit(|p| set_ready(p, "False", t))
    }
    fn terminating(self, t: Time) -> Self {
        self.edit(|p| p.metadata.deletion_timestamp = Some(t))
    }
    fn restarts(self, n: i32) -> Self {
        self.edit(|p| {
            status(p).container_statuses =
                vec![ContainerStatus { name: "app".into(), restart_count: n, ..Default::default() }]
        })
    }
    fn container_port(self, name: &str, port: i32) -> Self {
        self.edit(|p| {
            p.spec.containers[0].ports.push(ContainerPort {
                container_port: port,
                name: Some(name.into()),
                ..Default::default()
            })
        })
    }
    fn owned_by(self, d: &Deployment) -> Self {
        self.edit(|p| p.metadata.owner_references = vec![crate::controllers::deployment::owner_reference(d)])
    }
}

impl PodExt for Pod {
    fn edit(mut self, f: impl FnOnce(&mut Pod)) -> Self {
        f(&mut self);
        self
    }
}

fn status(p: &mut Pod) -> &mut PodStatus {
    p.status.get_or_insert_with(Default::default)
}

fn set_ready(p: &mut Pod, value: &str, t: Time) {
    let conditions = &mut status(p).conditions;
    conditions.retain(|c| c.type_ != "Ready");
    conditions.push(Condition {
        type_: "Ready".into(),
        status: value.into(),
        last_transition_time: Some(t),
        ..Default::default()
    });
}

/// A deployment `name` in `default` selecting `app=<name>`, image `img:1`,
/// with the default RollingUpdate strategy and no status.
pub(crate) fn deployment(name: &str, replicas: i32) -> Deployment {
    let app = labels(&[("app", name)]);
    Deployment {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        metadata: meta(name, "default"),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: app.clone(), ..Default::default() },
            template: PodTemplateSpec {
                metadata: ObjectMeta { labels: app, ..Default::default() },
                spec: PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: "img:1".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            },
            ..Default::default()
        },
        status: None,
    }
}

pub(crate) fn with_image(mut d: Deployment, image: &str) -> Deployment {
    d.spec.template.spec.containers[0].image = image.into();
    d.metadata.generation = Some(d.metadata.generation.unwrap_or(1) + 1);
    d
}

/// `maxSurge` and `maxUnavailable` as written in a manifest (`"25%"` or `"1"`).
pub(crate) fn rolling(mut d: Deployment, max_surge: &str, max_unavailable: &str) -> Deployment {
    let v = |s: &str| match s.parse() {
        Ok(i) => IntOrString::Int(i),
        Err(_) => IntOrString::String(s.into()),
    };
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some(StrategyType::RollingUpdate),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(v(max_surge)),
            max_unavailable: Some(v(max_unavailable)),
        }),
    });
    d
}

pub(crate) fn recreate(mut d: Deployment) -> Deployment {
    d.spec.strategy = Some(DeploymentStrategy { type_: Some(StrategyType::Recreate), rolling_update: None });
    d
}

/// A node whose Ready condition says `ready` ("True", "False", "Unknown"),
/// last heard from at `heartbeat`.
pub(crate) fn node(name: &str, ready: &str, heartbeat: Time) -> Node {
    Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: ObjectMeta { namespace: None, ..meta(name, "") },
        spec: NodeSpec::default(),
        status: Some(NodeStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: Some("KubeletReady".into()),
                last_heartbeat_time: Some(heartbeat),
                last_transition_time: Some(T0),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// A ClusterIP service in `default` selecting `selector`, one port per
/// `(name, port, targetPort)`.
pub(crate) fn service(
    name: &str,
    selector: &[(&str, &str)],
    ports: &[(&str, i32, Option<IntOrString>)],
) -> Service {
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: meta(name, "default"),
        spec: ServiceSpec {
            selector: labels(selector),
            ports: ports
                .iter()
                .map(|(n, port, target)| ServicePort {
                    name: (!n.is_empty()).then(|| n.to_string()),
                    port: *port,
                    target_port: target.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        status: None,
    }
}

/// A pod of `d`'s current template, as the shell would build it with
/// `pod_for`, bound to `n1` and created at T0 (not yet running).
pub(crate) fn member(d: &Deployment, name: &str) -> Pod {
    let hash = crate::controllers::deployment::template_hash(&d.spec.template);
    crate::controllers::deployment::pod_for(d, &hash, name).created(T0).on("n1")
}

/// `d` with its current template already recorded as a revision.
pub(crate) fn recorded(mut d: Deployment) -> Deployment {
    let plan = crate::controllers::deployment::plan::<Pod>(&d, &[], T0);
    d.metadata.annotations.extend(plan.annotations);
    d
}

/// `n` ready pods of `d`'s current template named `<prefix>-<i>`.
pub(crate) fn ready_members(d: &Deployment, prefix: &str, n: usize) -> Vec<Pod> {
    (0..n).map(|i| member(d, &format!("{prefix}-{i}")).ready_since(T0)).collect()
}
