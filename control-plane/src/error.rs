//! The control plane's errors, and their one conversion into gRPC statuses.

use raft_store::proposer::ProposeError;
use raft_store::{Conflict, StoreError};
use tonic::{Code, Status};

/// The metadata key that marks a compare-and-swap conflict (a failed
/// precondition the caller can retry after re-reading).
pub const CONFLICT_MARK: &str = "x-corral-conflict";

/// The metadata key that marks a write refused before it could apply (the
/// master was not the leader: openraft answers ForwardToLeader only for an
/// entry it never appended or had to truncate, which was never committed).
/// A client may retry such a write without doubling it.
pub const NOT_APPLIED_MARK: &str = "x-corral-not-applied";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Conflict(Conflict),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    /// Unavailable, and surely not applied (see [`NOT_APPLIED_MARK`]).
    #[error("{0}")]
    NotApplied(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Limit(l) => ApiError::InvalidArgument(l.to_string()),
            ProposeError::NotLeader { .. } => ApiError::NotApplied(format!("{e}; retry")),
            ProposeError::Fatal(_) => ApiError::Unavailable(format!("{e}; restart this master")),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::Conflict(c) => conflict_status(c.to_string()),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::NotApplied(m) => not_applied(Status::unavailable(m)),
            ApiError::Internal(m) => Status::internal(m),
            ApiError::Store(e @ StoreError::Compacted { .. }) => Status::out_of_range(e.to_string()),
            ApiError::Store(e @ StoreError::Limit(_)) => Status::invalid_argument(e.to_string()),
            ApiError::Store(e @ StoreError::ShuttingDown) => Status::unavailable(e.to_string()),
            ApiError::Store(e) => Status::internal(format!("store error: {e}")),
        }
    }
}

/// A compare-and-swap conflict on an object: retriable after a fresh read.
pub fn conflict_status(message: impl Into<String>) -> Status {
    let mut s = Status::failed_precondition(message.into());
    s.metadata_mut().insert(CONFLICT_MARK, "1".parse().expect("ascii"));
    s
}

/// Marks `status` as a write that was surely not applied.
pub fn not_applied(mut status: Status) -> Status {
    status.metadata_mut().insert(NOT_APPLIED_MARK, "1".parse().expect("ascii"));
    status
}

/// Whether a status says its write was surely not applied.
pub fn is_not_applied(status: &Status) -> bool {
    status.metadata().contains_key(NOT_APPLIED_MARK)
}

/// Whether a status is a compare-and-swap conflict.
pub fn is_conflict(status: &Status) -> bool {
    status.code() == Code::FailedPrecondition && status.metadata().contains_key(CONFLICT_MARK)
}
