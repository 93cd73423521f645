//! The horizontal pod autoscaler's decision: Kubernetes' algorithm
//! (`pkg/controller/podautoscaler`), as a pure function of the HPA, the
//! target's replica count, its pods' requests and usage, the recent
//! recommendations and scale events, and `now`.
//!
//! Per metric: desired = ceil(current × usage ratio), the ratio being the
//! pods' usage over their target (a percentage of their requests, or an
//! average value); within the tolerance (10%) nothing changes. Pods being
//! deleted or failed are ignored; pods without a sample and (for cpu)
//! pods not Ready are left out of the ratio and then counted so as to damp
//! the move: on a scale-down missing pods count as at their target, on a
//! scale-up missing and unready pods count as idle; if that flips the
//! direction or lands within the tolerance, nothing changes. Several
//! metrics: the largest proposal. Then `behavior`: the stabilization
//! windows (a scale-down takes the highest recommendation of the last
//! 300 s by default) and the rate policies, and min/max.

use std::collections::BTreeMap;

use crate::api::autoscaling::{
    HorizontalPodAutoscaler, HpaScalingPolicy, HpaScalingRules, MetricSpec, MetricStatus, MetricValueStatus,
    ResourceMetricStatus,
};
use crate::api::quantity::Quantity;
use crate::api::Time;

/// Kubernetes' default tolerance: no change while the ratio is within 10% of 1.
pub const TOLERANCE: f64 = 0.1;

/// What the autoscaler knows of one pod of the target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSample {
    pub name: String,
    /// Being deleted, or Failed/Succeeded: not counted at all.
    pub ignored: bool,
    /// Left out of cpu as unready (Kubernetes' rule: not Ready, or so young
    /// that its sample may still hold start-up work); memory ignores it.
    pub unready: bool,
    /// Requests summed over the pod's containers, in thousandths (millicores, milli-bytes);
    /// a resource any container leaves unset is absent.
    pub requests: BTreeMap<String, u64>,
    /// Usage summed over the containers, in thousandths; `None`: no sample yet.
    pub usage: Option<BTreeMap<String, u64>>,
}

/// A past recommendation or scale event (kept by the controller between passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub at: Time,
    pub replicas: i32,
}

/// What the controller remembers of one HPA (in memory, as Kubernetes' does).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub recommendations: Vec<Stamped>,
    /// Replicas added (scale-ups) and removed (scale-downs), when.
    pub scale_ups: Vec<Stamped>,
    pub scale_downs: Vec<Stamped>,
}

/// The decision for one HPA.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: i32,
    pub current_metrics: Vec<MetricStatus>,
    /// (type, status, reason, message) for AbleToScale, ScalingActive, ScalingLimited.
    pub conditions: Vec<(&'static str, &'static str, &'static str, String)>,
    /// Why it scaled, for an Event (`None`: it did not).
    pub rescale_reason: Option<String>,
}

/// One metric's proposal.
struct Proposal {
    replicas: i32,
    status: MetricStatus,
    /// "cpu resource utilization (percentage of request)", for messages.
    what: String,
}

/// Decides the replica count of `hpa`'s target, which has `current` replicas
/// and `pods`. Records the recommendation and any scale event in `history`.
pub fn decide(
    hpa: &HorizontalPodAutoscaler,
    current: i32,
    pods: &[PodSample],
    history: &mut History,
    now: Time,
) -> Decision {
    let min = hpa.min_replicas();
    let max = hpa.spec.max_replicas;
    let mut conditions = Vec::new();
    let mut current_metrics = Vec::new();
    let (desired, rescale_reason) = if current == 0 && min != 0 {
        conditions.push((
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".to_string(),
        ));
        (0, None)
    } else if current > max {
        (max, Some(format!("Current number of replicas above Spec.MaxReplicas ({max})")))
    } else if current < min {
        (min, Some(format!("Current number of replicas below Spec.MinReplicas ({min})")))
    } else {
        let mut proposals = Vec::new();
        let mut errors = Vec::new();
        for metric in hpa.metrics() {
            match propose(&metric, current, pods) {
                Ok(p) => proposals.push(p),
                Err(e) => errors.push(e),
            }
        }
        let best = proposals.iter().max_by_key(|p| p.replicas);
        current_metrics = proposals.iter().map(|p| p.status.clone()).collect();
        match best {
            None => {
                conditions.push((
                    "ScalingActive",
                    "False",
                    "FailedGetResourceMetric",
                    format!("the HPA was unable to compute the replica count: {}", errors.join("; ")),
                ));
                (current, None)
            }
            Some(best) => {
                conditions.push((
                    "ScalingActive",
                    "True",
                    "ValidMetricFound",
                    format!("the HPA was able to successfully calculate a replica count from {}", best.what),
                ));
                // A metric that could not be read must not let the others shrink the target.
                let proposal =
                    if !errors.is_empty() && best.replicas < current { current } else { best.replicas };
                let (desired, able, limited) = normalize(hpa, current, proposal, history, now);
                conditions.push(able);
                conditions.push(limited);
                let reason = (desired != current).then(|| {
                    format!(
                        "{} {}",
                        best.what,
                        if desired > current { "above target" } else { "below target" }
                    )
                });
                (desired, reason)
            }
        }
    };
    if conditions.iter().all(|c| c.0 != "AbleToScale") {
        conditions.insert(
            0,
            (
                "AbleToScale",
                "True",
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale".into(),
            ),
        );
    }
    if desired != current {
        let change = Stamped { at: now, replicas: (desired - current).abs() };
        if desired > current {
            history.scale_ups.push(change);
        } else {
            history.scale_downs.push(change);
        }
    }
    Decision { desired, current_metrics, conditions, rescale_reason }
}

/// A metric's target.
enum Goal {
    /// Percent of each pod's request.
    Utilization(u64),
    /// Thousandths per pod.
    AverageValue(u64),
}

impl Goal {
    /// What `p` should use at the target, in thousandths.
    fn per_pod(&self, p: &PodSample, resource: &str) -> Result<u64, String> {
        match self {
            Goal::Utilization(pct) => {
                p.requests.get(resource).filter(|r| **r > 0).map(|r| r * pct / 100).ok_or_else(|| {
                    format!("missing request for {resource} in pod {:?}: utilization needs the containers' requests", p.name)
                })
            }
            Goal::AverageValue(v) => Ok(*v),
        }
    }
}

/// The replica count one metric asks for.
fn propose(metric: &MetricSpec, current: i32, pods: &[PodSample]) -> Result<Proposal, String> {
    if metric.type_ != "Resource" {
        return Err(format!("metric type {:?} is not supported (only Resource)", metric.type_));
    }
    let source = metric.resource.as_ref().ok_or("a Resource metric needs spec.metrics[].resource")?;
    let resource = source.name.as_str();
    if resource != "cpu" && resource != "memory" {
        return Err(format!("resource {resource:?} is not supported (cpu or memory)"));
    }
    let target = &source.target;
    let goal = match (target.type_.as_str(), target.average_utilization, &target.average_value) {
        ("Utilization", Some(pct), _) if pct > 0 => Goal::Utilization(pct as u64),
        ("AverageValue", _, Some(v)) if v.millis() > 0 => Goal::AverageValue(v.millis()),
        _ => {
            return Err(format!(
                "the {resource} target needs type Utilization with averageUtilization > 0, or AverageValue with averageValue > 0"
            ))
        }
    };
    let per_pod_target = |p: &PodSample| goal.per_pod(p, resource);
    let counted: Vec<&PodSample> = pods.iter().filter(|p| !p.ignored).collect();
    let mut with_metrics = Vec::new();
    let mut missing = Vec::new();
    let mut unready = Vec::new();
    for p in &counted {
        let usage = p.usage.as_ref().and_then(|u| u.get(resource)).copied();
        match usage {
            None => missing.push(*p),
            // Kubernetes leaves unready pods out of cpu only: memory says nothing about readiness.
            Some(_) if p.unready && resource == "cpu" => unready.push(*p),
            Some(u) => with_metrics.push((*p, u)),
        }
    }
    if with_metrics.is_empty() {
        return Err(format!("did not receive metrics for {resource} of any ready pod of the target (pods might be unready or not sampled yet)"));
    }
    let mut usage_sum = 0u64;
    let mut target_sum = 0u64;
    for (p, u) in &with_metrics {
        usage_sum += u;
        target_sum += per_pod_target(p)?;
    }
    let ratio = usage_sum as f64 / target_sum as f64;
    let n = with_metrics.len() as u64;
    let status = metric_status(resource, target.type_.as_str(), usage_sum, &with_metrics)?;
    let what = match target.type_.as_str() {
        "Utilization" => format!("{resource} resource utilization (percentage of request)"),
        _ => format!("{resource} resource"),
    };
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(Proposal { replicas: current, status, what });
        }
        return Ok(Proposal { replicas: (ratio * n as f64).ceil() as i32, status, what });
    }
    // Damp the move: missing pods at their target when shrinking, idle when growing; unready idle.
    let (mut usage_all, mut target_all, mut count) = (usage_sum, target_sum, n);
    for p in &missing {
        let t = per_pod_target(p)?;
        if ratio < 1.0 {
            // Kubernetes counts them at max(100%, target) of their request.
            let full = match (target.type_.as_str(), target.average_utilization) {
                ("Utilization", Some(pct)) if pct < 100 => t * 100 / pct as u64,
                _ => t,
            };
            usage_all += full;
        }
        target_all += t;
        count += 1;
    }
    if scale_up_with_unready {
        for p in &unready {
            target_all += per_pod_target(p)?;
            count += 1;
        }
    }
    let new_ratio = usage_all as f64 / target_all as f64;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(Proposal { replicas: current, status, what });
    }
    let replicas = (new_ratio * count as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(Proposal { replicas: current, status, what });
    }
    Ok(Proposal { replicas, status, what })
}

fn metric_status(
    resource: &str,
    target_type: &str,
    usage_sum: u64,
    with_metrics: &[(&PodSample, u64)],
) -> Result<MetricStatus, String> {
    let average = usage_sum / (with_metrics.len() as u64).max(1);
    let average_value =
        if resource == "cpu" { format!("{}m", average) } else { format!("{}", average.div_ceil(1000)) };
    let average_utilization = if target_type == "Utilization" {
        let requests: u64 =
            with_metrics.iter().map(|(p, _)| p.requests.get(resource).copied().unwrap_or(0)).sum();
        Some((usage_sum as f64 * 100.0 / requests.max(1) as f64).round() as i32)
    } else {
        None
    };
    Ok(MetricStatus {
        type_: "Resource".into(),
        resource: Some(ResourceMetricStatus {
            name: resource.into(),
            current: MetricValueStatus {
                average_utilization,
                average_value: Some(average_value.parse::<Quantity>().map_err(|e| e.to_string())?),
            },
        }),
    })
}

fn default_scale_up() -> HpaScalingRules {
    HpaScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: vec![
            HpaScalingPolicy { type_: "Pods".into(), value: 4, period_seconds: 15 },
            HpaScalingPolicy { type_: "Percent".into(), value: 100, period_seconds: 15 },
        ],
    }
}

fn default_scale_down() -> HpaScalingRules {
    HpaScalingRules {
        stabilization_window_seconds: Some(300),
        select_policy: Some("Max".into()),
        policies: vec![HpaScalingPolicy { type_: "Percent".into(), value: 100, period_seconds: 15 }],
    }
}

/// `rules` with Kubernetes' defaults filled in.
fn with_defaults(rules: Option<&HpaScalingRules>, defaults: HpaScalingRules) -> HpaScalingRules {
    let Some(r) = rules else { return defaults };
    HpaScalingRules {
        stabilization_window_seconds: r
            .stabilization_window_seconds
            .or(defaults.stabilization_window_seconds),
        select_policy: r.select_policy.clone().or(defaults.select_policy),
        policies: if r.policies.is_empty() { defaults.policies } else { r.policies.clone() },
    }
}

type ConditionRow = (&'static str, &'static str, &'static str, String);

/// Stabilization, rate policies and min/max; returns the replicas and the
/// AbleToScale and ScalingLimited conditions.
fn normalize(
    hpa: &HorizontalPodAutoscaler,
    current: i32,
    proposal: i32,
    history: &mut History,
    now: Time,
) -> (i32, ConditionRow, ConditionRow) {
    let behavior = hpa.spec.behavior.as_ref();
    let up = with_defaults(behavior.and_then(|b| b.scale_up.as_ref()), default_scale_up());
    let down = with_defaults(behavior.and_then(|b| b.scale_down.as_ref()), default_scale_down());
    let up_window = up.stabilization_window_seconds.unwrap_or(0) as i64;
    let down_window = down.stabilization_window_seconds.unwrap_or(300) as i64;

    // Stabilization: a scale-up takes the lowest, a scale-down the highest recommendation in its window.
    let (mut up_rec, mut down_rec) = (proposal, proposal);
    for r in &history.recommendations {
        if r.at.0 > now.0 - up_window {
            up_rec = up_rec.min(r.replicas);
        }
        if r.at.0 > now.0 - down_window {
            down_rec = down_rec.max(r.replicas);
        }
    }
    let keep = up_window.max(down_window);
    history.recommendations.retain(|r| r.at.0 > now.0 - keep);
    history.recommendations.push(Stamped { at: now, replicas: proposal });
    let stabilized = current.max(up_rec).min(down_rec);
    let able = if stabilized > proposal {
        (
            "AbleToScale",
            "True",
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation"
                .to_string(),
        )
    } else if stabilized < proposal {
        (
            "AbleToScale",
            "True",
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation"
                .to_string(),
        )
    } else if stabilized != current {
        (
            "AbleToScale",
            "True",
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {stabilized}"),
        )
    } else {
        ("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size".to_string())
    };

    let min = hpa.min_replicas();
    let max = hpa.spec.max_replicas;
    let period = |events: &[Stamped], secs: i32| -> i32 {
        events.iter().filter(|e| e.at.0 > now.0 - secs as i64).map(|e| e.replicas).sum()
    };
    let longest =
        up.policies.iter().chain(&down.policies).map(|p| p.period_seconds as i64).max().unwrap_or(0);
    history.scale_ups.retain(|e| e.at.0 > now.0 - longest);
    history.scale_downs.retain(|e| e.at.0 > now.0 - longest);
    let within = (
        "ScalingLimited",
        "False",
        "DesiredWithinRange",
        "the desired count is within the acceptable range".to_string(),
    );
    let (desired, limited) = if stabilized > current {
        let limit = rate_limit(
            &up,
            current,
            true,
            |s| period(&history.scale_ups, s),
            |s| period(&history.scale_downs, s),
        )
        .max(current);
        let allowed = max.min(limit);
        if stabilized > allowed {
            let reason = if allowed == max { "TooManyReplicas" } else { "ScaleUpLimit" };
            let message = if allowed == max {
                "the desired replica count is more than the maximum replica count".to_string()
            } else {
                "the desired replica count is increasing faster than the maximum scale rate".to_string()
            };
            (allowed, ("ScalingLimited", "True", reason, message))
        } else {
            (stabilized, within)
        }
    } else if stabilized < current {
        let limit = rate_limit(
            &down,
            current,
            false,
            |s| period(&history.scale_ups, s),
            |s| period(&history.scale_downs, s),
        )
        .min(current);
        let allowed = min.max(limit);
        if stabilized < allowed {
            let reason = if allowed == min { "TooFewReplicas" } else { "ScaleDownLimit" };
            let message = if allowed == min {
                "the desired replica count is less than the minimum replica count".to_string()
            } else {
                "the desired replica count is decreasing faster than the maximum scale rate".to_string()
            };
            (allowed, ("ScalingLimited", "True", reason, message))
        } else {
            (stabilized, within)
        }
    } else if stabilized > max {
        (
            max,
            (
                "ScalingLimited",
                "True",
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count".into(),
            ),
        )
    } else if stabilized < min {
        (
            min,
            (
                "ScalingLimited",
                "True",
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count".into(),
            ),
        )
    } else {
        (stabilized, within)
    };
    (desired, able, limited)
}

/// The furthest the rules let the count move from `current` now, given the
/// replicas added and removed within each policy's period.
fn rate_limit(
    rules: &HpaScalingRules,
    current: i32,
    up: bool,
    added: impl Fn(i32) -> i32,
    removed: impl Fn(i32) -> i32,
) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    // "Max" allows the biggest change: the highest limit going up, the lowest going down.
    let biggest_change = select != "Min";
    let mut result: Option<i32> = None;
    for p in &rules.policies {
        let start = current - added(p.period_seconds) + removed(p.period_seconds);
        let proposed = match (p.type_.as_str(), up) {
            ("Pods", true) => start + p.value,
            ("Pods", false) => start - p.value,
            (_, true) => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i32,
            (_, false) => (start as f64 * (1.0 - p.value as f64 / 100.0)) as i32,
        };
        result = Some(match result {
            None => proposed,
            Some(r) if up == biggest_change => r.max(proposed),
            Some(r) => r.min(proposed),
        });
    }
    result.unwrap_or(current)
}

#[cfg(test)]
mod tests;
