//! Reading client requests off the wire: RESP multibulk arrays and inline commands.
//!
//! A Redis server accepts only two request shapes: an array of bulk strings, or an inline
//! line of space-separated words. This parser handles exactly those, with Redis 7.0's limits
//! and its exact protocol-error texts (which a generic RESP decoder cannot produce), and never
//! allocates by a length the client claims before the bytes have arrived.
//!
//! Invariants:
//! - a read consumes bytes only for a complete request (or an empty one that Redis skips);
//!   on `Ok(None)` the buffer is untouched and more bytes are needed;
//! - [`RequestReader`] remembers how far it validated a multibulk request, so a request
//!   arriving in many reads is scanned once, not once per read (the caller only appends to
//!   the buffer between calls).
//! - After a protocol error the caller must reply and close the connection, as Redis does.
//! - Arguments are split off the read buffer without copying.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::CommandError;

/// Request-size limits, Redis's defaults unless configured.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest accepted bulk argument (`proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// Largest inline request or header line (`PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_len: usize,
    /// Largest number of arguments in one request (Redis: `INT_MAX`). Memory is bounded
    /// by the bytes a client actually sends (the caller's query-buffer limit), not by this.
    pub max_args: usize,
    /// The client has not authenticated to a server that requires it: as Redis, at most
    /// 10 arguments of at most 16 KiB each, so an unknown client cannot make the server
    /// hold much of its input.
    pub unauthenticated: bool,
}

/// Most arguments of a request before authentication (Redis's limit).
const UNAUTHENTICATED_ARGS: usize = 10;
/// Largest argument before authentication (Redis's limit).
const UNAUTHENTICATED_BULK: usize = 16 * 1024;

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_args: i32::MAX as usize,
            unauthenticated: false,
        }
    }
}

/// Parses one request from the front of `buf` (see [`RequestReader::next`]), with no memory
/// of earlier calls.
pub fn parse(
    buf: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<Option<Vec<Bytes>>, CommandError> {
    RequestReader::default().next(buf, limits)
}

/// Reads requests off one connection's buffer, remembering how far a multibulk request
/// that has not fully arrived was validated.
#[derive(Debug, Default)]
pub struct RequestReader {
    partial: Option<Partial>,
}

/// A multibulk request seen in part.
#[derive(Debug, Clone, Copy)]
struct Partial {
    /// Arguments announced.
    count: usize,
    /// Arguments validated so far.
    done: usize,
    /// Where the first argument's header starts.
    first: usize,
    /// Where the next argument's header starts.
    pos: usize,
}

impl RequestReader {
    /// Parses one request from the front of `buf`.
    ///
    /// Returns `Ok(Some(args))` for a complete request (possibly with zero arguments,
    /// which the caller ignores), `Ok(None)` when more bytes are needed, and `Err` for a
    /// protocol error. Between calls the caller may only append to `buf`.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        limits: &RequestLimits,
    ) -> Result<Option<Vec<Bytes>>, CommandError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if buf[0] == b'*' {
            let result = self.multibulk(buf, limits);
            if !matches!(result, Ok(None)) {
                self.partial = None;
            }
            result
        } else {
            parse_inline(buf, limits)
        }
    }

    fn multibulk(
        &mut self,
        buf: &mut BytesMut,
        limits: &RequestLimits,
    ) -> Result<Option<Vec<Bytes>>, CommandError> {
        let mut p = match self.partial {
            Some(p) => p,
            None => {
                let Some(eol) = find_crlf(buf, 0) else {
                    if buf.len() > limits.max_inline_len {
                        return Err(protocol("too big mbulk count string"));
                    }
                    return Ok(None);
                };
                let count = match parse_i64(&buf[1..eol]) {
                    Some(n) if n <= i64::from(i32::MAX) => n,
                    _ => return Err(protocol("invalid multibulk length")),
                };
                if count <= 0 {
                    buf.advance(eol + 2);
                    return Ok(Some(Vec::new()));
                }
                let count = count as usize;
                if limits.unauthenticated && count > UNAUTHENTICATED_ARGS {
                    return Err(protocol("unauthenticated multibulk length"));
                }
                if count > limits.max_args {
                    return Err(protocol("invalid multibulk length"));
                }
                Partial {
                    count,
                    done: 0,
                    first: eol + 2,
                    pos: eol + 2,
                }
            }
        };
        while p.done < p.count {
            match bulk_at(buf, p.pos, limits)? {
                Some((start, len)) => {
                    p.pos = start + len + 2;
                    p.done += 1;
                }
                None => {
                    self.partial = Some(p);
                    return Ok(None);
                }
            }
        }
        // Every argument is there and valid: split them off without copying.
        let mut frame = buf.split_to(p.pos).freeze();
        frame.advance(p.first);
        let mut args = Vec::with_capacity(p.count);
        for _ in 0..p.count {
            let eol = find_crlf(&frame, 0).expect("validated header");
            let len = parse_i64(&frame[1..eol]).expect("validated length") as usize;
            frame.advance(eol + 2);
            args.push(frame.split_to(len));
            frame.advance(2);
        }
        Ok(Some(args))
    }
}

/// Validates the bulk argument whose header starts at `pos`: `Some((start, len))` of its
/// bytes once it has fully arrived, `None` while more bytes are needed.
fn bulk_at(
    buf: &mut BytesMut,
    pos: usize,
    limits: &RequestLimits,
) -> Result<Option<(usize, usize)>, CommandError> {
    if pos >= buf.len() {
        return Ok(None);
    }
    if buf[pos] != b'$' {
        return Err(protocol(format!(
            "expected '$', got '{}'",
            buf[pos] as char
        )));
    }
    let Some(len_eol) = find_crlf(buf, pos) else {
        if buf.len() - pos > limits.max_inline_len {
            return Err(protocol("too big bulk count string"));
        }
        return Ok(None);
    };
    let len = match parse_i64(&buf[pos + 1..len_eol]) {
        Some(n) if n >= 0 && (n as u64) <= limits.max_bulk_len as u64 => n as usize,
        _ => return Err(protocol("invalid bulk length")),
    };
    if limits.unauthenticated && len > UNAUTHENTICATED_BULK {
        return Err(protocol("unauthenticated bulk length"));
    }
    let start = len_eol + 2;
    if buf.len() < start + len + 2 {
        // Make room for a large argument as its bytes arrive, at most 1 MiB ahead: memory
        // follows what a client actually sent, not what its header claims.
        let want = start + len + 2;
        if want > buf.capacity() {
            buf.reserve((want - buf.len()).min(1 << 20));
        }
        return Ok(None);
    }
    Ok(Some((start, len)))
}

fn protocol(msg: impl Into<String>) -> CommandError {
    CommandError::Protocol(msg.into())
}

/// Finds the `\r\n`-terminated line starting at `from`; returns the index of `\r`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        match memchr_cr(&buf[i..]) {
            Some(off) => {
                let at = i + off;
                if at + 1 < buf.len() {
                    if buf[at + 1] == b'\n' {
                        return Some(at);
                    }
                    i = at + 1;
                } else {
                    return None;
                }
            }
            None => return None,
        }
    }
    None
}

fn memchr_cr(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\r')
}

/// Redis's strict integer parsing (`string2ll`): optional `-`, no `+`, no leading zeros, no
/// spaces, fits in i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v > (i64::MAX as u64) + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

fn parse_inline(
    buf: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<Option<Vec<Bytes>>, CommandError> {
    // Like Redis, which looks for the newline with strchr: a NUL before it hides it, so the
    // request waits for more input until it is too big.
    let end_of_line = buf.iter().position(|&b| b == b'\n' || b == 0);
    let Some(nl) = end_of_line.filter(|&i| buf[i] == b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(protocol("too big inline request"));
        }
        return Ok(None);
    };
    let line = buf.split_to(nl + 1);
    let mut end = nl;
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    match split_inline_args(&line[..end]) {
        Some(args) => Ok(Some(args)),
        None => Err(protocol("unbalanced quotes in request")),
    }
}

/// Splits an inline command line into words: spaces separate words; `"..."` allows escapes
/// (`\n \r \t \b \a \\ \" \xHH`), `'...'` allows only `\'`; a closing quote must be followed by
/// a space or the end of the line. Returns `None` for unbalanced quotes.
pub fn split_inline_args(line: &[u8]) -> Option<Vec<Bytes>> {
    // A NUL ends the line, as it ends Redis's C string.
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(args);
        }
        let mut word = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    word.push(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    word.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                }
            } else if in_single {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    word.push(b'\'');
                    i += 1;
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    c => word.push(c),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(word));
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8]) -> Result<Option<Vec<Bytes>>, CommandError> {
        let mut buf = BytesMut::from(input);
        parse(&mut buf, &RequestLimits::default())
    }

    #[test]
    fn a_request_arriving_in_pieces_parses_once_whole() {
        let mut wire = Vec::new();
        for _ in 0..3 {
            wire.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n");
        }
        let limits = RequestLimits::default();
        let mut reader = RequestReader::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &wire {
            buf.extend_from_slice(&[*b]);
            while let Some(args) = reader.next(&mut buf, &limits).unwrap() {
                got.push(args);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 3);
        assert!(got
            .iter()
            .all(|a| a == &[Bytes::from("SET"), Bytes::from("k"), Bytes::from("value")]));
    }

    #[test]
    fn millions_of_arguments_are_accepted_as_they_arrive() {
        // Redis accepts up to INT_MAX arguments; nothing is allocated for them up front.
        let limits = RequestLimits::default();
        let mut reader = RequestReader::default();
        let mut buf = BytesMut::from(&b"*2000000\r\n"[..]);
        assert_eq!(reader.next(&mut buf, &limits).unwrap(), None);
        let n = 2_000_000;
        for i in 0..n {
            buf.extend_from_slice(b"$1\r\nx\r\n");
            if i % 500_000 == 0 {
                assert_eq!(reader.next(&mut buf, &limits).unwrap(), None);
            }
        }
        let args = reader.next(&mut buf, &limits).unwrap().unwrap();
        assert_eq!(args.len(), n);
        assert!(parse_all(b"*2147483648\r\n").is_err(), "over INT_MAX");
    }

    #[test]
    fn a_nul_ends_an_inline_line_and_hides_its_newline() {
        // The newline after a NUL is not seen: more input is awaited.
        assert_eq!(parse_all(b"\x00\x01\r\n").unwrap(), None);
        assert_eq!(parse_all(b"a\x00b c\r\nping\r\n").unwrap(), None);
        // Splitting stops at a NUL, however the line got there.
        assert_eq!(split_inline_args(b"a\x00b c"), Some(vec![Bytes::from("a")]));
        assert_eq!(split_inline_args(b"\x00 x"), Some(vec![]));
        assert_eq!(split_inline_args(b"\"ab\x00c\""), None);
    }

    #[test]
    fn multibulk_and_inline() {
        let args = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(args, vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\n").unwrap(), None);
        let args = parse_all(b"set a \"b c\\n\" 'd'\r\n").unwrap().unwrap();
        assert_eq!(
            args,
            vec![
                Bytes::from("set"),
                Bytes::from("a"),
                Bytes::from("b c\n"),
                Bytes::from("d")
            ]
        );
        assert_eq!(parse_all(b"\r\n").unwrap().unwrap(), Vec::<Bytes>::new());
    }

    #[test]
    fn protocol_errors_have_redis_text() {
        let err = |input: &[u8]| parse_all(input).unwrap_err().to_string();
        assert_eq!(
            err(b"*1\r\n+foo\r\n"),
            "ERR Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            err(b"*abc\r\n"),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            err(b"*1\r\n$-5\r\n"),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            err(b"*1\r\n$600000000\r\n"),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            err(b"set a \"b\r\n"),
            "ERR Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn huge_claims_do_not_allocate_up_front() {
        // A client claiming 2^31-1 arguments and sending none must not make us allocate.
        assert_eq!(parse_all(b"*1048576\r\n").unwrap(), None);
    }

    #[test]
    fn integers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b"-0"[..], b"+1", b"01", b" 1", b"1 ", b"", b"-", b"1.0"] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    proptest! {
        #[test]
        fn multibulk_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8), split in 0usize..400) {
            let mut wire = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                wire.extend_from_slice(a);
                wire.extend_from_slice(b"\r\n");
            }
            // Fed in two pieces, the parser must wait, then return exactly the arguments.
            let cut = split.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let limits = RequestLimits::default();
            if cut < wire.len() {
                prop_assert_eq!(parse(&mut buf, &limits).unwrap(), None);
                prop_assert_eq!(buf.len(), cut);
                buf.extend_from_slice(&wire[cut..]);
            }
            let got = parse(&mut buf, &limits).unwrap().unwrap();
            let want: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
            prop_assert_eq!(got, want);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn parse_i64_agrees_with_display(n in any::<i64>()) {
            prop_assert_eq!(parse_i64(n.to_string().as_bytes()), Some(n));
        }
    }
}
