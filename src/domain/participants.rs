//! Who is in a session, as Salesforce reports it (`ParticipantChanged`,
//! `ParticipantsConferenced`), kept on the session as a JSON array of
//! `{subject, role, joined_at}` — reps, supervisors and bots only: the end user is implicit in
//! every session, and their Salesforce subject (a phone number) is personal data byocd keeps
//! out of this list and the audit trail.
//!
//! Routing reads it (`routing::present_reps`): after a transfer to another rep with
//! `remove_previous_agent`, the rep to remove is the latest-joined rep still in the session
//! other than the new one (docs/routing.md).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::salesforce::events::ParticipantChange;

/// Applies `changes` in order to the `stored` list (`None`: never reported, an empty list):
/// `add` puts a participant in (kept once, with when they joined), `remove` takes them out,
/// `update` sets their role (adding them if absent). End users and changes of unknown
/// operations are skipped. Returns the new list and the changes applied (without end users).
pub fn apply(
    stored: Option<Value>,
    changes: &[ParticipantChange],
    now: DateTime<Utc>,
) -> (Value, Vec<Value>) {
    let mut list: Vec<Value> = stored
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let mut applied = Vec::new();
    for change in changes {
        if change.role.eq_ignore_ascii_case("EndUser") {
            continue;
        }
        let position = list
            .iter()
            .position(|p| p["subject"].as_str() == Some(change.subject.as_str()));
        match (change.operation.as_str(), position) {
            ("add", None) | ("update", None) => list.push(json!({
                "subject": change.subject,
                "role": change.role,
                "joined_at": now.to_rfc3339(),
            })),
            ("add", Some(_)) => {}
            ("update", Some(i)) => list[i]["role"] = Value::from(change.role.clone()),
            ("remove", Some(i)) => {
                list.remove(i);
            }
            ("remove", None) => {}
            _ => continue,
        }
        applied.push(json!({
            "operation": change.operation,
            "subject": change.subject,
            "role": change.role,
        }));
    }
    (Value::Array(list), applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(operation: &str, subject: &str, role: &str) -> ParticipantChange {
        ParticipantChange {
            operation: operation.into(),
            subject: subject.into(),
            role: role.into(),
        }
    }

    #[test]
    fn changes_keep_who_is_in_the_session_without_the_end_user() {
        let now = Utc::now();
        let (list, applied) = apply(
            None,
            &[
                change("add", "005A", "Agent"),
                change("add", "+447700900001", "EndUser"),
                change("add", "005B", "Agent"),
                change("add", "005A", "Agent"),
            ],
            now,
        );
        assert_eq!(applied.len(), 3, "the end user is not applied");
        let subjects = |list: &Value| -> Vec<String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|p| p["subject"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(subjects(&list), ["005A", "005B"]);
        assert!(!list.to_string().contains("+447700900001"));
        let (list, _) = apply(
            Some(list),
            &[
                change("remove", "005A", "Agent"),
                change("update", "005B", "Supervisor"),
                change("frobnicate", "005C", "Agent"),
            ],
            now,
        );
        assert_eq!(subjects(&list), ["005B"]);
        assert_eq!(list[0]["role"], "Supervisor");
    }
}
