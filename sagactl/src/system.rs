//! A whole system started for one run (demo, bench): the broker step, then the four programs in
//! a fresh namespace and data folder, with logs in files. `stop` undoes all of it, including the
//! namespace's queues on a shared broker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sagaflow_runtime::config::{BusKind, KafkaBrokers};

use crate::supervisor::{self, Logs, Program, Supervisor};

/// Which broker a run uses (`up`, `demo`, `bench`): the same settings as the programs'.
#[derive(Debug, Clone, clap::Args)]
pub struct BusChoice {
    /// `rabbitmq` (AMQP_URL, else the broker step), or `kafka` (KAFKA_BROKERS, else a private
    /// tansu broker, which scripts/kafka.sh installs).
    #[arg(long, value_enum, env = "BUS", default_value_t = BusKind::Rabbitmq)]
    pub bus: BusKind,
    /// The Kafka brokers to run on, host:port comma-separated (with --bus kafka); without, a
    /// private tansu broker.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<KafkaBrokers>,
}

pub struct StartedSystem {
    pub programs: Vec<Program>,
    pub supervisor: Supervisor,
    pub broker: sagaflow_devkit::broker::Broker,
    pub namespace: String,
    pub dir: PathBuf,
}

impl StartedSystem {
    /// Finds or starts the broker `choice` names (its private node, if any, under `dir/broker`).
    pub async fn broker(dir: &Path, choice: &BusChoice) -> anyhow::Result<sagaflow_devkit::broker::Broker> {
        let broker_dir = dir.join("broker");
        let (bus, kafka) = (choice.bus, choice.kafka_brokers.clone());
        tokio::task::spawn_blocking(move || {
            sagaflow_devkit::broker::find_or_start_bus(bus, kafka.as_ref(), &broker_dir)
        })
        .await?
        .map_err(anyhow::Error::msg)
    }

    /// Starts the four programs on `broker` with data and logs in `dir`; `extra` adds settings
    /// per program as (program or "*", variable, value).
    pub async fn start_on(
        broker: sagaflow_devkit::broker::Broker,
        dir: &Path,
        namespace: &str,
        extra: &[(&str, &str, &str)],
    ) -> anyhow::Result<Self> {
        let ports = [0; 4].map(|_| sagaflow_devkit::broker::free_port());
        let programs = supervisor::plan(namespace, &broker, dir, ports, extra);
        let supervisor = Supervisor::start(&programs, Logs::Files(dir.to_path_buf()));
        let system =
            Self { programs, supervisor, broker, namespace: namespace.to_owned(), dir: dir.to_path_buf() };
        if let Err(e) = supervisor::wait_healthy(&system.programs, Duration::from_secs(60)).await {
            system.stop().await;
            return Err(e);
        }
        Ok(system)
    }

    /// The orchestrator's HTTP address.
    pub fn api(&self) -> &str {
        &self.programs[0].http
    }

    pub fn program(&self, name: &str) -> &Program {
        self.programs.iter().find(|p| p.name == name).expect("one of the four programs")
    }

    /// Stops the programs and deletes the namespace; hands the broker back for another run.
    pub async fn stop_programs(self) -> sagaflow_devkit::broker::Broker {
        self.supervisor.stop().await;
        // A namespace made for one run should not stay behind on a shared broker. (On Kafka the
        // broker is the run's own, or the operator's: its topics are left as they are.)
        if self.broker.kafka.is_some() {
            return self.broker;
        }
        if let Ok(connection) =
            lapin::Connection::connect(&self.broker.url, lapin::ConnectionProperties::default()).await
        {
            if let Ok(channel) = connection.create_channel().await {
                let topology = sagaflow_events::Topology::new(self.namespace.clone());
                let _ = sagaflow_runtime::bus::amqp::topology::delete(&channel, &topology).await;
            }
            let _ = connection.close(200, "bye".into()).await;
        }
        self.broker
    }

    /// Stops everything, the private broker (if one was started) included.
    pub async fn stop(self) {
        drop(self.stop_programs().await);
    }
}
