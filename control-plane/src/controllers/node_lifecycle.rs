//! The node-lifecycle controller's decisions: what to do about a node that
//! stopped sending heartbeats, and which pods a drain may evict now.
//!
//! A node's heartbeat is its Ready condition's `lastHeartbeatTime` (its
//! `creationTimestamp` until the first one). Silent past the grace period,
//! the node is marked Ready=Unknown and its ready pods not ready (so that
//! services and rollouts stop counting on them); silent past grace plus
//! eviction, its pods are failed with reason NodeLost (their controllers
//! replace them) and its terminating pods are removed outright, since the
//! node will never confirm their end. A node that reports `Ready=False`
//! while still sending heartbeats is alive, and left to itself.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::api::pod::{Condition, PodPhase};
use crate::api::{Deployment, Node, Pod, Time};
use crate::controllers::deployment;
use crate::controllers::pods;

/// How long a node may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLifecycleConfig {
    /// Silence before the node is marked not ready.
    pub grace_seconds: i64,
    /// Further silence before its pods are failed and removed.
    pub eviction_seconds: i64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig { grace_seconds: 10, eviction_seconds: 20 }
    }
}

/// What to write about a node and its pods. Each list is sorted by name;
/// an empty plan means nothing to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodePlan {
    /// The node with its Ready condition set to Unknown (NodeStatusUnknown),
    /// when it is not already.
    pub mark_not_ready: Option<Node>,
    /// Ready pods, with their Ready condition set to False.
    pub not_ready: Vec<Pod>,
    /// Pods to fail: phase Failed, reason NodeLost, not ready.
    pub fail: Vec<Pod>,
    /// Terminating pods to remove from the store outright.
    pub remove: Vec<String>,
}

impl NodePlan {
    pub fn is_empty(&self) -> bool {
        self == &NodePlan::default()
    }
}

/// Plans for `node` at `now`. `pods_on_node` are the pods bound to it
/// (others are ignored). Pure and idempotent: what was written last time is
/// not written again.
pub fn plan<P: Borrow<Pod>>(
    node: &Node,
    pods_on_node: &[P],
    now: Time,
    cfg: &NodeLifecycleConfig,
) -> NodePlan {
    let name = &node.metadata.name;
    let ready = node.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let heartbeat = ready.and_then(|c| c.last_heartbeat_time);
    // Without a heartbeat or a creation time there is nothing to measure.
    let Some(since) = heartbeat.or(node.metadata.creation_timestamp) else { return NodePlan::default() };
    let silent = now.unix() - since.unix();
    if silent <= cfg.grace_seconds {
        return NodePlan::default();
    }
    let mut plan = NodePlan::default();
    if ready.is_none_or(|c| c.status != "Unknown") {
        let message = match heartbeat {
            Some(_) => format!("node \"{name}\" is not ready: last heartbeat {silent} s ago"),
            None => format!("node \"{name}\" is not ready: no heartbeat since it registered {silent} s ago"),
        };
        let condition = Condition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusUnknown".into()),
            message: Some(message),
            last_heartbeat_time: heartbeat,
            last_transition_time: Some(now),
            last_update_time: None,
        };
        let mut marked = node.clone();
        let status = marked.status.get_or_insert_with(Default::default);
        status.conditions.retain(|c| c.type_ != "Ready");
        status.conditions.push(condition);
        plan.mark_not_ready = Some(marked);
    }
    let lost = silent > cfg.grace_seconds + cfg.eviction_seconds;
    let mut on_node: Vec<&Pod> = pods_on_node
        .iter()
        .map(Borrow::borrow)
        .filter(|p: &&Pod| p.spec.node_name.as_deref() == Some(name.as_str()))
        .collect();
    on_node.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in on_node {
        if pods::is_terminating(pod) {
            if lost {
                plan.remove.push(pod.metadata.name.clone());
            }
        } else if pods::is_finished(pod) {
            continue;
        } else if lost {
            plan.fail.push(failed(pod, name, now));
        } else if pod.is_ready() {
            plan.not_ready.push(not_ready(pod.clone(), now));
        }
    }
    plan
}

fn not_ready(mut pod: Pod, now: Time) -> Pod {
    let status = pod.status.get_or_insert_with(Default::default);
    for c in status.conditions.iter_mut().filter(|c| c.type_ == "Ready" && c.status != "False") {
        c.status = "False".into();
        c.last_transition_time = Some(now);
    }
    pod
}

fn failed(pod: &Pod, node: &str, now: Time) -> Pod {
    let mut pod = not_ready(pod.clone(), now);
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some(PodPhase::Failed);
    status.reason = Some("NodeLost".into());
    status.message = Some(format!("Node {node} which was running pod {} is unresponsive", pod.metadata.name));
    pod
}

/// The pods of a node being drained that may be evicted now, least valuable
/// first. A pod controlled by one of `deployments` goes only while that
/// deployment keeps `replicas - maxUnavailable` ready pods (over
/// `all_pods`); each evicted ready pod uses up one of those, while pods
/// that are not ready or already finished cost nothing. Pods of no known
/// deployment are evicted at once; terminating pods are already going.
/// A deployment with `minReadySeconds` counts no more available pods than
/// its status last reported, since readiness alone may overstate it.
///
/// A deployment whose maxUnavailable is 0 (a small one with the default
/// 25%, or one with `maxUnavailable: 0`) still gives up one pod at a time,
/// as if it had a PodDisruptionBudget of `maxUnavailable: 1`: nothing would
/// ever make it a spare pod, and a drain must finish. Its next pod goes once
/// the replacement is ready.
pub fn drain_plan(node_pods: &[Pod], all_pods: &[Pod], deployments: &[Deployment]) -> Vec<String> {
    let mut budget: BTreeMap<&str, i64> = BTreeMap::new();
    for d in deployments {
        let Some(uid) = d.metadata.uid.as_deref() else { continue };
        let ready = all_pods
            .iter()
            .filter(|p| pods::controlled_by(&p.metadata, uid) && pods::is_active(p) && p.is_ready())
            .count();
        let mut available = i64::try_from(ready).unwrap_or(i64::MAX);
        if d.spec.min_ready_seconds.is_some_and(|s| s > 0) {
            available = available.min(d.status.as_ref().map_or(0, |s| i64::from(s.available_replicas)));
        }
        let max_unavailable = i64::try_from(deployment::bounds(d).max_unavailable).unwrap_or(0).max(1);
        let min_available = i64::from(d.replicas().max(0)) - max_unavailable;
        budget.insert(uid, available - min_available);
    }
    let mut candidates: Vec<&Pod> = node_pods.iter().filter(|p| !pods::is_terminating(p)).collect();
    candidates.sort_by_cached_key(|p| pods::deletion_rank(p));
    let mut evict = Vec::new();
    for pod in candidates {
        let owner = pod.metadata.controller().filter(|o| o.kind == "Deployment");
        let costs = pods::is_active(pod) && pod.is_ready();
        match owner.and_then(|o| budget.get_mut(o.uid.as_str())) {
            Some(left) if costs => {
                if *left <= 0 {
                    continue;
                }
                *left -= 1;
            }
            _ => {}
        }
        evict.push(pod.metadata.name.clone());
    }
    evict
}

#[cfg(test)]
mod tests;
