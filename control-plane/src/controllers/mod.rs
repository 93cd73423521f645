//! The decisions of the leader's controllers, as pure functions over plain
//! data: given the objects a controller watches (and `now`, when time
//! matters), each returns what should change. Nothing here reads the store,
//! the clock or a random source; the control loops that list objects, call
//! these functions and write the results are the shell, and live elsewhere.
//!
//! One module per controller: [`deployment`] (pods of the current template,
//! rolling updates, revision history), [`endpoints`] (the addresses behind a
//! Service), [`node_ipam`] (pod CIDRs for nodes), [`node_lifecycle`] (silent
//! nodes, lost pods, drains), [`gc`] (objects whose owners are gone), [`hpa`]
//! (the horizontal pod autoscaler's decision) and [`events`] (Event objects
//! that count repeats). [`pods`] holds what every controller reads from a
//! pod.

pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod hpa;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pods;

mod hash;
#[cfg(test)]
mod testing;
