//! Corral's control plane: the API every master serves and the typed client
//! that the CLI (and later the node agents) use.
//!
//! For now it exposes the replicated store (get, list, put, delete,
//! transactions with compare-and-swap, watch) and the cluster's membership
//! and status. Writes and linearizable reads that reach a follower are
//! forwarded to the leader, so any master address works.

pub mod api;
pub mod client;
pub mod clock;
pub mod cluster_ip;
pub mod controllers;
pub mod convert;
pub mod error;
pub mod leader;
pub mod lease;
pub mod master;
pub mod metrics;
pub mod objects;
pub mod scheduler;
pub mod service;

pub mod pb {
    //! Generated from `proto/cluster.proto`.
    tonic::include_proto!("corral.cluster.v1");
}

pub use client::{ClientError, CorralClient};
pub use master::{Master, MasterConfig};
