//! A master: the Raft participant plus the API it serves, bootstrapped from
//! its peers or joined to a running cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
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

use crate::api::pod_security::PodSecurity;
use crate::client::{ClientError, CorralClient};
use crate::clock::Clock;
use crate::leader::manager::{self, ControllerConfig};
use crate::leader::supervisor::supervise;
use crate::pb;
use crate::pb::cluster_client::ClusterClient;
use crate::service::cluster::ClusterService;
use crate::service::objects::ObjectsService;
use crate::service::store::StoreService;
use crate::service::MasterCtx;

/// How long a master starting on an empty data dir waits for each peer's answer.
const PEER_ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often every master refreshes its identity (and the leader registers members).
const IDENTITY_EVERY: Duration = Duration::from_millis(500);

/// One initial master's answer about itself and about the asking master.
#[derive(Debug, Clone)]
pub struct PeerAnswer {
    pub id: NodeId,
    pub addr: String,
    pub reply: pb::MemberStatusResponse,
}

/// Whether master `me`, on an empty data dir (`data_dir`), may form a
/// cluster with its `--peers`, from what those that answered said. It may
/// not when the cluster already registered a data dir for it (it lost its
/// data: voting again could elect a leader that misses acknowledged
/// writes), nor when they already run a cluster without it. Peers that did
/// not answer are not counted (etcd does the same): a cluster being formed
/// has none of either.
pub fn fresh_start_verdict(me: NodeId, data_dir: &Path, answers: &[PeerAnswer]) -> Result<(), String> {
    for a in answers {
        let cluster = match a.reply.cluster_id.as_str() {
            "" => String::new(),
            id => format!(" {id}"),
        };
        if !a.reply.registered_incarnation.is_empty() {
            return Err(format!(
                "master {me} starts on an empty data dir ({}), but cluster{cluster} (master {} at {} answered) already knows master {me} with the data dir it had: a master that lost its data may not vote itself back in. Restore its data dir from a backup (corral cluster snapshot restore), or remove it (corral cluster remove-master {me}) and start it with --join {} instead of --peers",
                data_dir.display(), a.id, a.addr, a.addr
            ));
        }
        if a.reply.initialized && !a.reply.cluster_id.is_empty() && !a.reply.members.contains(&me) {
            return Err(format!(
                "the masters of --peers already run cluster{cluster} (master {} at {} answered), and master {me} is not a member: start it with --join {} instead of --peers",
                a.id, a.addr, a.addr
            ));
        }
    }
    Ok(())
}

/// Keeps this master's identity fresh until `stop`; errors are logged once each.
async fn keep_identity(node: RaftNode, stop: CancellationToken) {
    let mut last_error = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(IDENTITY_EVERY) => {}
        }
        match node.maintain_identity().await {
            Ok(()) => last_error = None,
            Err(e) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    tracing::warn!(master = node.id, error = %text, "identity upkeep failed; retrying");
                }
                last_error = Some(text);
            }
        }
    }
}

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
    /// What pods may ask of their hosts (`--allowed-host-paths`). Every
    /// master of a cluster should be started with the same settings: a
    /// write is checked by the master it reaches and by the leader.
    pub pod_security: PodSecurity,
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
        let data_dir = config.raft.data_dir.clone();
        let node = RaftNode::start(config.raft, dialer.clone()).await?;
        let master = Master {
            ctx: MasterCtx::new(id, config.advertise, node, dialer, config.clock)
                .with_pod_security(config.pod_security),
            stop: CancellationToken::new(),
        };
        if !config.peers.is_empty() {
            master.bootstrap(config.peers, &data_dir).await?;
        }
        tokio::spawn(keep_identity(master.ctx.node.clone(), master.stop.clone()));
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
    async fn bootstrap(&self, peers: BTreeMap<NodeId, String>, data_dir: &Path) -> Result<(), StoreError> {
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
        let answers = self.ask_peers(&peers).await;
        fresh_start_verdict(self.ctx.id, data_dir, &answers).map_err(StoreError::Task)?;
        let members: BTreeMap<NodeId, BasicNode> =
            peers.into_iter().map(|(id, a)| (id, BasicNode::new(a))).collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(master = self.ctx.id, "initialized a new cluster"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(StoreError::Task(format!("cannot initialize the cluster: {e}"))),
        }
        Ok(())
    }

    /// What the other initial masters say about themselves and about this
    /// master; the ones that do not answer within a moment are left out.
    async fn ask_peers(&self, peers: &BTreeMap<NodeId, String>) -> Vec<PeerAnswer> {
        let asks = peers.iter().filter(|(id, _)| **id != self.ctx.id).map(|(id, addr)| async move {
            let mut req = tonic::Request::new(pb::MemberStatusRequest { about_member: self.ctx.id });
            req.set_timeout(PEER_ASK_TIMEOUT);
            let mut client = ClusterClient::new(self.ctx.channel(addr).ok()?);
            let reply = tokio::time::timeout(PEER_ASK_TIMEOUT, client.member_status(req)).await.ok()?.ok()?;
            Some(PeerAnswer { id: *id, addr: addr.clone(), reply: reply.into_inner() })
        });
        futures::future::join_all(asks).await.into_iter().flatten().collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: NodeId, cluster: &str, registered: &str, members: &[NodeId]) -> PeerAnswer {
        PeerAnswer {
            id,
            addr: format!("127.0.0.1:700{id}"),
            reply: pb::MemberStatusResponse {
                cluster_id: cluster.into(),
                registered_incarnation: registered.into(),
                initialized: !members.is_empty(),
                members: members.to_vec(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn an_empty_data_dir_forms_a_cluster_but_never_rejoins_one() {
        let dir = Path::new("/data/m3");
        let verdict = |answers: &[PeerAnswer]| fresh_start_verdict(3, dir, answers);
        // Nobody answers, peers still empty, or a cluster just formed that
        // has not heard from master 3 yet (a slow initial master): go on.
        assert_eq!(verdict(&[]), Ok(()));
        assert_eq!(verdict(&[answer(1, "", "", &[]), answer(2, "", "", &[])]), Ok(()));
        assert_eq!(verdict(&[answer(1, "c0ffee", "", &[1, 2, 3])]), Ok(()));
        // The cluster knows master 3 by another data dir: it lost its data.
        let err = verdict(&[answer(1, "", "", &[]), answer(2, "c0ffee", "inc-old", &[1, 2, 3])]).unwrap_err();
        assert!(err.starts_with("master 3 starts on an empty data dir (/data/m3), but cluster c0ffee (master 2 at 127.0.0.1:7002 answered) already knows master 3"), "{err}");
        assert!(err.contains("start it with --join 127.0.0.1:7002 instead of --peers"), "{err}");
        assert!(err.contains("corral cluster remove-master 3"), "{err}");
        // A running cluster that master 3 is not part of.
        let err = verdict(&[answer(1, "c0ffee", "", &[1, 2])]).unwrap_err();
        assert!(err.contains("already run cluster c0ffee (master 1 at 127.0.0.1:7001 answered), and master 3 is not a member"), "{err}");
    }
}
