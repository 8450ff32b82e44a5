//! Orders: `OrderPlaced` as it arrives on the wire, and `Order`, the validated form the
//! orchestrator runs sagas on.
//!
//! The wire form is lenient on purpose. An order that parses but can never go through (no
//! items, a quantity below 1, an unknown product) must still be answered, with `422` over HTTP
//! or a saga that ends `compensated` with reason `invalid_order` on the bus. Only a message
//! that is not an order at all is rejected outright.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::ids::{Cents, IdError, OrderId, ProductId, Quantity, UserId};

/// An `OrderPlaced` message or `POST /orders` body, before validation. Unknown fields are
/// accepted and ignored, as the contract allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    /// `"OrderPlaced"` when present; may be left out over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// May be left out over HTTP, and is then generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default)]
    pub items: Vec<WireItem>,
}

/// One line of an order as sent. The quantity is a plain integer here so that `0` or `-1`
/// reach validation and get a clear answer instead of a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireItem {
    pub product_id: String,
    pub quantity: i64,
}

/// An order that can go through: known products, positive quantities, a priced total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: OrderId,
    pub user_id: UserId,
    /// One line per product, in the order first seen; repeated products are merged.
    pub lines: OrderLines,
    /// The total of the lines.
    pub amount_cents: Cents,
}

/// The lines of an order, or of a command about one: 1 to [`MAX_ITEMS`] lines, each product
/// once, with a total that fits in 64 bits. Commands carry this type, so a participant cannot
/// even read a repeated line (which would reserve the same stock twice past the check) or a
/// total that wraps around.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<OrderLine>", into = "Vec<OrderLine>")]
pub struct OrderLines {
    lines: Vec<OrderLine>,
    total: Cents,
}

/// Why a list of lines cannot be an order's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLines {
    #[error("there are no lines")]
    Empty,
    #[error("at most {max} lines, not {count}", max = MAX_ITEMS)]
    TooMany { count: usize },
    #[error("product {0} is on two lines")]
    Repeated(ProductId),
    #[error("the total does not fit in 64 bits")]
    TotalOverflow,
}

impl OrderLines {
    pub fn new(lines: Vec<OrderLine>) -> Result<Self, InvalidLines> {
        if lines.is_empty() {
            return Err(InvalidLines::Empty);
        }
        if lines.len() > MAX_ITEMS {
            return Err(InvalidLines::TooMany { count: lines.len() });
        }
        let mut total = Cents(0);
        for (i, line) in lines.iter().enumerate() {
            if lines[..i].iter().any(|l| l.product_id == line.product_id) {
                return Err(InvalidLines::Repeated(line.product_id.clone()));
            }
            total = line
                .unit_price_cents
                .checked_mul(line.quantity)
                .and_then(|c| total.checked_add(c))
                .ok_or(InvalidLines::TotalOverflow)?;
        }
        Ok(Self { lines, total })
    }

    /// The sum of price times quantity over the lines.
    pub fn total(&self) -> Cents {
        self.total
    }

    pub fn iter(&self) -> std::slice::Iter<'_, OrderLine> {
        self.lines.iter()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Always false: there is at least one line. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

impl TryFrom<Vec<OrderLine>> for OrderLines {
    type Error = InvalidLines;
    fn try_from(lines: Vec<OrderLine>) -> Result<Self, InvalidLines> {
        Self::new(lines)
    }
}

impl schemars::JsonSchema for OrderLines {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OrderLines".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "array",
            "items": generator.subschema_for::<OrderLine>(),
            "minItems": 1,
            "maxItems": MAX_ITEMS,
            "description": "Each product on one line only; the total of the lines fits in 64 bits.",
        })
    }
}

impl From<OrderLines> for Vec<OrderLine> {
    fn from(lines: OrderLines) -> Self {
        lines.lines
    }
}

impl<'a> IntoIterator for &'a OrderLines {
    type Item = &'a OrderLine;
    type IntoIter = std::slice::Iter<'a, OrderLine>;
    fn into_iter(self) -> Self::IntoIter {
        self.lines.iter()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price_cents: Cents,
}

/// Why an order can never go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrder {
    #[error("`event` must be \"OrderPlaced\", not {0:?}")]
    WrongEvent(String),
    #[error("invalid orderId: {0}")]
    OrderId(IdError),
    #[error("userId is missing")]
    MissingUser,
    #[error("invalid userId: {0}")]
    UserId(IdError),
    #[error("the order has no items")]
    NoItems,
    #[error("an order has at most {max} items, this one has {count}")]
    TooManyItems { count: usize, max: usize },
    #[error("invalid productId: {0}")]
    ProductId(IdError),
    #[error("quantity of {product} must be at least 1, got {quantity}")]
    BadQuantity { product: String, quantity: i64 },
    #[error("unknown product {0}")]
    UnknownProduct(String),
    #[error("the order total does not fit in 64 bits")]
    AmountOverflow,
}

/// The most lines one order may carry; keeps every message small.
pub const MAX_ITEMS: usize = 100;

/// The reason a saga of an invalid order ends with.
pub const INVALID_ORDER_REASON: &str = "invalid_order";

impl OrderPlaced {
    /// The order id as sent, if it is a valid id. A bus message without one cannot be
    /// correlated with anything and goes to the dead-letter queue.
    pub fn parsed_order_id(&self) -> Option<Result<OrderId, IdError>> {
        self.order_id.clone().map(OrderId::parse)
    }

    /// Validates the order against the catalog and prices it. `order_id` is the id to use,
    /// which the caller took from the message or generated.
    pub fn validate(&self, order_id: OrderId, catalog: &Catalog) -> Result<Order, InvalidOrder> {
        if let Some(event) = &self.event {
            if event != "OrderPlaced" {
                return Err(InvalidOrder::WrongEvent(event.clone()));
            }
        }
        let user_id = UserId::parse(self.user_id.clone().ok_or(InvalidOrder::MissingUser)?)
            .map_err(InvalidOrder::UserId)?;
        if self.items.is_empty() {
            return Err(InvalidOrder::NoItems);
        }
        if self.items.len() > MAX_ITEMS {
            return Err(InvalidOrder::TooManyItems { count: self.items.len(), max: MAX_ITEMS });
        }
        let mut lines: Vec<OrderLine> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            let product_id = ProductId::parse(item.product_id.clone()).map_err(InvalidOrder::ProductId)?;
            let quantity = Quantity::new(item.quantity).ok_or_else(|| InvalidOrder::BadQuantity {
                product: item.product_id.clone(),
                quantity: item.quantity,
            })?;
            let product = catalog
                .get(&product_id)
                .ok_or_else(|| InvalidOrder::UnknownProduct(item.product_id.clone()))?;
            match lines.iter_mut().find(|l| l.product_id == product_id) {
                Some(line) => {
                    let merged = i64::from(line.quantity.get()) + i64::from(quantity.get());
                    line.quantity = Quantity::new(merged).ok_or(InvalidOrder::AmountOverflow)?;
                }
                None => lines.push(OrderLine { product_id, quantity, unit_price_cents: product.price_cents }),
            }
        }
        // Lines are merged above, so the only way left to fail is a total past 64 bits.
        let lines = OrderLines::new(lines).map_err(|_| InvalidOrder::AmountOverflow)?;
        Ok(Order { order_id, user_id, amount_cents: lines.total(), lines })
    }
}

impl Order {
    /// The `OrderPlaced` that describes this order, as published on the events exchange.
    pub fn to_placed(&self) -> OrderPlaced {
        OrderPlaced {
            event: Some("OrderPlaced".into()),
            order_id: Some(self.order_id.to_string()),
            user_id: Some(self.user_id.to_string()),
            items: self
                .lines
                .iter()
                .map(|l| WireItem {
                    product_id: l.product_id.to_string(),
                    quantity: i64::from(l.quantity.get()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(items: &[(&str, i64)]) -> OrderPlaced {
        OrderPlaced {
            event: None,
            order_id: Some("o-1".into()),
            user_id: Some("user1".into()),
            items: items.iter().map(|(p, q)| WireItem { product_id: (*p).into(), quantity: *q }).collect(),
        }
    }

    fn validate(p: &OrderPlaced) -> Result<Order, InvalidOrder> {
        p.validate(OrderId::parse("o-1").unwrap(), &Catalog::builtin())
    }

    #[test]
    fn prices_and_merges_lines() {
        let catalog = Catalog::builtin();
        let abc = catalog.get(&ProductId::parse("abc").unwrap()).unwrap().price_cents.0;
        let xyz = catalog.get(&ProductId::parse("xyz").unwrap()).unwrap().price_cents.0;
        let order = validate(&placed(&[("abc", 2), ("xyz", 1), ("abc", 1)])).unwrap();
        assert_eq!(order.lines.len(), 2);
        assert_eq!(order.lines.iter().next().unwrap().quantity.get(), 3);
        assert_eq!(order.amount_cents, Cents(3 * abc + xyz));
    }

    #[test]
    fn orders_that_can_never_go_through_are_refused_with_a_reason() {
        assert_eq!(validate(&placed(&[])), Err(InvalidOrder::NoItems));
        assert!(matches!(
            validate(&placed(&[("abc", 0)])),
            Err(InvalidOrder::BadQuantity { quantity: 0, .. })
        ));
        assert!(matches!(validate(&placed(&[("abc", -2)])), Err(InvalidOrder::BadQuantity { .. })));
        assert_eq!(validate(&placed(&[("nope", 1)])), Err(InvalidOrder::UnknownProduct("nope".into())));
        assert!(matches!(
            validate(&placed(&[("abc", i64::from(u32::MAX)), ("abc", 1)])),
            Err(InvalidOrder::AmountOverflow)
        ));
        let mut wrong = placed(&[("abc", 1)]);
        wrong.event = Some("PaymentProcessed".into());
        assert!(matches!(validate(&wrong), Err(InvalidOrder::WrongEvent(_))));
        let mut anonymous = placed(&[("abc", 1)]);
        anonymous.user_id = None;
        assert_eq!(validate(&anonymous), Err(InvalidOrder::MissingUser));
    }

    #[test]
    fn lines_refuse_repeats_emptiness_and_overflowing_totals() {
        let line = |p: &str, q: i64, price: u64| OrderLine {
            product_id: ProductId::parse(p).unwrap(),
            quantity: Quantity::new(q).unwrap(),
            unit_price_cents: Cents(price),
        };
        assert_eq!(OrderLines::new(vec![]), Err(InvalidLines::Empty));
        assert!(matches!(
            OrderLines::new(vec![line("abc", 1, 5), line("abc", 2, 5)]),
            Err(InvalidLines::Repeated(_))
        ));
        assert_eq!(OrderLines::new(vec![line("abc", 2, u64::MAX / 2 + 1)]), Err(InvalidLines::TotalOverflow));
        let many: Vec<_> = (0..=MAX_ITEMS).map(|i| line(&format!("p{i}"), 1, 1)).collect();
        assert!(matches!(OrderLines::new(many), Err(InvalidLines::TooMany { .. })));
        let ok = OrderLines::new(vec![line("abc", 2, 5), line("xyz", 1, 7)]).unwrap();
        assert_eq!(ok.total(), Cents(17));
        // The same rules hold when read from the wire.
        let repeated = r#"[{"productId":"abc","quantity":1,"unitPriceCents":5},
                           {"productId":"abc","quantity":1,"unitPriceCents":5}]"#;
        assert!(serde_json::from_str::<OrderLines>(repeated).is_err());
    }
}
