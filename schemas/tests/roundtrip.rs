//! Every contract survives encode then decode unchanged, for arbitrary
//! values; and every decoder refuses hostile bytes (random, truncated,
//! another contract's, oversized, lying about lengths) without panicking.

use proptest::{prelude::*, test_runner::FileFailurePersistence};
use storefront_schemas::*;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn request_id() -> impl Strategy<Value = RequestId> {
    any::<[u8; 16]>().prop_map(RequestId::derived)
}

fn session_id() -> impl Strategy<Value = SessionId> {
    any::<[u8; 16]>().prop_map(SessionId::derived)
}

fn context() -> impl Strategy<Value = RequestContext> {
    (
        request_id(),
        session_id(),
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
        callback_url in proptest::option::of(text()),
        idempotency_key in proptest::option::of(text()),
    ) {
        let login = login.map(|(username, sealed_password)| LoginAttempt { username, sealed_password });
        assert_round_trip(PageRequested { context, login, logout, callback_url, idempotency_key });
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
        callback_url in proptest::option::of(text()),
    ) {
        let milestones = milestones
            .into_iter()
            .map(|(stage, service, at_ms)| Milestone { stage, service, at_ms })
            .collect();
        assert_round_trip(PageCompleted { context, status, missing, rejection, user, recent_purchases, ads, milestones, callback_url });
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
    fn session_round_trips(session_id in session_id(), customer_id in text(), opened_at_ms in any::<i64>(), expires_at_ms in any::<i64>()) {
        assert_round_trip(Session { session_id, customer_id, opened_at_ms, expires_at_ms });
    }

    #[test]
    fn callback_reported_round_trips(
        context in context(),
        url in text(),
        webhook_id in text(),
        delivered in any::<bool>(),
        attempts in any::<i32>(),
        last_error in proptest::option::of(text()),
        reported_at_ms in any::<i64>(),
    ) {
        let outcome = if delivered { CallbackOutcome::Delivered } else { CallbackOutcome::Failed };
        assert_round_trip(CallbackReported { context, url, webhook_id, outcome, attempts, last_error, reported_at_ms });
    }

    #[test]
    fn pages_per_minute_round_trips(
        counts in proptest::collection::vec(any::<i64>(), 11),
        partial_missing in proptest::collection::btree_map(text(), any::<i64>(), 0..4),
        by_product in proptest::collection::btree_map(text(), any::<i64>(), 0..6),
        by_reason in proptest::collection::btree_map(text(), any::<i64>(), 0..4),
    ) {
        assert_round_trip(PagesPerMinute {
            window_start_ms: counts[0],
            window_end_ms: counts[1],
            pages: counts[2],
            complete: counts[3],
            partial: counts[4],
            partial_missing,
            rejected: counts[5],
            timed_out: counts[6],
            latency_p50_ms: counts[7],
            latency_p95_ms: counts[8],
            latency_max_ms: counts[9],
            ad_impressions: counts[10],
            ad_impressions_by_product: by_product,
            ad_impressions_by_reason: by_reason,
        });
    }
}

/// What decoding `bytes` as every contract gives (errors as text), without panicking.
fn decode_as_every_contract(bytes: &[u8]) -> Vec<Result<(), String>> {
    fn one<T: Contract>(bytes: &[u8]) -> Result<(), String> {
        decode::<T>(bytes).map(drop).map_err(|e| e.to_string())
    }
    vec![
        one::<PageRequested>(bytes),
        one::<UserResolved>(bytes),
        one::<HistoryFetched>(bytes),
        one::<AdsSelected>(bytes),
        one::<PageCompleted>(bytes),
        one::<Customer>(bytes),
        one::<Credential>(bytes),
        one::<Product>(bytes),
        one::<Order>(bytes),
        one::<Session>(bytes),
        one::<CallbackReported>(bytes),
        one::<PagesPerMinute>(bytes),
    ]
}

// Hostile input: every decoder of topic records refuses it without panicking.
proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/roundtrip.proptest-regressions"))),
        cases: 512,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_behind_any_header_never_panic_a_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        header in 0usize..12,
    ) {
        let mut framed = contracts()[header].header.to_vec();
        framed.extend_from_slice(&bytes);
        decode_as_every_contract(&bytes);
        decode_as_every_contract(&framed);
    }

    #[test]
    fn a_truncated_record_never_decodes(
        context in context(),
        user in proptest::option::of(user()),
        purchases in proptest::collection::vec(purchase(), 0..4),
        ads in proptest::collection::vec(ad(), 0..4),
        cut in any::<proptest::sample::Index>(),
    ) {
        let page = PageCompleted {
            context: context.clone(),
            status: PageStatus::Complete,
            missing: vec![],
            rejection: None,
            user,
            recent_purchases: purchases,
            ads,
            milestones: vec![],
            callback_url: None,
        };
        let bytes = encode(&page);
        prop_assert!(decode::<PageCompleted>(&bytes[..cut.index(bytes.len())]).is_err());
        let request = encode(&PageRequested { context, login: None, logout: false, callback_url: None, idempotency_key: None });
        prop_assert!(decode::<PageRequested>(&request[..cut.index(request.len())]).is_err());
    }

    #[test]
    fn a_record_never_decodes_as_another_contract(context in context(), logout in any::<bool>()) {
        let bytes = encode(&PageRequested { context, login: None, logout, callback_url: None, idempotency_key: None });
        let outcomes = decode_as_every_contract(&bytes);
        prop_assert!(outcomes[0].is_ok());
        for outcome in &outcomes[1..] {
            let error = outcome.as_ref().unwrap_err();
            prop_assert!(error.contains("fingerprint"), "{}", error);
        }
    }
}

#[test]
fn an_oversized_record_is_refused_unread() {
    let mut bytes = contracts()[0].header.to_vec();
    bytes.resize(MAX_ENCODED_BYTES + 1, 0);
    for outcome in decode_as_every_contract(&bytes) {
        assert!(outcome.unwrap_err().contains("more than"));
    }
}

#[test]
fn a_length_field_claiming_a_huge_string_does_not_allocate_it() {
    // page.requested starts with request_id, a string: claim 2^40 bytes.
    let mut bytes = contracts()[0].header.to_vec();
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    assert!(decode::<PageRequested>(&bytes).is_err());
}

#[test]
fn a_request_id_that_is_no_uuid_is_refused() {
    let requested_at_ms = 1_700_000_000_000;
    let context = RequestContext {
        request_id: RequestId::new(),
        session_id: SessionId::new(),
        requested_at_ms,
        deadline_ms: requested_at_ms + 250,
        reply_topic: "page.completed".into(),
        reply_partition: 0,
    };
    let id_len = context.request_id.to_string().len();
    let bytes = encode(&PageRequested {
        context,
        login: None,
        logout: false,
        callback_url: None,
        idempotency_key: None,
    });
    // The first field: a length (zigzag varint) and the id's characters.
    let header = contracts()[0].header.len();
    assert_eq!(usize::from(bytes[header]), id_len * 2);
    let mut hostile = bytes[..header].to_vec();
    hostile.push(2 * b"not-a-uuid".len() as u8);
    hostile.extend_from_slice(b"not-a-uuid");
    hostile.extend_from_slice(&bytes[header + 1 + id_len..]);
    let error = decode::<PageRequested>(&hostile).unwrap_err().to_string();
    assert!(error.contains("request id"), "{error}");
}
