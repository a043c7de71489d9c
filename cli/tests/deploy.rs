//! `deploy/` describes the cluster the tests run: `deploy/validate.sh`
//! checks the compose file's Kafka version against `kafka/pom.xml` and each
//! node's settings against what `devstack/src/broker.rs` gives the tested
//! cluster, besides the structure it can check without a Docker engine.

use std::{path::Path, process::Command};

#[test]
fn the_compose_cluster_runs_the_tested_kafka_version_with_the_tested_settings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let output = Command::new("bash")
        .arg(root.join("deploy/validate.sh"))
        .current_dir(root)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "deploy/validate.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
