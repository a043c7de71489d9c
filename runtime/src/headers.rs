//! The headers every request-path record carries besides its trace context
//! (see [`crate::trace`]). None holds a secret.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use storefront_schemas::RequestId;

pub const REQUEST_ID: &str = "request-id";
pub const EVENT_TYPE: &str = "event-type";
/// When the service that wrote the record picked up the input that caused
/// it (milliseconds since the epoch): the request's milestones.
pub const PICKED_UP_AT: &str = "picked-up-at";

/// `request-id`, `event-type` and `picked-up-at`, as read from or written to a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventHeaders {
    /// Absent on reference records, and when what was written is no request id.
    pub request_id: Option<RequestId>,
    pub event_type: Option<String>,
    pub picked_up_at_ms: Option<i64>,
}

impl EventHeaders {
    /// Headers of a request-path event.
    pub fn request(event_type: &str, request_id: RequestId) -> Self {
        Self {
            request_id: Some(request_id),
            event_type: Some(event_type.to_owned()),
            picked_up_at_ms: None,
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
                REQUEST_ID => out.request_id = RequestId::parse(value).ok(),
                EVENT_TYPE => out.event_type = Some(value.to_owned()),
                PICKED_UP_AT => out.picked_up_at_ms = value.parse().ok(),
                _ => {}
            }
        }
        out
    }

    /// These headers, after the trace context ones in `trace`.
    pub(crate) fn to_owned_headers(&self, trace: &[(String, String)]) -> OwnedHeaders {
        let picked_up_at = self.picked_up_at_ms.map(|ms| ms.to_string());
        let request_id = self.request_id.map(|id| id.to_string());
        let fields = [
            (REQUEST_ID, request_id.as_deref()),
            (EVENT_TYPE, self.event_type.as_deref()),
            (PICKED_UP_AT, picked_up_at.as_deref()),
        ];
        trace
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .chain(fields)
            .filter_map(|(key, value)| Some((key, value?)))
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            })
    }
}
