//! `/openapi.json` against the real orchestrator: every answer the running system gives, good
//! and bad, validates against the schema the document declares for its path, method and
//! status. (That every route is in the document is checked in the orchestrator's unit tests,
//! from the router's source.)

use std::time::Duration;

use lapin::BasicProperties;
use sagaflow_events::Participant;
use sagaflow_tests::system::{order_json, System};
use sagaflow_tests::wait;
use serde_json::{json, Value};

/// The JSON Schema the document gives for an answer, made standalone: its `$ref`s point into
/// the document's components, which travel with it.
fn schema_for(doc: &Value, path: &str, method: &str, status: u16) -> Value {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(!response.is_null(), "{method} {path} answering {status} is not in /openapi.json");
    let schema = &response["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} {status} has no JSON schema");
    json!({ "allOf": [schema], "components": doc["components"] })
}

struct Checker {
    doc: Value,
    http: reqwest::Client,
    base: String,
    checked: Vec<String>,
}

impl Checker {
    async fn check(&mut self, method: &str, template: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "get" => self.http.get(&url),
            _ => {
                let r = self.http.post(&url);
                match body {
                    Some(b) => r.header("content-type", "application/json").body(b.to_owned()),
                    None => r,
                }
            }
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("an answer");
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} -> {status} is not JSON ({e}): {text:?}"));
        let schema = schema_for(&self.doc, template, method, status);
        let validator = jsonschema::validator_for(&schema).expect("the document's schema compiles");
        let errors: Vec<String> =
            validator.iter_errors(&answer).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} -> {status} does not match /openapi.json: {errors:?}\n{answer:#}"
        );
        self.checked.push(format!("{method} {template} {status}"));
        (status, answer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_validate_against_the_openapi_document() {
    // With a defined saga too, so that /sagas answers real sagas.
    let trip = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/trip/trip.toml");
    let mut s = System::start_with("openapi", &[("orchestrator", "SAGA_FILES", trip)]).await;
    let namespace = s.bus.topology.namespace().to_owned();
    s.bus.topology =
        sagaflow_events::Topology::new(namespace).with_participants(["flights", "hotels", "confirmations"]);
    let doc: Value = s.get(&s.orchestrator.http, "/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut c =
        Checker { doc, http: reqwest::Client::new(), base: s.orchestrator.http.clone(), checked: vec![] };

    // Orders that complete, are declined, and one placed with a bad body.
    let (status, _) = c.check("post", "/orders", "/orders", Some(&order_json("api-1", &[("abc", 2)]))).await;
    assert_eq!(status, 202);
    c.check("post", "/orders", "/orders", Some(&order_json("api-2", &[("xyz", 20)]))).await;
    let (status, _) = c.check("post", "/orders", "/orders", Some(r#"{"userId": "u", "items": []}"#)).await;
    assert_eq!(status, 422);
    let (status, _) = c.check("post", "/orders", "/orders", Some("{not json")).await;
    assert_eq!(status, 400);
    let (status, _) = c.check("post", "/orders", "/orders", Some(&order_json("api-1", &[("abc", 3)]))).await;
    assert_eq!(status, 409);
    for id in ["api-1", "api-2"] {
        s.wait_terminal(id).await;
    }

    let (_, order) = c.check("get", "/orders/{orderId}", "/orders/api-1", None).await;
    assert_eq!(order["state"], "completed");
    let (_, declined) = c.check("get", "/orders/{orderId}", "/orders/api-2", None).await;
    // A declined payment: its reason is the step's last error, and the steps never sent are
    // skipped, not pending (they will never run).
    assert_eq!(declined["steps"][0]["state"], "failed", "{declined}");
    assert_eq!(declined["steps"][0]["lastError"], "payment_declined", "{declined}");
    assert_eq!(declined["steps"][1]["state"], "skipped", "{declined}");
    assert_eq!(declined["steps"][2]["state"], "skipped", "{declined}");
    let (status, _) = c.check("get", "/orders/{orderId}", "/orders/nobody", None).await;
    assert_eq!(status, 404);
    let (status, _) = c.check("get", "/orders/{orderId}", "/orders/.hidden", None).await;
    assert_eq!(status, 422);
    let (_, page) = c.check("get", "/orders", "/orders?limit=1", None).await;
    assert!(page["next"].is_string(), "{page}");
    c.check("get", "/orders", "/orders?state=compensated&reason=payment_declined", None).await;
    let (status, _) = c.check("get", "/orders", "/orders?colour=blue", None).await;
    assert_eq!(status, 400);
    let (status, _) = c.check("post", "/orders/{orderId}/cancel", "/orders/api-1/cancel", None).await;
    assert_eq!(status, 409);
    let (status, _) = c.check("post", "/orders/{orderId}/retry", "/orders/api-1/retry", None).await;
    assert_eq!(status, 409);
    let (status, _) = c.check("post", "/orders/{orderId}/cancel", "/orders/nobody/cancel", None).await;
    assert_eq!(status, 404);

    // A defined saga: nobody serves its participants here, so it waits at its first step.
    let trip_input = r#"{"id": "t-1", "input": {"from": "AMS", "to": "LIS", "nights": 2, "travellers": 1, "email": "a@b"}}"#;
    let (status, accepted) = c.check("post", "/sagas/{saga}", "/sagas/trip", Some(trip_input)).await;
    assert_eq!((status, accepted["orderId"].as_str()), (202, Some("trip/t-1")), "{accepted}");
    let (status, _) =
        c.check("post", "/sagas/{saga}", "/sagas/trip", Some(r#"{"input": {"from": "x"}}"#)).await;
    assert_eq!(status, 422);
    let (status, _) = c.check("post", "/sagas/{saga}", "/sagas/cruise", Some(trip_input)).await;
    assert_eq!(status, 404);
    let (_, running) = c.check("get", "/sagas/{saga}/{id}", "/sagas/trip/t-1", None).await;
    assert_eq!((running["saga"].as_str(), running["input"]["to"].as_str()), (Some("trip"), Some("LIS")));
    let (_, page) = c.check("get", "/sagas", "/sagas?saga=trip", None).await;
    assert_eq!(page["orders"].as_array().map(Vec::len), Some(1), "{page}");
    let (status, _) = c.check("post", "/sagas/{saga}/{id}/retry", "/sagas/trip/t-1/retry", None).await;
    assert_eq!(status, 409);
    let (status, _) = c.check("post", "/sagas/{saga}/{id}/cancel", "/sagas/trip/t-1/cancel", None).await;
    assert_eq!(status, 202);
    let (status, _) = c.check("get", "/sagas/{saga}/{id}", "/sagas/trip/nobody", None).await;
    assert_eq!(status, 404);

    let (_, overview) = c.check("get", "/overview", "/overview", None).await;
    // The order saga's three participants, and the trip's three.
    assert_eq!(overview["participants"].as_array().map(Vec::len), Some(6), "{overview}");
    c.check("get", "/outbox/parked", "/outbox/parked", None).await;
    c.check("get", "/health", "/health", None).await;

    // A dead letter: a command nobody can read. Listed, requeued (it comes back, since it is
    // still unreadable), then discarded.
    let queue = s.bus.topology.command_queue(Participant::Payment);
    let properties = BasicProperties::default()
        .with_message_id("api-dead-1".into())
        .with_type("chargePayment".into())
        .with_delivery_mode(2);
    s.bus.publish_raw("", &queue, b"\xff not a command", properties).await;
    let page = wait::until("the dead letter", Duration::from_secs(20), || async {
        let page = s.get(&s.orchestrator.http, "/dead-letters").await;
        (page["total"].as_u64() == Some(1)).then_some(page)
    })
    .await;
    c.check("get", "/dead-letters", "/dead-letters", None).await;
    assert_eq!(page["deadLetters"][0]["id"], "api-dead-1", "{page}");
    assert_eq!(page["deadLetters"][0]["queue"], queue.as_str(), "{page}");
    let (status, _) =
        c.check("post", "/dead-letters/{id}/requeue", "/dead-letters/api-dead-1/requeue", None).await;
    assert_eq!(status, 202);
    wait::until("the requeued letter to come back", Duration::from_secs(20), || async {
        let page = s.get(&s.orchestrator.http, "/dead-letters").await;
        (page["deadLetters"][0]["id"] == "api-dead-1").then_some(())
    })
    .await;
    let (status, _) =
        c.check("post", "/dead-letters/{id}/discard", "/dead-letters/api-dead-1/discard", None).await;
    assert_eq!(status, 202);
    let (status, _) =
        c.check("post", "/dead-letters/{id}/discard", "/dead-letters/api-dead-1/discard", None).await;
    assert_eq!(status, 404);
    let (_, page) = c.check("get", "/dead-letters", "/dead-letters", None).await;
    assert_eq!(page["total"], 0, "{page}");
    // Metrics carry the step, phase and outcome of each reply, and the outcome of each saga.
    let metrics =
        reqwest::get(format!("{}/metrics", s.orchestrator.http)).await.unwrap().text().await.unwrap();
    for series in [
        r#"sagaflow_step_duration_seconds_count{step="payment",phase="action",outcome="success"} 1"#,
        r#"sagaflow_step_duration_seconds_count{step="payment",phase="action",outcome="failure"} 1"#,
        r#"sagaflow_step_duration_seconds_count{step="notification",phase="action",outcome="success"} 1"#,
        r#"sagaflow_saga_duration_seconds_count{outcome="completed"} 1"#,
        r#"sagaflow_saga_duration_seconds_count{outcome="compensated"} 1"#,
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }

    // A caller's trace context is honoured: the saga carries its trace id.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let placed = reqwest::Client::new()
        .post(format!("{}/orders", s.orchestrator.http))
        .header("content-type", "application/json")
        .header("traceparent", trace)
        .body(order_json("api-traced", &[("abc", 1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 202);
    let traced = s.order("api-traced").await;
    assert_eq!(traced["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736", "{traced}");

    // The bus envelopes' JSON Schemas, for participants in other languages: each one listed is
    // served as published, and is a schema a validator accepts.
    let (_, index) = c.check("get", "/schemas", "/schemas", None).await;
    let names: Vec<&str> =
        index["schemas"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["command.json", "reply.json", "forget-sagas.json", "saga-command.json", "saga-reply.json"],
        "{index}"
    );
    for (name, published) in sagaflow_events::schemas::PUBLISHED {
        let served = reqwest::get(format!("{}/schemas/{name}", s.orchestrator.http)).await.unwrap();
        assert_eq!(served.headers()["content-type"], "application/schema+json");
        let served: Value = served.json().await.unwrap();
        assert_eq!(served, serde_json::from_str::<Value>(published).unwrap(), "{name}");
        jsonschema::validator_for(&served).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let (status, _) = c.check("get", "/schemas/{name}", "/schemas/nothing.json", None).await;
    assert_eq!(status, 404);

    // The schemas are not permissive: answers of the wrong shape fail them.
    let page_schema = jsonschema::validator_for(&schema_for(&c.doc, "/orders", "get", 200)).unwrap();
    assert!(!page_schema.is_valid(&json!({ "orders": [{ "orderId": 1 }] })));
    assert!(!page_schema.is_valid(&json!({ "orders": [], "next": 7 })));
    let detail_schema =
        jsonschema::validator_for(&schema_for(&c.doc, "/orders/{orderId}", "get", 200)).unwrap();
    let mut wrong_state = order.clone();
    wrong_state["state"] = json!("pending");
    assert!(!detail_schema.is_valid(&wrong_state));
    eprintln!("validated: {:#?}", c.checked);
}
