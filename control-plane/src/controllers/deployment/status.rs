//! A deployment's status after a step: counts of the pods as observed, and
//! the `Available` and `Progressing` conditions with Kubernetes' reasons
//! and timing rules (`calculateStatus`, `syncRolloutStatus`). A condition
//! whose status and reason stay the same keeps its timestamps, so an
//! unchanged world yields an identical status.

use crate::api::deployment::DeploymentStatus;
use crate::api::pod::Condition;
use crate::api::{Deployment, Time};

const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
/// Kubernetes' default `progressDeadlineSeconds`.
const DEFAULT_PROGRESS_DEADLINE: i64 = 600;

/// Active pod counts as observed before the step's changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Observed {
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

/// Where the rollout stands, for the `Progressing` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rollout {
    Paused,
    /// This step started `revision`.
    Started(i64),
    Continuing(i64),
}

pub(super) fn compute(
    d: &Deployment,
    seen: Observed,
    max_unavailable: usize,
    rollout: Rollout,
    now: Time,
) -> DeploymentStatus {
    let replicas = d.replicas().max(0);
    let previous = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: seen.replicas,
        updated_replicas: seen.updated,
        ready_replicas: seen.ready,
        available_replicas: seen.available,
        unavailable_replicas: (replicas - seen.available).max(0),
        conditions: previous.conditions.clone(),
    };
    let min_available = replicas - i32::try_from(max_unavailable).unwrap_or(i32::MAX);
    let available = if seen.available >= min_available {
        condition(AVAILABLE, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now)
    } else {
        condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set(&mut status.conditions, available);
    progressing(d, &previous, &mut status, rollout, now);
    status
}

fn progressing(
    d: &Deployment,
    previous: &DeploymentStatus,
    status: &mut DeploymentStatus,
    rollout: Rollout,
    now: Time,
) {
    let name = &d.metadata.name;
    let revision = match rollout {
        Rollout::Paused => {
            let c = condition(PROGRESSING, "Unknown", "DeploymentPaused", "Deployment is paused", now);
            return set(&mut status.conditions, c);
        }
        Rollout::Started(revision) => {
            let message = format!("Created new revision {revision} of deployment \"{name}\"");
            let c = condition(PROGRESSING, "True", "NewReplicaSetCreated", &message, now);
            return set(&mut status.conditions, c);
        }
        Rollout::Continuing(revision) => revision,
    };
    let current = find(&status.conditions, PROGRESSING).cloned();
    match current.as_ref().and_then(|c| c.reason.as_deref()) {
        Some("DeploymentPaused") => {
            let c = condition(PROGRESSING, "Unknown", "DeploymentResumed", "Deployment is resumed", now);
            set(&mut status.conditions, c);
        }
        None => {
            let message = format!("Found revision {revision} of deployment \"{name}\"");
            set(&mut status.conditions, condition(PROGRESSING, "True", "FoundNewReplicaSet", &message, now));
        }
        // Complete, and still all pods of the current revision: nothing to say.
        Some("NewReplicaSetAvailable") if status.replicas == status.updated_replicas => return,
        Some(_) => {}
    }
    let replicas = d.replicas().max(0);
    let complete = status.updated_replicas == replicas
        && status.replicas == replicas
        && status.available_replicas == replicas;
    let old_pods = |s: &DeploymentStatus| s.replicas - s.updated_replicas;
    let progressed = status.updated_replicas > previous.updated_replicas
        || old_pods(status) < old_pods(previous)
        || status.ready_replicas > previous.ready_replicas
        || status.available_replicas > previous.available_replicas;
    let subject = format!("Revision {revision} of deployment \"{name}\"");
    if complete {
        let message = format!("{subject} has successfully progressed.");
        set(&mut status.conditions, condition(PROGRESSING, "True", "NewReplicaSetAvailable", &message, now));
    } else if progressed {
        // Unlike other conditions, Progressing takes a new lastUpdateTime on
        // every progress with the same reason: the deadline counts from it.
        let mut c =
            condition(PROGRESSING, "True", "ReplicaSetUpdated", &format!("{subject} is progressing."), now);
        if let Some(old) = current.filter(|c| c.status == "True") {
            c.last_transition_time = old.last_transition_time;
        }
        status.conditions.retain(|c| c.type_ != PROGRESSING);
        status.conditions.push(c);
    } else if timed_out(d, find(&status.conditions, PROGRESSING), now) {
        let message = format!("{subject} has timed out progressing.");
        set(
            &mut status.conditions,
            condition(PROGRESSING, "False", "ProgressDeadlineExceeded", &message, now),
        );
    }
}

/// Kubernetes' `DeploymentTimedOut`: no progress for `progressDeadlineSeconds`
/// since the Progressing condition was last updated.
fn timed_out(d: &Deployment, progressing: Option<&Condition>, now: Time) -> bool {
    let Some(c) = progressing else { return false };
    match c.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => {
            let deadline = d.spec.progress_deadline_seconds.map_or(DEFAULT_PROGRESS_DEADLINE, i64::from);
            c.last_update_time.is_some_and(|from| from.unix() + deadline < now.unix())
        }
    }
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now),
        last_transition_time: Some(now),
        last_heartbeat_time: None,
    }
}

/// Kubernetes' `SetDeploymentCondition`: the same status and reason change
/// nothing; the same status keeps its transition time.
fn set(conditions: &mut Vec<Condition>, mut c: Condition) {
    if let Some(old) = conditions.iter().find(|o| o.type_ == c.type_) {
        if old.status == c.status && old.reason == c.reason {
            return;
        }
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time;
        }
    }
    conditions.retain(|o| o.type_ != c.type_);
    conditions.push(c);
}

#[cfg(test)]
mod tests {
    use super::super::plan;
    use super::*;
    use crate::api::pod::PodPhase;
    use crate::api::Pod;
    use crate::controllers::testing::*;

    /// (status, reason, message) of the condition `type_`.
    fn cond<'a>(s: &'a DeploymentStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
        let c = find(&s.conditions, type_).expect("condition present");
        (c.status.as_str(), c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""))
    }

    #[test]
    fn status_counts_the_active_pods_and_states_availability() {
        let d = recorded(deployment("web", 3));
        let mut pods = ready_members(&d, "web", 2);
        pods.push(member(&d, "web-starting").not_ready(T0));
        pods.push(member(&d, "web-failed").phase(PodPhase::Failed));
        pods.push(member(&d, "web-going").ready_since(T0).terminating(T0));
        let s = plan(&d, &pods, at(1)).status;
        assert_eq!(
            (s.observed_generation, s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas),
            (Some(1), 3, 3, 2, 2)
        );
        assert_eq!(s.unavailable_replicas, 1);
        // 3 replicas: maxUnavailable 25% rounds down to 0.
        let unavailable =
            ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.");
        assert_eq!(cond(&s, AVAILABLE), unavailable);
        let s = plan(&d, &ready_members(&d, "web", 3), at(1)).status;
        assert_eq!(
            cond(&s, AVAILABLE),
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        );
    }

    #[test]
    fn progressing_follows_a_rollout_from_creation_to_completion() {
        let apply = |mut d: Deployment, pods: &[Pod], now: Time| {
            let p = plan(&d, pods, now);
            d.status = Some(p.status);
            d.metadata.annotations.extend(p.annotations);
            d
        };
        let a = apply(deployment("web", 2), &[], T0);
        let s = a.status.clone().unwrap_or_default();
        assert_eq!(
            cond(&s, PROGRESSING),
            ("True", "NewReplicaSetCreated", "Created new revision 1 of deployment \"web\"")
        );

        let old = ready_members(&a, "old", 2);
        let a = apply(a, &old, at(5));
        let s = a.status.clone().unwrap_or_default();
        let done = "Revision 1 of deployment \"web\" has successfully progressed.";
        assert_eq!(cond(&s, PROGRESSING), ("True", "NewReplicaSetAvailable", done));

        let b = apply(with_image(a, "img:2"), &old, at(10));
        let s = b.status.clone().unwrap_or_default();
        assert_eq!(cond(&s, PROGRESSING).1, "NewReplicaSetCreated");

        let mut pods = old.clone();
        pods.push(member(&b, "new-0"));
        let b = apply(b, &pods, at(11));
        let s = b.status.clone().unwrap_or_default();
        assert_eq!(
            cond(&s, PROGRESSING),
            ("True", "ReplicaSetUpdated", "Revision 2 of deployment \"web\" is progressing.")
        );
        let c = find(&s.conditions, PROGRESSING).expect("present");
        // Progressing has been True since the first step: only the update time moves.
        assert_eq!((c.last_update_time, c.last_transition_time), (Some(at(11)), Some(T0)));
    }

    #[test]
    fn a_rollout_without_progress_exceeds_its_deadline() {
        let a = recorded(deployment("web", 2));
        let mut b = recorded(with_image(a.clone(), "img:2"));
        b.spec.progress_deadline_seconds = Some(60);
        let mut pods = ready_members(&a, "old", 2);
        pods.push(member(&b, "new-0").not_ready(T0));
        let mut progressing = condition(PROGRESSING, "True", "ReplicaSetUpdated", "is progressing", T0);
        progressing.last_update_time = Some(T0);
        b.status = Some(DeploymentStatus {
            replicas: 3,
            updated_replicas: 1,
            ready_replicas: 2,
            available_replicas: 2,
            conditions: vec![progressing],
            ..Default::default()
        });
        assert_eq!(cond(&plan(&b, &pods, at(60)).status, PROGRESSING).1, "ReplicaSetUpdated");
        let s = plan(&b, &pods, at(61)).status;
        let timed_out = "Revision 2 of deployment \"web\" has timed out progressing.";
        assert_eq!(cond(&s, PROGRESSING), ("False", "ProgressDeadlineExceeded", timed_out));
    }

    #[test]
    fn an_unchanged_world_yields_an_identical_plan() {
        let mut d = recorded(deployment("web", 3));
        let pods = ready_members(&d, "web", 3);
        let first = plan(&d, &pods, at(5));
        d.status = Some(first.status.clone());
        let again = plan(&d, &pods, at(500));
        assert_eq!(again, first);
        assert!(again.create.is_empty() && again.delete.is_empty());
    }
}
