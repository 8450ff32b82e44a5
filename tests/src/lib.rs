//! The test kit for system tests: everything here talks to real things.
//!
//! - [`procs`]: runs the real binaries (built by `cargo build --workspace --bins`) in their own
//!   namespace, data folder and port, with SIGTERM and SIGKILL.
//! - [`bus`]: a real AMQP client for tests: declares the namespace, plays participants, watches
//!   public events, reads the dead-letter queue.
//! - [`commands`]: commands as the orchestrator would send them.
//! - [`disk`]: small file systems that fill up or lose what was not synced.
//! - [`raw_http`]: HTTP as raw bytes on a socket, for hostile requests.
//! - [`system`]: the four real programs on the real broker, and the views of their books.
//! - [`wait`]: waiting on a condition with a deadline, never a fixed sleep.

pub mod bus;
pub mod commands;
pub mod disk;
pub mod kafka;
pub mod procs;
pub mod raw_http;
pub mod system;
pub mod wait;

/// The broker tests use: `AMQP_URL` (set by `make test`) or the local default.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A namespace no other test (or run) uses.
pub fn unique_namespace(test: &str) -> String {
    format!("t-{test}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
