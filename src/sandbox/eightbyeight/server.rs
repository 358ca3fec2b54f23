//! The HTTP side of the 8x8 emulator: a listener whose connections can be cut, one handler
//! that logs every request, failure injection and delays, and the checks of each endpoint.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::sandbox::net::{KillSwitch, KillableListener};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Multipart, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};
use tokio::{net::TcpListener, sync::oneshot};

use super::{
    EightByEightChannel, EightByEightSettings, Failure, LoggedRequest, SentMessage,
    State as AccountState, StoredFile, TYPING_WINDOW, lock,
};

/// Prefix of every sub-account path.
const API_PREFIX: &str = "/api/v1/subaccounts/";
/// Slack on top of the file limit for the multipart envelope.
const MULTIPART_SLACK: usize = 64 * 1024;
/// How much of an unparseable body the log keeps.
const RAW_LOG_BYTES: usize = 4096;
/// Longest `clientMessageId`.
const MAX_CLIENT_MESSAGE_ID: usize = 50;
/// Longest text on WhatsApp.
const MAX_TEXT_WHATSAPP: usize = 4096;
/// Longest text on RCS.
const MAX_TEXT_RCS: usize = 3072;
/// Top-level fields of a send-message request (OAS).
const MESSAGE_FIELDS: [&str; 9] = [
    "user",
    "clientMessageId",
    "type",
    "content",
    "scheduled",
    "expiry",
    "dlrCallbackUrl",
    "channels",
    "context",
];
/// `type` values of a send-message request (OAS enum).
const MESSAGE_TYPES: [&str; 10] = [
    "text",
    "audio",
    "video",
    "image",
    "location",
    "file",
    "interactive",
    "template",
    "carousel",
    "richCard",
];

/// What the handlers share.
pub(crate) struct Shared {
    pub(crate) settings: EightByEightSettings,
    pub(crate) state: Mutex<AccountState>,
    pub(crate) log: Mutex<Vec<LoggedRequest>>,
    pub(crate) faults: Faults,
}

impl Shared {
    pub(crate) fn new(settings: EightByEightSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(AccountState::default()),
            log: Mutex::new(Vec::new()),
            faults: Faults::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

struct Queued<T> {
    operation: String,
    item: T,
    remaining: u32,
}

/// Failures and delays queued for the next calls of an operation.
#[derive(Default)]
pub(crate) struct Faults {
    failures: Mutex<Vec<Queued<Failure>>>,
    delays: Mutex<Vec<Queued<Duration>>>,
}

impl Faults {
    pub(crate) fn inject(&self, operation: &str, failure: Failure, times: u32) {
        if times > 0 {
            lock(&self.failures).push(Queued {
                operation: operation.trim().to_owned(),
                item: failure,
                remaining: times,
            });
        }
    }

    pub(crate) fn delay(&self, operation: &str, latency: Duration, times: u32) {
        if times > 0 {
            lock(&self.delays).push(Queued {
                operation: operation.trim().to_owned(),
                item: latency,
                remaining: times,
            });
        }
    }

    fn take<T: Clone>(queue: &Mutex<Vec<Queued<T>>>, operation: &str) -> Option<T> {
        let mut queue = lock(queue);
        let index = queue.iter().position(|q| q.operation == operation)?;
        let item = queue[index].item.clone();
        queue[index].remaining -= 1;
        if queue[index].remaining == 0 {
            queue.remove(index);
        }
        Some(item)
    }
}

// ---------------------------------------------------------------------------------------------
// Answers.

enum Answer {
    Json {
        status: u16,
        body: Value,
        headers: Vec<(header::HeaderName, String)>,
    },
    File {
        content_type: String,
        bytes: Bytes,
    },
    Disconnect,
}

impl Answer {
    fn ok(status: u16, body: Value) -> Self {
        Self::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

/// An 8x8 error answer.
fn error(shared: &Shared, status: u16, code: u32, message: impl Into<String>) -> Answer {
    Answer::ok(status, error_body(shared, code, message.into()))
}

/// `{code, message, errorId, timestamp}`.
fn error_body(shared: &Shared, code: u32, message: String) -> Value {
    let now = lock(&shared.state).now();
    json!({
        "code": code,
        "message": message,
        "errorId": uuid::Uuid::new_v4().to_string(),
        "timestamp": super::format_time(now),
    })
}

fn failure_answer(shared: &Shared, failure: Failure) -> Answer {
    match failure {
        Failure::Error { http_status, code } => {
            error(shared, http_status, code, format!("Injected error {code}"))
        }
        Failure::RateLimited { seconds } => Answer::Json {
            status: 429,
            body: error_body(shared, 1100, "Too many requests".into()),
            headers: vec![(header::RETRY_AFTER, seconds.to_string())],
        },
        Failure::Disconnect => Answer::Disconnect,
    }
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
        tracing::warn!(error = %e, "8x8 emulator stopped with an error");
    }
}

/// The routes of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Messages,
    Files,
    Events,
    Read(String),
    Details(String),
    Download(String),
}

impl Route {
    fn operation(&self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Files => "files",
            Self::Events => "events",
            Self::Read(_) => "read",
            Self::Details(_) => "details",
            Self::Download(_) => "download",
        }
    }
}

/// (sub-account id, route) of a path; `None` when the API has no such path.
fn route(path: &str) -> Option<(Option<String>, Route)> {
    if let Some(name) = path.strip_prefix("/files/") {
        return (!name.is_empty() && !name.contains('/'))
            .then(|| (None, Route::Download(name.to_owned())));
    }
    let rest = path.strip_prefix(API_PREFIX)?;
    let mut parts = rest.split('/');
    let sa = parts.next()?.to_owned();
    let parts: Vec<&str> = parts.collect();
    let route = match parts.as_slice() {
        ["messages"] => Route::Messages,
        ["files"] => Route::Files,
        ["events"] => Route::Events,
        ["messages", umid, "read"] if !umid.is_empty() => Route::Read((*umid).to_owned()),
        ["messages", umid] if !umid.is_empty() => Route::Details((*umid).to_owned()),
        _ => return None,
    };
    Some((Some(sa), route))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(kill): ConnectInfo<KillSwitch>,
    request: Request,
) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let headers = request.headers().clone();
    let seq = {
        let mut log = lock(&shared.log);
        let seq = log.len();
        log.push(LoggedRequest {
            seq,
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            headers: logged_headers(&headers),
            body: None,
            raw_body: None,
            file: None,
            status: 0,
            response: Value::Null,
        });
        seq
    };
    let answer = process(&shared, seq, &method, &path, query.as_deref(), request).await;
    let (status, response) = match &answer {
        Answer::Json { status, body, .. } => (*status, body.clone()),
        Answer::File { .. } => (200, Value::Null),
        Answer::Disconnect => (0, Value::Null),
    };
    if let Some(entry) = lock(&shared.log).get_mut(seq) {
        entry.status = status;
        entry.response = response;
    }
    match answer {
        Answer::Disconnect => {
            kill.pull();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Answer::File {
            content_type,
            bytes,
        } => {
            let mut response = Response::new(Body::from(bytes));
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            response
        }
        Answer::Json {
            status,
            body,
            headers,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = if body.is_null() {
                status.into_response()
            } else {
                (status, axum::Json(body)).into_response()
            };
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
    }
}

async fn process(
    shared: &Shared,
    seq: usize,
    method: &str,
    path: &str,
    query: Option<&str>,
    request: Request,
) -> Answer {
    let Some((sub_account, route)) = route(path) else {
        return error(
            shared,
            404,
            1300,
            format!("Not found: no resource at {path}"),
        );
    };
    let operation = route.operation();
    if let Some(latency) = Faults::take(&shared.faults.delays, operation) {
        tokio::time::sleep(latency).await;
    }
    if let Some(failure) = Faults::take(&shared.faults.failures, operation) {
        return failure_answer(shared, failure);
    }
    let expected_method = if matches!(route, Route::Download(_) | Route::Details(_)) {
        "GET"
    } else {
        "POST"
    };
    if method != expected_method {
        return error(
            shared,
            405,
            1000,
            format!("Method {method} is not allowed on {path}"),
        );
    }
    if let Route::Download(name) = &route {
        return download(shared, name, query);
    }
    let expected = format!("Bearer {}", shared.settings.api_key);
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if given != Some(expected.as_bytes()) {
        return error(shared, 401, 1200, "Request was not authenticated properly");
    }
    let sub_account = sub_account.unwrap_or_default();
    if !valid_sub_account_id(&sub_account) || sub_account != shared.settings.sub_account_id {
        return error(
            shared,
            400,
            1001,
            "Provided subAccountId doesn't belongs to your account",
        );
    }
    if route == Route::Files {
        return upload(shared, seq, request).await;
    }
    if let Route::Details(umid) = &route {
        return details(shared, umid);
    }
    let limit = MAX_TEXT_WHATSAPP * 16 + MULTIPART_SLACK;
    let media_type = media_type(request.headers());
    let bytes = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                shared,
                413,
                7001,
                format!("Request size must not exceed {limit} bytes"),
            );
        }
    };
    if let Route::Read(umid) = &route {
        return mark_read(shared, umid);
    }
    if media_type.as_deref() != Some("application/json") {
        return error(
            shared,
            415,
            1000,
            "Invalid parameter: Content-Type must be application/json",
        );
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            if let Some(entry) = lock(&shared.log).get_mut(seq) {
                entry.raw_body = Some(lossy(&bytes));
            }
            return error(shared, 400, 1000, format!("Invalid JSON body: {e}"));
        }
    };
    if let Some(entry) = lock(&shared.log).get_mut(seq) {
        entry.body = Some(body.clone());
    }
    let Some(body) = body.as_object() else {
        return error(
            shared,
            400,
            1000,
            "Invalid parameter: body must be an object",
        );
    };
    match route {
        Route::Messages => send_message(shared, body),
        Route::Events => typing(shared, body),
        _ => error(shared, 404, 1300, "Not found"),
    }
}

/// `^[A-Za-z0-9\-._&]{3,50}$`.
pub(crate) fn valid_sub_account_id(id: &str) -> bool {
    (3..=50).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '&'))
}

/// `+` then 7 to 15 digits, not starting with 0 (E.164; see `providers::identity::E164`).
fn valid_e164(msisdn: &str) -> bool {
    msisdn.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    })
}

fn send_message(shared: &Shared, body: &Map<String, Value>) -> Answer {
    let whatsapp = shared.settings.channel == EightByEightChannel::Whatsapp;
    if let Some(unknown) = body.keys().find(|k| !MESSAGE_FIELDS.contains(&k.as_str())) {
        return error(
            shared,
            400,
            1000,
            format!("Invalid parameter: unknown field `{unknown}`"),
        );
    }
    let user = match body.get("user") {
        None | Some(Value::Null) => return error(shared, 400, 3001, "Missed User"),
        Some(Value::Object(u)) => u,
        Some(_) => {
            return error(
                shared,
                400,
                1000,
                "Invalid parameter: user must be an object",
            );
        }
    };
    let msisdn = user.get("msisdn");
    let channel_user_id = user.get("channelUserId");
    if msisdn.is_none() && channel_user_id.is_none() {
        return error(shared, 400, 3002, "Missed MSISDN");
    }
    if let Some(m) = msisdn
        && !m.as_str().is_some_and(valid_e164)
    {
        return error(
            shared,
            400,
            1002,
            "Invalid MSISDN format (not E.164 international number)",
        );
    }
    if let Some(id) = channel_user_id {
        if !whatsapp {
            return error(
                shared,
                400,
                1000,
                "Invalid parameter: channelUserId is only supported on WhatsApp",
            );
        }
        if !id
            .as_str()
            .is_some_and(crate::providers::identity::is_bsuid)
        {
            return error(
                shared,
                400,
                1000,
                "Invalid parameter: channelUserId must be a business-scoped user id (CC.alphanumeric)",
            );
        }
    }
    let client_message_id = match body.get("clientMessageId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > MAX_CLIENT_MESSAGE_ID => {
            return error(shared, 400, 3009, "Too long ClientMessageId");
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return error(
                shared,
                400,
                1000,
                "Invalid parameter: clientMessageId must be a string",
            );
        }
    };
    let Some(kind) = body.get("type").and_then(Value::as_str) else {
        return error(shared, 400, 3010, "Invalid Content Type: type is required");
    };
    if !MESSAGE_TYPES.contains(&kind) || (whatsapp && matches!(kind, "carousel" | "richCard")) {
        return error(shared, 400, 3010, format!("Invalid Content Type `{kind}`"));
    }
    let content = match body.get("content") {
        None | Some(Value::Null) => return error(shared, 400, 3004, "Missed Content"),
        Some(Value::Object(c)) => c,
        Some(_) => {
            return error(
                shared,
                400,
                1000,
                "Invalid parameter: content must be an object",
            );
        }
    };
    if let Some(refusal) = check_content(shared, kind, content, whatsapp) {
        return refusal;
    }
    if kind == "template" {
        if !whatsapp {
            return error(shared, 400, 3010, "Invalid Content Type `template` on RCS");
        }
        if let Err((code, message)) = super::window::check_template(content) {
            return error(shared, 400, code, message);
        }
    }
    if let Some(why) = super::rich::problem(kind, content, whatsapp) {
        return error(shared, 400, 1000, format!("Invalid parameter: {why}"));
    }
    let mut state = lock(&shared.state);
    let now = state.now();
    let umid = uuid::Uuid::new_v4().to_string();
    // WhatsApp's 24-hour window: accepted, then reported undelivered (src/sandbox/eightbyeight/window.rs).
    if whatsapp
        && kind != "template"
        && super::window::user_key(user)
            .and_then(|key| state.inbound_users.get(&key).copied())
            .is_none_or(|at| now - at >= super::window::WINDOW)
    {
        state.window_refused.push(umid.clone());
    }
    state.sent.push(SentMessage {
        umid: umid.clone(),
        user: Value::Object(user.clone()),
        kind: kind.to_owned(),
        content: Value::Object(content.clone()),
        client_message_id: client_message_id.clone(),
        at: now,
    });
    let mut answer = json!({
        "umid": umid,
        "user": Value::Object(user.clone()),
        "status": {
            "state": "queued",
            "timestamp": super::format_time(now),
        },
    });
    if let Some(id) = client_message_id {
        answer["clientMessageId"] = Value::String(id);
    }
    Answer::ok(200, answer)
}

fn check_content(
    shared: &Shared,
    kind: &str,
    content: &Map<String, Value>,
    whatsapp: bool,
) -> Option<Answer> {
    let text = content.get("text");
    if text.is_some_and(|t| !t.is_string()) {
        return Some(error(
            shared,
            400,
            1000,
            "Invalid parameter: content.text must be a string",
        ));
    }
    let text = text.and_then(Value::as_str);
    let limit = if whatsapp {
        MAX_TEXT_WHATSAPP
    } else {
        MAX_TEXT_RCS
    };
    if text.is_some_and(|t| t.chars().count() > limit) {
        return Some(error(
            shared,
            400,
            3006,
            format!("Too long text (limit {limit})"),
        ));
    }
    match kind {
        "text" if text.is_none_or(str::is_empty) => Some(error(shared, 400, 3005, "Missed Text")),
        "image" | "audio" | "video" | "file" => match content.get("url") {
            None | Some(Value::Null) => Some(error(shared, 400, 3007, "Missed Media URL")),
            Some(Value::String(url)) if valid_url(url) => None,
            Some(_) => Some(error(shared, 400, 3008, "Invalid Media URL")),
        },
        "location" => {
            let location = content.get("location").and_then(Value::as_object);
            let coordinate = |key: &str, limit: f64| {
                location
                    .and_then(|l| l.get(key))
                    .and_then(Value::as_f64)
                    .is_some_and(|v| v.abs() <= limit)
            };
            (!(coordinate("latitude", 90.0) && coordinate("longitude", 180.0)))
                .then(|| error(shared, 400, 3021, "Empty or Invalid Location"))
        }
        "interactive" | "template" | "carousel" | "richCard" => {
            let needed = match kind {
                "interactive" => "interactive",
                "template" => "template",
                "carousel" => "carousel",
                _ => "richCard",
            };
            (!content.get(needed).is_some_and(Value::is_object)).then(|| {
                error(
                    shared,
                    400,
                    1000,
                    format!("Invalid parameter: content.{needed} is required for type {kind}"),
                )
            })
        }
        _ => None,
    }
}

/// An absolute http(s) URL with a host.
fn valid_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

fn typing(shared: &Shared, body: &Map<String, Value>) -> Answer {
    let channel = match body.get("channel").and_then(Value::as_str) {
        Some(c @ ("whatsapp" | "rcs")) => c,
        Some(other) => {
            return error(
                shared,
                400,
                1000,
                format!("Invalid parameter: channel `{other}` is not one of whatsapp, rcs"),
            );
        }
        None => return error(shared, 400, 1000, "Invalid parameter: channel is required"),
    };
    let own = match shared.settings.channel {
        EightByEightChannel::Whatsapp => "whatsapp",
        EightByEightChannel::Rcs => "rcs",
    };
    if channel != own {
        return error(
            shared,
            400,
            1000,
            format!("Invalid parameter: this sub-account has no {channel} channel"),
        );
    }
    match body.get("type").and_then(Value::as_str) {
        Some("typing") => {}
        _ => return error(shared, 400, 1000, "Invalid parameter: type must be typing"),
    }
    let Some(umid) = body.get("umid").and_then(Value::as_str) else {
        return error(shared, 400, 3029, "Missed UMID");
    };
    let state = lock(&shared.state);
    let Some(at) = state.inbound.get(umid).copied() else {
        drop(state);
        return error(
            shared,
            404,
            1300,
            "Object wasn't found or is already expired",
        );
    };
    let age = state.now() - at;
    drop(state);
    if age >= chrono::Duration::from_std(TYPING_WINDOW).unwrap_or(chrono::Duration::MAX) {
        return error(
            shared,
            400,
            1010,
            "Parameter out of range: typing indicators can only be sent for inbound messages received within the last 2 hours",
        );
    }
    Answer::ok(200, Value::Null)
}

/// `GET /messages/{umid}`: rate limited to one call a second per sub-account.
fn details(shared: &Shared, umid: &str) -> Answer {
    // The state is locked for the rate limit and the lookup only: error bodies lock it too.
    let (limited, sent) = {
        let mut state = lock(&shared.state);
        let now = state.now();
        let limited = state
            .last_details
            .is_some_and(|at| now - at < chrono::Duration::seconds(1));
        if !limited {
            state.last_details = Some(now);
        }
        let sent = state.sent.iter().find(|m| m.umid == umid).cloned();
        (limited, sent)
    };
    if limited {
        return Answer::Json {
            status: 429,
            body: error_body(
                shared,
                429,
                "Quota exceeded. Please try again in 1 second(s).".into(),
            ),
            headers: vec![(header::RETRY_AFTER, "1".to_owned())],
        };
    }
    if uuid::Uuid::parse_str(umid).is_err() {
        return error(shared, 400, 1000, "Invalid umid.");
    }
    let Some(sent) = sent else {
        return error(
            shared,
            404,
            1300,
            "Object wasn't found or is already expired",
        );
    };
    // One record per channel attempted (no fallback here); 8x8 masks content and numbers.
    let channel = match shared.settings.channel {
        EightByEightChannel::Whatsapp => "WhatsApp",
        EightByEightChannel::Rcs => "RCS",
    };
    let mut content_type = sent.kind.clone();
    if let Some(first) = content_type.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    Answer::ok(
        200,
        json!({ "data": [{
            "umid": sent.umid,
            "subAccountId": shared.settings.sub_account_id,
            "channel": channel,
            "channelId": shared.settings.sub_account_id,
            "direction": "Outbound",
            "status": { "state": "queued", "timestamp": super::format_time(sent.at) },
            "contentType": content_type,
            "createdAt": super::format_time(sent.at),
            "step": 1,
            "user": { "msisdn": "+xxxxxxxxxxx" },
            "content": "**MASKED**",
        }] }),
    )
}

fn mark_read(shared: &Shared, umid: &str) -> Answer {
    if shared.settings.channel != EightByEightChannel::Whatsapp {
        return error(
            shared,
            400,
            2003,
            "Unsupported product: read receipts are only supported on WhatsApp",
        );
    }
    if !lock(&shared.state).inbound.contains_key(umid) {
        return error(
            shared,
            404,
            1300,
            "Object wasn't found or is already expired",
        );
    }
    Answer::ok(200, Value::Null)
}

async fn upload(shared: &Shared, seq: usize, request: Request) -> Answer {
    let limit = shared.settings.max_file_bytes;
    let too_large = || {
        error(
            shared,
            413,
            7001,
            format!("Request size must not exceed {limit} bytes"),
        )
    };
    if media_type(request.headers()).as_deref() != Some("multipart/form-data") {
        return error(
            shared,
            400,
            1000,
            "Invalid parameter: the file must be sent as multipart/form-data",
        );
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit.saturating_add(MULTIPART_SLACK)).await else {
        return too_large();
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    let mut multipart = match Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(e) => {
            return error(
                shared,
                400,
                1000,
                format!("Invalid multipart body: {}", e.body_text()),
            );
        }
    };
    let mut file = None;
    loop {
        match multipart.next_field().await {
            Ok(None) => break,
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let file_name = field.file_name().map(str::to_owned);
                let content_type = field.content_type().map(str::to_owned);
                let data = match field.bytes().await {
                    Ok(d) => d,
                    Err(e) => {
                        return error(
                            shared,
                            400,
                            1000,
                            format!("Invalid multipart body: {}", e.body_text()),
                        );
                    }
                };
                if name != "file" || file.is_some() {
                    return error(
                        shared,
                        400,
                        1000,
                        format!(
                            "Invalid parameter: unexpected part `{name}`; send one part named file"
                        ),
                    );
                }
                file = Some((file_name, content_type, data));
            }
            Err(e) => {
                return error(
                    shared,
                    400,
                    1000,
                    format!("Invalid multipart body: {}", e.body_text()),
                );
            }
        }
    }
    let Some((file_name, content_type, data)) = file else {
        return error(
            shared,
            400,
            1000,
            "Invalid parameter: the part `file` is required",
        );
    };
    if let Some(entry) = lock(&shared.log).get_mut(seq) {
        entry.file = Some((file_name.clone(), content_type.clone(), data.len()));
    }
    if data.len() > limit {
        return too_large();
    }
    if data.is_empty() {
        return error(shared, 400, 1000, "Invalid parameter: the file is empty");
    }
    let extension = file_name
        .as_deref()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "bin".into());
    let stored_name = format!("{}.{extension}", uuid::Uuid::new_v4().simple());
    let token = format!(
        "CfDJ8{}-{}_{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    lock(&shared.state).files.insert(
        stored_name.clone(),
        StoredFile {
            token: token.clone(),
            content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
            bytes: data,
        },
    );
    Answer::Json {
        status: 201,
        body: json!({ "fileName": stored_name, "token": token }),
        headers: vec![(
            header::LOCATION,
            format!("/files/{stored_name}?token={token}"),
        )],
    }
}

fn download(shared: &Shared, name: &str, query: Option<&str>) -> Answer {
    let token = query.and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| percent_decode(v))
    });
    let state = lock(&shared.state);
    match (state.files.get(name), token) {
        (Some(file), Some(token)) if file.token == token => Answer::File {
            content_type: file.content_type.clone(),
            bytes: file.bytes.clone(),
        },
        _ => {
            drop(state);
            error(
                shared,
                404,
                1300,
                "Object wasn't found or is already expired",
            )
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(RAW_LOG_BYTES)]).into_owned()
}

fn logged_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let value = if name == header::AUTHORIZATION {
                match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} …"),
                    None => "…".to_owned(),
                }
            } else {
                value
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_account_ids_follow_the_pattern() {
        assert!(valid_sub_account_id("acme-wa_1.&x"));
        assert!(!valid_sub_account_id("ab"));
        assert!(!valid_sub_account_id(&"a".repeat(51)));
        assert!(!valid_sub_account_id("acme wa"));
        assert!(!valid_sub_account_id("acmé-wa"));
    }

    #[test]
    fn routes_are_recognised() {
        assert_eq!(
            route("/api/v1/subaccounts/acme/messages"),
            Some((Some("acme".into()), Route::Messages))
        );
        assert_eq!(
            route("/api/v1/subaccounts/acme/messages/u-1/read"),
            Some((Some("acme".into()), Route::Read("u-1".into())))
        );
        assert_eq!(
            route("/files/x.png"),
            Some((None, Route::Download("x.png".into())))
        );
        assert_eq!(
            route("/api/v1/subaccounts/acme/messages/u-1"),
            Some((Some("acme".into()), Route::Details("u-1".into())))
        );
        assert_eq!(route("/api/v1/subaccounts/acme/messages/u-1/x"), None);
        assert_eq!(route("/files/"), None);
    }
}
