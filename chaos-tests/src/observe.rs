//! What the checks see inside the simulated masters: every master that
//! became leader, with its term, in the order it happened (from openraft's
//! metrics), and a handle on each running master's Raft participant.
//!
//! openraft (without its `single-term-leader` feature, which Corral does not
//! enable) identifies a leader by (term, node id) and grants a vote to any
//! higher (term, id): two masters can both win term 1 (seed 101 of the
//! 5-master run: masters 5 and 4, 4 completing its election after 5 with a
//! lower vote). Such a leader cannot commit (a quorum holds the higher
//! vote). So the invariant checked is the one that matters for safety: every
//! applied entry's log id names the leader that appended it, and in no term
//! do entries of two leaders get applied ([`check_one_committing_leader_per_term`]);
//! terms with two leaders elected are counted and reported, not failed. Enabling `single-term-leader` was tried and reverted: a
//! two-master majority then split its votes forever (see the README's
//! "Chaos tests").
//!
//! turmoil runs every host on the test's thread, so this is thread-local:
//! tests running in parallel each see their own simulation. A master's
//! entry goes away when its host crashes (the host's future is dropped), so
//! the handle never keeps a crashed master's database open.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use openraft::ServerState;
use raft_store::state_machine::AppliedLeaders;
use raft_store::{NodeId, RaftNode};

thread_local! {
    static LEADERS: RefCell<Vec<(u64, NodeId)>> = RefCell::default();
    static RUNNING: RefCell<BTreeMap<NodeId, RaftNode>> = RefCell::default();
    /// Every master incarnation's record of the leaders whose entries it
    /// applied (kept after a crash: it holds no database).
    static APPLIED: RefCell<Vec<AppliedLeaders>> = RefCell::default();
}

/// Forgets everything seen: call at the start of every simulation.
pub fn reset() {
    LEADERS.with(|l| l.borrow_mut().clear());
    RUNNING.with(|r| r.borrow_mut().clear());
    APPLIED.with(|a| a.borrow_mut().clear());
}

/// Keeps `node` visible to the checks until the guard is dropped (when its
/// host crashes), and records every term in which it is leader.
pub fn register(node: &RaftNode) -> Registration {
    let id = node.id;
    RUNNING.with(|r| r.borrow_mut().insert(id, node.clone()));
    APPLIED.with(|a| a.borrow_mut().push(node.state_machine.applied_leaders()));
    let mut metrics = node.raft.metrics();
    let watcher = tokio::spawn(async move {
        let mut led = None;
        loop {
            let (state, term) = {
                let m = metrics.borrow_and_update();
                (m.state, m.current_term)
            };
            let now = (state == ServerState::Leader).then_some(term);
            if now.is_some() && now != led {
                LEADERS.with(|l| l.borrow_mut().push((term, id)));
            }
            led = now;
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
    Registration { id, watcher }
}

/// Removes its master from view when dropped.
pub struct Registration {
    id: NodeId,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.watcher.abort();
        // The thread-local may already be gone when the test thread ends.
        let _ = RUNNING.try_with(|r| r.borrow_mut().remove(&self.id));
    }
}

/// Every election won, in order: (term, master).
pub fn elections() -> Vec<(u64, NodeId)> {
    LEADERS.with(|l| l.borrow().clone())
}

/// Every term in which some master was leader, with who.
pub fn leaders_by_term() -> BTreeMap<u64, BTreeSet<NodeId>> {
    let mut by_term: BTreeMap<u64, BTreeSet<NodeId>> = BTreeMap::new();
    for (term, id) in elections() {
        by_term.entry(term).or_default().insert(id);
    }
    by_term
}

/// Terms in which more than one master became leader.
pub fn terms_with_two_leaders() -> Vec<(u64, BTreeSet<NodeId>)> {
    leaders_by_term().into_iter().filter(|(_, ids)| ids.len() > 1).collect()
}

/// By term, the leaders whose entries some master applied: the leaders
/// that committed something.
pub fn committing_leaders_by_term() -> BTreeMap<u64, BTreeSet<NodeId>> {
    let mut by_term: BTreeMap<u64, BTreeSet<NodeId>> = BTreeMap::new();
    APPLIED.with(|a| {
        for leaders in a.borrow().iter() {
            for (term, ids) in leaders.lock().expect("applied leaders").iter() {
                by_term.entry(*term).or_default().extend(ids);
            }
        }
    });
    by_term
}

/// The invariant "at most one leader per term", in the form openraft can
/// promise: two masters may be elected in one term, but entries of only one
/// of them are ever committed.
pub fn check_one_committing_leader_per_term() -> Result<usize, String> {
    let by_term = committing_leaders_by_term();
    let two: Vec<_> = by_term.iter().filter(|(_, ids)| ids.len() > 1).collect();
    if two.is_empty() {
        Ok(by_term.len())
    } else {
        Err(format!("two leaders committed entries in one term (term, leaders): {two:?}"))
    }
}

/// The running master that leads in the highest term, if any.
pub fn current_leader() -> Option<NodeId> {
    RUNNING.with(|r| {
        r.borrow()
            .values()
            .filter_map(|n| {
                let m = n.raft.metrics().borrow().clone();
                (m.state == ServerState::Leader).then_some((m.current_term, n.id))
            })
            .max()
            .map(|(_, id)| id)
    })
}

/// The Raft participant of master `id`, while its host runs.
pub fn running(id: NodeId) -> Option<RaftNode> {
    RUNNING.with(|r| r.borrow().get(&id).cloned())
}

/// The ids of the masters whose hosts run now.
pub fn running_ids() -> Vec<NodeId> {
    RUNNING.with(|r| r.borrow().keys().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_committing_in_one_term_fail_the_check() {
        reset();
        let first = AppliedLeaders::default();
        first.lock().unwrap().insert(1, BTreeSet::from([2]));
        let second = AppliedLeaders::default();
        second.lock().unwrap().insert(1, BTreeSet::from([2]));
        second.lock().unwrap().insert(2, BTreeSet::from([3]));
        APPLIED.with(|a| a.borrow_mut().extend([first.clone(), second]));
        assert_eq!(check_one_committing_leader_per_term(), Ok(2));
        first.lock().unwrap().entry(2).or_default().insert(1);
        let err = check_one_committing_leader_per_term().unwrap_err();
        assert!(err.contains("(2, {1, 3})"), "{err}");
        reset();
    }
}
