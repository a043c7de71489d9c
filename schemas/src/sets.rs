//! Records decoded by the schema that wrote them: a consumer decodes a
//! record once into the enum of the events it may meet, then matches on
//! the type, never on the topic's name.

use crate::{
    codec::{not_a_member, written_with},
    decode, AdsSelected, CallbackReported, Contract, Credential, Customer, DecodeError,
    HistoryFetched, Order, PageCompleted, PageRequested, Product, RequestContext, Session,
    UserResolved,
};

/// A closed set of contracts, decoded by the writer's schema.
pub trait EventSet: Sized {
    /// Decodes a single-object record written with one of the set's schemas
    /// (any released version).
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// The `event-type` of the event decoded.
    fn event_type(&self) -> &'static str;
}

macro_rules! event_set {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($variant)),+
        }

        impl EventSet for $name {
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                $(
                    if written_with::<$variant>(bytes) {
                        return decode::<$variant>(bytes).map(Self::$variant);
                    }
                )+
                Err(not_a_member(bytes, stringify!($name)))
            }

            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$variant as Contract>::EVENT_TYPE),+
                }
            }
        }
    };
}

event_set!(
    /// Every event of the request path.
    RequestEvent {
        PageRequested,
        UserResolved,
        HistoryFetched,
        AdsSelected,
        PageCompleted,
        CallbackReported,
    }
);

event_set!(
    /// Every record of the reference topics.
    ReferenceRecord {
        Customer,
        Credential,
        Product,
        Order,
        Session,
    }
);

impl RequestEvent {
    /// The request the event belongs to.
    pub fn context(&self) -> &RequestContext {
        match self {
            Self::PageRequested(e) => &e.context,
            Self::UserResolved(e) => &e.context,
            Self::HistoryFetched(e) => &e.context,
            Self::AdsSelected(e) => &e.context,
            Self::PageCompleted(e) => &e.context,
            Self::CallbackReported(e) => &e.context,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, RequestId, SessionId};

    fn context() -> RequestContext {
        RequestContext {
            request_id: RequestId::derived([1; 16]),
            session_id: SessionId::derived([2; 16]),
            requested_at_ms: 1,
            deadline_ms: 2,
            reply_topic: "page.completed".into(),
            reply_partition: 0,
        }
    }

    #[test]
    fn a_record_decodes_into_the_variant_of_the_schema_that_wrote_it() {
        let ads = AdsSelected {
            context: context(),
            customer_id: "c".into(),
            ads: vec![],
        };
        let event = RequestEvent::decode(&encode(&ads)).unwrap();
        assert_eq!(event, RequestEvent::AdsSelected(ads));
        assert_eq!(event.event_type(), "ads.selected");
        assert_eq!(event.context(), &context());
    }

    #[test]
    fn a_record_of_another_set_or_no_avro_is_refused_with_the_reason() {
        let session = Session {
            session_id: SessionId::new(),
            customer_id: "c".into(),
            opened_at_ms: 1,
            expires_at_ms: 2,
        };
        let bytes = encode(&session);
        assert!(matches!(
            RequestEvent::decode(&bytes),
            Err(DecodeError::NotAMember {
                expected: "RequestEvent",
                ..
            })
        ));
        assert!(matches!(
            ReferenceRecord::decode(&bytes),
            Ok(ReferenceRecord::Session(_))
        ));
        assert!(matches!(
            RequestEvent::decode(b"not avro at all"),
            Err(DecodeError::NotSingleObject)
        ));
    }
}
