//! A Server-Sent Events reader for the tests: the event stream format as
//! the HTML standard defines it (fields `event`, `id`, `data`; a blank line
//! ends an event; lines starting with `:` are comments).

use std::time::Duration;

/// One event as a browser's EventSource would dispatch it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }
}

/// Reads events from `response` until one named `until` (included), the
/// stream ends, or `timeout` passes.
pub async fn read_events(
    mut response: reqwest::Response,
    until: &str,
    timeout: Duration,
) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut current = SseEvent::default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else {
            return events;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line = buffer[..end].trim_end_matches('\r').to_owned();
            buffer.drain(..=end);
            if line.is_empty() {
                if !current.data.is_empty() || !current.event.is_empty() {
                    let done = current.event == until;
                    events.push(std::mem::take(&mut current));
                    if done {
                        return events;
                    }
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => current.event = value.to_owned(),
                "id" => current.id = Some(value.to_owned()),
                "data" => {
                    if !current.data.is_empty() {
                        current.data.push('\n');
                    }
                    current.data.push_str(value);
                }
                _ => {}
            }
        }
    }
}
