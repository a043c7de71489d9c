//! All five services in one process, as `storefront up` and the end-to-end
//! tests run them. Each is the same library its own binary runs.

use std::{net::SocketAddr, time::Duration};

use gateway::cookies::CookieKey;
use storefront_runtime::{KafkaSettings, RunningService, TelemetrySettings};
use tokio_util::sync::CancellationToken;
use user_svc::UnsealKey;

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
            page_deadline_ms: 250,
            reply_grace_ms: 1000,
            max_waiting: 10_000,
            telemetry: TelemetrySettings::default(),
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
                };
                history_svc::start(settings, shutdown).await
            }
            Service::Ads => {
                let settings = ads_svc::Settings {
                    kafka,
                    telemetry,
                    http_addr,
                };
                ads_svc::start(settings, shutdown).await
            }
            Service::Aggregator => {
                let settings = aggregator::Settings {
                    kafka,
                    telemetry,
                    http_addr,
                };
                aggregator::start(settings, shutdown).await
            }
            Service::Gateway => {
                gateway::start(
                    gateway::Settings {
                        kafka,
                        telemetry,
                        http_addr: self.gateway_addr,
                        user_svc_public_key: self.unseal_key.seal_key(),
                        cookie_key: self.cookie_key.clone(),
                        page_deadline_ms: self.page_deadline_ms,
                        reply_grace_ms: self.reply_grace_ms,
                        max_body_bytes: 16 * 1024,
                        max_waiting: self.max_waiting,
                        session_ttl_secs: 86_400,
                        cookie_secure: false,
                        login_attempts_per_user: 10,
                        login_attempts_per_address: 120,
                    },
                    shutdown,
                )
                .await
            }
        }
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
