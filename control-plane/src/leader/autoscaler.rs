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
                    Some(sample(p, &usage))
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
    // The same message again is not news: the Event's count is for repeats of a reason over time.
    let existing = cache.get(
        Kind::Event,
        involved.namespace.as_deref().unwrap_or("default"),
        &events::event_name(&involved, reason),
    );
    if let Some((Object::Event(e), _)) = existing {
        if e.message.as_deref() == Some(message.as_str())
            && e.last_timestamp.is_some_and(|t| now.0 - t.0 < 60)
        {
            return None;
        }
    }
    record_event(
        cache,
        events::Occurrence { involved, type_, reason, message, component: "horizontal-pod-autoscaler" },
        now,
    )
}

/// Each pod's usage (by uid), in thousandths, from the nodes' fresh reports.
fn pod_usage(cache: &Cache, now: Time) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut usage = BTreeMap::new();
    for (o, _) in cache.of_kind(Kind::Node) {
        let Object::Node(n) = o else { continue };
        let Some(metrics) = n.status.as_ref().and_then(|s| s.metrics.as_ref()) else { continue };
        if now.0 - metrics.timestamp.0 > FRESH_SECS {
            continue;
        }
        for p in &metrics.pods {
            let Some(uid) = &p.uid else { continue };
            let totals = ["cpu", "memory"]
                .into_iter()
                .filter(|r| p.containers.iter().all(|c| c.usage.contains_key(*r)) && !p.containers.is_empty())
                .map(|r| (r.to_string(), p.total_millis(r)))
                .collect();
            usage.insert(uid.clone(), totals);
        }
    }
    usage
}

fn sample(p: &Pod, usage: &BTreeMap<String, BTreeMap<String, u64>>) -> PodSample {
    let phase = p.phase();
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
        unready: !p.is_ready(),
        requests,
        usage: p.metadata.uid.as_ref().and_then(|u| usage.get(u)).cloned(),
    }
}
