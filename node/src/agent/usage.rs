//! Resource usage of the node's pods, for `corral top` and the autoscaler.
//!
//! Every `interval` the sampler reads each running app container's
//! cumulative CPU time and working-set memory from the runtime and turns
//! two readings into a CPU rate ([`summarize`], pure). The result rides on
//! the heartbeat the agent writes anyway (`NodeStatus.metrics`), like the
//! kubelet's summary API feeds metrics-server: no sample costs a Raft write
//! of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use control_plane::api::meta::Time;
use control_plane::api::node::{ContainerMetrics, NodeMetrics, PodMetrics};
use control_plane::api::quantity::Quantity;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::metrics;
use crate::runtime::{ContainerInfo, ContainerState, Runtime, Usage};

/// How many containers are read from the engine at once.
const CONCURRENT_READS: usize = 8;

/// One reading of one running app container.
#[derive(Debug, Clone)]
pub struct Reading {
    pub container: ContainerInfo,
    pub usage: Usage,
    pub at: SystemTime,
}

/// The previous cumulative CPU time of a container, by container id.
pub type Previous = BTreeMap<String, (u64, SystemTime)>;

/// The node's usage from `readings`; `previous` holds the last cumulative
/// CPU time per container and is updated (containers gone are forgotten).
/// A container read for the first time is averaged since it started.
pub fn summarize(
    readings: &[Reading],
    previous: &mut Previous,
    now: SystemTime,
    window: Duration,
) -> NodeMetrics {
    let mut pods: BTreeMap<&str, PodMetrics> = BTreeMap::new();
    let mut next = Previous::new();
    let (mut cpu_total, mut memory_total) = (0u64, 0u64);
    for r in readings {
        let Some(name) = r.container.container.as_deref() else { continue };
        let since = match (previous.get(&r.container.id), &r.container.state) {
            (Some(&(nanos, at)), _) if nanos <= r.usage.cpu_nanos => Some((nanos, at)),
            (_, ContainerState::Running { started_at }) => Some((0, *started_at)),
            _ => None,
        };
        let nanocores = since.and_then(|(nanos, at)| {
            let elapsed = r.at.duration_since(at).ok()?.as_nanos();
            (elapsed > 0).then(|| ((r.usage.cpu_nanos - nanos) as u128 * 1_000_000_000 / elapsed) as u64)
        });
        next.insert(r.container.id.clone(), (r.usage.cpu_nanos, r.at));
        let mut usage = BTreeMap::new();
        if let Some(n) = nanocores {
            cpu_total += n;
            usage.insert("cpu".to_string(), quantity(format!("{n}n")));
        }
        memory_total += r.usage.memory_bytes;
        usage.insert("memory".to_string(), quantity(kibibytes(r.usage.memory_bytes)));
        let pod = pods.entry(r.container.pod.uid.as_str()).or_insert_with(|| PodMetrics {
            namespace: r.container.pod.namespace.clone(),
            name: r.container.pod.name.clone(),
            uid: Some(r.container.pod.uid.clone()),
            containers: Vec::new(),
        });
        pod.containers.push(ContainerMetrics { name: name.to_string(), usage });
    }
    *previous = next;
    let mut pods: Vec<PodMetrics> = pods.into_values().collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for p in &mut pods {
        p.containers.sort_by(|a, b| a.name.cmp(&b.name));
    }
    NodeMetrics {
        timestamp: Time(now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)),
        window: format!("{}s", window.as_secs().max(1)),
        usage: BTreeMap::from([
            ("cpu".to_string(), quantity(format!("{cpu_total}n"))),
            ("memory".to_string(), quantity(kibibytes(memory_total))),
        ]),
        pods,
    }
}

fn kibibytes(bytes: u64) -> String {
    format!("{}Ki", bytes.div_ceil(1024))
}

fn quantity(text: String) -> Quantity {
    text.parse().expect("a whole number with a known suffix is a quantity")
}

/// The latest usage, shared between the sampler and the heartbeat.
pub type Latest = Arc<Mutex<Option<NodeMetrics>>>;

/// Samples every `interval` until `cancel`, publishing to `latest` and to
/// the agent's Prometheus metrics.
pub async fn sample(
    runtime: Arc<dyn Runtime>,
    node: String,
    interval: Duration,
    latest: Latest,
    prometheus: Arc<metrics::NodeMetrics>,
    cancel: CancellationToken,
) {
    let mut previous = Previous::new();
    loop {
        match read(runtime.as_ref(), &node).await {
            Ok(readings) => {
                let summary = summarize(&readings, &mut previous, SystemTime::now(), interval);
                prometheus.observe_usage(&summary);
                *latest.lock().expect("usage") = Some(summary);
            }
            Err(e) => tracing::warn!(%node, error = %e, "cannot read container usage; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Reads every running app container of `node`; a container that went away
/// meanwhile is skipped.
async fn read(runtime: &dyn Runtime, node: &str) -> crate::runtime::RuntimeResult<Vec<Reading>> {
    let running: Vec<ContainerInfo> =
        runtime.list(node).await?.into_iter().filter(|c| !c.is_sandbox() && c.is_running()).collect();
    let readings = futures::stream::iter(running)
        .map(|container| async move {
            let usage = runtime.stats(&container.id).await;
            (container, usage, SystemTime::now())
        })
        .buffer_unordered(CONCURRENT_READS)
        .filter_map(|(container, usage, at)| async move {
            match usage {
                Ok(usage) => Some(Reading { container, usage, at }),
                Err(e) => {
                    tracing::debug!(container = %container.id, error = %e, "no usage for a container");
                    None
                }
            }
        })
        .collect()
        .await;
    Ok(readings)
}

#[cfg(test)]
mod tests;
