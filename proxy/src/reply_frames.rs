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
}
