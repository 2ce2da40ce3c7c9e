//! The indicators the county energy office reads (pure).
//!
//! Specific yield and equivalent full-load hours (等效利用小时数) are the same ratio, energy over
//! installed capacity, read in two units (kWh/kWp and hours). Availability counts only hours with
//! the sun well up, so nights never lower it. Village stations rarely measure irradiance, so the
//! performance index compares a station with the median of its county on the same day: same
//! weather, so a station well below its neighbours has a problem of its own.

use crate::domain::WattHours;

/// kWh per installed kWp; `None` for a station without capacity.
pub fn specific_yield(energy: WattHours, capacity_kwp: f64) -> Option<f64> {
    (capacity_kwp > 0.0).then(|| energy.kwh() / capacity_kwp)
}

/// 等效利用小时数: the hours the station would need at full capacity to produce `energy`.
pub fn full_load_hours(energy: WattHours, capacity_kwp: f64) -> Option<f64> {
    specific_yield(energy, capacity_kwp)
}

/// Share of observed daylight hours with output; `None` when no daylight hour was observed.
pub fn availability(observed_hours: i64, producing_hours: i64) -> Option<f64> {
    (observed_hours > 0).then(|| producing_hours.min(observed_hours) as f64 / observed_hours as f64)
}

/// The median of finite values (mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// A station's specific yield over the county median of the same day. Needs at least three
/// stations with usable data (the station itself included) and a median above zero.
pub fn performance_index(station_yield: f64, county_yields: &[f64]) -> Option<f64> {
    if county_yields.iter().filter(|y| y.is_finite()).count() < 3 {
        return None;
    }
    let m = median(county_yields)?;
    (m > 0.0).then(|| station_yield / m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yield_and_full_load_hours() {
        // 300 kWp producing 1,350 kWh in a day: 4.5 kWh/kWp, 4.5 equivalent full-load hours.
        assert_eq!(specific_yield(WattHours(1_350_000), 300.0), Some(4.5));
        assert_eq!(full_load_hours(WattHours(1_350_000), 300.0), Some(4.5));
        assert_eq!(specific_yield(WattHours(1), 0.0), None);
    }

    #[test]
    fn availability_ignores_unobserved_hours() {
        assert_eq!(availability(10, 9), Some(0.9));
        assert_eq!(availability(0, 0), None);
    }

    #[test]
    fn performance_index_against_the_county_median() {
        assert_eq!(median(&[4.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(
            performance_index(2.4, &[2.4, 4.0, 4.2, 3.8]),
            Some(2.4 / 3.9)
        );
        assert_eq!(performance_index(2.4, &[2.4, 4.0]), None);
        assert_eq!(performance_index(0.0, &[0.0, 0.0, 0.0]), None);
    }
}
