//! The front door of every HTTP connection: each request head is read, bounded and checked here
//! before hyper sees a byte of it, so that every refusal, even of a request hyper could not
//! parse, is a JSON object with the right status:
//!
//! - a head larger than [`Limits::max_head_bytes`]: `431`;
//! - a head not complete within [`Limits::header_timeout`] of its first byte: `408`;
//! - a head that is not valid HTTP/1.1, or whose target is not ASCII (a path that is not valid
//!   UTF-8, say): `400`;
//! - a declared `Content-Length` over [`Limits::max_body_bytes`]: `413`, at once, before any
//!   of the body is read;
//! - a body without a declared length (`Transfer-Encoding`): `411`.
//!
//! A refused connection gets its answer, is shut for writing, and is drained briefly before it
//! closes, so that the client reads the answer instead of a reset. Knowing each body's length
//! also tells where the next request on a kept-alive connection begins, so every request is
//! checked, pipelined ones included. An idle connection is closed quietly after
//! [`Limits::idle_timeout`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The bounds every connection is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_body_bytes: u64,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The most headers one request may carry.
const MAX_HEADERS: usize = 64;
/// How long, and how much, a refused connection is drained before it closes.
const DRAIN_FOR: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 1 << 20;

enum State {
    /// Reading a request head into `buf`; nothing of it has gone to hyper yet.
    Head,
    /// The head was accepted: `left` more bytes (head and body) go to hyper unchecked.
    Pass {
        left: u64,
    },
    /// Writing a refusal; `written` bytes of it are out.
    Refuse {
        answer: Vec<u8>,
        written: usize,
    },
    /// The refusal is out: reading and dropping what the client still sends, briefly.
    Drain {
        dropped: usize,
    },
    Closed,
}

/// A connection with its requests checked on the way in. Writes pass through untouched.
pub struct Guarded<S> {
    inner: S,
    limits: Limits,
    state: State,
    /// Read from the socket, not yet handed on.
    buf: Vec<u8>,
    timer: Pin<Box<Sleep>>,
    /// Whether the timer runs for a head that has begun (else for an idle connection).
    head_begun: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, limits: Limits) -> Self {
        let timer = Box::pin(tokio::time::sleep(limits.idle_timeout));
        Self { inner, limits, state: State::Head, buf: Vec::new(), timer, head_begun: false }
    }

    /// A response is being written: the connection is not idle. (A long answer, such as the
    /// event stream, keeps its connection as long as it keeps writing.)
    fn busy(&mut self) {
        if matches!(self.state, State::Head) && !self.head_begun {
            let idle = Instant::now() + self.limits.idle_timeout;
            self.timer.as_mut().reset(idle);
        }
    }

    /// A connection refused before it is served (too many connections): it gets `answer` and
    /// is closed.
    pub fn refusing(inner: S, status: u16, message: &str) -> Self {
        let mut guarded = Self::new(inner, Limits::default());
        guarded.refuse(status, message);
        guarded
    }

    fn refuse(&mut self, status: u16, message: &str) {
        self.state = State::Refuse { answer: answer(status, message), written: 0 };
        self.timer.as_mut().reset(Instant::now() + DRAIN_FOR);
    }

    /// Looks at the head in `buf`, if complete: accepts it, refuses it, or asks for more.
    fn check_head(&mut self) -> bool {
        let Some(end) = find_head_end(&self.buf) else {
            if self.buf.len() > self.limits.max_head_bytes {
                self.refuse(431, "the request head is larger than the limit");
                return true;
            }
            return false;
        };
        if end > self.limits.max_head_bytes {
            self.refuse(431, "the request head is larger than the limit");
            return true;
        }
        match check(&self.buf[..end], &self.limits) {
            Ok(body) => {
                self.state = State::Pass { left: end as u64 + body };
                self.head_begun = false;
            }
            Err((status, message)) => self.refuse(status, &message),
        }
        true
    }
}

/// Where the head in `buf` ends (just after its blank line), if it is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks a complete head: Ok(body length), or the status and message of the refusal.
fn check(head: &[u8], limits: &Limits) -> Result<u64, (u16, String)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err((400, "the request head is incomplete".into())),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((431, format!("a request may carry at most {MAX_HEADERS} headers")))
        }
        Err(e) => return Err((400, format!("not a valid HTTP request: {e}"))),
    }
    let target = request.path.unwrap_or_default();
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err((400, "the request target must be ASCII; percent-encode anything else".into()));
    }
    if target.parse::<http::Uri>().is_err() {
        return Err((400, "the request target is not a valid URI".into()));
    }
    let mut length: Option<u64> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err((411, "send the body with a Content-Length, not a transfer encoding".into()));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| (400, "Content-Length is not a number".to_owned()))?;
            if length.is_some_and(|l| l != value) {
                return Err((400, "two different Content-Length headers".into()));
            }
            length = Some(value);
        }
    }
    let length = length.unwrap_or(0);
    if length > limits.max_body_bytes {
        return Err((
            413,
            format!("the body would be {length} bytes; the limit is {} bytes", limits.max_body_bytes),
        ));
    }
    Ok(length)
}

/// A complete HTTP/1.1 response whose body is `{"error": message}`; the connection closes.
fn answer(status: u16, message: &str) -> Vec<u8> {
    let reason =
        http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Closed => return Poll::Ready(Ok(())),
                State::Pass { left } if *left == 0 => {
                    this.state = State::Head;
                    let idle = Instant::now() + this.limits.idle_timeout;
                    this.timer.as_mut().reset(idle);
                }
                State::Pass { left } => {
                    if !this.buf.is_empty() {
                        let n = this
                            .buf
                            .len()
                            .min(out.remaining())
                            .min(usize::try_from(*left).unwrap_or(usize::MAX));
                        out.put_slice(&this.buf[..n]);
                        this.buf.drain(..n);
                        *left -= n as u64;
                        return Poll::Ready(Ok(()));
                    }
                    // The body straight through, never past its declared end: what follows it is
                    // the next head, which must be checked first.
                    let want = out.remaining().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let mut limited = ReadBuf::new(out.initialize_unfilled_to(want));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
                    let n = limited.filled().len();
                    if n == 0 {
                        this.state = State::Closed;
                        return Poll::Ready(Ok(()));
                    }
                    out.advance(n);
                    *left -= n as u64;
                    return Poll::Ready(Ok(()));
                }
                State::Head => {
                    if !this.buf.is_empty() && this.check_head() {
                        continue;
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        if this.head_begun {
                            this.refuse(408, "the request head did not arrive in time");
                            continue;
                        }
                        // Idle for too long between requests: close quietly.
                        this.state = State::Closed;
                        return Poll::Ready(Ok(()));
                    }
                    let mut chunk = [0u8; 4096];
                    let mut read = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    if read.filled().is_empty() {
                        // The client went away, with or without half a head: nothing to answer.
                        this.state = State::Closed;
                        return Poll::Ready(Ok(()));
                    }
                    if !this.head_begun {
                        this.head_begun = true;
                        let deadline = Instant::now() + this.limits.header_timeout;
                        this.timer.as_mut().reset(deadline);
                    }
                    this.buf.extend_from_slice(read.filled());
                }
                State::Refuse { answer, written } => {
                    while *written < answer.len() {
                        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
                        if n == 0 {
                            this.state = State::Closed;
                            return Poll::Ready(Ok(()));
                        }
                        *written += n;
                    }
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.buf.clear();
                    this.state = State::Drain { dropped: 0 };
                }
                State::Drain { dropped } => {
                    if *dropped > DRAIN_BYTES || this.timer.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut chunk = [0u8; 4096];
                    let mut read = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    if read.filled().is_empty() {
                        this.state = State::Closed;
                    } else {
                        *dropped += read.filled().len();
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if matches!(self.state, State::Refuse { .. } | State::Drain { .. } | State::Closed) {
            // The connection is being refused; hyper has nothing to say on it.
            return Poll::Ready(Ok(data.len()));
        }
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, data));
        self.busy();
        Poll::Ready(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.state, State::Refuse { .. } | State::Drain { .. } | State::Closed) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs));
        self.busy();
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Sends `request` through a guard and returns (what hyper would read, what the client got).
    async fn through(request: &[u8], limits: Limits) -> (Vec<u8>, Vec<u8>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut guarded = Guarded::new(server, limits);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(request).await.unwrap();
        client_write.shutdown().await.unwrap();
        let mut passed = Vec::new();
        guarded.read_to_end(&mut passed).await.unwrap();
        drop(guarded);
        let mut answered = Vec::new();
        client_read.read_to_end(&mut answered).await.unwrap();
        (passed, answered)
    }

    fn status_and_body(answer: &[u8]) -> (u16, serde_json::Value) {
        let text = String::from_utf8_lossy(answer);
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn good_requests_pass_whole_including_pipelined_ones() {
        let two = b"POST /orders HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
        let (passed, answered) = through(two, Limits::default()).await;
        assert_eq!(passed, two);
        assert!(answered.is_empty());
    }

    #[tokio::test]
    async fn each_kind_of_bad_head_gets_its_json_answer_and_nothing_reaches_hyper() {
        let big_header = format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(20_000));
        let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "x-h: 1\r\n".repeat(70));
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (big_header.into_bytes(), 431),
            (many_headers.into_bytes(), 431),
            (b"GET /orders/\xff\xfe HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), 400),
            (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
            (b"POST /orders HTTP/1.1\r\ncontent-length: 999999999\r\n\r\n".to_vec(), 413),
            (b"POST /orders HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(), 411),
            (b"POST /orders HTTP/1.1\r\ncontent-length: 1x\r\n\r\n".to_vec(), 400),
        ];
        for (request, want) in cases {
            let (passed, answered) = through(&request, Limits::default()).await;
            assert!(passed.is_empty(), "hyper saw {:?}", String::from_utf8_lossy(&passed));
            let (status, body) = status_and_body(&answered);
            assert_eq!(status, want, "{}", String::from_utf8_lossy(&request[..request.len().min(80)]));
            assert!(body["error"].is_string(), "{}", String::from_utf8_lossy(&answered));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_stalls_is_answered_408_and_an_idle_connection_closes_quietly() {
        let limits = Limits { header_timeout: Duration::from_secs(1), ..Limits::default() };
        let (client, server) = tokio::io::duplex(4096);
        let mut guarded = Guarded::new(server, limits.clone());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(b"GET / HTTP/1.1\r\nhost:").await.unwrap();
        let mut passed = Vec::new();
        guarded.read_to_end(&mut passed).await.unwrap();
        assert!(passed.is_empty());
        drop(guarded);
        let mut answered = Vec::new();
        client_read.read_to_end(&mut answered).await.unwrap();
        assert_eq!(status_and_body(&answered).0, 408);

        let (_client, server) = tokio::io::duplex(4096);
        let mut idle = Guarded::new(server, limits);
        let mut passed = Vec::new();
        idle.read_to_end(&mut passed).await.unwrap();
        assert!(passed.is_empty());
    }
}
