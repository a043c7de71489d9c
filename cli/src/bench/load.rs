//! An open-loop load generator: requests leave at fixed intended times
//! whatever happened to the ones before, and each latency is measured from
//! its intended send time, so a stalled server shows as queueing delay
//! instead of hiding it (no coordinated omission).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio::time::Instant;

/// How long a request may take before it counts as lost.
const GIVE_UP: Duration = Duration::from_secs(10);

/// Where the load goes: one URL, and the header that names each session.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub header: &'static str,
    /// One header value per session; requests take them in turn.
    pub sessions: Arc<Vec<String>>,
}

/// A stretch of the load at one rate.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub rate: f64,
    pub duration: Duration,
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    Partial,
    /// An HTTP answer other than a 200 page.
    Error(u16),
    /// No HTTP answer within [`GIVE_UP`], or the connection failed.
    Lost,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    latency: Duration,
    outcome: Outcome,
}

/// Latency percentiles and counts of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub sent: usize,
    pub complete: usize,
    pub partial: usize,
    pub errors: usize,
    /// The errors by HTTP status.
    pub error_statuses: std::collections::BTreeMap<u16, usize>,
    pub lost: usize,
    /// Answered requests per second over the run.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// Percentiles of requests that all succeeded, with these latencies.
    pub fn of_latencies(latencies: &[Duration], wall: Duration) -> Self {
        let samples: Vec<Sample> = latencies
            .iter()
            .map(|latency| Sample {
                latency: *latency,
                outcome: Outcome::Complete,
            })
            .collect();
        Self::of(&samples, wall)
    }

    fn of(samples: &[Sample], wall: Duration) -> Self {
        let mut answered: Vec<Duration> = samples
            .iter()
            .filter(|s| s.outcome != Outcome::Lost)
            .map(|s| s.latency)
            .collect();
        answered.sort();
        let at = |q: f64| -> f64 {
            if answered.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * answered.len() as f64).ceil() as usize).clamp(1, answered.len());
            answered[rank - 1].as_secs_f64() * 1000.0
        };
        let count = |f: fn(&Outcome) -> bool| samples.iter().filter(|s| f(&s.outcome)).count();
        let mut error_statuses = std::collections::BTreeMap::new();
        for sample in samples {
            if let Outcome::Error(status) = sample.outcome {
                *error_statuses.entry(status).or_default() += 1;
            }
        }
        Self {
            error_statuses,
            sent: samples.len(),
            complete: count(|o| *o == Outcome::Complete),
            partial: count(|o| *o == Outcome::Partial),
            errors: count(|o| matches!(o, Outcome::Error(_))),
            lost: count(|o| *o == Outcome::Lost),
            throughput: answered.len() as f64 / wall.as_secs_f64().max(0.001),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

/// Sends the phases' requests, one after the other, and waits for every answer.
pub async fn run(target: &Target, phases: &[Phase]) -> Summary {
    let client = reqwest::Client::builder()
        .timeout(GIVE_UP)
        .pool_max_idle_per_host(1024)
        .build()
        .expect("an HTTP client");
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut requests = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut phase_start = started;
    let mut n = 0usize;
    for phase in phases {
        let interval = Duration::from_secs_f64(1.0 / phase.rate.max(0.001));
        let count = (phase.rate * phase.duration.as_secs_f64()).round() as u32;
        for i in 0..count {
            let intended = phase_start + interval * i;
            tokio::time::sleep_until(intended).await;
            let session = target.sessions[n % target.sessions.len()].clone();
            n += 1;
            let request = client.get(&target.url).header(target.header, session);
            let samples = samples.clone();
            requests.spawn(async move {
                let outcome = outcome_of(request.send().await).await;
                let sample = Sample {
                    latency: intended.elapsed(),
                    outcome,
                };
                samples.lock().expect("samples lock").push(sample);
            });
        }
        phase_start += phase.duration;
    }
    tokio::time::sleep_until(phase_start).await;
    while requests.join_next().await.is_some() {}
    let wall = phase_start - started;
    let samples = samples.lock().expect("samples lock");
    Summary::of(&samples, wall)
}

async fn outcome_of(response: reqwest::Result<reqwest::Response>) -> Outcome {
    let Ok(response) = response else {
        return Outcome::Lost;
    };
    let status = response.status().as_u16();
    let Ok(body) = response.bytes().await else {
        return Outcome::Lost;
    };
    if status != 200 {
        return Outcome::Error(status);
    }
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match page["status"].as_str() {
        Some("complete") => Outcome::Complete,
        Some("partial") => Outcome::Partial,
        _ => Outcome::Error(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank_and_leave_out_lost_requests() {
        let mut samples: Vec<Sample> = (1..=1000)
            .map(|ms| Sample {
                latency: Duration::from_millis(ms),
                outcome: Outcome::Complete,
            })
            .collect();
        samples.push(Sample {
            latency: Duration::from_secs(60),
            outcome: Outcome::Lost,
        });
        let summary = Summary::of(&samples, Duration::from_secs(10));
        assert_eq!(summary.sent, 1001);
        assert_eq!(summary.lost, 1);
        assert_eq!(summary.p50_ms, 500.0);
        assert_eq!(summary.p99_ms, 990.0);
        assert_eq!(summary.p999_ms, 999.0);
        assert_eq!(summary.max_ms, 1000.0);
        assert_eq!(summary.throughput, 100.0);
    }
}
