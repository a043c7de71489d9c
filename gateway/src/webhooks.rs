//! Callbacks: a request may name a URL its result is POSTed to, signed as
//! the Standard Webhooks spec says (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256>`), retried by the callback
//! retry policy (`runtime::retry`), and given up after a bounded time. How
//! it ended is written to `callback.reported`, where any gateway's status
//! finds it. Delivery runs on a path of its own (`callbacks.rs`).

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use reqwest::Url;
use sha2::Sha256;
use storefront_runtime::{
    retry::{retry, Failure, GaveUp, Policy, Until},
    EventProducer, Outbound,
};
use storefront_schemas::{now_ms, CallbackOutcome, CallbackReported, PageCompleted};
use tokio_util::sync::CancellationToken;

/// Longest callback URL accepted.
const MAX_URL_LEN: usize = 2048;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Callback settings of a gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct CallbackSettings {
    /// Secret (`whsec_` + base64, 24+ bytes) that signs webhooks; without it callbacks are refused.
    #[arg(long, env = "STOREFRONT_WEBHOOK_SECRET", value_parser = WebhookSecret::parse, hide_env_values = true)]
    pub webhook_secret: Option<WebhookSecret>,
    /// Hosts callback URLs may point at, comma-separated; `*.example.com` allows subdomains.
    #[arg(long, env = "STOREFRONT_WEBHOOK_ALLOWED_HOSTS", default_value = "")]
    pub webhook_allowed_hosts: String,
    /// Allow `http://` callback URLs (else only `https://`).
    #[arg(long, env = "STOREFRONT_WEBHOOK_ALLOW_HTTP", default_value_t = false)]
    pub webhook_allow_http: bool,
    /// How long a failing callback is retried before it is given up.
    #[arg(long, env = "STOREFRONT_WEBHOOK_GIVE_UP_SECS", default_value_t = 900)]
    pub webhook_give_up_secs: u64,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct CallbacksOnly {
            #[command(flatten)]
            callbacks: CallbackSettings,
        }
        storefront_runtime::settings::defaults::<CallbacksOnly>(&[]).callbacks
    }
}

/// Which callback URLs a request may name.
#[derive(Debug, Clone, Default)]
pub struct CallbackPolicy {
    /// Host names, or `*.domain` for any subdomain; empty refuses every callback.
    pub allowed_hosts: Vec<String>,
    /// Allow `http://` (else only `https://`).
    pub allow_http: bool,
}

impl CallbackPolicy {
    /// Parses a comma-separated list of allowed hosts.
    pub fn new(allowed_hosts: &str, allow_http: bool) -> Self {
        Self {
            allowed_hosts: allowed_hosts
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            allow_http,
        }
    }

    /// The URL, if a callback may go there; else why not.
    pub fn check(&self, raw: &str) -> Result<Url, String> {
        let url = well_formed(raw)?;
        // What is kept and called is the parsed URL, percent-encoded and with
        // its host in punycode: up to three times the bytes of what was sent.
        if url.as_str().len() > MAX_URL_LEN {
            return Err(format!(
                "callback_url is longer than {MAX_URL_LEN} bytes once percent-encoded"
            ));
        }
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err("callback_url must use https".into()),
            other => return Err(format!("callback_url scheme {other:?} is not allowed")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("callback_url must not carry credentials".into());
        }
        if url.fragment().is_some() {
            return Err("callback_url must not have a fragment".into());
        }
        let host = url
            .host_str()
            .ok_or("callback_url has no host")?
            .to_ascii_lowercase();
        let allowed = self
            .allowed_hosts
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => *pattern == host,
            });
        if !allowed {
            return Err(format!("callbacks to host {host:?} are not allowed"));
        }
        Ok(url)
    }
}

/// `raw` as a URL, if it is one and not too long; whether it may be
/// called is [`CallbackPolicy::check`]'s to say.
pub fn well_formed(raw: &str) -> Result<Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("callback_url is longer than {MAX_URL_LEN} bytes"));
    }
    Url::parse(raw).map_err(|e| format!("callback_url is not a URL: {e}"))
}

/// The shared secret webhooks are signed with: `whsec_` and base64.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| format!("not base64 after whsec_: {e}"))?;
        if key.len() < 24 {
            return Err("a webhook secret needs at least 24 bytes".into());
        }
        Ok(Self(key))
    }

    pub fn generate() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    /// `v1,<signature>` of one message, as the `webhook-signature` header carries it.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{webhook_id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Delivers results to callback URLs and reports how it went.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    secret: Option<WebhookSecret>,
    policy: CallbackPolicy,
    give_up_after: Duration,
    producer: EventProducer,
    topic: String,
}

impl Webhooks {
    pub fn new(settings: &CallbackSettings, producer: EventProducer, topic: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirect could lead the signed result anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self {
            client,
            secret: settings.webhook_secret.clone(),
            policy: CallbackPolicy::new(
                &settings.webhook_allowed_hosts,
                settings.webhook_allow_http,
            ),
            give_up_after: Duration::from_secs(settings.webhook_give_up_secs),
            producer,
            topic,
        }
    }

    /// Whether callbacks can be signed here.
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    /// The URL, if a request may name it as callback.
    pub fn check(&self, url: &str) -> Result<Url, String> {
        if self.secret.is_none() {
            return Err(
                "callbacks are off: the gateway has no webhook secret (STOREFRONT_WEBHOOK_SECRET)"
                    .into(),
            );
        }
        self.policy.check(url)
    }

    /// POSTs `body` (the result of `page`) to `url` until a 2xx or until
    /// giving up, then writes the outcome to `callback.reported`. `None` if
    /// `stop` ended it first: nothing is reported, and the partition's next
    /// owner delivers it again.
    pub async fn deliver(
        &self,
        page: &PageCompleted,
        url: &str,
        body: &[u8],
        stop: &CancellationToken,
    ) -> Option<CallbackReported> {
        let webhook_id = format!("msg_{}", page.context.request_id);
        let request_id = page.context.request_id;
        let mut attempts: i32 = 0;
        // Checked again here: the record may not come from a gateway.
        let refused = match (&self.secret, self.policy.check(url)) {
            (None, _) => Some("this gateway has no webhook secret".to_owned()),
            (_, Err(reason)) => Some(reason),
            _ => None,
        };
        let last_error = match refused {
            Some(reason) => Some(reason),
            None => {
                let until = Until::shutdown(stop)
                    .with_deadline(Some(tokio::time::Instant::now() + self.give_up_after));
                let attempt = |number: u32| {
                    attempts = number as i32;
                    let webhook_id = &webhook_id;
                    async move {
                        self.attempt(url, webhook_id, body)
                            .await
                            .map_err(Failure::Transient)
                    }
                };
                let on_retry = |error: &String, attempts: u32, wait: Duration| {
                    tracing::info!(%request_id, attempts, %error, retry_in_ms = wait.as_millis() as u64, "callback failed; will retry");
                };
                match retry(Policy::CALLBACK, &until, attempt, on_retry).await {
                    Ok(()) => None,
                    Err(GaveUp::Shutdown(_)) => return None,
                    Err(gave_up) => Some(gave_up.into_inner()),
                }
            }
        };
        let report = report_of(page, url, attempts, last_error);
        match report.outcome {
            CallbackOutcome::Delivered => {
                tracing::info!(%request_id, attempts, "callback delivered")
            }
            CallbackOutcome::Failed => {
                tracing::warn!(%request_id, attempts, error = ?report.last_error, "callback given up")
            }
        }
        self.report(&report, stop).await.then_some(report)
    }

    /// Gives a callback up without trying it (its host has too many
    /// waiting already), and reports that. `None` if `stop` came first.
    pub async fn give_up(
        &self,
        page: &PageCompleted,
        url: &str,
        why: String,
        stop: &CancellationToken,
    ) -> Option<CallbackReported> {
        tracing::warn!(request_id = %page.context.request_id, %why, "callback given up without an attempt");
        let report = report_of(page, url, 0, Some(why));
        self.report(&report, stop).await.then_some(report)
    }

    async fn attempt(&self, url: &str, webhook_id: &str, body: &[u8]) -> Result<(), String> {
        let secret = self.secret.as_ref().ok_or("no webhook secret")?;
        let timestamp = now_ms() / 1000;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                secret.sign(webhook_id, timestamp, body),
            )
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| without_url(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }

    /// Writes the outcome, retrying until the broker takes it or `stop`:
    /// a report that is lost would leave the status pending for good, so
    /// false (not written) leaves the callback to the partition's next owner.
    async fn report(&self, report: &CallbackReported, stop: &CancellationToken) -> bool {
        let record = Outbound::event(
            &self.topic,
            report.context.session_id,
            report.context.request_id,
            &opentelemetry::Context::new(),
            report,
        );
        let attempt = |_| async {
            self.producer
                .send(&record)
                .await
                .map(drop)
                .map_err(|error| {
                    if error.is_permanent() {
                        Failure::Permanent(error)
                    } else {
                        Failure::Transient(error)
                    }
                })
        };
        let on_retry = |error: &storefront_runtime::Error, attempt: u32, _: Duration| {
            tracing::warn!(%error, attempt, "could not write the callback report; retrying");
        };
        match retry(Policy::BROKER, &Until::shutdown(stop), attempt, on_retry).await {
            Ok(()) => true,
            Err(gave_up) => {
                let error = gave_up.into_inner();
                tracing::error!(%error, request_id = %report.context.request_id, "the callback report was not written");
                false
            }
        }
    }
}

/// How a callback ended, as `callback.reported` records it.
fn report_of(
    page: &PageCompleted,
    url: &str,
    attempts: i32,
    last_error: Option<String>,
) -> CallbackReported {
    CallbackReported {
        context: page.context.clone(),
        url: url.to_owned(),
        webhook_id: format!("msg_{}", page.context.request_id),
        outcome: if last_error.is_none() {
            CallbackOutcome::Delivered
        } else {
            CallbackOutcome::Failed
        },
        attempts,
        last_error,
        reported_at_ms: now_ms(),
    }
}

/// A connection error, without the URL (it is in the report already).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_hosts_and_schemes_without_credentials_pass() {
        let policy = CallbackPolicy::new("hooks.example.com, *.shop.example", false);
        assert!(policy.check("https://hooks.example.com/p").is_ok());
        assert!(policy.check("https://a.shop.example/p?x=1").is_ok());
        assert!(
            policy.check("https://shop.example/p").is_err(),
            "the bare domain is not a subdomain"
        );
        assert!(policy.check("https://evilshop.example/p").is_err());
        assert!(
            policy.check("http://hooks.example.com/p").is_err(),
            "http is off"
        );
        assert!(policy.check("https://user:pw@hooks.example.com/p").is_err());
        assert!(policy.check("ftp://hooks.example.com/p").is_err());
        assert!(policy.check("https://other.example.com/p").is_err());
        assert!(policy.check("not a url").is_err());
        assert!(CallbackPolicy::new("", true)
            .check("http://localhost/")
            .is_err());
        assert!(CallbackPolicy::new("127.0.0.1", true)
            .check("http://127.0.0.1:9/x")
            .is_ok());
    }

    /// Found by the `callback_url` fuzz target: 803 bytes given became
    /// 2,260 to be sent.
    #[test]
    fn a_url_within_the_limit_as_sent_but_past_it_once_encoded_is_refused() {
        let policy = CallbackPolicy::new("hooks.example.com", false);
        let path = "é".repeat(500);
        let raw = format!("https://hooks.example.com/{path}");
        assert!(raw.len() <= MAX_URL_LEN);
        let error = policy.check(&raw).unwrap_err();
        assert!(error.contains("percent-encoded"), "{error}");
        let fits = format!("https://hooks.example.com/{}", "é".repeat(300));
        assert!(policy.check(&fits).unwrap().as_str().len() <= MAX_URL_LEN);
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks reference libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
