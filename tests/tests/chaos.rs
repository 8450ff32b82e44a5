//! Short chaos runs as part of `make test`: seeds back to back, each with every program
//! SIGKILLed at least once and one broker restart (on a private node); every invariant must
//! hold. A seed that once failed joins the list, and stays there as a regression test.

/// Seeds run in `make test`: two chosen at random once, and any seed a soak found failing.
const SEEDS: (u64, u64) = (11, 2);

#[test]
fn short_chaos_runs_keep_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let (first, count) = SEEDS;
    let output = std::process::Command::new(sagaflow_tests::procs::binary("sagactl"))
        .args(["chaos", "--orders", "200", "--duration", "6", "--kill-interval", "600"])
        .args(["--seed", &first.to_string(), "--seeds", &count.to_string()])
        .arg("--report")
        .arg(&report)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sagactl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chaos found violations or could not judge (exit {:?}):\n{stdout}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    for seed in first..first + count {
        assert!(
            stdout.lines().any(|l| l.starts_with(&seed.to_string()) && l.ends_with("pass")),
            "no passing line for seed {seed}:\n{stdout}"
        );
        let path = report.with_extension(format!("seed{seed}.json"));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(report["passed"], true);
        assert_eq!(report["orders"], 200);
        for program in ["orchestrator", "payment", "inventory", "notification"] {
            let kills = report["kills"][program].as_u64().unwrap_or(0);
            assert!(kills >= 1, "seed {seed}: {program} was never killed: {stdout}");
        }
        if report["ownsBroker"] == true {
            assert!(
                report["brokerRestarts"].as_u64().unwrap() >= 1,
                "seed {seed}: the broker was never restarted"
            );
        }
        assert_eq!(report["invariants"].as_array().unwrap().len(), 5);
    }
    println!("{stdout}");
}

/// The same run on Kafka (a private tansu broker): every program SIGKILLed at least once and
/// one broker restart, with the same invariants.
#[test]
fn a_short_chaos_run_on_kafka_keeps_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = std::process::Command::new(sagaflow_tests::procs::binary("sagactl"))
        .args(["chaos", "--bus", "kafka", "--orders", "200", "--duration", "6", "--kill-interval", "600"])
        .args(["--seed", "11"])
        .arg("--report")
        .arg(&report)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sagactl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chaos on kafka found violations or could not judge (exit {:?}):\n{stdout}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    for program in ["orchestrator", "payment", "inventory", "notification"] {
        assert!(report["kills"][program].as_u64().unwrap_or(0) >= 1, "{program} was never killed: {stdout}");
    }
    assert_eq!(report["ownsBroker"], true);
    assert!(report["brokerRestarts"].as_u64().unwrap() >= 1, "the broker was never restarted");
    println!("{stdout}");
}
