//! The benchmark's short form: `storefront bench --smoke` runs every design
//! through every scenario and a two-rate capacity curve on a real broker,
//! and its figures are sane. How fast anything is, is not checked here
//! (the machine is shared); `docs/benchmarks.md` has measured figures.

use serde_json::Value;

#[test]
fn the_smoke_bench_runs_every_design_and_scenario_and_reports_sane_figures() {
    let dir = std::env::temp_dir().join(format!("storefront-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg, markdown) = (
        dir.join("report.json"),
        dir.join("capacity.svg"),
        dir.join("report.md"),
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["bench", "--smoke", "--work-dir"])
        .arg(dir.join("work"))
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .arg("--out")
        .arg(&markdown)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("STOREFRONT_TOPIC_PREFIX")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the bench failed:\n{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    assert!(
        report["machine"]
            .as_str()
            .unwrap()
            .contains("broker: Apache Kafka"),
        "the report names the broker: {}",
        report["machine"]
    );
    let floor = &report["floor"];
    assert!(floor["records"].as_u64().unwrap() > 0, "{floor}");
    let (hop50, hop99) = (
        floor["hop_p50_ms"].as_f64().unwrap(),
        floor["hop_p99_ms"].as_f64().unwrap(),
    );
    assert!(hop50 > 0.0 && hop50 <= hop99, "{floor}");
    // JSON numbers parse back to within an ulp, not always to the same f64.
    let floor50 = floor["floor_p50_ms"].as_f64().unwrap();
    assert!(
        (floor50 - hop50 * 4.0).abs() < 1e-6,
        "the floor is 4 hops: {floor}"
    );

    let designs = ["choreography", "chain", "fanout", "redis"];
    let scenarios = ["healthy", "slow-ads", "killed", "burst"];
    let results = report["scenarios"].as_array().unwrap();
    for design in designs {
        for scenario in scenarios {
            let result = results
                .iter()
                .find(|r| r["design"] == design && r["scenario"] == scenario)
                .unwrap_or_else(|| panic!("no {design} {scenario} in the report"));
            let s = &result["summary"];
            let sent = s["sent"].as_u64().unwrap();
            let counted = ["complete", "partial", "errors", "lost"]
                .iter()
                .map(|k| s[k].as_u64().unwrap())
                .sum::<u64>();
            assert_eq!(counted, sent, "every request is counted once: {result}");
            assert!(sent > 0);
            let ps: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]
                .iter()
                .map(|k| s[k].as_f64().unwrap())
                .collect();
            assert!(ps[0] > 0.0, "{result}");
            assert!(
                ps.windows(2).all(|w| w[0] <= w[1]),
                "percentiles in order: {result}"
            );
            // How many complete in time depends on the machine's speed,
            // which is the report's business; that pages come at all is not.
            if scenario == "healthy" {
                let pages = s["complete"].as_u64().unwrap() + s["partial"].as_u64().unwrap();
                assert!(pages > 0, "a healthy run serves pages: {result}");
            }
        }
        let rows: Vec<&Value> = report["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["process"] == "gateway" && p["design"] == design)
            .collect();
        assert_eq!(rows.len(), 1, "{design}");
        assert!(
            rows[0]["peak_rss_mib"].as_f64().unwrap() > 1.0,
            "{design}: {}",
            rows[0]
        );
        assert!(rows[0]["cpu_percent"].as_f64().unwrap() >= 0.0);
        assert!(
            report["capacity"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["design"] == design),
            "{design} has a capacity point"
        );
    }
    let idle = report["idle"].as_array().unwrap();
    for process in ["broker", "gateway", "aggregator"] {
        let row = idle
            .iter()
            .find(|p| p["process"] == process)
            .unwrap_or_else(|| panic!("no idle CPU of {process}: {idle:?}"));
        assert!(row["cpu_percent"].as_f64().unwrap() >= 0.0, "{row}");
    }
    // The tap scenario: the choreography only, without, with the tap, and
    // with it under the analytics quota; the tap read records each time.
    let taps = report["taps"].as_array().unwrap();
    assert_eq!(taps.len(), 1, "{taps:?}");
    let tap = &taps[0];
    let runs = [
        &tap["without"],
        &tap["with_tap"],
        &tap["quota"]["run"],
        &tap["idle_priority"],
        &tap["without_after"],
    ];
    for run in runs {
        assert!(run["summary"]["sent"].as_u64().unwrap() > 0, "{tap}");
        assert!(run["summary"]["p99_ms"].as_f64().unwrap() > 0.0, "{tap}");
        assert!(run["broker_cpu_percent"].as_f64().unwrap() > 0.0, "{tap}");
    }
    for (run, tapped) in runs.iter().zip([false, true, true, true, false]) {
        assert_eq!(run["tap"].is_object(), tapped, "{run}");
        if tapped {
            assert!(
                run["tap"]["records"].as_u64().unwrap() > 0,
                "the tap read: {tap}"
            );
        }
    }
    assert!(
        results
            .iter()
            .all(|r| r["scenario"] != "tap" || r["design"] == "choreography"),
        "only the choreography is tapped"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    let markdown = std::fs::read_to_string(&markdown).unwrap();
    assert!(
        markdown.contains("| choreography | healthy |"),
        "{markdown}"
    );
    assert!(markdown.contains("**Targets**"), "{markdown}");
    assert!(markdown.contains("**Analytics tap**"), "{markdown}");
    let _ = std::fs::remove_dir_all(&dir);
}
