//! The orchestrator: it turns orders into sagas and runs them. The saga core decides; this
//! crate stores, sends, times and serves.
//!
//! - [`config`]: flags and environment variables.
//! - [`app`]: wiring, start-up and the shutdown order.
//! - [`order_saga`]: the order saga's definition and the wire form of its commands.
//! - [`record`]: what is stored per saga.
//! - [`store`]: sled trees and the one-transaction-per-input rule.
//! - [`feed`]: the durable change feed behind `GET /orders/stream`.
//! - [`outgoing`]: effects turned into outbox messages (commands, public events).
//! - [`engine`]: the single writer: batches inputs, group-commits, then acknowledges.
//! - [`timers`]: fires armed timers through the engine.
//! - [`http`]: the HTTP API, its OpenAPI document, and the operator's console.
//! - [`metrics`]: what `/metrics` shows; [`recent`]: the last ten minutes, for the console.
//! - [`retention`]: removes finished sagas older than the retention window.

pub mod app;
pub mod config;
pub mod engine;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod order_saga;
pub mod outgoing;
pub mod recent;
pub mod record;
pub mod retention;
pub mod saga_file;
pub mod store;
pub mod timers;
