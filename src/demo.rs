//! `byocd demo`: the real daemon on a fresh SQLite state directory, with the emulators of
//! Salesforce (token endpoint, Interaction Service, Pub/Sub), 8x8 and Kaleyra on loopback
//! ([`crate::sandbox::stack`]); then a scripted conversation on each provider, narrated as a
//! timeline, and the audit trail at the end. With `--keep-running` it stays up and prints curl
//! commands for the user's own webhooks and rep actions.
//!
//! Each step waits for its effect where a user would look for it (the emulator's record of what
//! reached Salesforce or the provider, the state database), with a deadline; a step that does not
//! happen fails the demo (exit 1) and says which.

use std::{
    fmt::Display,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{
    app,
    providers::MediaKind,
    sandbox::{
        eightbyeight::{InboundBody, WebhookUser},
        kaleyra::{Callback, CallbackFormat, CallbackKind},
        rep::{ConversationKey, Rep},
        salesforce::{EmulatedConversation, Failure, SessionStatus},
        stack::{self, Stack, StackOptions},
    },
    store::{AuditFilter, Store},
};

/// How long one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What `byocd demo` was asked.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Stay up after the script.
    pub keep_running: bool,
    /// Where to put the configuration and the state (default: a new temporary directory).
    pub dir: Option<PathBuf>,
    /// Show every audit row at the end instead of a summary by kind.
    pub full_audit: bool,
}

/// Prints the timeline: seconds since start, who acted, what happened.
struct Timeline {
    start: Instant,
}

impl Timeline {
    fn say(&self, who: &str, what: impl Display) {
        println!(
            "[{:>6.2}s] {who:<10} {what}",
            self.start.elapsed().as_secs_f64()
        );
    }

    fn section(&self, title: &str) {
        println!("\n== {title}");
    }
}

/// Polls `probe` every 20 ms until it answers, for at most [`STEP_TIMEOUT`].
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("demo step did not happen within {STEP_TIMEOUT:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the demo. Returns when the script is done (or, with `--keep-running`, on Ctrl-C).
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let timeline = Timeline {
        start: Instant::now(),
    };
    let temp;
    let root = match &options.dir {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "{} is not empty: the demo needs a fresh directory",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };
    println!("byocd demo — everything runs on this machine, on 127.0.0.1; nothing leaves it.");
    println!("directory: {}", root.display());

    let mut stack_options = StackOptions::new(&root);
    stack_options.metrics_listen = free_port()?;
    // Idle quickly so the demo sees the sweep within seconds.
    stack_options.session =
        "inactivate_after = \"4s\"\nend_after = \"8s\"\nsweep_cron = \"* * * * * *\"\n".into();
    stack_options.extra_main =
        "\n[relay]\npoll_interval = \"50ms\"\nretry_schedule = [\"1s\", \"2s\", \"5s\"]\n\
         # The emulators serve files on 127.0.0.1 over http.\nallow_private_media_urls = true\n"
            .into();
    let stack = Stack::start(&stack_options).await?;
    timeline.say(
        "sandbox",
        format!(
            "emulators up: Salesforce {} · Pub/Sub {} · 8x8 {} · Kaleyra {}",
            stack.salesforce.base_url(),
            stack.pubsub.endpoint(),
            stack.wa.base_url(),
            stack.rcs.base_url()
        ),
    );
    timeline.say(
        "sandbox",
        format!(
            "configuration written: {} (keys generated: org RSA 2048, token key)",
            stack.config_file.display()
        ),
    );

    let log_file = root.join("byocd.log");
    init_logging(&log_file)?;
    let config = crate::config::load(&stack.config_file)
        .map_err(|errors| anyhow::anyhow!("the generated configuration is invalid:\n{errors}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let daemon = tokio::spawn(app::run(
        config,
        listener,
        app::Control::stop_on(async move {
            let _ = stop_rx.await;
        }),
    ));
    let http = reqwest::Client::new();
    until("the daemon answers /readyz 200", async || {
        let answer = http.get(format!("{base}/readyz")).send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await?;
    let store = app::open_store_read_only(
        &crate::config::load(&stack.config_file)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?,
    )
    .await?;
    timeline.say(
        "byocd",
        format!(
            "ready in {} ms: webhooks on {base}, metrics on http://{}/metrics, SQLite in {}/state, log in {}",
            started.elapsed().as_millis(),
            stack_options.metrics_listen,
            root.display(),
            log_file.display()
        ),
    );

    let result = script(&timeline, &stack, &store, &http, &base).await;
    if let Err(e) = &result {
        println!(
            "\nDEMO FAILED: {e:#}\n(the daemon's log is {})",
            log_file.display()
        );
    }
    print_audit(&store, options.full_audit).await?;
    store.close().await;

    if options.keep_running && result.is_ok() {
        let console = serve_rep_console(&stack).await?;
        print_try_it(&base, console, &stack_options.metrics_listen, &root);
        tokio::signal::ctrl_c().await?;
        println!("\nstopping");
    }
    let _ = stop_tx.send(());
    match daemon.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("the daemon stopped with an error: {e}"),
        Err(e) => bail!("the daemon task failed: {e}"),
    }
    stack.shutdown().await;
    result?;
    println!("\ndemo done: every step happened. Run it again any time: `byocd demo`.");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "byocd-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?)
}

/// The daemon logs to a file: the terminal is the timeline's.
fn init_logging(path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
    Ok(())
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    authorization: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let answer = http
        .post(url)
        .header("authorization", authorization)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url} answered {status}: {body}");
    }
    Ok(body)
}

fn conversation(stack: &Stack, address: &str, user: &str) -> Option<EmulatedConversation> {
    stack.salesforce.conversation_of(address, user)
}

async fn script(
    t: &Timeline,
    stack: &Stack,
    store: &crate::store::AnyStore,
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<()> {
    whatsapp(t, stack, http, base).await?;
    proactive(t, stack).await?;
    rcs(t, stack, http, base).await?;
    idle(t, stack, store).await
}

/// Waits until Salesforce holds an acknowledgement of type `ack` in the conversation.
async fn acknowledged(stack: &Stack, address: &str, user: &str, ack: &str) -> anyhow::Result<()> {
    until("the receipt reaches Salesforce", async || {
        conversation(stack, address, user)?
            .acknowledgements
            .iter()
            .any(|a| a.acknowledgement_type == ack)
            .then_some(())
    })
    .await
}

async fn whatsapp(
    t: &Timeline,
    stack: &Stack,
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<()> {
    let user = "+6591234567";
    let key = ConversationKey::new(stack::WA_ADDRESS, user);
    let url = format!("{base}/webhooks/{}", stack::WA_CHANNEL);
    let hooks = stack.wa.webhooks();
    t.section("8x8 WhatsApp · BYOC for Messaging (Salesforce routes)");

    let text = "Hi! My order #1042 has not arrived.";
    let hook = hooks.inbound_text(&WebhookUser::phone(user), text);
    let answer = post(http, &url, stack::WA_WEBHOOK_AUTH, &hook.body).await?;
    t.say(
        "end user",
        format!("{user} writes \"{text}\" → 8x8 webhook answered 200 {answer}"),
    );
    let conv = until("the message reaches Salesforce", async || {
        conversation(stack, stack::WA_ADDRESS, user)
            .filter(|c| c.entries.iter().any(|e| e.text() == Some(text)))
    })
    .await?;
    let session = conv
        .sessions
        .last()
        .map(|s| s.id.clone())
        .unwrap_or_default();
    t.say(
        "salesforce",
        format!(
            "interaction accepted: conversation {}, MessagingSession {session}",
            conv.id
        ),
    );

    let picture = hooks.inbound(
        crate::sandbox::eightbyeight::InboundFormat::V3,
        &WebhookUser::phone(user),
        &InboundBody::Media {
            kind: MediaKind::Image,
            url: format!("{}/picture.png", stack.media_base),
            caption: Some("the parcel label".into()),
        },
    );
    post(http, &url, stack::WA_WEBHOOK_AUTH, &picture.body).await?;
    t.say(
        "end user",
        "sends a picture (8x8 hosts it; the webhook carries its URL)",
    );
    let attachment = until("the picture reaches Salesforce", async || {
        conversation(stack, stack::WA_ADDRESS, user)?
            .entries
            .iter()
            .find_map(|e| e.attachment.clone())
    })
    .await?;
    t.say(
        "salesforce",
        format!(
            "attachment received: {} ({}, {} bytes), downloaded by byocd and uploaded as an AttachmentInteraction",
            attachment.filename.as_deref().unwrap_or("?"),
            attachment.content_type.as_deref().unwrap_or("?"),
            attachment.length
        ),
    );
    t.say(
        "salesforce",
        "routes the session itself (routing_owner = Salesforce); a rep picks it up",
    );

    stack.rep.typing(key.clone(), true)?;
    t.say(
        "rep",
        "starts typing (TypingStartedIndicator on the platform event)",
    );
    until("8x8 shows the rep typing", async || {
        (!stack.wa.requests_to("/events").is_empty()).then_some(())
    })
    .await?;
    t.say(
        "8x8",
        "typing indicator sent (within 2 h of the end user's last message)",
    );

    stack.rep.attachment(
        key.clone(),
        "invoice-1042.pdf",
        "application/pdf",
        b"%PDF-1.4 demo invoice\n".to_vec(),
        Some("Sorry about that! Here is your invoice; a new parcel leaves today."),
    )?;
    t.say("rep", "replies with a message and a PDF");
    let sent = until("the reply reaches 8x8", async || {
        stack
            .wa
            .sent_messages()
            .into_iter()
            .find(|m| m.kind.eq_ignore_ascii_case("file") || m.content.get("url").is_some())
    })
    .await?;
    t.say(
        "8x8",
        format!(
            "message {} sent to {user} ({}: the file was uploaded to 8x8's file hosting first)",
            sent.umid, sent.kind
        ),
    );

    for (state, ack) in [("delivered", "Delivered"), ("read", "Read")] {
        let receipt = stack
            .wa
            .delivery_receipt(&sent.umid, state, None)
            .context("the 8x8 emulator has no such message")?;
        post(http, &url, stack::WA_WEBHOOK_AUTH, &receipt.body).await?;
        t.say("8x8", format!("receipt: {state}"));
        acknowledged(stack, stack::WA_ADDRESS, user, ack).await?;
        t.say(
            "salesforce",
            format!("acknowledgement {ack} recorded for the rep's message"),
        );
    }

    // Rep choices as WhatsApp reply buttons, and the end user's tap.
    let (_, asked) = stack.rep.choices(
        key.clone(),
        "Buttons",
        "Shall we send the new parcel to the same address?",
        &[("same", "Yes, same address"), ("other", "No, another one")],
    )?;
    t.say(
        "rep",
        "asks with two buttons (a ChoicesMessage, format Buttons)",
    );
    let buttons = until("the buttons reach 8x8", async || {
        stack
            .wa
            .sent_messages()
            .into_iter()
            .find(|m| m.kind == "interactive")
    })
    .await?;
    t.say(
        "8x8",
        format!(
            "interactive reply buttons sent: {}",
            buttons.content["interactive"]["action"]["buttons"]
        ),
    );
    let tap = hooks.inbound(
        crate::sandbox::eightbyeight::InboundFormat::V3,
        &WebhookUser::phone(user),
        &InboundBody::ButtonReply {
            id: "same".into(),
            title: "Yes, same address".into(),
        },
    );
    post(http, &url, stack::WA_WEBHOOK_AUTH, &tap.body).await?;
    t.say("end user", "taps \"Yes, same address\" (8x8 button_reply)");
    let answer = until("the answer reaches Salesforce", async || {
        conversation(stack, stack::WA_ADDRESS, user)?
            .entries
            .iter()
            .map(|e| e.json["payload"]["abstractMessage"].clone())
            .find(|m| m["messageType"] == "ChoicesResponseMessage")
    })
    .await?;
    t.say(
        "salesforce",
        format!(
            "ChoicesResponseMessage: option {} in reply to the rep's message {}",
            answer["choicesResponse"]["selectedOptions"][0]["optionIdentifier"],
            if answer["inReplyToMessageId"] == asked.as_str() {
                "(matched)"
            } else {
                "(NOT matched)"
            }
        ),
    );

    // An injected failure, remediated.
    stack.salesforce.inject(
        "/api/v1/interactions",
        Failure::RetryAfter {
            http_status: 429,
            seconds: 1,
        },
        1,
    );
    t.say(
        "sandbox",
        "Salesforce will answer the next interaction with 429 Too Many Requests (Retry-After: 1)",
    );
    let text = "Thanks, got it!";
    let hook = hooks.inbound_text(&WebhookUser::phone(user), text);
    post(http, &url, stack::WA_WEBHOOK_AUTH, &hook.body).await?;
    t.say("end user", format!("writes \"{text}\""));
    until("the retried message reaches Salesforce", async || {
        conversation(stack, stack::WA_ADDRESS, user)
            .filter(|c| c.entries.iter().any(|e| e.text() == Some(text)))
    })
    .await?;
    let refused = stack
        .salesforce
        .requests_to("/api/v1/interactions")
        .iter()
        .filter(|r| r.status == 429)
        .count();
    let copies = conversation(stack, stack::WA_ADDRESS, user)
        .map(|c| c.entries.iter().filter(|e| e.text() == Some(text)).count())
        .unwrap_or_default();
    t.say(
        "byocd",
        format!(
            "429 → remediation `retry` (byocd explain rate_limit): sent again after Retry-After; {refused} refusal, the message is in Salesforce {copies} time(s)"
        ),
    );
    Ok(())
}

/// A rep starts a WhatsApp conversation with an end user who never wrote: outside the 24-hour
/// window, so the rep's text goes out as the channel's approved template.
async fn proactive(t: &Timeline, stack: &Stack) -> anyhow::Result<()> {
    let user = "+6591110000";
    t.section("8x8 WhatsApp · a rep starts the conversation (outside the 24-hour window)");
    stack
        .salesforce
        .rep_opens_conversation(stack::WA_ADDRESS, user);
    let before = stack.wa.sent_messages().len();
    let text = "Hello! Your replacement for order #1042 ships today.";
    stack
        .rep
        .message(ConversationKey::new(stack::WA_ADDRESS, user), text)?;
    t.say(
        "rep",
        format!("starts a conversation with {user}: \"{text}\""),
    );
    let sent = until("8x8 gets the template", async || {
        stack
            .wa
            .sent_messages_from(before)
            .into_iter()
            .find(|m| m.kind == "template")
    })
    .await?;
    t.say(
        "byocd",
        format!(
            "{user} has not written in the last 24 hours: WhatsApp allows no free-form text, so the approved template `{}` ({}) goes out with the rep's text as its parameter → 8x8 umid {}",
            sent.content["template"]["name"].as_str().unwrap_or_default(),
            sent.content["template"]["language"].as_str().unwrap_or_default(),
            sent.umid
        ),
    );
    Ok(())
}

async fn rcs(
    t: &Timeline,
    stack: &Stack,
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<()> {
    let user = "+6598765432";
    let key = ConversationKey::new(stack::RCS_ADDRESS, user);
    let url = format!("{base}/webhooks/{}", stack::RCS_CHANNEL);
    t.section("Kaleyra RCS · BYOC for CCaaS (byocd routes)");

    let text = "Hello, can I change my delivery address?";
    let callback = Callback::new(
        CallbackKind::UserMessage { text: text.into() },
        user,
        stack::RCS_AGENT,
    );
    post(
        http,
        &url,
        stack::RCS_WEBHOOK_AUTH,
        &callback.to_json(CallbackFormat::Flat),
    )
    .await?;
    t.say(
        "end user",
        format!("{user} writes \"{text}\" → Kaleyra callback answered 200"),
    );
    let conv = until("the message reaches Salesforce", async || {
        conversation(stack, stack::RCS_ADDRESS, user)
            .filter(|c| c.entries.iter().any(|e| e.text() == Some(text)))
    })
    .await?;
    t.say(
        "salesforce",
        format!("interaction accepted: conversation {}", conv.id),
    );
    let work = until("byocd routes the new session to a rep", async || {
        conversation(stack, stack::RCS_ADDRESS, user)?
            .agent_works
            .first()
            .cloned()
    })
    .await?;
    let calls: Vec<String> = stack
        .salesforce
        .requests()
        .into_iter()
        .filter(|r| {
            ["/api/v1/consent", "/api/v1/route", "/api/v1/agentWork"].contains(&r.path.as_str())
        })
        .map(|r| format!("{} {} → {}", r.method, r.path, r.status))
        .collect();
    t.say(
        "byocd",
        format!(
            "routes the new session (policy `agents`): {}; AgentWork {} offered to rep {}",
            calls.join(", "),
            work.id,
            work.user_id
        ),
    );
    if !stack.salesforce.rep_accepts_work(&work.id) {
        bail!("the emulator did not let the rep accept {}", work.id);
    }
    stack.rep.entry(
        key.clone(),
        "RoutingWorkResult",
        json!({ "workId": work.id, "workType": "Accepted" }),
    )?;
    t.say("rep", format!("{} accepts the work", work.user_id));

    let picture = json!({
        "type": "USER_MESSAGE",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "from": user.trim_start_matches('+'),
        "to": stack::RCS_AGENT,
        "messageId": uuid::Uuid::new_v4().to_string(),
        "sentAt": chrono::Utc::now().to_rfc3339(),
        "userMessage": { "type": "IMAGE", "fileUrl": format!("{}/picture.png", stack.media_base) },
    });
    let answer = post(http, &url, stack::RCS_WEBHOOK_AUTH, &picture).await?;
    t.say(
        "end user",
        format!(
            "sends a picture → {} (Kaleyra documents text callbacks only; the body is kept verbatim: `byocd quarantine show {}`)",
            answer["status"].as_str().unwrap_or("?"),
            answer["quarantine_id"]
        ),
    );

    stack.rep.typing(key.clone(), true)?;
    t.say("rep", "starts typing");
    until("Kaleyra shows the rep typing", async || {
        (!stack.rcs.requests_to("/events").is_empty()).then_some(())
    })
    .await?;
    t.say("kaleyra", format!("`composing` event sent to {user}"));

    stack.rep.attachment(
        key.clone(),
        "new-address-form.pdf",
        "application/pdf",
        b"%PDF-1.4 demo form\n".to_vec(),
        Some("Sure, please fill in this form."),
    )?;
    t.say("rep", "replies with a PDF");
    let sent = until("the reply reaches Kaleyra", async || {
        stack
            .rcs
            .sent_messages()
            .into_iter()
            .find(|m| m.file_url.is_some())
    })
    .await?;
    t.say(
        "kaleyra",
        format!(
            "message {} sent with fileUrl {} (byocd serves the file on a signed, expiring URL)",
            sent.message_id,
            sent.file_url.as_deref().unwrap_or_default()
        ),
    );
    for (kind, ack) in [
        (CallbackKind::Delivered, "Delivered"),
        (CallbackKind::Read, "Read"),
    ] {
        let name = kind.type_name();
        let callback =
            Callback::new(kind, user, stack::RCS_AGENT).with_message_id(&sent.message_id);
        post(
            http,
            &url,
            stack::RCS_WEBHOOK_AUTH,
            &callback.to_json(CallbackFormat::Flat),
        )
        .await?;
        t.say("kaleyra", format!("callback {name}"));
        acknowledged(stack, stack::RCS_ADDRESS, user, ack).await?;
        t.say("salesforce", format!("acknowledgement {ack} recorded"));
    }
    Ok(())
}

async fn idle(t: &Timeline, stack: &Stack, store: &crate::store::AnyStore) -> anyhow::Result<()> {
    t.section("Idle sessions (inactivate after 4 s, end after 8 s, swept every second)");
    let status = |address: &str, user: &str| {
        conversation(stack, address, user).and_then(|c| c.sessions.last().map(|s| s.status))
    };
    until("the Kaleyra session is inactivated", async || {
        (status(stack::RCS_ADDRESS, "+6598765432") == Some(SessionStatus::Inactive)).then_some(())
    })
    .await?;
    t.say(
        "byocd",
        "sweep: the Kaleyra session is idle → POST /messagingSession Inactivate (operationBy System)",
    );
    until("the Kaleyra session is ended", async || {
        (status(stack::RCS_ADDRESS, "+6598765432") == Some(SessionStatus::Ended)).then_some(())
    })
    .await?;
    t.say("byocd", "sweep: still idle → POST /messagingSession End");
    let filter = crate::store::SessionFilter {
        channel: Some(stack::WA_CHANNEL.into()),
        status: Some("ended".into()),
        limit: 10,
    };
    until("the 8x8 session is ended", async || {
        let ended = store
            .sessions(&filter)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "demo: reading sessions failed"))
            .ok()?;
        (!ended.is_empty()).then_some(())
    })
    .await?;
    t.say(
        "byocd",
        "sweep: the 8x8 session is Salesforce-routed, so Salesforce times it out there; byocd inactivated and ended its own record",
    );
    Ok(())
}

async fn print_audit(store: &crate::store::AnyStore, full: bool) -> anyhow::Result<()> {
    let rows = store
        .audit(&AuditFilter {
            limit: 10_000,
            ..AuditFilter::default()
        })
        .await?;
    println!(
        "\n== The audit trail ({} rows) — `byocd audit` shows the same",
        rows.len()
    );
    if full {
        print!(
            "{}",
            crate::admin::render_audit(&rows, crate::admin::Format::Table)?
        );
        return Ok(());
    }
    let interesting: Vec<_> = rows
        .iter()
        .filter(|r| {
            !matches!(
                r.entry.kind.as_str(),
                "outbox.delivered" | "inbound.message" | "outbound.accepted"
            )
        })
        .cloned()
        .collect();
    print!(
        "{}",
        crate::admin::render_audit(&interesting, crate::admin::Format::Table)?
    );
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in &rows {
        *counts.entry(r.entry.kind.as_str()).or_default() += 1;
    }
    println!(
        "(left out above: {} — `byocd demo --full-audit` prints every row)",
        ["outbox.delivered", "inbound.message", "outbound.accepted"]
            .iter()
            .map(|k| format!("{} × {k}", counts.get(k).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// A tiny HTTP console for rep actions, so a user can act as the rep with curl.
async fn serve_rep_console(stack: &Stack) -> anyhow::Result<SocketAddr> {
    use axum::{Json, Router, extract::State, routing::post};
    #[derive(serde::Deserialize)]
    struct Action {
        channel: String,
        end_user: String,
        text: Option<String>,
    }
    fn key(action: &Action) -> Result<ConversationKey, String> {
        let address = match action.channel.as_str() {
            stack::WA_CHANNEL => stack::WA_ADDRESS,
            stack::RCS_CHANNEL => stack::RCS_ADDRESS,
            other => return Err(format!("no channel named `{other}` in the demo")),
        };
        Ok(ConversationKey::new(address, &action.end_user))
    }
    fn answer(r: Result<String, String>) -> (axum::http::StatusCode, Json<Value>) {
        match r {
            Ok(id) => (axum::http::StatusCode::OK, Json(json!({ "published": id }))),
            Err(e) => (
                axum::http::StatusCode::BAD_REQUEST,
                Json(json!({ "error": e })),
            ),
        }
    }
    let rep: Arc<Rep> = Arc::new(stack.rep.clone());
    let salesforce = stack.salesforce.clone();
    let app = Router::new()
        .route(
            "/rep/accept",
            post(
                |State(rep): State<Arc<Rep>>, Json(a): Json<Action>| async move {
                    answer(key(&a).and_then(|k| {
                        let conversation = salesforce
                            .conversation_of(&k.channel_address_identifier, &k.end_user_client_id)
                            .ok_or("no such conversation in Salesforce")?;
                        let work = conversation
                            .agent_works
                            .iter()
                            .rev()
                            .find(|w| salesforce.rep_accepts_work(&w.id))
                            .ok_or("no work offered to a rep in this conversation")?
                            .clone();
                        rep.entry(
                            k,
                            "RoutingWorkResult",
                            json!({ "workId": work.id, "workType": "Accepted" }),
                        )
                        .map(|e| e.identifier)
                        .map_err(|e| e.to_string())
                    }))
                },
            ),
        )
        .route(
            "/rep/message",
            post(
                |State(rep): State<Arc<Rep>>, Json(a): Json<Action>| async move {
                    answer(key(&a).and_then(|k| {
                        rep.message(k, a.text.as_deref().unwrap_or("Hello from the rep"))
                            .map_err(|e| e.to_string())
                    }))
                },
            ),
        )
        .route(
            "/rep/typing",
            post(
                |State(rep): State<Arc<Rep>>, Json(a): Json<Action>| async move {
                    answer(key(&a).and_then(|k| rep.typing(k, true).map_err(|e| e.to_string())))
                },
            ),
        )
        .route(
            "/rep/end",
            post(
                |State(rep): State<Arc<Rep>>, Json(a): Json<Action>| async move {
                    answer(key(&a).and_then(|k| rep.end_session(k).map_err(|e| e.to_string())))
                },
            ),
        )
        .with_state(rep);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "demo: the rep console stopped");
        }
    });
    Ok(addr)
}

fn print_try_it(base: &str, console: SocketAddr, metrics: &SocketAddr, root: &Path) {
    let wa = format!("{base}/webhooks/{}", stack::WA_CHANNEL);
    let rcs = format!("{base}/webhooks/{}", stack::RCS_CHANNEL);
    println!(
        r#"
== Still running. Paste these in another terminal (Ctrl-C here stops everything).

# An 8x8 WhatsApp message from a new end user:
curl -s {wa} -H 'authorization: {wa_auth}' -H 'content-type: application/json' \
  -d '{{"namespace":"ChatApps","eventType":"inbound_message_received","version":3,"payload":{{"umid":"'$(uuidgen 2>/dev/null || date +%s%N)'","subAccountId":"{sub}","timestamp":"'$(date -u +%FT%T.00Z)'","user":{{"msisdn":"+6590000001"}},"recipient":{{"channel":"WhatsApp","channelId":"demo"}},"type":"Text","content":{{"text":"Hello from curl"}}}}}}'

# A Kaleyra RCS message:
curl -s {rcs} -H 'authorization: {rcs_auth}' -H 'content-type: application/json' \
  -d '{{"type":"USER_MESSAGE","eventId":"'$(date +%s%N)'","from":"6590000002","to":"{agent}","messageId":"'$(date +%s%N)'","sentAt":"'$(date -u +%FT%TZ)'","userMessage":{{"type":"TEXT","text":"Hi over RCS"}}}}'

# On the Kaleyra channel byocd routes each new session to a rep; the rep accepts:
curl -s http://{console}/rep/accept  -H 'content-type: application/json' -d '{{"channel":"{rcs_channel}","end_user":"+6590000002"}}'

# The rep answers, types, ends the session (channel: {wa_channel} or {rcs_channel}):
curl -s http://{console}/rep/message -H 'content-type: application/json' -d '{{"channel":"{wa_channel}","end_user":"+6590000001","text":"Hi, how can I help?"}}'
curl -s http://{console}/rep/typing  -H 'content-type: application/json' -d '{{"channel":"{wa_channel}","end_user":"+6590000001"}}'
curl -s http://{console}/rep/end     -H 'content-type: application/json' -d '{{"channel":"{wa_channel}","end_user":"+6590000001"}}'

# Look inside:
curl -s {base}/readyz
curl -s http://{metrics}/metrics | grep -v '^#'
byocd --config {config} audit --since "$(date -u +%F)"
byocd --config {config} sessions list
byocd --config {config} outbox list
"#,
        wa_auth = stack::WA_WEBHOOK_AUTH,
        rcs_auth = stack::RCS_WEBHOOK_AUTH,
        sub = stack::WA_SUB_ACCOUNT,
        agent = stack::RCS_AGENT,
        wa_channel = stack::WA_CHANNEL,
        rcs_channel = stack::RCS_CHANNEL,
        config = root.join("byocd.toml").display(),
    );
}
