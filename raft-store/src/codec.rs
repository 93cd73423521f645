//! Byte encodings of what the store persists and sends: bincode 2 (serde)
//! behind a one-byte format version, so that a newer master can still read
//! what an older one wrote.

use serde::{de::DeserializeOwned, Serialize};

/// The format version written in front of every encoded value.
pub const FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("empty payload: expected a format version byte")]
    Empty,
    #[error("unknown format version {0}: written by a newer Corral? upgrade this master")]
    UnknownVersion(u8),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut out, config())?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_V1 {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, _) = bincode::serde::decode_from_slice(body, config())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    #[test]
    fn commands_round_trip_with_their_version() {
        let cmd = Command::Txns(vec![Txn {
            ops: vec![Op::Put { key: b"k".to_vec(), value: b"v".to_vec(), expect: Expect::Absent }],
        }]);
        let bytes = encode(&cmd).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<Command>(&bytes).unwrap(), cmd);
    }

    #[test]
    fn unknown_version_is_refused_by_name() {
        let err = decode::<Command>(&[9, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("unknown format version 9"), "{err}");
    }
}
