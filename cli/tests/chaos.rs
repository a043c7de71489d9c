//! The fault suite in its short form: `storefront chaos` with a fault every
//! few seconds must lose and duplicate nothing, on one Apache Kafka node
//! (services killed, the broker stopped, a service frozen, the services
//! restarted, a burst) and on a three-node cluster (one broker fault of
//! each kind: a crash, a rolling restart, a freeze). It runs the real
//! binary, which starts its own broker and the five services as processes.
//! The full form, repeated, is `storefront chaos --runs N` (docs/reliability.md).

use std::{process::Command, sync::Mutex};

/// One suite at a time: each runs a broker and six services on two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `storefront chaos` with `args` and checks its report: nothing lost
/// or duplicated, and pages were answered.
fn chaos(name: &str, args: &[&str]) -> String {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let work_dir = std::env::temp_dir().join(format!(
        "storefront-chaos-test-{name}-{}",
        std::process::id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .arg("chaos")
        .args(args)
        .arg("--work-dir")
        .arg(&work_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("storefront runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the suite failed (logs in {}):\n{report}\n{progress}",
        work_dir.display()
    );
    let count = |label: &str| -> u64 {
        report
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in the report:\n{report}"))
    };
    assert_eq!(count("lost"), 0, "{report}");
    assert_eq!(count("duplicated"), 0, "{report}");
    assert!(count("completed") > 0, "{report}");
    assert!(count("accepted") > 0, "{report}");
    let _ = std::fs::remove_dir_all(&work_dir);
    report
}

#[test]
fn nothing_is_lost_or_duplicated_under_kills_a_broker_outage_and_a_frozen_service() {
    chaos("one-node", &["--fault-interval-secs", "4", "--rate", "10"]);
}

#[test]
fn nothing_is_lost_or_duplicated_when_a_cluster_node_crashes_restarts_or_freezes() {
    let report = chaos(
        "cluster",
        &[
            "--brokers",
            "3",
            "--faults",
            "kill-leader,rolling-restart,freeze-leader",
            "--fault-interval-secs",
            "4",
            "--broker-outage-secs",
            "5",
            "--rate",
            "10",
        ],
    );
    for fault in ["SIGKILL", "rolling restart", "frozen"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("broker fault") && l.contains(fault)),
            "no figures for the {fault} fault:\n{report}"
        );
    }
}
