//! Replies that survive a gateway: gateways run as real processes (the
//! `storefront` binary) beside in-process backend services on a real broker.
//! A request started on gateway A is followed on gateway B after A is
//! killed with SIGKILL, its callback is delivered by the gateway that takes
//! A's reply partitions over, and A serves it again once restarted. Then
//! gateways join and leave under load and no reply or callback is lost. A
//! gateway killed while its callback hangs has it delivered by the next.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::State, http::HeaderMap, routing::post, Router};
use storefront::{
    broker,
    seed::{self, SeedConfig},
    stack::{Service, StackConfig},
};
use storefront_runtime::KafkaSettings;
use tokio::process::{Child, Command};

/// Webhook ids received, with how many times each came.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<HashMap<String, usize>>>);

impl Received {
    /// Counts one delivery of the request its `webhook-id` names; how many so far.
    fn record(&self, headers: &HeaderMap) -> usize {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut seen = self.0.lock().unwrap();
        let count = seen.entry(id).or_default();
        *count += 1;
        *count
    }

    fn count(&self, request_id: &str) -> usize {
        let id = format!("msg_{request_id}");
        self.0.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

async fn start_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let app = Router::new()
        // The first delivery of each webhook-id gets no answer, ever; later ones 204.
        .route(
            "/hang-first",
            post(|State(r): State<Received>, headers: HeaderMap| async move {
                if r.record(&headers) == 1 {
                    std::future::pending::<()>().await;
                }
                axum::http::StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/hook",
            post(|State(r): State<Received>, headers: HeaderMap| async move {
                r.record(&headers);
                axum::http::StatusCode::NO_CONTENT
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// One gateway as a child process.
struct GatewayProcess {
    addr: SocketAddr,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Child,
}

impl GatewayProcess {
    fn spawn(name: &str, env: &[(String, String)], dir: &std::path::Path) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], broker::free_port().unwrap()));
        let log = dir.join(format!("gateway-{name}.log"));
        let child = Self::start(addr, env, &log);
        Self {
            addr,
            env: env.to_vec(),
            log,
            child,
        }
    }

    fn start(addr: SocketAddr, env: &[(String, String)], log: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_storefront"))
            .args(["run", "gateway"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("STOREFRONT_HTTP_ADDR", addr.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the storefront binary starts")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the gateway on {} did not become ready; see {}",
                self.addr,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sigkill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    async fn sigterm(&mut self) {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(
            matches!(exited, Ok(Ok(s)) if s.success()),
            "the gateway did not stop cleanly on SIGTERM: {exited:?}"
        );
    }

    fn restart(&mut self) {
        self.child = Self::start(self.addr, &self.env, &self.log);
    }
}

/// A reply, read whole.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: serde_json::Value,
}

impl Reply {
    fn location(&self) -> String {
        self.headers["location"].to_str().unwrap().to_owned()
    }

    /// The session cookie it set, as a `Cookie` header sends it back.
    fn cookie(&self) -> String {
        let set_cookie = self.headers["set-cookie"].to_str().unwrap();
        set_cookie.split(';').next().unwrap().to_owned()
    }
}

/// What a gateway process of `kafka`'s namespace is started with: the
/// stack's keys, callbacks to 127.0.0.1 allowed, JSON logs, and `extra`.
fn gateway_env(
    kafka: &KafkaSettings,
    config: &StackConfig,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers.clone()),
        ("STOREFRONT_TOPIC_PREFIX", kafka.topic_prefix.clone()),
        (
            "STOREFRONT_USER_SVC_PUBLIC_KEY",
            config.unseal_key.seal_key().to_base64(),
        ),
        ("STOREFRONT_COOKIE_KEY", config.cookie_key.to_base64()),
        (
            "STOREFRONT_WEBHOOK_SECRET",
            gateway::webhooks::WebhookSecret::generate().to_whsec(),
        ),
        ("STOREFRONT_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1".into()),
        ("STOREFRONT_WEBHOOK_ALLOW_HTTP", "true".into()),
        ("STOREFRONT_LOG_FORMAT", "json".into()),
        ("RUST_LOG", "info,librdkafka=warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// Polls a status URL until 303, riding out connection errors.
async fn until_done(client: &reqwest::Client, url: &str, cookie: &str, within: Duration) -> Reply {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(url).header("cookie", cookie).send().await {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.json().await.unwrap_or_default();
            if status == 303 {
                return Reply {
                    status,
                    headers,
                    body,
                };
            }
            assert!(status == 200 || status == 503, "{url}: {status} {body}");
        }
        assert!(
            started.elapsed() < within,
            "{url} did not finish within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outlives_the_sigkill_of_its_gateway_and_gateways_join_and_leave_losing_nothing()
{
    let dir = std::env::temp_dir().join(format!("storefront-gateways-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kafka = KafkaSettings::new(storefront_e2e::bootstrap_servers());
    seed::seed(&kafka, &SeedConfig::small()).await.unwrap();
    let mut config = StackConfig::new(kafka.clone());
    // No ads-svc: every page waits for its deadline, so requests are in flight long enough.
    config.page_deadline_ms = 3_000;
    let backend = config
        .start_all(
            &[Service::User, Service::History, Service::Aggregator],
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    let (receiver, received) = start_receiver().await;
    let callback_url = format!("http://{receiver}/hook");
    let env = gateway_env(
        &kafka,
        &config,
        &[
            ("STOREFRONT_PAGE_DEADLINE_MS", "3000"),
            ("STOREFRONT_SYNC_BUDGET_MS", "500"),
        ],
    );
    let mut a = GatewayProcess::spawn("a", &env, &dir);
    let mut b = GatewayProcess::spawn("b", &env, &dir);
    a.wait_ready().await;
    b.wait_ready().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // 1. A login with a callback starts on A; A is killed while it runs.
    let login = serde_json::json!({
        "username": seed::DEMO_USERNAME,
        "password": seed::DEMO_PASSWORD,
        "callback_url": callback_url,
    });
    let accepted = send(
        client
            .post(a.url("/api/login"))
            .header("prefer", "respond-async")
            .json(&login),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let cookie = accepted.cookie();
    let request_id = accepted.body["request_id"].as_str().unwrap().to_owned();
    a.sigkill().await;

    // B answers for it: running, then done, then the page.
    let running = send(
        client
            .get(b.url(&accepted.location()))
            .header("cookie", &cookie),
    )
    .await;
    assert!(
        running.status == 200 || running.status == 303,
        "{} {}",
        running.status,
        running.body
    );
    let done = until_done(
        &client,
        &b.url(&accepted.location()),
        &cookie,
        Duration::from_secs(30),
    )
    .await;
    let result = send(
        client
            .get(b.url(&done.location()))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(result.status, 200, "{}", result.body);
    assert_eq!(result.body["request_id"], request_id.as_str());
    assert_eq!(result.body["page"]["user"]["id"], seed::DEMO_CUSTOMER_ID);

    // The callback is delivered by whoever owns A's reply partition now.
    let started = Instant::now();
    while received.count(&request_id) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the callback of a request whose gateway died was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = until_callback_delivered(&client, &b.url(&accepted.location()), &cookie).await;
    assert_eq!(delivered.body["callback"]["state"], "delivered");

    // A comes back and serves the same request.
    a.restart();
    a.wait_ready().await;
    let again = send(
        client
            .get(a.url(&accepted.location()))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(again.status, 303, "{}", again.body);
    let result = send(
        client
            .get(a.url(&again.location()))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(result.body["request_id"], request_id.as_str());

    // 2. Under load, C joins and B leaves: every request finishes and every
    //    callback arrives, whichever gateway owns its reply partition.
    let mut c = GatewayProcess::spawn("c", &env, &dir);
    let mut started_requests = Vec::new();
    let load_started = Instant::now();
    let mut b_running = true;
    let mut n = 0usize;
    while load_started.elapsed() < Duration::from_secs(14) {
        let elapsed = load_started.elapsed();
        if b_running && elapsed > Duration::from_secs(8) {
            b.sigterm().await;
            b_running = false;
        }
        let targets: Vec<&GatewayProcess> = if b_running {
            vec![&a, &b, &c]
        } else {
            vec![&a, &c]
        };
        let target = targets[n % targets.len()];
        n += 1;
        let reply = client
            .post(target.url("/api/pages"))
            .header("cookie", &cookie)
            .header("prefer", "respond-async")
            .json(&serde_json::json!({"callback_url": callback_url}))
            .send()
            .await;
        if let Ok(reply) = reply {
            // C answers 503 until it owns a reply partition.
            if reply.status() == 202 {
                let body: serde_json::Value = reply.json().await.unwrap();
                started_requests.push(body["request_id"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(reply.status(), 503, "only 202, or 503 while not ready");
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        started_requests.len() > 50,
        "{} requests",
        started_requests.len()
    );
    let mut duplicates = 0;
    for id in &started_requests {
        let status_url = a.url(&format!("/api/pages/{id}"));
        until_done(&client, &status_url, &cookie, Duration::from_secs(60)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.count(id) == 0 {
            assert!(Instant::now() < deadline, "no callback for {id}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        duplicates += received.count(id) - 1;
    }
    let outcomes: BTreeMap<usize, usize> =
        started_requests.iter().fold(BTreeMap::new(), |mut m, id| {
            *m.entry(received.count(id)).or_default() += 1;
            m
        });
    eprintln!(
        "{} requests through a join and a leave: all done, all called back (deliveries per request: {outcomes:?}; {duplicates} repeated, allowed by at-least-once)",
        started_requests.len()
    );

    a.sigkill().await;
    c.sigkill().await;
    backend.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn until_callback_delivered(client: &reqwest::Client, url: &str, cookie: &str) -> Reply {
    until_callback_delivered_within(client, url, cookie, Duration::from_secs(30)).await
}

async fn until_callback_delivered_within(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
    within: Duration,
) -> Reply {
    let started = Instant::now();
    loop {
        let reply = send(client.get(url).header("cookie", cookie)).await;
        if reply.body["callback"]["state"] == "delivered" {
            return reply;
        }
        assert!(started.elapsed() < within, "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// At least once across a gateway's death, mid-delivery: the only gateway
/// is killed while its callback's first attempt hangs, and the gateway
/// started after it delivers the callback (its group's offset was never
/// committed past the undelivered reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_in_flight_when_its_gateway_is_killed_is_delivered_by_the_next() {
    let dir = storefront_e2e::scratch_dir("gateways-in-flight");
    std::fs::create_dir_all(&dir).unwrap();
    let kafka = storefront_e2e::fresh_namespace();
    seed::seed(&kafka, &SeedConfig::small()).await.unwrap();
    let config = StackConfig::new(kafka.clone());
    let backend = config
        .start_all(
            &[
                Service::User,
                Service::History,
                Service::Ads,
                Service::Aggregator,
            ],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let (receiver, received) = start_receiver().await;
    let env = gateway_env(&kafka, &config, &[]);
    let mut a = GatewayProcess::spawn("only", &env, &dir);
    a.wait_ready().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login =
        serde_json::json!({"username": seed::DEMO_USERNAME, "password": seed::DEMO_PASSWORD});
    let logged_in = send(client.post(a.url("/api/login")).json(&login)).await;
    assert_eq!(logged_in.status, 200, "{}", logged_in.body);
    let cookie = logged_in.cookie();
    let accepted = send(
        client
            .post(a.url("/api/pages"))
            .header("cookie", &cookie)
            .header("prefer", "respond-async")
            .json(&serde_json::json!({"callback_url": format!("http://{receiver}/hang-first")})),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let request_id = accepted.body["request_id"].as_str().unwrap().to_owned();

    // The first attempt reaches the receiver and hangs there; then A dies.
    let started = Instant::now();
    while received.count(&request_id) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the callback was never attempted; see {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.sigkill().await;

    let mut b = GatewayProcess::spawn("next", &env, &dir);
    b.wait_ready().await;
    let delivered = until_callback_delivered_within(
        &client,
        &b.url(&accepted.location()),
        &cookie,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(delivered.body["callback"]["state"], "delivered");
    assert_eq!(
        received.count(&request_id),
        2,
        "the hung attempt, then the next gateway's"
    );
    b.sigkill().await;
    backend.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
