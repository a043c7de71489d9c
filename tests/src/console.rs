//! A storefront with its operator console, for the console's tests (API and
//! browser): all five services on the shared broker in their own namespace,
//! and the console on a free port with a fresh token, on a runtime thread
//! that serves them for the life of the test process.

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use storefront::console::{self, Console, ConsoleSettings};
use storefront_devstack::{keys::ConsoleToken, seed::Dataset, stack::Service};
use storefront_runtime::KafkaSettings;

use crate::{serve_for_the_process, Gateway, TestStack};

/// The template the console links trace IDs with, in these tests.
pub const TRACE_URL: &str = "http://tracing.invalid/trace/{trace_id}";

pub struct ConsoleStack {
    pub gateway: SocketAddr,
    pub console: SocketAddr,
    pub token: String,
    pub kafka: KafkaSettings,
    pub dataset: Dataset,
}

impl ConsoleStack {
    pub fn gateway(&self) -> Gateway {
        Gateway::at(self.gateway)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.console)
    }
}

/// The stack and console this test process shares.
pub fn console_stack() -> &'static ConsoleStack {
    static SHARED: OnceLock<ConsoleStack> = OnceLock::new();
    SHARED.get_or_init(|| {
        serve_for_the_process("the stack and its console", || async {
            let test = TestStack::start_with(&Service::ALL, |c| c.page_deadline_ms = 3_000).await;
            let token = ConsoleToken::generate();
            let running = console::start(
                Console {
                    kafka: test.config.kafka.clone(),
                    settings: ConsoleSettings {
                        console_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                        trace_url: Some(TRACE_URL.into()),
                    },
                    token: token.clone(),
                    unseal_key: Some(test.config.unseal_key.clone()),
                    page_deadline_ms: test.config.page_deadline_ms,
                },
                Default::default(),
            )
            .await
            .expect("the console starts");
            running
                .wait_ready(Duration::from_secs(60))
                .await
                .expect("the console's feed catches up");
            let shared = ConsoleStack {
                gateway: test.stack.gateway_addr().unwrap(),
                console: running.http_addr,
                token: token.expose().to_owned(),
                kafka: test.config.kafka.clone(),
                dataset: test.dataset,
            };
            (shared, (test.stack, running))
        })
    })
}
