//! Leadership supervision: runs a task while this master leads, and cancels
//! it as soon as it does not, well within one election timeout.
//!
//! "Leads" means Raft says so *and* a quorum acknowledged this leader less
//! than an election timeout ago: openraft 0.9 keeps an isolated leader in
//! the Leader state until it hears a newer term, but such a leader can
//! commit nothing, and its controllers must stop deciding.

use std::future::Future;
use std::time::Duration;

use openraft::ServerState;
use raft_store::RaftNode;
use tokio_util::sync::CancellationToken;

/// Whether `metrics` show this master leading with a fresh quorum.
pub fn leads(m: &openraft::RaftMetrics<u64, openraft::BasicNode>, id: u64, election_ms: u64) -> bool {
    m.state == ServerState::Leader
        && m.current_leader == Some(id)
        && m.millis_since_quorum_ack.is_some_and(|ms| ms < election_ms)
}

/// Runs `run(term, cancel)` for each leadership term of this master until
/// `stop` is cancelled. The task must end promptly once `cancel` fires.
pub async fn supervise<F, Fut>(node: RaftNode, election_ms: u64, stop: CancellationToken, run: F)
where
    F: Fn(u64, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut metrics = node.raft.metrics();
    let check = Duration::from_millis((election_ms / 3).max(10));
    let mut current: Option<(u64, CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let m = metrics.borrow_and_update().clone();
        let leading = leads(&m, node.id, election_ms);
        match &current {
            Some((term, token, _)) if !leading || *term != m.current_term => {
                tracing::info!(
                    master = node.id,
                    term,
                    "leadership lost: stopping the scheduler and controllers"
                );
                token.cancel();
                current = None;
                continue;
            }
            None if leading => {
                tracing::info!(
                    master = node.id,
                    term = m.current_term,
                    "leading: starting the scheduler and controllers"
                );
                let token = CancellationToken::new();
                let handle = tokio::spawn(run(m.current_term, token.clone()));
                current = Some((m.current_term, token, handle));
            }
            _ => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = metrics.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(check) => {}
        }
    }
    if let Some((_, token, handle)) = current {
        token.cancel();
        let _ = handle.await;
    }
}
