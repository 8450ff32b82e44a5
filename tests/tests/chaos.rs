//! Short chaos runs as part of `make test`: seeds back to back, each with every program
//! SIGKILLed at least once and one broker restart (on a private node); every invariant must
//! hold. A seed that once failed joins the list, and stays there as a regression test. The
//! same runs go on Kafka (a private tansu broker).

use std::path::Path;

/// Seeds run in `make test`: two chosen at random once, and any seed a soak found failing.
const SEEDS: (u64, u64) = (11, 2);

/// Seeds run on Kafka.
const KAFKA_SEEDS: (u64, u64) = (11, 1);

/// Runs `sagactl chaos` for `seeds` with `more` arguments, and checks that every seed passed
/// with every program killed and (on a broker of its own) the broker restarted.
fn chaos_keeps_every_invariant(seeds: (u64, u64), more: &[&str], report: &Path) {
    let (first, count) = seeds;
    let output = std::process::Command::new(sagaflow_tests::procs::binary("sagactl"))
        .args(["chaos", "--orders", "200", "--duration", "6", "--kill-interval", "600"])
        .args(["--seed", &first.to_string(), "--seeds", &count.to_string()])
        .args(more)
        .arg("--report")
        .arg(report)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sagactl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chaos {more:?} found violations or could not judge (exit {:?}):\n{stdout}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    for seed in first..first + count {
        // One seed writes its report where it was told; several, one file per seed.
        let path =
            if count == 1 { report.to_owned() } else { report.with_extension(format!("seed{seed}.json")) };
        if count > 1 {
            assert!(
                stdout.lines().any(|l| l.starts_with(&seed.to_string()) && l.ends_with("pass")),
                "no passing line for seed {seed}:\n{stdout}"
            );
        }
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

#[test]
fn short_chaos_runs_keep_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    chaos_keeps_every_invariant(SEEDS, &[], &dir.path().join("report.json"));
}

/// On Kafka the run always owns its broker (a private tansu), so it always restarts it.
#[test]
fn a_short_chaos_run_on_kafka_keeps_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    chaos_keeps_every_invariant(KAFKA_SEEDS, &["--bus", "kafka"], &report);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["ownsBroker"], true);
}
