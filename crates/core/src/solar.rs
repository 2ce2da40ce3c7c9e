//! Where the sun is: elevation and azimuth for a station's coordinates, and sunrise and sunset.
//!
//! Pure arithmetic (the NOAA solar-position equations, accurate to about a minute for sunrise and
//! sunset at Chinese latitudes). Alerts use it to tell night from an outage; the simulator uses it to
//! shape the daily curve. No I/O, no clock: callers pass the instant.

use chrono::{DateTime, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The sun seen from a point on Earth at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SunPosition {
    /// Degrees above the horizon (negative below), refraction included.
    pub elevation_deg: f64,
    /// Degrees clockwise from north.
    pub azimuth_deg: f64,
}

/// Sunrise and sunset of one local day, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SunTimes {
    Normal {
        sunrise: DateTime<Utc>,
        sunset: DateTime<Utc>,
    },
    PolarDay,
    PolarNight,
}

/// Julian centuries since J2000.0 for an instant.
fn julian_century(at: DateTime<Utc>) -> f64 {
    let jd = at.timestamp() as f64 / 86_400.0
        + 2_440_587.5
        + f64::from(at.timestamp_subsec_millis()) / 86_400_000.0;
    (jd - 2_451_545.0) / 36_525.0
}

/// Solar declination (radians) and the equation of time (minutes) at `t` Julian centuries.
fn declination_and_eot(t: f64) -> (f64, f64) {
    let l0 = (280.466_46 + t * (36_000.769_83 + t * 0.000_303_2)).rem_euclid(360.0);
    let m = 357.529_11 + t * (35_999.050_29 - 0.000_153_7 * t);
    let e = 0.016_708_634 - t * (0.000_042_037 + 0.000_000_126_7 * t);
    let m_rad = m.to_radians();
    let c = m_rad.sin() * (1.914_602 - t * (0.004_817 + 0.000_014 * t))
        + (2.0 * m_rad).sin() * (0.019_993 - 0.000_101 * t)
        + (3.0 * m_rad).sin() * 0.000_289;
    let true_long = l0 + c;
    let omega = 125.04 - 1_934.136 * t;
    let app_long = true_long - 0.005_69 - 0.004_78 * omega.to_radians().sin();
    let mean_obliq =
        23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.000_59 - t * 0.001_813))) / 60.0) / 60.0;
    let obliq = mean_obliq + 0.002_56 * omega.to_radians().cos();
    let decl = (obliq.to_radians().sin() * app_long.to_radians().sin()).asin();
    let y = (obliq.to_radians() / 2.0).tan().powi(2);
    let l0r = l0.to_radians();
    let eot = 4.0
        * (y * (2.0 * l0r).sin() - 2.0 * e * m_rad.sin()
            + 4.0 * e * y * m_rad.sin() * (2.0 * l0r).cos()
            - 0.5 * y * y * (4.0 * l0r).sin()
            - 1.25 * e * e * (2.0 * m_rad).sin())
        .to_degrees();
    (decl, eot)
}

/// The sun's position at `at` seen from `latitude`, `longitude` (degrees, east positive).
pub fn position(latitude: f64, longitude: f64, at: DateTime<Utc>) -> SunPosition {
    let t = julian_century(at);
    let (decl, eot) = declination_and_eot(t);
    let minutes = f64::from(at.hour() * 60 + at.minute()) + f64::from(at.second()) / 60.0;
    let true_solar = (minutes + eot + 4.0 * longitude).rem_euclid(1440.0);
    let hour_angle = (true_solar / 4.0 - 180.0).to_radians();
    let lat = latitude.to_radians();
    let cos_zenith =
        (lat.sin() * decl.sin() + lat.cos() * decl.cos() * hour_angle.cos()).clamp(-1.0, 1.0);
    let zenith = cos_zenith.acos();
    let elevation = 90.0 - zenith.to_degrees();
    let azimuth = {
        let denom = lat.cos() * zenith.sin();
        if denom.abs() < 1e-9 {
            180.0
        } else {
            let cos_az = ((lat.sin() * cos_zenith) - decl.sin()) / denom;
            let az = cos_az.clamp(-1.0, 1.0).acos().to_degrees();
            if hour_angle > 0.0 {
                (az + 180.0).rem_euclid(360.0)
            } else {
                (540.0 - az).rem_euclid(360.0)
            }
        }
    };
    SunPosition {
        elevation_deg: elevation + refraction(elevation),
        azimuth_deg: azimuth,
    }
}

/// Atmospheric refraction in degrees for a geometric elevation (NOAA approximation).
fn refraction(elev: f64) -> f64 {
    if elev > 85.0 {
        return 0.0;
    }
    let te = elev.to_radians().tan();
    let arcsec = if elev > 5.0 {
        58.1 / te - 0.07 / te.powi(3) + 0.000_086 / te.powi(5)
    } else if elev > -0.575 {
        1735.0 + elev * (-518.2 + elev * (103.4 + elev * (-12.79 + elev * 0.711)))
    } else {
        -20.772 / te
    };
    arcsec / 3600.0
}

/// Sunrise and sunset (upper limb at the horizon with standard refraction) for the local `day`.
pub fn sun_times(latitude: f64, longitude: f64, day: NaiveDate, tz: Tz) -> SunTimes {
    // Solve around local noon with two refinements: the declination barely moves within a day.
    let noon_local = day.and_hms_opt(12, 0, 0).unwrap_or_default();
    let noon = tz.from_local_datetime(&noon_local).earliest().map_or_else(
        || Utc.from_utc_datetime(&noon_local),
        |d| d.with_timezone(&Utc),
    );
    let lat = latitude.to_radians();
    let event = |rising: bool| -> Result<DateTime<Utc>, bool> {
        let mut guess = noon;
        for _ in 0..3 {
            let (decl, eot) = declination_and_eot(julian_century(guess));
            let cos_ha =
                (90.833_f64.to_radians().cos() - lat.sin() * decl.sin()) / (lat.cos() * decl.cos());
            if cos_ha > 1.0 {
                return Err(false);
            }
            if cos_ha < -1.0 {
                return Err(true);
            }
            let ha = cos_ha.acos().to_degrees();
            let signed = if rising { ha } else { -ha };
            let minutes_utc = 720.0 - 4.0 * (longitude + signed) - eot;
            let midnight_utc =
                Utc.from_utc_datetime(&guess.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
            let mut at =
                midnight_utc + chrono::Duration::milliseconds((minutes_utc * 60_000.0) as i64);
            // Keep the event on the requested local day.
            let local = at.with_timezone(&tz).date_naive();
            if local < day {
                at += chrono::Duration::days(1);
            } else if local > day {
                at -= chrono::Duration::days(1);
            }
            guess = at;
        }
        Ok(guess)
    };
    match (event(true), event(false)) {
        (Ok(sunrise), Ok(sunset)) => SunTimes::Normal { sunrise, sunset },
        (Err(true), _) | (_, Err(true)) => SunTimes::PolarDay,
        _ => SunTimes::PolarNight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use chrono::{Duration, NaiveTime};

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn times(lat: f64, lon: f64, d: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        match sun_times(lat, lon, d, SHANGHAI) {
            SunTimes::Normal { sunrise, sunset } => (sunrise, sunset),
            other => panic!("expected a sunrise and a sunset, got {other:?}"),
        }
    }

    /// Asserts a computed instant is within `tol_s` of a Beijing-time clock reading on `d`.
    fn near(at: DateTime<Utc>, d: NaiveDate, hms: (u32, u32, u32), tol_s: i64, what: &str) {
        let local = at.with_timezone(&SHANGHAI);
        let expected = SHANGHAI
            .from_local_datetime(
                &d.and_time(NaiveTime::from_hms_opt(hms.0, hms.1, hms.2).expect("valid time")),
            )
            .single()
            .expect("unambiguous");
        let off = (local - expected).num_seconds();
        assert!(
            off.abs() <= tol_s,
            "{what}: computed {local}, published {expected}, off by {off} s"
        );
    }

    // Published values (Beijing time, sunrise/sunset = upper limb on the horizon with standard
    // refraction). Tolerance: 2 minutes, plus 1 minute where the source rounds to the minute.
    //
    // Beijing (39.904 N, 116.407 E):
    //   2026-07-01 04:49:23 / 19:46:55, 2026-07-15 04:58:09 / 19:42:13
    //     (vercalendario.info, "Sun in China, July 2026" table for Beijing);
    //   2021-12-21 07:32:25 / 16:52:46 (dailyq-a.com, "sunrise and sunset times of the 2021
    //     winter solstice", Beijing time).
    // Guangzhou (23.129 N, 113.264 E): 2021-12-21 07:04 / 17:46 (Guangzhou Wuyang Planetarium, as
    //     reported by laitimes.com for the 2021 winter solstice).
    // Summer-solstice day lengths (dailyq-a.com, "sunrise and sunset of the summer solstice"):
    //     Harbin 15 h 43 min, Beijing 15 h 01 min.
    // Lhasa: its clock offset from the 120 E meridian of Beijing time is 1 h 55 min 34 s
    //     (lfasc.com, "Why does it get dark so late in Tibet?").

    #[test]
    fn beijing_matches_published_times() {
        let (lat, lon) = (39.904, 116.407);
        for (d, rise, set) in [
            (day(2026, 7, 1), (4, 49, 23), (19, 46, 55)),
            (day(2026, 7, 15), (4, 58, 9), (19, 42, 13)),
            (day(2021, 12, 21), (7, 32, 25), (16, 52, 46)),
        ] {
            let (sunrise, sunset) = times(lat, lon, d);
            near(sunrise, d, rise, 120, &format!("Beijing sunrise {d}"));
            near(sunset, d, set, 120, &format!("Beijing sunset {d}"));
        }
    }

    #[test]
    fn guangzhou_winter_solstice_matches_the_planetarium() {
        let d = day(2021, 12, 21);
        let (sunrise, sunset) = times(23.129, 113.264, d);
        near(sunrise, d, (7, 4, 0), 180, "Guangzhou sunrise");
        near(sunset, d, (17, 46, 0), 180, "Guangzhou sunset");
    }

    #[test]
    fn summer_solstice_day_lengths_of_harbin_and_beijing() {
        let d = day(2016, 6, 21);
        for (name, lat, lon, minutes) in [
            ("Harbin", 45.803, 126.535, 15 * 60 + 43),
            ("Beijing", 39.904, 116.407, 15 * 60 + 1),
        ] {
            let (sunrise, sunset) = times(lat, lon, d);
            let len = (sunset - sunrise).num_seconds();
            assert!(
                (len - minutes * 60).abs() <= 180,
                "{name}: computed {len} s of day, published {minutes} min"
            );
        }
    }

    #[test]
    fn lhasa_noon_lags_the_beijing_time_meridian_by_its_longitude() {
        // Lhasa (29.65 N, 91.11 E) against a point on its latitude at 120 E, at the March equinox
        // and the December solstice: solar noon is the midpoint of sunrise and sunset.
        for d in [day(2026, 3, 20), day(2026, 12, 21)] {
            let noon = |lon: f64| {
                let (r, s) = times(29.65, lon, d);
                r + (s - r) / 2
            };
            let lag = (noon(91.11) - noon(120.0)).num_seconds();
            let published = 3600 + 55 * 60 + 34;
            assert!((lag - published).abs() <= 60, "{d}: lag {lag} s");
            // And the Lhasa day at the equinox is a little over 12 hours (refraction, solar disc).
            if d.month() == 3 {
                let (r, s) = times(29.65, 91.11, d);
                let len = (s - r).num_minutes();
                assert!((725..=732).contains(&len), "equinox day length {len} min");
            }
        }
    }

    #[test]
    fn taiyuan_noon_elevation_and_night() {
        // Taiyuan (37.87 N, 112.55 E). At the June solstice the noon sun stands at
        // 90 - latitude + obliquity = 75.57 degrees (plus a few arc-seconds of refraction).
        let (lat, lon) = (37.87, 112.55);
        let d = day(2026, 6, 21);
        let (r, s) = times(lat, lon, d);
        let noon = r + (s - r) / 2;
        let p = position(lat, lon, noon);
        assert!((p.elevation_deg - 75.57).abs() < 0.15, "{p:?}");
        assert!((p.azimuth_deg - 180.0).abs() < 2.0, "{p:?}");
        // Local midnight is deep night; at the computed sunrise the sun's centre is ~0.83 degrees
        // below the geometric horizon, i.e. just under zero once refraction lifts it.
        let midnight = SHANGHAI
            .with_ymd_and_hms(2026, 6, 21, 0, 0, 0)
            .single()
            .expect("valid")
            .with_timezone(&Utc);
        assert!(position(lat, lon, midnight).elevation_deg < -20.0);
        let at_rise = position(lat, lon, r).elevation_deg;
        assert!((-0.6..0.0).contains(&at_rise), "{at_rise}");
        // Morning azimuth is east of south, evening west of south.
        assert!(position(lat, lon, r + Duration::hours(2)).azimuth_deg < 120.0);
        assert!(position(lat, lon, s - Duration::hours(2)).azimuth_deg > 240.0);
    }

    #[test]
    fn polar_day_and_night_are_reported() {
        assert_eq!(
            sun_times(78.2, 15.6, day(2026, 6, 21), chrono_tz::Europe::Oslo),
            SunTimes::PolarDay
        );
        assert_eq!(
            sun_times(78.2, 15.6, day(2026, 12, 21), chrono_tz::Europe::Oslo),
            SunTimes::PolarNight
        );
    }
}
