//! Execution of string commands.

use bytes::Bytes;
use zankv_commands::number::{long_double_add, parse_i64, FloatIncrError};
use zankv_commands::string::{
    bit_operation, lcs, lcs_options, parse_bitcount_range, parse_bitpos_range, BitRange,
    GetExUpdate, SetCondition, StringRead, StringWrite, TtlUpdate, MAX_STRING_LEN,
};
use zankv_commands::{notify, CommandError, Reply};

use super::{typed_meta, ExecResult, ReadCtx, Txn};
use crate::engine::EngineError;
use crate::records::{KeyBody, KeyMeta, KeyType};

fn string_value(meta: &KeyMeta) -> &[u8] {
    match &meta.body {
        KeyBody::String(v) => v,
        KeyBody::Collection { .. } => &[],
    }
}

/// [`string_value`], taking the value's allocation.
fn into_string_value(meta: KeyMeta) -> Vec<u8> {
    match meta.body {
        KeyBody::String(v) => v,
        KeyBody::Collection { .. } => Vec::new(),
    }
}

/// A string key's expiry and value (none and empty when there is no key).
fn expiry_and_value(meta: Option<KeyMeta>) -> (Option<u64>, Vec<u8>) {
    match meta {
        Some(m) => (m.expire_at, into_string_value(m)),
        None => (None, Vec::new()),
    }
}

/// Writes a string key's value, with its expiry.
fn store_string(
    txn: &mut Txn<'_>,
    key: &[u8],
    expire_at: Option<u64>,
    value: Vec<u8>,
) -> Result<(), EngineError> {
    txn.set_meta(
        key,
        &KeyMeta {
            expire_at,
            body: KeyBody::String(value),
        },
    )
}

/// The largest table LCS builds: Redis's default proto-max-bulk-len.
const LCS_MAX_TABLE: u64 = 512 << 20;

/// Executes a read-only string command.
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &StringRead) -> ExecResult {
    let get = |key: &[u8]| typed_meta(ctx.view, key, ctx.now_ms, KeyType::String);
    match cmd {
        StringRead::Get(key) => Ok(match get(key)? {
            Some(m) => Reply::bulk(into_string_value(m)),
            None => Reply::Nil,
        }),
        StringRead::MGet(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(match super::live_meta(ctx.view, key, ctx.now_ms)? {
                    Some(KeyMeta {
                        body: KeyBody::String(v),
                        ..
                    }) => Reply::bulk(v),
                    _ => Reply::Nil,
                });
            }
            Ok(Reply::Array(out))
        }
        StringRead::StrLen(key) => Ok(Reply::Integer(
            get(key)?.map_or(0, |m| string_value(&m).len() as i64),
        )),
        StringRead::GetRange(key, start, end) => {
            let Some(m) = get(key)? else {
                return Ok(Reply::bulk(Bytes::new()));
            };
            Ok(Reply::bulk_from(get_range(string_value(&m), *start, *end)))
        }
        StringRead::GetBit(key, offset) => {
            let bit = get(key)?.map_or(0, |m| bit_at(string_value(&m), *offset));
            Ok(Reply::Integer(i64::from(bit)))
        }
        StringRead::BitCount(key, args) => {
            let Some(m) = get(key)? else {
                return Ok(Reply::Integer(0));
            };
            match parse_bitcount_range(args) {
                Ok(range) => Ok(Reply::Integer(bit_count(string_value(&m), range))),
                Err(None) => Ok(Reply::Integer(0)),
                Err(Some(e)) => Err(e.into()),
            }
        }
        StringRead::Lcs(first, second, args) => {
            // Both keys are looked up before either's type is judged, as Redis does; a
            // missing key is an empty string.
            let metas = [
                super::live_meta(ctx.view, first, ctx.now_ms)?,
                super::live_meta(ctx.view, second, ctx.now_ms)?,
            ];
            let mut values = Vec::with_capacity(2);
            for meta in metas {
                values.push(match meta {
                    None => Vec::new(),
                    Some(KeyMeta {
                        body: KeyBody::String(v),
                        ..
                    }) => v,
                    Some(_) => return Err(CommandError::LcsNotStrings.into()),
                });
            }
            let options = lcs_options(args)?;
            Ok(lcs(&values[0], &values[1], &options, LCS_MAX_TABLE)?)
        }
        StringRead::BitField(key, field) => {
            let mut value = get(key)?.map(into_string_value).unwrap_or_default();
            Ok(Reply::Array(field.run(&mut value).0))
        }
        StringRead::BitPos(key, bit, args) => {
            let Some(m) = get(key)? else {
                return Ok(Reply::Integer(if *bit { -1 } else { 0 }));
            };
            let range = parse_bitpos_range(args)?;
            Ok(Reply::Integer(bit_pos(string_value(&m), *bit, range)))
        }
    }
}

/// Executes a string command that writes.
pub fn write(txn: &mut Txn<'_>, cmd: &StringWrite) -> ExecResult {
    match cmd {
        StringWrite::Set {
            key,
            value,
            condition,
            get,
            ttl,
            command,
        } => {
            let expire_at = match ttl {
                TtlUpdate::Set(e) => Some(
                    e.at(txn.now_ms)
                        .filter(|&at| at > 0)
                        .ok_or(CommandError::InvalidExpireTime(command))?,
                ),
                _ => None,
            };
            let old = txn.live_meta(key)?;
            let mut reply = Reply::OK;
            if *get {
                reply = match &old {
                    Some(m) if m.key_type() == KeyType::String => Reply::bulk_from(string_value(m)),
                    Some(_) => return Err(CommandError::WrongType.into()),
                    // GET reads the key first (Redis's lookupKeyRead): a miss is announced
                    // before SET's own events, set or not.
                    None => {
                        txn.notify(notify::KEY_MISS, "keymiss", key);
                        Reply::Nil
                    }
                };
            }
            let found = old.is_some();
            if (*condition == SetCondition::IfMissing && found)
                || (*condition == SetCondition::IfExists && !found)
            {
                return Ok(if *get { reply } else { Reply::Nil });
            }
            let expire_at = match ttl {
                TtlUpdate::Clear => None,
                TtlUpdate::Keep => old.and_then(|m| m.expire_at),
                TtlUpdate::Set(_) => expire_at.map(|at| at as u64),
            };
            txn.set_meta(
                key,
                &KeyMeta {
                    expire_at,
                    body: KeyBody::String(value.to_vec()),
                },
            )?;
            txn.notify(notify::STRING, "set", key);
            if let TtlUpdate::Set(_) = ttl {
                txn.notify(notify::GENERIC, "expire", key);
            }
            Ok(reply)
        }
        StringWrite::SetNx(key, value) => {
            if txn.live_meta(key)?.is_some() {
                return Ok(Reply::Integer(0));
            }
            txn.set_meta(key, &KeyMeta::string(value.to_vec()))?;
            txn.notify(notify::STRING, "set", key);
            Ok(Reply::Integer(1))
        }
        StringWrite::GetDel(key) => {
            let Some(m) = txn.typed_meta(key, KeyType::String)? else {
                txn.notify(notify::KEY_MISS, "keymiss", key);
                return Ok(Reply::Nil);
            };
            txn.delete_key(key)?;
            txn.notify(notify::GENERIC, "del", key);
            Ok(Reply::bulk_from(string_value(&m)))
        }
        StringWrite::GetEx(key, update) => {
            // A missing key answers nil (and is a key miss) before the expiry is checked.
            let Some(mut m) = txn.typed_meta(key, KeyType::String)? else {
                txn.notify(notify::KEY_MISS, "keymiss", key);
                return Ok(Reply::Nil);
            };
            let new_at = match update {
                GetExUpdate::Set(e) => Some(
                    e.check("getex")?
                        .at(txn.now_ms)
                        .filter(|&at| at > 0)
                        .ok_or(CommandError::InvalidExpireTime("getex"))?,
                ),
                _ => None,
            };
            let reply = Reply::bulk_from(string_value(&m));
            match (update, new_at) {
                (GetExUpdate::Set(_), Some(at)) if at <= txn.now_ms => {
                    txn.delete_key(key)?;
                    txn.notify(notify::GENERIC, "del", key);
                }
                (GetExUpdate::Set(_), Some(at)) => {
                    m.expire_at = Some(at as u64);
                    txn.set_meta(key, &m)?;
                    txn.notify(notify::GENERIC, "expire", key);
                }
                (GetExUpdate::Persist, _) if m.expire_at.is_some() => {
                    m.expire_at = None;
                    txn.set_meta(key, &m)?;
                    txn.notify(notify::GENERIC, "persist", key);
                }
                _ => {}
            }
            Ok(reply)
        }
        StringWrite::MSet {
            pairs,
            only_if_none_exist,
        } => {
            if *only_if_none_exist {
                for (key, _) in pairs {
                    if txn.live_meta(key)?.is_some() {
                        return Ok(Reply::Integer(0));
                    }
                }
            }
            for (key, value) in pairs {
                txn.set_meta(key, &KeyMeta::string(value.to_vec()))?;
                txn.notify(notify::STRING, "set", key);
            }
            Ok(if *only_if_none_exist {
                Reply::Integer(1)
            } else {
                Reply::OK
            })
        }
        StringWrite::IncrBy(key, by) => {
            let old = txn.typed_meta(key, KeyType::String)?;
            let current = match &old {
                Some(m) => parse_i64(string_value(m)).ok_or(CommandError::NotInteger)?,
                None => 0,
            };
            let next = current.checked_add(*by).ok_or(CommandError::Overflow)?;
            let expire_at = old.and_then(|m| m.expire_at);
            txn.set_meta(
                key,
                &KeyMeta {
                    expire_at,
                    body: KeyBody::String(next.to_string().into_bytes()),
                },
            )?;
            txn.notify(notify::STRING, "incrby", key);
            Ok(Reply::Integer(next))
        }
        StringWrite::IncrByFloat(key, by) => {
            let old = txn.typed_meta(key, KeyType::String)?;
            let base = old.as_ref().map(string_value);
            let next = long_double_add(base, by).map_err(|e| match e {
                FloatIncrError::BaseNotFloat | FloatIncrError::IncrNotFloat => {
                    CommandError::NotFloat
                }
                FloatIncrError::NanOrInfinity => CommandError::NanOrInfinity,
            })?;
            let expire_at = old.and_then(|m| m.expire_at);
            txn.set_meta(
                key,
                &KeyMeta {
                    expire_at,
                    body: KeyBody::String(next.clone()),
                },
            )?;
            txn.notify(notify::STRING, "incrbyfloat", key);
            Ok(Reply::bulk(next))
        }
        StringWrite::Append(key, suffix) => {
            let old = txn.typed_meta(key, KeyType::String)?;
            let (expire_at, mut value) = expiry_and_value(old);
            if (value.len() + suffix.len()) as u64 > MAX_STRING_LEN {
                return Err(CommandError::StringTooLong.into());
            }
            value.extend_from_slice(suffix);
            let len = value.len() as i64;
            store_string(txn, key, expire_at, value)?;
            txn.notify(notify::STRING, "append", key);
            Ok(Reply::Integer(len))
        }
        StringWrite::SetRange(key, offset, patch) => {
            let offset = *offset as u64;
            let old = txn.typed_meta(key, KeyType::String)?;
            let (mut value, expire_at) = match old {
                Some(m) => (string_value(&m).to_vec(), m.expire_at),
                None if patch.is_empty() => return Ok(Reply::Integer(0)),
                None => (Vec::new(), None),
            };
            if patch.is_empty() {
                return Ok(Reply::Integer(value.len() as i64));
            }
            if offset + patch.len() as u64 > MAX_STRING_LEN {
                return Err(CommandError::StringTooLong.into());
            }
            let offset = offset as usize;
            if value.len() < offset + patch.len() {
                value.resize(offset + patch.len(), 0);
            }
            value[offset..offset + patch.len()].copy_from_slice(patch);
            let len = value.len() as i64;
            store_string(txn, key, expire_at, value)?;
            txn.notify(notify::STRING, "setrange", key);
            Ok(Reply::Integer(len))
        }
        StringWrite::SetBit(key, offset, bit) => {
            let old = txn.typed_meta(key, KeyType::String)?;
            let (expire_at, mut value) = expiry_and_value(old);
            let byte = (*offset >> 3) as usize;
            let grew = value.len() <= byte;
            if grew {
                value.resize(byte + 1, 0);
            }
            let mask = 1u8 << (7 - (*offset & 7) as u8);
            let previous = value[byte] & mask != 0;
            if *bit {
                value[byte] |= mask;
            } else {
                value[byte] &= !mask;
            }
            store_string(txn, key, expire_at, value)?;
            // Redis 7.0 notifies only when the key was created or grown, or the bit changed.
            if grew || previous != *bit {
                txn.notify(notify::STRING, "setbit", key);
            }
            Ok(Reply::Integer(i64::from(previous)))
        }
        StringWrite::BitField(key, field) => {
            let old = txn.typed_meta(key, KeyType::String)?;
            let Some(end) = field.write_end() else {
                // Only GETs: a read (a miss is announced as one).
                if old.is_none() {
                    txn.notify(notify::KEY_MISS, "keymiss", key);
                }
                let mut value = old.map(into_string_value).unwrap_or_default();
                return Ok(Reply::Array(field.run(&mut value).0));
            };
            let created = old.is_none();
            let (expire_at, mut value) = expiry_and_value(old);
            // Created or grown: the key changed whatever the subcommands do (Redis keeps a
            // key it created even when every subcommand failed).
            let grew = created || (value.len() as u64) < end;
            if grew {
                value.resize(value.len().max(end as usize), 0);
            }
            let (replies, written, changed) = field.run(&mut value);
            if grew || changed > 0 {
                store_string(txn, key, expire_at, value)?;
            }
            if (grew && written > 0) || changed > 0 {
                txn.notify(notify::STRING, "setbit", key);
            }
            Ok(Reply::Array(replies))
        }
        StringWrite::BitOp { op, dest, sources } => {
            // Each operand is read as a read command reads it (a miss is announced), and
            // one of another type stops everything before anything is written.
            let mut operands = Vec::with_capacity(sources.len());
            for source in sources {
                operands.push(match txn.typed_meta(source, KeyType::String)? {
                    Some(m) => into_string_value(m),
                    None => {
                        txn.notify(notify::KEY_MISS, "keymiss", source);
                        Vec::new()
                    }
                });
            }
            let result = bit_operation(*op, &operands);
            let len = result.len() as i64;
            if result.is_empty() {
                if txn.delete_key(dest)? {
                    txn.notify(notify::GENERIC, "del", dest);
                }
            } else {
                txn.set_meta(dest, &KeyMeta::string(result))?;
                txn.notify(notify::STRING, "set", dest);
            }
            Ok(Reply::Integer(len))
        }
    }
}

/// GETRANGE's index arithmetic.
fn get_range(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return &[];
    }
    &value[start as usize..=end as usize]
}

fn bit_at(value: &[u8], offset: u64) -> u8 {
    let byte = (offset >> 3) as usize;
    match value.get(byte) {
        Some(b) => (b >> (7 - (offset & 7))) & 1,
        None => 0,
    }
}

/// Normalises a (start, end) pair against `total` units (bytes or bits) the way
/// BITCOUNT/BITPOS do; returns `None` for an empty range.
fn clamp_range(start: i64, end: i64, total: i64) -> Option<(i64, i64)> {
    let mut start = if start < 0 { total + start } else { start };
    let mut end = if end < 0 { total + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    (start <= end).then_some((start, end))
}

/// BITCOUNT over the whole value or a byte/bit range.
fn bit_count(value: &[u8], range: Option<BitRange>) -> i64 {
    let total_bytes = value.len() as i64;
    let Some(range) = range else {
        return value.iter().map(|b| i64::from(b.count_ones())).sum();
    };
    let end = range.end.unwrap_or(-1);
    if range.bits {
        let Some((s, e)) = clamp_range(range.start, end, total_bytes * 8) else {
            return 0;
        };
        (s..=e).map(|i| i64::from(bit_at(value, i as u64))).sum()
    } else {
        let Some((s, e)) = clamp_range(range.start, end, total_bytes) else {
            return 0;
        };
        value[s as usize..=e as usize]
            .iter()
            .map(|b| i64::from(b.count_ones()))
            .sum()
    }
}

/// BITPOS: first bit equal to `bit` in the range; see the Redis docs for the treatment of a
/// missing end when looking for 0.
fn bit_pos(value: &[u8], bit: bool, range: Option<BitRange>) -> i64 {
    let len = value.len() as i64;
    let (bits, start, end, end_given) = match range {
        None => (false, 0, len - 1, false),
        Some(r) => {
            let total = if r.bits { len * 8 } else { len };
            let end = r.end.unwrap_or(total - 1);
            let mut start = if r.start < 0 {
                total + r.start
            } else {
                r.start
            };
            let mut end = if end < 0 { total + end } else { end };
            start = start.max(0);
            end = end.max(0);
            if end >= total {
                end = total - 1;
            }
            (r.bits, start, end, r.end.is_some())
        }
    };
    if start > end {
        return -1;
    }
    let (first_bit, last_bit) = if bits {
        (start, end)
    } else {
        (start * 8, end * 8 + 7)
    };
    let want = u8::from(bit);
    for i in first_bit..=last_bit {
        if bit_at(value, i as u64) == want {
            return i;
        }
    }
    if !bit && !end_given {
        // Looking for a clear bit with no explicit end: the string is zero-padded on the
        // right, so the answer is the first bit after the last byte of the range.
        return (last_bit / 8 + 1) * 8;
    }
    -1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(get_range(b"Hello World", 0, 4), b"Hello");
        assert_eq!(get_range(b"Hello World", -3, -1), b"rld");
        assert_eq!(get_range(b"Hello World", 5, 3), b"");
        assert_eq!(get_range(b"1", 0, -100), b"1");
        assert_eq!(get_range(b"", 0, -1), b"");
    }

    #[test]
    fn bitpos_examples_from_redis_docs() {
        let v = [0xffu8, 0xf0, 0x00];
        assert_eq!(bit_pos(&v, false, None), 12);
        let v = [0x00u8, 0xff, 0xf0];
        assert_eq!(
            bit_pos(
                &v,
                true,
                Some(BitRange {
                    start: 0,
                    end: None,
                    bits: false
                })
            ),
            8
        );
        assert_eq!(
            bit_pos(
                &v,
                true,
                Some(BitRange {
                    start: 2,
                    end: None,
                    bits: false
                })
            ),
            16
        );
        assert_eq!(
            bit_pos(
                &v,
                true,
                Some(BitRange {
                    start: 2,
                    end: Some(-1),
                    bits: false
                })
            ),
            16
        );
        assert_eq!(
            bit_pos(
                &v,
                true,
                Some(BitRange {
                    start: 7,
                    end: Some(15),
                    bits: true
                })
            ),
            8
        );
        assert_eq!(bit_pos(&[0u8; 3], true, None), -1);
        assert_eq!(bit_pos(&[0xffu8], false, None), 8);
        assert_eq!(
            bit_pos(
                &[0xffu8],
                false,
                Some(BitRange {
                    start: 0,
                    end: Some(-1),
                    bits: false
                })
            ),
            -1
        );
    }

    #[test]
    fn bitcount_examples_from_redis_docs() {
        let v = b"foobar";
        assert_eq!(bit_count(v, None), 26);
        assert_eq!(
            bit_count(
                v,
                Some(BitRange {
                    start: 0,
                    end: Some(0),
                    bits: false
                })
            ),
            4
        );
        assert_eq!(
            bit_count(
                v,
                Some(BitRange {
                    start: 1,
                    end: Some(1),
                    bits: false
                })
            ),
            6
        );
        assert_eq!(
            bit_count(
                v,
                Some(BitRange {
                    start: 5,
                    end: Some(30),
                    bits: true
                })
            ),
            17
        );
    }
}
