//! How a master reaches other masters: the one seam between Corral's network
//! code and the network. Production dials real TCP sockets; the chaos tests
//! dial through turmoil's simulated network. Both give a lazy tonic
//! [`Channel`], so every gRPC client above this seam is the same code.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Opens gRPC channels to other masters by address (`host:port`).
pub trait Dialer: Send + Sync + 'static {
    /// A lazily connecting channel to `addr`: it connects on first use and
    /// reconnects after failures.
    fn channel(&self, addr: &str) -> Result<Channel, DialError>;
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid master address {addr:?}: {reason}; expected host:port such as 127.0.0.1:7001")]
pub struct DialError {
    pub addr: String,
    pub reason: String,
}

/// Timeouts applied by every dialer.
#[derive(Debug, Clone, Copy)]
pub struct DialTimeouts {
    pub connect: Duration,
    /// HTTP/2 keepalive ping interval and timeout: a connection whose peer
    /// stopped answering (a partition, a paused process) is dropped and
    /// re-dialled instead of swallowing requests until their deadlines.
    pub keepalive: Duration,
}

impl Default for DialTimeouts {
    fn default() -> Self {
        DialTimeouts { connect: Duration::from_millis(500), keepalive: Duration::from_secs(2) }
    }
}

/// Builds the endpoint for `addr`, shared by all dialers.
pub fn endpoint(addr: &str, timeouts: DialTimeouts) -> Result<Endpoint, DialError> {
    let uri = format!("http://{addr}");
    Endpoint::from_shared(uri)
        .map(|e| {
            e.connect_timeout(timeouts.connect)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(timeouts.keepalive)
                .keep_alive_timeout(timeouts.keepalive)
                .keep_alive_while_idle(true)
        })
        .map_err(|e| DialError { addr: addr.to_string(), reason: e.to_string() })
}

/// Real TCP sockets.
#[derive(Debug, Clone, Default)]
pub struct TcpDialer {
    pub timeouts: DialTimeouts,
}

impl Dialer for TcpDialer {
    fn channel(&self, addr: &str) -> Result<Channel, DialError> {
        Ok(endpoint(addr, self.timeouts)?.connect_lazy())
    }
}
