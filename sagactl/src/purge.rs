//! `sagactl purge`: deletes a namespace's queues and exchanges (on Kafka, its topics), with
//! whatever they hold.
//!
//! For a namespace that is done with (a demo, a test, a system taken down for good): every
//! quorum queue left behind costs the broker a Raft group. It asks for `--yes`, since what the
//! queues hold (orders not yet consumed, dead letters) goes with them; without it, it lists
//! what it would delete.

use crate::output::say;
use anyhow::Context;
use sagaflow_events::Topology;
use sagaflow_runtime::bus::kafka;
use sagaflow_runtime::config::{BusKind, KafkaBrokers, KafkaSettings};

#[derive(Debug, Clone, clap::Args)]
pub struct PurgeArgs {
    /// The namespace to delete.
    #[arg(long, env = "SAGA_NAMESPACE")]
    namespace: String,
    /// The broker.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    amqp_url: String,
    /// The broker: `rabbitmq` (AMQP_URL) or `kafka` (KAFKA_BROKERS).
    #[arg(long, value_enum, env = "BUS", default_value_t = BusKind::Rabbitmq)]
    bus: BusKind,
    /// The Kafka brokers (with --bus kafka).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: KafkaBrokers,
    /// Delete, rather than list what would be deleted.
    #[arg(long)]
    yes: bool,
}

pub async fn run(args: PurgeArgs) -> anyhow::Result<()> {
    let topology = Topology::new(args.namespace.clone());
    if args.bus == BusKind::Kafka {
        return run_kafka(args, topology).await;
    }
    let listed = serde_json::json!({
        "namespace": args.namespace,
        "queues": topology.all_queues(),
        "exchanges": topology.all_exchanges(),
        "deleted": args.yes,
    });
    if !args.yes {
        crate::output::emit(&listed);
        say!("would delete the queues and exchanges of namespace {:?}:", args.namespace);
        for queue in topology.all_queues() {
            say!("  queue     {queue}");
        }
        for exchange in topology.all_exchanges() {
            say!("  exchange  {exchange}");
        }
        say!("run again with --yes to delete them and what they hold");
        return Ok(());
    }
    let connection = lapin::Connection::connect(&args.amqp_url, lapin::ConnectionProperties::default())
        .await
        .context("cannot reach the broker")?;
    let channel = connection.create_channel().await?;
    sagaflow_runtime::bus::amqp::topology::delete(&channel, &topology)
        .await
        .with_context(|| format!("deleting namespace {:?}", args.namespace))?;
    say!("deleted the queues and exchanges of namespace {:?}", args.namespace);
    crate::output::emit(&listed);
    Ok(())
}

async fn run_kafka(args: PurgeArgs, topology: Topology) -> anyhow::Result<()> {
    let topics: Vec<String> = kafka::namespace_topics(&topology, 1).into_iter().map(|(t, _)| t).collect();
    if !args.yes {
        crate::output::emit(
            &serde_json::json!({ "namespace": args.namespace, "topics": topics, "deleted": false }),
        );
        say!("would delete the topics of namespace {:?}:", args.namespace);
        for topic in &topics {
            say!("  topic     {topic}");
        }
        say!("run again with --yes to delete them and what they hold");
        return Ok(());
    }
    let settings = KafkaSettings::at(args.kafka_brokers.clone());
    let deleted = kafka::delete_topics(&settings, &topology)
        .await
        .with_context(|| format!("deleting the topics of namespace {:?}", args.namespace))?;
    say!("deleted {} topics of namespace {:?}", deleted.len(), args.namespace);
    crate::output::emit(
        &serde_json::json!({ "namespace": args.namespace, "topics": deleted, "deleted": true }),
    );
    Ok(())
}
