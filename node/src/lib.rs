//! Corral's worker agent: registration, heartbeats, the pod sync loop over a
//! container [`runtime::Runtime`], probes and the service proxy.
//!
//! - [`agent`]: the shell that runs it all (`corral node`).
//! - [`pod_sync`]: the decision for one pod, a pure function.
//! - [`runtime`]: the container engine interface (Docker, or simulated).
//! - [`proxy`]: the kube-proxy-style service proxy (planner + forwarder).
//! - [`reflector`]: list + watch copies of the objects the agent needs.
//! - [`fake`]: a fleet of simulated agents for control-plane tests and
//!   benchmarks (no containers at all).

pub mod agent;
pub mod fake;
pub mod pod_sync;
pub mod proxy;
pub mod reflector;
pub mod runtime;
