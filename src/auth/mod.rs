//! Accounts and access: who is asking ([`Principal`]), where a request lands ([`Place`], resolved
//! by [`Geography`]), the one access decision ([`policy::decide`]) and the credentials behind it
//! (argon2 password hashes, API tokens kept as SHA-256 digests, compared in constant time).
//!
//! Pure: no I/O, no SQL, no HTTP. The store keeps accounts; the HTTP guard asks this module.

pub mod credentials;
pub mod policy;

pub use policy::{decide, Action, Decision};

use crate::domain::{CountyId, Role, ScopeEntry, Station, TownshipId, VillageId};
use std::collections::HashMap;

/// An authenticated caller, as the store resolved a session or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub scope: Vec<ScopeEntry>,
    pub via: Via,
}

/// How the caller proved who they are. Only a browser session carries ambient credentials (the
/// cookie), so only it needs CSRF protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Session,
    /// The public id of the API token.
    Token(String),
}

/// The administrative places a request touches: a village (with its township and county), or a
/// station (its county and owning villages; a centralized station has none and belongs to the
/// county).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub county: Option<String>,
    pub townships: Vec<String>,
    pub villages: Vec<String>,
}

impl Place {
    fn describe(&self) -> String {
        match (self.villages.as_slice(), &self.county) {
            ([], Some(c)) => format!("county {c}"),
            ([], None) => "this place".to_owned(),
            (v, _) => format!("village {}", v.join(", ")),
        }
    }
}

/// Where every village and station sits, built once from the deployment.
#[derive(Debug, Clone, Default)]
pub struct Geography {
    villages: HashMap<String, Place>,
    stations: HashMap<String, Place>,
}

impl Geography {
    pub fn new<'a>(
        townships: impl IntoIterator<Item = (&'a TownshipId, &'a CountyId)>,
        villages: impl IntoIterator<Item = (&'a VillageId, &'a TownshipId)>,
        stations: &[Station],
    ) -> Geography {
        let county_of: HashMap<&str, &str> = townships
            .into_iter()
            .map(|(t, c)| (t.as_str(), c.as_str()))
            .collect();
        let villages: HashMap<String, Place> = villages
            .into_iter()
            .map(|(v, t)| {
                let place = Place {
                    county: county_of.get(t.as_str()).map(|c| (*c).to_owned()),
                    townships: vec![t.to_string()],
                    villages: vec![v.to_string()],
                };
                (v.to_string(), place)
            })
            .collect();
        let stations = stations
            .iter()
            .map(|s| {
                let mut place = Place {
                    county: Some(s.county.to_string()),
                    ..Place::default()
                };
                let owners = s.village.iter().chain(s.owners.iter().map(|o| &o.village));
                for v in owners {
                    if let Some(vp) = villages.get(v.as_str()) {
                        place.townships.extend(vp.townships.iter().cloned());
                    }
                    place.villages.push(v.to_string());
                }
                place.townships.sort();
                place.townships.dedup();
                (s.id.to_string(), place)
            })
            .collect();
        Geography { villages, stations }
    }

    pub fn village(&self, code: &str) -> Option<&Place> {
        self.villages.get(code)
    }

    pub fn station(&self, id: &str) -> Option<&Place> {
        self.stations.get(id)
    }

    /// Whether `who` may do `action` on station `id` (unknown stations: no).
    pub fn may_on_station(&self, who: Option<&Principal>, action: Action, id: &str) -> bool {
        self.station(id)
            .is_some_and(|p| decide(who, action, Some(p)).allowed())
    }

    /// Whether `who` may do `action` on village `code` (unknown villages: no).
    pub fn may_on_village(&self, who: Option<&Principal>, action: Action, code: &str) -> bool {
        self.village(code)
            .is_some_and(|p| decide(who, action, Some(p)).allowed())
    }
}
