//! Pods under faults: 3 masters and 3 node agents (the real agent on the
//! in-memory runtime), a Deployment of 6, random master faults, and one
//! node cut off from every master past its grace and eviction periods; then
//! heal, quiet, and every invariant of `chaos_tests::pods` checked.

use chaos_tests::pods::{run, Config};
use chaos_tests::run_seeded;

#[test]
fn pods_stay_bound_once_and_are_replaced_when_a_node_is_cut_off() {
    let cfg = Config::new("pods");
    run_seeded("pods", &[1, 2, 3, 4, 5, 6], |seed| run(seed, &cfg));
}

/// The replacement check is real: a node cut off for less than the grace
/// period keeps its pods, and the run says so.
#[test]
fn a_node_cut_off_within_its_grace_period_keeps_its_pods_and_the_check_says_so() {
    let cfg = Config { cut_for: std::time::Duration::from_secs(8), ..Config::new("pods") };
    let err = run(1, &cfg).expect_err("pods replaced within the grace period").to_string();
    assert!(err.contains("were not replaced by Ready pods on other nodes while it was cut off"), "{err}");
}
