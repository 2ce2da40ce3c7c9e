//! Backfills a year of plausible history for the demo fleet through the ingest door: diurnal and
//! seasonal curves, cloudy days, inverters asleep every night, and the outage station's gap.

use super::fleet::DemoFleet;
use super::weather::{PlantModel, STEP_S};
use crate::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use crate::ingest::{Closed, IngestHandle};
use crate::solar;
use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Samples are kept every 30 minutes for old history and every 5 minutes for the last days.
const OLD_EVERY_STEPS: i64 = 6;
const RECENT_DAYS: i64 = 30;
const CHUNK: usize = 2_000;

/// Progress shared with the web page.
#[derive(Debug, Default)]
pub struct Progress {
    pub done_devices: AtomicU64,
    pub total_devices: AtomicU64,
    pub samples: AtomicU64,
    /// The history is written and the demo's grid settlement imported.
    pub settled: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub fn fraction(&self) -> f64 {
        let total = self.total_devices.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        self.done_devices.load(Ordering::Relaxed) as f64 / total as f64
    }
}

impl crate::http::BackfillStatus for Progress {
    fn fraction(&self) -> f64 {
        Progress::fraction(self)
    }

    fn settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }
}

/// What one device reported at one grid instant, or `None` while it sleeps or is unreachable.
pub fn reading_at(
    plant: &PlantModel,
    at: DateTime<Utc>,
    lifetime_wh: f64,
    today_wh: f64,
) -> Option<Readings> {
    if plant.in_outage(at) {
        return None;
    }
    let sun = solar::position(plant.latitude, plant.longitude, at);
    if sun.elevation_deg < -2.0 {
        return None;
    }
    let power = plant.ac_power_w(at);
    let mut r = Readings::default();
    r.set(Metric::AcPowerW, power.round());
    r.set(Metric::DcPowerW, (power / 0.975).round());
    // Inverters count in 0.01 kWh.
    r.set(
        Metric::EnergyLifetimeWh,
        (lifetime_wh / 10.0).floor() * 10.0,
    );
    r.set(Metric::EnergyTodayWh, (today_wh / 10.0).floor() * 10.0);
    r.set(Metric::FrequencyHz, 50.0);
    let load = power / plant.rated_ac_w.max(1.0);
    r.set(
        Metric::TemperatureC,
        ((8.0 + 20.0 * sun.elevation_deg.max(0.0).to_radians().sin() + 18.0 * load) * 10.0).round()
            / 10.0,
    );
    r.state = Some(if power > 0.0 {
        DeviceState::Producing
    } else {
        DeviceState::StandbyNight
    });
    Some(r)
}

/// Walks one device's counter from the start of history to `until`, emitting samples.
fn device_history(
    id: &DeviceId,
    plant: &PlantModel,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    utc_offset_s: i64,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let recent = until - Duration::days(RECENT_DAYS);
    let mut t = plant.counter_epoch;
    let mut lifetime = plant.counter_base_wh;
    let mut p_prev = plant.ac_power_w(t);
    let mut day_key = (t.timestamp() + utc_offset_s).div_euclid(86_400);
    let mut day_start_counter = lifetime;
    let mut step: i64 = 0;
    while t < until {
        let next = t + Duration::seconds(STEP_S);
        let p_next = plant.ac_power_w(next);
        lifetime += (p_prev + p_next) / 2.0 * STEP_S as f64 / 3600.0;
        p_prev = p_next;
        t = next;
        step += 1;
        let key = (t.timestamp() + utc_offset_s).div_euclid(86_400);
        if key != day_key {
            day_key = key;
            day_start_counter = lifetime;
        }
        if t < from || t > until {
            continue;
        }
        let every = if t >= recent { 1 } else { OLD_EVERY_STEPS };
        if step % every != 0 {
            continue;
        }
        if let Some(readings) = reading_at(plant, t, lifetime, lifetime - day_start_counter) {
            out.push(Sample {
                device: id.clone(),
                at: t,
                readings,
            });
        }
    }
    out
}

/// Submits a year of history for every device of the fleet, device by device.
pub async fn backfill(
    fleet: &DemoFleet,
    until: DateTime<Utc>,
    ingest: &IngestHandle,
    progress: Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<(), Closed> {
    progress
        .total_devices
        .store(fleet.plants.len() as u64, Ordering::Relaxed);
    let mut ids: Vec<_> = fleet.plants.keys().cloned().collect();
    ids.sort();
    for id in ids {
        if cancel.is_cancelled() {
            break;
        }
        let Some(plant) = fleet.plants.get(&id).cloned() else {
            continue;
        };
        let start = fleet.history_start;
        let device = id.clone();
        let samples = tokio::task::spawn_blocking(move || {
            device_history(&device, &plant, start, until, 8 * 3600)
        })
        .await
        .unwrap_or_default();
        progress
            .samples
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        let mut rest = samples;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(CHUNK));
            ingest.submit(rest).await?;
            rest = tail;
        }
        progress.done_devices.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::weather::seed_of;
    use chrono::TimeZone;

    #[test]
    fn history_matches_the_live_counter_and_sleeps_at_night() {
        let epoch = Utc
            .with_ymd_and_hms(2025, 6, 1, 0, 0, 0)
            .single()
            .expect("date");
        let plant = PlantModel {
            latitude: 38.28,
            longitude: 111.67,
            dc_capacity_w: 100_000.0,
            rated_ac_w: 100_000.0,
            station_seed: seed_of("S"),
            device_seed: seed_of("D"),
            counter_epoch: epoch,
            counter_base_wh: 5_000_000.0,
            health: 1.0,
            outages: vec![],
        };
        let until = epoch + Duration::days(3);
        let samples = device_history(&DeviceId::new("D"), &plant, epoch, until, 8 * 3600);
        assert!(!samples.is_empty());
        let last = samples.last().expect("samples");
        let live = plant.lifetime_wh(last.at);
        let reported = last
            .readings
            .get(Metric::EnergyLifetimeWh)
            .expect("counter");
        assert!(
            (live - reported).abs() < 10.0,
            "history {reported} vs live {live}"
        );
        // Nothing between 23:00 and 04:00 local (15:00-20:00 UTC).
        assert!(samples.iter().all(|s| {
            let h = s.at.format("%H").to_string();
            !["15", "16", "17", "18", "19"].contains(&h.as_str())
        }));
        let mut prev = 0.0;
        for s in &samples {
            let c = s.readings.get(Metric::EnergyLifetimeWh).expect("counter");
            assert!(c >= prev, "counter went back at {}", s.at);
            prev = c;
        }
    }
}
