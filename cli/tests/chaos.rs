//! The fault suite in its short form: `storefront chaos` with a fault every
//! few seconds must lose and duplicate nothing. It runs the real binary,
//! which starts its own broker (one Apache Kafka node) and the five services as processes.

use std::process::Command;

#[test]
fn nothing_is_lost_or_duplicated_under_kills_a_broker_outage_and_a_frozen_service() {
    let work_dir =
        std::env::temp_dir().join(format!("storefront-chaos-test-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["chaos", "--fault-interval-secs", "4", "--rate", "10"])
        .arg("--work-dir")
        .arg(&work_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("storefront runs");
    let report = String::from_utf8_lossy(&output.stdout);
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
}
