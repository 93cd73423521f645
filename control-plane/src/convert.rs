//! Conversions between the wire (`pb`) and the store's types, parsed once at the edge.

use raft_store::limits;
use raft_store::{Event, EventKind, Expect, KeyValue, Op, OpResult, Revision, Txn};

use crate::error::ApiError;
use crate::pb;

pub fn kv_to_pb(kv: KeyValue) -> pb::KeyValue {
    pb::KeyValue { key: kv.key, value: kv.value, revision: kv.revision.0 }
}

pub fn event_to_pb(e: Event) -> pb::Event {
    let kind = match e.kind {
        EventKind::Put => pb::event::Kind::Put,
        EventKind::Delete => pb::event::Kind::Delete,
    };
    pb::Event {
        kind: kind as i32,
        key: e.key,
        value: e.value,
        revision: e.revision.0,
        prev_revision: e.prev_revision.map(|r| r.0),
    }
}

pub fn put_to_txn(req: pb::PutRequest) -> Txn {
    let expect = Expect::from_wire(req.expected_revision);
    Txn { ops: vec![Op::Put { key: req.key, value: req.value, expect }] }
}

pub fn delete_to_txn(req: pb::DeleteRequest) -> Txn {
    Txn { ops: vec![Op::Delete { key: req.key, expect: Expect::from_wire(req.expected_revision) }] }
}

/// Parses a transaction request; an unknown operation kind is named by its position.
pub fn txn_from_pb(req: pb::TxnRequest) -> Result<Txn, ApiError> {
    let mut ops = Vec::with_capacity(req.ops.len());
    for (i, op) in req.ops.into_iter().enumerate() {
        let expect = Expect::from_wire(op.expected_revision);
        let kind = pb::txn_op::Kind::try_from(op.kind).unwrap_or(pb::txn_op::Kind::Unspecified);
        ops.push(match kind {
            pb::txn_op::Kind::Put => Op::Put { key: op.key, value: op.value, expect },
            pb::txn_op::Kind::Delete => Op::Delete { key: op.key, expect },
            pb::txn_op::Kind::Check => Op::Check { key: op.key, expect },
            pb::txn_op::Kind::Unspecified => {
                return Err(ApiError::InvalidArgument(format!(
                    "ops[{i}].kind is {}: expected PUT, DELETE or CHECK",
                    op.kind
                )))
            }
        });
    }
    let txn = Txn { ops };
    limits::check_txn(&txn).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    Ok(txn)
}

pub fn txn_to_pb(txn: &Txn) -> pb::TxnRequest {
    let ops = txn
        .ops
        .iter()
        .map(|op| {
            let (kind, value) = match op {
                Op::Put { value, .. } => (pb::txn_op::Kind::Put, value.clone()),
                Op::Delete { .. } => (pb::txn_op::Kind::Delete, Vec::new()),
                Op::Check { .. } => (pb::txn_op::Kind::Check, Vec::new()),
            };
            pb::TxnOp {
                kind: kind as i32,
                key: op.key().to_vec(),
                value,
                expected_revision: op.expect().to_wire(),
            }
        })
        .collect();
    pb::TxnRequest { ops }
}

pub fn write_to_pb(revision: Revision, results: Vec<OpResult>) -> pb::WriteResponse {
    pb::WriteResponse {
        revision: revision.0,
        results: results
            .into_iter()
            .map(|r| pb::OpResult { prev_revision: r.prev_revision.map(|r| r.0) })
            .collect(),
    }
}
