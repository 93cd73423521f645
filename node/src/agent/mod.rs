//! The node agent (`corral node`): registers its Node, renews its heartbeat,
//! runs the pods bound to it on a [`Runtime`] and reports their status.
//!
//! Level-triggered like the controllers: every pass lists what the runtime
//! holds for this node, asks [`pod_sync::plan`] what each pod needs, runs
//! those actions and writes the statuses that changed. A pass runs when a
//! pod changes, when a container changes (the runtime's event stream), when
//! a back-off expires, and at least every `resync`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use control_plane::api::meta::{ObjectMeta, Time};
use control_plane::api::node::{NodeAddress, NodeMetrics, NodeStatus};
use control_plane::api::pod::Condition;
use control_plane::api::quantity::Quantity;
use control_plane::api::{Node, Object, Pod, Service};
use control_plane::clock::{Clock, SharedClock};
use control_plane::{ClientError, CorralClient};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

pub mod metrics;
mod probes;
pub mod server;
pub mod service_ips;
pub mod usage;

use crate::dns;
use crate::downward;
use crate::network::{self, NetworkConfig, NetworkState};
use crate::pod_sync::{self, Action, SyncConfig};
use crate::proxy::{self, Proxy};
use crate::reflector::{self, Reflected};
use crate::runtime::{
    ContainerConfig, ContainerInfo, Mount, MountSource, PodRef, PortMapping, PortProtocol, Runtime,
    SandboxConfig,
};
use control_plane::cluster_ip;

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    /// The node's address: ports are published there and the proxy listens there.
    pub address: IpAddr,
    pub labels: BTreeMap<String, String>,
    /// Capacity; detected from the host when `None`.
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    pub max_pods: u32,
    pub heartbeat: Duration,
    /// How often pods' CPU and memory are sampled (reported with the next heartbeat).
    pub usage_interval: Duration,
    pub resync: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Grace for containers of pods that no longer exist at all.
    pub orphan_grace: Duration,
    /// Labels added to every container (tests mark what they create).
    pub extra_labels: BTreeMap<String, String>,
    /// Whether the agent binds the node's sockets: the service proxy, the
    /// cluster DNS responder and the log/exec/metrics server. True in
    /// production; a simulation (turmoil) has no OS sockets and sets it false.
    pub serve_network: bool,
    /// Where heartbeat times come from (the system clock in production; a
    /// simulation's clock, so that the masters judge heartbeat ages in the
    /// same time as the agent writes them).
    pub clock: SharedClock,
    /// How the pod network is made (backend, cluster CIDR).
    pub network: NetworkConfig,
}

impl AgentConfig {
    pub fn new(name: impl Into<String>, address: IpAddr) -> Self {
        AgentConfig {
            name: name.into(),
            address,
            labels: BTreeMap::new(),
            cpu: None,
            memory: None,
            max_pods: 110,
            heartbeat: Duration::from_secs(2),
            usage_interval: Duration::from_secs(10),
            resync: Duration::from_secs(2),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            orphan_grace: Duration::from_secs(2),
            extra_labels: BTreeMap::new(),
            serve_network: true,
            clock: SharedClock::default(),
            network: NetworkConfig::default(),
        }
    }
}

/// What stops an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("node {node:?} could not register: {source}")]
    Register { node: String, source: ClientError },
}

/// Runs the agent until `cancel`.
pub async fn run(
    client: CorralClient,
    runtime: Arc<dyn Runtime>,
    cfg: AgentConfig,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    // A node with a pod network to set up registers without one: the
    // scheduler places nothing here until it is up.
    let first = Health {
        network: runtime.has_pod_network().then(|| network_condition(&NetworkState::WaitingForPodCidr, None)),
        ..Health::default()
    };
    let Some(registered) = register(&client, &cfg, &first, &cancel).await? else { return Ok(()) };
    tracing::info!(node = %cfg.name, address = %cfg.address, "node registered");
    let latest_usage = usage::Latest::default();
    let runtime_down = RuntimeDown::default();
    let network_state = network::new_state();
    let nodes = reflector::reflect(client.clone(), "nodes", cancel.clone());
    let beats = tokio::spawn(heartbeats(
        client.clone(),
        cfg.clone(),
        registered,
        Reports {
            usage: latest_usage.clone(),
            runtime_down: runtime_down.clone(),
            network: network_state.subscribe(),
            nodes: nodes.clone(),
        },
        cancel.clone(),
    ));
    let pods = reflector::reflect(client.clone(), "pods", cancel.clone());
    let services = reflector::reflect(client.clone(), "services", cancel.clone());
    let endpoints = reflector::reflect(client.clone(), "endpoints", cancel.clone());
    // Pods start once the pod network is up: until then the node reports
    // NetworkUnavailable and the scheduler places nothing here.
    let network = network::start(
        runtime.clone(),
        cfg.network,
        cfg.name.clone(),
        cfg.address,
        nodes,
        network_state,
        cancel.clone(),
    )
    .await;
    let metrics = Arc::new(metrics::NodeMetrics::new());
    let sampling = tokio::spawn(usage::sample(
        runtime.clone(),
        cfg.name.clone(),
        cfg.usage_interval,
        latest_usage,
        metrics.clone(),
        cancel.clone(),
    ));
    let proxying = cfg.serve_network.then(|| {
        tokio::spawn(proxy_loop(
            cfg.address,
            network.clone(),
            services.clone(),
            endpoints,
            metrics.clone(),
            cancel.clone(),
        ))
    });
    // The node's DNS responder, bound before any pod is given its address.
    let dns_server = match &network {
        Some(net) if cfg.serve_network => start_dns(&cfg.name, net, services.clone(), cancel.clone()).await,
        _ => None,
    };
    let serving = cfg.serve_network.then(|| {
        tokio::spawn(server::serve(
            std::net::SocketAddr::new(cfg.address, server::PORT),
            runtime.clone(),
            cfg.name.clone(),
            metrics.clone(),
            cancel.clone(),
        ))
    });
    let prober = probes::Prober::new(runtime.clone());
    let probing = tokio::spawn(prober.clone().run(cancel.clone()));
    let agent = Arc::new(Agent {
        metrics,
        dns_server: dns_server.map(IpAddr::V4),
        prober,
        client,
        runtime,
        sync: SyncConfig {
            node: cfg.name.clone(),
            node_ip: cfg.address,
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max,
        },
        cfg,
        terminating: Arc::new(Mutex::new(BTreeSet::new())),
        images: Mutex::new(BTreeMap::new()),
        busy: Mutex::new(BTreeSet::new()),
        runtime_down,
        worker_done: tokio::sync::Notify::new(),
    });
    agent.sync_loop(pods, services, &cancel).await;
    let _ = tokio::join!(beats, probing, sampling);
    for task in [proxying, serving].into_iter().flatten() {
        let _ = task.await;
    }
    if let (Some(net), Some(addr)) = (&network, dns_server) {
        if let Err(e) = service_ips::remove(&net.interface, addr).await {
            tracing::warn!(%addr, error = %e, "cannot remove the node's DNS address");
        }
    }
    Ok(())
}

struct Agent {
    metrics: Arc<metrics::NodeMetrics>,
    /// The cluster DNS address pods are given (none without a pod network).
    dns_server: Option<IpAddr>,
    prober: probes::Prober,
    client: CorralClient,
    runtime: Arc<dyn Runtime>,
    cfg: AgentConfig,
    sync: SyncConfig,
    /// Pods whose containers are being stopped and removed (by uid).
    terminating: Arc<Mutex<BTreeSet<String>>>,
    /// Whether an image is present, and when that was last asked.
    images: Mutex<BTreeMap<String, (bool, Instant)>>,
    /// Pods whose worker is running their actions (by uid).
    busy: Mutex<BTreeSet<String>>,
    /// A pod worker finished: the sync loop looks again.
    worker_done: tokio::sync::Notify,
    /// Set while the container engine does not answer (the heartbeat reports it).
    runtime_down: RuntimeDown,
}

/// Why the container engine is unreachable, while it is.
type RuntimeDown = Arc<Mutex<Option<String>>>;

impl Agent {
    async fn sync_loop(
        self: &Arc<Self>,
        mut pods: tokio::sync::watch::Receiver<Reflected>,
        services: tokio::sync::watch::Receiver<Reflected>,
        cancel: &CancellationToken,
    ) {
        let mut changes = self.runtime.changes(&self.cfg.name);
        let probes_changed = self.prober.changed.clone();
        let mut wake_at: Option<SystemTime> = None;
        loop {
            let sleep = wake_at.map_or(self.cfg.resync, |t| {
                t.duration_since(SystemTime::now()).unwrap_or_default().min(self.cfg.resync)
            });
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = pods.changed() => if r.is_err() { return },
                _ = changes.next() => {}
                _ = probes_changed.notified() => {}
                _ = self.worker_done.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            // Let a burst of changes arrive before a pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let view = pods.borrow_and_update().clone();
            if !view.synced {
                continue;
            }
            let services = services.borrow().objects.clone();
            wake_at = self.pass(&view, &services).await;
        }
    }

    /// One pass over every pod of this node; returns when the next is due
    /// at the latest (a back-off or probe deadline).
    async fn pass(self: &Arc<Self>, view: &Reflected, services: &reflector::Objects) -> Option<SystemTime> {
        let started = Instant::now();
        let mine: Vec<&Pod> = view
            .objects
            .values()
            .filter_map(|o| match o {
                Object::Pod(p) if p.spec.node_name.as_deref() == Some(self.cfg.name.as_str()) => Some(p),
                _ => None,
            })
            .collect();
        let listed = self.runtime.list(&self.cfg.name).await;
        *self.runtime_down.lock().expect("runtime health") = listed.as_ref().err().map(|e| e.to_string());
        let containers = match listed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %self.cfg.name, error = %e, "cannot list containers; retrying");
                return None;
            }
        };
        let mut by_pod: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
        for c in containers {
            by_pod.entry(c.pod.uid.clone()).or_default().push(c);
        }
        let wanted: BTreeSet<String> = mine.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for (uid, containers) in &by_pod {
            if !wanted.contains(uid) {
                self.spawn_removal(uid.clone(), containers.clone(), self.cfg.orphan_grace, None);
            }
        }
        let tracked: Vec<(&Pod, &[ContainerInfo])> = mine
            .iter()
            .map(|p| {
                (
                    *p,
                    by_pod
                        .get(p.metadata.uid.as_deref().unwrap_or_default())
                        .map_or(&[][..], |v| v.as_slice()),
                )
            })
            .collect();
        self.prober.track(&tracked);
        let inputs = Arc::new(PassInputs {
            verdicts: self.prober.verdicts(),
            missing: self.missing_images(&mine, &by_pod).await,
            by_pod,
            services: services.clone(),
        });
        let mut wake_at = None;
        for &pod in &mine {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.busy.lock().expect("busy pods").contains(&uid) {
                continue; // its worker is still on it and wakes the loop when done
            }
            let containers = inputs.by_pod.get(&uid).map_or(&[][..], |v| v.as_slice());
            let plan = pod_sync::plan(
                pod,
                containers,
                &inputs.missing,
                &inputs.verdicts,
                SystemTime::now(),
                &self.sync,
            );
            wake_at = earliest(wake_at, plan.wake_at);
            let status_changed = plan.status.as_ref().is_some_and(|s| pod.status.as_ref() != Some(s));
            if plan.actions.is_empty() && !status_changed {
                continue;
            }
            // Each pod's actions run on their own worker, so a pod whose
            // sandbox is up starts its containers without waiting for the
            // slowest pod of a burst (the kubelet's pod workers).
            self.busy.lock().expect("busy pods").insert(uid.clone());
            let (agent, pod, inputs) = (self.clone(), pod.clone(), inputs.clone());
            tokio::spawn(async move {
                let containers = inputs.by_pod.get(&uid).map_or(&[][..], |v| v.as_slice());
                // A status write comes back through the pod watch, and a
                // termination runs on its own task: only runtime changes
                // made here call for another look at once.
                let acted = plan.actions.iter().any(|a| !matches!(a, Action::Terminate { .. }));
                agent.run_plan(&pod, containers, plan, &inputs.services).await;
                agent.busy.lock().expect("busy pods").remove(&uid);
                if acted {
                    agent.worker_done.notify_one();
                }
            });
        }
        self.metrics.observe_pass(&mine, started.elapsed().as_secs_f64());
        wake_at
    }

    /// Runs one pod's actions and writes its status.
    async fn run_plan(
        &self,
        pod: &Pod,
        containers: &[ContainerInfo],
        plan: pod_sync::PodPlan,
        services: &reflector::Objects,
    ) {
        let sandbox_id = containers.iter().find(|c| c.is_sandbox() && c.is_running()).map(|c| c.id.clone());
        for action in &plan.actions {
            match action {
                Action::Terminate { grace } => {
                    self.spawn_removal(
                        pod.metadata.uid.clone().unwrap_or_default(),
                        containers.to_vec(),
                        *grace,
                        Some(pod.clone()),
                    );
                }
                Action::CreateSandbox => {
                    let config = sandbox_config(pod, &self.cfg, self.dns_server);
                    if let Err(e) = self.runtime.create_sandbox(&config).await {
                        tracing::warn!(pod = %pod.metadata.name, error = %e, "cannot create the pod sandbox")
                    }
                }
                Action::StartContainer { name, attempt } => {
                    let Some(sandbox) = &sandbox_id else { continue };
                    let pod_ip =
                        containers.iter().find(|c| c.is_sandbox() && c.is_running()).and_then(|c| c.ip);
                    let config = match container_config(pod, name, *attempt, &self.cfg, services, pod_ip) {
                        Some(Ok(config)) => config,
                        Some(Err(e)) => {
                            tracing::warn!(pod = %pod.metadata.name, container = %name, error = %e, "cannot build the container's environment");
                            continue;
                        }
                        None => continue,
                    };
                    if let Err(e) = self.runtime.start_container(sandbox, &config).await {
                        tracing::warn!(pod = %pod.metadata.name, container = %name, error = %e, "cannot start a container");
                        if let crate::runtime::RuntimeError::ImageNotPresent { image, .. } = &e {
                            self.images
                                .lock()
                                .expect("image cache")
                                .insert(image.clone(), (false, Instant::now()));
                        }
                    }
                }
                Action::StopContainer { id, grace, reason } => {
                    tracing::info!(pod = %pod.metadata.name, container = %id, %reason, "stopping a container");
                    if let Err(e) = self.runtime.stop_container(id, *grace).await {
                        tracing::warn!(container = %id, error = %e, "cannot stop a container");
                    }
                }
                Action::RemoveContainer { id } => {
                    if let Err(e) = self.runtime.remove_container(id).await {
                        tracing::warn!(container = %id, error = %e, "cannot remove a container");
                    }
                }
            }
        }
        if let Some(status) = plan.status {
            if pod.status.as_ref() != Some(&status) {
                let mut next = pod.clone();
                next.status = Some(status);
                match self.client.update_status(&Object::Pod(next)).await {
                    Ok(_) => {}
                    // Someone wrote the pod since we read it: the watch brings the news.
                    Err(ClientError::Conflict(_) | ClientError::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(pod = %pod.metadata.name, error = %e, "cannot report pod status")
                    }
                }
            }
        }
    }

    /// Images the pods would start from that are not on this node (asked
    /// again at most every two seconds, since a user may build one).
    async fn missing_images(
        &self,
        pods: &[&Pod],
        by_pod: &BTreeMap<String, Vec<ContainerInfo>>,
    ) -> BTreeSet<String> {
        let mut wanted = BTreeSet::new();
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let have: BTreeSet<&str> =
                by_pod.get(&uid).into_iter().flatten().filter_map(|c| c.container.as_deref()).collect();
            for c in &pod.spec.containers {
                if !have.contains(c.name.as_str()) {
                    wanted.insert(c.image.clone());
                }
            }
        }
        let mut missing = BTreeSet::new();
        for image in wanted {
            let cached = self.images.lock().expect("image cache").get(&image).copied();
            let present = match cached {
                Some((present, at)) if present || at.elapsed() < Duration::from_secs(2) => present,
                _ => match self.runtime.image_present(&image).await {
                    Ok(present) => {
                        self.images
                            .lock()
                            .expect("image cache")
                            .insert(image.clone(), (present, Instant::now()));
                        present
                    }
                    Err(e) => {
                        tracing::warn!(%image, error = %e, "cannot inspect an image");
                        continue;
                    }
                },
            };
            if !present {
                missing.insert(image);
            }
        }
        missing
    }

    /// Stops and removes a pod's containers and volumes in the background;
    /// with `confirm`, then removes the pod object (its deletion is complete).
    fn spawn_removal(
        &self,
        uid: String,
        containers: Vec<ContainerInfo>,
        grace: Duration,
        confirm: Option<Pod>,
    ) {
        if !self.terminating.lock().expect("terminating").insert(uid.clone()) {
            return;
        }
        let (runtime, client, terminating) =
            (self.runtime.clone(), self.client.clone(), self.terminating.clone());
        tokio::spawn(async move {
            let name = confirm.as_ref().map_or_else(|| uid.clone(), |p| p.metadata.name.clone());
            tracing::info!(pod = %name, grace_s = grace.as_secs(), "stopping pod");
            let (sandboxes, apps): (Vec<_>, Vec<_>) = containers.iter().partition(|c| c.is_sandbox());
            let stop = |c: &ContainerInfo, grace| {
                let runtime = runtime.clone();
                let id = c.id.clone();
                async move { runtime.stop_container(&id, grace).await }
            };
            let mut result = Ok(());
            for r in futures::future::join_all(apps.iter().map(|c| stop(c, grace))).await {
                result = result.and(r);
            }
            for r in futures::future::join_all(sandboxes.iter().map(|c| stop(c, Duration::ZERO))).await {
                result = result.and(r);
            }
            for c in &containers {
                result = result.and(runtime.remove_container(&c.id).await);
            }
            result = result.and(runtime.remove_pod_volumes(&uid).await);
            match (result, confirm) {
                (Err(e), _) => {
                    tracing::warn!(pod = %name, error = %e, "cannot remove a pod's containers; will retry")
                }
                (Ok(()), Some(pod)) => {
                    let ns = pod.metadata.namespace_or_default().to_string();
                    match client.delete_object_with("pods", &ns, &pod.metadata.name, None, true).await {
                        Ok(_) | Err(ClientError::NotFound(_)) => {
                            tracing::info!(pod = %name, "pod stopped and removed")
                        }
                        Err(e) => {
                            tracing::warn!(pod = %name, error = %e, "cannot confirm a pod's deletion; will retry")
                        }
                    }
                }
                (Ok(()), None) => {
                    tracing::info!(pod = %name, "removed the containers of a pod that no longer exists")
                }
            }
            terminating.lock().expect("terminating").remove(&uid);
        });
    }
}

/// Keeps the proxy's listeners and backends in line with the Services and
/// Endpoints: listeners on the node's address and on each Service's cluster
/// IP, which it first adds to the pod network's bridge. Runs again every few
/// seconds, so a listener that could not bind gets another chance.
async fn proxy_loop(
    address: IpAddr,
    network: Option<crate::runtime::PodNetwork>,
    mut services: tokio::sync::watch::Receiver<Reflected>,
    mut endpoints: tokio::sync::watch::Receiver<Reflected>,
    metrics: Arc<metrics::NodeMetrics>,
    cancel: CancellationToken,
) {
    let proxy = Proxy::start(cancel.clone());
    let mut ours = BTreeSet::new();
    // Whether the bridge holds `ours`: the addresses are read and written
    // again only when the set changes or the last attempt failed.
    let mut converged = false;
    loop {
        let (svcs, eps) = (services.borrow_and_update().clone(), endpoints.borrow_and_update().clone());
        if svcs.synced && eps.synced {
            let (svcs, eps) = (svcs.services(), eps.endpoints());
            if let Some(net) = &network {
                let want: BTreeSet<std::net::Ipv4Addr> = svcs
                    .iter()
                    .filter_map(|s| s.spec.cluster_ip.as_deref()?.parse().ok())
                    .filter(|ip| cluster_ip::in_range(*ip))
                    .collect();
                if !converged || want != ours {
                    converged = match service_ips::converge(&net.interface, &want, &mut ours).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(interface = %net.interface, error = %e, "cannot set the service addresses");
                            false
                        }
                    };
                }
            }
            let table = proxy::plan(&svcs, &eps, &[address]);
            for c in &table.conflicts {
                tracing::warn!(conflict = %c, "service port conflict");
            }
            proxy.apply(&table).await;
        }
        metrics.observe_proxy(&proxy.stats());
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = services.changed() => if r.is_err() { return },
            r = endpoints.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Starts the node's DNS responder for Service names at the first free
/// address of its candidates (added to the pod network's bridge), and keeps
/// its records current. `None` when no address could be served.
async fn start_dns(
    node: &str,
    net: &crate::runtime::PodNetwork,
    mut services: tokio::sync::watch::Receiver<Reflected>,
    cancel: CancellationToken,
) -> Option<std::net::Ipv4Addr> {
    let records = |r: &Reflected| dns::records_from(&r.services());
    let (tx, rx) = tokio::sync::watch::channel(records(&services.borrow_and_update()));
    for candidate in cluster_ip::node_dns_candidates(node).take(16) {
        if let Err(e) = service_ips::add(&net.interface, candidate).await {
            tracing::warn!(interface = %net.interface, error = %e, "cannot add the node's DNS address; pods get Docker's DNS only");
            return None;
        }
        let addr = std::net::SocketAddr::new(IpAddr::V4(candidate), 53);
        let responder = match dns::DnsResponder::bind(addr, rx.clone()).await {
            Ok(r) => r,
            // Another node on this machine holds it: try the next one.
            Err(e) => {
                tracing::debug!(%addr, error = %e, "DNS address taken; trying the next");
                continue;
            }
        };
        tracing::info!(%addr, "serving cluster DNS for this node's pods");
        let serving = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = responder.run(serving).await {
                tracing::warn!(%addr, error = %e, "cluster DNS stopped");
            }
        });
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = services.changed() => if r.is_err() { return },
                }
                tx.send_replace(records(&services.borrow_and_update()));
            }
        });
        return Some(candidate);
    }
    tracing::warn!(node, "no free DNS address for this node; pods get Docker's DNS only");
    None
}

/// What one pass read, shared with the pod workers it starts.
struct PassInputs {
    by_pod: BTreeMap<String, Vec<ContainerInfo>>,
    missing: BTreeSet<String>,
    verdicts: pod_sync::ProbeVerdicts,
    services: reflector::Objects,
}

fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace_or_default().to_string(),
        name: pod.metadata.name.clone(),
    }
}

/// The sandbox of `pod`: its hostname, its ports published on the node's
/// address (a `hostPort` where given, an ephemeral port otherwise), its
/// emptyDir volumes.
pub fn sandbox_config(pod: &Pod, cfg: &AgentConfig, dns: Option<IpAddr>) -> SandboxConfig {
    let ports = pod
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            Some(PortMapping {
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: match p.protocol {
                    Some(control_plane::api::pod::Protocol::Udp) => PortProtocol::Udp,
                    _ => PortProtocol::Tcp,
                },
                host_ip: cfg.address,
                host_port: p.host_port.and_then(|h| u16::try_from(h).ok()).unwrap_or(0),
            })
        })
        .collect();
    let namespace = pod.metadata.namespace_or_default();
    SandboxConfig {
        pod: pod_ref(pod),
        node: cfg.name.clone(),
        hostname: pod.metadata.name.chars().take(63).collect(),
        ports,
        dns_servers: dns.into_iter().collect(),
        dns_search: vec![
            format!("{namespace}.svc.cluster.local"),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ],
        // Kubernetes' ndots:5: "web.default" goes through the search list
        // first (Docker's embedded resolver would otherwise say ndots:0).
        dns_options: if dns.is_some() { vec!["ndots:5".into()] } else { Vec::new() },
        empty_dirs: pod
            .spec
            .volumes
            .iter()
            .filter(|v| v.empty_dir.is_some())
            .map(|v| v.name.clone())
            .collect(),
        extra_labels: cfg.extra_labels.clone(),
    }
}

/// The container `name` of `pod`, start number `attempt`.
pub fn container_config(
    pod: &Pod,
    name: &str,
    attempt: u32,
    cfg: &AgentConfig,
    services: &reflector::Objects,
    pod_ip: Option<IpAddr>,
) -> Option<Result<ContainerConfig, String>> {
    let spec = pod.spec.containers.iter().find(|c| c.name == name)?;
    let namespace = pod.metadata.namespace_or_default();
    let mut env = service_env(services, namespace);
    let (cpu, memory) = capacity(cfg);
    let facts = downward::NodeFacts {
        node_ip: Some(cfg.address),
        pod_ip,
        cpu: cpu.parse().ok(),
        memory: memory.parse().ok(),
    };
    for e in &spec.env {
        let value = match &e.value_from {
            Some(source) => match downward::resolve(pod, spec, source, &facts) {
                Ok(v) => v,
                Err(message) => return Some(Err(format!("env {}: {message}", e.name))),
            },
            None => e.value.clone().unwrap_or_default(),
        };
        env.push((e.name.clone(), value));
    }
    if let Some(refusal) = pod_sync::host_path_refusal(pod, spec) {
        return Some(Err(refusal));
    }
    let mut mounts = Vec::new();
    for m in &spec.volume_mounts {
        let Some(volume) = pod.spec.volumes.iter().find(|v| v.name == m.name) else { continue };
        let source = match (&volume.empty_dir, &volume.host_path) {
            (Some(_), _) => MountSource::EmptyDir(volume.name.clone()),
            (None, Some(h)) => match resolved_host_path(&h.path) {
                Ok(path) => MountSource::HostPath(path),
                Err(why) => return Some(Err(format!("hostPath volume {:?}: {why}", m.name))),
            },
            (None, None) => continue,
        };
        mounts.push(Mount { source, target: m.mount_path.clone(), read_only: m.read_only.unwrap_or(false) });
    }
    let limit = |k: &str| spec.resources.limits.get(k);
    Some(Ok(ContainerConfig {
        pod: pod_ref(pod),
        node: cfg.name.clone(),
        name: name.to_string(),
        image: spec.image.clone(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        env,
        mounts,
        cpu_limit_millis: limit("cpu").map(|q| q.millis()),
        memory_limit_bytes: limit("memory").map(|q| q.value()),
        attempt,
        spec_hash: String::new(),
        extra_labels: cfg.extra_labels.clone(),
    }))
}

/// The host path to bind for `path`, refused when it is protected once its
/// symlinks are followed (an allowed directory may hold a link to `/`). A
/// missing path is mounted as written: Docker refuses a missing bind source.
fn resolved_host_path(path: &str) -> Result<PathBuf, String> {
    let normalized = control_plane::api::pod_security::check_host_path(path)?;
    let Ok(real) = std::fs::canonicalize(&normalized) else { return Ok(PathBuf::from(normalized)) };
    let real_text = real.to_string_lossy();
    match control_plane::api::pod_security::check_host_path(&real_text) {
        Ok(_) => Ok(real),
        Err(why) => Err(format!("{path:?} leads to {real_text:?} through a symlink, and {why}")),
    }
}

/// Kubernetes' service variables for the services of `namespace` that have
/// a cluster IP: `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT` and
/// `NAME_SERVICE_PORT_<PORT NAME>`.
pub fn service_env(services: &reflector::Objects, namespace: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for obj in services.values() {
        let Object::Service(svc) = obj else { continue };
        if svc.metadata.namespace_or_default() != namespace {
            continue;
        }
        env.extend(env_of(svc));
    }
    env
}

fn env_of(svc: &Service) -> Vec<(String, String)> {
    let Some(ip) = svc.spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else {
        return Vec::new();
    };
    let Some(first) = svc.spec.ports.first() else { return Vec::new() };
    let prefix = svc.metadata.name.to_uppercase().replace('-', "_");
    let mut env = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in &svc.spec.ports {
        if let Some(name) = &p.name {
            env.push((
                format!("{prefix}_SERVICE_PORT_{}", name.to_uppercase().replace('-', "_")),
                p.port.to_string(),
            ));
        }
    }
    env
}

fn node_object(cfg: &AgentConfig, existing: Option<&Node>, health: &Health, now: Time) -> Node {
    let (usage, runtime_down) = (health.usage.clone(), health.runtime_down.as_deref());
    let (cpu, memory) = capacity(cfg);
    let quantities = [("cpu", cpu), ("memory", memory), ("pods", cfg.max_pods.to_string())]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect::<BTreeMap<String, Quantity>>();
    // A node whose container engine is unreachable is alive but not Ready,
    // as the kubelet reports a down runtime: services stop sending to its pods.
    let (status, reason, message) = match runtime_down {
        None => ("True", "KubeletReady", "corral node agent is posting ready status".to_string()),
        Some(e) => {
            ("False", "KubeletNotReady", format!("container runtime is down: {e}; the agent keeps retrying"))
        }
    };
    let ready = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_heartbeat_time: Some(now),
        last_transition_time: transition_time(existing, "Ready", status, now),
        ..Default::default()
    };
    let mut conditions = vec![ready];
    conditions.extend(health.network.clone().map(|c| Condition {
        last_heartbeat_time: Some(now),
        last_transition_time: transition_time(existing, &c.type_, &c.status, now),
        ..c
    }));
    let mut metadata = existing.map(|n| n.metadata.clone()).unwrap_or_else(|| ObjectMeta {
        name: cfg.name.clone(),
        labels: cfg.labels.clone(),
        ..Default::default()
    });
    metadata.labels.extend(cfg.labels.clone());
    metadata.labels.insert("kubernetes.io/hostname".into(), cfg.name.clone());
    Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata,
        spec: existing.map(|n| n.spec.clone()).unwrap_or_default(),
        status: Some(NodeStatus {
            capacity: quantities.clone(),
            allocatable: quantities,
            conditions,
            addresses: vec![
                NodeAddress { type_: "InternalIP".into(), address: cfg.address.to_string() },
                NodeAddress { type_: "Hostname".into(), address: cfg.name.clone() },
            ],
            metrics: usage,
        }),
    }
}

/// When condition `type_` last took `status`: kept from `existing` while it holds it.
fn transition_time(existing: Option<&Node>, type_: &str, status: &str, now: Time) -> Option<Time> {
    existing
        .and_then(|n| n.condition(type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time)
        .or(Some(now))
}

/// The `NetworkUnavailable` condition for the network's `state`, as of the
/// Node `seen` (the freshest copy the agent has): while no pod CIDR is
/// allocated, the leader's own word on why (`CIDRNotAvailable`) is kept.
fn network_condition(state: &NetworkState, seen: Option<&Node>) -> Condition {
    if *state == NetworkState::WaitingForPodCidr {
        let leaders = seen
            .and_then(|n| n.condition(control_plane::api::node::NETWORK_UNAVAILABLE))
            .filter(|c| c.reason.as_deref() == Some("CIDRNotAvailable"));
        if let Some(c) = leaders {
            return c.clone();
        }
    }
    let (status, reason, message) = network::condition_of(state);
    Condition {
        type_: control_plane::api::node::NETWORK_UNAVAILABLE.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        ..Default::default()
    }
}

/// The node's capacity: as configured, or this host's CPUs and memory.
fn capacity(cfg: &AgentConfig) -> (String, String) {
    let cpu = cfg
        .cpu
        .as_ref()
        .map(|q| q.as_str().to_string())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).to_string());
    let memory = cfg.memory.as_ref().map(|q| q.as_str().to_string()).unwrap_or_else(host_memory);
    (cpu, memory)
}

fn host_memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{kib}Ki"))
        })
        .unwrap_or_else(|| "1Gi".into())
}

/// Creates the Node (keeping what an operator set, such as a cordon) and
/// reports it Ready; returns it as stored (`None`: cancelled). Retries until
/// the cluster answers or `cancel`.
async fn register(
    client: &CorralClient,
    cfg: &AgentConfig,
    health: &Health,
    cancel: &CancellationToken,
) -> Result<Option<Node>, AgentError> {
    let mut delay = Duration::from_millis(200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_register(client, cfg, health).await {
            Ok(node) => return Ok(Some(node)),
            Err(e) if Instant::now() > deadline => {
                return Err(AgentError::Register { node: cfg.name.clone(), source: e });
            }
            Err(e) => tracing::info!(node = %cfg.name, error = %e, "registration failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn try_register(
    client: &CorralClient,
    cfg: &AgentConfig,
    health: &Health,
) -> Result<Node, ClientError> {
    let existing = match client.get_object("nodes", "", &cfg.name).await {
        Ok(Object::Node(n)) => Some(n),
        Ok(_) | Err(ClientError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let node = node_object(cfg, existing.as_ref(), health, cfg.clock.now());
    if existing.is_none() {
        let mut fresh = node.clone();
        fresh.metadata.resource_version = None;
        client.apply(&Object::Node(fresh)).await?;
    }
    report(client, cfg, &node, health).await
}

/// What the heartbeat reports besides being alive.
#[derive(Debug, Clone, Default)]
struct Health {
    /// The pods' latest usage.
    usage: Option<NodeMetrics>,
    /// Why the container engine is unreachable, while it is.
    runtime_down: Option<String>,
    /// `NetworkUnavailable` (none for a runtime without a pod network).
    network: Option<Condition>,
}

/// Where the heartbeat reads what it reports.
struct Reports {
    usage: usage::Latest,
    runtime_down: RuntimeDown,
    network: tokio::sync::watch::Receiver<Option<NetworkState>>,
    /// Every Node, for this node's freshest copy.
    nodes: tokio::sync::watch::Receiver<Reflected>,
}

impl Reports {
    fn health(&self, name: &str) -> Health {
        let seen = network::own_node(&self.nodes.borrow(), name);
        Health {
            usage: self.usage.lock().expect("usage").clone(),
            runtime_down: self.runtime_down.lock().expect("runtime health").clone(),
            network: self.network.borrow().as_ref().map(|s| network_condition(s, seen.as_ref())),
        }
    }
}

/// Writes the status built from `known` (the Node as last stored) and
/// `health`; returns the Node as stored now.
async fn report(
    client: &CorralClient,
    cfg: &AgentConfig,
    known: &Node,
    health: &Health,
) -> Result<Node, ClientError> {
    let mut status = node_object(cfg, Some(known), health, cfg.clock.now());
    status.metadata.resource_version = None;
    match client.update_status(&Object::Node(status)).await? {
        Object::Node(n) => Ok(n),
        other => Err(ClientError::Other(format!(
            "node {:?}: the API answered with a {}",
            cfg.name,
            other.kind().name()
        ))),
    }
}

/// Renews the heartbeat every `cfg.heartbeat`: one status write from the
/// Node as last stored, no read (a Node deleted by an operator is
/// registered again).
async fn heartbeats(
    client: CorralClient,
    cfg: AgentConfig,
    mut known: Node,
    mut reports: Reports,
    cancel: CancellationToken,
) {
    let mut network_open = true;
    loop {
        // A change of the pod network is reported at once, not a beat later.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(cfg.heartbeat) => {}
            r = reports.network.changed(), if network_open => network_open = r.is_ok(),
        }
        let health = reports.health(&cfg.name);
        let result = match report(&client, &cfg, &known, &health).await {
            Err(ClientError::NotFound(_)) => try_register(&client, &cfg, &health).await,
            r => r,
        };
        match result {
            Ok(node) => known = node,
            Err(e) => tracing::warn!(node = %cfg.name, error = %e, "heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{network_condition, resolved_host_path, NetworkState};
    use control_plane::api::node::{NodeStatus, NETWORK_UNAVAILABLE};
    use control_plane::api::pod::Condition;
    use control_plane::api::Node;

    #[test]
    fn the_network_condition_says_how_the_pod_network_stands_and_keeps_the_leaders_word_while_waiting() {
        let up = network_condition(&NetworkState::Up("pod network up".into()), None);
        assert_eq!(
            (up.type_.as_str(), up.status.as_str(), up.reason.as_deref()),
            (NETWORK_UNAVAILABLE, "False", Some("CorralNetworkUp"))
        );
        let failed = network_condition(&NetworkState::Failed("node address taken".into()), None);
        assert_eq!((failed.status.as_str(), failed.reason.as_deref()), ("True", Some("NetworkSetupFailed")));
        assert_eq!(failed.message.as_deref(), Some("node address taken"));
        let waiting = network_condition(&NetworkState::WaitingForPodCidr, None);
        assert_eq!((waiting.status.as_str(), waiting.reason.as_deref()), ("True", Some("NoPodCIDR")));
        // The leader said the cluster CIDR is exhausted: the agent keeps saying so.
        let exhausted = Condition {
            type_: NETWORK_UNAVAILABLE.into(),
            status: "True".into(),
            reason: Some("CIDRNotAvailable".into()),
            message: Some("no pod CIDR is free".into()),
            ..Default::default()
        };
        let seen = Node {
            status: Some(NodeStatus { conditions: vec![exhausted.clone()], ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(network_condition(&NetworkState::WaitingForPodCidr, Some(&seen)), exhausted);
        // ... but not once its own network is up.
        assert_eq!(network_condition(&NetworkState::Up("up".into()), Some(&seen)).status, "False");
    }

    #[test]
    fn a_host_path_is_refused_when_a_symlink_leads_somewhere_protected() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("data");
        std::fs::create_dir(&plain).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let text = |p: &std::path::Path| p.to_str().unwrap().to_string();
        assert_eq!(resolved_host_path(&text(&plain)), Ok(std::fs::canonicalize(&plain).unwrap()));
        for link in ["root", "etc"] {
            let err = resolved_host_path(&text(&dir.path().join(link))).unwrap_err();
            assert!(err.contains("through a symlink"), "{err}");
            assert!(err.contains("(PodSecurity baseline)"), "{err}");
        }
        assert!(resolved_host_path("/").unwrap_err().contains("never mounted"));
        assert_eq!(
            resolved_host_path("/no/such/dir/../x"),
            Ok(std::path::PathBuf::from("/no/such/x")),
            "a missing path is mounted as written (Docker refuses it)"
        );
    }
}
