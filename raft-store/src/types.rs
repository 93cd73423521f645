//! The data the store speaks: revisions, commands in the Raft log, their
//! results, and watch events. Knows nothing of RocksDB or the network.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The one clock of the data: the Raft log index that last changed a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a write expects of a key's current revision before it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Expect {
    /// No condition.
    #[default]
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key must exist at exactly this revision (compare-and-swap).
    Revision(Revision),
}

impl Expect {
    /// The wire form used by the gRPC API: none = any, 0 = absent, n = revision n.
    pub fn from_wire(expected_revision: Option<u64>) -> Self {
        match expected_revision {
            None => Expect::Any,
            Some(0) => Expect::Absent,
            Some(r) => Expect::Revision(Revision(r)),
        }
    }

    pub fn to_wire(self) -> Option<u64> {
        match self {
            Expect::Any => None,
            Expect::Absent => Some(0),
            Expect::Revision(r) => Some(r.0),
        }
    }

    /// Whether a key whose current revision is `current` satisfies this expectation.
    pub fn holds(self, current: Option<Revision>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Revision(r) => current == Some(r),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Any => write!(f, "any revision"),
            Expect::Absent => write!(f, "absent"),
            Expect::Revision(r) => write!(f, "revision {r}"),
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expect: Expect,
    },
    Delete {
        key: Vec<u8>,
        expect: Expect,
    },
    /// A condition without a write: the transaction applies only if it holds.
    Check {
        key: Vec<u8>,
        expect: Expect,
    },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } | Op::Check { key, .. } => key,
        }
    }

    pub fn expect(&self) -> Expect {
        match self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } | Op::Check { expect, .. } => *expect,
        }
    }
}

/// All or nothing: every condition is checked first; if one fails nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Txn {
    pub ops: Vec<Op>,
}

/// The application entry of the Raft log. Versioned so that an upgraded
/// master can still read an old log: new variants are appended, existing
/// ones never change shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Independent transactions from concurrent clients, batched into one
    /// entry (one fsync) by the proposer. Applied in order; each is all or
    /// nothing on its own, and all of them share the entry's revision.
    Txns(Vec<Txn>),
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Txns(txns) => write!(f, "txns({})", txns.len()),
        }
    }
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The transaction applied; one result per operation, in order.
    Applied(Vec<OpResult>),
    /// A condition failed; nothing was written.
    Conflict(Conflict),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    /// The key's revision before this operation (none if it did not exist).
    pub prev_revision: Option<Revision>,
}

/// Which condition of a transaction failed, and what the key really holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub op_index: usize,
    pub key: Vec<u8>,
    pub expected: Expect,
    pub actual: Option<Revision>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actual = match self.actual {
            Some(r) => format!("is at revision {r}"),
            None => "does not exist".to_string(),
        };
        write!(
            f,
            "compare-and-swap failed on key {:?} (operation {}): expected {}, but it {}; re-read the key and retry",
            String::from_utf8_lossy(&self.key),
            self.op_index,
            self.expected,
            actual
        )
    }
}

/// What the state machine answers for a log entry: the entry's revision and
/// one outcome per transaction (none for Raft's own blank and membership entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub revision: Revision,
    pub outcomes: Vec<Outcome>,
}

/// A key, its value, and the revision that last changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: Revision,
    pub kind: EventKind,
    pub key: Vec<u8>,
    /// The new value for a put; the value the key had, for a delete.
    pub value: Vec<u8>,
    pub prev_revision: Option<Revision>,
}
