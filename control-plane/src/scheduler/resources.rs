//! What pods request and what nodes offer, in the units the scheduler compares: cpu in
//! millicores, memory in bytes, and a count of pods. Shared by the fit filter and the
//! least-allocated score so both read requests and allocatable the same way.

use std::ops::Add;

use super::NodeInfo;
use crate::api::pod::Container;
use crate::api::quantity::Quantity;
use crate::api::{Node, Pod};

/// Cpu assumed for a container that requests none, when scoring only (Kubernetes' default):
/// otherwise pods without requests would all look free and pile onto one node.
const DEFAULT_MILLI_CPU_REQUEST: u64 = 100;
/// Memory assumed for a container that requests none, when scoring only (200 MiB).
const DEFAULT_MEMORY_REQUEST: u64 = 200 * 1024 * 1024;

/// Resources requested by one pod or by all the pods on a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub milli_cpu: u64,
    pub memory: u64,
    pub pods: u64,
}

impl Add for Requests {
    type Output = Requests;

    fn add(self, other: Requests) -> Requests {
        Requests {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
            pods: self.pods.saturating_add(other.pods),
        }
    }
}

impl Requests {
    /// The sum of the pod's container requests, as the fit filter counts them.
    pub fn of_pod(pod: &Pod) -> Requests {
        Self::sum(pod, |c| Requests {
            milli_cpu: requested(c, "cpu").map_or(0, |q| q.millis()),
            memory: requested(c, "memory").map_or(0, |q| q.value()),
            pods: 0,
        })
    }

    /// Like [`Requests::of_pod`], but a container that requests no cpu or no memory counts a
    /// small default instead, as Kubernetes does when scoring.
    pub fn of_pod_for_scoring(pod: &Pod) -> Requests {
        Self::sum(pod, |c| Requests {
            milli_cpu: requested(c, "cpu").map_or(DEFAULT_MILLI_CPU_REQUEST, |q| q.millis()),
            memory: requested(c, "memory").map_or(DEFAULT_MEMORY_REQUEST, |q| q.value()),
            pods: 0,
        })
    }

    /// What the pods already on the node request (cached per snapshot).
    pub fn on_node(node: &NodeInfo) -> Requests {
        node.requested().0
    }

    /// Like [`Requests::on_node`], with the scoring defaults of [`Requests::of_pod_for_scoring`].
    pub fn on_node_for_scoring(node: &NodeInfo) -> Requests {
        node.requested().1
    }

    pub(crate) fn sum_on_node(node: &NodeInfo) -> Requests {
        node.pods.iter().map(|p| Requests::of_pod(p)).fold(Requests::default(), Add::add)
    }

    pub(crate) fn sum_on_node_for_scoring(node: &NodeInfo) -> Requests {
        node.pods.iter().map(|p| Requests::of_pod_for_scoring(p)).fold(Requests::default(), Add::add)
    }

    fn sum(pod: &Pod, per_container: impl Fn(&Container) -> Requests) -> Requests {
        let containers = pod.spec.containers.iter().map(per_container);
        containers.fold(Requests { pods: 1, ..Requests::default() }, Add::add)
    }
}

fn requested<'a>(container: &'a Container, resource: &str) -> Option<&'a Quantity> {
    container.resources.requests.get(resource)
}

/// What a node offers to pods; `None` means the node states no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub milli_cpu: Option<u64>,
    pub memory: Option<u64>,
    pub pods: Option<u64>,
}

impl Allocatable {
    /// `status.allocatable`, falling back to `status.capacity` for each resource that
    /// allocatable does not state.
    pub fn of(node: &Node) -> Allocatable {
        let Some(status) = &node.status else { return Allocatable::default() };
        let get = |resource: &str| status.allocatable.get(resource).or_else(|| status.capacity.get(resource));
        Allocatable {
            milli_cpu: get("cpu").map(|q| q.millis()),
            memory: get("memory").map(|q| q.value()),
            pods: get("pods").map(|q| q.value()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::*;

    #[test]
    fn pod_requests_add_up_over_containers_in_millicores_and_bytes() {
        let cases: Vec<(Pod, Requests, Requests)> = vec![
            (
                pod("bare"),
                Requests { milli_cpu: 0, memory: 0, pods: 1 },
                Requests { milli_cpu: 100, memory: 200 << 20, pods: 1 },
            ),
            (
                pod("web").requesting(&[("cpu", "500m"), ("memory", "1Gi")]),
                Requests { milli_cpu: 500, memory: 1 << 30, pods: 1 },
                Requests { milli_cpu: 500, memory: 1 << 30, pods: 1 },
            ),
            (
                pod("two").requesting(&[("cpu", "0.25")]).with_container(&[("cpu", "1"), ("memory", "1M")]),
                Requests { milli_cpu: 1250, memory: 1_000_000, pods: 1 },
                Requests { milli_cpu: 1250, memory: (200 << 20) + 1_000_000, pods: 1 },
            ),
        ];
        for (pod, fit, scoring) in cases {
            assert_eq!(Requests::of_pod(&pod), fit, "{}", pod.metadata.name);
            assert_eq!(Requests::of_pod_for_scoring(&pod), scoring, "{}", pod.metadata.name);
        }
    }

    #[test]
    fn node_requests_sum_the_pods_on_it() {
        let a = pod("a").requesting(&[("cpu", "1")]).bound_to("n");
        let b = pod("b").requesting(&[("memory", "1Ki")]).bound_to("n");
        let snap = snapshot(vec![node("n")], vec![a, b]);
        assert_eq!(Requests::on_node(&snap.nodes[0]), Requests { milli_cpu: 1000, memory: 1024, pods: 2 });
    }

    #[test]
    fn allocatable_falls_back_to_capacity_per_resource() {
        let cases: Vec<(Node, Allocatable)> = vec![
            (node("unstated"), Allocatable::default()),
            (
                node("both")
                    .with_allocatable(&[("cpu", "3500m")])
                    .with_capacity(&[("cpu", "4"), ("memory", "2Gi")]),
                Allocatable { milli_cpu: Some(3500), memory: Some(2 << 30), pods: None },
            ),
            (
                node("pods").with_allocatable(&[("pods", "110")]),
                Allocatable { milli_cpu: None, memory: None, pods: Some(110) },
            ),
        ];
        for (node, expected) in cases {
            assert_eq!(Allocatable::of(&node), expected, "{}", node.metadata.name);
        }
    }
}
