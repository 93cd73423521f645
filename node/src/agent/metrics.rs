//! The node agent's Prometheus metrics, served at `/metrics` on port
//! 10250 of the node's address: its pods by phase, container restarts, the
//! duration of sync passes, and the proxy's connections per listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use control_plane::api::Pod;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::proxy::ListenerStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabel {
    namespace: String,
    pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenLabel {
    listen: String,
}

/// Every metric of one agent.
pub struct NodeMetrics {
    registry: Mutex<Registry>,
    pods: Family<PhaseLabel, Gauge>,
    restarts: Gauge,
    sync_seconds: Histogram,
    accepted: Family<ListenLabel, Gauge<u64, AtomicU64>>,
    active: Family<ListenLabel, Gauge<u64, AtomicU64>>,
    failed: Family<ListenLabel, Gauge<u64, AtomicU64>>,
    pod_cpu: Family<PodLabel, Gauge<f64, AtomicU64>>,
    pod_memory: Family<PodLabel, Gauge<u64, AtomicU64>>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let mut registry = Registry::with_prefix("corral_node");
        let m = NodeMetrics {
            registry: Mutex::new(Registry::default()),
            pods: Family::default(),
            restarts: Gauge::default(),
            sync_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            accepted: Family::default(),
            active: Family::default(),
            failed: Family::default(),
            pod_cpu: Family::default(),
            pod_memory: Family::default(),
        };
        registry.register(
            "pod_cpu_usage_cores",
            "CPU a pod used over the last sampling window, in cores",
            m.pod_cpu.clone(),
        );
        registry.register(
            "pod_memory_working_set_bytes",
            "A pod's memory working set at the last sample",
            m.pod_memory.clone(),
        );
        registry.register("pods", "Pods bound to this node, by phase", m.pods.clone());
        registry.register(
            "container_restarts",
            "Container restarts of this node's pods, summed",
            m.restarts.clone(),
        );
        registry.register(
            "sync_pass_seconds",
            "Duration of one pass over this node's pods",
            m.sync_seconds.clone(),
        );
        registry.register(
            "proxy_connections_accepted",
            "Connections the service proxy accepted, per listener (cumulative)",
            m.accepted.clone(),
        );
        registry.register("proxy_connections_active", "Connections open now, per listener", m.active.clone());
        registry.register(
            "proxy_connections_failed",
            "Connections closed because no endpoint answered, per listener (cumulative)",
            m.failed.clone(),
        );
        *m.registry.lock().expect("registry") = registry;
        m
    }

    /// Records the pods of this node after a sync pass that took `seconds`.
    pub fn observe_pass(&self, pods: &[&Pod], seconds: f64) {
        self.sync_seconds.observe(seconds);
        let mut by_phase: BTreeMap<String, i64> =
            ["Pending", "Running", "Succeeded", "Failed"].into_iter().map(|p| (p.to_string(), 0)).collect();
        let mut restarts = 0i64;
        for p in pods {
            let phase = p.phase().map_or("Pending".to_string(), |ph| format!("{ph:?}"));
            *by_phase.entry(phase).or_default() += 1;
            restarts += p
                .status
                .as_ref()
                .map_or(0, |s| s.container_statuses.iter().map(|c| i64::from(c.restart_count)).sum());
        }
        for (phase, n) in by_phase {
            self.pods.get_or_create(&PhaseLabel { phase }).set(n);
        }
        self.restarts.set(restarts);
    }

    /// Records the proxy's counters.
    pub fn observe_proxy(&self, stats: &BTreeMap<SocketAddr, ListenerStats>) {
        self.accepted.clear();
        self.active.clear();
        self.failed.clear();
        for (addr, s) in stats {
            let label = ListenLabel { listen: addr.to_string() };
            self.accepted.get_or_create(&label).set(s.accepted);
            self.active.get_or_create(&label).set(s.active);
            self.failed.get_or_create(&label).set(s.failed);
        }
    }

    /// Records the pods' usage from the last sample.
    pub fn observe_usage(&self, usage: &control_plane::api::node::NodeMetrics) {
        self.pod_cpu.clear();
        self.pod_memory.clear();
        for pod in &usage.pods {
            let label = PodLabel { namespace: pod.namespace.clone(), pod: pod.name.clone() };
            self.pod_cpu.get_or_create(&label).set(pod.total_millis("cpu") as f64 / 1000.0);
            self.pod_memory.get_or_create(&label).set(pod.total_millis("memory") / 1000);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("registry");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_restarts_and_proxy_counters_are_exposed() {
        let m = NodeMetrics::new();
        let mut pod = Pod::default();
        pod.status = Some(control_plane::api::pod::PodStatus {
            phase: Some(control_plane::api::pod::PodPhase::Running),
            container_statuses: vec![control_plane::api::pod::ContainerStatus {
                name: "c".into(),
                restart_count: 3,
                ..Default::default()
            }],
            ..Default::default()
        });
        m.observe_pass(&[&pod], 0.01);
        let stats = BTreeMap::from([(
            "127.0.0.11:8080".parse().unwrap(),
            ListenerStats { accepted: 7, active: 1, failed: 2 },
        )]);
        m.observe_proxy(&stats);
        let usage = control_plane::api::node::NodeMetrics {
            pods: vec![control_plane::api::node::PodMetrics {
                namespace: "default".into(),
                name: "web".into(),
                uid: None,
                containers: vec![control_plane::api::node::ContainerMetrics {
                    name: "c".into(),
                    usage: BTreeMap::from([
                        ("cpu".into(), "250m".parse().unwrap()),
                        ("memory".into(), "2Ki".parse().unwrap()),
                    ]),
                }],
            }],
            ..Default::default()
        };
        m.observe_usage(&usage);
        let text = m.render();
        for line in [
            "corral_node_pods{phase=\"Running\"} 1",
            "corral_node_pods{phase=\"Pending\"} 0",
            "corral_node_container_restarts 3",
            "corral_node_sync_pass_seconds_count 1",
            "corral_node_proxy_connections_accepted{listen=\"127.0.0.11:8080\"} 7",
            "corral_node_proxy_connections_failed{listen=\"127.0.0.11:8080\"} 2",
            "corral_node_pod_cpu_usage_cores{namespace=\"default\",pod=\"web\"} 0.25",
            "corral_node_pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 2048",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
