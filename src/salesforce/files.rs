//! Files a rep attached in Salesforce, downloaded with the org's token: a refused token is
//! re-minted once and the download tried again, by the same path as every Interaction Service
//! call ([`TokenManager::authorized`]).

use super::{
    auth::{AuthError, TokenManager},
    codes::ErrorClass,
};

/// Why a rep's file could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No token could be had.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// No answer, or the body was cut off.
    #[error("fetching the rep's file failed: {0}")]
    Transport(reqwest::Error),
    /// Salesforce answered with an error status (after one re-mint, for a 401).
    #[error("fetching the rep's file failed: HTTP {0}")]
    Status(reqwest::StatusCode),
}

impl DownloadError {
    /// What the failure means: a file Salesforce no longer serves (4xx) is gone; the rest passes.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Status(status) if !status.is_server_error() && status.as_u16() != 429 => {
                ErrorClass::NotFound
            }
            _ => ErrorClass::Retryable,
        }
    }
}

/// Downloads the file at `url` of org `org_id` with `http`.
pub async fn download(
    http: &reqwest::Client,
    tokens: &TokenManager,
    org_id: &str,
    url: &str,
) -> Result<bytes::Bytes, DownloadError> {
    let mut token = tokens.authorized(org_id).await?;
    loop {
        let response = http
            .get(url)
            .bearer_auth(token.token().expose())
            .send()
            .await
            .map_err(DownloadError::Transport)?;
        let status = response.status();
        if status.as_u16() == 401 && token.refused().await? {
            continue;
        }
        if !status.is_success() {
            return Err(DownloadError::Status(status));
        }
        return response.bytes().await.map_err(DownloadError::Transport);
    }
}
