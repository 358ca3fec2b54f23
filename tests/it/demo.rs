//! `byocd demo`, the real binary as a user runs it: it exits 0 and its timeline shows every
//! step issue 10 names — on each provider an end-user message and a picture, routing, the rep
//! typing and replying with an attachment, receipts, the idle session inactivated and ended, an
//! injected Salesforce error remediated — and the audit trail at the end.
#![cfg(feature = "sandbox")] // runs against the emulators

use std::process::Command;

#[test]
fn the_demo_plays_every_step_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_byocd"))
        .args(["demo", "--dir"])
        .arg(&state)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "byocd demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for step in [
        // 8x8 WhatsApp
        "8x8 webhook answered 200",
        "salesforce interaction accepted: conversation",
        "attachment received: image.png (image/png",
        "8x8        typing indicator sent",
        "8x8        message",
        "acknowledgement Delivered recorded for the rep's message",
        "acknowledgement Read recorded for the rep's message",
        "429 → remediation `retry`",
        "1 refusal, the message is in Salesforce 1 time(s)",
        // A rep-initiated WhatsApp conversation: the approved template
        "goes out with the rep's text as its parameter",
        // Kaleyra RCS
        "Kaleyra callback answered 200",
        "routes the new session (policy `agents`): PATCH /api/v1/consent → 200",
        "POST /api/v1/route → 202, POST /api/v1/agentWork → 202",
        "accepts the work",
        "sends a picture → quarantined",
        "`composing` event sent",
        "sent with fileUrl https://byocd.sandbox.example/files/",
        "acknowledgement Delivered recorded",
        // Idle sessions
        "POST /messagingSession Inactivate",
        "POST /messagingSession End",
        "byocd inactivated and ended its own record",
        // The audit trail
        "== The audit trail",
        "outbox.retry_scheduled",
        "session.ended",
        "demo done: every step happened",
    ] {
        assert!(
            stdout.contains(step),
            "the demo did not show `{step}`:\n{stdout}"
        );
    }
    // The state it left is a real byocd database: the admin commands read it.
    let audit = Command::new(env!("CARGO_BIN_EXE_byocd"))
        .arg("--config")
        .arg(state.join("byocd.toml"))
        .args(["audit", "--kind", "session.ended", "--format", "csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{csv}");
    // The 8x8 session, the rep-initiated 8x8 session and the Kaleyra session, all idle.
    assert_eq!(csv.lines().count(), 4, "three sessions ended:\n{csv}");
}
