//! Public events: what the system tells the world about each order, on the namespace's topic
//! exchange. Anyone may bind a queue to it; the routing key is the event name in dotted lower
//! case (`PaymentProcessed` is published as `payment.processed`).
//!
//! The shapes of `OrderPlaced`, `PaymentProcessed` and `InventoryUpdated` are the published
//! examples; extra fields (`amountCents`) are additions the examples allow.

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, OrderId};
use crate::order::WireItem;

/// Tagged by `event`, whose value is the variant's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames)]
#[serde(tag = "event", rename_all_fields = "camelCase")]
pub enum PublicEvent {
    OrderPlaced {
        order_id: OrderId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        items: Vec<WireItem>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount_cents: Option<Cents>,
    },
    PaymentProcessed {
        order_id: OrderId,
        payment_status: PaymentStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount_cents: Option<Cents>,
    },
    InventoryUpdated {
        order_id: OrderId,
        status: InventoryStatus,
    },
    NotificationSent {
        order_id: OrderId,
    },
    OrderCompleted {
        order_id: OrderId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount_cents: Option<Cents>,
    },
    OrderCompensated {
        order_id: OrderId,
        reason: String,
    },
    /// A compensation kept failing: an operator must look (`POST /orders/{id}/retry`).
    OrderStuck {
        order_id: OrderId,
        step: String,
        reason: String,
    },
}

/// Every public event name, for documentation and for tests that bind to all of them.
pub const PUBLIC_EVENT_NAMES: &[&str] = <PublicEvent as strum::VariantNames>::VARIANTS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PaymentStatus {
    Confirmed,
    Declined,
    Refunded,
}

/// The published example writes these as short phrases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryStatus {
    #[serde(rename = "items reserved")]
    Reserved,
    #[serde(rename = "out of stock")]
    OutOfStock,
    #[serde(rename = "items released")]
    Released,
}

impl PublicEvent {
    /// The event's name, as in its `event` field.
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// The routing key on the topic exchange: `PaymentProcessed` becomes `payment.processed`.
    pub fn routing_key(&self) -> String {
        routing_key_of(self.name())
    }

    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::OrderPlaced { order_id, .. }
            | Self::PaymentProcessed { order_id, .. }
            | Self::InventoryUpdated { order_id, .. }
            | Self::NotificationSent { order_id }
            | Self::OrderCompleted { order_id, .. }
            | Self::OrderCompensated { order_id, .. }
            | Self::OrderStuck { order_id, .. } => order_id,
        }
    }
}

/// `OrderCompensated` -> `order.compensated`.
pub fn routing_key_of(event_name: &str) -> String {
    let mut key = String::with_capacity(event_name.len() + 4);
    for (i, c) in event_name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                key.push('.');
            }
            key.push(c.to_ascii_lowercase());
        } else {
            key.push(c);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_come_from_the_event_names() {
        assert_eq!(routing_key_of("PaymentProcessed"), "payment.processed");
        assert_eq!(routing_key_of("OrderCompensated"), "order.compensated");
        assert!(PUBLIC_EVENT_NAMES.contains(&"InventoryUpdated"));
        let e = PublicEvent::OrderCompleted { order_id: OrderId::parse("1").unwrap(), amount_cents: None };
        assert_eq!(e.routing_key(), "order.completed");
        assert_eq!(serde_json::to_value(&e).unwrap()["event"], "OrderCompleted");
    }
}
