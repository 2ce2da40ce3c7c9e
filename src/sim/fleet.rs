//! The demo fleet: the deployment in `demo_fleet.toml` plus a plant model for every inverter.
//!
//! Gateways in the file have placeholder addresses (`sim-gw-...`); the demo starts one simulated
//! gateway per placeholder and rewrites the addresses to the loopback ports it got.

use super::weather::{seed_of, Outage, PlantModel};
use crate::config::{ConfigError, Deployment};
use crate::domain::{DeviceId, Transport};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The demo deployment file, as shipped.
pub const DEMO_FLEET: &str = include_str!("demo_fleet.toml");

/// The station whose gateway fails: a three-day outage in the history and a live outage shortly after
/// the demo starts.
pub const OUTAGE_STATION: &str = "YG-NG-01";

/// How long history reaches back by default.
pub const HISTORY_DAYS: i64 = 366;

#[derive(Debug, Clone)]
pub struct DemoFleet {
    pub deployment: Deployment,
    pub plants: HashMap<DeviceId, PlantModel>,
    /// Placeholder gateway address -> devices behind it.
    pub gateways: BTreeMap<String, Vec<DeviceId>>,
    /// The instant history starts; counters are modelled from here.
    pub history_start: DateTime<Utc>,
}

/// Specific yield before the modelled period, for a plausible lifetime counter at its start.
const PRIOR_YIELD_WH_PER_KWP_PER_DAY: f64 = 3_600.0;

impl DemoFleet {
    /// Loads the demo deployment and models its plants as of `now`.
    pub fn load(
        now: DateTime<Utc>,
        known_models: &HashSet<String>,
        history_days: i64,
    ) -> Result<DemoFleet, ConfigError> {
        let deployment =
            Deployment::from_str_with_env("demo_fleet.toml", DEMO_FLEET, &[], known_models)?;
        let day = now.timestamp().div_euclid(86_400) * 86_400;
        let history_start =
            DateTime::from_timestamp(day, 0).unwrap_or(now) - Duration::days(history_days);
        let mut plants = HashMap::new();
        let mut gateways: BTreeMap<String, Vec<DeviceId>> = BTreeMap::new();
        for station in &deployment.stations {
            let devices: Vec<_> = deployment
                .devices
                .iter()
                .filter(|d| d.station == station.id)
                .collect();
            let rated_total: f64 = devices.iter().map(|d| d.rated_power_w).sum();
            for dev in &devices {
                let dc_w = station.capacity_kwp * 1000.0 * dev.rated_power_w / rated_total.max(1.0);
                let prior_days = (history_start.date_naive() - station.commissioned)
                    .num_days()
                    .max(0) as f64;
                let mut outages = Vec::new();
                if station.id.as_str() == OUTAGE_STATION {
                    let from = history_start + Duration::days((history_days - 45).max(1));
                    outages.push(Outage {
                        from,
                        to: from + Duration::days(3),
                    });
                }
                plants.insert(
                    dev.id.clone(),
                    PlantModel {
                        latitude: station.latitude,
                        longitude: station.longitude,
                        dc_capacity_w: dc_w,
                        rated_ac_w: dev.rated_power_w,
                        station_seed: seed_of(station.id.as_str()),
                        device_seed: seed_of(dev.id.as_str()),
                        counter_epoch: history_start,
                        counter_base_wh: (prior_days * PRIOR_YIELD_WH_PER_KWP_PER_DAY * dc_w
                            / 1000.0)
                            .round(),
                        health: 1.0,
                        outages,
                    },
                );
                if let Some(gw) = dev.transport.gateway() {
                    gateways
                        .entry(gw.to_owned())
                        .or_default()
                        .push(dev.id.clone());
                }
            }
        }
        Ok(DemoFleet {
            deployment,
            plants,
            gateways,
            history_start,
        })
    }

    /// Points every device behind `placeholder` at the real address a simulated gateway got.
    pub fn rewrite_gateway(&mut self, placeholder: &str, real: &str) {
        for dev in &mut self.deployment.devices {
            match &mut dev.transport {
                Transport::ModbusTcp { address, .. } | Transport::RtuOverTcp { address, .. }
                    if address == placeholder =>
                {
                    *address = real.to_owned();
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_fleet_is_a_valid_deployment_of_the_promised_shape() {
        let now = Utc::now();
        let fleet = DemoFleet::load(now, &crate::app::known_models(), HISTORY_DAYS)
            .expect("valid demo fleet");
        let d = &fleet.deployment;
        use crate::domain::StationKind::*;
        let count = |k| d.stations.iter().filter(|s| s.kind == k).count();
        assert!(count(Village) >= 3);
        assert_eq!(count(JointVillage), 1);
        assert_eq!(count(Centralized), 1);
        let joint = d
            .stations
            .iter()
            .find(|s| s.kind == JointVillage)
            .expect("joint");
        assert_eq!(joint.owners.len(), 3);
        assert!(
            (18..=25).contains(&d.devices.len()),
            "{} devices",
            d.devices.len()
        );
        let families: HashSet<_> = d.devices.iter().map(|x| x.model.as_str()).collect();
        assert_eq!(families.len(), 5, "{families:?}");
        assert_eq!(fleet.plants.len(), d.devices.len());
        assert!(fleet.gateways.len() >= 5);
        assert!(d.station(OUTAGE_STATION).is_some());
    }
}
