//! Size limits of what clients may store, checked at the edge before a
//! command reaches the log. etcd's 1.5 MiB request limit is the reference.

use crate::types::{Op, Txn};

/// The largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// The largest transaction (keys plus values), in bytes: etcd's 1.5 MiB.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// The most operations in one transaction.
pub const MAX_TXN_OPS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("operation {op}: the key is empty; keys must be 1 to {MAX_KEY_BYTES} bytes")]
    EmptyKey { op: usize },
    #[error("operation {op}: the key is {len} bytes; keys must be at most {MAX_KEY_BYTES} bytes")]
    KeyTooLarge { op: usize, len: usize },
    #[error("the request is {len} bytes; the limit is {MAX_REQUEST_BYTES} bytes (1.5 MiB): split it or store less")]
    RequestTooLarge { len: usize },
    #[error("the transaction has {len} operations; the limit is {MAX_TXN_OPS}")]
    TooManyOps { len: usize },
    #[error("the transaction has no operations")]
    EmptyTxn,
}

/// Checks a transaction against the limits; nothing over them reaches the log.
pub fn check_txn(txn: &Txn) -> Result<(), LimitError> {
    if txn.ops.is_empty() {
        return Err(LimitError::EmptyTxn);
    }
    if txn.ops.len() > MAX_TXN_OPS {
        return Err(LimitError::TooManyOps { len: txn.ops.len() });
    }
    let mut total = 0usize;
    for (i, op) in txn.ops.iter().enumerate() {
        check_key(i, op.key())?;
        total += op.key().len();
        if let Op::Put { value, .. } = op {
            total += value.len();
        }
    }
    if total > MAX_REQUEST_BYTES {
        return Err(LimitError::RequestTooLarge { len: total });
    }
    Ok(())
}

/// Checks one key (also used for reads).
pub fn check_key(op: usize, key: &[u8]) -> Result<(), LimitError> {
    if key.is_empty() {
        return Err(LimitError::EmptyKey { op });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(LimitError::KeyTooLarge { op, len: key.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Expect;

    fn put(key: &[u8], len: usize) -> Op {
        Op::Put { key: key.to_vec(), value: vec![0; len], expect: Expect::Any }
    }

    #[test]
    fn limits_name_what_is_wrong() {
        assert_eq!(check_txn(&Txn { ops: vec![] }), Err(LimitError::EmptyTxn));
        assert_eq!(check_txn(&Txn { ops: vec![put(b"", 1)] }), Err(LimitError::EmptyKey { op: 0 }));
        let big_key = vec![b'k'; MAX_KEY_BYTES + 1];
        assert!(matches!(
            check_txn(&Txn { ops: vec![put(&big_key, 1)] }),
            Err(LimitError::KeyTooLarge { .. })
        ));
        let err = check_txn(&Txn { ops: vec![put(b"a", MAX_REQUEST_BYTES)] }).unwrap_err();
        assert!(err.to_string().contains("1.5 MiB"), "{err}");
        assert!(check_txn(&Txn { ops: vec![put(b"a", MAX_REQUEST_BYTES - 1)] }).is_ok());
    }
}
