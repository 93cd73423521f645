//! Nodes (`v1`, kind `Node`) and Events (`v1`, kind `Event`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::{ObjectMeta, Time};
use super::pod::Condition;
use super::quantity::Quantity;
use super::service::ObjectReference;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Cordoned: no new pods are scheduled here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<bool>,
    /// The node's range of pod IPs, allocated by the leader from the
    /// cluster CIDR (Kubernetes' node IPAM): set once, never changed.
    #[serde(default, rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// The same range as a list (one IPv4 range: Corral is single-stack).
    #[serde(default, rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// Corral's extension: what the node's pods use, sampled by the agent
    /// from the container engine (the shapes of `metrics.k8s.io`'s
    /// NodeMetrics and PodMetrics). Carried by the heartbeat the agent
    /// writes anyway, so usage costs no write of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<NodeMetrics>,
}

/// Usage of a node's pods over one sampling window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeMetrics {
    /// When the samples were taken.
    pub timestamp: Time,
    /// The window the CPU rate is averaged over (`"10s"`).
    pub window: String,
    /// The sum over the pods: `cpu` (cores) and `memory` (working set bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMetrics {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerMetrics {
    pub name: String,
    /// `cpu` and `memory`, as in `metrics.k8s.io`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, Quantity>,
}

impl PodMetrics {
    /// The pod's usage of `resource` summed over its containers, in
    /// thousandths (millicores for `cpu`, milli-bytes for `memory`).
    pub fn total_millis(&self, resource: &str) -> u64 {
        self.containers.iter().filter_map(|c| c.usage.get(resource)).map(Quantity::millis).sum()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

impl Node {
    pub fn is_ready(&self) -> bool {
        self.condition("Ready").is_some_and(|c| c.status == "True")
    }

    /// The condition of `type_`, if the node reports it.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the node said its pod network cannot carry pods
    /// (`NetworkUnavailable=True`): no new pods go there.
    pub fn network_unavailable(&self) -> bool {
        self.condition(NETWORK_UNAVAILABLE).is_some_and(|c| c.status == "True")
    }

    /// The node's pod CIDR, parsed (`None`: not allocated yet, or not an IPv4 CIDR).
    pub fn pod_cidr(&self) -> Option<ipnet::Ipv4Net> {
        self.spec.pod_cidr.as_deref()?.parse().ok()
    }

    /// The node's InternalIP, as it advertises it.
    pub fn internal_ip(&self) -> Option<std::net::IpAddr> {
        let addresses = &self.status.as_ref()?.addresses;
        addresses.iter().find(|a| a.type_ == "InternalIP")?.address.parse().ok()
    }
}

/// The Node condition that says the pod network of a node is not set up.
pub const NETWORK_UNAVAILABLE: &str = "NetworkUnavailable";

/// Something that happened to an object, for people to read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub involved_object: ObjectReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// "Normal" or "Warning".
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}
