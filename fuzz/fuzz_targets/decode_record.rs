//! Every decoder of every topic, fed one record as it comes off a topic
//! (`C3 01`, the writer's fingerprint, the datum): `decode::<T>` of each of
//! the eleven contracts, `RequestEvent` and `ReferenceRecord` (`EventSet`),
//! and `Inbound::event` on the topic that carries the type. One target, not
//! one per topic: the fingerprint already picks the decoder, as it does in
//! production, so a seed is a real record byte for byte (every current and
//! released older version) and libFuzzer's comparison tracing learns each
//! header from the `==` on it. Properties: no panic; at most one contract
//! reads a record; whatever decodes re-encodes (current schema) and decodes
//! to the same value; the event sets and the topic decoding agree with it.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use storefront_runtime::{EventHeaders, Inbound, Topics};
use storefront_schemas::{
    decode, encode, AdsSelected, CallbackReported, Contract, Credential, Customer, EventSet,
    HistoryFetched, Order, PageCompleted, PageRequested, Product, ReferenceRecord, RequestEvent,
    Session, UserResolved,
};

fuzz_target!(|record: &[u8]| {
    let mut read_by = Vec::new();
    let mut request = None;
    let mut reference = None;
    macro_rules! each {
        ($slot:ident: $set:ident { $($ty:ident),+ }) => {
            $(
                if let Some(event) = round_trip::<$ty>(record) {
                    read_by.push(<$ty as Contract>::EVENT_TYPE);
                    $slot = Some($set::$ty(event));
                }
            )+
        };
    }
    each!(request: RequestEvent {
        PageRequested, UserResolved, HistoryFetched, AdsSelected, PageCompleted, CallbackReported
    });
    each!(reference: ReferenceRecord { Customer, Credential, Product, Order, Session });
    assert!(read_by.len() <= 1, "one record read by {read_by:?}");

    let as_set = RequestEvent::decode(record).ok();
    assert_eq!(
        as_set, request,
        "RequestEvent disagrees with the contract decoders"
    );
    let as_set = ReferenceRecord::decode(record).ok();
    assert_eq!(
        as_set, reference,
        "ReferenceRecord disagrees with the contract decoders"
    );

    if let Some(event) = request {
        by_topic(record, &event);
    }
    if let Some(record_) = reference {
        by_topic(record, &record_);
    }
});

/// The event `record` decodes to as `T`, after checking that it survives
/// encode then decode unchanged.
fn round_trip<T: Contract + PartialEq + Debug>(record: &[u8]) -> Option<T> {
    let event = decode::<T>(record).ok()?;
    let again = encode(&event);
    let back = decode::<T>(&again)
        .unwrap_or_else(|e| panic!("{} re-encoded does not decode: {e}", T::EVENT_TYPE));
    assert_eq!(back, event, "{} changed on a round trip", T::EVENT_TYPE);
    Some(event)
}

/// A record is read by the topic that carries its type, and refused by
/// any other topic of the same set.
fn by_topic<E: EventSet + PartialEq + Debug>(record: &[u8], event: &E) {
    let topics = Topics::with_prefix("");
    let inbound = |topic: &str| Inbound {
        topic: topic.to_owned(),
        partition: 0,
        offset: 0,
        key: None,
        payload: Some(record.to_vec()),
        headers: EventHeaders::default(),
        raw_headers: Vec::new(),
        timestamp_ms: None,
        trace: opentelemetry::Context::new(),
    };
    let carrier = topics
        .all()
        .into_iter()
        .find(|t| topics.contract_of(t) == Some(event.event_type()))
        .expect("every contract has a topic");
    let read = inbound(carrier).event::<E>(&topics);
    assert_eq!(read.as_ref().ok(), Some(event), "{carrier}: {read:?}");
    let other = if carrier == topics.dead_letters {
        &topics.page_requested
    } else {
        &topics.dead_letters
    };
    assert!(
        inbound(other).event::<E>(&topics).is_err(),
        "read on {other}"
    );
}
