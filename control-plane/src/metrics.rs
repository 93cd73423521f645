//! A master's Prometheus metrics: its Raft state (term, leadership, log,
//! commit and apply indexes, quorum freshness), served as text at
//! `/metrics` on `--metrics-listen`. Read from openraft's metrics at each
//! scrape, so they are never stale.

use std::sync::atomic::AtomicU64;

use openraft::ServerState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use raft_store::RaftNode;

/// The exposition of `node`'s metrics now.
pub fn render(node: &RaftNode) -> String {
    let m = node.raft.metrics().borrow().clone();
    let mut registry = Registry::with_prefix("corral_master");
    let gauge = |v: u64| {
        let g: Gauge<u64, AtomicU64> = Gauge::default();
        g.set(v);
        g
    };
    registry.register("id", "This master's id", gauge(node.id));
    registry.register("term", "The current Raft term", gauge(m.current_term));
    registry.register(
        "is_leader",
        "1 while this master is the Raft leader",
        gauge(u64::from(m.state == ServerState::Leader)),
    );
    registry.register(
        "leader_id",
        "The leader this master knows of (0: none)",
        gauge(m.current_leader.unwrap_or(0)),
    );
    registry.register(
        "last_log_index",
        "The last log index this master has stored",
        gauge(m.last_log_index.unwrap_or(0)),
    );
    registry.register(
        "applied_index",
        "The last log index applied to the state machine",
        gauge(m.last_applied.map_or(0, |l| l.index)),
    );
    registry.register(
        "snapshot_index",
        "The last log index in this master's snapshot",
        gauge(m.snapshot.map_or(0, |l| l.index)),
    );
    if let Some(ms) = m.millis_since_quorum_ack {
        registry.register(
            "millis_since_quorum_ack",
            "Leader only: time since a quorum last acknowledged it",
            gauge(ms),
        );
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// Serves `/metrics` (any path, in fact) over HTTP/1.x on `listener` until `cancel`.
pub async fn serve(listener: tokio::net::TcpListener, node: RaftNode, cancel: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    continue;
                }
            },
        };
        let node = node.clone();
        tokio::spawn(async move {
            // Read the request head (bounded), answer, close.
            let mut buf = vec![0u8; 4096];
            let mut read = 0;
            while read < buf.len() && !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf[read..]))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(n)) => read += n,
                }
            }
            let body = render(&node);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}
