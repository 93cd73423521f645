//! The one client of the Corral API: given any master addresses, it finds
//! one that answers, retries while leadership moves, and turns gRPC statuses
//! into errors that say what to do.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::{Stream, StreamExt};
use raft_store::transport::Dialer;
use raft_store::{Event, EventKind, KeyValue, NodeId, Revision, Txn};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::api::Object;
use crate::convert;
use crate::error::{is_conflict, is_not_applied};
use crate::pb;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::objects_client::ObjectsClient;
use crate::pb::store_client::StoreClient;

/// How long one attempt against one master may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("no master reachable at {addrs}: is the cluster running? try `corral up` (last error: {last})")]
    NoMaster { addrs: String, last: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Compacted(String),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("the cluster did not answer in time ({0}); it may be electing a leader or have lost its quorum")]
    Timeout(String),
    /// A write whose outcome nobody confirmed: an attempt got no answer (it
    /// may have been applied), and a retry could not tell.
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Other(String),
}

/// Whether a call changes the store. A write attempt that got no answer may
/// still have been applied, so a retry that then meets a conflict, "already
/// exists" or "not found" may be meeting that very write: the caller is told
/// the outcome is unknown, never a misleading refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Read,
    Write,
}

impl ClientError {
    fn from_status(s: Status) -> Self {
        let m = s.message().to_string();
        match s.code() {
            _ if is_conflict(&s) => ClientError::Conflict(m),
            Code::OutOfRange => ClientError::Compacted(m),
            Code::InvalidArgument => ClientError::InvalidArgument(m),
            Code::NotFound => ClientError::NotFound(m),
            Code::AlreadyExists | Code::FailedPrecondition => ClientError::Refused(m),
            Code::DeadlineExceeded => ClientError::Timeout(m),
            _ => ClientError::Other(format!("{:?}: {m}", s.code())),
        }
    }
}

/// Whether an error means "try again, maybe elsewhere": the master is
/// unreachable, electing, or lost the leadership while we asked.
fn retriable(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded)
}

/// Whether `status` is a connection this process could not open (refused,
/// no route): nothing was sent. Found by the I/O error behind it.
fn never_connected(status: &Status) -> bool {
    use std::io::ErrorKind::*;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            );
        }
        cause = e.source();
    }
    false
}

/// The final error of a call, knowing whether an earlier write attempt may
/// have been applied.
fn after(unanswered: Option<String>, e: ClientError) -> ClientError {
    match (unanswered, e) {
        (Some(first), ClientError::Conflict(m) | ClientError::Refused(m) | ClientError::NotFound(m)) => {
            ClientError::Unknown(format!(
                "the write may or may not have been applied: an attempt got no answer ({first}), and the retry was refused ({m}), perhaps because of that very attempt; read it back to see"
            ))
        }
        (_, e) => e,
    }
}

/// A client of the cluster at any of `addrs`. Cheap to clone.
#[derive(Clone)]
pub struct CorralClient {
    addrs: Vec<String>,
    dialer: Arc<dyn Dialer>,
    channels: Vec<Option<Channel>>,
    timeout: Duration,
    backoff: (Duration, Duration),
    preferred: Arc<std::sync::atomic::AtomicUsize>,
}

impl CorralClient {
    pub fn new(addrs: Vec<String>, dialer: Arc<dyn Dialer>) -> Self {
        let channels = addrs.iter().map(|a| dialer.channel(a).ok()).collect();
        CorralClient {
            addrs,
            dialer,
            channels,
            timeout: Duration::from_secs(15),
            backoff: (Duration::from_millis(50), Duration::from_millis(500)),
            preferred: Arc::default(),
        }
    }

    /// How long a call keeps retrying before it gives up.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The pause between rounds over all masters: from `min`, doubling up to `max`.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Runs `call` against the masters in turn until one answers, the
    /// answer is final, or the timeout passes.
    async fn with_retry<T, F, Fut>(&self, effect: Effect, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        if self.addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no master address given: use --server or CORRAL_SERVER".into(),
            ));
        }
        let deadline = Instant::now() + self.timeout;
        let mut last = String::from("none");
        let mut backoff = self.backoff.0;
        let mut reached_any = false;
        // A write attempt that may have been applied: what became of it.
        let mut unanswered: Option<String> = None;
        let start = self.preferred.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            for k in 0..self.addrs.len() {
                let i = (start + k) % self.addrs.len();
                let Some(channel) = self.channels[i].clone() else {
                    last = format!("{}: invalid address", self.addrs[i]);
                    continue;
                };
                let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, call(channel)).await;
                match attempt {
                    Ok(Ok(v)) => {
                        self.preferred.store(i, std::sync::atomic::Ordering::Relaxed);
                        return Ok(v);
                    }
                    Ok(Err(s)) if retriable(&s) => {
                        // A status built by this process (connect failure) has a source;
                        // one a master sent over the wire does not.
                        let local = std::error::Error::source(&s).is_some();
                        reached_any |= !local;
                        last = format!("{}: {}", self.addrs[i], s.message());
                        // Surely not applied: a connection that never opened, or a
                        // master that says it proposed nothing (not the leader). A
                        // connection that broke mid-call may have carried the write.
                        let surely_not = never_connected(&s) || is_not_applied(&s);
                        if effect == Effect::Write && !surely_not {
                            unanswered = Some(last.clone());
                        }
                        tracing::debug!(master = %self.addrs[i], error = %s.message(), "retriable error");
                    }
                    Ok(Err(s)) => return Err(after(unanswered, ClientError::from_status(s))),
                    Err(_) => {
                        last = format!("{}: no answer within {ATTEMPT_TIMEOUT:?}", self.addrs[i]);
                        if effect == Effect::Write {
                            unanswered = Some(last.clone());
                        }
                        tracing::debug!(master = %self.addrs[i], "no answer within {ATTEMPT_TIMEOUT:?}");
                    }
                }
                if Instant::now() >= deadline {
                    return Err(self.give_up(reached_any, last, unanswered));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.backoff.1);
            if Instant::now() >= deadline {
                return Err(self.give_up(reached_any, last, unanswered));
            }
        }
    }

    fn give_up(&self, reached_any: bool, last: String, unanswered: Option<String>) -> ClientError {
        if let Some(first) = unanswered {
            ClientError::Unknown(format!(
                "the write may or may not have been applied: an attempt got no answer ({first}) and no master confirmed it within {:?} (last error: {last}); read it back to see",
                self.timeout
            ))
        } else if reached_any {
            ClientError::Timeout(last)
        } else {
            ClientError::NoMaster { addrs: self.addrs.join(", "), last }
        }
    }

    fn store(ch: Channel) -> StoreClient<Channel> {
        StoreClient::new(ch).max_decoding_message_size(64 << 20)
    }

    fn request<T>(msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(ATTEMPT_TIMEOUT);
        req
    }

    /// One store RPC with retries: `f` gets a fresh client and request per attempt.
    async fn store_call<T, R, F, Fut>(&self, effect: Effect, msg: T, f: F) -> Result<R, ClientError>
    where
        T: Clone,
        F: Fn(StoreClient<Channel>, Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.with_retry(effect, |ch| f(Self::store(ch), Self::request(msg.clone())))
            .await
            .map(|r| r.into_inner())
    }

    /// One cluster RPC with retries.
    async fn cluster_call<T, R, F, Fut>(&self, effect: Effect, msg: T, f: F) -> Result<R, ClientError>
    where
        T: Clone,
        F: Fn(ClusterClient<Channel>, Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.with_retry(effect, |ch| f(ClusterClient::new(ch), Self::request(msg.clone())))
            .await
            .map(|r| r.into_inner())
    }

    /// Reads one key; `stale` skips the read index.
    pub async fn get(&self, key: &[u8], stale: bool) -> Result<(Option<KeyValue>, Revision), ClientError> {
        let msg = pb::GetRequest { key: key.to_vec(), stale };
        let reply = self.store_call(Effect::Read, msg, |mut c, r| async move { c.get(r).await }).await?;
        Ok((reply.kv.map(kv_from_pb), Revision(reply.revision)))
    }

    /// Lists every key under `prefix` (paging through the server's pages).
    pub async fn list(&self, prefix: &[u8], stale: bool) -> Result<(Vec<KeyValue>, Revision), ClientError> {
        let mut out = Vec::new();
        let mut start_after = Vec::new();
        loop {
            let msg = pb::ListRequest {
                prefix: prefix.to_vec(),
                start_after: start_after.clone(),
                limit: 1000,
                stale,
            };
            let reply = self.store_call(Effect::Read, msg, |mut c, r| async move { c.list(r).await }).await?;
            out.extend(reply.kvs.into_iter().map(kv_from_pb));
            if !reply.more {
                return Ok((out, Revision(reply.revision)));
            }
            start_after = out.last().map(|kv| kv.key.clone()).unwrap_or_default();
        }
    }

    /// Writes a key; `expected` is a compare-and-swap condition (see [`raft_store::Expect`]).
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        expected: Option<u64>,
    ) -> Result<Revision, ClientError> {
        let msg = pb::PutRequest { key: key.to_vec(), value: value.to_vec(), expected_revision: expected };
        let reply = self.store_call(Effect::Write, msg, |mut c, r| async move { c.put(r).await }).await?;
        Ok(Revision(reply.revision))
    }

    /// Deletes a key; returns the revision of the delete and whether the key existed.
    pub async fn delete(&self, key: &[u8], expected: Option<u64>) -> Result<(Revision, bool), ClientError> {
        let msg = pb::DeleteRequest { key: key.to_vec(), expected_revision: expected };
        let reply = self.store_call(Effect::Write, msg, |mut c, r| async move { c.delete(r).await }).await?;
        let existed = reply.results.first().map(|r| r.prev_revision.is_some()).unwrap_or(false);
        Ok((Revision(reply.revision), existed))
    }

    /// Runs a transaction: all of it, or (on a failed condition) none of it.
    pub async fn txn(&self, txn: &Txn) -> Result<Revision, ClientError> {
        let msg = convert::txn_to_pb(txn);
        let reply = self.store_call(Effect::Write, msg, |mut c, r| async move { c.txn(r).await }).await?;
        Ok(Revision(reply.revision))
    }

    /// Watches `prefix` from `from` (none = from now). The stream ends with
    /// [`ClientError::Compacted`] if `from` is older than the retained history.
    pub async fn watch(
        &self,
        prefix: &[u8],
        from: Option<Revision>,
    ) -> Result<impl Stream<Item = Result<Vec<Event>, ClientError>>, ClientError> {
        let msg = pb::WatchRequest { prefix: prefix.to_vec(), from_revision: from.map(|r| r.0) };
        // No deadline: a watch runs until the caller drops it.
        let stream = self
            .with_retry(Effect::Read, |ch| {
                let req = Request::new(msg.clone());
                async move { Self::store(ch).watch(req).await }
            })
            .await?
            .into_inner();
        Ok(stream.map(|item| match item {
            Ok(resp) => Ok(resp.events.into_iter().map(event_from_pb).collect()),
            Err(s) => Err(ClientError::from_status(s)),
        }))
    }

    /// The cluster's members, their logs, and who leads.
    pub async fn status(&self) -> Result<pb::StatusResponse, ClientError> {
        self.cluster_call(Effect::Read, pb::StatusRequest {}, |mut c, r| async move { c.status(r).await })
            .await
    }

    /// Adds a master (learner first, voter once caught up).
    pub async fn add_master(&self, id: NodeId, address: &str) -> Result<pb::MembershipResponse, ClientError> {
        let msg = pb::AddMasterRequest { id, address: address.to_string() };
        let reply = self
            .with_retry(Effect::Write, |ch| {
                let mut req = Request::new(msg.clone());
                req.set_timeout(Duration::from_secs(150));
                async move { ClusterClient::new(ch).add_master(req).await }
            })
            .await?;
        Ok(reply.into_inner())
    }

    /// A consistent backup of the whole store, as the bytes of a backup file
    /// (see `raft_store::backup`), read on the leader.
    pub async fn snapshot(&self) -> Result<Vec<u8>, ClientError> {
        // Retries cover opening the stream; the transfer itself has no deadline.
        let mut stream = self
            .with_retry(Effect::Read, |ch| async move {
                ClusterClient::new(ch).snapshot(Request::new(pb::SnapshotRequest {})).await
            })
            .await?
            .into_inner();
        let mut file = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(|s| {
            ClientError::Other(format!("the snapshot transfer broke off ({}); take it again", s.message()))
        })? {
            file.extend_from_slice(&chunk.data);
        }
        Ok(file)
    }

    pub async fn remove_master(&self, id: NodeId) -> Result<pb::MembershipResponse, ClientError> {
        let msg = pb::RemoveMasterRequest { id };
        self.cluster_call(Effect::Write, msg, |mut c, r| async move { c.remove_master(r).await }).await
    }

    /// Asks one specific master about itself (no retry elsewhere).
    pub async fn member_status(&self, addr: &str) -> Result<pb::MemberStatusResponse, ClientError> {
        self.member_status_about(addr, 0).await
    }

    /// [`CorralClient::member_status`], also asking which data dir the
    /// cluster has registered for master `about` (0: none).
    pub async fn member_status_about(
        &self,
        addr: &str,
        about: NodeId,
    ) -> Result<pb::MemberStatusResponse, ClientError> {
        let ch = self.dialer.channel(addr).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let reply = ClusterClient::new(ch)
            .member_status(Self::request(pb::MemberStatusRequest { about_member: about }))
            .await
            .map_err(ClientError::from_status)?;
        Ok(reply.into_inner())
    }
}

/// One change of an object, as a watch delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectEvent {
    /// ADDED, MODIFIED or DELETED.
    pub type_: String,
    pub object: Object,
    pub revision: Revision,
}

fn object_from(bytes: &[u8]) -> Result<Object, ClientError> {
    Object::from_json(bytes)
        .map_err(|e| ClientError::Other(format!("the server sent an unreadable object: {e}")))
}

fn key(kind: &str, namespace: &str, name: &str) -> pb::ObjectKey {
    pb::ObjectKey { kind: kind.into(), namespace: namespace.into(), name: name.into() }
}

impl CorralClient {
    /// One objects RPC with retries.
    async fn objects_call<T, R, F, Fut>(&self, effect: Effect, msg: T, f: F) -> Result<R, ClientError>
    where
        T: Clone,
        F: Fn(ObjectsClient<Channel>, Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        self.with_retry(effect, |ch| {
            f(ObjectsClient::new(ch).max_decoding_message_size(64 << 20), Self::request(msg.clone()))
        })
        .await
        .map(|r| r.into_inner())
    }

    /// Creates or updates an object; returns the stored object and
    /// `created`, `configured` or `unchanged`.
    pub async fn apply(&self, obj: &Object) -> Result<(Object, String), ClientError> {
        let msg = pb::ApplyRequest { object: obj.to_json(), create_only: false };
        let reply = self.objects_call(Effect::Write, msg, |mut c, r| async move { c.apply(r).await }).await?;
        Ok((object_from(&reply.object)?, reply.action))
    }

    /// Creates an object that must not exist yet (Kubernetes' POST): a
    /// `Conflict` when it does, whoever created it first.
    pub async fn create(&self, obj: &Object) -> Result<Object, ClientError> {
        let msg = pb::ApplyRequest { object: obj.to_json(), create_only: true };
        let reply = self.objects_call(Effect::Write, msg, |mut c, r| async move { c.apply(r).await }).await?;
        object_from(&reply.object)
    }

    pub async fn get_object(&self, kind: &str, namespace: &str, name: &str) -> Result<Object, ClientError> {
        let reply = self
            .objects_call(Effect::Read, key(kind, namespace, name), |mut c, r| async move { c.get(r).await })
            .await?;
        object_from(&reply.object)
    }

    /// Lists objects of `kind` in `namespace` (empty = all) matching a
    /// kubectl-style label selector; returns them and the revision to watch from.
    pub async fn list_objects(
        &self,
        kind: &str,
        namespace: &str,
        selector: &str,
    ) -> Result<(Vec<Object>, Revision), ClientError> {
        let msg = pb::ListObjectsRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            label_selector: selector.into(),
        };
        let reply = self.objects_call(Effect::Read, msg, |mut c, r| async move { c.list(r).await }).await?;
        let items = reply.items.iter().map(|b| object_from(b)).collect::<Result<_, _>>()?;
        Ok((items, Revision(reply.revision)))
    }

    /// Watches objects of `kind` from `from` (none = now), in revision order.
    pub async fn watch_objects(
        &self,
        kind: &str,
        namespace: &str,
        from: Option<Revision>,
    ) -> Result<impl Stream<Item = Result<Vec<ObjectEvent>, ClientError>>, ClientError> {
        let msg = pb::WatchObjectsRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            from_revision: from.map(|r| r.0),
        };
        let stream = self
            .with_retry(Effect::Read, |ch| {
                let req = Request::new(msg.clone());
                async move { ObjectsClient::new(ch).max_decoding_message_size(64 << 20).watch(req).await }
            })
            .await?
            .into_inner();
        Ok(stream.map(|item| {
            let batch = item.map_err(ClientError::from_status)?;
            batch
                .events
                .into_iter()
                .map(|e| {
                    Ok(ObjectEvent {
                        type_: e.r#type,
                        object: object_from(&e.object)?,
                        revision: Revision(e.revision),
                    })
                })
                .collect()
        }))
    }

    /// Deletes an object; returns `deleted` or `terminating` (a pod on a node) and the object.
    pub async fn delete_object(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(String, Object), ClientError> {
        self.delete_object_with(kind, namespace, name, None, false).await
    }

    /// Deletes with a CAS condition and/or at once (`force`: a node confirming a pod has stopped).
    pub async fn delete_object_with(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        expected: Option<Revision>,
        force: bool,
    ) -> Result<(String, Object), ClientError> {
        let msg = pb::DeleteObjectRequest {
            key: Some(key(kind, namespace, name)),
            expected_revision: expected.map(|r| r.0),
            force,
        };
        let reply =
            self.objects_call(Effect::Write, msg, |mut c, r| async move { c.delete(r).await }).await?;
        Ok((reply.action, object_from(&reply.object)?))
    }

    /// Replaces an object's status (nodes report pods and themselves this way).
    pub async fn update_status(&self, obj: &Object) -> Result<Object, ClientError> {
        let msg = pb::UpdateStatusRequest { object: obj.to_json() };
        let reply =
            self.objects_call(Effect::Write, msg, |mut c, r| async move { c.update_status(r).await }).await?;
        object_from(&reply.object)
    }

    pub async fn scale(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> Result<Object, ClientError> {
        let msg = pb::ScaleRequest { key: Some(key(kind, namespace, name)), replicas };
        let reply = self.objects_call(Effect::Write, msg, |mut c, r| async move { c.scale(r).await }).await?;
        object_from(&reply.object)
    }
}

fn kv_from_pb(kv: pb::KeyValue) -> KeyValue {
    KeyValue { key: kv.key, value: kv.value, revision: Revision(kv.revision) }
}

fn event_from_pb(e: pb::Event) -> Event {
    let kind = if e.kind == pb::event::Kind::Delete as i32 { EventKind::Delete } else { EventKind::Put };
    Event {
        revision: Revision(e.revision),
        kind,
        key: e.key,
        value: e.value,
        prev_revision: e.prev_revision.map(Revision),
    }
}

#[cfg(test)]
mod tests;
