use super::*;
use crate::api::autoscaling::{
    resource_metric, CrossVersionObjectReference, HpaBehavior, HpaSpec, MetricTarget,
};

fn hpa(min: i32, max: i32, metrics: Vec<MetricSpec>) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        api_version: "autoscaling/v2".into(),
        kind: "HorizontalPodAutoscaler".into(),
        spec: HpaSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: "web".into(),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics,
            behavior: None,
        },
        ..Default::default()
    }
}

fn cpu50() -> HorizontalPodAutoscaler {
    hpa(1, 10, vec![resource_metric("cpu", 50)])
}

/// A ready pod requesting 200m cpu and 100Mi memory that uses `cpu_m` millicores.
fn pod(name: &str, cpu_m: u64) -> PodSample {
    PodSample {
        name: name.into(),
        requests: BTreeMap::from([("cpu".into(), 200), ("memory".into(), 100 * (1 << 20) * 1000)]),
        usage: Some(BTreeMap::from([("cpu".into(), cpu_m), ("memory".into(), 50 * (1 << 20) * 1000)])),
        ..Default::default()
    }
}

fn pods(usages: &[u64]) -> Vec<PodSample> {
    usages.iter().enumerate().map(|(i, u)| pod(&format!("p{i}"), *u)).collect()
}

fn t(secs: i64) -> Time {
    Time(1_800_000_000 + secs)
}

fn decide_once(h: &HorizontalPodAutoscaler, current: i32, pods: &[PodSample]) -> Decision {
    decide(h, current, pods, &mut History::default(), t(0))
}

fn condition<'a>(d: &'a Decision, type_: &str) -> (&'a str, &'a str) {
    let c = d
        .conditions
        .iter()
        .find(|c| c.0 == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:?}", d.conditions));
    (c.1, c.2)
}

#[test]
fn desired_is_current_times_the_usage_ratio_rounded_up() {
    // (usage of each pod at 200m requests, target 50% = 100m each) -> desired
    let cases: &[(&[u64], i32)] = &[
        (&[200, 200], 4),      // 200% of target -> double
        (&[150, 150, 150], 5), // ratio 1.5 x 3 = 4.5 -> 5
        (&[100, 100], 2),      // exactly on target
        (&[108, 108], 2),      // within the 10% tolerance
        (&[89, 89], 2),        // ratio 0.89: ceil(1.78) = 2
        (&[20, 20, 20, 20], 1),
        (&[1000], 5), // ratio 10, but at most max(+4 pods, +100%) per 15 s
    ];
    for &(usages, want) in cases {
        let d = decide_once(&cpu50(), usages.len() as i32, &pods(usages));
        assert_eq!(d.desired, want, "usages {usages:?}: {:?}", d.conditions);
    }
}

#[test]
fn tolerance_is_ten_percent_either_way() {
    let cpu50 = || hpa(1, 100, vec![resource_metric("cpu", 50)]);
    let d = decide_once(&cpu50(), 10, &pods(&[111; 10]));
    assert_eq!(d.desired, 12, "ratio 1.11 is outside the tolerance");
    let d = decide_once(&cpu50(), 10, &pods(&[109; 10]));
    assert_eq!(d.desired, 10, "ratio 1.09 is within it");
    let d = decide_once(&cpu50(), 10, &pods(&[88; 10]));
    assert_eq!(d.desired, 9, "ratio 0.88 is outside it");
    let d = decide_once(&cpu50(), 10, &pods(&[91; 10]));
    assert_eq!(d.desired, 10, "ratio 0.91 is within it");
}

#[test]
fn current_metrics_report_utilization_and_average() {
    let d = decide_once(&cpu50(), 2, &pods(&[50, 70]));
    let r = d.current_metrics[0].resource.as_ref().unwrap();
    assert_eq!(r.name, "cpu");
    assert_eq!(r.current.average_utilization, Some(30));
    assert_eq!(r.current.average_value.as_ref().unwrap().as_str(), "60m");
    assert_eq!(condition(&d, "ScalingActive"), ("True", "ValidMetricFound"));
}

#[test]
fn missing_metrics_damp_a_scale_down_and_a_scale_up() {
    // Scale-down: 2 pods at 10% of request, 2 without samples counted at 100%:
    // (20+20+200+200)/(4*100) = 1.1 -> within tolerance / direction flipped: no change.
    let mut ps = pods(&[20, 20, 0, 0]);
    ps[2].usage = None;
    ps[3].usage = None;
    assert_eq!(decide_once(&cpu50(), 4, &ps).desired, 4);
    // Scale-up: 1 pod at 400m, 1 missing counted as idle: (400+0)/(2*100) = 2 -> 4.
    let mut ps = pods(&[400, 0]);
    ps[1].usage = None;
    assert_eq!(decide_once(&cpu50(), 2, &ps).desired, 4);
}

#[test]
fn unready_pods_count_as_idle_on_a_cpu_scale_up_only() {
    let mut ps = pods(&[300, 300, 0]);
    ps[2].unready = true;
    // Without the unready pod the ratio is 3 (-> 6); counted idle: 600/300 = 2 -> ceil(2*3) = 6.
    assert_eq!(decide_once(&cpu50(), 3, &ps).desired, 6);
    let mut ps = pods(&[120, 120, 0, 0]);
    ps[2].unready = true;
    ps[3].unready = true;
    // 240/400 = 0.6 < 1.1: growing would flip to shrinking: unchanged.
    assert_eq!(decide_once(&cpu50(), 4, &ps).desired, 4);
}

#[test]
fn ignored_pods_do_not_count_and_no_metrics_at_all_is_reported() {
    let mut ps = pods(&[200, 200]);
    ps[1].ignored = true;
    assert_eq!(decide_once(&cpu50(), 2, &ps).desired, 2, "1 pod at ratio 2 -> 2");
    let mut ps = pods(&[0, 0]);
    ps.iter_mut().for_each(|p| p.usage = None);
    let d = decide_once(&cpu50(), 2, &ps);
    assert_eq!(d.desired, 2);
    assert_eq!(condition(&d, "ScalingActive"), ("False", "FailedGetResourceMetric"));
    assert!(d.conditions.iter().any(|c| c.3.contains("did not receive metrics")), "{:?}", d.conditions);
}

#[test]
fn pods_without_requests_cannot_be_measured_by_utilization() {
    let mut ps = pods(&[100]);
    ps[0].requests.remove("cpu");
    let d = decide_once(&cpu50(), 1, &ps);
    assert_eq!(condition(&d, "ScalingActive"), ("False", "FailedGetResourceMetric"));
    assert!(d.conditions.iter().any(|c| c.3.contains("missing request for cpu")), "{:?}", d.conditions);
}

#[test]
fn unsupported_metrics_are_reported_and_average_value_works() {
    let mut h = hpa(1, 10, vec![MetricSpec { type_: "Pods".into(), resource: None }]);
    let d = decide_once(&h, 2, &pods(&[100, 100]));
    assert!(d.conditions.iter().any(|c| c.3.contains("\"Pods\" is not supported")), "{:?}", d.conditions);
    h.spec.metrics = vec![MetricSpec {
        type_: "Resource".into(),
        resource: Some(crate::api::autoscaling::ResourceMetricSource {
            name: "memory".into(),
            target: MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some("25Mi".parse().unwrap()),
                ..Default::default()
            },
        }),
    }];
    // Each pod uses 50Mi against 25Mi: double.
    assert_eq!(decide_once(&h, 2, &pods(&[0, 0])).desired, 4);
}

#[test]
fn the_largest_proposal_of_several_metrics_wins() {
    let h = hpa(1, 10, vec![resource_metric("cpu", 50), resource_metric("memory", 25)]);
    // cpu: on target (2); memory 50% of request vs 25% target -> 4.
    assert_eq!(decide_once(&h, 2, &pods(&[100, 100])).desired, 4);
}

#[test]
fn bounded_by_min_and_max() {
    let d = decide_once(&cpu50(), 8, &pods(&[1000; 8]));
    assert_eq!(d.desired, 10);
    assert_eq!(condition(&d, "ScalingLimited"), ("True", "TooManyReplicas"));
    let h = hpa(2, 10, vec![resource_metric("cpu", 50)]);
    let mut history = History::default();
    let mut behavior_free = h.clone();
    behavior_free.spec.behavior = Some(HpaBehavior {
        scale_down: Some(HpaScalingRules { stabilization_window_seconds: Some(0), ..Default::default() }),
        scale_up: None,
    });
    let d = decide(&behavior_free, 4, &pods(&[1, 1, 1, 1]), &mut history, t(0));
    assert_eq!(d.desired, 2);
    assert_eq!(condition(&d, "ScalingLimited"), ("True", "TooFewReplicas"));
    // Outside the bounds already: straight back in, whatever the metrics.
    assert_eq!(decide_once(&h, 12, &pods(&[100; 12])).desired, 10);
    assert_eq!(decide_once(&h, 1, &pods(&[100])).desired, 2);
    // A target scaled to zero by hand disables autoscaling.
    let d = decide_once(&h, 0, &[]);
    assert_eq!((d.desired, condition(&d, "ScalingActive")), (0, ("False", "ScalingDisabled")));
}

#[test]
fn scale_down_waits_out_the_stabilization_window() {
    let h = cpu50();
    let mut history = History::default();
    // Busy: 4 -> 8.
    assert_eq!(decide(&h, 4, &pods(&[200; 4]), &mut history, t(0)).desired, 8);
    // Idle right after: the recommendation of 8 within the last 300 s holds it.
    let d = decide(&h, 8, &pods(&[10; 8]), &mut history, t(15));
    assert_eq!(d.desired, 8);
    assert_eq!(condition(&d, "AbleToScale"), ("True", "ScaleDownStabilized"));
    assert_eq!(decide(&h, 8, &pods(&[10; 8]), &mut history, t(200)).desired, 8);
    // 300 s after the last high recommendation: down to what the metrics ask (ceil(0.1 x 8) = 1).
    let d = decide(&h, 8, &pods(&[10; 8]), &mut history, t(301));
    assert_eq!(d.desired, 1);
    assert!(d.rescale_reason.unwrap().contains("below target"));
}

#[test]
fn a_shortened_window_is_honoured() {
    let mut h = cpu50();
    h.spec.behavior = Some(HpaBehavior {
        scale_down: Some(HpaScalingRules { stabilization_window_seconds: Some(20), ..Default::default() }),
        scale_up: None,
    });
    let mut history = History::default();
    assert_eq!(decide(&h, 2, &pods(&[200; 2]), &mut history, t(0)).desired, 4);
    assert_eq!(decide(&h, 4, &pods(&[10; 4]), &mut history, t(10)).desired, 4, "held by the 20 s window");
    assert_eq!(decide(&h, 4, &pods(&[10; 4]), &mut history, t(21)).desired, 1);
}

#[test]
fn scale_up_rate_is_limited_by_the_policies() {
    // Default: max(4 pods, 100%) per 15 s: from 2, at most 6 at once, whatever is asked.
    let h = hpa(1, 100, vec![resource_metric("cpu", 50)]);
    let mut history = History::default();
    let d = decide(&h, 2, &pods(&[2000, 2000]), &mut history, t(0));
    assert_eq!(d.desired, 6);
    assert_eq!(condition(&d, "ScalingLimited"), ("True", "ScaleUpLimit"));
    // Within the same 15 s, the 4 added already count: the period started at 2 -> still 6.
    assert_eq!(decide(&h, 6, &pods(&[2000; 6]), &mut history, t(5)).desired, 6);
    // A new period: from 6, 100% -> 12.
    assert_eq!(decide(&h, 6, &pods(&[2000; 6]), &mut history, t(16)).desired, 12);
    // A Pods policy of 1 per minute, Min-select with Disabled down.
    let mut slow = h.clone();
    slow.spec.behavior = Some(HpaBehavior {
        scale_up: Some(HpaScalingRules {
            policies: vec![HpaScalingPolicy { type_: "Pods".into(), value: 1, period_seconds: 60 }],
            ..Default::default()
        }),
        scale_down: Some(HpaScalingRules { select_policy: Some("Disabled".into()), ..Default::default() }),
    });
    let mut history = History::default();
    assert_eq!(decide(&slow, 2, &pods(&[2000, 2000]), &mut history, t(0)).desired, 3);
    assert_eq!(decide(&slow, 3, &pods(&[2000; 3]), &mut history, t(30)).desired, 3);
    let d = decide(&slow, 3, &pods(&[1; 3]), &mut history, t(1000));
    assert_eq!(d.desired, 3, "scale-down disabled");
}
