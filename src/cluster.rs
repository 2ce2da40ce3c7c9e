//! Several instances on one PostgreSQL database: they share the Modbus gateways, and one of them at
//! a time runs the singleton jobs.
//!
//! The gateways ([`share`]). Each gateway is a
//! lease (`modbus:<address>`, see `store::leases`) and only its holder polls it. Every instance
//! says it is alive, counts the live ones and holds its fair share (the gateways divided by the
//! live instances, rounded up): it renews what it holds, gives back what is over its share (so a
//! new instance gets work) and takes free or run-out leases up to it. A lease is renewed every
//! third of its length; an instance killed or cut off from the database loses its gateways when
//! its leases run out, and the others take them at their next renewal, so a gateway is polled
//! again within the lease and a third of it. A poller sends no request once its lease has run out
//! by its own monotonic clock, so a paused process that wakes up does not poll a gateway another
//! instance holds now.

use crate::collect::modbus::{Gateway, Held};
use crate::store::{Leadership, Store, JOBS_LEASE};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// The lease name of a gateway.
pub fn lease_name(address: &str) -> String {
    format!("modbus:{address}")
}

/// How many of `gateways` each of `live` instances holds.
pub fn fair_share(gateways: usize, live: usize) -> usize {
    gateways.div_ceil(live.max(1))
}

/// A gateway this instance polls now.
struct Polling {
    held: Held,
    stop: CancellationToken,
}

/// Shares `gateways` with the other instances on `store` until `cancel`, as `me`, with leases of
/// `lease`; the pollers run on `tracker`. On the way out it gives its leases back, so the others
/// take its gateways at their next renewal.
pub async fn share(
    store: Store,
    me: String,
    lease: Duration,
    gateways: Vec<Gateway>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let every = lease / 3;
    // Where this instance starts looking for free gateways: instances starting together try
    // different ones first.
    let offset = me.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let mut polling: BTreeMap<usize, Polling> = BTreeMap::new();
    info!(instance = %me, gateways = gateways.len(), lease_s = lease.as_secs_f64(), "sharing the Modbus gateways by leases");
    loop {
        let round = Instant::now();
        let live = match beat(&store, &me, lease).await {
            Ok(live) => Some(live),
            Err(e) => {
                warn!(error = %e, "the leases could not be renewed; gateways whose lease runs out stop being polled");
                None
            }
        };
        if let Some(live) = live {
            let share = fair_share(gateways.len(), live);
            // Renew what is held, in one statement; what ran out is stopped.
            match store.renew_leases(&me, lease).await {
                Ok(renewed) => {
                    let renewed: std::collections::HashSet<String> = renewed.into_iter().collect();
                    let held: Vec<usize> = polling.keys().copied().collect();
                    for i in held {
                        if renewed.contains(&lease_name(&gateways[i].address)) {
                            if let Some(p) = polling.get(&i) {
                                p.held.set(Some(round + lease));
                            }
                        } else {
                            warn!(gateway = %gateways[i].address, "lease ran out before its renewal");
                            stop(&mut polling, i);
                        }
                    }
                }
                Err(e) => warn!(error = %e, "leases not renewed"),
            }
            // Over the share (an instance joined): give the last ones back.
            while polling.len() > share {
                let Some(&i) = polling.keys().next_back() else {
                    break;
                };
                stop(&mut polling, i);
                if let Err(e) = store
                    .release_lease(&lease_name(&gateways[i].address), &me)
                    .await
                {
                    warn!(gateway = %gateways[i].address, error = %e, "lease not given back; it runs out");
                }
                info!(gateway = %gateways[i].address, "gateway given back for another instance");
            }
            // Under it: take free or run-out leases (only those nobody holds now are tried).
            let taken: std::collections::HashSet<String> = if polling.len() < share {
                match store.lease_holders("modbus:").await {
                    Ok(h) => h.into_iter().map(|(name, _, _)| name).collect(),
                    Err(e) => {
                        warn!(error = %e, "leases not read");
                        gateways.iter().map(|g| lease_name(&g.address)).collect()
                    }
                }
            } else {
                std::collections::HashSet::new()
            };
            for k in 0..gateways.len() {
                if polling.len() >= share {
                    break;
                }
                let i = (offset + k) % gateways.len();
                if polling.contains_key(&i) || taken.contains(&lease_name(&gateways[i].address)) {
                    continue;
                }
                match store
                    .claim_lease(&lease_name(&gateways[i].address), &me, lease)
                    .await
                {
                    Ok(Some(fence)) => {
                        let held = Held::default();
                        held.set(Some(round + lease));
                        let stop = cancel.child_token();
                        tracker.spawn(
                            (gateways[i].make)()
                                .with_lease(held.clone())
                                .run(stop.clone()),
                        );
                        info!(gateway = %gateways[i].address, fence, "gateway taken");
                        polling.insert(i, Polling { held, stop });
                    }
                    Ok(None) => {}
                    Err(e) => warn!(gateway = %gateways[i].address, error = %e, "lease not taken"),
                }
            }
        }
        // A lease that ran out without a renewal (the database unreachable): stop polling.
        let out: Vec<usize> = polling
            .iter()
            .filter(|(_, p)| !p.held.holds())
            .map(|(i, _)| *i)
            .collect();
        for i in out {
            warn!(gateway = %gateways[i].address, "lease ran out unrenewed; gateway no longer polled here");
            stop(&mut polling, i);
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(round + every) => {}
        }
    }
    for i in polling.keys().copied().collect::<Vec<_>>() {
        stop(&mut polling, i);
    }
    if let Err(e) = store.leave(&me).await {
        warn!(error = %e, "leases not given back on the way out; they run out");
    }
}

fn stop(polling: &mut BTreeMap<usize, Polling>, i: usize) {
    if let Some(p) = polling.remove(&i) {
        p.held.set(None);
        p.stop.cancel();
    }
}

/// Says this instance is alive and counts the live ones (itself included).
async fn beat(store: &Store, me: &str, lease: Duration) -> crate::store::Result<usize> {
    store.beat(me).await?;
    Ok(store.live_instances(lease).await?.len().max(1))
}

/// This instance's name: the configured one, else the host name and the process id.
pub fn instance_name(configured: Option<&str>) -> String {
    if let Some(name) = configured {
        return name.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sunshare".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The singleton jobs ([`lead`]): alert evaluation and notification, the raw retention purge and
/// the energy recomputation run on the holder of the jobs lease (their loops ask [`Leadership`]).
/// Takes and renews the [`JOBS_LEASE`] for `me` every third of `lease` until `cancel`, keeping
/// `leadership` up to date; gives it back on the way out.
pub async fn lead(
    store: Store,
    me: String,
    lease: Duration,
    leadership: Leadership,
    cancel: CancellationToken,
) {
    let mut was = None;
    loop {
        let round = tokio::time::Instant::now();
        match store.claim_lease(JOBS_LEASE, &me, lease).await {
            Ok(Some(fence)) => {
                leadership.set(Some((fence, round + lease)));
                if was != Some(fence) {
                    info!(instance = %me, fence, "leading: the singleton jobs run here");
                }
                was = Some(fence);
            }
            Ok(None) => {
                leadership.set(None);
                if was.is_some() {
                    warn!(instance = %me, "no longer leading: another instance holds the jobs lease");
                }
                was = None;
            }
            // Unrenewed, the lease runs out by the monotonic clock in `leadership` itself.
            Err(e) => warn!(error = %e, "the jobs lease could not be renewed"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(round + lease / 3) => {}
        }
    }
    leadership.set(None);
    if let Err(e) = store.release_lease(JOBS_LEASE, &me).await {
        warn!(error = %e, "the jobs lease was not given back; it runs out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn the_gateways_are_divided_rounding_up() {
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(5, 2), 3);
        assert_eq!(fair_share(5, 0), 5);
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(0, 3), 0);
    }

    #[tokio::test]
    async fn leases_are_held_by_one_renewed_with_their_fence_and_taken_over_with_a_new_one() {
        for t in crate::store::testing::all("leases_are_held_by_one")
            .await
            .expect("stores")
        {
            let s = &t.store;
            let long = Duration::from_secs(60);
            assert_eq!(
                s.claim_lease("modbus:g1", "a", long).await.expect("a"),
                Some(1)
            );
            assert_eq!(
                s.claim_lease("modbus:g1", "b", long).await.expect("b"),
                None,
                "{}",
                t.name
            );
            assert_eq!(
                s.claim_lease("modbus:g1", "a", long).await.expect("renew"),
                Some(1)
            );
            assert_eq!(
                s.renew_leases("a", long).await.expect("renew all"),
                ["modbus:g1"]
            );
            assert!(s
                .renew_leases("b", long)
                .await
                .expect("renew none")
                .is_empty());
            // Given back: the next holder gets a higher fence.
            s.release_lease("modbus:g1", "a").await.expect("release");
            assert_eq!(
                s.claim_lease("modbus:g1", "b", long).await.expect("b"),
                Some(2)
            );
            assert_eq!(
                s.claim_lease("modbus:g1", "a", long).await.expect("a"),
                None
            );
            let holders = s.lease_holders("modbus:").await.expect("holders");
            assert_eq!(holders, vec![("modbus:g1".to_owned(), "b".to_owned(), 2)]);
            // Run out (a lease of no length): taken over by the next claim.
            assert_eq!(
                s.claim_lease("modbus:g2", "a", Duration::ZERO)
                    .await
                    .expect("a"),
                Some(1)
            );
            let mut taken = None;
            for _ in 0..10_000 {
                taken = s.claim_lease("modbus:g2", "b", long).await.expect("b");
                if taken.is_some() {
                    break;
                }
            }
            assert_eq!(taken, Some(2), "{}", t.name);
            // Instances: alive, then gone with their leases.
            s.beat("a").await.expect("beat");
            s.beat("b").await.expect("beat");
            assert_eq!(s.live_instances(long).await.expect("live"), ["a", "b"]);
            s.leave("b").await.expect("leave");
            assert_eq!(s.live_instances(long).await.expect("live"), ["a"]);
            assert!(s
                .lease_holders("modbus:")
                .await
                .expect("holders")
                .is_empty());
            assert_eq!(
                s.claim_lease("modbus:g1", "a", long).await.expect("a"),
                Some(3)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_held_until_its_time_by_the_monotonic_clock() {
        let held = Held::default();
        assert!(!held.holds());
        held.set(Some(Instant::now() + Duration::from_secs(15)));
        assert!(held.holds());
        tokio::time::advance(Duration::from_secs(16)).await;
        assert!(
            !held.holds(),
            "a process that slept past its lease polls no more"
        );
    }
}
