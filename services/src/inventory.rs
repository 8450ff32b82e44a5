//! Inventory: available, reserved and sold stock per product, seeded from the catalog. A
//! reservation is all or nothing across the order's lines, and a release returns exactly what
//! that saga reserved (from its own record, not from what the release command says).
//!
//! **Invariant: for every product, `available + reserved + sold = initial`, and each saga's
//! reservation record holds exactly what it moved from `available` to `reserved`.** Lines
//! cannot repeat a product (the command's type refuses it), every step is checked arithmetic,
//! and a move that would break the sum is refused, never applied.

use sagaflow_events::reply::reasons::OUT_OF_STOCK;
use sagaflow_events::{
    Catalog, CommandBody, CommandMessage, Forgotten, Participant, ProductId, ReplyOutcome,
};
use serde::{Deserialize, Serialize};

use crate::barrier::Answer;
use crate::domain::{abort, get_json, put_json, scan_json, Books, Domain, DomainError, TxResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stock {
    pub available: u64,
    /// Held for orders still in flight.
    pub reserved: u64,
    /// Taken by completed orders: a reservation moves here when its order completes.
    #[serde(default)]
    pub sold: u64,
    /// What the store started with, so `available + reserved + sold == initial` can be checked.
    pub initial: u64,
}

impl Stock {
    /// `quantity` from available to reserved, or `None` if there is not enough.
    fn reserve(self, quantity: u64) -> Option<Self> {
        Some(Self {
            available: self.available.checked_sub(quantity)?,
            reserved: self.reserved.checked_add(quantity)?,
            ..self
        })
    }

    /// `quantity` out of reserved, to available (`to_sold` false) or sold.
    fn settle(self, quantity: u64, to_sold: bool) -> Option<Self> {
        let reserved = self.reserved.checked_sub(quantity)?;
        Some(if to_sold {
            Self { reserved, sold: self.sold.checked_add(quantity)?, ..self }
        } else {
            Self { reserved, available: self.available.checked_add(quantity)?, ..self }
        })
    }
}

pub struct Inventory {
    pub catalog: Catalog,
}

fn stock_key(product: &ProductId) -> String {
    format!("stock/{product}")
}

fn reservation_key(saga_id: &str) -> String {
    format!("reservation/{saga_id}")
}

/// Which saga holds an order's reservation.
fn order_key(order_id: &str) -> String {
    format!("order/{order_id}")
}

impl Domain for Inventory {
    fn participant(&self) -> Participant {
        Participant::Inventory
    }

    fn seed(&self, books: &sled::Tree) -> sled::Result<()> {
        for product in self.catalog.products() {
            let key = stock_key(&product.id);
            if books.get(&key)?.is_none() {
                let stock = Stock { available: product.stock, reserved: 0, sold: 0, initial: product.stock };
                books.insert(key, serde_json::to_vec(&stock).expect("serialises"))?;
            }
        }
        Ok(())
    }

    fn act(&self, books: &Books<'_>, command: &CommandMessage) -> TxResult<Answer> {
        let CommandBody::ReserveStock { items } = &command.body else {
            return Ok(Answer::refused("not a reservation"));
        };
        let key = reservation_key(command.saga_id.as_str());
        if get_json::<Vec<(ProductId, u64)>>(books, &key)?.is_some() {
            return abort(DomainError::Inconsistent(format!(
                "saga {} holds a reservation already",
                command.saga_id
            )));
        }
        let mut missing: Vec<ProductId> = Vec::new();
        let mut moves = Vec::with_capacity(items.len());
        for line in items {
            let quantity = u64::from(line.quantity.get());
            let reserved =
                get_json::<Stock>(books, &stock_key(&line.product_id))?.and_then(|s| s.reserve(quantity));
            match reserved {
                Some(stock) => moves.push((line.product_id.clone(), quantity, stock)),
                None => missing.push(line.product_id.clone()),
            }
        }
        if !missing.is_empty() {
            // All or nothing: nothing was written.
            return Ok(Answer {
                outcome: ReplyOutcome::Failed { reason: OUT_OF_STOCK.into() },
                payment_id: None,
                missing_products: missing,
            });
        }
        let mut reserved = Vec::with_capacity(moves.len());
        for (product, quantity, stock) in moves {
            put_json(books, &stock_key(&product), &stock);
            reserved.push((product, quantity));
        }
        put_json(books, &key, &reserved);
        // `OrderCompleted` names the order: remember which saga holds its reservation.
        put_json(books, &order_key(command.order_id.as_str()), &command.saga_id.as_str());
        Ok(Answer::success())
    }

    fn undo(&self, books: &Books<'_>, command: &CommandMessage, action_happened: bool) -> TxResult<()> {
        if !action_happened {
            return Ok(());
        }
        settle_reservation(books, command.saga_id.as_str(), false)
    }

    fn forget(&self, books: &Books<'_>, saga: &Forgotten) -> TxResult<()> {
        // Normally nothing is left: a completed order's reservation was sold when its
        // `OrderCompleted` came, a compensated one's released. If that event was missed, the
        // saga's outcome still says where the stock goes.
        settle_reservation(books, saga.saga_id.as_str(), saga.completed)?;
        let key = order_key(saga.order_id.as_str());
        if get_json::<String>(books, &key)?.as_deref() == Some(saga.saga_id.as_str()) {
            books.remove(&key);
        }
        Ok(())
    }

    fn event_queue(&self, topology: &sagaflow_events::Topology) -> Option<String> {
        Some(topology.completions_queue())
    }

    /// `OrderCompleted`: the order's reservation becomes a sale. Events name orders, and an
    /// order id may have had several sagas; only a reservation of this order is sold.
    fn on_event(&self, books: &Books<'_>, event: &sagaflow_events::PublicEvent) -> TxResult<()> {
        let sagaflow_events::PublicEvent::OrderCompleted { order_id, .. } = event else { return Ok(()) };
        let Some(saga_id) = get_json::<String>(books, &order_key(order_id.as_str()))? else { return Ok(()) };
        settle_reservation(books, &saga_id, true)
    }

    fn view(&self, books: &sled::Tree) -> serde_json::Value {
        let stock: serde_json::Map<String, serde_json::Value> = scan_json::<Stock>(books, "stock/")
            .into_iter()
            .map(|(product, s)| (product, serde_json::to_value(s).expect("serialises")))
            .collect();
        serde_json::json!({ "stock": stock })
    }

    fn path(&self) -> &'static str {
        "/stock"
    }
}

/// Ends a saga's reservation: each reserved quantity leaves `reserved` for `sold` or back to
/// `available`. The record goes in the same transaction, so a repeated release or event finds
/// nothing to move. A move that would break the books aborts the whole transaction.
fn settle_reservation(books: &Books<'_>, saga_id: &str, to_sold: bool) -> TxResult<()> {
    let key = reservation_key(saga_id);
    let Some(reserved) = get_json::<Vec<(ProductId, u64)>>(books, &key)? else { return Ok(()) };
    for (product, quantity) in reserved {
        let stock_key = stock_key(&product);
        let stock: Stock = get_json(books, &stock_key)?.unwrap_or_default();
        let Some(settled) = stock.settle(quantity, to_sold) else {
            return abort(DomainError::Inconsistent(format!(
                "saga {saga_id} holds {quantity} of {product}, but only {} are reserved",
                stock.reserved
            )));
        };
        put_json(books, &stock_key, &settled);
    }
    books.remove(&key);
    Ok(())
}
