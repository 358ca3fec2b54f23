//! The HTTP side: a listener whose connections can be cut on purpose, the handler that logs
//! every request, failure injection, delays, authentication and dispatch.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::sandbox::net::{KillSwitch, KillableListener};
use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};

use super::{
    EmulatedMessage, KaleyraFailure, KaleyraSettings, LoggedRequest, lock,
    validate::{self, Refusal},
};

/// Largest request body read.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How much of a body that is not JSON the log keeps.
const RAW_LOG_BYTES: usize = 4096;
/// How many characters of a secret the log keeps.
const REDACT_KEEP: usize = 4;

/// A failure or delay queued for the next calls of an operation.
pub(super) struct Queued<T> {
    pub(super) operation: String,
    pub(super) item: T,
    pub(super) remaining: u32,
}

/// What the handlers share.
pub(super) struct Shared {
    pub(super) settings: KaleyraSettings,
    pub(super) log: Mutex<Vec<LoggedRequest>>,
    pub(super) sent: Mutex<Vec<EmulatedMessage>>,
    pub(super) failures: Mutex<Vec<Queued<KaleyraFailure>>>,
    pub(super) delays: Mutex<Vec<Queued<Duration>>>,
}

impl Shared {
    pub(super) fn new(settings: KaleyraSettings) -> Self {
        Self {
            settings,
            log: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            delays: Mutex::new(Vec::new()),
        }
    }
}

/// Takes one use of the first item queued for `operation`.
fn take<T: Clone>(queue: &Mutex<Vec<Queued<T>>>, operation: &str) -> Option<T> {
    let mut queue = lock(queue);
    let i = queue.iter().position(|q| q.operation == operation)?;
    let item = queue[i].item.clone();
    queue[i].remaining -= 1;
    if queue[i].remaining == 0 {
        queue.remove(i);
    }
    Some(item)
}

/// What the emulator answers.
pub(super) enum Answer {
    Reply {
        status: u16,
        body: Value,
        headers: Vec<(header::HeaderName, String)>,
    },
    Disconnect,
}

impl Answer {
    pub(super) fn json(status: u16, body: Value) -> Self {
        Self::Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

impl From<Refusal> for Answer {
    fn from(r: Refusal) -> Self {
        Self::json(r.status, r.body)
    }
}

/// An HTTP-level refusal (401, 403, 404, 429, 5xx): `{code, message, error}`.
fn http_error(status: u16, error_code: &str, error_message: &str) -> Answer {
    let message = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    Answer::json(
        status,
        json!({
            "code": status,
            "message": message,
            "error": { "error_code": error_code, "error_message": error_message },
        }),
    )
}

fn failure_answer(operation: &str, failure: KaleyraFailure) -> Answer {
    match failure {
        KaleyraFailure::Code { http_status, code } => {
            if (1400..1500).contains(&code) {
                let mut refusal = validate::refusal(operation, code, "injected failure");
                refusal.status = http_status;
                Answer::from(refusal)
            } else {
                http_error(http_status, "INJECTED", "injected failure")
            }
        }
        KaleyraFailure::RetryAfter {
            http_status,
            seconds,
        } => match http_error(http_status, "RETRY_LATER", "try again later") {
            Answer::Reply { status, body, .. } => Answer::Reply {
                status,
                body,
                headers: vec![(header::RETRY_AFTER, seconds.to_string())],
            },
            Answer::Disconnect => Answer::Disconnect,
        },
        KaleyraFailure::ProviderError {
            http_status,
            error_text,
        } => {
            let inner = serde_json::to_string_pretty(&json!({
                "status": "ERROR",
                "errorText": error_text,
            }))
            .unwrap_or_default();
            Answer::json(
                http_status,
                json!({
                    "code": "RCS1004",
                    "message": "Event publish failed",
                    "data": [],
                    "error": { "error_code": "PROV_ERROR", "error_message": inner },
                }),
            )
        }
        KaleyraFailure::Disconnect => Answer::Disconnect,
    }
}

// ---------------------------------------------------------------------------------------------
// Serving.

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: oneshot::Receiver<()>) {
    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared);
    let result = axum::serve(
        KillableListener(listener),
        app.into_make_service_with_connect_info::<KillSwitch>(),
    )
    .with_graceful_shutdown(async {
        let _ = stop.await;
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "kaleyra emulator stopped with an error");
    }
}

/// A request, read whole.
pub(super) struct Incoming {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(kill): ConnectInfo<KillSwitch>,
    request: Request,
) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await;

    let (json_body, raw_body) = match &bytes {
        Ok(b) if b.is_empty() => (None, None),
        Ok(b) => match serde_json::from_slice::<Value>(b) {
            Ok(v) => (Some(v), None),
            Err(_) => (None, Some(lossy(b))),
        },
        Err(_) => (None, None),
    };
    let seq = {
        let mut log = lock(&shared.log);
        let seq = log.len();
        log.push(LoggedRequest {
            seq,
            method: method.clone(),
            path: path.clone(),
            headers: logged_headers(&headers),
            body: json_body,
            raw_body,
            status: 0,
            response: Value::Null,
        });
        seq
    };

    let answer = match bytes {
        Err(_) => http_error(
            413,
            "PAYLOAD_TOO_LARGE",
            &format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ),
        Ok(body) => {
            let incoming = Incoming {
                method,
                path,
                headers,
                body,
            };
            process(&shared, &incoming).await
        }
    };

    record_answer(&shared, seq, &answer);
    match answer {
        Answer::Disconnect => {
            kill.pull();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Answer::Reply {
            status,
            body,
            headers,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, axum::Json(body)).into_response();
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
    }
}

/// `(sid, operation)` of `/v1/{sid}/rcs/{operation}` (`lookup/{number}` is `lookup`).
fn route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1/")?;
    let (sid, rest) = rest.split_once('/')?;
    let operation = rest.strip_prefix("rcs/")?;
    let operation = match operation.split_once('/') {
        Some(("lookup", number)) if !number.is_empty() && !number.contains('/') => "lookup",
        Some(_) => return None,
        None if operation == "lookup" => return None,
        None => operation,
    };
    (!sid.is_empty() && super::OPERATIONS.contains(&operation)).then_some((sid, operation))
}

/// `GET /v1/{sid}/rcs/lookup/{number}`: the number must be E.164 with `+` (sent as `%2B`).
fn lookup(path: &str) -> Answer {
    let raw = path.rsplit('/').next().unwrap_or_default();
    let number = raw.replace("%2B", "+").replace("%2b", "+");
    let digits = number.strip_prefix('+').unwrap_or_default();
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        let mut refusal = validate::refusal(
            "lookup",
            1417,
            "the number must be in E.164 form with a leading + (%2B in the path)",
        );
        refusal.status = 400;
        return Answer::from(refusal);
    }
    Answer::json(
        200,
        json!({
            "code": "RCS200",
            "message": "Capability check completed",
            "data": { "deviceAddress": number, "rcsEnabled": false },
            "error": {},
        }),
    )
}

async fn process(shared: &Shared, incoming: &Incoming) -> Answer {
    let Some((sid, operation)) = route(&incoming.path) else {
        return http_error(
            404,
            "NOT_FOUND",
            &format!("no resource at {}", incoming.path),
        );
    };
    if let Some(latency) = take(&shared.delays, operation) {
        tokio::time::sleep(latency).await;
    }
    if let Some(failure) = take(&shared.failures, operation) {
        return failure_answer(operation, failure);
    }
    let method = if operation == "lookup" { "GET" } else { "POST" };
    if incoming.method != method {
        let mut refusal = validate::refusal(
            operation,
            1405,
            &format!("Only {method} is allowed on this endpoint."),
        );
        refusal.status = 405;
        return Answer::from(refusal);
    }
    if let Err(answer) = authenticate(&shared.settings, &incoming.headers) {
        return answer;
    }
    if sid != shared.settings.sid {
        return http_error(
            403,
            "FORBIDDEN",
            &format!("the api-key does not give access to SID {sid}"),
        );
    }
    if operation == "lookup" {
        return lookup(&incoming.path);
    }
    let result = match operation {
        "messages" => validate::message(&shared.settings, incoming).map(|(body, sent)| {
            lock(&shared.sent).extend(sent);
            body
        }),
        _ => validate::event(&shared.settings, incoming),
    };
    match result {
        Ok(body) => Answer::json(200, body),
        Err(refusal) => Answer::from(refusal),
    }
}

fn authenticate(settings: &KaleyraSettings, headers: &HeaderMap) -> Result<(), Answer> {
    let api_key = headers.get("api-key").map(HeaderValue::as_bytes);
    match api_key {
        None => {
            return Err(http_error(
                401,
                "UNAUTHORIZED",
                "the api-key header is missing",
            ));
        }
        Some(key) if key != settings.api_key.as_bytes() => {
            return Err(http_error(401, "UNAUTHORIZED", "the api-key is not valid"));
        }
        Some(_) => {}
    }
    if let Some((user, password)) = &settings.basic {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        match headers.get(header::AUTHORIZATION) {
            None => {
                return Err(http_error(
                    401,
                    "UNAUTHORIZED",
                    "Basic authorization is required",
                ));
            }
            Some(got) if got.as_bytes() != expected.as_bytes() => {
                return Err(http_error(
                    401,
                    "UNAUTHORIZED",
                    "the Basic credentials are not valid",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn logged_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let value = if name == header::AUTHORIZATION || name.as_str() == "api-key" {
                redact(&value)
            } else {
                value
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

fn record_answer(shared: &Shared, seq: usize, answer: &Answer) {
    let (status, response) = match answer {
        Answer::Disconnect => (0, Value::Null),
        Answer::Reply { status, body, .. } => (*status, body.clone()),
    };
    if let Some(entry) = lock(&shared.log).get_mut(seq) {
        entry.status = status;
        entry.response = response;
    }
}

/// `secret` cut to its first characters and `…`.
fn redact(secret: &str) -> String {
    // A short secret keeps at most a quarter of itself.
    let keep = REDACT_KEEP.min(secret.chars().count() / 4);
    let kept: String = secret.chars().take(keep).collect();
    format!("{kept}…")
}

fn lossy(bytes: &[u8]) -> String {
    let end = bytes.len().min(RAW_LOG_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
