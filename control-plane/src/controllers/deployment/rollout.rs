//! How many pods to create and which to delete in one step of a rollout,
//! Kubernetes' `rolloutRolling` and `rolloutRecreate` over pods instead of
//! ReplicaSets. `new` and `old` are the active pods (neither finished nor
//! terminating) of the current template and of any other.

use super::super::pods::least_valuable;
use crate::api::deployment::StrategyType;
use crate::api::{Deployment, IntOrString, Pod};

/// The resolved `maxSurge` and `maxUnavailable` of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutBounds {
    /// Pods allowed above `replicas` during a rolling update.
    pub max_surge: usize,
    /// Pods allowed below `replicas` available, never more than `replicas`.
    pub max_unavailable: usize,
}

/// Kubernetes' `ResolveFenceposts` and `MaxUnavailable`: percentages of
/// `replicas` (default 25%), surge rounded up and unavailable down; both 0
/// means maxUnavailable 1; maxUnavailable is capped at `replicas`. Recreate
/// allows neither. An unreadable value (validation refuses them) counts as
/// the default.
pub fn bounds(d: &Deployment) -> RolloutBounds {
    let strategy = d.spec.strategy.as_ref();
    if strategy.and_then(|s| s.type_) == Some(StrategyType::Recreate) {
        return RolloutBounds { max_surge: 0, max_unavailable: 0 };
    }
    let replicas = d.replicas().max(0);
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let resolve = |v: Option<&IntOrString>, round_up: bool| {
        let n = v
            .unwrap_or(&default)
            .scaled(replicas, round_up)
            .or_else(|_| default.scaled(replicas, round_up))
            .unwrap_or(0);
        usize::try_from(n).unwrap_or(0)
    };
    let max_surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), true);
    let mut max_unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), false);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let cap = usize::try_from(replicas).unwrap_or(0);
    RolloutBounds { max_surge, max_unavailable: max_unavailable.min(cap) }
}

/// One step's pod changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Step {
    /// Pods of the current template to create.
    pub create: usize,
    pub delete: Vec<String>,
}

/// A rolling step. Creating stays within `replicas + maxSurge` active pods;
/// deleting keeps `replicas - maxUnavailable` available, counting pods
/// created in this step as unavailable. Without old pods this is plain
/// scaling.
pub(super) fn rolling(
    new: &[&Pod],
    old: &[&Pod],
    replicas: usize,
    b: RolloutBounds,
    available: &dyn Fn(&Pod) -> bool,
) -> Step {
    let mut step = Step::default();
    let mut new_available = new.iter().filter(|p| available(p)).count();
    if new.len() < replicas {
        let room = (replicas + b.max_surge).saturating_sub(new.len() + old.len());
        step.create = room.min(replicas - new.len());
    } else if new.len() > replicas {
        let excess = least_valuable(new.iter().copied(), new.len() - replicas);
        new_available -= new.iter().filter(|p| available(p) && excess.contains(&p.metadata.name)).count();
        step.delete = excess;
    }
    if old.is_empty() {
        return step;
    }
    let min_available = replicas.saturating_sub(b.max_unavailable);
    let (old_available, old_unhealthy): (Vec<&Pod>, Vec<&Pod>) = old.iter().partition(|p| available(p));

    // `cleanupUnhealthyReplicas`: old pods that are not available go first,
    // but no more than leaves room for new pods still starting, since an
    // old pod may be about to become available too.
    let max_scaled_down = (old.len() + new_available).saturating_sub(min_available);
    let unhealthy = least_valuable(old_unhealthy.iter().copied(), max_scaled_down);

    // `scaleDownOldReplicaSetsForRollingUpdate`: then as many more as keeps
    // `min_available` available.
    let budget = (old_available.len() + new_available).saturating_sub(min_available);
    let rest = old.iter().copied().filter(|p| !unhealthy.contains(&p.metadata.name));
    let more = least_valuable(rest, budget);
    step.delete.extend(unhealthy);
    step.delete.extend(more);
    step
}

/// A Recreate step: delete every old pod; once none is left running (a
/// terminating one still runs), bring the current template to `replicas`.
pub(super) fn recreate(new: &[&Pod], old: &[&Pod], old_terminating: bool, replicas: usize) -> Step {
    if !old.is_empty() {
        return Step { create: 0, delete: least_valuable(old.iter().copied(), old.len()) };
    }
    if old_terminating {
        return Step::default();
    }
    scale(new, replicas)
}

/// Exactly `replicas` pods of the current template.
fn scale(new: &[&Pod], replicas: usize) -> Step {
    Step {
        create: replicas.saturating_sub(new.len()),
        delete: least_valuable(new.iter().copied(), new.len().saturating_sub(replicas)),
    }
}
