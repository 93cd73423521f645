//! The agent's prober: runs each running container's liveness and
//! readiness probes on their own schedule and keeps the verdicts that
//! [`crate::pod_sync::plan`] reads. A changed verdict wakes the sync loop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control_plane::api::pod::{ContainerPort, Probe};
use control_plane::api::Pod;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::pod_sync::{Instance, ProbeVerdicts};
use crate::probe::{run_probe, Exec, ProbeKind, ProbeResult, ProbeState, ProbeTarget, Verdict};
use crate::runtime::{ContainerInfo, ExecOutput, Runtime};

/// One probe of one container start.
struct Entry {
    probe: Probe,
    state: ProbeState,
    pod_ip: IpAddr,
    ports: Vec<ContainerPort>,
    container_id: String,
    pod: String,
    in_flight: bool,
}

type Key = (Instance, ProbeKindKey);

/// `ProbeKind` as a map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ProbeKindKey {
    Liveness,
    Readiness,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<Key, Entry>,
    verdicts: ProbeVerdicts,
}

/// Shared between the sync loop (which says what runs) and the prober task.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Mutex<Inner>>,
    runtime: Arc<dyn Runtime>,
    /// Woken when a verdict changes.
    pub changed: Arc<Notify>,
}

impl Prober {
    pub fn new(runtime: Arc<dyn Runtime>) -> Prober {
        Prober { inner: Arc::default(), runtime, changed: Arc::new(Notify::new()) }
    }

    pub fn verdicts(&self) -> ProbeVerdicts {
        self.inner.lock().expect("prober").verdicts.clone()
    }

    /// Records what runs now: probes start for new container starts and
    /// stop (with their verdicts) for starts that no longer run.
    pub fn track(&self, pods: &[(&Pod, &[ContainerInfo])]) {
        let mut inner = self.inner.lock().expect("prober");
        let mut live = std::collections::BTreeSet::new();
        for (pod, containers) in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let Some(pod_ip) =
                containers.iter().find(|c| c.is_sandbox() && c.is_running()).and_then(|c| c.ip)
            else {
                continue;
            };
            for c in containers.iter().filter(|c| c.is_running() && !c.is_sandbox()) {
                let name = c.container.clone().unwrap_or_default();
                let Some(spec) = pod.spec.containers.iter().find(|s| s.name == name) else { continue };
                let instance: Instance = (uid.clone(), name.clone(), c.attempt);
                for (kind, probe) in [
                    (ProbeKindKey::Liveness, &spec.liveness_probe),
                    (ProbeKindKey::Readiness, &spec.readiness_probe),
                ] {
                    let Some(probe) = probe else { continue };
                    let key = (instance.clone(), kind);
                    live.insert(key.clone());
                    inner.entries.entry(key).or_insert_with(|| Entry {
                        probe: probe.clone(),
                        state: ProbeState::new(
                            probe,
                            match kind {
                                ProbeKindKey::Liveness => ProbeKind::Liveness,
                                ProbeKindKey::Readiness => ProbeKind::Readiness,
                            },
                            Instant::now(),
                        ),
                        pod_ip,
                        ports: spec.ports.clone(),
                        container_id: c.id.clone(),
                        pod: pod.metadata.name.clone(),
                        in_flight: false,
                    });
                }
            }
        }
        inner.entries.retain(|k, _| live.contains(k));
        let Inner { entries, verdicts } = &mut *inner;
        verdicts.ready.retain(|i| entries.contains_key(&(i.clone(), ProbeKindKey::Readiness)));
        verdicts.unhealthy.retain(|i| entries.contains_key(&(i.clone(), ProbeKindKey::Liveness)));
    }

    /// Runs due probes until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let now = Instant::now();
            let due: Vec<(Key, Probe, IpAddr, Vec<ContainerPort>, String)> = {
                let mut inner = self.inner.lock().expect("prober");
                inner
                    .entries
                    .iter_mut()
                    .filter(|(_, e)| !e.in_flight && e.state.due(now))
                    .map(|(k, e)| {
                        e.in_flight = true;
                        (k.clone(), e.probe.clone(), e.pod_ip, e.ports.clone(), e.container_id.clone())
                    })
                    .collect()
            };
            for (key, probe, pod_ip, ports, id) in due {
                let this = self.clone();
                tokio::spawn(async move {
                    let exec = RuntimeExec { runtime: this.runtime.clone(), id };
                    let started = Instant::now();
                    let target = ProbeTarget { pod_ip, container_ports: &ports, exec: &exec };
                    let result = run_probe(&probe, target).await;
                    this.observe(key, result, started);
                });
            }
        }
    }

    fn observe(&self, key: Key, result: ProbeResult, started: Instant) {
        let mut inner = self.inner.lock().expect("prober");
        let Some(entry) = inner.entries.get_mut(&key) else { return };
        entry.in_flight = false;
        let verdict = entry.state.observe(&result, started);
        let pod = entry.pod.clone();
        let instance = key.0.clone();
        if let ProbeResult::Failure(message) = &result {
            tracing::info!(pod = %pod, container = %instance.1, probe = ?key.1, %message, "probe failed");
        }
        let changed = match verdict {
            None => false,
            Some(Verdict::Ready) => inner.verdicts.ready.insert(instance),
            Some(Verdict::NotReady) => inner.verdicts.ready.remove(&instance),
            Some(Verdict::Restart) => inner.verdicts.unhealthy.insert(instance),
        };
        if changed {
            self.changed.notify_one();
        }
    }
}

struct RuntimeExec {
    runtime: Arc<dyn Runtime>,
    id: String,
}

impl Exec for RuntimeExec {
    fn exec(
        &self,
        command: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<ExecOutput, String>> {
        let (runtime, id) = (self.runtime.clone(), self.id.clone());
        Box::pin(async move { runtime.exec(&id, &command, timeout).await.map_err(|e| e.to_string()) })
    }
}
