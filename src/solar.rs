//! Where the sun is: elevation and azimuth for a station's coordinates, and sunrise and sunset.
//!
//! Pure arithmetic (the NOAA solar-position equations, accurate to about a minute for sunrise and
//! sunset at Chinese latitudes). Alerts use it to tell night from an outage; the simulator uses it to
//! shape the daily curve. No I/O, no clock: callers pass the instant.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
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

/// The day of the year (1-366), for seasonal models.
pub fn day_of_year(at: DateTime<Utc>, tz: Tz) -> u32 {
    at.with_timezone(&tz).ordinal()
}
