//! Who uses Sunshare: a user's role and the places they answer for.
//!
//! Pure vocabulary: what a role may do is decided in `auth::policy`, never here.

use serde::{Deserialize, Serialize};

/// What a user is in the county's organisation. Text form (`admin`, `operator`, ...) is what the
/// store, the CLI and the API use.
#[derive(
    Debug,
    Clone,
    Copy,
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
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum Role {
    /// Manages accounts; may do everything within the scope.
    Admin,
    /// County energy office: stations, devices, alerts, settlements.
    Operator,
    /// Township office: reviews the annual plans of its villages.
    Reviewer,
    /// Village accountant: the ledger, statements and rosters of its villages.
    Accountant,
    /// Reads what its scope shows; changes nothing.
    Viewer,
}

impl Role {
    /// The Chinese name shown on pages.
    pub fn label_zh(self) -> &'static str {
        match self {
            Role::Admin => "系统管理员",
            Role::Operator => "县级运维",
            Role::Reviewer => "乡镇审核",
            Role::Accountant => "村会计",
            Role::Viewer => "只读查看",
        }
    }
}

/// One place a user answers for. A user's scope is a list of these: everything, or counties,
/// townships and villages by their codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "code", rename_all = "snake_case")]
pub enum ScopeEntry {
    All,
    County(String),
    Township(String),
    Village(String),
}

impl ScopeEntry {
    /// `(kind, code)` as stored; `All` has an empty code.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            ScopeEntry::All => ("all", ""),
            ScopeEntry::County(c) => ("county", c),
            ScopeEntry::Township(c) => ("township", c),
            ScopeEntry::Village(c) => ("village", c),
        }
    }

    pub fn from_parts(kind: &str, code: &str) -> Option<ScopeEntry> {
        let code = code.to_owned();
        Some(match kind {
            "all" => ScopeEntry::All,
            "county" => ScopeEntry::County(code),
            "township" => ScopeEntry::Township(code),
            "village" => ScopeEntry::Village(code),
            _ => return None,
        })
    }
}

impl std::fmt::Display for ScopeEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parts() {
            ("all", _) => f.write_str("all"),
            (kind, code) => write!(f, "{kind}:{code}"),
        }
    }
}

/// A stored user as everything above the store sees it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub scope: Vec<ScopeEntry>,
}
