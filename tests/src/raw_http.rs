//! HTTP as a careless or hostile client speaks it: raw bytes on a socket, with a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What came back: the status (0 if none), the body parsed as JSON (`Null` if it is not), the
/// raw answer, and how long it took.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub json: serde_json::Value,
    pub raw: String,
    pub took: Duration,
}

/// Sends `request` to `addr` (host:port) and reads until the server closes or `deadline` passes.
/// A send that fails half-way (the server answered and closed early) still reads the answer.
pub fn send(addr: &str, request: &[u8], deadline: Duration) -> RawAnswer {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let _ = stream.write_all(request);
    read_answer(stream, started, deadline)
}

/// Reads from an open connection until it closes, a complete answer arrived, or the deadline.
pub fn read_answer(mut stream: TcpStream, started: Instant, deadline: Duration) -> RawAnswer {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    while started.elapsed() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if complete(&raw) {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = raw.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
    RawAnswer { status, json, raw, took: started.elapsed() }
}

/// True once a head and as much body as it declares have arrived.
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().ok())
        })
        .flatten();
    length.is_some_and(|n| body.len() >= n)
}
