//! HorizontalPodAutoscalers (`autoscaling/v2`, and `autoscaling/v1` read
//! into the same shape) and Leases (`coordination.k8s.io/v1`).
//!
//! An `autoscaling/v1` manifest (`targetCPUUtilizationPercentage`) is
//! converted on the way in to the `autoscaling/v2` form it means (one cpu
//! Utilization metric), which is what Corral stores and serves, as the
//! Kubernetes API server stores one version and converts the others.

use serde::{Deserialize, Serialize};

use super::meta::{ObjectMeta, Time};
use super::pod::Condition;
use super::quantity::Quantity;

pub const HPA_V1: &str = "autoscaling/v1";
pub const HPA_V2: &str = "autoscaling/v2";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscaler {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: HpaSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HpaStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossVersionObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaSpec {
    pub scale_target_ref: CrossVersionObjectReference,
    /// Kubernetes' default is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    pub max_replicas: i32,
    /// Kubernetes' default is one cpu metric at 80% utilization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HpaBehavior>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// Only `Resource` is supported.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMetricSource {
    /// `cpu` or `memory`.
    pub name: String,
    pub target: MetricTarget,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTarget {
    /// `Utilization` (of the pods' requests) or `AverageValue`.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaBehavior {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<HpaScalingRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<HpaScalingRules>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaScalingRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
    /// `Max` (default), `Min` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<HpaScalingPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub type_: String,
    pub value: i32,
    pub period_seconds: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    #[serde(default)]
    pub current_replicas: i32,
    #[serde(default)]
    pub desired_replicas: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<MetricStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricStatus {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMetricStatus {
    pub name: String,
    pub current: MetricValueStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricValueStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
}

impl HorizontalPodAutoscaler {
    pub fn min_replicas(&self) -> i32 {
        self.spec.min_replicas.unwrap_or(1)
    }

    /// The metrics as written, or Kubernetes' default (cpu at 80%).
    pub fn metrics(&self) -> Vec<MetricSpec> {
        if self.spec.metrics.is_empty() {
            vec![resource_metric("cpu", 80)]
        } else {
            self.spec.metrics.clone()
        }
    }
}

impl HorizontalPodAutoscaler {
    /// kubectl's TARGETS column: `23%/50%` per metric (current/target),
    /// `<unknown>` for a current value not measured yet.
    pub fn targets(&self) -> String {
        let current = self.status.as_ref().map(|s| s.current_metrics.as_slice()).unwrap_or_default();
        self.metrics()
            .iter()
            .filter_map(|m| m.resource.as_ref())
            .map(|r| {
                let now = current.iter().filter_map(|c| c.resource.as_ref()).find(|c| c.name == r.name);
                match (r.target.average_utilization, &r.target.average_value) {
                    (Some(t), _) => {
                        let c = now.and_then(|c| c.current.average_utilization);
                        format!("{}/{t}%", c.map_or("<unknown>".into(), |c| format!("{c}%")))
                    }
                    (None, Some(v)) => {
                        let c = now.and_then(|c| c.current.average_value.clone());
                        format!("{}/{v}", c.map_or("<unknown>".into(), |c| c.to_string()))
                    }
                    _ => "<unknown>".into(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A `Resource` metric with a Utilization target.
pub fn resource_metric(name: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
    }
}

/// `autoscaling/v1`'s shape, read and turned into the v2 object it means.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaV1 {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: HpaV1Spec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HpaV1Spec {
    scale_target_ref: CrossVersionObjectReference,
    #[serde(default)]
    min_replicas: Option<i32>,
    max_replicas: i32,
    #[serde(default, rename = "targetCPUUtilizationPercentage")]
    target_cpu_utilization_percentage: Option<i32>,
}

impl From<HpaV1> for HorizontalPodAutoscaler {
    fn from(v1: HpaV1) -> Self {
        HorizontalPodAutoscaler {
            api_version: HPA_V2.into(),
            kind: "HorizontalPodAutoscaler".into(),
            metadata: v1.metadata,
            spec: HpaSpec {
                scale_target_ref: v1.spec.scale_target_ref,
                min_replicas: v1.spec.min_replicas,
                max_replicas: v1.spec.max_replicas,
                metrics: v1
                    .spec
                    .target_cpu_utilization_percentage
                    .map(|p| vec![resource_metric("cpu", p)])
                    .unwrap_or_default(),
                behavior: None,
            },
            status: None,
        }
    }
}

/// A lease for leader election among an application's replicas
/// (`coordination.k8s.io/v1`, kind `Lease`). Taken and renewed with
/// compare-and-swap on `resourceVersion`, like every object, so two
/// candidates can never both hold it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lease {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LeaseSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i32>,
}

/// Kubernetes' MicroTime: RFC 3339 with microseconds
/// (`2026-11-26T15:04:05.123456Z`), held as microseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroTime(pub i64);

impl MicroTime {
    pub fn now() -> MicroTime {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        MicroTime(d.as_micros() as i64)
    }

    pub fn plus_secs(self, secs: i64) -> MicroTime {
        MicroTime(self.0 + secs * 1_000_000)
    }
}

impl std::fmt::Display for MicroTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let whole = Time(secs).to_string();
        write!(f, "{}.{micros:06}Z", whole.trim_end_matches('Z'))
    }
}

impl Serialize for MicroTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MicroTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let secs = Time::parse(&text).map_err(serde::de::Error::custom)?;
        let micros = text
            .split_once('.')
            .map(|(_, rest)| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).take(6).collect();
                format!("{digits:0<6}").parse::<i64>().unwrap_or(0)
            })
            .unwrap_or(0);
        Ok(MicroTime(secs.0 * 1_000_000 + micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_round_trips_with_microseconds() {
        let t: MicroTime = serde_json::from_str("\"2026-11-26T15:04:05.123456Z\"").unwrap();
        assert_eq!(t.0 % 1_000_000, 123_456);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-26T15:04:05.123456Z\"");
        let whole: MicroTime = serde_json::from_str("\"2026-11-26T15:04:05Z\"").unwrap();
        assert_eq!(whole.0, t.0 - 123_456);
        let short: MicroTime = serde_json::from_str("\"2026-11-26T15:04:05.5Z\"").unwrap();
        assert_eq!(short.0 % 1_000_000, 500_000);
    }

    #[test]
    fn v1_means_one_cpu_utilization_metric() {
        let v1: HpaV1 = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "php-apache"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php-apache"},
                     "minReplicas": 1, "maxReplicas": 10, "targetCPUUtilizationPercentage": 50}
        }))
        .unwrap();
        let v2 = HorizontalPodAutoscaler::from(v1);
        assert_eq!(v2.api_version, HPA_V2);
        assert_eq!(v2.spec.metrics, vec![resource_metric("cpu", 50)]);
        assert_eq!((v2.min_replicas(), v2.spec.max_replicas), (1, 10));
    }
}
