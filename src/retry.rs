//! The one retry policy: capped exponential backoff with jitter, and a driver that retries an
//! operation until it succeeds, fails for good, runs out of attempts or is cancelled.
//!
//! The caller decides which errors are worth another try ([`Fault`]); this module only decides
//! when. Every wait is raced against a `CancellationToken`, so a retry loop against a store or a
//! server that is down never holds up a shutdown. An attempt already running is never cut short:
//! each operation bounds its own network waits with a timeout.
//!
//! Knows nothing of Sunshare: no module of the crate is named here.

use rand::Rng as _;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Capped exponential backoff with equal jitter: the n-th wait (from 0) is uniform in
/// `[d/2, d]` with `d = min(max, initial * 2^n)`. Half of every wait is fixed, so a retry never
/// spins; half is random, so clients that failed together do not come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// `initial` is at least 1 ms; `max` at least `initial`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// Back to the shortest wait (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Jumps to the longest wait (an error that retrying soon will not fix, e.g. bad credentials).
    pub fn saturate(&mut self) {
        self.attempt = u32::MAX;
    }

    /// The longest the next wait can be: `min(max, initial * 2^n)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next wait, and the one after grows.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=d - half)
    }
}

/// What the caller says about a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault<E> {
    /// Trying again may help (a connection refused, a timeout, a 5xx).
    Retriable(E),
    /// Trying again will not help (a 4xx, a refused login, bad data).
    Fatal(E),
}

/// Why [`retry`] stopped without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp<E> {
    /// The caller classified the error as fatal.
    Fatal { error: E, attempts: u32 },
    /// Every allowed attempt failed.
    Exhausted { error: E, attempts: u32 },
    /// The token was cancelled while waiting for the next attempt (or after a failed attempt).
    Cancelled { error: E, attempts: u32 },
}

impl<E> GaveUp<E> {
    pub fn error(&self) -> &E {
        match self {
            GaveUp::Fatal { error, .. }
            | GaveUp::Exhausted { error, .. }
            | GaveUp::Cancelled { error, .. } => error,
        }
    }

    pub fn attempts(&self) -> u32 {
        match self {
            GaveUp::Fatal { attempts, .. }
            | GaveUp::Exhausted { attempts, .. }
            | GaveUp::Cancelled { attempts, .. } => *attempts,
        }
    }

    pub fn into_error(self) -> E {
        match self {
            GaveUp::Fatal { error, .. }
            | GaveUp::Exhausted { error, .. }
            | GaveUp::Cancelled { error, .. } => error,
        }
    }
}

/// Waits `d` unless `cancel` fires first; false when cancelled (at once if it already was).
pub async fn wait(cancel: &CancellationToken, d: Duration) -> bool {
    if cancel.is_cancelled() {
        return false;
    }
    tokio::select! {
        biased;
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Runs `attempt` until it succeeds, with `backoff` between tries. At most `max_attempts` tries
/// (`None`: no limit, for work that must not be dropped while the service runs). `on_retry` is
/// told each retriable failure with its attempt number and the wait before the next one. The first
/// attempt is always made, even when `cancel` has fired (a drain at shutdown still writes what it
/// can); after a failure a cancelled token ends the loop at once.
pub async fn retry<T, E, Fut>(
    backoff: &mut Backoff,
    max_attempts: Option<u32>,
    cancel: &CancellationToken,
    mut attempt: impl FnMut() -> Fut,
    mut on_retry: impl FnMut(&E, u32, Duration),
) -> Result<T, GaveUp<E>>
where
    Fut: Future<Output = Result<T, Fault<E>>>,
{
    let mut attempts = 0u32;
    loop {
        attempts = attempts.saturating_add(1);
        let error = match attempt().await {
            Ok(v) => {
                backoff.reset();
                return Ok(v);
            }
            Err(Fault::Fatal(error)) => return Err(GaveUp::Fatal { error, attempts }),
            Err(Fault::Retriable(error)) => error,
        };
        if max_attempts.is_some_and(|max| attempts >= max) {
            return Err(GaveUp::Exhausted { error, attempts });
        }
        if cancel.is_cancelled() {
            return Err(GaveUp::Cancelled { error, attempts });
        }
        let delay = backoff.next_delay();
        on_retry(&error, attempts, delay);
        if !wait(cancel, delay).await {
            return Err(GaveUp::Cancelled { error, attempts });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let mut b = Backoff::new(100 * MS, 5_000 * MS);
        let ceilings = [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000];
        for want in ceilings {
            let d = want * MS;
            assert_eq!(b.ceiling(), d);
            let got = b.next_delay();
            assert!(
                got >= d / 2 && got <= d,
                "{got:?} outside [{:?}, {d:?}]",
                d / 2
            );
        }
        for _ in 0..200 {
            assert!(b.next_delay() <= 5_000 * MS);
        }
        b.reset();
        assert_eq!(b.ceiling(), 100 * MS);
        b.saturate();
        assert_eq!(b.ceiling(), 5_000 * MS);
        let got = b.next_delay();
        assert!(got >= 2_500 * MS && got <= 5_000 * MS, "{got:?}");
        // A huge number of attempts never overflows.
        assert_eq!(b.ceiling(), 5_000 * MS);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut b = Backoff::new(1_000 * MS, 1_000 * MS);
        let waits: std::collections::HashSet<_> = (0..50).map(|_| b.next_delay()).collect();
        assert!(waits.len() > 10, "jitter must vary the wait: {waits:?}");
        let mut tiny = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(tiny.ceiling(), MS, "never a zero wait");
        assert!(tiny.next_delay() >= MS / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_the_backoff_until_success() {
        let cancel = CancellationToken::new();
        let mut b = Backoff::new(100 * MS, 400 * MS);
        let calls = Cell::new(0);
        let mut waits = Vec::new();
        let start = Instant::now();
        let got = retry(
            &mut b,
            None,
            &cancel,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 5 {
                        Err(Fault::Retriable(n))
                    } else {
                        Ok("done")
                    }
                }
            },
            |_, attempt, wait| waits.push((attempt, wait)),
        )
        .await;
        assert_eq!(got, Ok("done"));
        assert_eq!(calls.get(), 5);
        let attempts: Vec<u32> = waits.iter().map(|w| w.0).collect();
        assert_eq!(attempts, [1, 2, 3, 4]);
        let total: Duration = waits.iter().map(|w| w.1).sum();
        // Ceilings 100, 200, 400, 400: at least half of each, at most all of it.
        assert!(total >= 550 * MS && total <= 1_100 * MS, "{total:?}");
        // The timer rounds each wait up to the millisecond.
        let slept = start.elapsed();
        assert!(
            slept >= total && slept <= total + 4 * MS,
            "slept {slept:?} for waits of {total:?}"
        );
        assert_eq!(b.ceiling(), 100 * MS, "a success resets the backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_and_the_attempt_limit_stop_at_once() {
        let cancel = CancellationToken::new();
        let mut b = Backoff::new(100 * MS, 400 * MS);
        let start = Instant::now();
        let fatal: Result<(), _> = retry(
            &mut b,
            None,
            &cancel,
            || async { Err(Fault::Fatal("403")) },
            |_, _, _| {},
        )
        .await;
        assert_eq!(
            fatal,
            Err(GaveUp::Fatal {
                error: "403",
                attempts: 1
            })
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        let calls = Cell::new(0);
        let exhausted: Result<(), _> = retry(
            &mut b,
            Some(3),
            &cancel,
            || {
                calls.set(calls.get() + 1);
                async { Err(Fault::Retriable("503")) }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(calls.get(), 3);
        assert!(matches!(
            exhausted,
            Err(GaveUp::Exhausted {
                error: "503",
                attempts: 3
            })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_ends_the_wait_at_once() {
        let cancel = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(600));
        let calls = Cell::new(0);
        let start = Instant::now();
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(200)).await;
            stopper.cancel();
        });
        let got: Result<(), _> = retry(
            &mut b,
            None,
            &cancel,
            || {
                calls.set(calls.get() + 1);
                async { Err(Fault::Retriable("down")) }
            },
            |_, _, _| {},
        )
        .await;
        assert!(matches!(got, Err(GaveUp::Cancelled { error: "down", .. })));
        // Waits of 30-60 s, 60-120 s, 120-240 s: cancelled during the third at the latest,
        // and the loop returns the instant the token fires, not when the wait would end.
        assert_eq!(start.elapsed(), Duration::from_secs(200));
        assert!((2..=4).contains(&calls.get()), "{}", calls.get());

        // Already cancelled: one attempt (a drain still writes what it can), then no wait.
        let start = Instant::now();
        let calls = Cell::new(0);
        let got: Result<(), _> = retry(
            &mut b,
            None,
            &cancel,
            || {
                calls.set(calls.get() + 1);
                async { Err(Fault::Retriable("down")) }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(
            got,
            Err(GaveUp::Cancelled {
                error: "down",
                attempts: 1
            })
        );
        assert_eq!(calls.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(!wait(&cancel, Duration::from_secs(1)).await);
    }
}
