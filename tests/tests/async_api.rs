//! The asynchronous request-reply API against a real broker: 202 past the
//! sync budget or at once, status and 303 to the result, Server-Sent Events
//! with resumption, signed and retried webhooks, idempotency keys, the
//! OpenAPI description. ads-svc does not run in this stack, so every page
//! waits for its deadline (3 s), well past the sync budget (0.5 s). A
//! second stack, with every service, shows that no page waits on a
//! callback to a receiver that hangs, answers late or refuses.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    time::Duration,
};

use gateway::webhooks::{CallbackSettings, WebhookSecret};
use reqwest::Method;
use storefront_devstack::stack::Service;
use storefront_e2e::{
    eventually, read_topic,
    sse::read_events,
    webhooks::{self, refused_url, BlackHole, Receiver},
    Gateway, Reply, SharedStack,
};
use storefront_schemas::{PageRequested, RequestId};

fn stack() -> &'static SharedStack {
    static STACK: OnceLock<SharedStack> = OnceLock::new();
    STACK.get_or_init(|| {
        SharedStack::spawn(
            &[
                Service::User,
                Service::History,
                Service::Aggregator,
                Service::Gateway,
            ],
            |config| {
                config.page_deadline_ms = 3_000;
                config.sync_budget_ms = 500;
                config.callbacks = CallbackSettings {
                    webhook_secret: Some(WebhookSecret::generate()),
                    webhook_allowed_hosts: "127.0.0.1".into(),
                    webhook_allow_http: true,
                    webhook_give_up_secs: 4,
                };
            },
        )
    })
}

fn secret() -> String {
    stack()
        .config
        .callbacks
        .webhook_secret
        .as_ref()
        .unwrap()
        .to_whsec()
}

/// A generated user no other test of this file logs in as (login attempts
/// are limited per user).
fn next_user() -> (String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (username, _, password) = stack().dataset.logins[n].clone();
    (username, password)
}

fn location(reply: &Reply) -> String {
    reply.headers["location"].to_str().unwrap().to_owned()
}

/// Polls the status URL until it answers 303; returns the 303.
async fn until_done(gateway: &Gateway, status_url: &str, cookie: &str) -> Reply {
    for _ in 0..200 {
        let reply = gateway.get(status_url, Some(cookie)).await;
        if reply.status == 303 {
            return reply;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{status_url} never finished");
}

/// Logs a fresh user in: 202 past the budget, then the result. Returns the cookie.
async fn log_in(gateway: &Gateway) -> String {
    let (username, password) = next_user();
    let accepted = gateway.login(&username, &password).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let cookie = accepted.session_cookie().expect("a cookie with the 202");
    let done = until_done(gateway, &location(&accepted), &cookie).await;
    let result = gateway.get(&location(&done), Some(&cookie)).await;
    assert_eq!(result.status, 200, "{}", result.text);
    cookie
}

async fn start_page(gateway: &Gateway, cookie: &str, body: Option<serde_json::Value>) -> Reply {
    let mut request = gateway
        .request(Method::POST, "/api/pages")
        .header("cookie", cookie)
        .header("prefer", "respond-async");
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    gateway.send(request).await
}

#[tokio::test]
async fn a_login_past_the_sync_budget_gets_202_and_its_status_url_leads_to_the_page() {
    let gateway = stack().gateway();
    let (username, password) = next_user();
    let accepted = gateway.login(&username, &password).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let id = accepted.body["request_id"].as_str().unwrap().to_owned();
    assert_eq!(location(&accepted), format!("/api/pages/{id}"));
    assert_eq!(accepted.headers["retry-after"], "1");
    let cookie = accepted
        .session_cookie()
        .expect("the session cookie comes with the 202");

    let mut saw_parts_while_running = 0;
    let done = loop {
        let status = gateway.get(&location(&accepted), Some(&cookie)).await;
        if status.status == 303 {
            break status;
        }
        assert_eq!(status.status, 200, "{}", status.text);
        assert_eq!(status.body["status"], "running");
        saw_parts_while_running =
            saw_parts_while_running.max(status.body["parts_received"].as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        saw_parts_while_running, 2,
        "user and history arrive long before the deadline; ads never do"
    );
    assert_eq!(location(&done), format!("/api/pages/{id}/result"));
    assert_eq!(done.body["status"], "done");
    assert_eq!(done.body["outcome"], "partial");

    let result = gateway.get(&location(&done), Some(&cookie)).await;
    assert_eq!(result.status, 200, "{}", result.text);
    assert_eq!(result.body["request_id"], id.as_str());
    assert_eq!(result.body["status"], "partial");
    assert_eq!(result.body["missing"], serde_json::json!(["ads"]));
    assert!(result.body["page"]["user"]["name"].is_string());

    // The cookie of the async login works like any session cookie.
    let page = start_page(&gateway, &cookie, None).await;
    assert_eq!(page.status, 202, "{}", page.text);
}

#[tokio::test]
async fn a_wrong_password_is_401_at_once_or_at_the_result_which_clears_the_cookie() {
    let gateway = stack().gateway();
    let (username, _) = next_user();
    let body = serde_json::json!({"username": username, "password": "not-the-password"});
    let login = |prefer: Option<&'static str>| {
        let mut request = gateway
            .request(Method::POST, "/api/login")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(prefer) = prefer {
            request = request.header("prefer", prefer);
        }
        gateway.send(request)
    };
    // Rejected well within the sync budget: answered at once.
    let sync = login(None).await;
    assert_eq!(
        (sync.status, sync.error_code()),
        (401, "invalid_credentials")
    );
    // Asked not to wait: the same login answers 202 before the rejection.
    let not_waiting = login(Some("wait=0")).await;
    assert_eq!(not_waiting.status, 202, "{}", not_waiting.text);
    let accepted = login(Some("respond-async")).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let cookie = accepted.session_cookie().unwrap();
    let done = until_done(&gateway, &location(&accepted), &cookie).await;
    assert_eq!(done.body["outcome"], "rejected");
    let result = gateway.get(&location(&done), Some(&cookie)).await;
    assert_eq!(result.status, 401);
    assert_eq!(result.error_code(), "invalid_credentials");
    assert!(result.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn status_and_result_are_only_for_the_requests_own_session_and_expire() {
    let gateway = stack().gateway();
    let cookie = log_in(&gateway).await;
    let other = log_in(&gateway).await;
    let accepted = start_page(&gateway, &cookie, None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let status_url = location(&accepted);

    let running = gateway
        .get(&format!("{status_url}/result"), Some(&cookie))
        .await;
    assert_eq!(
        running.status, 202,
        "the result of a running request: {}",
        running.text
    );
    assert_eq!(location(&running), status_url);

    assert_eq!(gateway.get(&status_url, None).await.status, 401);
    let foreign = gateway.get(&status_url, Some(&other)).await;
    assert_eq!((foreign.status, foreign.error_code()), (404, "not_found"));
    let unknown = format!("/api/pages/{}", RequestId::new());
    assert_eq!(gateway.get(&unknown, Some(&cookie)).await.status, 404);
    assert_eq!(
        gateway
            .get("/api/pages/not-an-id", Some(&cookie))
            .await
            .status,
        404
    );
    let hour_ago = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        (storefront_schemas::now_ms() / 1000 - 3600) as u64,
        0,
    ));
    let expired = gateway
        .get(&format!("/api/pages/{hour_ago}"), Some(&cookie))
        .await;
    assert_eq!(
        (expired.status, expired.error_code()),
        (410, "result_expired")
    );
}

#[tokio::test]
async fn the_event_stream_sends_each_part_then_the_result_and_resumes_after_last_event_id() {
    let gateway = stack().gateway();
    let cookie = log_in(&gateway).await;
    let accepted = start_page(&gateway, &cookie, None).await;
    let events_url = accepted.body["events_url"].as_str().unwrap().to_owned();
    let open = |last_event_id: Option<&str>| {
        let mut request = gateway
            .request(Method::GET, &events_url)
            .header("cookie", &cookie);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send()
    };

    let response = open(None).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = read_events(response, "result", Duration::from_secs(20)).await;
    let names: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.id.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("part", Some("user")),
            ("part", Some("user,history")),
            ("result", Some("user,history,result")),
        ]
    );
    assert_eq!(events[1].json()["parts_received"], 2);
    let result = events[2].json();
    assert_eq!(result["http_status"], 200);
    assert_eq!(result["status"], "partial");

    // Reconnecting after the first event misses nothing and repeats nothing.
    let resumed = read_events(
        open(Some("user")).await.unwrap(),
        "result",
        Duration::from_secs(20),
    )
    .await;
    let names: Vec<&str> = resumed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["part", "result"]);
    assert_eq!(resumed[0].json()["part"], "history");
    assert_eq!(resumed[1].json()["request_id"], result["request_id"]);

    // After the last event there is nothing more to send.
    let after_end = read_events(
        open(Some("user,history,result")).await.unwrap(),
        "result",
        Duration::from_secs(5),
    )
    .await;
    assert!(after_end.is_empty(), "{after_end:?}");
}

#[tokio::test]
async fn a_callback_gets_the_signed_result_retried_until_it_takes_it() {
    let gateway = stack().gateway();
    let receiver = Receiver::start().await;
    let cookie = log_in(&gateway).await;
    let callback_url = receiver.url("/flaky/2");
    let accepted = start_page(
        &gateway,
        &cookie,
        Some(serde_json::json!({"callback_url": callback_url})),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let id = accepted.body["request_id"].as_str().unwrap().to_owned();

    let done = eventually(Duration::from_secs(30), || async {
        let status = gateway.get(&location(&accepted), Some(&cookie)).await;
        (status.body["callback"]["state"] == "delivered").then_some(status)
    })
    .await
    .expect("the callback is delivered");
    assert_eq!(done.status, 303);
    assert_eq!(done.body["callback"]["attempts"], 3);
    assert_eq!(done.body["callback"]["url"], callback_url.as_str());

    let deliveries = receiver.deliveries_of(&id);
    let statuses: Vec<u16> = deliveries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(webhooks::verify(&secret(), &deliveries), ["ok", "ok", "ok"]);
    let body = deliveries[2].json();
    assert_eq!(body["type"], "page.completed");
    assert_eq!(body["data"]["request_id"], id.as_str());
    assert_eq!(body["data"]["status"], "partial");
    // A signature made with another secret does not verify.
    let wrong = WebhookSecret::generate().to_whsec();
    assert_ne!(webhooks::verify(&wrong, &deliveries[2..])[0], "ok");
}

#[tokio::test]
async fn a_callback_that_keeps_failing_is_given_up_and_the_status_says_why() {
    let gateway = stack().gateway();
    let receiver = Receiver::start().await;
    let cookie = log_in(&gateway).await;
    let accepted = start_page(
        &gateway,
        &cookie,
        Some(serde_json::json!({"callback_url": receiver.url("/down")})),
    )
    .await;
    let failed = eventually(Duration::from_secs(30), || async {
        let status = gateway.get(&location(&accepted), Some(&cookie)).await;
        (status.body["callback"]["state"] == "failed").then_some(status)
    })
    .await
    .expect("the callback is given up after 4 s");
    let attempts = failed.body["callback"]["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{}", failed.text);
    assert!(
        failed.body["callback"]["last_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{}",
        failed.text
    );
    let id = accepted.body["request_id"].as_str().unwrap();
    assert_eq!(receiver.deliveries_of(id).len() as u64, attempts);
    // The result says it too.
    let result = gateway.get(&location(&failed), Some(&cookie)).await;
    assert_eq!(result.body["callback"]["state"], "failed");
}

#[tokio::test]
async fn callback_urls_must_be_http_s_to_an_allowed_host_without_credentials() {
    let gateway = stack().gateway();
    let cookie = log_in(&gateway).await;
    for (url, refusal) in [
        ("ftp://127.0.0.1/x", (403, "callback_refused")),
        ("http://user:pw@127.0.0.1/x", (403, "callback_refused")),
        ("http://example.com/x", (403, "callback_refused")),
        ("http://127.0.0.1/x#fragment", (403, "callback_refused")),
        ("not a url", (400, "invalid_request")),
    ] {
        let refused = start_page(
            &gateway,
            &cookie,
            Some(serde_json::json!({"callback_url": url})),
        )
        .await;
        assert_eq!(
            (refused.status, refused.error_code()),
            refusal,
            "{url}: {}",
            refused.text
        );
    }
    let unknown_field = start_page(
        &gateway,
        &cookie,
        Some(serde_json::json!({"callback": "x"})),
    )
    .await;
    assert_eq!(unknown_field.status, 400, "{}", unknown_field.text);
    let bad_key = gateway
        .send(
            gateway
                .request(Method::POST, "/api/pages")
                .header("cookie", &cookie)
                .header("idempotency-key", "has spaces"),
        )
        .await;
    assert_eq!(
        (bad_key.status, bad_key.error_code()),
        (400, "invalid_request")
    );
}

#[tokio::test]
async fn a_repeated_post_with_the_same_idempotency_key_returns_the_first_request() {
    let stack = stack();
    let gateway = stack.gateway();
    let cookie = log_in(&gateway).await;
    let key = format!("order-{}", RequestId::new());
    let post = |gateway: &Gateway| {
        gateway
            .request(Method::POST, "/api/pages")
            .header("cookie", &cookie)
            .header("prefer", "respond-async")
            .header("idempotency-key", &key)
    };
    let first = gateway.send(post(&gateway)).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let id = first.body["request_id"].as_str().unwrap().to_owned();
    let again = gateway.send(post(&gateway)).await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.body["request_id"], id.as_str());
    assert_eq!(again.headers["idempotent-replayed"], "true");

    // A second gateway, which never saw the key, finds it on the topic.
    let mut config = stack.config.clone();
    config.gateway_addr = "127.0.0.1:0".parse().unwrap();
    let second = config
        .start(Service::Gateway, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    second.wait_ready(Duration::from_secs(60)).await.unwrap();
    let other_gateway = Gateway::at(second.http_addr);
    until_done(&gateway, &location(&first), &cookie).await;
    let after = other_gateway.send(post(&other_gateway)).await;
    assert_eq!(after.status, 200, "the finished result: {}", after.text);
    assert_eq!(after.body["request_id"], id.as_str());
    assert_eq!(after.headers["idempotent-replayed"], "true");
    second.stop().await;

    let requests = read_topic(
        &stack.config.kafka,
        &stack.config.kafka.topics().page_requested,
    )
    .await;
    let with_key = requests
        .iter()
        .filter_map(|r| r.decode::<PageRequested>().ok())
        .filter(|r| r.idempotency_key.as_deref() == Some(key.as_str()))
        .count();
    assert_eq!(with_key, 1, "one workflow for three POSTs");

    // The key belongs to its session: another session starts its own request.
    let other = log_in(&gateway).await;
    let elsewhere = gateway
        .send(
            gateway
                .request(Method::POST, "/api/pages")
                .header("cookie", &other)
                .header("prefer", "respond-async")
                .header("idempotency-key", &key),
        )
        .await;
    assert_eq!(elsewhere.status, 202);
    assert_ne!(elsewhere.body["request_id"], id.as_str());
}

#[tokio::test]
async fn login_refuses_an_idempotency_key() {
    let gateway = stack().gateway();
    let (username, password) = next_user();
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let reply = gateway
        .send(
            gateway
                .request(Method::POST, "/api/login")
                .header("content-type", "application/json")
                .header("idempotency-key", "k1")
                .body(body),
        )
        .await;
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_request"));
}

#[tokio::test]
async fn the_openapi_description_covers_every_route() {
    let reply = stack().gateway().get("/api/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    let doc = reply.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/login", "post"),
        ("/api/page", "get"),
        ("/api/logout", "post"),
        ("/api/pages", "post"),
        ("/api/pages/{id}", "get"),
        ("/api/pages/{id}/result", "get"),
        ("/api/pages/{id}/events", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is described"
        );
    }
    let status = &doc["paths"]["/api/pages/{id}"]["get"]["responses"];
    for code in ["200", "303", "401", "404", "410"] {
        assert!(status[code].is_object(), "status response {code}");
    }
    assert!(doc["components"]["schemas"]["StatusView"].is_object());

    // An outside OpenAPI 3.1 reader takes it, and every reference resolves.
    let spec = oas3::from_json(doc.to_string()).expect("a valid OpenAPI document");
    spec.validate_version()
        .expect("a supported OpenAPI version");
    let mut operations = 0;
    for (path, method, operation) in spec.operations() {
        operations += 1;
        operation
            .request_body(&spec)
            .unwrap_or_else(|e| panic!("{method} {path} request body: {e}"));
        operation
            .parameters(&spec)
            .unwrap_or_else(|e| panic!("{method} {path} parameters: {e}"));
        for (code, response) in operation.responses(&spec) {
            for media in response.content.values() {
                if let Some(schema) = &media.schema {
                    schema
                        .resolve(&spec)
                        .unwrap_or_else(|e| panic!("{method} {path} {code}: {e}"));
                }
            }
        }
    }
    assert_eq!(operations, 7);
}

/// Every service, and callbacks given up after 5 s: for callbacks to
/// receivers that hang, answer late or refuse, beside the pages.
fn full_stack() -> &'static SharedStack {
    static STACK: OnceLock<SharedStack> = OnceLock::new();
    STACK.get_or_init(|| {
        SharedStack::spawn(&Service::ALL, |config| {
            config.page_deadline_ms = 2_000;
            config.callbacks = CallbackSettings {
                webhook_secret: Some(WebhookSecret::generate()),
                webhook_allowed_hosts: "127.0.0.1".into(),
                webhook_allow_http: true,
                webhook_give_up_secs: 5,
            };
        })
    })
}

/// Logs user `n` of the full stack in; its session cookie.
async fn log_in_full(gateway: &Gateway, n: usize) -> String {
    let (username, _, password) = full_stack().dataset.logins[n].clone();
    let reply = gateway.login(&username, &password).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.session_cookie().expect("a session cookie")
}

/// `GET /api/page` of `cookie`: its status and how long it took.
async fn timed_page(gateway: &Gateway, cookie: &str) -> (u16, String, Duration) {
    let started = std::time::Instant::now();
    let reply = gateway.get("/api/page", Some(cookie)).await;
    let status = reply.body["status"].as_str().unwrap_or_default().to_owned();
    (reply.status, status, started.elapsed())
}

fn percentile(latencies: &mut [Duration], p: f64) -> f64 {
    latencies.sort();
    let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
    latencies[index].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_waits_on_callbacks_to_receivers_that_hang_answer_late_or_refuse() {
    let gateway = full_stack().gateway();
    let black_hole = BlackHole::start().await;
    let receiver = Receiver::start().await;
    let bad_receivers = [
        ("hangs", black_hole.url("/hook")),
        ("answers after 30 s", receiver.url("/slow/30")),
        ("refuses", refused_url("/hook")),
    ];
    // Four sessions per bad receiver, each asking for five callbacks at
    // once: 20 per host, past the 16 a host is given at once.
    let mut sessions = Vec::new();
    for (kind, url) in &bad_receivers {
        for _ in 0..4 {
            let cookie = log_in_full(&gateway, sessions.len()).await;
            sessions.push((*kind, url.clone(), cookie));
        }
    }
    let asks: Vec<(&str, &String, &String)> = sessions
        .iter()
        .flat_map(|(kind, url, cookie)| std::iter::repeat_n((*kind, url, cookie), 5))
        .collect();
    let gateway_ref = &gateway;
    let asked = futures_util::future::join_all(asks.iter().map(|(_, url, cookie)| async move {
        let body = serde_json::json!({ "callback_url": url });
        start_page(gateway_ref, cookie, Some(body)).await
    }))
    .await;
    let mut pending = Vec::new();
    for (reply, (kind, _, cookie)) in asked.iter().zip(&asks) {
        assert_eq!(reply.status, 202, "{}", reply.text);
        pending.push((*kind, location(reply), (*cookie).clone()));
    }
    // One host is given 16 deliveries at once; the other 4 wait their turn.
    eventually(Duration::from_secs(20), || async {
        (black_hole.accepted.load(Ordering::SeqCst) >= 16).then_some(())
    })
    .await
    .expect("the black hole is called");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        black_hole.accepted.load(Ordering::SeqCst),
        16,
        "callbacks to one host at once"
    );
    // A callback to a receiver that works, from a session of its own.
    let good = log_in_full(&gateway, sessions.len()).await;
    let delivered = start_page(
        &gateway,
        &good,
        Some(serde_json::json!({"callback_url": receiver.url("/ok")})),
    )
    .await;
    assert_eq!(delivered.status, 202, "{}", delivered.text);

    // While those callbacks hang, every session's pages and a fresh
    // session's are answered: none waits for a callback.
    let fresh = log_in_full(&gateway, sessions.len() + 1).await;
    let (mut waiting, mut fresh_pages) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (kind, _, cookie) in &sessions {
            waiting.push((*kind, timed_page(&gateway, cookie).await));
        }
        for _ in 0..4 {
            fresh_pages.push(timed_page(&gateway, &fresh).await);
        }
    }
    let summary = |pages: Vec<&(u16, String, Duration)>| {
        let not_ok = pages.iter().filter(|(status, _, _)| *status != 200).count();
        let mut latencies: Vec<Duration> = pages.iter().map(|(_, _, took)| *took).collect();
        format!(
            "{} pages, {not_ok} not 200, p50 {:.1} ms, p99 {:.1} ms",
            latencies.len(),
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99)
        )
    };
    println!(
        "sessions with callbacks pending: {}; a fresh session: {}",
        summary(waiting.iter().map(|(_, page)| page).collect()),
        summary(fresh_pages.iter().collect()),
    );
    for (kind, (status, page, _)) in &waiting {
        assert_eq!(*status, 200, "a page of a session whose callback {kind}");
        assert!(page == "complete" || page == "partial", "{page}");
    }
    for (status, _, _) in &fresh_pages {
        assert_eq!(*status, 200, "a fresh session's page");
    }

    // The working receiver got its callback while the others hung.
    let status = eventually(Duration::from_secs(20), || async {
        let status = gateway.get(&location(&delivered), Some(&good)).await;
        (status.body["callback"]["state"] == "delivered").then_some(status)
    })
    .await
    .expect("the callback to a working receiver is delivered");
    assert_eq!(status.body["callback"]["attempts"], 1);

    // Every other callback is given up as documented: 5 s of retries, an
    // attempt that has begun is let run to its 10 s timeout.
    for (kind, status_url, cookie) in &pending {
        let failed = eventually(Duration::from_secs(90), || async {
            let status = gateway.get(status_url, Some(cookie)).await;
            (status.body["callback"]["state"] == "failed").then_some(status)
        })
        .await
        .unwrap_or_else(|| panic!("the callback to a receiver that {kind} is given up"));
        let error = failed.body["callback"]["last_error"]
            .as_str()
            .unwrap_or_default();
        let expected = match *kind {
            "refuses" => "could not connect",
            _ => "timed out",
        };
        assert!(error.contains(expected), "{kind}: {}", failed.text);
    }
}
