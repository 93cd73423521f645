//! How the leader's controllers write: every write is a compare-and-swap on
//! the revision the decision was made from, submitted concurrently so that
//! the proposer batches many of them into one Raft entry. A conflict means
//! the world moved; the next reconcile pass decides again from fresh state.

use futures::future::join_all;
use raft_store::proposer::ProposeError;
use raft_store::{Expect, Op, Outcome, Revision, Txn};

use crate::api::{Kind, Object, Time};
use crate::objects::{self, DeletePlan};
use crate::service::MasterCtx;

use super::cache::Cache;

/// One intended change.
#[derive(Debug, Clone)]
pub enum Write {
    /// Store `object` if the key is at `expect`.
    Put { object: Box<Object>, expect: Expect },
    /// Remove the object (gracefully for bound pods) if it is at `rev`.
    Delete { kind: Kind, namespace: String, name: String, rev: Revision },
    /// Remove the object at once, terminating or not, if it is at `rev`.
    Remove { kind: Kind, namespace: String, name: String, rev: Revision },
}

/// The outcome of a batch: how many writes landed, conflicted, and whether
/// this master lost the leadership while writing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub applied: usize,
    pub conflicts: usize,
    pub deposed: bool,
}

/// Commits `writes` concurrently and records what landed in `cache`.
pub async fn commit(ctx: &MasterCtx, cache: &mut Cache, writes: Vec<Write>, now: Time) -> Written {
    let mut planned = Vec::with_capacity(writes.len());
    for w in writes {
        let force = matches!(w, Write::Remove { .. });
        match w {
            Write::Put { object, expect } => {
                let object = *object;
                let key = objects::key(object.kind(), object.namespace(), &object.meta().name);
                let op = Op::Put { key, value: objects::encode(&object), expect };
                planned.push((op, Some(object), None));
            }
            Write::Delete { kind, namespace, name, rev } | Write::Remove { kind, namespace, name, rev } => {
                let Some((current, _)) = cache.get(kind, &namespace, &name) else { continue };
                let key = objects::key(kind, &namespace, &name);
                match objects::plan_delete(current, now, force) {
                    DeletePlan::Remove => planned.push((
                        Op::Delete { key, expect: Expect::Revision(rev) },
                        None,
                        Some((kind, namespace, name)),
                    )),
                    DeletePlan::MarkTerminating(next) => {
                        let op =
                            Op::Put { key, value: objects::encode(&next), expect: Expect::Revision(rev) };
                        planned.push((op, Some(*next), None));
                    }
                    DeletePlan::AlreadyTerminating => {}
                }
            }
        }
    }
    let results =
        join_all(planned.iter().map(|(op, _, _)| ctx.node.propose(Txn { ops: vec![op.clone()] }))).await;
    let mut out = Written::default();
    for ((_, object, removed), result) in planned.into_iter().zip(results) {
        match result {
            Ok((rev, Outcome::Applied(_))) => {
                out.applied += 1;
                if let Some(obj) = object {
                    cache.put(obj, rev);
                }
                if let Some((kind, ns, name)) = removed {
                    cache.remove(kind, &ns, &name);
                }
            }
            Ok((_, Outcome::Conflict(_))) => out.conflicts += 1,
            Err(ProposeError::NotLeader { .. }) | Err(ProposeError::Fatal(_)) => out.deposed = true,
            Err(e @ ProposeError::Limit(_)) => tracing::warn!(error = %e, "a controller write was refused"),
        }
    }
    out
}
