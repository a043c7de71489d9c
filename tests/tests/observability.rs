//! One request is one trace, every service serves metrics a real parser
//! reads, and the gateway reports each request's milestones: checked with
//! outside tools (oteltest's OTLP receiver, the Prometheus client's parser)
//! against the real broker.

use std::{collections::HashSet, time::Duration};

use serde_json::Value;
use storefront_devstack::{seed, stack::Service};
use storefront_e2e::{
    eventually,
    telemetry::{sample, scrape, OtlpSink},
    TestStack,
};

/// The spans of one trace, with lookups by service and name.
struct Trace(Vec<Value>);

impl Trace {
    fn span(&self, service: &str, name: &str) -> &Value {
        let found: Vec<&Value> = self
            .0
            .iter()
            .filter(|s| s["service"] == service && s["name"] == name)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {name:?} span from {service}; the trace: {:#?}",
            self.summary()
        );
        found[0]
    }

    fn summary(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} <- {}",
                    s["service"], s["name"], s["span_id"], s["parent_span_id"]
                )
            })
            .collect()
    }
}

fn assert_child_of(child: &Value, parent: &Value) {
    assert_eq!(
        child["parent_span_id"], parent["span_id"],
        "{} should be a child of {}",
        child["name"], parent["name"]
    );
}

#[tokio::test]
async fn one_login_is_one_trace_across_all_five_services() {
    let sink = OtlpSink::start();
    let endpoint = sink.endpoint.clone();
    let test = TestStack::start_with(&Service::ALL, |config| {
        config.page_deadline_ms = 3_000;
        config.telemetry.otlp_endpoint = Some(endpoint);
    })
    .await;
    let login = test
        .gateway()
        .login(seed::DEMO_USERNAME, seed::DEMO_PASSWORD)
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["status"], "complete");
    let request_id = login.body["request_id"].as_str().unwrap().to_owned();
    // Stopping flushes every service's exporter.
    test.stack.stop().await;

    let trace = eventually(Duration::from_secs(20), || async {
        let spans = sink.spans();
        let root = spans.iter().find(|s| {
            s["attributes"]["storefront.request_id"] == request_id.as_str()
                && s["parent_span_id"] == ""
        })?;
        let trace_id = root["trace_id"].clone();
        let trace: Vec<Value> = spans
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id)
            .collect();
        let services: HashSet<&str> = trace.iter().filter_map(|s| s["service"].as_str()).collect();
        (services.len() == 5 && trace.len() >= 14).then_some(trace)
    })
    .await
    .map(Trace)
    .unwrap_or_else(|| panic!("no trace of all five services: {:#?}", sink.spans()));

    let topics = test.config.kafka.topics();
    let root = trace.span("gateway", "POST /api/login");
    assert_eq!(root["kind"], 2, "the HTTP span is a server span");
    assert_eq!(root["attributes"]["http.response.status_code"], 200);
    let events: Vec<&str> = root["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"initiated"));
    assert_eq!(events.last(), Some(&"delivered"));
    assert!(events.contains(&"enqueued") && events.contains(&"completed"));
    assert_eq!(
        events.iter().filter(|e| **e == "picked_up").count(),
        4,
        "picked up by user-svc, history-svc, ads-svc and the aggregator: {events:?}"
    );

    let send = |service: &str, topic: &str| trace.span(service, &format!("send {topic}"));
    let process = |service: &str, topic: &str| trace.span(service, &format!("process {topic}"));
    let requested = send("gateway", &topics.page_requested);
    assert_child_of(requested, root);
    let user_in = process("user-svc", &topics.page_requested);
    assert_child_of(user_in, requested);
    let resolved = send("user-svc", &topics.user_resolved);
    assert_child_of(resolved, user_in);
    let history_in = process("history-svc", &topics.user_resolved);
    assert_child_of(history_in, resolved);
    let history = send("history-svc", &topics.history_fetched);
    assert_child_of(history, history_in);
    let ads_in = process("ads-svc", &topics.user_resolved);
    assert_child_of(ads_in, resolved);
    let ads = send("ads-svc", &topics.ads_selected);
    assert_child_of(ads, ads_in);
    for (topic, sender) in [
        (&topics.page_requested, requested),
        (&topics.user_resolved, resolved),
        (&topics.history_fetched, history),
        (&topics.ads_selected, ads),
    ] {
        assert_child_of(process("aggregator", topic), sender);
    }

    let joined = trace.span("aggregator", "aggregate page");
    assert_child_of(joined, requested);
    let linked: HashSet<&str> = joined["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["span_id"].as_str().unwrap())
        .collect();
    for branch in [requested, resolved, history, ads] {
        assert!(
            linked.contains(branch["span_id"].as_str().unwrap()),
            "the page's span links {}",
            branch["name"]
        );
    }
    let completed = send("aggregator", &topics.page_completed);
    assert_child_of(completed, joined);
    assert_child_of(process("gateway", &topics.page_completed), completed);

    for span in [user_in, history_in, ads_in] {
        let attributes = &span["attributes"];
        assert_eq!(span["kind"], 5, "process spans are consumer spans");
        assert_eq!(attributes["messaging.system"], "kafka");
        assert_eq!(attributes["messaging.operation.type"], "process");
        assert!(attributes["messaging.destination.partition.id"].is_string());
        assert!(attributes["messaging.kafka.offset"].is_i64());
    }
    assert_eq!(requested["kind"], 4, "send spans are producer spans");
    assert_eq!(
        requested["attributes"]["messaging.destination.name"],
        topics.page_requested.as_str()
    );
}

#[tokio::test]
async fn every_service_serves_metrics_a_prometheus_parser_reads() {
    let test = TestStack::start(&Service::ALL, 3_000).await;
    let gateway = test.gateway();
    let login = gateway
        .login(seed::DEMO_USERNAME, seed::DEMO_PASSWORD)
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let wrong = gateway.login(seed::DEMO_USERNAME, "not the password").await;
    assert_eq!(wrong.status, 401);

    let topics = test.config.kafka.topics();
    let by_name = |name: &str| {
        test.stack
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .http_addr
    };

    let edge = scrape(by_name("gateway")).await;
    let count = |labels: &[(&str, &str)]| {
        sample(&edge, "http_request_duration_seconds_count", labels).unwrap_or(0.0)
    };
    assert_eq!(
        count(&[
            ("route", "/api/login"),
            ("method", "POST"),
            ("status", "200")
        ]),
        1.0
    );
    assert_eq!(
        count(&[
            ("route", "/api/login"),
            ("method", "POST"),
            ("status", "401")
        ]),
        1.0
    );
    for status in ["complete", "rejected"] {
        assert_eq!(
            sample(
                &edge,
                "storefront_page_latency_seconds_count",
                &[("status", status)]
            ),
            Some(1.0),
            "one {status} page"
        );
    }
    assert_eq!(
        sample(&edge, "storefront_shed_total", &[]),
        Some(0.0),
        "shed requests are counted (none here)"
    );
    assert!(sample(&edge, "http_requests_in_flight", &[]).is_some());

    // Every stream service measured its hops and reports lag once
    // librdkafka's statistics (every second) have come in.
    for (service, input) in [
        ("user-svc", &topics.page_requested),
        ("history-svc", &topics.user_resolved),
        ("ads-svc", &topics.user_resolved),
        ("aggregator", &topics.ads_selected),
    ] {
        let addr = by_name(service);
        let samples = eventually(Duration::from_secs(10), || async {
            let samples = scrape(addr).await;
            samples
                .iter()
                .any(|s| s.name == "storefront_consumer_lag" && s.labels["topic"] == input.as_str())
                .then_some(samples)
        })
        .await
        .unwrap_or_else(|| panic!("{service} reports lag on {input}"));
        let hops = sample(
            &samples,
            "storefront_hop_latency_seconds_count",
            &[("topic", input)],
        );
        assert!(
            hops >= Some(1.0),
            "{service} measured hops on {input}: {hops:?}"
        );
    }
    let history_svc = by_name("history-svc");
    let reference_lag = eventually(Duration::from_secs(10), || async {
        sample(
            &scrape(history_svc).await,
            "storefront_consumer_lag",
            &[("topic", &topics.catalog)],
        )
    })
    .await;
    assert_eq!(
        reference_lag,
        Some(0.0),
        "the catalog reader, which never commits, reports its lag too"
    );
    let aggregator = scrape(by_name("aggregator")).await;
    assert_eq!(
        sample(&aggregator, "storefront_expired_joins_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&aggregator, "storefront_pending_joins", &[]),
        Some(0.0)
    );
    test.stack.stop().await;
}

#[tokio::test]
async fn the_page_reports_each_milestone_of_its_request_in_order() {
    let stack = storefront_e2e::shared();
    let login = stack
        .gateway()
        .login(seed::DEMO_USERNAME, seed::DEMO_PASSWORD)
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let milestones = login.body["milestones"].as_array().unwrap();
    let steps: Vec<(&str, &str)> = milestones
        .iter()
        .map(|m| (m["stage"].as_str().unwrap(), m["service"].as_str().unwrap()))
        .collect();
    for expected in [
        ("initiated", "gateway"),
        ("enqueued", "gateway"),
        ("picked_up", "user-svc"),
        ("picked_up", "history-svc"),
        ("picked_up", "ads-svc"),
        ("picked_up", "aggregator"),
        ("completed", "aggregator"),
        ("delivered", "gateway"),
    ] {
        assert_eq!(
            steps.iter().filter(|s| **s == expected).count(),
            1,
            "{expected:?} once in {steps:?}"
        );
    }
    assert_eq!(steps.first(), Some(&("initiated", "gateway")));
    assert_eq!(steps.last(), Some(&("delivered", "gateway")));
    let times: Vec<i64> = milestones
        .iter()
        .map(|m| m["at_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {milestones:?}"
    );
    let position = |step| steps.iter().position(|s| *s == step).unwrap();
    assert!(position(("picked_up", "user-svc")) < position(("picked_up", "history-svc")));
    assert!(position(("picked_up", "user-svc")) < position(("picked_up", "ads-svc")));
}
