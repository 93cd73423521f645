//! Leader election for applications: `coordination.k8s.io/v1` Leases taken
//! and renewed with compare-and-swap through real masters.

mod common;

use std::time::{Duration, Instant};

use common::TestCluster;
use control_plane::lease::LeaseLock;

fn lock(tc: &TestCluster, name: &str, identity: &str, secs: u64) -> LeaseLock {
    LeaseLock::new(tc.client(), "default", name, identity, Duration::from_secs(secs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_race_for_a_lease_and_one_takes_over_when_the_holder_stops() {
    let tc = TestCluster::start(3, &[]).await;

    // Eight candidates race for a fresh lease, three rounds: exactly one wins each.
    for round in 0..3 {
        let name = format!("race-{round}");
        let candidates: Vec<LeaseLock> = (0..8).map(|i| lock(&tc, &name, &format!("c{i}"), 10)).collect();
        let results = futures::future::join_all(candidates.iter().map(|c| c.try_acquire_or_renew())).await;
        let winners: Vec<&str> = candidates
            .iter()
            .zip(&results)
            .filter(|(_, r)| matches!(r, Ok(true)))
            .map(|(c, _)| c.identity())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}, results {results:?}");
        let stored = candidates[0].observe().await.unwrap().expect("the lease exists");
        assert_eq!(stored.spec.holder_identity.as_deref(), Some(winners[0]));
        // The winner renews; the others still cannot take it.
        let winner = candidates.iter().find(|c| c.identity() == winners[0]).unwrap();
        assert!(winner.try_acquire_or_renew().await.unwrap(), "the holder renews");
        for c in candidates.iter().filter(|c| c.identity() != winners[0]) {
            assert!(!c.try_acquire_or_renew().await.unwrap(), "{} took a held lease", c.identity());
        }
    }

    // The holder stops renewing: the other takes over one lease duration after it noticed, not before.
    let a = lock(&tc, "takeover", "a", 2);
    let b = lock(&tc, "takeover", "b", 2);
    assert!(a.try_acquire_or_renew().await.unwrap());
    let first_look = Instant::now();
    assert!(!b.try_acquire_or_renew().await.unwrap());
    let taken = loop {
        if b.try_acquire_or_renew().await.unwrap() {
            break first_look.elapsed();
        }
        assert!(first_look.elapsed() < Duration::from_secs(10), "b never took the expired lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(taken >= Duration::from_secs(2), "taken over after {taken:?}, before the lease expired");
    let lease = b.observe().await.unwrap().unwrap();
    assert_eq!(lease.spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.spec.lease_transitions, Some(1));
    // The old holder, back, finds it taken.
    assert!(!a.try_acquire_or_renew().await.unwrap());

    // A release hands it over at once.
    b.release().await.unwrap();
    assert!(a.try_acquire_or_renew().await.unwrap(), "a released lease is free at once");
    assert_eq!(a.observe().await.unwrap().unwrap().spec.lease_transitions, Some(2));
}
