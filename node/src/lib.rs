//! Corral's worker agent: registration, heartbeats, the pod sync loop over a
//! container [`runtime::Runtime`], probes, the DNS responder for its pods
//! and the service proxy.
//!
//! - [`agent`]: the shell that runs it all (`corral node`).
//! - [`pod_sync`]: the decision for one pod, a pure function.
//! - [`runtime`]: the container engine interface (Docker, or simulated).
//! - [`probe`]: liveness and readiness probes (state machine + execution).
//! - [`proxy`]: the kube-proxy-style service proxy (planner + forwarder).
//! - [`dns`]: the cluster DNS responder (service names to cluster IPs).
//! - [`downward`]: env values from the pod itself (the downward API).
//! - [`reflector`]: list + watch copies of the objects the agent needs.
//! - [`network`]: the pod network (bridge on the pod CIDR, routes to the
//!   other nodes' pods: bridge, host-gw and vxlan backends).
//! - [`fake`]: a fleet of simulated agents for control-plane tests and
//!   benchmarks (no containers at all).

pub mod agent;
pub mod dns;
pub mod downward;
pub mod fake;
pub mod network;
pub mod pod_sync;
pub mod probe;
pub mod proxy;
pub mod reflector;
pub mod runtime;
