//! What runs on the leader only: a supervisor that starts the scheduler and
//! controllers when this master becomes leader and stops them when it loses
//! the leadership, the cache they read, and the loop that writes their
//! decisions with compare-and-swap.

mod autoscaler;
pub mod cache;
pub mod manager;
pub mod supervisor;
pub mod writer;
