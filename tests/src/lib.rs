//! The end-to-end harness: one real Apache Kafka node per test process, a
//! topic namespace per test stack, the five services started in-process on
//! free ports, and helpers to call the gateway and read topics back.

pub mod ads_world;
pub mod browser;
pub mod console;
pub mod driver_load;
pub mod java;
pub mod python;
pub mod sse;
pub mod telemetry;
pub mod webhooks;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use storefront_devstack::{
    broker::{Cluster, Ports},
    seed::{self, Dataset, SeedConfig},
    stack::{Service, Stack, StackConfig},
};
use storefront_runtime::{
    snapshot::{self, Since},
    Inbound, KafkaSettings,
};

/// The broker every test of this process shares; stopped when the process exits.
pub fn bootstrap_servers() -> String {
    static BROKER: OnceLock<Cluster> = OnceLock::new();
    BROKER
        .get_or_init(|| {
            let dir = scratch_dir("kafka");
            Cluster::start(&dir, 1, Ports::Free)
                .unwrap_or_else(|e| panic!("the test broker starts in {}: {e:#}", dir.display()))
        })
        .bootstrap_servers()
}

/// A new directory for this test process under the system's temporary
/// directory. Those of test processes that are no longer running are
/// removed first, so brokers' data does not pile up.
pub fn scratch_dir(name: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    let prefix = format!("storefront-test-{name}-");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tmp.join(format!(
        "{prefix}{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Kafka settings in a fresh topic namespace on the shared broker.
pub fn fresh_namespace() -> KafkaSettings {
    let mut settings = KafkaSettings::new(bootstrap_servers());
    settings.topic_prefix = format!("t{:08x}.", rand::random::<u32>());
    settings
}

/// A seeded namespace with services running in it.
pub struct TestStack {
    pub config: StackConfig,
    pub stack: Stack,
    pub dataset: Dataset,
}

impl TestStack {
    /// Seeds a small data set into a fresh namespace and starts `services`.
    pub async fn start(services: &[Service], page_deadline_ms: u64) -> TestStack {
        Self::start_with(services, |config| {
            config.page_deadline_ms = page_deadline_ms
        })
        .await
    }

    /// Like [`Self::start`], with the stack's configuration changed by `configure` first.
    pub async fn start_with(
        services: &[Service],
        configure: impl FnOnce(&mut StackConfig),
    ) -> TestStack {
        let kafka = fresh_namespace();
        let seed_config = SeedConfig::small();
        seed::seed(&kafka, &seed_config)
            .await
            .expect("seeding works");
        let mut config = StackConfig::new(kafka);
        configure(&mut config);
        let stack = config
            .start_all(services, Duration::from_secs(60))
            .await
            .expect("the stack starts");
        TestStack {
            config,
            stack,
            dataset: Dataset::generate(&seed_config),
        }
    }

    pub fn gateway(&self) -> Gateway {
        Gateway::at(self.stack.gateway_addr().expect("a gateway runs"))
    }
}

/// Runs `start` on a runtime thread of its own, which then keeps what it
/// started (the second value it gives) running for the life of the test
/// process; returns the first value. Panics if `what` does not start in 3 minutes.
pub fn serve_for_the_process<T, K, F, Fut>(what: &'static str, start: F) -> T
where
    T: Send + 'static,
    K: 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (T, K)>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (value, _kept) = start().await;
            tx.send(value).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|_| panic!("{what} starts"))
}

/// The stack most tests share: all five services, a generous deadline so a
/// loaded CI machine still sees complete pages. It runs on its own runtime
/// thread for the life of the test process.
pub fn shared() -> &'static SharedStack {
    static SHARED: OnceLock<SharedStack> = OnceLock::new();
    SHARED.get_or_init(|| SharedStack::spawn(&Service::ALL, |c| c.page_deadline_ms = 3_000))
}

pub struct SharedStack {
    pub gateway: SocketAddr,
    pub config: StackConfig,
    pub dataset: Dataset,
}

impl SharedStack {
    /// Starts a seeded stack of `services` on its own runtime thread, which
    /// serves it for the life of the test process.
    pub fn spawn(
        services: &[Service],
        configure: impl FnOnce(&mut StackConfig) + Send + 'static,
    ) -> SharedStack {
        let services = services.to_vec();
        serve_for_the_process("the shared stack", move || async move {
            let test = TestStack::start_with(&services, configure).await;
            let shared = SharedStack {
                gateway: test.stack.gateway_addr().unwrap(),
                config: test.config.clone(),
                dataset: test.dataset,
            };
            (shared, test.stack)
        })
    }

    pub fn gateway(&self) -> Gateway {
        Gateway::at(self.gateway)
    }

    pub fn kafka(&self) -> &KafkaSettings {
        &self.config.kafka
    }
}

/// A minimal HTTP client of the gateway that keeps the session cookie.
pub struct Gateway {
    pub base: String,
    client: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

impl Reply {
    /// The `sf_session=...` pair of the Set-Cookie header, ready to send back.
    pub fn session_cookie(&self) -> Option<String> {
        let set = self.headers.get("set-cookie")?.to_str().ok()?;
        set.split(';').next().map(str::to_owned)
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl Gateway {
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            // Redirects (303 to a result) are for the tests to see and follow.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
        }
    }

    /// A request to `path`, to add headers to before [`Self::send`].
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Self::read(request).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        let body = serde_json::json!({"username": username, "password": password}).to_string();
        self.post("/api/login", "application/json", body.into_bytes())
            .await
    }

    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        Self::read(request).await
    }

    pub async fn post_with_cookie(&self, path: &str, cookie: &str) -> Reply {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie);
        Self::read(request).await
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        Self::read(request).await
    }

    async fn read(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }
}

/// Every record now on `topic`, all partitions.
pub async fn read_topic(kafka: &KafkaSettings, topic: &str) -> Vec<Inbound> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        snapshot::read_topic(
            &kafka,
            "storefront-e2e-reader",
            &topic,
            Since::Beginning,
            Duration::from_secs(20),
            |record| records.push(record),
        )
        .unwrap_or_else(|e| panic!("could not read all of {topic}: {e}"));
        records
    })
    .await
    .unwrap()
}

/// Polls `check` until it returns Some, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
