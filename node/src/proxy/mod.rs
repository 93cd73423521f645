//! The service proxy, kube-proxy style: every node listens on its own
//! addresses (and on each service's cluster IP) at each service port and
//! forwards every new TCP connection to a ready endpoint, round robin,
//! trying the next endpoint when a connect fails.
//!
//! Split as the rest of Corral: [`plan`] decides, from Services and
//! Endpoints, which address serves which backends (pure, table-tested);
//! [`Proxy`] owns the listening sockets and the forwarded connections and
//! only carries out a [`ProxyTable`]. Watching the API and calling
//! `plan` + [`Proxy::apply`] on every change is the agent's loop, not this
//! module's. UDP is not proxied.

pub mod forward;
pub mod plan;

pub use forward::{ListenerStats, ListenerStatus, Proxy, ProxyConfig};
pub use plan::{plan, Conflict, Invalid, ProxyTable, Route, ServicePortName};
