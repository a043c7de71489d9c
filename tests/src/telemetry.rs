//! Outside tools that read our telemetry: a real OTLP receiver (oteltest's
//! HTTP sink) and the official Prometheus client's exposition-format parser.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

const SINK: &str = include_str!("../python/otlp_sink.py");
const PARSE_METRICS: &str = include_str!("../python/parse_metrics.py");

/// An OTLP/HTTP receiver in a child process, collecting every span it gets.
pub struct OtlpSink {
    pub endpoint: String,
    child: Child,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl OtlpSink {
    /// Starts the receiver on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = storefront_devstack::broker::free_port().expect("a free port");
        let mut child = Command::new(super::python::python())
            .args(["-c", SINK, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python runs (scripts/prepare.sh --test installs oteltest)");
        let stdout = child.stdout.take().expect("piped stdout");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let collected = spans.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str(&line) {
                    Ok(span) => collected.lock().unwrap().push(span),
                    Err(_) => eprintln!("otlp sink: {line}"),
                }
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the OTLP receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            endpoint: format!("http://{addr}"),
            child,
            spans,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of a scrape, as the Prometheus client's parser read it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

/// `GET /metrics` of a service, parsed; panics if the text is not valid
/// exposition format.
pub async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("/metrics answers");
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    tokio::task::spawn_blocking(move || parse_exposition(&text))
        .await
        .unwrap()
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let output = super::python::run_script(PARSE_METRICS, &[], text.as_bytes());
    assert!(
        output.status.success(),
        "the exposition format did not parse: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    samples
        .into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_owned(),
            labels: s["labels"].as_object().cloned().unwrap_or_default(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

/// The value of the sample named `name` whose labels include `labels`.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|s| s.value)
}
