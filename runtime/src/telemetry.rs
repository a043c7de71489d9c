//! One service's telemetry: its tracer (exporting OTLP over HTTP only when
//! an endpoint is configured) and its metrics registry.

use std::{sync::Arc, time::Duration};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    trace::{SdkTracer, SdkTracerProvider},
    Resource,
};

use crate::{metrics::Metrics, Error, Result};

/// Where traces go.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetrySettings {
    /// OTLP/HTTP collector base URL (spans are POSTed to `<url>/v1/traces`); unset: nothing is exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// A cheap-to-clone handle on one service's tracer and metrics.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    service: &'static str,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    metrics: Metrics,
}

impl Telemetry {
    /// Telemetry for `service`. Spans always get ids, so trace context
    /// propagates; they are batched and exported only if an endpoint is set
    /// (the exporter's thread uses a blocking HTTP client it builds itself).
    pub fn new(service: &'static str, settings: &TelemetrySettings) -> Result<Self> {
        let mut provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build());
        if let Some(endpoint) = settings.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .with_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| Error::Telemetry(e.to_string()))?;
            provider = provider.with_batch_exporter(exporter);
        }
        let provider = provider.build();
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                tracer: provider.tracer(service),
                provider,
                metrics: Metrics::new(),
            }),
        })
    }

    /// Telemetry that exports nothing (tools and tests).
    pub fn local(service: &'static str) -> Self {
        Self::new(service, &TelemetrySettings::default()).expect("no exporter to build")
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    pub fn tracer(&self) -> &SdkTracer {
        &self.inner.tracer
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Exports the spans still buffered, off the async threads.
    pub async fn flush(&self) {
        let provider = self.inner.provider.clone();
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "could not export the last spans");
        }
    }
}
