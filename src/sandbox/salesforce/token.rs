//! `POST /services/oauth2/token`: the OAuth 2.0 JWT bearer grant (digest §2.2).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};

use super::{
    MAX_ASSERTION_LIFETIME_SECS, lock,
    server::{Answer, Incoming, Payload, Shared},
};

/// The only grant type accepted (digest §2.2).
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Scope of the tokens issued (digest §2.1: `interaction_api`).
const SCOPE: &str = "interaction_api";
/// Random bytes in the secret part of a token.
const TOKEN_RANDOM_BYTES: usize = 48;

fn refuse(error: &str, description: impl Into<String>) -> Answer {
    Answer::json(
        400,
        json!({ "error": error, "error_description": description.into() }),
    )
}

pub(crate) fn handle(shared: &Shared, incoming: &Incoming) -> Answer {
    // Form-encoded body (digest §2.2).
    if incoming.media_type().as_deref() != Some("application/x-www-form-urlencoded") {
        return refuse(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let fields = match &incoming.payload {
        Payload::Form(fields) => fields,
        Payload::Empty => return refuse("invalid_request", "empty request body"),
        _ => return refuse("invalid_request", "body is not form-encoded"),
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // grant_type must be the JWT bearer grant (digest §2.2).
    match field("grant_type") {
        Some(JWT_BEARER_GRANT) => {}
        Some(_) => return refuse("unsupported_grant_type", "grant type not supported"),
        None => return refuse("invalid_request", "grant_type is missing"),
    }
    // assertion: a JWT (digest §2.2).
    let Some(assertion) = field("assertion").filter(|a| !a.is_empty()) else {
        return refuse("invalid_grant", "assertion is missing");
    };
    if let Err(answer) = check_assertion(shared, assertion) {
        return answer;
    }
    issue(shared)
}

fn check_assertion(shared: &Shared, assertion: &str) -> Result<(), Answer> {
    // Header alg RS256 (digest §2.2).
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| refuse("invalid_grant", format!("assertion is not a JWT: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(refuse(
            "invalid_grant",
            format!("assertion alg must be RS256, not {:?}", header.alg),
        ));
    }
    // Signature verified against the connected app's certificate (digest §2.1).
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, &shared.key, &validation).map_err(|e| {
        refuse(
            "invalid_grant",
            format!("assertion signature does not verify against the certificate: {e}"),
        )
    })?;
    // The claims, read from the verified token; decoded by hand so that an `exp` of any numeric
    // size is seen and reported.
    let claims = assertion
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| refuse("invalid_grant", "assertion claims are not JSON"))?;
    let settings = &shared.settings;
    // iss = consumer key, else invalid_client (digest §2.2).
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == settings.consumer_key => {}
        Some(_) => return Err(refuse("invalid_client", "client identifier invalid (iss)")),
        None => return Err(refuse("invalid_client", "iss claim is missing")),
    }
    // sub = username (digest §2.2).
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if sub == settings.username => {}
        Some(_) => return Err(refuse("invalid_grant", "user not found (sub)")),
        None => return Err(refuse("invalid_grant", "sub claim is missing")),
    }
    // aud = login URL (digest §2.2); a string or an array holding it.
    let audience = shared.audience();
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse(
            "invalid_grant",
            format!("audience is invalid (aud must be {audience})"),
        ));
    }
    // exp in seconds, in the future, at most a few minutes ahead (digest §2.2, §6 #1).
    let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
        return Err(refuse(
            "invalid_grant",
            "exp claim is missing or not an integer number of seconds",
        ));
    };
    let now = lock(&shared.state).now().timestamp();
    if exp <= now {
        return Err(refuse("invalid_grant", "expired assertion (exp)"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return Err(refuse(
            "invalid_grant",
            format!(
                "exp is more than {MAX_ASSERTION_LIFETIME_SECS} s ahead (exp must be in \
                 seconds since the epoch, not milliseconds)"
            ),
        ));
    }
    Ok(())
}

fn issue(shared: &Shared) -> Answer {
    let random: Vec<u8> = (0..TOKEN_RANDOM_BYTES.div_ceil(16))
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .take(TOKEN_RANDOM_BYTES)
        .collect();
    let settings = &shared.settings;
    let token = format!("{}!{}", settings.org_id, URL_SAFE_NO_PAD.encode(random));
    let issued_at = {
        let mut state = lock(&shared.state);
        state.issue_token(token.clone());
        state.now().timestamp_millis()
    };
    Answer::json(
        200,
        json!({
            "access_token": token,
            "scope": SCOPE,
            "instance_url": shared.base_url,
            "id": format!("{}/id/{}/005000000000001", shared.base_url, settings.org_id),
            "token_type": "Bearer",
            "issued_at": issued_at.to_string(),
        }),
    )
}
