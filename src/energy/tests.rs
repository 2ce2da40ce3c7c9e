//! Energy read back from the store on every backend: raw readings, rollups after raw retention,
//! gaps, and the settled-or-metered figure the allocator takes.

use super::testing::{history, sh};
use super::*;
use crate::domain::{DeviceId, WattHours};
use crate::energy::counters::Note;
use chrono::{DateTime, NaiveDate, TimeZone as _};
use chrono_tz::Asia::Shanghai;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).expect("day")
}

#[test]
fn store_figures_days_months_and_the_settled_switch() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for t in
            crate::store::testing::all("store_figures_days_months_and_the_settled_switch").await?
        {
            let store = &t.store;
            let d = testing::deployment();
            let tz = |_: &DeviceId| Shanghai;
            store
                .write_samples(&history("S1-INV1", |_| false), &tz)
                .await?;
            // S2's logger is silent from 10:00 to 14:00 on 2 March.
            let gap = |at: DateTime<Utc>| at >= sh(3, 2, 10, 0) && at < sh(3, 2, 14, 0);
            store.write_samples(&history("S2-INV1", gap), &tz).await?;
            let now = sh(3, 10, 0, 0);
            let s1 = d.station("S1").expect("S1");
            let s2 = d.station("S2").expect("S2");

            let days = metered::station_days(store, &d, s1, day(1), day(4), now).await?;
            let wh: Vec<i64> = days.iter().map(|f| f.energy.0).collect();
            // 1 March starts at the first reading; the counter is flat at every midnight.
            assert_eq!(wh, vec![12_000, 12_000, 12_000, 0], "{}", t.name);
            assert!(days[0].notes.is_empty(), "{}: {:?}", t.name, days[0].notes);
            assert!(days[3].notes.contains(&Note::NoData), "{}", t.name);
            let c = days[1].completeness;
            assert!(c.ratio().is_some_and(|r| r > 0.99), "{}: {c:?}", t.name);
            assert!(days[1].observed_hours >= 8, "{}", t.name);
            assert_eq!(
                days[1].observed_hours, days[1].producing_hours,
                "{}",
                t.name
            );

            let gappy = metered::station_days(store, &d, s2, day(2), day(2), now).await?;
            assert_eq!(
                gappy[0].energy,
                WattHours(12_000),
                "{}: kept, not lost",
                t.name
            );
            assert!(gappy[0].notes.contains(&Note::Bridged), "{}", t.name);
            let r = gappy[0].completeness.ratio().expect("daylight");
            assert!(
                r > 0.6 && r < 0.75,
                "{}: 4 of ~11.5 daylight hours missing: {r}",
                t.name
            );

            // Raw readings past retention: the rollups still give the same figures.
            store.purge_raw_before(sh(3, 3, 0, 0)).await?;
            let again = metered::station_days(store, &d, s1, day(1), day(3), now).await?;
            let wh: Vec<i64> = again.iter().map(|f| f.energy.0).collect();
            assert_eq!(wh, vec![12_000, 12_000, 12_000], "{}", t.name);

            let march: YearMonth = "2026-03".parse()?;
            let m = month_energy(store, &d, &"S1".into(), march).await?;
            assert_eq!(
                (m.energy, m.basis),
                (WattHours(36_000), EnergyBasis::Metered),
                "{}",
                t.name
            );
            let statement = "电站编号,结算月份,上网电量(kWh)\nS1,2026-03,35.2\n";
            settlement::import(store, &d, statement.as_bytes(), "march.csv", now).await?;
            let m = month_energy(store, &d, &"S1".into(), march).await?;
            assert_eq!(
                (m.energy, m.basis),
                (WattHours(35_200), EnergyBasis::Settled),
                "{}",
                t.name
            );
            assert!(matches!(
                month_energy(store, &d, &"S9".into(), march).await,
                Err(Error::UnknownStation(_))
            ));
        }
        Ok(())
    })
}

/// The simulator's plant model, read every 5 minutes with an integer counter as real registers
/// give it: daily figures equal the counter's own difference between local midnights, to the Wh, with a
/// midday gap bridged and a logger that only reports its daily-yield register.
#[test]
fn simulated_plant_days_match_the_model_exactly() -> anyhow::Result<()> {
    use crate::domain::{Metric, Readings, Sample};
    use crate::energy::counters::local_midnight;
    use crate::sim::weather::{seed_of, PlantModel};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let t = crate::store::testing::sqlite().await?;
        let d = testing::deployment();
        let s1 = d.station("S1").expect("S1");
        let model = PlantModel {
            latitude: s1.latitude,
            longitude: s1.longitude,
            dc_capacity_w: 11_000.0,
            rated_ac_w: 10_000.0,
            station_seed: seed_of("S1"),
            device_seed: seed_of("S1-INV1"),
            counter_epoch: sh(3, 1, 0, 0),
            counter_base_wh: 0.0,
            health: 1.0,
            outages: Vec::new(),
        };
        let gap = |at: DateTime<Utc>| at >= sh(3, 3, 11, 0) && at < sh(3, 3, 14, 30);
        // The counter integrates the model's power on the 5-minute grid, as the simulator does.
        let mut batch = Vec::new();
        let mut truth = std::collections::BTreeMap::new();
        let mut at = sh(3, 1, 0, 0);
        let (mut lifetime_wh, mut today_wh, mut p_prev) = (1_000_000.0, 0.0, 0.0);
        while at <= sh(3, 8, 0, 0) {
            let p = model.ac_power_w(at);
            let step = (p_prev + p) / 2.0 * 300.0 / 3600.0;
            p_prev = p;
            lifetime_wh += step;
            today_wh += step;
            if at.with_timezone(&Shanghai).time() == chrono::NaiveTime::MIN {
                today_wh = 0.0;
            }
            let counter = f64::floor(lifetime_wh);
            let today = f64::floor(today_wh);
            truth.insert(at, counter);
            for (device, lifetime) in [("S1-INV1", Some(counter)), ("S2-INV1", None)] {
                if device == "S1-INV1" && gap(at) {
                    continue;
                }
                let mut r = Readings::default();
                if let Some(c) = lifetime {
                    r.set(Metric::EnergyLifetimeWh, c);
                }
                r.set(Metric::EnergyTodayWh, today);
                r.set(Metric::AcPowerW, p);
                batch.push(Sample {
                    device: DeviceId::new(device),
                    at,
                    readings: r,
                });
            }
            at += chrono::Duration::minutes(5);
        }
        let tz = |_: &DeviceId| Shanghai;
        t.store.write_samples(&batch, &tz).await?;
        let now = sh(3, 20, 0, 0);
        let days = metered::station_days(&t.store, &d, s1, day(1), day(7), now).await?;
        let logger_days = metered::station_days(
            &t.store,
            &d,
            d.station("S2").expect("S2"),
            day(1),
            day(7),
            now,
        )
        .await?;
        for (i, (f, g)) in days.iter().zip(&logger_days).enumerate() {
            let from = local_midnight(Shanghai, day(1 + i as u32));
            let to = local_midnight(Shanghai, day(2 + i as u32));
            let expected = (truth[&to] - truth[&from]) as i64;
            assert_eq!(f.energy.0, expected, "day {}", f.first_day);
            assert_eq!(
                f.notes.contains(&Note::Bridged),
                i == 2,
                "day {}: {:?}",
                f.first_day,
                f.notes
            );
            // The daily register gives the same figure to within its own whole-Wh rounding.
            assert!(
                (g.energy.0 - expected).abs() <= 1,
                "day {}: {} vs {expected}",
                g.first_day,
                g.energy.0
            );
            assert!(g.notes.contains(&Note::DailyRegister));
        }
        assert!(
            days[0].energy.0 > 20_000,
            "a March day in Shanxi yields kWh, got {}",
            days[0].energy.0
        );
        Ok(())
    })
}

/// Three stations under the same sky: the one producing half as much has a performance index of
/// 0.5 against the county median, the others 1.0.
#[test]
fn performance_index_against_the_county_median() -> anyhow::Result<()> {
    use crate::domain::Metric;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let t = crate::store::testing::sqlite().await?;
        let d = testing::deployment();
        // The neighbours' daily figures come from the registry mirror, as in a running service.
        t.store.sync_registry(&d).await?;
        let tz = |_: &DeviceId| Shanghai;
        for dev in ["S1-INV1", "S2-INV1"] {
            t.store.write_samples(&history(dev, |_| false), &tz).await?;
        }
        let mut weak = history("S3-INV1", |_| false);
        for s in &mut weak {
            if let Some(v) = s.readings.get(Metric::EnergyLifetimeWh) {
                s.readings.set(Metric::EnergyLifetimeWh, v / 2.0);
            }
        }
        t.store.write_samples(&weak, &tz).await?;
        let now = sh(3, 10, 0, 0);
        let pi = |id: &'static str| {
            let d = &d;
            let store = &t.store;
            async move {
                let s = d.station(id).expect("station");
                let rows = report::days(store, d, s, day(2), day(2), now).await?;
                anyhow::Ok((rows[0].specific_yield, rows[0].performance_index))
            }
        };
        assert_eq!(pi("S1").await?, (Some(1.2), Some(1.0)));
        assert_eq!(pi("S3").await?, (Some(0.6), Some(0.5)));
        Ok(())
    })
}

/// Each past day as computed on its own from what the store holds now: the oracle the stored
/// daily figures must equal.
async fn recomputed(
    store: &crate::store::Store,
    d: &crate::config::Deployment,
    s: &crate::domain::Station,
    first: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<metered::Figures>> {
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        out.extend(metered::station_days(store, d, s, day, day, now).await?);
        day = day.succ_opt().expect("next day");
    }
    Ok(out)
}

/// S1 with 2 March 10:00-14:00 held back (`late`), or only those readings.
fn s1_parts() -> (Vec<crate::domain::Sample>, Vec<crate::domain::Sample>) {
    let held = |at: DateTime<Utc>| at >= sh(3, 2, 10, 0) && at < sh(3, 2, 14, 0);
    history("S1-INV1", |_| false)
        .into_iter()
        .partition(|s| !held(s.at))
}

#[test]
fn stored_daily_figures_equal_a_recomputation_from_raw_after_late_data() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for t in crate::store::testing::all(
            "stored_daily_figures_equal_a_recomputation_from_raw_after_late_data",
        )
        .await?
        {
            let store = &t.store;
            let d = testing::deployment();
            store.sync_registry(&d).await?;
            let tz = |_: &DeviceId| Shanghai;
            let (on_time, late) = s1_parts();
            store.write_samples(&on_time, &tz).await?;
            let gap = |at: DateTime<Utc>| at >= sh(3, 2, 10, 0) && at < sh(3, 2, 14, 0);
            store.write_samples(&history("S2-INV1", gap), &tz).await?;
            let now = sh(3, 10, 9, 0);
            let computed = daily::refresh(store, &d, now, 1_000).await?;
            // S1 and S2 from 1 to 9 March; S3 never reported.
            assert_eq!(computed, 18, "{}", t.name);
            assert_eq!(
                daily::refresh(store, &d, now, 1_000).await?,
                0,
                "{}",
                t.name
            );
            for id in ["S1", "S2", "S3"] {
                let s = d.station(id).expect("station");
                let stored = daily::days(store, &d, s, day(1), day(10), now).await?;
                let fresh = recomputed(store, &d, s, day(1), day(10), now).await?;
                assert_eq!(stored, fresh, "{}: {id}", t.name);
            }
            let s1 = d.station("S1").expect("S1");
            let before = daily::days(store, &d, s1, day(2), day(2), now).await?;
            assert!(before[0].notes.contains(&Note::Bridged), "{}", t.name);

            // The held-back readings of 2 March arrive a week late: that day (and only the days
            // it can change) is marked, recomputed before it is shown, and equals the oracle.
            store.write_samples(&late, &tz).await?;
            let from = day(1).and_hms_opt(0, 0, 0).expect("midnight");
            let from = Shanghai
                .from_local_datetime(&from)
                .single()
                .expect("local")
                .timestamp_millis();
            let marked: Vec<i64> = store
                .station_days(&"S1".into(), from, from + 10 * 86_400_000)
                .await?
                .iter()
                .filter(|s| s.stale > 0)
                .map(|s| (s.row.day_ms - from) / 86_400_000 + 1)
                .collect();
            assert!(marked.contains(&2), "{}: {marked:?}", t.name);
            assert!(!marked.contains(&5), "{}: {marked:?}", t.name);
            let stored = daily::days(store, &d, s1, day(1), day(10), now).await?;
            let fresh = recomputed(store, &d, s1, day(1), day(10), now).await?;
            assert_eq!(stored, fresh, "{}", t.name);
            assert!(!stored[1].notes.contains(&Note::Bridged), "{}", t.name);
            assert_eq!(stored[1].energy, WattHours(12_000), "{}", t.name);

            // Months composed from the days equal the month computed whole.
            let march: YearMonth = "2026-03".parse()?;
            for id in ["S1", "S2", "S3"] {
                let s = d.station(id).expect("station");
                let composed = daily::months(store, &d, s, march, march, now).await?;
                let whole = metered::station_months(store, &d, s, march, march, now).await?;
                assert_eq!(composed, whole, "{}: {id}", t.name);
            }
        }
        Ok(())
    })
}

/// A closed month is stored composed, served while its days are what it was composed from, and
/// composed again when late data changes one of them; it equals the month computed whole from raw.
#[test]
fn stored_months_serve_until_a_day_of_theirs_changes() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for t in
            crate::store::testing::all("stored_months_serve_until_a_day_of_theirs_changes").await?
        {
            let store = &t.store;
            let d = testing::deployment();
            store.sync_registry(&d).await?;
            let tz = |_: &DeviceId| Shanghai;
            let (on_time, late) = s1_parts();
            store.write_samples(&on_time, &tz).await?;
            // In April, March is closed.
            let now = sh(4, 2, 9, 0);
            let march: YearMonth = "2026-03".parse()?;
            daily::refresh(store, &d, now, 1_000).await?;
            daily::compose_months(store, &d, now).await?;
            let s1 = d.station("S1").expect("S1");
            let span = |s: &crate::domain::Station| {
                let b = metered::month_bounds(s, march, march);
                (b[0].timestamp_millis(), b[1].timestamp_millis())
            };
            let (from, to) = span(s1);
            let kept = store.station_months(&s1.id, from, to).await?;
            assert_eq!(kept.len(), 1, "{}", t.name);
            assert!(
                kept[0].row.notes.contains("bridged"),
                "{}: {:?}",
                t.name,
                kept[0]
            );
            for id in ["S1", "S2", "S3"] {
                let s = d.station(id).expect("station");
                let stored = daily::closed_months(store, &d, s, march, march, now).await?;
                let whole = metered::station_months(store, &d, s, march, march, now).await?;
                assert_eq!(stored, whole, "{}: {id}", t.name);
            }
            let before = daily::closed_months(store, &d, s1, march, march, now).await?;

            // The held-back readings arrive: the stored month no longer matches its days, so it
            // is composed again (and stored again) from the recomputed day.
            store.write_samples(&late, &tz).await?;
            let after = daily::closed_months(store, &d, s1, march, march, now).await?;
            let whole = metered::station_months(store, &d, s1, march, march, now).await?;
            assert_eq!(after, whole, "{}", t.name);
            assert_ne!(after, before, "{}", t.name);
            let kept = store.station_months(&s1.id, from, to).await?;
            assert!(
                !kept[0].row.notes.contains("bridged"),
                "{}: {:?}",
                t.name,
                kept[0]
            );
            let (_, now_is) = store.station_months_checked(&s1.id, from, to).await?;
            assert_eq!(
                (now_is.days, now_is.versions, now_is.stale),
                (kept[0].days, kept[0].days_version, false),
                "{}",
                t.name
            );
        }
        Ok(())
    })
}

#[test]
fn stored_daily_figures_survive_a_crash_before_the_late_data_was_merged() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sunshare.db");
        let d = testing::deployment();
        let s1 = d.station("S1").expect("S1");
        let tz = |_: &DeviceId| Shanghai;
        let now = sh(3, 10, 9, 0);
        let (on_time, late) = s1_parts();
        {
            let store = crate::store::Store::open_sqlite(&path).await?;
            store.sync_registry(&d).await?;
            store.write_samples(&on_time, &tz).await?;
            assert!(daily::refresh(&store, &d, now, 1_000).await? > 0);
            // The late readings' raw rows are committed, their rollups and marks still wait in
            // memory when the process dies.
            store.write_samples(&late, &tz).await?;
            assert!(store.pending_sizes().await.0 > 0);
        }
        let store = crate::store::Store::open_sqlite(&path).await?;
        let stored = daily::days(&store, &d, s1, day(1), day(10), now).await?;
        let fresh = recomputed(&store, &d, s1, day(1), day(10), now).await?;
        assert_eq!(stored, fresh);
        assert_eq!(stored[1].energy, WattHours(12_000));
        assert!(!stored[1].notes.contains(&Note::Bridged));
        // And a clean restart changes nothing.
        store.close().await;
        let store = crate::store::Store::open_sqlite(&path).await?;
        assert_eq!(daily::refresh(&store, &d, now, 1_000).await?, 0);
        let again = daily::days(&store, &d, s1, day(1), day(10), now).await?;
        assert_eq!(again, fresh);
        Ok(())
    })
}
