//! What the controllers read from a pod, in one place: whether it still
//! counts (not finished, not terminating), whether it is available (Ready
//! for `minReadySeconds`), who controls it, and which pods to give up first.
//! Kubernetes' `controller.FilterActivePods`, `podutil.IsPodAvailable` and
//! `controller.ActivePods` ordering, for Corral's pod subset.

use std::cmp::Reverse;

use crate::api::meta::ObjectMeta;
use crate::api::pod::{Condition, PodPhase};
use crate::api::{Pod, Time};

/// Being deleted: the node is stopping it. It no longer counts toward
/// replicas and is never deleted again.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Failed or Succeeded: its containers will not run again.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(pod.phase(), Some(PodPhase::Failed | PodPhase::Succeeded))
}

/// Counts toward a controller's replicas: neither finished nor terminating.
pub fn is_active(pod: &Pod) -> bool {
    !is_finished(pod) && !is_terminating(pod)
}

/// The pod's `Ready` condition, if it reported one.
pub fn ready_condition(pod: &Pod) -> Option<&Condition> {
    pod.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
}

/// Ready, and for longer than `min_ready_seconds` (measured from the Ready
/// condition's `lastTransitionTime`, strictly, as Kubernetes does).
pub fn is_available(pod: &Pod, min_ready_seconds: i64, now: Time) -> bool {
    if !pod.is_ready() {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_condition(pod)
        .and_then(|c| c.last_transition_time)
        .is_some_and(|since| since.unix() + min_ready_seconds < now.unix())
}

/// Whether `meta`'s controlling owner reference points at `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.controller().is_some_and(|o| o.uid == uid)
}

/// A sort key: the pods to give up first sort first. Kubernetes' order:
/// unscheduled before scheduled, Pending before Unknown before Running, not
/// ready before ready, ready for less time before ready for longer, more
/// container restarts before fewer, newer before older; the name last, so
/// that the order is total.
pub(crate) fn deletion_rank(pod: &Pod) -> impl Ord + '_ {
    let scheduled = pod.spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
    let phase = match pod.phase() {
        Some(PodPhase::Unknown) => 1,
        Some(PodPhase::Running) => 2,
        _ => 0,
    };
    let ready = pod.is_ready();
    let ready_since = ready.then(|| ready_condition(pod).and_then(|c| c.last_transition_time)).flatten();
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.iter().map(|c| c.restart_count).max())
        .unwrap_or(0);
    (
        scheduled,
        phase,
        ready,
        Reverse(ready_since),
        Reverse(restarts),
        Reverse(pod.metadata.creation_timestamp),
        pod.metadata.name.as_str(),
    )
}

/// The names of the `n` pods to give up first.
pub(crate) fn least_valuable<'a>(pods: impl IntoIterator<Item = &'a Pod>, n: usize) -> Vec<String> {
    let mut pods: Vec<&Pod> = pods.into_iter().collect();
    pods.sort_by_cached_key(|p| deletion_rank(p));
    pods.into_iter().take(n).map(|p| p.metadata.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::PodPhase;
    use crate::controllers::testing::*;

    #[test]
    fn only_pods_that_neither_finished_nor_terminate_are_active() {
        let cases = [
            (pod("running").ready_since(T0), true),
            (pod("pending").phase(PodPhase::Pending), true),
            (pod("unknown").phase(PodPhase::Unknown), true),
            (pod("failed").phase(PodPhase::Failed), false),
            (pod("succeeded").phase(PodPhase::Succeeded), false),
            (pod("terminating").ready_since(T0).terminating(T0), false),
        ];
        for (p, active) in cases {
            assert_eq!(is_active(&p), active, "{}", p.metadata.name);
        }
    }

    #[test]
    fn availability_waits_min_ready_seconds_after_ready() {
        // (pod, minReadySeconds, seconds after T0, available)
        let cases = [
            (pod("p").ready_since(T0), 0, 0, true),
            (pod("p").ready_since(T0), 5, 5, false),
            (pod("p").ready_since(T0), 5, 6, true),
            (pod("p").not_ready(T0), 0, 100, false),
            (pod("p"), 0, 100, false),
        ];
        for (p, min_ready, after, available) in cases {
            assert_eq!(is_available(&p, min_ready, Time(T0.0 + after)), available, "{min_ready} {after}");
        }
    }

    #[test]
    fn the_least_valuable_pods_are_given_up_first() {
        // Each pod is less valuable than every pod after it.
        let ordered = [
            pod("unscheduled").created(T0),
            pod("pending").on("n1").phase(PodPhase::Pending),
            pod("unknown").on("n1").phase(PodPhase::Unknown),
            pod("not-ready").on("n1").not_ready(T0),
            pod("ready-recently").on("n1").ready_since(Time(T0.0 + 50)),
            pod("ready-restarted").on("n1").ready_since(T0).restarts(3),
            pod("ready-newer").on("n1").ready_since(T0).created(Time(T0.0 + 1)),
            pod("ready-a").on("n1").ready_since(T0),
            pod("ready-b").on("n1").ready_since(T0),
        ];
        let names: Vec<String> = ordered.iter().map(|p| p.metadata.name.clone()).collect();
        let mut shuffled: Vec<&Pod> = ordered.iter().collect();
        shuffled.reverse();
        shuffled.rotate_left(4);
        assert_eq!(least_valuable(shuffled, names.len()), names);
        assert_eq!(least_valuable(&ordered, 2), names[..2]);
    }
}
