//! The planner against a fake world, step by step: the shell applies each
//! plan (created pods start Pending and become Ready one step later,
//! deleted pods terminate and are gone one step later, the clock advances a
//! second), and the rollout's promises are checked after every step until
//! it converges.

use super::*;
use crate::controllers::pods::{is_active, is_available};
use crate::controllers::testing::*;

struct World {
    d: Deployment,
    pods: Vec<Pod>,
    now: Time,
    created: usize,
}

impl World {
    /// `d` settled: its revision recorded and `replicas` pods available.
    fn settled(d: Deployment) -> World {
        let d = recorded(d);
        let pods = ready_members(&d, "a", usize::try_from(d.replicas()).unwrap_or(0));
        World { d, pods, now: at(1000), created: 0 }
    }

    /// One step: the node's work since the last one, then the controller's.
    fn step(&mut self) -> DeploymentPlan {
        let now = self.now;
        self.pods.retain(|p| !pods::is_terminating(p));
        for p in self.pods.iter_mut().filter(|p| is_active(p) && !p.is_ready()) {
            *p = p.clone().ready_since(now);
        }
        let plan = plan(&self.d, &self.pods, now);
        for name in &plan.delete {
            if let Some(p) = self.pods.iter_mut().find(|p| &p.metadata.name == name) {
                assert!(!pods::is_terminating(p), "{name} deleted twice");
                p.metadata.deletion_timestamp = Some(now);
            }
        }
        for c in &plan.create {
            for _ in 0..c.count {
                self.created += 1;
                let name = format!("{}-{}", self.d.metadata.name, self.created);
                self.pods.push(pod_for(&self.d, &c.hash, &name).on("n1").created(now));
            }
        }
        self.d.status = Some(plan.status.clone());
        self.d.metadata.annotations.extend(plan.annotations.clone());
        self.now = Time(now.0 + 1);
        plan
    }

    fn count(&self, f: impl Fn(&Pod) -> bool) -> usize {
        self.pods.iter().filter(|p| f(p)).count()
    }

    fn of_template(&self, p: &Pod) -> bool {
        p.metadata.labels.get(TEMPLATE_HASH_LABEL) == Some(&template_hash(&self.d.spec.template))
    }

    /// Steps until a plan asks for nothing and nothing is left to wait for
    /// (every pod of the new template, every replica seen available),
    /// checking `invariant` after each step.
    fn converge(&mut self, invariant: impl Fn(&World, usize)) -> usize {
        for step in 1..=200 {
            let plan = self.step();
            invariant(self, step);
            let settled = self.pods.iter().all(|p| self.of_template(p))
                && plan.status.available_replicas == self.d.replicas();
            if plan.create.is_empty() && plan.delete.is_empty() && settled {
                return step;
            }
        }
        panic!(
            "no convergence in 200 steps: {:?}",
            self.pods.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
        );
    }

    fn assert_complete(&self) {
        let replicas = usize::try_from(self.d.replicas()).unwrap_or(0);
        assert_eq!(self.pods.len(), replicas, "exactly replicas pods");
        assert!(
            self.pods.iter().all(|p| self.of_template(p) && p.is_ready()),
            "all of the new template, ready"
        );
        let s = self.d.status.clone().unwrap_or_default();
        assert_eq!(
            (s.replicas, s.updated_replicas, s.available_replicas),
            (self.d.replicas(), self.d.replicas(), self.d.replicas())
        );
        assert_eq!(self.d.metadata.annotations.get(REVISION_ANNOTATION).map(String::as_str), Some("2"));
    }
}

#[test]
fn a_rolling_update_stays_within_its_bounds_and_converges_to_the_new_template() {
    // (replicas, maxSurge, maxUnavailable, minReadySeconds)
    let cases = [
        (3, "25%", "25%", 0),
        (10, "25%", "25%", 0),
        (5, "0", "1", 0),
        (5, "2", "0", 0),
        (1, "25%", "25%", 0),
        (1, "0", "1", 0),
        (4, "100%", "0", 0),
        (4, "0", "100%", 0),
        (6, "1", "1", 3),
        (7, "30%", "40%", 2),
        (0, "25%", "25%", 0),
    ];
    for (replicas, surge, unavailable, min_ready) in cases {
        let case = format!(
            "replicas {replicas}, maxSurge {surge}, maxUnavailable {unavailable}, minReady {min_ready}"
        );
        let mut a = rolling(deployment("web", replicas), surge, unavailable);
        a.spec.min_ready_seconds = Some(min_ready);
        let mut world = World::settled(a);
        world.d = with_image(world.d.clone(), "img:2");
        let b = bounds(&world.d);
        let replicas = replicas as usize;
        let steps = world.converge(|w, step| {
            let active = w.count(is_active);
            let available = w.count(|p| is_active(p) && is_available(p, i64::from(min_ready), w.now));
            assert!(active <= replicas + b.max_surge, "{case}, step {step}: {active} pods");
            assert!(available + b.max_unavailable >= replicas, "{case}, step {step}: {available} available");
        });
        world.assert_complete();
        assert!(steps > 1 || replicas == 0, "{case}: a rollout takes steps");
    }
}

#[test]
fn a_recreate_update_never_runs_old_and_new_pods_together() {
    let mut world = World::settled(recreate(deployment("web", 4)));
    world.d = with_image(world.d.clone(), "img:2");
    world.converge(|w, step| {
        let new = w.count(|p| w.of_template(p));
        let old_running = w.count(|p| !w.of_template(p) && !pods::is_finished(p));
        assert!(new == 0 || old_running == 0, "step {step}: {new} new pods while {old_running} old run");
    });
    world.assert_complete();
}

#[test]
fn a_rollout_replaces_pods_lost_midway() {
    let mut world = World::settled(rolling(deployment("web", 4), "1", "1"));
    world.d = with_image(world.d.clone(), "img:2");
    world.step();
    world.step();
    // The node-lifecycle controller fails one old and one new pod.
    for name in ["a-3", "web-1"] {
        if let Some(p) = world.pods.iter_mut().find(|p| p.metadata.name == name) {
            *p = p.clone().phase(crate::api::pod::PodPhase::Failed);
        }
    }
    world.converge(|w, step| {
        assert!(w.count(is_active) <= 5, "step {step}");
    });
    world.assert_complete();
}
