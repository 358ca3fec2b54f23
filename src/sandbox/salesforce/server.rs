//! The HTTP side: a listener whose connections can be cut on purpose, the one handler that
//! parses and logs every request, failure injection, delays, the rate limit, and dispatch to
//! the token endpoint and the ISA endpoints.

use std::{
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::sandbox::net::{KillSwitch, KillableListener};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Multipart, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};

use super::{
    EmulatorSettings, FILE_DOWNLOAD_PATH, Failure, LoggedAttachment, LoggedRequest,
    RATE_LIMIT_CODE, RATE_LIMIT_MESSAGE, TOKEN_PATH, errors::IsaError, files, isa, lock,
    state::State as OrgState, token,
};

/// Largest request body read; a bigger one is refused with 413 / 10008.
const MAX_BODY_BYTES: usize = super::MAX_ATTACHMENT_BYTES + 4 * 1024 * 1024;
/// How much of an unparseable body the log keeps.
const RAW_LOG_BYTES: usize = 4096;
/// How many characters of a secret the log keeps.
const REDACT_KEEP: usize = 6;
/// Prefix of every ISA path.
pub(crate) const ISA_PREFIX: &str = "/api/v1";

/// What the handlers share.
pub(crate) struct Shared {
    pub(crate) settings: EmulatorSettings,
    pub(crate) base_url: String,
    pub(crate) key: DecodingKey,
    pub(crate) state: Mutex<OrgState>,
    pub(crate) log: Mutex<Vec<LoggedRequest>>,
    pub(crate) faults: Faults,
}

impl Shared {
    pub(crate) fn new(settings: EmulatorSettings, base_url: String) -> io::Result<Self> {
        let key = DecodingKey::from_rsa_pem(settings.public_key_pem.as_bytes()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("public_key_pem is not an RSA public key or certificate: {e}"),
            )
        })?;
        let faults = Faults::new(settings.rate_limit_per_second);
        Ok(Self {
            settings,
            base_url,
            key,
            state: Mutex::new(OrgState::new()),
            log: Mutex::new(Vec::new()),
            faults,
        })
    }

    /// The audience assertions must name.
    pub(crate) fn audience(&self) -> &str {
        self.settings.audience.as_deref().unwrap_or(&self.base_url)
    }
}

// ---------------------------------------------------------------------------------------------
// Faults: injected failures, delays and the rate limit.

struct Queued<T> {
    method: Option<String>,
    path: String,
    item: T,
    /// Matching calls let through untouched before this one applies.
    skip: u32,
    remaining: u32,
}

impl<T> Queued<T> {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.path == path
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

struct RateWindow {
    limit: Option<u32>,
    started: Instant,
    count: u32,
}

/// Failures and delays queued for the next calls, and the rate limit.
pub(crate) struct Faults {
    failures: Mutex<Vec<Queued<Failure>>>,
    delays: Mutex<Vec<Queued<Duration>>>,
    rate: Mutex<RateWindow>,
}

/// Length of the rate-limit window.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Faults {
    fn new(limit: Option<u32>) -> Self {
        Self {
            failures: Mutex::new(Vec::new()),
            delays: Mutex::new(Vec::new()),
            rate: Mutex::new(RateWindow {
                limit,
                started: Instant::now(),
                count: 0,
            }),
        }
    }

    pub(crate) fn inject(&self, endpoint: &str, failure: Failure, skip: u32, times: u32) {
        if times == 0 {
            return;
        }
        let (method, path) = parse_endpoint(endpoint);
        lock(&self.failures).push(Queued {
            method,
            path,
            item: failure,
            skip,
            remaining: times,
        });
    }

    pub(crate) fn delay(&self, endpoint: &str, latency: Duration, times: u32) {
        if times == 0 {
            return;
        }
        let (method, path) = parse_endpoint(endpoint);
        lock(&self.delays).push(Queued {
            method,
            path,
            item: latency,
            skip: 0,
            remaining: times,
        });
    }

    pub(crate) fn clear(&self) {
        lock(&self.failures).clear();
        lock(&self.delays).clear();
    }

    pub(crate) fn set_rate_limit(&self, limit: Option<u32>) {
        let mut rate = lock(&self.rate);
        rate.limit = limit;
        rate.count = 0;
        rate.started = Instant::now();
    }

    fn take<T: Clone>(queue: &Mutex<Vec<Queued<T>>>, method: &str, path: &str) -> Option<T> {
        let mut queue = lock(queue);
        let index = queue.iter().position(|q| q.matches(method, path))?;
        if queue[index].skip > 0 {
            queue[index].skip -= 1;
            return None;
        }
        let item = queue[index].item.clone();
        queue[index].remaining -= 1;
        if queue[index].remaining == 0 {
            queue.remove(index);
        }
        Some(item)
    }

    /// Counts one call; false when it exceeds the limit of the current one-second window.
    fn admit(&self) -> bool {
        let mut rate = lock(&self.rate);
        let Some(limit) = rate.limit else {
            return true;
        };
        let now = Instant::now();
        if now.duration_since(rate.started) >= RATE_WINDOW {
            rate.started = now;
            rate.count = 0;
        }
        if rate.count >= limit {
            return false;
        }
        rate.count += 1;
        true
    }
}

/// `"PATCH /api/v1/agentWork"` → (Some("PATCH"), "/api/v1/agentWork"); `"/interactions"` →
/// (None, "/api/v1/interactions").
fn parse_endpoint(endpoint: &str) -> (Option<String>, String) {
    let endpoint = endpoint.trim();
    let (method, path) = match endpoint.split_once(' ') {
        Some((m, p)) => (Some(m.trim().to_ascii_uppercase()), p.trim()),
        None => (None, endpoint),
    };
    let path = if path.starts_with(ISA_PREFIX)
        || path.starts_with("/services/")
        || path.starts_with(FILE_DOWNLOAD_PATH)
    {
        path.to_owned()
    } else if path.starts_with('/') {
        format!("{ISA_PREFIX}{path}")
    } else {
        format!("{ISA_PREFIX}/{path}")
    };
    (method, path)
}

// ---------------------------------------------------------------------------------------------
// Answers.

/// What a handler answers.
#[derive(Debug)]
pub(crate) enum Answer {
    Reply {
        status: u16,
        body: Value,
        headers: Vec<(header::HeaderName, String)>,
    },
    /// 200 with a file as the body.
    File {
        content_type: String,
        body: Bytes,
    },
    Disconnect,
}

impl Answer {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self::Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

impl From<IsaError> for Answer {
    fn from(e: IsaError) -> Self {
        Self::json(e.status, e.body())
    }
}

fn failure_answer(failure: Failure) -> Answer {
    match failure {
        Failure::IsaError { http_status, code } => {
            Answer::from(IsaError::new(code, "injected").with_status(http_status))
        }
        Failure::IsaErrorMessage {
            http_status,
            code,
            message,
        } => Answer::from(IsaError::new(code, message).with_status(http_status)),
        Failure::RetryAfter {
            http_status,
            seconds,
        } => {
            let body = if http_status == 429 {
                json!({ "code": RATE_LIMIT_CODE, "message": RATE_LIMIT_MESSAGE })
            } else {
                json!({
                    "code": http_status,
                    "message": format!("Service unavailable; retry after {seconds} s"),
                })
            };
            Answer::Reply {
                status: http_status,
                body,
                headers: vec![(header::RETRY_AFTER, seconds.to_string())],
            }
        }
        Failure::ErrorReason(reason) => {
            Answer::json(200, json!({ "success": false, "errorReason": reason }))
        }
        Failure::TokenError { error, description } => Answer::json(
            400,
            json!({ "error": error, "error_description": description }),
        ),
        Failure::Disconnect => Answer::Disconnect,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsed request bodies.

/// One file part of a multipart body.
#[derive(Debug, Clone)]
pub(crate) struct FilePart {
    pub(crate) name: String,
    pub(crate) filename: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) data: Bytes,
}

impl FilePart {
    pub(crate) fn logged(&self) -> LoggedAttachment {
        LoggedAttachment {
            part_name: self.name.clone(),
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            length: self.data.len(),
        }
    }
}

/// A multipart body split into its parts.
#[derive(Debug, Default)]
pub(crate) struct MultipartBody {
    /// The `json` parts: parsed, or the raw text when not JSON.
    pub(crate) json: Vec<Result<Value, String>>,
    /// The `attachments` parts.
    pub(crate) files: Vec<FilePart>,
    /// Names of any other parts.
    pub(crate) other: Vec<String>,
}

/// A request body as understood from its `Content-Type`.
#[derive(Debug)]
pub(crate) enum Payload {
    Empty,
    Json(Value),
    NotJson(String),
    Form(Vec<(String, String)>),
    Multipart(MultipartBody),
    BadMultipart(String),
}

/// A request after parsing.
pub(crate) struct Incoming {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Payload,
}

impl Incoming {
    /// The media type of `Content-Type`, lower-cased, without parameters.
    pub(crate) fn media_type(&self) -> Option<String> {
        media_type(&self.headers)
    }
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

async fn parse_payload(request: Request, bytes: Bytes) -> Payload {
    if bytes.is_empty() {
        return Payload::Empty;
    }
    match media_type(request.headers()).as_deref() {
        Some("multipart/form-data") => {
            let (parts, _) = request.into_parts();
            let request = Request::from_parts(parts, Body::from(bytes));
            match parse_multipart(request).await {
                Ok(m) => Payload::Multipart(m),
                Err(e) => Payload::BadMultipart(e),
            }
        }
        Some("application/x-www-form-urlencoded") => match std::str::from_utf8(&bytes) {
            Ok(text) => Payload::Form(parse_form(text)),
            Err(_) => Payload::NotJson(lossy(&bytes)),
        },
        _ => match serde_json::from_slice(&bytes) {
            Ok(v) => Payload::Json(v),
            Err(_) => Payload::NotJson(lossy(&bytes)),
        },
    }
}

async fn parse_multipart(request: Request) -> Result<MultipartBody, String> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| e.body_text())?;
    let mut body = MultipartBody::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| e.body_text())?;
        if name == "json" {
            body.json
                .push(serde_json::from_slice(&data).map_err(|_| lossy(&data)));
        } else if name == "attachments" {
            body.files.push(FilePart {
                name,
                filename,
                content_type,
                data,
            });
        } else {
            body.other.push(name);
        }
    }
    Ok(body)
}

/// Decodes `application/x-www-form-urlencoded`.
fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match s
                    .get(i + 1..i + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lossy(bytes: &[u8]) -> String {
    let end = bytes.len().min(RAW_LOG_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `secret` cut to its first characters and `…`.
pub(crate) fn redact(secret: &str) -> String {
    let kept: String = secret.chars().take(REDACT_KEEP).collect();
    format!("{kept}…")
}

// ---------------------------------------------------------------------------------------------
// Serving.

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: oneshot::Receiver<()>) {
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
        tracing::warn!(error = %e, "salesforce emulator stopped with an error");
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(kill): ConnectInfo<KillSwitch>,
    request: Request,
) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    let request = Request::from_parts(parts, Body::empty());

    let seq = {
        let mut log = lock(&shared.log);
        let seq = log.len();
        log.push(LoggedRequest {
            seq,
            method: method.clone(),
            path: path.clone(),
            headers: logged_headers(&headers),
            body: None,
            raw_body: None,
            attachments: Vec::new(),
            status: 0,
            response: Value::Null,
            answered_at: None,
        });
        seq
    };

    let answer = match bytes {
        Err(_) => Answer::from(IsaError::new(
            10008,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )),
        Ok(bytes) => {
            let payload = parse_payload(request, bytes).await;
            record_payload(&shared, seq, &payload);
            let incoming = Incoming {
                method,
                path,
                headers,
                payload,
            };
            process(&shared, incoming).await
        }
    };

    record_answer(&shared, seq, &answer);
    // `Date` from the emulator's clock (which tests move), as Salesforce dates its answers:
    // `byocd doctor` compares it with the machine's clock.
    let date = lock(&shared.state)
        .now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let mut response = match answer {
        Answer::Disconnect => {
            kill.pull();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Answer::File { content_type, body } => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
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
    };
    if let Ok(date) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

async fn process(shared: &Shared, incoming: Incoming) -> Answer {
    if let Some(latency) = Faults::take(&shared.faults.delays, &incoming.method, &incoming.path) {
        tokio::time::sleep(latency).await;
    }
    if let Some(failure) = Faults::take(&shared.faults.failures, &incoming.method, &incoming.path) {
        return failure_answer(failure);
    }
    if incoming.path == TOKEN_PATH {
        if incoming.method != "POST" {
            return method_not_allowed(&incoming);
        }
        return token::handle(shared, &incoming);
    }
    if let Some(id) = incoming
        .path
        .strip_prefix(FILE_DOWNLOAD_PATH)
        .and_then(|r| r.strip_prefix('/'))
    {
        return files::download(shared, id, &incoming);
    }
    let Some(resource) = incoming
        .path
        .strip_prefix(ISA_PREFIX)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return not_found(&incoming);
    };
    if !shared.faults.admit() {
        return failure_answer(Failure::RetryAfter {
            http_status: 429,
            seconds: 1,
        });
    }
    isa::handle(shared, resource, &incoming)
}

pub(crate) fn not_found(incoming: &Incoming) -> Answer {
    Answer::from(IsaError::new(10089, format!("no resource at {}", incoming.path)).not_found())
}

pub(crate) fn method_not_allowed(incoming: &Incoming) -> Answer {
    Answer::from(
        IsaError::new(
            10089,
            format!("{} is not allowed on {}", incoming.method, incoming.path),
        )
        .with_status(405),
    )
}

fn logged_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let value = if name == header::AUTHORIZATION {
                redact(&value)
            } else {
                value
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

fn record_payload(shared: &Shared, seq: usize, payload: &Payload) {
    let (body, raw, attachments) = match payload {
        Payload::Empty => (None, None, Vec::new()),
        Payload::Json(v) => (Some(v.clone()), None, Vec::new()),
        Payload::NotJson(raw) | Payload::BadMultipart(raw) => (None, Some(raw.clone()), Vec::new()),
        Payload::Form(fields) => {
            let mut map = serde_json::Map::new();
            for (k, v) in fields {
                let v = if k == "assertion" {
                    redact(v)
                } else {
                    v.clone()
                };
                map.insert(k.clone(), Value::String(v));
            }
            (Some(Value::Object(map)), None, Vec::new())
        }
        Payload::Multipart(m) => {
            let (body, raw) = match m.json.first() {
                Some(Ok(v)) => (Some(v.clone()), None),
                Some(Err(raw)) => (None, Some(raw.clone())),
                None => (None, None),
            };
            (body, raw, m.files.iter().map(FilePart::logged).collect())
        }
    };
    if let Some(entry) = lock(&shared.log).get_mut(seq) {
        entry.body = body;
        entry.raw_body = raw;
        entry.attachments = attachments;
    }
}

fn record_answer(shared: &Shared, seq: usize, answer: &Answer) {
    let (status, response) = match answer {
        Answer::Disconnect => (0, Value::Null),
        Answer::File { body, .. } => (200, json!({ "file_bytes": body.len() })),
        Answer::Reply { status, body, .. } => {
            let mut body = body.clone();
            if let Some(token) = body.get_mut("access_token")
                && let Some(text) = token.as_str()
            {
                *token = Value::String(redact(text));
            }
            (*status, body)
        }
    };
    if let Some(entry) = lock(&shared.log).get_mut(seq) {
        entry.status = status;
        entry.response = response;
        entry.answered_at = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            parse_endpoint("PATCH /api/v1/agentWork"),
            (Some("PATCH".into()), "/api/v1/agentWork".into())
        );
        assert_eq!(
            parse_endpoint("/interactions"),
            (None, "/api/v1/interactions".into())
        );
        assert_eq!(
            parse_endpoint("/services/oauth2/token"),
            (None, "/services/oauth2/token".into())
        );
    }

    #[test]
    fn forms_are_decoded() {
        assert_eq!(
            parse_form("grant_type=urn%3Aietf%3Aparams&x=a+b&y=%zz&z"),
            vec![
                ("grant_type".into(), "urn:ietf:params".into()),
                ("x".into(), "a b".into()),
                ("y".into(), "%zz".into()),
                ("z".into(), String::new()),
            ]
        );
    }

    #[test]
    fn secrets_are_cut() {
        assert_eq!(redact("Bearer 00D!abc"), "Bearer…");
        assert_eq!(redact("abc"), "abc…");
    }
}
