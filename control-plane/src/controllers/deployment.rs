//! The Deployment controller's planner: keeps `replicas` pods of the
//! current pod template, rolls a new template out (RollingUpdate within
//! `maxSurge`/`maxUnavailable`, or Recreate), replaces pods that finished
//! or were lost with their node, and reports the status.
//!
//! Corral has no ReplicaSet objects. A revision is the set of pods whose
//! `pod-template-hash` label is the hash of its template; the deployment's
//! annotations number the revisions and keep old templates for rollbacks
//! (see `revisions`). [`plan`] is idempotent and level-triggered: it looks
//! only at the deployment and its pods, so the shell may call it on any
//! event and as often as it likes. The shell names and creates the pods
//! ([`pod_for`]), deletes the listed ones, and writes back the status and
//! the annotations.
//!
//! Pods that are terminating (`deletionTimestamp` set), Failed or Succeeded
//! do not count. Finished pods are deleted (and so replaced); terminating
//! pods are left to the node. As in Kubernetes, `maxSurge` bounds the
//! active pods: terminating ones may briefly exceed it.
//!
//! A paused deployment starts no revision. With all its pods on the current
//! revision it still scales; a paused rollout holds still (Kubernetes would
//! scale it proportionally across ReplicaSets), replacing only lost pods,
//! each at its own revision.

mod revisions;
mod rollout;
mod status;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::api::deployment::{DeploymentStatus, StrategyType};
use crate::api::pod::PodTemplateSpec;
use crate::api::{Deployment, OwnerReference, Pod, Time};
use crate::controllers::events::EventType;
use crate::controllers::pods;

pub use revisions::template_hash;
pub use rollout::{bounds, RolloutBounds};

use revisions::{history_limit, History};
use status::{Observed, Rollout};

/// The label that ties a pod to the revision (template) it was built from.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The deployment's current revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The deployment's revisions, as JSON: `[{revision, hash, template}]`.
pub const HISTORY_ANNOTATION: &str = "corral.io/revision-history";

/// `count` pods to build with [`pod_for`] from the revision `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCreate {
    pub hash: String,
    pub count: usize,
}

/// What the deployment controller wants done now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentPlan {
    pub create: Vec<PodCreate>,
    /// Names of pods to delete, least valuable first.
    pub delete: Vec<String>,
    /// The status as observed from the pods given to [`plan`].
    pub status: DeploymentStatus,
    /// The values of [`REVISION_ANNOTATION`] and [`HISTORY_ANNOTATION`]
    /// after this step (empty: none yet); other annotations are the user's.
    pub annotations: BTreeMap<String, String>,
}

/// Plans one step for `d`. `pods` are the pods `d` controls (controller
/// owner reference with `d`'s uid; see [`pods::controlled_by`]). Pure.
pub fn plan<P: Borrow<Pod>>(d: &Deployment, pods: &[P], now: Time) -> DeploymentPlan {
    let pods: Vec<&Pod> = pods.iter().map(Borrow::borrow).collect();
    let hash = template_hash(&d.spec.template);
    let paused = d.spec.paused.unwrap_or(false);
    let history = History::read(&d.metadata.annotations);
    // A paused deployment starts no new revision (Kubernetes creates no new
    // ReplicaSet while paused).
    let (history, started) = match paused {
        true => (history, false),
        false => history.record(&hash, &d.spec.template, history_limit(d.spec.revision_history_limit)),
    };
    let min_ready = d.spec.min_ready_seconds.map_or(0, i64::from);
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let sorted = Sorted::new(&pods, &hash);

    let replicas = usize::try_from(d.replicas()).unwrap_or(0);
    let b = bounds(d);
    let recreate = d.spec.strategy.as_ref().and_then(|s| s.type_) == Some(StrategyType::Recreate);
    let mut create = Vec::new();
    let mut delete = sorted.finished.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>();
    if paused && (!sorted.old.is_empty() || history.current_entry().is_none_or(|e| e.hash != hash)) {
        // A paused rollout neither progresses nor scales; each revision
        // still replaces its own lost pods, as its ReplicaSet would.
        create = sorted.replacements();
    } else {
        let step = match recreate {
            true => rollout::recreate(&sorted.new, &sorted.old, sorted.old_terminating, replicas),
            false => rollout::rolling(&sorted.new, &sorted.old, replicas, b, &available),
        };
        if step.create > 0 {
            create.push(PodCreate { hash: hash.clone(), count: step.create });
        }
        delete.extend(step.delete);
    }

    let rollout = match (paused, started) {
        (true, _) => Rollout::Paused,
        (false, true) => Rollout::Started(history.current),
        (false, false) => Rollout::Continuing(history.current),
    };
    let status = status::compute(d, sorted.observe(&available), b.max_unavailable, rollout, now);
    DeploymentPlan { create, delete, status, annotations: history.annotations() }
}

/// A deployment's pods by what the planner does with them.
struct Sorted<'a> {
    /// Active pods of the current template.
    new: Vec<&'a Pod>,
    /// Active pods of any other template.
    old: Vec<&'a Pod>,
    /// Failed or Succeeded and not yet deleted, by name.
    finished: Vec<&'a Pod>,
    /// Some pod of another template is still terminating.
    old_terminating: bool,
}

impl<'a> Sorted<'a> {
    fn new(pods: &[&'a Pod], hash: &str) -> Sorted<'a> {
        let is_new = |p: &Pod| p.metadata.labels.get(TEMPLATE_HASH_LABEL).is_some_and(|h| h == hash);
        let mut sorted =
            Sorted { new: Vec::new(), old: Vec::new(), finished: Vec::new(), old_terminating: false };
        for &p in pods {
            if pods::is_finished(p) {
                if !pods::is_terminating(p) {
                    sorted.finished.push(p);
                }
            } else if pods::is_terminating(p) {
                sorted.old_terminating |= !is_new(p);
            } else if is_new(p) {
                sorted.new.push(p);
            } else {
                sorted.old.push(p);
            }
        }
        sorted.finished.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        sorted
    }

    /// One new pod of the same revision per finished pod that has one.
    fn replacements(&self) -> Vec<PodCreate> {
        let mut by_hash: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &self.finished {
            if let Some(hash) = p.metadata.labels.get(TEMPLATE_HASH_LABEL) {
                *by_hash.entry(hash).or_default() += 1;
            }
        }
        by_hash.into_iter().map(|(hash, count)| PodCreate { hash: hash.to_string(), count }).collect()
    }

    fn observe(&self, available: &dyn Fn(&Pod) -> bool) -> Observed {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let active = || self.new.iter().chain(&self.old);
        Observed {
            replicas: count(self.new.len() + self.old.len()),
            updated: count(self.new.len()),
            ready: count(active().filter(|p| p.is_ready()).count()),
            available: count(active().filter(|p| available(p)).count()),
        }
    }
}

/// One recorded revision of a deployment: its number, template hash and template.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub hash: String,
    pub template: PodTemplateSpec,
}

/// The revisions recorded in `d`'s annotations, oldest first, and the
/// number of the current one (0: none yet). What Kubernetes reads from a
/// deployment's ReplicaSets (`kubectl rollout history`).
pub fn revisions(d: &Deployment) -> (i64, Vec<Revision>) {
    let history = History::read(&d.metadata.annotations);
    let entries = history
        .entries
        .into_iter()
        .map(|e| Revision { number: e.revision, hash: e.hash, template: e.template })
        .collect();
    (history.current, entries)
}

/// The reference that makes `d` the controlling owner of a pod.
pub fn owner_reference(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: d.metadata.name.clone(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod named `name` of `d`'s revision `hash`: the template of that
/// revision (the current template, or an old one from the history) with the
/// `pod-template-hash` label, in `d`'s namespace, controlled by `d`.
pub fn pod_for(d: &Deployment, hash: &str, name: &str) -> Pod {
    let history;
    let template = if template_hash(&d.spec.template) == hash {
        &d.spec.template
    } else {
        history = History::read(&d.metadata.annotations);
        history.template_of(hash).unwrap_or(&d.spec.template)
    };
    let mut metadata = template.metadata.clone();
    metadata.name = name.to_string();
    metadata.namespace = Some(d.metadata.namespace_or_default().to_string());
    metadata.labels.insert(TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    metadata.owner_references = vec![owner_reference(d)];
    Pod { api_version: "v1".into(), kind: "Pod".into(), metadata, spec: template.spec.clone(), status: None }
}

/// `kubectl rollout undo`: `d` with the template of `to_revision` (`None`
/// or 0: the revision before the current one). The revision annotations of
/// the result include the current template, so it can be rolled back to in
/// turn; the next [`plan`] numbers the restored template as a new revision.
/// Rolling back to the current template returns `d` unchanged.
pub fn rollback(d: &Deployment, to_revision: Option<i64>) -> Result<Deployment, String> {
    let name = &d.metadata.name;
    if d.spec.paused.unwrap_or(false) {
        return Err(format!(
            "you cannot rollback a paused deployment; resume it first with 'corral rollout resume deployment/{name}' and try again"
        ));
    }
    let hash = template_hash(&d.spec.template);
    let limit = history_limit(d.spec.revision_history_limit);
    let (history, _) = History::read(&d.metadata.annotations).record(&hash, &d.spec.template, limit);
    let target = match to_revision.filter(|&r| r != 0) {
        Some(r) => history.entries.iter().find(|e| e.revision == r).ok_or_else(|| {
            format!("unable to find specified revision {r} in history of deployment \"{name}\"")
        })?,
        None => history
            .entries
            .iter()
            .rev()
            .find(|e| e.revision < history.current)
            .ok_or_else(|| format!("no rollout history found for deployment \"{name}\""))?,
    };
    let mut next = d.clone();
    next.spec.template = target.template.clone();
    next.metadata.annotations.extend(history.annotations());
    Ok(next)
}

/// An Event for a rollout step, from the change of the `Progressing`
/// condition between the stored status and the planned one: a new revision
/// started, a rollout completed, paused, resumed, or ran past its progress
/// deadline. `None` when the condition keeps its reason. Pure.
pub fn rollout_event(
    before: Option<&DeploymentStatus>,
    after: &DeploymentStatus,
) -> Option<(EventType, &'static str, String)> {
    let progressing = |s: &DeploymentStatus| s.conditions.iter().find(|c| c.type_ == "Progressing").cloned();
    let now = progressing(after)?;
    let then = before.and_then(progressing);
    if then.as_ref().is_some_and(|c| c.reason == now.reason) {
        return None;
    }
    let message = now.message.clone().unwrap_or_default();
    let (type_, reason) = match now.reason.as_deref()? {
        "NewReplicaSetCreated" => (EventType::Normal, "RolloutStarted"),
        "NewReplicaSetAvailable" => (EventType::Normal, "RolloutComplete"),
        "DeploymentPaused" => (EventType::Normal, "DeploymentPaused"),
        "DeploymentResumed" => (EventType::Normal, "DeploymentResumed"),
        "ProgressDeadlineExceeded" => (EventType::Warning, "ProgressDeadlineExceeded"),
        _ => return None,
    };
    Some((type_, reason, message))
}

#[cfg(test)]
mod rollout_event_tests {
    use super::*;
    use crate::api::pod::Condition;

    fn status(reason: Option<&str>) -> DeploymentStatus {
        DeploymentStatus {
            conditions: reason
                .map(|r| Condition {
                    type_: "Progressing".into(),
                    status: "True".into(),
                    reason: Some(r.into()),
                    message: Some(format!("because {r}")),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_changed_progressing_reason_is_a_rollout_step() {
        // (before, after, expected event reason)
        let cases = [
            (None, Some("NewReplicaSetCreated"), Some("RolloutStarted")),
            (Some("NewReplicaSetCreated"), Some("ReplicaSetUpdated"), None),
            (Some("ReplicaSetUpdated"), Some("ReplicaSetUpdated"), None),
            (Some("ReplicaSetUpdated"), Some("NewReplicaSetAvailable"), Some("RolloutComplete")),
            (Some("NewReplicaSetAvailable"), Some("NewReplicaSetAvailable"), None),
            (Some("ReplicaSetUpdated"), Some("ProgressDeadlineExceeded"), Some("ProgressDeadlineExceeded")),
            (Some("ReplicaSetUpdated"), Some("DeploymentPaused"), Some("DeploymentPaused")),
            (Some("DeploymentPaused"), Some("DeploymentResumed"), Some("DeploymentResumed")),
            (Some("ReplicaSetUpdated"), None, None),
        ];
        for (before, after, want) in cases {
            let before = before.map(|r| status(Some(r)));
            let got = rollout_event(before.as_ref(), &status(after));
            assert_eq!(got.as_ref().map(|e| e.1), want, "{before:?} -> {after:?}");
            if let Some((type_, reason, message)) = got {
                let warning = reason == "ProgressDeadlineExceeded";
                assert_eq!(type_ == EventType::Warning, warning);
                assert_eq!(message, format!("because {}", after.unwrap()));
            }
        }
    }
}
