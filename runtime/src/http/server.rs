//! The HTTP server every program runs. It binds before anything else starts, so a taken port is
//! an error with one clear line instead of a process that says it is ready and is not; it caps
//! connections; and every connection goes through the [`guard`](super::guard).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::auth::ApiToken;
use super::guard::{Guarded, Limits};

/// The HTTP settings every program takes.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address of the HTTP API (default 127.0.0.1 on the program's own port).
    #[arg(long, env = "HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// When set, every HTTP endpoint but /health and /metrics requires
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<ApiToken>,
    /// Largest accepted request body, in bytes; a larger declared Content-Length gets 413 at once.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// Largest accepted request head (request line and headers), in bytes.
    #[arg(long, env = "HTTP_MAX_HEAD_BYTES", default_value_t = 16 * 1024)]
    pub max_head_bytes: usize,
    /// Time for a request head to arrive once it has begun, in ms (408 after).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Time for a request body to arrive, in ms (408 after).
    #[arg(long, env = "HTTP_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Open connections at once; more are answered 503 and closed.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
}

impl HttpArgs {
    /// `HTTP_ADDR`, or 127.0.0.1 on the program's default port.
    pub fn addr(&self, default_port: u16) -> SocketAddr {
        self.http_addr.unwrap_or_else(|| ([127, 0, 0, 1], default_port).into())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_head_bytes: self.max_head_bytes.max(1024),
            max_body_bytes: self.body_limit_bytes as u64,
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            ..Limits::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A bound listener, not yet serving.
pub struct HttpServer {
    listener: TcpListener,
    limits: Limits,
    max_connections: usize,
}

impl HttpServer {
    /// Binds `addr` (the program's default port if `HTTP_ADDR` is not set).
    pub async fn bind(args: &HttpArgs, default_port: u16) -> Result<Self, BindError> {
        let addr = args.addr(default_port);
        let listener = TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })?;
        Ok(Self { listener, limits: args.limits(), max_connections: args.max_connections.max(1) })
    }

    /// The bound address, which differs from the one asked for when that had port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves `router` until `stop`, then lets open requests finish (for a few seconds).
    pub async fn serve(self, router: Router, stop: CancellationToken) {
        tracing::info!(addr = %self.local_addr(), "HTTP listening");
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .max_buf_size((self.limits.max_head_bytes * 2).max(8192));
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tokio::spawn(async move {
                    let mut refused =
                        Guarded::refusing(stream, 503, "too many connections; try again shortly");
                    let _ = tokio::io::copy(&mut refused, &mut tokio::io::sink()).await;
                });
                continue;
            };
            let io = TokioIo::new(Guarded::new(stream, self.limits.clone()));
            let connection = builder.serve_connection(io, TowerToHyperService::new(router.clone()));
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
                drop(permit);
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    }
}
