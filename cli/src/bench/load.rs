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
    /// When it was meant to leave, from the start of the run.
    sent_at: Duration,
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
    /// The p99 of the requests meant to leave in each second of the run,
    /// in order (none for a second with no answered request).
    pub p99_by_second_ms: Vec<Option<f64>>,
}

impl Summary {
    /// Percentiles of requests that all succeeded, with these latencies.
    pub fn of_latencies(latencies: &[Duration], wall: Duration) -> Self {
        let samples: Vec<Sample> = latencies
            .iter()
            .map(|latency| Sample {
                sent_at: Duration::ZERO,
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
        let at = |q: f64| percentile_ms(&answered, q).unwrap_or(f64::NAN);
        let seconds = samples
            .iter()
            .map(|s| s.sent_at.as_secs() as usize + 1)
            .max()
            .unwrap_or(0);
        let mut by_second = vec![Vec::new(); seconds];
        for sample in samples.iter().filter(|s| s.outcome != Outcome::Lost) {
            by_second[sample.sent_at.as_secs() as usize].push(sample.latency);
        }
        let p99_by_second_ms = by_second
            .iter_mut()
            .map(|second| {
                second.sort();
                percentile_ms(second, 0.99)
            })
            .collect();
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
            p99_by_second_ms,
        }
    }

    /// Seconds from `from_secs` into the run until the p99 of every later
    /// second is under `bound_ms`; `None` if it never settles.
    pub fn settled_after(&self, from_secs: f64, bound_ms: f64) -> Option<f64> {
        let last_over = self
            .p99_by_second_ms
            .iter()
            .rposition(|p99| p99.is_some_and(|ms| ms >= bound_ms));
        match last_over {
            None => Some(0.0),
            Some(second) if second + 1 >= self.p99_by_second_ms.len() => None,
            Some(second) => Some((second as f64 + 1.0 - from_secs).max(0.0)),
        }
    }
}

/// The nearest-rank `q` percentile of sorted `latencies`, in ms.
pub(crate) fn percentile_ms(latencies: &[Duration], q: f64) -> Option<f64> {
    if latencies.is_empty() {
        return None;
    }
    let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
    Some(latencies[rank - 1].as_secs_f64() * 1000.0)
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
                    sent_at: intended - started,
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
                sent_at: Duration::from_millis((ms - 1) * 10),
                latency: Duration::from_millis(ms),
                outcome: Outcome::Complete,
            })
            .collect();
        samples.push(Sample {
            sent_at: Duration::from_millis(100),
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
        // Second n holds the requests of 100n + 1 to 100(n + 1) ms.
        assert_eq!(summary.p99_by_second_ms.len(), 10);
        assert_eq!(summary.p99_by_second_ms[0], Some(99.0));
        assert_eq!(summary.p99_by_second_ms[9], Some(999.0));
    }

    #[test]
    fn a_run_settles_once_every_later_second_is_under_the_bound() {
        let summary = |p99s: &[Option<f64>]| Summary {
            p99_by_second_ms: p99s.to_vec(),
            ..Summary::default()
        };
        let burst = summary(&[
            Some(20.0),
            Some(400.0),
            Some(300.0),
            None,
            Some(30.0),
            Some(20.0),
        ]);
        // The burst ends at 2 s; the last second over 100 ms is the third.
        assert_eq!(burst.settled_after(2.0, 100.0), Some(1.0));
        assert_eq!(burst.settled_after(4.0, 100.0), Some(0.0));
        assert_eq!(summary(&[Some(20.0)]).settled_after(0.0, 100.0), Some(0.0));
        assert_eq!(
            summary(&[Some(20.0), Some(200.0)]).settled_after(0.0, 100.0),
            None,
            "still over at the end"
        );
    }
}
