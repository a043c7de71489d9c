//! The operator console's API on the real broker: the token, a login seen
//! live and traced across every topic with no secret in it, the groups'
//! lag, dead letters re-published only when confirmed, and a replay from
//! its dry run to its per-page diff.

use std::time::Duration;

use serde_json::{json, Value};
use storefront_e2e::{
    console::{console_stack, ConsoleStack},
    eventually,
    sse::read_events,
};
use storefront_runtime::{snapshot::PartitionReader, EventProducer, Outbound, Telemetry};
use storefront_schemas::SessionId;

struct Api<'a> {
    stack: &'a ConsoleStack,
    client: reqwest::Client,
}

impl<'a> Api<'a> {
    fn new(stack: &'a ConsoleStack) -> Self {
        Self {
            stack,
            client: reqwest::Client::new(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.stack.url(path))
            .bearer_auth(&self.stack.token)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        read(self.request(reqwest::Method::GET, path)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        read(self.request(reqwest::Method::POST, path).json(&body)).await
    }
}

async fn read(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the console answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn topic_suffixes(timeline: &Value) -> Vec<String> {
    timeline["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let topic = s["topic"].as_str().unwrap();
            topic
                .split_once('.')
                .map_or(topic, |(_, rest)| rest)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_login_appears_live_and_its_timeline_shows_every_topic_and_no_secret() {
    let stack = console_stack();
    let api = Api::new(stack);
    let (username, customer_id, password) = stack.dataset.logins[3].clone();

    let refused = reqwest::get(stack.url("/api/requests")).await.unwrap();
    assert_eq!(refused.status(), 401);

    // The live list, filtered to this customer, opened before the login.
    let live = api
        .request(
            reqwest::Method::GET,
            &format!("/api/requests/live?user={customer_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let events = tokio::spawn(read_events(live, "request", Duration::from_secs(30)));
    let login = stack.gateway().login(&username, &password).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let request_id = login.body["request_id"].as_str().unwrap().to_owned();
    let events = events.await.unwrap();
    let summary = events
        .last()
        .expect("the page arrives on the live stream")
        .json();
    assert_eq!(summary["request_id"], request_id.as_str());
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["user"]["customer_id"], customer_id.as_str());
    assert!(summary["latency_ms"].as_i64().unwrap() >= 0);

    let session = summary["session_id"].as_str().unwrap();
    let (status, listed) = api
        .get(&format!("/api/requests?session={session}&status=complete"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["requests"][0]["request_id"], request_id.as_str());

    let (status, timeline) = api
        .get(&format!("/api/requests/{request_id}/timeline"))
        .await;
    assert_eq!(status, 200, "{timeline}");
    let topics = topic_suffixes(&timeline);
    for topic in [
        "page.requested",
        "user.resolved",
        "history.fetched",
        "ads.selected",
        "page.completed",
    ] {
        assert!(topics.iter().any(|t| t == topic), "{topic} in {topics:?}");
    }
    let services: Vec<&str> = timeline["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    for service in [
        "gateway",
        "user-svc",
        "history-svc",
        "ads-svc",
        "aggregator",
    ] {
        assert!(services.contains(&service), "{service} in {services:?}");
    }
    assert_eq!(timeline["status"], "complete");
    assert!(
        timeline["deadline_ms"].as_i64().unwrap() > timeline["requested_at_ms"].as_i64().unwrap()
    );
    let trace_id = timeline["trace_id"].as_str().expect("a trace id");
    assert_eq!(trace_id.len(), 32);
    assert_eq!(
        timeline["trace_url"],
        format!("http://tracing.invalid/trace/{trace_id}")
    );
    let requested = &timeline["steps"][0];
    assert!(requested["topic"]
        .as_str()
        .unwrap()
        .ends_with("page.requested"));
    assert_eq!(requested["value"]["login"]["username"], username.as_str());
    assert_eq!(requested["value"]["login"]["sealed_password"], "[redacted]");
    let text = timeline.to_string();
    assert!(!text.contains(&password), "the password is nowhere");
    assert!(!text.contains("password_hash\":\"$"), "no password hash");

    let (status, credentials) = api
        .get("/api/topics/credentials/records?since=1h&limit=5")
        .await;
    assert_eq!(status, 200, "{credentials}");
    let records = credentials["records"].as_array().unwrap();
    assert_eq!(records.len(), 5);
    assert!(
        records
            .iter()
            .all(|r| r["value"]["password_hash"] == "[redacted]"),
        "{credentials}"
    );
    let (_, topics) = api.get("/api/topics").await;
    assert!(topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "page.completed" && t["records"].as_i64() >= Some(1)));

    let (_, stats) = api.get("/api/stats").await;
    let pages: u64 = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pages"].as_u64().unwrap())
        .sum();
    assert!(pages >= 1, "{stats}");
}

#[tokio::test]
async fn unknown_and_malformed_requests_get_a_clear_error() {
    let stack = console_stack();
    let api = Api::new(stack);
    let unknown = uuid::Uuid::now_v7();
    let (status, body) = api.get(&format!("/api/requests/{unknown}/timeline")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no page.requested"));
    let (status, body) = api.get("/api/requests/12345/timeline").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_id"))
    );
}

#[tokio::test]
async fn the_services_groups_show_their_lag_on_every_partition_they_read() {
    let stack = console_stack();
    let api = Api::new(stack);
    let login = stack.gateway().login("demo", "demo-password").await;
    assert_eq!(login.status, 200);
    let groups = eventually(Duration::from_secs(30), || async {
        let (_, body) = api.get("/api/groups").await;
        let groups = body["groups"].as_array().cloned().unwrap_or_default();
        (groups.len() >= 4).then_some(groups)
    })
    .await
    .expect("the services' groups have committed");
    for group in &groups {
        assert!(group["group"]
            .as_str()
            .unwrap()
            .starts_with(&stack.kafka.topic_prefix));
        let partitions = group["partitions"].as_array().unwrap();
        assert!(!partitions.is_empty());
        let sum: i64 = partitions.iter().map(|p| p["lag"].as_i64().unwrap()).sum();
        assert_eq!(group["lag"].as_i64().unwrap(), sum);
        for p in partitions {
            // Nothing committed yet: all of the partition is lag (none of these was trimmed).
            let committed = p["committed"].as_i64().unwrap_or(0);
            assert_eq!(
                p["lag"].as_i64().unwrap(),
                p["end"].as_i64().unwrap() - committed
            );
        }
    }
}

#[tokio::test]
async fn a_dead_letter_is_counted_and_republished_only_when_confirmed() {
    let stack = console_stack();
    let api = Api::new(stack);
    let topics = stack.kafka.topics();
    let producer = EventProducer::new(&stack.kafka, &Telemetry::local("console-garbage")).unwrap();
    let garbage = Outbound {
        topic: topics.page_requested.clone(),
        key: SessionId::new().to_string(),
        partition: None,
        headers: Default::default(),
        trace: Default::default(),
        payload: b"\xc3\x01 not a page request".to_vec(),
        deadline_ms: None,
    };
    let (partition, offset) = producer.send(&garbage).await.unwrap();
    let letter = eventually(Duration::from_secs(30), || async {
        let (_, body) = api.get("/api/dead-letters").await;
        body["letters"]
            .as_array()?
            .iter()
            .find(|l| {
                l["service"] == "user-svc"
                    && l["source_partition"] == partition
                    && l["source_offset"] == offset
            })
            .cloned()
    })
    .await
    .expect("user-svc's dead letter is listed");
    let (_, listed) = api.get("/api/dead-letters").await;
    assert!(listed["by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["service"] == "user-svc"
            && r["reason"] == letter["reason"]
            && r["count"].as_u64() >= Some(1)));

    let position = letter["position"].as_str().unwrap();
    let end_of_source = || {
        let (kafka, topic) = (stack.kafka.clone(), topics.page_requested.clone());
        tokio::task::spawn_blocking(move || {
            let reader = PartitionReader::new(&kafka, "console-test").unwrap();
            let partitions = reader.partitions_of(&topic).unwrap();
            let positions = reader.positions(&partitions, None).unwrap();
            positions.iter().map(|p| p.high).sum::<i64>()
        })
    };
    let before = end_of_source().await.unwrap();
    let (status, body) = api
        .post(
            "/api/dead-letters/republish",
            json!({"positions": [position]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("confirm"))
    );
    let (status, body) = api
        .post(
            "/api/dead-letters/republish",
            json!({"positions": ["0:999999999"], "confirm": true}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api
        .post(
            "/api/dead-letters/republish",
            json!({"positions": [position], "confirm": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["republished"], 1);
    let after = end_of_source().await.unwrap();
    assert!(
        after > before,
        "the record went back to its source: {before} -> {after}"
    );
}

#[tokio::test]
async fn a_replay_runs_from_its_dry_run_to_a_per_page_diff_and_never_into_the_live_namespace() {
    let stack = console_stack();
    let api = Api::new(stack);
    let from = storefront_schemas::now_ms();
    let (username, _, password) = stack.dataset.logins[5].clone();
    let login = stack.gateway().login(&username, &password).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let to = storefront_schemas::now_ms() + 1;

    let (status, body) = api
        .post(
            "/api/replays/plan",
            json!({"from": from, "to": to, "into": stack.kafka.topic_prefix}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("replay_refused")),
        "{body}"
    );

    let into = format!("{}replay-1.", stack.kafka.topic_prefix);
    let request = json!({"from": from, "to": to, "into": into, "max_requests": 10, "rate": 50, "budget_scale": 2});
    let (status, dry_run) = api.post("/api/replays/plan", request.clone()).await;
    assert_eq!(status, 200, "{dry_run}");
    assert!(
        dry_run["description"]
            .as_str()
            .unwrap()
            .contains("budget scale 2"),
        "{dry_run}"
    );
    assert!(dry_run["plan"]["found"].as_u64().unwrap() >= 1, "{dry_run}");
    assert!(dry_run["description"].as_str().unwrap().contains(&into));
    let reader = PartitionReader::new(&stack.kafka, "console-test").unwrap();
    let target = storefront_runtime::Topics::with_prefix(&into);
    assert!(
        reader
            .partitions_of(&target.page_requested)
            .unwrap()
            .is_empty(),
        "the dry run created nothing"
    );

    let mut confirmed = request.clone();
    confirmed["confirm"] = json!(true);
    let (status, started) = api.post("/api/replays", confirmed.clone()).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let (status, _) = api.post("/api/replays", confirmed).await;
    assert!(
        status == 409 || status == 400,
        "a second replay while one runs or into a used namespace: {status}"
    );
    let done = eventually(Duration::from_secs(120), || async {
        let (_, job) = api.get(&format!("/api/replays/{id}")).await;
        (job["state"] != "running").then_some(job)
    })
    .await
    .expect("the replay ends");
    assert_eq!(done["state"], "done", "{done}");
    let report = &done["report"];
    let login_id = login.body["request_id"].as_str().unwrap();
    let replayed = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == login_id)
        .expect("the login was replayed");
    assert_eq!(replayed["kind"], "login");
    assert_eq!(replayed["verdict"], "same", "{replayed}");
    assert_eq!(replayed["differences"], json!([]), "{replayed}");
    assert!(report["same"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["plan"]["budget_scale"], 2.0, "{report}");
    assert!(report["copy_ready_ms"].as_u64().is_some(), "{report}");
}

/// The page itself, in Chromium: `tests/browser/console.mjs`, with
/// screenshots of each view in `target/browser-screenshots/console/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium_refuses_a_wrong_token_and_follows_a_request_live() {
    // Before the stack starts: without the tools this fails at once, saying what to run.
    storefront_e2e::browser::require_tools();
    let stack = console_stack();
    let (username, _, password) = stack.dataset.logins[7].clone();
    let screenshots = storefront_e2e::browser::run_spec(
        "console",
        &[
            ("CONSOLE_URL", stack.url("")),
            ("CONSOLE_TOKEN", stack.token.clone()),
            ("STOREFRONT_URL", stack.gateway().base),
            ("STOREFRONT_USERNAME", username),
            ("STOREFRONT_PASSWORD", password),
            (
                "REPLAY_INTO",
                format!("{}browser-replay.", stack.kafka.topic_prefix),
            ),
        ],
    )
    .await;
    for view in [
        "token-refused",
        "requests-live",
        "timeline",
        "health",
        "topics",
        "replay-dry-run",
    ] {
        let found = std::fs::read_dir(&screenshots).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("-{view}.png"))
        });
        assert!(found, "a screenshot of {view} in {}", screenshots.display());
    }
}
