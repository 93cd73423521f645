//! The scheduler's decision core: which node each pending pod should run on.
//!
//! Shaped like the Kubernetes scheduler framework. A cycle for one pod runs every filter
//! plugin ([`filters`]) over every node of a [`Snapshot`], scores the nodes that pass with
//! every score plugin ([`scores`]), normalizes each plugin's scores to `0..=100`, weights and
//! sums them, and picks the highest total (ties go to the node whose name sorts first). When
//! no node passes, the reasons are counted per node into one [`FitError`] message.
//!
//! Everything here is pure: no I/O, no clock, no randomness, so the same snapshot and pods
//! always give the same decisions. Watching pods and nodes, building the snapshot and writing
//! the bindings belong to the shell that calls [`schedule`], not to this module.

mod affinity_term;
mod cycle;
pub mod filters;
mod fit_error;
mod resources;
pub mod scores;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::ops::Deref;
use std::sync::Arc;

use crate::api::affinity::PodAffinityTerm;
use crate::api::pod::PodPhase;
use crate::api::{Node, Object, Pod};

pub use cycle::find_node;
pub use filters::Reason;
pub use fit_error::FitError;
pub use resources::{Allocatable, Requests};

/// A pod shared with the leader's cache rather than copied: a snapshot of
/// tens of thousands of bound pods is built every pass.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedPod(Arc<Object>);

impl SharedPod {
    /// `None` unless `object` is a pod.
    pub fn new(object: Arc<Object>) -> Option<SharedPod> {
        matches!(*object, Object::Pod(_)).then_some(SharedPod(object))
    }
}

impl From<Pod> for SharedPod {
    fn from(pod: Pod) -> Self {
        SharedPod(Arc::new(Object::Pod(pod)))
    }
}

impl Deref for SharedPod {
    type Target = Pod;

    fn deref(&self) -> &Pod {
        match &*self.0 {
            Object::Pod(p) => p,
            // `new` and `from` admit pods only.
            _ => unreachable!("a SharedPod always holds a pod"),
        }
    }
}

/// A node and the pods that occupy it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub node: Node,
    /// Pods bound to the node and not terminated (phase neither Succeeded nor Failed).
    pub pods: Vec<SharedPod>,
    /// The sums of `pods`' requests (for fit, and for scoring), computed once
    /// per snapshot instead of once per candidate pod; cleared by [`NodeInfo::add`].
    requested: std::sync::OnceLock<(Requests, Requests)>,
    /// What the per-node plugins ask about `pods` for every candidate pod,
    /// indexed once (like `requested`); cleared by [`NodeInfo::add`].
    index: std::sync::OnceLock<PodIndex>,
    /// How many of `pods` each affinity term (written in a given namespace)
    /// selects, counted once per term instead of once per candidate pod;
    /// cleared by [`NodeInfo::add`].
    selected: MatchCache,
}

/// Counts of pods selected per (term, owner namespace), behind a lock so
/// that scoring (which sees `&NodeInfo`) can fill it.
#[derive(Debug, Default)]
struct MatchCache(std::sync::Mutex<std::collections::HashMap<(PodAffinityTerm, String), usize>>);

impl Clone for MatchCache {
    fn clone(&self) -> Self {
        MatchCache::default()
    }
}

impl PartialEq for MatchCache {
    /// A cache never makes two nodes different.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Facts about a node's pods that every scheduling cycle asks.
#[derive(Debug, Clone, Default, PartialEq)]
struct PodIndex {
    /// Pods per controlling owner uid.
    by_owner: std::collections::HashMap<String, usize>,
    /// Whether any pod has a required anti-affinity term.
    any_required_anti_affinity: bool,
}

impl NodeInfo {
    pub fn new(node: Node, pods: Vec<SharedPod>) -> Self {
        NodeInfo {
            node,
            pods,
            requested: std::sync::OnceLock::new(),
            index: std::sync::OnceLock::new(),
            selected: MatchCache::default(),
        }
    }

    /// Binds `pod` here in the snapshot.
    pub fn add(&mut self, pod: SharedPod) {
        self.pods.push(pod);
        self.requested = std::sync::OnceLock::new();
        self.index = std::sync::OnceLock::new();
        self.selected = MatchCache::default();
    }

    /// How many pods on the node `term`, written in the spec of `owner`, selects.
    pub fn count_selected(&self, term: &PodAffinityTerm, owner: &Pod) -> usize {
        let key = (term.clone(), owner.metadata.namespace_or_default().to_string());
        let mut cache = self.selected.0.lock().expect("match cache");
        *cache
            .entry(key)
            .or_insert_with(|| self.pods.iter().filter(|p| affinity_term::selects(term, owner, p)).count())
    }

    fn index(&self) -> &PodIndex {
        self.index.get_or_init(|| {
            let mut index = PodIndex::default();
            for p in &self.pods {
                if let Some(owner) = p.metadata.controller() {
                    *index.by_owner.entry(owner.uid.clone()).or_default() += 1;
                }
                index.any_required_anti_affinity |= !affinity_term::required_anti_affinity(p).is_empty();
            }
            index
        })
    }

    /// How many pods on the node the owner with `uid` controls.
    pub fn owned_by(&self, uid: &str) -> usize {
        self.index().by_owner.get(uid).copied().unwrap_or(0)
    }

    /// Whether some pod on the node has a required anti-affinity term.
    pub fn any_required_anti_affinity(&self) -> bool {
        self.index().any_required_anti_affinity
    }

    /// What the pods on the node request: (as the fit filter counts, as scoring counts).
    pub fn requested(&self) -> (Requests, Requests) {
        *self.requested.get_or_init(|| (Requests::sum_on_node(self), Requests::sum_on_node_for_scoring(self)))
    }

    pub fn name(&self) -> &str {
        &self.node.metadata.name
    }
}

/// The cluster as one scheduling pass sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Sorted by node name.
    pub nodes: Vec<NodeInfo>,
}

impl Snapshot {
    /// Groups `pods` under the nodes they are bound to. Terminated pods and pods bound to a
    /// node that is not in `nodes` free nothing and occupy nothing, so they are left out.
    pub fn new(nodes: Vec<Node>, pods: &[Pod]) -> Snapshot {
        let mut nodes: Vec<NodeInfo> = nodes
            .into_iter()
            .map(|node| {
                let name = node.metadata.name.as_str();
                let pods = pods
                    .iter()
                    .filter(|p| p.spec.node_name.as_deref() == Some(name) && !is_terminated(p))
                    .map(|p| SharedPod::from(p.clone()))
                    .collect();
                NodeInfo::new(node, pods)
            })
            .collect();
        nodes.sort_by(|a, b| a.name().cmp(b.name()));
        Snapshot { nodes }
    }

    /// Every pod bound to a node of the snapshot.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.nodes.iter().flat_map(|n| n.pods.iter().map(|p| &**p))
    }

    /// Records `pod` as bound to `node`, so that later cycles count it.
    fn bind(&mut self, pod: &Pod, node: &str) {
        // `node` was picked from this snapshot, so it is always found.
        if let Some(info) = self.nodes.iter_mut().find(|n| n.name() == node) {
            let mut bound = pod.clone();
            bound.spec.node_name = Some(node.to_string());
            info.add(bound.into());
        }
    }
}

/// What the scheduler decided for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod to `node`.
    Bind { namespace: String, name: String, node: String },
    /// No node fits now; `message` says why, node by node (see [`FitError`]).
    Unschedulable { namespace: String, name: String, message: String },
}

/// Schedules `pending` pods in order; each bind is added to the snapshot so later pods see it.
///
/// Pods that are already bound (`spec.nodeName`) or being deleted get no decision.
pub fn schedule(pending: &[Pod], snapshot: &mut Snapshot) -> Vec<Decision> {
    pending
        .iter()
        .filter(|pod| needs_scheduling(pod))
        .map(|pod| {
            let namespace = pod.metadata.namespace_or_default().to_string();
            let name = pod.metadata.name.clone();
            match find_node(pod, snapshot) {
                Ok(node) => {
                    let node = node.to_string();
                    snapshot.bind(pod, &node);
                    Decision::Bind { namespace, name, node }
                }
                Err(e) => Decision::Unschedulable { namespace, name, message: e.to_string() },
            }
        })
        .collect()
}

fn needs_scheduling(pod: &Pod) -> bool {
    pod.spec.node_name.is_none() && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod has finished for good: it no longer occupies its node.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(pod.phase(), Some(PodPhase::Succeeded | PodPhase::Failed))
}
