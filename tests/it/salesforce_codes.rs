//! The Interaction Service error table is complete and well-formed.
//!
//! The code lists below are typed by hand from Salesforce's error-code list (client errors, the
//! 15xxx AgentWork codes, service errors and 500); if a row goes missing from the table, a test
//! fails.

use std::collections::HashSet;

use byocd::salesforce::codes::{self, ErrorClass, ErrorReason, IsaErrorBody};

/// Client errors, 10xxx (10040, 10041 and 10079–10081 are not in the list).
const CLIENT_ERRORS: &[u32] = &[
    10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008, 10009, 10010, 10011, 10012, 10013,
    10014, 10015, 10016, 10017, 10018, 10019, 10020, 10021, 10022, 10023, 10024, 10025, 10026,
    10027, 10028, 10029, 10030, 10031, 10032, 10033, 10034, 10035, 10036, 10037, 10038, 10039,
    10042, 10043, 10044, 10045, 10046, 10047, 10048, 10049, 10050, 10051, 10052, 10053, 10054,
    10055, 10056, 10057, 10058, 10059, 10060, 10061, 10062, 10063, 10064, 10065, 10066, 10067,
    10068, 10069, 10070, 10071, 10072, 10073, 10074, 10075, 10076, 10077, 10078, 10082, 10083,
    10084, 10085, 10086, 10087, 10088, 10089, 10090, 10091, 10092, 10093, 10094, 10095, 10096,
    10097, 10098, 10099, 10100, 10101, 10102, 10103, 10104, 10105, 10106,
];

/// Client errors of the AgentWork endpoints, 15xxx.
const AGENT_WORK_ERRORS: &[u32] = &[
    15102, 15103, 15104, 15105, 15106, 15107, 15108, 15109, 15110, 15111, 15112,
];

/// Service errors, 2xxxx.
const SERVICE_ERRORS: &[u32] = &[20002, 20003, 20004, 25005, 25006, 25007];

/// Other errors.
const OTHER_ERRORS: &[u32] = &[500];

/// Every code in Salesforce's Interaction Service error list.
fn documented() -> Vec<u32> {
    [
        CLIENT_ERRORS,
        AGENT_WORK_ERRORS,
        SERVICE_ERRORS,
        OTHER_ERRORS,
    ]
    .concat()
}

fn is_pascal_case(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

#[test]
fn every_documented_code_resolves() {
    let documented = documented();
    let missing: Vec<u32> = documented
        .iter()
        .copied()
        .filter(|&code| codes::lookup(code).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from the table: {missing:?}"
    );
    assert_eq!(documented.len(), 119);
}

#[test]
fn table_holds_only_documented_codes() {
    let listed = documented();
    let documented: HashSet<u32> = listed.iter().copied().collect();
    assert_eq!(
        documented.len(),
        listed.len(),
        "the hand-typed list repeats a code"
    );
    let extra: Vec<u32> = codes::all()
        .iter()
        .map(|info| info.code)
        .filter(|code| !documented.contains(code))
        .collect();
    assert!(
        extra.is_empty(),
        "codes Salesforce does not list: {extra:?}"
    );
    assert_eq!(codes::all().len(), listed.len());
}

#[test]
fn table_is_sorted_without_duplicates() {
    let rows = codes::all();
    for pair in rows.windows(2) {
        assert!(
            pair[0].code < pair[1].code,
            "{} is not strictly before {}",
            pair[0].code,
            pair[1].code
        );
    }
    let distinct: HashSet<u32> = rows.iter().map(|info| info.code).collect();
    assert_eq!(distinct.len(), rows.len());
}

#[test]
fn names_are_unique_pascal_case_and_summaries_present() {
    let mut seen = HashSet::new();
    for info in codes::all() {
        assert!(is_pascal_case(info.name), "{}: {:?}", info.code, info.name);
        assert!(seen.insert(info.name), "name {:?} used twice", info.name);
        assert!(
            !info.summary.trim().is_empty(),
            "{} has no summary",
            info.code
        );
        assert!(
            !info.summary.contains('\n'),
            "{} summary spans lines",
            info.code
        );
    }
}

#[test]
fn every_class_is_used() {
    let used: HashSet<ErrorClass> = codes::all().iter().map(|info| info.class).collect();
    for class in ErrorClass::ALL {
        assert!(used.contains(&class), "no code is {class}");
    }
}

#[test]
fn named_examples() {
    let name = |code| codes::lookup(code).map(|info| info.name);
    assert_eq!(name(10004), Some("InvalidAccessToken"));
    assert_eq!(name(10008), Some("FileTooLarge"));
    assert_eq!(name(15109), Some("AgentWorkAlreadyExists"));
    assert_eq!(name(10071), Some("SessionNotFound"));
}

#[test]
fn messaging_session_reasons_cover_the_documented_values() {
    let wire: Vec<&str> = ErrorReason::ALL_KNOWN.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        wire,
        [
            "ACTIVE_CONVERSATION_NOT_FOUND",
            "END_SESSION_FAILED",
            "INTERNAL_ERROR",
            "PERMISSION_DENIED",
            "CHANNEL_ADDRESS_NOT_FOUND",
            "SESSION_NOT_FOUND",
            "END_USER_NOT_FOUND",
            "ORG_NOT_FOUND",
            "CONVERSATION_PRECONDITION_FAILED",
            "CONVERSATION_PROCESSING_ABORTED",
            "CHANNEL_ADDRESS_IS_INACTIVE",
            "CUSTOMER_ERROR",
            "NO_ACCESS",
        ]
    );
}

#[test]
fn messaging_session_response_with_unknown_reason_round_trips() {
    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Response {
        success: bool,
        error_reason: Option<ErrorReason>,
    }
    let raw = r#"{"success":false,"errorReason":"BRAND_NEW_REASON"}"#;
    let response: Response = serde_json::from_str(raw).unwrap();
    assert!(!response.success);
    assert_eq!(
        response.error_reason,
        Some(ErrorReason::Unknown("BRAND_NEW_REASON".to_owned()))
    );
    assert_eq!(serde_json::to_string(&response).unwrap(), raw);

    let known: Response =
        serde_json::from_str(r#"{"success":false,"errorReason":"SESSION_NOT_FOUND"}"#).unwrap();
    assert_eq!(known.error_reason.unwrap().class(), ErrorClass::NotFound);
}

#[test]
fn error_body_then_classify() {
    let body = IsaErrorBody::parse(br#"{"code":"10094","message":"timeout downstream"}"#);
    assert_eq!(body.code, Some(10094));
    assert_eq!(codes::classify(400, body.code), ErrorClass::Retryable);
    assert_eq!(body.class(400), ErrorClass::Retryable);

    let gateway = IsaErrorBody::parse(b"<html>502</html>");
    assert_eq!(codes::classify(502, gateway.code), ErrorClass::Retryable);
    assert_eq!(
        codes::classify(401, gateway.code),
        ErrorClass::Authorisation
    );
}
