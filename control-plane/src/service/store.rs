//! The store service: reads (linearizable through a read index unless a
//! stale read is asked for), writes through the proposer, and watches.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use raft_store::proposer::ProposeError;
use raft_store::{limits, Outcome, Revision, Txn};
use tonic::{Request, Response, Status};

use super::{is_forwarded, MasterCtx, ReadAt};
use crate::convert::{self, event_to_pb, kv_to_pb};
use crate::error::ApiError;
use crate::pb;
use crate::pb::store_client::StoreClient;
use crate::pb::store_server::Store;

pub use crate::pb::store_server::StoreServer;

pub struct StoreService {
    ctx: MasterCtx,
}

impl StoreService {
    pub fn new(ctx: MasterCtx) -> StoreServer<Self> {
        StoreServer::new(StoreService { ctx }).max_decoding_message_size(4 << 20)
    }

    fn leader_client(&self, addr: &str) -> Result<StoreClient<tonic::transport::Channel>, Status> {
        Ok(StoreClient::new(self.ctx.channel(addr)?).max_decoding_message_size(64 << 20))
    }

    async fn write(&self, txn: Txn, forwarded: bool) -> Result<Response<pb::WriteResponse>, Status> {
        let wire = (!forwarded).then(|| convert::txn_to_pb(&txn));
        match self.ctx.node.propose(txn).await {
            Ok((revision, Outcome::Applied(results))) => {
                Ok(Response::new(convert::write_to_pb(revision, results)))
            }
            Ok((_, Outcome::Conflict(c))) => Err(ApiError::Conflict(c).into()),
            Err(ProposeError::NotLeader { leader: Some((_, addr)) }) if !forwarded => {
                let req = self.ctx.forward_request(wire.expect("kept for forwarding"));
                self.leader_client(&addr)?.txn(req).await
            }
            Err(ProposeError::NotLeader { .. }) if forwarded => Err(self.ctx.moved()),
            Err(e) => Err(ApiError::from(e).into()),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for StoreService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let forwarded = is_forwarded(&req);
        let msg = req.into_inner();
        limits::check_key(0, &msg.key).map_err(|e| Status::invalid_argument(format!("key: {e}")))?;
        if !msg.stale {
            if let ReadAt::Leader(addr) = self.ctx.read_index(forwarded).await? {
                return self.leader_client(&addr)?.get(self.ctx.forward_request(msg)).await;
            }
        }
        let (kv, revision) = self.ctx.node.state_machine.get(msg.key).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::GetResponse { kv: kv.map(kv_to_pb), revision: revision.0 }))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let forwarded = is_forwarded(&req);
        let msg = req.into_inner();
        if !msg.stale {
            if let ReadAt::Leader(addr) = self.ctx.read_index(forwarded).await? {
                return self.leader_client(&addr)?.list(self.ctx.forward_request(msg)).await;
            }
        }
        let start_after = (!msg.start_after.is_empty()).then_some(msg.start_after);
        let (kvs, revision, more) = self
            .ctx
            .node
            .state_machine
            .list(msg.prefix, start_after, msg.limit as usize)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListResponse {
            kvs: kvs.into_iter().map(kv_to_pb).collect(),
            revision: revision.0,
            more,
        }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let forwarded = is_forwarded(&req);
        let txn = convert::put_to_txn(req.into_inner());
        limits::check_txn(&txn).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.write(txn, forwarded).await
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let forwarded = is_forwarded(&req);
        let txn = convert::delete_to_txn(req.into_inner());
        limits::check_txn(&txn).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.write(txn, forwarded).await
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let forwarded = is_forwarded(&req);
        let txn = convert::txn_from_pb(req.into_inner())?;
        self.write(txn, forwarded).await
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let msg = req.into_inner();
        let from = msg.from_revision.map(Revision);
        let stream = self.ctx.node.state_machine.watch(msg.prefix, from).map(|item| match item {
            Ok(events) => Ok(pb::WatchResponse { events: events.into_iter().map(event_to_pb).collect() }),
            Err(e) => Err(Status::from(ApiError::from(e))),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
