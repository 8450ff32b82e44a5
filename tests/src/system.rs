//! The whole system for one test: the real orchestrator, payment, inventory and notification
//! binaries on the real broker, in a namespace and data folder of their own, and the views the
//! tests read the books through.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bus::TestBus;
use crate::procs::Program;
use crate::{amqp_url, unique_namespace, wait};

/// Realistic retry budgets, for runs with crashes and outages.
pub const STEADY: &[(&str, &str)] = &[
    ("ATTEMPT_TIMEOUT_MS", "2000"),
    ("ACTION_ATTEMPTS", "6"),
    ("COMPENSATION_ATTEMPTS", "10"),
    ("BACKOFF_INITIAL_MS", "100"),
    ("BACKOFF_MAX_MS", "1000"),
];

/// Payment declines orders above this many cents.
pub const DECLINE_OVER: u64 = 100_000;

/// The built-in products plus one that is nearly sold out, so an out-of-stock order can be
/// cheap enough to pass payment first.
pub const CATALOG: &str = r#"{"products": [
  {"id": "abc", "name": "Alpine backpack", "priceCents": 4999, "stock": 100000},
  {"id": "xyz", "name": "Xylophone", "priceCents": 12950, "stock": 100000},
  {"id": "jkl", "name": "Juggling kit", "priceCents": 1875, "stock": 100000},
  {"id": "rare", "name": "Rare print", "priceCents": 100, "stock": 5}
]}"#;

/// The programs, in the order they are started.
pub const PROGRAMS: [&str; 4] = ["orchestrator", "payment", "inventory", "notification"];

/// Fields drop in order: programs stop before the test bus deletes the namespace.
pub struct System {
    pub orchestrator: Program,
    pub payment: Program,
    pub inventory: Program,
    pub notification: Program,
    pub bus: TestBus,
    pub http: reqwest::Client,
    /// Sent as `Authorization: Bearer` when set.
    pub token: Option<String>,
    pub dir: tempfile::TempDir,
}

impl System {
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, &[]).await
    }

    /// Starts the system with extra settings: (program or `*`, variable, value).
    pub async fn start_with(test: &str, extra: &[(&str, &str, &str)]) -> Self {
        let namespace = unique_namespace(test);
        let url = amqp_url();
        let bus = TestBus::connect(&url, &namespace).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = dir.path().join("catalog.json");
        std::fs::write(&catalog, CATALOG).unwrap();
        let catalog = catalog.display().to_string();
        let decline = DECLINE_OVER.to_string();
        let mut env: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        env.entry("orchestrator").or_default().extend(STEADY.iter().copied());
        env.entry("orchestrator").or_default().push(("CATALOG", &catalog));
        env.entry("inventory").or_default().push(("CATALOG", &catalog));
        env.entry("payment").or_default().push(("DECLINE_OVER_CENTS", &decline));
        for (program, key, value) in extra {
            for name in PROGRAMS.iter().filter(|p| *program == "*" || *program == **p) {
                env.entry(name).or_default().push((key, value));
            }
        }
        let token = extra.iter().find(|(_, k, _)| *k == "API_TOKEN").map(|(_, _, v)| (*v).to_owned());
        let start = |name: &str| {
            let data_dir = extra
                .iter()
                .find(|(p, k, _)| *p == name && *k == "DATA_DIR")
                .map(|(_, _, v)| std::path::PathBuf::from(v))
                .unwrap_or_else(|| dir.path().join(name));
            Program::start(name, &namespace, &url, data_dir, env.get(name).map(Vec::as_slice).unwrap_or(&[]))
        };
        let system = Self {
            orchestrator: start("orchestrator"),
            payment: start("payment"),
            inventory: start("inventory"),
            notification: start("notification"),
            bus,
            http: reqwest::Client::new(),
            token,
            dir,
        };
        for p in system.programs() {
            p.wait_healthy(Duration::from_secs(30)).await;
        }
        system
    }

    pub fn programs(&self) -> [&Program; 4] {
        [&self.orchestrator, &self.payment, &self.inventory, &self.notification]
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// GET, as JSON (`Null` if the answer is not JSON).
    pub async fn get(&self, base: &str, path: &str) -> Value {
        let r = self.authorised(self.http.get(format!("{base}{path}"))).send().await.expect("GET");
        r.json().await.unwrap_or(Value::Null)
    }

    /// POST a JSON body to the orchestrator: (status, answer).
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.orchestrator.http))
            .header("content-type", "application/json")
            .body(body.to_owned());
        let r = self.authorised(request).send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn place(&self, body: &str) -> u16 {
        self.post("/orders", body).await.0
    }

    pub async fn order(&self, id: &str) -> Value {
        self.get(&self.orchestrator.http, &format!("/orders/{id}")).await
    }

    pub async fn wait_terminal(&self, id: &str) -> Value {
        wait::until(&format!("order {id} to end"), Duration::from_secs(60), || async {
            let order = self.order(id).await;
            matches!(order["state"].as_str(), Some("completed" | "compensated")).then_some(order)
        })
        .await
    }

    /// Money per order: (charged, refunded), summed over the order's sagas.
    pub async fn ledger(&self) -> HashMap<String, (u64, u64)> {
        let payments = self.get(&self.payment.http, "/payments").await;
        let mut ledger: HashMap<String, (u64, u64)> = HashMap::new();
        for p in payments["payments"].as_array().into_iter().flatten() {
            let entry = ledger.entry(p["orderId"].as_str().unwrap().to_owned()).or_default();
            entry.0 += p["chargedCents"].as_u64().unwrap();
            entry.1 += p["refundedCents"].as_u64().unwrap();
        }
        ledger
    }

    pub async fn stock(&self) -> Value {
        self.get(&self.inventory.http, "/stock").await["stock"].clone()
    }

    pub async fn notifications(&self) -> Value {
        self.get(&self.notification.http, "/notifications").await
    }

    /// Checks the books against every order's outcome, once every reservation is sold or
    /// released: money (charged less refunded is the amount of a completed order, else 0), one
    /// mail per completed order and none otherwise, and stock (what left `initial` is what the
    /// completed orders bought).
    pub async fn assert_books(&self, orders: &[Value], initial: &Value) {
        let stock =
            wait::until("every reservation to be sold or released", Duration::from_secs(30), || async {
                let stock = self.stock().await;
                stock.as_object()?.values().all(|p| p["reserved"] == 0).then_some(stock)
            })
            .await;
        let ledger = self.ledger().await;
        let notes = self.notifications().await;
        let mut sold: HashMap<String, u64> = HashMap::new();
        for order in orders {
            let id = order["orderId"].as_str().unwrap();
            let amount = order["amountCents"].as_u64().unwrap();
            let (charged, refunded) = ledger.get(id).copied().unwrap_or((0, 0));
            let completed = order["state"] == "completed";
            assert_eq!(charged - refunded, if completed { amount } else { 0 }, "money of {id}: {order}");
            assert_eq!(
                notes["notifications"].get(id).and_then(Value::as_u64).unwrap_or(0),
                u64::from(completed),
                "mail of {id}"
            );
            if completed {
                for line in order["items"].as_array().unwrap() {
                    *sold.entry(line["productId"].as_str().unwrap().to_owned()).or_default() +=
                        line["quantity"].as_u64().unwrap();
                }
            }
        }
        for (product, s0) in initial.as_object().unwrap() {
            let now = &stock[product];
            let gone = s0["available"].as_u64().unwrap() - now["available"].as_u64().unwrap();
            let completed = sold.get(product).copied().unwrap_or(0);
            assert_eq!(gone, completed, "stock of {product}");
            assert_eq!(now["sold"].as_u64().unwrap(), completed, "sold of {product}");
        }
    }

    /// After [`crate::commands::forged`] was sent: an honest order still completes, every
    /// program is healthy, stock is conserved and untouched by the forged reservation, and
    /// each forged saga was charged at most what it asked, with no refund of another amount.
    pub async fn assert_forgeries_changed_nothing(&self) {
        assert_eq!(self.place(&order_json("honest-1", &[("abc", 1)])).await, 202);
        assert_eq!(self.wait_terminal("honest-1").await["state"], "completed");
        for p in self.programs() {
            let health = self.http.get(format!("{}/health", p.http)).send().await.expect("GET /health");
            assert!(health.status().is_success(), "{} is not healthy", p.name);
        }
        // The honest order's reservation becomes a sale once its completion is read.
        let stock =
            wait::until("every reservation to be sold or released", Duration::from_secs(20), || async {
                let stock = self.stock().await;
                stock.as_object()?.values().all(|p| p["reserved"] == 0).then_some(stock)
            })
            .await;
        for (product, st) in stock.as_object().unwrap() {
            let [a, r, sold, initial] =
                ["available", "reserved", "sold", "initial"].map(|k| st[k].as_u64().unwrap());
            assert_eq!(
                u128::from(a) + u128::from(r) + u128::from(sold),
                u128::from(initial),
                "{product}: {st}"
            );
        }
        let payments = self.get(&self.payment.http, "/payments").await;
        for p in payments["payments"].as_array().unwrap() {
            let (charged, refunded) =
                (p["chargedCents"].as_u64().unwrap(), p["refundedCents"].as_u64().unwrap());
            assert!(refunded == 0 || refunded == charged, "{p}");
            if p["sagaId"] == "forged-3" {
                assert_eq!((charged, refunded), (1, 0), "a refund of another amount is refused: {p}");
            }
            if p["sagaId"] == "forged-2" {
                assert_eq!(charged, u64::MAX, "each saga is charged what it was asked, once: {p}");
            }
        }
    }

    /// Starts a second instance of each of `programs` on this system's namespace, with a store
    /// of its own and `env` added, and checks that it exits at once saying `says`; then that
    /// the first instances were not disturbed.
    pub async fn assert_second_instances_refused(&self, programs: &[&str], env: &[(&str, &str)], says: &str) {
        let namespace = self.bus.topology.namespace().to_owned();
        for program in programs {
            let data = self.dir.path().join(format!("{program}-2")).display().to_string();
            let port = format!("127.0.0.1:{}", crate::procs::free_port());
            let mut all = vec![
                ("HTTP_ADDR", port.as_str()),
                ("DATA_DIR", data.as_str()),
                ("SAGA_NAMESPACE", &namespace),
            ];
            all.extend_from_slice(env);
            let (status, out) = Program::run_to_exit(program, &all, Duration::from_secs(40));
            let status = status.unwrap_or_else(|| panic!("a second {program} kept running:\n{out}"));
            assert!(!status.success());
            assert!(out.contains(says), "{program}:\n{out}");
        }
        assert_eq!(self.place(&order_json("twice-1", &[("abc", 1)])).await, 202);
        assert_eq!(self.wait_terminal("twice-1").await["state"], "completed");
    }
}

/// The value of an unlabelled metric in a program's `/metrics`; `None` while the program does
/// not answer or does not report it.
pub async fn metric(http: &reqwest::Client, program_http: &str, name: &str) -> Option<f64> {
    let text = http.get(format!("{program_http}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?.trim().parse().ok()
}

/// An order as `POST /orders` takes it.
pub fn order_json(id: &str, items: &[(&str, i64)]) -> String {
    let items: Vec<Value> = items.iter().map(|(p, q)| json!({ "productId": p, "quantity": q })).collect();
    json!({ "orderId": id, "userId": "user1", "items": items }).to_string()
}
