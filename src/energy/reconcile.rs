//! Reconciliation: the metered month against the grid settlement, and the likely reason when they
//! differ by more than the threshold (pure).
//!
//! Inverter counters measure AC output before the station's cables and transformer, so a metered
//! figure a little above the settlement is normal; the default threshold (3%) leaves room for
//! those losses.

use super::metered::Figures;
use crate::domain::{DeviceId, StationId, WattHours, YearMonth};
use chrono::{DateTime, Utc};

/// Completeness below this makes a data gap a plausible cause.
const GAP_COMPLETENESS: f64 = 0.95;

/// Why metered and settled energy may differ, with the evidence found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// Not one reading arrived for the month: nothing was metered.
    NoReadings,
    /// Readings are missing: energy produced while unobserved is only partly in the metered figure.
    DataGap { completeness: f64 },
    /// A counter reset or was replaced during the month.
    MeterReplaced {
        resets: Vec<(DeviceId, DateTime<Utc>)>,
    },
    /// Devices reported derating or ran at their limit: output was curtailed.
    Curtailment {
        derated_readings: i64,
        clipped_hours: i64,
    },
    /// Nothing in the data explains the difference.
    Unexplained { metered_above: bool },
}

impl Cause {
    pub fn code(&self) -> &'static str {
        match self {
            Cause::NoReadings => "no_readings",
            Cause::DataGap { .. } => "data_gap",
            Cause::MeterReplaced { .. } => "meter_replaced",
            Cause::Curtailment { .. } => "curtailment",
            Cause::Unexplained { .. } => "unexplained",
        }
    }

    /// A sentence an operator can act on.
    pub fn explain(&self) -> String {
        match self {
            Cause::NoReadings => "no readings: no device of this station reported during the month (check that its devices are registered and reachable)".to_owned(),
            Cause::DataGap { completeness } => format!(
                "data gap: only {:.1}% of the expected daylight readings arrived; energy produced while the logger was silent is missing from the metered figure (check the logger's connectivity)",
                completeness * 100.0
            ),
            Cause::MeterReplaced { resets } => {
                let list: Vec<String> = resets
                    .iter()
                    .map(|(d, t)| format!("{d} at {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .collect();
                format!(
                    "meter or inverter replaced: the counter reset ({}); energy between the last reading of the old counter and the first of the new one is not metered",
                    list.join(", ")
                )
            }
            Cause::Curtailment {
                derated_readings,
                clipped_hours,
            } => format!(
                "curtailment: {derated_readings} readings in a derated state and {clipped_hours} hours at the nameplate limit; a grid-side export limit or dispatch order may explain the difference"
            ),
            Cause::Unexplained { metered_above: true } => "unexplained: the inverters counted more than the grid meter with complete data and no counter reset; check cable and transformer losses, the grid meter and its CT ratio, and ask the grid company for the meter readings".to_owned(),
            Cause::Unexplained { metered_above: false } => "unexplained: the grid meter recorded more than the inverters with complete data; check for an inverter missing from the deployment file or a counter not read".to_owned(),
        }
    }
}

/// Metered against settled for one station-month.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    pub station: StationId,
    pub month: YearMonth,
    pub metered: WattHours,
    pub settled: WattHours,
    /// (metered − settled) / settled in percent; `None` when nothing was settled.
    pub difference_pct: Option<f64>,
    pub flagged: bool,
    /// Likely causes, most likely first (empty when not flagged).
    pub causes: Vec<Cause>,
}

/// Compares a month's metered figures with its settlement.
pub fn reconcile(
    station: &StationId,
    month: YearMonth,
    metered: &Figures,
    settled: WattHours,
    threshold_pct: f64,
) -> Reconciliation {
    let diff = metered.energy.0 - settled.0;
    let difference_pct = (settled.0 > 0).then(|| diff as f64 * 100.0 / settled.0 as f64);
    let flagged = match difference_pct {
        Some(p) => p.abs() > threshold_pct,
        None => metered.energy.0 > 0,
    };
    let mut causes = Vec::new();
    if flagged {
        let completeness = metered.completeness.ratio();
        if metered.completeness.received == 0 && metered.energy.0 == 0 {
            causes.push(Cause::NoReadings);
        } else if let Some(c) = completeness.filter(|c| *c < GAP_COMPLETENESS && diff < 0) {
            causes.push(Cause::DataGap { completeness: c });
        }
        if !metered.resets.is_empty() {
            causes.push(Cause::MeterReplaced {
                resets: metered.resets.clone(),
            });
        }
        if metered.derated_readings > 0 {
            causes.push(Cause::Curtailment {
                derated_readings: metered.derated_readings,
                clipped_hours: metered.clipped_hours,
            });
        }
        if causes.is_empty() {
            causes.push(Cause::Unexplained {
                metered_above: diff > 0,
            });
        }
    }
    Reconciliation {
        station: station.clone(),
        month,
        metered: metered.energy,
        settled,
        difference_pct,
        flagged,
        causes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::counters::Completeness;
    use std::collections::BTreeSet;

    fn figures(wh: i64, expected: i64, received: i64) -> Figures {
        let t = DateTime::from_timestamp(1_772_294_400, 0).unwrap_or_default();
        Figures {
            from: t,
            to: t,
            first_day: t.date_naive(),
            energy: WattHours(wh),
            notes: BTreeSet::new(),
            devices: Vec::new(),
            completeness: Completeness { expected, received },
            observed_hours: 0,
            producing_hours: 0,
            clipped_hours: 0,
            derated_readings: 0,
            resets: Vec::new(),
        }
    }

    fn month() -> YearMonth {
        "2026-03".parse().expect("month")
    }

    #[test]
    fn within_threshold_is_not_flagged() {
        let r = reconcile(
            &"S1".into(),
            month(),
            &figures(1_020_000, 100, 100),
            WattHours(1_000_000),
            3.0,
        );
        assert_eq!(r.difference_pct, Some(2.0));
        assert!(!r.flagged);
        assert!(r.causes.is_empty());
    }

    #[test]
    fn a_data_gap_explains_a_low_meter() {
        let r = reconcile(
            &"S1".into(),
            month(),
            &figures(900_000, 1000, 880),
            WattHours(1_000_000),
            3.0,
        );
        assert!(r.flagged);
        assert_eq!(r.causes, vec![Cause::DataGap { completeness: 0.88 }]);
        assert!(r.causes[0].explain().contains("88.0%"));
        let r = reconcile(
            &"S1".into(),
            month(),
            &figures(0, 1000, 0),
            WattHours(1_000_000),
            3.0,
        );
        assert_eq!(r.causes, vec![Cause::NoReadings]);
    }

    #[test]
    fn a_counter_reset_points_at_a_replaced_meter() {
        let mut f = figures(900_000, 1000, 1000);
        let at = DateTime::from_timestamp(1_773_000_000, 0).unwrap_or_default();
        f.resets.push(("INV-2".into(), at));
        let r = reconcile(&"S1".into(), month(), &f, WattHours(1_000_000), 3.0);
        assert_eq!(r.causes[0].code(), "meter_replaced");
        assert!(r.causes[0].explain().contains("INV-2"));
    }

    #[test]
    fn derating_points_at_curtailment_and_nothing_else_is_unexplained() {
        let mut f = figures(1_100_000, 1000, 1000);
        f.derated_readings = 40;
        f.clipped_hours = 12;
        let r = reconcile(&"S1".into(), month(), &f, WattHours(1_000_000), 3.0);
        assert_eq!(r.causes[0].code(), "curtailment");
        let r = reconcile(
            &"S1".into(),
            month(),
            &figures(1_087_000, 1000, 1000),
            WattHours(1_000_000),
            3.0,
        );
        assert_eq!(
            r.causes,
            vec![Cause::Unexplained {
                metered_above: true
            }]
        );
        // The threshold is configurable.
        let r = reconcile(
            &"S1".into(),
            month(),
            &figures(1_087_000, 1000, 1000),
            WattHours(1_000_000),
            10.0,
        );
        assert!(!r.flagged);
    }
}
