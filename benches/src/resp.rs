//! The RESP side of the load generator: connections that send a request (or a pipeline
//! of them) and read the replies, and the choice of node for a key against a zankv
//! cluster reached without a proxy (the node that last said it leads the key's partition,
//! learned from `ERR_CLUSTER_CHANGED ... leader is node N at ADDR` hints, as a smart
//! client does).

use std::net::SocketAddr;

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection to one server, with its read buffer.
pub struct RespConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl RespConn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RespConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RespConn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Writes `requests` (already encoded, `count` of them) and reads their `count`
    /// replies, in order.
    pub async fn call(
        &mut self,
        requests: &[u8],
        count: usize,
        replies: &mut Vec<BytesFrame>,
    ) -> std::io::Result<()> {
        replies.clear();
        self.stream.write_all(requests).await?;
        while replies.len() < count {
            match decode_bytes_mut(&mut self.buf) {
                Ok(Some((frame, _, _))) => {
                    replies.push(frame);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{e:?}"),
                    ))
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }
}

/// Appends `args` as one RESP request.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    use std::io::Write;
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The address named by a leader hint (`... at HOST:PORT`), as an index into `addrs`.
pub fn hinted_leader(text: &[u8], addrs: &[SocketAddr]) -> Option<usize> {
    let text = std::str::from_utf8(text).ok()?;
    let at = text.rsplit(" at ").next()?;
    let addr: SocketAddr = at.trim().parse().ok()?;
    addrs.iter().position(|a| *a == addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_and_hints_name_a_node() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        assert_eq!(
            hinted_leader(
                b"ERR_CLUSTER_CHANGED: not leader of d-1, leader is node 2 at 127.0.0.1:2",
                &addrs
            ),
            Some(1)
        );
        assert_eq!(
            hinted_leader(b"ERR_CLUSTER_CHANGED: no leader", &addrs),
            None
        );
    }
}
