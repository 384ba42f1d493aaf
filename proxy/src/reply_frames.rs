//! Reading storage nodes' replies as raw RESP: where one reply ends, whether it is an
//! error, an integer's value, an array's items. The proxy passes replies on as bytes and
//! only looks inside the few it merges (MGET, DEL, ...), so nothing is decoded and encoded
//! again on the common path.

use bytes::Bytes;
use zankv_commands::Protocol;

/// Length of the complete reply at the front of `buf`; `None` while it is incomplete.
pub fn frame_len(buf: &[u8], protocol: Protocol) -> Result<Option<usize>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    let decoded = match protocol {
        Protocol::Resp2 => {
            redis_protocol::resp2::decode::decode_range(buf).map(|r| r.map(|(_, n)| n))
        }
        Protocol::Resp3 => {
            redis_protocol::resp3::decode::complete::decode_range(buf).map(|r| r.map(|(_, n)| n))
        }
    };
    decoded.map_err(|e| format!("a malformed reply from the storage node: {e:?}"))
}

/// Finds where replies end in a connection's input as it arrives, without scanning again
/// what earlier calls scanned: a large reply (an array of a million keys, read 16 KiB at
/// a time) costs time in proportion to its size, not to its size squared.
///
/// Between calls the caller may only append to the buffer; once a reply is found the
/// caller removes exactly those bytes from its front and the scanner starts afresh.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Bytes of the current reply scanned so far (complete elements).
    pos: usize,
    /// Elements still expected by each aggregate opened and not finished, outermost first.
    open: Vec<u64>,
    /// Where the search for the end of the current header line resumes.
    line_from: usize,
}

/// Longest header line accepted (a type byte, a length or a simple string); Redis's
/// inline limit.
const MAX_LINE: usize = 64 * 1024;

impl FrameScanner {
    /// Length of the complete reply at the front of `buf`; `None` while it is incomplete.
    pub fn next(&mut self, buf: &[u8], protocol: Protocol) -> Result<Option<usize>, String> {
        loop {
            let start = self.pos;
            if start >= buf.len() {
                return Ok(None);
            }
            let search = self.line_from.max(start + 1);
            let Some(nl) = buf[search.min(buf.len())..]
                .iter()
                .position(|&b| b == b'\n')
            else {
                self.line_from = buf.len();
                if buf.len() - start > MAX_LINE {
                    return Err(malformed("a header line too long"));
                }
                return Ok(None);
            };
            let line_end = search + nl; // index of '\n'
            if line_end < start + 2 || buf[line_end - 1] != b'\r' {
                return Err(malformed("a line not ended by CRLF"));
            }
            let kind = buf[start];
            let body = &buf[start + 1..line_end - 1];
            let after = line_end + 1;
            let resp3_only = !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*');
            if resp3_only && protocol == Protocol::Resp2 {
                return Err(malformed("a RESP3 type on a RESP2 connection"));
            }
            match kind {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => self.element_at(after),
                b'$' | b'!' | b'=' => {
                    let len = number(body)?;
                    if len == -1 && kind == b'$' {
                        self.element_at(after);
                    } else {
                        let len =
                            usize::try_from(len).map_err(|_| malformed("a negative length"))?;
                        let end = after + len + 2;
                        if buf.len() < end {
                            // The header is read again when more arrives: it is short.
                            self.line_from = 0;
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(malformed("a string not ended by CRLF"));
                        }
                        self.element_at(end);
                    }
                }
                b'*' | b'~' | b'>' | b'%' => {
                    let count = number(body)?;
                    if count == -1 && kind == b'*' {
                        self.element_at(after);
                    } else {
                        let count =
                            u64::try_from(count).map_err(|_| malformed("a negative count"))?;
                        let count = if kind == b'%' { count * 2 } else { count };
                        if count == 0 {
                            self.element_at(after);
                        } else {
                            self.pos = after;
                            self.line_from = 0;
                            self.open.push(count);
                        }
                    }
                }
                _ => return Err(malformed("an unknown reply type")),
            }
            if self.open.is_empty() {
                let len = self.pos;
                *self = FrameScanner::default();
                return Ok(Some(len));
            }
        }
    }

    /// One element ends at `end`: it counts for every aggregate it completes.
    fn element_at(&mut self, end: usize) {
        self.pos = end;
        self.line_from = 0;
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
    }
}

fn malformed(what: &str) -> String {
    format!("a malformed reply from the storage node: {what}")
}

/// A header's decimal number.
fn number(digits: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("a length that is not a number"))
}

/// The text of an error reply (without `-`), if `reply` is one.
pub fn error_text(reply: &[u8]) -> Option<&[u8]> {
    match reply.first()? {
        b'-' => Some(trim_line(&reply[1..])),
        // RESP3 blob error: `!<len>\r\n<text>\r\n`.
        b'!' => {
            let start = reply.iter().position(|&b| b == b'\n')? + 1;
            Some(trim_line(&reply[start..]))
        }
        _ => None,
    }
}

fn trim_line(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\r\n").unwrap_or(s)
}

/// The value of an integer reply.
pub fn integer(reply: &[u8]) -> Option<i64> {
    let body = reply.strip_prefix(b":")?;
    std::str::from_utf8(trim_line(body)).ok()?.parse().ok()
}

/// The text of a bulk string reply (RESP2 `$`) or verbatim string (RESP3 `=`, without its
/// `txt:` format).
pub fn bulk_text(reply: &Bytes) -> Option<Bytes> {
    let kind = *reply.first()?;
    if kind != b'$' && kind != b'=' {
        return None;
    }
    let end = reply.iter().position(|&b| b == b'\n')?;
    let len: usize = std::str::from_utf8(trim_line(&reply[1..=end]))
        .ok()?
        .parse()
        .ok()?;
    let body = reply.get(end + 1..end + 1 + len)?;
    let skip = if kind == b'=' { 4 } else { 0 };
    Some(reply.slice_ref(body.get(skip..)?))
}

/// The items of an array reply, each as its raw bytes.
pub fn array_items(reply: &Bytes, protocol: Protocol) -> Option<Vec<Bytes>> {
    let rest = reply.strip_prefix(b"*")?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let count: usize = std::str::from_utf8(trim_line(&rest[..=end]))
        .ok()?
        .parse()
        .ok()?;
    let mut offset = 1 + end + 1;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let len = frame_len(&reply[offset..], protocol).ok()??;
        items.push(reply.slice(offset..offset + len));
        offset += len;
    }
    (offset == reply.len()).then_some(items)
}

/// An array reply of `items` (raw replies).
pub fn array(items: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(16 + items.iter().map(Bytes::len).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
    for item in items {
        out.extend_from_slice(item);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_delimited_and_looked_into() {
        for p in [Protocol::Resp2, Protocol::Resp3] {
            assert_eq!(frame_len(b"+OK\r\n+O", p), Ok(Some(5)));
            assert_eq!(frame_len(b"$5\r\nhel", p), Ok(None));
            assert_eq!(frame_len(b"", p), Ok(None));
            assert!(frame_len(b"?what\r\n", p).is_err());
        }
        assert_eq!(frame_len(b"_\r\n", Protocol::Resp3), Ok(Some(3)));
        assert_eq!(
            frame_len(b"%1\r\n+a\r\n:1\r\n", Protocol::Resp3),
            Ok(Some(12))
        );
        assert_eq!(error_text(b"-ERR x y\r\n"), Some(&b"ERR x y"[..]));
        assert_eq!(error_text(b"!5\r\nERR x\r\n"), Some(&b"ERR x"[..]));
        assert_eq!(error_text(b"+OK\r\n"), None);
        assert_eq!(integer(b":-12\r\n"), Some(-12));
        assert_eq!(integer(b"+12\r\n"), None);
        let reply = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n");
        let items = array_items(&reply, Protocol::Resp2).unwrap();
        assert_eq!(items, vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b":7\r\n"]);
        assert_eq!(array(&items), reply);
        let resp3 = Bytes::from_static(b"*2\r\n_\r\n$1\r\nb\r\n");
        assert_eq!(array_items(&resp3, Protocol::Resp3).unwrap().len(), 2);
        assert_eq!(
            array_items(&Bytes::from_static(b"*2\r\n:1\r\n"), Protocol::Resp2),
            None
        );
        assert_eq!(array(&[]), Bytes::from_static(b"*0\r\n"));
    }

    /// Feeds `stream` to a scanner in pieces cut at `cuts`, as reads would deliver them;
    /// the lengths of the replies found.
    fn scan_in_pieces(stream: &[u8], cuts: &[usize], p: Protocol) -> Result<Vec<usize>, String> {
        let mut scanner = FrameScanner::default();
        let mut buf = Vec::new();
        let mut found = Vec::new();
        let mut fed = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
        ends.push(stream.len());
        ends.sort_unstable();
        for end in ends {
            buf.extend_from_slice(&stream[fed..end.max(fed)]);
            fed = end.max(fed);
            while let Some(len) = scanner.next(&buf, p)? {
                found.push(len);
                buf.drain(..len);
            }
        }
        Ok(found)
    }

    #[test]
    fn the_scanner_finds_what_the_decoder_finds() {
        let replies: [&[u8]; 9] = [
            b"+OK\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n",
            b"$5\r\nhe\r\no\r\n",
            b"*2\r\n*1\r\n*1\r\n+x\r\n:9\r\n",
            b"-WRONGTYPE Operation\r\n",
        ];
        let stream: Vec<u8> = replies.concat();
        let lengths: Vec<usize> = replies.iter().map(|r| r.len()).collect();
        for cut in 0..stream.len() {
            assert_eq!(
                scan_in_pieces(&stream, &[cut], Protocol::Resp2),
                Ok(lengths.clone()),
                "cut {cut}"
            );
        }
        let resp3: [&[u8]; 6] = [
            b"%2\r\n+a\r\n:1\r\n+b\r\n_\r\n",
            b"~1\r\n,1.5\r\n",
            b"!5\r\nERR x\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"#t\r\n",
            b"%0\r\n",
        ];
        let stream3: Vec<u8> = resp3.concat();
        let lengths3: Vec<usize> = resp3.iter().map(|r| r.len()).collect();
        for cut in 0..stream3.len() {
            assert_eq!(
                scan_in_pieces(&stream3, &[cut], Protocol::Resp3),
                Ok(lengths3.clone())
            );
        }
        for bad in [
            &b"?x\r\n"[..],
            b"$x\r\n",
            b"$2\r\nabcd\r\n",
            b"*-2\r\n",
            b"+a\nb",
        ] {
            assert!(
                scan_in_pieces(bad, &[], Protocol::Resp2).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(scan_in_pieces(b"%1\r\n+a\r\n+b\r\n", &[], Protocol::Resp2).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Any RESP2 reply redis-protocol encodes, cut anywhere, is found whole, at the
        /// length redis-protocol's own decoder gives.
        #[test]
        fn any_reply_cut_anywhere_is_found_whole(
            items in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..30),
            nested in 0usize..3,
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let mut reply = Vec::new();
            for _ in 0..nested {
                reply.extend_from_slice(b"*2\r\n:7\r\n");
            }
            reply.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in &items {
                reply.extend_from_slice(format!("${}\r\n", item.len()).as_bytes());
                reply.extend_from_slice(item);
                reply.extend_from_slice(b"\r\n");
            }
            let whole = frame_len(&reply, Protocol::Resp2).unwrap().unwrap();
            proptest::prop_assert_eq!(whole, reply.len());
            let mut two = reply.clone();
            two.extend_from_slice(b"+OK\r\n");
            proptest::prop_assert_eq!(scan_in_pieces(&two, &cuts, Protocol::Resp2), Ok(vec![whole, 5]));
        }
    }
}
