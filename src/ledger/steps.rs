//! What a plan step records besides its note: the dates of the 四议 meetings when the village
//! deliberates (the Party branch proposes, the two committees discuss, the Party members review, the
//! villagers' assembly or representatives resolve), the day a plan or its result was made public
//! (两公开), and the names of the documents kept for it (minutes, sign-in sheets, photos of the
//! posted notice). Checked here; stored with the transition as JSON.

use super::households::Problem;
use crate::allocate::PlanState;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The four meetings of 四议, in the order they are held.
pub const MEETINGS: [&str; 4] = ["proposal", "consultation", "review", "resolution"];

/// One meeting and the day it was held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// One of [`MEETINGS`].
    pub kind: String,
    pub on: NaiveDate,
}

/// The record of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meetings: Vec<Meeting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

impl StepRecord {
    pub fn is_empty(&self) -> bool {
        self.meetings.is_empty() && self.published_on.is_none() && self.attachments.is_empty()
    }
}

/// What a step asks for: the four meeting dates, a publication date, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Meetings,
    Publication,
    Nothing,
}

/// What the step to `to` records (a step back records only its note).
pub fn needs(from: PlanState, to: PlanState) -> Needs {
    if to < from {
        return Needs::Nothing;
    }
    match to {
        PlanState::Deliberated => Needs::Meetings,
        PlanState::PlanPublished | PlanState::ResultPublished => Needs::Publication,
        _ => Needs::Nothing,
    }
}

/// The record as typed into the form: a date per meeting, the publication date, one document
/// name per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepInput {
    /// Dates of [`MEETINGS`], in that order, `YYYY-MM-DD`.
    pub meetings: [String; 4],
    pub published_on: String,
    pub attachments: String,
}

fn problem(field: &str, key: &str, args: &[(&str, &str)]) -> Problem {
    Problem {
        field: field.to_owned(),
        key: format!("plan.err.{key}"),
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Every message key a problem may carry.
pub const PROBLEM_KEYS: &[&str] = &[
    "plan.err.date_needed",
    "plan.err.date_bad",
    "plan.err.meetings_order",
    "plan.err.attachment_long",
    "plan.err.attachments_many",
];

/// Checks the record of the step from `from` to `to`: the dates it needs, none in the future, the
/// meetings in their order; document names at most 100 characters, at most 20 of them.
pub fn check(
    from: PlanState,
    to: PlanState,
    input: &StepInput,
    today: NaiveDate,
) -> Result<StepRecord, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut date = |field: &str, text: &str, needed: bool| -> Option<NaiveDate> {
        let text = text.trim();
        if text.is_empty() {
            if needed {
                problems.push(problem(field, "date_needed", &[]));
            }
            return None;
        }
        match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) if d <= today => Some(d),
            _ => {
                problems.push(problem(field, "date_bad", &[("value", text)]));
                None
            }
        }
    };
    let mut record = StepRecord::default();
    match needs(from, to) {
        Needs::Meetings => {
            let dates: Vec<Option<NaiveDate>> = MEETINGS
                .iter()
                .zip(&input.meetings)
                .map(|(kind, text)| date(&format!("meeting_{kind}"), text, true))
                .collect();
            for (i, pair) in dates.windows(2).enumerate() {
                if let [Some(a), Some(b)] = pair {
                    if b < a {
                        let (later, earlier) = (MEETINGS[i + 1], MEETINGS[i]);
                        problems.push(problem(
                            &format!("meeting_{later}"),
                            "meetings_order",
                            &[("later", later), ("earlier", earlier)],
                        ));
                    }
                }
            }
            record.meetings = MEETINGS
                .iter()
                .zip(dates)
                .filter_map(|(kind, d)| {
                    d.map(|on| Meeting {
                        kind: (*kind).to_owned(),
                        on,
                    })
                })
                .collect();
        }
        Needs::Publication => record.published_on = date("published_on", &input.published_on, true),
        Needs::Nothing => {}
    }
    let names: Vec<String> = input
        .attachments
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if names.len() > 20 {
        problems.push(problem("attachments", "attachments_many", &[]));
    }
    if let Some(long) = names.iter().find(|n| n.chars().count() > 100) {
        let start: String = long.chars().take(20).collect();
        problems.push(problem(
            "attachments",
            "attachment_long",
            &[("name", &start)],
        ));
    }
    record.attachments = names;
    if problems.is_empty() {
        Ok(record)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PlanState::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn meetings(d: [&str; 4]) -> StepInput {
        StepInput {
            meetings: d.map(str::to_owned),
            attachments: "村民代表会议记录.pdf\n\n 签到表.jpg ".into(),
            ..StepInput::default()
        }
    }

    fn fields(r: Result<StepRecord, Vec<Problem>>) -> Vec<(String, String)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.field, p.key))
            .collect()
    }

    #[test]
    fn deliberation_needs_the_four_meetings_in_their_order() {
        let today = day("2026-03-10");
        let ok = check(
            Draft,
            Deliberated,
            &meetings(["2026-03-01", "2026-03-02", "2026-03-02", "2026-03-05"]),
            today,
        )
        .expect("valid");
        assert_eq!(ok.meetings.len(), 4);
        assert_eq!(
            ok.meetings[3],
            Meeting {
                kind: "resolution".into(),
                on: day("2026-03-05")
            }
        );
        assert_eq!(ok.attachments, ["村民代表会议记录.pdf", "签到表.jpg"]);
        let bad = check(
            Draft,
            Deliberated,
            &meetings(["2026-03-04", "", "2026-03-01", "2026-04-01"]),
            today,
        );
        assert_eq!(
            fields(bad),
            [
                (
                    "meeting_consultation".to_owned(),
                    "plan.err.date_needed".to_owned()
                ),
                (
                    "meeting_resolution".to_owned(),
                    "plan.err.date_bad".to_owned()
                ),
            ]
        );
        let out_of_order = check(
            Draft,
            Deliberated,
            &meetings(["2026-03-04", "2026-03-03", "2026-03-05", "2026-03-06"]),
            today,
        );
        assert_eq!(
            fields(out_of_order),
            [(
                "meeting_consultation".to_owned(),
                "plan.err.meetings_order".to_owned()
            )]
        );
    }

    #[test]
    fn publication_needs_its_day_and_a_step_back_needs_nothing() {
        let today = day("2026-03-10");
        let none = StepInput::default();
        assert_eq!(
            fields(check(Deliberated, PlanPublished, &none, today)),
            [("published_on".to_owned(), "plan.err.date_needed".to_owned())]
        );
        let on = StepInput {
            published_on: "2026-03-08".into(),
            ..StepInput::default()
        };
        assert_eq!(
            check(Deliberated, PlanPublished, &on, today)
                .expect("valid")
                .published_on,
            Some(day("2026-03-08"))
        );
        assert_eq!(
            check(Active, ResultPublished, &on, today)
                .expect("valid")
                .published_on,
            Some(day("2026-03-08"))
        );
        assert!(check(PlanPublished, Draft, &none, today)
            .expect("valid")
            .is_empty());
        assert!(check(PlanPublished, TownshipReviewed, &none, today)
            .expect("valid")
            .is_empty());
    }
}
