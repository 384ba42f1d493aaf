//! BITFIELD and BITFIELD_RO: their subcommands as typed operations, and the operations on
//! a string's bytes.
//!
//! A field is `bits` wide (signed 1..=64, unsigned 1..=63, as Redis allows), starting at a
//! bit offset counted from the most significant bit of the first byte. Bytes past the end
//! of the value read as zero; the executor grows a value before any SET or INCRBY reaches
//! past its end ([`BitField::write_end`]), so the operations here never index out of range.
//! Overflow follows Redis: WRAP (two's complement), SAT (clamped to the type's range) or
//! FAIL (nothing written, a nil reply), chosen per operation by the last OVERFLOW before it.

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::parse_i64;
use crate::reply::Reply;
use crate::string::MAX_STRING_LEN;

/// What to do when SET or INCRBY leaves a field's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Keep the low bits (the default).
    Wrap,
    /// Clamp to the type's minimum or maximum.
    Sat,
    /// Leave the field unchanged and reply nil.
    Fail,
}

/// One subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAction {
    /// GET: the field's value.
    Get,
    /// SET value: the previous value.
    Set(i64),
    /// INCRBY increment: the new value.
    IncrBy(i64),
}

/// A subcommand on one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldOp {
    /// What it does.
    pub action: FieldAction,
    /// A signed type (`i`) or unsigned (`u`).
    pub signed: bool,
    /// Width in bits.
    pub bits: u32,
    /// Offset of the field's first bit.
    pub offset: u64,
    /// Overflow mode in force for this subcommand.
    pub overflow: Overflow,
}

/// A parsed BITFIELD (or BITFIELD_RO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitField {
    /// The subcommands in order.
    pub ops: Vec<FieldOp>,
}

impl BitField {
    /// Parses the arguments after the key, with Redis's checks in Redis's order; `read_only`
    /// (BITFIELD_RO) refuses SET and INCRBY once everything parsed.
    pub fn parse(args: &[Bytes], read_only: bool) -> Result<Self, CommandError> {
        let mut ops = Vec::new();
        let mut overflow = Overflow::Wrap;
        let mut j = 0;
        while j < args.len() {
            let rest = args.len() - j - 1;
            let word = args[j].to_ascii_lowercase();
            let action = match word.as_slice() {
                b"get" if rest >= 2 => FieldAction::Get,
                b"set" if rest >= 3 => FieldAction::Set(0),
                b"incrby" if rest >= 3 => FieldAction::IncrBy(0),
                b"overflow" if rest >= 1 => {
                    overflow = match args[j + 1].to_ascii_lowercase().as_slice() {
                        b"wrap" => Overflow::Wrap,
                        b"sat" => Overflow::Sat,
                        b"fail" => Overflow::Fail,
                        _ => return Err(CommandError::BitfieldOverflowType),
                    };
                    j += 2;
                    continue;
                }
                _ => return Err(CommandError::Syntax),
            };
            let (signed, bits) = field_type(&args[j + 1])?;
            let offset = field_offset(&args[j + 2], bits)?;
            let action = match action {
                FieldAction::Get => FieldAction::Get,
                FieldAction::Set(_) => FieldAction::Set(int(&args[j + 3])?),
                FieldAction::IncrBy(_) => FieldAction::IncrBy(int(&args[j + 3])?),
            };
            ops.push(FieldOp {
                action,
                signed,
                bits,
                offset,
                overflow,
            });
            j += if action == FieldAction::Get { 3 } else { 4 };
        }
        let field = BitField { ops };
        if read_only && field.write_end().is_some() {
            return Err(CommandError::BitfieldReadOnly);
        }
        Ok(field)
    }

    /// The length in bytes the value needs for its SETs and INCRBYs, or `None` when every
    /// subcommand is a GET (and the command only reads).
    pub fn write_end(&self) -> Option<u64> {
        self.ops
            .iter()
            .filter(|op| op.action != FieldAction::Get)
            .map(|op| ((op.offset + u64::from(op.bits) - 1) >> 3) + 1)
            .max()
    }

    /// Runs the subcommands on `value`, which is at least [`Self::write_end`] long when
    /// anything writes. Returns the replies, then how many SETs and INCRBYs wrote (did not
    /// fail) and how many of them changed the field.
    pub fn run(&self, value: &mut [u8]) -> (Vec<Reply>, usize, usize) {
        let mut replies = Vec::with_capacity(self.ops.len());
        let (mut written, mut changed) = (0, 0);
        for op in &self.ops {
            let old = read_field(value, op.offset, op.bits);
            let (reply, new) = match op.action {
                FieldAction::Get => (as_reply(op, old), None),
                FieldAction::Set(v) => match fit(op, v as u64, 0) {
                    Some(new) => (as_reply(op, old), Some(new & mask(op.bits))),
                    None => (Reply::Nil, None),
                },
                FieldAction::IncrBy(by) => {
                    let base = if op.signed {
                        sign_extend(old, op.bits) as u64
                    } else {
                        old
                    };
                    match fit(op, base, by).map(|new| new & mask(op.bits)) {
                        Some(new) => (as_reply(op, new), Some(new)),
                        None => (Reply::Nil, None),
                    }
                }
            };
            if let Some(new) = new {
                written += 1;
                if new != old {
                    changed += 1;
                }
                write_field(value, op.offset, op.bits, new);
            }
            replies.push(reply);
        }
        (replies, written, changed)
    }
}

fn int(arg: &Bytes) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

/// `i1`..`i64` or `u1`..`u63` (lower case only, as Redis).
fn field_type(arg: &[u8]) -> Result<(bool, u32), CommandError> {
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(CommandError::BitfieldType),
    };
    let max = if signed { 64 } else { 63 };
    match parse_i64(&arg[1..]) {
        Some(bits) if (1..=max).contains(&bits) => Ok((signed, bits as u32)),
        _ => Err(CommandError::BitfieldType),
    }
}

/// A bit offset, or `#n` for the n-th field of this width.
fn field_offset(arg: &[u8], bits: u32) -> Result<u64, CommandError> {
    let (index, scale) = match arg.split_first() {
        Some((b'#', rest)) => (rest, i64::from(bits)),
        _ => (arg, 1),
    };
    match parse_i64(index).map(|n| n.wrapping_mul(scale)) {
        Some(off) if off >= 0 && ((off as u64) >> 3) < MAX_STRING_LEN => Ok(off as u64),
        _ => Err(CommandError::BitOffset),
    }
}

fn mask(bits: u32) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn sign_extend(raw: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((raw << shift) as i64) >> shift
}

fn as_reply(op: &FieldOp, raw: u64) -> Reply {
    Reply::Integer(if op.signed {
        sign_extend(raw, op.bits)
    } else {
        raw as i64
    })
}

/// The value `base + by` stored in the field's type under its overflow mode, or `None`
/// when it overflows with FAIL. `base` is the current value (signed or not, as the type),
/// `by` 0 for SET.
fn fit(op: &FieldOp, base: u64, by: i64) -> Option<u64> {
    let sum = base.wrapping_add(by as u64);
    let overflows = if op.signed {
        let (max, min) = if op.bits == 64 {
            (i64::MAX, i64::MIN)
        } else {
            let max = (1i64 << (op.bits - 1)) - 1;
            (max, -max - 1)
        };
        let value = base as i64;
        match value.checked_add(by) {
            Some(s) if (min..=max).contains(&s) => None,
            Some(s) => Some(if s > max { max } else { min }),
            None => Some(if by > 0 { max } else { min }),
        }
        .map(|limit| limit as u64)
    } else {
        let max = mask(op.bits);
        let value = i128::from(base) + i128::from(by);
        if value > i128::from(max) {
            Some(max)
        } else if value < 0 {
            Some(0)
        } else {
            None
        }
    };
    match (overflows, op.overflow) {
        (None, _) | (Some(_), Overflow::Wrap) => Some(sum),
        (Some(limit), Overflow::Sat) => Some(limit),
        (Some(_), Overflow::Fail) => None,
    }
}

/// The field's bits as an unsigned number; bytes past the end read as zero.
fn read_field(value: &[u8], offset: u64, bits: u32) -> u64 {
    let mut out = 0u64;
    for i in 0..u64::from(bits) {
        let at = offset + i;
        let byte = value.get((at >> 3) as usize).copied().unwrap_or(0);
        out = (out << 1) | u64::from((byte >> (7 - (at & 7))) & 1);
    }
    out
}

/// Stores the low `bits` bits of `field`; the value is long enough (see [`BitField::run`]).
fn write_field(value: &mut [u8], offset: u64, bits: u32, field: u64) {
    for i in 0..u64::from(bits) {
        let at = offset + i;
        let bit = (field >> (u64::from(bits) - 1 - i)) & 1;
        let byte = &mut value[(at >> 3) as usize];
        let m = 1u8 << (7 - (at & 7));
        if bit == 1 {
            *byte |= m;
        } else {
            *byte &= !m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &str) -> Result<BitField, CommandError> {
        let args: Vec<Bytes> = words
            .split_whitespace()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        BitField::parse(&args, false)
    }

    fn run(value: &mut Vec<u8>, words: &str) -> Vec<Reply> {
        let field = parse(words).unwrap();
        if let Some(end) = field.write_end() {
            if (value.len() as u64) < end {
                value.resize(end as usize, 0);
            }
        }
        field.run(value).0
    }

    fn ints(replies: &[Reply]) -> Vec<Option<i64>> {
        replies
            .iter()
            .map(|r| match r {
                Reply::Integer(n) => Some(*n),
                Reply::Nil => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn examples_from_redis_docs() {
        let mut v = Vec::new();
        assert_eq!(
            ints(&run(&mut v, "INCRBY i5 100 1 GET u4 0")),
            vec![Some(1), Some(0)]
        );
        let mut v = Vec::new();
        let r = run(
            &mut v,
            "incrby u2 100 1 OVERFLOW SAT incrby u2 102 1 incrby u2 100 1 OVERFLOW SAT incrby u2 102 1",
        );
        assert_eq!(ints(&r), vec![Some(1), Some(1), Some(2), Some(2)]);
        for expected in [[3, 3], [0, 3]] {
            let r = run(&mut v, "incrby u2 100 1 OVERFLOW SAT incrby u2 102 1");
            assert_eq!(ints(&r), expected.map(Some).to_vec());
        }
        let r = run(&mut v, "OVERFLOW FAIL incrby u2 102 1");
        assert_eq!(ints(&r), vec![None]);
    }

    #[test]
    fn signed_wrap_sat_fail_and_hash_offsets() {
        let mut v = Vec::new();
        assert_eq!(ints(&run(&mut v, "SET i8 #1 127")), vec![Some(0)]);
        assert_eq!(v, vec![0, 127]);
        assert_eq!(ints(&run(&mut v, "INCRBY i8 8 1")), vec![Some(-128)]);
        assert_eq!(
            ints(&run(&mut v, "OVERFLOW SAT INCRBY i8 8 -1000")),
            vec![Some(-128)]
        );
        assert_eq!(
            ints(&run(&mut v, "OVERFLOW FAIL INCRBY i8 8 -1 GET i8 8")),
            vec![None, Some(-128)]
        );
        // SET of a value outside the type: wrapped, saturated or refused (a negative value
        // is a huge one to an unsigned type, as in Redis).
        assert_eq!(
            ints(&run(&mut v, "SET u8 0 300 GET u8 0")),
            vec![Some(0), Some(44)]
        );
        assert_eq!(
            ints(&run(&mut v, "OVERFLOW SAT SET u8 0 -5 GET u8 0")),
            vec![Some(44), Some(255)]
        );
        assert_eq!(ints(&run(&mut v, "OVERFLOW FAIL SET i4 0 8")), vec![None]);
        // 64-bit signed fields saturate at i64's bounds.
        let mut v = Vec::new();
        let r = run(
            &mut v,
            "SET i64 0 9223372036854775807 OVERFLOW SAT INCRBY i64 0 1 OVERFLOW WRAP INCRBY i64 0 1",
        );
        assert_eq!(ints(&r), vec![Some(0), Some(i64::MAX), Some(i64::MIN)]);
        assert_eq!(
            ints(&run(&mut v, "SET i64 0 -1 GET u63 1")),
            vec![Some(i64::MIN), Some(i64::MAX)]
        );
    }

    #[test]
    fn fields_across_byte_boundaries() {
        let mut v = vec![0xff, 0x00, 0xff];
        assert_eq!(
            ints(&run(&mut v, "GET u12 4 GET i12 4")),
            vec![Some(0xf00), Some(-256)]
        );
        assert_eq!(ints(&run(&mut v, "SET u10 3 0")), vec![Some(0x3e0)]);
        assert_eq!(v, vec![0xe0, 0x00, 0xff]);
        // Reads past the end are zeros and grow nothing.
        assert_eq!(ints(&run(&mut v, "GET u8 100")), vec![Some(0)]);
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn errors_in_redis_order() {
        let text = |w: &str| parse(w).unwrap_err().to_string();
        assert_eq!(text("foo"), "ERR syntax error");
        assert_eq!(text("get u8"), "ERR syntax error");
        assert_eq!(
            text("overflow foo get u8 0"),
            "ERR Invalid OVERFLOW type specified"
        );
        assert!(text("get u64 0").starts_with("ERR Invalid bitfield type."));
        assert!(text("get i65 0").starts_with("ERR Invalid bitfield type."));
        assert!(text("get x8 0").starts_with("ERR Invalid bitfield type."));
        assert!(text("get U8 0").starts_with("ERR Invalid bitfield type."));
        assert_eq!(
            text("get u8 -1"),
            "ERR bit offset is not an integer or out of range"
        );
        assert_eq!(
            text("get u8 #-1"),
            "ERR bit offset is not an integer or out of range"
        );
        assert_eq!(
            text("get u8 4294967296"),
            "ERR bit offset is not an integer or out of range"
        );
        assert_eq!(
            text("set u8 0 x"),
            "ERR value is not an integer or out of range"
        );
        let args: Vec<Bytes> = ["get", "u8", "0", "set", "u8", "0", "1"]
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        assert_eq!(
            BitField::parse(&args, true).unwrap_err().to_string(),
            "ERR BITFIELD_RO only supports the GET subcommand"
        );
        assert!(BitField::parse(&args[..3], true).is_ok());
    }
}
