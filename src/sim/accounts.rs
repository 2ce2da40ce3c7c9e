//! The demo county's people: one account per role, so every page can be tried as the person it
//! is for. All share one password, printed when the demo starts; nothing here runs outside the
//! demo.

use crate::accounts::{self, NewUser};
use crate::config::Deployment;
use crate::domain::{Role, ScopeEntry};
use crate::store::Store;
use secrecy::SecretString;

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "sunshare-demo";

/// One demo account, as the start-up banner lists it.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub scope: Vec<ScopeEntry>,
}

/// The administrator, the county operator, a viewer, a reviewer per township and an accountant
/// per village.
pub fn demo_accounts(d: &Deployment) -> Vec<DemoAccount> {
    let mut out = vec![
        DemoAccount {
            username: "admin".into(),
            display_name: "县乡村振兴局管理员".into(),
            role: Role::Admin,
            scope: vec![ScopeEntry::All],
        },
        DemoAccount {
            username: "operator".into(),
            display_name: "县能源办运维".into(),
            role: Role::Operator,
            scope: d
                .counties
                .iter()
                .map(|c| ScopeEntry::County(c.id.to_string()))
                .collect(),
        },
        DemoAccount {
            username: "viewer".into(),
            display_name: "县领导查看".into(),
            role: Role::Viewer,
            scope: vec![ScopeEntry::All],
        },
    ];
    for t in &d.townships {
        out.push(DemoAccount {
            username: format!("reviewer-{}", t.id),
            display_name: format!("{}审核", t.name),
            role: Role::Reviewer,
            scope: vec![ScopeEntry::Township(t.id.to_string())],
        });
    }
    for v in &d.villages {
        out.push(DemoAccount {
            username: format!("acct-{}", v.code),
            display_name: format!("{}会计", v.name),
            role: Role::Accountant,
            scope: vec![ScopeEntry::Village(v.code.to_string())],
        });
    }
    out
}

/// Creates the demo accounts in a fresh demo store.
pub async fn create(store: &Store, d: &Deployment) -> Result<Vec<DemoAccount>, accounts::Error> {
    let list = demo_accounts(d);
    for a in &list {
        let user = NewUser {
            username: a.username.clone(),
            display_name: a.display_name.clone(),
            role: a.role,
            scope: a.scope.clone(),
            password: SecretString::from(DEMO_PASSWORD),
        };
        accounts::add_user(store, d, user, "demo", "demo").await?;
    }
    Ok(list)
}
