//! The county yields behind the station pages' performance index: one query per county, shared
//! by every page of the county's stations while the store is unchanged, and for at most
//! [`LAG`] while it changes (a median of a hundred stations moves little in a minute; today's
//! figures on the page itself are always live).

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
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get(&key) {
            let age = e.made.elapsed();
            if e.changes == changes || age < LAG {
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
