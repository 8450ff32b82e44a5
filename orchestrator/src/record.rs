//! What the store keeps per saga.

use sagaflow_events::{Order, OrderId};
use sagaflow_saga::Saga;
use serde::{Deserialize, Serialize};

/// One saga with the order it runs and what operators need to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaRecord {
    pub order_id: OrderId,
    /// The state machine's state, history included.
    pub saga: Saga,
    /// The validated order; `None` for an order that arrived invalid on the bus, whose saga
    /// ended `compensated` with reason `invalid_order` at once.
    pub order: Option<Order>,
    /// Why an invalid order was refused, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// The fingerprint of the definition the saga runs under. A saga keeps its definition even
    /// if the configured step order changes while it is in flight.
    pub definition: String,
    /// A hash of the order as placed: the same `orderId` with another body is a conflict.
    pub body_hash: String,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// Position in the listing order (newest first).
    pub created_seq: u64,
    pub finished_at: Option<u64>,
    /// The W3C trace id shared by every message about this order.
    pub trace_id: String,
    /// Payment's reference for the charge, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// When the command now awaited was sent, to measure step latency.
    #[serde(default)]
    pub command_sent_at: u64,
}
