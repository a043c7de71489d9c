//! The storefront end to end on a real broker: HTTP in, events across the
//! topics, the page back.

use std::{collections::HashSet, time::Duration};

use storefront_devstack::{
    seed::{DEMO_CUSTOMER_ID, DEMO_PASSWORD, DEMO_USERNAME},
    stack::Service,
};
use storefront_e2e::{eventually, read_topic, shared, Gateway, TestStack};
use storefront_schemas::{PageRequested, SessionId};

#[tokio::test]
async fn demo_login_returns_the_demo_users_page_with_their_purchases_and_ads_that_exclude_them() {
    let stack = shared();
    let reply = stack.gateway().login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = &reply.body;
    assert_eq!(body["status"], "complete", "{}", reply.text);
    assert_eq!(body["page"]["user"]["name"], "Dana Demo");
    assert_eq!(body["page"]["user"]["id"], DEMO_CUSTOMER_ID);

    let shown: Vec<&str> = body["page"]["recent_purchases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_str().unwrap())
        .collect();
    let expected = stack.dataset.recent_products(DEMO_CUSTOMER_ID, 5);
    assert_eq!(
        shown, expected,
        "recent purchases match the seeded orders, newest first"
    );

    let ads = body["page"]["ads"].as_array().unwrap();
    assert!(!ads.is_empty(), "the demo account gets ads");
    let bought = stack.dataset.all_products(DEMO_CUSTOMER_ID);
    for ad in ads {
        let id = ad["product_id"].as_str().unwrap();
        assert!(
            !bought.contains(id),
            "ad {id} is something the demo user already bought"
        );
        assert!(
            !ad["reason"].as_str().unwrap().is_empty(),
            "every ad says why"
        );
    }
    assert!(body["request_id"]
        .as_str()
        .is_some_and(|id| SessionId::parse(id).is_ok()));
}

#[tokio::test]
async fn a_wrong_password_returns_401_and_no_page() {
    let gateway = shared().gateway();
    for (username, password) in [
        (DEMO_USERNAME, "not-the-password"),
        ("nobody-by-this-name", "whatever"),
    ] {
        let reply = gateway.login(username, password).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.error_code(), "invalid_credentials");
        assert!(reply.body.get("page").is_none());
        assert!(
            reply.session_cookie().is_none(),
            "no session for a failed login"
        );
    }
}

#[tokio::test]
async fn the_session_cookie_gets_the_page_again() {
    let gateway = shared().gateway();
    let login = gateway.login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let set_cookie = login.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let cookie = login.session_cookie().unwrap();

    let page = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.body["page"]["user"]["name"], "Dana Demo");
    assert_eq!(
        page.body["page"]["recent_purchases"],
        login.body["page"]["recent_purchases"]
    );
    assert_ne!(
        page.body["request_id"], login.body["request_id"],
        "a new request"
    );

    let without = gateway.get("/api/page", None).await;
    assert_eq!(without.status, 401);
    assert_eq!(without.error_code(), "invalid_session");
}

#[tokio::test]
async fn a_forged_or_unknown_session_cookie_returns_401() {
    let stack = shared();
    let gateway = stack.gateway();
    let login = gateway.login(DEMO_USERNAME, DEMO_PASSWORD).await;
    let cookie = login.session_cookie().unwrap();
    let (name_and_id, signature) = cookie.rsplit_once('.').unwrap();
    let other_session = SessionId::new();

    let forged = [
        format!("sf_session={other_session}.{signature}"),
        format!("{name_and_id}.{}", "A".repeat(signature.len())),
        format!("sf_session={other_session}"),
        "sf_session=garbage".to_owned(),
    ];
    for cookie in &forged {
        let reply = gateway.get("/api/page", Some(cookie)).await;
        assert_eq!(reply.status, 401, "{cookie}: {}", reply.text);
        assert_eq!(reply.error_code(), "invalid_session");
    }

    // Signed with the right key, but no such session was ever opened: user-svc says no.
    let unknown = format!(
        "sf_session={}",
        stack.config.cookie_key.sign(&SessionId::new())
    );
    let reply = gateway.get("/api/page", Some(&unknown)).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert!(
        reply
            .headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the stale cookie is cleared"
    );
}

#[tokio::test]
async fn malformed_requests_get_json_errors_with_the_right_status() {
    let gateway = shared().gateway();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"username\": \"demo\"".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "not JSON at all",
            "application/json",
            b"username=demo".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "wrong content type",
            "text/plain",
            br#"{"username":"demo","password":"x"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "missing password",
            "application/json",
            br#"{"username":"demo"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "wrong field type",
            "application/json",
            br#"{"username":7,"password":"x"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "empty username",
            "application/json",
            br#"{"username":"  ","password":"x"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "oversized body",
            "application/json",
            format!(
                r#"{{"username":"demo","password":"{}"}}"#,
                "x".repeat(64 * 1024)
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let reply = gateway.post("/api/login", content_type, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
        assert_eq!(reply.error_code(), code, "{what}: {}", reply.text);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    let missing = gateway.get("/api/nothing-here", None).await;
    assert_eq!((missing.status, missing.error_code()), (404, "not_found"));
    let wrong_method = gateway.get("/api/login", None).await;
    assert_eq!(
        (wrong_method.status, wrong_method.error_code()),
        (405, "method_not_allowed")
    );
    // Still serving after all that.
    assert_eq!(
        gateway.login(DEMO_USERNAME, DEMO_PASSWORD).await.status,
        200
    );
}

#[tokio::test]
async fn the_storefront_page_and_health_endpoints_are_served() {
    let gateway = shared().gateway();
    let index = reqwest::get(format!("{}/", gateway.base)).await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(index.text().await.unwrap().contains("id=\"login-form\""));
    assert_eq!(gateway.get("/healthz", None).await.status, 200);
    assert_eq!(gateway.get("/readyz", None).await.body["status"], "ready");
}

#[tokio::test]
async fn every_record_of_a_request_is_keyed_by_session_and_on_the_same_partition_number() {
    let stack = shared();
    let gateway = stack.gateway();
    let login = gateway.login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let page = gateway
        .get("/api/page", Some(&login.session_cookie().unwrap()))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let request_ids: HashSet<String> = [&login, &page]
        .iter()
        .map(|r| r.body["request_id"].as_str().unwrap().to_owned())
        .collect();

    let topics = stack.kafka().topics();
    let mut partitions_by_request: std::collections::HashMap<String, HashSet<i32>> =
        Default::default();
    let mut session_ids = HashSet::new();
    let mut trace_ids: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for topic in [
        &topics.page_requested,
        &topics.user_resolved,
        &topics.history_fetched,
        &topics.ads_selected,
    ] {
        let records = read_topic(stack.kafka(), topic).await;
        let mine: Vec<_> = records
            .iter()
            .filter(|r| {
                r.header("request-id")
                    .is_some_and(|id| request_ids.contains(&id))
            })
            .collect();
        assert_eq!(mine.len(), 2, "one record per request on {topic}");
        for record in mine {
            let request_id = record.header("request-id").unwrap();
            assert!(
                record.header("event-type").is_some(),
                "{topic} has event-type"
            );
            let traceparent = record.header("traceparent").expect("traceparent header");
            trace_ids
                .entry(request_id.clone())
                .or_default()
                .insert(traceparent.split('-').nth(1).unwrap().to_owned());
            session_ids.insert(record.key_str().unwrap_or_default().to_owned());
            partitions_by_request
                .entry(request_id)
                .or_default()
                .insert(record.partition);
        }
    }
    assert_eq!(
        session_ids.len(),
        1,
        "login and page request share the session key: {session_ids:?}"
    );
    let session = session_ids.into_iter().next().unwrap();
    assert!(
        SessionId::parse(&session).is_ok(),
        "the key is the session id"
    );
    let all_partitions: HashSet<i32> = partitions_by_request.values().flatten().copied().collect();
    assert_eq!(
        all_partitions.len(),
        1,
        "co-partitioned: {partitions_by_request:?}"
    );
    for (request, traces) in trace_ids {
        assert_eq!(traces.len(), 1, "one trace across the hops of {request}");
    }

    let replies = read_topic(stack.kafka(), &topics.page_completed).await;
    let replies: Vec<_> = replies
        .iter()
        .filter(|r| {
            r.header("request-id")
                .is_some_and(|id| request_ids.contains(&id))
        })
        .collect();
    assert_eq!(replies.len(), 2, "one page per request");
    for reply in replies {
        assert_eq!(reply.key_str(), Some(session.as_str()));
    }
}

#[tokio::test]
async fn no_topic_holds_the_demo_password_after_a_login() {
    let stack = shared();
    let login = stack.gateway().login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let needle = DEMO_PASSWORD.as_bytes();
    let mut scanned = 0;
    for topic in stack.kafka().topics().all() {
        for record in read_topic(stack.kafka(), topic).await {
            scanned += 1;
            let mut haystacks = vec![
                record.payload.clone().unwrap_or_default(),
                record.key.clone().unwrap_or_default(),
            ];
            haystacks.extend(record.raw_headers.iter().map(|(_, v)| v.clone()));
            for bytes in haystacks {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "the password is readable on {topic}"
                );
            }
        }
    }
    assert!(
        scanned > 1000,
        "scanned the seeded topics too ({scanned} records)"
    );
}

#[tokio::test]
async fn an_undecodable_record_goes_to_dead_letters_and_the_flow_goes_on() {
    let stack = shared();
    let topics = stack.kafka().topics();
    let producer = storefront_runtime::EventProducer::new(
        stack.kafka(),
        &storefront_runtime::Telemetry::local("e2e-garbage"),
    )
    .unwrap();
    let garbage = storefront_runtime::Outbound {
        topic: topics.page_requested.clone(),
        key: SessionId::new().to_string(),
        partition: None,
        headers: Default::default(),
        trace: Default::default(),
        payload: b"\xc3\x01 definitely not avro".to_vec(),
        deadline_ms: None,
    };
    let (partition, offset) = producer.send(&garbage).await.unwrap();

    let dead = eventually(Duration::from_secs(20), || async {
        read_topic(stack.kafka(), &topics.dead_letters)
            .await
            .into_iter()
            .find(|r| {
                r.header("dlq-service").as_deref() == Some("user-svc")
                    && r.header("dlq-source-offset") == Some(offset.to_string())
                    && r.header("dlq-source-partition") == Some(partition.to_string())
            })
    })
    .await
    .expect("user-svc dead-letters the record");
    assert_eq!(
        dead.header("dlq-source-topic").as_deref(),
        Some(topics.page_requested.as_str())
    );
    assert!(dead.header("dlq-reason").is_some_and(|r| !r.is_empty()));
    assert_eq!(
        dead.payload.as_deref(),
        Some(&garbage.payload[..]),
        "the record is kept as it was"
    );

    let login = stack.gateway().login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(login.status, 200, "still serving: {}", login.text);
}

#[tokio::test]
async fn with_ads_svc_stopped_the_page_is_partial_and_names_ads() {
    let mut test = TestStack::start(&Service::ALL, 1_500).await;
    test.stack.stop_service("ads-svc").await;
    let gateway = test.gateway();
    let reply = gateway.login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["status"], "partial");
    assert_eq!(reply.body["missing"], serde_json::json!(["ads"]));
    assert_eq!(reply.body["page"]["user"]["name"], "Dana Demo");
    assert!(
        !reply.body["page"]["recent_purchases"]
            .as_array()
            .unwrap()
            .is_empty(),
        "history still arrived"
    );
    assert_eq!(reply.body["page"]["ads"], serde_json::json!([]));
    test.stack.stop().await;
}

#[tokio::test]
async fn two_gateways_side_by_side_answer_on_their_own_reply_partitions() {
    let mut test = TestStack::start(
        &[
            Service::User,
            Service::History,
            Service::Ads,
            Service::Aggregator,
            Service::Gateway,
        ],
        3_000,
    )
    .await;
    let second = test
        .config
        .start(Service::Gateway, Default::default())
        .await
        .unwrap();
    second.wait_ready(Duration::from_secs(60)).await.unwrap();
    let (a, b) = (test.gateway(), Gateway::at(second.http_addr));
    test.stack.services.push(second);

    // Both must own partitions before either answers: wait for the rebalance to settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ids_a: HashSet<storefront_schemas::RequestId> = HashSet::new();
    let mut ids_b = HashSet::new();
    for _ in 0..4 {
        let (ra, rb) = tokio::join!(
            a.login(DEMO_USERNAME, DEMO_PASSWORD),
            b.login(DEMO_USERNAME, DEMO_PASSWORD)
        );
        assert_eq!(ra.status, 200, "gateway A: {}", ra.text);
        assert_eq!(rb.status, 200, "gateway B: {}", rb.text);
        let id = |body: &serde_json::Value| body["request_id"].as_str().unwrap().parse().unwrap();
        ids_a.insert(id(&ra.body));
        ids_b.insert(id(&rb.body));
    }
    let requests = read_topic(
        &test.config.kafka,
        &test.config.kafka.topics().page_requested,
    )
    .await;
    let mut partitions_a = HashSet::new();
    let mut partitions_b = HashSet::new();
    for record in requests {
        let request: PageRequested = record.decode().unwrap();
        if ids_a.contains(&request.context.request_id) {
            partitions_a.insert(request.context.reply_partition);
        } else if ids_b.contains(&request.context.request_id) {
            partitions_b.insert(request.context.reply_partition);
        }
    }
    assert!(!partitions_a.is_empty() && !partitions_b.is_empty());
    assert!(
        partitions_a.is_disjoint(&partitions_b),
        "A uses {partitions_a:?}, B uses {partitions_b:?}"
    );
    test.stack.stop().await;
}

#[tokio::test]
async fn seeding_twice_changes_nothing() {
    let kafka = storefront_e2e::fresh_namespace();
    let config = storefront_devstack::seed::SeedConfig::small();
    let first = storefront_devstack::seed::seed(&kafka, &config)
        .await
        .unwrap();
    assert_eq!(
        first.written.len(),
        4,
        "catalog, customers, credentials, orders"
    );
    let topics = kafka.topics();
    let orders_before = read_topic(&kafka, &topics.orders).await.len();

    let second = storefront_devstack::seed::seed(&kafka, &config)
        .await
        .unwrap();
    assert!(
        second.written.is_empty(),
        "nothing written again: {:?}",
        second.written
    );
    assert_eq!(second.skipped.len(), 4);
    assert_eq!(
        read_topic(&kafka, &topics.orders).await.len(),
        orders_before
    );
}

#[tokio::test]
async fn the_aggregator_refuses_a_return_address_outside_its_reply_topic() {
    let stack = shared();
    let topics = stack.kafka().topics();
    let request_id = storefront_schemas::RequestId::new();
    let now = storefront_schemas::now_ms();
    let hijack = PageRequested {
        context: storefront_schemas::RequestContext {
            request_id,
            session_id: SessionId::new(),
            requested_at_ms: now,
            deadline_ms: now + 5_000,
            reply_topic: "someone-elses-topic".into(),
            reply_partition: 0,
        },
        login: None,
        logout: false,
        callback_url: None,
        idempotency_key: None,
    };
    let producer = storefront_runtime::EventProducer::new(
        stack.kafka(),
        &storefront_runtime::Telemetry::local("e2e-hijack"),
    )
    .unwrap();
    let record = storefront_runtime::Outbound::for_request(
        &topics.page_requested,
        &hijack.context,
        &Default::default(),
        &hijack,
    );
    producer.send(&record).await.unwrap();

    let dead = eventually(Duration::from_secs(20), || async {
        read_topic(stack.kafka(), &topics.dead_letters)
            .await
            .into_iter()
            .find(|r| {
                r.header("dlq-service").as_deref() == Some("aggregator")
                    && r.header("request-id") == Some(request_id.to_string())
            })
    })
    .await
    .expect("the aggregator dead-letters the request");
    assert!(
        dead.header("dlq-reason").unwrap().contains("reply topic"),
        "{:?}",
        dead.header("dlq-reason")
    );
}

#[tokio::test]
async fn logging_out_closes_the_session_for_every_copy_of_the_cookie() {
    let gateway = shared().gateway();
    let login = gateway.login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let cookie = login.session_cookie().unwrap();
    assert_eq!(gateway.get("/api/page", Some(&cookie)).await.status, 200);

    let logout = gateway.post_with_cookie("/api/logout", &cookie).await;
    assert_eq!(logout.status, 204, "{}", logout.text);
    assert!(logout.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // A copy of the cookie kept elsewhere no longer works either.
    let again = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(again.status, 401, "{}", again.text);
    assert_eq!(again.error_code(), "invalid_session");
}

#[tokio::test]
async fn login_attempts_past_the_per_user_limit_get_429_with_retry_after() {
    let gateway = shared().gateway();
    let username = format!("probe-{}", rand::random::<u32>());
    for attempt in 1..=10 {
        let reply = gateway.login(&username, "guess").await;
        assert_eq!(reply.status, 401, "attempt {attempt}: {}", reply.text);
    }
    let limited = gateway.login(&username.to_uppercase(), "guess").await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.error_code(), "too_many_attempts");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

/// Ready means ready: on a stack started afresh, a login made the moment
/// every service says it is ready is answered like any other (not a 504
/// because a consumer had partitions but no position yet), start after
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_moment_every_service_is_ready_is_answered_like_any_other() {
    for start in 0..4 {
        let test = TestStack::start(&Service::ALL, 1_000).await;
        let reply = test.gateway().login(DEMO_USERNAME, DEMO_PASSWORD).await;
        assert_eq!(reply.status, 200, "start {start}: {}", reply.text);
        assert_eq!(
            reply.body["status"], "complete",
            "start {start}: {}",
            reply.text
        );
        test.stack.stop().await;
    }
}
