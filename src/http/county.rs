//! The county yields behind the station pages' performance index: one query per county, shared
//! by every page of the county's stations while the store is unchanged, and for at most
//! [`LAG`] while it changes (a median of a hundred stations moves little in a minute; today's
//! figures on the page itself are always live). A background task ([`keep_warm`]) reads each
//! county's yields of the span the pages show before any page asks, and again well inside
//! [`LAG`] while the store changes, so no page waits for them.

use super::AppState;
use crate::domain::{CountyId, Station};
use crate::energy::report::{self, CountyYields};
use chrono::NaiveDate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a county's yields serve while the store keeps changing.
const LAG: Duration = Duration::from_secs(60);

/// Entries older than this are dropped when a new one is made.
const KEEP: Duration = Duration::from_secs(600);

type Key = (CountyId, NaiveDate, NaiveDate);

#[derive(Debug)]
struct Entry {
    /// `Store::changes` when it was asked for.
    changes: u64,
    made: Instant,
    /// Filled once: the requests that come while it is read wait for that one read.
    yields: tokio::sync::OnceCell<Arc<CountyYields>>,
}

/// The yields per county and span of days.
#[derive(Debug, Default)]
pub struct CountyCache {
    entries: Mutex<HashMap<Key, Arc<Entry>>>,
}

impl CountyCache {
    fn entry(&self, key: Key, changes: u64) -> Arc<Entry> {
        self.entry_within(key, changes, LAG)
    }

    /// The entry for `key`, renewed when the store changed since it was made and it is `lag` old.
    fn entry_within(&self, key: Key, changes: u64, lag: Duration) -> Arc<Entry> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get(&key) {
            let age = e.made.elapsed();
            if e.changes == changes || age < lag {
                return Arc::clone(e);
            }
        }
        map.retain(|_, e| e.made.elapsed() < KEEP);
        let e = Arc::new(Entry {
            changes,
            made: Instant::now(),
            yields: tokio::sync::OnceCell::new(),
        });
        map.insert(key, Arc::clone(&e));
        e
    }
}

/// The yields of `station`'s county over `first..=last`.
pub async fn yields(
    state: &AppState,
    station: &Station,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<Arc<CountyYields>, crate::energy::Error> {
    let entry = state
        .county
        .entry((station.county.clone(), first, last), state.store.changes());
    fill(state, station, first, last, entry).await
}

/// The thirty days a station page compares with its county: the page's own span.
pub fn page_span(station: &Station, now: chrono::DateTime<chrono::Utc>) -> (NaiveDate, NaiveDate) {
    let last = crate::energy::daily::today(station, now);
    (last - chrono::Duration::days(29), last)
}

/// Reads every county's yields of the station pages' span where they are missing, or older than
/// half of [`LAG`] with the store changed since: what a page then asks for is ready.
pub async fn warm(state: &AppState) -> Result<(), crate::energy::Error> {
    let now = chrono::Utc::now();
    for county in &state.deployment.counties {
        let Some(s) = state
            .deployment
            .stations
            .iter()
            .find(|s| s.county == county.id)
        else {
            continue;
        };
        let (first, last) = page_span(s, now);
        let entry = state.county.entry_within(
            (s.county.clone(), first, last),
            state.store.changes(),
            LAG / 2,
        );
        fill(state, s, first, last, entry).await?;
    }
    Ok(())
}

/// [`warm`] every [`LAG`] / 4 until `cancel`; a failed read is logged and tried again next time.
pub async fn keep_warm(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    loop {
        if let Err(e) = warm(&state).await {
            tracing::warn!(error = %e, "county yields for the station pages could not be read");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(LAG / 4) => {}
        }
    }
}

async fn fill(
    state: &AppState,
    station: &Station,
    first: NaiveDate,
    last: NaiveDate,
    entry: Arc<Entry>,
) -> Result<Arc<CountyYields>, crate::energy::Error> {
    entry
        .yields
        .get_or_try_init(|| async {
            report::county_yields(&state.store, &state.deployment, station, first, last)
                .await
                .map(Arc::new)
        })
        .await
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a warm-up, the page's county entry is read already; a store change within half a
    /// minute keeps it, and once older than that the next warm-up reads it again.
    #[tokio::test]
    async fn the_warm_up_reads_each_countys_yields_before_a_page_asks() -> anyhow::Result<()> {
        let t = crate::store::testing::sqlite().await?;
        let d = crate::energy::testing::deployment();
        let state = AppState::new(
            Arc::new(d),
            t.store.clone(),
            Arc::new(crate::metrics::Metrics::new()),
        );
        let s = state.deployment.stations[0].clone();
        let (first, last) = page_span(&s, chrono::Utc::now());
        let key = (s.county.clone(), first, last);
        assert!(state
            .county
            .entry(key.clone(), state.store.changes())
            .yields
            .get()
            .is_none());
        warm(&state).await?;
        let read = state.county.entry(key.clone(), state.store.changes());
        assert!(read.yields.get().is_some(), "the warm-up read the county");
        // What a page then gets is that very read.
        let page = yields(&state, &s, first, last).await?;
        assert!(Arc::ptr_eq(&page, read.yields.get().expect("read")));
        // Changed and older than LAG / 2: the warm-up makes a new entry and reads it.
        let old = Arc::new(Entry {
            changes: state.store.changes().wrapping_sub(1),
            made: Instant::now()
                .checked_sub(LAG / 2 + Duration::from_secs(1))
                .expect("a past instant"),
            yields: tokio::sync::OnceCell::new(),
        });
        state
            .county
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), Arc::clone(&old));
        warm(&state).await?;
        let renewed = state.county.entry(key, state.store.changes());
        assert!(!Arc::ptr_eq(&old, &renewed));
        assert!(renewed.yields.get().is_some());
        Ok(())
    }

    fn key(county: &str) -> Key {
        let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).expect("day");
        (CountyId::new(county), day(1), day(30))
    }

    #[test]
    fn a_countys_yields_are_shared_while_unchanged_and_for_a_minute_while_written_to() {
        let cache = CountyCache::default();
        let first = cache.entry(key("C1"), 5);
        assert!(Arc::ptr_eq(&first, &cache.entry(key("C1"), 5)));
        // Written to since: still shared, less than a minute old.
        assert!(Arc::ptr_eq(&first, &cache.entry(key("C1"), 9)));
        // Another county, or another span of days, has its own.
        assert!(!Arc::ptr_eq(&first, &cache.entry(key("C2"), 5)));
        // Older than a minute and written to since: asked for again.
        let old = Arc::new(Entry {
            changes: 5,
            made: Instant::now()
                .checked_sub(LAG + Duration::from_secs(1))
                .expect("a past instant"),
            yields: tokio::sync::OnceCell::new(),
        });
        cache
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key("C1"), Arc::clone(&old));
        assert!(Arc::ptr_eq(&old, &cache.entry(key("C1"), 5)));
        assert!(!Arc::ptr_eq(&old, &cache.entry(key("C1"), 9)));
    }
}
