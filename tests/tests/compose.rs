//! Docker may not run where tests do, so this keeps docker-compose.yml honest another way:
//! every program it runs is a binary of this workspace, and every environment variable it sets
//! for a program is one that program documents in `--help` (or is read by the runtime:
//! RUST_LOG).

use std::collections::BTreeMap;

/// service -> (command, environment variable names), read from the compose file's layout.
fn programs(compose: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let (mut service, mut in_env) = (None::<String>, false);
    for line in compose.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 2 && text.ends_with(':') {
            service = Some(text.trim_end_matches(':').to_owned());
            in_env = false;
        } else if indent == 4 {
            in_env = text == "environment:";
            if let (Some(s), Some(command)) = (&service, text.strip_prefix("command: [\"")) {
                let command = command.trim_end_matches("\"]").to_owned();
                out.entry(s.clone()).or_default().0 = command;
            }
        } else if indent == 6 && in_env {
            if let (Some(s), Some((key, _))) = (&service, text.split_once(':')) {
                out.entry(s.clone()).or_default().1.push(key.to_owned());
            }
        }
    }
    out.retain(|_, (command, _)| !command.is_empty());
    out
}

#[test]
fn every_program_and_variable_in_the_compose_file_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let programs = programs(&compose);
    let names: Vec<&str> = programs.values().map(|(c, _)| c.as_str()).collect();
    assert_eq!(names, ["inventory", "notification", "orchestrator", "payment"], "the four programs run");
    for (service, (command, env)) in &programs {
        let binary = sagaflow_tests::procs::binary(command);
        let help = std::process::Command::new(&binary).arg("--help").output().expect("--help runs");
        assert!(help.status.success(), "{command} --help failed");
        let help = String::from_utf8_lossy(&help.stdout);
        for key in env {
            if key == "RUST_LOG" {
                continue;
            }
            // Secrets are documented without their values.
            assert!(
                help.contains(&format!("[env: {key}=")) || help.contains(&format!("[env: {key}]")),
                "service {service}: {command} --help does not document {key}"
            );
        }
    }
    assert!(root.join("Dockerfile").exists());
}

/// The deployment is closed by default: ports on 127.0.0.1 only, no broker port for the world,
/// no guest account, and a token on every program.
#[test]
fn the_compose_file_publishes_nothing_beyond_this_machine() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let published: Vec<&str> = compose
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("- \"") && l.ends_with('"') && l.contains(':'))
        .collect();
    assert!(!published.is_empty());
    for port in &published {
        assert!(port.starts_with("- \"127.0.0.1:"), "published beyond this machine: {port}");
        assert!(!port.contains(":5672\""), "the broker's AMQP port is published: {port}");
    }
    assert!(
        !compose.contains("guest:guest") && !compose.contains("USER: guest"),
        "the broker keeps a guest account"
    );
    assert!(
        compose.contains("RABBITMQ_DEFAULT_PASS: ${RABBITMQ_PASSWORD:?"),
        "the broker password is not required"
    );
    for (service, (command, env)) in programs(&compose) {
        assert!(env.iter().any(|k| k == "API_TOKEN"), "{service} ({command}) runs without API_TOKEN");
    }
}

/// The `kafka` profile runs a real Kafka in KRaft mode (no ZooKeeper) in place of RabbitMQ, with
/// no port of its own published; the programs choose it with BUS and find it at KAFKA_BROKERS.
#[test]
fn the_kafka_profile_runs_kafka_in_kraft_mode_in_place_of_rabbitmq() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let kafka = compose.split("\n  kafka:\n").nth(1).expect("a kafka service").split("\n\n").next().unwrap();
    assert!(kafka.contains("profiles: [\"kafka\"]"), "{kafka}");
    assert!(kafka.contains("KAFKA_PROCESS_ROLES: broker,controller"), "KRaft: {kafka}");
    assert!(!compose.to_lowercase().contains("zookeeper:"), "no ZooKeeper service");
    assert!(!kafka.contains("ports:"), "Kafka is reached on the compose network only");
    let rabbit = compose.split("\n  rabbitmq:\n").nth(1).expect("a rabbitmq service");
    assert!(rabbit.trim_start().starts_with("profiles: [\"rabbitmq\"]"), "RabbitMQ is a profile too");
    let dotenv = std::fs::read_to_string(root.join(".env")).expect(".env chooses the default profile");
    assert!(dotenv.lines().any(|l| l == "COMPOSE_PROFILES=rabbitmq"), "{dotenv}");
    for (service, (command, env)) in programs(&compose) {
        for key in ["BUS", "KAFKA_BROKERS", "AMQP_URL"] {
            assert!(env.iter().any(|k| k == key), "{service} ({command}) lacks {key}");
        }
    }
}
