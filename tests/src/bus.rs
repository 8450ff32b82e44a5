//! A real AMQP client for tests: it declares the namespace's topology (with the same code the
//! programs use), plays participants, watches public events and reads the dead-letter queue.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sagaflow_events::{
    CommandMessage, Participant, PaymentId, Phase, PublicEvent, ReplyMessage, ReplyOutcome, Topology,
};

pub struct TestBus {
    _connection: Connection,
    channel: Channel,
    pub topology: Topology,
    url: String,
}

impl TestBus {
    pub async fn connect(url: &str, namespace: &str) -> Self {
        // A broker that just started may refuse connections for a moment.
        let connection =
            crate::wait::until("the test bus to connect", std::time::Duration::from_secs(30), || async {
                let connect = Connection::connect(url, ConnectionProperties::default());
                tokio::time::timeout(std::time::Duration::from_secs(5), connect).await.ok()?.ok()
            })
            .await;
        let channel = connection.create_channel().await.expect("channel");
        let topology = Topology::new(namespace);
        sagaflow_runtime::bus::amqp::topology::declare(&channel, &topology).await.expect("declare topology");
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        Self { _connection: connection, channel, topology, url: url.to_owned() }
    }

    /// Publishes and waits for the broker's confirm.
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8], correlation_id: &str) {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_correlation_id(correlation_id.into());
        self.publish_raw(exchange, routing_key, body, properties).await;
    }

    /// An `OrderPlaced` on the intake exchange.
    pub async fn place_order(&self, body: &str) {
        self.publish(&self.topology.intake_exchange(), "", body.as_bytes(), "test").await;
    }

    pub async fn send_reply(&self, reply: &ReplyMessage) {
        let body = serde_json::to_vec(reply).expect("serialise");
        self.publish(&self.topology.replies_exchange(), "", &body, reply.order_id.as_str()).await;
    }

    /// Binds a private queue to the public events exchange and collects every event.
    pub async fn watch_events(&self) -> EventLog {
        let connection =
            Connection::connect(&self.url, ConnectionProperties::default()).await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("event queue");
        channel
            .queue_bind(
                queue.name().clone(),
                self.topology.events_exchange().as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let mut consumer = channel
            .basic_consume(
                queue.name().clone(),
                "events".into(),
                BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let log = EventLog::default();
        let events = log.events.clone();
        tokio::spawn(async move {
            let _keep = connection;
            while let Some(Ok(delivery)) = consumer.next().await {
                let key = delivery.routing_key.as_str().to_owned();
                match serde_json::from_slice::<PublicEvent>(&delivery.data) {
                    Ok(event) => events.lock().unwrap().push((key, event)),
                    Err(e) => panic!(
                        "a public event does not parse: {e}: {}",
                        String::from_utf8_lossy(&delivery.data)
                    ),
                }
            }
        });
        log
    }

    /// Takes every message in the dead-letter queue: (reason header, body as text).
    pub async fn take_dead_letters(&self) -> Vec<(Option<String>, String)> {
        self.take_dead_letter_messages()
            .await
            .into_iter()
            .map(|m| {
                (
                    m.header(sagaflow_events::headers::DEAD_LETTER_REASON),
                    String::from_utf8_lossy(&m.body).into_owned(),
                )
            })
            .collect()
    }

    /// Takes every message in the dead-letter queue, whole.
    pub async fn take_dead_letter_messages(&self) -> Vec<Taken> {
        let mut out = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(self.topology.dead_letter_queue().as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let delivery = message.delivery;
            out.push(Taken { body: delivery.data, properties: delivery.properties });
        }
        out
    }

    /// Publishes raw bytes with the given properties, and waits for the broker's confirm.
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// Starts a participant double on `participant`'s command queue. It reconnects by itself,
    /// so it survives a broker restart like the real services do.
    pub async fn participant(
        &self,
        participant: Participant,
        script: impl Fn(&CommandMessage) -> Answer + Send + Sync + 'static,
    ) -> ParticipantDouble {
        let shared: Arc<Mutex<DoubleState>> = Arc::default();
        let state = shared.clone();
        let script = Arc::new(script);
        let url = self.url.clone();
        let topology = self.topology.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let task = tokio::spawn(async move {
            loop {
                let consumed =
                    serve_double(&url, &topology, participant, &state, script.as_ref(), &mut ready_tx).await;
                if let Err(e) = consumed {
                    eprintln!("participant double {participant}: {e}; reconnecting");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        });
        let _ = ready_rx.await;
        ParticipantDouble { state: shared, task: Some(task) }
    }
}

/// The longest a double's connect, declare and consume may take before it starts again, as
/// the real services' bus sessions do: a broker that is still starting can accept a connection
/// and not answer, and a double waiting on it forever answers no command again.
const DOUBLE_SETUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

async fn serve_double(
    url: &str,
    topology: &Topology,
    participant: Participant,
    state: &Arc<Mutex<DoubleState>>,
    script: &(dyn Fn(&CommandMessage) -> Answer + Send + Sync),
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let setup = async {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        sagaflow_runtime::bus::amqp::topology::declare(&channel, topology).await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                topology.command_queue(participant).as_str().into(),
                format!("double-{participant}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((connection, channel, consumer))
    };
    // The connection is held for as long as the double consumes.
    let (_connection, channel, mut consumer) = tokio::time::timeout(DOUBLE_SETUP_LIMIT, setup).await??;
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    let replies = topology.replies_exchange();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        // Commands ready together come as one batch: each item is a command of its own.
        let received = sagaflow_runtime::bus::amqp::properties::received(0, "double", &delivery);
        for item in sagaflow_runtime::bus::Delivery::of(received).items() {
            let command: CommandMessage = serde_json::from_slice(&item.body).expect("commands parse");
            let answer = script(&command);
            let outcome = state.lock().unwrap().handle(&command, answer);
            if let Some((outcome, payment_id)) = outcome {
                let reply = ReplyMessage { payment_id, ..ReplyMessage::answering(&command, outcome) };
                let body = serde_json::to_vec(&reply).expect("serialise");
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_correlation_id(command.order_id.as_str().into());
                channel
                    .basic_publish(
                        replies.as_str().into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await?
                    .await?;
            }
        }
        delivery.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}

impl Drop for TestBus {
    /// Deletes the namespace's queues and exchanges, even when the test failed: a shared broker
    /// slows down with every quorum queue left behind.
    fn drop(&mut self) {
        let (url, topology) = (self.url.clone(), self.topology.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let connect = Connection::connect(&url, ConnectionProperties::default());
                let connection =
                    tokio::time::timeout(std::time::Duration::from_secs(5), connect).await.ok()?.ok()?;
                let channel = connection.create_channel().await.ok()?;
                let deleted = sagaflow_runtime::bus::amqp::topology::delete(&channel, &topology);
                tokio::time::timeout(std::time::Duration::from_secs(20), deleted).await.ok()?.ok()
            })
        });
        if cleanup.join().ok().flatten().is_none() {
            eprintln!("could not delete test namespace {}", self.topology.namespace());
        }
    }
}

/// A message taken from a queue, as it was.
pub struct Taken {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Taken {
    /// A header's value as text (long or short string), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let headers = self.properties.headers().as_ref()?;
        match headers.inner().get(name)? {
            lapin::types::AMQPValue::LongString(s) => {
                Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
            }
            lapin::types::AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            other => Some(format!("{other:?}")),
        }
    }
}

/// How a participant double answers one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Succeed,
    Refuse(String),
    Transient(String),
    /// Take the command and never answer.
    Silent,
}

/// The public events seen so far: (routing key, event).
#[derive(Clone, Default)]
pub struct EventLog {
    pub events: Arc<Mutex<Vec<(String, PublicEvent)>>>,
}

impl EventLog {
    pub fn names_for(&self, order_id: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.order_id().as_str() == order_id)
            .map(|(_, e)| e.name().to_owned())
            .collect()
    }
}

/// A participant played by the test, with the barrier of the real services: the same key is
/// applied once and answered the same way; a compensation without its action is a null
/// compensation; an action after its compensation is refused.
#[derive(Default)]
pub struct ParticipantDouble {
    pub state: Arc<Mutex<DoubleState>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ParticipantDouble {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl ParticipantDouble {
    pub fn received(&self) -> Vec<CommandMessage> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn received_for(&self, order_id: &str) -> Vec<CommandMessage> {
        self.received().into_iter().filter(|c| c.order_id.as_str() == order_id).collect()
    }

    /// Stops consuming; unacknowledged commands go back to the queue.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Default)]
pub struct DoubleState {
    pub received: Vec<CommandMessage>,
    /// First answer per idempotency key.
    answers: HashMap<String, (ReplyOutcome, Option<PaymentId>)>,
    /// Sagas whose compensation ran (or ran as a null compensation).
    compensated: HashSet<String>,
    /// Sagas whose action's effect is in place now.
    pub effect_present: HashSet<String>,
    /// How many times each saga's action took effect: more than 1 is a double charge.
    pub times_applied: HashMap<String, u32>,
}

impl DoubleState {
    fn handle(
        &mut self,
        command: &CommandMessage,
        answer: Answer,
    ) -> Option<(ReplyOutcome, Option<PaymentId>)> {
        self.received.push(command.clone());
        // Books by order: the tests place each order id once.
        let saga = command.order_id.to_string();
        match answer {
            Answer::Silent => return None,
            Answer::Transient(reason) => {
                return Some((ReplyOutcome::Transient { reason: reason.into() }, None))
            }
            Answer::Succeed | Answer::Refuse(_) => {}
        }
        if let Some(first) = self.answers.get(&command.idempotency_key) {
            return Some(first.clone());
        }
        let result = match (command.phase, answer) {
            (Phase::Action, _) if self.compensated.contains(&saga) => {
                return Some((ReplyOutcome::Failed { reason: "already_compensated".into() }, None))
            }
            (Phase::Action, Answer::Refuse(reason)) => (ReplyOutcome::Failed { reason: reason.into() }, None),
            (Phase::Action, _) => {
                self.effect_present.insert(saga.clone());
                *self.times_applied.entry(saga.clone()).or_default() += 1;
                (ReplyOutcome::Succeeded, PaymentId::parse(format!("pay-{saga}")).ok())
            }
            (Phase::Compensation, _) => {
                self.effect_present.remove(&saga);
                self.compensated.insert(saga.clone());
                (ReplyOutcome::Succeeded, None)
            }
        };
        self.answers.insert(command.idempotency_key.clone(), result.clone());
        Some(result)
    }
}
