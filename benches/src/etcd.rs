//! etcd's v3 API (gRPC over HTTP/2) as the load generator needs it: unary `KV/Put`,
//! `KV/Range` and `KV/Txn` calls over one HTTP/2 connection per client, messages encoded by
//! hand (three small protobuf messages do not need a code generator).
//!
//! Field numbers are etcd's `etcdserverpb` ones: PutRequest {key = 1, value = 2},
//! RangeRequest {key = 1} (linearizable unless `serializable = 7` is set, which it is
//! not), TxnRequest {success = 2}, RequestOp {request_put = 2}.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

/// One HTTP/2 connection to one etcd member.
pub struct EtcdConn {
    addr: SocketAddr,
    send: h2::client::SendRequest<Bytes>,
}

impl EtcdConn {
    /// Connects and runs the connection's HTTP/2 driver on the runtime.
    pub async fn connect(addr: SocketAddr) -> Result<EtcdConn, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (send, connection) = h2::client::handshake(tcp)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(EtcdConn { addr, send })
    }

    /// `KV/Put key value`.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.unary("/etcdserverpb.KV/Put", put_request(key, value))
            .await
    }

    /// `KV/Range key` (one key, linearizable).
    pub async fn get(&mut self, key: &[u8]) -> Result<(), String> {
        let mut m = BytesMut::new();
        field_bytes(&mut m, 1, key);
        self.unary("/etcdserverpb.KV/Range", m.freeze()).await
    }

    /// `KV/Txn` with no compare and one put per pair: every pair written atomically.
    pub async fn put_all(&mut self, pairs: &[(Vec<u8>, &[u8])]) -> Result<(), String> {
        let mut txn = BytesMut::new();
        for (key, value) in pairs {
            let mut op = BytesMut::new();
            field_bytes(&mut op, 2, &put_request(key, value));
            field_bytes(&mut txn, 2, &op);
        }
        self.unary("/etcdserverpb.KV/Txn", txn.freeze()).await
    }

    /// One unary gRPC call; Ok when its `grpc-status` is 0.
    async fn unary(&mut self, path: &str, message: Bytes) -> Result<(), String> {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let mut ready = self.send.clone().ready().await.map_err(|e| e.to_string())?;
        let (response, mut body_out) = ready
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0);
        frame.put_u32(message.len() as u32);
        frame.extend_from_slice(&message);
        body_out
            .send_data(frame.freeze(), true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        let (parts, mut body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", parts.status));
        }
        // A trailers-only reply carries its status in the headers.
        if let Some(status) = parts.headers.get("grpc-status") {
            return grpc_status(status, parts.headers.get("grpc-message"));
        }
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no gRPC trailers")?;
        match trailers.get("grpc-status") {
            Some(status) => grpc_status(status, trailers.get("grpc-message")),
            None => Err("no grpc-status".into()),
        }
    }
}

fn grpc_status(
    status: &http::HeaderValue,
    message: Option<&http::HeaderValue>,
) -> Result<(), String> {
    if status.as_bytes() == b"0" {
        Ok(())
    } else {
        Err(format!(
            "gRPC status {}: {}",
            String::from_utf8_lossy(status.as_bytes()),
            message.map_or(String::new(), |m| String::from_utf8_lossy(m.as_bytes())
                .into_owned())
        ))
    }
}

fn put_request(key: &[u8], value: &[u8]) -> Bytes {
    let mut m = BytesMut::with_capacity(key.len() + value.len() + 8);
    field_bytes(&mut m, 1, key);
    field_bytes(&mut m, 2, value);
    m.freeze()
}

/// A length-delimited protobuf field (wire type 2).
fn field_bytes(out: &mut BytesMut, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_as_protobuf() {
        assert_eq!(&put_request(b"k", b"vv")[..], b"\x0a\x01k\x12\x02vv");
        let mut m = BytesMut::new();
        varint(&mut m, 300);
        assert_eq!(&m[..], b"\xac\x02");
        let long = vec![b'x'; 200];
        let encoded = put_request(b"k", &long);
        assert_eq!(&encoded[..5], b"\x0a\x01k\x12\xc8");
        assert_eq!(encoded[5], 0x01);
        assert_eq!(encoded.len(), 6 + 200);
    }
}
