//! Corral's worker agent: registration, heartbeats, the pod sync loop over a
//! container `Runtime`, probes ([`probe`]), the DNS responder for its pods
//! ([`dns`]) and the service proxy.
//!
//! The Docker agent arrives with the worker-node issue. What is here is the
//! simulated fleet ([`fake`]) that integration tests and benchmarks use in
//! place of real nodes: it speaks the same API a real agent will.

pub mod dns;
pub mod fake;
pub mod probe;
pub mod runtime;
