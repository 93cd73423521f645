//! The history of a register workload: every operation a client invoked,
//! when, and what came back. Real-time order is a global sequence number
//! taken at invoke and at return (turmoil runs every host on one thread, so
//! the order of these numbers is the order things happened); the simulated
//! time is kept for people reading a failing history.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One register operation as a client asked for it. Values are unique per
/// write, so a value names the write that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Read,
    Write(u32),
    /// Compare-and-swap on the revision at which the client read `expect`
    /// (`None`: the key must be absent).
    Cas {
        expect: Option<u32>,
        new: u32,
    },
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The value read and the revision it carried.
    Read(Option<(u32, u64)>),
    /// Acknowledged at this revision.
    Written(u64),
    /// The condition failed: the write did not happen.
    CasFailed,
    /// A read that failed (no effect: left out of the check).
    ReadFailed(String),
    /// A write every master refused before it could apply (not the leader,
    /// or no connection): no effect, left out of the check.
    NotApplied(String),
    /// A write that failed or timed out: it may or may not have happened.
    Unknown(String),
}

/// One operation of one process.
#[derive(Debug, Clone)]
pub struct Op {
    /// A client process; a process whose write ended unknown is retired
    /// (its operation stays open forever) and the client goes on as a new one.
    pub process: u64,
    pub key: usize,
    pub call: Call,
    pub invoked: u64,
    pub invoked_at: Duration,
    pub returned: Option<(u64, Duration, Outcome)>,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    ops: Vec<Op>,
}

/// Records a history; cheap to clone, shared by every client task.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Inner>>);

/// The simulated time since the simulation started.
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl Recorder {
    /// Notes an invocation; returns its handle for [`Recorder::returned`].
    pub fn invoke(&self, process: u64, key: usize, call: Call) -> usize {
        let mut inner = self.0.lock().expect("history lock");
        inner.seq += 1;
        let op = Op { process, key, call, invoked: inner.seq, invoked_at: sim_now(), returned: None };
        inner.ops.push(op);
        inner.ops.len() - 1
    }

    pub fn returned(&self, handle: usize, outcome: Outcome) {
        let mut inner = self.0.lock().expect("history lock");
        inner.seq += 1;
        let seq = inner.seq;
        inner.ops[handle].returned = Some((seq, sim_now(), outcome));
    }

    /// Every operation so far, in invocation order.
    pub fn ops(&self) -> Vec<Op> {
        self.0.lock().expect("history lock").ops.clone()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The sequence numbers are the real-time order the check uses.
        let at = self.invoked_at.as_secs_f64();
        write!(f, "p{:<5} key {} #{:<6} {at:>9.3}s ", self.process, self.key, self.invoked)?;
        match &self.returned {
            Some((seq, at, outcome)) => {
                write!(f, "..#{seq:<6} {:>9.3}s  {:?} -> {outcome:?}", at.as_secs_f64(), self.call)
            }
            None => write!(f, "..   (open)  {:?}", self.call),
        }
    }
}
