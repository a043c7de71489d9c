//! Points in time as people type them on a command line, and as they read them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use storefront_schemas::now_ms;

/// Parses `2026-12-01T10:00:00Z` (RFC 3339; a space for the `T` and no zone,
/// read as UTC, also do), a duration meaning that long ago (`90s`, `15m`,
/// `2h 30m`), `now`, or milliseconds since the Unix epoch. Unix ms.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("{text:?}: too large"));
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(unix_ms(at));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now_ms() - ago.as_millis() as i64),
        Err(_) => Err(format!(
            "{text:?} is not a time: expected 2026-12-01T10:00:00Z, a duration ago (15m), now, or Unix ms"
        )),
    }
}

/// `2026-12-01T10:00:00.123Z`.
pub fn format_time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_relative_and_epoch_times_parse() {
        assert_eq!(
            parse_time("2026-12-01T10:00:00Z").unwrap(),
            1_796_119_200_000
        );
        assert_eq!(
            parse_time("2026-12-01 10:00:00").unwrap(),
            1_796_119_200_000
        );
        assert_eq!(parse_time("1796119200000").unwrap(), 1_796_119_200_000);
        let ago = now_ms() - parse_time("15m").unwrap();
        assert!((15 * 60_000..16 * 60_000).contains(&ago), "{ago}");
        assert!(parse_time("yesterday-ish")
            .unwrap_err()
            .contains("not a time"));
        assert_eq!(format_time(1_796_119_200_123), "2026-12-01T10:00:00.123Z");
    }
}
