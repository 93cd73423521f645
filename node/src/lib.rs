//! Corral's worker agent: registration, heartbeats, the pod sync loop over a
//! container `Runtime`, probes and the service proxy.
//!
//! The Docker agent arrives with the worker-node issue. What is here is the
//! container [`runtime`] it will drive (Docker through bollard, and an
//! in-memory simulation for tests), and the simulated fleet ([`fake`]) that
//! integration tests and benchmarks use in place of real nodes: it speaks
//! the same API a real agent will.

pub mod fake;
pub mod runtime;
