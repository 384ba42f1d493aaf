//! Number parsing and formatting exactly as Redis 7.0 does it.
//!
//! - integers: `string2ll` rules (no `+`, no leading zeros, no spaces, `-0` rejected);
//! - float increments: long-double arithmetic with `%.17Lf` output, via a small C helper,
//!   because Rust has no 80-bit float and Redis's replies depend on its rounding;
//! - sorted-set scores: `strtod` parsing and `%.17g` output, via the same C helpers.

pub use crate::request::parse_i64;

/// Parses an unsigned cursor the way Redis's SCAN does (`strtoul` of the whole string): the
/// empty string is 0, a sign is allowed (`-1` wraps to the largest cursor), a leading space
/// or anything after the digits is invalid, and so is overflow.
pub fn parse_cursor(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { v.wrapping_neg() } else { v })
}

/// Why a long-double increment failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatIncrError {
    /// The stored value is not a float.
    BaseNotFloat,
    /// The increment is not a float.
    IncrNotFloat,
    /// The result would be NaN or infinite.
    NanOrInfinity,
}

mod ffi {
    extern "C" {
        pub fn zankv_ld_valid(s: *const u8, len: usize) -> i32;
        pub fn zankv_ld_classify(s: *const u8, len: usize) -> i32;
        pub fn zankv_parse_double(s: *const u8, len: usize, mode: i32, out: *mut f64) -> i32;
        pub fn zankv_format_double(d: f64, out: *mut u8, out_len: usize) -> i32;
        pub fn zankv_format_double_g(d: f64, precision: i32, out: *mut u8, out_len: usize) -> i32;
        pub fn zankv_format_double_f(d: f64, precision: i32, out: *mut u8, out_len: usize) -> i32;
        pub fn zankv_ld_add(
            base: *const u8,
            base_len: usize,
            incr: *const u8,
            incr_len: usize,
            out: *mut u8,
            out_len: usize,
        ) -> i64;
    }
}

/// Parses a double as Redis's `getDoubleFromObject` does (scores, increments, weights):
/// `strtod` of the whole input, no leading space, no NaN, no overflow or underflow to zero.
pub fn parse_double(s: &[u8]) -> Option<f64> {
    parse_double_with(s, 1)
}

/// Parses a score-range bound as Redis's `zslParseRange` does: `strtod` up to the first NUL
/// byte, which it must reach (so the empty string is 0 and overflow is infinity); no NaN.
pub fn parse_range_double(s: &[u8]) -> Option<f64> {
    parse_double_with(s, 0)
}

/// Parses a value SORT compares as a number: as [`parse_range_double`], and neither
/// overflow nor underflow is accepted.
pub fn parse_sort_double(s: &[u8]) -> Option<f64> {
    parse_double_with(s, 2)
}

/// `mode` as the C helper takes it: 0 range, 1 strict, 2 SORT.
fn parse_double_with(s: &[u8], mode: i32) -> Option<f64> {
    let mut out = 0f64;
    // SAFETY: the pointer and length describe a live slice that the helper only reads;
    // `out` is a valid place for one f64.
    let ok = unsafe { ffi::zankv_parse_double(s.as_ptr(), s.len(), mode, &mut out) };
    (ok == 1).then_some(out)
}

/// Formats a double as Redis 7.0 replies with it: `%.17g`, infinities as `inf`/`-inf`.
pub fn format_double(d: f64) -> String {
    let mut out = [0u8; 64];
    // SAFETY: `out` is writable for its length; snprintf never writes past it.
    let n = unsafe { ffi::zankv_format_double(d, out.as_mut_ptr(), out.len()) };
    let n = usize::try_from(n).unwrap_or(0).min(out.len() - 1);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

/// C's `(long long)` of a double as x86-64 converts it (`cvttsd2si`): truncated, and
/// `i64::MIN` when out of range (Redis's geohash decoding and HLL estimate rely on it).
pub fn c_i64(x: f64) -> i64 {
    const TWO_63: f64 = (1u64 << 63) as f64;
    if (-TWO_63..TWO_63).contains(&x) {
        x as i64
    } else {
        i64::MIN
    }
}

/// Formats a double as C's `%.<precision>f` (GEODIST's distances, GEOPOS's coordinates).
pub fn format_double_f(d: f64, precision: u8) -> String {
    // The longest is a 309-digit integer part, a point and the decimals.
    let mut out = vec![0u8; 330 + usize::from(precision)];
    // SAFETY: `out` is writable for its length; snprintf never writes past it.
    let n =
        unsafe { ffi::zankv_format_double_f(d, i32::from(precision), out.as_mut_ptr(), out.len()) };
    let n = usize::try_from(n).unwrap_or(0).min(out.len() - 1);
    out.truncate(n);
    String::from_utf8(out).unwrap_or_default()
}

/// Formats a double as C's `%.<precision>g` (Lua prints numbers with 14 digits).
pub fn format_double_g(d: f64, precision: u8) -> String {
    let mut out = [0u8; 64];
    // SAFETY: `out` is writable for its length; snprintf never writes past it.
    let n = unsafe {
        ffi::zankv_format_double_g(d, i32::from(precision.min(40)), out.as_mut_ptr(), out.len())
    };
    let n = usize::try_from(n).unwrap_or(0).min(out.len() - 1);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

/// Whether Redis would accept `s` as a long double (`string2ld`).
pub fn is_valid_long_double(s: &[u8]) -> bool {
    // SAFETY: the pointer and length describe a live slice; the helper only reads it.
    unsafe { ffi::zankv_ld_valid(s.as_ptr(), s.len()) == 1 }
}

/// Whether `s` is a valid long double that is infinite (`inf`, `-inf`, `1e5000`).
pub fn is_infinite_long_double(s: &[u8]) -> bool {
    // SAFETY: as in `is_valid_long_double`.
    unsafe { ffi::zankv_ld_classify(s.as_ptr(), s.len()) == 2 }
}

/// Adds `incr` to `base` (missing base = 0) in long-double precision and formats the sum as
/// Redis's INCRBYFLOAT does.
pub fn long_double_add(base: Option<&[u8]>, incr: &[u8]) -> Result<Vec<u8>, FloatIncrError> {
    let mut out = vec![0u8; 5120];
    let (bp, bl) = match base {
        Some(b) => (b.as_ptr(), b.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: input pointers/lengths describe live slices (or null with length 0 for "no
    // base"); `out` is writable for its full length and the helper never writes past it.
    let n = unsafe {
        ffi::zankv_ld_add(
            bp,
            bl,
            incr.as_ptr(),
            incr.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    match n {
        -1 => Err(FloatIncrError::BaseNotFloat),
        -2 => Err(FloatIncrError::IncrNotFloat),
        -3 | -4 => Err(FloatIncrError::NanOrInfinity),
        n => {
            out.truncate(n as usize);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_parse_and_print_as_redis_does() {
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(1e300), "1.0000000000000001e+300");
        assert_eq!(format_double(-0.0), "-0");
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double_g(0.1, 14), "0.1");
        assert_eq!(format_double_g(1e20, 14), "1e+20");
        assert_eq!(format_double_g(123456.0, 14), "123456");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(parse_double(b"0x10"), Some(16.0));
        assert_eq!(parse_double(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_double(b"nan"), None);
        assert_eq!(parse_double(b" 1"), None);
        assert_eq!(parse_double(b""), None);
        assert_eq!(parse_double(b"1e400"), None);
        assert_eq!(parse_range_double(b""), Some(0.0));
        assert_eq!(parse_range_double(b" 1"), Some(1.0));
        assert_eq!(parse_range_double(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_range_double(b"1\0junk"), Some(1.0));
        assert_eq!(parse_range_double(b"1x"), None);
        assert_eq!(parse_sort_double(b" 2"), Some(2.0));
        assert_eq!(parse_sort_double(b"1e400"), None);
    }

    #[test]
    fn incrbyfloat_formatting_matches_redis() {
        let add = |b: Option<&str>, i: &str| {
            long_double_add(b.map(str::as_bytes), i.as_bytes())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(add(Some("10.50"), "0.1").unwrap(), "10.6");
        assert_eq!(add(None, "5.0e3").unwrap(), "5000");
        assert_eq!(add(Some("3"), "-3").unwrap(), "0");
        assert_eq!(add(Some("0x10"), "1").unwrap(), "17");
        assert_eq!(add(Some(" 1"), "1"), Err(FloatIncrError::BaseNotFloat));
        assert_eq!(add(Some("1"), "nan"), Err(FloatIncrError::IncrNotFloat));
        assert_eq!(add(Some("1"), "inf"), Err(FloatIncrError::NanOrInfinity));
        assert_eq!(add(Some("1"), ""), Err(FloatIncrError::IncrNotFloat));
    }

    #[test]
    fn cursors() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b" 0"), None);
        assert_eq!(parse_cursor(b"+"), None);
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
    }
}
