//! The server side of the Raft transport: a thin tonic service that decodes
//! openraft's messages and hands them to the local `Raft`.

use tonic::{Request, Response, Status};

use crate::codec;
use crate::identity::Identity;
use crate::network::{claim_of, present};
use crate::pb::raft_service_server::RaftService;
use crate::pb::RaftPayload;
use crate::Raft;

pub use crate::pb::raft_service_server::RaftServiceServer;

/// Serves the Raft RPCs of one master.
/// Every request's sender is checked against this master's identity
/// (cluster id, member registry) before Raft sees it.
pub struct RaftGrpc {
    raft: Raft,
    identity: Identity,
}

impl RaftGrpc {
    pub fn new(raft: Raft, identity: Identity) -> Self {
        RaftGrpc { raft, identity }
    }

    /// Decodes a request from an admitted peer.
    fn admit<T: serde::de::DeserializeOwned>(&self, req: Request<RaftPayload>) -> Result<T, Status> {
        let claim = claim_of(req.metadata());
        if let Err(refused) = self.identity.admit(&claim) {
            tracing::debug!(%refused, "Raft request refused");
            return Err(Status::failed_precondition(format!(
                "master {} refuses Raft from this sender: {refused}",
                self.identity.me().member
            )));
        }
        decode(req)
    }

    fn reply<T: serde::Serialize>(&self, value: &T) -> Result<Response<RaftPayload>, Status> {
        let mut response = reply(value)?;
        present(&self.identity.claim(), response.metadata_mut());
        Ok(response)
    }

    /// The tonic service, with message limits that fit snapshot chunks.
    pub fn into_server(self) -> RaftServiceServer<Self> {
        RaftServiceServer::new(self).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    }
}

fn decode<T: serde::de::DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    codec::decode(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("malformed Raft message: {e}")))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data =
        codec::encode(value).map_err(|e| Status::internal(format!("cannot encode Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.admit(req)?;
        self.reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.admit(req)?;
        self.reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.admit(req)?;
        self.reply(&self.raft.install_snapshot(rpc).await)
    }
}
