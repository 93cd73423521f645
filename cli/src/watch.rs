//! The one watch loop of the CLI: list, then follow the watch from the
//! list's revision, keeping the current objects; on a broken or compacted
//! stream (a master went away, history was trimmed) list and watch again.
//! `get -w`, `rollout status` and `delete --wait` are steps over it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use control_plane::api::labels::Selector;
use control_plane::api::{Kind, Object};
use control_plane::CorralClient;
use futures::StreamExt;
use raft_store::Revision;
use tokio::time::Instant;

use crate::commands::{CliError, Result};

/// The objects seen so far, by `namespace/name`.
pub type Seen = BTreeMap<String, Object>;

/// What changed: the first listing, or one watch event.
pub enum Change<'a> {
    Listed,
    Event { type_: &'a str, object: &'a Object },
}

/// What to follow.
pub struct Follow<'a> {
    pub kind: Kind,
    /// Empty: every namespace.
    pub namespace: &'a str,
    pub selector: &'a str,
    /// Give up (with an error naming `what`) at this instant; `None`: never.
    pub deadline: Option<Instant>,
    pub what: &'a str,
}

fn key(o: &Object) -> String {
    format!("{}/{}", o.namespace(), o.meta().name)
}

/// Calls `step` after the listing and after every event (with the objects
/// as they are then) until it breaks with a value, or the deadline passes.
pub async fn follow<T>(
    client: &CorralClient,
    f: &Follow<'_>,
    mut step: impl FnMut(&Seen, Change<'_>) -> ControlFlow<T>,
) -> Result<T> {
    let selector: Selector =
        f.selector.parse().map_err(|e| CliError::msg(format!("-l {:?}: {e}", f.selector)))?;
    loop {
        let (objects, rev) =
            within(f, client.list_objects(f.kind.plural(), f.namespace, f.selector)).await??;
        let mut seen: Seen = objects.into_iter().map(|o| (key(&o), o)).collect();
        if let ControlFlow::Break(v) = step(&seen, Change::Listed) {
            return Ok(v);
        }
        let stream = within(f, client.watch_objects(f.kind.plural(), f.namespace, Some(Revision(rev.0 + 1))))
            .await??;
        let mut stream = Box::pin(stream);
        while let Some(batch) = within(f, stream.next()).await? {
            // A broken stream (compacted history, a master gone): list again.
            let Ok(events) = batch else { break };
            for e in events {
                if !selector.matches(&e.object.meta().labels) {
                    continue;
                }
                match e.type_.as_str() {
                    "DELETED" => seen.remove(&key(&e.object)),
                    _ => seen.insert(key(&e.object), e.object.clone()),
                };
                if let ControlFlow::Break(v) =
                    step(&seen, Change::Event { type_: &e.type_, object: &e.object })
                {
                    return Ok(v);
                }
            }
        }
        tracing::debug!(what = f.what, "watch ended; listing again");
        within(f, tokio::time::sleep(Duration::from_millis(200))).await?;
    }
}

/// `fut`, or a timeout error once `f.deadline` passes.
async fn within<F: std::future::Future>(f: &Follow<'_>, fut: F) -> Result<F::Output> {
    match f.deadline {
        Some(d) => tokio::time::timeout_at(d, fut)
            .await
            .map_err(|_| CliError::msg(format!("timed out waiting for {} (raise --timeout)", f.what))),
        None => Ok(fut.await),
    }
}
