//! Figures for the charts read from the store.

use crate::domain::{Device, Station};
use crate::store::{Result, Store};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// The finest rollup the store keeps (see `store::samples::PERIODS`), in seconds.
const PERIOD_S: i64 = 300;

/// A station's AC power through its local `day`: for every 5-minute rollup bucket in which at
/// least one of its devices reported power, the bucket's start and the sum over those devices of
/// their average power, in kW, oldest first. `devices` may be the whole deployment's: only the
/// station's own are read. A device silent in a bucket adds nothing to it (the sum is what was
/// metered, not an estimate).
pub async fn station_power_series(
    store: &Store,
    station: &Station,
    devices: &[Device],
    day: NaiveDate,
) -> Result<Vec<(DateTime<Utc>, f64)>> {
    let (from, to) = super::day_span(station, day);
    let mut sums: BTreeMap<DateTime<Utc>, f64> = BTreeMap::new();
    for device in devices.iter().filter(|d| d.station == station.id) {
        for row in store.rollups(&device.id, PERIOD_S, from, to).await? {
            if let Some(watts) = row.power_avg_w {
                *sums.entry(row.bucket).or_default() += watts / 1000.0;
            }
        }
    }
    Ok(sums.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, Metric, Readings, Sample};
    use crate::energy::testing::{deployment, sh};
    use chrono::Duration;
    use chrono_tz::Asia::Shanghai;

    fn sample(device: &str, at: DateTime<Utc>, watts: f64) -> Sample {
        let mut readings = Readings::default();
        readings.set(Metric::AcPowerW, watts);
        Sample {
            device: DeviceId::new(device),
            at,
            readings,
        }
    }

    #[test]
    fn sums_the_stations_devices_per_bucket_within_its_local_day() -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            for t in crate::store::testing::all(
                "sums_the_stations_devices_per_bucket_within_its_local_day",
            )
            .await?
            {
                let d = deployment();
                let s1 = d.station("S1").expect("S1");
                // A second inverter at S1, beside S2's own.
                let mut second = d
                    .devices
                    .iter()
                    .find(|x| x.id.as_str() == "S1-INV1")
                    .expect("S1-INV1")
                    .clone();
                second.id = DeviceId::new("S1-INV2");
                let mut devices = d.devices.clone();
                devices.push(second);

                let noon = sh(3, 2, 12, 0);
                let mut batch = vec![
                    // Two readings in the 12:00 bucket average 2 kW; the other inverter adds 3 kW.
                    sample("S1-INV1", noon, 1500.0),
                    sample("S1-INV1", noon + Duration::minutes(2), 2500.0),
                    sample("S1-INV2", noon + Duration::minutes(1), 3000.0),
                    // 12:05: only the first inverter.
                    sample("S1-INV1", noon + Duration::minutes(5), 4000.0),
                    // Another station's inverter is not S1's power.
                    sample("S2-INV1", noon, 9000.0),
                    // 23:59 local on 1 March and 00:00 local on 3 March are other days.
                    sample("S1-INV1", sh(3, 1, 23, 59), 111.0),
                    sample("S1-INV1", sh(3, 3, 0, 0), 222.0),
                    // The first bucket of the day.
                    sample("S1-INV2", sh(3, 2, 0, 0), 0.0),
                ];
                batch.sort_by_key(|s| s.at);
                let tz = |_: &DeviceId| Shanghai;
                t.store.write_samples(&batch, &tz).await?;

                let day = NaiveDate::from_ymd_opt(2026, 3, 2).expect("day");
                let series = station_power_series(&t.store, s1, &devices, day).await?;
                let expected = vec![
                    (sh(3, 2, 0, 0), 0.0),
                    (noon, 5.0),
                    (noon + Duration::minutes(5), 4.0),
                ];
                assert_eq!(series.len(), expected.len(), "{}: {series:?}", t.name);
                for ((at, kw), (want_at, want_kw)) in series.iter().zip(&expected) {
                    assert_eq!(at, want_at, "{}: {series:?}", t.name);
                    assert!((kw - want_kw).abs() < 1e-9, "{}: {series:?}", t.name);
                }
                let before =
                    station_power_series(&t.store, s1, &devices, day.pred_opt().expect("day"))
                        .await?;
                assert_eq!(
                    before.len(),
                    1,
                    "{}: only 23:59 on 1 March: {before:?}",
                    t.name
                );
            }
            Ok(())
        })
    }
}
