//! The books of a whole system, read through its HTTP endpoints, and the invariants that must
//! hold once it is quiet: every saga terminal, money and stock conserved, one mail per completed
//! order, nothing dead-lettered. `sagactl chaos` judges its runs with it; `sagactl check`
//! judges any running system.
//!
//! A verdict is only given on books that were read: a program that is not healthy, or a view
//! that cannot be read before the deadline, is an error of the run ([`CheckError`]), never a
//! violation and never a pass. (Reading a ledger while payment was restarting once made every
//! completed order look "charged 0".)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sagaflow_api as api;
use sagaflow_runtime::bus::inspect::Inspector;
use sagaflow_runtime::config::Broker;
use serde_json::Value;

/// Where a system answers.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub orchestrator: String,
    pub payment: String,
    pub inventory: String,
    pub notification: String,
    /// `API_TOKEN`, when the system has one.
    pub token: Option<String>,
    /// Where the dead letters are; `None` skips that check.
    pub broker: Option<DeadLettersAt>,
}

/// The broker and namespace whose dead letters the verdict counts (a queue on RabbitMQ, a
/// topic on Kafka), as the operators' view does.
#[derive(Debug, Clone)]
pub struct DeadLettersAt {
    pub broker: Broker,
    pub namespace: String,
}

/// Why no verdict could be given.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{program} at {url} did not become healthy in time, so its books cannot be trusted")]
    Unhealthy { program: &'static str, url: String },
    #[error("cannot read {what} at {url}: {error}")]
    Unreadable { what: String, url: String, error: String },
}

/// What the system's views said.
pub struct Books {
    /// Each order id asked about, with its saga (`None` if the orchestrator does not have it).
    pub orders: Vec<(String, Option<api::OrderDetail>)>,
    /// Per order: (charged, refunded), over all its sagas.
    pub ledger: HashMap<String, (u64, u64)>,
    pub stock: serde_json::Map<String, Value>,
    pub mails: serde_json::Map<String, Value>,
    /// Messages in the dead-letter queue, when the broker was given.
    pub dead_letters: Option<u32>,
}

/// Each invariant with what breaks it; empty lists mean it holds.
pub struct Verdict {
    pub invariants: Vec<(&'static str, Vec<String>)>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|(_, bad)| bad.is_empty())
    }

    /// The table for people: each invariant, `pass` or the first ten that break it.
    pub fn print(&self) {
        crate::output::say!("{:<58} RESULT", "INVARIANT");
        for (name, bad) in &self.invariants {
            if bad.is_empty() {
                crate::output::say!("{name:<58} pass");
            } else {
                let first: Vec<&str> = bad.iter().take(10).map(String::as_str).collect();
                crate::output::say!("{name:<58} FAIL: {}", first.join(", "));
            }
        }
    }

    /// Each invariant with whether it held and what broke it.
    pub fn to_json(&self) -> Vec<Value> {
        self.invariants
            .iter()
            .map(|(name, bad)| serde_json::json!({ "name": name, "passed": bad.is_empty(), "violations": bad }))
            .collect()
    }
}

struct Reader {
    http: reqwest::Client,
    token: Option<String>,
    deadline: Instant,
}

impl Reader {
    /// GETs JSON, trying again until the deadline: a program may be restarting. A `404` reads
    /// as its error body, so a missing order can be told from an unreadable one.
    async fn json<T: serde::de::DeserializeOwned>(&self, what: &str, url: &str) -> Result<T, CheckError> {
        loop {
            let mut request = self.http.get(url);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let last = match request.send().await {
                Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => match r.json::<T>().await {
                    Ok(v) => return Ok(v),
                    Err(e) => e.to_string(),
                },
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > self.deadline {
                return Err(CheckError::Unreadable {
                    what: what.to_owned(),
                    url: url.to_owned(),
                    error: last,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn healthy(&self, program: &'static str, base: &str) -> Result<(), CheckError> {
        loop {
            let ok =
                self.http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if Instant::now() > self.deadline {
                return Err(CheckError::Unhealthy { program, url: base.to_owned() });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Books {
    /// Reads the books once every program is healthy. `orders` are the ids to judge; `None`
    /// takes every saga the orchestrator holds.
    pub async fn read(
        at: &Endpoints,
        orders: Option<&[String]>,
        within: Duration,
    ) -> Result<Self, CheckError> {
        let reader = Reader {
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client"),
            token: at.token.clone(),
            deadline: Instant::now() + within,
        };
        for (program, base) in [
            ("orchestrator", &at.orchestrator),
            ("payment", &at.payment),
            ("inventory", &at.inventory),
            ("notification", &at.notification),
        ] {
            reader.healthy(program, base).await?;
        }
        let ids: Vec<String> = match orders {
            Some(ids) => ids.to_vec(),
            None => every_order(&reader, &at.orchestrator).await?,
        };
        let mut sagas = Vec::with_capacity(ids.len());
        for id in ids {
            let url = format!("{}/orders/{id}", at.orchestrator);
            let order: Value = reader.json(&format!("order {id}"), &url).await?;
            // A 404's error body is not a saga; anything else must be one.
            let found = match order.get("error") {
                Some(_) => None,
                None => Some(serde_json::from_value(order).map_err(|e| CheckError::Unreadable {
                    what: format!("order {id}"),
                    url: url.clone(),
                    error: e.to_string(),
                })?),
            };
            sagas.push((id, found));
        }
        let payments: Value = reader.json("the payment ledger", &format!("{}/payments", at.payment)).await?;
        let mut ledger: HashMap<String, (u64, u64)> = HashMap::new();
        for p in payments["payments"].as_array().into_iter().flatten() {
            let (Some(order), Some(charged), Some(refunded)) =
                (p["orderId"].as_str(), p["chargedCents"].as_u64(), p["refundedCents"].as_u64())
            else {
                continue;
            };
            let entry = ledger.entry(order.to_owned()).or_default();
            entry.0 = entry.0.saturating_add(charged);
            entry.1 = entry.1.saturating_add(refunded);
        }
        let stock: Value = reader.json("the stock", &format!("{}/stock", at.inventory)).await?;
        let mails: Value =
            reader.json("the notifications", &format!("{}/notifications", at.notification)).await?;
        let dead_letters = match &at.broker {
            Some(place) => Some(dead_letters(place).await?),
            None => None,
        };
        Ok(Self {
            orders: sagas,
            ledger,
            stock: stock["stock"].as_object().cloned().unwrap_or_default(),
            mails: mails["notifications"].as_object().cloned().unwrap_or_default(),
            dead_letters,
        })
    }

    /// Judges the books.
    pub fn judge(&self) -> Verdict {
        let mut terminal = Vec::new();
        let mut money = Vec::new();
        let mut mail = Vec::new();
        let mut sold: HashMap<String, u64> = HashMap::new();
        for (id, order) in &self.orders {
            let Some(o) = order.as_ref().filter(|o| o.state.is_terminal()) else {
                let state = order.as_ref().map_or("missing".to_owned(), |o| o.state.to_string());
                terminal.push(format!("{id} ({state})"));
                continue;
            };
            let completed = o.state == api::SagaState::Completed;
            let amount = o.amount_cents.unwrap_or(0);
            let (charged, refunded) = self.ledger.get(id.as_str()).copied().unwrap_or((0, 0));
            if charged.checked_sub(refunded) != Some(if completed { amount } else { 0 }) {
                money.push(format!("{id} (charged {charged}, refunded {refunded}, {})", o.state));
            }
            let sent = self.mails.get(id.as_str()).and_then(Value::as_u64).unwrap_or(0);
            if sent != u64::from(completed) {
                mail.push(format!("{id} ({sent} mails, {})", o.state));
            }
            if completed {
                for line in o.items.iter().flatten() {
                    let entry = sold.entry(line.product_id.clone()).or_default();
                    *entry = entry.saturating_add(u64::from(line.quantity));
                }
            }
        }
        let mut stock = Vec::new();
        for (product, s) in &self.stock {
            let [available, reserved, sold_now, initial] =
                ["available", "reserved", "sold", "initial"].map(|k| s[k].as_u64().unwrap_or(0));
            let completed = sold.get(product).copied().unwrap_or(0);
            // What left `available` is exactly what completed orders bought, and nothing stays
            // reserved: a completed order's reservation became a sale, every other was released.
            if initial.checked_sub(available) != Some(completed) || reserved != 0 || sold_now != completed {
                stock.push(format!(
                    "{product} (initial {initial}, available {available}, reserved {reserved}, sold {sold_now}, completed {completed})"
                ));
            }
        }
        let dead = match self.dead_letters {
            Some(0) | None => Vec::new(),
            Some(n) => vec![format!("{n} messages")],
        };
        Verdict {
            invariants: vec![
                ("every saga is terminal (none stuck or running)", terminal),
                ("charged - refunded = amount if completed, else 0", money),
                ("stock: initial - available = sold = completed; none reserved", stock),
                ("one confirmation per completed order, none otherwise", mail),
                ("nothing sits in the dead-letter queue", dead),
            ],
        }
    }
}

/// Every order id the orchestrator holds, page by page.
async fn every_order(reader: &Reader, api: &str) -> Result<Vec<String>, CheckError> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{api}/orders?limit=1000");
        if let Some(cursor) = &after {
            url.push_str(&format!("&after={cursor}"));
        }
        let page: api::OrderPage = reader.json("the list of orders", &url).await?;
        ids.extend(page.orders.into_iter().map(|o| o.order_id));
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(ids),
        }
    }
}

/// How many dead letters the namespace holds, through the operators' view of the broker.
async fn dead_letters(at: &DeadLettersAt) -> Result<u32, CheckError> {
    let topology = sagaflow_events::Topology::new(at.namespace.as_str());
    let queue = topology.dead_letter_queue();
    let unreadable = |error: String| CheckError::Unreadable {
        what: format!("the dead letters ({queue})"),
        url: at.broker.to_string(),
        error,
    };
    let seen = Inspector::new(at.broker.clone(), topology.clone())
        .queues(std::slice::from_ref(&queue))
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    seen.into_iter()
        .find(|(name, _)| *name == queue)
        .map(|(_, state)| state.messages)
        .ok_or_else(|| unreadable("the broker does not have it".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn books(ledger: &[(&str, (u64, u64))]) -> Books {
        Books {
            orders: vec![(
                "o-1".into(),
                Some(api::OrderDetail {
                    order_id: "o-1".into(),
                    saga: "order".into(),
                    saga_id: "s-1".into(),
                    state: api::SagaState::Completed,
                    reason: None,
                    invalid: None,
                    user_id: Some("u".into()),
                    amount_cents: Some(500),
                    items: Some(vec![api::Item {
                        product_id: "abc".into(),
                        quantity: 1,
                        unit_price_cents: 500,
                    }]),
                    payment_id: None,
                    created_at: String::new(),
                    updated_at: String::new(),
                    finished_at: None,
                    duration_ms: None,
                    trace_id: String::new(),
                    definition: api::DefinitionRef { name: None, version: None, fingerprint: String::new() },
                    steps: vec![],
                    compensation_plan: vec![],
                    history: vec![],
                    history_length: 0,
                    ignored_recorded: 0,
                    ignored_recorded_limit: 0,
                    input: None,
                    results: None,
                }),
            )],
            ledger: ledger.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            stock: json!({ "abc": { "available": 9, "reserved": 0, "sold": 1, "initial": 10 } })
                .as_object()
                .unwrap()
                .clone(),
            mails: json!({ "o-1": 1 }).as_object().unwrap().clone(),
            dead_letters: Some(0),
        }
    }

    #[test]
    fn honest_books_pass_and_a_missing_charge_is_a_violation() {
        assert!(books(&[("o-1", (500, 0))]).judge().passed());
        let verdict = books(&[]).judge();
        assert!(!verdict.passed());
        assert_eq!(verdict.invariants[1].1.len(), 1);
    }

    #[tokio::test]
    async fn a_ledger_that_cannot_be_read_is_an_error_not_a_verdict() {
        let nowhere = format!("http://127.0.0.1:{}", sagaflow_devkit::broker::free_port());
        let at = Endpoints {
            orchestrator: nowhere.clone(),
            payment: nowhere.clone(),
            inventory: nowhere.clone(),
            notification: nowhere,
            token: None,
            broker: None,
        };
        let read = Books::read(&at, Some(&["o-1".into()]), Duration::from_millis(300)).await;
        assert!(matches!(read, Err(CheckError::Unhealthy { program: "orchestrator", .. })));
    }
}
