//! The `corral` binary's commands, as a library so that the integration
//! tests and the benchmark drive the very code the operator runs.

pub mod commands;
pub mod config;
pub mod hosts;
pub mod local;
pub mod output;
pub mod resource;
pub mod watch;
