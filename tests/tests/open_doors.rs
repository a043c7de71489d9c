//! Every open door of the gateway has a bound, on the real broker: event
//! streams per session and in total (429 with `Retry-After` past them), one
//! follower of the partitions behind all streams, and a client that sends
//! its headers slowly cut off; each counted in `/metrics`.

use std::time::Duration;

use gateway::streams::StreamLimits;
use reqwest::Method;
use storefront_devstack::stack::Service;
use storefront_e2e::{
    eventually, read_topic,
    sse::read_events,
    telemetry::{sample, scrape},
    Gateway, TestStack,
};
use storefront_runtime::{EventProducer, HttpLimits, Outbound, Telemetry};
use storefront_schemas::{
    PageCompleted, PageRequested, PageStatus, RequestEvent, Resolution, UserResolved,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A gateway alone: no service answers, so every request stays running
/// (for a minute) and its streams stay open.
async fn gateway_alone(streams: StreamLimits, http: HttpLimits) -> TestStack {
    TestStack::start_with(&[Service::Gateway], move |config| {
        config.page_deadline_ms = 60_000;
        config.sync_budget_ms = 0;
        config.streams = streams;
        config.http = http;
    })
    .await
}

/// A session cookie: the login's 202 carries it before any service answers.
async fn session(gateway: &Gateway, user: &str) -> String {
    let reply = gateway
        .send(
            gateway
                .request(Method::POST, "/api/login")
                .header("prefer", "respond-async")
                .json(&serde_json::json!({"username": user, "password": "pw"})),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    reply.session_cookie().expect("the 202 sets the cookie")
}

/// Starts a request of `cookie` that runs on; its events URL.
async fn running_request(gateway: &Gateway, cookie: &str) -> String {
    let reply = gateway
        .send(
            gateway
                .request(Method::POST, "/api/pages")
                .header("cookie", cookie)
                .header("prefer", "respond-async"),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    reply.body["events_url"].as_str().unwrap().to_owned()
}

async fn open_stream(gateway: &Gateway, cookie: &str, url: &str) -> reqwest::Response {
    gateway
        .request(Method::GET, url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn metric(gateway: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    let addr = gateway.base.trim_start_matches("http://").parse().unwrap();
    sample(&scrape(addr).await, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn event_streams_are_capped_per_session_and_in_total() {
    let limits = StreamLimits {
        max_streams_per_session: 2,
        max_streams: 3,
    };
    let test = gateway_alone(limits, HttpLimits::default()).await;
    let gateway = test.gateway();
    let (alice, bob) = (
        session(&gateway, "alice").await,
        session(&gateway, "bob").await,
    );
    let url = running_request(&gateway, &alice).await;

    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = open_stream(&gateway, &alice, &url).await;
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    let third = open_stream(&gateway, &alice, &url).await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "5");
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");

    // Another session may open one: then the gateway's total is reached.
    let bobs = running_request(&gateway, &bob).await;
    let bob_stream = open_stream(&gateway, &bob, &bobs).await;
    assert_eq!(bob_stream.status(), 200);
    assert_eq!(open_stream(&gateway, &bob, &bobs).await.status(), 429);
    assert_eq!(
        metric(
            &gateway,
            "storefront_event_streams_refused_total",
            &[("limit", "session")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &gateway,
            "storefront_event_streams_refused_total",
            &[("limit", "total")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(&gateway, "storefront_event_streams_open", &[]).await,
        3.0
    );
    // Three streams of two sessions watch two sessions' partitions, once each.
    let followed = metric(&gateway, "storefront_followed_partitions", &[]).await;
    assert!((4.0..=10.0).contains(&followed), "{followed}");

    // A client that goes away frees its place.
    drop(held.pop());
    let reopened = eventually(Duration::from_secs(10), || async {
        let stream = open_stream(&gateway, &alice, &url).await;
        (stream.status() == 200).then_some(stream)
    })
    .await;
    assert!(reopened.is_some(), "a closed stream frees its place");
    drop((held, bob_stream, reopened));
    let idle = eventually(Duration::from_secs(10), || async {
        let followed = metric(&gateway, "storefront_followed_partitions", &[]).await;
        (followed == 0.0).then_some(())
    })
    .await;
    assert!(idle.is_some(), "partitions no stream watches are let go");
}

#[tokio::test]
async fn a_stream_is_sent_what_is_written_after_it_opened() {
    let test = gateway_alone(StreamLimits::default(), HttpLimits::default()).await;
    let gateway = test.gateway();
    let cookie = session(&gateway, "carol").await;
    let url = running_request(&gateway, &cookie).await;
    let request_id = url.split('/').nth(3).unwrap().to_owned();
    let stream = open_stream(&gateway, &cookie, &url).await;
    assert_eq!(stream.status(), 200);

    // Play user-svc and the aggregator: write the request's part and page.
    let topics = test.config.kafka.topics();
    let request = read_topic(&test.config.kafka, &topics.page_requested)
        .await
        .into_iter()
        .filter_map(|r| match r.event(&topics) {
            Ok(RequestEvent::PageRequested(request)) => Some(request),
            _ => None,
        })
        .find(|r: &PageRequested| r.context.request_id.to_string() == request_id)
        .expect("the request is on page.requested");
    let context = request.context;
    let producer =
        EventProducer::new(&test.config.kafka, &Telemetry::local("e2e-streams")).unwrap();
    let user = UserResolved {
        context: context.clone(),
        status: Resolution::Rejected,
        rejection: Some("no such session".into()),
        user: None,
    };
    let page = PageCompleted {
        context: context.clone(),
        status: PageStatus::Rejected,
        missing: vec![],
        rejection: Some("no such session".into()),
        user: None,
        recent_purchases: vec![],
        ads: vec![],
        milestones: vec![],
        callback_url: None,
    };
    let trace = Default::default();
    producer
        .send(&Outbound::for_request(
            &topics.user_resolved,
            &context,
            &trace,
            &user,
        ))
        .await
        .unwrap();
    producer
        .send(
            &Outbound::for_request(&topics.page_completed, &context, &trace, &page)
                .to_partition(context.reply_partition),
        )
        .await
        .unwrap();

    let events = read_events(stream, "result", Duration::from_secs(20)).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["part", "result"], "{events:?}");
    assert_eq!(events[0].json()["part"], "user");
    assert_eq!(events[1].json()["http_status"], 401);
}

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let http = HttpLimits {
        http_header_timeout_ms: 500,
        ..HttpLimits::default()
    };
    let test = gateway_alone(StreamLimits::default(), http).await;
    let gateway = test.gateway();
    let addr = test.stack.gateway_addr().unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /api/page HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is closed");
    assert!(metric(&gateway, "http_timeouts_total", &[("kind", "headers")]).await >= 1.0);
    // The gateway still serves others.
    let reply = gateway.get("/api/page", None).await;
    assert_eq!(reply.status, 401);
}
