//! The gateway's settings: flags and `STOREFRONT_*` environment variables.

use std::net::SocketAddr;

use storefront_runtime::{settings::defaults, HttpLimits, KafkaSettings, TelemetrySettings};
use storefront_schemas::{SealKey, DEFAULT_PAGE_DEADLINE_MS};

use crate::{cookies::CookieKey, streams::StreamLimits, webhooks::CallbackSettings};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gateway", about = "The storefront's HTTP edge")]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    /// Address the storefront is served on.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// user-svc's X25519 public key (base64): passwords are sealed to it before they touch a topic.
    #[arg(long, env = "STOREFRONT_USER_SVC_PUBLIC_KEY", value_parser = SealKey::parse)]
    pub user_svc_public_key: SealKey,
    /// Key (base64, 32+ bytes) that signs session cookies.
    #[arg(long, env = "STOREFRONT_COOKIE_KEY", value_parser = CookieKey::parse, hide_env_values = true)]
    pub cookie_key: CookieKey,
    /// The page's wall-clock budget: by then the aggregator sends it, complete or partial.
    #[arg(long, env = "STOREFRONT_PAGE_DEADLINE_MS", default_value_t = DEFAULT_PAGE_DEADLINE_MS)]
    pub page_deadline_ms: u64,
    /// How long past the deadline `GET /api/page` waits for the partial page before answering 504.
    #[arg(long, env = "STOREFRONT_REPLY_GRACE_MS", default_value_t = 1000)]
    pub reply_grace_ms: u64,
    /// How long login and `POST /api/pages` wait for the page before answering 202 Accepted.
    #[arg(long, env = "STOREFRONT_SYNC_BUDGET_MS", default_value_t = 2000)]
    pub sync_budget_ms: u64,
    /// How long a request's status and result can be fetched (then 410 Gone).
    #[arg(long, env = "STOREFRONT_RESULT_TTL_SECS", default_value_t = 600)]
    pub result_ttl_secs: u64,
    #[command(flatten)]
    pub callbacks: CallbackSettings,
    #[command(flatten)]
    pub streams: StreamLimits,
    #[command(flatten)]
    pub http: HttpLimits,
    /// Largest accepted request body.
    #[arg(long, env = "STOREFRONT_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,
    /// Requests waiting at once before new ones are shed with 429.
    #[arg(long, env = "STOREFRONT_MAX_WAITING", default_value_t = 10_000)]
    pub max_waiting: usize,
    /// Session cookie lifetime (match user-svc's STOREFRONT_SESSION_TTL_SECS).
    #[arg(long, env = "STOREFRONT_SESSION_TTL_SECS", default_value_t = 86_400)]
    pub session_ttl_secs: u64,
    /// Mark the cookie Secure (serve over HTTPS).
    #[arg(long, env = "STOREFRONT_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// Login attempts per minute for one username (then 429).
    #[arg(long, env = "STOREFRONT_LOGIN_ATTEMPTS_PER_USER", default_value_t = 10)]
    pub login_attempts_per_user: u32,
    /// Login attempts per minute from one client address (then 429).
    #[arg(
        long,
        env = "STOREFRONT_LOGIN_ATTEMPTS_PER_ADDRESS",
        default_value_t = 120
    )]
    pub login_attempts_per_address: u32,
}

impl Settings {
    /// Settings with the defaults of every option but the keys and the broker.
    pub fn new(kafka: KafkaSettings, user_svc_public_key: SealKey, cookie_key: CookieKey) -> Self {
        Self {
            kafka,
            ..defaults(&[
                "--user-svc-public-key",
                &user_svc_public_key.to_base64(),
                "--cookie-key",
                &cookie_key.to_base64(),
            ])
        }
    }

    pub(crate) fn result_ttl_ms(&self) -> i64 {
        self.result_ttl_secs as i64 * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_settings_have_the_documented_defaults_and_the_keys_given() {
        let seal_key = storefront_schemas::UnsealKey::generate().seal_key();
        let kafka = KafkaSettings::new("broker:9092");
        let settings = Settings::new(kafka, seal_key.clone(), CookieKey::generate());
        assert_eq!(settings.kafka.bootstrap_servers, "broker:9092");
        assert_eq!(
            settings.user_svc_public_key.to_base64(),
            seal_key.to_base64()
        );
        assert_eq!(settings.page_deadline_ms, DEFAULT_PAGE_DEADLINE_MS);
        assert_eq!(
            (
                settings.reply_grace_ms,
                settings.sync_budget_ms,
                settings.max_waiting
            ),
            (1000, 2000, 10_000)
        );
        assert_eq!(settings.callbacks.webhook_give_up_secs, 900);
        assert_eq!(settings.http_addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
    }
}
