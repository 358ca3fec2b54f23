//! The audit trail's hash chain: what a seal is the hash of, and how a walk of the trail decides
//! whether it is intact (`byocd audit verify`, docs/audit.md "Verifying the trail").
//!
//! Audit rows are inserted as they always were, by many transactions at once (on PostgreSQL from
//! several replicas). One sealer (`lifecycle::seal`) later appends, in id order, one seal per
//! committed row to `audit_seal`:
//!
//! ```text
//! hash_n = SHA-256( "byocd.audit.v1" || hash_{n-1} (64 hex digits; 64 zeros for the first) || row_n )
//! ```
//!
//! where `row_n` is the canonical encoding of every column of the row ([`canonical`]): its id,
//! time (RFC 3339, microseconds, UTC), kind, severity, actor, org, channel, conversation and
//! session (hyphenated UUIDs), message, and detail (JSON with object keys sorted, no spaces),
//! each field a presence byte and, when present, its length (8 bytes, big-endian) and bytes. The
//! encoding does not depend on the backend: SQLite and PostgreSQL seal the same row alike.
//!
//! The chain is over the rows that exist when they are sealed, so an id that never committed (a
//! rolled-back sequence value on PostgreSQL) is no gap in it. After sealing, any change shows:
//! an `UPDATE` of any column (the row no longer hashes to its seal: *modified*), a `DELETE` of a
//! row (a seal without its row, or a seal naming a predecessor that is gone: *missing*), a row
//! inserted with an id the chain has already passed (a row without a seal below a sealed row:
//! *inserted*). What the chain cannot show by itself: rows cut from its end together with
//! their seals, or a chain rewritten whole by someone who can disable the triggers — for those
//! an auditor records the head (`HASH@ID`) elsewhere and passes it back with `--expect-head`.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{AnyStore, AuditRow, AuditSeal, ChainEntry, Result, Store};

/// Domain separation: the version of the encoding.
const TAG: &[u8] = b"byocd.audit.v1";

/// What the first seal follows.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Ids read per statement while walking the chain.
pub const PAGE: u32 = 2_000;

/// The hash of the seal that follows `prev` (`None`: the first seal) for `row`, in hex.
pub fn link(prev: Option<&AuditSeal>, row: &AuditRow) -> String {
    let mut hasher = Sha256::new();
    hasher.update(TAG);
    hasher.update(prev.map_or(GENESIS, |p| p.hash.as_str()).as_bytes());
    hasher.update(canonical(row));
    hex::encode(hasher.finalize())
}

/// The canonical encoding of every column of an audit row (see the module documentation).
pub fn canonical(row: &AuditRow) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, value: Option<&str>) {
        match value {
            None => out.push(0),
            Some(text) => {
                out.push(1);
                out.extend_from_slice(&(text.len() as u64).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    let e = &row.entry;
    let at = row.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let conversation = e.conversation_id.map(|id| id.hyphenated().to_string());
    let session = e.session_id.map(|id| id.hyphenated().to_string());
    let detail = canonical_json(&e.detail);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&row.id.to_be_bytes());
    for value in [
        Some(at.as_str()),
        Some(e.kind.as_str()),
        Some(e.severity.as_str()),
        Some(e.actor.as_str()),
        e.org_id.as_deref(),
        e.channel.as_deref(),
        conversation.as_deref(),
        session.as_deref(),
        Some(e.message.as_str()),
        Some(detail.as_str()),
    ] {
        field(&mut out, value);
    }
    out
}

/// JSON with object keys sorted at every level and no insignificant whitespace, whatever order
/// the database gives them back in (`jsonb` reorders keys; SQLite keeps the text as written).
fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// A chain head an auditor recorded: `HASH@ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The sealed row's id.
    pub id: i64,
    /// Its seal's hash (64 hex digits, lower case).
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((hash, id)) = text.split_once('@') else {
            return Err(format!(
                "`{text}` is not HASH@ID (as `byocd audit verify` prints the head)"
            ));
        };
        let hash = hash.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` is not a SHA-256 hash (64 hex digits)"));
        }
        let id: i64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("`{id}` is not an audit row id (a positive integer)"))?;
        Ok(Self { id, hash })
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.hash, self.id)
    }
}

/// What is wrong at the first broken place of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// The row's columns no longer hash to the seal recorded for it.
    Modified,
    /// A sealed row is gone.
    Missing,
    /// A row sits below the chain's head without a seal: it was inserted after the chain had
    /// passed its id (or its seal was removed).
    Inserted,
    /// The anchored head's row is sealed with another hash: the chain was rewritten up to it.
    Rewritten,
    /// The anchored head's row is no longer sealed: the chain was cut before it.
    Truncated,
}

impl Breach {
    /// One line for people.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Modified => "modified: its columns no longer hash to the seal recorded for it",
            Self::Missing => "missing: the row was sealed and has been deleted",
            Self::Inserted => {
                "inserted: the row has no seal although later rows do (added after the chain had \
                 passed its id, or its seal was removed)"
            }
            Self::Rewritten => {
                "rewritten: the anchored head is sealed with another hash (the chain was rebuilt \
                 up to it)"
            }
            Self::Truncated => {
                "truncated: the anchored head is no longer sealed (rows and seals were cut from \
                 the end)"
            }
        }
    }
}

/// The first broken place of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The audit row id.
    pub id: i64,
    /// What is wrong there.
    pub breach: Breach,
}

/// What a walk of the chain found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Rows sealed and verified (before the first break, if any).
    pub sealed: u64,
    /// Rows after the head, not sealed yet.
    pub unsealed: u64,
    /// The chain's head: the last verified seal.
    pub head: Option<(i64, String)>,
    /// The first break, if any.
    pub broken: Option<Broken>,
}

impl Verification {
    /// The head as `HASH@ID`, to record elsewhere.
    pub fn anchor(&self) -> Option<Anchor> {
        self.head.as_ref().map(|(id, hash)| Anchor {
            id: *id,
            hash: hash.clone(),
        })
    }
}

/// Walks the chain in id order, one [`ChainEntry`] at a time.
#[derive(Debug, Default)]
pub struct Walk {
    prev: Option<AuditSeal>,
    /// The first row seen without a seal since the last seal.
    first_unsealed: Option<i64>,
    unsealed: u64,
    sealed: u64,
    expect: Option<Anchor>,
    anchor_seen: bool,
    broken: Option<Broken>,
}

impl Walk {
    /// A walk that also checks the chain still holds `expect`.
    pub fn new(expect: Option<Anchor>) -> Self {
        Self {
            expect,
            ..Self::default()
        }
    }

    /// Whether the walk found a break (then it stops).
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    fn fail(&mut self, id: i64, breach: Breach) {
        self.broken = Some(Broken { id, breach });
    }

    /// Takes the next id of the trail.
    pub fn step(&mut self, entry: &ChainEntry) {
        if self.broken.is_some() {
            return;
        }
        let Some(seal) = &entry.seal else {
            // A row not sealed (yet): fine if no later row is.
            if entry.row.is_some() {
                self.first_unsealed.get_or_insert(entry.id);
                self.unsealed += 1;
            }
            return;
        };
        if let Some(id) = self.first_unsealed {
            return self.fail(id, Breach::Inserted);
        }
        let prev_id = self.prev.as_ref().map_or(0, |p| p.audit_id);
        if seal.prev_audit_id > prev_id {
            // The seal names a predecessor the walk never met: that row went with its seal.
            return self.fail(seal.prev_audit_id, Breach::Missing);
        }
        if seal.prev_audit_id < prev_id {
            // The previous seal is not the one this seal follows: it was slipped in.
            return self.fail(prev_id, Breach::Inserted);
        }
        let Some(row) = &entry.row else {
            return self.fail(entry.id, Breach::Missing);
        };
        if link(self.prev.as_ref(), row) != seal.hash {
            return self.fail(entry.id, Breach::Modified);
        }
        if let Some(expect) = &self.expect
            && expect.id == entry.id
        {
            if expect.hash != seal.hash {
                return self.fail(entry.id, Breach::Rewritten);
            }
            self.anchor_seen = true;
        }
        self.sealed += 1;
        self.prev = Some(seal.clone());
    }

    /// The verdict once every id was taken.
    pub fn finish(mut self) -> Verification {
        if self.broken.is_none()
            && let Some(expect) = &self.expect
            && !self.anchor_seen
        {
            let id = expect.id;
            self.fail(id, Breach::Truncated);
        }
        Verification {
            sealed: self.sealed,
            unsealed: if self.broken.is_some() {
                0
            } else {
                self.unsealed
            },
            head: self.prev.map(|p| (p.audit_id, p.hash)),
            broken: self.broken,
        }
    }
}

/// Walks the whole trail of `store` (reading only), checking every seal and, with `expect`,
/// that the chain still holds that head.
pub async fn verify(store: &AnyStore, expect: Option<Anchor>) -> Result<Verification> {
    let mut walk = Walk::new(expect);
    let mut after = 0;
    loop {
        let page = store.audit_chain(after, PAGE).await?;
        for entry in &page {
            walk.step(entry);
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize && !walk.is_broken() => after = last.id,
            _ => break,
        }
    }
    Ok(walk.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEntry, Severity};
    use chrono::TimeZone;
    use serde_json::json;

    fn row(id: i64, detail: Value) -> AuditRow {
        AuditRow {
            id,
            at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 21, 10, 0, 0)
                .unwrap(),
            entry: AuditEntry::new("test.kind", "a message")
                .severity(Severity::Warning)
                .detail(detail),
        }
    }

    fn sealed(rows: &[AuditRow]) -> Vec<ChainEntry> {
        let mut prev: Option<AuditSeal> = None;
        rows.iter()
            .map(|r| {
                let seal = AuditSeal {
                    audit_id: r.id,
                    prev_audit_id: prev.as_ref().map_or(0, |p| p.audit_id),
                    hash: link(prev.as_ref(), r),
                    sealed_at: r.at,
                };
                prev = Some(seal.clone());
                ChainEntry {
                    id: r.id,
                    row: Some(r.clone()),
                    seal: Some(seal),
                }
            })
            .collect()
    }

    fn walk(entries: &[ChainEntry], expect: Option<Anchor>) -> Verification {
        let mut walk = Walk::new(expect);
        for e in entries {
            walk.step(e);
        }
        walk.finish()
    }

    #[test]
    fn key_order_and_spacing_of_the_detail_do_not_change_the_hash_its_values_do() {
        let a = row(1, json!({"b": 1, "a": {"y": [1, 2], "x": null}}));
        let b = row(
            1,
            serde_json::from_str(r#"{ "a": {"x": null, "y": [1,2]}, "b": 1 }"#).unwrap(),
        );
        assert_eq!(link(None, &a), link(None, &b));
        let c = row(1, json!({"b": 2, "a": {"y": [1, 2], "x": null}}));
        assert_ne!(link(None, &a), link(None, &c));
        // A field moved from one column to the next is another encoding.
        let mut d = row(1, json!({}));
        d.entry.org_id = Some("ab".into());
        let mut e = row(1, json!({}));
        e.entry.org_id = Some("a".into());
        e.entry.channel = Some("b".into());
        assert_ne!(canonical(&d), canonical(&e));
    }

    #[test]
    fn an_intact_chain_verifies_with_unsealed_rows_after_its_head() {
        let rows: Vec<_> = (1..=4).map(|id| row(id, json!({ "n": id }))).collect();
        let mut entries = sealed(&rows[..3]);
        entries.push(ChainEntry {
            id: 4,
            row: Some(rows[3].clone()),
            seal: None,
        });
        let v = walk(&entries, None);
        assert_eq!((v.sealed, v.unsealed, v.broken.clone()), (3, 1, None));
        assert_eq!(v.head.as_ref().unwrap().0, 3);
        let anchor = v.anchor().unwrap();
        assert_eq!(anchor.to_string().parse::<Anchor>().unwrap(), anchor);
        assert_eq!(walk(&entries, Some(anchor)).broken, None);
    }

    #[test]
    fn each_kind_of_tampering_names_its_row() {
        let rows: Vec<_> = (1..=5).map(|id| row(id * 2, json!({ "n": id }))).collect();
        let entries = sealed(&rows);
        let broken = |entries: &[ChainEntry]| walk(entries, None).broken.unwrap();

        let mut modified = entries.clone();
        modified[2].row.as_mut().unwrap().entry.message = "rewritten".into();
        assert_eq!(
            broken(&modified),
            Broken {
                id: 6,
                breach: Breach::Modified
            }
        );

        let mut deleted = entries.clone();
        deleted[1].row = None;
        assert_eq!(
            broken(&deleted),
            Broken {
                id: 4,
                breach: Breach::Missing
            }
        );

        let mut gone_with_seal = entries.clone();
        gone_with_seal.remove(1);
        assert_eq!(
            broken(&gone_with_seal),
            Broken {
                id: 4,
                breach: Breach::Missing
            }
        );

        let mut inserted = entries.clone();
        inserted.insert(
            2,
            ChainEntry {
                id: 5,
                row: Some(row(5, json!({}))),
                seal: None,
            },
        );
        assert_eq!(
            broken(&inserted),
            Broken {
                id: 5,
                breach: Breach::Inserted
            }
        );

        let anchor = walk(&entries, None).anchor().unwrap();
        let v = walk(&entries[..3], Some(anchor.clone()));
        assert_eq!(
            v.broken,
            Some(Broken {
                id: 10,
                breach: Breach::Truncated
            })
        );
        let mut rebuilt = rows.clone();
        rebuilt[0].entry.message = "rewritten".into();
        let v = walk(&sealed(&rebuilt), Some(anchor));
        assert_eq!(
            v.broken,
            Some(Broken {
                id: 10,
                breach: Breach::Rewritten
            })
        );
        assert_eq!(
            walk(&sealed(&rebuilt), None).broken,
            None,
            "without an anchor a rebuilt chain passes"
        );
    }

    #[test]
    fn anchors_are_parsed_strictly() {
        let hash = "ab".repeat(32);
        assert_eq!(
            format!("{}@7", hash.to_uppercase())
                .parse::<Anchor>()
                .unwrap(),
            Anchor {
                id: 7,
                hash: hash.clone()
            }
        );
        for bad in [
            hash.clone(),
            format!("{hash}@0"),
            format!("{hash}@x"),
            "abc@7".into(),
        ] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad}");
        }
    }
}
