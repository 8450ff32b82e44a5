//! The Kafka side of [`Message`] and [`Received`]: a record's key, headers and timestamp to and
//! from our types. Kafka has no message properties, so the ones AMQP carries as properties
//! travel as headers with the names below; the record key is the order id (the correlation
//! id), so that each order's messages stay in order within one partition.

use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::Message as _;

use super::super::message::{HeaderValue, Message, Received, MAX_HEADERS, MAX_HEADER_BYTES};

/// Header names of what AMQP calls properties.
pub const MESSAGE_ID: &str = "message-id";
pub const CORRELATION_ID: &str = "correlation-id";
pub const KIND: &str = "type";
pub const CONTENT_TYPE: &str = "content-type";

/// The record headers a message goes out with: its properties, then its own headers.
pub fn headers(message: &Message) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(4 + message.headers.iter().count());
    let mut add = |key: &str, value: &[u8]| {
        out = std::mem::take(&mut out).insert(Header { key, value: Some(value) });
    };
    add(MESSAGE_ID, message.message_id.as_bytes());
    add(CORRELATION_ID, message.correlation_id.as_bytes());
    add(KIND, message.kind.as_bytes());
    if let Some(content_type) = &message.content_type {
        add(CONTENT_TYPE, content_type.as_bytes());
    }
    for (name, value) in message.headers.iter() {
        match value {
            HeaderValue::Text(s) | HeaderValue::Other(s) => add(name, s.as_bytes()),
            HeaderValue::Bytes(b) => add(name, b),
            HeaderValue::Int(i) => add(name, i.to_string().as_bytes()),
            HeaderValue::Bool(b) => add(name, if *b { b"true" } else { b"false" }),
        }
    }
    out
}

/// A record as the rest of the process sees it: broker-neutral, nothing trusted yet. Only the
/// first [`MAX_HEADERS`] headers within [`MAX_HEADER_BYTES`] are kept: a record's headers are
/// as untrusted as its body, and nothing downstream needs more.
pub fn received(from: usize, queue: &str, record: &BorrowedMessage<'_>) -> Received {
    let mut message_id = None;
    let mut correlation_id = None;
    let mut kind = None;
    let mut content_type = None;
    let mut headers = Vec::new();
    let mut size = 0usize;
    if let Some(all) = record.headers() {
        for header in all.iter() {
            let value = header.value.unwrap_or_default();
            let text = || std::str::from_utf8(value).ok().map(str::to_owned);
            match header.key {
                MESSAGE_ID => message_id = text(),
                CORRELATION_ID => correlation_id = text(),
                KIND => kind = text(),
                CONTENT_TYPE => content_type = text(),
                name => {
                    size = size.saturating_add(name.len() + value.len());
                    if headers.len() >= MAX_HEADERS || size > MAX_HEADER_BYTES {
                        continue;
                    }
                    let value = match std::str::from_utf8(value) {
                        Ok(text) => HeaderValue::Text(text.to_owned()),
                        Err(_) => HeaderValue::Bytes(value.to_vec()),
                    };
                    headers.push((name.to_owned(), value));
                }
            }
        }
    }
    let other_properties = vec![
        ("kafka-topic", record.topic().to_owned()),
        ("kafka-partition", record.partition().to_string()),
        ("kafka-offset", record.offset().to_string()),
    ];
    Received {
        from,
        queue: queue.to_owned(),
        body: record.payload().unwrap_or_default().to_vec(),
        message_id,
        correlation_id,
        kind,
        content_type,
        timestamp: record.timestamp().to_millis().and_then(|ms| u64::try_from(ms / 1000).ok()),
        headers,
        other_properties,
        redelivered: false,
    }
}
