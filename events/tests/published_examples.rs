//! The published example messages (copied from the contract into `fixtures/`) parse as they
//! stand, into the types the system reads them with.

use sagaflow_events::public::{InventoryStatus, PaymentStatus};
use sagaflow_events::{Catalog, OrderId, OrderPlaced, PublicEvent};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn order_placed_parses_and_validates_against_the_builtin_catalog() {
    let placed: OrderPlaced = serde_json::from_str(&fixture("OrderPlaced.json")).unwrap();
    assert_eq!(placed.event.as_deref(), Some("OrderPlaced"));
    assert_eq!(placed.order_id.as_deref(), Some("12345"));
    assert_eq!(placed.user_id.as_deref(), Some("user1"));
    let items: Vec<_> = placed.items.iter().map(|i| (i.product_id.as_str(), i.quantity)).collect();
    assert_eq!(items, [("abc", 2), ("xyz", 1)]);

    let order = placed.validate(OrderId::parse("12345").unwrap(), &Catalog::builtin()).unwrap();
    assert_eq!(order.lines.len(), 2);
    assert!(order.amount_cents.0 > 0);

    // The same text is also a public event.
    let event: PublicEvent = serde_json::from_str(&fixture("OrderPlaced.json")).unwrap();
    assert!(matches!(event, PublicEvent::OrderPlaced { ref order_id, .. } if order_id.as_str() == "12345"));
}

#[test]
fn payment_processed_parses() {
    let event: PublicEvent = serde_json::from_str(&fixture("PaymentProcessed.json")).unwrap();
    match event {
        PublicEvent::PaymentProcessed { order_id, payment_status, payment_id, amount_cents } => {
            assert_eq!(order_id.as_str(), "12345");
            assert_eq!(payment_status, PaymentStatus::Confirmed);
            assert_eq!(payment_id.as_deref(), Some("pay789"));
            assert_eq!(amount_cents, None);
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn inventory_updated_parses() {
    let event: PublicEvent = serde_json::from_str(&fixture("InventoryUpdated.json")).unwrap();
    assert_eq!(
        event,
        PublicEvent::InventoryUpdated {
            order_id: OrderId::parse("12345").unwrap(),
            status: InventoryStatus::Reserved
        }
    );
    // What we publish reads back the same way and keeps the example's wording.
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json, serde_json::from_str::<serde_json::Value>(&fixture("InventoryUpdated.json")).unwrap());
}

#[test]
fn extra_fields_are_accepted() {
    let text = r#"{ "event": "OrderPlaced", "orderId": "7", "userId": "u", "items": [], "coupon": "X", "note": {"a": 1} }"#;
    let placed: OrderPlaced = serde_json::from_str(text).unwrap();
    assert_eq!(placed.order_id.as_deref(), Some("7"));
}
