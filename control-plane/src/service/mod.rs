//! The gRPC services of a master and the context they share. Handlers only
//! translate between the wire and the store; forwarding to the leader lives
//! here, in one place.

pub mod cluster;
pub mod objects;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openraft::error::{CheckIsLeaderError, RaftError};
use raft_store::transport::Dialer;
use raft_store::{NodeId, RaftNode};
use tonic::transport::Channel;

use crate::api::pod_security::PodSecurity;
use crate::clock::Clock;
use tonic::{Request, Status};

/// Marks a request a master forwarded to the leader, so that it is never
/// forwarded twice (a leader change in between gets a retriable error).
pub const FORWARDED: &str = "x-corral-forwarded";

/// What every handler of one master needs.
#[derive(Clone)]
pub struct MasterCtx {
    pub id: NodeId,
    pub addr: String,
    pub node: RaftNode,
    pub dialer: Arc<dyn Dialer>,
    pub clock: Arc<dyn Clock>,
    /// What pods may ask of their hosts (checked when objects are written).
    pub pod_security: Arc<PodSecurity>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl MasterCtx {
    pub fn new(
        id: NodeId,
        addr: String,
        node: RaftNode,
        dialer: Arc<dyn Dialer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        MasterCtx { id, addr, node, dialer, clock, pod_security: Arc::default(), channels: Arc::default() }
    }

    /// The context with `security` as its pod security settings.
    pub fn with_pod_security(mut self, security: PodSecurity) -> Self {
        self.pod_security = Arc::new(security);
        self
    }

    /// A (cached, lazily connected) channel to another master.
    pub fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().expect("channel cache lock is never poisoned");
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let ch = self.dialer.channel(addr).map_err(|e| Status::internal(e.to_string()))?;
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// The leader as this master knows it: id and address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.node.raft.metrics().borrow().clone();
        let id = metrics.current_leader?;
        let addr = metrics.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// The request to send to `leader` on behalf of a client: marked as forwarded.
    pub fn forward_request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert(FORWARDED, self.id.to_string().parse().expect("digits are ascii"));
        req.set_timeout(std::time::Duration::from_secs(30));
        req
    }

    /// The error for a forwarded request that reached a master which is no
    /// longer the leader (it proposed nothing: the write was not applied).
    pub fn moved(&self) -> Status {
        let hint = match self.leader() {
            Some((id, addr)) => format!("master {id} at {addr} leads now"),
            None => "an election is under way".to_string(),
        };
        crate::error::not_applied(Status::unavailable(format!(
            "leadership moved away from master {} while forwarding ({hint}); retry",
            self.id
        )))
    }
}

/// Where a linearizable read must be served.
pub enum ReadAt {
    Here,
    Leader(String),
}

impl MasterCtx {
    /// Confirms leadership with a quorum and waits until this master has
    /// applied everything committed before the read (the read index); on a
    /// follower, names the leader to forward the read to.
    pub async fn read_index(&self, forwarded: bool) -> Result<ReadAt, Status> {
        match self.node.raft.ensure_linearizable().await {
            Ok(_) => Ok(ReadAt::Here),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => match f.leader_node {
                Some(_) if forwarded => Err(self.moved()),
                Some(node) => Ok(ReadAt::Leader(node.addr)),
                None => Err(Status::unavailable(format!(
                    "master {} knows no leader yet (an election is under way); retry",
                    self.id
                ))),
            },
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => Err(Status::unavailable(
                format!("master {} could not confirm its leadership with a quorum ({q}); retry", self.id),
            )),
            Err(RaftError::Fatal(f)) => {
                Err(Status::unavailable(format!("raft is stopped on master {}: {f}", self.id)))
            }
        }
    }
}

pub fn is_forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}
