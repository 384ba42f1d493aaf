//! Blocking commands (BLPOP, BRPOP, BRPOPLPUSH, BLMOVE, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP):
//! their timeout argument and the reply of a wait that timed out.
//!
//! A blocking command parses as its non-blocking form: what it does when it finds
//! something, which is also all it does inside MULTI (where Redis never blocks). Waiting is
//! the server's business: a storage node holds the client until the pop finds something
//! or the timeout passes; a proxy re-issues the wait, with the time left, on a partition's
//! new leader. The spec's [`TimeoutAt`] says where the timeout is, so this module is the
//! one place that reads and rewrites it.
//!
//! Invariants: a timeout parses exactly as Redis 7.0's `getTimeoutFromObjectOrReply` with
//! seconds (a long double, rounded up to whole milliseconds); 0 means no timeout.

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::{is_infinite_long_double, is_valid_long_double, parse_range_double};
use crate::reply::Reply;
use crate::spec::{CommandSpec, TimeoutAt};

/// Parses a timeout in seconds into milliseconds (0: wait for ever).
pub fn parse_timeout(arg: &[u8]) -> Result<u64, CommandError> {
    if !is_valid_long_double(arg) {
        return Err(CommandError::TimeoutNotFloat);
    }
    // Redis converts the long double to milliseconds in a signed 64-bit integer: infinity
    // and values past it come out negative.
    if is_infinite_long_double(arg) {
        return Err(CommandError::TimeoutNegative);
    }
    let seconds = parse_range_double(arg).ok_or(CommandError::TimeoutNotFloat)?;
    let ms = (seconds * 1000.0).ceil();
    // Below 2^63, the first double past the largest signed 64-bit integer.
    if !(0.0..9_223_372_036_854_775_808.0).contains(&ms) {
        return Err(CommandError::TimeoutNegative);
    }
    Ok(ms as u64)
}

/// The position of the timeout in `argv` (the command name first), if `spec` blocks.
fn position(spec: &CommandSpec, argv: &[Bytes]) -> Option<usize> {
    match spec.timeout_at? {
        TimeoutAt::Last => argv.len().checked_sub(1),
        TimeoutAt::Index(i) => Some(i),
    }
    .filter(|i| *i > 0 && *i < argv.len())
}

/// The timeout of a blocking command, in milliseconds (0: for ever); None when `spec` does
/// not block.
pub fn timeout_ms(spec: &CommandSpec, argv: &[Bytes]) -> Option<Result<u64, CommandError>> {
    position(spec, argv).map(|i| parse_timeout(&argv[i]))
}

/// `argv` with its timeout replaced by `ms` milliseconds (a proxy re-issuing a wait with
/// the time left); unchanged when `spec` does not block.
pub fn with_timeout(spec: &CommandSpec, argv: &[Bytes], ms: u64) -> Vec<Bytes> {
    let mut argv = argv.to_vec();
    if let Some(i) = position(spec, &argv) {
        argv[i] = Bytes::from(format!("{}.{:03}", ms / 1000, ms % 1000));
    }
    argv
}

/// The positions in `argv` of the keys a blocking command pops from: every key, except the
/// destination of BLMOVE and BRPOPLPUSH.
pub fn source_positions(spec: &CommandSpec, argv: &[Bytes]) -> Vec<usize> {
    match spec.name {
        "blmove" | "brpoplpush" => vec![1],
        _ => spec.key_positions(argv).collect(),
    }
}

/// `argv` with `key` moved to the first of its source keys, the others keeping their order:
/// a waiter woken by a write to `key` pops from it first, as Redis serves a blocked client
/// from the key that became ready. Unchanged when `key` is not one of them.
pub fn with_source_first(spec: &CommandSpec, argv: &[Bytes], key: &[u8]) -> Vec<Bytes> {
    let mut argv = argv.to_vec();
    let positions = source_positions(spec, &argv);
    if let Some(at) = positions.iter().position(|&p| argv[p] == key) {
        let mut keys: Vec<Bytes> = positions.iter().map(|&p| argv[p].clone()).collect();
        let first = keys.remove(at);
        keys.insert(0, first);
        for (&p, k) in positions.iter().zip(keys) {
            argv[p] = k;
        }
    }
    argv
}

/// What a blocking command answers when its timeout passes: a null array in RESP2 (even
/// for BLMOVE and BRPOPLPUSH, whose non-blocking forms answer a null bulk), null in RESP3.
pub fn timed_out() -> Reply {
    Reply::NilArray
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{argv, lookup};

    #[test]
    fn timeouts_parse_as_redis_does() {
        assert_eq!(parse_timeout(b"0"), Ok(0));
        assert_eq!(parse_timeout(b"-0"), Ok(0));
        assert_eq!(parse_timeout(b"1"), Ok(1000));
        assert_eq!(parse_timeout(b"0.0001"), Ok(1));
        assert_eq!(parse_timeout(b"1.5"), Ok(1500));
        assert_eq!(parse_timeout(b"1e3"), Ok(1_000_000));
        assert_eq!(parse_timeout(b"9223372036854"), Ok(9_223_372_036_854_000));
        for bad in [&b"x"[..], b"", b" 1", b"1 ", b"0,5", b"nan"] {
            assert_eq!(
                parse_timeout(bad),
                Err(CommandError::TimeoutNotFloat),
                "{bad:?}"
            );
        }
        for negative in [&b"-1"[..], b"-0.5", b"inf", b"1e400", b"92233720368547758"] {
            assert_eq!(
                parse_timeout(negative),
                Err(CommandError::TimeoutNegative),
                "{negative:?}"
            );
        }
    }

    #[test]
    fn the_timeout_is_found_and_rewritten_where_the_spec_says() {
        let blpop = lookup(b"blpop").unwrap();
        let a = argv(&["blpop", "a", "b", "2.5"]);
        assert_eq!(timeout_ms(blpop, &a), Some(Ok(2500)));
        assert_eq!(
            with_timeout(blpop, &a, 1234),
            argv(&["blpop", "a", "b", "1.234"])
        );
        let bzmpop = lookup(b"bzmpop").unwrap();
        let z = argv(&["bzmpop", "7", "1", "z", "min"]);
        assert_eq!(timeout_ms(bzmpop, &z), Some(Ok(7000)));
        assert_eq!(
            with_timeout(bzmpop, &z, 5),
            argv(&["bzmpop", "0.005", "1", "z", "min"])
        );
        assert_eq!(
            timeout_ms(lookup(b"lpop").unwrap(), &argv(&["lpop", "a"])),
            None
        );
    }

    #[test]
    fn a_woken_key_is_tried_first() {
        let blpop = lookup(b"blpop").unwrap();
        let a = argv(&["blpop", "a", "b", "c", "0"]);
        assert_eq!(source_positions(blpop, &a), vec![1, 2, 3]);
        assert_eq!(
            with_source_first(blpop, &a, b"c"),
            argv(&["blpop", "c", "a", "b", "0"])
        );
        assert_eq!(with_source_first(blpop, &a, b"x"), a);
        let blmpop = lookup(b"blmpop").unwrap();
        let m = argv(&["blmpop", "0", "2", "a", "b", "left", "count", "2"]);
        assert_eq!(
            with_source_first(blmpop, &m, b"b"),
            argv(&["blmpop", "0", "2", "b", "a", "left", "count", "2"])
        );
        let blmove = lookup(b"blmove").unwrap();
        let mv = argv(&["blmove", "s", "d", "left", "right", "0"]);
        assert_eq!(source_positions(blmove, &mv), vec![1]);
        assert_eq!(with_source_first(blmove, &mv, b"d"), mv);
    }

    #[test]
    fn every_blocking_spec_names_its_timeout() {
        for spec in crate::all_specs() {
            assert_eq!(
                spec.flags.contains(&"blocking"),
                spec.timeout_at.is_some(),
                "{}",
                spec.name
            );
        }
    }
}
