//! The objects service: Kubernetes-shaped objects over the replicated
//! store. Reads are linearizable (read index, or forwarded to the leader);
//! every write is a compare-and-swap on the revision it was planned from,
//! so two writers never silently overwrite each other.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use raft_store::proposer::ProposeError;
use raft_store::{EventKind, Expect, Op, Outcome, Revision, Txn};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{is_forwarded, MasterCtx, ReadAt};
use crate::api::labels::Selector;
use crate::api::pod_security::PodSecurity;
use crate::api::{Kind, Object};
use crate::cluster_ip;
use crate::error::conflict_status;
use crate::objects::{self, DeletePlan, RegistryError};
use crate::pb;
use crate::pb::objects_client::ObjectsClient;
use crate::pb::objects_server::Objects;

pub use crate::pb::objects_server::ObjectsServer;

/// Attempts of an apply without a resourceVersion that races other writers.
const APPLY_ATTEMPTS: usize = 5;

pub struct ObjectsService {
    ctx: MasterCtx,
}

type ObjectEventStream = Pin<Box<dyn Stream<Item = Result<pb::ObjectEvents, Status>> + Send>>;

fn registry_status(e: RegistryError) -> Status {
    match e {
        RegistryError::Invalid(m) => Status::invalid_argument(m),
        RegistryError::NotFound(m) => Status::not_found(m),
        RegistryError::Conflict(m) => conflict_status(m),
    }
}

fn not_found(kind: Kind, name: &str) -> Status {
    let plural = match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{}.{group}", kind.plural()),
        None => kind.plural().to_string(),
    };
    Status::not_found(format!("{plural} \"{name}\" not found"))
}

fn parse_kind(kind: &str) -> Result<Kind, Status> {
    Kind::parse(kind).map_err(Status::invalid_argument)
}

/// Reads and validates an incoming object, under this master's pod security settings.
fn parse_object(bytes: &[u8], security: &PodSecurity) -> Result<Object, Status> {
    let obj = Object::from_json(bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let problems = obj.validate_with(security);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(Status::invalid_argument(format!(
            "{} \"{}\" is invalid: {}",
            obj.kind().qualified(),
            obj.meta().name,
            list.join("; ")
        )));
    }
    Ok(obj)
}

/// Where a request runs: here (the leader, with a fresh read index) or forwarded.
enum Route {
    Here,
    Leader(ObjectsClient<Channel>),
}

impl ObjectsService {
    pub fn new(ctx: MasterCtx) -> ObjectsServer<Self> {
        ObjectsServer::new(ObjectsService { ctx }).max_decoding_message_size(4 << 20)
    }

    async fn route<T>(&self, req: &Request<T>) -> Result<Route, Status> {
        match self.ctx.read_index(is_forwarded(req)).await? {
            ReadAt::Here => Ok(Route::Here),
            ReadAt::Leader(addr) => Ok(Route::Leader(ObjectsClient::new(self.ctx.channel(&addr)?))),
        }
    }

    /// The stored object at `key` and its revision, from this master's state.
    async fn current(&self, key: Vec<u8>) -> Result<Option<(Object, Revision)>, Status> {
        let (kv, _) =
            self.ctx.node.state_machine.get(key).await.map_err(|e| Status::internal(e.to_string()))?;
        match kv {
            Some(kv) => Ok(Some((objects::decode(&kv).map_err(Status::internal)?, kv.revision))),
            None => Ok(None),
        }
    }

    /// Writes one operation; `Ok(None)` if its condition no longer held.
    async fn write(&self, op: Op) -> Result<Option<Revision>, Status> {
        self.write_all(vec![op]).await
    }

    /// Writes `ops` all or nothing; `None` when a compare-and-swap failed.
    async fn write_all(&self, ops: Vec<Op>) -> Result<Option<Revision>, Status> {
        match self.ctx.node.propose(Txn { ops }).await {
            Ok((rev, Outcome::Applied(_))) => Ok(Some(rev)),
            Ok((_, Outcome::Conflict(_))) => Ok(None),
            Err(ProposeError::NotLeader { .. }) => Err(self.ctx.moved()),
            Err(e) => Err(Status::from(crate::error::ApiError::from(e))),
        }
    }

    fn stored(obj: &Object, rev: Revision) -> Vec<u8> {
        let mut obj = obj.clone();
        obj.meta_mut().resource_version = Some(rev.0.to_string());
        obj.to_json()
    }

    async fn apply_here(&self, incoming: Object, create_only: bool) -> Result<pb::ApplyResponse, Status> {
        let key = objects::key(incoming.kind(), incoming.namespace(), &incoming.meta().name);
        let pinned = incoming.meta().resource_version.is_some();
        for _ in 0..APPLY_ATTEMPTS {
            let current = self.current(key.clone()).await?;
            if create_only && current.is_some() {
                return Err(conflict_status(format!(
                    "{} \"{}\" already exists; read it and update it at its resourceVersion instead",
                    incoming.kind().qualified(),
                    incoming.meta().name
                )));
            }
            let now = self.ctx.clock.now();
            let (next, expect, action) = objects::plan_apply(
                incoming.clone(),
                current.as_ref().map(|(o, r)| (o, *r)),
                now,
                &mut || uuid::Uuid::new_v4().to_string(),
            )
            .map_err(registry_status)?;
            if action == objects::Action::Unchanged {
                let rev = current.map(|(_, r)| r).unwrap_or_default();
                return Ok(pb::ApplyResponse {
                    object: Self::stored(&next, rev),
                    action: action.as_str().into(),
                });
            }
            let mut next = next;
            let claims = match (&mut next, &current) {
                (Object::Service(svc), None) => self.claim_cluster_ip(svc).await?,
                _ => Vec::new(),
            };
            let mut ops = vec![Op::Put { key: key.clone(), value: objects::encode(&next), expect }];
            ops.extend(claims);
            if let Some(rev) = self.write_all(ops).await? {
                return Ok(pb::ApplyResponse {
                    object: Self::stored(&next, rev),
                    action: action.as_str().into(),
                });
            }
            if pinned {
                break;
            }
        }
        Err(conflict_status(format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; read it again and retry",
            incoming.kind().qualified(),
            incoming.meta().name
        )))
    }

    /// Gives a new Service its cluster IP (the one it asks for, or a free
    /// one) and returns the claim to write with it.
    async fn claim_cluster_ip(&self, svc: &mut crate::api::Service) -> Result<Vec<Op>, Status> {
        let requested = svc.spec.cluster_ip.clone().unwrap_or_default();
        if requested == "None" {
            return Ok(Vec::new());
        }
        let ip = match cluster_ip::validate_requested(&requested).map_err(Status::invalid_argument)? {
            Some(ip) => ip,
            None => {
                let (claims, _, _) = self
                    .ctx
                    .node
                    .state_machine
                    .list(cluster_ip::CLAIM_PREFIX.to_vec(), None, 0)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let taken = claims.iter().filter_map(|kv| cluster_ip::ip_of_claim(&kv.key)).collect();
                let ns = svc.metadata.namespace_or_default().to_string();
                cluster_ip::allocate(&ns, &svc.metadata.name, &taken).ok_or_else(|| {
                    Status::resource_exhausted(format!(
                        "no cluster IP left in {}/{}: delete unused services",
                        cluster_ip::RANGE_BASE,
                        cluster_ip::RANGE_PREFIX
                    ))
                })?
            }
        };
        svc.spec.cluster_ip = Some(ip.to_string());
        let owner = format!("{}/{}", svc.metadata.namespace_or_default(), svc.metadata.name);
        Ok(vec![Op::Put {
            key: cluster_ip::claim_key(ip),
            value: owner.into_bytes(),
            expect: Expect::Absent,
        }])
    }

    /// Read-modify-write of one stored object with CAS, retried on conflict.
    async fn update_here(
        &self,
        key: Vec<u8>,
        kind: Kind,
        name: &str,
        change: impl Fn(&Object, Revision) -> Result<(Object, Expect), RegistryError>,
    ) -> Result<pb::ObjectResponse, Status> {
        for _ in 0..APPLY_ATTEMPTS {
            let (current, rev) = self.current(key.clone()).await?.ok_or_else(|| not_found(kind, name))?;
            let (next, expect) = change(&current, rev).map_err(registry_status)?;
            let op = Op::Put { key: key.clone(), value: objects::encode(&next), expect };
            if let Some(rev) = self.write(op).await? {
                return Ok(pb::ObjectResponse { object: Self::stored(&next, rev) });
            }
        }
        Err(conflict_status(format!("{} \"{name}\" keeps changing; retry", kind.qualified())))
    }
}

#[tonic::async_trait]
impl Objects for ObjectsService {
    async fn apply(&self, req: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        let incoming = parse_object(&req.get_ref().object, &self.ctx.pod_security)?;
        match self.route(&req).await? {
            Route::Leader(mut c) => c.apply(self.ctx.forward_request(req.into_inner())).await,
            Route::Here => {
                let create_only = req.get_ref().create_only;
                Ok(Response::new(self.apply_here(incoming, create_only).await?))
            }
        }
    }

    async fn get(&self, req: Request<pb::ObjectKey>) -> Result<Response<pb::ObjectResponse>, Status> {
        let kind = parse_kind(&req.get_ref().kind)?;
        if let Route::Leader(mut c) = self.route(&req).await? {
            return c.get(self.ctx.forward_request(req.into_inner())).await;
        }
        let k = req.into_inner();
        let ns = if k.namespace.is_empty() { "default" } else { &k.namespace };
        let (obj, rev) =
            self.current(objects::key(kind, ns, &k.name)).await?.ok_or_else(|| not_found(kind, &k.name))?;
        Ok(Response::new(pb::ObjectResponse { object: Self::stored(&obj, rev) }))
    }

    async fn list(
        &self,
        req: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        let kind = parse_kind(&req.get_ref().kind)?;
        let selector: Selector = req
            .get_ref()
            .label_selector
            .parse()
            .map_err(|e| Status::invalid_argument(format!("label selector: {e}")))?;
        if let Route::Leader(mut c) = self.route(&req).await? {
            return c.list(self.ctx.forward_request(req.into_inner())).await;
        }
        let ns = req.get_ref().namespace.clone();
        let prefix = objects::prefix(kind, (!ns.is_empty()).then_some(ns.as_str()));
        let (kvs, revision, _) = self
            .ctx
            .node
            .state_machine
            .list(prefix, None, 0)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut items = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let obj = objects::decode(kv).map_err(Status::internal)?;
            if selector.matches(&obj.meta().labels) {
                items.push(obj.to_json());
            }
        }
        Ok(Response::new(pb::ListObjectsResponse { items, revision: revision.0 }))
    }

    type WatchStream = ObjectEventStream;

    async fn watch(
        &self,
        req: Request<pb::WatchObjectsRequest>,
    ) -> Result<Response<ObjectEventStream>, Status> {
        let msg = req.into_inner();
        let kind = parse_kind(&msg.kind)?;
        let prefix = objects::prefix(kind, (!msg.namespace.is_empty()).then_some(msg.namespace.as_str()));
        let stream = self.ctx.node.state_machine.watch(prefix, msg.from_revision.map(Revision)).map(|item| {
            let events = item.map_err(|e| Status::from(crate::error::ApiError::from(e)))?;
            let mut out = Vec::with_capacity(events.len());
            for e in events {
                let type_ = match (e.kind, e.prev_revision) {
                    (EventKind::Put, None) => "ADDED",
                    (EventKind::Put, Some(_)) => "MODIFIED",
                    (EventKind::Delete, _) => "DELETED",
                };
                let kv = raft_store::KeyValue { key: e.key, value: e.value, revision: e.revision };
                let object = match objects::decode(&kv) {
                    Ok(o) => o.to_json(),
                    Err(_) => Vec::new(),
                };
                out.push(pb::ObjectEvent { r#type: type_.into(), object, revision: e.revision.0 });
            }
            Ok(pb::ObjectEvents { events: out })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteObjectRequest>,
    ) -> Result<Response<pb::DeleteObjectResponse>, Status> {
        let k = req.get_ref().key.clone().ok_or_else(|| Status::invalid_argument("key: is required"))?;
        let kind = parse_kind(&k.kind)?;
        if let Route::Leader(mut c) = self.route(&req).await? {
            return c.delete(self.ctx.forward_request(req.into_inner())).await;
        }
        let expected = req.get_ref().expected_revision.map(Revision);
        let force = req.get_ref().force;
        let ns = if k.namespace.is_empty() { "default" } else { &k.namespace };
        let key = objects::key(kind, ns, &k.name);
        for _ in 0..APPLY_ATTEMPTS {
            let (current, rev) = self.current(key.clone()).await?.ok_or_else(|| not_found(kind, &k.name))?;
            if expected.is_some_and(|e| e != rev) {
                return Err(conflict_status(format!(
                    "{} \"{}\" is at resourceVersion {rev}, not {}; read it again and retry",
                    kind.qualified(),
                    k.name,
                    expected.unwrap_or_default()
                )));
            }
            let (op, action, obj) = match objects::plan_delete(&current, self.ctx.clock.now(), force) {
                DeletePlan::Remove => {
                    (Op::Delete { key: key.clone(), expect: Expect::Revision(rev) }, "deleted", current)
                }
                DeletePlan::MarkTerminating(next) => {
                    let op = Op::Put {
                        key: key.clone(),
                        value: objects::encode(&next),
                        expect: Expect::Revision(rev),
                    };
                    (op, "terminating", *next)
                }
                DeletePlan::AlreadyTerminating => {
                    return Ok(Response::new(pb::DeleteObjectResponse {
                        action: "terminating".into(),
                        object: Self::stored(&current, rev),
                    }))
                }
            };
            let mut ops = vec![op];
            // A Service's cluster IP goes with it.
            if let (Object::Service(svc), "deleted") = (&obj, action) {
                if let Some(ip) = svc.spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()) {
                    ops.push(Op::Delete { key: cluster_ip::claim_key(ip), expect: Expect::Any });
                }
            }
            if let Some(rev) = self.write_all(ops).await? {
                return Ok(Response::new(pb::DeleteObjectResponse {
                    action: action.into(),
                    object: Self::stored(&obj, rev),
                }));
            }
        }
        Err(conflict_status(format!("{} \"{}\" keeps changing; retry", kind.qualified(), k.name)))
    }

    async fn update_status(
        &self,
        req: Request<pb::UpdateStatusRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        let incoming =
            Object::from_json(&req.get_ref().object).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Route::Leader(mut c) = self.route(&req).await? {
            return c.update_status(self.ctx.forward_request(req.into_inner())).await;
        }
        let (kind, name) = (incoming.kind(), incoming.meta().name.clone());
        let key = objects::key(kind, incoming.namespace(), &name);
        let reply = self
            .update_here(key, kind, &name, |current, rev| {
                objects::plan_status(incoming.clone(), current, rev)
            })
            .await?;
        Ok(Response::new(reply))
    }

    async fn scale(&self, req: Request<pb::ScaleRequest>) -> Result<Response<pb::ObjectResponse>, Status> {
        let k = req.get_ref().key.clone().ok_or_else(|| Status::invalid_argument("key: is required"))?;
        let kind = parse_kind(&k.kind)?;
        if let Route::Leader(mut c) = self.route(&req).await? {
            return c.scale(self.ctx.forward_request(req.into_inner())).await;
        }
        let replicas = req.get_ref().replicas;
        let ns = if k.namespace.is_empty() { "default" } else { &k.namespace };
        let key = objects::key(kind, ns, &k.name);
        let reply = self
            .update_here(key, kind, &k.name, |current, rev| {
                Ok((objects::plan_scale(current, replicas)?, Expect::Revision(rev)))
            })
            .await?;
        Ok(Response::new(reply))
    }
}
