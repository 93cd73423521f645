//! The horizontal pod autoscaler's shell: for each HPA, reads its target
//! Deployment, the target's pods and their usage (from the nodes' status,
//! where the agents report it), asks [`hpa::decide`], and writes the new
//! replica count, the HPA's status and Events.
//!
//! The recommendations and scale events of the stabilization windows live
//! in the leader's memory, as in Kubernetes' controller-manager: a new
//! leader starts them afresh.

use std::collections::BTreeMap;

use raft_store::Expect;

use crate::api::autoscaling::HorizontalPodAutoscaler;
use crate::api::pod::PodPhase;
use crate::api::{Kind, Object, Pod, Time};
use crate::controllers::events::{self, EventType};
use crate::controllers::hpa::{self, History, PodSample};

use super::cache::Cache;
use super::manager::{condition, put, record_event, set_condition, upsert};
use super::writer::Write;

/// Usage samples older than this are not trusted (the agents report every
/// 10 s by default, carried by a heartbeat every 2 s).
const FRESH_SECS: i64 = 60;

/// Kubernetes' `--horizontal-pod-autoscaler-cpu-initialization-period`: a
/// pod this young counts for cpu only once a full sampling window has
/// passed since it became Ready (start-up burns cpu that says nothing about load).
const CPU_INITIALIZATION_SECS: i64 = 300;

/// Kubernetes' `--horizontal-pod-autoscaler-initial-readiness-delay`: an
/// older pod that is not Ready and never was within this delay of its start
/// is left out of cpu.
const INITIAL_READINESS_DELAY_SECS: i64 = 30;

/// One pod's usage from its node's report: totals in thousandths, when
/// they were sampled and over what window (seconds).
struct Usage {
    totals: BTreeMap<String, u64>,
    sampled: Time,
    window: i64,
}

/// The writes of one autoscaler pass. `memory` holds each HPA's history, by uid.
pub fn writes(cache: &Cache, now: Time, memory: &mut BTreeMap<String, History>) -> Vec<Write> {
    let usage = pod_usage(cache, now);
    let mut writes = Vec::new();
    let mut live = Vec::new();
    for (o, rev) in cache.of_kind(Kind::HorizontalPodAutoscaler) {
        let Object::HorizontalPodAutoscaler(h) = o else { continue };
        if h.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let uid = h.metadata.uid.clone().unwrap_or_default();
        live.push(uid.clone());
        let history = memory.entry(uid).or_default();
        let mut status = h.status.clone().unwrap_or_default();
        status.observed_generation = h.metadata.generation;
        let ns = h.metadata.namespace_or_default().to_string();
        let target = &h.spec.scale_target_ref;
        let deployment = match cache.get(Kind::Deployment, &ns, &target.name) {
            Some((Object::Deployment(d), drev)) if target.kind == "Deployment" => Some((d, drev)),
            _ => None,
        };
        let Some((d, drev)) = deployment else {
            let message = format!(
                "the HPA controller was unable to get the target's current scale: {} {:?} not found in namespace {ns:?} (spec.scaleTargetRef)",
                target.kind.to_lowercase(),
                target.name
            );
            set_condition(
                &mut status.conditions,
                condition("AbleToScale", "False", Some("FailedGetScale"), Some(&message), now),
            );
            writes.extend(event(cache, h, EventType::Warning, "FailedGetScale", message, now));
            writes.extend(status_write(h, status, rev));
            continue;
        };
        let current = d.spec.replicas.unwrap_or(1);
        let pods: Vec<PodSample> = cache
            .of_kind(Kind::Pod)
            .filter_map(|(o, _)| match o {
                Object::Pod(p)
                    if p.metadata.namespace_or_default() == ns
                        && d.spec.selector.matches(&p.metadata.labels) =>
                {
                    Some(sample(p, &usage, now))
                }
                _ => None,
            })
            .collect();
        let decision = hpa::decide(h, current, &pods, history, now);
        for (type_, st, reason, message) in &decision.conditions {
            set_condition(&mut status.conditions, condition(type_, st, Some(reason), Some(message), now));
        }
        if let Some((_, "False", reason, message)) =
            decision.conditions.iter().find(|c| c.0 == "ScalingActive")
        {
            if *reason != "ScalingDisabled" {
                writes.extend(event(
                    cache,
                    h,
                    EventType::Warning,
                    "FailedComputeMetricsReplicas",
                    message.clone(),
                    now,
                ));
            }
        }
        status.current_metrics = decision.current_metrics.clone();
        status.current_replicas = d.status.as_ref().map_or(current, |s| s.replicas);
        status.desired_replicas = decision.desired;
        if decision.desired != current {
            let mut next = d.clone();
            next.spec.replicas = Some(decision.desired);
            next.metadata.resource_version = Some(drev.0.to_string());
            writes.extend(upsert(cache, Object::Deployment(next), now));
            status.last_scale_time = Some(now);
            let reason = decision.rescale_reason.clone().unwrap_or_default();
            let message = format!("New size: {}; reason: {reason}", decision.desired);
            writes.extend(event(cache, h, EventType::Normal, "SuccessfulRescale", message, now));
        }
        writes.extend(status_write(h, status, rev));
    }
    memory.retain(|uid, _| live.contains(uid));
    writes
}

fn status_write(
    h: &HorizontalPodAutoscaler,
    status: crate::api::autoscaling::HpaStatus,
    rev: raft_store::Revision,
) -> Option<Write> {
    if h.status.as_ref() == Some(&status) {
        return None;
    }
    let mut next = h.clone();
    next.status = Some(status);
    Some(put(Object::HorizontalPodAutoscaler(next), Expect::Revision(rev)))
}

fn event(
    cache: &Cache,
    h: &HorizontalPodAutoscaler,
    type_: EventType,
    reason: &'static str,
    message: String,
    now: Time,
) -> Option<Write> {
    let involved = events::reference(&Object::HorizontalPodAutoscaler(h.clone()));
    record_event(
        cache,
        events::Occurrence { involved, type_, reason, message, component: "horizontal-pod-autoscaler" },
        now,
    )
}

/// Each pod's usage (by uid), in thousandths, from the nodes' fresh reports.
fn pod_usage(cache: &Cache, now: Time) -> BTreeMap<String, Usage> {
    let mut usage = BTreeMap::new();
    for (o, _) in cache.of_kind(Kind::Node) {
        let Object::Node(n) = o else { continue };
        let Some(metrics) = n.status.as_ref().and_then(|s| s.metrics.as_ref()) else { continue };
        if now.0 - metrics.timestamp.0 > FRESH_SECS {
            continue;
        }
        let window = metrics.window.trim_end_matches('s').parse::<i64>().unwrap_or(FRESH_SECS);
        for p in &metrics.pods {
            let Some(uid) = &p.uid else { continue };
            let totals = ["cpu", "memory"]
                .into_iter()
                .filter(|r| p.containers.iter().all(|c| c.usage.contains_key(*r)) && !p.containers.is_empty())
                .map(|r| (r.to_string(), p.total_millis(r)))
                .collect();
            usage.insert(uid.clone(), Usage { totals, sampled: metrics.timestamp, window });
        }
    }
    usage
}

/// Kubernetes' rule (`groupPods`) for leaving a pod's cpu sample out as unready.
fn cpu_unready(p: &Pod, usage: Option<&Usage>, now: Time) -> bool {
    let status = p.status.as_ref();
    let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let (Some(ready), Some(start)) = (ready, status.and_then(|s| s.start_time)) else { return true };
    let is_ready = ready.status == "True";
    let since = ready.last_transition_time.unwrap_or(start);
    if start.0 + CPU_INITIALIZATION_SECS > now.0 {
        // Young: the sample must cover a whole window after the pod became Ready.
        !is_ready || usage.is_none_or(|u| u.sampled.0 - u.window <= since.0)
    } else {
        !is_ready && start.0 + INITIAL_READINESS_DELAY_SECS > since.0
    }
}

fn sample(p: &Pod, usage: &BTreeMap<String, Usage>, now: Time) -> PodSample {
    let phase = p.phase();
    let own = p.metadata.uid.as_ref().and_then(|u| usage.get(u));
    let mut requests = BTreeMap::new();
    for r in ["cpu", "memory"] {
        let all: Option<Vec<u64>> =
            p.spec.containers.iter().map(|c| c.resources.requests.get(r).map(|q| q.millis())).collect();
        if let Some(all) = all.filter(|v| !v.is_empty()) {
            requests.insert(r.to_string(), all.iter().sum());
        }
    }
    PodSample {
        name: p.metadata.name.clone(),
        ignored: p.metadata.deletion_timestamp.is_some()
            || matches!(phase, Some(PodPhase::Failed | PodPhase::Succeeded)),
        unready: cpu_unready(p, own, now),
        requests,
        usage: own.map(|u| u.totals.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::{Condition, PodStatus};

    fn pod(start: i64, ready: Option<(&str, i64)>) -> Pod {
        Pod {
            status: Some(PodStatus {
                start_time: Some(Time(start)),
                conditions: ready
                    .map(|(status, at)| Condition {
                        type_: "Ready".into(),
                        status: status.into(),
                        last_transition_time: Some(Time(at)),
                        ..Condition::default()
                    })
                    .into_iter()
                    .collect(),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn usage(sampled: i64, window: i64) -> Usage {
        Usage { totals: BTreeMap::new(), sampled: Time(sampled), window }
    }

    #[test]
    fn a_young_pod_counts_for_cpu_once_a_whole_window_follows_readiness() {
        let now = Time(1_000);
        // Ready at 990, 10 s windows: a sample ending at 998 began before readiness.
        assert!(cpu_unready(&pod(985, Some(("True", 990))), Some(&usage(998, 10)), now));
        assert!(!cpu_unready(&pod(985, Some(("True", 990))), Some(&usage(1_000, 5)), now));
        assert!(cpu_unready(&pod(985, Some(("False", 990))), Some(&usage(1_000, 5)), now));
        assert!(cpu_unready(&pod(985, Some(("True", 990))), None, now));
        assert!(cpu_unready(&pod(985, None), Some(&usage(1_000, 5)), now), "no Ready condition yet");
    }

    #[test]
    fn an_old_pod_is_unready_for_cpu_only_if_it_never_became_ready() {
        let now = Time(10_000);
        assert!(!cpu_unready(&pod(1_000, Some(("True", 1_010))), Some(&usage(9_999, 10)), now));
        // Not Ready now, but it was Ready after its first 30 s: still counted, as in Kubernetes.
        assert!(!cpu_unready(&pod(1_000, Some(("False", 5_000))), Some(&usage(9_999, 10)), now));
        // Not Ready since its start.
        assert!(cpu_unready(&pod(1_000, Some(("False", 1_005))), Some(&usage(9_999, 10)), now));
    }
}
