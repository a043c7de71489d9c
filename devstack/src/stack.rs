//! All five services in one process, as `storefront up` and the end-to-end
//! tests run them. Each is the same library its own binary runs.

use std::{net::SocketAddr, time::Duration};

use gateway::{cookies::CookieKey, webhooks::CallbackSettings};
use storefront_runtime::{InstanceSettings, KafkaSettings, RunningService, TelemetrySettings};
use storefront_schemas::UnsealKey;
use tokio_util::sync::CancellationToken;

/// The storefront's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    User,
    History,
    Ads,
    Aggregator,
    Gateway,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Self::User,
        Self::History,
        Self::Ads,
        Self::Aggregator,
        Self::Gateway,
    ];
}

/// What the services of one stack share.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub kafka: KafkaSettings,
    /// The gateway's address (port 0 picks a free one).
    pub gateway_addr: SocketAddr,
    /// Health and metrics endpoints of the other services: user-svc on this
    /// port, history-svc, ads-svc and the aggregator on the next three (the
    /// ports their binaries default to); port 0 picks free ones.
    pub service_addr: SocketAddr,
    pub unseal_key: UnsealKey,
    pub cookie_key: CookieKey,
    pub page_deadline_ms: u64,
    pub reply_grace_ms: u64,
    /// Page requests the gateway holds at once before shedding with 429.
    pub max_waiting: usize,
    /// Where every service exports its spans.
    pub telemetry: TelemetrySettings,
    /// How long login and `POST /api/pages` wait before answering 202.
    pub sync_budget_ms: u64,
    /// Who may be called back, and the webhook secret.
    pub callbacks: CallbackSettings,
    /// Where the services that fold reference topics keep their checkpoints.
    pub instance: InstanceSettings,
    /// Event streams the gateway holds open, per session and in all.
    pub streams: gateway::streams::StreamLimits,
    /// The gateway listener's bounds: connections, header, body and idle times.
    pub http: storefront_runtime::HttpLimits,
    /// Login attempts per minute for one username, and from one address.
    pub login_attempts_per_minute: (u32, u32),
}

impl StackConfig {
    /// A configuration with fresh keys and free ports.
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            kafka,
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            service_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            unseal_key: UnsealKey::generate(),
            cookie_key: CookieKey::generate(),
            page_deadline_ms: storefront_schemas::DEFAULT_PAGE_DEADLINE_MS,
            reply_grace_ms: 1000,
            max_waiting: 10_000,
            telemetry: TelemetrySettings::default(),
            sync_budget_ms: 2000,
            callbacks: CallbackSettings::default(),
            instance: InstanceSettings::default(),
            streams: gateway::streams::StreamLimits::default(),
            http: storefront_runtime::HttpLimits::default(),
            login_attempts_per_minute: (10, 120),
        }
    }

    /// Starts one service.
    pub async fn start(
        &self,
        service: Service,
        shutdown: CancellationToken,
    ) -> anyhow::Result<RunningService> {
        let kafka = self.kafka.clone();
        let telemetry = self.telemetry.clone();
        let http_addr = self.service_http_addr(service);
        match service {
            Service::User => {
                user_svc::start(
                    user_svc::Settings {
                        kafka,
                        telemetry,
                        http_addr,
                        secret_key: self.unseal_key.clone(),
                        session_ttl_secs: 86_400,
                        instance: self.instance.clone(),
                    },
                    shutdown,
                )
                .await
            }
            Service::History => {
                let settings = history_svc::Settings {
                    kafka,
                    telemetry,
                    http_addr,
                    instance: self.instance.clone(),
                };
                history_svc::start(settings, shutdown).await
            }
            Service::Ads => {
                let settings = ads_svc::Settings {
                    kafka,
                    telemetry,
                    http_addr,
                    instance: self.instance.clone(),
                    inject_delay: Default::default(),
                };
                ads_svc::start(settings, shutdown).await
            }
            Service::Aggregator => {
                let settings = aggregator::Settings {
                    kafka,
                    telemetry,
                    http_addr,
                    instance_id: None,
                };
                aggregator::start(settings, shutdown).await
            }
            Service::Gateway => gateway::start(self.gateway_settings(), shutdown).await,
        }
    }

    /// The gateway's settings in this stack.
    pub fn gateway_settings(&self) -> gateway::Settings {
        let mut settings = gateway::Settings::new(
            self.kafka.clone(),
            self.unseal_key.seal_key(),
            self.cookie_key.clone(),
        );
        settings.telemetry = self.telemetry.clone();
        settings.http_addr = self.gateway_addr;
        settings.page_deadline_ms = self.page_deadline_ms;
        settings.reply_grace_ms = self.reply_grace_ms;
        settings.sync_budget_ms = self.sync_budget_ms;
        settings.max_waiting = self.max_waiting;
        settings.callbacks = self.callbacks.clone();
        settings.streams = self.streams.clone();
        settings.http = self.http.clone();
        (
            settings.login_attempts_per_user,
            settings.login_attempts_per_address,
        ) = self.login_attempts_per_minute;
        settings
    }

    fn service_http_addr(&self, service: Service) -> SocketAddr {
        let mut addr = self.service_addr;
        if addr.port() != 0 {
            let offset = Self::SERVICE_PORT_ORDER
                .iter()
                .position(|s| *s == service)
                .unwrap_or_default();
            addr.set_port(addr.port() + offset as u16);
        }
        addr
    }

    const SERVICE_PORT_ORDER: [Service; 4] = [
        Service::User,
        Service::History,
        Service::Ads,
        Service::Aggregator,
    ];

    /// Starts `services` and waits until all are ready.
    pub async fn start_all(
        &self,
        services: &[Service],
        ready_within: Duration,
    ) -> anyhow::Result<Stack> {
        let mut running = Vec::new();
        for service in services {
            running.push(self.start(*service, CancellationToken::new()).await?);
        }
        for service in &running {
            service.wait_ready(ready_within).await?;
        }
        Ok(Stack { services: running })
    }
}

/// Running services.
pub struct Stack {
    pub services: Vec<RunningService>,
}

impl Stack {
    /// The first gateway's address.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|s| s.name == "gateway")
            .map(|s| s.http_addr)
    }

    /// Stops one service by name, if it runs.
    pub async fn stop_service(&mut self, name: &str) {
        if let Some(i) = self.services.iter().position(|s| s.name == name) {
            self.services.remove(i).stop().await;
        }
    }

    /// Stops everything, the gateway first so no new work comes in.
    pub async fn stop(mut self) {
        self.services.sort_by_key(|s| s.name != "gateway");
        for service in self.services {
            service.stop().await;
        }
    }
}
