//! The rules of personal data: how long each class of it is kept (the periodic purge,
//! `lifecycle::purge`, carries them out), which webhook events are too old to take in, and what
//! `byocd forget` erases (docs/security.md).
//!
//! Dedupe keys and replays: a provider may send an event again long after it first came (a
//! retry, or someone replaying a captured webhook). byocd recognises it by its dedupe key as
//! long as it keeps the key (`retention.dedupe`). So that purging keys never lets an old event
//! in a second time, an event whose own timestamp is older than the dedupe retention is refused
//! as stale ([`replay_horizon`]), and keys are purged only [`CLOCK_SKEW`] later than that
//! ([`purge_before`]): a provider clock that runs ahead by up to that much still finds the key.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    config::RetentionSettings,
    store::{AuditEntry, Erasure, PurgeClass, Severity},
};

/// How far a provider's clock may run ahead of byocd's for the replay rule to hold.
pub const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// How long each class of data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delivered and discarded outbox rows (`relay.finished_retention`).
    pub finished_outbox: Duration,
    /// Quarantined bodies (`retention.quarantine`).
    pub quarantine: Duration,
    /// Dedupe keys (`retention.dedupe`), and the age past which events are refused.
    pub dedupe: Duration,
    /// Ended sessions (`retention.ended_sessions`).
    pub ended_sessions: Duration,
}

impl Retention {
    /// From the configuration.
    pub fn from_config(finished_outbox: Duration, settings: &RetentionSettings) -> Self {
        Self {
            finished_outbox,
            quarantine: settings.quarantine,
            dedupe: settings.dedupe,
            ended_sessions: settings.ended_sessions,
        }
    }
}

fn minus(now: DateTime<Utc>, age: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// For each class, the time before which its rows are purged at `now`.
pub fn purge_before(now: DateTime<Utc>, retention: &Retention) -> [(PurgeClass, DateTime<Utc>); 5] {
    [
        (
            PurgeClass::FinishedOutbox,
            minus(now, retention.finished_outbox),
        ),
        (PurgeClass::Quarantine, minus(now, retention.quarantine)),
        (
            PurgeClass::Dedupe,
            minus(now, retention.dedupe.saturating_add(CLOCK_SKEW)),
        ),
        (
            PurgeClass::EndedSessions,
            minus(now, retention.ended_sessions),
        ),
        // Hosted files carry their own expiry (`server.hosted_file_ttl`).
        (PurgeClass::HostedFiles, now),
    ]
}

/// The audit row of a purge run of `class` that deleted `rows` (a count, never contents).
pub fn purged_entry(class: PurgeClass, rows: u64, before: DateTime<Utc>) -> AuditEntry {
    let (kind, what) = match class {
        PurgeClass::FinishedOutbox => ("outbox.purged", "finished outbox row(s)"),
        PurgeClass::Quarantine => ("quarantine.purged", "quarantined webhook body(ies)"),
        PurgeClass::Dedupe => ("dedupe.purged", "dedupe key(s)"),
        PurgeClass::EndedSessions => ("sessions.purged", "ended session(s)"),
        PurgeClass::HostedFiles => ("hosted_files.purged", "expired hosted file(s)"),
    };
    AuditEntry::new(
        kind,
        format!("{rows} {what} older than the retention deleted"),
    )
    .detail(if class == PurgeClass::FinishedOutbox {
        serde_json::json!({ "rows": rows, "finished_before": before.to_rfc3339() })
    } else {
        serde_json::json!({ "rows": rows, "before": before.to_rfc3339() })
    })
}

/// Events whose own timestamp is before this are refused as stale at `now`: their dedupe key may
/// already be purged, so a replay of them could not be recognised.
pub fn replay_horizon(now: DateTime<Utc>, dedupe_retention: Duration) -> DateTime<Utc> {
    minus(now, dedupe_retention)
}

/// Whether an event that happened `at` is too old to take in.
pub fn is_stale(at: DateTime<Utc>, horizon: Option<DateTime<Utc>>) -> bool {
    horizon.is_some_and(|h| at < h)
}

/// What `byocd forget --end-user ID` looks for: the identifier as given, and an E.164 number
/// given without its `+` with it.
pub fn forget_identifiers(given: &str) -> Vec<String> {
    let given = given.trim();
    let mut out = vec![given.to_owned()];
    if !given.is_empty() && given.bytes().all(|b| b.is_ascii_digit()) {
        out.push(format!("+{given}"));
    }
    out
}

/// Besides an end user's identifiers as stored, what to look for in quarantined bodies
/// (providers may write a number without its `+`).
pub fn quarantine_needles(identifier: &str) -> Vec<String> {
    match identifier.strip_prefix('+') {
        Some(digits) if digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            vec![digits.to_owned()]
        }
        _ => Vec::new(),
    }
}

/// The audit row of an erasure: counts and byocd's opaque end-user ids, never the identifier
/// the operator gave.
pub fn forgotten_entry(erasure: &Erasure, channel: Option<&str>, actor: &str) -> AuditEntry {
    let entry = AuditEntry::new(
        "end_user.forgotten",
        format!(
            "{} end user(s) erased on request (byocd forget)",
            erasure.end_users
        ),
    )
    .severity(Severity::Warning)
    .actor(actor)
    .detail(serde_json::json!({
        "end_user_ids": erasure.end_user_ids,
        "deleted": {
            "end_users": erasure.end_users,
            "conversations": erasure.conversations,
            "sessions": erasure.sessions,
            "routings": erasure.routings,
            "outbox": erasure.outbox,
            "message_map": erasure.message_map,
            "quarantine": erasure.quarantine,
        },
        "older_audit_rows_naming_them": erasure.audit_mentions,
    }));
    match channel {
        Some(c) => entry.channel(c),
        None => entry,
    }
}

/// A delivery's error text fit for `last_error`, the logs and the audit trail. Salesforce and
/// the providers may echo what they were sent (a number, the message text) in their error
/// bodies, and byocd quotes those bodies in its error texts. So:
///
/// - every text of the work's payload of [`MIN_ECHO`] characters or more (message text, the
///   end user's key or number, file names, …; not byocd's own tags such as `"kind": "text"`)
///   is replaced by `[redacted]`, longest first;
/// - a run that looks like a phone number — a `+` and 7 to 15 digits with single spaces,
///   dashes, dots or parentheses between them, or 7 to 15 digits alone — and is not part of a
///   longer word (ids such as `00D000000000001` are kept) becomes `[number]`.
///
/// Dates (`2026-11-21`), HTTP statuses, error codes and request ids are kept; a bare number of
/// 7 digits or more (an epoch time) is not told from a phone number and goes too.
pub fn scrub_error(error: &str, payload: &serde_json::Value) -> String {
    let mut texts = Vec::new();
    collect_texts(payload, &mut texts);
    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    texts.dedup();
    let mut out = error.to_owned();
    for text in texts {
        out = out.replace(text.as_str(), "[redacted]");
    }
    redact_numbers(&out)
}

/// Shorter payload texts are not looked for in error texts (a two-letter message would mangle
/// every word it occurs in, and says next to nothing about the person).
pub const MIN_ECHO: usize = 4;

/// Payload keys whose values are byocd's own tags (`"kind": "text"`), not what a person wrote:
/// error texts keep those words.
const TAG_KEYS: &[&str] = &[
    "kind",
    "media",
    "mime_type",
    "operation",
    "operation_by",
    "consent_status",
    "routing_type",
    "work_type",
    "type",
];

fn collect_texts(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if s.trim().chars().count() >= MIN_ECHO => {
            out.push(s.trim().to_owned())
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_texts(v, out)),
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(key, _)| !TAG_KEYS.contains(&key.as_str()))
            .for_each(|(_, v)| collect_texts(v, out)),
        _ => {}
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')')
}

/// Replaces what looks like a phone number by `[number]` (see [`scrub_error`]).
fn redact_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let glued = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let plus = chars[i] == '+';
        let starts_run = (plus && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            || chars[i].is_ascii_digit();
        if !starts_run || (start > 0 && glued(chars.get(start - 1))) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // Extend over digits, and (after a `+`) single separators between them.
        let mut j = if plus { i + 1 } else { i };
        let mut digits = 0;
        let mut end = j;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                digits += 1;
                j += 1;
                end = j;
            } else if plus && is_separator(chars[j]) {
                // Up to two separators (`) `, ` (`) when a digit follows them.
                match (1..=2).find(|k| {
                    chars[j..].get(*k).is_some_and(char::is_ascii_digit)
                        && chars[j..j + k].iter().all(|c| is_separator(*c))
                }) {
                    Some(k) => j += k,
                    None => break,
                }
            } else {
                break;
            }
        }
        if (7..=15).contains(&digits) && !glued(chars.get(end)) {
            out.push_str("[number]");
        } else {
            out.extend(&chars[start..end]);
        }
        i = end.max(start + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_keys_outlive_the_replay_horizon() {
        let now = Utc::now();
        let r = Retention {
            finished_outbox: Duration::from_secs(1),
            quarantine: Duration::from_secs(1),
            dedupe: Duration::from_secs(30 * 86400),
            ended_sessions: Duration::from_secs(1),
        };
        let keys_before = purge_before(now, &r)[2].1;
        let horizon = replay_horizon(now, r.dedupe);
        assert!(keys_before < horizon);
        assert!(is_stale(
            horizon - chrono::Duration::seconds(1),
            Some(horizon)
        ));
        assert!(!is_stale(horizon, Some(horizon)));
        assert!(!is_stale(DateTime::<Utc>::MIN_UTC, None));
    }

    #[test]
    fn forget_looks_for_a_number_with_and_without_its_plus() {
        assert_eq!(
            forget_identifiers("447700900001"),
            ["447700900001", "+447700900001"]
        );
        assert_eq!(forget_identifiers("+447700900001"), ["+447700900001"]);
        assert_eq!(quarantine_needles("+447700900001"), ["447700900001"]);
        assert!(quarantine_needles("wa-bsuid").is_empty());
    }

    #[test]
    fn error_texts_lose_numbers_and_what_the_work_said_but_keep_ids_dates_and_codes() {
        let payload = serde_json::json!({
            "entry_id": "0Mw000000000001",
            "from": "wa-bsuid-7788",
            "content": { "kind": "text", "text": "my card is 4111 and I live at 1 Main St" },
        });
        let error = "POST /v1/messages: HTTP 400, code 10045 on 2026-11-21: invalid \
                     recipient +44 7700 900123 (also 447700900123, +1 (555) 010-9999) for \
                     wa-bsuid-7788: 'my card is 4111 and I live at 1 Main St' too long \
                     (RequestId 21613ccd-526d-427f-a2da-fd9fdb2d1214, org 00D000000000001)";
        let scrubbed = scrub_error(error, &payload);
        assert_eq!(
            scrubbed,
            "POST /v1/messages: HTTP 400, code 10045 on 2026-11-21: invalid recipient \
             [number] (also [number], [number]) for [redacted]: '[redacted]' too long \
             (RequestId 21613ccd-526d-427f-a2da-fd9fdb2d1214, org 00D000000000001)"
        );
        assert_eq!(scrub_error("HTTP 503", &serde_json::json!({})), "HTTP 503");
    }
}
