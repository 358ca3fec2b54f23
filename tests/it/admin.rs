//! The admin and audit commands of the real binary (`channels list`, `sessions list|show`,
//! `audit`, `token status`, `outbox show|retry|discard`, `explain`), run beside an in-process
//! daemon (the harness holds the store, as `byocd serve` would) on a database its traffic
//! filled, on both backends.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::process::Output;

use byocd::{
    app::config_records,
    sandbox::salesforce::Failure,
    store::{AuditFilter, AuditRow, OutboxFilter, Store, relay::kind},
};
use chrono::Duration;
use secrecy::ExposeSecret;
use support::{
    TestDb,
    channels::{RCS_CHANNEL, WA_CHANNEL},
    harness::{Harness, kaleyra, wa_text},
    salesforce::ORG_ID,
};

const RCS_USER: &str = "+447700900777";
const WA_USER: &str = "+447700900888";
const SESSION_ENDPOINT: &str = "/api/v1/messagingSession";
const INTERACTIONS: &str = "/api/v1/interactions";

/// `byocd ARGS…` with the harness's configuration and database.
async fn byocd(h: &Harness, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_byocd"))
        .arg("--config")
        .arg(&h.config_dir.main_file)
        .args(args)
        .env_remove("BYOCD_CONFIG")
        .env("BYOCD__DATABASE__URL", &h.db.url)
        .output()
        .await
        .expect("the byocd binary runs")
}

/// Its standard output; it must have succeeded.
async fn ok(h: &Harness, args: &[&str]) -> String {
    let out = byocd(h, args).await;
    assert!(
        out.status.success(),
        "byocd {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Its standard error; it must have failed.
async fn fails(h: &Harness, args: &[&str]) -> String {
    let out = byocd(h, args).await;
    assert!(
        !out.status.success(),
        "byocd {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The line of a table whose first column is `first`.
fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no line for {first} in:\n{table}"))
}

/// The cells of a table line (columns are two or more spaces apart; cells have single spaces).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

async fn audit(h: &Harness, filter: AuditFilter) -> Vec<AuditRow> {
    h.store.audit(&filter).await.unwrap()
}

async fn audit_kind(h: &Harness, kind: &str) -> Vec<AuditRow> {
    audit(
        h,
        AuditFilter {
            kind: Some(kind.into()),
            ..Default::default()
        },
    )
    .await
}

/// One end user on each channel, delivered; returns (RCS session, WhatsApp session).
async fn traffic(h: &Harness) -> (uuid::Uuid, uuid::Uuid) {
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "m-1", &RCS_USER[1..], Some("hello, rcs")),
    )
    .await;
    h.webhook(WA_CHANNEL, &wa_text("wa-1", WA_USER, "hello, whatsapp"))
        .await;
    h.drain().await;
    let inbound = audit_kind(h, "inbound.message").await;
    let session_of = |channel: &str| {
        inbound
            .iter()
            .find(|a| a.entry.channel.as_deref() == Some(channel))
            .and_then(|a| a.entry.session_id)
            .unwrap_or_else(|| panic!("no inbound.message row with a session for {channel}"))
    };
    (session_of(RCS_CHANNEL), session_of(WA_CHANNEL))
}

/// A minimal RFC 4180 reader: records of fields, quoted fields may hold commas, quotes
/// (doubled) and line breaks; records end with CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            '"' => panic!("a quote inside an unquoted field: {text}"),
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            '\n' => panic!("a bare LF ends a record; RFC 4180 wants CRLF"),
            _ => field.push(c),
        }
    }
    assert!(!quoted, "an unterminated quoted field");
    assert!(
        field.is_empty() && record.is_empty(),
        "the last record lacks its CRLF"
    );
    records
}

/// The Kaleyra channel's idle session is inactivated and Salesforce refuses it with `reason`.
async fn refuse_the_inactivation(h: &Harness, reason: &str) {
    let channel = h.config.channel(RCS_CHANNEL).unwrap().clone();
    h.clock.advance(Duration::minutes(31));
    let report = h.sweeper.sweep(&channel).await.unwrap().unwrap();
    assert_eq!(report.inactivated, 1);
    h.emulator
        .inject(SESSION_ENDPOINT, Failure::ErrorReason(reason.into()), 1);
    h.drain().await;
    assert_eq!(h.emulator.requests_to(SESSION_ENDPOINT).len(), 1);
}

async fn channels_list_shows_each_channel_its_state_and_why_it_is_paused(db: TestDb) {
    let h = Harness::start(db).await;
    traffic(&h).await;
    let list = ok(&h, &["channels", "list"]).await;
    assert!(list.starts_with("CHANNEL "), "{list}");
    assert_eq!(
        cells(row(&list, RCS_CHANNEL)),
        [
            RCS_CHANNEL,
            "kaleyra",
            "CCaaS",
            ORG_ID,
            "yes",
            "yes",
            "active",
            "-"
        ],
        "{list}"
    );
    assert_eq!(
        cells(row(&list, WA_CHANNEL)),
        [
            WA_CHANNEL,
            "8x8",
            "Messaging",
            ORG_ID,
            "yes",
            "yes",
            "active",
            "-"
        ],
        "{list}"
    );

    // Salesforce refuses the channel: the relay pauses it, and a separate process sees it.
    refuse_the_inactivation(&h, "PERMISSION_DENIED").await;
    assert!(h.relay.gate().paused().contains_key(RCS_CHANNEL));
    let next_probe = h.relay.gate().paused()[RCS_CHANNEL].next_probe;
    let list = ok(&h, &["channels", "list"]).await;
    let rcs = cells(row(&list, RCS_CHANNEL));
    assert_eq!(rcs[6], "paused", "{list}");
    assert_eq!(
        rcs[7],
        format!(
            "next probe {}",
            next_probe.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        "{list}"
    );
    assert!(rcs[8].contains("PERMISSION_DENIED"), "{list}");
    assert_eq!(cells(row(&list, WA_CHANNEL))[6], "active", "{list}");

    // The probe goes through: the channel is active again, here and for the admin.
    h.clock.advance(Duration::minutes(5));
    h.drain().await;
    h.drain().await;
    assert!(h.relay.gate().paused().is_empty());
    let list = ok(&h, &["channels", "list"]).await;
    assert_eq!(
        cells(row(&list, RCS_CHANNEL))[4..],
        ["yes", "yes", "active", "-"],
        "{list}"
    );

    // The WhatsApp file is removed: configured no longer, still stored until the next sync,
    // then retired.
    std::fs::remove_file(
        h.config_dir
            .path()
            .join("channels.d")
            .join(format!("{WA_CHANNEL}.toml")),
    )
    .unwrap();
    let list = ok(&h, &["channels", "list"]).await;
    assert_eq!(
        cells(row(&list, WA_CHANNEL))[4..7],
        ["no", "yes", "not configured"],
        "{list}"
    );
    let reduced = h.config_dir.load(&h.db.url);
    let (orgs, channels) = config_records(&reduced);
    let report = h.store.sync_config(&orgs, &channels).await.unwrap();
    assert_eq!(report.channels.retired, [WA_CHANNEL]);
    let list = ok(&h, &["channels", "list"]).await;
    let wa = cells(row(&list, WA_CHANNEL));
    assert_eq!(wa[4..7], ["no", "retired", "retired"], "{list}");
    assert!(wa[8].starts_with("retired 2026-11-21T"), "{list}");
    assert_eq!(cells(row(&list, RCS_CHANNEL))[6], "active", "{list}");
}

async fn a_disabled_org_shows_on_its_channels_and_in_token_status(db: TestDb) {
    let h = Harness::start(db).await;
    traffic(&h).await;
    refuse_the_inactivation(&h, "ORG_NOT_FOUND").await;
    assert!(h.relay.gate().disabled().contains_key(ORG_ID));
    let list = ok(&h, &["channels", "list"]).await;
    for channel in [RCS_CHANNEL, WA_CHANNEL] {
        let line = cells(row(&list, channel));
        assert_eq!(line[6..8], ["org disabled", "reload"], "{list}");
        assert!(line[8].contains("ORG_NOT_FOUND"), "{list}");
    }
    let status = ok(&h, &["token", "status"]).await;
    assert!(
        status.contains("org disabled by the relay until the configuration is reloaded"),
        "{status}"
    );
    assert!(status.contains("ORG_NOT_FOUND"), "{status}");

    // A reload (the daemon syncs its configuration and opens its gate) clears the record.
    h.relay.gate().reset();
    let (orgs, channels) = config_records(&h.config);
    h.store.sync_config(&orgs, &channels).await.unwrap();
    let lifted = byocd::lifecycle::pauses::lift(&h.store).await.unwrap();
    assert_eq!(lifted, [ORG_ID]);
    assert_eq!(audit_kind(&h, "org.disable_cleared").await.len(), 1);
    let list = ok(&h, &["channels", "list"]).await;
    for channel in [RCS_CHANNEL, WA_CHANNEL] {
        assert_eq!(cells(row(&list, channel))[6], "active", "{list}");
    }
}

/// The store's record of pauses: what the relay writes, and what a sync lifts.
async fn recorded_pauses_are_kept_apart_and_lifted_by_a_sync(db: TestDb) {
    let h = Harness::start(db).await;
    let t = chrono::Utc::now() + Duration::minutes(3);
    let s = &h.store;
    assert!(
        s.set_channel_pause(RCS_CHANNEL, Some(t), Some("10031: refused"))
            .await
            .unwrap()
    );
    // A probe that only moves the next probe keeps the reason.
    let later = t + Duration::minutes(1);
    s.set_channel_pause(RCS_CHANNEL, Some(later), None)
        .await
        .unwrap();
    let rcs = |cs: Vec<byocd::store::StoredChannel>| {
        cs.into_iter().find(|c| c.name == RCS_CHANNEL).unwrap()
    };
    let c = rcs(s.channels().await.unwrap());
    assert_eq!(c.pause_reason.as_deref(), Some("10031: refused"));
    assert_eq!(
        c.paused_until.unwrap().timestamp_micros(),
        later.timestamp_micros()
    );
    assert!(!s.set_channel_pause("nope", Some(t), None).await.unwrap());

    // A disabled org stays disabled whatever token minting records.
    assert!(
        s.set_org_disabled(ORG_ID, Some("10003: gone"))
            .await
            .unwrap()
    );
    s.set_org_pause(ORG_ID, Some((t, "invalid_grant".into())))
        .await
        .unwrap();
    s.set_org_pause(ORG_ID, None).await.unwrap();
    let org = s.orgs().await.unwrap().pop().unwrap();
    assert!(org.disabled(), "{org:?}");
    assert_eq!(org.pause_reason.as_deref(), Some("10003: gone"));

    let (orgs, channels) = config_records(&h.config);
    s.sync_config(&orgs, &channels).await.unwrap();
    let lifted = byocd::lifecycle::pauses::lift(s).await.unwrap();
    assert_eq!(lifted, [RCS_CHANNEL, ORG_ID]);
    let c = rcs(s.channels().await.unwrap());
    assert_eq!((c.paused_until, c.pause_reason), (None, None));
    assert!(!s.orgs().await.unwrap()[0].disabled());
    let cleared = audit_kind(&h, "channel.pause_cleared").await;
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].entry.detail["pause_reason"], "10031: refused");
    // Nothing left to lift.
    assert!(byocd::lifecycle::pauses::lift(s).await.unwrap().is_empty());

    // A token pause is not a disablement: lifting one leaves the other alone.
    s.set_org_pause(ORG_ID, Some((t, "invalid_grant".into())))
        .await
        .unwrap();
    assert!(!s.set_org_disabled(ORG_ID, None).await.unwrap());
    let org = s.orgs().await.unwrap().pop().unwrap();
    assert_eq!(org.pause_reason.as_deref(), Some("invalid_grant"));
    assert!(!org.disabled());
}

async fn sessions_list_and_show_what_an_operator_looks_for(db: TestDb) {
    let h = Harness::start(db).await;
    let (rcs, wa) = traffic(&h).await;

    let list = ok(&h, &["sessions", "list"]).await;
    assert!(list.starts_with("SESSION "), "{list}");
    assert!(list.contains("ROUTED TO"), "{list}");
    let line = row(&list, &rcs.to_string());
    assert!(line.contains(RCS_CHANNEL), "{line}");
    assert!(line.contains("active"), "{line}");
    assert!(line.contains("2026-11-21T10:00:00Z"), "{line}");
    assert!(row(&list, &wa.to_string()).contains(WA_CHANNEL), "{list}");
    // A list shows neither what the end users wrote nor who they are.
    for secret in ["hello", &RCS_USER[1..], &WA_USER[1..]] {
        assert!(!list.contains(secret), "{secret} in the list:\n{list}");
    }

    let only_rcs = ok(&h, &["sessions", "list", "--channel", RCS_CHANNEL]).await;
    assert!(only_rcs.contains(&rcs.to_string()), "{only_rcs}");
    assert!(!only_rcs.contains(&wa.to_string()), "{only_rcs}");
    let ended = ok(&h, &["sessions", "list", "--status", "ended"]).await;
    assert_eq!(ended, "no sessions\n");
    let one = ok(&h, &["sessions", "list", "--limit", "1"]).await;
    assert_eq!(one.lines().count(), 2, "{one}");

    // The partner-routed (CCaaS) session shows its routing.
    let routings = h.store.routings_of_session(rcs).await.unwrap();
    assert!(!routings.is_empty(), "the CCaaS session was routed");
    let routing = routings.last().unwrap();
    let target = &routing.routing.target_type;
    assert!(
        row(&list, &rcs.to_string()).contains(&format!("{target} ({}", routing.routing.status)),
        "{list}"
    );
    assert!(row(&list, &wa.to_string()).ends_with(" -"), "{list}");

    let show = ok(&h, &["sessions", "show", &rcs.to_string()]).await;
    let conversation = audit(
        &h,
        AuditFilter {
            session_id: Some(rcs),
            ..Default::default()
        },
    )
    .await;
    let conversation_id = conversation[0].entry.conversation_id.unwrap();
    for expected in [
        format!("session:        {rcs}"),
        format!("channel:        {RCS_CHANNEL}"),
        format!("conversation:   {conversation_id}"),
        format!("  msisdn:       {RCS_USER}"),
        format!("routings ({}):", routings.len()),
        routing.id.to_string(),
        format!("timeline ({} audit rows):", conversation.len()),
    ] {
        assert!(show.contains(&expected), "{expected} missing:\n{show}");
    }
    let outbox: Vec<_> = h
        .store
        .outbox(&OutboxFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.session_id == Some(rcs))
        .collect();
    assert!(!outbox.is_empty());
    assert!(
        show.contains(&format!("outbox rows ({};", outbox.len())),
        "{show}"
    );
    for r in &outbox {
        let line = row(&show, &r.id.to_string());
        assert!(line.contains(&r.kind) && line.contains(&r.status), "{line}");
    }
    for a in &conversation {
        assert!(
            row(&show, &a.id.to_string()).contains(&a.entry.kind),
            "{show}"
        );
    }
    assert!(
        show.contains(kind::ISA_MESSAGE),
        "the message row is listed:\n{show}"
    );
    assert!(
        !show.contains("hello, rcs"),
        "no message body, even in show:\n{show}"
    );

    let unknown = uuid::Uuid::new_v4();
    let err = fails(&h, &["sessions", "show", &unknown.to_string()]).await;
    assert!(err.contains(&format!("no session {unknown}")), "{err}");
    let err = fails(&h, &["sessions", "show", "not-a-uuid"]).await;
    assert!(err.contains("invalid value 'not-a-uuid'"), "{err}");
    let err = fails(&h, &["sessions", "list", "--channel", "nope"]).await;
    assert!(err.contains("--channel nope: no such channel"), "{err}");
    assert!(err.contains(RCS_CHANNEL), "names the known ones: {err}");
    let err = fails(&h, &["sessions", "list", "--status", "open"]).await;
    assert!(err.contains("'--status <STATUS>'"), "{err}");
    let err = fails(&h, &["sessions", "list", "--limit", "0"]).await;
    assert!(err.contains("'--limit <LIMIT>'"), "{err}");
}

/// The 18-character form of a 15-character Salesforce id: a suffix saying which letters of
/// each five characters are upper case.
fn eighteen(id: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = id.to_owned();
    for chunk in id.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        out.push(char::from(ALPHABET[bits]));
    }
    out
}

async fn sessions_show_finds_a_session_by_any_of_its_ids(db: TestDb) {
    let h = Harness::start(db).await;
    let (rcs, wa) = traffic(&h).await;
    let work_item = h
        .store
        .session(rcs)
        .await
        .unwrap()
        .unwrap()
        .summary
        .work_item_id
        .expect("Salesforce answered the first message with the session's work item");
    assert_eq!(work_item.len(), 15);
    let by_uuid = ok(&h, &["sessions", "show", &rcs.to_string()]).await;
    assert!(
        by_uuid.starts_with(&format!("session:        {rcs}\n")),
        "{by_uuid}"
    );
    assert!(
        by_uuid.contains(&format!("work item:      {work_item}\n")),
        "{by_uuid}"
    );
    // Salesforce's MessagingSession id is the work item id: 15 characters, or the 18-character
    // form Salesforce's pages and reports show, whose suffix restores the case of the letters.
    let id18 = eighteen(&work_item);
    assert_ne!(id18.to_lowercase(), id18, "the id has letters");
    for key in [work_item.clone(), id18.clone(), id18.to_lowercase()] {
        let shown = ok(&h, &["sessions", "show", &key]).await;
        assert_eq!(shown, by_uuid, "sessions show {key}");
    }

    // A work item only a routing of the session recorded finds that session too.
    let other = "0MwZZ0000000099";
    h.store
        .record_routing(&byocd::store::relay::NewRouting {
            session_id: Some(wa),
            channel: WA_CHANNEL.into(),
            kind: "Initial".into(),
            work_item_id: Some(eighteen(other)),
            psr_id: None,
            routing_correlation_id: None,
            agent_work_id: None,
            target_type: "channel-default".into(),
            target_id: None,
            status: "Routed".into(),
            attempts: 0,
            deadline_at: None,
            last_error: None,
        })
        .await
        .unwrap();
    let by_routing = ok(&h, &["sessions", "show", other]).await;
    assert!(
        by_routing.starts_with(&format!("session:        {wa}\n")),
        "{by_routing}"
    );

    // Unknown ids of either kind exit 1 and say what was looked for.
    let unknown = "0MwZZ0000000098";
    let out = byocd(&h, &["sessions", "show", unknown]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no session has the MessagingSession (work item) id {unknown}"
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = byocd(&h, &["sessions", "show", &uuid::Uuid::new_v4().to_string()]).await;
    assert_eq!(out.status.code(), Some(1));
    // Text that is no id at all is refused by the parser (status 2), naming what it accepts.
    let bad_suffix = format!("{}555", &work_item);
    for bad in ["0Mw123", bad_suffix.as_str()] {
        let out = byocd(&h, &["sessions", "show", bad]).await;
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("invalid value '{bad}'")), "{err}");
    }
}

async fn quarantine_list_in_its_three_formats(db: TestDb) {
    let h = Harness::start(db).await;
    assert_eq!(
        ok(&h, &["quarantine", "list"]).await,
        "no quarantined webhooks\n"
    );
    assert_eq!(
        ok(&h, &["quarantine", "list", "--format", "json"]).await,
        ""
    );
    let csv = ok(&h, &["quarantine", "list", "--format", "csv"]).await;
    assert_eq!(parse_csv(&csv).len(), 1, "only the header: {csv}");

    // Two webhooks byocd cannot read, and one whose reason needs CSV quoting.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("SOMETHING_NEW", "q-1", &RCS_USER[1..], None),
    )
    .await;
    h.webhook(
        WA_CHANNEL,
        &serde_json::json!({ "namespace": "ChatApps", "eventType": "something_new", "payload": {} }),
    )
    .await;
    h.store
        .quarantine(&byocd::store::NewQuarantine {
            channel: WA_CHANNEL.into(),
            provider: "8x8".into(),
            reason: "a \"reason\", with a comma\nand a line break".into(),
            content_type: None,
            body: b"secret body".to_vec(),
        })
        .await
        .unwrap();
    let stored = h.store.quarantined(None, 50).await.unwrap();
    assert_eq!(stored.len(), 3);

    // Table: a header, then one line per webhook, newest first.
    let table = ok(&h, &["quarantine", "list"]).await;
    assert_eq!(
        cells(table.lines().next().unwrap()),
        ["ID", "RECEIVED", "CHANNEL", "PROVIDER", "BYTES", "REASON"],
        "{table}"
    );
    let wa_row = cells(row(&table, &stored[1].id.to_string()));
    let size = stored[1].size.to_string();
    assert_eq!(wa_row[2..5], [WA_CHANNEL, "8x8", size.as_str()], "{table}");
    assert_eq!(wa_row[5], stored[1].reason, "{table}");
    let rcs_row = cells(row(&table, &stored[2].id.to_string()));
    assert_eq!(rcs_row[2..4], [RCS_CHANNEL, "kaleyra"], "{table}");
    assert!(
        rcs_row[1].parse::<chrono::DateTime<chrono::Utc>>().is_ok(),
        "{table}"
    );

    // JSON Lines: one object per webhook, as stored, without the body.
    let json = ok(&h, &["quarantine", "list", "--format", "json"]).await;
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), stored.len(), "{json}");
    for (line, q) in lines.iter().zip(&stored) {
        assert_eq!(line["id"], q.id);
        assert_eq!(line["channel"], q.channel);
        assert_eq!(line["provider"], q.provider);
        assert_eq!(line["reason"], q.reason);
        assert_eq!(line["size"], q.size);
        let at: chrono::DateTime<chrono::Utc> =
            line["received_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(at, q.received_at);
        assert!(line.get("body").is_none(), "no body in a list: {line}");
    }
    assert!(!json.contains("secret body"));

    // CSV: a header naming the JSON keys, then one record per webhook; fields round-trip.
    let csv = ok(&h, &["quarantine", "list", "--format", "csv"]).await;
    let records = parse_csv(&csv);
    assert_eq!(
        records[0],
        [
            "id",
            "received_at",
            "channel",
            "provider",
            "size",
            "content_type",
            "reason"
        ]
    );
    assert_eq!(records.len() - 1, stored.len(), "{csv}");
    for (record, q) in records[1..].iter().zip(&stored) {
        assert_eq!(record[0], q.id.to_string());
        let at: chrono::DateTime<chrono::Utc> = record[1].parse().unwrap();
        assert_eq!(at, q.received_at);
        assert_eq!(record[2], q.channel);
        assert_eq!(record[3], q.provider);
        assert_eq!(record[4], q.size.to_string());
        assert_eq!(record[5], q.content_type.clone().unwrap_or_default());
        assert_eq!(record[6], q.reason);
    }
    assert!(!csv.contains("secret body"));

    // The filters apply to every format.
    let only_rcs = ok(
        &h,
        &[
            "quarantine",
            "list",
            "--channel",
            RCS_CHANNEL,
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(only_rcs.lines().count(), 1, "{only_rcs}");
    let newest = ok(
        &h,
        &["quarantine", "list", "--limit", "1", "--format", "csv"],
    )
    .await;
    assert_eq!(parse_csv(&newest)[1][0], stored[0].id.to_string());
    let err = fails(&h, &["quarantine", "list", "--format", "xml"]).await;
    assert!(err.contains("'--format <FORMAT>'"), "{err}");
}

async fn audit_filters_and_its_three_formats(db: TestDb) {
    let h = Harness::start(db).await;
    let (rcs, _) = traffic(&h).await;
    let all = audit(&h, AuditFilter::default()).await;
    let tokens = audit_kind(&h, "token").await;
    assert!(!tokens.is_empty(), "a token was minted");
    assert!(
        all.len() > tokens.len(),
        "the filter must leave rows out to mean anything"
    );

    // CSV: a header, then only token.* rows, every field as stored.
    let csv = ok(&h, &["audit", "--kind", "token", "--format", "csv"]).await;
    let records = parse_csv(&csv);
    assert_eq!(
        records[0],
        [
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
            "detail"
        ]
    );
    assert_eq!(records.len() - 1, tokens.len(), "{csv}");
    for (record, stored) in records[1..].iter().zip(&tokens) {
        assert_eq!(record.len(), 11, "{record:?}");
        assert!(record[3].starts_with("token."), "{record:?}");
        assert_eq!(record[0], stored.id.to_string());
        assert_eq!(record[3], stored.entry.kind);
        assert_eq!(record[5], ORG_ID);
        assert_eq!(record[9], stored.entry.message);
        let detail: serde_json::Value = serde_json::from_str(&record[10]).unwrap();
        assert_eq!(detail, stored.entry.detail);
        let at: chrono::DateTime<chrono::Utc> = record[1].parse().unwrap();
        assert_eq!(at, stored.at);
    }

    // JSON Lines: one object per line, only the kind asked for.
    let messages = audit_kind(&h, "inbound.message").await;
    let json = ok(
        &h,
        &["audit", "--kind", "inbound.message", "--format", "json"],
    )
    .await;
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), messages.len());
    assert_eq!(lines.len(), 2);
    for (line, stored) in lines.iter().zip(&messages) {
        assert_eq!(line["kind"], "inbound.message");
        assert_eq!(line["id"], stored.id);
        assert_eq!(
            line["session_id"],
            stored.entry.session_id.unwrap().to_string()
        );
        assert_eq!(line["detail"], stored.entry.detail);
    }

    // Table, by session: every row of the session and no other.
    let of_session = audit(
        &h,
        AuditFilter {
            session_id: Some(rcs),
            ..Default::default()
        },
    )
    .await;
    let table = ok(&h, &["audit", "--session", &rcs.to_string()]).await;
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), of_session.len() + 1, "{table}");
    for a in &of_session {
        assert!(row(&table, &a.id.to_string()).contains(&a.entry.kind));
    }
    let conversation = of_session[0].entry.conversation_id.unwrap();
    let of_conversation = audit(
        &h,
        AuditFilter {
            conversation_id: Some(conversation),
            ..Default::default()
        },
    )
    .await;
    let by_conversation = ok(
        &h,
        &[
            "audit",
            "--conversation",
            &conversation.to_string(),
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(by_conversation.lines().count(), of_conversation.len());
    for l in by_conversation.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["conversation_id"], conversation.to_string());
    }
    let by_channel = ok(&h, &["audit", "--channel", WA_CHANNEL, "--format", "json"]).await;
    assert!(by_channel.lines().count() > 0);
    for l in by_channel.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["channel"], WA_CHANNEL);
    }

    // Limits keep the newest, oldest first.
    let two = ok(&h, &["audit", "--limit", "2", "--format", "json"]).await;
    let ids: Vec<i64> = two
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let newest: Vec<i64> = all[all.len() - 2..].iter().map(|a| a.id).collect();
    assert_eq!(ids, newest);

    // Times: the traffic happened on 2026-11-21 (the harness clock).
    let day = ok(
        &h,
        &[
            "audit",
            "--since",
            "2026-11-21",
            "--until",
            "2026-11-21",
            "--limit",
            "100000",
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(day.lines().count(), all.len());
    let after = ok(&h, &["audit", "--since", "2026-11-21T10:00:01Z"]).await;
    assert_eq!(after, "no audit rows match\n");
    let before = ok(&h, &["audit", "--until", "2026-11-21T11:00:00+01:00"]).await;
    assert_eq!(
        before, "no audit rows match\n",
        "10:00Z is not before 10:00Z"
    );
    let csv = ok(&h, &["audit", "--since", "2026-11-22", "--format", "csv"]).await;
    assert_eq!(parse_csv(&csv).len(), 1, "only the header: {csv}");

    // Bad values are refused, naming the flag.
    for (args, expected) in [
        (vec!["audit", "--since", "yesterday"], "'--since <TIME>'"),
        (
            vec!["audit", "--until", "2026-11-21T10:00:00"],
            "'--until <TIME>'",
        ),
        (vec!["audit", "--format", "xml"], "'--format <FORMAT>'"),
        (vec!["audit", "--session", "42"], "'--session <SESSION>'"),
        (vec!["audit", "--channel", "nope"], "--channel nope"),
        (
            vec!["audit", "--since", "2026-11-22", "--until", "2026-11-21"],
            "is not before --until",
        ),
    ] {
        let err = fails(&h, &args).await;
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = fails(&h, &["audit", "--session", &unknown]).await;
    assert!(err.contains("no such session"), "{err}");
    let err = fails(&h, &["audit", "--conversation", &unknown]).await;
    assert!(err.contains("no such conversation"), "{err}");
}

async fn token_status_shows_its_age_never_the_token(db: TestDb) {
    let h = Harness::start(db).await;
    let status = ok(&h, &["token", "status"]).await;
    assert!(status.contains(&format!("org {ORG_ID} (Acme)")), "{status}");
    assert!(status.contains("token:      none stored"), "{status}");
    assert!(status.contains("last mint:  none recorded"), "{status}");

    traffic(&h).await;
    // The token in use, opened the way the daemon opens it.
    let stored = h.store.token(ORG_ID).await.unwrap().unwrap();
    let key =
        byocd::crypto::TokenKey::from_file(&h.config_dir.path().join("secrets/token.key")).unwrap();
    let token = key
        .open(
            &stored.token.sealed_token,
            &format!("oauth_tokens|{ORG_ID}"),
        )
        .unwrap()
        .expose_secret()
        .to_owned();
    assert!(
        h.emulator.is_valid_token(&token),
        "the token Salesforce accepts"
    );

    let age =
        |at: chrono::DateTime<chrono::Utc>| byocd::admin::human_duration(at - stored.minted_at);
    let before = age(chrono::Utc::now());
    let status = ok(&h, &["token", "status"]).await;
    let after = age(chrono::Utc::now());
    assert!(
        status.contains("token:      stored (sealed with key"),
        "{status}"
    );
    assert!(status.contains("the configured one"), "{status}");
    let minted = stored
        .minted_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let minted_line = status
        .lines()
        .find(|l| l.trim_start().starts_with("minted:"))
        .unwrap_or_else(|| panic!("no minted line:\n{status}"));
    assert!(minted_line.contains(&minted), "{minted_line}");
    // Its age when the command ran.
    assert!(
        minted_line.ends_with(&format!("({before} ago)"))
            || minted_line.ends_with(&format!("({after} ago)")),
        "{minted_line}: not {before} nor {after}"
    );
    assert!(status.contains("expires:    unknown"), "{status}");
    assert!(status.contains("last mint:  ok at"), "{status}");
    assert!(status.contains("why: no stored token"), "{status}");
    assert!(status.contains("paused:     no"), "{status}");

    // Neither the token, nor any run of its secret part (Salesforce tokens start with the
    // org id, which is no secret), nor its sealed form.
    assert!(!status.contains(&token), "{status}");
    let (org, secret) = token.split_once('!').expect("an org id, `!`, the secret");
    assert_eq!(org, ORG_ID);
    assert!(secret.len() >= 16, "{secret}");
    let chars: Vec<char> = secret.chars().collect();
    for window in chars.windows(8) {
        let piece: String = window.iter().collect();
        assert!(
            !status.contains(&piece),
            "{piece} of the token shown:\n{status}"
        );
    }
    assert!(!status.contains(&stored.token.sealed_token));
}

async fn token_status_shows_a_failed_mint_and_the_pause(db: TestDb) {
    let h = Harness::start(db).await;
    h.emulator.inject(
        "/services/oauth2/token",
        Failure::TokenError {
            error: "temporarily_unavailable".into(),
            description: "try again later, please".into(),
        },
        1,
    );
    h.webhook(WA_CHANNEL, &wa_text("wa-1", WA_USER, "hello"))
        .await;
    h.drain().await;
    assert_eq!(audit_kind(&h, "token.mint_failed").await.len(), 1);
    let until = h.store.orgs().await.unwrap()[0]
        .paused_until
        .expect("the failed mint paused the org");
    let status = ok(&h, &["token", "status"]).await;
    let ran_by = chrono::Utc::now();
    assert!(status.contains("token:      none stored"), "{status}");
    let last = status
        .lines()
        .find(|l| l.trim_start().starts_with("last mint:"))
        .unwrap();
    assert!(last.contains("failed at"), "{last}");
    assert!(last.contains("temporarily_unavailable"), "{last}");
    assert!(!status.contains("last ok"), "{status}");
    // The pause is shown for as long as it lasts.
    if ran_by < until {
        assert!(
            status.contains(&format!(
                "token minting paused until {}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            "{status}"
        );
    }
}

async fn outbox_retry_and_discard_change_what_show_reports(db: TestDb) {
    let h = Harness::start(db).await;
    h.emulator.inject(
        INTERACTIONS,
        Failure::IsaError {
            http_status: 400,
            code: 10045,
        },
        1,
    );
    h.webhook(WA_CHANNEL, &wa_text("dl-1", WA_USER, "doomed"))
        .await;
    h.drain().await;
    let dead = h
        .store
        .outbox(&OutboxFilter {
            status: Some("dead".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let id = dead[0].id.to_string();
    let status_of = |text: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(status_of(&ok(&h, &["outbox", "show", &id]).await), "dead");
    let list = ok(&h, &["outbox", "list", "--status", "dead"]).await;
    assert!(
        row(&list, &id).contains("10045") || list.contains("10045"),
        "{list}"
    );

    let said = ok(&h, &["outbox", "retry", &id]).await;
    assert!(
        said.contains(&format!("#{id} will be sent again")),
        "{said}"
    );
    assert_eq!(
        status_of(&ok(&h, &["outbox", "show", &id]).await),
        "pending"
    );
    let err = fails(&h, &["outbox", "retry", &id]).await;
    assert!(err.contains("is not dead or discarded"), "{err}");

    ok(&h, &["outbox", "discard", &id]).await;
    assert_eq!(
        status_of(&ok(&h, &["outbox", "show", &id]).await),
        "discarded"
    );
    let admin = audit_kind(&h, "outbox").await;
    let actions: Vec<&str> = admin
        .iter()
        .filter(|a| a.entry.actor.starts_with("admin:"))
        .map(|a| a.entry.kind.as_str())
        .collect();
    assert_eq!(actions, ["outbox.requeued", "outbox.discarded"]);
    let err = fails(&h, &["outbox", "discard", &id]).await;
    assert!(err.contains("is not pending or dead"), "{err}");
    let err = fails(&h, &["outbox", "show", "999999"]).await;
    assert!(err.contains("no outbox row #999999"), "{err}");
}

/// A sender's escape sequences (a window title, a screen clear, an 8-bit CSI, a right-to-left
/// override) in a quarantined body and in its reason never reach the operator's terminal as
/// they are; `--raw FILE` keeps the exact bytes.
async fn quarantined_escape_sequences_are_shown_escaped(db: TestDb) {
    let h = Harness::start(db).await;
    let body = b"{\"x\":\"\x1b]0;pwned\x07\x1b[2J\xc2\x9b31m\xe2\x80\xae\xff\"}".to_vec();
    h.store
        .quarantine(&byocd::store::NewQuarantine {
            channel: WA_CHANNEL.into(),
            provider: "8x8".into(),
            reason: "unreadable: \x1b[31mred\r\nforged line".into(),
            content_type: Some("application/json\x1b[0m".into()),
            body: body.clone(),
        })
        .await
        .unwrap();
    let id = h.store.quarantined(None, 1).await.unwrap()[0]
        .id
        .to_string();
    let inert = |text: &str| {
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\r') || c == '\u{202e}')
    };
    let table = ok(&h, &["quarantine", "list"]).await;
    assert!(inert(&table), "{table:?}");
    assert!(
        table.contains("unreadable: \\u{1b}[31mred\\r\\nforged line"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2, "no forged line: {table}");
    let json = ok(&h, &["quarantine", "list", "--format", "json"]).await;
    assert!(inert(&json), "{json:?}");
    let line: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(line["reason"], "unreadable: \x1b[31mred\r\nforged line");

    let shown = ok(&h, &["quarantine", "show", &id]).await;
    assert!(inert(&shown), "{shown:?}");
    assert!(
        shown.contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}31m\\u{202e}\\xff"),
        "{shown}"
    );
    assert!(
        shown.contains("content type: application/json\\u{1b}[0m"),
        "{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    let file_arg = file.to_str().unwrap();
    let shown = ok(&h, &["quarantine", "show", &id, "--raw", file_arg]).await;
    assert!(inert(&shown), "{shown:?}");
    assert!(shown.contains("written to"), "{shown}");
    assert_eq!(std::fs::read(&file).unwrap(), body);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let err = fails(&h, &["quarantine", "show", &id, "--raw", file_arg]).await;
    assert!(
        err.contains("--raw"),
        "an existing file is not overwritten: {err}"
    );
}

/// The admin commands need only the database: with every secret file gone and the org's key a
/// systemd credential (`cred:`) outside the unit (no `$CREDENTIALS_DIRECTORY`), they still
/// run, while `config check` names each missing secret. What only reads opens a read-only
/// store: its writes are refused, on PostgreSQL too.
async fn admin_commands_need_no_secrets_and_reads_are_read_only(db: TestDb) {
    let h = Harness::start(db).await;
    traffic(&h).await;
    std::fs::remove_dir_all(h.config_dir.path().join("secrets")).unwrap();
    let main = std::fs::read_to_string(&h.config_dir.main_file).unwrap();
    let main = main.replace(
        "private_key_file = \"secrets/org.pem\"",
        "private_key_file = \"cred:acme-key\"",
    );
    std::fs::write(&h.config_dir.main_file, main).unwrap();

    let check = fails(&h, &["config", "check"]).await;
    let out = byocd(&h, &["config", "check"]).await;
    let check = format!("{check}{}", String::from_utf8_lossy(&out.stdout));
    for key in [
        "private_key_file",
        "token_key_file",
        "api_key_file",
        "webhook_authorization_file",
    ] {
        assert!(check.contains(key), "config check names {key}: {check}");
    }
    for args in [
        &["outbox", "list"][..],
        &["quarantine", "list"],
        &["channels", "list"],
        &["sessions", "list"],
        &["audit", "--limit", "5"],
        &["token", "status"],
    ] {
        let text = ok(&h, args).await;
        assert!(!text.is_empty(), "{args:?}");
    }
    assert!(ok(&h, &["channels", "list"]).await.contains(RCS_CHANNEL));
    // A command that writes opens the writable store and gets as far as the row.
    let err = fails(&h, &["outbox", "retry", "999999"]).await;
    assert!(err.contains("#999999"), "{err}");

    let read_only = byocd::store::AnyStore::open(
        &h.db.url,
        byocd::store::StoreOptions {
            read_only: true,
            exclusive: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let write = read_only
        .quarantine(&byocd::store::NewQuarantine {
            channel: WA_CHANNEL.into(),
            provider: "8x8".into(),
            reason: "x".into(),
            content_type: None,
            body: b"x".to_vec(),
        })
        .await;
    assert!(write.is_err(), "a read-only store refuses writes");
    assert!(read_only.quarantined(None, 5).await.unwrap().is_empty());
    read_only.close().await;
}

/// Every place of the database where `needle` appears as text: (table, column, rows). Every
/// table and column, as the database describes itself; bodies (blobs) searched byte for byte.
async fn traces(h: &Harness, needle: &str) -> Vec<(String, String, i64)> {
    use sqlx::Connection;
    let url = &h.db.url;
    let mut out = Vec::new();
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (table, column) in columns {
            let sql = format!(
                "SELECT count(*) FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS blob), CAST($1 AS blob)) > 0"
            );
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(needle)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if n > 0 {
                out.push((table, column, n));
            }
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let columns: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
             FROM information_schema.columns c JOIN information_schema.tables t \
             ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (table, column, data_type) in columns {
            let text = if data_type == "bytea" {
                format!("encode(\"{column}\", 'escape')")
            } else {
                format!("\"{column}\"::text")
            };
            let sql = format!("SELECT count(*) FROM \"{table}\" WHERE strpos({text}, $1) > 0");
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(needle)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if n > 0 {
                out.push((table, column, n));
            }
        }
    }
    out
}

/// Rows per table, to see that a refused `forget` changed nothing.
async fn row_counts(h: &Harness) -> Vec<(String, i64)> {
    use sqlx::Connection;
    let tables = [
        "end_users",
        "conversations",
        "sessions",
        "routings",
        "outbox",
        "message_map",
        "quarantine",
        "inbound_dedupe",
        "audit_log",
    ];
    let mut out = Vec::new();
    for table in tables {
        let sql = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"));
        let (n,): (i64,) = if h.db.url.starts_with("sqlite") {
            let mut conn = sqlx::SqliteConnection::connect(&h.db.url).await.unwrap();
            sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::PgConnection::connect(&h.db.url).await.unwrap();
            sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap()
        };
        out.push((table.to_owned(), n));
    }
    out
}

/// Issue 17: `byocd forget --end-user` removes every trace of the person from every table —
/// end user, conversation, sessions, message text in the outbox, message ids, the quarantined
/// body that named them (written without the `+`) — in one go, leaves the other end user alone,
/// and leaves one audit row that names only byocd's opaque id. An unknown end user (or one
/// asked on a channel they never wrote on) is reported and nothing changes.
async fn forget_erases_every_trace_of_an_end_user_and_leaves_one_opaque_audit_row(db: TestDb) {
    let h = Harness::start(db).await;
    traffic(&h).await;
    // A second message waits in the outbox (not delivered yet): unfinished work is erased too.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra(
            "USER_MESSAGE",
            "m-2",
            &RCS_USER[1..],
            Some("my address is 1 Main St"),
        ),
    )
    .await;
    // A webhook byocd could not read, naming the number without its `+`.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("SOMETHING_NEW", "q-1", &RCS_USER[1..], None),
    )
    .await;
    let digits = &RCS_USER[1..];
    let before = traces(&h, digits).await;
    for table in ["end_users", "outbox", "quarantine"] {
        assert!(
            before.iter().any(|(t, _, _)| t == table),
            "the number should be in {table} before: {before:?}"
        );
    }

    // Unknown, or on a channel they never wrote on: said so, nothing changes.
    let counts = row_counts(&h).await;
    let err = fails(&h, &["forget", "--end-user", "+447700900999"]).await;
    assert!(
        err.contains("no end user known as +447700900999 on any channel; nothing changed"),
        "{err}"
    );
    let err = fails(
        &h,
        &["forget", "--end-user", RCS_USER, "--channel", WA_CHANNEL],
    )
    .await;
    assert!(
        err.contains(&format!(
            "no end user known as {RCS_USER} on channel {WA_CHANNEL}"
        )),
        "{err}"
    );
    assert_eq!(row_counts(&h).await, counts);

    let out = ok(&h, &["forget", "--end-user", RCS_USER]).await;
    assert!(
        out.starts_with(&format!("forgot the end user {RCS_USER} on any channel:\n")),
        "{out}"
    );
    for line in [
        "end users            1 deleted",
        "conversations        1 deleted",
        "quarantined bodies   1 deleted",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
    let after = traces(&h, digits).await;
    assert!(after.is_empty(), "traces of the number left: {after:?}");
    assert!(
        traces(&h, "1 Main St").await.is_empty(),
        "message text left"
    );

    let forgotten = audit_kind(&h, "end_user.forgotten").await;
    assert_eq!(forgotten.len(), 1);
    let row = &forgotten[0];
    assert!(row.entry.actor.starts_with("admin:"), "{}", row.entry.actor);
    let ids = row.entry.detail["end_user_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 1);
    assert!(
        out.contains(&format!("audit row #{} (end_user.forgotten)", row.id)),
        "{out}"
    );
    assert!(out.contains(ids[0].as_str().unwrap()), "{out}");
    assert_eq!(row.entry.detail["deleted"]["end_users"], 1);

    // The other end user is untouched, and forgetting them by channel works. An audit row an
    // earlier release wrote with their number cannot be changed (append-only): it is counted,
    // and the output says so.
    assert!(!traces(&h, &WA_USER[1..]).await.is_empty());
    h.store
        .append_audit(
            &byocd::store::AuditEntry::new("inbound.recorded", "written by an earlier release")
                .detail(serde_json::json!({ "user": WA_USER })),
        )
        .await
        .unwrap();
    let out = ok(
        &h,
        &["forget", "--end-user", WA_USER, "--channel", WA_CHANNEL],
    )
    .await;
    assert!(out.contains(&format!("on channel {WA_CHANNEL}")), "{out}");
    assert!(
        out.contains("note: 1 older audit row(s) still contain the identifier"),
        "{out}"
    );
    assert_eq!(
        traces(&h, &WA_USER[1..]).await,
        [("audit_log".to_owned(), "detail".to_owned(), 1)]
    );
    assert_eq!(audit_kind(&h, "end_user.forgotten").await.len(), 2);
}

on_both_backends!(
    forget_erases_every_trace_of_an_end_user_and_leaves_one_opaque_audit_row,
    admin_commands_need_no_secrets_and_reads_are_read_only,
    quarantined_escape_sequences_are_shown_escaped,
    channels_list_shows_each_channel_its_state_and_why_it_is_paused,
    a_disabled_org_shows_on_its_channels_and_in_token_status,
    recorded_pauses_are_kept_apart_and_lifted_by_a_sync,
    sessions_list_and_show_what_an_operator_looks_for,
    sessions_show_finds_a_session_by_any_of_its_ids,
    quarantine_list_in_its_three_formats,
    audit_filters_and_its_three_formats,
    token_status_shows_its_age_never_the_token,
    token_status_shows_a_failed_mint_and_the_pause,
    outbox_retry_and_discard_change_what_show_reports,
);

/// `explain` needs no configuration; an unreadable code is refused with exit status 2.
#[test]
fn explain_answers_a_code_and_refuses_nonsense() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_byocd"))
            .args(["--config", "/nonexistent/byocd.toml", "explain"])
            .args(args)
            .env_remove("BYOCD_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(&["PERMISSION_DENIED"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("action:  pause_channel"), "{text}");
    let out = run(&["http:abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http:abc"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[]);
    assert!(!out.status.success(), "a code or --all is required");
}
