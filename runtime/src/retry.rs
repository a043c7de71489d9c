//! The one retry policy: every loop that tries something again goes
//! through [`retry`] (or [`retry_blocking`] off the async threads). An
//! error is either permanent (no retry: the caller dead-letters or reports
//! it) or transient (retried with exponential backoff and jitter, from
//! backon); retrying stops at the first success, a permanent error, the
//! caller's deadline or shutdown, whichever comes first.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure<E> {
    /// Trying again cannot help (a bad record, a refusal).
    Permanent(E),
    /// It may work later (a broker away, a full queue, a timeout).
    Transient(E),
}

impl<E> Failure<E> {
    /// The error, whichever kind.
    pub fn into_inner(self) -> E {
        match self {
            Self::Permanent(error) | Self::Transient(error) => error,
        }
    }
}

/// Why retrying stopped without a success; each carries the last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp<E> {
    Permanent(E),
    /// The next wait would end past the deadline.
    Deadline(E),
    Shutdown(E),
}

impl<E> GaveUp<E> {
    pub fn into_inner(self) -> E {
        match self {
            Self::Permanent(error) | Self::Deadline(error) | Self::Shutdown(error) => error,
        }
    }
}

/// A backoff: the first wait, doubling up to the longest, each wait plus a
/// random share of itself (backon's jitter) so that clients that failed
/// together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub first: Duration,
    pub longest: Duration,
}

impl Policy {
    /// A record of the request path whose output could not be written.
    pub const RECORD: Self = Self::new(Duration::from_millis(100), Duration::from_secs(5));
    /// A callback whose receiver failed or did not answer.
    pub const CALLBACK: Self = Self::new(Duration::from_millis(500), Duration::from_secs(60));
    /// The producer's local queue was full: it empties in milliseconds.
    pub const QUEUE_FULL: Self = Self::new(Duration::from_millis(2), Duration::from_millis(50));
    /// A client call to the broker that failed (consumer errors, metadata,
    /// a transaction to try again): at most 2 s between tries, jitter
    /// included, so a broker that is back is used again within seconds.
    pub const BROKER: Self = Self::new(Duration::from_millis(50), Duration::from_secs(1));

    pub const fn new(first: Duration, longest: Duration) -> Self {
        Self { first, longest }
    }

    /// The waits between attempts, endless.
    pub fn waits(&self) -> impl Iterator<Item = Duration> + Send + Sync + 'static {
        ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.longest)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// When to stop trying, besides success and a permanent error.
#[derive(Debug, Clone, Default)]
pub struct Until {
    /// Tokio's clock, so tests can pause and advance it.
    pub deadline: Option<tokio::time::Instant>,
    pub shutdown: Option<CancellationToken>,
}

impl Until {
    /// Until `shutdown` is cancelled.
    pub fn shutdown(shutdown: &CancellationToken) -> Self {
        Self {
            deadline: None,
            shutdown: Some(shutdown.clone()),
        }
    }

    /// Also stop once the next wait would end past `deadline`.
    pub fn with_deadline(mut self, deadline: Option<tokio::time::Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    fn past(&self, wait: Duration) -> bool {
        self.deadline
            .is_some_and(|deadline| tokio::time::Instant::now() + wait > deadline)
    }
}

/// Runs `attempt` (given its number, from 1) until it succeeds or retrying
/// must stop; `on_retry` is told of each transient failure and the wait
/// before the next attempt.
pub async fn retry<T, E, Fut>(
    policy: Policy,
    until: &Until,
    mut attempt: impl FnMut(u32) -> Fut,
    mut on_retry: impl FnMut(&E, u32, Duration),
) -> Result<T, GaveUp<E>>
where
    Fut: Future<Output = Result<T, Failure<E>>>,
{
    let mut waits = policy.waits();
    let mut number = 1;
    loop {
        let error = match attempt(number).await {
            Ok(value) => return Ok(value),
            Err(Failure::Permanent(error)) => return Err(GaveUp::Permanent(error)),
            Err(Failure::Transient(error)) => error,
        };
        let wait = waits.next().unwrap_or(policy.longest);
        if until.past(wait) {
            return Err(GaveUp::Deadline(error));
        }
        if until.shutdown.as_ref().is_some_and(|s| s.is_cancelled()) {
            return Err(GaveUp::Shutdown(error));
        }
        on_retry(&error, number, wait);
        match &until.shutdown {
            Some(shutdown) => tokio::select! {
                _ = shutdown.cancelled() => return Err(GaveUp::Shutdown(error)),
                _ = tokio::time::sleep(wait) => {}
            },
            None => tokio::time::sleep(wait).await,
        }
        number += 1;
    }
}

/// [`retry`] for blocking calls, on a thread that may sleep (inside
/// `spawn_blocking`); it has a deadline and no shutdown.
pub fn retry_blocking<T, E>(
    policy: Policy,
    deadline: Instant,
    mut attempt: impl FnMut(u32) -> Result<T, Failure<E>>,
) -> Result<T, GaveUp<E>> {
    let mut waits = policy.waits();
    let mut number = 1;
    loop {
        let error = match attempt(number) {
            Ok(value) => return Ok(value),
            Err(Failure::Permanent(error)) => return Err(GaveUp::Permanent(error)),
            Err(Failure::Transient(error)) => error,
        };
        let wait = waits.next().unwrap_or(policy.longest);
        if Instant::now() + wait > deadline {
            return Err(GaveUp::Deadline(error));
        }
        std::thread::sleep(wait);
        number += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_up_to_the_longest_with_jitter() {
        let policy = Policy::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = policy.waits().take(8).collect();
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (wait, ceiling) in waits.iter().zip(ceilings) {
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                *wait >= ceiling && *wait <= ceiling * 2,
                "{wait:?} within {ceiling:?} and twice that"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_until_it_succeeds() {
        let result = retry(
            Policy::RECORD,
            &Until::default(),
            |n| async move {
                if n < 4 {
                    Err(Failure::Transient(n))
                } else {
                    Ok(n)
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(result, Ok(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let mut attempts = 0;
        let result: Result<(), _> = retry(
            Policy::RECORD,
            &Until::default(),
            |_| {
                attempts += 1;
                async { Err(Failure::Permanent("bad record")) }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(result, Err(GaveUp::Permanent("bad record")));
        assert_eq!(attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_stops_before_a_wait_that_would_pass_the_deadline() {
        let started = tokio::time::Instant::now();
        let until = Until::default().with_deadline(Some(started + Duration::from_millis(250)));
        let mut attempts = 0;
        let result: Result<(), _> = retry(
            Policy::RECORD,
            &until,
            |_| {
                attempts += 1;
                async { Err(Failure::Transient("broker away")) }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(result, Err(GaveUp::Deadline("broker away")));
        assert!((1..=3).contains(&attempts), "{attempts} attempts");
        assert!(started.elapsed() <= Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_wait_at_once() {
        let shutdown = CancellationToken::new();
        let until = Until::shutdown(&shutdown);
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            stopper.cancel();
        });
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retry(
            Policy::CALLBACK,
            &until,
            |_| async { Err(Failure::Transient("receiver down")) },
            |_, _, _| {},
        )
        .await;
        assert_eq!(result, Err(GaveUp::Shutdown("receiver down")));
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
