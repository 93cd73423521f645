//! The agent's decision for one pod, kubelet's `syncPod` as a pure
//! function: from the pod object, the containers the runtime holds for it,
//! the probe verdicts and the clock, what to do next ([`Action`]s) and the
//! status to report ([`PodStatus`]).
//!
//! The agent's shell runs the actions, lists the runtime again and calls
//! [`plan`] again; nothing here remembers anything between calls, so an
//! agent that restarts picks up where the containers are (their labels say
//! which pod, container and attempt they are).
//!
//! Restarts follow `restartPolicy` with exponential back-off: an exited
//! container starts again at once the first time, then after `base`,
//! `2 × base`, … up to `max` (Kubernetes: 10 s to 300 s), counted from when
//! it exited; a container that ran for `2 × max` before exiting starts
//! again at once. While it waits, its state is `CrashLoopBackOff`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use control_plane::api::meta::Time;
use control_plane::api::pod::{
    Condition, Container, ContainerState as ApiState, ContainerStatus, PodPhase, PodStatus, RestartPolicy,
    StateReason, StateRunning, StateTerminated,
};
use control_plane::api::{pod_security, Pod};

use crate::runtime::{ContainerInfo, ContainerState};

/// Restart back-off and the node's identity.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub node: String,
    pub node_ip: IpAddr,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl SyncConfig {
    pub fn new(node: impl Into<String>, node_ip: IpAddr) -> Self {
        SyncConfig {
            node: node.into(),
            node_ip,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// One container start of one pod: probe verdicts are per start.
pub type Instance = (String, String, u32);

/// What the probes have said so far, per (pod uid, container, attempt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeVerdicts {
    /// Readiness probes that currently pass.
    pub ready: BTreeSet<Instance>,
    /// Liveness probes that failed past their threshold: restart.
    pub unhealthy: BTreeSet<Instance>,
}

/// What the shell should do for a pod, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create and start the pod's sandbox.
    CreateSandbox,
    /// Start the container `name` of the spec as start number `attempt`.
    StartContainer { name: String, attempt: u32 },
    /// Stop a container (liveness failure, or its sandbox is gone).
    StopContainer { id: String, grace: Duration, reason: String },
    /// Remove a container that is of no further use.
    RemoveContainer { id: String },
    /// The pod is being deleted: stop everything within its grace period,
    /// remove it from the runtime and confirm the deletion.
    Terminate { grace: Duration },
}

/// The plan for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    pub actions: Vec<Action>,
    /// The status to report (None: leave the stored one, e.g. terminating).
    pub status: Option<PodStatus>,
    /// The earliest time something is due without any change (a back-off
    /// expiring), so the shell can wake then.
    pub wake_at: Option<SystemTime>,
}

/// Why this node will not mount a host path container `spec` asks for (the
/// paths no pod may have, whatever a master let through), if it will not.
pub fn host_path_refusal(pod: &Pod, spec: &Container) -> Option<String> {
    spec.volume_mounts.iter().find_map(|m| {
        let host = pod.spec.volumes.iter().find(|v| v.name == m.name)?.host_path.as_ref()?;
        let why = pod_security::check_host_path(&host.path).err()?;
        Some(format!("hostPath volume {:?}: {why}", m.name))
    })
}

/// Kubernetes' default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

pub fn grace_period(pod: &Pod) -> Duration {
    pod.spec.termination_grace_period_seconds.map_or(DEFAULT_GRACE, |s| Duration::from_secs(s.max(0) as u64))
}

/// Plans the next step for `pod` (bound to this node), given `containers`
/// (every container the runtime holds with this pod's uid), the images
/// known to be missing on this node, and the probe verdicts.
pub fn plan(
    pod: &Pod,
    containers: &[ContainerInfo],
    missing_images: &BTreeSet<String>,
    probes: &ProbeVerdicts,
    now: SystemTime,
    cfg: &SyncConfig,
) -> PodPlan {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return PodPlan {
            actions: vec![Action::Terminate { grace: grace_period(pod) }],
            status: None,
            wake_at: None,
        };
    }
    let mut actions = Vec::new();
    let finished = matches!(pod.phase(), Some(PodPhase::Succeeded | PodPhase::Failed));
    let (sandboxes, apps): (Vec<&ContainerInfo>, Vec<&ContainerInfo>) =
        containers.iter().partition(|c| c.is_sandbox());
    let mut running_sandboxes: Vec<&ContainerInfo> =
        sandboxes.iter().copied().filter(|c| c.is_running()).collect();
    running_sandboxes.sort_by(|a, b| a.id.cmp(&b.id));
    let sandbox = running_sandboxes.first().copied();
    // Dead sandboxes, and every running one but the first, go.
    for s in sandboxes.iter().filter(|s| Some(s.id.as_str()) != sandbox.map(|x| x.id.as_str())) {
        actions.push(Action::RemoveContainer { id: s.id.clone() });
    }
    // The latest start of each container; older ones go.
    let mut latest: BTreeMap<&str, &ContainerInfo> = BTreeMap::new();
    for c in &apps {
        let name = c.container.as_deref().unwrap_or_default();
        match latest.get(name) {
            Some(old) if old.attempt >= c.attempt => {
                actions.push(Action::RemoveContainer { id: c.id.clone() })
            }
            Some(old) => {
                actions.push(Action::RemoveContainer { id: old.id.clone() });
                latest.insert(name, c);
            }
            None => {
                latest.insert(name, c);
            }
        }
    }
    // Containers that are not in the spec (cannot happen unless the spec
    // changed under us) go too.
    let in_spec: BTreeSet<&str> = pod.spec.containers.iter().map(|c| c.name.as_str()).collect();
    latest.retain(|name, c| {
        let keep = in_spec.contains(name);
        if !keep {
            actions.push(Action::RemoveContainer { id: c.id.clone() });
        }
        keep
    });

    let policy = pod.spec.restart_policy.unwrap_or(RestartPolicy::Always);
    let grace = grace_period(pod);
    let mut statuses = Vec::new();
    let mut wake_at: Option<SystemTime> = None;
    let mut wake = |t: SystemTime| wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
    for spec in &pod.spec.containers {
        let last = latest.get(spec.name.as_str()).copied();
        let instance = |attempt: u32| (uid.clone(), spec.name.clone(), attempt);
        let mut status = ContainerStatus {
            name: spec.name.clone(),
            image: Some(spec.image.clone()),
            restart_count: last.map_or(0, |c| c.attempt as i32),
            ..Default::default()
        };
        let waiting = |reason: &str, message: Option<String>| ApiState {
            waiting: Some(StateReason { reason: Some(reason.into()), message }),
            ..Default::default()
        };
        let refused = host_path_refusal(pod, spec);
        match last.map(|c| (c, &c.state)) {
            None if finished => status.state = Some(waiting("PodCompleted", None)),
            None if refused.is_some() => {
                let message = refused.map(|r| format!("{r}; refused by node {:?}", cfg.node));
                status.state = Some(waiting("CreateContainerConfigError", message));
            }
            None if missing_images.contains(&spec.image) => {
                let message = format!("image {:?} is not present on node {:?}", spec.image, cfg.node);
                status.state = Some(waiting("ErrImageNeverPull", Some(message)));
            }
            None => {
                status.state = Some(waiting("ContainerCreating", None));
                if sandbox.is_some() {
                    actions.push(Action::StartContainer { name: spec.name.clone(), attempt: 0 });
                }
            }
            Some((c, ContainerState::Created)) => {
                // A start interrupted (say, by an agent restart): redo it.
                status.state = Some(waiting("ContainerCreating", None));
                actions.push(Action::RemoveContainer { id: c.id.clone() });
                if sandbox.is_some() && !finished {
                    actions.push(Action::StartContainer { name: spec.name.clone(), attempt: c.attempt });
                }
            }
            Some((c, ContainerState::Running { started_at })) => {
                status.state = Some(ApiState {
                    running: Some(StateRunning { started_at: Some(time(*started_at)) }),
                    ..Default::default()
                });
                let joined = sandbox.is_some();
                if finished || !joined {
                    let reason = match finished {
                        true => "the pod has finished".to_string(),
                        false => "its pod sandbox is gone; the pod is being recreated".to_string(),
                    };
                    actions.push(Action::StopContainer { id: c.id.clone(), grace, reason });
                } else if probes.unhealthy.contains(&instance(c.attempt)) {
                    let reason =
                        format!("container {:?} failed its liveness probe and will be restarted", spec.name);
                    actions.push(Action::StopContainer { id: c.id.clone(), grace, reason });
                } else {
                    status.ready =
                        spec.readiness_probe.is_none() || probes.ready.contains(&instance(c.attempt));
                }
            }
            Some((c, ContainerState::Exited { exit_code, started_at, finished_at, oom_killed })) => {
                let terminated = StateTerminated {
                    exit_code: *exit_code as i32,
                    reason: Some(
                        match (*oom_killed, *exit_code) {
                            (true, _) => "OOMKilled",
                            (false, 0) => "Completed",
                            _ => "Error",
                        }
                        .into(),
                    ),
                    finished_at: finished_at.map(time),
                };
                let restart = !finished
                    && match policy {
                        RestartPolicy::Always => true,
                        RestartPolicy::OnFailure => *exit_code != 0,
                        RestartPolicy::Never => false,
                    };
                if !restart {
                    status.state = Some(ApiState { terminated: Some(terminated), ..Default::default() });
                } else {
                    let delay = backoff(c.attempt, *started_at, *finished_at, cfg);
                    let due = finished_at.unwrap_or(now) + delay;
                    if due <= now {
                        status.state = Some(waiting("ContainerCreating", None));
                        if sandbox.is_some() {
                            actions.push(Action::StartContainer {
                                name: spec.name.clone(),
                                attempt: c.attempt + 1,
                            });
                        }
                    } else {
                        let message = format!(
                            "back-off {}s restarting failed container={} pod={}",
                            delay.as_secs(),
                            spec.name,
                            pod.metadata.name
                        );
                        status.state = Some(waiting("CrashLoopBackOff", Some(message)));
                        wake(due);
                    }
                }
            }
        }
        statuses.push(status);
    }
    if sandbox.is_none() && !finished {
        actions.push(Action::CreateSandbox);
    }
    let ever_started = latest.values().any(|c| !matches!(c.state, ContainerState::Created));
    let status = pod_status(pod, sandbox, statuses, policy, finished, ever_started, now, cfg);
    PodPlan { actions, status: Some(status), wake_at }
}

/// The delay before start number `attempt + 1`, after start `attempt` ran
/// from `started` to `finished`.
fn backoff(
    attempt: u32,
    started: Option<SystemTime>,
    finished: Option<SystemTime>,
    cfg: &SyncConfig,
) -> Duration {
    let ran = match (started, finished) {
        (Some(s), Some(f)) => f.duration_since(s).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    if attempt == 0 || ran >= cfg.backoff_max * 2 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
    cfg.backoff_base.saturating_mul(factor).min(cfg.backoff_max)
}

fn time(t: SystemTime) -> Time {
    Time::from_unix(t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
}

#[allow(clippy::too_many_arguments)]
fn pod_status(
    pod: &Pod,
    sandbox: Option<&ContainerInfo>,
    containers: Vec<ContainerStatus>,
    policy: RestartPolicy,
    finished: bool,
    ever_started: bool,
    now: SystemTime,
    cfg: &SyncConfig,
) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let terminated: Vec<&StateTerminated> =
        containers.iter().filter_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref())).collect();
    let all_terminated = !containers.is_empty() && terminated.len() == containers.len();
    let phase = if finished {
        old.phase.unwrap_or(PodPhase::Failed)
    } else if all_terminated && policy != RestartPolicy::Always {
        match terminated.iter().all(|t| t.exit_code == 0) {
            true => PodPhase::Succeeded,
            false => PodPhase::Failed,
        }
    } else if ever_started {
        PodPhase::Running
    } else {
        PodPhase::Pending
    };
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let ready = all_ready && phase == PodPhase::Running;
    let not_ready_message = || {
        let names: Vec<&str> = containers.iter().filter(|c| !c.ready).map(|c| c.name.as_str()).collect();
        format!("containers with unready status: [{}]", names.join(" "))
    };
    let now_t = time(now);
    let mut conditions: Vec<Condition> =
        old.conditions.iter().filter(|c| c.type_ == "PodScheduled").cloned().collect();
    let mut set = |type_: &str, value: bool, reason: Option<&str>, message: Option<String>| {
        let status = if value { "True" } else { "False" };
        let previous = old.conditions.iter().find(|c| c.type_ == type_);
        let since = match previous {
            Some(p) if p.status == status => p.last_transition_time,
            _ => Some(now_t),
        };
        conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: if value { None } else { reason.map(String::from) },
            message: if value { None } else { message },
            last_transition_time: since,
            ..Default::default()
        });
    };
    set("Initialized", true, None, None);
    set("ContainersReady", all_ready, Some("ContainersNotReady"), Some(not_ready_message()));
    set("Ready", ready, Some("ContainersNotReady"), Some(not_ready_message()));
    PodStatus {
        phase: Some(phase),
        conditions,
        host_ip: Some(cfg.node_ip.to_string()),
        pod_ip: sandbox.and_then(|s| s.ip).map(|ip| ip.to_string()).or(old.pod_ip.filter(|_| finished)),
        start_time: old.start_time.or(Some(now_t)),
        reason: old.reason.filter(|_| finished),
        message: old.message.filter(|_| finished),
        container_statuses: containers,
    }
}

#[cfg(test)]
mod tests;
