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
//! - [`api`] and [`view`]: the HTTP API and its JSON shapes.
//! - [`metrics`]: what `/metrics` shows.
//! - [`retention`]: removes finished sagas older than the retention window.

pub mod api;
pub mod app;
pub mod config;
pub mod engine;
pub mod feed;
pub mod metrics;
pub mod order_saga;
pub mod outgoing;
pub mod record;
pub mod retention;
pub mod store;
pub mod timers;
pub mod view;
