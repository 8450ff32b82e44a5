//! The wire contract of sagaflow: every type that crosses a process boundary, and every name on
//! the bus. Only this crate defines wire types; the orchestrator and the services share it.
//!
//! - [`ids`]: newtypes that cannot hold a bad value (`OrderId`, `SagaId`, `Cents`, `Quantity`, ...).
//! - [`text`]: free text from outside (a refusal's reason), bounded when read.
//! - [`order`]: `OrderPlaced` as it arrives (lenient), and `Order`, a validated order.
//! - [`catalog`]: products, prices and initial stock.
//! - [`command`]: what the orchestrator asks a participant to do, and what it may forget.
//! - [`reply`]: what a participant answers.
//! - [`generic`]: the command and reply envelopes of sagas defined in files.
//! - [`public`]: what the system tells the world, on the public topic exchange.
//! - [`schemas`]: the JSON Schemas of the envelopes a participant reads and writes, for
//!   participants in other languages; kept in `events/schemas/`, checked against the types.
//! - [`topology`]: every exchange, queue, routing key and header name, from the namespace.
//!
//! JSON field names are camelCase; money is always an integer count of cents.

pub mod catalog;
pub mod command;
pub mod generic;
pub mod ids;
pub mod order;
pub mod public;
pub mod reply;
pub mod schemas;
pub mod text;
pub mod topology;

pub use catalog::{Catalog, CatalogError, Product};
pub use command::{
    CommandBody, CommandKind, CommandMessage, ForgetSagas, Forgotten, ForgottenSagas, InvalidCommand,
};
pub use generic::{SagaCommand, SagaReply, StepResult};
pub use ids::{
    BusinessId, Cents, IdError, OrderId, PaymentId, ProductId, Quantity, SagaId, SagaKey, SagaName, StepName,
    UserId,
};
pub use order::{InvalidLines, InvalidOrder, Order, OrderLine, OrderLines, OrderPlaced, WireItem};
pub use public::{PublicEvent, PUBLIC_EVENT_NAMES};
pub use reply::{ReplyMessage, ReplyOutcome};
pub use text::Reason;
pub use topology::{headers, Participant, Topology};

/// Which of a step's commands a message is about. The same names as the saga core's phases.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum Phase {
    Action,
    Compensation,
}
