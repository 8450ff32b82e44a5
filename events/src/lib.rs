//! The wire contract of sagaflow: every type that crosses a process boundary, and every name on
//! the bus. Only this crate defines wire types; the orchestrator and the services share it.
//!
//! - [`ids`]: newtypes that cannot hold a bad value (`OrderId`, `Cents`, `Quantity`, ...).
//! - [`order`]: `OrderPlaced` as it arrives (lenient), and `Order`, a validated order.
//! - [`catalog`]: products, prices and initial stock.
//! - [`command`]: what the orchestrator asks a participant to do.
//! - [`reply`]: what a participant answers.
//! - [`public`]: what the system tells the world, on the public topic exchange.
//! - [`topology`]: every exchange, queue, routing key and header name, from the namespace.
//!
//! JSON field names are camelCase; money is always an integer count of cents.

pub mod catalog;
pub mod command;
pub mod ids;
pub mod order;
pub mod public;
pub mod reply;
pub mod topology;

pub use catalog::{Catalog, CatalogError, Product};
pub use command::{CommandBody, CommandKind, CommandMessage};
pub use ids::{Cents, IdError, OrderId, ProductId, Quantity, UserId};
pub use order::{InvalidOrder, Order, OrderLine, OrderPlaced, WireItem};
pub use public::{PublicEvent, PUBLIC_EVENT_NAMES};
pub use reply::{ReplyMessage, ReplyOutcome};
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
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum Phase {
    Action,
    Compensation,
}
