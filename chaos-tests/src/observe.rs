//! What the checks see inside the simulated masters: every master that
//! believed itself leader, per term (from openraft's metrics, as it
//! happened), and a handle on each running master's Raft participant.
//!
//! turmoil runs every host on the test's thread, so this is thread-local:
//! tests running in parallel each see their own simulation. A master's
//! entry goes away when its host crashes (the host's future is dropped), so
//! the handle never keeps a crashed master's database open.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use openraft::ServerState;
use raft_store::{NodeId, RaftNode};

thread_local! {
    static LEADERS: RefCell<BTreeMap<u64, BTreeSet<NodeId>>> = RefCell::default();
    static RUNNING: RefCell<BTreeMap<NodeId, RaftNode>> = RefCell::default();
}

/// Forgets everything seen: call at the start of every simulation.
pub fn reset() {
    LEADERS.with(|l| l.borrow_mut().clear());
    RUNNING.with(|r| r.borrow_mut().clear());
}

/// Keeps `node` visible to the checks until the guard is dropped (when its
/// host crashes), and records every term in which it is leader.
pub fn register(node: &RaftNode) -> Registration {
    let id = node.id;
    RUNNING.with(|r| r.borrow_mut().insert(id, node.clone()));
    let mut metrics = node.raft.metrics();
    let watcher = tokio::spawn(async move {
        loop {
            let (state, term) = {
                let m = metrics.borrow_and_update();
                (m.state, m.current_term)
            };
            if state == ServerState::Leader {
                LEADERS.with(|l| l.borrow_mut().entry(term).or_default().insert(id));
            }
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

/// Every term in which some master was leader, with who.
pub fn leaders_by_term() -> BTreeMap<u64, BTreeSet<NodeId>> {
    LEADERS.with(|l| l.borrow().clone())
}

/// Terms in which more than one master was leader (must be none).
pub fn terms_with_two_leaders() -> Vec<(u64, BTreeSet<NodeId>)> {
    leaders_by_term().into_iter().filter(|(_, ids)| ids.len() > 1).collect()
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
