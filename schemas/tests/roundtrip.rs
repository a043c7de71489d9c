//! Every contract survives encode then decode unchanged, for arbitrary values.

use proptest::{prelude::*, test_runner::FileFailurePersistence};
use storefront_schemas::*;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn context() -> impl Strategy<Value = RequestContext> {
    (
        text(),
        text(),
        any::<i64>(),
        any::<i64>(),
        text(),
        any::<i32>(),
    )
        .prop_map(
            |(
                request_id,
                session_id,
                requested_at_ms,
                deadline_ms,
                reply_topic,
                reply_partition,
            )| {
                RequestContext {
                    request_id,
                    session_id,
                    requested_at_ms,
                    deadline_ms,
                    reply_topic,
                    reply_partition,
                }
            },
        )
}

fn user() -> impl Strategy<Value = UserProfile> {
    (text(), text(), text()).prop_map(|(customer_id, name, city)| UserProfile {
        customer_id,
        name,
        city,
    })
}

fn purchase() -> impl Strategy<Value = Purchase> {
    (text(), text(), text(), any::<i64>(), any::<i64>()).prop_map(
        |(product_id, name, category, price_cents, purchased_at_ms)| Purchase {
            product_id,
            name,
            category,
            price_cents,
            purchased_at_ms,
        },
    )
}

fn ad() -> impl Strategy<Value = Ad> {
    (text(), text(), any::<i64>(), text()).prop_map(|(product_id, name, price_cents, reason)| Ad {
        product_id,
        name,
        price_cents,
        reason,
    })
}

fn page_status() -> impl Strategy<Value = PageStatus> {
    prop_oneof![
        Just(PageStatus::Complete),
        Just(PageStatus::Partial),
        Just(PageStatus::Rejected),
        Just(PageStatus::Unavailable)
    ]
}

fn assert_round_trip<T: Contract + PartialEq + std::fmt::Debug>(event: T) {
    let bytes = encode(&event);
    assert_eq!(bytes[..2], SINGLE_OBJECT_MAGIC);
    assert_eq!(decode::<T>(&bytes).expect("decodes"), event);
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/roundtrip.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn page_requested_round_trips(
        context in context(),
        logout in any::<bool>(),
        login in proptest::option::of((text(), proptest::collection::vec(any::<u8>(), 0..64))),
    ) {
        let login = login.map(|(username, sealed_password)| LoginAttempt { username, sealed_password });
        assert_round_trip(PageRequested { context, login, logout });
    }

    #[test]
    fn user_resolved_round_trips(
        context in context(),
        authenticated in any::<bool>(),
        rejection in proptest::option::of(text()),
        user in proptest::option::of(user()),
    ) {
        let status = if authenticated { Resolution::Authenticated } else { Resolution::Rejected };
        assert_round_trip(UserResolved { context, status, rejection, user });
    }

    #[test]
    fn history_fetched_round_trips(
        context in context(),
        customer_id in text(),
        purchases in proptest::collection::vec(purchase(), 0..6),
    ) {
        assert_round_trip(HistoryFetched { context, customer_id, purchases });
    }

    #[test]
    fn ads_selected_round_trips(
        context in context(),
        customer_id in text(),
        ads in proptest::collection::vec(ad(), 0..6),
    ) {
        assert_round_trip(AdsSelected { context, customer_id, ads });
    }

    #[test]
    fn page_completed_round_trips(
        context in context(),
        status in page_status(),
        missing in proptest::collection::vec(text(), 0..3),
        rejection in proptest::option::of(text()),
        user in proptest::option::of(user()),
        recent_purchases in proptest::collection::vec(purchase(), 0..4),
        ads in proptest::collection::vec(ad(), 0..4),
        milestones in proptest::collection::vec((text(), text(), any::<i64>()), 0..6),
    ) {
        let milestones = milestones
            .into_iter()
            .map(|(stage, service, at_ms)| Milestone { stage, service, at_ms })
            .collect();
        assert_round_trip(PageCompleted { context, status, missing, rejection, user, recent_purchases, ads, milestones });
    }

    #[test]
    fn customer_round_trips(customer_id in text(), username in text(), name in text(), city in text(), registered_at_ms in any::<i64>()) {
        assert_round_trip(Customer { customer_id, username, name, city, registered_at_ms });
    }

    #[test]
    fn credential_round_trips(username in text(), customer_id in text(), password_hash in text()) {
        assert_round_trip(Credential { username, customer_id, password_hash });
    }

    #[test]
    fn product_round_trips(product_id in text(), name in text(), category in text(), price_cents in any::<i64>()) {
        assert_round_trip(Product { product_id, name, category, price_cents });
    }

    #[test]
    fn order_round_trips(order_id in text(), customer_id in text(), ordered_at_ms in any::<i64>(), product_ids in proptest::collection::vec(text(), 0..6)) {
        assert_round_trip(Order { order_id, customer_id, ordered_at_ms, product_ids });
    }

    #[test]
    fn session_round_trips(session_id in text(), customer_id in text(), opened_at_ms in any::<i64>(), expires_at_ms in any::<i64>()) {
        assert_round_trip(Session { session_id, customer_id, opened_at_ms, expires_at_ms });
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode::<PageRequested>(&bytes);
    }
}

#[test]
fn a_record_of_another_type_is_refused_by_fingerprint() {
    let product = Product {
        product_id: "p-1".into(),
        name: "Kettle".into(),
        category: "kitchen".into(),
        price_cents: 2500,
    };
    let err = decode::<Order>(&encode(&product)).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownSchema { .. }), "{err}");
}

#[test]
fn a_truncated_record_is_an_error_not_a_panic() {
    let session = Session {
        session_id: "s".into(),
        customer_id: "c".into(),
        opened_at_ms: 1,
        expires_at_ms: 2,
    };
    let bytes = encode(&session);
    assert!(decode::<Session>(&bytes[..bytes.len() - 1]).is_err());
}
