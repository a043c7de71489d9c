//! Read models kept in local checkpoints, on the real broker: a restarted
//! service restores its model and reads only what came after; a corrupt
//! checkpoint is never trusted.

use std::{path::PathBuf, time::Duration};

use storefront_devstack::{
    seed::{DEMO_CUSTOMER_ID, DEMO_PASSWORD, DEMO_USERNAME},
    stack::{Service, StackConfig},
};
use storefront_e2e::{eventually, scratch_dir, Gateway, TestStack};
use storefront_runtime::{EventProducer, InstanceSettings, Outbound, RunningService, Telemetry};
use storefront_schemas::{now_ms, Order};

/// The value of `storefront_read_model_starts_total{from}` on a service.
async fn starts_from(service: &RunningService, from: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", service.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("storefront_read_model_starts_total{{from=\"{from}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The product ids of the demo user's recent purchases, as a page shows them.
async fn recent_purchases(gateway: &Gateway) -> Vec<String> {
    let reply = gateway.login(DEMO_USERNAME, DEMO_PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["status"], "complete", "{}", reply.text);
    reply.body["page"]["recent_purchases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn restart(test: &mut TestStack, service: Service, name: &str) {
    test.stack.stop_service(name).await;
    let started = test
        .config
        .start(service, Default::default())
        .await
        .unwrap();
    started.wait_ready(Duration::from_secs(60)).await.unwrap();
    test.stack.services.push(started);
}

fn service<'a>(test: &'a TestStack, name: &str) -> &'a RunningService {
    test.stack.services.iter().find(|s| s.name == name).unwrap()
}

fn checkpoint_of(config: &StackConfig, name: &str) -> PathBuf {
    config
        .instance
        .checkpoints(name, &config.kafka.topic_prefix)
        .unwrap()
        .path
}

#[tokio::test]
async fn a_restarted_service_restores_its_checkpoint_reads_what_came_after_and_rebuilds_a_corrupt_one(
) {
    let state_dir = scratch_dir("state");
    let mut test = TestStack::start_with(&Service::ALL, |config| {
        config.page_deadline_ms = 5_000;
        config.instance = InstanceSettings {
            state_dir: Some(state_dir.clone()),
            ..Default::default()
        };
    })
    .await;
    let gateway = test.gateway();
    let before = recent_purchases(&gateway).await;
    for name in ["user-svc", "history-svc", "ads-svc"] {
        let path = checkpoint_of(&test.config, name);
        assert!(
            eventually(Duration::from_secs(30), || async {
                path.exists().then_some(())
            })
            .await
            .is_some(),
            "{name} wrote {}",
            path.display()
        );
        assert_eq!(starts_from(service(&test, name), "topics").await, 1);
    }

    // An order placed while history-svc is down: its product goes first.
    test.stack.stop_service("history-svc").await;
    let new_product = before.last().unwrap().clone();
    let order = Order {
        order_id: format!("o-after-checkpoint-{}", now_ms()),
        customer_id: DEMO_CUSTOMER_ID.to_owned(),
        ordered_at_ms: now_ms(),
        product_ids: vec![new_product.clone()],
    };
    let producer = EventProducer::new(&test.config.kafka, &Telemetry::local("test")).unwrap();
    producer
        .send(&Outbound::reference(
            &test.config.kafka.topics().orders,
            DEMO_CUSTOMER_ID,
            &order,
        ))
        .await
        .unwrap();
    restart(&mut test, Service::History, "history-svc").await;
    let history = service(&test, "history-svc");
    assert_eq!(starts_from(history, "checkpoint").await, 1);
    assert_eq!(starts_from(history, "topics").await, 0);
    let after = recent_purchases(&gateway).await;
    assert_eq!(
        after[0], new_product,
        "the order written after the checkpoint"
    );
    assert_eq!(
        after[1..],
        before[..before.len() - 1],
        "the orders the checkpoint held"
    );

    // A flipped byte: the checkpoint is refused, the model rebuilt whole.
    test.stack.stop_service("history-svc").await;
    let path = checkpoint_of(&test.config, "history-svc");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    restart(&mut test, Service::History, "history-svc").await;
    let history = service(&test, "history-svc");
    assert_eq!(starts_from(history, "topics").await, 1);
    assert_eq!(starts_from(history, "checkpoint").await, 0);
    assert_eq!(recent_purchases(&gateway).await, after);
    assert!(
        eventually(Duration::from_secs(30), || async {
            (std::fs::read(&path).ok()? != bytes).then_some(())
        })
        .await
        .is_some(),
        "the rebuilt model was checkpointed again"
    );

    // A checkpoint of another service's model (ads-svc's) in its place.
    test.stack.stop_service("history-svc").await;
    std::fs::copy(checkpoint_of(&test.config, "ads-svc"), &path).unwrap();
    restart(&mut test, Service::History, "history-svc").await;
    assert_eq!(
        starts_from(service(&test, "history-svc"), "topics").await,
        1
    );
    assert_eq!(recent_purchases(&gateway).await, after);
    test.stack.stop().await;
    let _ = std::fs::remove_dir_all(state_dir);
}
