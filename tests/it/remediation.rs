//! The remediation table: every failure resolves to its intended action, and the real binary's
//! `byocd explain` prints what docs/remediation.md shows.

use std::{
    path::Path,
    process::{Command, Output},
};

use byocd::{
    lifecycle::remediation::{
        Action, Pattern, Rule, TransportKind, Trigger, all_rules, remedy, render_table,
    },
    salesforce::codes::{self, ErrorClass, ErrorReason},
};

const BIN: &str = env!("CARGO_BIN_EXE_byocd");

/// `byocd explain ARGS…` with no configuration file anywhere.
fn explain(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--config", "/nonexistent/byocd.toml", "explain"])
        .args(args)
        .env_remove("BYOCD_CONFIG")
        .output()
        .expect("the byocd binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn action_of(trigger: Trigger) -> Action {
    remedy(&trigger).action
}

fn provider(name: &'static str, status: Option<u16>, code: Option<&str>) -> Trigger {
    Trigger::Provider {
        provider: name,
        status,
        code: code.map(str::to_owned),
    }
}

#[test]
fn explain_all_prints_the_table_the_docs_show() {
    let printed = stdout(&explain(&["--all"]));
    assert_eq!(printed, render_table());
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/remediation.md"))
            .expect("docs/remediation.md exists");
    assert!(
        docs.contains(&printed),
        "docs/remediation.md does not contain the output of `byocd explain --all` verbatim; \
         paste it in again:\n\n{printed}"
    );
    // One line per row, each naming its action.
    let lines: Vec<&str> = printed.lines().skip(2).collect();
    assert_eq!(lines.len(), all_rules().len());
    for (line, rule) in lines.iter().zip(all_rules()) {
        assert!(line.contains(&format!("| `{}` |", rule.action)), "{line}");
    }
}

/// The action chosen for each Interaction Service code that has a row of its own, or whose class
/// default is worth pinning down.
const ISA_EXPECTED: &[(u32, Action)] = &[
    (500, Action::Retry),
    (10001, Action::PauseChannel),
    (10002, Action::PauseChannel),
    (10003, Action::DisableOrg),
    (10004, Action::RemintThenRetry),
    (10005, Action::PauseChannel),
    (10006, Action::PauseChannel),
    (10008, Action::DeadLetterAlert),
    (10016, Action::PauseChannel),
    (10017, Action::PauseChannel),
    (10019, Action::Retry),
    (10022, Action::DeadLetterAlert),
    (10023, Action::DeadLetterAlert),
    (10025, Action::Reconcile),
    (10026, Action::PauseChannel),
    (10027, Action::PauseChannel),
    (10031, Action::PauseChannel),
    (10032, Action::PauseChannel),
    (10035, Action::PauseChannel),
    (10036, Action::DeadLetterAlert),
    (10046, Action::DeadLetterAlert),
    (10050, Action::DeadLetterAlert),
    (10052, Action::PauseChannel),
    (10055, Action::Retry),
    (10056, Action::Retry),
    (10057, Action::DeadLetterAlert),
    (10058, Action::PauseChannel),
    (10063, Action::DeadLetterAlert),
    (10069, Action::PauseChannel),
    (10070, Action::PauseChannel),
    (10071, Action::Reconcile),
    (10075, Action::DeadLetterAlert),
    (10076, Action::DeadLetterAlert),
    (10077, Action::DeadLetterAlert),
    (10086, Action::DeadLetterAlert),
    (10087, Action::DeadLetterAlert),
    (10088, Action::DeadLetterAlert),
    (10093, Action::DeadLetterAlert),
    (10094, Action::Retry),
    (10099, Action::DisableOrg),
    (10104, Action::PauseChannel),
    (10105, Action::Reconcile),
    (10106, Action::DeadLetterAlert),
    (15102, Action::DisableOrg),
    (15103, Action::DeadLetterAlert),
    (15104, Action::PauseChannel),
    (15105, Action::PauseChannel),
    (15108, Action::PauseChannel),
    (15109, Action::DeadLetterAlert),
    (15111, Action::Reconcile),
    (15112, Action::DeadLetterAlert),
    (20002, Action::Retry),
    (20003, Action::DeadLetterAlert),
    (20004, Action::Retry),
    (25005, Action::Reconcile),
    (25006, Action::Reconcile),
    (25007, Action::Reconcile),
];

#[test]
fn every_documented_isa_code_resolves_to_its_intended_action() {
    for &(code, action) in ISA_EXPECTED {
        assert!(codes::lookup(code).is_some(), "{code} is documented");
        assert_eq!(action_of(Trigger::IsaCode(code)), action, "{code}");
    }
    for info in codes::all() {
        let rule = remedy(&Trigger::IsaCode(info.code));
        // Decided by a row of its own or by its class's row, never by the undocumented default.
        assert!(
            rule.when == Pattern::IsaCode(info.code) || rule.when == Pattern::IsaClass(info.class),
            "{} is decided by {:?}",
            info.code,
            rule.when
        );
        assert!(!rule.why.is_empty(), "{}", info.code);
        if rule.when == Pattern::IsaClass(info.class) {
            let default = match info.class {
                ErrorClass::Retryable => Action::Retry,
                ErrorClass::Authorisation => Action::RemintThenRetry,
                ErrorClass::Configuration => Action::PauseChannel,
                ErrorClass::BadInput => Action::DeadLetterAlert,
                ErrorClass::NotFound => Action::Reconcile,
            };
            assert_eq!(rule.action, default, "{}", info.code);
        }
    }
    // Every code that is not bad input either is listed above or takes its class's default:
    // bad input is dead-lettered unless listed.
    for info in codes::all() {
        if info.class == ErrorClass::BadInput
            && !ISA_EXPECTED.iter().any(|(code, _)| *code == info.code)
        {
            assert_eq!(
                action_of(Trigger::IsaCode(info.code)),
                Action::DeadLetterAlert,
                "{}",
                info.code
            );
        }
    }
}

#[test]
fn an_undocumented_isa_code_falls_to_the_documented_default() {
    for code in [0, 10000, 10040, 10079, 12345, 99_999, u32::MAX] {
        let rule = remedy(&Trigger::IsaCode(code));
        assert_eq!(rule.when, Pattern::IsaUnknownCode, "{code}");
        assert_eq!(rule.action, Action::Retry);
    }
    // In an answer, the status decides when the code is not documented, as codes::classify does.
    assert_eq!(
        action_of(Trigger::from_isa_answer(401, Some(99_999), None)),
        Action::RemintThenRetry
    );
    assert_eq!(
        action_of(Trigger::from_isa_answer(
            400,
            None,
            Some("Interaction request rate limit exceeded")
        )),
        Action::Retry
    );
    assert_eq!(
        action_of(Trigger::from_isa_answer(500, Some(10008), None)),
        Action::DeadLetterAlert
    );
}

#[test]
fn every_error_reason_resolves_to_its_intended_action() {
    let expected = [
        (ErrorReason::ActiveConversationNotFound, Action::Reconcile),
        (ErrorReason::EndSessionFailed, Action::Retry),
        (ErrorReason::InternalError, Action::Retry),
        (ErrorReason::PermissionDenied, Action::PauseChannel),
        (ErrorReason::ChannelAddressNotFound, Action::PauseChannel),
        (ErrorReason::SessionNotFound, Action::Reconcile),
        (ErrorReason::EndUserNotFound, Action::Reconcile),
        (ErrorReason::OrgNotFound, Action::DisableOrg),
        (ErrorReason::ConversationPreconditionFailed, Action::Retry),
        (ErrorReason::ConversationProcessingAborted, Action::Retry),
        (ErrorReason::ChannelAddressIsInactive, Action::PauseChannel),
        (ErrorReason::CustomerError, Action::PauseChannel),
        (ErrorReason::NoAccess, Action::PauseChannel),
    ];
    assert_eq!(expected.len(), ErrorReason::ALL_KNOWN.len());
    for reason in ErrorReason::ALL_KNOWN {
        let (_, action) = expected
            .iter()
            .find(|(r, _)| r == reason)
            .unwrap_or_else(|| panic!("{reason} has an expectation"));
        let rule = remedy(&Trigger::ErrorReason(reason.clone()));
        // Each documented value has a row of its own.
        assert_eq!(rule.when, Pattern::ErrorReason(reason.as_str()), "{reason}");
        assert_eq!(rule.action, *action, "{reason}");
    }
    // Reasons with a twin code get the same action as the code.
    for (reason, code) in [
        (ErrorReason::ConversationPreconditionFailed, 10055),
        (ErrorReason::ConversationProcessingAborted, 10056),
        (ErrorReason::ChannelAddressNotFound, 10017),
        (ErrorReason::ChannelAddressIsInactive, 10031),
        (ErrorReason::SessionNotFound, 10071),
        (ErrorReason::EndUserNotFound, 10105),
        (ErrorReason::CustomerError, 10058),
        (ErrorReason::NoAccess, 10104),
        (ErrorReason::InternalError, 500),
        (ErrorReason::ActiveConversationNotFound, 10025),
    ] {
        assert_eq!(
            action_of(Trigger::ErrorReason(reason.clone())),
            action_of(Trigger::IsaCode(code)),
            "{reason} vs {code}"
        );
    }
}

#[test]
fn an_unknown_error_reason_is_retried() {
    for raw in ["SOMETHING_NEW", "session_not_found", ""] {
        let rule = remedy(&Trigger::ErrorReason(ErrorReason::parse(raw)));
        assert_eq!(rule.when, Pattern::UnknownErrorReason, "{raw:?}");
        assert_eq!(rule.action, Action::Retry);
    }
}

#[test]
fn isa_statuses_without_a_code() {
    let expected = [
        (401, Action::RemintThenRetry),
        (403, Action::PauseChannel),
        (404, Action::PauseChannel),
        (400, Action::DeadLetterAlert),
        (409, Action::DeadLetterAlert),
        (413, Action::DeadLetterAlert),
        (422, Action::DeadLetterAlert),
        (408, Action::Retry),
        (429, Action::Retry),
        (500, Action::Retry),
        (501, Action::Retry),
        // An outage: paused and probed, spending no attempt (issue 20).
        (502, Action::PauseChannel),
        (503, Action::PauseChannel),
        (504, Action::PauseChannel),
        (200, Action::Retry),
        (302, Action::Retry),
    ];
    for (status, action) in expected {
        assert_eq!(action_of(Trigger::Http(status)), action, "{status}");
    }
}

#[test]
fn eight_by_eight_answers() {
    let cases = [
        (Some(429), None, Action::Retry),
        (Some(408), None, Action::Retry),
        (Some(500), None, Action::Retry),
        (Some(503), Some("1002"), Action::Retry),
        (Some(400), Some("2000"), Action::Retry),
        (None, Some("2000"), Action::Retry),
        (Some(401), None, Action::PauseChannel),
        (Some(403), None, Action::PauseChannel),
        (Some(400), Some("1200"), Action::PauseChannel),
        (None, Some("1201"), Action::PauseChannel),
        (Some(400), Some("1001"), Action::PauseChannel),
        (None, Some("1014"), Action::PauseChannel),
        (Some(426), None, Action::PauseChannel),
        (None, Some("2002"), Action::PauseChannel),
        (Some(400), Some("1002"), Action::DeadLetterAlert),
        (None, Some("1000"), Action::DeadLetterAlert),
        (None, Some("1010"), Action::DeadLetterAlert),
        (None, Some("1100"), Action::DeadLetterAlert),
        (Some(404), Some("1300"), Action::DeadLetterAlert),
        (Some(400), Some("3001"), Action::DeadLetterAlert),
        (None, Some("3029"), Action::DeadLetterAlert),
        (None, Some("7001"), Action::DeadLetterAlert),
        (Some(404), None, Action::DeadLetterAlert),
        (Some(410), None, Action::DeadLetterAlert),
        (Some(422), None, Action::DeadLetterAlert),
    ];
    for (status, code, action) in cases {
        assert_eq!(
            action_of(provider("8x8", status, code)),
            action,
            "8x8 {status:?} {code:?}"
        );
    }
}

#[test]
fn kaleyra_answers() {
    let cases = [
        (Some(401), None, Action::PauseChannel),
        (Some(403), Some("1400"), Action::PauseChannel),
        (Some(429), None, Action::Retry),
        (Some(500), None, Action::Retry),
        (Some(502), None, Action::Retry),
        (Some(503), None, Action::Retry),
        (Some(504), None, Action::Retry),
        (Some(200), Some("RCS1004"), Action::DeadLetterAlert),
        (None, Some("rcs1004"), Action::DeadLetterAlert),
        (Some(400), Some("1400"), Action::DeadLetterAlert),
        (None, Some("1405"), Action::DeadLetterAlert),
        (Some(400), Some("1417"), Action::DeadLetterAlert),
        (None, Some("1420"), Action::DeadLetterAlert),
        (None, Some("1423"), Action::DeadLetterAlert),
        (None, Some("1499"), Action::DeadLetterAlert),
        (Some(400), Some("1419"), Action::PauseChannel),
        (Some(501), None, Action::DeadLetterAlert),
        (Some(409), None, Action::DeadLetterAlert),
        (Some(200), Some("1200"), Action::DeadLetterAlert),
    ];
    for (status, code, action) in cases {
        assert_eq!(
            action_of(provider("kaleyra", status, code)),
            action,
            "kaleyra {status:?} {code:?}"
        );
    }
}

#[test]
fn transport_failures_and_token_mints() {
    // An outage: paused and probed, spending no attempt (issue 20).
    for kind in TransportKind::ALL {
        assert_eq!(
            action_of(Trigger::Transport(kind)),
            Action::PauseChannel,
            "{kind:?}"
        );
    }
    let tokens = [
        ("invalid_grant", Action::DisableOrg),
        ("invalid_client", Action::DisableOrg),
        ("invalid_client_id", Action::DisableOrg),
        ("unsupported_grant_type", Action::DisableOrg),
        ("inactive_user", Action::DisableOrg),
        ("signing", Action::DisableOrg),
        ("unreachable", Action::PauseChannel),
        ("temporarily_unavailable", Action::PauseChannel),
        ("paused", Action::Retry),
        ("server_error", Action::Retry),
        ("unknown_org", Action::DeadLetterAlert),
        ("something_new", Action::Retry),
    ];
    for (error, action) in tokens {
        assert_eq!(
            action_of(Trigger::TokenEndpoint(error.to_owned())),
            action,
            "{error}"
        );
    }
}

#[test]
fn remedy_never_fails() {
    let odd = [
        provider("nobody", Some(500), Some("X")),
        provider("8x8", None, None),
        provider("kaleyra", None, Some("")),
        Trigger::Http(0),
        Trigger::Http(u16::MAX),
        Trigger::TokenEndpoint(String::new()),
    ];
    for trigger in odd {
        let rule: &Rule = remedy(&trigger);
        assert!(!rule.why.is_empty(), "{trigger:?}");
    }
    assert_eq!(remedy(&provider("nobody", None, None)).when, Pattern::Other);
}

#[test]
fn every_action_is_used_and_every_row_is_documented() {
    for action in Action::ALL {
        assert!(
            all_rules().iter().any(|rule| rule.action == action),
            "{action} is never chosen"
        );
    }
    let table = render_table();
    for rule in all_rules() {
        assert!(table.contains(rule.why), "{:?}", rule.when);
        assert!(table.contains(&rule.when.label()), "{:?}", rule.when);
    }
}

#[test]
fn explain_prints_an_isa_code_with_its_name_action_and_reason() {
    let text = stdout(&explain(&["10004"]));
    assert!(
        text.starts_with("10004: an Interaction Service error code\n"),
        "{text}"
    );
    assert!(text.contains("name:    InvalidAccessToken\n"), "{text}");
    assert!(
        text.contains("meaning: the access token is not (or no longer) valid\n"),
        "{text}"
    );
    assert!(text.contains("class:   authorisation\n"), "{text}");
    assert!(text.contains("action:  remint_then_retry\n"), "{text}");
    assert!(text.contains("byocd:   mint a new access token"), "{text}");
    assert!(
        text.contains("why:     The token expired or was revoked."),
        "{text}"
    );
    assert!(
        text.contains("rule:    ISA code `10004` InvalidAccessToken\n"),
        "{text}"
    );
}

#[test]
fn explain_prints_an_error_reason() {
    let text = stdout(&explain(&["SESSION_NOT_FOUND"]));
    assert!(
        text.starts_with("SESSION_NOT_FOUND: an errorReason of POST /messagingSession\n"),
        "{text}"
    );
    assert!(text.contains("action:  reconcile\n"), "{text}");
    assert!(text.contains("mark it ended"), "{text}");
    assert!(text.contains("no alert"), "{text}");

    let text = stdout(&explain(&["BRAND_NEW_REASON"]));
    assert!(text.contains("does not document"), "{text}");
    assert!(text.contains("action:  retry\n"), "{text}");
}

#[test]
fn explain_prints_a_provider_code() {
    let text = stdout(&explain(&["8x8:1002"]));
    assert!(text.starts_with("8x8:1002: an answer from 8x8"), "{text}");
    assert!(text.contains("action:  dead_letter\n"), "{text}");
    assert!(text.contains("MSISDN"), "{text}");
    assert!(text.contains("rule:    8x8 code `1002`\n"), "{text}");

    let text = stdout(&explain(&["kaleyra:1417"]));
    assert!(text.contains("action:  dead_letter\n"), "{text}");
    let text = stdout(&explain(&["kaleyra:503"]));
    assert!(text.contains("action:  retry\n"), "{text}");
}

#[test]
fn explain_reads_every_documented_form() {
    for (code, action) in [
        ("http:503", "pause_channel"),
        ("503", "pause_channel"),
        ("http:500", "retry"),
        ("timeout", "pause_channel"),
        ("reset", "pause_channel"),
        ("rate_limit", "retry"),
        ("invalid_grant", "disable_org"),
        ("token:invalid_client", "disable_org"),
        ("ORG_NOT_FOUND", "disable_org"),
        ("10001", "pause_channel"),
        ("25006", "reconcile"),
    ] {
        let text = stdout(&explain(&[code]));
        assert!(
            text.contains(&format!("action:  {action}\n")),
            "{code}: {text}"
        );
    }
}

#[test]
fn explain_refuses_what_it_cannot_read() {
    let out = explain(&["not-a-code"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read"), "{err}");
    // Neither a code nor --all is a usage error; both at once too.
    assert!(!explain(&[]).status.success());
    assert!(!explain(&["10004", "--all"]).status.success());
}
