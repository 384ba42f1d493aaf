//! A small HTTP/1.1 client for the calls between PD and storage nodes (heartbeats, admin
//! operations): one connection per call, a deadline for all of it, the body read whole; and
//! [`watch`], which reads a long-lived answer (PD's routing stream) line by line.
//!
//! Calls go to the cluster's own loopback or internal addresses; there is no TLS.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Largest answer body read.
const MAX_BODY: usize = 64 << 20;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("unexpected answer: {e}"))
    }

    /// The `message` of a JSON error body, or the body as text.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// Sends `method path` to `addr` with an optional JSON body and bearer token; fails if it
/// takes longer than `timeout` in all.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Response, String> {
    tokio::time::timeout(timeout, call_inner(addr, method, path, body, token))
        .await
        .map_err(|_| format!("{method} {path} on {addr}: no answer within {timeout:?}"))?
}

/// An HTTP/1.1 connection to `addr`, its connection task running; on failure, which step
/// failed and why.
async fn open(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, (&'static str, String)> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ("connecting", e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ("handshake", e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A long-lived answer read line by line ([`watch`]).
pub struct LineStream {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
    done: bool,
}

/// Longest line a [`LineStream`] accepts.
const MAX_LINE: usize = 64 << 20;

impl LineStream {
    /// The next line without its newline (the last may lack one); `Ok(None)` when the
    /// answer ended.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                return Ok(Some(line));
            }
            if self.done {
                // A last line without a newline.
                return Ok((!self.buffer.is_empty()).then(|| std::mem::take(&mut self.buffer)));
            }
            if self.buffer.len() > MAX_LINE {
                return Err(format!("a line longer than {MAX_LINE} bytes"));
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Err(e)) => return Err(format!("reading the stream: {e}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Sends `GET path` to `addr` and, when the answer is a success, returns its body as a
/// stream of lines; anything else (including no answer headers within `timeout`) is an
/// error.
pub async fn watch(addr: SocketAddr, path: &str, timeout: Duration) -> Result<LineStream, String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("GET {path} on {addr}: {what}: {e}");
    let start = async {
        let mut sender = open(addr).await.map_err(|(what, e)| err(what, &e))?;
        let request = Request::builder()
            .method("GET")
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|e| err("building the request", &e))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| err("sending", &e))
    };
    let response = tokio::time::timeout(timeout, start)
        .await
        .map_err(|_| format!("GET {path} on {addr}: no answer within {timeout:?}"))??;
    let status = response.status().as_u16();
    let mut lines = LineStream {
        body: response.into_body(),
        buffer: Vec::new(),
        done: false,
    };
    if !(200..300).contains(&status) {
        let mut body = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            body.extend_from_slice(&line);
        }
        let message = Response { status, body }.message();
        return Err(format!("GET {path} on {addr} answered {status}: {message}"));
    }
    Ok(lines)
}

async fn call_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> Result<Response, String> {
    let err =
        |what: &str, e: &dyn std::fmt::Display| format!("{method} {path} on {addr}: {what}: {e}");
    let mut sender = open(addr).await.map_err(|(what, e)| err(what, &e))?;
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string());
    if body.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    if let Some(t) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| err("building the request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| err("sending", &e))?;
    let status = response.status().as_u16();
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| err("reading the answer", &e))?
        .to_bytes()
        .to_vec();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_call_sends_its_request_and_reads_the_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("\r\n\r\n{\"a\":1}") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 409 Conflict\r\ncontent-length: 16\r\n\r\n{\"message\":\"no\"}")
                .await
                .unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        let r = call(
            addr,
            "POST",
            "/x?y=1",
            Some(b"{\"a\":1}".to_vec()),
            Some("t0k"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.message(), "no");
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /x?y=1 HTTP/1.1\r\n"), "{request}");
        assert!(
            request.to_lowercase().contains("authorization: bearer t0k"),
            "{request}"
        );
        // Nothing listening: an error, not a hang.
        let gone: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(call(gone, "GET", "/", None, None, Duration::from_secs(5))
            .await
            .is_err());
    }
}
