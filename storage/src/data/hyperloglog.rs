//! Execution of PFADD, PFCOUNT and PFMERGE on string values holding [`Hll`] sketches.
//!
//! Keys are looked up, type-checked and announced (keymiss) in Redis's order; a value is
//! written only when it changed: PFADD that raised no register writes nothing, PFCOUNT of
//! one key writes only to store a cardinality it had to compute.

use bytes::Bytes;
use zankv_commands::hyperloglog::HllCommand;
use zankv_commands::{notify, CommandError, Reply};

use super::hll::{count_registers, Corrupt, Hll, NotHll, REGISTERS};
use super::{ExecResult, Txn};
use crate::records::{KeyBody, KeyMeta, KeyType};

impl From<NotHll> for CommandError {
    fn from(_: NotHll) -> Self {
        CommandError::NotHll
    }
}

impl From<Corrupt> for CommandError {
    fn from(_: Corrupt) -> Self {
        CommandError::CorruptHll
    }
}

/// A key's sketch and expiry, `None` when the key is missing (announced as a miss when
/// `reading`); WRONGTYPE for another type, [`CommandError::NotHll`] for another string.
fn sketch(
    txn: &mut Txn<'_>,
    key: &Bytes,
    reading: bool,
) -> Result<Option<(Hll, Option<u64>)>, super::ExecError> {
    match txn.typed_meta(key, KeyType::String)? {
        Some(KeyMeta {
            expire_at,
            body: KeyBody::String(value),
        }) => Ok(Some((
            Hll::from_value(value).map_err(CommandError::from)?,
            expire_at,
        ))),
        Some(_) => Err(CommandError::WrongType.into()),
        None => {
            if reading {
                txn.notify(notify::KEY_MISS, "keymiss", key);
            }
            Ok(None)
        }
    }
}

fn store(
    txn: &mut Txn<'_>,
    key: &[u8],
    hll: Hll,
    expire_at: Option<u64>,
) -> Result<(), super::ExecError> {
    let meta = KeyMeta {
        expire_at,
        body: KeyBody::String(hll.into_bytes()),
    };
    Ok(txn.set_meta(key, &meta)?)
}

/// Executes a HyperLogLog command.
pub fn write(txn: &mut Txn<'_>, cmd: &HllCommand) -> ExecResult {
    match cmd {
        HllCommand::Add(key, elements) => {
            let (mut hll, expire_at, mut updated) = match sketch(txn, key, false)? {
                Some((hll, expire_at)) => (hll, expire_at, false),
                None => (Hll::new(), None, true),
            };
            for element in elements {
                match hll.add(element) {
                    Ok(raised) => updated |= raised,
                    // As Redis, whose sketch is edited in place: the registers raised before
                    // the damage was found stay raised, and the reply is the error.
                    Err(Corrupt) => {
                        if updated {
                            store(txn, key, hll, expire_at)?;
                        }
                        return Ok(Reply::Error(Corrupt.into()));
                    }
                }
            }
            if updated {
                hll.invalidate();
                store(txn, key, hll, expire_at)?;
                txn.notify(notify::STRING, "pfadd", key);
            }
            Ok(Reply::Integer(i64::from(updated)))
        }
        HllCommand::Count(keys) if keys.len() == 1 => {
            let Some((mut hll, expire_at)) = sketch(txn, &keys[0], true)? else {
                return Ok(Reply::Integer(0));
            };
            if let Some(card) = hll.cached() {
                return Ok(Reply::Integer(card as i64));
            }
            let card = hll.count().map_err(CommandError::from)?;
            hll.set_cached(card);
            store(txn, &keys[0], hll, expire_at)?;
            Ok(Reply::Integer(card as i64))
        }
        HllCommand::Count(keys) => {
            let mut max = [0u8; REGISTERS];
            for key in keys {
                if let Some((hll, _)) = sketch(txn, key, true)? {
                    hll.merge_into(&mut max).map_err(CommandError::from)?;
                }
            }
            Ok(Reply::Integer(count_registers(&max) as i64))
        }
        HllCommand::Debug(sub, key) => debug(txn, sub, key),
        HllCommand::SelfTest => match super::hll::self_test() {
            Ok(()) => Ok(Reply::OK),
            Err(failure) => Err(CommandError::Internal(format!("TESTFAILED {failure}")).into()),
        },
        HllCommand::Merge(dest, sources) => {
            let mut max = [0u8; REGISTERS];
            let mut dense = false;
            let mut target = None;
            for (i, key) in std::iter::once(dest).chain(sources).enumerate() {
                if let Some((hll, expire_at)) = sketch(txn, key, true)? {
                    dense |= hll.is_dense();
                    hll.merge_into(&mut max).map_err(CommandError::from)?;
                    if i == 0 {
                        target = Some((hll, expire_at));
                    }
                }
            }
            let (mut hll, expire_at) = target.unwrap_or_default();
            if dense {
                hll.to_dense().map_err(CommandError::from)?;
            }
            for (index, &count) in max.iter().enumerate() {
                if count > 0 {
                    // As Redis, a sparse destination's inconsistency found here is ignored
                    // (its registers were read whole above).
                    let _ = hll.raise(index, count);
                }
            }
            hll.invalidate();
            store(txn, dest, hll, expire_at)?;
            txn.notify(notify::STRING, "pfadd", dest);
            Ok(Reply::OK)
        }
    }
}

/// PFDEBUG: the key must exist and hold a sketch before the subcommand is looked at.
fn debug(txn: &mut Txn<'_>, sub: &Bytes, key: &Bytes) -> ExecResult {
    let Some((mut hll, expire_at)) = sketch(txn, key, false)? else {
        return Err(CommandError::HllDebugNoKey.into());
    };
    match sub.to_ascii_lowercase().as_slice() {
        b"getreg" => {
            if !hll.is_dense() {
                hll.to_dense().map_err(CommandError::from)?;
                let registers = hll.registers();
                store(txn, key, hll, expire_at)?;
                return Ok(register_reply(registers));
            }
            Ok(register_reply(hll.registers()))
        }
        b"decode" if hll.is_dense() => Err(CommandError::HllNotSparse.into()),
        b"decode" => Ok(Reply::bulk(hll.describe_runs())),
        b"encoding" => Ok(Reply::Status(if hll.is_dense() {
            "dense"
        } else {
            "sparse"
        })),
        b"todense" => {
            if hll.is_dense() {
                return Ok(Reply::Integer(0));
            }
            hll.to_dense().map_err(CommandError::from)?;
            store(txn, key, hll, expire_at)?;
            Ok(Reply::Integer(1))
        }
        _ => Err(CommandError::HllDebugUnknown(String::from_utf8_lossy(sub).into_owned()).into()),
    }
}

fn register_reply(registers: Vec<u8>) -> Reply {
    Reply::Array(
        registers
            .into_iter()
            .map(|r| Reply::Integer(i64::from(r)))
            .collect(),
    )
}
