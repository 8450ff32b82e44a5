//! The AMQP side of [`Message`] and [`Received`]: properties and headers to and from lapin's
//! types. Nothing above the bus sees an AMQP type.

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::bus::message::{HeaderValue, Message, Received};

/// The properties a message goes out with: persistent, with its ids, kind and headers.
pub fn properties(message: &Message) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in message.headers.iter() {
        headers.insert(ShortString::from(name), amqp_value(value));
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2) // persistent
        .with_message_id(short(&message.message_id))
        .with_correlation_id(short(&message.correlation_id))
        .with_type(short(&message.kind))
        .with_headers(headers);
    if let Some(content_type) = &message.content_type {
        properties = properties.with_content_type(short(content_type));
    }
    if let Some(timestamp) = message.timestamp {
        properties = properties.with_timestamp(timestamp);
    }
    properties
}

/// A short string of at most 255 bytes (the type's limit), cut at a character boundary.
fn short(text: &str) -> ShortString {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&text[..end])
}

pub(crate) fn amqp_value(value: &HeaderValue) -> AMQPValue {
    match value {
        HeaderValue::Text(s) | HeaderValue::Other(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        HeaderValue::Bytes(b) => AMQPValue::LongString(LongString::from(b.clone())),
        HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
        HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
    }
}

fn header_value(value: &AMQPValue) -> HeaderValue {
    match value {
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(text) => HeaderValue::Text(text.to_owned()),
            Err(_) => HeaderValue::Bytes(s.as_bytes().to_vec()),
        },
        AMQPValue::ShortString(s) => HeaderValue::Text(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => HeaderValue::Int(*i),
        other => HeaderValue::Other(format!("{other:?}")),
    }
}

/// A delivery as the rest of the process sees it: broker-neutral, nothing trusted yet.
pub fn received(from: usize, queue: &str, delivery: &Delivery) -> Received {
    let p = &delivery.properties;
    let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    let headers = p
        .headers()
        .as_ref()
        .map(|h| h.inner().iter().map(|(k, v)| (k.as_str().to_owned(), header_value(v))).collect())
        .unwrap_or_default();
    // Properties a dead letter keeps as headers: as properties, the broker would act on them
    // (it refuses a user id that is not the publisher's, and expires a message).
    let mut other_properties = Vec::new();
    for (name, value) in [
        ("user-id", p.user_id()),
        ("app-id", p.app_id()),
        ("expiration", p.expiration()),
        ("reply-to", p.reply_to()),
        ("content-encoding", p.content_encoding()),
        ("cluster-id", p.cluster_id()),
    ] {
        if let Some(v) = value {
            other_properties.push((name, v.as_str().to_owned()));
        }
    }
    if let Some(priority) = p.priority() {
        other_properties.push(("priority", priority.to_string()));
    }
    if let Some(mode) = p.delivery_mode() {
        other_properties.push(("delivery-mode", mode.to_string()));
    }
    Received {
        from,
        queue: queue.to_owned(),
        body: delivery.data.clone(),
        message_id: text(p.message_id()),
        correlation_id: text(p.correlation_id()),
        kind: text(p.kind()),
        content_type: text(p.content_type()),
        timestamp: *p.timestamp(),
        headers,
        other_properties,
        redelivered: delivery.redelivered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::message::Route;

    #[test]
    fn header_values_keep_their_kind_both_ways() {
        for value in [
            HeaderValue::Text("t".into()),
            HeaderValue::Bytes(vec![0xff, 0x00]),
            HeaderValue::Int(-7),
            HeaderValue::Bool(true),
        ] {
            assert_eq!(header_value(&amqp_value(&value)), value);
        }
    }

    #[test]
    fn a_message_goes_out_persistent_with_its_properties() {
        let m = Message::json(Route { exchange: "x".into(), key: "k".into() }, "o-1", "reply", vec![]);
        let p = properties(&m);
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(p.correlation_id().as_ref().map(|c| c.as_str()), Some("o-1"));
        assert_eq!(p.kind().as_ref().map(|c| c.as_str()), Some("reply"));
    }
}
