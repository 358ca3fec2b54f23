//! The content download URL of files a rep attached: `GET {FILE_DOWNLOAD_PATH}/{id}`, which
//! needs a valid access token like every Salesforce REST resource.

use axum::http::header;
use serde_json::json;

use super::{
    lock,
    server::{Answer, Incoming, Shared, method_not_allowed},
};

/// Answers `GET …/download/{id}`: 401 `INVALID_SESSION_ID` without a valid bearer token, 404
/// `NOT_FOUND` for an unknown id, else the file with its MIME type.
pub(crate) fn download(shared: &Shared, id: &str, incoming: &Incoming) -> Answer {
    if incoming.method != "GET" {
        return method_not_allowed(incoming);
    }
    let token = incoming
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty());
    let state = lock(&shared.state);
    if !token.is_some_and(|t| state.is_valid_token(t)) {
        return Answer::json(
            401,
            json!([{ "errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid" }]),
        );
    }
    match state.rep_files.get(id) {
        Some(file) => Answer::File {
            content_type: file.mime_type.clone(),
            body: file.bytes.clone(),
        },
        None => Answer::json(
            404,
            json!([{ "errorCode": "NOT_FOUND", "message": "The requested resource does not exist" }]),
        ),
    }
}
