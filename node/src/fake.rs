//! A fleet of simulated node agents in one task: they register their Node
//! objects, renew their heartbeats, report the pods bound to them as
//! Running and Ready, and confirm pod deletions. For tests and benchmarks
//! only; it runs no containers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control_plane::api::meta::{ObjectMeta, Time};
use control_plane::api::node::{NodeAddress, NodeSpec, NodeStatus};
use control_plane::api::pod::{Condition, ContainerStatus, PodPhase, PodStatus};
use control_plane::api::{Node, Object};
use control_plane::clock::{Clock, SystemClock};
use control_plane::{ClientError, CorralClient};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// One simulated node.
#[derive(Debug, Clone)]
pub struct FakeNodeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// e.g. "4" cpus, "8Gi" memory.
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
}

impl FakeNodeSpec {
    pub fn new(name: impl Into<String>) -> Self {
        FakeNodeSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            max_pods: 110,
        }
    }
}

/// Handle on a running fleet: silence a node (it stops heartbeating and
/// tending its pods, like a dead machine) or revive it.
#[derive(Clone, Default)]
pub struct FleetControl {
    silent: Arc<Mutex<BTreeSet<String>>>,
}

impl FleetControl {
    pub fn silence(&self, node: &str) {
        self.silent.lock().expect("fleet lock").insert(node.to_string());
    }

    pub fn revive(&self, node: &str) {
        self.silent.lock().expect("fleet lock").remove(node);
    }

    fn is_silent(&self, node: &str) -> bool {
        self.silent.lock().expect("fleet lock").contains(node)
    }
}

fn ready_condition(now: Time) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("KubeletReady".into()),
        message: Some("simulated node agent is posting ready status".into()),
        last_heartbeat_time: Some(now),
        last_transition_time: Some(now),
        ..Default::default()
    }
}

fn node_object(spec: &FakeNodeSpec, index: usize, now: Time) -> Node {
    let quantities = |cpu: &str, mem: &str, pods: u32| {
        [("cpu", cpu.to_string()), ("memory", mem.to_string()), ("pods", pods.to_string())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.parse().expect("fleet quantities are valid")))
            .collect::<BTreeMap<_, _>>()
    };
    Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: ObjectMeta { name: spec.name.clone(), labels: spec.labels.clone(), ..Default::default() },
        spec: NodeSpec::default(),
        status: Some(NodeStatus {
            capacity: quantities(&spec.cpu, &spec.memory, spec.max_pods),
            allocatable: quantities(&spec.cpu, &spec.memory, spec.max_pods),
            conditions: vec![ready_condition(now)],
            addresses: vec![NodeAddress {
                type_: "InternalIP".into(),
                address: format!("127.0.1.{}", index % 250 + 1),
            }],
            metrics: None,
        }),
    }
}

/// How a fleet behaves.
#[derive(Debug, Clone, Copy)]
pub struct FleetOptions {
    pub heartbeat: Duration,
    /// Report bound pods Running/Ready and confirm deletions (off for a
    /// scheduling benchmark, which measures binding alone).
    pub report_pods: bool,
}

/// Runs the fleet until `cancel`: registers every node, then heartbeats
/// every `heartbeat` and tends the pods bound to the fleet's nodes.
pub async fn run_fleet(
    client: CorralClient,
    nodes: Vec<FakeNodeSpec>,
    heartbeat: Duration,
    control: FleetControl,
    cancel: CancellationToken,
) -> Result<(), ClientError> {
    run_fleet_with(client, nodes, FleetOptions { heartbeat, report_pods: true }, control, cancel).await
}

/// [`run_fleet`] with every option.
pub async fn run_fleet_with(
    client: CorralClient,
    nodes: Vec<FakeNodeSpec>,
    options: FleetOptions,
    control: FleetControl,
    cancel: CancellationToken,
) -> Result<(), ClientError> {
    let heartbeat = options.heartbeat;
    let clock = SystemClock;
    let owned: Vec<(usize, FakeNodeSpec)> = nodes.iter().cloned().enumerate().collect();
    let register = owned.into_iter().map(|(i, spec)| {
        let node = node_object(&spec, i, clock.now());
        let client = client.clone();
        async move {
            client.apply(&Object::Node(node.clone())).await?;
            client.update_status(&Object::Node(node)).await
        }
    });
    // Up to 200 registrations in flight: they share Raft entries.
    let mut registered = futures::stream::iter(register).buffer_unordered(200);
    while let Some(r) = registered.next().await {
        r?;
    }
    let names: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let beats = {
        let (client, control, cancel) = (client.clone(), control.clone(), cancel.clone());
        tokio::spawn(async move { heartbeats(client, nodes, heartbeat, control, cancel).await })
    };
    let result = if options.report_pods {
        tend_pods(&client, &names, &control, &cancel).await
    } else {
        cancel.cancelled().await;
        Ok(())
    };
    cancel.cancel();
    let _ = beats.await;
    result
}

async fn heartbeats(
    client: CorralClient,
    nodes: Vec<FakeNodeSpec>,
    every: Duration,
    control: FleetControl,
    cancel: CancellationToken,
) {
    let clock = SystemClock;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let live: Vec<&FakeNodeSpec> = nodes.iter().filter(|n| !control.is_silent(&n.name)).collect();
        let beats = live.iter().enumerate().map(|(i, spec)| {
            let client = client.clone();
            let node = node_object(spec, i, clock.now());
            async move {
                if let Err(e) = client.update_status(&Object::Node(node)).await {
                    tracing::debug!(error = %e, "heartbeat failed");
                }
            }
        });
        // Concurrent beats share Raft entries through the proposer's group commit.
        futures::future::join_all(beats).await;
    }
}

/// Reports bound pods Running/Ready and confirms deletions, from a watch.
async fn tend_pods(
    client: &CorralClient,
    names: &BTreeSet<String>,
    control: &FleetControl,
    cancel: &CancellationToken,
) -> Result<(), ClientError> {
    let (pods, rev) = client.list_objects("pods", "", "").await?;
    for p in pods {
        tend(client, names, control, p).await;
    }
    let mut watch = Box::pin(client.watch_objects("pods", "", Some(raft_store::Revision(rev.0 + 1))).await?);
    loop {
        let batch = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            next = watch.next() => match next {
                Some(b) => b?,
                None => return Ok(()),
            },
        };
        let work = batch
            .into_iter()
            .filter(|e| e.type_ != "DELETED")
            .map(|e| tend(client, names, control, e.object));
        futures::future::join_all(work).await;
    }
}

async fn tend(client: &CorralClient, names: &BTreeSet<String>, control: &FleetControl, obj: Object) {
    let Object::Pod(pod) = obj else { return };
    let Some(node) = pod.spec.node_name.clone() else { return };
    if !names.contains(&node) || control.is_silent(&node) {
        return;
    }
    let ns = pod.metadata.namespace_or_default().to_string();
    if pod.metadata.deletion_timestamp.is_some() {
        if let Err(e) = client.delete_object_with("pods", &ns, &pod.metadata.name, None, true).await {
            tracing::debug!(error = %e, "confirming a deletion failed");
        }
        return;
    }
    if pod.is_ready() || matches!(pod.phase(), Some(PodPhase::Failed | PodPhase::Succeeded)) {
        return;
    }
    let now = SystemClock.now();
    let mut running = pod.clone();
    let uid_hash = pod
        .metadata
        .uid
        .as_deref()
        .unwrap_or_default()
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31) ^ b as u32);
    running.status = Some(PodStatus {
        phase: Some(PodPhase::Running),
        conditions: vec![Condition { last_heartbeat_time: None, ..ready_condition(now) }],
        host_ip: Some("127.0.0.1".into()),
        pod_ip: Some(format!(
            "10.{}.{}.{}",
            (uid_hash >> 16) & 0xff,
            (uid_hash >> 8) & 0xff,
            uid_hash & 0xff
        )),
        start_time: Some(now),
        container_statuses: pod
            .spec
            .containers
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                ready: true,
                image: Some(c.image.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    if let Err(e) = client.update_status(&Object::Pod(running)).await {
        tracing::debug!(error = %e, "reporting a pod failed");
    }
}
