//! The one function that decides who may do what where: [`decide`] (role x action x place).
//!
//! Every HTTP route names an [`Action`]; the router's guard resolves the place the request touches
//! (a station's villages, a village, a fleet-wide page) and asks [`decide`]. Handlers that list many
//! places ask it again per row, and the plan workflow asks it for the exact transition. Nothing
//! else anywhere compares roles.

use super::{Place, Principal};
use crate::domain::PlanState;
use crate::domain::{Role, ScopeEntry};

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The masked public notice (公示), the login form, health: anyone, signed in or not.
    Public,
    /// Lists of stations, alerts and villages; each row is filtered with [`Action::ViewStation`] or
    /// [`Action::ViewLedger`].
    ViewFleet,
    /// A station's page and energy figures.
    ViewStation,
    /// Fleet-wide operational data: unknown MQTT devices, quarantine, `/metrics`.
    ViewOperations,
    /// Acknowledge an alert of a station.
    AckAlert,
    /// Import the grid company's settlement statement (county-wide).
    ImportSettlement,
    /// A village's statements and notices (masked unless [`Action::ViewPersonalData`] is allowed).
    ViewLedger,
    /// Names, household ids and bank accounts in statements.
    ViewPersonalData,
    /// The 银行代发 payout roster (bank accounts).
    ExportRoster,
    /// Open a village's plan workflow; each transition is decided as [`Action::MovePlan`].
    WorkOnPlans,
    /// One step of the annual plan workflow.
    MovePlan(PlanState, PlanState),
    /// Any signed-in user, for their own session (sign out).
    OwnSession,
    /// The audit log of every state change (administrators).
    ViewAudit,
    /// Compute and record a month's allocation for every village of the county (administrators).
    AllocateMonth,
    /// Lock a recorded month as paid (administrators: the county's finance desk).
    PayMonth,
    /// Add, edit and retire a village's households, and import its poverty-registry roster.
    EditRegistry,
    /// Confirm (复核) a village's statement of a recorded month before the county pays it.
    ReviewMonth,
    /// Set what a village's account held when the ledger began (administrators, before the first
    /// month is recorded).
    SetOpeningBalance,
    /// Post a top-up correcting a household's payout of a paid month into a later month.
    PostAdjustment,
    /// Record the month's attendance of the village's job holders.
    RecordAttendance,
    /// Draft the village's annual plan: its income, line budgets and planned payments (while it
    /// is a draft).
    DraftPlan,
    /// Add and end the beneficiary households of the county's centralized stations
    /// (administrators: the county's finance desk).
    EditPool,
}

impl Action {
    /// Whether the action works on one place (then the route names it) or on the fleet.
    pub fn needs_place(self) -> bool {
        matches!(
            self,
            Action::ViewStation
                | Action::AckAlert
                | Action::ViewLedger
                | Action::ViewPersonalData
                | Action::ExportRoster
                | Action::WorkOnPlans
                | Action::MovePlan(..)
                | Action::EditRegistry
                | Action::ReviewMonth
                | Action::SetOpeningBalance
                | Action::PostAdjustment
                | Action::RecordAttendance
                | Action::DraftPlan
        )
    }
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No credential was presented (401).
    Unauthenticated,
    /// A credential was presented but does not allow this (403), with the reason.
    Forbidden(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        *self == Decision::Allow
    }
}

/// Decides `action` on `place` (None: fleet-wide) for `who` (None: anonymous).
pub fn decide(who: Option<&Principal>, action: Action, place: Option<&Place>) -> Decision {
    if action == Action::Public {
        return Decision::Allow;
    }
    let Some(who) = who else {
        return Decision::Unauthenticated;
    };
    if !role_may(who.role, action) {
        return Decision::Forbidden(format!(
            "{} ({}) may not {}",
            who.username,
            who.role,
            describe(action)
        ));
    }
    let in_scope = match place {
        Some(place) => covers(&who.scope, place),
        None if action == Action::OwnSession || action == Action::ViewFleet => true,
        None => fleet_wide(&who.scope),
    };
    if in_scope {
        Decision::Allow
    } else {
        let what = place.map_or_else(|| "the whole fleet".to_owned(), Place::describe);
        Decision::Forbidden(format!(
            "{} may not {}: {what} is outside their scope",
            who.username,
            describe(action)
        ))
    }
}

fn role_may(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(
            action,
            ViewFleet
                | ViewStation
                | ViewOperations
                | AckAlert
                | ImportSettlement
                | ViewLedger
                | OwnSession
        ),
        Role::Reviewer => match action {
            ViewFleet | ViewStation | ViewLedger | ViewPersonalData | WorkOnPlans | OwnSession => {
                true
            }
            MovePlan(from, to) => township_step(from, to),
            _ => false,
        },
        Role::Accountant => match action {
            ViewFleet | ViewStation | ViewLedger | ViewPersonalData | ExportRoster
            | WorkOnPlans | EditRegistry | ReviewMonth | PostAdjustment | RecordAttendance
            | DraftPlan | OwnSession => true,
            MovePlan(from, to) => village_step(from, to),
            _ => false,
        },
        Role::Viewer => matches!(
            action,
            ViewFleet | ViewStation | ViewOperations | ViewLedger | OwnSession
        ),
    }
}

/// The steps the village takes itself (四议两公开, publishing results, amendments, withdrawing a
/// plan it has not yet had reviewed).
fn village_step(from: PlanState, to: PlanState) -> bool {
    use PlanState::*;
    matches!(
        (from, to),
        (Draft, Deliberated)
            | (Deliberated, PlanPublished)
            | (Deliberated | PlanPublished, Draft)
            | (Active, ResultPublished)
            | (ResultPublished, Closed)
            | (Active | ResultPublished, Deliberated)
    )
}

/// The township approves a published plan or returns it with a reason.
fn township_step(from: PlanState, to: PlanState) -> bool {
    use PlanState::*;
    matches!((from, to), (PlanPublished, TownshipReviewed | Draft))
}

/// Whether `scope` includes `place`: everything, its county, one of its townships or villages.
pub fn covers(scope: &[ScopeEntry], place: &Place) -> bool {
    scope.iter().any(|entry| match entry {
        ScopeEntry::All => true,
        ScopeEntry::County(c) => place.county.as_deref() == Some(c.as_str()),
        ScopeEntry::Township(t) => place.townships.iter().any(|p| p == t),
        ScopeEntry::Village(v) => place.villages.iter().any(|p| p == v),
    })
}

/// Fleet-wide work needs a county or everything in the scope.
fn fleet_wide(scope: &[ScopeEntry]) -> bool {
    scope
        .iter()
        .any(|e| matches!(e, ScopeEntry::All | ScopeEntry::County(_)))
}

fn describe(action: Action) -> String {
    match action {
        Action::Public => "read public pages".into(),
        Action::ViewFleet => "list stations".into(),
        Action::ViewStation => "see this station".into(),
        Action::ViewOperations => "see fleet operations data".into(),
        Action::AckAlert => "acknowledge alerts".into(),
        Action::ImportSettlement => "import settlements".into(),
        Action::ViewLedger => "see this village's ledger".into(),
        Action::ViewPersonalData => "see households' personal data".into(),
        Action::ExportRoster => "export the payout roster".into(),
        Action::WorkOnPlans => "work on annual plans".into(),
        Action::MovePlan(from, to) => format!("move a plan from {from} to {to}"),
        Action::OwnSession => "use a session".into(),
        Action::ViewAudit => "read the audit log".into(),
        Action::AllocateMonth => "allocate a month".into(),
        Action::PayMonth => "mark a month paid".into(),
        Action::EditRegistry => "change the household registry".into(),
        Action::ReviewMonth => "review the village's statement".into(),
        Action::SetOpeningBalance => "set the village's opening balance".into(),
        Action::PostAdjustment => "post a payout adjustment".into(),
        Action::RecordAttendance => "record job holders' attendance".into(),
        Action::DraftPlan => "draft the village's annual plan".into(),
        Action::EditPool => "change the beneficiaries of centralized stations".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Via;

    fn user(role: Role, scope: Vec<ScopeEntry>) -> Principal {
        Principal {
            user_id: 1,
            username: "u".into(),
            display_name: "U".into(),
            role,
            scope,
            via: Via::Session,
        }
    }

    fn village(code: &str, township: &str, county: &str) -> Place {
        Place {
            county: Some(county.into()),
            townships: vec![township.into()],
            villages: vec![code.into()],
        }
    }

    #[test]
    fn anonymous_gets_public_only() {
        assert_eq!(decide(None, Action::Public, None), Decision::Allow);
        for action in [Action::ViewFleet, Action::ViewLedger, Action::AckAlert] {
            assert_eq!(decide(None, action, None), Decision::Unauthenticated);
        }
    }

    #[test]
    fn accountant_sees_own_village_only() {
        let a = user(Role::Accountant, vec![ScopeEntry::Village("A".into())]);
        let own = village("A", "T", "C");
        let other = village("B", "T", "C");
        for action in [
            Action::ViewLedger,
            Action::ViewPersonalData,
            Action::ExportRoster,
            Action::EditRegistry,
            Action::ReviewMonth,
            Action::PostAdjustment,
            Action::RecordAttendance,
            Action::DraftPlan,
            Action::ViewStation,
        ] {
            assert!(decide(Some(&a), action, Some(&own)).allowed(), "{action:?}");
            assert!(
                matches!(
                    decide(Some(&a), action, Some(&other)),
                    Decision::Forbidden(_)
                ),
                "{action:?}"
            );
        }
        assert!(!decide(Some(&a), Action::AckAlert, Some(&own)).allowed());
        assert!(!decide(Some(&a), Action::ViewOperations, None).allowed());
        assert!(!decide(Some(&a), Action::ImportSettlement, None).allowed());
        assert!(!decide(Some(&a), Action::ViewAudit, None).allowed());
        assert!(!decide(Some(&a), Action::SetOpeningBalance, Some(&own)).allowed());
        assert!(!decide(Some(&a), Action::EditPool, None).allowed());
        let admin = user(Role::Admin, vec![ScopeEntry::All]);
        assert!(decide(Some(&admin), Action::ViewAudit, None).allowed());
        assert!(decide(Some(&admin), Action::EditPool, None).allowed());
    }

    #[test]
    fn a_joint_station_is_seen_by_each_owner() {
        let a = user(Role::Accountant, vec![ScopeEntry::Village("B".into())]);
        let station = Place {
            county: Some("C".into()),
            townships: vec!["T".into()],
            villages: vec!["A".into(), "B".into()],
        };
        assert!(decide(Some(&a), Action::ViewStation, Some(&station)).allowed());
    }

    #[test]
    fn plan_steps_belong_to_village_township_and_county() {
        use PlanState::*;
        let place = village("A", "T", "C");
        let acc = user(Role::Accountant, vec![ScopeEntry::Village("A".into())]);
        let rev = user(Role::Reviewer, vec![ScopeEntry::Township("T".into())]);
        let admin = user(Role::Admin, vec![ScopeEntry::County("C".into())]);
        let step = |p: &Principal, from, to| {
            decide(Some(p), Action::MovePlan(from, to), Some(&place)).allowed()
        };
        assert!(step(&acc, Draft, Deliberated));
        assert!(!step(&acc, PlanPublished, TownshipReviewed));
        assert!(step(&rev, PlanPublished, TownshipReviewed));
        assert!(step(&rev, PlanPublished, Draft));
        assert!(!step(&rev, TownshipReviewed, CountyFiled));
        assert!(step(&admin, TownshipReviewed, CountyFiled));
        assert!(step(&admin, CountyFiled, Active));
        assert!(!step(&acc, CountyFiled, Active));
    }

    #[test]
    fn viewer_and_operator_never_see_personal_data() {
        let place = village("A", "T", "C");
        for role in [Role::Viewer, Role::Operator] {
            let p = user(role, vec![ScopeEntry::All]);
            assert!(decide(Some(&p), Action::ViewLedger, Some(&place)).allowed());
            assert!(!decide(Some(&p), Action::ViewPersonalData, Some(&place)).allowed());
            assert!(!decide(Some(&p), Action::ExportRoster, Some(&place)).allowed());
            assert!(!decide(Some(&p), Action::EditRegistry, Some(&place)).allowed());
            assert!(!decide(Some(&p), Action::ReviewMonth, Some(&place)).allowed());
        }
        // The township reviews plans; it does not keep the village's registry.
        let rev = user(Role::Reviewer, vec![ScopeEntry::Township("T".into())]);
        assert!(decide(Some(&rev), Action::ViewPersonalData, Some(&place)).allowed());
        assert!(!decide(Some(&rev), Action::EditRegistry, Some(&place)).allowed());
        let op = user(Role::Operator, vec![ScopeEntry::County("C".into())]);
        assert!(decide(Some(&op), Action::AckAlert, Some(&place)).allowed());
        assert!(decide(Some(&op), Action::ImportSettlement, None).allowed());
        let viewer = user(Role::Viewer, vec![ScopeEntry::All]);
        assert!(!decide(Some(&viewer), Action::AckAlert, Some(&place)).allowed());
    }

    #[test]
    fn county_scope_covers_its_villages_not_others() {
        let op = user(Role::Operator, vec![ScopeEntry::County("C".into())]);
        assert!(decide(
            Some(&op),
            Action::ViewStation,
            Some(&village("A", "T", "C"))
        )
        .allowed());
        assert!(!decide(
            Some(&op),
            Action::ViewStation,
            Some(&village("A", "T", "D"))
        )
        .allowed());
    }
}
