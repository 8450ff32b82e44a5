//! The JSON Schemas of what a participant reads and writes, so that one can be written in any
//! language: the order saga's command and reply envelopes, `ForgetSagas`, and the envelopes of
//! sagas defined in files.
//!
//! They are generated from the Rust types ([`generate`]) and kept in `events/schemas/`
//! ([`PUBLISHED`]), which the orchestrator serves at `/schemas/`. A test fails when the two
//! differ; `SAGAFLOW_WRITE_SCHEMAS=1 cargo test -p sagaflow-events schemas` writes them anew.

use crate::{CommandMessage, ForgetSagas, ReplyMessage, SagaCommand, SagaReply};

/// The schemas as kept in the repository: (file name, JSON text).
pub const PUBLISHED: [(&str, &str); 5] = [
    ("command.json", include_str!("../schemas/command.json")),
    ("reply.json", include_str!("../schemas/reply.json")),
    ("forget-sagas.json", include_str!("../schemas/forget-sagas.json")),
    ("saga-command.json", include_str!("../schemas/saga-command.json")),
    ("saga-reply.json", include_str!("../schemas/saga-reply.json")),
];

/// The schemas of the types as they are now, in the order and under the names of [`PUBLISHED`].
pub fn generate() -> [(&'static str, String); 5] {
    fn render<T: schemars::JsonSchema>(id: &str, description: &str) -> String {
        let mut schema = schemars::schema_for!(T);
        schema.insert("$id".into(), format!("https://sagaflow.dev/schemas/{id}").into());
        schema.insert("description".into(), description.into());
        serde_json::to_string_pretty(&schema).expect("schemas serialise") + "\n"
    }
    [
        (
            "command.json",
            render::<CommandMessage>(
                "command.json",
                "A command on {namespace}.{participant}.commands (AMQP type: the command's name). \
                 Apply each idempotencyKey at most once; answer every delivery, repeats included, \
                 with the first answer.",
            ),
        ),
        (
            "reply.json",
            render::<ReplyMessage>(
                "reply.json",
                "A participant's answer, published to the {namespace}.replies exchange. It echoes \
                 the command's sagaId, orderId, step, phase, attempt and idempotencyKey.",
            ),
        ),
        (
            "forget-sagas.json",
            render::<ForgetSagas>(
                "forget-sagas.json",
                "On a participant's command queue (AMQP type forgetSagas): these sagas are gone; \
                 their records may go, and a command sent before finishedBefore for a saga with no \
                 record is a late duplicate, to be refused with reason `expired`.",
            ),
        ),
        (
            "saga-command.json",
            render::<SagaCommand>(
                "saga-command.json",
                "A command of a saga defined in a file, on {namespace}.{participant}.commands \
                 (AMQP type: the command's name). The same barrier rules as command.json.",
            ),
        ),
        (
            "saga-reply.json",
            render::<SagaReply>(
                "saga-reply.json",
                "The answer to a saga-command.json, published to the {namespace}.replies exchange. \
                 It echoes the command's sagaId, saga, id, step, phase, attempt and idempotencyKey; \
                 a succeeded action may give a result that later steps carry.",
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published schemas are the types' schemas. On a change of a wire type, write them
    /// anew (see the module's comment) and review the difference: it is a contract change.
    #[test]
    fn the_published_schemas_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let write = std::env::var_os("SAGAFLOW_WRITE_SCHEMAS").is_some();
        for ((name, now), (published_name, published)) in generate().iter().zip(PUBLISHED) {
            assert_eq!(*name, published_name);
            if write {
                std::fs::write(dir.join(name), now).unwrap();
            } else {
                assert!(
                    now == published,
                    "events/schemas/{name} differs from the types: run \
                     SAGAFLOW_WRITE_SCHEMAS=1 cargo test -p sagaflow-events schemas, and review"
                );
            }
        }
    }

    /// What the services send and accept validates against the schemas, and what breaks a
    /// type's rules does not: the schemas say what the types say.
    #[test]
    fn real_messages_validate_and_bad_ones_do_not() {
        let schema = |name: &str| {
            let text = PUBLISHED.iter().find(|(n, _)| *n == name).unwrap().1;
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        };
        let command = schema("command.json");
        let reply = schema("reply.json");
        let good_command = serde_json::json!({
            "sagaId": "019a-1", "orderId": "o-1", "step": "inventory", "phase": "action",
            "attempt": 1, "idempotencyKey": "019a-1/inventory/action", "sentAt": 1,
            "command": "reserveStock", "items": [{"productId": "abc", "quantity": 2, "unitPriceCents": 100}]
        });
        assert!(serde_json::from_value::<CommandMessage>(good_command.clone()).is_ok());
        assert!(jsonschema::is_valid(&command, &good_command));
        let mut bad = good_command.clone();
        bad["items"][0]["quantity"] = 0.into();
        assert!(!jsonschema::is_valid(&command, &bad), "a quantity of 0");
        let mut bad = good_command.clone();
        bad["orderId"] = "..".into();
        assert!(!jsonschema::is_valid(&command, &bad), "an unaddressable id");
        let mut bad = good_command.clone();
        bad["command"] = "reserveEverything".into();
        assert!(!jsonschema::is_valid(&command, &bad), "an unknown command");
        let good_reply = serde_json::json!({
            "sagaId": "019a-1", "orderId": "o-1", "step": "inventory", "phase": "action",
            "attempt": 1, "idempotencyKey": "019a-1/inventory/action",
            "outcome": "failed", "reason": "out_of_stock", "missingProducts": ["abc"]
        });
        assert!(serde_json::from_value::<ReplyMessage>(good_reply.clone()).is_ok());
        assert!(jsonschema::is_valid(&reply, &good_reply));
        let mut bad = good_reply.clone();
        bad["outcome"] = "maybe".into();
        assert!(!jsonschema::is_valid(&reply, &bad), "an unknown outcome");
        assert!(serde_json::from_value::<ReplyMessage>(bad).is_err());

        // A defined saga's envelopes, as examples/trip/participant.py reads and writes them.
        let saga_command = schema("saga-command.json");
        let saga_reply = schema("saga-reply.json");
        let good = serde_json::json!({
            "sagaId": "019a-1", "saga": "trip", "id": "t-1", "step": "flight", "phase": "action",
            "attempt": 1, "idempotencyKey": "019a-1/flight/action", "sentAt": 1,
            "command": "bookFlight", "payload": {"from": "AMS", "to": "LIS"}
        });
        assert!(serde_json::from_value::<SagaCommand>(good.clone()).is_ok());
        assert!(jsonschema::is_valid(&saga_command, &good));
        let mut bad = good.clone();
        bad["payload"] = "AMS".into();
        assert!(!jsonschema::is_valid(&saga_command, &bad), "a payload that is not an object");
        let good = serde_json::json!({
            "sagaId": "019a-1", "saga": "trip", "id": "t-1", "step": "flight", "phase": "action",
            "attempt": 1, "idempotencyKey": "019a-1/flight/action", "outcome": "succeeded",
            "result": {"flightRef": "F-1"}
        });
        assert!(serde_json::from_value::<SagaReply>(good.clone()).is_ok());
        assert!(jsonschema::is_valid(&saga_reply, &good));
        let mut bad = good.clone();
        bad["id"] = "a/b".into();
        assert!(!jsonschema::is_valid(&saga_reply, &bad), "an id with a slash");
        assert!(serde_json::from_value::<SagaReply>(bad).is_err());
    }

    proptest::proptest! {
        /// An id's schema accepts exactly what the type accepts, for any string.
        #[test]
        fn an_id_schema_says_what_the_type_says(raw in "[ -~é/]{0,3}|[a-z.:_-]{1,140}") {
            let schema = serde_json::to_value(schemars::schema_for!(crate::OrderId)).unwrap();
            let valid = jsonschema::is_valid(&schema, &serde_json::Value::from(raw.clone()));
            proptest::prop_assert_eq!(valid, crate::OrderId::parse(raw).is_ok());
        }
    }
}
