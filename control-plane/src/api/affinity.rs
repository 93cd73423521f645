//! Node and pod (anti-)affinity, Kubernetes' field names: the rules the
//! scheduler filters and scores by.

use serde::{Deserialize, Serialize};

use super::labels::LabelSelector;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_affinity: Option<PodAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<PodAffinity>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAffinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// Terms ORed together; the expressions of one term are ANDed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelector {
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorTerm {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: NodeSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferredSchedulingTerm {
    pub weight: i32,
    pub preference: NodeSelectorTerm,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAffinity {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_during_scheduling_ignored_during_execution: Vec<PodAffinityTerm>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<WeightedPodAffinityTerm>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAffinityTerm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only `kubernetes.io/hostname` (same node) is supported.
    pub topology_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub pod_affinity_term: PodAffinityTerm,
}

impl NodeSelectorRequirement {
    /// Whether a node with `labels` satisfies this requirement.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let number = |s: &str| s.parse::<i64>().ok();
        match self.operator {
            NodeSelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            NodeSelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            NodeSelectorOperator::Exists => value.is_some(),
            NodeSelectorOperator::DoesNotExist => value.is_none(),
            NodeSelectorOperator::Gt | NodeSelectorOperator::Lt => {
                let (Some(have), Some(bound)) =
                    (value.and_then(|v| number(v)), self.values.first().and_then(|v| number(v)))
                else {
                    return false;
                };
                if self.operator == NodeSelectorOperator::Gt {
                    have > bound
                } else {
                    have < bound
                }
            }
        }
    }
}

impl NodeSelectorTerm {
    /// All expressions hold (an empty term matches nothing, as in Kubernetes).
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        !self.match_expressions.is_empty() && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn req(key: &str, op: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op,
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn node_selector_operators_follow_kubernetes() {
        use NodeSelectorOperator::*;
        let labels: BTreeMap<String, String> =
            [("disk", "ssd"), ("gpus", "4")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let cases = [
            (req("disk", In, &["ssd", "nvme"]), true),
            (req("disk", In, &["hdd"]), false),
            (req("disk", NotIn, &["hdd"]), true),
            (req("zone", NotIn, &["a"]), true),
            (req("gpus", Exists, &[]), true),
            (req("gpu-model", DoesNotExist, &[]), true),
            (req("gpus", Gt, &["2"]), true),
            (req("gpus", Gt, &["4"]), false),
            (req("gpus", Lt, &["8"]), true),
            (req("disk", Gt, &["1"]), false),
            (req("zone", Lt, &["1"]), false),
        ];
        for (r, want) in cases {
            assert_eq!(r.matches(&labels), want, "{r:?}");
        }
        assert!(!NodeSelectorTerm::default().matches(&labels), "an empty term matches nothing");
    }
}
