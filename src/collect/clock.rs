//! The system clock as the collectors see it. A Modbus reading is stamped with the system clock
//! when its first answer arrives, so a step of that clock (NTP correcting a clock that ran an hour
//! ahead, someone setting it by hand) moves every later stamp. Sunshare cannot tell which of the
//! two clocks was right; it keeps stamping with the system clock and says when it stepped, by
//! comparing it with the monotonic clock, which never steps: one warning per step naming how far
//! and which way, and `sunshare_clock_steps_total{direction}`.
//!
//! What a step back does to the data is decided at ingest: a reading stamped before one already
//! stored but with a higher lifetime counter is held in quarantine as `clock_behind` (never lost,
//! never counted twice: the next reading after the clock has passed the stored ones bridges the
//! energy), see `docs/ingest.md`.

use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the two clocks are compared.
pub const EVERY: Duration = Duration::from_secs(5);

/// Less than this between the two clocks over one comparison is slewing or scheduling, not a step.
pub const TOLERANCE: chrono::Duration = chrono::Duration::seconds(2);

/// One reading of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub wall: DateTime<Utc>,
    pub mono: Instant,
}

impl Reading {
    pub fn now() -> Reading {
        Reading {
            wall: Utc::now(),
            mono: Instant::now(),
        }
    }
}

/// How far the system clock stepped between two readings beyond what the monotonic clock says
/// passed (negative: back), or `None` within [`TOLERANCE`].
pub fn step(then: Reading, now: Reading) -> Option<chrono::Duration> {
    let passed = chrono::Duration::from_std(now.mono.saturating_duration_since(then.mono))
        .unwrap_or(chrono::Duration::MAX);
    let moved = now.wall - then.wall;
    let by = moved - passed;
    (by.abs() > TOLERANCE).then_some(by)
}

/// Says it when the system clock steps, until `cancel`.
pub async fn watch(metrics: Arc<Metrics>, cancel: CancellationToken) {
    let mut then = Reading::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        let now = Reading::now();
        if let Some(by) = step(then, now) {
            say(&metrics, by);
        }
        then = now;
    }
}

fn say(metrics: &Metrics, by: chrono::Duration) {
    let direction = if by < chrono::Duration::zero() {
        "back"
    } else {
        "forward"
    };
    metrics
        .clock_steps
        .get_or_create(&vec![("direction", direction.to_owned())])
        .inc();
    let seconds = by.num_milliseconds().abs() as f64 / 1000.0;
    if direction == "back" {
        tracing::warn!(
            step_s = seconds,
            "the system clock stepped back by {seconds:.0} s: readings are stamped with it, so \
             a reading stamped before one already stored whose counter is higher is held in \
             quarantine as clock_behind until the clock has passed the stored readings"
        );
    } else {
        tracing::warn!(
            step_s = seconds,
            "the system clock stepped forward by {seconds:.0} s: readings are stamped with it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(wall: DateTime<Utc>, mono: Instant) -> Reading {
        Reading { wall, mono }
    }

    #[test]
    fn a_step_is_what_the_wall_clock_moved_beyond_the_monotonic_one() {
        let mono = Instant::now();
        let wall = Utc::now();
        let later = mono + Duration::from_secs(5);
        // Both moved 5 s: no step.
        assert_eq!(
            step(
                at(wall, mono),
                at(wall + chrono::Duration::seconds(5), later)
            ),
            None
        );
        // Within the tolerance (NTP slewing, a late wake-up): no step.
        assert_eq!(
            step(
                at(wall, mono),
                at(wall + chrono::Duration::milliseconds(6_900), later)
            ),
            None
        );
        // Set back an hour between two readings 5 s apart.
        assert_eq!(
            step(
                at(wall, mono),
                at(wall + chrono::Duration::seconds(5 - 3600), later)
            ),
            Some(chrono::Duration::seconds(-3600))
        );
        // And forward again.
        assert_eq!(
            step(
                at(wall, mono),
                at(wall + chrono::Duration::seconds(3605), later)
            ),
            Some(chrono::Duration::seconds(3600))
        );
    }

    #[test]
    fn a_step_is_counted_by_direction() {
        let m = Metrics::new();
        say(&m, chrono::Duration::seconds(-3600));
        say(&m, chrono::Duration::seconds(-10));
        say(&m, chrono::Duration::seconds(60));
        let text = m.render();
        assert!(
            text.contains("sunshare_clock_steps_total{direction=\"back\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("sunshare_clock_steps_total{direction=\"forward\"} 1"),
            "{text}"
        );
    }
}
