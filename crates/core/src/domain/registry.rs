//! The registry: stations, devices, households and jobs as the deployment file declares them.
//!
//! These types are deserialized straight from the deployment file (`deny_unknown_fields`), so a typo in
//! a key is an error at load time. Cross-record rules (unique ids, shares that sum) live in `config`.

use super::ids::{CountyId, DeviceId, HouseholdId, JobId, StationId, TariffId, VillageId};
use super::units::Fen;
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

fn default_tz() -> Tz {
    chrono_tz::Asia::Shanghai
}

/// What a station is decides who owns its income (docs/policy.md section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StationKind {
    /// 村级电站: one village collective owns the asset and the income.
    Village,
    /// 联村电站: several villages by ownership weight.
    JointVillage,
    /// 集中式电站: pays a fixed amount per beneficiary household into a county pool.
    Centralized,
}

impl StationKind {
    pub fn label(self) -> &'static str {
        match self {
            StationKind::Village => "village",
            StationKind::JointVillage => "joint-village",
            StationKind::Centralized => "centralized",
        }
    }
}

/// One village's ownership weight in a joint-village station (integer kW or yuan invested).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerShare {
    pub village: VillageId,
    pub weight: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Station {
    pub id: StationId,
    pub name: String,
    pub kind: StationKind,
    pub county: CountyId,
    /// Installed DC capacity in kWp.
    pub capacity_kwp: f64,
    pub latitude: f64,
    pub longitude: f64,
    /// Used only to cut days and months; everything inside is UTC.
    #[serde(default = "default_tz")]
    pub timezone: Tz,
    #[serde(with = "super::date")]
    pub commissioned: NaiveDate,
    pub tariff: TariffId,
    /// The owning village of a village station.
    #[serde(default)]
    pub village: Option<VillageId>,
    /// Owners of a joint-village station; weights sum to `total_weight`.
    #[serde(default)]
    pub owners: Vec<OwnerShare>,
    /// The station total that owner weights must sum to (defaults to their sum when omitted).
    #[serde(default)]
    pub total_weight: Option<u64>,
    /// Centralized stations: yuan per beneficiary household per year paid into the county pool.
    #[serde(default)]
    pub payment_per_beneficiary: Option<Fen>,
    /// Centralized stations: the households it pays for.
    #[serde(default)]
    pub beneficiaries: Vec<HouseholdId>,
}

impl Station {
    /// The villages that own a share of this station's income.
    pub fn owner_villages(&self) -> Vec<&VillageId> {
        match self.kind {
            StationKind::Village => self.village.iter().collect(),
            StationKind::JointVillage => self.owners.iter().map(|o| &o.village).collect(),
            StationKind::Centralized => Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Inverter,
    Meter,
}

/// How Sunshare reaches a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transport {
    /// Modbus TCP (MBAP framing) to the inverter or a gateway.
    ModbusTcp { address: String, unit: u8 },
    /// RTU frames tunnelled over TCP: serial servers and DTUs in transparent mode.
    RtuOverTcp { address: String, unit: u8 },
    /// A 4G data logger publishing to the MQTT broker; `logger` is its id in the topic.
    Mqtt {
        logger: String,
        #[serde(default)]
        unit: Option<u8>,
    },
}

impl Transport {
    /// The connection that one poller task owns (devices behind one gateway share it).
    pub fn gateway(&self) -> Option<&str> {
        match self {
            Transport::ModbusTcp { address, .. } | Transport::RtuOverTcp { address, .. } => {
                Some(address)
            }
            Transport::Mqtt { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub id: DeviceId,
    pub station: StationId,
    pub kind: DeviceKind,
    /// The register map in `firmware-config/inverters/` (file stem), e.g. `huawei_sun2000`.
    pub model: String,
    pub transport: Transport,
    /// Nameplate AC power in W, used for range checks and per-device KPIs.
    pub rated_power_w: f64,
    /// Poll period; defaults to the deployment's `collect.poll_interval`.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<std::time::Duration>,
}

/// Registered poverty status (docs/policy.md section 5); effective-dated.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PovertyStatus {
    /// 未脱贫
    NotExited,
    /// 已脱贫
    Exited,
    /// 监测户
    Monitored,
    /// 边缘户
    Edge,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPeriod {
    pub status: PovertyStatus,
    /// First day the status applies.
    #[serde(with = "super::date")]
    pub from: NaiveDate,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LabourCapacity {
    Full,
    Weak,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Household {
    pub id: HouseholdId,
    pub village: VillageId,
    /// Head of household; shown masked (张*三) on public notices.
    pub head: String,
    /// Status history, oldest first.
    pub status: Vec<StatusPeriod>,
    #[serde(default)]
    pub deep_poverty: bool,
    pub labour: LabourCapacity,
    #[serde(default)]
    pub birth_year: Option<i32>,
    /// Bank account for 银行代发 payouts; never shown on public pages.
    #[serde(default)]
    pub bank_account: Option<String>,
}

impl Household {
    /// The status in force on `day`, if the household was registered by then.
    pub fn status_on(&self, day: NaiveDate) -> Option<PovertyStatus> {
        self.status
            .iter()
            .filter(|p| p.from <= day)
            .max_by_key(|p| p.from)
            .map(|p| p.status)
    }
}

/// A public-welfare job post (公益岗位) and who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPost {
    pub id: JobId,
    pub village: VillageId,
    /// 保洁员, 护路员, 电站管护员, ...
    pub title: String,
    pub holder: HouseholdId,
    pub monthly_wage: Fen,
    #[serde(with = "super::date")]
    pub from: NaiveDate,
    #[serde(default, with = "super::date::option")]
    pub until: Option<NaiveDate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_effective_dated() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let h = Household {
            id: HouseholdId::new("H1"),
            village: VillageId::new("V1"),
            head: "张三".into(),
            status: vec![
                StatusPeriod {
                    status: PovertyStatus::NotExited,
                    from: d("2016-01-01"),
                },
                StatusPeriod {
                    status: PovertyStatus::Exited,
                    from: d("2020-07-01"),
                },
            ],
            deep_poverty: false,
            labour: LabourCapacity::Full,
            birth_year: None,
            bank_account: None,
        };
        assert_eq!(h.status_on(d("2015-12-31")), None);
        assert_eq!(h.status_on(d("2020-06-30")), Some(PovertyStatus::NotExited));
        assert_eq!(h.status_on(d("2020-07-01")), Some(PovertyStatus::Exited));
    }
}
