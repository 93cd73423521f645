//! Corral's worker agent: registration, heartbeats, the pod sync loop over a
//! container `Runtime`, probes and the service proxy.
//!
//! Not built yet: it arrives with the worker-node issue, on top of the
//! control plane's object model. The crate exists so that the workspace has
//! the layout of the design from the start.
