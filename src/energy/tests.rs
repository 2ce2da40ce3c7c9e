//! Energy read back from the store on every backend: raw readings, rollups after raw retention,
//! gaps, and the settled-or-metered figure the allocator takes.

use super::testing::{history, sh};
use super::*;
use crate::domain::{DeviceId, WattHours};
use crate::energy::counters::Note;
use chrono::{DateTime, NaiveDate};
use chrono_tz::Asia::Shanghai;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).expect("day")
}

#[test]
fn store_figures_days_months_and_the_settled_switch() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        for t in crate::store::testing::all("store_figures_days_months_and_the_settled_switch").await? {
            let store = &t.store;
            let d = testing::deployment();
            let tz = |_: &DeviceId| Shanghai;
            store.write_samples(&history("S1-INV1", |_| false), &tz).await?;
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
            assert_eq!(days[1].observed_hours, days[1].producing_hours, "{}", t.name);

            let gappy = metered::station_days(store, &d, s2, day(2), day(2), now).await?;
            assert_eq!(gappy[0].energy, WattHours(12_000), "{}: kept, not lost", t.name);
            assert!(gappy[0].notes.contains(&Note::Bridged), "{}", t.name);
            let r = gappy[0].completeness.ratio().expect("daylight");
            assert!(r > 0.6 && r < 0.75, "{}: 4 of ~11.5 daylight hours missing: {r}", t.name);

            // Raw readings past retention: the rollups still give the same figures.
            store.purge_raw_before(sh(3, 3, 0, 0)).await?;
            let again = metered::station_days(store, &d, s1, day(1), day(3), now).await?;
            let wh: Vec<i64> = again.iter().map(|f| f.energy.0).collect();
            assert_eq!(wh, vec![12_000, 12_000, 12_000], "{}", t.name);

            let march: YearMonth = "2026-03".parse()?;
            let m = month_energy(store, &d, &"S1".into(), march).await?;
            assert_eq!((m.energy, m.basis), (WattHours(36_000), EnergyBasis::Metered), "{}", t.name);
            let statement = "电站编号,结算月份,上网电量(kWh)\nS1,2026-03,35.2\n";
            settlement::import(store, &d, statement.as_bytes(), "march.csv", now).await?;
            let m = month_energy(store, &d, &"S1".into(), march).await?;
            assert_eq!((m.energy, m.basis), (WattHours(35_200), EnergyBasis::Settled), "{}", t.name);
            assert!(matches!(
                month_energy(store, &d, &"S9".into(), march).await,
                Err(Error::UnknownStation(_))
            ));
        }
        Ok(())
    })
}
