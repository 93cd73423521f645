//! The cluster service: who the masters are, what each has in its log, who
//! leads; adding and removing masters.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use raft_store::{Expect, NodeId, Op, Txn};
use tonic::{Request, Response, Status};

use super::{is_forwarded, MasterCtx, ReadAt};
use crate::error::ApiError;
use crate::pb;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::cluster_server::Cluster;

pub use crate::pb::cluster_server::ClusterServer;

/// How long a status report waits for each member.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new master may take to catch up before it is promoted.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// The size of the pieces a backup travels in.
const SNAPSHOT_CHUNK: usize = 1 << 20;

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

pub struct ClusterService {
    ctx: MasterCtx,
}

impl ClusterService {
    pub fn new(ctx: MasterCtx) -> ClusterServer<Self> {
        ClusterServer::new(ClusterService { ctx })
    }

    fn client(&self, addr: &str) -> Result<ClusterClient<tonic::transport::Channel>, Status> {
        Ok(ClusterClient::new(self.ctx.channel(addr)?))
    }

    /// Where a membership change must run: here, or forwarded to the leader.
    fn leader_addr(&self, forwarded: bool) -> Result<Option<String>, Status> {
        match self.ctx.leader() {
            Some((id, _)) if id == self.ctx.id => Ok(None),
            Some(_) if forwarded => Err(self.ctx.moved()),
            Some((_, addr)) => Ok(Some(addr)),
            None => Err(Status::unavailable("no leader is elected yet; retry in a moment")),
        }
    }

    /// Asks the master at `addr` who it is, so that a new member is the one
    /// the caller meant; returns its data dir's incarnation.
    async fn probe(&self, id: NodeId, addr: &str) -> Result<String, Status> {
        let mut req = Request::new(pb::MemberStatusRequest { about_member: 0 });
        req.set_timeout(Duration::from_secs(3));
        let reply = self.client(addr)?.member_status(req).await.map_err(|e| {
            Status::unavailable(format!(
                "cannot reach master {id} at {addr} ({}): start it first with `corral master --id {id} --listen {addr} --join <a master's address>`",
                e.message()
            ))
        })?;
        let reply = reply.into_inner();
        let answered = reply.member.map(|m| m.id).unwrap_or(0);
        if answered != id {
            return Err(Status::failed_precondition(format!(
                "address {addr} is served by master {answered}, not master {id}: check the id and address"
            )));
        }
        Ok(reply.incarnation)
    }

    /// Refuses a member that comes back on another data dir than the one
    /// the cluster registered for its id (it lost its data).
    async fn probe_member(&self, id: NodeId, addr: &str) -> Result<(), Status> {
        let incarnation = self.probe(id, addr).await?;
        match self.ctx.node.identity.registered(id) {
            Some(registered) if !incarnation.is_empty() && registered != incarnation => {
                Err(Status::failed_precondition(format!(
                    "master {id} at {addr} runs on another data dir than the one the cluster knows (incarnation {incarnation}, registered {registered}): a master that lost its data may not vote; remove it first (corral cluster remove-master {id}), then join it again"
                )))
            }
            _ => Ok(()),
        }
    }

    async fn add_here(&self, id: NodeId, addr: String) -> Result<pb::MembershipResponse, Status> {
        let membership = self.ctx.node.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        for (other, node) in membership.nodes() {
            if *other == id && node.addr == addr {
                if membership.voter_ids().any(|v| v == id) {
                    self.probe_member(id, &addr).await?;
                    return Ok(membership_response(
                        &self.ctx,
                        format!("master {id} at {addr} is already a voter"),
                    ));
                }
            } else if *other == id {
                return Err(Status::already_exists(format!(
                    "master {id} is already a member at {}, not {addr}: remove it first (corral cluster remove-master {id}) or pick another id",
                    node.addr
                )));
            } else if node.addr == addr {
                return Err(Status::already_exists(format!(
                    "address {addr} already belongs to master {other}: pick another address"
                )));
            }
        }
        self.probe(id, &addr).await?;
        tracing::info!(master = id, %addr, "adding master as learner");
        let add = self.ctx.node.raft.add_learner(id, BasicNode::new(&addr), true);
        match tokio::time::timeout(CATCH_UP_TIMEOUT, add).await {
            Ok(res) => res.map_err(membership_error)?,
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "master {id} did not catch up within {CATCH_UP_TIMEOUT:?}; it stays a learner: check its logs, then retry"
                )))
            }
        };
        tracing::info!(master = id, "learner caught up, promoting to voter");
        let promote = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.ctx.node.raft.change_membership(promote, false).await.map_err(membership_error)?;
        Ok(membership_response(&self.ctx, format!("master {id} at {addr} joined as a voter")))
    }

    async fn remove_here(&self, id: NodeId) -> Result<pb::MembershipResponse, Status> {
        let membership = self.ctx.node.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if membership.get_node(&id).is_none() {
            let known: Vec<String> = membership.nodes().map(|(i, _)| i.to_string()).collect();
            return Err(Status::not_found(format!(
                "master {id} is not a member; members are {}",
                known.join(", ")
            )));
        }
        if voters.contains(&id) && voters.len() == 1 {
            return Err(Status::failed_precondition(format!(
                "master {id} is the last voter: a cluster cannot remove its last master"
            )));
        }
        tracing::info!(master = id, "removing master");
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.ctx.node.raft.change_membership(change, false).await.map_err(membership_error)?;
        // Its data dir is forgotten with it, so that it may join again on a
        // new one (the identity upkeep would too, unless it is back first).
        let forget = Op::Delete { key: raft_store::identity::member_key(id), expect: Expect::Any };
        if let Err(e) = self.ctx.node.propose(Txn { ops: vec![forget] }).await {
            tracing::warn!(master = id, error = %e, "cannot forget the removed master's data dir; its upkeep will");
        }
        Ok(membership_response(
            &self.ctx,
            format!("master {id} removed; stop its process (it no longer serves)"),
        ))
    }
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Status::unavailable("leadership moved during the membership change; retry")
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(
            p,
        ))) => Status::unavailable(format!(
            "another membership change is in progress ({p}); retry when it is done"
        )),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(e.to_string())
        }
        RaftError::Fatal(f) => Status::unavailable(format!("raft is stopped on this master: {f}")),
    }
}

fn membership_response(ctx: &MasterCtx, message: String) -> pb::MembershipResponse {
    let metrics = ctx.node.raft.metrics().borrow().clone();
    let m = metrics.membership_config.membership();
    pb::MembershipResponse { voters: m.voter_ids().collect(), learners: m.learner_ids().collect(), message }
}

/// This master's own view of itself.
pub fn local_member(ctx: &MasterCtx) -> pb::MemberStatusResponse {
    let metrics = ctx.node.raft.metrics().borrow().clone();
    let role = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    let voter = metrics.membership_config.membership().voter_ids().any(|v| v == ctx.id);
    let member = pb::Member {
        id: ctx.id,
        address: ctx.addr.clone(),
        role: role.to_string(),
        voter,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        committed_index: ctx.node.committed_index(),
        applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
        error: String::new(),
    };
    pb::MemberStatusResponse {
        member: Some(member),
        leader_id: metrics.current_leader.unwrap_or(0),
        ..Default::default()
    }
}

impl ClusterService {
    /// The backup file of the store as of now, read here on the leader. The
    /// cluster id is minted first if it has none; that write (a no-op
    /// conflict once the id exists) also orders the read after every write
    /// acknowledged before the call.
    async fn backup_here(&self) -> Result<Vec<u8>, Status> {
        self.ctx.node.ensure_cluster_id().await.map_err(ApiError::from)?;
        let backup = self.ctx.node.backup().await.map_err(ApiError::from)?;
        tracing::info!(master = self.ctx.id, revision = %backup.revision, keys = backup.kvs.len(), "backup taken");
        tokio::task::spawn_blocking(move || backup.encode())
            .await
            .map_err(|e| Status::internal(format!("backup encoding task failed: {e}")))?
            .map_err(|e| Status::internal(format!("cannot encode the backup: {e}")))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, req: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        let forwarded = is_forwarded(&req);
        let msg = req.into_inner();
        if let ReadAt::Leader(addr) = self.ctx.read_index(forwarded).await? {
            let reply = self.client(&addr)?.snapshot(self.ctx.forward_request(msg)).await?;
            return Ok(Response::new(Box::pin(reply.into_inner())));
        }
        let file = self.backup_here().await?;
        let chunks: Vec<Result<pb::SnapshotChunk, Status>> =
            file.chunks(SNAPSHOT_CHUNK).map(|c| Ok(pb::SnapshotChunk { data: c.to_vec() })).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let me = local_member(&self.ctx);
        let metrics = self.ctx.node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let asks = membership.nodes().map(|(id, node)| {
            let (id, addr) = (*id, node.addr.clone());
            let me = me.clone();
            async move {
                if id == self.ctx.id {
                    return me.member.expect("local member is always set");
                }
                let mut req = Request::new(pb::MemberStatusRequest { about_member: 0 });
                req.set_timeout(MEMBER_TIMEOUT);
                let reply = match self.client(&addr) {
                    Ok(mut c) => c.member_status(req).await,
                    Err(e) => Err(e),
                };
                match reply {
                    Ok(r) => r.into_inner().member.unwrap_or_default(),
                    Err(e) => pb::Member {
                        id,
                        address: addr,
                        role: "unreachable".into(),
                        error: format!("not answering: {}", e.message()),
                        ..Default::default()
                    },
                }
            }
        });
        let mut members = futures::future::join_all(asks).await;
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        for m in &mut members {
            m.voter = voters.contains(&m.id);
        }
        members.sort_by_key(|m| m.id);
        Ok(Response::new(pb::StatusResponse {
            leader_id: me.leader_id,
            term: metrics.current_term,
            members,
            reporter_id: self.ctx.id,
        }))
    }

    async fn member_status(
        &self,
        req: Request<pb::MemberStatusRequest>,
    ) -> Result<Response<pb::MemberStatusResponse>, Status> {
        let about = req.get_ref().about_member;
        let mut reply = local_member(&self.ctx);
        let identity = &self.ctx.node.identity;
        let me = identity.me();
        reply.cluster_id = me.cluster.unwrap_or_default();
        reply.incarnation = me.incarnation;
        if about != 0 {
            reply.registered_incarnation = identity.registered(about).unwrap_or_default();
        }
        let metrics = self.ctx.node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        reply.members = membership.nodes().map(|(id, _)| *id).collect();
        reply.initialized = !reply.members.is_empty();
        Ok(Response::new(reply))
    }

    async fn add_master(
        &self,
        req: Request<pb::AddMasterRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let forwarded = is_forwarded(&req);
        let msg = req.into_inner();
        if msg.id == 0 {
            return Err(Status::invalid_argument("id: master ids start at 1"));
        }
        if msg.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "address: {:?} is not an ip:port address such as 127.0.0.1:7004",
                msg.address
            )));
        }
        if let Some(leader) = self.leader_addr(forwarded)? {
            return self.client(&leader)?.add_master(self.ctx.forward_request(msg)).await;
        }
        Ok(Response::new(self.add_here(msg.id, msg.address).await?))
    }

    async fn remove_master(
        &self,
        req: Request<pb::RemoveMasterRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let forwarded = is_forwarded(&req);
        let msg = req.into_inner();
        if let Some(leader) = self.leader_addr(forwarded)? {
            return self.client(&leader)?.remove_master(self.ctx.forward_request(msg)).await;
        }
        Ok(Response::new(self.remove_here(msg.id).await?))
    }
}
