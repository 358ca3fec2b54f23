//! The request bodies of the messages and events endpoints, checked member by member.

use serde_json::{Map, Value, json};

use super::{
    EmulatedMessage, KaleyraSettings, MAX_RECIPIENTS, MAX_SUGGESTIONS, MAX_TEXT_CHARS,
    MAX_TTL_SECONDS, server::Incoming,
};

/// A request refused with a Kaleyra code.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) body: Value,
}

/// Members of a send.
const MESSAGE_MEMBERS: [&str; 11] = [
    "from",
    "to",
    "text",
    "file",
    "richCardStandalone",
    "richCardCarousel",
    "suggestions",
    "ref",
    "ref1",
    "ref2",
    "ttl",
];
/// The content elements of a send; exactly one is required.
const CONTENT_MEMBERS: [&str; 4] = ["text", "file", "richCardStandalone", "richCardCarousel"];
/// Members of `file`.
const FILE_MEMBERS: [&str; 3] = ["fileUrl", "thumbnailUrl", "contentDescription"];
/// Members of a typing event.
const EVENT_MEMBERS: [&str; 3] = ["from", "to", "composing"];

/// The error type Kaleyra names for a code.
fn error_type(code: u16) -> &'static str {
    match code {
        1417 => "INVALID_NUMBER",
        1419 => "INVALID_SERVICE_CODE",
        1420 => "INVALID_TTL",
        1423 => "CHANNEL_UNSUPPORTED",
        _ => "INVALID_REQUEST",
    }
}

/// The refusal of `operation` with Kaleyra `code`, HTTP 400 (405 for 1405).
pub(super) fn refusal(operation: &str, code: u16, message: &str) -> Refusal {
    refusal_typed(operation, code, error_type(code), message)
}

fn refusal_typed(operation: &str, code: u16, error_code: &str, message: &str) -> Refusal {
    let status = if code == 1405 { 405 } else { 400 };
    let body = if operation == "events" {
        json!({
            "code": code,
            "message": message,
            "data": [],
            "error": { "error_code": error_code, "error_message": message },
        })
    } else {
        json!({
            "code": code,
            "message": message,
            "data": { "error": { "error_code": error_code, "error_message": message } },
        })
    };
    Refusal { status, body }
}

/// A 1400 of the given type, naming the member.
fn invalid(operation: &str, error_code: &str, path: &str, problem: &str) -> Refusal {
    refusal_typed(
        operation,
        1400,
        error_code,
        &format!("Request invalid: Path $.{path}: {problem}"),
    )
}

fn parse_object(operation: &str, incoming: &Incoming) -> Result<Map<String, Value>, Refusal> {
    let content_type = incoming
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(refusal_typed(
            operation,
            1400,
            "INVALID_FIELD_FORMAT",
            &format!("Content-Type must be application/json, got `{content_type}`"),
        ));
    }
    match serde_json::from_slice::<Value>(&incoming.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(refusal_typed(
            operation,
            1400,
            "INVALID_FIELD_FORMAT",
            "Invalid JSON in request body: expected an object",
        )),
        Err(e) => Err(refusal_typed(
            operation,
            1400,
            "INVALID_FIELD_FORMAT",
            &format!("Invalid JSON in request body: {e}"),
        )),
    }
}

fn known_members(
    operation: &str,
    map: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), Refusal> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            operation,
            "INVALID_REQUEST",
            &format!("{prefix}{k}"),
            "unknown field",
        )),
        None => Ok(()),
    }
}

/// `from`: present, a string, the agent id.
fn check_from(
    operation: &str,
    settings: &KaleyraSettings,
    map: &Map<String, Value>,
) -> Result<(), Refusal> {
    match map.get("from") {
        None | Some(Value::Null) => Err(invalid(
            operation,
            "MISSING_REQUIRED_FIELD",
            "from",
            "required",
        )),
        Some(Value::String(from)) if from == &settings.agent_id => Ok(()),
        Some(Value::String(from)) => Err(refusal(
            operation,
            1419,
            &format!("Invalid service code: `{from}` is not an agent of this account"),
        )),
        Some(_) => Err(invalid(
            operation,
            "INVALID_FIELD_FORMAT",
            "from",
            "must be a string",
        )),
    }
}

/// 7 to 15 digits, not starting with 0 (E.164; see `providers::identity::E164`).
fn is_msisdn_digits(s: &str) -> bool {
    (7..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
}

fn is_https_url(s: &str) -> bool {
    reqwest::Url::parse(s)
        .map(|u| u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()))
        .unwrap_or(false)
}

fn optional_string(
    operation: &str,
    map: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, Refusal> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            operation,
            "INVALID_FIELD_FORMAT",
            path,
            "must be a string",
        )),
    }
}

/// Checks a send; on success its answer and the messages it creates.
pub(super) fn message(
    settings: &KaleyraSettings,
    incoming: &Incoming,
) -> Result<(Value, Vec<EmulatedMessage>), Refusal> {
    const OP: &str = "messages";
    let map = parse_object(OP, incoming)?;
    known_members(OP, &map, &MESSAGE_MEMBERS, "")?;
    check_from(OP, settings, &map)?;

    let recipients = match map.get("to") {
        None | Some(Value::Null) => {
            return Err(invalid(OP, "MISSING_REQUIRED_FIELD", "to", "required"));
        }
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(_) => {
            return Err(invalid(
                OP,
                "INVALID_REQUEST",
                "to",
                "must be a non-empty array of numbers",
            ));
        }
    };
    if recipients.len() > MAX_RECIPIENTS {
        return Err(invalid(
            OP,
            "INVALID_REQUEST",
            "to",
            &format!("at most {MAX_RECIPIENTS} numbers"),
        ));
    }
    let mut numbers = Vec::with_capacity(recipients.len());
    for (i, item) in recipients.iter().enumerate() {
        match item {
            Value::String(n) if is_msisdn_digits(n) => numbers.push(n.clone()),
            Value::String(n) => {
                return Err(refusal(
                    OP,
                    1417,
                    &format!(
                        "Invalid number: `{n}` (to[{i}]) must be 7 to 15 digits with country code, without `+`"
                    ),
                ));
            }
            _ => {
                return Err(invalid(
                    OP,
                    "INVALID_FIELD_FORMAT",
                    &format!("to[{i}]"),
                    "must be a string",
                ));
            }
        }
    }

    let contents: Vec<&str> = CONTENT_MEMBERS
        .iter()
        .copied()
        .filter(|k| map.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let content = match contents.as_slice() {
        [one] => *one,
        [] => {
            return Err(invalid(
                OP,
                "MISSING_REQUIRED_FIELD",
                "text",
                "one of text, file, richCardStandalone, richCardCarousel is required",
            ));
        }
        many => {
            return Err(invalid(
                OP,
                "INVALID_REQUEST",
                many[1],
                &format!(
                    "only one content element is allowed, got {}",
                    many.join(", ")
                ),
            ));
        }
    };

    let mut text = None;
    let mut file_url = None;
    match content {
        "text" => match map.get("text") {
            Some(Value::String(t)) if t.trim().is_empty() => {
                return Err(invalid(OP, "INVALID_REQUEST", "text", "must not be empty"));
            }
            Some(Value::String(t)) if t.chars().count() > MAX_TEXT_CHARS => {
                return Err(invalid(
                    OP,
                    "INVALID_REQUEST",
                    "text",
                    &format!(
                        "Cannot have more than {MAX_TEXT_CHARS} characters, but has {}.",
                        t.chars().count()
                    ),
                ));
            }
            Some(Value::String(t)) => text = Some(t.clone()),
            _ => {
                return Err(invalid(
                    OP,
                    "INVALID_FIELD_FORMAT",
                    "text",
                    "must be a string",
                ));
            }
        },
        "file" => {
            let Some(Value::Object(file)) = map.get("file") else {
                return Err(invalid(
                    OP,
                    "INVALID_FIELD_FORMAT",
                    "file",
                    "must be an object",
                ));
            };
            known_members(OP, file, &FILE_MEMBERS, "file.")?;
            match optional_string(OP, file, "fileUrl", "file.fileUrl")? {
                None => {
                    return Err(invalid(
                        OP,
                        "MISSING_REQUIRED_FIELD",
                        "file.fileUrl",
                        "required",
                    ));
                }
                Some(url) if !is_https_url(&url) => {
                    return Err(invalid(
                        OP,
                        "INVALID_REQUEST",
                        "file.fileUrl",
                        "must be a valid public HTTPS URL",
                    ));
                }
                Some(url) => file_url = Some(url),
            }
            if let Some(thumb) = optional_string(OP, file, "thumbnailUrl", "file.thumbnailUrl")?
                && !is_https_url(&thumb)
            {
                return Err(invalid(
                    OP,
                    "INVALID_REQUEST",
                    "file.thumbnailUrl",
                    "must be a valid public HTTPS URL",
                ));
            }
            optional_string(OP, file, "contentDescription", "file.contentDescription")?;
        }
        "richCardStandalone" => standalone_card(&map["richCardStandalone"])?,
        "richCardCarousel" => carousel(&map["richCardCarousel"])?,
        other => {
            if !map.get(other).is_some_and(Value::is_object) {
                return Err(invalid(
                    OP,
                    "INVALID_FIELD_FORMAT",
                    other,
                    "must be an object",
                ));
            }
        }
    }

    match map.get("suggestions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(s)) if s.len() <= MAX_SUGGESTIONS => {
            for (i, suggestion) in s.iter().enumerate() {
                suggestion_ok(OP, suggestion, &format!("suggestions[{i}]"))?;
            }
        }
        Some(Value::Array(_)) => {
            return Err(invalid(
                OP,
                "INVALID_REQUEST",
                "suggestions",
                &format!("at most {MAX_SUGGESTIONS} suggestions"),
            ));
        }
        Some(_) => {
            return Err(invalid(
                OP,
                "INVALID_FIELD_FORMAT",
                "suggestions",
                "must be an array",
            ));
        }
    }
    let reference = optional_string(OP, &map, "ref", "ref")?;
    optional_string(OP, &map, "ref1", "ref1")?;
    optional_string(OP, &map, "ref2", "ref2")?;
    match map.get("ttl") {
        None | Some(Value::Null) => {}
        Some(v)
            if v.as_u64()
                .is_some_and(|t| (1..=MAX_TTL_SECONDS).contains(&t)) => {}
        Some(_) => {
            return Err(refusal(
                OP,
                1420,
                &format!("Invalid TTL: must be whole seconds from 1 to {MAX_TTL_SECONDS}"),
            ));
        }
    }

    let sent: Vec<EmulatedMessage> = numbers
        .iter()
        .map(|to| EmulatedMessage {
            message_id: uuid::Uuid::new_v4().to_string(),
            to: to.clone(),
            reference: reference.clone(),
            text: text.clone(),
            file_url: file_url.clone(),
        })
        .collect();
    let data = match (content, sent.as_slice()) {
        ("text", [one]) => json!({ "to": one.to, "messageId": one.message_id }),
        _ => json!({
            "recipientDetails": sent
                .iter()
                .map(|m| json!({ "messageId": m.message_id, "to": m.to }))
                .collect::<Vec<_>>(),
        }),
    };
    let body = json!({
        "code": "1200",
        "message": "Message Sent Successfully to provider",
        "data": data,
        "error": {},
    });
    Ok((body, sent))
}

/// Checks a typing event; on success its answer.
pub(super) fn event(settings: &KaleyraSettings, incoming: &Incoming) -> Result<Value, Refusal> {
    const OP: &str = "events";
    let map = parse_object(OP, incoming)?;
    known_members(OP, &map, &EVENT_MEMBERS, "")?;
    check_from(OP, settings, &map)?;
    let to = match map.get("to") {
        None | Some(Value::Null) => {
            return Err(invalid(OP, "MISSING_REQUIRED_FIELD", "to", "required"));
        }
        Some(Value::String(to)) => to,
        Some(_) => {
            return Err(invalid(
                OP,
                "INVALID_FIELD_FORMAT",
                "to",
                "must be a string",
            ));
        }
    };
    if !to.strip_prefix('+').is_some_and(is_msisdn_digits) {
        return Err(refusal(
            OP,
            1417,
            &format!("Invalid number: `{to}` must be in E.164 format with `+`"),
        ));
    }
    match map.get("composing") {
        None | Some(Value::Null) => {
            return Err(invalid(
                OP,
                "MISSING_REQUIRED_FIELD",
                "composing",
                "required",
            ));
        }
        Some(Value::Object(c)) if c.is_empty() => {}
        Some(_) => {
            return Err(invalid(
                OP,
                "INVALID_REQUEST",
                "composing",
                "must be an empty object",
            ));
        }
    }
    Ok(json!({
        "code": "RCS1002",
        "message": "Event published successfully",
        "data": {
            "requestId": uuid::Uuid::new_v4().to_string(),
            "to": to,
            "messageId": uuid::Uuid::new_v4().to_string(),
        },
        "error": {},
    }))
}

/// Most suggestions on one rich card.
pub const MAX_CARD_SUGGESTIONS: usize = 4;

/// `richCardStandalone` (Kaleyra's rich card pages; enum values in Google RBM's upper case,
/// which Kaleyra's fields mirror): `cardOrientation` `VERTICAL` / `HORIZONTAL`;
/// `thumbnailImageAlignment` `LEFT` / `RIGHT` on horizontal cards only; `content.title` ≤200,
/// `content.description` ≤2,000 characters; `content.media.file.fileUrl` an https URL;
/// `content.media.height` `SHORT` / `MEDIUM` / `TALL`; at most [`MAX_CARD_SUGGESTIONS`]
/// suggestions.
fn standalone_card(card: &Value) -> Result<(), Refusal> {
    const OP: &str = "messages";
    const P: &str = "richCardStandalone";
    let bad = |path: &str, why: &str| invalid(OP, "INVALID_REQUEST", path, why);
    let orientation = card["cardOrientation"].as_str();
    if !matches!(orientation, Some("VERTICAL" | "HORIZONTAL")) {
        return Err(bad(
            &format!("{P}.cardOrientation"),
            "must be VERTICAL or HORIZONTAL",
        ));
    }
    if let Some(align) = card.get("thumbnailImageAlignment") {
        if orientation != Some("HORIZONTAL") {
            return Err(bad(
                &format!("{P}.thumbnailImageAlignment"),
                "is for HORIZONTAL cards only",
            ));
        }
        if !matches!(align.as_str(), Some("LEFT" | "RIGHT")) {
            return Err(bad(
                &format!("{P}.thumbnailImageAlignment"),
                "must be LEFT or RIGHT",
            ));
        }
    }
    let content = &card["content"];
    if !content.is_object() {
        return Err(invalid(
            OP,
            "MISSING_REQUIRED_FIELD",
            &format!("{P}.content"),
            "required",
        ));
    }
    card_content(content, &format!("{P}.content"))
}

/// Most cards in a `richCardCarousel`, and fewest.
pub const CAROUSEL_CARDS: std::ops::RangeInclusive<usize> = 2..=10;

/// `richCardCarousel` (Kaleyra's carousel pages): `cardWidth` `SMALL` / `MEDIUM`; `cardContents`
/// 2 to 10 cards, each a card `content` as on a standalone card.
fn carousel(carousel: &Value) -> Result<(), Refusal> {
    const OP: &str = "messages";
    const P: &str = "richCardCarousel";
    let bad = |path: &str, why: &str| invalid(OP, "INVALID_REQUEST", path, why);
    if !matches!(carousel["cardWidth"].as_str(), Some("SMALL" | "MEDIUM")) {
        return Err(bad(&format!("{P}.cardWidth"), "must be SMALL or MEDIUM"));
    }
    let Some(cards) = carousel["cardContents"].as_array() else {
        return Err(invalid(
            OP,
            "MISSING_REQUIRED_FIELD",
            &format!("{P}.cardContents"),
            "required",
        ));
    };
    if !CAROUSEL_CARDS.contains(&cards.len()) {
        return Err(bad(
            &format!("{P}.cardContents"),
            &format!("must hold 2 to 10 cards, but has {}", cards.len()),
        ));
    }
    for (i, card) in cards.iter().enumerate() {
        if !card.is_object() {
            return Err(bad(&format!("{P}.cardContents[{i}]"), "must be an object"));
        }
        card_content(card, &format!("{P}.cardContents[{i}]"))?;
    }
    Ok(())
}

/// A card's `content` at `p`: `title` ≤200, `description` ≤2,000 characters;
/// `media.file.fileUrl` an https URL and `media.height` `SHORT` / `MEDIUM` / `TALL`; at least one
/// of the three; at most [`MAX_CARD_SUGGESTIONS`] suggestions.
fn card_content(content: &Value, p: &str) -> Result<(), Refusal> {
    const OP: &str = "messages";
    let bad = |path: &str, why: &str| invalid(OP, "INVALID_REQUEST", path, why);
    for (field, max) in [("title", 200), ("description", 2000)] {
        if let Some(v) = content.get(field) {
            let n = v.as_str().map(|t| t.chars().count());
            if !n.is_some_and(|n| (1..=max).contains(&n)) {
                return Err(bad(
                    &format!("{p}.{field}"),
                    &format!(
                        "Cannot have more than {max} characters, but has {}.",
                        n.unwrap_or(0)
                    ),
                ));
            }
        }
    }
    let media = &content["media"];
    if !media.is_null() {
        if !media["file"]["fileUrl"].as_str().is_some_and(is_https_url) {
            return Err(bad(
                &format!("{p}.media.file.fileUrl"),
                "must be a valid public HTTPS URL",
            ));
        }
        if !matches!(media["height"].as_str(), Some("SHORT" | "MEDIUM" | "TALL")) {
            return Err(bad(
                &format!("{p}.media.height"),
                "must be SHORT, MEDIUM or TALL",
            ));
        }
    } else if content.get("title").is_none() && content.get("description").is_none() {
        return Err(bad(p, "needs a title, a description or media"));
    }
    match content.get("suggestions") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(list)) if list.len() <= MAX_CARD_SUGGESTIONS => {
            for (i, suggestion) in list.iter().enumerate() {
                suggestion_ok(OP, suggestion, &format!("{p}.suggestions[{i}]"))?;
            }
            Ok(())
        }
        Some(_) => Err(bad(
            &format!("{p}.suggestions"),
            &format!("must be an array of at most {MAX_CARD_SUGGESTIONS}"),
        )),
    }
}

/// Longest suggestion text (RCS chips show at most 25 characters).
pub const MAX_SUGGESTION_TEXT: usize = 25;
/// Longest postback data.
pub const MAX_POSTBACK: usize = 2048;

/// One suggestion (Kaleyra's suggestions page): exactly one of `reply` / `action`, each with
/// `text` (1 to [`MAX_SUGGESTION_TEXT`] characters) and `postbackData` (1 to [`MAX_POSTBACK`]),
/// optional `buttonId`.
fn suggestion_ok(operation: &str, suggestion: &Value, path: &str) -> Result<(), Refusal> {
    let Some(map) = suggestion.as_object() else {
        return Err(invalid(
            operation,
            "INVALID_FIELD_FORMAT",
            path,
            "must be an object",
        ));
    };
    let (key, inner) = match (map.get("reply"), map.get("action")) {
        (Some(r), None) => ("reply", r),
        (None, Some(a)) => ("action", a),
        _ => {
            return Err(invalid(
                operation,
                "INVALID_REQUEST",
                path,
                "must hold exactly one of reply, action",
            ));
        }
    };
    let inner_path = format!("{path}.{key}");
    let Some(inner) = inner.as_object() else {
        return Err(invalid(
            operation,
            "INVALID_FIELD_FORMAT",
            &inner_path,
            "must be an object",
        ));
    };
    for (field, max) in [
        ("text", MAX_SUGGESTION_TEXT),
        ("postbackData", MAX_POSTBACK),
    ] {
        let field_path = format!("{inner_path}.{field}");
        match inner.get(field).and_then(Value::as_str) {
            None => {
                return Err(invalid(
                    operation,
                    "MISSING_REQUIRED_FIELD",
                    &field_path,
                    "is required",
                ));
            }
            Some(v) if v.is_empty() || v.chars().count() > max => {
                return Err(invalid(
                    operation,
                    "INVALID_FIELD_FORMAT",
                    &field_path,
                    &format!("must have 1 to {max} characters"),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(open) = inner.get("openUrlAction")
        && !open["url"].as_str().is_some_and(is_https_url)
    {
        return Err(invalid(
            operation,
            "INVALID_REQUEST",
            &format!("{inner_path}.openUrlAction.url"),
            "must be a valid public HTTPS URL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod carousel_tests {
    use super::*;
    use serde_json::json;

    fn card(title: &str) -> Value {
        json!({
            "title": title,
            "media": { "height": "MEDIUM", "file": { "fileUrl": "https://acme.example/i.png" } },
            "suggestions": [{ "reply": { "text": "Book", "postbackData": "book" } }],
        })
    }

    fn why(refusal: Refusal) -> String {
        refusal.body.to_string()
    }

    #[test]
    fn a_carousel_of_two_to_ten_checked_cards_passes_and_the_rest_is_refused_by_path() {
        let good = json!({ "cardWidth": "MEDIUM", "cardContents": [card("A"), card("B")] });
        assert!(carousel(&good).is_ok());
        let broken = |edit: &dyn Fn(&mut Value)| {
            let mut c = good.clone();
            edit(&mut c);
            why(carousel(&c).unwrap_err())
        };
        assert!(broken(&|c| c["cardWidth"] = json!("medium")).contains("cardWidth"));
        assert!(
            broken(&|c| c["cardContents"] = json!([card("A")]))
                .contains("2 to 10 cards, but has 1")
        );
        assert!(
            broken(&|c| c["cardContents"] = Value::Array(vec![card("A"); 11]))
                .contains("but has 11")
        );
        assert!(
            broken(&|c| c["cardContents"][1]["title"] = json!("t".repeat(201)))
                .contains("richCardCarousel.cardContents[1].title")
        );
        assert!(
            broken(
                &|c| c["cardContents"][0]["suggestions"][0]["reply"]["text"] =
                    json!("x".repeat(26))
            )
            .contains("cardContents[0].suggestions[0]")
        );
    }
}
