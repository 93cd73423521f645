//! [`DockerRuntime`]: the [`Runtime`] on a local Docker engine, through
//! bollard.
//!
//! A pod is a sandbox container (busybox waiting forever) on the Corral
//! bridge network, holding the pod IP, the published ports, the hostname
//! and the DNS settings; its app containers join the sandbox's network
//! namespace (`network_mode: container:<id>`). emptyDir volumes are Docker
//! volumes named for the pod. Everything carries Corral's [`labels`], so
//! several agents share one engine and each finds its own by node name.
//!
//! Not here: pulling images (there is no registry: a missing image is
//! [`RuntimeError::ImageNotPresent`]), restart policy (the agent restarts
//! containers and counts attempts), and the Corral network's deletion.
//!
//! bollard opens connections per request, so an engine restart costs the
//! calls made while it is down ([`RuntimeError::Unavailable`]) and nothing
//! after; `changes()` resubscribes by itself.

mod events;
mod exec;
mod images;
mod network;
mod translate;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

pub use self::exec::MAX_OUTPUT as MAX_EXEC_OUTPUT;
pub use self::images::{
    ensure_busybox_images, ensure_busybox_images_from, BUSYBOX_IMAGE, BUSYBOX_PATH, PAUSE_IMAGE,
};
pub use self::translate::{
    container_name, sanitize, volume_name, Hardening, DEFAULT_PIDS_LIMIT, NO_NEW_PRIVILEGES,
    SANDBOX_CONTAINER,
};
use self::translate::{
    is_conflict, is_missing_image, is_missing_network, is_not_found, runtime_error, DockerState,
};
use super::{
    labels, ContainerConfig, ContainerInfo, ExecEvent, ExecOutput, LogOptions, PodNetworkSpec, PodRef,
    Runtime, RuntimeError, RuntimeResult, Sandbox, SandboxConfig, Usage,
};

/// The network Corral's pods join unless told otherwise.
pub const DEFAULT_NETWORK: &str = "corral";
/// Where the engine listens unless `DOCKER_HOST` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Seconds bollard waits for an answer to an ordinary request.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Containers inspected at once by `list`.
const INSPECT_CONCURRENCY: usize = 8;

/// The Docker engine as a [`Runtime`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    network: String,
    /// How the pod network is made: the default for [`DEFAULT_NETWORK`]
    /// until the agent sets its own; none (the engine picks) for another
    /// network a test names.
    spec: Arc<std::sync::Mutex<Option<PodNetworkSpec>>>,
    /// Addresses being given to sandboxes now (a bridge shared by several
    /// nodes, where this runtime picks them).
    claimed: Arc<std::sync::Mutex<BTreeSet<std::net::Ipv4Addr>>>,
    /// What every container gets (no-new-privileges, a pids limit, ...).
    hardening: Hardening,
    /// The last inspection of each container, with the state the list
    /// showed then: a container is inspected again only when its state
    /// changes (its times, exit code and address change only then), so a
    /// sync pass costs one list call, not one call per container. Docker's
    /// list can lag its events by a moment, so every event drops its
    /// container from the cache (`changes`): what follows a nudge is fresh.
    inspected: InspectCache,
}

/// Container id → (the state the list showed, what its inspection said then).
type InspectCache = Arc<std::sync::Mutex<HashMap<String, (String, Option<ContainerInfo>)>>>;

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` if it names a unix
    /// socket, else [`DEFAULT_SOCKET`]), agrees on an API version and makes
    /// sure the bridge network `network` exists.
    pub async fn connect(network: &str) -> RuntimeResult<Self> {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|host| host.strip_prefix("unix://").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        Self::connect_at(Path::new(&socket), network).await
    }

    /// [`DockerRuntime::connect`] to the engine listening on `socket`.
    pub async fn connect_at(socket: &Path, network: &str) -> RuntimeResult<Self> {
        let runtime = Self::open(socket, network).await?;
        let spec = (network == DEFAULT_NETWORK).then(PodNetworkSpec::default);
        *runtime.spec.lock().expect("network spec") = spec.clone();
        network::ensure_network(&runtime.docker, network, spec.as_ref()).await?;
        Ok(runtime)
    }

    /// The engine at `DOCKER_HOST` (a unix socket) or `docker_host`, else
    /// [`DEFAULT_SOCKET`]: the socket path of a `unix://` address or a path.
    pub fn socket_of(docker_host: Option<&str>) -> std::path::PathBuf {
        let host = docker_host.map(str::to_string).or_else(|| std::env::var("DOCKER_HOST").ok());
        std::path::PathBuf::from(
            host.map(|h| h.strip_prefix("unix://").map(str::to_string).unwrap_or(h))
                .unwrap_or_else(|| DEFAULT_SOCKET.to_string()),
        )
    }

    /// Connects to the engine at `socket` and agrees on an API version; the
    /// pod network `network` is made later, by [`Runtime::pod_network`]
    /// (the node agent knows its spec only once it has a pod CIDR).
    pub async fn open(socket: &Path, network: &str) -> RuntimeResult<Self> {
        let what = format!("connecting to the Docker engine at {}", socket.display());
        let socket = socket.to_str().ok_or_else(|| RuntimeError::Engine(format!("{what}: not UTF-8")))?;
        // Not `connect_with_socket`: it refuses a socket file that is missing
        // now, and an agent may start before the engine does.
        let docker = Docker::connect_with_unix(socket, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
            .map_err(|e| runtime_error(&what, e))?;
        let docker = docker.negotiate_version().await.map_err(|e| runtime_error(&what, e))?;
        Ok(DockerRuntime {
            docker,
            network: network.to_string(),
            spec: Default::default(),
            claimed: Default::default(),
            hardening: Hardening::default(),
            inspected: Default::default(),
        })
    }

    /// The runtime with at most `limit` processes in each container it
    /// creates (Docker's PidsLimit; [`DEFAULT_PIDS_LIMIT`] otherwise).
    pub fn with_pids_limit(mut self, limit: i64) -> Self {
        self.hardening.pids_limit = limit;
        self
    }

    /// The bollard client, for what the [`Runtime`] does not cover (tests,
    /// image builds).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The name of the network pods join.
    pub fn network(&self) -> &str {
        &self.network
    }

    async fn ensure_volume(
        &self,
        pod: &PodRef,
        node: &str,
        volume: &str,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> RuntimeResult<()> {
        let name = volume_name(&pod.uid, volume);
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(translate::volume_labels(pod, node, extra)),
            ..Default::default()
        };
        // Creating a volume that exists is a no-op in Docker.
        self.docker
            .create_volume(request)
            .await
            .map(drop)
            .map_err(|e| runtime_error(&format!("creating volume {name}"), e))
    }

    async fn create_sandbox_owned(&self, config: SandboxConfig) -> RuntimeResult<Sandbox> {
        for volume in &config.empty_dirs {
            self.ensure_volume(&config.pod, &config.node, volume, &config.extra_labels).await?;
        }
        let name = container_name(&config.node, &config.pod, SANDBOX_CONTAINER, 0);
        let who = Identity { pod_uid: &config.pod.uid, container: None, attempt: 0, node: &config.node };
        let pod_range = self.spec.lock().expect("network spec").as_ref().and_then(|s| s.pod_range);
        let id = match pod_range {
            None => {
                let body =
                    translate::sandbox_body(&config, PAUSE_IMAGE, &self.network, None, &self.hardening);
                self.create_and_start(&name, body, &who).await?
            }
            Some(range) => self.create_addressed_sandbox(&config, &name, &who, range).await?,
        };
        let inspect = self.inspect(&id).await?;
        let ip = self.pod_ip(&inspect);
        tracing::info!(node = %config.node, pod = %config.pod.name, %id, ?ip, "sandbox started");
        Ok(Sandbox { id, ip })
    }

    /// A sandbox on a bridge shared by several nodes: its address is picked
    /// here from this node's pod CIDR, never one a container holds or
    /// another sandbox is being given; one taken meanwhile (by an agent of
    /// another node it cannot be: their ranges differ) is tried again.
    async fn create_addressed_sandbox(
        &self,
        config: &SandboxConfig,
        name: &str,
        who: &Identity<'_>,
        range: ipnet::Ipv4Net,
    ) -> RuntimeResult<String> {
        let mut refused = BTreeSet::new();
        for _ in 0..4 {
            let mut taken = network::addresses_in_use(&self.docker, &self.network).await?;
            let ip = {
                let mut claimed = self.claimed.lock().expect("claimed addresses");
                taken.extend(claimed.iter().copied());
                taken.extend(refused.iter().copied());
                let Some(ip) = crate::network::plan::pod_address(range, &config.pod.uid, &taken) else {
                    return Err(RuntimeError::Engine(format!(
                        "no free pod address in this node's pod CIDR {range} ({} in use)",
                        taken.len()
                    )));
                };
                claimed.insert(ip);
                ip
            };
            let body = translate::sandbox_body(config, PAUSE_IMAGE, &self.network, Some(ip), &self.hardening);
            let result = self.create_and_start(name, body, who).await;
            self.claimed.lock().expect("claimed addresses").remove(&ip);
            match result {
                Err(RuntimeError::Engine(m))
                    if m.contains("already in use") || m.contains("Address already") =>
                {
                    tracing::info!(pod = %config.pod.name, %ip, "pod address taken meanwhile; trying another");
                    refused.insert(ip);
                }
                other => return other,
            }
        }
        Err(RuntimeError::Engine(format!("no free pod address in {range} after 4 tries; retrying later")))
    }

    async fn start_container_owned(
        &self,
        sandbox_id: String,
        config: ContainerConfig,
    ) -> RuntimeResult<String> {
        // Mounting a missing volume would make Docker create it unlabelled.
        for mount in &config.mounts {
            if let super::MountSource::EmptyDir(volume) = &mount.source {
                self.ensure_volume(&config.pod, &config.node, volume, &config.extra_labels).await?;
            }
        }
        let name = container_name(&config.node, &config.pod, &config.name, config.attempt);
        let body = translate::app_body(&sandbox_id, &config, &self.hardening);
        let who = Identity {
            pod_uid: &config.pod.uid,
            container: Some(&config.name),
            attempt: config.attempt,
            node: &config.node,
        };
        let id = self.create_and_start(&name, body, &who).await.map_err(|e| match e {
            // Docker names the missing container: here, the sandbox.
            RuntimeError::NotFound(_) => RuntimeError::NotFound(sandbox_id.clone()),
            other => other,
        })?;
        tracing::info!(
            node = %config.node, pod = %config.pod.name, container = %config.name,
            attempt = config.attempt, %id, "container started"
        );
        Ok(id)
    }

    /// Creates and starts `name`. A leftover of the same name is replaced
    /// when it is Corral's and stopped, and reused when it is this very
    /// start already running (a retried call whose answer was lost). A
    /// Corral network deleted behind the agent's back is created again.
    async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
        who: &Identity<'_>,
    ) -> RuntimeResult<String> {
        const TRIES: u32 = 3;
        for last_try in (1..=TRIES).map(|t| t == TRIES) {
            let id = match self.create(name, body.clone(), who, last_try).await? {
                Created::New(id) => id,
                Created::Running(id) => return Ok(id),
                Created::Retry => continue,
            };
            let Err(e) = self.docker.start_container(&id, None).await else { return Ok(id) };
            // Leave no half-made container behind to block the next try.
            let _ = self.remove(&id).await;
            if is_missing_network(&e) && !last_try {
                // Docker checks the network only now, at start.
                let spec = self.spec.lock().expect("network spec").clone();
                network::ensure_network(&self.docker, &self.network, spec.as_ref()).await?;
                continue;
            }
            if is_not_found(&e) && !is_missing_network(&e) {
                // The container it was to join is gone: for an app, its sandbox.
                return Err(RuntimeError::NotFound(name.to_string()));
            }
            return Err(runtime_error(&format!("starting container {name}"), e));
        }
        Err(RuntimeError::Engine(format!("creating container {name}: still failing after {TRIES} tries")))
    }

    async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
        who: &Identity<'_>,
        last_try: bool,
    ) -> RuntimeResult<Created> {
        let image = body.image.clone().unwrap_or_default();
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let err = match self.docker.create_container(Some(options), body).await {
            Ok(created) => return Ok(Created::New(created.id)),
            Err(e) => e,
        };
        if is_missing_image(&err) {
            return Err(RuntimeError::ImageNotPresent { image, node: who.node.to_string() });
        }
        if is_conflict(&err) && !last_try {
            return Ok(match self.resolve_name_conflict(name, who).await? {
                Some(running) => Created::Running(running),
                None => Created::Retry,
            });
        }
        Err(runtime_error(&format!("creating container {name}"), err))
    }

    /// Some(id) to reuse the running container holding `name`; None once the
    /// name is free again.
    async fn resolve_name_conflict(&self, name: &str, who: &Identity<'_>) -> RuntimeResult<Option<String>> {
        let existing = match self.docker.inspect_container(name, None).await {
            Ok(existing) => existing,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(runtime_error(&format!("inspecting container {name}"), e)),
        };
        let id = existing.id.clone().unwrap_or_else(|| name.to_string());
        let labels_of = existing.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        let label = |k: &str| labels_of.get(k).map(String::as_str);
        if label(labels::OWNED) != Some("true") {
            return Err(RuntimeError::Engine(format!(
                "container name {name} is taken by container {id}, which Corral did not create: remove it"
            )));
        }
        let running = existing.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running {
            tracing::info!(%name, %id, "removing a stopped container that holds the name");
            self.remove(&id).await?;
            return Ok(None);
        }
        let same_start = label(labels::POD_UID) == Some(who.pod_uid)
            && label(labels::CONTAINER) == who.container
            && label(labels::ATTEMPT) == Some(who.attempt.to_string().as_str());
        if same_start {
            return Ok(Some(id));
        }
        Err(RuntimeError::Engine(format!(
            "container name {name} is held by running container {id} of pod uid {}: stop it first",
            label(labels::POD_UID).unwrap_or("?")
        )))
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<ContainerInspectResponse> {
        self.docker.inspect_container(id, None).await.map_err(|e| {
            if is_not_found(&e) {
                RuntimeError::NotFound(id.to_string())
            } else {
                runtime_error(&format!("inspecting container {id}"), e)
            }
        })
    }

    /// The container's address on the Corral network; stopped containers
    /// have none.
    fn pod_ip(&self, inspect: &ContainerInspectResponse) -> Option<IpAddr> {
        let networks = inspect.network_settings.as_ref()?.networks.as_ref()?;
        networks.get(&self.network)?.ip_address.as_deref()?.parse().ok()
    }

    fn info_of(&self, inspect: &ContainerInspectResponse) -> Option<ContainerInfo> {
        let config = inspect.config.as_ref()?;
        let labels_of = config.labels.as_ref()?;
        let state = inspect.state.as_ref();
        let docker_state = DockerState {
            status: state.and_then(|s| s.status),
            exit_code: state.and_then(|s| s.exit_code),
            started_at: state.and_then(|s| s.started_at.as_deref()),
            finished_at: state.and_then(|s| s.finished_at.as_deref()),
            oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
        };
        let mut info = translate::container_info(
            inspect.id.as_deref()?,
            labels_of,
            config.image.as_deref().unwrap_or_default(),
            translate::container_state(&docker_state),
            None,
        )?;
        if info.is_sandbox() {
            info.ip = self.pod_ip(inspect);
        }
        Some(info)
    }

    async fn list_owned(&self, node: String) -> RuntimeResult<Vec<ContainerInfo>> {
        let filters: HashMap<&str, Vec<String>> = HashMap::from([(
            "label",
            vec![format!("{}=true", labels::OWNED), format!("{}={node}", labels::NODE)],
        )]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| runtime_error(&format!("listing the containers of node {node}"), e))?;
        // The summary lacks start and finish times: inspect each container
        // whose state changed since its last inspection.
        let listed: HashMap<String, String> =
            summaries.into_iter().filter_map(|s| Some((s.id?, format!("{:?}", s.state)))).collect();
        let mut infos = Vec::new();
        let mut stale = Vec::new();
        {
            let mut cache = self.inspected.lock().expect("inspect cache");
            cache.retain(|id, _| listed.contains_key(id));
            for (id, state) in &listed {
                match cache.get(id) {
                    Some((seen, info)) if seen == state => infos.extend(info.clone()),
                    _ => stale.push((id.clone(), state.clone())),
                }
            }
        }
        let inspected: Vec<(String, String, RuntimeResult<ContainerInspectResponse>)> =
            futures::stream::iter(stale)
                .map(|(id, state)| async move {
                    let inspect = self.inspect(&id).await;
                    (id, state, inspect)
                })
                .buffer_unordered(INSPECT_CONCURRENCY)
                .collect()
                .await;
        let mut cache = self.inspected.lock().expect("inspect cache");
        for (id, state, inspect) in inspected {
            match inspect {
                Ok(inspect) => {
                    let info = self.info_of(&inspect);
                    infos.extend(info.clone());
                    cache.insert(id, (state, info));
                }
                // Removed between the list and the inspect.
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        drop(cache);
        infos.sort_by(|a, b| {
            (&a.pod, &a.container, a.attempt, &a.id).cmp(&(&b.pod, &b.container, b.attempt, &b.id))
        });
        Ok(infos)
    }

    async fn stop(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::default().t(secs.min(i32::MAX as u64) as i32).build();
        // The engine answers once the container is down: up to the grace
        // period plus the kill.
        let docker = self.docker.clone().with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS + secs));
        match docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(runtime_error(&format!("stopping container {id}"), e)),
        }
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // Gone, or going ("removal already in progress").
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(runtime_error(&format!("removing container {id}"), e)),
        }
    }

    async fn remove_volumes(&self, pod_uid: String) -> RuntimeResult<()> {
        let filters: HashMap<&str, Vec<String>> = HashMap::from([(
            "label",
            vec![format!("{}=true", labels::OWNED), format!("{}={pod_uid}", labels::POD_UID)],
        )]);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let listed = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| runtime_error(&format!("listing the volumes of pod uid {pod_uid}"), e))?;
        for volume in listed.volumes.unwrap_or_default() {
            let options = RemoveVolumeOptionsBuilder::default().force(false).build();
            match self.docker.remove_volume(&volume.name, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) if is_conflict(&e) => {
                    return Err(RuntimeError::Engine(format!(
                        "volume {} of pod uid {pod_uid} is still in use: remove the pod's containers first",
                        volume.name
                    )))
                }
                Err(e) => return Err(runtime_error(&format!("removing volume {}", volume.name), e)),
            }
        }
        Ok(())
    }

    async fn usage(&self, id: String) -> RuntimeResult<Usage> {
        let options = StatsOptionsBuilder::default().stream(false).one_shot(true).build();
        let what = format!("reading the usage of container {id}");
        let stats = match self.docker.stats(&id, Some(options)).next().await {
            Some(Ok(stats)) => stats,
            Some(Err(e)) if is_not_found(&e) => return Err(RuntimeError::NotFound(id)),
            Some(Err(e)) => return Err(runtime_error(&what, e)),
            None => return Err(RuntimeError::Engine(format!("{what}: the engine sent nothing"))),
        };
        let cpu_nanos = stats.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage).unwrap_or(0);
        let memory_bytes = stats
            .memory_stats
            .map(|m| translate::working_set(m.usage.unwrap_or(0), m.stats.as_ref()))
            .unwrap_or(0);
        Ok(Usage { cpu_nanos, memory_bytes })
    }
}

enum Created {
    New(String),
    /// This very start is already running (see `resolve_name_conflict`).
    Running(String),
    /// The name was freed: create again.
    Retry,
}

/// Which start of which container a Docker name is meant for.
struct Identity<'a> {
    pod_uid: &'a str,
    container: Option<&'a str>,
    attempt: u32,
    node: &'a str,
}

impl Runtime for DockerRuntime {
    fn image_present(&self, image: &str) -> BoxFuture<'_, RuntimeResult<bool>> {
        let image = image.to_string();
        async move { images::image_exists(&self.docker, &image).await }.boxed()
    }

    fn create_sandbox(&self, config: &SandboxConfig) -> BoxFuture<'_, RuntimeResult<Sandbox>> {
        self.create_sandbox_owned(config.clone()).boxed()
    }

    fn start_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> BoxFuture<'_, RuntimeResult<String>> {
        self.start_container_owned(sandbox_id.to_string(), config.clone()).boxed()
    }

    fn stop_container(&self, id: &str, grace: Duration) -> BoxFuture<'_, RuntimeResult<()>> {
        let id = id.to_string();
        async move { self.stop(&id, grace).await }.boxed()
    }

    fn remove_container(&self, id: &str) -> BoxFuture<'_, RuntimeResult<()>> {
        let id = id.to_string();
        async move { self.remove(&id).await }.boxed()
    }

    fn remove_pod_volumes(&self, pod_uid: &str) -> BoxFuture<'_, RuntimeResult<()>> {
        self.remove_volumes(pod_uid.to_string()).boxed()
    }

    fn list(&self, node: &str) -> BoxFuture<'_, RuntimeResult<Vec<ContainerInfo>>> {
        self.list_owned(node.to_string()).boxed()
    }

    fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> BoxFuture<'_, RuntimeResult<ExecOutput>> {
        let (id, command) = (id.to_string(), command.to_vec());
        async move { exec::exec(&self.docker, &id, &command, timeout).await }.boxed()
    }

    fn exec_stream(&self, id: &str, command: &[String]) -> BoxStream<'static, RuntimeResult<ExecEvent>> {
        exec::exec_stream(self.docker.clone(), id.to_string(), command.to_vec())
    }

    fn logs(&self, id: &str, options: LogOptions) -> BoxStream<'static, RuntimeResult<Vec<u8>>> {
        let tail = options.tail.map(|n| n.to_string()).unwrap_or_else(|| "all".to_string());
        let docker_options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .tail(&tail)
            .build();
        let id = id.to_string();
        self.docker
            .logs(&id, Some(docker_options))
            .map(move |chunk| {
                chunk.map(|c| c.into_bytes().to_vec()).map_err(|e| {
                    if is_not_found(&e) {
                        RuntimeError::NotFound(id.clone())
                    } else {
                        runtime_error(&format!("reading the log of container {id}"), e)
                    }
                })
            })
            .boxed()
    }

    fn stats(&self, id: &str) -> BoxFuture<'_, RuntimeResult<Usage>> {
        self.usage(id.to_string()).boxed()
    }

    fn changes(&self, node: &str) -> BoxStream<'static, ()> {
        events::changes(self.docker.clone(), node, self.inspected.clone())
    }

    fn pod_network(
        &self,
        spec: &PodNetworkSpec,
    ) -> BoxFuture<'_, RuntimeResult<Option<crate::runtime::PodNetwork>>> {
        let spec = spec.clone();
        Box::pin(async move {
            network::ensure_network(&self.docker, &self.network, Some(&spec)).await?;
            *self.spec.lock().expect("network spec") = Some(spec);
            network::pod_network(&self.docker, &self.network).await.map(Some)
        })
    }
}
