//! The messages every process sends and receives, in terms that do not depend on the broker:
//! [`Message`] goes out (through the outbox), [`Received`] comes in.
//!
//! Everything copied from a received message into one that goes out passes through a type with
//! a bound: [`Headers`] cannot grow past [`MAX_HEADER_BYTES`], ids past [`MAX_PROPERTY_LEN`].
//! One oversized header used to ride along into a reply, exceed the broker's frame size, close
//! the connection and come back with every reconnect.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::telemetry::TraceParent;

/// The most bytes the headers of one message may take, names and values together. Far below
/// any broker's frame size (RabbitMQ: 128 KiB), so that headers never decide whether a message
/// can be published.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Message ids, correlation ids and kinds are AMQP short strings: at most 255 bytes.
pub const MAX_PROPERTY_LEN: usize = 255;
/// The most headers one message may carry.
pub const MAX_HEADERS: usize = 64;

/// Where a message goes: an exchange and a routing key. (A Kafka transport maps these to a
/// topic and a key.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub exchange: String,
    pub key: String,
}

/// A header value, in the few shapes that every broker can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeaderValue {
    Text(String),
    /// Bytes that are not UTF-8, kept as they are.
    Bytes(Vec<u8>),
    Int(i64),
    Bool(bool),
    /// A value of a richer type (a table, an array, a float), kept as its rendering.
    Other(String),
}

impl HeaderValue {
    fn size(&self) -> usize {
        match self {
            Self::Text(s) | Self::Other(s) => s.len() + 5,
            Self::Bytes(b) => b.len() + 5,
            Self::Int(_) => 9,
            Self::Bool(_) => 2,
        }
    }

    /// The value as text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) | Self::Other(s) => f.write_str(s),
            Self::Bytes(b) => write!(f, "{} bytes", b.len()),
            Self::Int(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Named header values, at most [`MAX_HEADERS`] of them in at most [`MAX_HEADER_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<(String, HeaderValue)>", into = "Vec<(String, HeaderValue)>")]
pub struct Headers {
    entries: Vec<(String, HeaderValue)>,
    size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the header {name:?} does not fit: headers are limited to {MAX_HEADERS} entries and {MAX_HEADER_BYTES} bytes")]
pub struct HeadersFull {
    pub name: String,
}

impl Headers {
    /// Adds a header, or says why it does not fit (the headers are unchanged then). A name
    /// given twice replaces the earlier value.
    pub fn insert(&mut self, name: &str, value: HeaderValue) -> Result<(), HeadersFull> {
        let full = || HeadersFull { name: name.chars().take(64).collect() };
        if name.is_empty() || name.len() > MAX_PROPERTY_LEN {
            return Err(full());
        }
        let old = self.entries.iter().position(|(n, _)| n == name);
        let freed = old.map_or(0, |i| self.entries[i].0.len() + 1 + self.entries[i].1.size());
        let size = self.size - freed + name.len() + 1 + value.size();
        let count = self.entries.len() + usize::from(old.is_none());
        if size > MAX_HEADER_BYTES || count > MAX_HEADERS {
            return Err(full());
        }
        match old {
            Some(i) => self.entries[i].1 = value,
            None => self.entries.push((name.to_owned(), value)),
        }
        self.size = size;
        Ok(())
    }

    /// Adds a text header, cut to fit if it must: for values we write ourselves, such as a
    /// dead letter's reason, which must never be what makes a message unpublishable.
    pub fn insert_text(&mut self, name: &str, text: &str) {
        let room = MAX_HEADER_BYTES.saturating_sub(self.size + name.len() + 1 + 5).min(1024);
        let mut end = text.len().min(room);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let _ = self.insert(name, HeaderValue::Text(text[..end].to_owned()));
    }

    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &HeaderValue)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Bytes the headers take, as counted against [`MAX_HEADER_BYTES`].
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TryFrom<Vec<(String, HeaderValue)>> for Headers {
    type Error = HeadersFull;
    fn try_from(entries: Vec<(String, HeaderValue)>) -> Result<Self, HeadersFull> {
        let mut headers = Headers::default();
        for (name, value) in entries {
            headers.insert(&name, value)?;
        }
        Ok(headers)
    }
}

impl From<Headers> for Vec<(String, HeaderValue)> {
    fn from(headers: Headers) -> Self {
        headers.entries
    }
}

/// A message to publish: route, properties, headers and the body, exactly as it will go out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub route: Route,
    /// Unique per message; receivers may deduplicate on it.
    pub message_id: String,
    /// The order id, so one order can be followed across processes.
    pub correlation_id: String,
    /// What the message is: a command, reply or event name.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Seconds since the epoch; kept from the original for a dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// May travel with other messages for the same route in one broker message
    /// ([`super::batch`]): commands and replies, never public events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batchable: bool,
    /// A public event: when the broker says no queue is bound to its route, the relay skips
    /// the events for that route for a while instead of paying for each ([`super::relay`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_while_unbound: bool,
    /// Not part of the JSON form: the outbox stores it raw after the rest (see [`Message::encode`]).
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Cuts `text` to at most [`MAX_PROPERTY_LEN`] bytes, at a character boundary.
fn property(text: &str) -> String {
    let mut end = text.len().min(MAX_PROPERTY_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Message {
    /// A JSON message with a fresh message id and the current time.
    pub fn json(route: Route, correlation_id: &str, kind: &str, body: Vec<u8>) -> Self {
        Self {
            route,
            message_id: uuid::Uuid::now_v7().to_string(),
            correlation_id: property(correlation_id),
            kind: property(kind),
            content_type: Some("application/json".into()),
            timestamp: Some(crate::now_millis() / 1000),
            headers: Headers::default(),
            batchable: false,
            skip_while_unbound: false,
            body,
        }
    }

    /// Lets the message travel in a batch with others for the same route.
    pub fn batchable(mut self) -> Self {
        self.batchable = true;
        self
    }

    /// Marks a public event, which the relay may skip while no queue is bound to its route.
    pub fn skip_while_unbound(mut self) -> Self {
        self.skip_while_unbound = true;
        self
    }

    /// Sets the `traceparent` header: only ever a parsed, 55-character W3C value.
    pub fn with_trace(mut self, trace: &TraceParent) -> Self {
        let _ = self.headers.insert(TRACEPARENT, HeaderValue::Text(trace.to_string()));
        self
    }

    /// The stored form: 4 bytes of length, the JSON of everything but the body, then the body
    /// as it is (no escaping, no base64: a dead letter keeps its bytes and its size).
    pub fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(self).expect("a message's properties serialise");
        let mut out = Vec::with_capacity(4 + meta.len() + self.body.len());
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let len = bytes.get(..4).ok_or("shorter than its length prefix")?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let meta = bytes.get(4..4 + len).ok_or("shorter than its properties")?;
        let mut message: Message = serde_json::from_slice(meta).map_err(|e| e.to_string())?;
        message.body = bytes[4 + len..].to_vec();
        Ok(message)
    }
}

/// The header with the W3C trace context.
pub const TRACEPARENT: &str = sagaflow_events::headers::TRACEPARENT;

/// A message as it was received, before anything trusts it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which consumer of the process took it (an index into its consumer list).
    pub from: usize,
    /// The queue it came from, for dead letters and logs.
    pub queue: String,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub kind: Option<String>,
    pub content_type: Option<String>,
    pub timestamp: Option<u64>,
    /// The headers, every value as it came.
    pub headers: Vec<(String, HeaderValue)>,
    /// The broker's other properties (user id, app id, expiration, ...), kept for dead letters.
    pub other_properties: Vec<(&'static str, String)>,
    /// The broker delivered it before, to this or another consumer.
    pub redelivered: bool,
}

impl Received {
    /// A text header, if present.
    pub fn header_text(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_text())
    }

    /// The trace context, if the message carries a well-formed one. Anything else (missing,
    /// malformed, a 131 kB value) gives `None`, and the caller starts a new trace.
    pub fn trace(&self) -> Option<TraceParent> {
        self.header_text(TRACEPARENT).and_then(|t| t.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn route() -> Route {
        Route { exchange: "x".into(), key: "k".into() }
    }

    #[test]
    fn headers_refuse_what_would_pass_the_budget_and_stay_as_they_were() {
        let mut h = Headers::default();
        h.insert("a", HeaderValue::Text("1".into())).unwrap();
        let before = h.clone();
        assert!(h.insert("big", HeaderValue::Text("x".repeat(MAX_HEADER_BYTES))).is_err());
        assert_eq!(h, before);
        h.insert("a", HeaderValue::Int(2)).unwrap();
        assert_eq!(h.get("a"), Some(&HeaderValue::Int(2)));
        for i in 0..MAX_HEADERS - 1 {
            h.insert(&format!("h{i}"), HeaderValue::Bool(true)).unwrap();
        }
        assert!(h.insert("one-too-many", HeaderValue::Bool(true)).is_err());
        // A value we write ourselves is cut to fit instead.
        let mut reasons = Headers::default();
        reasons.insert_text("reason", &"r".repeat(100_000));
        assert!(reasons.size() <= MAX_HEADER_BYTES);
        assert!(reasons.get("reason").is_some());
    }

    #[test]
    fn a_message_round_trips_with_its_raw_body() {
        let body: Vec<u8> = (0..=255u8).collect();
        let mut m = Message::json(route(), "o-1", "reply", body.clone());
        m.headers.insert("x", HeaderValue::Bytes(vec![0xff, 0])).unwrap();
        let encoded = m.encode();
        assert!(encoded.len() < body.len() + 400, "the body is stored as it is");
        assert_eq!(Message::decode(&encoded).unwrap(), m);
        assert!(Message::decode(&encoded[..3]).is_err());
    }

    #[test]
    fn properties_are_cut_to_short_strings() {
        let m = Message::json(route(), &"é".repeat(300), &"k".repeat(400), vec![]);
        assert!(m.correlation_id.len() <= MAX_PROPERTY_LEN && m.kind.len() <= MAX_PROPERTY_LEN);
    }

    proptest! {
        #[test]
        fn any_inserts_keep_the_headers_within_bounds(
            inserts in prop::collection::vec(("[a-z]{1,300}", ".{0,3000}"), 0..200)
        ) {
            let mut h = Headers::default();
            for (name, value) in inserts {
                let _ = h.insert(&name, HeaderValue::Text(value.clone()));
                h.insert_text(&format!("t-{}", name.len()), &value);
                prop_assert!(h.size() <= MAX_HEADER_BYTES);
                prop_assert!(h.iter().count() <= MAX_HEADERS);
            }
            let json = serde_json::to_string(&h).unwrap();
            prop_assert_eq!(serde_json::from_str::<Headers>(&json).unwrap(), h);
        }
    }
}
