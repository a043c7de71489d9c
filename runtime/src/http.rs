//! The HTTP server every service runs: axum's router on hyper, with a bound
//! on each open door. At most so many connections at once (past it a new
//! one is answered 503 and closed), a deadline for a request's headers and
//! one for its body, and an idle timeout that closes a connection on which
//! no byte has moved either way (a client that stopped reading included).
//! Each bound is a setting, and each refusal is counted in `/metrics`.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::metrics::Metrics;

/// How long a stopping server waits for the requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The bounds of a service's HTTP listener.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimits {
    /// Connections served at once; past it a new one is answered 503 and closed.
    #[arg(long, env = "STOREFRONT_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub http_max_connections: usize,
    /// How long a client has to send a request's headers (ms), also while a kept-alive connection waits for its next request.
    #[arg(
        long,
        env = "STOREFRONT_HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_header_timeout_ms: u64,
    /// How long a client has to send a request's whole body (ms); then 408.
    #[arg(
        long,
        env = "STOREFRONT_HTTP_BODY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_body_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long (ms) is closed.
    #[arg(
        long,
        env = "STOREFRONT_HTTP_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub http_idle_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct LimitsOnly {
            #[command(flatten)]
            limits: HttpLimits,
        }
        crate::settings::defaults::<LimitsOnly>(&[]).limits
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then
/// lets the requests in flight finish (for at most ten seconds).
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let router = router.layer(axum::middleware::from_fn_with_state(
        (
            metrics.clone(),
            Duration::from_millis(limits.http_body_timeout_ms),
        ),
        bound_body,
    ));
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    // HTTP/1 only: the header deadline is HTTP/1's, and the cap counts
    // connections, which HTTP/2 would multiplex streams over.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.http_header_timeout_ms));
    let connections = Arc::new(Semaphore::new(limits.http_max_connections));
    let idle = Duration::from_millis(limits.http_idle_timeout_ms);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait, rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.http_connections_refused.inc();
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(service) = make_service.call(remote).await;
        let io = TokioIo::new(IdleTimeout::new(stream, idle));
        let connection =
            graceful.watch(builder.serve_connection(io, TowerToHyperService::new(service)));
        let metrics = metrics.clone();
        metrics.http_connections.inc();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                if let Some(kind) = timeout_kind(&error) {
                    metrics.http_timeouts.with_label_values(&[kind]).inc();
                }
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
            metrics.http_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace; closing them");
    }
}

/// Which bound ended a connection, if one did.
fn timeout_kind(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(hyper_error) = error.downcast_ref::<hyper::Error>() {
        if hyper_error.is_timeout() {
            return Some("headers");
        }
    }
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io_error) = error.downcast_ref::<io::Error>() {
            if io_error.get_ref().is_some_and(|e| e.is::<Idle>()) {
                return Some("idle");
            }
        }
        source = error.source();
    }
    None
}

/// Answers a connection past the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":{"code":"too_many_connections","message":"the server holds as many connections as it may; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let answer = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the
        // connection before it has read the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// Middleware: the request body must arrive whole within the deadline.
async fn bound_body(
    State((metrics, deadline)): State<(Metrics, Duration)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(deadline)),
        after: deadline,
        metrics,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// The error a request body gives when it did not arrive by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimedOut(Duration);

/// Whether `error`, or an error it was caused by, is a body past its deadline.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    after: Duration,
    metrics: Metrics,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.metrics
            .http_timeouts
            .with_label_values(&["body"])
            .inc();
        Poll::Ready(Some(Err(BodyTimedOut(self.after).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Marks the I/O error of a connection closed for idleness.
#[derive(Debug, thiserror::Error)]
#[error("no byte moved on the connection for its idle timeout")]
struct Idle;

/// A connection that fails its pending read or write once no byte has
/// moved either way for `after`.
struct IdleTimeout {
    inner: TcpStream,
    after: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(inner: TcpStream, after: Duration) -> Self {
        Self {
            inner,
            after,
            deadline: Box::pin(tokio::time::sleep(after)),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.after;
        self.deadline.as_mut().reset(next);
    }

    /// `Pending` as long as the deadline is ahead; the idle error after it.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, Idle))
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server with `limits` on a free port; its address and metrics.
    async fn server(limits: HttpLimits) -> (SocketAddr, Metrics, CancellationToken) {
        let router = axum::Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/echo",
                post(
                    |body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                        match body {
                            Ok(body) => {
                                (axum::http::StatusCode::OK, format!("{} bytes", body.len()))
                            }
                            Err(rejection) if is_body_timeout(&rejection) => {
                                (axum::http::StatusCode::REQUEST_TIMEOUT, "late".into())
                            }
                            Err(rejection) => (rejection.status(), rejection.body_text()),
                        }
                    },
                ),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            router,
            limits,
            metrics.clone(),
            shutdown.clone(),
        ));
        (addr, metrics, shutdown)
    }

    fn limits(max_connections: usize, header_ms: u64, body_ms: u64, idle_ms: u64) -> HttpLimits {
        HttpLimits {
            http_max_connections: max_connections,
            http_header_timeout_ms: header_ms,
            http_body_timeout_ms: body_ms,
            http_idle_timeout_ms: idle_ms,
        }
    }

    /// Everything the server sends until it closes (or 5 s pass).
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
        let _ = read.await.expect("the server closes the connection");
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
        let (addr, metrics, _stop) = server(limits(16, 300, 5_000, 5_000)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        read_to_close(&mut slow).await;
        assert!(started.elapsed() < Duration::from_secs(4));
        let timeouts = metrics.http_timeouts.with_label_values(&["headers"]);
        assert_eq!(timeouts.get(), 1);
        // Others are still served.
        let mut other = TcpStream::connect(addr).await.unwrap();
        other
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_to_close(&mut other).await.ends_with("hello"));
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_gets_408() {
        let (addr, metrics, _stop) = server(limits(16, 5_000, 300, 5_000)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .await
            .unwrap();
        let answer = read_to_close(&mut slow).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert_eq!(metrics.http_timeouts.with_label_values(&["body"]).get(), 1);
    }

    #[tokio::test]
    async fn a_connection_on_which_nothing_moves_is_closed() {
        // Headers may take long; the connection may not sit silent.
        let (addr, metrics, _stop) = server(limits(16, 60_000, 5_000, 300)).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        silent.write_all(b"GET / HT").await.unwrap();
        read_to_close(&mut silent).await;
        assert_eq!(metrics.http_timeouts.with_label_values(&["idle"]).get(), 1);
    }

    #[tokio::test]
    async fn connections_past_the_cap_get_503_and_are_counted() {
        let (addr, metrics, _stop) = server(limits(2, 5_000, 5_000, 5_000)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buffer = [0u8; 256];
            assert!(stream.read(&mut buffer).await.unwrap() > 0);
            held.push(stream);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("retry-after: 1") && answer.contains("too_many_connections"));
        assert_eq!(metrics.http_connections_refused.get(), 1);
        assert_eq!(metrics.http_connections.get(), 2);
        // One closed, one more fits.
        drop(held.pop());
        let mut fourth = None;
        for _ in 0..50 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let answer = read_to_close(&mut stream).await;
            if answer.starts_with("HTTP/1.1 200") {
                fourth = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(fourth.is_some(), "a slot frees when a connection closes");
    }
}
