//! The debugging tools on a real broker, with records the real services
//! wrote: `storefront trace` follows one request and one session across
//! every topic reading only the session's partitions, `storefront tail`
//! follows topics live with filters, `storefront replay` re-drives a time
//! range in an isolated namespace and reports what came out differently,
//! and seeking by time lands on the right offset.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use storefront::stack::Service;
use storefront_e2e::{fresh_namespace, shared, Gateway, TestStack};
use storefront_runtime::{
    partitioner::partition_for_key,
    snapshot::{PartitionReader, Since, TopicPartition},
    EventProducer, Inbound, KafkaSettings, Telemetry,
};
use storefront_schemas::now_ms;

/// The `storefront` binary pointed at `kafka`.
fn storefront(kafka: &KafkaSettings) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storefront"));
    command
        .env("KAFKA_BOOTSTRAP_SERVERS", &kafka.bootstrap_servers)
        .env("STOREFRONT_TOPIC_PREFIX", &kafka.topic_prefix)
        .env("RUST_LOG", "warn");
    command
}

/// Runs `storefront args...`; its stdout, or a panic with its stderr.
fn run_ok(kafka: &KafkaSettings, args: &[&str]) -> String {
    let output = storefront(kafka).args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(
        output.status.success(),
        "storefront {args:?} failed:\n{stderr}\n{stdout}"
    );
    stdout
}

async fn log_in(gateway: &Gateway, user: &(String, String, String)) -> (String, Value) {
    let reply = gateway.login(&user.0, &user.2).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    (reply.session_cookie().unwrap(), reply.body)
}

#[tokio::test]
async fn trace_follows_a_request_and_its_session_across_every_topic() {
    let stack = shared();
    let gateway = stack.gateway();
    let (cookie, login) = log_in(&gateway, &stack.dataset.logins[1]).await;
    let page = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let request_id = page.body["request_id"].as_str().unwrap().to_owned();
    let kafka = stack.kafka().clone();

    let trace: Value =
        serde_json::from_str(&run_ok(&kafka, &["trace", &request_id, "--json"])).unwrap();
    assert_eq!(trace["subject"]["kind"], "request", "{trace:#}");
    let session_id = trace["subject"]["session_id"].as_str().unwrap().to_owned();
    let steps = trace["steps"].as_array().unwrap();
    let topics: Vec<String> = steps
        .iter()
        .map(|s| {
            s["topic"]
                .as_str()
                .unwrap()
                .trim_start_matches(&kafka.topic_prefix)
                .to_owned()
        })
        .collect();
    for topic in [
        "page.requested",
        "user.resolved",
        "history.fetched",
        "ads.selected",
        "page.completed",
    ] {
        assert_eq!(
            topics.iter().filter(|t| *t == topic).count(),
            1,
            "one {topic} in the request's trace: {topics:?}"
        );
    }
    assert_eq!(topics.first().unwrap(), "page.requested");
    assert_eq!(topics.last().unwrap(), "page.completed");
    let mut previous = 0;
    for step in steps {
        assert_eq!(step["request_id"], request_id.as_str());
        assert_eq!(
            step["value"]["context"]["request_id"],
            request_id.as_str(),
            "decoded: {step:#}"
        );
        let at = step["timestamp_ms"].as_i64().unwrap();
        assert!(at >= previous, "in time order");
        previous = at;
    }
    assert!(steps[0]["hop_ms"].is_null() && steps[0]["since_start_ms"] == 0);
    assert!(steps[1..]
        .iter()
        .all(|s| s["hop_ms"].as_i64().is_some_and(|h| h >= 0)));
    let completed = steps.last().unwrap();
    assert_eq!(completed["value"]["status"], "complete");
    assert_eq!(
        completed["value"]["user"]["name"],
        login["page"]["user"]["name"]
    );

    // Only the session's partition was read, on every co-partitioned topic.
    let partition = partition_for_key(session_id.as_bytes(), kafka.partitions);
    assert_eq!(trace["partition"], partition);
    for read in trace["partitions_read"].as_array().unwrap() {
        let topic = read["topic"].as_str().unwrap();
        if topic.ends_with("page.completed") {
            assert_eq!(
                read["partition"], completed["partition"],
                "the reply partition"
            );
        } else if !topic.ends_with("dead-letters") {
            assert_eq!(read["partition"], partition, "{topic}");
        }
    }

    // The session: its login, its page view, and the session it opened.
    let trace: Value =
        serde_json::from_str(&run_ok(&kafka, &["trace", &session_id, "--json"])).unwrap();
    assert_eq!(trace["subject"]["kind"], "session");
    let steps = trace["steps"].as_array().unwrap();
    let requests: std::collections::BTreeSet<&str> = steps
        .iter()
        .filter_map(|s| s["request_id"].as_str())
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "the login and the page view: {requests:?}"
    );
    assert!(steps
        .iter()
        .any(|s| s["topic"].as_str().unwrap().ends_with("sessions")
            && s["value"]["customer_id"] == stack.dataset.logins[1].1.as_str()));
    assert_eq!(
        steps
            .iter()
            .filter(|s| s["topic"].as_str().unwrap().ends_with("page.completed"))
            .count(),
        2
    );

    // The table says what it read.
    let table = run_ok(&kafka, &["trace", &request_id]);
    println!("{table}");
    assert!(
        table.contains(&format!("Read only partition {partition} of")),
        "{table}"
    );
    assert!(table.contains("co-partitioned"), "{table}");
    assert!(
        table.contains(&format!("{}user.resolved", kafka.topic_prefix)),
        "{table}"
    );

    // Bounded by time: nothing before the request.
    let before = (now_ms() - 3_600_000).to_string();
    let empty = run_ok(
        &kafka,
        &["trace", &request_id, "--since", &before, "--until", &before],
    );
    assert!(empty.contains("No records in that time range"), "{empty}");

    let unknown = storefront(&kafka)
        .args(["trace", &storefront_schemas::RequestId::new().to_string()])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no page.requested"));
}

/// A `storefront tail` child process, once it says it is following, and
/// the rest of what it says on stderr (read on, so the pipe stays open).
fn start_tail(
    kafka: &KafkaSettings,
    args: &[&str],
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = storefront(kafka)
        .arg("tail")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "tail ended before following"
        );
        if line.starts_with("Following") {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    (child, rest)
}

/// Waits for a tail to end on its own (it stops at `--max`), and returns its stdout lines.
fn lines_of(
    (child, stderr): (std::process::Child, std::thread::JoinHandle<String>),
) -> Vec<String> {
    let output = child.wait_with_output().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(
        output.status.success(),
        "tail failed ({}): {stderr}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn tail_follows_topics_live_and_keeps_only_what_the_filters_match() {
    let stack = shared();
    let gateway = stack.gateway();
    let kafka = stack.kafka().clone();
    let (cookie, _) = log_in(&gateway, &stack.dataset.logins[2]).await;
    let session_id = {
        let page = gateway.get("/api/page", Some(&cookie)).await;
        let request_id = page.body["request_id"].as_str().unwrap().to_owned();
        let trace: Value =
            serde_json::from_str(&run_ok(&kafka, &["trace", &request_id, "--json"])).unwrap();
        trace["subject"]["session_id"].as_str().unwrap().to_owned()
    };

    // By key, on two topics; by field value; by header value.
    let by_key = start_tail(
        &kafka,
        &[
            "page.requested",
            "page.completed",
            "--key",
            &session_id,
            "--max",
            "2",
            "--json",
        ],
    );
    let by_field = start_tail(
        &kafka,
        &[
            "user.resolved",
            "--field",
            &format!("context.session_id={session_id}"),
            "--field",
            "status=authenticated",
            "--max",
            "1",
            "--json",
        ],
    );
    let by_header = start_tail(
        &kafka,
        &[
            "all",
            "--header",
            "event-type=ads.selected",
            "--key",
            &session_id,
            "--max",
            "1",
        ],
    );
    // Someone else's request first: the filters leave it out.
    let (other, _) = log_in(&gateway, &stack.dataset.logins[3]).await;
    assert_eq!(gateway.get("/api/page", Some(&other)).await.status, 200);
    let page = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(page.status, 200);
    let request_id = page.body["request_id"].as_str().unwrap();

    let records: Vec<Value> = lines_of(by_key)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| r["key"] == session_id.as_str() && r["request_id"] == request_id));
    assert_eq!(records[0]["event_type"], "page.requested");
    assert_eq!(records[1]["event_type"], "page.completed");
    assert_eq!(records[1]["value"]["status"], "complete");

    let resolved: Vec<Value> = lines_of(by_field)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        resolved[0]["value"]["user"]["customer_id"],
        stack.dataset.logins[2].1.as_str()
    );

    let ads = lines_of(by_header);
    assert_eq!(ads.len(), 1);
    assert!(
        ads[0].contains("ads.selected") && ads[0].contains(&session_id),
        "{}",
        ads[0]
    );

    let unknown = storefront(&kafka)
        .args(["tail", "no.such.topic"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no topic"));
}

#[tokio::test]
async fn replay_re_drives_a_time_range_in_its_own_namespace_and_reports_what_differs() {
    let mut test = TestStack::start(&Service::ALL, 1_500).await;
    let gateway = test.gateway();
    let kafka = test.config.kafka.clone();
    let from = now_ms();
    let (cookie, _) = log_in(&gateway, &test.dataset.logins[4]).await;
    assert_eq!(
        gateway.get("/api/page", Some(&cookie)).await.body["status"],
        "complete"
    );
    // ads-svc is away for the next page: it is partial when recorded, complete when replayed.
    test.stack.stop_service("ads-svc").await;
    let partial = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(partial.body["status"], "partial", "{}", partial.text);
    let partial_id = partial.body["request_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let to = now_ms();
    let (from, to) = (from.to_string(), to.to_string());
    let into = format!("{}replay.", kafka.topic_prefix);
    let range = ["replay", "--from", &from, "--to", &to, "--into", &into];

    // Never into the namespace being replayed.
    let refused = storefront(&kafka)
        .args([
            "replay",
            "--from",
            &from,
            "--to",
            &to,
            "--into",
            &kafka.topic_prefix,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("would write into the topics being replayed"));

    // A dry run says what it would do, and does nothing.
    let dry = storefront(&kafka)
        .args(range)
        .arg("--dry-run")
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{plan}");
    assert!(plan.contains("Replay 3 of the 3 requests"), "{plan}");
    assert!(plan.contains("1 logins, 0 logouts, 2 page views"), "{plan}");
    assert!(plan.contains("Dry run: nothing was written"), "{plan}");
    let target = {
        let mut target = kafka.clone();
        target.topic_prefix = into.clone();
        target
    };
    let reader = PartitionReader::new(&target, "tools-test").unwrap();
    assert!(reader
        .partitions_of(&target.topics().page_requested)
        .unwrap()
        .is_empty());

    let key = test.config.unseal_key.to_base64();
    let report: Value = serde_json::from_str(&run_ok(
        &kafka,
        &[
            &range[..],
            &["--json", "--user-svc-secret-key", &key, "--rate", "10"],
        ]
        .concat(),
    ))
    .unwrap();
    // Recorded partial (ads-svc away), replayed complete: everything the
    // recorded page showed, the replay shows alike, and it says it got ads.
    assert_eq!(report["same"], 3, "{report:#}");
    assert_eq!(report["different"], 0, "{report:#}");
    assert_eq!(report["timing"], 0, "{report:#}");
    assert!(report["copy_ready_ms"].as_u64().is_some(), "{report:#}");
    let partial_report = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == partial_id.as_str())
        .expect("the partial page was replayed");
    assert_eq!(partial_report["verdict"], "same");
    assert_eq!(partial_report["recorded"]["status"], "partial");
    assert_eq!(partial_report["replayed"]["status"], "complete");
    assert!(
        partial_report["notes"]
            .to_string()
            .contains("the replay also has ads"),
        "{partial_report}"
    );

    // The same as text, into another namespace.
    let into_text = format!("{}replay-text.", kafka.topic_prefix);
    let text = run_ok(
        &kafka,
        &[
            "replay",
            "--from",
            &from,
            "--to",
            &to,
            "--into",
            &into_text,
            "--user-svc-secret-key",
            &key,
            "--budget-scale",
            "2",
        ],
    );
    println!("{text}");
    assert!(
        text.contains("same: 3  timing: 0  different: 0  no recorded page: 0  no replayed page: 0"),
        "{text}"
    );
    assert!(
        text.contains("2 times its recorded time budget (budget scale 2)"),
        "{text}"
    );
    assert!(text.contains("The copy was ready in "), "{text}");
    assert!(text.contains(&format!("page {partial_id}")), "{text}");

    // The replay wrote into its namespace only, and refuses to run into it again.
    let replayed = storefront_e2e::read_topic(&target, &target.topics().page_requested).await;
    assert_eq!(replayed.len(), 3);
    let again = storefront(&kafka)
        .args(range)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds records"));
}

/// Records stamped `+1000` to `+6000` ms after `base` (offsets 0 to 5, each
/// its own batch), then one batch stamped out of order `+9000, +7000, +8000`
/// (offsets 6 to 8), then one stamped `+500` (offset 9).
async fn write_stamped_records(kafka: &KafkaSettings, topic: &str, base: i64) {
    let producer = EventProducer::new(kafka, &Telemetry::local("tools-test")).unwrap();
    let stamped = |i: u8, after: i64| Inbound {
        topic: topic.to_owned(),
        partition: 0,
        offset: -1,
        key: Some(b"k".to_vec()),
        payload: Some(vec![i]),
        headers: Default::default(),
        raw_headers: vec![],
        timestamp_ms: Some(base + after),
        trace: Default::default(),
    };
    for i in 0..6 {
        let record = stamped(i, 1000 * (i64::from(i) + 1));
        producer
            .copy_all(&[record], |t| t.to_owned())
            .await
            .unwrap();
    }
    let out_of_order = [stamped(6, 9000), stamped(7, 7000), stamped(8, 8000)];
    producer
        .copy_all(&out_of_order, |t| t.to_owned())
        .await
        .unwrap();
    producer
        .copy_all(&[stamped(9, 500)], |t| t.to_owned())
        .await
        .unwrap();
}

/// Kafka's rule: the earliest offset whose timestamp is at or after the time.
async fn check_seek_by_time(kafka: &KafkaSettings) {
    storefront_runtime::topics::ensure_topics(kafka)
        .await
        .unwrap();
    // A topic of one partition that nothing else writes in this namespace.
    let topic = kafka.topics().dead_letters;
    let base = now_ms() - 3_600_000;
    write_stamped_records(kafka, &topic, base).await;
    let reader = PartitionReader::new(kafka, "tools-test").unwrap();
    let tp = [TopicPartition::new(&topic, 0)];
    let start = |after: i64| {
        reader
            .positions(&tp, Some(Since::Timestamp(base + after)))
            .unwrap()[0]
            .start
    };
    let expected = [
        (0, 0),
        (500, 0),
        (1000, 0),
        (2500, 2),
        (4000, 3),
        (6000, 5),
        (6500, 6),
        (7500, 6),
        (9000, 6),
        (9001, 10),
    ];
    for (after, offset) in expected {
        assert_eq!(start(after), offset, "seek to +{after} ms");
    }
    let mut read = vec![];
    reader
        .read(
            &tp,
            Since::Timestamp(base + 2500),
            Some(base + 4000),
            Duration::from_secs(20),
            |r| read.push(r.offset),
        )
        .unwrap();
    assert_eq!(read, [2, 3], "from the time to the bound");
}

#[tokio::test]
async fn seeking_by_time_finds_the_earliest_record_at_or_after_it() {
    check_seek_by_time(&fresh_namespace()).await;
}

/// The replay of one recorded range, in-process, into `into`.
async fn replay_once(
    kafka: &KafkaSettings,
    from: i64,
    to: i64,
    into: &str,
    key: &storefront_schemas::UnsealKey,
) -> storefront::replay::Report {
    let args = storefront::replay::ReplayArgs {
        from,
        to,
        into: into.to_owned(),
        dry_run: false,
        max_requests: storefront::replay::DEFAULT_MAX_REQUESTS,
        rate: storefront::replay::DEFAULT_RATE,
        budget_scale: storefront::replay::DEFAULT_BUDGET_SCALE,
        with_logins: false,
        json: true,
    };
    let plan = {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || storefront::replay::plan(&kafka, &args))
            .await
            .unwrap()
            .unwrap()
    };
    storefront::replay::run(kafka, plan, key.clone())
        .await
        .unwrap()
}

/// A replay is deterministic on an unchanged workflow: the same recorded
/// range (a rejected login, logins, page views, a logout, a partial page)
/// replayed ten times into ten namespaces gets the same verdict every
/// time, every page `same`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_range_replayed_ten_times_gets_the_same_verdict_every_time() {
    let mut test = TestStack::start(&Service::ALL, 1_500).await;
    let gateway = test.gateway();
    let kafka = test.config.kafka.clone();
    let (first, second) = (&test.dataset.logins[8], &test.dataset.logins[9]);
    let from = now_ms();
    let wrong = gateway.login(&first.0, "not-the-password").await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    let (cookie, _) = log_in(&gateway, first).await;
    for _ in 0..2 {
        let page = gateway.get("/api/page", Some(&cookie)).await;
        assert_eq!(page.body["status"], "complete", "{}", page.text);
    }
    let logout = gateway.post_with_cookie("/api/logout", &cookie).await;
    assert!(logout.status < 300, "{}", logout.text);
    let (other, _) = log_in(&gateway, second).await;
    let page = gateway.get("/api/page", Some(&other)).await;
    assert_eq!(page.body["status"], "complete", "{}", page.text);
    test.stack.stop_service("ads-svc").await;
    let partial = gateway.get("/api/page", Some(&other)).await;
    assert_eq!(partial.body["status"], "partial", "{}", partial.text);
    let to = now_ms() + 1;

    let key = test.config.unseal_key.clone();
    let mut verdicts = Vec::new();
    for run in 0..10 {
        let into = format!("{}replay-{run}.", kafka.topic_prefix);
        let report = replay_once(&kafka, from, to, &into, &key).await;
        println!(
            "run {run}: copy ready in {} ms, same {} timing {} different {}",
            report.copy_ready_ms, report.same, report.timing, report.different
        );
        let of_run: Vec<(String, String)> = report
            .requests
            .iter()
            .map(|r| (r.request_id.clone(), format!("{:?}", r.verdict)))
            .collect();
        assert_eq!(of_run.len(), 8, "{of_run:?}");
        for request in &report.requests {
            assert_eq!(
                format!("{:?}", request.verdict),
                "Same",
                "run {run}: {} {}: {:?} {:?}",
                request.kind,
                request.request_id,
                request.differences,
                request.timing
            );
        }
        verdicts.push(of_run);
    }
    assert!(verdicts.windows(2).all(|w| w[0] == w[1]));
}

/// What cannot be replayed is said before anything runs: a range with no
/// request, and one holding pages of a session whose login is before it
/// and that the copy would not know (unless `--with-logins` widens it).
#[tokio::test]
async fn a_range_with_no_request_or_with_sessions_the_copy_never_saw_is_refused_before_anything_runs(
) {
    let stack = shared();
    let kafka = stack.kafka().clone();
    let gateway = stack.gateway();

    let empty = storefront(&kafka)
        .args([
            "replay",
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            "2020-01-01T00:01:00Z",
        ])
        .args([
            "--into",
            &format!("{}replay-empty.", kafka.topic_prefix),
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(!empty.status.success());
    let said = String::from_utf8_lossy(&empty.stderr);
    assert!(said.contains("no page request was recorded"), "{said}");

    // The range starts between the login and the session it opened: the
    // copy would start without that session.
    let (cookie, login) = log_in(&gateway, &stack.dataset.logins[10]).await;
    let login_id = login["request_id"].as_str().unwrap().to_owned();
    let page = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let requested = storefront_e2e::read_topic(&kafka, &kafka.topics().page_requested).await;
    let login_at = requested
        .iter()
        .find(|r| r.headers.request_id.map(|id| id.to_string()) == Some(login_id.clone()))
        .and_then(|r| r.timestamp_ms)
        .expect("the login's record");
    let (from, to) = ((login_at + 1).to_string(), (now_ms() + 1).to_string());
    let into = format!("{}replay-outside.", kafka.topic_prefix);
    let range = [
        "replay",
        "--from",
        &from,
        "--to",
        &to,
        "--into",
        &into,
        "--dry-run",
    ];
    let refused = storefront(&kafka).args(range).output().unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("whose login was before it"), "{said}");
    assert!(said.contains("--with-logins"), "{said}");

    let widened = storefront(&kafka)
        .args(range)
        .arg("--with-logins")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&widened.stderr);
    assert!(widened.status.success(), "{said}");
    assert!(said.contains("widened back to the logins of"), "{said}");
    assert!(
        !said.contains(" 0 logins"),
        "the login is in the widened range: {said}"
    );
}
