//! The headers every request-path record carries. None holds a secret.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

use crate::TraceParent;

pub const TRACEPARENT: &str = "traceparent";
pub const REQUEST_ID: &str = "request-id";
pub const EVENT_TYPE: &str = "event-type";

/// `traceparent`, `request-id` and `event-type`, as read from or written to a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventHeaders {
    pub traceparent: Option<TraceParent>,
    pub request_id: Option<String>,
    pub event_type: Option<String>,
}

impl EventHeaders {
    /// Headers of a request-path event.
    pub fn request(event_type: &str, request_id: &str, traceparent: TraceParent) -> Self {
        Self {
            traceparent: Some(traceparent),
            request_id: Some(request_id.to_owned()),
            event_type: Some(event_type.to_owned()),
        }
    }

    /// Headers of a reference record, which belongs to no request.
    pub fn reference(event_type: &str) -> Self {
        Self {
            event_type: Some(event_type.to_owned()),
            ..Self::default()
        }
    }

    pub(crate) fn read(headers: Option<&BorrowedHeaders>) -> Self {
        let mut out = Self::default();
        let Some(headers) = headers else { return out };
        for header in headers.iter() {
            let Some(value) = header.value.and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            match header.key {
                TRACEPARENT => out.traceparent = TraceParent::parse(value),
                REQUEST_ID => out.request_id = Some(value.to_owned()),
                EVENT_TYPE => out.event_type = Some(value.to_owned()),
                _ => {}
            }
        }
        out
    }

    pub(crate) fn to_owned_headers(&self) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new();
        if let Some(tp) = &self.traceparent {
            headers = headers.insert(Header {
                key: TRACEPARENT,
                value: Some(&tp.to_string()),
            });
        }
        if let Some(id) = &self.request_id {
            headers = headers.insert(Header {
                key: REQUEST_ID,
                value: Some(id),
            });
        }
        if let Some(et) = &self.event_type {
            headers = headers.insert(Header {
                key: EVENT_TYPE,
                value: Some(et),
            });
        }
        headers
    }
}
