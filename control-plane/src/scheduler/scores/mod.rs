//! Score plugins: each gives every feasible node a raw score for one pod, by one criterion.
//! One plugin per file; this module owns their weights, how each plugin's raw scores are
//! normalized to `0..=MAX_NODE_SCORE`, and the weighted sum the cycle picks by.

pub mod inter_pod_affinity_preferred;
pub mod least_allocated;
pub mod node_affinity_preferred;
pub mod spread;

use super::{NodeInfo, Snapshot};
use crate::api::Pod;

/// The top of every plugin's normalized score (Kubernetes' `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// How a plugin's raw scores over the feasible nodes become `0..=MAX_NODE_SCORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// The raw score is already in range (clamped, to be safe).
    Unchanged,
    /// Scaled so the highest raw score gets the maximum; zero and below get zero.
    ByMax,
    /// For counts where fewer is better: zero gets the maximum, the highest count gets zero.
    ByMaxReversed,
    /// Scaled so the lowest raw score gets zero and the highest the maximum; for raw scores
    /// that may be negative.
    MinMax,
}

/// A score plugin and what its vote is worth.
pub struct ScorePlugin {
    /// Named as the Kubernetes plugin it follows.
    pub name: &'static str,
    pub weight: i64,
    pub score: fn(&Pod, &NodeInfo, &Snapshot) -> i64,
    pub normalize: Normalize,
}

/// Kubernetes' default weights: the pod's stated preferences and spreading count twice as
/// much as balancing resources.
pub const SCORES: [ScorePlugin; 4] = [
    ScorePlugin {
        name: "NodeAffinity",
        weight: 2,
        score: node_affinity_preferred::score,
        normalize: Normalize::ByMax,
    },
    ScorePlugin {
        name: "InterPodAffinity",
        weight: 2,
        score: inter_pod_affinity_preferred::score,
        normalize: Normalize::MinMax,
    },
    ScorePlugin {
        name: "NodeResourcesLeastAllocated",
        weight: 1,
        score: least_allocated::score,
        normalize: Normalize::Unchanged,
    },
    ScorePlugin {
        name: "SelectorSpread",
        weight: 2,
        score: spread::score,
        normalize: Normalize::ByMaxReversed,
    },
];

/// The weighted sum of every plugin's normalized score, one per node of `feasible`, in order.
pub fn total(pod: &Pod, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<i64> {
    let mut totals = vec![0; feasible.len()];
    for plugin in &SCORES {
        let raw: Vec<i64> = feasible.iter().map(|node| (plugin.score)(pod, node, snapshot)).collect();
        for (total, score) in totals.iter_mut().zip(normalize(&raw, plugin.normalize)) {
            *total += plugin.weight * score;
        }
    }
    totals
}

/// Maps raw scores to `0..=MAX_NODE_SCORE`. Equal raw scores normalize to equal scores, so a
/// plugin with no preference among the nodes does not sway the pick.
pub fn normalize(raw: &[i64], how: Normalize) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    let scaled = |s: i64| -> i64 {
        match how {
            Normalize::Unchanged => s,
            Normalize::ByMax if max <= 0 => 0,
            Normalize::ByMax => s * MAX_NODE_SCORE / max,
            Normalize::ByMaxReversed if max <= 0 => MAX_NODE_SCORE,
            Normalize::ByMaxReversed => (max - s) * MAX_NODE_SCORE / max,
            Normalize::MinMax if max == min => 0,
            Normalize::MinMax => (s - min) * MAX_NODE_SCORE / (max - min),
        }
    };
    raw.iter().map(|&s| scaled(s).clamp(0, MAX_NODE_SCORE)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Normalize::*;

    #[test]
    fn raw_scores_normalize_to_zero_through_one_hundred() {
        let cases: Vec<(Normalize, Vec<i64>, Vec<i64>)> = vec![
            (Unchanged, vec![0, 42, 100], vec![0, 42, 100]),
            (Unchanged, vec![-5, 150], vec![0, 100]),
            (ByMax, vec![0, 5, 10], vec![0, 50, 100]),
            (ByMax, vec![5, 10], vec![50, 100]),
            (ByMax, vec![0, 0], vec![0, 0]),
            (ByMax, vec![-3, 3], vec![0, 100]),
            (ByMaxReversed, vec![0, 1, 2], vec![100, 50, 0]),
            (ByMaxReversed, vec![3, 3], vec![0, 0]),
            (ByMaxReversed, vec![0, 0], vec![100, 100]),
            (MinMax, vec![-10, 0, 10], vec![0, 50, 100]),
            (MinMax, vec![7, 7], vec![0, 0]),
            (MinMax, vec![2, 3], vec![0, 100]),
        ];
        for (how, raw, expected) in cases {
            assert_eq!(normalize(&raw, how), expected, "{how:?} {raw:?}");
        }
        assert_eq!(normalize(&[], MinMax), Vec::<i64>::new());
    }
}
