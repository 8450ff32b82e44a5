//! Development and bench tooling. None of it is linked into the production binaries
//! (`orchestrator`, `payment`, `inventory`, `notification`): those ship only what runs a saga.
//!
//! - [`broker`]: the broker step of `sagactl up` and the tests, and private RabbitMQ nodes that
//!   a test, the chaos run or the bench may stop and start at will.
//! - [`kafka`]: private Kafka-protocol brokers (tansu), for the same runs on `BUS=kafka`.
//! - [`rest_chain`]: the design sagaflow replaces (a synchronous REST chain over the same
//!   domains), served by the `rest-chain-hop` binary that `sagactl bench` compares with.
//! - [`populate`]: stores full of finished sagas, for the bench's cost-as-work-grows runs.

pub mod broker;
pub mod kafka;
pub mod populate;
pub mod rest_chain;
