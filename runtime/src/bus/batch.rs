//! Several messages for one queue, carried as one broker message.
//!
//! Why: the broker's cost is per message far more than per byte (for a quorum queue, a Raft
//! entry, a confirm and a delivery each). When the relay finds several durable entries for the
//! same route, it publishes them as one batch; a message that stands alone still goes alone,
//! so nothing waits for company and latency under light load is unchanged.
//!
//! What does not change: each item keeps its own id, kind, headers and body, so its
//! idempotency key and its trace travel with it; the receiver applies the items one by one, and
//! an item it cannot understand is dead-lettered alone, with its reason, while the others are
//! applied. Public events never travel in batches (their contract is one event per message).
//!
//! The body is JSON, so a batch stays readable in the broker's UI:
//! `[{"messageId":..,"correlationId":..,"kind":..,"timestamp":..,"headers":[..],"body":{..}}, ..]`.
//! It is untrusted like any input: an envelope that is too large, holds too many items, or does
//! not parse is dead-lettered whole, as it came.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::message::{Headers, Message, Received, MAX_PROPERTY_LEN};

/// The kind (AMQP `type`) of a batch.
pub const KIND: &str = "sagaflow.batch";
pub const CONTENT_TYPE: &str = "application/vnd.sagaflow.batch+json";
/// Most items the relay puts in one batch.
pub const MAX_ITEMS: usize = 64;
/// Most bytes of one batch the relay publishes; the items that would pass it go in the next.
pub const MAX_BYTES: usize = 64 * 1024;
/// Most bytes of a batch a receiver reads. Above what the relay sends, so a batch from a peer
/// with other settings is still read, and far below what would hurt to parse.
pub const MAX_RECEIVED_BYTES: usize = 1024 * 1024;
/// Most items a receiver takes from one batch.
pub const MAX_RECEIVED_ITEMS: usize = 256;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a> {
    #[serde(borrow)]
    message_id: Cow<'a, str>,
    #[serde(borrow)]
    correlation_id: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    headers: Headers,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// What a delivery holds for the pipeline.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// One message, as it came.
    One(Received),
    /// The items of a batch, each with the envelope's queue, consumer and redelivery flag.
    Batch(Vec<Received>),
    /// A batch that cannot be read: dead-lettered whole, with the reason.
    Unreadable { envelope: Received, reason: String },
}

impl Delivery {
    /// What a received message holds: itself, or the items of the batch it carries.
    pub fn of(received: Received) -> Self {
        if received.kind.as_deref() != Some(KIND) {
            return Self::One(received);
        }
        match split(&received) {
            Ok(items) => Self::Batch(items),
            Err(reason) => Self::Unreadable { envelope: received, reason },
        }
    }

    /// The messages to apply, one by one (none for an unreadable batch).
    pub fn items(&self) -> &[Received] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Batch(items) => items,
            Self::Unreadable { .. } => &[],
        }
    }
}

fn split(envelope: &Received) -> Result<Vec<Received>, String> {
    if envelope.body.len() > MAX_RECEIVED_BYTES {
        return Err(format!(
            "a batch of {} bytes, over the limit of {MAX_RECEIVED_BYTES}",
            envelope.body.len()
        ));
    }
    let items: Vec<Item<'_>> =
        serde_json::from_slice(&envelope.body).map_err(|e| format!("not a readable batch: {e}"))?;
    if items.is_empty() || items.len() > MAX_RECEIVED_ITEMS {
        return Err(format!("a batch of {} items; between 1 and {MAX_RECEIVED_ITEMS} are read", items.len()));
    }
    items
        .into_iter()
        .map(|item| {
            for property in [&item.message_id, &item.correlation_id, &item.kind] {
                if property.len() > MAX_PROPERTY_LEN {
                    return Err(format!("an item property of {} bytes", property.len()));
                }
            }
            Ok(Received {
                from: envelope.from,
                queue: envelope.queue.clone(),
                body: item.body.get().as_bytes().to_vec(),
                message_id: Some(item.message_id.into_owned()),
                correlation_id: Some(item.correlation_id.into_owned()),
                kind: Some(item.kind.into_owned()),
                content_type: Some("application/json".into()),
                timestamp: item.timestamp,
                headers: Vec::from(item.headers),
                other_properties: envelope.other_properties.clone(),
                redelivered: envelope.redelivered,
            })
        })
        .collect()
}

/// Groups messages bound for one route into batches. Returns, for each message to publish,
/// the indexes of the messages it carries: one index for a message that goes alone (a single
/// one, one that is not batchable, or one whose body is not JSON). The order of the messages
/// for one route is kept; messages for different routes have no order between them.
pub fn group(messages: &[Message]) -> Vec<(Vec<usize>, Message)> {
    let mut out: Vec<(Vec<usize>, Message)> = Vec::new();
    // The open batch of each route: (indexes, bytes so far).
    let mut open: Vec<(Vec<usize>, usize)> = Vec::new();
    let close = |indexes: Vec<usize>, out: &mut Vec<(Vec<usize>, Message)>| {
        if indexes.len() == 1 {
            out.push((indexes.clone(), messages[indexes[0]].clone()));
        } else if let Some(batch) = encode(indexes.iter().map(|&i| &messages[i])) {
            out.push((indexes, batch));
        } else {
            out.extend(indexes.into_iter().map(|i| (vec![i], messages[i].clone())));
        }
    };
    for (i, m) in messages.iter().enumerate() {
        let size = m.body.len() + m.headers.size() + 200;
        let batchable = m.batchable && serde_json::from_slice::<&RawValue>(&m.body).is_ok();
        let same_route = open.iter().position(|(indexes, _)| messages[indexes[0]].route == m.route);
        match same_route {
            Some(o) if batchable && open[o].0.len() < MAX_ITEMS && open[o].1 + size <= MAX_BYTES => {
                open[o].0.push(i);
                open[o].1 += size;
                continue;
            }
            // What went before for this route goes first.
            Some(o) => close(open.swap_remove(o).0, &mut out),
            None => {}
        }
        if batchable {
            open.push((vec![i], size));
        } else {
            out.push((vec![i], m.clone()));
        }
    }
    for (indexes, _) in open {
        close(indexes, &mut out);
    }
    out
}

/// One message carrying `items`, all for the same route and all with JSON bodies.
fn encode<'a>(items: impl Iterator<Item = &'a Message>) -> Option<Message> {
    let items: Vec<&Message> = items.collect();
    let first = items.first()?;
    let wire: Vec<Item<'_>> = items
        .iter()
        .map(|m| {
            Some(Item {
                message_id: Cow::Borrowed(&m.message_id),
                correlation_id: Cow::Borrowed(&m.correlation_id),
                kind: Cow::Borrowed(&m.kind),
                timestamp: m.timestamp,
                headers: m.headers.clone(),
                body: serde_json::from_slice(&m.body).ok()?,
            })
        })
        .collect::<Option<_>>()?;
    let body = serde_json::to_vec(&wire).ok()?;
    let mut batch = Message::json(first.route.clone(), &first.correlation_id, KIND, body);
    batch.content_type = Some(CONTENT_TYPE.into());
    Some(batch)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::bus::message::{HeaderValue, Route};

    fn message(key: &str, body: &str, batchable: bool) -> Message {
        let route = Route { exchange: "x".into(), key: key.into() };
        let mut m = Message::json(route, "o-1", "command", body.as_bytes().to_vec());
        m.batchable = batchable;
        m.headers
            .insert("traceparent", HeaderValue::Text(format!("t-{}", &body[..body.len().min(16)])))
            .unwrap();
        m
    }

    fn received(m: &Message) -> Received {
        Received {
            from: 1,
            queue: "q".into(),
            body: m.body.clone(),
            message_id: Some(m.message_id.clone()),
            correlation_id: Some(m.correlation_id.clone()),
            kind: Some(m.kind.clone()),
            content_type: m.content_type.clone(),
            timestamp: m.timestamp,
            headers: m.headers.iter().map(|(n, v)| (n.to_owned(), v.clone())).collect(),
            other_properties: Vec::new(),
            redelivered: true,
        }
    }

    #[test]
    fn messages_for_one_route_travel_together_and_come_out_as_they_went_in() {
        let sent = [
            message("payment", r#"{"n":1}"#, true),
            message("inventory", r#"{"n":2}"#, true),
            message("payment", r#"{"n":3}"#, true),
            message("payment", r#"{"event":4}"#, false),
            message("payment", "not json", true),
        ];
        let grouped = group(&sent);
        let carried: Vec<Vec<usize>> = grouped.iter().map(|(i, _)| i.clone()).collect();
        assert_eq!(carried, [vec![0, 2], vec![3], vec![4], vec![1]]);
        let (_, batch) = &grouped[0];
        assert_eq!(batch.kind, KIND);
        let Delivery::Batch(items) = Delivery::of(received(batch)) else { panic!("a batch") };
        assert_eq!(items.len(), 2);
        for (item, original) in items.iter().zip([&sent[0], &sent[2]]) {
            assert_eq!(item.body, original.body);
            assert_eq!(item.message_id.as_deref(), Some(original.message_id.as_str()));
            assert_eq!(
                item.header_text("traceparent"),
                original.headers.get("traceparent").and_then(|v| v.as_text())
            );
            assert_eq!((item.from, item.queue.as_str(), item.redelivered), (1, "q", true));
        }
        // Alone is alone: no envelope.
        assert_eq!(grouped[3].1, sent[1]);
    }

    #[test]
    fn a_batch_is_cut_at_its_limits() {
        let many: Vec<Message> =
            (0..MAX_ITEMS + 3).map(|i| message("k", &format!("{{\"n\":{i}}}"), true)).collect();
        let sizes: Vec<usize> = group(&many).iter().map(|(i, _)| i.len()).collect();
        assert_eq!(sizes, [MAX_ITEMS, 3]);
        let big = "x".repeat(MAX_BYTES / 3);
        let large: Vec<Message> = (0..4).map(|_| message("k", &format!("\"{big}\""), true)).collect();
        for (_, m) in group(&large) {
            assert!(m.body.len() <= MAX_BYTES);
        }
    }

    #[test]
    fn an_unreadable_envelope_is_refused_whole() {
        let mut envelope = received(&message("k", "{}", true));
        envelope.kind = Some(KIND.into());
        for (body, why) in [
            (b"not json".to_vec(), "not a readable batch"),
            (b"[]".to_vec(), "between 1 and"),
            (
                format!(
                    "[{}]",
                    vec![
                        "{\"messageId\":\"m\",\"correlationId\":\"c\",\"kind\":\"k\",\"body\":1}";
                        MAX_RECEIVED_ITEMS + 1
                    ]
                    .join(",")
                )
                .into_bytes(),
                "between 1 and",
            ),
            (vec![b' '; MAX_RECEIVED_BYTES + 1], "over the limit"),
            (
                format!(
                    "[{{\"messageId\":\"{}\",\"correlationId\":\"c\",\"kind\":\"k\",\"body\":1}}]",
                    "m".repeat(300)
                )
                .into_bytes(),
                "property",
            ),
        ] {
            envelope.body = body;
            match Delivery::of(envelope.clone()) {
                Delivery::Unreadable { reason, .. } => assert!(reason.contains(why), "{reason}"),
                other => panic!("read {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn any_envelope_is_read_as_bounded_items_or_refused(body in prop::collection::vec(any::<u8>(), 0..2048)) {
            let mut envelope = received(&message("k", "{}", true));
            envelope.kind = Some(KIND.into());
            envelope.body = body;
            if let Delivery::Batch(items) = Delivery::of(envelope) {
                prop_assert!(!items.is_empty() && items.len() <= MAX_RECEIVED_ITEMS);
                for item in items {
                    prop_assert!(item.message_id.map_or(0, |m| m.len()) <= MAX_PROPERTY_LEN);
                }
            }
        }
    }
}
