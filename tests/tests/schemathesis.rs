//! Schemathesis against the running gateway, from its own OpenAPI
//! document: every check (server errors, documented status codes, content
//! types and headers, response schemas, negative data rejected, positive
//! data accepted, unsupported methods, missing required headers, ignored
//! auth, object-level authorization between two sessions), the examples,
//! coverage and fuzzing phases, and the stateful phase that follows the
//! document's links from a login or a started page to its status, result
//! and events. Bounded for CI; `scripts/schemathesis` runs it longer.
//! `tests/schemathesis.toml` adds 408 and 413 to the statuses that count as
//! rejecting bad data; the one check left out is said where it is.
//!
//! `STOREFRONT_SCHEMATHESIS_EXAMPLES` (per operation, default 20) and
//! `STOREFRONT_SCHEMATHESIS_SECONDS` (the whole run, default 120) bound it.

use std::process::Command;

use storefront_devstack::stack::Service;
use storefront_e2e::{python::python, scratch_dir, TestStack};

fn setting(name: &str, default: u32) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| v.parse::<u32>().is_ok())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_the_api() {
    let test = TestStack::start_with(&Service::ALL, |config| {
        config.page_deadline_ms = 2_000;
        // Past the deadline and its grace, so a login is answered 200.
        config.sync_budget_ms = 5_000;
        // The fuzzer logs in far more often than a person.
        config.login_attempts_per_minute = (100_000, 100_000);
    })
    .await;
    let base = test.gateway().base;
    let dir = scratch_dir("schemathesis");
    std::fs::create_dir_all(&dir).unwrap();

    // Two people, so object-level authorization is checked between them.
    let peer = |name: &str| {
        serde_json::json!({
            "name": name,
            "loginEndpointAuth": {
                "endpoint": "/api/login",
                "verb": "POST",
                "contentType": "application/json",
                "payloadUserPwd": {
                    "username": name,
                    "password": format!("{name}-password"),
                    "usernameField": "username",
                    "passwordField": "password",
                },
                "expectCookies": true,
            },
        })
    };
    let auth = dir.join("auth.json");
    let document = serde_json::json!({"auth": [peer("user1"), peer("user2")]});
    std::fs::write(&auth, document.to_string()).unwrap();

    let examples = setting("STOREFRONT_SCHEMATHESIS_EXAMPLES", 20);
    let seconds = setting("STOREFRONT_SCHEMATHESIS_SECONDS", 120);
    let report_dir = dir.display().to_string();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            // Schemathesis keeps a cache in its working directory.
            .current_dir(&report_dir)
            .args([
                "-c",
                "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; sys.exit(schemathesis())",
                "--config-file",
                config,
                "run",
                &format!("{base}/api/openapi.json"),
                "--checks",
                "all",
                // A login or logout in a sequence replaces the session
                // cookie, and a request belongs to the session that made
                // it: to the next session it is rightly 404.
                "--exclude-checks",
                "ensure_resource_availability",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--auth-wfc",
                &auth.display().to_string(),
                "--max-examples",
                &examples,
                "--max-time",
                &seconds,
                "--workers",
                "2",
                "--seed",
                "20261202",
                "--request-timeout",
                "10",
                "--generation-database",
                "none",
                "--report",
                "junit",
                "--report-dir",
                &report_dir,
                "--no-color",
            ])
            .output()
            .expect("schemathesis runs (scripts/prepare.sh --test installs it)")
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    println!("{printed}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "Schemathesis found failures (above); its JUnit report is in {}",
        dir.display()
    );
}
