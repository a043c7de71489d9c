//! The baseline designs on a real broker: the choreography (all five real
//! services) seeds a namespace and opens sessions at login; the four roles
//! of each design then load the same topics and must answer the same page
//! for those sessions as the real gateway did.

use std::{
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use ads_svc::InjectDelay;
use serde_json::Value;
use storefront_baselines::{Design, RedisServer, Role, Settings, SESSION_HEADER};
use storefront_devstack::stack::Service;
use storefront_e2e::{eventually, read_topic, SharedStack, TestStack};
use storefront_runtime::RunningService;
use storefront_schemas::{RequestId, SessionId};

/// The choreography, for the whole test process: it seeds the namespace,
/// and its gateway logs users in (which opens their sessions).
fn choreography() -> &'static SharedStack {
    static STACK: OnceLock<SharedStack> = OnceLock::new();
    STACK.get_or_init(|| {
        SharedStack::spawn(&Service::ALL, |config| {
            // Generous, so a loaded machine still sees complete pages.
            config.page_deadline_ms = 3_000;
            config.sync_budget_ms = 10_000;
        })
    })
}

/// Logs `userN` in through the real gateway: its session ID and the page it got.
async fn log_in(n: usize) -> (SessionId, Value) {
    let stack = choreography();
    let (username, _, password) = &stack.dataset.logins[n];
    let reply = stack.gateway().login(username, password).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["status"], "complete", "{}", reply.text);
    let cookie = reply.session_cookie().expect("a session cookie");
    let session = storefront_baselines::session_id_from_cookie(&cookie).expect("a session ID");
    (session, reply.body)
}

/// The four roles of one design, in this process on free ports.
struct Baseline {
    gateway: SocketAddr,
    services: Vec<RunningService>,
    client: reqwest::Client,
}

impl Baseline {
    async fn start(
        design: Design,
        redis: Option<&RedisServer>,
        page_deadline_ms: u64,
        inject_delay: InjectDelay,
    ) -> Baseline {
        // Each set of roles has its own Redis lists and keys.
        let prefix = format!("t{}:", RequestId::new());
        let settings = |role| {
            let mut settings = Settings::new(design, role, choreography().kafka().clone());
            settings.page_deadline_ms = page_deadline_ms;
            settings.inject_delay = inject_delay.clone();
            settings.redis_prefix = prefix.clone();
            if let Some(redis) = redis {
                settings.redis_url = redis.url();
            }
            settings
        };
        let start = |settings| async {
            storefront_baselines::start(settings, Default::default())
                .await
                .expect("the role starts")
        };
        let user = start(settings(Role::User)).await;
        let history = start(settings(Role::History)).await;
        let ads = start(settings(Role::Ads)).await;
        let mut gateway = settings(Role::Gateway);
        gateway.user_url = format!("http://{}", user.http_addr);
        gateway.history_url = format!("http://{}", history.http_addr);
        gateway.ads_url = format!("http://{}", ads.http_addr);
        let gateway = start(gateway).await;
        let services = vec![gateway, user, history, ads];
        for service in &services {
            service
                .wait_ready(Duration::from_secs(60))
                .await
                .expect("the role loads its data");
            let readyz = reqwest::get(format!("http://{}/readyz", service.http_addr))
                .await
                .unwrap();
            assert_eq!(readyz.status(), 200, "{} is ready", service.name);
        }
        Baseline {
            gateway: services[0].http_addr,
            services,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// `GET /api/page` with `session` in the header: status, body and how long it took.
    async fn page(&self, session: Option<&str>) -> (u16, Value, Duration) {
        let mut request = self.client.get(format!("http://{}/api/page", self.gateway));
        if let Some(session) = session {
            request = request.header(SESSION_HEADER, session);
        }
        let started = Instant::now();
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, started.elapsed())
    }

    async fn stop(self) {
        for service in self.services {
            service.stop().await;
        }
    }
}

/// The user, purchases and ads of a page.
fn content(page: &Value) -> (&Value, &Value, &Value) {
    let page = &page["page"];
    (&page["user"], &page["recent_purchases"], &page["ads"])
}

/// Checks that `design` answers the choreography's page for a session
/// opened before its roles started, and for one opened while they run;
/// and 401 for an unknown session or none.
async fn pages_match_the_choreography(
    design: Design,
    redis: Option<&RedisServer>,
    users: [usize; 2],
) {
    let (before, real_before) = log_in(users[0]).await;
    let baseline = Baseline::start(design, redis, 1_000, InjectDelay::default()).await;

    let (status, page, _) = baseline.page(Some(&before.to_string())).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["status"], "complete", "{page}");
    assert_eq!(page["missing"], serde_json::json!([]), "{page}");
    assert!(page["request_id"]
        .as_str()
        .is_some_and(|id| RequestId::parse(id).is_ok()));
    assert_eq!(
        content(&page),
        content(&real_before),
        "{design:?}: the same page as the choreography"
    );
    assert!(
        !page["page"]["recent_purchases"]
            .as_array()
            .unwrap()
            .is_empty()
            && !page["page"]["ads"].as_array().unwrap().is_empty(),
        "a user with orders gets purchases and ads: {page}"
    );

    // The user role follows the sessions topic: a login after it started resolves too.
    let (after, real_after) = log_in(users[1]).await;
    let page = eventually(Duration::from_secs(10), || async {
        let (status, page, _) = baseline.page(Some(&after.to_string())).await;
        (status == 200).then_some(page)
    })
    .await
    .expect("a session opened while the roles run resolves");
    assert_eq!(
        content(&page),
        content(&real_after),
        "{design:?}: the same page as the choreography"
    );

    for session in [
        Some(SessionId::new().to_string()),
        Some("not-a-session".into()),
        None,
    ] {
        let (status, body, _) = baseline.page(session.as_deref()).await;
        assert_eq!(status, 401, "{session:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_session", "{body}");
    }
    baseline.stop().await;
}

#[tokio::test]
async fn the_chain_answers_the_same_page_as_the_choreography_and_401_for_an_unknown_session() {
    pages_match_the_choreography(Design::Chain, None, [1, 2]).await;
}

#[tokio::test]
async fn the_fanout_answers_the_same_page_as_the_choreography_and_401_for_an_unknown_session() {
    pages_match_the_choreography(Design::Fanout, None, [3, 4]).await;
}

#[tokio::test]
async fn redis_polling_answers_the_same_page_as_the_choreography_and_401_for_an_unknown_session() {
    let redis = RedisServer::start(&std::env::temp_dir())
        .await
        .expect("redis-server starts");
    pages_match_the_choreography(Design::Redis, Some(&redis), [5, 6]).await;
    redis.stop().await;
}

#[tokio::test]
async fn with_ads_slower_than_the_deadline_every_design_answers_in_time_a_partial_page_missing_ads()
{
    let (session, real) = log_in(7).await;
    let redis = RedisServer::start(&std::env::temp_dir())
        .await
        .expect("redis-server starts");
    let deadline = Duration::from_millis(500);
    let every_ad_late = InjectDelay {
        delay_ms: 2_000,
        fraction: 1.0,
    };
    for design in [Design::Chain, Design::Fanout, Design::Redis] {
        let baseline = Baseline::start(
            design,
            Some(&redis),
            deadline.as_millis() as u64,
            every_ad_late.clone(),
        )
        .await;
        let (status, page, took) = baseline.page(Some(&session.to_string())).await;
        assert_eq!(status, 200, "{design:?}: {page}");
        assert_eq!(page["status"], "partial", "{design:?}: {page}");
        assert_eq!(
            page["missing"],
            serde_json::json!(["ads"]),
            "{design:?}: {page}"
        );
        assert_eq!(
            page["page"]["ads"],
            serde_json::json!([]),
            "{design:?}: {page}"
        );
        let (user, purchases, _) = content(&page);
        assert_eq!(
            (user, purchases),
            (content(&real).0, content(&real).1),
            "{design:?}"
        );
        assert!(
            took >= deadline && took < deadline + Duration::from_millis(400),
            "{design:?}: answered after {took:?}, the deadline being {deadline:?}"
        );
        baseline.stop().await;
    }
    redis.stop().await;
}

#[tokio::test]
async fn the_real_ads_svc_answers_late_when_told_to_so_its_page_goes_out_partial() {
    let test = TestStack::start_with(
        &[
            Service::User,
            Service::History,
            Service::Aggregator,
            Service::Gateway,
        ],
        |config| {
            config.page_deadline_ms = 1_000;
            config.sync_budget_ms = 10_000;
        },
    )
    .await;
    let ads = ads_svc::start(
        ads_svc::Settings {
            kafka: test.config.kafka.clone(),
            telemetry: Default::default(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            instance: Default::default(),
            inject_delay: InjectDelay {
                delay_ms: 2_000,
                fraction: 1.0,
            },
        },
        Default::default(),
    )
    .await
    .expect("ads-svc starts");
    ads.wait_ready(Duration::from_secs(60)).await.unwrap();

    let (username, _, password) = &test.dataset.logins[8];
    let reply = test.gateway().login(username, password).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["status"], "partial", "{}", reply.text);
    assert_eq!(reply.body["missing"], serde_json::json!(["ads"]));

    // Late, not lost: ads.selected for the request comes after the delay.
    let request_id: storefront_schemas::RequestId =
        reply.body["request_id"].as_str().unwrap().parse().unwrap();
    let topic = test.config.kafka.topics().ads_selected;
    let answered = eventually(Duration::from_secs(15), || async {
        read_topic(&test.config.kafka, &topic)
            .await
            .iter()
            .any(|r| r.headers.request_id == Some(request_id))
            .then_some(())
    })
    .await;
    assert!(answered.is_some(), "ads-svc answers after its delay");
    ads.stop().await;
    test.stack.stop().await;
}
