//! `POST /webhooks/{channel}`: provider webhooks in.
//!
//! In order, each step answering on its own and changing nothing when it refuses:
//!
//! 1. an unknown or retired channel, missing or wrong credentials, or a source outside the
//!    channel's allowed networks → **the same** 401 `{"error": "unauthenticated"}`, nothing
//!    stored: the answer does not tell which channel names exist (the log says which it was,
//!    the caller's channel name escaped). All of this is decided from the request head: the
//!    body is not read for a request that is refused;
//! 2. a body over `server.max_body_bytes` → 413, nothing stored; a body that has not fully
//!    arrived within `server.body_timeout` → 408, nothing stored;
//! 3. the body parsed into normalised events; a body that cannot be read is kept verbatim in the
//!    quarantine table with the reason (and an audit row) and answered **200**: 8x8 retries even
//!    4xx answers, and retrying an unreadable body changes nothing;
//! 4. the events handed to the inbound sink, which commits them durably; only then 200. If the
//!    sink cannot commit, 503: the provider retries and nothing is lost.

use std::net::SocketAddr;

use axum::{
    Json,
    body::Bytes,
    extract::{ConnectInfo, FromRequest, Path, Request, State},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::AppState;
use crate::{
    channels::ChannelRuntime,
    providers::Provider,
    relay::intake::SinkError,
    store::{NewQuarantine, Store},
};

fn count_webhook(state: &AppState, channel: &str, reason: &'static str) {
    state.metrics.webhook_rejected(channel, reason);
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The one answer to an unknown channel and to refused credentials alike.
fn unauthenticated() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthenticated".into())
}

/// A channel name from the URL path as it may be logged: the caller's bytes, so at most a
/// little over the longest valid name, and always logged with `?` (Debug), which quotes it and
/// escapes control characters: no forged log lines in the plain format.
fn caller_name(name: &str) -> String {
    const SHOWN: usize = crate::config::MAX_CHANNEL_NAME_LEN + 1;
    if name.chars().count() > SHOWN {
        let mut short: String = name.chars().take(SHOWN).collect();
        short.push('…');
        short
    } else {
        name.to_owned()
    }
}

/// The webhook handler.
pub(super) async fn receive(
    State(state): State<AppState>,
    Path(channel_name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let arrived = std::time::Instant::now();
    // Everything up to the credentials is decided from the head; the body is still unread.
    let Some(channel) = state.channel(&channel_name) else {
        tracing::warn!(channel = ?caller_name(&channel_name), peer = %peer.ip(), "webhook for an unknown channel refused");
        // The name is the caller's: not a label (unbounded); counted under channel="".
        count_webhook(&state, "", "unknown_channel");
        return unauthenticated();
    };
    // From here on the name is a configured one (letters, digits, `-`, `_`, `.`).
    let channel_name = channel.config.name.as_str();
    if let Err(failure) = channel.provider.authenticate(request.headers(), peer.ip()) {
        tracing::warn!(channel = channel_name, peer = %peer.ip(), %failure, "webhook refused");
        count_webhook(&state, channel_name, "unauthenticated");
        return unauthenticated();
    }
    let headers = request.headers().clone();
    // Only an authenticated request has its body read, within server.body_timeout.
    let body = match tokio::time::timeout(
        state.limits.body_timeout,
        Bytes::from_request(request, &state),
    )
    .await
    {
        Err(_elapsed) => {
            tracing::warn!(channel = channel_name, peer = %peer.ip(), timeout = ?state.limits.body_timeout, "webhook body not received in time");
            count_webhook(&state, channel_name, "body_timeout");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time (server.body_timeout)".into(),
            );
        }
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!(
                channel = channel_name,
                limit = state.max_body_bytes,
                "webhook body too large"
            );
            count_webhook(&state, channel_name, "too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body is larger than the {} bytes this daemon accepts (server.max_body_bytes)",
                    state.max_body_bytes
                ),
            );
        }
        Ok(Err(rejection)) => {
            count_webhook(&state, channel_name, "unreadable");
            return error(rejection.status(), format!("unreadable body: {rejection}"));
        }
    };
    let events = match channel.provider.parse_webhook(&body) {
        Ok(events) => events,
        Err(parse) => {
            count_webhook(&state, channel_name, "quarantined");
            return quarantine(&state, &channel, &headers, body, parse.reason).await;
        }
    };
    let count = events.len();
    match state.sink.accept(&channel, events).await {
        Ok(accepted) => {
            tracing::debug!(
                channel = channel_name,
                new = accepted.new,
                duplicates = accepted.duplicates,
                "webhook accepted"
            );
            state
                .metrics
                .channel(&channel.meters, channel_name)
                .accepted(
                    accepted.new == 0 && accepted.duplicates > 0,
                    arrived.elapsed().as_secs_f64(),
                );
            (
                StatusCode::OK,
                Json(json!({
                    "status": "accepted",
                    "events": count,
                    "new": accepted.new,
                    "duplicates": accepted.duplicates,
                })),
            )
                .into_response()
        }
        Err(e) => {
            let reason = if matches!(e, SinkError::Busy(_)) {
                // Back-pressure doing its job: a warning, not an error.
                tracing::warn!(channel = channel_name, error = %e, "webhook refused while busy; the provider will retry");
                "busy"
            } else if matches!(e, SinkError::DiskFull(_)) {
                // The intake logged the spell's start as an error once.
                tracing::warn!(channel = channel_name, error = %e, "webhook refused: the database's disk is full; the provider will retry");
                "disk_full"
            } else {
                tracing::error!(channel = channel_name, error = %e, "webhook could not be committed; the provider will retry");
                "store_unavailable"
            };
            count_webhook(&state, channel_name, reason);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not stored, please retry".into(),
            )
        }
    }
}

async fn quarantine(
    state: &AppState,
    channel: &ChannelRuntime,
    headers: &HeaderMap,
    body: Bytes,
    reason: String,
) -> Response {
    let item = NewQuarantine {
        channel: channel.config.name.clone(),
        provider: channel.provider.name().to_owned(),
        reason: reason.clone(),
        content_type: headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
    };
    match state.store.quarantine(&item).await {
        Ok(id) => {
            tracing::warn!(channel = %item.channel, quarantine_id = id, %reason, "webhook quarantined");
            (
                StatusCode::OK,
                Json(json!({ "status": "quarantined", "quarantine_id": id, "reason": reason })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(channel = %item.channel, error = %e, "could not quarantine a webhook; the provider will retry");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not stored, please retry".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::caller_name;

    #[test]
    fn a_callers_channel_name_is_logged_short_and_escaped() {
        assert_eq!(caller_name("acme-rcs"), "acme-rcs");
        let long = "x".repeat(10_000);
        let shown = caller_name(&long);
        assert_eq!(
            shown.chars().count(),
            crate::config::MAX_CHANNEL_NAME_LEN + 2
        );
        assert!(shown.ends_with('…'));
        // As the handler logs it (`?`): quoted, control characters escaped.
        assert_eq!(
            format!("{:?}", caller_name("evil\nforged\u{1b}[31m")),
            r#""evil\nforged\u{1b}[31m""#
        );
    }
}
