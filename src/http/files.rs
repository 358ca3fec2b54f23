//! Rep files served by byocd itself, for providers that fetch files from a public URL and host
//! nothing (Kaleyra): `GET /files/{id}?expires=<unix seconds>&signature=<hex>`.
//!
//! The signature is HMAC-SHA256 over `<id>:<expires>` with a key derived from the token key, so
//! a URL cannot be forged or extended; after `expires` (`server.hosted_file_ttl`) it answers 410
//! and the file is purged.
//!
//! A file is the rep's, not byocd's: it is served as a download (`Content-Disposition:
//! attachment` with the RFC 6266 `filename*`), with `X-Content-Type-Options: nosniff` and
//! `Content-Security-Policy: sandbox`, so that a browser never renders it as a page of byocd's
//! origin. A name or type that cannot be a header value (a CR/LF) is replaced, never a 500.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use serde::Deserialize;
use sha2::Sha256;

use super::AppState;
use crate::{
    clock::SharedClock,
    crypto::KEY_LEN,
    relay::{FileHost, HostFuture},
    store::{AnyStore, Store},
};

/// Signs and checks file URLs.
#[derive(Clone)]
pub struct FileSigner {
    key: Arc<SecretBox<[u8; KEY_LEN]>>,
}

impl std::fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileSigner")
    }
}

impl FileSigner {
    /// A signer with `key` (derive it from the token key: `TokenKey::derive("hosted-files")`).
    pub fn new(key: SecretBox<[u8; KEY_LEN]>) -> Self {
        Self { key: Arc::new(key) }
    }

    fn mac(&self, id: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(format!("{id}:{expires}").as_bytes());
        mac
    }

    /// The signature of a file URL, hex.
    pub fn sign(&self, id: &str, expires: i64) -> String {
        hex::encode(self.mac(id, expires).finalize().into_bytes())
    }

    /// Whether `signature` is right for `id` and `expires` (compared in constant time).
    pub fn verify(&self, id: &str, expires: i64, signature: &str) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        self.mac(id, expires).verify_slice(&bytes).is_ok()
    }
}

/// Keeps rep files in the store and hands out signed URLs under the public base URL.
#[derive(Debug, Clone)]
pub struct HostedFiles {
    /// The store.
    pub store: AnyStore,
    /// The signer.
    pub signer: FileSigner,
    /// `server.public_base_url`.
    pub base_url: String,
    /// `server.hosted_file_ttl`.
    pub ttl: std::time::Duration,
    /// The clock.
    pub clock: SharedClock,
}

impl FileHost for HostedFiles {
    fn host<'a>(
        &'a self,
        channel: &'a str,
        bytes: bytes::Bytes,
        mime_type: &'a str,
        file_name: &'a str,
    ) -> HostFuture<'a> {
        Box::pin(async move {
            let now = self.clock.now();
            let expires_at = crate::clock::later(now, self.ttl);
            // Expired files are of no use to anyone: drop them while adding a new one.
            if let Err(e) = self.store.purge_hosted_files(now).await {
                tracing::warn!(error = %e, "could not purge expired hosted files");
            }
            let id = self
                .store
                .host_file(channel, mime_type, file_name, &bytes, expires_at)
                .await
                .map_err(|e| format!("could not keep the file: {e}"))?;
            let expires = expires_at.timestamp();
            let id = id.to_string();
            Ok(format!(
                "{}/files/{id}?expires={expires}&signature={}",
                self.base_url,
                self.signer.sign(&id, expires)
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct FileQuery {
    expires: i64,
    signature: String,
}

/// `GET /files/{id}`.
pub(super) async fn serve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(signer) = &state.file_signer else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Query(query)) = query else {
        return (StatusCode::FORBIDDEN, "signed URL required").into_response();
    };
    if !signer.verify(&id, query.expires, &query.signature) {
        return (StatusCode::FORBIDDEN, "bad signature").into_response();
    }
    if query.expires < chrono::Utc::now().timestamp() {
        return (StatusCode::GONE, "link expired").into_response();
    }
    let Ok(uuid) = id.parse() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match state.store.hosted_file(uuid).await {
        Ok(Some((mime, name, body, _))) => {
            let content_type = header::HeaderValue::from_str(&mime)
                .ok()
                .filter(|_| is_media_type(&mime))
                .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_DISPOSITION, content_disposition(&name)),
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        header::HeaderValue::from_static("nosniff"),
                    ),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        header::HeaderValue::from_static("sandbox"),
                    ),
                    (
                        header::CACHE_CONTROL,
                        header::HeaderValue::from_static("private, no-store"),
                    ),
                ],
                Body::from(body),
            )
                .into_response()
        }
        Ok(None) => (StatusCode::GONE, "file no longer kept").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not read a hosted file");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Whether `text` starts with a well-formed `type/subtype` (parameters after `;` are left to
/// the header-value check).
fn is_media_type(text: &str) -> bool {
    let text = text.split(';').next().unwrap_or_default().trim_end();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(text.split_once('/'), Some((kind, sub)) if token(kind) && token(sub))
}

/// `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>` (RFC 6266,
/// RFC 8187): the fallback keeps printable ASCII but quotes, backslashes and percent signs; the
/// extended form carries the exact name. Always a valid header value, whatever the name holds.
fn content_disposition(name: &str) -> header::HeaderValue {
    let name = if name.is_empty() { "file" } else { name };
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%') => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    header::HeaderValue::from_str(&format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(header::HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_attachment_headers_whatever_they_hold() {
        let header = |name: &str| content_disposition(name).to_str().unwrap().to_owned();
        assert_eq!(
            header("terms.pdf"),
            "attachment; filename=\"terms.pdf\"; filename*=UTF-8''terms.pdf"
        );
        assert_eq!(
            header("naïve \"résumé\".pdf"),
            "attachment; filename=\"na_ve _r_sum__.pdf\"; \
             filename*=UTF-8''na%C3%AFve%20%22r%C3%A9sum%C3%A9%22.pdf"
        );
        assert_eq!(
            header("a\r\nSet-Cookie: x=1.html"),
            "attachment; filename=\"a__Set-Cookie: x=1.html\"; \
             filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x%3D1.html"
        );
        assert_eq!(
            header(""),
            "attachment; filename=\"file\"; filename*=UTF-8''file"
        );
        assert!(is_media_type("application/pdf"));
        assert!(is_media_type("image/svg+xml"));
        assert!(!is_media_type("text/html\r\nX: y"));
        assert!(is_media_type("text/plain; charset=utf-8"));
        assert!(!is_media_type("text /html"));
        assert!(!is_media_type("pdf"));
    }

    #[test]
    fn signatures_bind_id_and_expiry() {
        let signer = FileSigner::new(crate::crypto::TokenKey::generate().derive("hosted-files"));
        let sig = signer.sign("abc", 100);
        assert!(signer.verify("abc", 100, &sig));
        assert!(!signer.verify("abd", 100, &sig));
        assert!(!signer.verify("abc", 101, &sig));
        assert!(!signer.verify("abc", 100, "zz"));
        assert!(!signer.verify("abc", 100, &sig[..10]));
    }
}
