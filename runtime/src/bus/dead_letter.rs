//! Messages that cannot be understood go to the namespace's dead-letter queue with the reason in
//! their headers. A dead letter is written to the outbox like any other message, in the same
//! batch as its acknowledgement, so it is never lost between the ack and the publish.
//!
//! A dead letter keeps the original bytes as they were (not re-encoded as text) and the
//! original properties: ids, kind, content type and timestamp as properties, the others and the
//! original headers as headers. It must stay publishable whatever came in, so the original
//! headers are kept only within a budget below [`MAX_HEADER_BYTES`]; the names of any left
//! out are listed in a header of their own.

use sagaflow_events::{headers, Topology};

use super::message::{HeaderValue, Headers, Message, Received, Route, MAX_HEADER_BYTES};

/// Room kept for the headers sagaflow adds (reason, queue, what was left out).
const OWN_HEADERS_ROOM: usize = 3 * 1024;
/// Names of original headers that did not fit.
pub const DROPPED_HEADERS: &str = "x-sagaflow-dropped-headers";
/// Prefix of the headers that carry original properties the broker would act on.
pub const ORIGINAL_PROPERTY_PREFIX: &str = "x-sagaflow-original-";

/// The outbox entry that carries `received` to the dead-letter exchange.
pub fn dead_letter(topology: &Topology, received: &Received, reason: &str) -> Message {
    let mut out = Headers::default();
    out.insert_text(headers::DEAD_LETTER_REASON, reason);
    out.insert_text(headers::DEAD_LETTER_QUEUE, &received.queue);
    let mut dropped: Vec<String> = Vec::new();
    let originals = received.headers.iter().map(|(n, v)| (n.clone(), v.clone())).chain(
        received
            .other_properties
            .iter()
            .map(|(n, v)| (format!("{ORIGINAL_PROPERTY_PREFIX}{n}"), HeaderValue::Text(v.clone()))),
    );
    for (name, value) in originals {
        let before = out.clone();
        let fits = out.insert(&name, value).is_ok() && out.size() <= MAX_HEADER_BYTES - OWN_HEADERS_ROOM;
        if !fits {
            out = before;
            // Only names that are themselves short are listed; the list is cut to fit anyway.
            if name.len() <= 64 {
                dropped.push(name);
            }
        }
    }
    if !dropped.is_empty() {
        out.insert_text(DROPPED_HEADERS, &dropped.join(","));
    }
    let route = Route { exchange: topology.dead_letter_exchange(), key: String::new() };
    let mut message = Message::json(
        route,
        received.correlation_id.as_deref().unwrap_or(""),
        received.kind.as_deref().unwrap_or("unknown"),
        received.body.clone(),
    );
    if let Some(id) = &received.message_id {
        message.message_id.clone_from(id);
    }
    message.content_type.clone_from(&received.content_type);
    message.timestamp = received.timestamp.or(message.timestamp);
    message.headers = out;
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(headers: Vec<(String, HeaderValue)>, body: Vec<u8>) -> Received {
        Received {
            from: 0,
            queue: "ns.payment.commands".into(),
            body,
            message_id: Some("m-1".into()),
            correlation_id: Some("o-1".into()),
            kind: None,
            content_type: Some("application/octet-stream".into()),
            timestamp: Some(1_700_000_000),
            headers,
            other_properties: vec![("user-id", "mallory".into())],
            redelivered: false,
        }
    }

    #[test]
    fn keeps_the_bytes_and_properties_and_says_why() {
        let body = vec![0xff, 0xfe, b'x'];
        let letter = dead_letter(
            &Topology::new("ns"),
            &received(vec![("x-custom".into(), HeaderValue::Int(7))], body.clone()),
            "not a command",
        );
        assert_eq!(letter.body, body);
        assert_eq!(letter.message_id, "m-1");
        assert_eq!(letter.correlation_id, "o-1");
        assert_eq!(letter.content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(letter.timestamp, Some(1_700_000_000));
        assert_eq!(letter.headers.get("x-custom"), Some(&HeaderValue::Int(7)));
        assert_eq!(
            letter.headers.get(headers::DEAD_LETTER_REASON).and_then(|v| v.as_text()),
            Some("not a command")
        );
        assert_eq!(
            letter.headers.get("x-sagaflow-original-user-id").and_then(|v| v.as_text()),
            Some("mallory")
        );
        assert_eq!(letter.route.exchange, "ns.dead-letter");
    }

    #[test]
    fn oversized_original_headers_are_named_not_carried() {
        let huge = ("traceparent".to_owned(), HeaderValue::Text("0".repeat(131_000)));
        let small = ("x-small".to_owned(), HeaderValue::Text("s".into()));
        let letter = dead_letter(
            &Topology::new("ns"),
            &received(vec![huge, small], b"{}".to_vec()),
            &"why ".repeat(5000),
        );
        assert!(letter.headers.size() <= MAX_HEADER_BYTES);
        assert!(letter.headers.get("traceparent").is_none());
        assert_eq!(letter.headers.get(DROPPED_HEADERS).and_then(|v| v.as_text()), Some("traceparent"));
        assert!(letter.headers.get("x-small").is_some());
        assert!(letter.headers.get(headers::DEAD_LETTER_REASON).is_some());
    }
}
