//! The Salesforce emulator driven by hand-built HTTP requests (not byocd's own client): a round
//! trip for every endpoint, one refusal per contract rule with its documented code, failure
//! injection, delays, the rate limit and the request log.
#![cfg(feature = "sandbox")] // runs against the emulators

use std::{
    path::Path,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use byocd::sandbox::salesforce::{
    AgentWorkStatus, EmulatedChannel, EmulatorSettings, Failure, PsrStatus, SalesforceEmulator,
    SessionStatus,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{
    Client, Method,
    multipart::{Form, Part},
};
use serde_json::{Value, json};
use uuid::Uuid;

const ORG_ID: &str = "00D000000000001";
const CONSUMER_KEY: &str = "3MVG9emulator.test.key";
const USERNAME: &str = "integration@example.test";
/// A Messaging channel routed and consented by Salesforce.
const MSG_ADDRESS: &str = "msg-channel-address";
const MSG_CONTEXT: &str = "Test_Messaging";
/// A CCaaS channel routed and consented by the partner.
const CC_ADDRESS: &str = "ccaas-channel-address";
const CC_CONTEXT: &str = "Test_CCaaS";
const QUEUE: &str = "00G000000000001";
const FLOW: &str = "300000000000001";
const REP_1: &str = "005000000000001";
const REP_2: &str = "005000000000002";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

// ---------------------------------------------------------------------------------------------
// Keys and setup

/// An RSA key pair and a self-signed certificate, in PEM, made with `openssl`.
struct KeyPair {
    private_pem: String,
    public_pem: String,
    certificate_pem: String,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed to make throwaway test keys");
    assert!(out.status.success(), "openssl {args:?} failed: {out:?}");
}

fn make_key_pair(dir: &Path, name: &str) -> KeyPair {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let cert = dir.join(format!("{name}.crt"));
    let (private_s, public_s, cert_s) = (
        private.to_str().unwrap(),
        public.to_str().unwrap(),
        cert.to_str().unwrap(),
    );
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_s,
    ]);
    openssl(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        private_s,
        "-subj",
        "/CN=byocd-test",
        "-days",
        "2",
        "-out",
        cert_s,
    ]);
    KeyPair {
        private_pem: std::fs::read_to_string(private).unwrap(),
        public_pem: std::fs::read_to_string(public).unwrap(),
        certificate_pem: std::fs::read_to_string(cert).unwrap(),
    }
}

/// The org's key pair, and one Salesforce does not know.
fn keys() -> &'static (KeyPair, KeyPair) {
    static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        (
            make_key_pair(dir.path(), "org"),
            make_key_pair(dir.path(), "stranger"),
        )
    })
}

fn settings() -> EmulatorSettings {
    EmulatorSettings {
        org_id: ORG_ID.into(),
        consumer_key: CONSUMER_KEY.into(),
        username: USERNAME.into(),
        audience: None,
        public_key_pem: keys().0.public_pem.clone(),
        channels: vec![
            EmulatedChannel {
                channel_address_identifier: MSG_ADDRESS.into(),
                authorization_context: MSG_CONTEXT.into(),
                product: "Messaging".into(),
                routing_owner: "Salesforce".into(),
                consent_owner: "Salesforce".into(),
                queues: vec![],
                flows: vec![],
                users: vec![],
            },
            EmulatedChannel {
                channel_address_identifier: CC_ADDRESS.into(),
                authorization_context: CC_CONTEXT.into(),
                product: "CCaaS".into(),
                routing_owner: "Partner".into(),
                consent_owner: "Partner".into(),
                queues: vec![QUEUE.into()],
                flows: vec![FLOW.into()],
                users: vec![REP_1.into(), REP_2.into()],
            },
        ],
        rate_limit_per_second: None,
    }
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An assertion signed with `key`, with `claims` over the defaults.
fn assertion_with(emu: &SalesforceEmulator, key: &str, claims: Value) -> String {
    let mut all = json!({
        "iss": CONSUMER_KEY,
        "sub": USERNAME,
        "aud": emu.base_url(),
        "exp": now_s() + 180,
    });
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            all.as_object_mut().unwrap().remove(k);
        } else {
            all[k] = v.clone();
        }
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &all,
        &EncodingKey::from_rsa_pem(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn assertion(emu: &SalesforceEmulator, claims: Value) -> String {
    assertion_with(emu, &keys().0.private_pem, claims)
}

/// The emulator and a client holding a token.
struct T {
    emu: SalesforceEmulator,
    http: Client,
    token: String,
}

async fn post_token(
    http: &Client,
    emu: &SalesforceEmulator,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = http
        .post(format!("{}/services/oauth2/token", emu.base_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn mint(http: &Client, emu: &SalesforceEmulator, assertion: &str) -> (u16, Value) {
    post_token(
        http,
        emu,
        &[("grant_type", JWT_BEARER), ("assertion", assertion)],
    )
    .await
}

async fn start_with(settings: EmulatorSettings) -> T {
    let emu = SalesforceEmulator::start(settings).await.unwrap();
    let http = Client::new();
    let (status, body) = mint(&http, &emu, &assertion(&emu, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    emu.clear_log();
    T { emu, http, token }
}

async fn start() -> T {
    start_with(settings()).await
}

type Answer = (u16, Value, reqwest::header::HeaderMap);

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

#[track_caller]
fn assert_refused(answer: &Answer, status: u16, code: u64) {
    assert_eq!(
        (answer.0, answer.1["code"].as_u64()),
        (status, Some(code)),
        "answer: {} {}",
        answer.0,
        answer.1
    );
    assert!(answer.1["message"].is_string(), "{}", answer.1);
}

#[track_caller]
fn assert_reason(answer: &Answer, reason: &str) {
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1, json!({ "success": false, "errorReason": reason }));
}

impl T {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.emu.base_url())
    }

    /// A request with every header an ISA call needs.
    fn isa(&self, method: Method, path: &str, context: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header("OrgId", ORG_ID)
            .header("RequestId", Uuid::new_v4().to_string())
            .header("AuthorizationContext", context)
    }

    async fn json(&self, method: Method, path: &str, context: &str, body: &Value) -> Answer {
        let mut request = self.isa(method.clone(), path, context).json(body);
        if (method == Method::PATCH && path == "agentWork") || path == "conversationHistory" {
            request = request.header("AuthorizationContextType", "ConversationChannelDefinition");
        }
        answer(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.json(Method::POST, path, CC_CONTEXT, body).await
    }

    async fn interaction(
        &self,
        context: &str,
        json: &Value,
        file: Option<(Vec<u8>, &str)>,
    ) -> Answer {
        let mut form = Form::new().part(
            "json",
            Part::text(json.to_string())
                .mime_str("application/json")
                .unwrap(),
        );
        if let Some((bytes, mime)) = file {
            form = form.part(
                "attachments",
                Part::bytes(bytes)
                    .file_name("file.bin")
                    .mime_str(mime)
                    .unwrap(),
            );
        }
        let request = self
            .isa(Method::POST, "interactions", context)
            .multipart(form);
        answer(request.send().await.unwrap()).await
    }

    /// Opens a conversation on the CCaaS channel: (conversation id, work item id).
    async fn open_cc(&self, user: &str) -> (String, String) {
        let a = self
            .interaction(CC_CONTEXT, &text(CC_ADDRESS, user, "hello"), None)
            .await;
        assert_eq!(a.0, 202, "{}", a.1);
        (
            a.1["conversationIdentifier"].as_str().unwrap().to_owned(),
            a.1["workItemIds"][0].as_str().unwrap().to_owned(),
        )
    }

    /// Routes the conversation to the queue and creates AgentWork for `rep`: the work id.
    async fn assign(&self, conversation: &str, work_item: &str, rep: &str) -> String {
        let a = self
            .post(
                "route",
                &json!({
                    "conversationIdentifier": conversation,
                    "routingType": "Initial",
                    "routingInfo": { "queueId": QUEUE },
                }),
            )
            .await;
        assert_eq!(a.0, 202, "{}", a.1);
        let a = self
            .post(
                "agentWork",
                &json!({ "userId": rep, "workItemId": work_item }),
            )
            .await;
        assert_eq!(a.0, 202, "{}", a.1);
        a.1["agentWorkId"].as_str().unwrap().to_owned()
    }
}

/// A text message interaction request.
fn text(to: &str, from: &str, body: &str) -> Value {
    let id = Uuid::new_v4().to_string();
    json!({
        "to": to,
        "from": from,
        "interactions": [{
            "interactionType": "EntryInteraction",
            "timestamp": now_ms(),
            "payload": {
                "id": id,
                "entryType": "Message",
                "abstractMessage": {
                    "id": id,
                    "messageType": "StaticContentMessage",
                    "staticContent": { "formatType": "Text", "text": body },
                },
            },
        }],
    })
}

/// An interaction request with one attachment interaction.
fn attachment(to: &str, from: &str, length: usize) -> Value {
    json!({
        "to": to,
        "from": from,
        "interactions": [{
            "interactionType": "AttachmentInteraction",
            "timestamp": now_ms(),
            "id": Uuid::new_v4().to_string(),
            "attachmentIndex": 0,
            "contentLength": length,
            "text": "a picture",
        }],
    })
}

/// An interaction request whose only entry is `payload`.
fn entry(to: &str, from: &str, payload: Value) -> Value {
    json!({
        "to": to,
        "from": from,
        "interactions": [{
            "interactionType": "EntryInteraction",
            "timestamp": now_ms(),
            "payload": payload,
        }],
    })
}

fn ack(kind: &str) -> Value {
    json!({
        "acknowledgementType": kind,
        "acknowledgedConversationEntryIdentifier": Uuid::new_v4().to_string(),
        "acknowledgmentCreatedConversationEntryIdentifier": Uuid::new_v4().to_string(),
        "acknowledgementTimestamp": now_ms().to_string(),
    })
}

fn end_user(subject: &str) -> Value {
    json!({ "appType": "custom", "subject": subject, "role": "EndUser" })
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

#[tokio::test]
async fn token_is_minted_in_salesforce_shape() {
    let emu = SalesforceEmulator::start(settings()).await.unwrap();
    let http = Client::new();
    let (status, body) = mint(&http, &emu, &assertion(&emu, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with(&format!("{ORG_ID}!")), "{token}");
    assert!(token.len() > 40);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "interaction_api");
    assert_eq!(body["instance_url"], emu.base_url());
    assert!(body["id"].as_str().unwrap().contains(ORG_ID));
    assert!(body["issued_at"].as_str().unwrap().parse::<i64>().is_ok());
    assert!(
        body.get("expires_in").is_none(),
        "Salesforce sends no expires_in"
    );
    assert_eq!(emu.tokens_issued(), 1);

    // The log keeps neither the assertion nor the token.
    let logged = &emu.requests_to("/services/oauth2/token")[0];
    assert_eq!(logged.method, "POST");
    assert_eq!(logged.status, 200);
    let logged_assertion = logged.body.as_ref().unwrap()["assertion"].as_str().unwrap();
    assert_eq!(logged_assertion.chars().count(), 7, "{logged_assertion}");
    assert_eq!(
        logged.response["access_token"],
        format!("{}…", &ORG_ID[..6])
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn token_verifies_against_a_certificate_and_a_configured_audience() {
    let mut s = settings();
    s.public_key_pem = keys().0.certificate_pem.clone();
    s.audience = Some("https://login.salesforce.com".into());
    let emu = SalesforceEmulator::start(s).await.unwrap();
    let http = Client::new();
    let good = assertion(&emu, json!({ "aud": "https://login.salesforce.com" }));
    assert_eq!(mint(&http, &emu, &good).await.0, 200);
    let (status, body) = mint(&http, &emu, &assertion(&emu, json!({}))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"].as_str().unwrap().contains("aud"),
        "{body}"
    );
}

#[tokio::test]
async fn token_refuses_another_grant_type() {
    let t = start().await;
    let a = assertion(&t.emu, json!({}));
    let (status, body) = post_token(
        &t.http,
        &t.emu,
        &[("grant_type", "password"), ("assertion", &a)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[tokio::test]
async fn token_refuses_a_missing_assertion() {
    let t = start().await;
    let (status, body) = post_token(&t.http, &t.emu, &[("grant_type", JWT_BEARER)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn token_refuses_a_json_body() {
    let t = start().await;
    let response = t
        .http
        .post(format!("{}/services/oauth2/token", t.emu.base_url()))
        .json(&json!({ "grant_type": JWT_BEARER }))
        .send()
        .await
        .unwrap();
    let (status, body, _) = answer(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn token_refuses_a_bad_signature() {
    let t = start().await;
    let a = assertion_with(&t.emu, &keys().1.private_pem, json!({}));
    let (status, body) = mint(&t.http, &t.emu, &a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );
    assert_eq!(t.emu.tokens_issued(), 1, "only the setup's token");
}

#[tokio::test]
async fn token_refuses_a_tampered_payload() {
    let t = start().await;
    let a = assertion(&t.emu, json!({}));
    let parts: Vec<&str> = a.split('.').collect();
    let other = assertion(&t.emu, json!({ "sub": "someone@else.test" }));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    let (status, body) = mint(&t.http, &t.emu, &forged).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn token_refuses_an_hs256_assertion() {
    let t = start().await;
    let a = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "iss": CONSUMER_KEY, "sub": USERNAME, "aud": t.emu.base_url(), "exp": now_s() + 60 }),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let (status, body) = mint(&t.http, &t.emu, &a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("RS256"),
        "{body}"
    );
}

#[tokio::test]
async fn token_refuses_a_wrong_issuer_as_invalid_client() {
    let t = start().await;
    let a = assertion(&t.emu, json!({ "iss": "someone-else" }));
    let (status, body) = mint(&t.http, &t.emu, &a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client"))
    );
}

#[tokio::test]
async fn token_refuses_a_wrong_subject() {
    let t = start().await;
    let a = assertion(&t.emu, json!({ "sub": "nobody@example.test" }));
    let (status, body) = mint(&t.http, &t.emu, &a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"].as_str().unwrap().contains("sub"),
        "{body}"
    );
}

#[tokio::test]
async fn token_refuses_a_wrong_audience() {
    let t = start().await;
    let a = assertion(&t.emu, json!({ "aud": "https://login.salesforce.com" }));
    let (status, body) = mint(&t.http, &t.emu, &a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"].as_str().unwrap().contains("aud"),
        "{body}"
    );
}

#[tokio::test]
async fn token_refuses_exp_in_milliseconds() {
    let t = start().await;
    let a = assertion(&t.emu, json!({ "exp": now_ms() + 180_000 }));
    let (status, body) = mint(&t.http, &t.emu, &a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"].as_str().unwrap().contains("exp"),
        "{body}"
    );
}

#[tokio::test]
async fn token_refuses_an_expired_or_missing_exp() {
    let t = start().await;
    let expired = assertion(&t.emu, json!({ "exp": now_s() - 10 }));
    assert_eq!(
        mint(&t.http, &t.emu, &expired).await.1["error"],
        "invalid_grant"
    );
    let missing = assertion(&t.emu, json!({ "exp": null }));
    assert_eq!(
        mint(&t.http, &t.emu, &missing).await.1["error"],
        "invalid_grant"
    );
    // The emulator's clock decides: an assertion valid now is expired ten minutes later.
    let fine = assertion(&t.emu, json!({}));
    t.emu.advance_clock(Duration::from_secs(600));
    assert_eq!(
        mint(&t.http, &t.emu, &fine).await.1["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn token_errors_can_be_injected() {
    let t = start().await;
    t.emu.inject(
        "/services/oauth2/token",
        Failure::TokenError {
            error: "invalid_grant".into(),
            description: "user hasn't approved this consumer".into(),
        },
        1,
    );
    let a = assertion(&t.emu, json!({}));
    let (status, body) = mint(&t.http, &t.emu, &a).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": "invalid_grant", "error_description": "user hasn't approved this consumer" })
    );
    assert_eq!(mint(&t.http, &t.emu, &a).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// Headers (digest §2.4)

#[tokio::test]
async fn a_missing_token_is_refused_with_10004() {
    let t = start().await;
    let a = answer(
        t.http
            .post(t.url("conversation"))
            .header("OrgId", ORG_ID)
            .header("RequestId", Uuid::new_v4().to_string())
            .header("AuthorizationContext", MSG_CONTEXT)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 401, 10004);
}

#[tokio::test]
async fn an_unknown_token_is_refused_with_10004() {
    let mut t = start().await;
    t.token = format!("{ORG_ID}!not-a-token-this-emulator-issued");
    let a = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u1", "hi"), None)
        .await;
    assert_refused(&a, 401, 10004);
}

#[tokio::test]
async fn a_revoked_token_is_refused_with_10004() {
    let t = start().await;
    assert_eq!(
        t.interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u1", "hi"), None)
            .await
            .0,
        202
    );
    t.emu.revoke_tokens();
    let a = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u1", "hi"), None)
        .await;
    assert_refused(&a, 401, 10004);
    // A token minted afterwards works.
    let (_, body) = mint(&t.http, &t.emu, &assertion(&t.emu, json!({}))).await;
    let t = T {
        token: body["access_token"].as_str().unwrap().to_owned(),
        ..t
    };
    assert_eq!(
        t.interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u1", "hi"), None)
            .await
            .0,
        202
    );
    assert_eq!(t.emu.tokens_issued(), 2);
}

#[tokio::test]
async fn an_expired_token_is_refused_with_10004() {
    let emu = SalesforceEmulator::start(settings()).await.unwrap();
    emu.set_token_lifetime(Some(Duration::from_secs(3600)));
    let http = Client::new();
    let (_, body) = mint(&http, &emu, &assertion(&emu, json!({}))).await;
    let t = T {
        token: body["access_token"].as_str().unwrap().to_owned(),
        emu,
        http,
    };
    assert_eq!(
        t.interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u1", "hi"), None)
            .await
            .0,
        202
    );
    t.emu.advance_clock(Duration::from_secs(3601));
    let a = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u1", "hi"), None)
        .await;
    assert_refused(&a, 401, 10004);
}

#[tokio::test]
async fn a_missing_org_id_is_refused_with_10016() {
    let t = start().await;
    let a = answer(
        t.http
            .post(t.url("conversation"))
            .bearer_auth(&t.token)
            .header("RequestId", Uuid::new_v4().to_string())
            .header("AuthorizationContext", MSG_CONTEXT)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10016);
    assert!(
        a.1["message"].as_str().unwrap().contains("OrgId"),
        "{}",
        a.1
    );
}

#[tokio::test]
async fn an_18_character_org_id_is_refused_with_10016() {
    let t = start().await;
    let body = json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u1")] });
    let a = answer(
        t.http
            .post(t.url("conversation"))
            .bearer_auth(&t.token)
            .header("OrgId", format!("{ORG_ID}AAA"))
            .header("RequestId", Uuid::new_v4().to_string())
            .header("AuthorizationContext", MSG_CONTEXT)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10016);
}

#[tokio::test]
async fn another_orgs_id_is_refused_with_10016() {
    let t = start().await;
    let a = answer(
        t.http
            .post(t.url("conversation"))
            .bearer_auth(&t.token)
            .header("OrgId", "00D000000000999")
            .header("RequestId", Uuid::new_v4().to_string())
            .header("AuthorizationContext", MSG_CONTEXT)
            .json(&json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u1")] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10016);
}

#[tokio::test]
async fn a_request_id_that_is_not_a_uuid_is_refused_with_10016() {
    let t = start().await;
    for bad in ["request-1", "f7904eb653524c5eadf65f100572cf5d", ""] {
        let a = answer(
            t.http
                .post(t.url("conversation"))
                .bearer_auth(&t.token)
                .header("OrgId", ORG_ID)
                .header("RequestId", bad)
                .header("AuthorizationContext", MSG_CONTEXT)
                .json(&json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u1")] }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_refused(&a, 400, 10016);
    }
}

#[tokio::test]
async fn a_missing_request_id_is_refused_with_10016() {
    let t = start().await;
    let a = answer(
        t.http
            .post(t.url("conversation"))
            .bearer_auth(&t.token)
            .header("OrgId", ORG_ID)
            .header("AuthorizationContext", MSG_CONTEXT)
            .json(&json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u1")] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10016);
}

#[tokio::test]
async fn an_unknown_authorization_context_is_refused_with_10005() {
    let t = start().await;
    let a = t
        .interaction("Nobody_Channel", &text(MSG_ADDRESS, "u1", "hi"), None)
        .await;
    assert_refused(&a, 403, 10005);
}

#[tokio::test]
async fn another_channels_authorization_context_is_refused_with_10001() {
    let t = start().await;
    let a = t
        .interaction(CC_CONTEXT, &text(MSG_ADDRESS, "u1", "hi"), None)
        .await;
    assert_refused(&a, 403, 10001);
}

#[tokio::test]
async fn a_missing_authorization_context_is_refused_with_10016() {
    let t = start().await;
    let a = answer(
        t.http
            .post(t.url("conversation"))
            .bearer_auth(&t.token)
            .header("OrgId", ORG_ID)
            .header("RequestId", Uuid::new_v4().to_string())
            .json(&json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u1")] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10016);
}

#[tokio::test]
async fn authorization_context_type_is_required_where_documented_and_checked() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-act").await;
    let work = t.assign(&conversation, &work_item, REP_1).await;
    let body = json!({ "workId": work, "contextType": "Agent", "status": "Accept" });
    // Missing on PATCH /agentWork → 10016.
    let a = answer(
        t.isa(Method::PATCH, "agentWork", CC_CONTEXT)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10016);
    // Not a value of the enum → 10093.
    let a = answer(
        t.isa(Method::PATCH, "agentWork", CC_CONTEXT)
            .header("AuthorizationContextType", "Channel")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10093);
    // Valid on /route where optional, checked when present.
    let a = answer(
        t.isa(Method::POST, "route", CC_CONTEXT)
            .header("AuthorizationContextType", "Nonsense")
            .json(&json!({ "conversationIdentifier": conversation, "routingType": "Transfer" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10093);
    // Upper case, as the README samples send it, is accepted (§6 #9).
    let a = answer(
        t.isa(Method::PATCH, "agentWork", CC_CONTEXT)
            .header("AuthorizationContextType", "CONVERSATIONCHANNELDEFINITION")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.0, 202, "{}", a.1);
}

#[tokio::test]
async fn json_to_interactions_is_refused_as_unsupported_media_type() {
    let t = start().await;
    let a = t
        .json(
            Method::POST,
            "interactions",
            MSG_CONTEXT,
            &text(MSG_ADDRESS, "u1", "hi"),
        )
        .await;
    assert_refused(&a, 415, 10016);
}

#[tokio::test]
async fn multipart_to_a_json_endpoint_is_refused_as_unsupported_media_type() {
    let t = start().await;
    let form = Form::new().text(
        "json",
        json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u1")] })
            .to_string(),
    );
    let a = answer(
        t.isa(Method::POST, "conversation", MSG_CONTEXT)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 415, 10016);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let t = start().await;
    let a = answer(
        t.isa(Method::GET, "interactions", MSG_CONTEXT)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 405, 10089);
    let a = answer(
        t.isa(Method::POST, "nothing", MSG_CONTEXT)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 404, 10089);
}

// ---------------------------------------------------------------------------------------------
// POST /interactions (§3.1)

#[tokio::test]
async fn interactions_round_trip_for_every_kind() {
    let t = start().await;
    let user = "+447700900001";
    let first = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, user, "hello"), None)
        .await;
    assert_eq!(first.0, 202, "{}", first.1);
    assert_eq!(first.1["success"], true);
    let conversation = first.1["conversationIdentifier"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Uuid::parse_str(&conversation).is_ok());
    let work_item = first.1["workItemIds"][0].as_str().unwrap().to_owned();
    assert_eq!(work_item.len(), 15);
    assert!(work_item.starts_with("0Mw"), "{work_item}");

    let typing = |kind: &str| {
        entry(
            MSG_ADDRESS,
            user,
            json!({ "id": Uuid::new_v4().to_string(), "entryType": kind, "timestamp": now_ms() }),
        )
    };
    let failed = entry(
        MSG_ADDRESS,
        user,
        json!({
            "id": Uuid::new_v4().to_string(),
            "entryType": "MessageDeliveryFailed",
            "recipient": end_user(user),
            "errorCode": "UNREACHABLE",
            "errorMessage": "handset off",
            "failedConversationEntryIdentifier": Uuid::new_v4().to_string(),
        }),
    );
    let choice_id = Uuid::new_v4().to_string();
    let choice = entry(
        MSG_ADDRESS,
        user,
        json!({
            "id": choice_id,
            "entryType": "Message",
            "abstractMessage": {
                "id": choice_id,
                "messageType": "ChoicesResponseMessage",
                "inReplyToMessageId": Uuid::new_v4().to_string(),
                "choicesResponse": {
                    "formatType": "Selections",
                    "selectedOptions": [{ "optionIdentifier": "yes" }],
                },
            },
        }),
    );
    for body in [
        typing("TypingStartedIndicator"),
        typing("TypingStoppedIndicator"),
        failed,
        choice,
    ] {
        let a = t.interaction(MSG_CONTEXT, &body, None).await;
        assert_eq!(a.0, 202, "{}", a.1);
        assert_eq!(a.1["conversationIdentifier"], conversation.as_str());
        assert_eq!(a.1["workItemIds"], json!([work_item]));
    }
    let picture = vec![7u8; 4096];
    let a = t
        .interaction(
            MSG_CONTEXT,
            &attachment(MSG_ADDRESS, user, picture.len()),
            Some((picture, "image/png")),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);

    let state = t.emu.conversation(&conversation).unwrap();
    assert_eq!(state.channel_address_identifier, MSG_ADDRESS);
    assert_eq!(state.end_user_client_id, user);
    assert_eq!(state.sessions.len(), 1);
    assert_eq!(state.sessions[0].status, SessionStatus::Active);
    let kinds: Vec<String> = state
        .entries
        .iter()
        .map(|e| e.entry_type.clone().unwrap_or(e.interaction_type.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            "Message",
            "TypingStartedIndicator",
            "TypingStoppedIndicator",
            "MessageDeliveryFailed",
            "Message",
            "AttachmentInteraction"
        ]
    );
    assert_eq!(state.entries[5].attachment.as_ref().unwrap().length, 4096);

    // The log has the parsed json part, the file part, and a redacted Authorization.
    let calls = t.emu.requests_to("/api/v1/interactions");
    assert_eq!(calls.len(), 6);
    let last = calls.last().unwrap();
    assert_eq!(last.status, 202);
    assert_eq!(last.header("authorization"), Some("Bearer…"));
    assert_eq!(last.header("OrgId"), Some(ORG_ID));
    assert_eq!(
        last.body.as_ref().unwrap()["interactions"][0]["contentLength"],
        4096
    );
    assert_eq!(last.attachments.len(), 1);
    assert_eq!(last.attachments[0].part_name, "attachments");
    assert_eq!(last.attachments[0].filename.as_deref(), Some("file.bin"));
    assert_eq!(
        last.attachments[0].content_type.as_deref(),
        Some("image/png")
    );
    assert_eq!(last.attachments[0].length, 4096);
    assert_eq!(
        last.response["conversationIdentifier"],
        conversation.as_str()
    );
    assert!(calls.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn from_of_241_characters_is_refused_with_10028() {
    let t = start().await;
    let ok = t
        .interaction(
            MSG_CONTEXT,
            &text(MSG_ADDRESS, &"a".repeat(240), "hi"),
            None,
        )
        .await;
    assert_eq!(ok.0, 202, "{}", ok.1);
    let a = t
        .interaction(
            MSG_CONTEXT,
            &text(MSG_ADDRESS, &"a".repeat(241), "hi"),
            None,
        )
        .await;
    assert_refused(&a, 400, 10028);
}

#[tokio::test]
async fn to_of_241_characters_is_refused_with_10027() {
    let t = start().await;
    let a = t
        .interaction(MSG_CONTEXT, &text(&"c".repeat(241), "u1", "hi"), None)
        .await;
    assert_refused(&a, 400, 10027);
}

#[tokio::test]
async fn an_unknown_channel_is_refused_with_10017() {
    let t = start().await;
    let a = t
        .interaction(MSG_CONTEXT, &text("no-such-channel", "u1", "hi"), None)
        .await;
    assert_refused(&a, 404, 10017);
}

#[tokio::test]
async fn two_interactions_are_refused_with_10029() {
    let t = start().await;
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    let second = body["interactions"][0].clone();
    body["interactions"].as_array_mut().unwrap().push(second);
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10029);
    body["interactions"] = json!([]);
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10029);
}

#[tokio::test]
async fn a_file_without_attachment_interaction_is_refused_with_10011() {
    let t = start().await;
    let a = t
        .interaction(
            MSG_CONTEXT,
            &text(MSG_ADDRESS, "u1", "hi"),
            Some((vec![1; 10], "image/png")),
        )
        .await;
    assert_refused(&a, 400, 10011);
}

#[tokio::test]
async fn an_attachment_interaction_without_file_is_refused_with_10011() {
    let t = start().await;
    let a = t
        .interaction(MSG_CONTEXT, &attachment(MSG_ADDRESS, "u1", 10), None)
        .await;
    assert_refused(&a, 400, 10011);
}

#[tokio::test]
async fn two_files_are_refused_with_10011() {
    let t = start().await;
    let form = Form::new()
        .part(
            "json",
            Part::text(attachment(MSG_ADDRESS, "u1", 3).to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "attachments",
            Part::bytes(vec![1, 2, 3])
                .file_name("a.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .part(
            "attachments",
            Part::bytes(vec![1, 2, 3])
                .file_name("b.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let a = answer(
        t.isa(Method::POST, "interactions", MSG_CONTEXT)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10011);
}

#[tokio::test]
async fn a_wrong_content_length_is_refused_with_10051() {
    let t = start().await;
    let a = t
        .interaction(
            MSG_CONTEXT,
            &attachment(MSG_ADDRESS, "u1", 11),
            Some((vec![1; 10], "image/png")),
        )
        .await;
    assert_refused(&a, 400, 10051);
}

#[tokio::test]
async fn a_missing_content_length_is_refused_with_10010() {
    let t = start().await;
    let mut body = attachment(MSG_ADDRESS, "u1", 10);
    body["interactions"][0]
        .as_object_mut()
        .unwrap()
        .remove("contentLength");
    let a = t
        .interaction(MSG_CONTEXT, &body, Some((vec![1; 10], "image/png")))
        .await;
    assert_refused(&a, 400, 10010);
}

#[tokio::test]
async fn an_empty_file_is_refused_with_10009() {
    let t = start().await;
    let a = t
        .interaction(
            MSG_CONTEXT,
            &attachment(MSG_ADDRESS, "u1", 0),
            Some((vec![], "image/png")),
        )
        .await;
    assert_refused(&a, 400, 10009);
}

#[tokio::test]
async fn a_file_over_25_mb_is_refused_with_10008() {
    let t = start().await;
    let size = 25 * 1024 * 1024 + 1;
    let a = t
        .interaction(
            MSG_CONTEXT,
            &attachment(MSG_ADDRESS, "u1", size),
            Some((vec![0; size], "video/mp4")),
        )
        .await;
    assert_refused(&a, 413, 10008);
}

#[tokio::test]
async fn an_unlisted_mime_type_is_refused_with_10095() {
    let t = start().await;
    for mime in ["text/plain", "application/octet-stream", "image/webp"] {
        let a = t
            .interaction(
                MSG_CONTEXT,
                &attachment(MSG_ADDRESS, "u1", 10),
                Some((vec![1; 10], mime)),
            )
            .await;
        assert_refused(&a, 400, 10095);
    }
}

#[tokio::test]
async fn an_empty_attachment_id_is_refused_with_10007() {
    let t = start().await;
    let mut body = attachment(MSG_ADDRESS, "u1", 10);
    body["interactions"][0]["id"] = json!("");
    let a = t
        .interaction(MSG_CONTEXT, &body, Some((vec![1; 10], "image/png")))
        .await;
    assert_refused(&a, 400, 10007);
}

#[tokio::test]
async fn an_abstract_message_id_differing_from_payload_id_is_refused_with_10060() {
    let t = start().await;
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["abstractMessage"]["id"] = json!(Uuid::new_v4().to_string());
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10060);
}

#[tokio::test]
async fn an_empty_message_id_is_refused_with_10059() {
    let t = start().await;
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["abstractMessage"]["id"] = json!("");
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10059);
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["id"] = json!("");
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10059);
}

#[tokio::test]
async fn an_agent_message_type_from_an_end_user_is_refused_with_10062() {
    let t = start().await;
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["abstractMessage"] = json!({
        "id": body["interactions"][0]["payload"]["id"],
        "messageType": "ChoicesMessage",
        "choices": { "formatType": "Buttons", "optionItems": [] },
    });
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10062);
}

#[tokio::test]
async fn an_unknown_message_type_and_format_type_are_refused() {
    let t = start().await;
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["abstractMessage"]["messageType"] = json!("Shout");
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10047);
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["abstractMessage"]["staticContent"]["formatType"] =
        json!("Hologram");
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10048);
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["abstractMessage"]["staticContent"]["formatType"] =
        json!("Buttons");
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10049);
}

#[tokio::test]
async fn an_outbound_entry_type_is_refused_with_10045() {
    let t = start().await;
    let body = entry(
        MSG_ADDRESS,
        "u1",
        json!({ "id": Uuid::new_v4().to_string(), "entryType": "RoutingResult" }),
    );
    assert_refused(&t.interaction(MSG_CONTEXT, &body, None).await, 400, 10045);
}

#[tokio::test]
async fn a_delivery_failure_not_addressed_to_the_custom_end_user_is_refused() {
    let t = start().await;
    let failed = |recipient: Value| {
        entry(
            MSG_ADDRESS,
            "u1",
            json!({
                "id": Uuid::new_v4().to_string(),
                "entryType": "MessageDeliveryFailed",
                "recipient": recipient,
                "errorCode": "E1",
            }),
        )
    };
    let agent = json!({ "appType": "agent", "subject": "u1", "role": "EndUser" });
    assert_refused(
        &t.interaction(MSG_CONTEXT, &failed(agent), None).await,
        400,
        10037,
    );
    let role = json!({ "appType": "custom", "subject": "u1", "role": "Agent" });
    assert_refused(
        &t.interaction(MSG_CONTEXT, &failed(role), None).await,
        400,
        10038,
    );
}

#[tokio::test]
async fn routing_attributes_are_refused_on_a_partner_routed_channel() {
    let t = start().await;
    let mut body = text(CC_ADDRESS, "u1", "hi");
    body["routingAttributes"] = json!({ "Language": "en" });
    assert_refused(&t.interaction(CC_CONTEXT, &body, None).await, 400, 10089);
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["routingAttributes"] = json!({ "Language": "en" });
    assert_eq!(t.interaction(MSG_CONTEXT, &body, None).await.0, 202);
}

#[tokio::test]
async fn malformed_or_missing_json_is_refused() {
    let t = start().await;
    let form = Form::new().part(
        "json",
        Part::text("{not json")
            .mime_str("application/json")
            .unwrap(),
    );
    let a = answer(
        t.isa(Method::POST, "interactions", MSG_CONTEXT)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10089);
    let raw = &t.emu.requests_to("/api/v1/interactions")[0];
    assert_eq!(raw.raw_body.as_deref(), Some("{not json"));

    let form = Form::new().part(
        "attachments",
        Part::bytes(vec![1])
            .file_name("a.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let a = answer(
        t.isa(Method::POST, "interactions", MSG_CONTEXT)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10100);

    let a = answer(
        t.isa(Method::POST, "conversation", MSG_CONTEXT)
            .header("Content-Type", "application/json")
            .body("{\"channelAddressIdentifier\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10089);
    let a = answer(
        t.isa(Method::POST, "conversation", MSG_CONTEXT)
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10100);
}

#[tokio::test]
async fn an_unknown_multipart_part_is_refused_with_10089() {
    let t = start().await;
    let form = Form::new()
        .text("json", text(MSG_ADDRESS, "u1", "hi").to_string())
        .text("extra", "x");
    let a = answer(
        t.isa(Method::POST, "interactions", MSG_CONTEXT)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&a, 400, 10089);
    assert!(
        a.1["message"].as_str().unwrap().contains("extra"),
        "{}",
        a.1
    );
}

#[tokio::test]
async fn unknown_fields_are_refused_with_10089() {
    let t = start().await;
    let mut body = text(MSG_ADDRESS, "u1", "hi");
    body["interactions"][0]["payload"]["abstractMessage"]["staticContent"]["txt"] = json!("x");
    let a = t.interaction(MSG_CONTEXT, &body, None).await;
    assert_refused(&a, 400, 10089);
    assert!(a.1["message"].as_str().unwrap().contains("txt"), "{}", a.1);
}

#[tokio::test]
async fn an_inactive_session_is_reactivated_and_an_ended_one_replaced() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-sessions").await;
    let session = |op: &str, id: Option<&str>| {
        let mut body = json!({
            "channelAddressIdentifier": CC_ADDRESS,
            "endUserClientId": "u-sessions",
            "conversationIdentifier": conversation,
            "operation": op,
        });
        if let Some(id) = id {
            body["sessionId"] = json!(id);
        }
        body
    };
    assert_eq!(
        t.post("messagingSession", &session("Inactivate", Some(&work_item)))
            .await
            .1["success"],
        true
    );
    let (_, again) = t.open_cc("u-sessions").await;
    assert_eq!(again, work_item, "an inactive session is reactivated");
    assert_eq!(
        t.emu
            .conversation(&conversation)
            .unwrap()
            .session(&work_item)
            .unwrap()
            .status,
        SessionStatus::Active
    );
    assert!(t.emu.rep_ends_session(&work_item));
    assert!(!t.emu.rep_ends_session(&work_item));
    let (same, next) = t.open_cc("u-sessions").await;
    assert_eq!(same, conversation);
    assert_ne!(next, work_item, "after an end, a new session");
    let state = t.emu.conversation(&conversation).unwrap();
    assert_eq!(state.sessions.len(), 2);
    assert_eq!(state.sessions[0].changed_by.as_deref(), Some("Agent"));
}

// ---------------------------------------------------------------------------------------------
// /conversation, /acknowledgement, /capabilities, /consent (§3.2–3.5)

#[tokio::test]
async fn conversation_round_trip_looks_up_or_creates() {
    let t = start().await;
    let body = json!({
        "channelAddressIdentifier": MSG_ADDRESS,
        "participants": [end_user("u-conv")],
        "routingAttributes": { "Language": "en" },
    });
    let a = t
        .json(Method::POST, "conversation", MSG_CONTEXT, &body)
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
    assert_eq!(a.1["success"], true);
    let conversation = a.1["conversationIdentifier"].as_str().unwrap();
    let session = a.1["messagingSessionId"].as_str().unwrap();
    assert!(session.starts_with("0Mw"));
    let b = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u-conv", "hi"), None)
        .await;
    assert_eq!(b.1["conversationIdentifier"], conversation);
    assert_eq!(b.1["workItemIds"][0], session);
    let c = t
        .json(Method::POST, "conversation", MSG_CONTEXT, &body)
        .await;
    assert_eq!(c.1["conversationIdentifier"], conversation);
    assert_eq!(t.emu.conversations().len(), 1);
}

#[tokio::test]
async fn conversation_participants_are_checked() {
    let t = start().await;
    let body = |participants: Value| json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": participants });
    let two = body(json!([end_user("a"), end_user("b")]));
    assert_refused(
        &t.json(Method::POST, "conversation", MSG_CONTEXT, &two)
            .await,
        400,
        10053,
    );
    let none = body(json!([]));
    assert_refused(
        &t.json(Method::POST, "conversation", MSG_CONTEXT, &none)
            .await,
        400,
        10053,
    );
    let agent = body(json!([{ "appType": "agent", "subject": "a", "role": "EndUser" }]));
    assert_refused(
        &t.json(Method::POST, "conversation", MSG_CONTEXT, &agent)
            .await,
        400,
        10037,
    );
    let role = body(json!([{ "appType": "custom", "subject": "a", "role": "Boss" }]));
    assert_refused(
        &t.json(Method::POST, "conversation", MSG_CONTEXT, &role)
            .await,
        400,
        10038,
    );
    let missing = json!({ "participants": [end_user("a")] });
    assert_refused(
        &t.json(Method::POST, "conversation", MSG_CONTEXT, &missing)
            .await,
        400,
        10052,
    );
}

#[tokio::test]
async fn acknowledgements_round_trip_and_are_recorded() {
    let t = start().await;
    let first = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u-ack", "hi"), None)
        .await;
    let conversation = first.1["conversationIdentifier"].as_str().unwrap();
    let mut numeric = ack("Read");
    numeric["acknowledgementTimestamp"] = json!(now_ms());
    let body = json!({
        "conversationIdentifier": conversation,
        "sender": end_user("u-ack"),
        "acknowledgements": [ack("Delivered"), numeric],
    });
    let a = t
        .json(Method::POST, "acknowledgement", MSG_CONTEXT, &body)
        .await;
    assert_eq!((a.0, &a.1), (200, &json!({ "success": true })));
    let state = t.emu.conversation(conversation).unwrap();
    let kinds: Vec<&str> = state
        .acknowledgements
        .iter()
        .map(|a| a.acknowledgement_type.as_str())
        .collect();
    assert_eq!(kinds, ["Delivered", "Read"]);
}

#[tokio::test]
async fn acknowledgements_are_limited_to_1_to_25() {
    let t = start().await;
    let first = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u-ack", "hi"), None)
        .await;
    let conversation = first.1["conversationIdentifier"].as_str().unwrap();
    let body = |n: usize| {
        json!({
            "conversationIdentifier": conversation,
            "sender": end_user("u-ack"),
            "acknowledgements": (0..n).map(|_| ack("Read")).collect::<Vec<_>>(),
        })
    };
    assert_eq!(
        t.json(Method::POST, "acknowledgement", MSG_CONTEXT, &body(25))
            .await
            .0,
        200
    );
    assert_refused(
        &t.json(Method::POST, "acknowledgement", MSG_CONTEXT, &body(26))
            .await,
        400,
        10089,
    );
    assert_refused(
        &t.json(Method::POST, "acknowledgement", MSG_CONTEXT, &body(0))
            .await,
        400,
        10089,
    );
    let mut bad = body(1);
    bad["acknowledgements"][0]["acknowledgementType"] = json!("Seen");
    assert_refused(
        &t.json(Method::POST, "acknowledgement", MSG_CONTEXT, &bad)
            .await,
        400,
        10089,
    );
    let mut unknown = body(1);
    unknown["conversationIdentifier"] = json!(Uuid::new_v4().to_string());
    assert_refused(
        &t.json(Method::POST, "acknowledgement", MSG_CONTEXT, &unknown)
            .await,
        404,
        10018,
    );
}

#[tokio::test]
async fn capabilities_round_trip() {
    let t = start().await;
    let body = json!({
        "capabilities": {
            "appType": "custom",
            "channelCapabilities": [{
                "channelType": "custom",
                "customIntegration": {
                    "customIntegrationType": "CustomChannelIntegration",
                    "integrationNamespace": ORG_ID,
                    "conversationChannelDefinitionDevName": MSG_CONTEXT,
                },
                "messageTypeCapabilities": [{
                    "messageType": "StaticContentMessage",
                    "formatTypeCapabilities": [
                        { "formatType": "Text" },
                        {
                            "formatType": "Attachments",
                            "capabilityFieldRestriction": [{
                                "fieldJsonPath": "$.staticContent.attachments.mimeType",
                                "restriction": { "fieldRestrictionType": "MimeTypeRestriction", "mimeType": "image/png" },
                            }],
                        },
                    ],
                }],
            }],
        },
    });
    let a = answer(
        t.isa(Method::PATCH, "capabilities", MSG_CONTEXT)
            .header("AuthorizationContextType", "ConversationChannelDefinition")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((a.0, &a.1), (200, &json!({ "success": true })));
    assert_eq!(t.emu.capabilities()[MSG_CONTEXT], body);

    let mut wrong = body.clone();
    wrong["capabilities"]["channelCapabilities"][0]["customIntegration"]["conversationChannelDefinitionDevName"] =
        json!("Other_CCD");
    assert_refused(
        &t.json(Method::PATCH, "capabilities", MSG_CONTEXT, &wrong)
            .await,
        400,
        10050,
    );
    let mut format = body.clone();
    format["capabilities"]["channelCapabilities"][0]["messageTypeCapabilities"][0]["formatTypeCapabilities"]
        [0]["formatType"] = json!("Hologram");
    assert_refused(
        &t.json(Method::PATCH, "capabilities", MSG_CONTEXT, &format)
            .await,
        400,
        10048,
    );
    let mut progress = body.clone();
    progress["capabilities"]["channelCapabilities"][0]["progressIndicatorTypeCapabilities"] = json!([{ "progressIndicatorType": "ProgressUpdateIndicator", "formatTypeCapabilities": [] }]);
    assert_refused(
        &t.json(Method::PATCH, "capabilities", MSG_CONTEXT, &progress)
            .await,
        400,
        10098,
    );
}

#[tokio::test]
async fn consent_round_trip() {
    let t = start().await;
    t.open_cc("u-consent").await;
    let body = json!({
        "channelAddressIdentifier": CC_ADDRESS,
        "endUserClientId": "u-consent",
        "consentStatus": "ExplicitlyOptedIn",
    });
    let a = t.json(Method::PATCH, "consent", CC_CONTEXT, &body).await;
    assert_eq!((a.0, &a.1), (200, &json!({ "success": true })));
    assert_eq!(
        t.emu
            .conversation_of(CC_ADDRESS, "u-consent")
            .unwrap()
            .consent_status
            .as_deref(),
        Some("ExplicitlyOptedIn")
    );
}

#[tokio::test]
async fn a_consent_status_outside_the_enum_is_refused_with_10021() {
    let t = start().await;
    t.open_cc("u-consent").await;
    let body = json!({
        "channelAddressIdentifier": CC_ADDRESS,
        "endUserClientId": "u-consent",
        "consentStatus": "ExplicityOptedIn",
    });
    assert_refused(
        &t.json(Method::PATCH, "consent", CC_CONTEXT, &body).await,
        400,
        10021,
    );
}

#[tokio::test]
async fn consent_on_a_salesforce_consent_channel_is_refused_with_10022() {
    let t = start().await;
    t.interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u-consent", "hi"), None)
        .await;
    let body = json!({
        "channelAddressIdentifier": MSG_ADDRESS,
        "endUserClientId": "u-consent",
        "consentStatus": "OptedOut",
    });
    assert_refused(
        &t.json(Method::PATCH, "consent", MSG_CONTEXT, &body).await,
        403,
        10022,
    );
}

// ---------------------------------------------------------------------------------------------
// Routing (§3.6–3.11)

#[tokio::test]
async fn partner_routing_round_trip() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-route").await;
    // POST /route with a flow and its fallback queue.
    let a = t
        .post(
            "route",
            &json!({
                "conversationIdentifier": conversation,
                "routingType": "Initial",
                "routingInfo": {
                    "flow": { "flowId": FLOW, "queueId": QUEUE },
                    "routingAttributes": { "Language": "en" },
                },
            }),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
    assert_eq!(a.1["success"], true);
    let psr = a.1["psrId"].as_str().unwrap().to_owned();
    assert!(psr.starts_with("0JR") && psr.len() == 15, "{psr}");
    assert_eq!(a.1["workItemId"], work_item.as_str());
    let correlation = a.1["routingCorrelationId"].as_str().unwrap().to_owned();
    assert!(Uuid::parse_str(&correlation).is_ok());

    // POST /agentWork with the routing context.
    let a = t
        .post(
            "agentWork",
            &json!({
                "userId": REP_1,
                "workItemId": work_item,
                "routingContext": {
                    "conversationIdentifier": conversation,
                    "routingType": "Initial",
                    "routingCorrelationId": correlation,
                },
                "agentActionVisibilities": [{ "agentAction": "Transfer", "visible": false }],
            }),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
    let work = a.1["agentWorkId"].as_str().unwrap().to_owned();
    assert!(work.starts_with("0Bz") && work.len() == 15, "{work}");
    assert_eq!(a.1["agentWorkDetails"]["existPsr"], true);
    assert_eq!(a.1["agentWorkDetails"]["psrId"], psr.as_str());

    // /routingResult, success.
    let a = t
        .post(
            "routingResult",
            &json!({
                "workItemId": work_item,
                "conversationIdentifier": conversation,
                "success": true,
                "externallyRouted": false,
                "routingType": "Initial",
            }),
        )
        .await;
    assert_eq!((a.0, &a.1), (202, &json!({ "success": true })));

    // PATCH /agentWork Accept: the rep joins and the PSR goes.
    let a = t
        .json(
            Method::PATCH,
            "agentWork",
            CC_CONTEXT,
            &json!({ "workId": work, "contextType": "Agent", "status": "Accept" }),
        )
        .await;
    assert_eq!((a.0, &a.1), (202, &json!({ "success": true })));
    let state = t.emu.conversation(&conversation).unwrap();
    assert_eq!(state.participants, [REP_1]);
    assert_eq!(state.psrs[0].status, PsrStatus::Accepted);
    assert_eq!(state.agent_works[0].status, AgentWorkStatus::Accepted);

    // A transfer to a queue, then the first rep is removed.
    let a = t
        .post(
            "route",
            &json!({
                "conversationIdentifier": conversation,
                "routingType": "Transfer",
                "routingInfo": { "queueId": QUEUE },
            }),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
    let a = t
        .post(
            "participant",
            &json!({
                "conversationIdentifier": conversation,
                "operation": "Remove",
                "participants": [{ "appType": "agent", "subject": REP_1, "role": "Agent" }],
            }),
        )
        .await;
    assert_eq!((a.0, &a.1), (200, &json!({ "success": true })));

    // DELETE /route with a JSON body clears the pending PSR.
    let a = t
        .json(
            Method::DELETE,
            "route",
            CC_CONTEXT,
            &json!({ "conversationIdentifier": conversation, "cancelReason": "Unavailable" }),
        )
        .await;
    assert_eq!((a.0, &a.1), (202, &json!({ "success": true })));
    let a = t
        .json(
            Method::DELETE,
            "route",
            CC_CONTEXT,
            &json!({ "conversationIdentifier": conversation }),
        )
        .await;
    assert_eq!(
        (a.0, &a.1),
        (202, &json!({ "success": false })),
        "nothing left to delete"
    );

    // PATCH /agentWork Close.
    let a = t
        .json(
            Method::PATCH,
            "agentWork",
            CC_CONTEXT,
            &json!({ "workId": work, "contextType": "Agent", "status": "Close" }),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);

    let state = t.emu.conversation(&conversation).unwrap();
    assert!(state.participants.is_empty());
    assert_eq!(state.removed_participants, [REP_1]);
    assert_eq!(state.psrs.len(), 2);
    assert_eq!(state.psrs[1].status, PsrStatus::Deleted);
    assert_eq!(state.psrs[1].cancel_reason.as_deref(), Some("Unavailable"));
    assert_eq!(state.psrs[0].flow_id.as_deref(), Some(FLOW));
    assert_eq!(state.psrs[0].routing_attributes["Language"], "en");
    assert_eq!(state.agent_works[0].status, AgentWorkStatus::Closed);
    assert_eq!(state.routing_results.len(), 1);
}

#[tokio::test]
async fn agent_work_without_psr_needs_capacity() {
    let t = start().await;
    let (_, work_item) = t.open_cc("u-cap").await;
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": work_item }),
        )
        .await;
    assert_refused(&a, 400, 10089);
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": work_item, "capacityWeight": 1.0 }),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
    assert_eq!(a.1["agentWorkDetails"]["existPsr"], false);
    assert_eq!(a.1["agentWorkDetails"]["capacityWeight"], 1.0);
}

#[tokio::test]
async fn both_capacities_are_refused_with_10013() {
    let t = start().await;
    let (_, work_item) = t.open_cc("u-cap").await;
    let a = t
        .post(
            "agentWork",
            &json!({
                "userId": REP_1,
                "workItemId": work_item,
                "capacityWeight": 1,
                "capacityPercentage": 50,
            }),
        )
        .await;
    assert_refused(&a, 400, 10013);
}

#[tokio::test]
async fn a_negative_capacity_weight_is_refused_with_10014() {
    let t = start().await;
    let (_, work_item) = t.open_cc("u-cap").await;
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": work_item, "capacityWeight": -1 }),
        )
        .await;
    assert_refused(&a, 400, 10014);
}

#[tokio::test]
async fn a_capacity_percentage_over_100_is_refused_with_10015() {
    let t = start().await;
    let (_, work_item) = t.open_cc("u-cap").await;
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": work_item, "capacityPercentage": 100.5 }),
        )
        .await;
    assert_refused(&a, 400, 10015);
}

#[tokio::test]
async fn a_work_item_id_not_of_15_characters_is_refused() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-wi").await;
    let long = format!("{work_item}AAA");
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": long, "capacityWeight": 1 }),
        )
        .await;
    assert_refused(&a, 400, 15110);
    let a = t
        .post(
            "routingResult",
            &json!({
                "workItemId": long,
                "conversationIdentifier": conversation,
                "success": true,
                "externallyRouted": false,
            }),
        )
        .await;
    assert_refused(&a, 400, 10012);
}

#[tokio::test]
async fn an_unknown_work_item_is_refused_with_15111() {
    let t = start().await;
    t.open_cc("u-wi").await;
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": "0Mw000000000000", "capacityWeight": 1 }),
        )
        .await;
    assert_refused(&a, 404, 15111);
}

#[tokio::test]
async fn an_unknown_user_is_refused_with_15106() {
    let t = start().await;
    let (_, work_item) = t.open_cc("u-user").await;
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": "005000000000999", "workItemId": work_item, "capacityWeight": 1 }),
        )
        .await;
    assert_refused(&a, 400, 15106);
}

#[tokio::test]
async fn a_second_active_agent_work_is_refused_with_15109() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-twice").await;
    t.assign(&conversation, &work_item, REP_1).await;
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": work_item }),
        )
        .await;
    assert_refused(&a, 409, 15109);
    // Another rep may get it (the docs warn both could accept).
    let a = t
        .post(
            "agentWork",
            &json!({ "userId": REP_2, "workItemId": work_item }),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
}

#[tokio::test]
async fn a_routing_context_of_another_conversation_is_refused_with_15107() {
    let t = start().await;
    let (_, work_item) = t.open_cc("u-ctx").await;
    let a = t
        .post(
            "agentWork",
            &json!({
                "userId": REP_1,
                "workItemId": work_item,
                "capacityWeight": 1,
                "routingContext": {
                    "conversationIdentifier": Uuid::new_v4().to_string(),
                    "routingType": "Initial",
                    "routingCorrelationId": Uuid::new_v4().to_string(),
                },
            }),
        )
        .await;
    assert_refused(&a, 400, 15107);
}

#[tokio::test]
async fn agent_work_status_transitions_are_checked() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-status").await;
    let work = t.assign(&conversation, &work_item, REP_1).await;
    let patch = |status: &str| json!({ "workId": work, "contextType": "Agent", "status": status });
    let a = t
        .json(Method::PATCH, "agentWork", CC_CONTEXT, &patch("Cancel"))
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
    let a = t
        .json(Method::PATCH, "agentWork", CC_CONTEXT, &patch("Accept"))
        .await;
    assert_refused(&a, 400, 10085);
    let a = t
        .json(Method::PATCH, "agentWork", CC_CONTEXT, &patch("Finish"))
        .await;
    assert_refused(&a, 400, 10085);
    let bad_context = json!({ "workId": work, "contextType": "Robot", "status": "Close" });
    assert_refused(
        &t.json(Method::PATCH, "agentWork", CC_CONTEXT, &bad_context)
            .await,
        400,
        10083,
    );
    let unknown = json!({ "workId": "0Bz000000000000", "contextType": "Agent", "status": "Close" });
    assert_refused(
        &t.json(Method::PATCH, "agentWork", CC_CONTEXT, &unknown)
            .await,
        404,
        10082,
    );
    assert_eq!(
        t.emu.conversation(&conversation).unwrap().agent_works[0].status,
        AgentWorkStatus::Cancelled
    );
}

#[tokio::test]
async fn rep_accepting_in_the_console_is_played_by_the_emulator() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-console").await;
    let work = t.assign(&conversation, &work_item, REP_2).await;
    assert!(t.emu.rep_accepts_work(&work));
    assert!(!t.emu.rep_accepts_work(&work));
    assert_eq!(
        t.emu.conversation(&conversation).unwrap().participants,
        [REP_2]
    );
}

#[tokio::test]
async fn flow_routing_without_fallback_queue_is_refused_with_10024() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-flow").await;
    let a = t
        .post(
            "route",
            &json!({
                "conversationIdentifier": conversation,
                "routingType": "Transfer",
                "routingInfo": { "flow": { "flowId": FLOW } },
            }),
        )
        .await;
    assert_refused(&a, 400, 10024);
}

#[tokio::test]
async fn routing_info_without_flow_or_queue_is_refused_with_10030() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-flow").await;
    let a = t
        .post(
            "route",
            &json!({
                "conversationIdentifier": conversation,
                "routingType": "Initial",
                "routingInfo": { "routingAttributes": { "Language": "en" } },
            }),
        )
        .await;
    assert_refused(&a, 400, 10030);
    // Without routingInfo the channel's own routing applies.
    let a = t
        .post(
            "route",
            &json!({ "conversationIdentifier": conversation, "routingType": "Initial" }),
        )
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
}

#[tokio::test]
async fn an_unknown_queue_is_refused_with_10032() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-queue").await;
    let a = t
        .post(
            "route",
            &json!({
                "conversationIdentifier": conversation,
                "routingType": "Initial",
                "routingInfo": { "queueId": "00G000000000999" },
            }),
        )
        .await;
    assert_refused(&a, 400, 10032);
}

#[tokio::test]
async fn route_to_an_unknown_conversation_is_refused_with_10018() {
    let t = start().await;
    let a = t
        .post(
            "route",
            &json!({ "conversationIdentifier": Uuid::new_v4().to_string(), "routingType": "Initial" }),
        )
        .await;
    assert_refused(&a, 404, 10018);
}

#[tokio::test]
async fn routing_on_a_messaging_channel_is_refused_with_15102() {
    let t = start().await;
    let first = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u-msg", "hi"), None)
        .await;
    let conversation = first.1["conversationIdentifier"].as_str().unwrap();
    let a = t
        .json(
            Method::POST,
            "route",
            MSG_CONTEXT,
            &json!({ "conversationIdentifier": conversation, "routingType": "Initial" }),
        )
        .await;
    assert_refused(&a, 403, 15102);
}

#[tokio::test]
async fn routing_result_error_message_with_success_is_refused_with_10033() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-rr").await;
    let a = t
        .post(
            "routingResult",
            &json!({
                "workItemId": work_item,
                "conversationIdentifier": conversation,
                "success": true,
                "externallyRouted": false,
                "errorMessage": "oops",
            }),
        )
        .await;
    assert_refused(&a, 400, 10033);
}

#[tokio::test]
async fn routing_result_failure_without_error_message_is_refused_with_10034() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-rr").await;
    let body = json!({
        "workItemId": work_item,
        "conversationIdentifier": conversation,
        "success": false,
        "externallyRouted": false,
    });
    assert_refused(&t.post("routingResult", &body).await, 400, 10034);
    let mut with = body.clone();
    with["errorMessage"] = json!("no rep answered within 60 s");
    assert_eq!(t.post("routingResult", &with).await.0, 202);
    let mut other = with.clone();
    other["conversationIdentifier"] = json!(Uuid::new_v4().to_string());
    assert_refused(&t.post("routingResult", &other).await, 400, 15107);
}

#[tokio::test]
async fn participant_operation_other_than_remove_is_refused_with_10097() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-part").await;
    let a = t
        .post(
            "participant",
            &json!({
                "conversationIdentifier": conversation,
                "operation": "Add",
                "participants": [{ "appType": "agent", "subject": REP_1, "role": "Agent" }],
            }),
        )
        .await;
    assert_refused(&a, 400, 10097);
}

#[tokio::test]
async fn removing_a_rep_not_in_the_conversation_is_refused_with_10036() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-part").await;
    let a = t
        .post(
            "participant",
            &json!({
                "conversationIdentifier": conversation,
                "operation": "Remove",
                "participants": [{ "appType": "agent", "subject": REP_1, "role": "Agent" }],
            }),
        )
        .await;
    assert_refused(&a, 404, 10036);
}

// ---------------------------------------------------------------------------------------------
// /messagingSession (§3.12)

fn session_body(conversation: &str, user: &str, op: &str, session: Option<&str>) -> Value {
    let mut body = json!({
        "channelAddressIdentifier": CC_ADDRESS,
        "endUserClientId": user,
        "conversationIdentifier": conversation,
        "operation": op,
        "operationBy": "System",
    });
    if let Some(s) = session {
        body["sessionId"] = json!(s);
    }
    body
}

#[tokio::test]
async fn messaging_session_inactivate_then_end_then_end_again() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-ms").await;
    let a = t
        .post(
            "messagingSession",
            &session_body(&conversation, "u-ms", "Inactivate", Some(&work_item)),
        )
        .await;
    assert_eq!((a.0, &a.1), (200, &json!({ "success": true })));
    let status = || {
        t.emu
            .conversation(&conversation)
            .unwrap()
            .session(&work_item)
            .unwrap()
            .status
    };
    assert_eq!(status(), SessionStatus::Inactive);
    let a = t
        .post(
            "messagingSession",
            &session_body(&conversation, "u-ms", "End", None),
        )
        .await;
    assert_eq!((a.0, &a.1), (200, &json!({ "success": true })));
    assert_eq!(status(), SessionStatus::Ended);
    let a = t
        .post(
            "messagingSession",
            &session_body(&conversation, "u-ms", "End", Some(&work_item)),
        )
        .await;
    assert_reason(&a, "SESSION_NOT_FOUND");
}

#[tokio::test]
async fn messaging_session_state_problems_answer_their_error_reason() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-ms").await;
    let other = Uuid::new_v4().to_string();
    assert_reason(
        &t.post(
            "messagingSession",
            &session_body(&other, "u-ms", "End", None),
        )
        .await,
        "ACTIVE_CONVERSATION_NOT_FOUND",
    );
    assert_reason(
        &t.post(
            "messagingSession",
            &session_body(&conversation, "nobody", "End", None),
        )
        .await,
        "END_USER_NOT_FOUND",
    );
    let mut unknown_channel = session_body(&conversation, "u-ms", "End", None);
    unknown_channel["channelAddressIdentifier"] = json!("no-such-channel");
    assert_reason(
        &t.post("messagingSession", &unknown_channel).await,
        "CHANNEL_ADDRESS_NOT_FOUND",
    );
    assert_reason(
        &t.post(
            "messagingSession",
            &session_body(&conversation, "u-ms", "End", Some("0Mw000000000000")),
        )
        .await,
        "SESSION_NOT_FOUND",
    );
}

#[tokio::test]
async fn inactivate_without_session_id_is_refused_with_10106() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-ms").await;
    let a = t
        .post(
            "messagingSession",
            &session_body(&conversation, "u-ms", "Inactivate", None),
        )
        .await;
    assert_refused(&a, 400, 10106);
}

#[tokio::test]
async fn a_session_operation_outside_the_enum_is_refused_with_10102() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-ms").await;
    let a = t
        .post(
            "messagingSession",
            &session_body(&conversation, "u-ms", "Close", Some(&work_item)),
        )
        .await;
    assert_refused(&a, 400, 10102);
}

#[tokio::test]
async fn a_session_operation_by_outside_the_enum_is_refused_with_10103() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-ms").await;
    let mut body = session_body(&conversation, "u-ms", "End", None);
    body["operationBy"] = json!("Agent");
    assert_refused(&t.post("messagingSession", &body).await, 400, 10103);
}

// ---------------------------------------------------------------------------------------------
// /conversationHistory (§3.13)

fn history(user: &str, entries: Value) -> Value {
    json!({
        "channelAddressIdentifier": CC_ADDRESS,
        "conversationParticipants": [
            { "participant": end_user(user), "displayName": "Ann", "joinedTime": now_ms() - 600_000 },
            {
                "participant": { "appType": "chatbot", "subject": "bot-1", "role": "Chatbot" },
                "displayName": "Bot",
                "joinedTime": now_ms() - 600_000,
                "leftTime": now_ms() - 1_000,
            },
        ],
        "conversationEntries": entries,
    })
}

fn history_entry(sender: Value, at: i64, id: &str) -> Value {
    json!({
        "clientTimestamp": at,
        "sender": sender,
        "entryPayload": {
            "id": id,
            "entryType": "Message",
            "abstractMessage": {
                "id": id,
                "messageType": "StaticContentMessage",
                "staticContent": { "formatType": "Text", "text": "earlier" },
            },
        },
    })
}

#[tokio::test]
async fn conversation_history_round_trip() {
    let t = start().await;
    let bot = json!({ "appType": "chatbot", "subject": "bot-1", "role": "Chatbot" });
    let mut body = history(
        "u-hist",
        json!([
            history_entry(bot, now_ms() - 120_000, &Uuid::new_v4().to_string()),
            history_entry(
                end_user("u-hist"),
                now_ms() - 60_000,
                &Uuid::new_v4().to_string()
            ),
        ]),
    );
    body["messagingSession"] = json!({
        "messagingSessionRequestType": "EstablishMessagingSession",
        "payload": { "startTime": now_ms() - 600_000 },
    });
    let a = t.post("conversationHistory", &body).await;
    assert_eq!(a.0, 202, "{}", a.1);
    assert_eq!(a.1["success"], true);
    let session = a.1["messagingSessionId"].as_str().unwrap();
    let conversation = a.1["conversationIdentifier"].as_str().unwrap();
    let state = t.emu.conversation(conversation).unwrap();
    assert_eq!(state.entries.len(), 2);
    assert_eq!(state.entries[0].interaction_type, "History");
    // The session is usable for routing.
    let b = t
        .post(
            "agentWork",
            &json!({ "userId": REP_1, "workItemId": session, "capacityWeight": 1 }),
        )
        .await;
    assert_eq!(b.0, 202, "{}", b.1);
    // Missing AuthorizationContextType → 10016.
    let c = answer(
        t.isa(Method::POST, "conversationHistory", CC_CONTEXT)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&c, 400, 10016);
}

#[tokio::test]
async fn history_participant_rules_are_enforced() {
    let t = start().await;
    let one = json!([history_entry(
        end_user("u-h"),
        now_ms() - 60_000,
        &Uuid::new_v4().to_string()
    )]);
    let mut two_users = history("u-h", one.clone());
    two_users["conversationParticipants"][1] =
        json!({ "participant": end_user("u-other"), "joinedTime": now_ms() - 600_000 });
    assert_refused(&t.post("conversationHistory", &two_users).await, 400, 10044);
    let mut bot_stays = history("u-h", one.clone());
    bot_stays["conversationParticipants"][1]
        .as_object_mut()
        .unwrap()
        .remove("leftTime");
    assert_refused(&t.post("conversationHistory", &bot_stays).await, 400, 10066);
    let mut user_left = history("u-h", one.clone());
    user_left["conversationParticipants"][0]["leftTime"] = json!(now_ms());
    assert_refused(&t.post("conversationHistory", &user_left).await, 400, 10065);
    let mut agent = history("u-h", one.clone());
    agent["conversationParticipants"][1]["participant"] =
        json!({ "appType": "agent", "subject": REP_1, "role": "Agent" });
    assert_refused(&t.post("conversationHistory", &agent).await, 400, 10043);
}

#[tokio::test]
async fn history_entry_rules_are_enforced() {
    let t = start().await;
    let id = Uuid::new_v4().to_string();
    let old = history(
        "u-h",
        json!([history_entry(
            end_user("u-h"),
            now_ms() - 25 * 3_600_000,
            &id
        )]),
    );
    assert_refused(&t.post("conversationHistory", &old).await, 400, 10046);
    let twice = history(
        "u-h",
        json!([
            history_entry(end_user("u-h"), now_ms() - 60_000, &id),
            history_entry(end_user("u-h"), now_ms() - 50_000, &id),
        ]),
    );
    assert_refused(&t.post("conversationHistory", &twice).await, 400, 10073);
    let stranger = history(
        "u-h",
        json!([history_entry(end_user("u-x"), now_ms() - 60_000, &id)]),
    );
    assert_refused(&t.post("conversationHistory", &stranger).await, 400, 10068);
    let bot = json!({ "appType": "chatbot", "subject": "bot-1", "role": "Chatbot" });
    let after_leaving = history("u-h", json!([history_entry(bot, now_ms() - 500, &id)]));
    assert_refused(
        &t.post("conversationHistory", &after_leaving).await,
        400,
        10074,
    );
    let too_many = history(
        "u-h",
        Value::Array(
            (0..26)
                .map(|_| {
                    history_entry(
                        end_user("u-h"),
                        now_ms() - 60_000,
                        &Uuid::new_v4().to_string(),
                    )
                })
                .collect(),
        ),
    );
    assert_refused(&t.post("conversationHistory", &too_many).await, 400, 10078);
}

#[tokio::test]
async fn history_is_for_ccaas_only() {
    let t = start().await;
    let mut body = history(
        "u-h",
        json!([history_entry(
            end_user("u-h"),
            now_ms() - 60_000,
            &Uuid::new_v4().to_string()
        )]),
    );
    body["channelAddressIdentifier"] = json!(MSG_ADDRESS);
    let a = t
        .json(Method::POST, "conversationHistory", MSG_CONTEXT, &body)
        .await;
    assert_refused(&a, 403, 10057);
}

// ---------------------------------------------------------------------------------------------
// Injection, delays, rate limit, log, shutdown

#[tokio::test]
async fn an_injected_10094_then_success() {
    let t = start().await;
    t.emu.inject(
        "/api/v1/interactions",
        Failure::IsaError {
            http_status: 503,
            code: 10094,
        },
        1,
    );
    let body = text(MSG_ADDRESS, "u-inj", "hi");
    let a = t.interaction(MSG_CONTEXT, &body, None).await;
    assert_refused(&a, 503, 10094);
    assert!(
        t.emu.conversations().is_empty(),
        "a failed call changes nothing"
    );
    let a = t.interaction(MSG_CONTEXT, &body, None).await;
    assert_eq!(a.0, 202, "{}", a.1);
    let log = t.emu.requests_to("/api/v1/interactions");
    assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [503, 202]);
    assert_eq!(log[0].error_code(), Some(10094));
}

#[tokio::test]
async fn injected_failures_are_used_in_order_and_by_method() {
    let t = start().await;
    let (conversation, work_item) = t.open_cc("u-order").await;
    let work = t.assign(&conversation, &work_item, REP_1).await;
    t.emu.inject(
        "PATCH /api/v1/agentWork",
        Failure::RetryAfter {
            http_status: 429,
            seconds: 7,
        },
        2,
    );
    t.emu.inject(
        "/agentWork",
        Failure::IsaError {
            http_status: 500,
            code: 500,
        },
        1,
    );
    let patch = json!({ "workId": work, "contextType": "Agent", "status": "Accept" });
    for _ in 0..2 {
        let a = t.json(Method::PATCH, "agentWork", CC_CONTEXT, &patch).await;
        assert_eq!(a.0, 429);
        assert_eq!(a.2["retry-after"], "7");
        assert_eq!(a.1["message"], "Interaction request rate limit exceeded");
    }
    let a = t.json(Method::PATCH, "agentWork", CC_CONTEXT, &patch).await;
    assert_refused(&a, 500, 500);
    let a = t.json(Method::PATCH, "agentWork", CC_CONTEXT, &patch).await;
    assert_eq!(a.0, 202, "{}", a.1);
}

#[tokio::test]
async fn an_injected_error_reason_on_messaging_session() {
    let t = start().await;
    let (conversation, _) = t.open_cc("u-reason").await;
    t.emu.inject(
        "/api/v1/messagingSession",
        Failure::ErrorReason("CONVERSATION_PROCESSING_ABORTED".into()),
        1,
    );
    let body = session_body(&conversation, "u-reason", "End", None);
    assert_reason(
        &t.post("messagingSession", &body).await,
        "CONVERSATION_PROCESSING_ABORTED",
    );
    assert_eq!(t.post("messagingSession", &body).await.1["success"], true);
}

#[tokio::test]
async fn an_injected_disconnect_closes_without_answer() {
    let t = start().await;
    t.emu.inject("/api/v1/interactions", Failure::Disconnect, 1);
    let form = Form::new().text("json", text(MSG_ADDRESS, "u-dc", "hi").to_string());
    let err = t
        .isa(Method::POST, "interactions", MSG_CONTEXT)
        .multipart(form)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err}");
    assert_eq!(t.emu.requests_to("/api/v1/interactions")[0].status, 0);
    let a = t
        .interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u-dc", "hi"), None)
        .await;
    assert_eq!(a.0, 202, "{}", a.1);
}

#[tokio::test]
async fn a_delay_slows_the_next_calls_only() {
    let t = start().await;
    t.emu
        .delay("/api/v1/interactions", Duration::from_millis(400), 1);
    let body = text(MSG_ADDRESS, "u-slow", "hi");
    let started = Instant::now();
    assert_eq!(t.interaction(MSG_CONTEXT, &body, None).await.0, 202);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(t.interaction(MSG_CONTEXT, &body, None).await.0, 202);
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let mut s = settings();
    s.rate_limit_per_second = Some(3);
    let t = start_with(s).await;
    let body =
        json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u-rate")] });
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..5 {
        let a = t
            .json(Method::POST, "conversation", MSG_CONTEXT, &body)
            .await;
        statuses.push(a.0);
        if a.0 == 429 {
            limited = Some(a);
        }
    }
    // Five calls inside one second: three pass (a window boundary may let one more through).
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 1,
        "{statuses:?}"
    );
    let limited = limited.unwrap();
    assert_eq!(
        limited.1["message"],
        "Interaction request rate limit exceeded"
    );
    assert_eq!(limited.2["retry-after"], "1");
    // The token endpoint is not rate limited.
    assert_eq!(
        mint(&t.http, &t.emu, &assertion(&t.emu, json!({}))).await.0,
        200
    );
    // The limit can be lifted.
    t.emu.set_rate_limit(None);
    for _ in 0..5 {
        assert_eq!(
            t.json(Method::POST, "conversation", MSG_CONTEXT, &body)
                .await
                .0,
            202
        );
    }
}

#[tokio::test]
async fn the_log_can_be_cleared_and_filtered() {
    let t = start().await;
    t.interaction(MSG_CONTEXT, &text(MSG_ADDRESS, "u-log", "hi"), None)
        .await;
    t.json(
        Method::POST,
        "conversation",
        MSG_CONTEXT,
        &json!({ "channelAddressIdentifier": MSG_ADDRESS, "participants": [end_user("u-log")] }),
    )
    .await;
    assert_eq!(t.emu.requests().len(), 2);
    assert_eq!(t.emu.requests_to("/api/v1/conversation").len(), 1);
    let conversation = &t.emu.requests_to("/api/v1/conversation")[0];
    assert_eq!(
        conversation.body.as_ref().unwrap()["participants"][0]["subject"],
        "u-log"
    );
    assert_eq!(conversation.response["success"], true);
    t.emu.clear_log();
    assert!(t.emu.requests().is_empty());
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let t = start().await;
    let url = t.emu.base_url();
    t.emu.clone().shutdown().await;
    let err = Client::new()
        .post(format!("{url}/services/oauth2/token"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err}");
}
