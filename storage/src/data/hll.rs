//! HyperLogLog sketches in Redis's byte format, so that a value is byte for byte what Redis
//! holds after the same commands (GET of it, SET of a value copied from Redis, PFCOUNT's
//! number).
//!
//! The format (Redis 7.0's): a 16-byte header — `HYLL`, the encoding (0 dense, 1 sparse),
//! three unused bytes, the cached cardinality as 8 little-endian bytes whose top bit set
//! means "stale" — then 16384 registers of 6 bits. Each element's 64-bit MurmurHash64A
//! (seed `0xadc83b19`) picks a register with its low 14 bits and a count with the rest (1 +
//! its trailing zeros, at most 51); a register keeps the largest count it saw.
//! - Dense: the registers packed 6 bits each, the first in the low bits of the first byte
//!   (12,304 bytes in all).
//! - Sparse: runs of registers as opcodes — ZERO `00xxxxxx` (1..64 zero registers), XZERO
//!   `01xxxxxx yyyyyyyy` (1..16384 zero registers), VAL `1vvvvvxx` (1..4 registers of value
//!   1..32). A sketch starts sparse; it turns dense when a count above 32 arrives or the
//!   value would grow past 3000 bytes (Redis's `hll-sparse-max-bytes` default), as Redis
//!   decides it, in-place edits and merges of neighbouring runs included.
//!
//! Invariant: an [`Hll`] always has a valid header (checked by [`Hll::from_value`]); a
//! sparse body that does not cover exactly 16384 registers is reported as
//! [`Corrupt`], never a panic.

use zankv_commands::number::c_i64;

/// The header's length.
const HDR: usize = 16;
/// Registers per sketch (2^14).
pub const REGISTERS: usize = 1 << P;
const P: u32 = 14;
/// Hash bits left for the count.
const Q: u32 = 64 - P;
const DENSE_SIZE: usize = HDR + (REGISTERS * 6).div_ceil(8);
const SPARSE_MAX_BYTES: usize = 3000;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const REGISTER_MAX: u8 = 63;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;
const SEED: u64 = 0xadc8_3b19;
/// 0.5 / ln 2: the estimator's constant for an infinite number of registers.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// The value is not a sketch (Redis: "Key is not a valid HyperLogLog string value").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHll;

/// The sketch's registers are inconsistent (Redis: "Corrupted HLL object detected").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

/// A sketch: a string value with a valid header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hll(Vec<u8>);

/// One sparse opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `len` zero registers, in one byte (ZERO) or two (XZERO).
    Zero { len: usize, wide: bool },
    /// `len` registers of `value`.
    Val { value: u8, len: usize },
}

impl Op {
    fn at(body: &[u8], p: usize) -> Op {
        let b = body[p];
        if b & 0x80 != 0 {
            Op::Val {
                value: ((b >> 2) & 0x1f) + 1,
                len: usize::from(b & 0x3) + 1,
            }
        } else if b & 0x40 != 0 {
            let low = body.get(p + 1).copied().unwrap_or(0);
            Op::Zero {
                len: ((usize::from(b & 0x3f) << 8) | usize::from(low)) + 1,
                wide: true,
            }
        } else {
            Op::Zero {
                len: usize::from(b & 0x3f) + 1,
                wide: false,
            }
        }
    }

    fn size(self) -> usize {
        match self {
            Op::Zero { wide: true, .. } => 2,
            _ => 1,
        }
    }

    fn len(self) -> usize {
        match self {
            Op::Zero { len, .. } | Op::Val { len, .. } => len,
        }
    }
}

fn val_byte(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len as u8 - 1)
}

/// The opcode(s) for a run of `len` zero registers.
fn push_zeros(out: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        out.push(0x40 | ((len - 1) >> 8) as u8);
        out.push(((len - 1) & 0xff) as u8);
    } else {
        out.push((len - 1) as u8);
    }
}

fn get_register(registers: &[u8], index: usize) -> u8 {
    let bit = index * 6;
    let (byte, shift) = (bit / 8, bit % 8);
    let b0 = u16::from(registers[byte]);
    let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> shift) | (b1 << (8 - shift))) & u16::from(REGISTER_MAX)) as u8
}

fn set_register(registers: &mut [u8], index: usize, value: u8) {
    let bit = index * 6;
    let (byte, shift) = (bit / 8, bit % 8);
    let v = u16::from(value);
    registers[byte] &= !((u16::from(REGISTER_MAX) << shift) as u8);
    registers[byte] |= (v << shift) as u8;
    if let Some(next) = registers.get_mut(byte + 1) {
        *next &= !((u16::from(REGISTER_MAX) >> (8 - shift)) as u8);
        *next |= (v >> (8 - shift)) as u8;
    }
}

/// Austin Appleby's MurmurHash64A, little-endian, as Redis hashes HLL elements.
fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u64::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element lands in and the count it brings.
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

impl Hll {
    /// An empty sketch, as PFADD creates it: sparse, one XZERO run over every register.
    pub fn new() -> Hll {
        let mut v = Vec::with_capacity(HDR + 2);
        v.extend_from_slice(b"HYLL");
        v.push(SPARSE);
        v.extend_from_slice(&[0; 11]);
        push_zeros(&mut v, XZERO_MAX_LEN);
        Hll(v)
    }

    /// A stored string value, if it is a sketch as Redis judges one: `HYLL`, a known
    /// encoding, and the exact size when dense.
    pub fn from_value(value: Vec<u8>) -> Result<Hll, NotHll> {
        if value.len() < HDR || &value[..4] != b"HYLL" || value[4] > SPARSE {
            return Err(NotHll);
        }
        if value[4] == DENSE && value.len() != DENSE_SIZE {
            return Err(NotHll);
        }
        Ok(Hll(value))
    }

    /// The value to store.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Whether the registers are packed (dense) rather than run-length coded.
    pub fn is_dense(&self) -> bool {
        self.0[4] == DENSE
    }

    /// The cached cardinality, unless an update made it stale.
    pub fn cached(&self) -> Option<u64> {
        let card = u64::from_le_bytes(self.0[8..16].try_into().expect("8 bytes"));
        (card >> 63 == 0).then_some(card)
    }

    /// Stores a computed cardinality in the header.
    pub fn set_cached(&mut self, card: u64) {
        self.0[8..16].copy_from_slice(&card.to_le_bytes());
    }

    /// Marks the cached cardinality stale.
    pub fn invalidate(&mut self) {
        self.0[15] |= 0x80;
    }

    /// Adds an element; whether a register grew.
    pub fn add(&mut self, element: &[u8]) -> Result<bool, Corrupt> {
        let (index, count) = pattern(element);
        self.raise(index, count)
    }

    /// Raises register `index` to `count` if it is lower; whether it was.
    pub fn raise(&mut self, index: usize, count: u8) -> Result<bool, Corrupt> {
        if self.is_dense() {
            return Ok(self.dense_raise(index, count));
        }
        if count > VAL_MAX_VALUE {
            return self.promote_and_raise(index, count);
        }
        // Find the opcode covering `index`, and the one before it.
        let body = &self.0;
        let (mut p, mut first, mut prev) = (HDR, 0usize, None);
        let op = loop {
            if p >= body.len() {
                return Err(Corrupt);
            }
            let op = Op::at(body, p);
            if index < first + op.len() {
                break op;
            }
            prev = Some(p);
            p += op.size();
            first += op.len();
        };
        let last = first + op.len() - 1;
        match op {
            Op::Val { value, .. } if value >= count => return Ok(false),
            Op::Val { len: 1, .. }
            | Op::Zero {
                len: 1,
                wide: false,
            } => {
                self.0[p] = val_byte(count, 1);
            }
            _ => {
                // Split the run: [before] our register [after], at most 5 bytes.
                let mut seq = Vec::with_capacity(5);
                match op {
                    Op::Zero { .. } => {
                        if index != first {
                            push_zeros(&mut seq, index - first);
                        }
                        seq.push(val_byte(count, 1));
                        if index != last {
                            push_zeros(&mut seq, last - index);
                        }
                    }
                    Op::Val { value, .. } => {
                        if index != first {
                            seq.push(val_byte(value, index - first));
                        }
                        seq.push(val_byte(count, 1));
                        if index != last {
                            seq.push(val_byte(value, last - index));
                        }
                    }
                }
                let grows = seq.len() > op.size();
                if grows && self.0.len() + seq.len() - op.size() > SPARSE_MAX_BYTES {
                    return self.promote_and_raise(index, count);
                }
                // A damaged value may end in the first byte of an XZERO: its second byte
                // is taken as zero (Redis reads whatever its memory holds past the value's
                // end, a zero for a value just SET), and the length arithmetic is Redis's,
                // which drops the new sequence's last byte.
                let cut = p + op.size() > self.0.len();
                if cut {
                    self.0.push(0);
                }
                self.0.splice(p..p + op.size(), seq);
                if cut {
                    self.0.pop();
                }
            }
        }
        self.merge_runs(prev.unwrap_or(HDR));
        self.invalidate();
        Ok(true)
    }

    /// After an edit, joins neighbouring VAL runs of one value (up to 4 registers), scanning
    /// at most 5 opcodes from `p` as Redis does.
    fn merge_runs(&mut self, mut p: usize) {
        let mut budget = 5;
        while p < self.0.len() && budget > 0 {
            budget -= 1;
            let op = Op::at(&self.0, p);
            let Op::Val { value, len } = op else {
                p += op.size();
                continue;
            };
            if p + 1 < self.0.len() {
                if let Op::Val {
                    value: next_value,
                    len: next_len,
                } = Op::at(&self.0, p + 1)
                {
                    if next_value == value && len + next_len <= VAL_MAX_LEN {
                        self.0[p + 1] = val_byte(value, len + next_len);
                        self.0.remove(p);
                        continue;
                    }
                }
            }
            p += 1;
        }
    }

    fn dense_raise(&mut self, index: usize, count: u8) -> bool {
        let registers = &mut self.0[HDR..];
        if get_register(registers, index) < count {
            set_register(registers, index, count);
            true
        } else {
            false
        }
    }

    fn promote_and_raise(&mut self, index: usize, count: u8) -> Result<bool, Corrupt> {
        self.to_dense()?;
        Ok(self.dense_raise(index, count))
    }

    /// Turns a sparse sketch dense (the header, cached cardinality included, is kept).
    pub fn to_dense(&mut self) -> Result<(), Corrupt> {
        if self.is_dense() {
            return Ok(());
        }
        let mut dense = vec![0u8; DENSE_SIZE];
        dense[..HDR].copy_from_slice(&self.0[..HDR]);
        dense[4] = DENSE;
        let mut index = 0;
        self.runs(|run_len, value| {
            if value > 0 {
                if index + run_len > REGISTERS {
                    return false;
                }
                for i in index..index + run_len {
                    set_register(&mut dense[HDR..], i, value);
                }
            }
            index += run_len;
            true
        });
        if index != REGISTERS {
            return Err(Corrupt);
        }
        self.0 = dense;
        Ok(())
    }

    /// Calls `visit(len, value)` for each sparse run until it returns false.
    fn runs(&self, mut visit: impl FnMut(usize, u8) -> bool) {
        let mut p = HDR;
        while p < self.0.len() {
            let op = Op::at(&self.0, p);
            let value = match op {
                Op::Zero { .. } => 0,
                Op::Val { value, .. } => value,
            };
            if !visit(op.len(), value) {
                return;
            }
            p += op.size();
        }
    }

    /// Raises `max[i]` to each register `i` of this sketch (PFCOUNT of several keys,
    /// PFMERGE).
    pub fn merge_into(&self, max: &mut [u8; REGISTERS]) -> Result<(), Corrupt> {
        if self.is_dense() {
            let registers = &self.0[HDR..];
            for (i, m) in max.iter_mut().enumerate() {
                *m = (*m).max(get_register(registers, i));
            }
            return Ok(());
        }
        // Unlike the conversion to dense, a run of values past the last register is
        // damage even when the runs before it covered every register (Redis's merge).
        let (mut index, mut overflow) = (0, false);
        self.runs(|run_len, value| {
            if value > 0 {
                if index + run_len > REGISTERS {
                    overflow = true;
                    return false;
                }
                for m in &mut max[index..index + run_len] {
                    *m = (*m).max(value);
                }
            }
            index += run_len;
            true
        });
        if index == REGISTERS && !overflow {
            Ok(())
        } else {
            Err(Corrupt)
        }
    }

    /// The registers of a dense sketch, one value each (PFDEBUG GETREG).
    pub fn registers(&self) -> Vec<u8> {
        let registers = &self.0[HDR..];
        (0..REGISTERS).map(|i| get_register(registers, i)).collect()
    }

    /// A sparse sketch's opcodes as PFDEBUG DECODE lists them: `z:len` (ZERO), `Z:len`
    /// (XZERO), `v:value,len` (VAL).
    pub fn describe_runs(&self) -> String {
        let mut out = Vec::new();
        let mut p = HDR;
        while p < self.0.len() {
            let op = Op::at(&self.0, p);
            out.push(match op {
                Op::Zero { len, wide: false } => format!("z:{len}"),
                Op::Zero { len, wide: true } => format!("Z:{len}"),
                Op::Val { value, len } => format!("v:{value},{len}"),
            });
            p += op.size();
        }
        out.join(" ")
    }

    /// The estimated cardinality (not the cached one).
    pub fn count(&self) -> Result<u64, Corrupt> {
        let mut histogram = [0u32; 64];
        if self.is_dense() {
            let registers = &self.0[HDR..];
            for i in 0..REGISTERS {
                histogram[usize::from(get_register(registers, i))] += 1;
            }
        } else {
            let mut index = 0;
            self.runs(|run_len, value| {
                index += run_len;
                // Wrapping: a damaged body may claim more runs than fit (refused below).
                let slot = &mut histogram[usize::from(value)];
                *slot = slot.wrapping_add(run_len as u32);
                true
            });
            if index != REGISTERS {
                return Err(Corrupt);
            }
        }
        Ok(estimate(&histogram))
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll::new()
    }
}

/// PFSELFTEST: checks the register packing, and that a sparse sketch and a dense one fed
/// the same generated elements hold the same registers and estimate alike (within 5% of
/// the true count); the first failure's description otherwise.
pub fn self_test() -> Result<(), String> {
    let mut packed = vec![0u8; DENSE_SIZE - HDR];
    for i in 0..REGISTERS {
        set_register(&mut packed, i, (i % 64) as u8);
    }
    if let Some(i) = (0..REGISTERS).find(|&i| get_register(&packed, i) != (i % 64) as u8) {
        return Err(format!("register {i} reads back wrong"));
    }
    let mut sparse = Hll::new();
    let mut dense = Hll::new();
    dense
        .to_dense()
        .map_err(|_| "an empty sketch does not turn dense".to_string())?;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 1..=20_000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let element = seed.to_le_bytes();
        let (a, b) = (sparse.add(&element), dense.add(&element));
        if a != b {
            return Err(format!("sparse and dense disagree at element {n}"));
        }
        if n % 1000 == 0 {
            let (a, b) = (sparse.count(), dense.count());
            match (a, b) {
                (Ok(a), Ok(b)) if a == b && (a as f64 - n as f64).abs() <= n as f64 * 0.05 => {}
                _ => return Err(format!("estimates {a:?} and {b:?} after {n} elements")),
            }
        }
    }
    Ok(())
}

/// The estimated cardinality of plain registers (one byte each), as PFCOUNT of several keys
/// computes it.
pub fn count_registers(registers: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u32; 64];
    for &r in registers {
        histogram[usize::from(r)] += 1;
    }
    estimate(&histogram)
}

/// Otmar Ertl's estimator ("New cardinality estimation algorithms for HyperLogLog
/// sketches", 2017) from the histogram of register values, as Redis 7 computes it.
fn estimate(histogram: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
    for j in (1..=q).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    // As Redis's `(uint64_t)llroundl(...)`: past i64's range (an infinite estimate of a
    // saturated sketch, say) the conversion gives i64::MIN, so the count reads 2^63.
    c_i64((ALPHA_INF * m * m / z).round()) as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_matches_reference_values() {
        // MurmurHash64A of the empty input is a mix of the seed alone.
        let mut h = SEED;
        h ^= h >> 47;
        h = h.wrapping_mul(0xc6a4_a793_5bd1_e995);
        h ^= h >> 47;
        assert_eq!(murmur64a(b"", SEED), h);
        // Tail bytes and whole words take different paths: both are exercised.
        assert_ne!(murmur64a(b"abcdefgh", SEED), murmur64a(b"abcdefg", SEED));
    }

    #[test]
    fn empty_sketch_is_redis_bytes() {
        let h = Hll::new();
        let mut expected = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0x7f, 0xff]);
        assert_eq!(h.into_bytes(), expected);
        assert_eq!(Hll::new().count(), Ok(0));
        assert_eq!(Hll::new().cached(), Some(0));
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut sparse = Hll::new();
        let mut dense = Hll::new();
        dense.to_dense().unwrap();
        for i in 0..2000u32 {
            let e = i.to_string();
            assert_eq!(
                sparse.add(e.as_bytes()),
                dense.add(e.as_bytes()),
                "element {i}"
            );
            if i % 97 == 0 {
                assert_eq!(sparse.count(), dense.count());
            }
        }
        // 2000 elements pass 3000 bytes of runs: the sparse one turned dense on its own.
        assert!(sparse.is_dense());
        let mut max_a = [0u8; REGISTERS];
        let mut max_b = [0u8; REGISTERS];
        sparse.merge_into(&mut max_a).unwrap();
        dense.merge_into(&mut max_b).unwrap();
        assert_eq!(max_a, max_b);
        assert_eq!(count_registers(&max_a), dense.count().unwrap());
    }

    #[test]
    fn sparse_runs_cover_every_register() {
        let mut h = Hll::new();
        for i in 0..300u32 {
            h.add(format!("e{i}").as_bytes()).unwrap();
            let mut covered = 0;
            h.runs(|len, _| {
                covered += len;
                true
            });
            assert_eq!(covered, REGISTERS);
            assert!(!h.is_dense());
        }
        let mut max = [0u8; REGISTERS];
        h.merge_into(&mut max).unwrap();
        let mut dense = h.clone();
        dense.to_dense().unwrap();
        for (i, &m) in max.iter().enumerate() {
            assert_eq!(get_register(&dense.0[HDR..], i), m);
        }
    }

    #[test]
    fn registers_pack_six_bits() {
        let mut regs = vec![0u8; DENSE_SIZE - HDR];
        for i in 0..REGISTERS {
            set_register(&mut regs, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(get_register(&regs, i), (i % 64) as u8);
        }
    }

    #[test]
    fn corrupt_and_foreign_values_are_refused() {
        assert_eq!(Hll::from_value(b"HYLL".to_vec()), Err(NotHll));
        assert_eq!(Hll::from_value(vec![b'x'; 20]), Err(NotHll));
        let mut dense_short = Hll::new().into_bytes();
        dense_short[4] = DENSE;
        assert_eq!(Hll::from_value(dense_short), Err(NotHll));
        // A sparse body covering too few registers.
        let mut short = Hll::new().into_bytes();
        short.truncate(HDR);
        short.push(0x3f);
        let h = Hll::from_value(short).unwrap();
        assert_eq!(h.count(), Err(Corrupt));
        assert_eq!(h.clone().to_dense(), Err(Corrupt));
        let mut max = [0u8; REGISTERS];
        assert_eq!(h.merge_into(&mut max), Err(Corrupt));
        assert_eq!(h.clone().raise(REGISTERS - 1, 1), Err(Corrupt));
    }

    #[test]
    fn a_saturated_sketch_counts_as_redis_converts_infinity() {
        // Every register at 51 or more: the estimate is infinite (or past i64), and Redis's
        // conversion makes it 2^63, which PFCOUNT replies as i64::MIN.
        for value in [50u8, 51, 63] {
            let mut h = Hll::new();
            h.to_dense().unwrap();
            for i in 0..REGISTERS {
                set_register(&mut h.0[HDR..], i, value);
            }
            let count = h.count().unwrap();
            if value >= 51 {
                assert_eq!(count, 1 << 63);
            }
            assert!(count >= 1 << 63, "{value}: {count}");
        }
    }

    #[test]
    fn estimates_are_close() {
        let mut h = Hll::new();
        for i in 0..100_000u32 {
            h.add(&i.to_le_bytes()).unwrap();
        }
        let n = h.count().unwrap() as f64;
        assert!((n - 100_000.0).abs() < 100_000.0 * 0.03, "estimate {n}");
    }
}
