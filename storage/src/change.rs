//! Deterministic changes: what a write becomes before it is applied (and, with replication,
//! what a raft log entry carries).
//!
//! A change fixes everything that could differ between replicas — the time in ms — so that
//! applying the same changes in the same order on any replica produces byte-identical data.
//! Changes are encoded in a small binary format with a leading version byte, decoded in one
//! place ([`Change::decode`]); malformed input is an error, never a panic.

use bytes::Bytes;

use crate::engine::EngineError;

/// Format version written as the first byte of every encoded change.
const FORMAT: u8 = 1;

/// One replicated change to a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client's write command: its arguments and the time it was received.
    Command {
        /// Milliseconds since the Unix epoch, fixed by the receiving node.
        now_ms: i64,
        /// The command's arguments, name first.
        argv: Vec<Bytes>,
    },
    /// Background expiry: delete these keys if they still carry this expiry and it has
    /// passed at `now_ms`.
    Expire {
        /// Milliseconds since the Unix epoch.
        now_ms: i64,
        /// (key, expire-at) pairs read from the expiry index.
        keys: Vec<(Bytes, u64)>,
    },
    /// No data change: raft's empty entries (a new leader's first entry) and membership
    /// changes. Applying it only advances the applied index. Encoded as zero bytes.
    Noop,
    /// Background reclamation of the elements of dropped collection versions.
    Reclaim {
        /// Versions (with their element tag) to reclaim.
        versions: Vec<(u8, u64)>,
        /// Most element keys to delete in this change.
        budget: u32,
    },
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        if self.buf.len() < n {
            return Err(EngineError::Corruption("truncated change".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, EngineError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, EngineError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Bytes, EngineError> {
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }

    /// A count of items that each take at least `min_item` bytes, checked against what is
    /// left so a corrupt count cannot make us allocate.
    fn count(&mut self, min_item: usize) -> Result<usize, EngineError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(EngineError::Corruption(
                "change item count exceeds its size".into(),
            ));
        }
        Ok(n)
    }
}

impl Change {
    /// Encodes the change.
    pub fn encode(&self) -> Vec<u8> {
        if *self == Change::Noop {
            return Vec::new();
        }
        let mut out = vec![FORMAT];
        match self {
            Change::Noop => unreachable!("encoded above"),
            Change::Command { now_ms, argv } => {
                out.push(1);
                out.extend_from_slice(&now_ms.to_be_bytes());
                out.extend_from_slice(&(argv.len() as u32).to_be_bytes());
                for a in argv {
                    put_bytes(&mut out, a);
                }
            }
            Change::Expire { now_ms, keys } => {
                out.push(2);
                out.extend_from_slice(&now_ms.to_be_bytes());
                out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
                for (k, at) in keys {
                    out.extend_from_slice(&at.to_be_bytes());
                    put_bytes(&mut out, k);
                }
            }
            Change::Reclaim { versions, budget } => {
                out.push(3);
                out.extend_from_slice(&budget.to_be_bytes());
                out.extend_from_slice(&(versions.len() as u32).to_be_bytes());
                for (tag, v) in versions {
                    out.push(*tag);
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        out
    }

    /// The encoded size of a command change with arguments `argv`.
    pub fn command_size(argv: &[Bytes]) -> usize {
        1 + 1 + 8 + 4 + argv.iter().map(|a| 4 + a.len()).sum::<usize>()
    }

    /// Decodes [`Change::encode`]'s output.
    pub fn decode(buf: &[u8]) -> Result<Change, EngineError> {
        if buf.is_empty() {
            return Ok(Change::Noop);
        }
        let mut r = Reader { buf };
        if r.u8()? != FORMAT {
            return Err(EngineError::Corruption("unknown change format".into()));
        }
        let change = match r.u8()? {
            1 => {
                let now_ms = r.u64()? as i64;
                let n = r.count(4)?;
                let mut argv = Vec::with_capacity(n);
                for _ in 0..n {
                    argv.push(r.bytes()?);
                }
                Change::Command { now_ms, argv }
            }
            2 => {
                let now_ms = r.u64()? as i64;
                let n = r.count(12)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = r.u64()?;
                    keys.push((r.bytes()?, at));
                }
                Change::Expire { now_ms, keys }
            }
            3 => {
                let budget = r.u32()?;
                let n = r.count(9)?;
                let mut versions = Vec::with_capacity(n);
                for _ in 0..n {
                    let tag = r.u8()?;
                    versions.push((tag, r.u64()?));
                }
                Change::Reclaim { versions, budget }
            }
            kind => {
                return Err(EngineError::Corruption(format!(
                    "unknown change kind {kind}"
                )))
            }
        };
        if !r.buf.is_empty() {
            return Err(EngineError::Corruption(
                "trailing bytes after change".into(),
            ));
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (any::<i64>(), proptest::collection::vec(bytes(), 0..5))
                .prop_map(|(now_ms, argv)| Change::Command { now_ms, argv }),
            (
                any::<i64>(),
                proptest::collection::vec((bytes(), any::<u64>()), 0..5)
            )
                .prop_map(|(now_ms, keys)| Change::Expire { now_ms, keys }),
            (
                proptest::collection::vec((any::<u8>(), any::<u64>()), 0..5),
                any::<u32>()
            )
                .prop_map(|(versions, budget)| Change::Reclaim { versions, budget }),
            Just(Change::Noop),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(c in change()) {
            prop_assert_eq!(Change::decode(&c.encode()).unwrap(), c);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Change::decode(&buf);
        }
    }

    #[test]
    fn command_size_is_the_encoded_size() {
        let argv: Vec<Bytes> = vec!["set".into(), "k".into(), Bytes::from(vec![7u8; 300])];
        let encoded = Change::Command {
            now_ms: 5,
            argv: argv.clone(),
        }
        .encode();
        assert_eq!(Change::command_size(&argv), encoded.len());
    }
}
