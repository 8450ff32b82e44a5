//! A short chaos run as part of `make test`: at least 300 orders, every program SIGKILLed at
//! least once and one broker restart (on a private node); every invariant must hold.

#[test]
fn a_short_chaos_run_keeps_every_invariant() {
    let report = tempfile::NamedTempFile::new().unwrap();
    let output = std::process::Command::new(sagaflow_tests::procs::binary("sagactl"))
        .args(["chaos", "--orders", "300", "--duration", "8", "--kill-interval", "700", "--seed", "11"])
        .arg("--report")
        .arg(report.path())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sagactl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chaos found violations or failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.path()).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["orders"], 300);
    for program in ["orchestrator", "payment", "inventory", "notification"] {
        assert!(report["kills"][program].as_u64().unwrap_or(0) >= 1, "{program} was never killed: {stdout}");
    }
    if report["ownsBroker"] == true {
        assert!(report["brokerRestarts"].as_u64().unwrap() >= 1, "the broker was never restarted");
    }
    let invariants = report["invariants"].as_array().unwrap();
    assert_eq!(invariants.len(), 5);
    println!("{stdout}");
}
