//! Client quotas on the real broker: what `storefront up` sets for the
//! analytics client id (`runtime/src/quotas.rs` writes AlterClientQuotas and
//! DescribeClientQuotas by hand, librdkafka having neither) is what the
//! broker then holds, and a removal removes it. The effect on the pages is
//! measured by `storefront bench`'s tap scenario (`docs/benchmarks.md`).

use storefront_e2e::fresh_namespace;
use storefront_runtime::quotas;

#[tokio::test]
async fn a_consumer_byte_rate_set_for_the_analytics_client_id_is_held_by_the_broker_until_removed()
{
    let kafka = fresh_namespace();
    let analytics = format!("{}analytics", kafka.topic_prefix);
    let other = format!("{}user-svc", kafka.topic_prefix);
    assert_eq!(
        quotas::consumer_byte_rate(&kafka, &analytics)
            .await
            .unwrap(),
        None
    );

    quotas::set_consumer_byte_rate(&kafka, &analytics, Some(2 * 1024 * 1024))
        .await
        .unwrap();
    // The controller applies it; the broker that answers learns it from the
    // metadata log a moment later.
    let held = storefront_e2e::eventually(std::time::Duration::from_secs(10), || async {
        quotas::consumer_byte_rate(&kafka, &analytics)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(held, Some(2_097_152.0));
    assert_eq!(
        quotas::consumer_byte_rate(&kafka, &other).await.unwrap(),
        None,
        "a quota is per exact client id"
    );

    quotas::set_consumer_byte_rate(&kafka, &analytics, None)
        .await
        .unwrap();
    let removed = storefront_e2e::eventually(std::time::Duration::from_secs(10), || async {
        quotas::consumer_byte_rate(&kafka, &analytics)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(removed.is_some(), "the quota is removed");
}
