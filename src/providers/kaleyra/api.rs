//! The calls to Kaleyra's RCS API and the reading of its answers.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Kaleyra, PROVIDER_NAME};
use crate::providers::{
    EndUser, OutboundMedia, ProviderError, ProviderErrorClass, RichMessage, Sent, TypingOutcome,
    retry_after,
};

/// How long one call may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `code` of an accepted message.
pub const SEND_SUCCESS_CODE: &str = "1200";

/// `code` of a published typing event.
pub const EVENT_PUBLISHED_CODE: &str = "RCS1002";

/// `code` of a typing event the downstream platform refused (`error.error_code` `PROV_ERROR`).
pub const EVENT_FAILED_CODE: &str = "RCS1004";

/// Image types Kaleyra takes as a thumbnail.
const THUMBNAIL_TYPES: [&str; 4] = ["image/jpeg", "image/jpg", "image/gif", "image/png"];

/// Operation names, for errors and logs.
const SEND_TEXT: &str = "send text";
const SEND_MEDIA: &str = "send media";
const SEND_CHOICES: &str = "send choices";
const TYPING: &str = "typing";
const CHECK: &str = "check credentials";

/// The number `byocd doctor` looks up to prove the credentials: one of the numbers reserved
/// for fiction in North America (555-0100 to 555-0199), which is nobody's.
pub const LOOKUP_NUMBER: &str = "+12025550100";

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Option<Value>,
}

impl Kaleyra {
    fn url(&self, resource: &str) -> String {
        format!("{}/v1/{}/rcs/{resource}", self.base_url, self.sid)
    }

    /// Proves the API key, the SID (and the Basic credentials, if any) with a harmless
    /// authenticated read: the RCS capability check of [`LOOKUP_NUMBER`]
    /// (`GET /lookup/%2B…`). Any answer past authentication (200, or a 4xx about the number)
    /// means Kaleyra accepted the credentials; 401/403 (refused key, another account's SID,
    /// or RCS not enabled on the account) do not, nor does a 404 (no such API at `base_url`).
    pub(super) async fn check_credentials_call(&self) -> Result<(), ProviderError> {
        let url = self.url(&format!("lookup/{}", LOOKUP_NUMBER.replace('+', "%2B")));
        let mut request = self
            .http
            .get(url)
            .timeout(REQUEST_TIMEOUT)
            .header("api-key", self.api_key.expose())
            .header(http::header::ACCEPT, "application/json");
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| unanswered(CHECK, &e.without_url()))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.ok();
        let body = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if (200..300).contains(&status) || (status == 400 && body.is_some()) {
            return Ok(());
        }
        let answer = Answer {
            status,
            retry_after,
            body,
        };
        match read_answer(CHECK, answer, "") {
            Err(mut e) if status == 404 => {
                e.message = Some(format!(
                    "no Kaleyra RCS API at this address (HTTP 404){}",
                    e.message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
                Err(e)
            }
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    pub(super) async fn send_text_message(
        &self,
        to: &EndUser,
        text: &str,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        let digits = recipient_digits(to, SEND_TEXT)?;
        if text.trim().is_empty() {
            return Err(local_error(SEND_TEXT, "the text is empty"));
        }
        let body = json!({
            "from": self.agent_id,
            "to": [digits],
            "text": text,
            "ref": client_reference,
        });
        self.send_message(SEND_TEXT, &body).await
    }

    /// Text with suggested replies (`suggestions[].reply{text, postbackData}`, the floating chip
    /// list of Kaleyra's suggestions page), or a standalone rich card. Kaleyra renders no
    /// buttons or lists: those forms are refused here (the domain never asks for them on RCS).
    pub(super) async fn send_choices_message(
        &self,
        to: &EndUser,
        message: &RichMessage,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        let digits = recipient_digits(to, SEND_CHOICES)?;
        let body = suggestions_body(&self.agent_id, &digits, message, client_reference)
            .ok_or_else(|| {
                local_error(
                    SEND_CHOICES,
                    "Kaleyra RCS renders choices as suggested replies only",
                )
            })?;
        self.send_message(SEND_CHOICES, &body).await
    }

    pub(super) async fn send_file_message(
        &self,
        to: &EndUser,
        media: &OutboundMedia,
        caption: Option<&str>,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        let (url, mime_type, file_name) = match media {
            OutboundMedia::Url {
                url,
                mime_type,
                file_name,
            } => (url, mime_type, file_name),
            OutboundMedia::Bytes { .. } => {
                return Err(local_error(
                    SEND_MEDIA,
                    "Kaleyra hosts no files: byocd must serve the file itself and pass its public \
                     HTTPS URL",
                ));
            }
        };
        let digits = recipient_digits(to, SEND_MEDIA)?;
        check_file_url(url)?;
        let mut file = json!({ "fileUrl": url });
        if THUMBNAIL_TYPES
            .iter()
            .any(|t| mime_type.trim().eq_ignore_ascii_case(t))
        {
            file["thumbnailUrl"] = json!(url);
        }
        let description = caption
            .filter(|c| !c.trim().is_empty())
            .or(file_name.as_deref().filter(|n| !n.trim().is_empty()));
        if let Some(description) = description {
            file["contentDescription"] = json!(description);
        }
        let body = json!({
            "from": self.agent_id,
            "to": [digits],
            "file": file,
            "ref": client_reference,
        });
        self.send_message(SEND_MEDIA, &body).await
    }

    pub(super) async fn publish_composing(
        &self,
        to: &EndUser,
    ) -> Result<TypingOutcome, ProviderError> {
        let Some(msisdn) = &to.msisdn else {
            return Ok(TypingOutcome::Dropped {
                reason: "the end user has no phone number; Kaleyra addresses typing events to \
                         an E.164 number"
                    .to_owned(),
            });
        };
        let body = json!({
            "from": self.agent_id,
            "to": msisdn.as_str(),
            "composing": {},
        });
        let answer = self.post(TYPING, &self.url("events"), &body).await?;
        read_answer(TYPING, answer, EVENT_PUBLISHED_CODE)?;
        Ok(TypingOutcome::Sent)
    }

    async fn send_message(
        &self,
        operation: &'static str,
        body: &Value,
    ) -> Result<Sent, ProviderError> {
        let answer = self.post(operation, &self.url("messages"), body).await?;
        let status = answer.status;
        let body = read_answer(operation, answer, SEND_SUCCESS_CODE)?;
        match message_id(&body) {
            Some(id) => Ok(Sent {
                provider_message_id: id.to_owned(),
            }),
            None => Err(ProviderError {
                provider: PROVIDER_NAME,
                operation,
                class: ProviderErrorClass::Permanent,
                status: Some(status),
                code: Some(SEND_SUCCESS_CODE.to_owned()),
                message: Some(
                    "accepted without a messageId: not retried, as the message may have gone out"
                        .to_owned(),
                ),
                retry_after: None,
            }),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER_NAME, operation = operation, status))]
    async fn post(
        &self,
        operation: &'static str,
        url: &str,
        body: &Value,
    ) -> Result<Answer, ProviderError> {
        let mut request = self
            .http
            .post(url)
            .timeout(REQUEST_TIMEOUT)
            .header("api-key", self.api_key.expose())
            .json(body);
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            tracing::warn!(error = %e, "kaleyra call got no answer");
            unanswered(operation, &e)
        })?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| {
            let e = e.without_url();
            tracing::warn!(error = %e, "kaleyra answer was cut off");
            unanswered(operation, &e)
        })?;
        let body = serde_json::from_slice::<Value>(&bytes).ok();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// The recipient's digits (the send API takes numbers without `+`).
fn recipient_digits(to: &EndUser, operation: &'static str) -> Result<String, ProviderError> {
    to.msisdn
        .as_ref()
        .map(|m| m.digits().to_owned())
        .ok_or_else(|| {
            local_error(
                operation,
                "the end user has no phone number; Kaleyra RCS addresses end users by number",
            )
        })
}

/// The file URL under the same rule as every configured endpoint (`config check` holds
/// `server.public_base_url` to it): https, or http only to a loopback host. A URL that breaks it
/// is refused here rather than sent.
fn check_file_url(url: &str) -> Result<(), ProviderError> {
    crate::config::check_endpoint_url(url)
        .map_err(|message| local_error(SEND_MEDIA, format!("the file URL {message}")))
}

/// A refusal before any call.
fn local_error(operation: &'static str, message: impl Into<String>) -> ProviderError {
    ProviderError {
        provider: PROVIDER_NAME,
        operation,
        class: ProviderErrorClass::Permanent,
        status: None,
        code: None,
        message: Some(message.into()),
        retry_after: None,
    }
}

/// No answer: refused connection, time-out, cut connection.
fn unanswered(operation: &'static str, e: &reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    ProviderError {
        provider: PROVIDER_NAME,
        operation,
        class: ProviderErrorClass::Retryable,
        status: None,
        code: None,
        message: Some(format!("{what}: {}", error_chain(e))),
        retry_after: None,
    }
}

/// An error and its causes, `: `-separated (the URL was removed by the caller).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The answer's `code`, written as a string or a number.
fn answer_code(body: Option<&Value>) -> Option<String> {
    match body?.get("code")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `error_code` and `error_message` of an answer: under `data.error` (messages API) or
/// `error` (events API).
fn answer_error(body: Option<&Value>) -> (Option<String>, Option<String>) {
    let Some(body) = body else {
        return (None, None);
    };
    let detail = [body.pointer("/data/error"), body.get("error")]
        .into_iter()
        .flatten()
        .find(|e| e.get("error_code").is_some() || e.get("error_message").is_some());
    let text = |key: &str| {
        detail
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (text("error_code"), text("error_message"))
}

fn answer_message(body: Option<&Value>) -> Option<String> {
    body?
        .get("message")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Turns an answer into its body on success or into the error it means.
fn read_answer(
    operation: &'static str,
    answer: Answer,
    success_code: &str,
) -> Result<Value, ProviderError> {
    let status = answer.status;
    let body = answer.body.as_ref();
    let code = answer_code(body);
    let (error_code, error_message) = answer_error(body);
    let message = answer_message(body);
    let fail = |class, message: Option<String>, retry_after| ProviderError {
        provider: PROVIDER_NAME,
        operation,
        class,
        status: Some(status),
        code: code.clone(),
        message,
        retry_after,
    };

    if status == 401 || status == 403 {
        return Err(fail(
            ProviderErrorClass::Authorisation,
            Some(format!(
                "credentials refused (check the api key, the SID and the Basic credentials){}",
                message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            None,
        ));
    }
    if code.as_deref() == Some(EVENT_FAILED_CODE) {
        let reason = error_message
            .as_deref()
            .map(provider_error_text)
            .or(message.clone());
        return Err(fail(
            ProviderErrorClass::Permanent,
            Some(format!(
                "the RCS platform refused the event ({}){}",
                error_code.as_deref().unwrap_or("no error code"),
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            )),
            None,
        ));
    }
    if matches!(status, 429 | 500 | 502 | 503 | 504) {
        return Err(fail(
            ProviderErrorClass::Retryable,
            Some(error_message.or(message).unwrap_or_else(|| match status {
                429 => "too many requests".to_owned(),
                _ => "Kaleyra is unavailable".to_owned(),
            })),
            answer.retry_after,
        ));
    }
    if (200..300).contains(&status)
        && code.as_deref() == Some(success_code)
        && let Some(body) = answer.body
    {
        return Ok(body);
    }
    if let Some(c) = code.as_deref()
        && c.len() == 4
        && c.starts_with("14")
    {
        return Err(fail(
            ProviderErrorClass::Permanent,
            Some(describe_request_error(
                c,
                error_code.as_deref(),
                error_message.or(message).as_deref(),
            )),
            None,
        ));
    }
    let what = match (&code, answer.body.is_some()) {
        (Some(c), _) => format!("unexpected answer code {c}"),
        (None, true) => "answer without a code".to_owned(),
        (None, false) => "answer that is not JSON".to_owned(),
    };
    Err(fail(
        ProviderErrorClass::Permanent,
        Some(match error_message.or(message) {
            Some(m) => format!("{what}: {m}"),
            None => what,
        }),
        None,
    ))
}

/// A 14xx error, naming the field it concerns.
fn describe_request_error(code: &str, error_code: Option<&str>, detail: Option<&str>) -> String {
    let (field, kind, default) = match code {
        "1405" => (None, "INVALID_REQUEST", "only POST is allowed"),
        "1417" => (Some("to"), "INVALID_NUMBER", "invalid number"),
        "1419" => (
            Some("from"),
            "INVALID_SERVICE_CODE",
            "the agent id is not a valid service code for this account",
        ),
        "1420" => (Some("ttl"), "INVALID_TTL", "invalid time-to-live"),
        "1423" => (
            Some("to"),
            "CHANNEL_UNSUPPORTED",
            "RCS is not enabled for this subscriber",
        ),
        _ => (None, "INVALID_REQUEST", "invalid request"),
    };
    let kind = error_code.unwrap_or(kind);
    let detail = detail.unwrap_or(default);
    let field = field.map(str::to_owned).or_else(|| json_path(detail));
    match field {
        Some(field) => format!("`{field}` refused ({kind}): {detail}"),
        None => format!("{kind}: {detail}"),
    }
}

/// `a.b` from a message that says `Path $.a.b: …`.
fn json_path(detail: &str) -> Option<String> {
    let (_, rest) = detail.split_once("$.")?;
    let path: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']'))
        .collect();
    let path = path.trim_end_matches('.');
    (!path.is_empty()).then(|| path.to_owned())
}

/// `errorText` of the JSON the typing error's `error_message` holds, or the message itself.
fn provider_error_text(message: &str) -> String {
    serde_json::from_str::<Value>(message)
        .ok()
        .and_then(|v| {
            v.get("errorText")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| message.to_owned())
}

/// The message id of a `1200` answer: `data.messageId`, else the first of `recipientDetails`
/// (under `data` or at the top).
fn message_id(body: &Value) -> Option<&str> {
    [
        "/data/messageId",
        "/data/recipientDetails/0/messageId",
        "/recipientDetails/0/messageId",
    ]
    .into_iter()
    .find_map(|p| {
        body.pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    })
}

/// The send body of RCS text with suggested replies; `None` for forms Kaleyra cannot show.
pub fn suggestions_body(
    agent_id: &str,
    digits: &str,
    message: &RichMessage,
    client_reference: &str,
) -> Option<Value> {
    if let RichMessage::Card(card) = message {
        return Some(card_body(agent_id, digits, card, client_reference));
    }
    if let RichMessage::Carousel(cards) = message {
        return Some(carousel_body(agent_id, digits, cards, client_reference));
    }
    let RichMessage::Suggestions { text, replies } = message else {
        return None;
    };
    Some(json!({
        "from": agent_id,
        "to": [digits],
        "text": text,
        "ref": client_reference,
        "suggestions": replies.iter().map(|r| json!({
            "reply": { "text": r.title, "postbackData": r.id },
        })).collect::<Vec<_>>(),
    }))
}

/// The send body of a standalone rich card (`richCardStandalone`, the shape of Kaleyra's
/// rich card pages; the enum values in Google RBM's upper case, which Kaleyra's fields mirror).
fn card_body(
    agent_id: &str,
    digits: &str,
    card: &crate::providers::LinkCard,
    client_reference: &str,
) -> Value {
    let mut content = json!({
        "title": card.title,
        "media": { "height": "MEDIUM", "file": { "fileUrl": card.image_url } },
        "suggestions": [{ "action": {
            "text": card.open_label,
            "postbackData": card.open_postback,
            "openUrlAction": { "url": card.url },
        } }],
    });
    if let Some(description) = &card.description {
        content["description"] = json!(description);
    }
    json!({
        "from": agent_id,
        "to": [digits],
        "richCardStandalone": { "cardOrientation": "VERTICAL", "content": content },
        "ref": client_reference,
    })
}

/// The send body of a rep's carousel: one card as `richCardStandalone`, two to ten as
/// `richCardCarousel` (`cardWidth` MEDIUM, the cards in `cardContents`), each card in the
/// standalone card's `content` shape.
fn carousel_body(
    agent_id: &str,
    digits: &str,
    cards: &[crate::providers::Card],
    client_reference: &str,
) -> Value {
    let content = |card: &crate::providers::Card| {
        let mut content = json!({
            "title": card.title,
            "media": { "height": "MEDIUM", "file": { "fileUrl": card.image_url } },
            "suggestions": card.suggestions.iter()
                .map(crate::providers::CardSuggestion::rcs_json)
                .collect::<Vec<_>>(),
        });
        if let Some(description) = &card.description {
            content["description"] = json!(description);
        }
        content
    };
    let mut body = json!({ "from": agent_id, "to": [digits], "ref": client_reference });
    match cards {
        [card] => {
            body["richCardStandalone"] = json!({
                "cardOrientation": "VERTICAL",
                "content": content(card),
            });
        }
        cards => {
            body["richCardCarousel"] = json!({
                "cardWidth": "MEDIUM",
                "cardContents": cards.iter().map(content).collect::<Vec<_>>(),
            });
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: Some(body),
        }
    }

    #[test]
    fn request_errors_name_the_field() {
        let e = read_answer(
            SEND_TEXT,
            answer(
                400,
                json!({"code": 1400, "message": "Request invalid: Path $.file.fileUrl: bad URL",
                       "data": {"error": {"error_code": "INVALID_REQUEST",
                       "error_message": "Request invalid: Path $.file.fileUrl: bad URL"}}}),
            ),
            SEND_SUCCESS_CODE,
        )
        .unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Permanent);
        assert_eq!(e.code.as_deref(), Some("1400"));
        assert!(
            e.message
                .unwrap()
                .starts_with("`file.fileUrl` refused (INVALID_REQUEST)")
        );

        let e = read_answer(
            SEND_TEXT,
            answer(400, json!({"code": "1417", "message": "Invalid number"})),
            SEND_SUCCESS_CODE,
        )
        .unwrap_err();
        assert_eq!(
            e.message.as_deref(),
            Some("`to` refused (INVALID_NUMBER): Invalid number")
        );
    }

    #[test]
    fn typing_provider_errors_are_permanent_and_say_why() {
        let e = read_answer(
            TYPING,
            answer(
                400,
                json!({"code": "RCS1004", "message": "Event publish failed", "data": [],
                       "error": {"error_code": "PROV_ERROR",
                       "error_message": "{\n \"status\": \"ERROR\",\n \"errorText\": \"Access Denied\"\n}"}}),
            ),
            EVENT_PUBLISHED_CODE,
        )
        .unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Permanent);
        assert_eq!(e.code.as_deref(), Some("RCS1004"));
        assert_eq!(
            e.message.as_deref(),
            Some("the RCS platform refused the event (PROV_ERROR): Access Denied")
        );
    }

    #[test]
    fn success_codes_must_match_the_operation() {
        let ok = json!({"code": "RCS1002", "message": "Event published successfully", "data": {}, "error": {}});
        assert!(read_answer(TYPING, answer(200, ok.clone()), EVENT_PUBLISHED_CODE).is_ok());
        let e = read_answer(SEND_TEXT, answer(200, ok), SEND_SUCCESS_CODE).unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Permanent);
        let e = read_answer(
            SEND_TEXT,
            Answer {
                status: 200,
                retry_after: None,
                body: None,
            },
            SEND_SUCCESS_CODE,
        )
        .unwrap_err();
        assert_eq!(e.message.as_deref(), Some("answer that is not JSON"));
    }

    #[test]
    fn message_ids_are_found_in_either_shape() {
        assert_eq!(
            message_id(&json!({"code": "1200", "data": {"to": "1", "messageId": "a"}})),
            Some("a")
        );
        assert_eq!(
            message_id(
                &json!({"code": "1200", "data": {"recipientDetails": [{"messageId": "b"}]}})
            ),
            Some("b")
        );
        assert_eq!(
            message_id(&json!({"code": "1200", "recipientDetails": [{"messageId": "c"}]})),
            Some("c")
        );
        assert_eq!(message_id(&json!({"code": "1200", "data": {}})), None);
    }

    #[test]
    fn paths_are_read_from_messages() {
        assert_eq!(
            json_path("Request invalid: Path $.richCardStandalone.content.title: too long"),
            Some("richCardStandalone.content.title".to_owned())
        );
        assert_eq!(json_path("no path"), None);
        assert_eq!(json_path("$."), None);
    }
}
