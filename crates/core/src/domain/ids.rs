//! Identifiers as newtypes so a village code can never be passed where a station id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Shared text: cloning an id (done for every sample, payout and income line) bumps a reference
        /// count instead of copying the string.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(Arc::from(id.as_ref()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(Arc::from(s))
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A county (县), the unit that runs the energy office and the centralized-station pool.
    CountyId
);
string_id!(
    /// A township (乡镇), which reviews village plans.
    TownshipId
);
string_id!(
    /// A village's administrative code; ties between villages are broken by ascending code.
    VillageId
);
string_id!(
    /// A station as the energy office names it.
    StationId
);
string_id!(
    /// An inverter or meter.
    DeviceId
);
string_id!(
    /// The registration id of a poor household (建档立卡户), unique system-wide.
    HouseholdId
);
string_id!(
    /// A public-welfare job post (公益岗位).
    JobId
);
string_id!(
    /// A tariff plan (catalogue price and province).
    TariffId
);
