//! Logs are JSON lines; every line about a request carries its request id,
//! session id and trace id; no secret is ever written. In its own test
//! binary because it installs the process-wide log subscriber.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use serde_json::Value;
use storefront_devstack::{seed, stack::Service};
use storefront_e2e::TestStack;
use storefront_runtime::logs::{subscriber, LogFormat};

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn lines_about_a_request_carry_its_ids_and_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(subscriber("info", LogFormat::Json, move || {
        writer.clone()
    }))
    .expect("the only subscriber of this process");

    let test = TestStack::start(&Service::ALL, 3_000).await;
    let gateway = test.gateway();
    let login = gateway
        .login(seed::DEMO_USERNAME, seed::DEMO_PASSWORD)
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let cookie = login.session_cookie().unwrap();
    let page = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(page.status, 200);
    let wrong = gateway.login(seed::DEMO_USERNAME, "hunter2-wrong").await;
    assert_eq!(wrong.status, 401);
    test.stack.stop().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(lines.len() > 10, "{text}");

    let request_id = login.body["request_id"].as_str().unwrap();
    let about_login: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id)
        .collect();
    let messages: Vec<&str> = about_login
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"resolved") && messages.contains(&"answered"),
        "user-svc and the gateway logged the login: {messages:?}"
    );
    let mut trace_ids = std::collections::HashSet::new();
    for line in &lines {
        let span = &line["span"];
        if span["request_id"].as_str().is_some_and(|id| !id.is_empty()) {
            let session = span["session_id"].as_str().unwrap_or_default();
            let trace = span["trace_id"].as_str().unwrap_or_default();
            assert!(!session.is_empty(), "a session id on {line}");
            assert!(
                trace.len() == 32 && trace != "0".repeat(32),
                "a trace id on {line}"
            );
            if span["request_id"] == request_id {
                trace_ids.insert(trace.to_owned());
            }
        }
    }
    assert_eq!(trace_ids.len(), 1, "one trace id for the login's lines");

    let cookie_value = cookie.split_once('=').unwrap().1;
    for secret in [seed::DEMO_PASSWORD, "hunter2-wrong", cookie_value] {
        assert!(!text.contains(secret), "{secret:?} appears in the logs");
    }
}
