//! Test objects for the scheduler's specifications, built in one place so each test states
//! only what matters to it: `pod("web").with_label("app", "web").requesting(&[("cpu", "1")])`.
//!
//! A `node(name)` is ready, schedulable, labelled with its hostname and states no resources
//! (so they are unlimited); a `pod(name)` lives in `default` with one container that requests
//! nothing.

use crate::api::affinity::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm,
    PodAffinity, PodAffinityTerm, PreferredSchedulingTerm, WeightedPodAffinityTerm,
};
use crate::api::labels::LabelSelector;
use crate::api::node::NodeStatus;
use crate::api::pod::{Condition, Container, PodPhase, PodStatus};
use crate::api::quantity::Quantity;
use crate::api::validation::HOSTNAME_TOPOLOGY;
use crate::api::{Node, OwnerReference, Pod, Time};
use crate::scheduler::Snapshot;

pub fn node(name: &str) -> Node {
    let mut node = Node { api_version: "v1".into(), kind: "Node".into(), ..Node::default() };
    node.metadata.name = name.into();
    node.metadata.labels.insert(HOSTNAME_TOPOLOGY.into(), name.into());
    let ready = Condition { type_: "Ready".into(), status: "True".into(), ..Condition::default() };
    node.status = Some(NodeStatus { conditions: vec![ready], ..NodeStatus::default() });
    node
}

pub fn pod(name: &str) -> Pod {
    let mut pod = Pod { api_version: "v1".into(), kind: "Pod".into(), ..Pod::default() };
    pod.metadata.name = name.into();
    pod.spec.containers.push(Container { name: "app".into(), image: "nginx".into(), ..Container::default() });
    pod
}

pub fn snapshot(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
    Snapshot::new(nodes, &pods)
}

pub fn quantity(s: &str) -> Quantity {
    s.parse().unwrap_or_else(|e| panic!("test quantity {s:?}: {e}"))
}

/// A node selector requirement; `op` is spelled as in a manifest (`In`, `Gt`, ...).
pub fn requirement(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    let operator = match op {
        "In" => NodeSelectorOperator::In,
        "NotIn" => NodeSelectorOperator::NotIn,
        "Exists" => NodeSelectorOperator::Exists,
        "DoesNotExist" => NodeSelectorOperator::DoesNotExist,
        "Gt" => NodeSelectorOperator::Gt,
        "Lt" => NodeSelectorOperator::Lt,
        _ => panic!("unknown node selector operator {op:?}"),
    };
    NodeSelectorRequirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// A pod (anti-)affinity term selecting pods labelled `app=<app>`, on the same node.
pub fn term(app: &str) -> PodAffinityTerm {
    term_with("app", app)
}

/// A pod (anti-)affinity term selecting pods labelled `key=value`, on the same node.
pub fn term_with(key: &str, value: &str) -> PodAffinityTerm {
    let mut selector = LabelSelector::default();
    selector.match_labels.insert(key.into(), value.into());
    PodAffinityTerm {
        label_selector: Some(selector),
        namespaces: vec![],
        topology_key: HOSTNAME_TOPOLOGY.into(),
    }
}

/// A term whose empty selector selects every pod in its namespaces.
pub fn term_selecting_all() -> PodAffinityTerm {
    PodAffinityTerm { label_selector: Some(LabelSelector::default()), ..term("any") }
}

pub fn weighted(weight: i32, term: PodAffinityTerm) -> WeightedPodAffinityTerm {
    WeightedPodAffinityTerm { weight, pod_affinity_term: term }
}

pub trait TermBuilder {
    fn in_namespaces(self, namespaces: &[&str]) -> Self;
}

impl TermBuilder for PodAffinityTerm {
    fn in_namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
        self
    }
}

pub trait NodeBuilder {
    fn with_label(self, key: &str, value: &str) -> Self;
    fn with_allocatable(self, resources: &[(&str, &str)]) -> Self;
    fn with_capacity(self, resources: &[(&str, &str)]) -> Self;
    fn cordoned(self) -> Self;
    fn not_ready(self) -> Self;
    /// `NetworkUnavailable=True`: the node's pod network is not set up.
    fn network_unavailable(self) -> Self
    where
        Self: Sized,
    {
        self.network_unavailable_is("True")
    }
    fn network_unavailable_is(self, status: &str) -> Self;
}

impl NodeBuilder for Node {
    fn with_label(mut self, key: &str, value: &str) -> Self {
        self.metadata.labels.insert(key.into(), value.into());
        self
    }

    fn with_allocatable(mut self, resources: &[(&str, &str)]) -> Self {
        let status = self.status.get_or_insert_with(NodeStatus::default);
        status.allocatable.extend(resources.iter().map(|(r, q)| (r.to_string(), quantity(q))));
        self
    }

    fn with_capacity(mut self, resources: &[(&str, &str)]) -> Self {
        let status = self.status.get_or_insert_with(NodeStatus::default);
        status.capacity.extend(resources.iter().map(|(r, q)| (r.to_string(), quantity(q))));
        self
    }

    fn cordoned(mut self) -> Self {
        self.spec.unschedulable = Some(true);
        self
    }

    fn not_ready(mut self) -> Self {
        let status = self.status.get_or_insert_with(NodeStatus::default);
        status.conditions.retain(|c| c.type_ != "Ready");
        status.conditions.push(Condition {
            type_: "Ready".into(),
            status: "False".into(),
            ..Condition::default()
        });
        self
    }

    fn network_unavailable_is(mut self, status: &str) -> Self {
        let conditions = &mut self.status.get_or_insert_with(NodeStatus::default).conditions;
        conditions.push(Condition {
            type_: crate::api::node::NETWORK_UNAVAILABLE.into(),
            status: status.into(),
            ..Condition::default()
        });
        self
    }
}

pub trait PodBuilder {
    fn with_label(self, key: &str, value: &str) -> Self;
    fn in_namespace(self, namespace: &str) -> Self;
    /// Adds requests to the first container.
    fn requesting(self, resources: &[(&str, &str)]) -> Self;
    /// Adds a container with these requests.
    fn with_container(self, resources: &[(&str, &str)]) -> Self;
    fn bound_to(self, node: &str) -> Self;
    fn in_phase(self, phase: PodPhase) -> Self;
    fn deleting(self) -> Self;
    /// Makes the pod a replica: its controller is the workload with this uid.
    fn owned_by(self, uid: &str) -> Self;
    fn with_node_selector(self, key: &str, value: &str) -> Self;
    /// Required node affinity: the terms are ORed, each term's requirements ANDed.
    fn requiring_node(self, terms: Vec<Vec<NodeSelectorRequirement>>) -> Self;
    fn preferring_node(self, weight: i32, requirements: &[NodeSelectorRequirement]) -> Self;
    fn with_pod_affinity(self, term: PodAffinityTerm) -> Self;
    fn with_pod_anti_affinity(self, term: PodAffinityTerm) -> Self;
    fn preferring_pod(self, term: WeightedPodAffinityTerm) -> Self;
    fn avoiding_pod(self, term: WeightedPodAffinityTerm) -> Self;
}

fn affinity(pod: &mut Pod) -> &mut Affinity {
    pod.spec.affinity.get_or_insert_with(Affinity::default)
}

fn node_affinity(pod: &mut Pod) -> &mut NodeAffinity {
    affinity(pod).node_affinity.get_or_insert_with(NodeAffinity::default)
}

fn pod_affinity(pod: &mut Pod) -> &mut PodAffinity {
    affinity(pod).pod_affinity.get_or_insert_with(PodAffinity::default)
}

fn pod_anti_affinity(pod: &mut Pod) -> &mut PodAffinity {
    affinity(pod).pod_anti_affinity.get_or_insert_with(PodAffinity::default)
}

impl PodBuilder for Pod {
    fn with_label(mut self, key: &str, value: &str) -> Self {
        self.metadata.labels.insert(key.into(), value.into());
        self
    }

    fn in_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.into());
        self
    }

    fn requesting(mut self, resources: &[(&str, &str)]) -> Self {
        let requests = &mut self.spec.containers[0].resources.requests;
        requests.extend(resources.iter().map(|(r, q)| (r.to_string(), quantity(q))));
        self
    }

    fn with_container(mut self, resources: &[(&str, &str)]) -> Self {
        let mut container =
            Container { name: format!("app-{}", self.spec.containers.len()), ..Container::default() };
        container.resources.requests.extend(resources.iter().map(|(r, q)| (r.to_string(), quantity(q))));
        self.spec.containers.push(container);
        self
    }

    fn bound_to(mut self, node: &str) -> Self {
        self.spec.node_name = Some(node.into());
        self
    }

    fn in_phase(mut self, phase: PodPhase) -> Self {
        self.status.get_or_insert_with(PodStatus::default).phase = Some(phase);
        self
    }

    fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(Time::from_unix(1_800_000_000));
        self
    }

    fn owned_by(mut self, uid: &str) -> Self {
        self.metadata.owner_references.push(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: uid.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
        self
    }

    fn with_node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec.node_selector.insert(key.into(), value.into());
        self
    }

    fn requiring_node(mut self, terms: Vec<Vec<NodeSelectorRequirement>>) -> Self {
        let node_selector_terms =
            terms.into_iter().map(|match_expressions| NodeSelectorTerm { match_expressions }).collect();
        node_affinity(&mut self).required_during_scheduling_ignored_during_execution =
            Some(NodeSelector { node_selector_terms });
        self
    }

    fn preferring_node(mut self, weight: i32, requirements: &[NodeSelectorRequirement]) -> Self {
        let preference = NodeSelectorTerm { match_expressions: requirements.to_vec() };
        let preferred = &mut node_affinity(&mut self).preferred_during_scheduling_ignored_during_execution;
        preferred.push(PreferredSchedulingTerm { weight, preference });
        self
    }

    fn with_pod_affinity(mut self, term: PodAffinityTerm) -> Self {
        pod_affinity(&mut self).required_during_scheduling_ignored_during_execution.push(term);
        self
    }

    fn with_pod_anti_affinity(mut self, term: PodAffinityTerm) -> Self {
        pod_anti_affinity(&mut self).required_during_scheduling_ignored_during_execution.push(term);
        self
    }

    fn preferring_pod(mut self, term: WeightedPodAffinityTerm) -> Self {
        pod_affinity(&mut self).preferred_during_scheduling_ignored_during_execution.push(term);
        self
    }

    fn avoiding_pod(mut self, term: WeightedPodAffinityTerm) -> Self {
        pod_anti_affinity(&mut self).preferred_during_scheduling_ignored_during_execution.push(term);
        self
    }
}
