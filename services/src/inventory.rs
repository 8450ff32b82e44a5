//! Inventory: available and reserved stock per product, seeded from the catalog. A reservation
//! is all or nothing across the order's items, and a release returns exactly what that saga
//! reserved (from its own record, not from what the release command says).

use sagaflow_events::reply::reasons::OUT_OF_STOCK;
use sagaflow_events::{Catalog, CommandBody, CommandMessage, Participant, ProductId, ReplyOutcome};
use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;

use crate::barrier::Answer;
use crate::domain::{get_json, put_json, scan_json, Domain, TxResult};

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

pub struct Inventory {
    pub catalog: Catalog,
}

impl Domain for Inventory {
    fn participant(&self) -> Participant {
        Participant::Inventory
    }

    fn seed(&self, state: &sled::Tree) -> sled::Result<()> {
        for product in self.catalog.products() {
            let key = format!("stock/{}", product.id);
            if state.get(&key)?.is_none() {
                let stock = Stock { available: product.stock, reserved: 0, sold: 0, initial: product.stock };
                state.insert(key, serde_json::to_vec(&stock).expect("serialises"))?;
            }
        }
        Ok(())
    }

    fn act(&self, state: &TransactionalTree, command: &CommandMessage) -> TxResult<Answer> {
        let CommandBody::ReserveStock { items } = &command.body else {
            return Ok(Answer::refused("not a reservation"));
        };
        let mut missing: Vec<ProductId> = Vec::new();
        let mut stocks = Vec::with_capacity(items.len());
        for line in items {
            let stock: Option<Stock> = get_json(state, &format!("stock/{}", line.product_id))?;
            match stock {
                Some(s) if s.available >= u64::from(line.quantity.get()) => stocks.push((line, s)),
                _ => missing.push(line.product_id.clone()),
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
        let mut reserved = Vec::with_capacity(stocks.len());
        for (line, mut stock) in stocks {
            let quantity = u64::from(line.quantity.get());
            stock.available -= quantity;
            stock.reserved += quantity;
            put_json(state, &format!("stock/{}", line.product_id), &stock)?;
            reserved.push((line.product_id.clone(), quantity));
        }
        put_json(state, &format!("reservation/{}", command.saga_id), &reserved)?;
        Ok(Answer::success())
    }

    fn undo(
        &self,
        state: &TransactionalTree,
        command: &CommandMessage,
        action_happened: bool,
    ) -> TxResult<()> {
        if !action_happened {
            return Ok(());
        }
        settle_reservation(state, &command.saga_id, |stock, quantity| stock.available += quantity)
    }

    fn event_queue(&self, topology: &sagaflow_events::Topology) -> Option<String> {
        Some(topology.completions_queue())
    }

    /// `OrderCompleted`: the order's reservation becomes a sale. The reservation record is
    /// removed in the same transaction, so a repeated event finds nothing to move.
    fn on_event(&self, state: &TransactionalTree, event: &sagaflow_events::PublicEvent) -> TxResult<()> {
        let sagaflow_events::PublicEvent::OrderCompleted { order_id, .. } = event else { return Ok(()) };
        settle_reservation(state, order_id.as_str(), |stock, quantity| stock.sold += quantity)
    }

    fn view(&self, state: &sled::Tree) -> serde_json::Value {
        let stock: serde_json::Map<String, serde_json::Value> = scan_json::<Stock>(state, "stock/")
            .into_iter()
            .map(|(product, s)| (product, serde_json::to_value(s).expect("serialises")))
            .collect();
        serde_json::json!({ "stock": stock })
    }

    fn path(&self) -> &'static str {
        "/stock"
    }
}

/// Ends a saga's reservation: each reserved quantity leaves `reserved` and goes where `to`
/// puts it (back to `available` on release, to `sold` on completion). The reservation record
/// is removed in the same transaction, so a repeated release or event finds nothing to move.
fn settle_reservation(
    state: &TransactionalTree,
    saga_id: &str,
    to: impl Fn(&mut Stock, u64),
) -> TxResult<()> {
    let key = format!("reservation/{saga_id}");
    let Some(reserved) = get_json::<Vec<(ProductId, u64)>>(state, &key)? else { return Ok(()) };
    for (product, quantity) in reserved {
        let stock_key = format!("stock/{product}");
        let mut stock: Stock = get_json(state, &stock_key)?.unwrap_or_default();
        stock.reserved -= quantity.min(stock.reserved);
        to(&mut stock, quantity);
        put_json(state, &stock_key, &stock)?;
    }
    state.remove(key.as_bytes())?;
    Ok(())
}
