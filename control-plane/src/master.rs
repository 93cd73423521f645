//! A master: the Raft participant plus the API it serves, bootstrapped from
//! its peers or joined to a running cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use raft_store::transport::Dialer;
use raft_store::{NodeId, RaftNode, RaftNodeConfig, StoreError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::client::{ClientError, CorralClient};
use crate::clock::Clock;
use crate::leader::manager::{self, ControllerConfig};
use crate::leader::supervisor::supervise;
use crate::service::cluster::ClusterService;
use crate::service::objects::ObjectsService;
use crate::service::store::StoreService;
use crate::service::MasterCtx;

/// Everything that shapes one master.
#[derive(Clone)]
pub struct MasterConfig {
    pub raft: RaftNodeConfig,
    /// The address other masters and clients reach this master at.
    pub advertise: String,
    /// The initial voters (including this master) when forming a new cluster.
    pub peers: BTreeMap<NodeId, String>,
    /// Wall-clock time for timestamps (creation, deletion).
    pub clock: Arc<dyn Clock>,
    /// Timings of the leader's controllers.
    pub controllers: ControllerConfig,
}

/// A running master.
#[derive(Clone)]
pub struct Master {
    ctx: MasterCtx,
    stop: CancellationToken,
}

impl Master {
    /// Opens the data dir and starts Raft. Serve it with [`Master::serve`].
    pub async fn start(config: MasterConfig, dialer: Arc<dyn Dialer>) -> Result<Self, StoreError> {
        let id = config.raft.id;
        // Controllers stop once no quorum has acknowledged this leader for a
        // maximum election timeout: before that, no other master can have won.
        let election_ms = config.raft.election_max_ms;
        let node = RaftNode::start(config.raft, dialer.clone()).await?;
        let master = Master {
            ctx: MasterCtx::new(id, config.advertise, node, dialer, config.clock),
            stop: CancellationToken::new(),
        };
        if !config.peers.is_empty() {
            master.bootstrap(config.peers).await?;
        }
        // The scheduler and controllers run while (and only while) this master leads.
        let (ctx, stop, cfg) = (master.ctx.clone(), master.stop.clone(), config.controllers);
        let slot = manager::CacheSlot::default();
        tokio::spawn(supervise(master.ctx.node.clone(), election_ms, stop, move |term, cancel| {
            manager::run(ctx.clone(), term, cancel, cfg, slot.clone())
        }));
        Ok(master)
    }

    pub fn id(&self) -> NodeId {
        self.ctx.id
    }

    pub fn addr(&self) -> &str {
        &self.ctx.addr
    }

    pub fn node(&self) -> &RaftNode {
        &self.ctx.node
    }

    /// Forms the cluster from its initial voters, once: every initial master
    /// proposes the same membership, and a data dir that already holds a
    /// log keeps what it has.
    async fn bootstrap(&self, peers: BTreeMap<NodeId, String>) -> Result<(), StoreError> {
        if !peers.contains_key(&self.ctx.id) {
            return Err(StoreError::Task(format!(
                "--peers must include this master ({}); got ids {:?}",
                self.ctx.id,
                peers.keys().collect::<Vec<_>>()
            )));
        }
        let raft = &self.ctx.node.raft;
        if raft.is_initialized().await.map_err(|e| StoreError::Task(e.to_string()))? {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> =
            peers.into_iter().map(|(id, a)| (id, BasicNode::new(a))).collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(master = self.ctx.id, "initialized a new cluster"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(StoreError::Task(format!("cannot initialize the cluster: {e}"))),
        }
        Ok(())
    }

    /// Asks the cluster at `seeds` to add this master, retrying while no
    /// leader answers; fails at once if the cluster refuses (a clash of id
    /// or address). Returns when this master is a voter.
    pub async fn join(&self, seeds: Vec<String>, timeout: Duration) -> Result<String, ClientError> {
        let client = CorralClient::new(seeds, self.ctx.dialer.clone()).with_timeout(timeout);
        let reply = client.add_master(self.ctx.id, &self.ctx.addr).await?;
        Ok(reply.message)
    }

    /// Serves the Raft transport, the store and the cluster API on
    /// `incoming` connections until `shutdown` completes.
    pub async fn serve<I, IO, IE>(
        &self,
        incoming: I,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String>
    where
        I: Stream<Item = Result<IO, IE>>,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .add_service(self.ctx.node.raft_service())
            .add_service(StoreService::new(self.ctx.clone()))
            .add_service(ClusterService::new(self.ctx.clone()))
            .add_service(ObjectsService::new(self.ctx.clone()))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| format!("master {} stopped serving: {e}", self.ctx.id))
    }

    /// Stops the controllers and Raft.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.ctx.node.shutdown().await;
    }
}
