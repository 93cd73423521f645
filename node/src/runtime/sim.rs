//! [`SimRuntime`]: an in-memory [`Runtime`] for unit tests and turmoil
//! simulations. No Docker, no threads, no wall clock: times come from tokio's
//! clock (paused or simulated in tests), ids and pod IPs from counters, so a
//! seeded simulation replays exactly.
//!
//! It keeps the Docker runtime's rules that the agent can trip over: Docker's
//! container names and what happens when one is taken, missing images,
//! sandboxes that must be running for app containers to join them, volumes
//! still in use, and an engine that can be down. Tests drive containers with
//! hooks: [`SimRuntime::exit`], [`SimRuntime::oom_kill`],
//! [`SimRuntime::set_exec_result`], [`SimRuntime::set_ignores_sigterm`],
//! [`SimRuntime::append_log`], [`SimRuntime::set_unavailable`], ...

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::{broadcast, watch};

use self::state::{exited, sort_infos, tail_lines, SimContainer, SimState};
use super::docker::{container_name, BUSYBOX_IMAGE, PAUSE_IMAGE, SANDBOX_CONTAINER};
use super::{
    ContainerConfig, ContainerInfo, ContainerState, ExecEvent, ExecOutput, LogOptions, MountSource, Runtime,
    RuntimeError, RuntimeResult, Sandbox, SandboxConfig, Usage,
};

/// Exit code of a process killed by SIGKILL (128 + 9).
pub const KILLED_EXIT_CODE: i64 = 137;

/// What an exec'd command does in the simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecBehaviour {
    /// Finishes at once with this result.
    Exit(ExecOutput),
    /// Never finishes: the call runs into its timeout.
    Hang,
}

/// An in-memory container engine. Clones share the same engine.
#[derive(Clone)]
pub struct SimRuntime {
    state: Arc<Mutex<SimState>>,
    /// The node whose containers changed state.
    changes: broadcast::Sender<String>,
    /// Bumped on every change, logs included (log followers wait on it).
    version: Arc<watch::Sender<u64>>,
}

impl Default for SimRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl SimRuntime {
    /// An engine holding [`PAUSE_IMAGE`] and [`BUSYBOX_IMAGE`], as a machine
    /// after `scripts/images`. Must be created inside a tokio runtime.
    pub fn new() -> Self {
        SimRuntime {
            state: Arc::new(Mutex::new(SimState::new([PAUSE_IMAGE, BUSYBOX_IMAGE]))),
            changes: broadcast::channel(1024).0,
            version: Arc::new(watch::channel(0).0),
        }
    }

    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    pub fn remove_image(&self, image: &str) {
        self.lock().images.remove(image);
    }

    /// While set, every call fails with [`RuntimeError::Unavailable`], as
    /// during an engine restart.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// What `command` does when exec'd in any container (by default: exit 0,
    /// no output).
    pub fn set_exec_result(&self, command: &[&str], exit_code: i64, output: &str) {
        let result = ExecBehaviour::Exit(ExecOutput { exit_code, output: output.to_string() });
        self.set_exec_behaviour(command, result);
    }

    pub fn set_exec_behaviour(&self, command: &[&str], behaviour: ExecBehaviour) {
        let key = command.iter().map(|s| s.to_string()).collect();
        self.lock().exec.insert(key, behaviour);
    }

    /// Makes the running `container` of the pod exit with `code` (the
    /// sandbox is [`SANDBOX_CONTAINER`]). False if none runs.
    pub fn exit(&self, pod_uid: &str, container: &str, code: i64) -> bool {
        self.finish(pod_uid, container, code, false)
    }

    /// Makes the running `container` exit as the kernel's OOM killer does.
    pub fn oom_kill(&self, pod_uid: &str, container: &str) -> bool {
        self.finish(pod_uid, container, KILLED_EXIT_CODE, true)
    }

    /// The container ignores SIGTERM: stopping it waits out the grace
    /// period (in tokio time) and ends with SIGKILL.
    pub fn set_ignores_sigterm(&self, pod_uid: &str, container: &str) -> bool {
        self.with_latest(pod_uid, container, |c| c.ignores_sigterm = true).is_some()
    }

    pub fn append_log(&self, pod_uid: &str, container: &str, bytes: &[u8]) -> bool {
        let done = self.with_latest(pod_uid, container, |c| c.log.extend_from_slice(bytes)).is_some();
        self.version.send_modify(|v| *v += 1);
        done
    }

    pub fn set_usage(&self, pod_uid: &str, container: &str, usage: Usage) -> bool {
        self.with_latest(pod_uid, container, |c| c.usage = usage).is_some()
    }

    /// Every container on every node.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        let mut all: Vec<ContainerInfo> = self.lock().containers.values().map(|c| c.info.clone()).collect();
        sort_infos(&mut all);
        all
    }

    /// The emptyDir volumes that exist for a pod.
    pub fn volumes(&self, pod_uid: &str) -> Vec<String> {
        self.lock().volumes.iter().filter(|(uid, _)| uid == pod_uid).map(|(_, v)| v.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().expect("sim runtime lock")
    }

    /// The engine's state, or Unavailable while it is "down".
    fn engine(&self) -> RuntimeResult<MutexGuard<'_, SimState>> {
        let state = self.lock();
        if state.unavailable {
            return Err(RuntimeError::Unavailable("the simulated engine is down".into()));
        }
        Ok(state)
    }

    fn changed(&self, node: &str) {
        // No receiver is fine: nobody watches.
        let _ = self.changes.send(node.to_string());
        self.version.send_modify(|v| *v += 1);
    }

    /// Runs `f` on the newest container named `container` in the pod.
    fn with_latest<T>(
        &self,
        pod_uid: &str,
        container: &str,
        f: impl FnOnce(&mut SimContainer) -> T,
    ) -> Option<T> {
        let mut state = self.lock();
        let wanted = (container != SANDBOX_CONTAINER).then_some(container);
        let newest = state
            .containers
            .values_mut()
            .filter(|c| c.info.pod.uid == pod_uid && c.info.container.as_deref() == wanted)
            .max_by_key(|c| (c.info.is_running(), c.info.attempt, c.info.id.clone()))?;
        Some(f(newest))
    }

    fn finish(&self, pod_uid: &str, container: &str, code: i64, oom_killed: bool) -> bool {
        let now = self.lock().now();
        let node = self.with_latest(pod_uid, container, |c| {
            let ContainerState::Running { started_at } = c.info.state else { return None };
            c.info.state = exited(code, started_at, now, oom_killed);
            Some(c.info.node.clone())
        });
        match node.flatten() {
            Some(node) => {
                self.changed(&node);
                true
            }
            None => false,
        }
    }

    fn create_sandbox_now(&self, config: &SandboxConfig) -> RuntimeResult<Sandbox> {
        let mut state = self.engine()?;
        if !state.images.contains(PAUSE_IMAGE) {
            return Err(RuntimeError::ImageNotPresent {
                image: PAUSE_IMAGE.into(),
                node: config.node.clone(),
            });
        }
        let name = container_name(&config.node, &config.pod, SANDBOX_CONTAINER, 0);
        if let Some(existing) = state.take_name(&name, &config.pod.uid, None, 0)? {
            let ip = state.containers[&existing].info.ip;
            return Ok(Sandbox { id: existing, ip });
        }
        for volume in &config.empty_dirs {
            state.volumes.insert((config.pod.uid.clone(), volume.clone()));
        }
        let ip = state.allocate_ip()?;
        let info = ContainerInfo {
            id: state.new_id(),
            pod: config.pod.clone(),
            node: config.node.clone(),
            container: None,
            attempt: 0,
            spec_hash: String::new(),
            image: PAUSE_IMAGE.into(),
            state: ContainerState::Running { started_at: state.now() },
            ip: Some(ip),
        };
        let id = state.insert(name, info, Vec::new());
        drop(state);
        self.changed(&config.node);
        Ok(Sandbox { id, ip: Some(ip) })
    }

    fn start_container_now(&self, sandbox_id: &str, config: &ContainerConfig) -> RuntimeResult<String> {
        let mut state = self.engine()?;
        if !state.images.contains(&config.image) {
            return Err(RuntimeError::ImageNotPresent {
                image: config.image.clone(),
                node: config.node.clone(),
            });
        }
        let sandbox =
            state.containers.get(sandbox_id).ok_or_else(|| RuntimeError::NotFound(sandbox_id.into()))?;
        if !sandbox.info.is_running() {
            return Err(RuntimeError::Engine(format!(
                "cannot join the network of sandbox {sandbox_id}: it is not running"
            )));
        }
        let name = container_name(&config.node, &config.pod, &config.name, config.attempt);
        if let Some(existing) = state.take_name(&name, &config.pod.uid, Some(&config.name), config.attempt)? {
            return Ok(existing);
        }
        let volumes: Vec<String> = config
            .mounts
            .iter()
            .filter_map(|m| match &m.source {
                MountSource::EmptyDir(v) => Some(v.clone()),
                MountSource::HostPath(_) => None,
            })
            .collect();
        for volume in &volumes {
            state.volumes.insert((config.pod.uid.clone(), volume.clone()));
        }
        let info = ContainerInfo {
            id: state.new_id(),
            pod: config.pod.clone(),
            node: config.node.clone(),
            container: Some(config.name.clone()),
            attempt: config.attempt,
            spec_hash: config.spec_hash.clone(),
            image: config.image.clone(),
            state: ContainerState::Running { started_at: state.now() },
            ip: None,
        };
        let id = state.insert(name, info, volumes);
        drop(state);
        self.changed(&config.node);
        Ok(id)
    }

    async fn stop_now(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        let ignores_sigterm = {
            let state = self.engine()?;
            match state.containers.get(id) {
                Some(c) if c.info.is_running() => c.ignores_sigterm,
                _ => return Ok(()),
            }
        };
        let code = if ignores_sigterm {
            tokio::time::sleep(grace).await;
            KILLED_EXIT_CODE
        } else {
            0
        };
        let node = {
            let mut state = self.lock();
            let now = state.now();
            let Some(c) = state.containers.get_mut(id) else { return Ok(()) };
            // It may have exited by itself during the grace period.
            let ContainerState::Running { started_at } = c.info.state else { return Ok(()) };
            c.info.state = exited(code, started_at, now, false);
            c.info.node.clone()
        };
        self.changed(&node);
        Ok(())
    }

    fn remove_now(&self, id: &str) -> RuntimeResult<()> {
        let mut state = self.engine()?;
        let Some(node) = state.remove(id) else { return Ok(()) };
        drop(state);
        self.changed(&node);
        Ok(())
    }

    fn remove_volumes_now(&self, pod_uid: &str) -> RuntimeResult<()> {
        let mut state = self.engine()?;
        let in_use = state
            .containers
            .values()
            .find(|c| c.info.pod.uid == pod_uid && !c.volumes.is_empty())
            .map(|c| (c.volumes[0].clone(), c.info.id.clone()));
        if let Some((volume, id)) = in_use {
            return Err(RuntimeError::Engine(format!(
                "volume {volume} of pod uid {pod_uid} is still in use by container {id}: \
                 remove the pod's containers first"
            )));
        }
        state.volumes.retain(|(uid, _)| uid != pod_uid);
        Ok(())
    }

    async fn exec_now(&self, id: &str, command: &[String], timeout: Duration) -> RuntimeResult<ExecOutput> {
        let behaviour = {
            let state = self.engine()?;
            let c = state.containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.into()))?;
            if !c.info.is_running() {
                return Err(RuntimeError::Engine(format!("container {id} is not running")));
            }
            state.exec.get(command).cloned()
        };
        match behaviour {
            None => Ok(ExecOutput { exit_code: 0, output: String::new() }),
            Some(ExecBehaviour::Exit(output)) => Ok(output),
            Some(ExecBehaviour::Hang) => {
                tokio::time::sleep(timeout).await;
                Err(RuntimeError::Engine(format!(
                    "running {command:?} in container {id}: timed out after {timeout:?} (killed)"
                )))
            }
        }
    }

    /// The log from `offset`, and whether more may come.
    fn log_from(&self, id: &str, offset: usize) -> RuntimeResult<(Vec<u8>, bool)> {
        let state = self.engine()?;
        let c = state.containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        Ok((c.log.get(offset..).unwrap_or_default().to_vec(), c.info.is_running()))
    }
}

impl Runtime for SimRuntime {
    fn image_present(&self, image: &str) -> BoxFuture<'_, RuntimeResult<bool>> {
        let present = self.engine().map(|s| s.images.contains(image));
        async move { present }.boxed()
    }

    fn create_sandbox(&self, config: &SandboxConfig) -> BoxFuture<'_, RuntimeResult<Sandbox>> {
        let result = self.create_sandbox_now(config);
        async move { result }.boxed()
    }

    fn start_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> BoxFuture<'_, RuntimeResult<String>> {
        let result = self.start_container_now(sandbox_id, config);
        async move { result }.boxed()
    }

    fn stop_container(&self, id: &str, grace: Duration) -> BoxFuture<'_, RuntimeResult<()>> {
        let id = id.to_string();
        async move { self.stop_now(&id, grace).await }.boxed()
    }

    fn remove_container(&self, id: &str) -> BoxFuture<'_, RuntimeResult<()>> {
        let result = self.remove_now(id);
        async move { result }.boxed()
    }

    fn remove_pod_volumes(&self, pod_uid: &str) -> BoxFuture<'_, RuntimeResult<()>> {
        let result = self.remove_volumes_now(pod_uid);
        async move { result }.boxed()
    }

    fn list(&self, node: &str) -> BoxFuture<'_, RuntimeResult<Vec<ContainerInfo>>> {
        let result = self.engine().map(|state| {
            let mut infos: Vec<ContainerInfo> =
                state.containers.values().filter(|c| c.info.node == node).map(|c| c.info.clone()).collect();
            sort_infos(&mut infos);
            infos
        });
        async move { result }.boxed()
    }

    fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> BoxFuture<'_, RuntimeResult<ExecOutput>> {
        let (id, command) = (id.to_string(), command.to_vec());
        async move { self.exec_now(&id, &command, timeout).await }.boxed()
    }

    /// The simulated command's whole output at once, as stdout, then its
    /// exit code (a hanging one hangs for a day).
    fn exec_stream(&self, id: &str, command: &[String]) -> BoxStream<'static, RuntimeResult<ExecEvent>> {
        let (sim, id, command) = (self.clone(), id.to_string(), command.to_vec());
        let run = async move { sim.exec_now(&id, &command, Duration::from_secs(86_400)).await };
        futures::stream::once(run)
            .flat_map(|result| {
                let events = match result {
                    Ok(out) => vec![
                        Ok(ExecEvent::Stdout(out.output.into_bytes())),
                        Ok(ExecEvent::Exit(out.exit_code)),
                    ],
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(events)
            })
            .boxed()
    }

    fn logs(&self, id: &str, options: LogOptions) -> BoxStream<'static, RuntimeResult<Vec<u8>>> {
        // Subscribed before the first read, so no append falls in between.
        let version = self.version.subscribe();
        let (first, offset, more) = match self.log_from(id, 0) {
            Ok((log, more)) => {
                let tail = options.tail.map_or(&log[..], |n| tail_lines(&log, n)).to_vec();
                (tail, log.len(), more)
            }
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        let head = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
        if !options.follow || !more {
            return head.boxed();
        }
        let (sim, id) = (self.clone(), id.to_string());
        let rest = futures::stream::unfold(Some((offset, version)), move |state| {
            let (sim, id) = (sim.clone(), id.clone());
            async move {
                let (mut offset, mut version) = state?;
                loop {
                    let (chunk, more) = match sim.log_from(&id, offset) {
                        Ok(read) => read,
                        Err(RuntimeError::NotFound(_)) => return None,
                        Err(e) => return Some((Err(e), None)),
                    };
                    offset += chunk.len();
                    if !chunk.is_empty() {
                        return Some((Ok(chunk), Some((offset, version))));
                    }
                    if !more || version.changed().await.is_err() {
                        return None;
                    }
                }
            }
        });
        head.chain(rest).boxed()
    }

    fn stats(&self, id: &str) -> BoxFuture<'_, RuntimeResult<Usage>> {
        let result = self.engine().and_then(|s| {
            s.containers.get(id).map(|c| c.usage).ok_or_else(|| RuntimeError::NotFound(id.into()))
        });
        async move { result }.boxed()
    }

    fn pod_network(
        &self,
        _spec: &crate::runtime::PodNetworkSpec,
    ) -> BoxFuture<'_, RuntimeResult<Option<crate::runtime::PodNetwork>>> {
        Box::pin(async { Ok(None) })
    }

    fn has_pod_network(&self) -> bool {
        false
    }

    fn changes(&self, node: &str) -> BoxStream<'static, ()> {
        let node = node.to_string();
        futures::stream::unfold(self.changes.subscribe(), move |mut rx| {
            let node = node.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(changed) if changed == node => return Some(((), rx)),
                        Ok(_) => {}
                        // Missed some: one nudge covers them all.
                        Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), rx)),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed()
    }
}

mod state;
#[cfg(test)]
pub(crate) mod tests;
