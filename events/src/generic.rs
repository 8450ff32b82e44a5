//! The envelopes of sagas defined in files (`--saga-file`), for participants in any language.
//!
//! The order saga's commands are typed ([`crate::CommandMessage`]); a defined saga's are not:
//! its command names what the file names, and its `payload` is what the step `carries`, taken
//! from the saga's input and earlier steps' results. The envelope around it is the same as the
//! order saga's, so the barrier rules read the same (see `docs/participants.md`).
//!
//! What a participant sends back is bounded here, where it is read: a result is a JSON object
//! of at most [`MAX_RESULT_BYTES`], kept with the saga and carried by later commands.

use serde::{Deserialize, Serialize};

use crate::ids::{BusinessId, SagaId, SagaKey, SagaName, StepName};
use crate::reply::ReplyOutcome;
use crate::Phase;

/// A command of a defined saga, on `{namespace}.{participant}.commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaCommand {
    pub saga_id: SagaId,
    /// The definition's name, such as `trip`.
    pub saga: SagaName,
    /// The id the saga was started with (`POST /sagas/{saga}` with `{"id": ...}`).
    pub id: BusinessId,
    /// The step's name in the definition.
    pub step: StepName,
    pub phase: Phase,
    /// Counted from 1; a retry of the same command has the same idempotency key.
    pub attempt: u32,
    /// `{sagaId}/{step}/{phase}`: apply each at most once.
    pub idempotency_key: String,
    /// When the orchestrator committed the command, in ms since the epoch.
    pub sent_at: u64,
    /// The command's name as the definition gives it, such as `bookFlight`.
    pub command: String,
    /// What the step carries, by the last segment of each carried path.
    pub payload: serde_json::Map<String, serde_json::Value>,
}

impl SagaCommand {
    pub fn key(&self) -> SagaKey {
        SagaKey::of(&self.saga, &self.id)
    }
}

/// A participant's answer to a [`SagaCommand`], published to `{namespace}.replies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaReply {
    pub saga_id: SagaId,
    pub saga: SagaName,
    pub id: BusinessId,
    pub step: StepName,
    pub phase: Phase,
    pub attempt: u32,
    pub idempotency_key: String,
    #[serde(flatten)]
    pub outcome: ReplyOutcome,
    /// What a succeeded action gives later steps to carry (`steps.<step>.<field>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<StepResult>,
}

impl SagaReply {
    pub fn key(&self) -> SagaKey {
        SagaKey::of(&self.saga, &self.id)
    }
}

/// The most bytes of JSON one step's result may take: results are kept in the saga's record,
/// which has a size limit, and every later command may carry them.
pub const MAX_RESULT_BYTES: usize = 512;

/// A step's result: a JSON object of at most [`MAX_RESULT_BYTES`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "serde_json::Map<String, serde_json::Value>",
    into = "serde_json::Map<String, serde_json::Value>"
)]
pub struct StepResult(serde_json::Map<String, serde_json::Value>);

impl StepResult {
    pub fn new(fields: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let bytes = serde_json::to_vec(&fields).map(|v| v.len()).unwrap_or(usize::MAX);
        if bytes > MAX_RESULT_BYTES {
            return Err(format!(
                "a step's result takes at most {MAX_RESULT_BYTES} bytes of JSON, not {bytes}"
            ));
        }
        Ok(Self(fields))
    }

    pub fn into_value(self) -> serde_json::Value {
        serde_json::Value::Object(self.0)
    }
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for StepResult {
    type Error = String;
    fn try_from(fields: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        Self::new(fields)
    }
}

impl From<StepResult> for serde_json::Map<String, serde_json::Value> {
    fn from(result: StepResult) -> Self {
        result.0
    }
}

impl schemars::JsonSchema for StepResult {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StepResult".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": format!("At most {MAX_RESULT_BYTES} bytes of JSON; later steps carry its fields."),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_json(result: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "sagaId": "s-1", "saga": "trip", "id": "b-1", "step": "flight", "phase": "action",
            "attempt": 1, "idempotencyKey": "s-1/flight/action", "outcome": "succeeded",
            "result": result,
        })
    }

    #[test]
    fn a_reply_carries_a_small_object_as_its_result() {
        let reply: SagaReply = serde_json::from_value(reply_json(serde_json::json!({"ref": "F-1"}))).unwrap();
        assert_eq!(reply.key().as_str(), "trip/b-1");
        assert_eq!(reply.result.unwrap().into_value()["ref"], "F-1");
        for bad in [
            serde_json::json!("F-1"),
            serde_json::json!([1]),
            serde_json::json!({"ref": "x".repeat(MAX_RESULT_BYTES)}),
        ] {
            assert!(serde_json::from_value::<SagaReply>(reply_json(bad)).is_err());
        }
    }

    #[test]
    fn an_order_reply_is_not_a_saga_reply() {
        let order_reply = serde_json::json!({
            "sagaId": "s-1", "orderId": "o-1", "step": "payment", "phase": "action",
            "attempt": 1, "idempotencyKey": "s-1/payment/action", "outcome": "succeeded",
        });
        assert!(serde_json::from_value::<SagaReply>(order_reply).is_err());
    }
}
