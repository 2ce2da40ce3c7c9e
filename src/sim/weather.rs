//! A deterministic weather and plant model: how much a simulated station produces at any instant.
//!
//! The same model drives the live Modbus simulator and the history backfill, so a lifetime counter
//! read live continues exactly where the backfilled history left off. Everything is a pure function
//! of (seed, station, instant): no clock, no randomness at run time.

use crate::solar;
use chrono::{DateTime, Datelike, Duration, Utc};

/// Integration step of the energy counter.
pub const STEP_S: i64 = 300;

/// A time window in which the plant produces nothing and its devices do not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One simulated inverter's physics.
#[derive(Debug, Clone)]
pub struct PlantModel {
    pub latitude: f64,
    pub longitude: f64,
    /// DC array size in W (peak).
    pub dc_capacity_w: f64,
    /// AC nameplate: output is clipped here.
    pub rated_ac_w: f64,
    /// Distinguishes stations (same weather for devices of one station) and devices (small spread).
    pub station_seed: u64,
    pub device_seed: u64,
    /// Where the lifetime counter starts: energy before this instant is not counted.
    pub counter_epoch: DateTime<Utc>,
    /// Counter value at `counter_epoch` (an inverter that was already running).
    pub counter_base_wh: f64,
    /// A persistent loss factor (soiling, a broken string): 1.0 is a healthy plant.
    pub health: f64,
    pub outages: Vec<Outage>,
}

/// SplitMix64: a tiny, well-mixed hash for deterministic pseudo-random weather.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// Stable 64-bit seed from a name (FNV-1a).
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Fraction of the clear-sky peak that reaches a tilted array for a solar elevation.
pub fn clear_sky_fraction(elevation_deg: f64) -> f64 {
    if elevation_deg <= 0.0 {
        return 0.0;
    }
    let s = elevation_deg.to_radians().sin();
    // Air-mass attenuation: low sun loses more to the atmosphere.
    let air_mass = 1.0 / (s + 0.50572 * (elevation_deg + 6.07995).powf(-1.6364));
    let transmitted = 0.7_f64.powf(air_mass.powf(0.678));
    // A south-facing array tilted near latitude sees more than a horizontal surface at low sun.
    (s.powf(0.55) * transmitted / 0.7).min(1.05)
}

/// The sky over a station on a day and hour: 1.0 clear, about 0.2 heavy overcast.
pub fn cloud_factor(station_seed: u64, at: DateTime<Utc>) -> f64 {
    let day = at.timestamp().div_euclid(86_400) as u64;
    let day_roll = unit(station_seed ^ day.wrapping_mul(0x5851_F42D_4C95_7F2D));
    // Northern China: mostly sunny winters, a wet summer.
    let summer = matches!(at.month(), 6..=8);
    let (overcast_p, broken_p) = if summer { (0.22, 0.30) } else { (0.12, 0.25) };
    if day_roll < overcast_p {
        0.15 + 0.15 * unit(station_seed ^ day ^ 0xA5A5)
    } else if day_roll < overcast_p + broken_p {
        // Broken clouds: each 10-minute slot is either in sun or in shade.
        let slot = at.timestamp().div_euclid(600) as u64;
        if unit(station_seed ^ slot.wrapping_mul(0x2545_F491_4F6C_DD1D)) < 0.45 {
            0.35
        } else {
            1.0
        }
    } else {
        0.93 + 0.07 * unit(station_seed ^ day ^ 0x5A5A)
    }
}

impl PlantModel {
    pub fn in_outage(&self, at: DateTime<Utc>) -> bool {
        self.outages.iter().any(|o| o.from <= at && at < o.to)
    }

    /// AC output at an instant, in W.
    pub fn ac_power_w(&self, at: DateTime<Utc>) -> f64 {
        if self.in_outage(at) {
            return 0.0;
        }
        let sun = solar::position(self.latitude, self.longitude, at);
        let irradiance =
            clear_sky_fraction(sun.elevation_deg) * cloud_factor(self.station_seed, at);
        if irradiance <= 0.0 {
            return 0.0;
        }
        let spread = 0.97 + 0.03 * unit(self.device_seed);
        let dc = self.dc_capacity_w * irradiance * spread * self.health * 0.86;
        // Inverters need a little power to wake, and clip at nameplate.
        if dc < self.rated_ac_w * 0.005 {
            0.0
        } else {
            (dc * 0.975).min(self.rated_ac_w)
        }
    }

    /// The lifetime counter at an instant, in Wh: trapezoidal integration on a fixed 5-minute grid
    /// from the epoch, so the value at any instant is the same whoever asks.
    pub fn lifetime_wh(&self, at: DateTime<Utc>) -> f64 {
        if at <= self.counter_epoch {
            return self.counter_base_wh;
        }
        let start = self.counter_epoch.timestamp();
        let end = at.timestamp();
        let mut total = 0.0;
        let mut t = start;
        let mut p_prev = self.ac_power_w(self.counter_epoch);
        while t < end {
            let next = (t + STEP_S).min(end);
            let p_next = self.ac_power_w(DateTime::from_timestamp(next, 0).unwrap_or(at));
            total += (p_prev + p_next) / 2.0 * (next - t) as f64 / 3600.0;
            p_prev = p_next;
            t = next;
        }
        self.counter_base_wh + total
    }

    /// Energy between two instants, in Wh (the counter difference).
    pub fn energy_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        self.lifetime_wh(to) - self.lifetime_wh(from)
    }

    /// An inverter's own "today" counter: energy since the local midnight (UTC+8 for China).
    pub fn today_wh(&self, at: DateTime<Utc>, utc_offset_s: i64) -> f64 {
        let local = at.timestamp() + utc_offset_s;
        let midnight = local - local.rem_euclid(86_400) - utc_offset_s;
        let from = DateTime::from_timestamp(midnight, 0).unwrap_or(at);
        self.energy_between(from.max(self.counter_epoch), at)
    }
}

/// A year of specific yield for sanity checks: kWh per kWp.
pub fn annual_yield_kwh_per_kwp(model: &PlantModel, year_start: DateTime<Utc>) -> f64 {
    let end = year_start + Duration::days(365);
    model.energy_between(year_start, end) / 1000.0 / (model.dc_capacity_w / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn plant() -> PlantModel {
        PlantModel {
            latitude: 37.87,
            longitude: 112.55,
            dc_capacity_w: 60_000.0,
            rated_ac_w: 50_000.0,
            station_seed: seed_of("S1"),
            device_seed: seed_of("S1-INV1"),
            counter_epoch: Utc
                .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                .single()
                .expect("date"),
            counter_base_wh: 1_000_000.0,
            health: 1.0,
            outages: vec![],
        }
    }

    #[test]
    fn nights_are_dark_and_noons_are_bright() {
        let p = plant();
        // 04:00 local (20:00 UTC the day before) is night; 12:30 local is near solar noon.
        let night = Utc
            .with_ymd_and_hms(2025, 6, 10, 20, 0, 0)
            .single()
            .expect("date");
        assert_eq!(p.ac_power_w(night), 0.0);
        let noons: Vec<f64> = (1..=20)
            .map(|d| {
                let at = Utc
                    .with_ymd_and_hms(2025, 5, d, 4, 30, 0)
                    .single()
                    .expect("date");
                p.ac_power_w(at)
            })
            .collect();
        let best = noons.iter().copied().fold(0.0, f64::max);
        assert!(
            best > 30_000.0,
            "a clear noon should produce well, got {best}"
        );
        assert!(best <= 50_000.0, "output clips at nameplate, got {best}");
    }

    #[test]
    fn counter_only_grows_and_yield_is_plausible() {
        let p = plant();
        let a = Utc
            .with_ymd_and_hms(2025, 3, 1, 0, 0, 0)
            .single()
            .expect("date");
        let b = a + Duration::hours(37);
        assert!(p.lifetime_wh(b) >= p.lifetime_wh(a));
        assert!(p.lifetime_wh(a) > p.counter_base_wh);
        let y = annual_yield_kwh_per_kwp(&p, p.counter_epoch);
        assert!((1000.0..1700.0).contains(&y), "annual yield {y} kWh/kWp");
    }

    #[test]
    fn outage_stops_production() {
        let mut p = plant();
        let noon = Utc
            .with_ymd_and_hms(2025, 5, 2, 4, 30, 0)
            .single()
            .expect("date");
        p.outages.push(Outage {
            from: noon - Duration::hours(1),
            to: noon + Duration::hours(1),
        });
        assert_eq!(p.ac_power_w(noon), 0.0);
    }
}
