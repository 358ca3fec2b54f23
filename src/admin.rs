//! What the admin and audit commands print (`byocd channels list`, `sessions list|show`,
//! `audit`, `token status`). The binary opens the store and parses flags; the text is made here
//! so that tests and docs see exactly what an operator sees.
//!
//! Nothing here prints a token, a secret or a message body: lists show ids, states and times;
//! `sessions show` shows the end user's address, which is what an operator needs to find them.
//!
//! Much of what is printed was chosen by someone else (a sender's name, a provider's error
//! text, a quarantined body): control characters (C0, DEL, C1) and bidirectional overrides are
//! never written as they are, since they could steer the operator's terminal. Table cells and
//! human-readable text show them escaped (`\u{1b}`), JSON as `\u001b`, and CSV escapes them
//! when written to a terminal (see [`escape_controls`]).

use std::{borrow::Cow, collections::BTreeMap, fmt::Write as _};

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use uuid::Uuid;

use crate::{
    app::config_records,
    config::Config,
    store::{
        AnyStore, AuditFilter, AuditRow, OutboxFilter, QuarantinedWebhook, SessionFilter,
        SessionSummary, Store, StoredChannel, StoredOrg,
    },
};

/// How `byocd audit` and `byocd quarantine list` print their rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON Lines: one JSON object per row, one row per line.
    Json,
    /// RFC 4180 CSV with a header row and CRLF line ends.
    Csv,
}

/// Parses a `--since` value: RFC 3339 (`2026-11-21T10:00:00Z`) or a date (`2026-11-21`, its
/// midnight UTC).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time(text, false)
}

/// Parses an `--until` value (rows before it): RFC 3339, or a date, meaning the end of that day
/// UTC (`--since 2026-11-21 --until 2026-11-21` is that day).
pub fn parse_until(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time(text, true)
}

fn parse_time(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end_of_day {
            day.succ_opt().ok_or("the date is out of range")?
        } else {
            day
        };
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "`{text}` is neither an RFC 3339 time (2026-11-21T10:00:00Z, 2026-11-21T11:00:00+01:00) \
         nor a date (2026-11-21)"
    ))
}

/// A time as the tables show it: UTC, to the second.
fn when(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn when_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(when).unwrap_or_else(|| "-".into())
}

/// A duration for people: `45s`, `12m 5s`, `11h 27m`, `3d 2h`.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// Whether `c` could steer a terminal or disguise text: a control character (C0, DEL, C1) or a
/// bidirectional formatting character.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every control and bidirectional formatting character written as an escape
/// (`\n`, `\r`, `\t`, else `\u{1b}`); with `keep_lines`, line feeds and tabs stay as they are.
pub fn escape_controls(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let escape = |c: char| is_unsafe(c) && !(keep_lines && matches!(c, '\n' | '\t'));
    if !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            _ if !escape(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// Bytes as text that is safe on a terminal: UTF-8 with controls escaped (line feeds and tabs
/// kept), every byte that is not UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape_controls(chunk.valid(), true));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// JSON text (as serde_json writes it, which escapes only C0) with DEL, C1 and bidirectional
/// formatting characters escaped too (`\u009b`): the same JSON value, inert on a terminal.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    // Raw C0 characters in serde_json's output are its own layout (pretty printing's line
    // feeds): inside strings it escapes them all.
    let escape = |c: char| is_unsafe(c) && u32::from(c) >= 0x20;
    if !json.chars().any(escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if escape(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Aligned columns, two spaces apart; the last column is not padded. Cells are shown with their
/// control characters escaped.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| escape_controls(cell, false).into_owned())
                .collect()
        })
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Fails with the known names when `channel` is neither configured nor stored.
pub async fn check_channel(config: &Config, store: &AnyStore, channel: &str) -> anyhow::Result<()> {
    if config.channels.iter().any(|c| c.name == channel) {
        return Ok(());
    }
    let stored = store.channels().await?;
    if stored.iter().any(|c| c.name == channel) {
        return Ok(());
    }
    let mut known: Vec<&str> = config
        .channels
        .iter()
        .map(|c| c.name.as_str())
        .chain(stored.iter().map(|c| c.name.as_str()))
        .collect();
    known.sort_unstable();
    known.dedup();
    bail!(
        "--channel {channel}: no such channel, configured or stored (known: {})",
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    )
}

/// `byocd channels list`: every channel of the configuration files and of the database.
pub async fn channels_list(
    config: &Config,
    store: &AnyStore,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let (_, configured) = config_records(config);
    let stored: BTreeMap<String, StoredChannel> = store
        .channels()
        .await?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let orgs: BTreeMap<String, StoredOrg> = store
        .orgs()
        .await?
        .into_iter()
        .map(|o| (o.org_id.clone(), o))
        .collect();
    let mut names: Vec<&str> = configured
        .iter()
        .map(|c| c.name.as_str())
        .chain(stored.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut rows = Vec::new();
    for name in names {
        let file = configured.iter().find(|c| c.name == name);
        let row = stored.get(name);
        let (provider, product, org_id) = match (file, row) {
            (Some(f), _) => (&f.provider, &f.product, &f.org_id),
            (None, Some(r)) => (&r.provider, &r.product, &r.org_id),
            (None, None) => unreachable!("every name comes from one of them"),
        };
        let org = orgs.get(org_id);
        let (state, until, why) = match (file, row) {
            (Some(_), None) => (
                "not yet synced".to_owned(),
                "-".to_owned(),
                "in the files, not in the database: start or reload the daemon".to_owned(),
            ),
            (Some(_), Some(r)) if r.retired_at.is_some() => (
                "not yet synced".to_owned(),
                "-".to_owned(),
                format!(
                    "retired {}, back in the files: start or reload the daemon",
                    when_opt(r.retired_at)
                ),
            ),
            (None, Some(r)) if r.retired_at.is_some() => (
                "retired".to_owned(),
                "-".to_owned(),
                format!("retired {}", when_opt(r.retired_at)),
            ),
            (None, Some(_)) => (
                "not configured".to_owned(),
                "-".to_owned(),
                "no longer in the files: retired when the daemon next starts or reloads".to_owned(),
            ),
            (Some(f), Some(r)) => {
                let changed = if f.content_hash == r.content_hash {
                    String::new()
                } else {
                    "; its file changed since the daemon synced it: reload to apply".to_owned()
                };
                let (state, until, why) = if let Some(o) = org.filter(|o| o.disabled()) {
                    (
                        "org disabled".to_owned(),
                        "reload".to_owned(),
                        o.pause_reason.clone().unwrap_or_default(),
                    )
                } else if let Some(next_probe) = r.paused_until {
                    (
                        "paused".to_owned(),
                        format!("next probe {}", when(next_probe)),
                        r.pause_reason.clone().unwrap_or_default(),
                    )
                } else if let Some(o) = org.filter(|o| o.paused_until.is_some_and(|t| t > now)) {
                    (
                        "org paused".to_owned(),
                        when_opt(o.paused_until),
                        format!(
                            "token minting paused: {}",
                            o.pause_reason.as_deref().unwrap_or("")
                        ),
                    )
                } else {
                    ("active".to_owned(), "-".to_owned(), String::new())
                };
                (
                    state,
                    until,
                    format!("{why}{changed}")
                        .trim_start_matches("; ")
                        .to_owned(),
                )
            }
            (None, None) => unreachable!(),
        };
        rows.push(vec![
            name.to_owned(),
            provider.clone(),
            product.clone(),
            org_id.clone(),
            if file.is_some() { "yes" } else { "no" }.to_owned(),
            match row {
                None => "no".to_owned(),
                Some(r) if r.retired_at.is_some() => "retired".to_owned(),
                Some(_) => "yes".to_owned(),
            },
            state,
            until,
            why,
        ]);
    }
    if rows.is_empty() {
        return Ok("no channels, configured or stored\n".into());
    }
    Ok(table(
        &[
            "CHANNEL",
            "PROVIDER",
            "PRODUCT",
            "ORG",
            "CONFIGURED",
            "STORED",
            "STATE",
            "UNTIL",
            "WHY",
        ],
        &rows,
    ))
}

fn routed_to(s: &SessionSummary) -> String {
    match &s.routed_to {
        None => "-".into(),
        Some(r) => {
            let target = match (&r.target_type, &r.target_id) {
                (Some(t), Some(id)) => format!("{t} {id}"),
                (Some(t), None) => t.clone(),
                (None, _) => "?".into(),
            };
            format!("{target} ({}, {})", r.status, r.kind)
        }
    }
}

/// `byocd sessions list`.
pub async fn sessions_list(store: &AnyStore, filter: &SessionFilter) -> anyhow::Result<String> {
    let sessions = store.sessions(filter).await?;
    if sessions.is_empty() {
        return Ok("no sessions\n".into());
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.channel.clone(),
                s.conversation_id.to_string(),
                s.status.clone(),
                when(s.opened_at),
                when(s.last_activity_at),
                routed_to(s),
            ]
        })
        .collect();
    Ok(table(
        &[
            "SESSION",
            "CHANNEL",
            "CONVERSATION",
            "STATUS",
            "STARTED",
            "LAST ACTIVITY",
            "ROUTED TO",
        ],
        &rows,
    ))
}

/// What `byocd sessions show` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKey {
    /// byocd's own session id (`sessions list`).
    Byocd(Uuid),
    /// Salesforce's MessagingSession id, which is also the session's work item id: `id` in its
    /// 15-character form, `given` as typed (15 or 18 characters).
    WorkItem {
        /// The 15-character id.
        id: String,
        /// The text given.
        given: String,
    },
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Byocd(id) => write!(f, "{id}"),
            Self::WorkItem { given, .. } => write!(f, "{given}"),
        }
    }
}

/// Parses a `sessions show` argument: byocd's session id (a UUID), or a Salesforce
/// MessagingSession / work item id of 15 characters or in the 18-character form (whose last
/// three characters restore the case of the first 15, so its letters may be typed in any case).
pub fn parse_session_key(text: &str) -> Result<SessionKey, String> {
    let text = text.trim();
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(SessionKey::Byocd(id));
    }
    let id = match text.len() {
        15 if text.chars().all(|c| c.is_ascii_alphanumeric()) => text.to_owned(),
        18 if text.chars().all(|c| c.is_ascii_alphanumeric()) => salesforce_id_15(text).ok_or(
            "its last three characters are not the checksum of an 18-character Salesforce id",
        )?,
        _ => {
            return Err(
                "neither byocd's session id (a UUID, from `sessions list`) nor a \
                        Salesforce MessagingSession / work item id (15 or 18 letters and digits)"
                    .into(),
            );
        }
    };
    Ok(SessionKey::WorkItem {
        id,
        given: text.to_owned(),
    })
}

/// The 15-character form of an 18-character Salesforce id: each suffix character says which of
/// five characters are upper case. `None` when the suffix does not fit the id.
fn salesforce_id_15(id18: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let (id, suffix) = id18.split_at(15);
    let mut out = String::with_capacity(15);
    for (chunk, check) in id.as_bytes().chunks(5).zip(suffix.bytes()) {
        let bits = ALPHABET
            .iter()
            .position(|&a| a == check.to_ascii_uppercase())?;
        for (i, &c) in chunk.iter().enumerate() {
            let upper = bits & (1 << i) != 0;
            match (c.is_ascii_alphabetic(), upper) {
                (true, true) => out.push(char::from(c.to_ascii_uppercase())),
                (true, false) => out.push(char::from(c.to_ascii_lowercase())),
                (false, false) => out.push(char::from(c)),
                (false, true) => return None,
            }
        }
    }
    Some(out)
}

/// The byocd session `key` names, if there is one.
pub async fn find_session(store: &AnyStore, key: &SessionKey) -> anyhow::Result<Option<Uuid>> {
    Ok(match key {
        SessionKey::Byocd(id) => store.session(*id).await?.map(|_| *id),
        SessionKey::WorkItem { id, .. } => store.session_by_work_item(id).await?,
    })
}

/// `byocd sessions show ID`: the session, its conversation and end user, its routings, its
/// outbox rows (not their payloads) and its timeline. `None`: no such session.
pub async fn session_show(store: &AnyStore, id: Uuid) -> anyhow::Result<Option<String>> {
    let Some(d) = store.session(id).await? else {
        return Ok(None);
    };
    let s = &d.summary;
    let u = &d.end_user;
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "{:<16}{value}", format!("{name}:"));
    };
    field(&mut out, "session", &s.id.to_string());
    field(&mut out, "channel", &s.channel);
    field(&mut out, "status", &s.status);
    field(
        &mut out,
        "work item",
        s.work_item_id.as_deref().unwrap_or("- (not yet known)"),
    );
    field(&mut out, "started", &when(s.opened_at));
    field(&mut out, "last activity", &when(s.last_activity_at));
    field(&mut out, "last inbound", &when_opt(d.last_inbound_at));
    field(&mut out, "inactivated", &when_opt(d.inactivated_at));
    let ended = match s.ended_at {
        None => "-".to_owned(),
        Some(t) => format!(
            "{} by {} ({})",
            when(t),
            d.ended_by.as_deref().unwrap_or("?"),
            d.end_reason.as_deref().unwrap_or("no reason recorded")
        ),
    };
    field(&mut out, "ended", &ended);
    field(&mut out, "routed to", &routed_to(s));
    field(&mut out, "conversation", &s.conversation_id.to_string());
    field(
        &mut out,
        "  identifier",
        d.conversation_identifier
            .as_deref()
            .unwrap_or("- (not yet known)"),
    );
    field(&mut out, "  started", &when(d.conversation_created_at));
    field(&mut out, "end user", &u.id.to_string());
    field(&mut out, "  key", &u.provider_user_key);
    field(&mut out, "  client id", &u.salesforce_client_id);
    field(&mut out, "  msisdn", u.msisdn.as_deref().unwrap_or("-"));
    field(
        &mut out,
        "  provider id",
        u.channel_user_id.as_deref().unwrap_or("-"),
    );
    field(&mut out, "  name", u.display_name.as_deref().unwrap_or("-"));
    field(&mut out, "  first seen", &when(u.created_at));

    let routings = store.routings_of_session(id).await?;
    let _ = writeln!(out, "\nroutings ({}):", routings.len());
    if !routings.is_empty() {
        let rows: Vec<Vec<String>> = routings
            .iter()
            .map(|r| {
                let g = &r.routing;
                vec![
                    r.id.to_string(),
                    g.kind.clone(),
                    match &g.target_id {
                        Some(t) => format!("{} {t}", g.target_type),
                        None => g.target_type.clone(),
                    },
                    g.status.clone(),
                    g.attempts.to_string(),
                    when(r.created_at),
                    g.agent_work_id.clone().unwrap_or_else(|| "-".into()),
                    g.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&indent(&table(
            &[
                "ROUTING",
                "KIND",
                "TARGET",
                "STATUS",
                "TRY",
                "CREATED",
                "AGENT WORK",
                "LAST ERROR",
            ],
            &rows,
        )));
    }

    let outbox = store
        .outbox(&OutboxFilter {
            session_id: Some(id),
            limit: 1_000,
            ..OutboxFilter::default()
        })
        .await?;
    let _ = writeln!(
        out,
        "\noutbox rows ({}; `byocd outbox show ID` for one):",
        outbox.len()
    );
    if !outbox.is_empty() {
        let rows: Vec<Vec<String>> = outbox
            .iter()
            .rev()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.kind.clone(),
                    r.status.clone(),
                    r.attempts.to_string(),
                    when(r.created_at),
                    when_opt(r.finished_at),
                    r.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&indent(&table(
            &[
                "ID",
                "KIND",
                "STATUS",
                "TRY",
                "CREATED",
                "FINISHED",
                "LAST ERROR",
            ],
            &rows,
        )));
    }

    let timeline = store
        .audit(&AuditFilter {
            session_id: Some(id),
            ..AuditFilter::default()
        })
        .await?;
    let _ = writeln!(out, "\ntimeline ({} audit rows):", timeline.len());
    if !timeline.is_empty() {
        let rows: Vec<Vec<String>> = timeline
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    when(a.at),
                    a.entry.severity.as_str().to_owned(),
                    a.entry.kind.clone(),
                    a.entry.message.clone(),
                ]
            })
            .collect();
        out.push_str(&indent(&table(
            &["AUDIT", "AT", "SEVERITY", "KIND", "MESSAGE"],
            &rows,
        )));
    }
    Ok(Some(out))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// The columns of `byocd audit --format csv`, as the `audit_trail` view names them.
pub const AUDIT_COLUMNS: [&str; 11] = [
    "id",
    "at",
    "severity",
    "kind",
    "actor",
    "org_id",
    "channel",
    "conversation_id",
    "session_id",
    "message",
    "detail",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote, CR or LF, quotes doubled.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Rows in `format`, the same way for every list that offers `--format`: a table (aligned
/// columns, `empty` when there are no rows), JSON Lines (each row serialized, nothing when there
/// are none) or RFC 4180 CSV (`columns`, then one record per row, CRLF line ends).
struct Listing<'a, T> {
    /// What a table says when there are no rows.
    empty: &'a str,
    /// The table's header.
    header: &'a [&'a str],
    /// A row's table cells.
    cells: fn(&T) -> Vec<String>,
    /// The CSV header.
    columns: &'a [&'a str],
    /// A row's CSV fields, unquoted.
    fields: fn(&T) -> Vec<String>,
}

impl<T: serde::Serialize> Listing<'_, T> {
    fn render(&self, rows: &[T], format: Format) -> anyhow::Result<String> {
        let mut out = String::new();
        match format {
            Format::Table => {
                if rows.is_empty() {
                    return Ok(self.empty.to_owned());
                }
                let cells: Vec<Vec<String>> = rows.iter().map(self.cells).collect();
                out = table(self.header, &cells);
            }
            Format::Json => {
                for row in rows {
                    let json = serde_json::to_string(row).context("a row as JSON")?;
                    out.push_str(&json_safe(&json));
                    out.push('\n');
                }
            }
            Format::Csv => {
                out.push_str(&self.columns.join(","));
                out.push_str("\r\n");
                for row in rows {
                    let line: Vec<String> =
                        (self.fields)(row).iter().map(|f| csv_field(f)).collect();
                    out.push_str(&line.join(","));
                    out.push_str("\r\n");
                }
            }
        }
        Ok(out)
    }
}

/// `byocd audit` output: the rows in `format`. A table says so when there are none; JSON Lines
/// prints nothing and CSV only its header.
pub fn render_audit(rows: &[AuditRow], format: Format) -> anyhow::Result<String> {
    Listing {
        empty: "no audit rows match\n",
        header: &[
            "ID", "AT", "SEVERITY", "KIND", "ACTOR", "CHANNEL", "SESSION", "MESSAGE",
        ],
        cells: |a: &AuditRow| {
            let e = &a.entry;
            vec![
                a.id.to_string(),
                when(a.at),
                e.severity.as_str().to_owned(),
                e.kind.clone(),
                e.actor.clone(),
                e.channel.clone().unwrap_or_else(|| "-".into()),
                e.session_id
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.message.clone(),
            ]
        },
        columns: &AUDIT_COLUMNS,
        fields: |a: &AuditRow| {
            let e = &a.entry;
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            let uuid = |v: Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
            vec![
                a.id.to_string(),
                a.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                e.severity.as_str().to_owned(),
                e.kind.clone(),
                e.actor.clone(),
                opt(&e.org_id),
                opt(&e.channel),
                uuid(e.conversation_id),
                uuid(e.session_id),
                e.message.clone(),
                e.detail.to_string(),
            ]
        },
    }
    .render(rows, format)
}

/// The columns of `byocd quarantine list --format csv`: the keys of its JSON objects.
pub const QUARANTINE_COLUMNS: [&str; 7] = [
    "id",
    "received_at",
    "channel",
    "provider",
    "size",
    "content_type",
    "reason",
];

/// `byocd quarantine list` output: the quarantined webhooks in `format`, never their bodies
/// (`quarantine show ID` prints one). A table says so when there are none; JSON Lines prints
/// nothing and CSV only its header.
pub fn render_quarantined(rows: &[QuarantinedWebhook], format: Format) -> anyhow::Result<String> {
    Listing {
        empty: "no quarantined webhooks\n",
        header: &["ID", "RECEIVED", "CHANNEL", "PROVIDER", "BYTES", "REASON"],
        cells: |q: &QuarantinedWebhook| {
            vec![
                q.id.to_string(),
                when(q.received_at),
                q.channel.clone(),
                q.provider.clone(),
                q.size.to_string(),
                q.reason.clone(),
            ]
        },
        columns: &QUARANTINE_COLUMNS,
        fields: |q: &QuarantinedWebhook| {
            vec![
                q.id.to_string(),
                q.received_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                q.channel.clone(),
                q.provider.clone(),
                q.size.to_string(),
                q.content_type.clone().unwrap_or_default(),
                q.reason.clone(),
            ]
        },
    }
    .render(rows, format)
}

/// `byocd token status`: per configured org, whether a token is stored and how old it is, the
/// last mint attempt, and whether minting is paused or the org disabled. Never the token.
pub async fn token_status(
    config: &Config,
    store: &AnyStore,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    if config.orgs.is_empty() {
        return Ok("no orgs configured\n".into());
    }
    let stored: BTreeMap<String, StoredOrg> = store
        .orgs()
        .await?
        .into_iter()
        .map(|o| (o.org_id.clone(), o))
        .collect();
    let key_id = config.token_key.as_ref().map(|k| k.id().to_owned());
    let mut out = String::new();
    for org in &config.orgs {
        let org_id = org.org_id.as_str();
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "org {org_id} ({})", org.name);
        let field = |out: &mut String, name: &str, value: &str| {
            let _ = writeln!(out, "  {:<12}{value}", format!("{name}:"));
        };
        let token = store.token(org_id).await?;
        match &token {
            None => field(&mut out, "token", "none stored (minted at the first call)"),
            Some(t) => {
                let key = match &key_id {
                    Some(k) if *k == t.token.key_id => {
                        format!("sealed with key {k}, the configured one")
                    }
                    Some(k) => format!(
                        "sealed with key {}, not the configured key {k}: it cannot be opened and \
                         will be replaced at the next mint",
                        t.token.key_id
                    ),
                    None => format!("sealed with key {}", t.token.key_id),
                };
                field(&mut out, "token", &format!("stored ({key})"));
                field(
                    &mut out,
                    "minted",
                    &format!(
                        "{} ({} ago)",
                        when(t.minted_at),
                        human_duration(now - t.minted_at)
                    ),
                );
                let expires = match org.token_max_age {
                    Some(max) => {
                        let at = t.minted_at
                            + chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX);
                        if at > now {
                            format!(
                                "{} (token_max_age; in {})",
                                when(at),
                                human_duration(at - now)
                            )
                        } else {
                            format!(
                                "{} (token_max_age; passed, replaced at the next call)",
                                when(at)
                            )
                        }
                    }
                    None => "unknown: Salesforce gives no expiry; used until refused \
                             (set token_max_age to bound it)"
                        .to_owned(),
                };
                field(&mut out, "expires", &expires);
            }
        }
        let newest = |kind: &str| AuditFilter {
            kind: Some(kind.into()),
            org_id: Some(org_id.into()),
            limit: 1,
            ..AuditFilter::default()
        };
        let ok = store.audit(&newest("token.minted")).await?.pop();
        let failed = store.audit(&newest("token.mint_failed")).await?.pop();
        let describe = |a: &AuditRow| {
            let d = &a.entry.detail;
            let mut text = format!(
                "{} at {} ({} ago)",
                d["outcome"].as_str().unwrap_or(&a.entry.kind),
                when(a.at),
                human_duration(now - a.at)
            );
            if let Some(reason) = d["reason"].as_str() {
                let _ = write!(text, "; why: {reason}");
            }
            if let Some(ms) = d["latency_ms"].as_u64() {
                let _ = write!(text, "; {ms} ms");
            }
            if a.entry.kind == "token.mint_failed" {
                let _ = write!(text, "; {}", a.entry.message);
            }
            text
        };
        match (&ok, &failed) {
            (None, None) => field(&mut out, "last mint", "none recorded"),
            (Some(o), Some(f)) if f.id > o.id => {
                field(&mut out, "last mint", &describe(f));
                field(&mut out, "last ok", &describe(o));
            }
            (Some(o), _) => field(&mut out, "last mint", &describe(o)),
            (None, Some(f)) => field(&mut out, "last mint", &describe(f)),
        }
        let paused = match stored.get(org_id) {
            None => "- (org not yet synced: start or reload the daemon)".to_owned(),
            Some(o) if o.disabled() => format!(
                "org disabled by the relay until the configuration is reloaded: {}",
                o.pause_reason.as_deref().unwrap_or("")
            ),
            Some(o) => match o.paused_until {
                Some(until) if until > now => format!(
                    "token minting paused until {} (in {}): {}",
                    when(until),
                    human_duration(until - now),
                    o.pause_reason.as_deref().unwrap_or("")
                ),
                _ => "no".to_owned(),
            },
        };
        field(&mut out, "paused", &paused);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates_and_anything_else_is_refused() {
        assert_eq!(
            parse_since("2026-11-21T10:00:00+01:00").unwrap(),
            "2026-11-21T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_since("2026-11-21").unwrap(),
            "2026-11-21T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_until("2026-11-21").unwrap(),
            "2026-11-22T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        for bad in [
            "yesterday",
            "21/11/2026",
            "2026-11-21T10:00:00",
            "2026-13-01",
            "",
        ] {
            let err = parse_since(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn sessions_are_named_by_uuid_or_salesforce_id() {
        let uuid = "01a20007-f932-756f-afc8-e2691a439bfc";
        assert_eq!(
            parse_session_key(uuid).unwrap(),
            SessionKey::Byocd(uuid.parse().unwrap())
        );
        let work_item = |text: &str| match parse_session_key(text).unwrap() {
            SessionKey::WorkItem { id, .. } => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(work_item("0Mw922200000001"), "0Mw922200000001");
        // The 18-character form, in any case: its suffix restores the case.
        assert_eq!(work_item("001A0000006Vm9rIAC"), "001A0000006Vm9r");
        assert_eq!(work_item("001a0000006vm9riac"), "001A0000006Vm9r");
        assert_eq!(work_item("00D000000000001EAA"), "00D000000000001");
        // A suffix marking a digit upper case fits no id.
        assert!(parse_session_key("001A0000006Vm9rIA5").is_err());
        for bad in ["not-a-uuid", "0Mw9222", "0Mw92220000000!", ""] {
            assert!(parse_session_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn durations_read_like_people_say_them() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(45)), "45s");
        assert_eq!(human_duration(d(12 * 60 + 5)), "12m 5s");
        assert_eq!(human_duration(d(11 * 3600 + 27 * 60)), "11h 27m");
        assert_eq!(human_duration(d(3 * 86_400 + 2 * 3600 + 5)), "3d 2h");
        assert_eq!(human_duration(d(-5)), "0s");
    }

    #[test]
    fn control_characters_are_escaped_wherever_they_are_shown() {
        let hostile = "a\u{1b}]0;owned\u{7}b\u{9b}2Jc\r\nd\te\u{202e}f";
        assert_eq!(
            escape_controls(hostile, false),
            "a\\u{1b}]0;owned\\u{7}b\\u{9b}2Jc\\r\\nd\\te\\u{202e}f"
        );
        assert_eq!(
            escape_controls(hostile, true),
            "a\\u{1b}]0;owned\\u{7}b\\u{9b}2Jc\\r\nd\te\\u{202e}f"
        );
        assert!(matches!(
            escape_controls("plain é", false),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape_bytes(b"ok\x1b[31m\xff\n"), "ok\\u{1b}[31m\\xff\n");
        let json = serde_json::to_string(&serde_json::json!({ "m": hostile })).unwrap();
        let safe = json_safe(&json);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["m"], hostile);
        let text = table(&["A", "B"], &[vec!["x\u{1b}[2J".into(), "y\nz".into()]]);
        assert_eq!(text, "A           B\nx\\u{1b}[2J  y\\nz\n");
    }

    #[test]
    fn tables_align_every_column_but_the_last() {
        let text = table(
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["b".into(), "".into()],
            ],
        );
        assert_eq!(text, "A          LONGER\nwide cell  x\nb\n");
    }
}
