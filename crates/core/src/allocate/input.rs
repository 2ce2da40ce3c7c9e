//! What the money core reads for a month, and nothing else: the registry in force (stations,
//! villages with their province, households, jobs), the tariffs and coal benchmark prices, the policy
//! and the money sections (adders, costs, plans, attendance, receipts, advances, adjustments,
//! centralized-pool membership).

use super::model::{
    coal_price_on, Adder, Adjustment, Advance, Attendance, CoalPrice, CostItem, PolicyConfig,
    PoolMembership, SubsidyReceipt, Tariff, VillagePlan,
};
use crate::domain::{Household, JobPost, Price, Station, VillageId};
use chrono::NaiveDate;

/// One allocation's input: plain data borrowed from whoever holds it (the ledger: the deployment
/// with the registry laid over it, mapped by `Deployment::allocation_input`), so a province-sized
/// registry is not copied to be allocated.
#[derive(Debug, Clone)]
pub struct AllocationInput<'a> {
    pub stations: &'a [Station],
    /// The villages a month runs over (each gets a statement), in any order.
    pub villages: Vec<AllocationVillage<'a>>,
    /// The households and jobs in force: the registry's, not only the file's seed.
    pub households: &'a [Household],
    pub jobs: &'a [JobPost],
    pub tariffs: &'a [Tariff],
    pub coal_prices: &'a [CoalPrice],
    pub policy: &'a PolicyConfig,
    pub adders: &'a [Adder],
    pub costs: &'a [CostItem],
    pub plans: &'a [VillagePlan],
    pub attendance: &'a [Attendance],
    pub subsidy_receipts: &'a [SubsidyReceipt],
    pub advances: &'a [Advance],
    pub adjustments: &'a [Adjustment],
    pub pool_membership: &'a [PoolMembership],
}

/// A village with the province its township's county lies in (`None` when the geography does not
/// say): LABOUR_SHARE rules may hold in one province only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocationVillage<'a> {
    pub code: &'a VillageId,
    pub province: Option<&'a str>,
}

impl AllocationInput<'_> {
    /// The coal benchmark price in force for `province` on `day`.
    pub fn coal_price(&self, province: &str, day: NaiveDate) -> Option<Price> {
        coal_price_on(self.coal_prices, province, day)
    }
}
