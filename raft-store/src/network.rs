//! The client side of the Raft transport: openraft's `RaftNetwork` over
//! tonic, one lazily connected channel per peer, through the injected
//! [`Dialer`]. Requests and responses are openraft's own types, bincode-encoded.

use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::Channel;

use crate::codec;
use crate::identity::{self, Identity, PeerClaim};
use crate::pb::raft_service_client::RaftServiceClient;
use crate::pb::RaftPayload;
use crate::transport::Dialer;
use crate::{NodeId, TypeConfig};

/// Makes a [`PeerClient`] for each peer openraft replicates to.
#[derive(Clone)]
pub struct NetworkFactory {
    dialer: Arc<dyn Dialer>,
    identity: Identity,
}

impl NetworkFactory {
    /// Every message presents this master as `identity` says, and every
    /// reply is checked against it ([`identity::check_peer`]).
    pub fn new(dialer: Arc<dyn Dialer>, identity: Identity) -> Self {
        NetworkFactory { dialer, identity }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let client = self.dialer.channel(&node.addr).map(RaftServiceClient::new).map_err(|e| e.to_string());
        PeerClient { target, addr: node.addr.clone(), client, identity: self.identity.clone() }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Result<RaftServiceClient<Channel>, String>,
    identity: Identity,
}

/// Puts `claim` into gRPC metadata (Raft requests and replies).
pub fn present(claim: &PeerClaim, metadata: &mut tonic::metadata::MetadataMap) {
    let fields = [
        (identity::CLUSTER_HEADER, claim.cluster.clone()),
        (identity::MEMBER_HEADER, claim.member.map(|m| m.to_string())),
        (identity::INCARNATION_HEADER, claim.incarnation.clone()),
    ];
    for (header, value) in fields {
        if let Some(v) = value.and_then(|v| v.parse().ok()) {
            metadata.insert(header, v);
        }
    }
}

/// Reads a peer's claim from gRPC metadata; what is absent stays unknown.
pub fn claim_of(metadata: &tonic::metadata::MetadataMap) -> PeerClaim {
    let get = |h: &str| metadata.get(h).and_then(|v| v.to_str().ok()).map(String::from);
    PeerClaim {
        cluster: get(identity::CLUSTER_HEADER),
        member: get(identity::MEMBER_HEADER).and_then(|m| m.parse().ok()),
        incarnation: get(identity::INCARNATION_HEADER),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("master {target} at {addr}: {reason}")]
struct PeerError {
    target: NodeId,
    addr: String,
    reason: String,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    fn error(&self, reason: impl ToString) -> PeerError {
        PeerError { target: self.target, addr: self.addr.clone(), reason: reason.to_string() }
    }

    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&self.error(e))))?;
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(reason) => return Err(RPCError::Unreachable(Unreachable::new(&self.error(reason)))),
        };
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(option.hard_ttl());
        present(&self.identity.claim(), request.metadata_mut());
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let payload = match reply {
            Ok(r) => {
                let mut claim = claim_of(r.metadata());
                // A reply names no member: it is the one this client called.
                claim.member = Some(self.target);
                if let Err(refused) = self.identity.admit(&claim) {
                    tracing::debug!(target = self.target, addr = %self.addr, %refused, "Raft reply refused");
                    return Err(RPCError::Network(NetworkError::new(&self.error(refused))));
                }
                r.into_inner()
            }
            Err(status) => {
                let err = self.error(format!("{:?}: {}", status.code(), status.message()));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                        RPCError::Unreachable(Unreachable::new(&err))
                    }
                    _ => RPCError::Network(NetworkError::new(&err)),
                });
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&self.error(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Vote, &rpc, &option).await
    }
}
