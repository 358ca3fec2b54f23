//! WhatsApp's business-initiated rules as 8x8 applies them: template sends checked strictly
//! (`content.template`), and free-form messages outside the 24-hour customer-service window
//! refused the way the real service refuses them.
//!
//! **Template sends** (`type: template`, the form of 8x8's "Constructing WhatsApp Template Send
//! Requests" guide): `content.template` is an object with exactly `name` (1 to 512 lower-case
//! letters, digits and `_`), `language` (`en`, `en_US`, …) and optional `components`, an array
//! of objects `{type, parameters?, subType?, index?}` whose `type` is `header`, `body` or
//! `button` (any case, as 8x8's examples write `body` and `Button`); each parameter is an
//! object with a `type`; a `text` parameter has a non-empty `text` of at most 1,024 characters
//! with no line break, no tab and no more than four spaces in a row (WhatsApp's rule for
//! parameters). 8x8 documents its 30xx payload codes for templates without listing them: the
//! emulator answers 400 with code 1000 (invalid parameter) naming the field. A template on an
//! RCS sub-account is refused with 3010.
//!
//! **The 24-hour window**: 8x8 accepts a free-form message (any type but `template`) to a
//! WhatsApp user whose last message is 24 hours old or more (or who never wrote), answers
//! `queued`, and then reports it `undelivered` with `errorCode` 1022 "Message window expired"
//! (WhatsApp's 131047) on the delivery receipt. The emulator does the same: the send is
//! accepted and recorded as refused ([`EightByEightEmulator::window_refusals`]), and
//! [`EightByEightEmulator::window_receipt`] builds that receipt. Inbound messages are recorded
//! per user by the emulator's webhook sender, at the emulator's clock.

use serde_json::{Map, Value};

use super::{EightByEightEmulator, StatusFormat, StatusUpdate, WebhookPayload, WebhookUser, lock};

/// WhatsApp's customer-service window.
pub const WINDOW: chrono::Duration = chrono::Duration::hours(24);
/// 8x8's delivery-receipt code for a message sent outside the window.
pub const WINDOW_EXPIRED_CODE: i64 = 1022;
/// Its message.
pub const WINDOW_EXPIRED_MESSAGE: &str = "Message window expired";
/// WhatsApp's own code, passed on as `providerErrorCode`.
pub const WINDOW_EXPIRED_WHATSAPP_CODE: &str = "131047";
/// Longest text parameter.
const MAX_PARAMETER_CHARS: usize = 1024;

/// Checks `content.template`; `Err((code, message))` names the field.
pub(crate) fn check_template(content: &Map<String, Value>) -> Result<(), (u32, String)> {
    let invalid = |m: String| Err((1000, format!("Invalid parameter: {m}")));
    let Some(template) = content.get("template").and_then(Value::as_object) else {
        return invalid("content.template is required for type template".into());
    };
    if let Some(unknown) = template
        .keys()
        .find(|k| !["name", "language", "components"].contains(&k.as_str()))
    {
        return invalid(format!(
            "content.template.{unknown} is not a template field"
        ));
    }
    let name = template.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty()
        || name.len() > 512
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return invalid(
            "content.template.name must be a template name ([a-z0-9_], 1 to 512)".into(),
        );
    }
    let language = template
        .get("language")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut parts = language.split('_');
    let lang = parts.next().unwrap_or_default();
    let valid_language = (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && parts.next().is_none_or(|r| {
            (2..=3).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        && parts.next().is_none();
    if !valid_language {
        return invalid("content.template.language must be a language code (en, en_US, …)".into());
    }
    let components = match template.get("components") {
        None => return Ok(()),
        Some(Value::Array(list)) => list,
        Some(_) => return invalid("content.template.components must be an array".into()),
    };
    for (i, component) in components.iter().enumerate() {
        let path = format!("content.template.components[{i}]");
        let Some(component) = component.as_object() else {
            return invalid(format!("{path} must be an object"));
        };
        let kind = component
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        if !kind
            .as_deref()
            .is_some_and(|k| ["header", "body", "button"].contains(&k))
        {
            return invalid(format!("{path}.type must be header, body or button"));
        }
        let parameters = match component.get("parameters") {
            None => continue,
            Some(Value::Array(list)) => list,
            Some(_) => return invalid(format!("{path}.parameters must be an array")),
        };
        for (j, parameter) in parameters.iter().enumerate() {
            let path = format!("{path}.parameters[{j}]");
            let Some(kind) = parameter.get("type").and_then(Value::as_str) else {
                return invalid(format!("{path}.type is required"));
            };
            if kind != "text" {
                continue;
            }
            let Some(text) = parameter.get("text").and_then(Value::as_str) else {
                return invalid(format!("{path}.text is required for a text parameter"));
            };
            if text.trim().is_empty()
                || text.chars().count() > MAX_PARAMETER_CHARS
                || text.contains(['\n', '\t'])
                || text.contains("     ")
            {
                return invalid(format!(
                    "{path}.text must be 1 to {MAX_PARAMETER_CHARS} characters without line breaks, tabs or more than 4 spaces in a row"
                ));
            }
        }
    }
    Ok(())
}

/// The key an inbound user is recorded under: their number, else their user id.
pub(crate) fn user_key(user: &Map<String, Value>) -> Option<String> {
    user.get("msisdn")
        .or_else(|| user.get("channelUserId"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl EightByEightEmulator {
    /// Records that `user` wrote at `at` (the emulator's webhook sender does it for every
    /// inbound message it builds): free-form messages to them are allowed for 24 hours.
    pub fn record_inbound_from(&self, user: &WebhookUser, at: chrono::DateTime<chrono::Utc>) {
        let mut state = lock(&self.inner.shared.state);
        for key in [&user.msisdn, &user.channel_user_id].into_iter().flatten() {
            let newest = state.inbound_users.entry(key.clone()).or_insert(at);
            if *newest < at {
                *newest = at;
            }
        }
    }

    /// The umids of the free-form messages accepted outside the 24-hour window (8x8 reports
    /// them undelivered with code 1022), in order.
    pub fn window_refusals(&self) -> Vec<String> {
        lock(&self.inner.shared.state).window_refused.clone()
    }

    /// The receipt 8x8 sends for a message accepted outside the window: `undelivered` with
    /// `errorCode` 1022 "Message window expired" and WhatsApp's 131047; `None` for a message
    /// not refused so.
    pub fn window_receipt(&self, umid: &str) -> Option<WebhookPayload> {
        if !self.window_refusals().iter().any(|u| u == umid) {
            return None;
        }
        let sent = self.sent_messages().into_iter().find(|m| m.umid == umid)?;
        let mut update = StatusUpdate::new(umid, "undelivered");
        update.client_message_id = sent.client_message_id.clone();
        update.detail = Some("undelivered_to_recipient".into());
        update.error = Some((WINDOW_EXPIRED_CODE, WINDOW_EXPIRED_MESSAGE.into()));
        update.whatsapp_error = Some(WINDOW_EXPIRED_WHATSAPP_CODE.into());
        Some(self.webhooks().status(StatusFormat::V9, &update))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn content(template: Value) -> Map<String, Value> {
        json!({ "template": template }).as_object().unwrap().clone()
    }

    #[test]
    fn template_sends_are_checked_strictly() {
        let good = json!({ "name": "agent_follow_up", "language": "en_US",
            "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "Hi there" }] }] });
        assert_eq!(check_template(&content(good)), Ok(()));
        for (bad, field) in [
            (json!({ "name": "Agent Follow", "language": "en" }), "name"),
            (json!({ "name": "a", "language": "english" }), "language"),
            (
                json!({ "name": "a", "language": "en", "extra": 1 }),
                "extra",
            ),
            (
                json!({ "name": "a", "language": "en", "components": [{ "type": "footer" }] }),
                "type",
            ),
            (
                json!({ "name": "a", "language": "en", "components": [{ "type": "body",
                "parameters": [{ "type": "text", "text": "two\nlines" }] }] }),
                "text",
            ),
            (
                json!({ "name": "a", "language": "en", "components": [{ "type": "body",
                "parameters": [{ "type": "text", "text": "" }] }] }),
                "text",
            ),
        ] {
            let (code, message) = check_template(&content(bad)).unwrap_err();
            assert_eq!(code, 1000);
            assert!(message.contains(field), "{message}");
        }
    }
}
