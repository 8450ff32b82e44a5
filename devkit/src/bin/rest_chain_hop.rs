//! One hop of the REST chain that `sagactl bench` compares the saga with: the payment,
//! inventory or notification domain behind `POST /chain/orders`, with no bus.

use clap::Parser;
use sagaflow_events::{Catalog, Participant};
use sagaflow_services::config::ServiceArgs;
use sagaflow_services::inventory::Inventory;
use sagaflow_services::notification::Notification;
use sagaflow_services::payment::Payment;

/// Serves one participant's domain as a hop of a synchronous REST chain (bench only).
#[derive(Parser)]
#[command(name = "rest-chain-hop", version)]
struct Args {
    /// Which domain this hop runs.
    #[arg(long, env = "PARTICIPANT")]
    participant: Participant,
    /// The next hop (its base URL), if this is not the last.
    #[arg(long, env = "CHAIN_NEXT")]
    chain_next: Option<String>,
    /// Catalog file with the initial stock (inventory); the built-in catalog if not set.
    #[arg(long, env = "CATALOG")]
    catalog: Option<std::path::PathBuf>,
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sagaflow_runtime::telemetry::init(args.service.common.log_format);
    let stop = sagaflow_runtime::shutdown::on_signal();
    let data_dir = args.service.data_dir(args.participant);
    let hop = sagaflow_devkit::rest_chain::HopArgs {
        http: args.service.http,
        data_dir: data_dir.clone(),
        next: args.chain_next,
    };
    use sagaflow_devkit::rest_chain::run;
    match args.participant {
        Participant::Payment => {
            let payment = Payment {
                decline_over_cents: None,
                deny_users: Vec::new(),
                decline_rate: 0.0,
                seed: args.service.seed,
            };
            run(payment, hop, 8081, stop).await
        }
        Participant::Inventory => {
            let catalog = Catalog::load_or_builtin(args.catalog.as_deref())?;
            run(Inventory { catalog }, hop, 8082, stop).await
        }
        Participant::Notification => run(Notification::new(&data_dir)?, hop, 8083, stop).await,
    }
}
