//! Typed command replies and their encoding as RESP2 or RESP3.
//!
//! Commands produce a [`Reply`]; the connection encodes it for the protocol version the client
//! chose with HELLO. Encoding goes through the `redis-protocol` crate's frame encoders. RESP2 has
//! no maps, sets, booleans or doubles, so those are flattened the way Redis 7.0 does: maps become
//! flat arrays of key, value; sets become arrays; booleans become integers 1/0.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Resp2Frame;
use redis_protocol::resp3::types::{BytesFrame as Resp3Frame, FrameMap, FrameSet};

use crate::error::CommandError;

/// The RESP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Protocol {
    /// RESP2, the default for new connections.
    #[default]
    Resp2,
    /// RESP3, chosen with `HELLO 3`.
    Resp3,
}

/// A command's reply, independent of the protocol version.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A status line such as `OK` or `PONG`.
    Status(&'static str),
    /// A status line built at run time (TYPE answers, for instance).
    StatusOwned(String),
    /// An error reply.
    Error(CommandError),
    /// A signed integer.
    Integer(i64),
    /// A binary-safe string.
    Bulk(Bytes),
    /// The null reply (`$-1` in RESP2, `_` in RESP3).
    Nil,
    /// The null array (`*-1` in RESP2, `_` in RESP3): LPOP with a count on a missing key,
    /// LMPOP that found nothing.
    NilArray,
    /// An ordered array.
    Array(Vec<Reply>),
    /// A map (RESP3); a flat array of key, value in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set (RESP3); an array in RESP2.
    Set(Vec<Reply>),
    /// Pairs such as HRANDFIELD's WITHVALUES reply: an array of two-element arrays in RESP3,
    /// a flat array in RESP2.
    Pairs(Vec<(Reply, Reply)>),
    /// Verbatim text (RESP3 `=txt:`); a bulk string in RESP2.
    Verbatim(Bytes),
    /// A double (RESP3 `,`); a bulk string in RESP2. Both are printed as Redis 7.0 prints
    /// them (`%.17g`, see [`crate::number::format_double`]).
    Double(f64),
    /// A coordinate (GEOPOS, WITHCOORD): a double (RESP3 `,`), a bulk string in RESP2, both
    /// printed as Redis prints a "human" long double: 17 decimals, trailing zeros dropped.
    Coordinate(f64),
    /// A boolean (RESP3 `#t`/`#f`); the integer 1 or 0 in RESP2 (a script's `true` or
    /// `false` after `redis.setresp(3)`).
    Boolean(bool),
    /// A big number (RESP3 `(`), its decimal digits; a bulk string in RESP2 (a script's
    /// `{big_number = "..."}`).
    BigNumber(Bytes),
    /// Out-of-band data (RESP3 `>`): a Pub/Sub message or subscription confirmation; an
    /// array in RESP2.
    Push(Vec<Reply>),
    /// Several top-level replies to one request, one after the other (SUBSCRIBE confirms
    /// each channel with one).
    Frames(Vec<Reply>),
}

/// Redis's "human" long double (`%.17Lf` without trailing zeros, `-0` as `0`): GEOPOS's
/// coordinates.
pub fn human_coordinate(value: f64) -> String {
    let mut s = crate::number::format_double_f(value, 17);
    if s.contains('.') {
        let kept = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(kept);
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

impl Reply {
    /// The `+OK` reply.
    pub const OK: Reply = Reply::Status("OK");

    /// A bulk reply from anything byte-like.
    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    /// A bulk reply from a byte slice, copied.
    pub fn bulk_from(data: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data))
    }

    /// `Bulk` for `Some`, `Nil` for `None`.
    pub fn bulk_or_nil(data: Option<impl Into<Bytes>>) -> Reply {
        data.map_or(Reply::Nil, |d| Reply::Bulk(d.into()))
    }

    /// An array of bulk strings.
    pub fn bulk_array<I, B>(items: I) -> Reply
    where
        I: IntoIterator<Item = B>,
        B: Into<Bytes>,
    {
        Reply::Array(items.into_iter().map(|b| Reply::Bulk(b.into())).collect())
    }

    /// Whether this reply is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends this reply, encoded for `protocol`, to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        // Encoding a well-formed frame into a growable buffer cannot fail: the encoder only
        // reports buffers that are too small, and `extend_encode` grows the buffer first.
        if let Reply::Frames(frames) = self {
            for frame in frames {
                frame.encode(protocol, out);
            }
            return;
        }
        match protocol {
            // The RESP2 frame type has no null array: it is written here, and so are the
            // arrays that hold one (EXEC's reply to a BLPOP that found nothing).
            Protocol::Resp2 if *self == Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp2 if self.holds(&|r| matches!(r, Reply::NilArray | Reply::Frames(_))) => {
                self.encode_resp2_container(out)
            }
            Protocol::Resp2 => {
                let frame = self.to_resp2();
                redis_protocol::resp2::encode::extend_encode(out, &frame, false)
                    .expect("encoding into a growable buffer");
            }
            // The RESP3 encoder prints doubles its own way: a reply holding one is written
            // here, its other parts still by the encoder.
            Protocol::Resp3
                if matches!(self, Reply::Double(_) | Reply::Coordinate(_))
                    || self.holds(&|r| {
                        matches!(
                            r,
                            Reply::Double(_) | Reply::Coordinate(_) | Reply::Frames(_)
                        )
                    }) =>
            {
                self.encode_resp3_with_doubles(out)
            }
            Protocol::Resp3 => {
                let frame = self.to_resp3();
                redis_protocol::resp3::encode::complete::extend_encode(out, &frame, false)
                    .expect("encoding into a growable buffer");
            }
        }
    }

    /// Whether a reply nested in this one (not this one itself) is one `what` picks: a
    /// null array (RESP2 has no frame for it), a double (the RESP3 encoder prints it its
    /// own way) or several frames (written inline, as Redis writes SUBSCRIBE's
    /// confirmations inside EXEC's reply).
    fn holds(&self, what: &dyn Fn(&Reply) -> bool) -> bool {
        let nested = |r: &Reply| what(r) || r.holds(what);
        match self {
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) | Reply::Frames(items) => {
                items.iter().any(nested)
            }
            Reply::Map(pairs) | Reply::Pairs(pairs) => {
                pairs.iter().any(|(k, v)| nested(k) || nested(v))
            }
            _ => false,
        }
    }

    /// Writes an array or map in RESP2 item by item (each item encoded on its own).
    fn encode_resp2_container(&self, out: &mut BytesMut) {
        match self {
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(Protocol::Resp2, out);
                }
            }
            Reply::Map(pairs) | Reply::Pairs(pairs) => {
                out.extend_from_slice(format!("*{}\r\n", pairs.len() * 2).as_bytes());
                for (k, v) in pairs {
                    k.encode(Protocol::Resp2, out);
                    v.encode(Protocol::Resp2, out);
                }
            }
            other => other.encode(Protocol::Resp2, out),
        }
    }

    /// RESP3 encoding of a reply that holds doubles: aggregates' headers and doubles are
    /// written here, every other part by the encoder.
    fn encode_resp3_with_doubles(&self, out: &mut BytesMut) {
        let header = |out: &mut BytesMut, kind: u8, n: usize| {
            out.extend_from_slice(&[kind]);
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        match self {
            Reply::Double(d) => {
                out.extend_from_slice(b",");
                out.extend_from_slice(crate::number::format_double(*d).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Coordinate(d) => {
                out.extend_from_slice(b",");
                out.extend_from_slice(human_coordinate(*d).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
                header(
                    out,
                    match self {
                        Reply::Set(_) => b'~',
                        Reply::Push(_) => b'>',
                        _ => b'*',
                    },
                    items.len(),
                );
                for item in items {
                    item.encode(Protocol::Resp3, out);
                }
            }
            Reply::Map(pairs) => {
                header(out, b'%', pairs.len());
                for (k, v) in pairs {
                    k.encode(Protocol::Resp3, out);
                    v.encode(Protocol::Resp3, out);
                }
            }
            Reply::Pairs(pairs) => {
                header(out, b'*', pairs.len());
                for (k, v) in pairs {
                    header(out, b'*', 2);
                    k.encode(Protocol::Resp3, out);
                    v.encode(Protocol::Resp3, out);
                }
            }
            other => other.encode(Protocol::Resp3, out),
        }
    }

    fn to_resp2(&self) -> Resp2Frame {
        match self {
            Reply::Status(s) => Resp2Frame::SimpleString(Bytes::from_static(s.as_bytes())),
            Reply::StatusOwned(s) => Resp2Frame::SimpleString(Bytes::from(s.clone())),
            Reply::Error(e) => Resp2Frame::Error(error_line(e).into()),
            Reply::Integer(i) => Resp2Frame::Integer(*i),
            Reply::Bulk(b) | Reply::Verbatim(b) => Resp2Frame::BulkString(b.clone()),
            Reply::Nil => Resp2Frame::Null,
            Reply::Double(d) => Resp2Frame::BulkString(crate::number::format_double(*d).into()),
            Reply::Coordinate(d) => Resp2Frame::BulkString(human_coordinate(*d).into()),
            Reply::Boolean(b) => Resp2Frame::Integer(i64::from(*b)),
            Reply::BigNumber(digits) => Resp2Frame::BulkString(digits.clone()),
            Reply::NilArray => Resp2Frame::Null,
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) | Reply::Frames(items) => {
                Resp2Frame::Array(items.iter().map(Reply::to_resp2).collect())
            }
            Reply::Map(pairs) | Reply::Pairs(pairs) => Resp2Frame::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [k.to_resp2(), v.to_resp2()])
                    .collect(),
            ),
        }
    }

    fn to_resp3(&self) -> Resp3Frame {
        match self {
            Reply::Status(s) => Resp3Frame::SimpleString {
                data: Bytes::from_static(s.as_bytes()),
                attributes: None,
            },
            Reply::StatusOwned(s) => Resp3Frame::SimpleString {
                data: Bytes::from(s.clone()),
                attributes: None,
            },
            Reply::Error(e) => Resp3Frame::SimpleError {
                data: error_line(e).into(),
                attributes: None,
            },
            Reply::Integer(i) => Resp3Frame::Number {
                data: *i,
                attributes: None,
            },
            Reply::Bulk(b) => Resp3Frame::BlobString {
                data: b.clone(),
                attributes: None,
            },
            Reply::Verbatim(b) => Resp3Frame::VerbatimString {
                data: b.clone(),
                format: redis_protocol::resp3::types::VerbatimStringFormat::Text,
                attributes: None,
            },
            Reply::Nil | Reply::NilArray => Resp3Frame::Null,
            Reply::Boolean(b) => Resp3Frame::Boolean {
                data: *b,
                attributes: None,
            },
            Reply::BigNumber(digits) => Resp3Frame::BigNumber {
                data: digits.clone(),
                attributes: None,
            },
            // Written by `encode_resp3_with_doubles` instead (this form prints differently).
            Reply::Double(d) | Reply::Coordinate(d) => Resp3Frame::Double {
                data: *d,
                attributes: None,
            },
            // Frames are written one by one by `encode`.
            Reply::Array(items) | Reply::Frames(items) => Resp3Frame::Array {
                data: items.iter().map(Reply::to_resp3).collect(),
                attributes: None,
            },
            Reply::Push(items) => Resp3Frame::Push {
                data: items.iter().map(Reply::to_resp3).collect(),
                attributes: None,
            },
            Reply::Pairs(pairs) => Resp3Frame::Array {
                data: pairs
                    .iter()
                    .map(|(k, v)| Resp3Frame::Array {
                        data: vec![k.to_resp3(), v.to_resp3()],
                        attributes: None,
                    })
                    .collect(),
                attributes: None,
            },
            Reply::Set(items) => {
                let mut set = FrameSet::default();
                for item in items {
                    set.insert(item.to_resp3());
                }
                Resp3Frame::Set {
                    data: set,
                    attributes: None,
                }
            }
            Reply::Map(pairs) => {
                let mut map = FrameMap::default();
                for (k, v) in pairs {
                    map.insert(k.to_resp3(), v.to_resp3());
                }
                Resp3Frame::Map {
                    data: map,
                    attributes: None,
                }
            }
        }
    }
}

/// An error's text as one protocol line, as Redis makes it: CR and LF at the end (which can
/// come from echoed client input) are trimmed, and those inside become spaces.
fn error_line(e: &CommandError) -> String {
    let text = e.to_string();
    if text.contains(['\r', '\n']) {
        text.trim_end_matches(['\r', '\n'])
            .replace(['\r', '\n'], " ")
    } else {
        text
    }
}

impl From<CommandError> for Reply {
    fn from(e: CommandError) -> Self {
        Reply::Error(e)
    }
}

impl From<Result<Reply, CommandError>> for Reply {
    fn from(r: Result<Reply, CommandError>) -> Self {
        r.unwrap_or_else(Reply::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> String {
        let mut out = BytesMut::new();
        r.encode(p, &mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn golden_encodings() {
        assert_eq!(enc(&Reply::OK, Protocol::Resp2), "+OK\r\n");
        assert_eq!(enc(&Reply::Nil, Protocol::Resp2), "$-1\r\n");
        assert_eq!(enc(&Reply::Nil, Protocol::Resp3), "_\r\n");
        assert_eq!(enc(&Reply::NilArray, Protocol::Resp2), "*-1\r\n");
        // Nested, as in EXEC's reply to a BLPOP that found nothing.
        let exec = Reply::Array(vec![
            Reply::NilArray,
            Reply::Nil,
            Reply::Array(vec![Reply::NilArray]),
        ]);
        assert_eq!(
            enc(&exec, Protocol::Resp2),
            "*3\r\n*-1\r\n$-1\r\n*1\r\n*-1\r\n"
        );
        assert_eq!(enc(&exec, Protocol::Resp3), "*3\r\n_\r\n_\r\n*1\r\n_\r\n");
        // Pub/Sub: pushes, and one request answered by several of them.
        let push = |ch: &'static str| {
            Reply::Push(vec![
                Reply::bulk("subscribe"),
                Reply::bulk(ch),
                Reply::Integer(1),
            ])
        };
        let frames = Reply::Frames(vec![push("a"), push("b")]);
        assert_eq!(
            enc(&frames, Protocol::Resp2),
            "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n"
        );
        assert_eq!(
            enc(&frames, Protocol::Resp3),
            ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n"
        );
        assert_eq!(enc(&Reply::NilArray, Protocol::Resp3), "_\r\n");
        let scored = Reply::Pairs(vec![(Reply::bulk_from(b"m"), Reply::Double(0.1))]);
        assert_eq!(
            enc(&scored, Protocol::Resp2),
            "*2\r\n$1\r\nm\r\n$19\r\n0.10000000000000001\r\n"
        );
        assert_eq!(
            enc(&scored, Protocol::Resp3),
            "*1\r\n*2\r\n$1\r\nm\r\n,0.10000000000000001\r\n"
        );
        assert_eq!(
            enc(&Reply::Double(f64::NEG_INFINITY), Protocol::Resp3),
            ",-inf\r\n"
        );
        assert_eq!(enc(&Reply::Integer(-3), Protocol::Resp3), ":-3\r\n");
        assert_eq!(
            enc(&Reply::bulk_from(b"a\r\n"), Protocol::Resp2),
            "$3\r\na\r\n\r\n"
        );
        let map = Reply::Map(vec![(Reply::bulk_from(b"f"), Reply::bulk_from(b"v"))]);
        assert_eq!(enc(&map, Protocol::Resp2), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
        assert_eq!(enc(&map, Protocol::Resp3), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
        assert_eq!(
            enc(&Reply::Error(CommandError::Syntax), Protocol::Resp2),
            "-ERR syntax error\r\n"
        );
    }
}
